//! `send`: the checks a message passes (membership, mute, the room's live
//! rules, length, safety), the broker's append, and `sent`; and the rate
//! limits every repeated request shares.

use super::*;
use crate::broker::{BoxFuture, Retention};
use crate::refusal::Refusal;
use futures_util::FutureExt;

/// The most messages of one connection waiting for their commit; the next
/// one waits for the oldest. Bounds what a connection holds in the broker.
const MAX_PENDING: usize = 16;

/// A message the broker is storing, and what its `sent` needs.
pub(super) struct Pending {
    id: Option<RequestId>,
    room: RoomId,
    message_id: MessageId,
    /// Personal details to warn of once it is sent.
    pii: Option<&'static str>,
    /// The message's seq once it is stored; `None`: the broker could not store it.
    stored: BoxFuture<'static, Option<u64>>,
}

/// Completes when the oldest pending message is stored or refused (never,
/// with none). Cancel-safe: the append stays where it is. A `poll_fn`, not
/// an `async fn`: every connection's session future holds it.
pub(super) fn oldest_stored(pending: &mut VecDeque<Pending>) -> impl Future<Output = Option<u64>> + '_ {
    std::future::poll_fn(move |cx| match pending.front_mut() {
        Some(oldest) => oldest.stored.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

impl Session {
    /// A message: its shape, the sender's rate, the room's live rules and the
    /// safety checks, then the broker's append; `sent` once it is durable,
    /// then the notices the text called for.
    ///
    /// Messages are pipelined where the broker keeps their order in flight
    /// (the embedded one): the connection reads on while the broker stores
    /// them (a commit takes milliseconds), and their answers go out in order
    /// as commits land, several in one write (`on_stored`). Under load that
    /// is one wake-up and one socket write per commit, not per message
    /// (measured: docs/benchmarks.md). A crisis message is not pipelined:
    /// its alert is raised before its `sent`, after everything before it.
    pub(super) async fn send(
        &mut self,
        id: Option<RequestId>,
        room_id: RoomId,
        text: String,
        reply_to: Option<MessageId>,
        cw: Option<String>,
        staff: bool,
    ) -> Step {
        let Some(me) = self.rooms.get(&room_id).cloned() else {
            let body = if self.app.hub.room(&room_id).is_some() { not_member(&room_id) } else { no_such_room(&room_id) };
            return self.error(body.with_id(id)).await;
        };
        let cw = match check_shape(&self.app.config.limits, &text, cw, reply_to.as_ref()) {
            Ok(cw) => cw,
            Err(refusal) => return self.error(ErrorBody::from(refusal).with_id(id)).await,
        };
        if let Err(wait) = self.bucket.take(Instant::now()) {
            return self.refuse_flood(id, wait, &t("sending-quickly")).await;
        }
        self.strikes = 0;
        let Some(room) = self.app.hub.room(&room_id) else {
            return self.error(not_member(&room_id).with_id(id)).await;
        };
        let account = self.identity.as_ref().expect("send is handled after hello").account.clone();
        if let Some(mute) = self.app.moderation.muted(&room_id, &account) {
            return self.error(muted(&mute).with_id(id)).await;
        }
        if let Err(refusal) = room.admit_send(&me.member_id, me.role, staff) {
            return self.error(ErrorBody::from(refusal).with_id(id)).await;
        }
        let def = room.def();
        let verdict = match self.check_content(&def, &text) {
            Ok(verdict) => verdict,
            Err(refusal) => return self.error(ErrorBody::from(refusal).with_id(id)).await,
        };
        let mut draft = Draft {
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
                reactions: None,
            },
            account,
        };
        let retention = retention(&self.app, &room);
        if !verdict.crisis {
            let app = self.app.clone();
            let (room, message_id) = (room_id.clone(), draft.msg.message_id.clone());
            let mut stored: BoxFuture<'static, _> = Box::pin(async move { app.broker.append(&room_id, &draft, retention).await.ok().map(|at| at.seq) });
            // The first poll hands the message to the broker now, in the order
            // messages arrive; what is left is waiting for its commit.
            if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(stored.as_mut().poll(cx))).await {
                stored = Box::pin(std::future::ready(done));
            }
            self.pending.push_back(Pending { id, room, message_id, pii: verdict.pii, stored });
            if self.pending.len() > MAX_PENDING || !self.app.broker.pipelines() {
                let stored = oldest_stored(&mut self.pending).await;
                return Box::pin(self.on_stored(stored)).await;
            }
            return Ok(());
        }
        Box::pin(self.settle()).await?;
        let Draft { msg, .. } = match self.app.broker.append(&room_id, &draft, retention).await {
            Ok(at) => {
                (draft.msg.seq, draft.msg.staff_seq) = (at.seq, at.staff_seq);
                draft
            }
            Err(_unavailable) => return self.error(not_stored().with_id(id)).await,
        };
        Metrics::add(&self.app.metrics.messages_in, 1);
        let sent = ServerMessage::Sent { id, room: room_id.clone(), message_id: msg.message_id.clone(), seq: msg.seq };
        // The alert is stored before anything is written back: a sender whose
        // socket fails right now (a closed tab) still reaches whoever is on
        // duty, and a `sent` means the alert is stored too.
        let alerted = crisis::raise_alert(self.app.clone(), def.clone(), msg).await;
        self.write_with_queued(Some(encode(&sent))).await?;
        self.after_sent(&room_id, verdict.pii, Some(alerted)).await
    }

    /// The oldest pending message is stored (or refused): answer it, and
    /// those after it whose commits have landed too, in one write.
    pub(super) async fn on_stored(&mut self, stored: Option<u64>) -> Step {
        let mut frames = Vec::new();
        let mut warn = None;
        let mut next = Some(stored);
        while let Some(stored) = next.take() {
            let Some(p) = self.pending.pop_front() else { break };
            frames.push(match stored {
                Some(seq) => {
                    Metrics::add(&self.app.metrics.messages_in, 1);
                    encode(&ServerMessage::Sent { id: p.id, room: p.room.clone(), message_id: p.message_id, seq })
                }
                None => {
                    self.app.metrics.error(ErrorCode::Unavailable);
                    encode(&ServerMessage::Error(not_stored().with_id(p.id)))
                }
            });
            // A warning follows its own `sent`, before the next one.
            if let Some(kind) = p.pii {
                warn = Some((p.room, kind));
                break;
            }
            next = self.pending.front_mut().and_then(|p| (&mut p.stored).now_or_never());
        }
        self.write_with_queued(frames).await?;
        match warn {
            Some((room, kind)) => self.after_sent(&room, Some(kind), None).await,
            None => Ok(()),
        }
    }

    /// Answer every pending message, oldest first (before any other request's answer).
    pub(super) async fn settle(&mut self) -> Step {
        while !self.pending.is_empty() {
            let stored = oldest_stored(&mut self.pending).await;
            Box::pin(self.on_stored(stored)).await?;
        }
        Ok(())
    }

    /// The connection is ending: messages still on their way to the broker
    /// are stored either way; a peer that can still be written to
    /// (`answerable`) hears that they were.
    pub(super) async fn finish_pending(&mut self, answerable: bool) {
        if answerable && self.settle().await.is_ok() {
            return;
        }
        while let Some(p) = self.pending.pop_front() {
            let _unanswerable = p.stored.await;
        }
    }

    /// The operator's blocklist, and personal details where the room blocks
    /// them; the verdict (crisis terms, personal details to warn of) otherwise.
    fn check_content(&self, def: &crate::rooms::RoomDef, text: &str) -> Result<crate::safety::Verdict, Refusal> {
        let verdict = self.app.safety.check(text, &def.language);
        if verdict.blocked {
            return Err(Refusal::Blocked);
        }
        let pii_action = def.pii.unwrap_or(self.app.safety.config().pii);
        if let (Some(kind), crate::safety::PiiAction::Block) = (verdict.pii, pii_action) {
            return Err(Refusal::PersonalDetails { kind });
        }
        Ok(verdict)
    }

    /// After `sent`: a private warning about personal details, and for a
    /// crisis the helplines with how many people on duty were told.
    async fn after_sent(&mut self, room_id: &RoomId, pii: Option<&'static str>, alerted: Option<u32>) -> Step {
        if let Some(kind) = pii {
            let text = f("pii-warning", &[("kind", &crate::texts::pii_kind(kind))]);
            let notice = Notice { room: Some(room_id.clone()), kind: NoticeKind::PiiWarning, text, resources: None, facilitators_alerted: None };
            self.write(encode(&ServerMessage::Notice(notice))).await?;
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
            self.write(encode(&ServerMessage::Notice(notice))).await?;
        }
        Ok(())
    }
}

