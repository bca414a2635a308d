//! Requests that keep a room safe: `moderate` (authorized here, on the
//! server, for every action), reports, hands, whispers and `forget_me`.
//! Effects on the live room are the hub's; what outlives a restart and the
//! audit log are the moderation store's.

use super::{End, Session, Step, not_member};
use crate::frame::encode;
use crate::moderation::{AuditEntry, Sanction};
use crate::rooms::rfc3339;
use crate::texts::{self, f, t};
use chrono::Utc;
use kindred_protocol::client::ReportResolution;
use kindred_protocol::{
    CloseCode, ErrorBody, ErrorCode, MemberId, MessageId, ModerationAction, Notice, NoticeKind, RemovedReason, Report, ReportId, RequestId, Role, RoomId,
    Sender, ServerMessage,
};
use std::sync::Arc;
use std::time::Duration;

/// How far back `participation` counts when the room has no session.
const PARTICIPATION_MINUTES: i64 = 60;

/// The longest reason, note or topic a facilitator may write.
const MAX_NOTE_CHARS: usize = 500;

/// `key`: the text saying who may do it.
pub(super) fn forbidden(key: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, t(key))
}

/// `key`: the text saying what is missing (`no-such-member`…).
pub(super) fn not_found(key: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, t(key))
}

/// What a moderation store failure tells the facilitator (the details go to the log).
fn not_saved(e: &crate::moderation::StoreError) -> ErrorBody {
    tracing::warn!(error = %e, "a moderation change was not saved");
    ErrorBody::new(e.code(), t("not-saved"))
}

/// A default text one person's action sends to another (a kick's or ban's
/// note, a mute's warning): in the room's language, since the sender's is
/// not necessarily the reader's.
fn in_room_language(room: &crate::hub::Room, key: &str) -> String {
    texts::in_lang(texts::Lang::of(Some(&room.def().language)), key)
}

/// `key`: which text was too long (`reason-too-long`, `topic-too-long`).
fn too_long(key: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, f(key, &[("max", &MAX_NOTE_CHARS)]))
}

impl Session {
    /// Whether this connection may moderate `room`: admins anywhere,
    /// facilitators in the rooms their token names (all, when it names none).
    pub(super) fn may_moderate(&self, room: &RoomId) -> bool {
        let Some(identity) = &self.identity else { return false };
        if identity.expires_at.is_some_and(|exp| exp < crate::auth::now_s()) {
            return false;
        }
        match identity.role {
            Role::Admin => true,
            Role::Facilitator => identity.rooms.as_ref().is_none_or(|rooms| rooms.contains(room)),
            Role::Member => false,
        }
    }

    /// Who acts, for the audit log: a facilitator's token `sub`; a member only
    /// by its id in the room, never its account.
    fn actor(&self, room: Option<&RoomId>) -> String {
        match &self.identity {
            Some(i) if i.role.is_staff() => i.account.0.clone(),
            _ => room.and_then(|r| self.rooms.get(r)).map_or_else(|| "member".to_owned(), |m| m.member_id.0.clone()),
        }
    }

    /// Write an audit entry (built now; the returned future holds no borrow of the session).
    pub(super) fn audit(
        &self,
        action: &str,
        room: Option<&RoomId>,
        target: Option<String>,
        reason: Option<String>,
        detail: Option<serde_json::Value>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let entry = AuditEntry { at: rfc3339(Utc::now()), by: self.actor(room), action: action.into(), room: room.cloned(), target, reason, detail };
        let app = self.app.clone();
        async move {
            let action = entry.action.clone();
            if let Err(e) = app.moderation.audit(entry).await {
                tracing::error!(error = %e, action, "audit log write failed");
            }
        }
    }

