//! `hello`: who the connection is (a member token, a staff JWT, or
//! nobody yet), its handle, and the `welcome`; and the end of a staff
//! sign-in that expires mid-session.

use super::*;

impl Session {
    pub(super) async fn hello(&mut self, id: Option<RequestId>, token: Option<String>, wished: Option<String>, locale: Option<String>) -> Step {
        // Everything written to this connection from here on is in its language.
        crate::texts::set_lang(crate::texts::Lang::of(locale.as_deref()));
        let app = self.app.clone();
        let limits = &app.config.limits;
        let identity = match token.as_deref() {
            None | Some("") => {
                Identity { account: crate::auth::Auth::new_account(), role: kindred_protocol::Role::Member, name: None, rooms: None, expires_at: None }
            }
            Some(token) => match app.auth.verify(token) {
                Ok(identity) => identity,
                Err(e) => {
                    let msg = match e {
                        crate::auth::AuthError::Expired => t("token-expired"),
                        // Why, in English: it is for whoever set up the identity provider.
                        crate::auth::AuthError::Invalid(reason) => f("token-invalid", &[("reason", &reason)]),
                    };
                    return self.error(ErrorBody::new(ErrorCode::Unauthorized, msg).with_id(id)).await;
                }
            },
        };
        if app.moderation.is_forgotten(&identity.account) {
            let msg = t("erased");
            return self.error(ErrorBody::new(ErrorCode::Unauthorized, msg).with_id(id)).await;
        }
        if let Some(ban) = app.moderation.banned_from_service(&identity.account) {
            let mut body = ErrorBody::new(ErrorCode::Banned, ban.reason.clone().unwrap_or_else(|| t("service-banned")));
            body.until = ban.until_text();
            self.error(body.with_id(id)).await?;
            return Err(End::Close(CloseCode::Banned, "banned"));
        }
        // Staff may be called "Sam (facilitator)"; a member may not pass for staff.
        let check = if identity.role.is_staff() { crate::handles::validate_name } else { crate::handles::validate };
        // A chosen handle (wished now, or remembered in the token, or a
        // facilitator's name) is used in every room; without one, a member
        // gets a generated handle per room, not recognisable across rooms.
        let chosen = match wished.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            Some(wished) => match check(wished, limits.min_handle_chars, limits.max_handle_chars) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    // v1.1: a handle that hides or impersonates is a bad request, not a naming slip.
                    let code = match e {
                        crate::handles::HandleError::Invisible | crate::handles::HandleError::StaffWord => ErrorCode::BadRequest,
                        _ => ErrorCode::InvalidHandle,
                    };
                    return self.error(ErrorBody::new(code, f("bad-name", &[("reason", &name_refusal(&e))])).with_id(id)).await;
                }
            },
            None => identity.name.as_deref().and_then(|n| check(n, limits.min_handle_chars, limits.max_handle_chars).ok()),
        };
        let session_token = match (identity.role, token) {
            (kindred_protocol::Role::Member, _) | (_, None) => app.auth.session_token(&identity.account, chosen.as_deref()),
            (_, Some(staff_token)) => staff_token,
        };
        self.handle_per_room = chosen.is_none();
        let handle = chosen.unwrap_or_else(|| app.auth.generated_handle(&identity.account, None));
        let welcome = ServerMessage::Welcome {
            id,
            account: identity.account.clone(),
            handle: handle.clone(),
            role: identity.role,
            session_token,
            heartbeat_s: limits.heartbeat_s,
            limits: WireLimits {
                max_text_chars: limits.max_text_chars,
                messages_per_10s: limits.messages_per_10s,
                max_frame_bytes: limits.max_frame_bytes,
                max_handle_chars: limits.max_handle_chars,
                max_rooms_per_connection: limits.max_rooms_per_connection as u32,
                max_cw_chars: limits.max_cw_chars,
                reactions: limits.reactions().into_iter().map(str::to_owned).collect(),
            },
            server: ServerInfo { version: env!("CARGO_PKG_VERSION").into(), node: app.config.node.clone() },
        };
        tracing::debug!(conn = self.conn.0, role = identity.role.as_str(), "hello");
        app.accounts.entry(identity.account.clone()).or_default().push((self.conn, self.outbox.control.clone()));
        // A BCP 47 tag is short and plain; anything else is ignored, not refused.
        self.locale =
            locale.filter(|l| (1..=35).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')).map(String::into_boxed_str);
        let scope = crate::alerts::Scope::of(&identity);
        self.identity = Some(Box::new(identity));
        self.handle = handle;
        self.reply(&welcome).await?;
        if let Some(scope) = scope {
            // On duty from now: new alerts come through the mailbox, so
            // register before reading the open ones (one raised in between
            // may come twice; clients dedupe by `alert_id`).
            app.on_duty.register(self.conn, scope.clone(), self.outbox.clone());
            for alert in app.moderation.open_alerts(|room| scope.covers(room)) {
                self.reply(&alert.frame()).await?;
            }
        }
        Ok(())
    }

    /// A facilitator's token ran out mid-session: say so, and close with 4401
    /// so the client signs in again with a fresh token (and resumes).
    pub(super) async fn staff_token_expired(&mut self) -> Step {
        let notice =
            ServerMessage::Notice(Notice { room: None, kind: NoticeKind::System, text: t("sign-in-expired"), resources: None, facilitators_alerted: None });
        self.reply(&notice).await?;
        Err(End::Close(CloseCode::Unauthorized, "token expired"))
    }
}

/// Why a name was refused, in the connection's language.
fn name_refusal(e: &crate::handles::HandleError) -> String {
    use crate::handles::HandleError;
    match e {
        HandleError::Length { min, max } => f("name-length", &[("min", min), ("max", max)]),
        HandleError::Characters => t("name-characters"),
        HandleError::ContactDetails => t("name-contact"),
        HandleError::Invisible => t("name-invisible"),
        HandleError::StaffWord => t("name-staff-word"),
    }
}