/// The message's shape within the limits: some text, not too long, a short
/// content warning (returned tidied), a `reply_to` that could be an id.
fn check_shape(limits: &crate::config::Limits, text: &str, cw: Option<String>, reply_to: Option<&MessageId>) -> Result<Option<String>, Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::EmptyText);
    }
    let chars = text.chars().count();
    if chars > limits.max_text_chars as usize {
        return Err(Refusal::TooLong { chars, max: limits.max_text_chars });
    }
    let cw = cw.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if cw.as_ref().is_some_and(|c| c.chars().count() > limits.max_cw_chars as usize) {
        return Err(Refusal::WarningTooLong { max: limits.max_cw_chars });
    }
    if reply_to.is_some_and(|r| r.0.len() > 64) {
        return Err(Refusal::NotAMessageId);
    }
    Ok(cw)
}

/// The refusal of a message the broker could not store: try again shortly.
fn not_stored() -> ErrorBody {
    ErrorBody::new(ErrorCode::Unavailable, t("send-unavailable")).retry_after(1000)
}

/// How much of a room's history its broker keeps.
pub(super) fn retention(app: &crate::App, room: &crate::hub::Room) -> Retention {
    Retention { max_messages: app.config.limits.history_max_messages, ms: room.retention(&room.def()).as_millis() as u64 }
}

/// The refusal of a muted member's message: the facilitator's reason, and until when.
pub(super) fn muted(mute: &crate::moderation::Sanction) -> ErrorBody {
    let mut body = ErrorBody::new(ErrorCode::Muted, mute.reason.clone().unwrap_or_else(|| t("muted")));
    body.until = mute.until_text();
    if let Some(until) = mute.until {
        body.retry_after_ms = Some((until - Utc::now()).num_milliseconds().max(1) as u64);
    }
    body
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
            Err(wait) => Err(self.refuse_flood(id.clone(), wait, &t("a-lot-at-once")).await),
        }
    }
}