    /// `participation`: who has spoken in the room lately, for its staff,
    /// as counts: since the running session started, or over the last hour.
    pub(super) async fn participation(&mut self, id: Option<RequestId>, room_id: RoomId) -> Step {
        if !self.may_moderate(&room_id) {
            return self.error(forbidden("staff-forbidden").with_id(id)).await;
        }
        // A reply as long as the room: counted like other room actions.
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        let Some(room) = self.app.hub.room(&room_id) else {
            return self.error(not_found("no-such-room-here").with_id(id)).await;
        };
        // This node hears the room only while someone here is in it.
        if !self.rooms.contains_key(&room_id) {
            return self.error(not_member(&room_id).with_id(id)).await;
        }
        // The current session, or with none the last hour.
        let since = room.session_started_at().unwrap_or_else(|| Utc::now() - chrono::Duration::minutes(PARTICIPATION_MINUTES));
        let members = room.participation(since);
        self.reply(&ServerMessage::Participation { id, room: room_id, since: rfc3339(since), members }).await
    }

    pub(super) async fn moderate(&mut self, id: Option<RequestId>, room_id: RoomId, action: ModerationAction) -> Step {
        if !self.may_moderate(&room_id) {
            return self.error(forbidden("staff-forbidden").with_id(id)).await;
        }
        let Some(room) = self.app.hub.room(&room_id) else {
            return self.error(not_found("no-such-room-here").with_id(id)).await;
        };
        // Every action writes to others (the room, its staff, a member, the
        // audit log): a staff token, trusted or stolen, has the same budget
        // of room actions as anyone.
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        let result = match change_room(&room, &action) {
            Some(result) => result,
            None => self.act_on_member(&room, &action).await,
        };
        match result {
            Ok((target, reason)) => {
                self.audit(action.name(), Some(&room_id), target, reason, None).await;
                self.reply(&ServerMessage::Moderated { id }).await
            }
            Err(e) => self.error(e.with_id(id)).await,
        }
    }

