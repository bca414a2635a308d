//! `send`: the checks a message passes (membership, mute, the room's live
//! rules, length, safety), the broker's append, and `sent`; and the rate
//! limits every repeated request shares.

use super::*;

impl Session {
    pub(super) async fn send(
        &mut self,
        id: Option<RequestId>,
        room_id: RoomId,
        text: String,
        reply_to: Option<MessageId>,
        cw: Option<String>,
        staff: bool,
    ) -> Step {
        let limits = &self.app.config.limits;
        let Some(me) = self.rooms.get(&room_id).cloned() else {
            let body = if self.app.hub.room(&room_id).is_some() { not_member(&room_id) } else { no_such_room(&room_id) };
            return self.error(body.with_id(id)).await;
        };
        let chars = text.chars().count();
        if text.trim().is_empty() {
            return self.error(ErrorBody::new(ErrorCode::BadRequest, "A message needs some text.").with_id(id)).await;
        }
        if chars > limits.max_text_chars as usize {
            let msg = format!("Messages can be up to {} characters; this one has {chars}.", limits.max_text_chars);
            return self.error(ErrorBody::new(ErrorCode::TooLarge, msg).with_id(id)).await;
        }
        let cw = cw.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if cw.as_ref().is_some_and(|c| c.chars().count() > limits.max_cw_chars as usize) {
            let msg = format!("A content warning can be up to {} characters.", limits.max_cw_chars);
            return self.error(ErrorBody::new(ErrorCode::BadRequest, msg).with_id(id)).await;
        }
        if reply_to.as_ref().is_some_and(|r| r.0.len() > 64) {
            return self.error(ErrorBody::new(ErrorCode::BadRequest, "reply_to is not a message id.").with_id(id)).await;
        }
        if let Err(wait) = self.bucket.take(Instant::now()) {
            let msg = "You're sending messages quickly. Please wait a moment before the next one.";
            return self.refuse_flood(id, wait, msg).await;
        }
        self.strikes = 0;
        let Some(room) = self.app.hub.room(&room_id) else {
            return self.error(not_member(&room_id).with_id(id)).await;
        };
        let account = self.identity.as_ref().expect("send is handled after hello").account.clone();
        if let Some(mute) = self.app.moderation.muted(&room_id, &account) {
            let mut body = ErrorBody::new(ErrorCode::Muted, mute.reason.clone().unwrap_or_else(|| "A facilitator has muted you for now.".into()));
            body.until = mute.until_text();
            if let Some(until) = mute.until {
                body.retry_after_ms = Some((until - Utc::now()).num_milliseconds().max(1) as u64);
            }
            return self.error(body.with_id(id)).await;
        }
        if let Err(refusal) = room.admit_send(&me.member_id, me.role, staff) {
            return self.error(ErrorBody::from(refusal).with_id(id)).await;
        }
        let def = room.def();
        let verdict = self.app.safety.check(&text, &def.language);
        if verdict.blocked {
            let msg = "This message can't be posted here: it contains words this community doesn't allow.";
            return self.error(ErrorBody::new(ErrorCode::ContentBlocked, msg).with_id(id)).await;
        }
        let pii_action = def.pii.unwrap_or(self.app.safety.config().pii);
        if let (Some(kind), crate::safety::PiiAction::Block) = (verdict.pii, pii_action) {
            let msg =
                format!("This message wasn't posted: it looks like it contains {kind}. To keep you and others safe, please don't share contact details here.");
            return self.error(ErrorBody::new(ErrorCode::ContentBlocked, msg).with_id(id)).await;
        }
        let draft = Draft {
            msg: ChatMessage {
                room: room_id.clone(),
                message_id: MessageId(format!("{:016x}", rand::random::<u64>())),
                seq: 0,
                from: Sender { member_id: me.member_id.clone(), handle: me.handle.clone(), role: me.role },
                text,
                ts: rfc3339(Utc::now()),
                reply_to,
                cw,
                staff,
                staff_seq: None,
            },
            account,
        };
        match self.app.broker.append(&room, draft).await {
            Ok(msg) => {
                Metrics::add(&self.app.metrics.messages_in, 1);
                let sent = ServerMessage::Sent { id, room: room_id.clone(), message_id: msg.message_id.clone(), seq: msg.seq };
                // The alert is stored before anything is written back: a sender
                // whose socket fails right now (a closed tab) still reaches
                // whoever is on duty, and a `sent` means the alert is stored too.
                let alerted = match verdict.crisis {
                    true => Some(crisis::raise_alert(self.app.clone(), def.clone(), msg).await),
                    false => None,
                };
                self.write_with_queued(Some(encode(&sent))).await?;
                if let Some(kind) = verdict.pii {
                    let text = format!("Your message looks like it contains {kind}. Please take care sharing details that could identify you or others.");
                    let notice = Notice { room: Some(room_id.clone()), kind: NoticeKind::PiiWarning, text, resources: None, facilitators_alerted: None };
                    self.reply(&ServerMessage::Notice(notice)).await?;
                }
                if let Some(alerted) = alerted {
                    let locale = self.locale.as_deref();
                    let notice = Notice {
                        room: Some(room_id.clone()),
                        kind: NoticeKind::CrisisResources,
                        text: self.app.safety.crisis_text(locale, alerted),
                        resources: Some(self.app.safety.resources_for(locale)),
                        facilitators_alerted: Some(alerted),
                    };
                    self.reply(&ServerMessage::Notice(notice)).await?;
                }
                Ok(())
            }
            Err(e) => {
                let body = ErrorBody::new(ErrorCode::Unavailable, format!("Not sent: {e}. Please try again.")).retry_after(1000);
                self.error(body.with_id(id)).await
            }
        }
    }
}

impl Session {
    /// Answer a request over its rate with `rate_limited`, or close a
    /// connection that keeps flooding (4429) after `flood_close_after` in a row.
    pub(super) async fn refuse_flood(&mut self, id: Option<RequestId>, wait: Duration, msg: &str) -> Step {
        self.strikes += 1;
        if self.strikes > self.app.config.limits.flood_close_after {
            return Err(End::Close(CloseCode::RateLimited, "flooding"));
        }
        let body = ErrorBody::new(ErrorCode::RateLimited, msg).retry_after(wait.as_millis() as u64 + 1);
        self.error(body.with_id(id)).await
    }

    /// Take a token for a room action (join, leave, hand, report); `Err` is
    /// the step to return instead when there is none.
    pub(super) async fn throttle_action(&mut self, id: &Option<RequestId>) -> Result<(), Step> {
        match self.actions.take(Instant::now()) {
            Ok(()) => {
                self.strikes = 0;
                Ok(())
            }
            Err(wait) => Err(self.refuse_flood(id.clone(), wait, "That's a lot at once. Please wait a moment and try again.").await),
        }
    }
}
