//! Members control their own words: `unsend` takes back one of the
//! member's own messages, `react` gives or takes back a quiet, anonymous
//! reaction. Both are authorized here, on the server, and rate limited:
//! each makes the server write to the whole room.

use super::moderate::{forbidden, not_found};
use super::*;
use crate::hub::Reaction;

impl Session {
    /// `unsend`: the author's own message, and only that, leaves the history
    /// on every node; the room gets `message_deleted`.
    pub(super) async fn unsend(&mut self, id: Option<RequestId>, room_id: RoomId, message_id: MessageId) -> Step {
        if !self.rooms.contains_key(&room_id) {
            return self.error(not_member(&room_id).with_id(id)).await;
        }
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        let Some(room) = self.app.hub.room(&room_id) else { return self.error(not_member(&room_id).with_id(id)).await };
        let account = &self.identity.as_ref().expect("unsend is handled after hello").account;
        match room.author_of(&message_id) {
            None => self.error(not_found("no-such-message").with_id(id)).await,
            Some(author) if author != *account => self.error(forbidden("not-your-message").with_id(id)).await,
            Some(_) => {
                if !room.delete_message(&message_id) {
                    // Deleted by a facilitator meanwhile: gone either way.
                    return self.error(not_found("no-such-message").with_id(id)).await;
                }
                self.reply(&ServerMessage::Unsent { id, room: room_id, message_id }).await
            }
        }
    }

    /// `react`: one of the server's reactions to a message still in the
    /// history; counted once per member and kind.
    pub(super) async fn react(&mut self, id: Option<RequestId>, room_id: RoomId, message_id: MessageId, reaction: String, on: bool) -> Step {
        let Some(me) = self.rooms.get(&room_id).cloned() else { return self.error(not_member(&room_id).with_id(id)).await };
        let allowed = self.app.config.limits.reactions();
        let Some(kind) = allowed.iter().copied().find(|k| *k == reaction) else {
            let msg = match allowed.is_empty() {
                true => t("reactions-off"),
                false => f("reactions-allowed", &[("list", &allowed.join(", "))]),
            };
            return self.error(ErrorBody::new(ErrorCode::BadRequest, msg).with_id(id)).await;
        };
        let Some(room) = self.app.hub.room(&room_id) else { return self.error(not_member(&room_id).with_id(id)).await };
        if let Err(wait) = room.take_reaction_token(&me.member_id) {
            return self.refuse_flood(id, wait, &t("many-reactions")).await;
        }
        self.strikes = 0;
        let account = self.identity.as_ref().expect("react is handled after hello").account.clone();
        if let Some(mute) = self.app.moderation.muted(&room_id, &account) {
            return self.error(send::muted(&mute).with_id(id)).await;
        }
        let Some(stored_ms) = room.reactable(&message_id) else { return self.error(not_found("no-such-message").with_id(id)).await };
        let reaction = Reaction { message_id: message_id.clone(), member_id: me.member_id.clone(), kind, on };
        if let Err(_unavailable) = self.app.broker.react(&room_id, reaction, stored_ms, send::retention(&self.app, &room)).await {
            let body = ErrorBody::new(ErrorCode::Unavailable, t("not-saved")).retry_after(1000);
            return self.error(body.with_id(id)).await;
        }
        self.reply(&ServerMessage::Reacted { id, room: room_id, message_id }).await
    }
}