    /// An action on one member or one message: what goes in the audit log
    /// (the target's id and the reason), or why it was refused.
    async fn act_on_member(&mut self, room: &Arc<crate::hub::Room>, action: &ModerationAction) -> Result<Audited, ErrorBody> {
        let room_id = room.id();
        let note_ok = |n: &Option<String>| n.as_ref().is_none_or(|n| n.chars().count() <= MAX_NOTE_CHARS);
        match action {
            ModerationAction::DeleteMessage { message_id, reason } => {
                if !note_ok(reason) {
                    Err(too_long("reason-too-long"))
                } else if room.delete_message(message_id) {
                    Ok((Some(message_id.0.clone()), reason.clone()))
                } else {
                    Err(not_found("no-such-message"))
                }
            }
            ModerationAction::Warn { member_id, reason } => {
                if reason.chars().count() > MAX_NOTE_CHARS {
                    Err(too_long("reason-too-long"))
                } else {
                    let notice = warning(&room_id, reason.clone());
                    // Someone who already left is not there to read it: a no-op, but not an error.
                    if room.send_to(member_id, &encode(&notice)) || room.has_seen(member_id) {
                        Ok((Some(member_id.0.clone()), Some(reason.clone())))
                    } else {
                        Err(not_found("no-such-member"))
                    }
                }
            }
            ModerationAction::Mute { member_id, duration_s, reason } => {
                if !note_ok(reason) {
                    Err(too_long("reason-too-long"))
                } else {
                    Self::mute(&self.app, room, member_id, *duration_s, reason.clone()).await.map(|()| (Some(member_id.0.clone()), reason.clone()))
                }
            }
            ModerationAction::Unmute { member_id, reason } => {
                match room.account_of(member_id).or_else(|| self.app.moderation.account_of(&room_id, member_id)) {
                    Some(account) => match self.app.moderation.unmute(&room_id, &account).await {
                        Ok(_) => {
                            room.set_muted(member_id, None);
                            Ok((Some(member_id.0.clone()), reason.clone()))
                        }
                        Err(e) => Err(not_saved(&e)),
                    },
                    None => Err(not_found("no-such-member")),
                }
            }
            ModerationAction::Kick { member_id, reason } => {
                if !note_ok(reason) {
                    Err(too_long("reason-too-long"))
                } else {
                    let note = Some(reason.clone().unwrap_or_else(|| in_room_language(room, "kicked")));
                    let removed = ServerMessage::Removed { room: room_id.clone(), reason: RemovedReason::Kicked, note, until: None };
                    if room.remove_member(member_id, &encode(&removed)) || room.has_seen(member_id) {
                        Ok((Some(member_id.0.clone()), reason.clone()))
                    } else {
                        Err(not_found("no-such-member"))
                    }
                }
            }
            ModerationAction::Ban { member_id, duration_s, reason, service } => {
                if !note_ok(reason) {
                    Err(too_long("reason-too-long"))
                } else if *service && self.identity.as_ref().is_none_or(|i| i.role != Role::Admin) {
                    Err(forbidden("service-ban-admins-only"))
                } else {
                    Self::ban(&self.app, room, member_id, *duration_s, reason.clone(), *service).await.map(|()| (Some(member_id.0.clone()), reason.clone()))
                }
            }
            ModerationAction::Unban { member_id, reason } => match room.account_of(member_id).or_else(|| self.app.moderation.account_of(&room_id, member_id)) {
                Some(account) => {
                    // An admin's unban also lifts a ban from the whole service.
                    let admin = self.identity.as_ref().is_some_and(|i| i.role == Role::Admin);
                    let lifted = match self.app.moderation.unban(Some(&room_id), &account).await {
                        Ok(false) if admin => self.app.moderation.unban(None, &account).await,
                        other => other,
                    };
                    match lifted {
                        Ok(true) => Ok((Some(member_id.0.clone()), reason.clone())),
                        Ok(false) => Err(not_found("no-such-ban")),
                        Err(e) => Err(not_saved(&e)),
                    }
                }
                None => Err(not_found("no-such-member")),
            },
            ModerationAction::GiveFloor { member_id } => {
                if room.set_floor(member_id, true) {
                    Ok((Some(member_id.0.clone()), None))
                } else {
                    Err(not_found("no-such-member"))
                }
            }
            ModerationAction::EndFloor { member_id } => match member_id.clone().or_else(|| room.floor_holder()) {
                Some(m) if room.set_floor(&m, false) => Ok((Some(m.0), None)),
                _ => Err(not_found("no-floor-holder")),
            },
            // Changed by `change_room` before this is called; listed, not `_`,
            // so a new action must be placed in one or the other.
            ModerationAction::SlowMode { .. }
            | ModerationAction::Lock
            | ModerationAction::Unlock
            | ModerationAction::SetTopic { .. }
            | ModerationAction::SetMode { .. }
            | ModerationAction::Pin { .. }
            | ModerationAction::Unpin
            | ModerationAction::StartSession { .. }
            | ModerationAction::EndSession { .. } => Ok((None, None)),
        }
    }

    async fn mute(
        app: &Arc<crate::App>,
        room: &Arc<crate::hub::Room>,
        member_id: &MemberId,
        duration_s: Option<u64>,
        reason: Option<String>,
    ) -> Result<(), ErrorBody> {
        let room_id = room.id();
        let Some(account) = room.account_of(member_id) else { return Err(not_found("no-such-member")) };
        let until = duration_s.map(|d| Utc::now() + chrono::Duration::seconds(d.min(365 * 86400) as i64));
        let sanction = Sanction { room: Some(room_id.clone()), account: account.clone(), member_id: Some(member_id.clone()), until, reason: reason.clone() };
        app.moderation.mute(sanction).await.map_err(|e| not_saved(&e))?;
        room.set_muted(member_id, Some(until.map(rfc3339)));
        // The facilitator's words alone: clients say "muted" from the member's state.
        let text = reason.clone().unwrap_or_else(|| in_room_language(room, "muted"));
        room.send_to(member_id, &encode(&warning(&room_id, text)));
        if let Some(d) = duration_s {
            // The mute ends by itself: tell the room when it does (unless lifted or renewed).
            let app = app.clone();
            let room = room.clone();
            let member_id = member_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(d) + Duration::from_millis(50)).await;
                if app.moderation.muted(&room.id(), &account).is_none() && room.member(&member_id).is_some_and(|m| m.muted) {
                    room.set_muted(&member_id, None);
                }
            });
        }
        Ok(())
    }

    async fn ban(
        app: &Arc<crate::App>,
        room: &Arc<crate::hub::Room>,
        member_id: &MemberId,
        duration_s: Option<u64>,
        reason: Option<String>,
        service: bool,
    ) -> Result<(), ErrorBody> {
        let room_id = room.id();
        let account = room.account_of(member_id).or_else(|| app.moderation.account_of(&room_id, member_id)).ok_or_else(|| not_found("no-such-member"))?;
        let until = duration_s.map(|d| Utc::now() + chrono::Duration::seconds(d.min(10 * 365 * 86400) as i64));
        let sanction = Sanction {
            room: if service { None } else { Some(room_id.clone()) },
            account: account.clone(),
            member_id: Some(member_id.clone()),
            until,
            reason: reason.clone(),
        };
        app.moderation.ban(sanction).await.map_err(|e| not_saved(&e))?;
        let note = Some(reason.unwrap_or_else(|| in_room_language(room, "banned")));
        let removed = ServerMessage::Removed { room: room_id, reason: RemovedReason::Banned, note, until: until.map(rfc3339) };
        room.remove_member(member_id, &encode(&removed));
        if service {
            if let Some(conns) = app.accounts.get(&account) {
                for (_, control) in conns.iter() {
                    control.close(CloseCode::Banned);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn report(&mut self, id: Option<RequestId>, room_id: RoomId, message_id: MessageId, reason: String) -> Step {
        let Some(me) = self.rooms.get(&room_id).cloned() else { return self.error(not_member(&room_id).with_id(id)).await };
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        if reason.chars().count() > MAX_NOTE_CHARS {
            return self.error(too_long("reason-too-long").with_id(id)).await;
        }
        let Some(room) = self.app.hub.room(&room_id) else { return self.error(not_member(&room_id).with_id(id)).await };
        let Some(message) = room.find_message(&message_id) else { return self.error(not_found("no-such-message").with_id(id)).await };
        let report = Report {
            id: ReportId(format!("r_{:012x}", rand::random::<u64>() >> 16)),
            message,
            reason: reason.trim().to_owned(),
            by: me.member_id.clone(),
            at: rfc3339(Utc::now()),
        };
        let report = match self.app.moderation.add_report(&room_id, report).await {
            Ok((report, true)) => report,
            // Reported already and still open: the facilitators have it, nothing more to file or send.
            Ok((open, false)) => return self.reply(&ServerMessage::Reported { id, report_id: open.id }).await,
            Err(e) => return self.error(not_saved(&e).with_id(id)).await,
        };
        // The one place message text enters the audit log: the message a member reported.
        let detail = serde_json::json!({ "report_id": report.id, "message_id": report.message.message_id, "quoted": report.message.text });
        self.audit("report", Some(&room_id), Some(report.message.from.member_id.0.clone()), Some(report.reason.clone()), Some(detail)).await;
        let filed = ServerMessage::ReportFiled { room: room_id.clone(), report: report.clone() };
        room.broadcast(&encode(&filed), crate::hub::Audience::Staff);
        self.reply(&ServerMessage::Reported { id, report_id: report.id }).await
    }

    pub(super) async fn resolve_report(&mut self, id: Option<RequestId>, room_id: RoomId, report_id: ReportId, resolution: ReportResolution) -> Step {
        if !self.may_moderate(&room_id) {
            return self.error(forbidden("reports-forbidden").with_id(id)).await;
        }
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        match self.app.moderation.resolve_report(&room_id, &report_id).await {
            Ok(Some(_)) => {
                let how = match resolution {
                    ReportResolution::Dismissed => "dismissed",
                    ReportResolution::Acted => "acted",
                };
                self.audit("resolve_report", Some(&room_id), Some(report_id.0.clone()), Some(how.into()), None).await;
                if let Some(room) = self.app.hub.room(&room_id) {
                    let note = ServerMessage::ReportResolved { id: None, room: room_id.clone(), report_id: report_id.clone() };
                    room.broadcast(&encode(&note), crate::hub::Audience::Staff);
                }
                self.reply(&ServerMessage::ReportResolved { id, room: room_id, report_id }).await
            }
            Ok(None) => self.error(not_found("no-open-report").with_id(id)).await,
            Err(e) => self.error(not_saved(&e).with_id(id)).await,
        }
    }

    pub(super) async fn hand(&mut self, id: Option<RequestId>, room_id: RoomId, raised: bool) -> Step {
        let Some(me) = self.rooms.get(&room_id).cloned() else { return self.error(not_member(&room_id).with_id(id)).await };
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        let done = self.app.hub.room(&room_id).is_some_and(|room| room.set_hand(&me.member_id, raised));
        if done { Ok(()) } else { self.error(not_member(&room_id).with_id(id)).await }
    }

    pub(super) async fn whisper(&mut self, id: Option<RequestId>, room_id: RoomId, to: MemberId, text: String) -> Step {
        let Some(me) = self.rooms.get(&room_id).cloned() else { return self.error(not_member(&room_id).with_id(id)).await };
        let max = self.app.config.limits.max_text_chars as usize;
        if text.trim().is_empty() || text.chars().count() > max {
            return self.error(ErrorBody::new(ErrorCode::TooLarge, f("whisper-length", &[("max", &max)])).with_id(id)).await;
        }
        let Some(room) = self.app.hub.room(&room_id) else { return self.error(not_member(&room_id).with_id(id)).await };
        let Some(target) = room.member(&to) else { return self.error(not_found("no-such-member").with_id(id)).await };
        // One side must be a facilitator of this room: members cannot whisper to members.
        let i_moderate = self.may_moderate(&room_id);
        if !i_moderate && !target.role.is_staff() {
            return self.error(forbidden("whisper-forbidden").with_id(id)).await;
        }
        if let Err(wait) = self.bucket.take(std::time::Instant::now()) {
            return self.refuse_flood(id, wait, &t("wait-a-moment")).await;
        }
        self.strikes = 0;
        let whisper = ServerMessage::Whisper {
            room: room_id.clone(),
            from: Sender { member_id: me.member_id.clone(), handle: me.handle.clone(), role: me.role },
            to: to.clone(),
            text,
            ts: rfc3339(Utc::now()),
        };
        room.send_to(&to, &encode(&whisper));
        self.reply(&ServerMessage::Whispered { id }).await
    }

    /// Remove everything this account wrote, end its token, close the connection.
    pub(super) async fn forget_me(&mut self, id: Option<RequestId>) -> Step {
        let account = self.identity.as_ref().expect("forget_me is handled after hello").account.clone();
        let mut member_ids = std::collections::HashMap::new();
        for room in self.app.hub.rooms() {
            let room_id = room.id();
            let member_id = self.app.auth.member_id(&account, &room_id);
            member_ids.insert(room_id.clone(), member_id.clone());
            room.delete_by_account(&account);
            // Reactions are anonymous counts, but the server knows whose they are: they go too.
            if let Err(e) = self.app.broker.forget_reactions(&room_id, member_id, super::send::retention(&self.app, &room)).await {
                tracing::warn!(error = %e, "reactions could not all be taken back");
                let body = ErrorBody::new(ErrorCode::Unavailable, t("erase-incomplete")).retry_after(1000);
                return self.error(body.with_id(id)).await;
            }
        }
        if let Err(e) = self.app.moderation.forget(&account, &member_ids).await {
            return self.error(not_saved(&e).with_id(id)).await;
        }
        // The audit log notes that an erasure happened, not who it was
        // (`actor` with no room names no one).
        self.audit("forget_me", None, None, None, None).await;
        // The account's other tabs end too: none of them may post after the erasure.
        if let Some(conns) = self.app.accounts.get(&account) {
            conns.iter().filter(|(c, _)| *c != self.conn).for_each(|(_, control)| control.close(CloseCode::Unauthorized));
        }
        self.reply(&ServerMessage::Forgotten { id }).await?;
        Err(End::Close(CloseCode::Normal, "forgotten"))
    }
}

fn warning(room: &RoomId, text: String) -> ServerMessage {
    ServerMessage::Notice(Notice { room: Some(room.clone()), kind: NoticeKind::Warning, text, resources: None, facilitators_alerted: None })
}

/// What the audit log says of an action: its target's id and the reason.
type Audited = (Option<String>, Option<String>);

/// The shortest and longest session `start_session` may start, in minutes.
const SESSION_MINUTES: std::ops::RangeInclusive<u32> = 5..=240;

/// A change to the room's live settings (slow mode, lock, topic, mode, the
/// pinned message, the session); `None` for the actions on members.
fn change_room(room: &crate::hub::Room, action: &ModerationAction) -> Option<Result<Audited, ErrorBody>> {
    match action {
        ModerationAction::Pin { message_id } => {
            // Only what the whole room sees: a staff message pinned would show it to members.
            let Some(mut message) = room.find_message(message_id).filter(|m| !m.staff) else { return Some(Err(not_found("no-such-message"))) };
            // Counts change; the room's copy of the message carries them.
            message.reactions = None;
            room.update(|s| *s.pinned = Some(Box::new(message)));
            return Some(Ok((Some(message_id.0.clone()), None)));
        }
        ModerationAction::Unpin => {
            let was = room.pinned_id();
            room.update(|s| *s.pinned = None);
            return Some(Ok((was.map(|id| id.0), None)));
        }
        ModerationAction::StartSession { minutes, .. } if !SESSION_MINUTES.contains(minutes) => {
            let msg = f("session-minutes", &[("min", SESSION_MINUTES.start()), ("max", SESSION_MINUTES.end())]);
            return Some(Err(ErrorBody::new(ErrorCode::BadRequest, msg)));
        }
        ModerationAction::StartSession { agenda: Some(agenda), .. } if agenda.chars().count() > MAX_NOTE_CHARS => {
            return Some(Err(too_long("agenda-too-long")));
        }
        ModerationAction::StartSession { minutes, agenda } => {
            let now = Utc::now();
            let agenda = agenda.as_ref().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
            let session = kindred_protocol::SessionInfo {
                started_at: rfc3339(now),
                ends_at: rfc3339(now + chrono::Duration::minutes(i64::from(*minutes))),
                agenda: agenda.clone(),
            };
            room.update(|s| *s.session = Some(session));
            return Some(Ok((Some(format!("{minutes} min")), agenda)));
        }
        ModerationAction::EndSession { note: Some(note) } if note.chars().count() > MAX_NOTE_CHARS => return Some(Err(too_long("note-too-long"))),
        ModerationAction::EndSession { note } => {
            if !room.has_session() {
                return Some(Err(not_found("no-running-session")));
            }
            room.update(|s| *s.session = None);
            let note = note.as_ref().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
            let text = note.clone().unwrap_or_else(|| in_room_language(room, "session-ended"));
            let notice = Notice { room: Some(room.id()), kind: NoticeKind::System, text, resources: None, facilitators_alerted: None };
            room.broadcast(&encode(&ServerMessage::Notice(notice)), crate::hub::Audience::All);
            return Some(Ok((None, note)));
        }
        ModerationAction::SlowMode { seconds } if *seconds > 3600 => {
            return Some(Err(ErrorBody::new(ErrorCode::BadRequest, t("slow-mode-max"))));
        }
        ModerationAction::SlowMode { seconds } => room.update(|s| *s.slow_mode_s = *seconds),
        ModerationAction::Lock => room.update(|s| *s.locked = true),
        ModerationAction::Unlock => room.update(|s| *s.locked = false),
        ModerationAction::SetTopic { text } if text.chars().count() > MAX_NOTE_CHARS => return Some(Err(too_long("topic-too-long"))),
        ModerationAction::SetTopic { text } => {
            let topic = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
            room.update(|s| *s.topic_now = topic);
        }
        ModerationAction::SetMode { mode } => room.update(|s| *s.mode = *mode),
        _ => return None,
    }
    Some(Ok((None, None)))
}
