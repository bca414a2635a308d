//! `join`: bans, rules, the staff scope, the broker's readiness, then the
//! hub's `joined` (with a resume's missed messages).

use super::*;

impl Session {
    pub(super) async fn join(&mut self, id: Option<RequestId>, room: RoomId, accept_rules: Option<u32>, since: Option<kindred_protocol::Position>) -> Step {
        // Forget rooms the hub has taken this connection out of, so they do not
        // count against the limit.
        let (hub, conn) = (&self.app.hub, self.conn);
        self.rooms.retain(|id, _| hub.room(id).is_some_and(|r| r.has_conn(conn)));
        let identity = self.identity.as_ref().expect("join is handled after hello");
        if !self.rooms.contains_key(&room) && self.rooms.len() >= self.app.config.limits.max_rooms_per_connection {
            return self.error(ErrorBody::new(ErrorCode::Forbidden, t("too-many-rooms")).with_id(id)).await;
        }
        let account = identity.account.clone();
        if let Some(ban) = self.app.moderation.banned(&room, &account) {
            let note = ban.reason.clone().unwrap_or_else(|| t("banned"));
            let mut body = ErrorBody::new(ErrorCode::Banned, note);
            body.until = ban.until_text();
            return self.error(body.with_id(id)).await;
        }
        let muted = self.app.moderation.muted_until(&room, &account);
        let accept_rules = self.app.remember_rules(&account, &room, accept_rules);
        // Outside its token's scope a staff connection is a member in every
        // way: shown as one, bound by locks and modes, sent nothing for staff.
        let role = if self.may_moderate(&room) { identity.role } else { kindred_protocol::Role::Member };
        let handle = if self.handle_per_room { self.app.auth.generated_handle(&account, Some(&room)) } else { self.handle.clone() };
        let request = JoinRequest {
            conn: self.conn,
            member_id: self.app.auth.member_id(&account, &room),
            account,
            handle,
            role,
            accept_rules,
            since,
            outbox: self.outbox.clone(),
            muted,
        };
        if let Some(target) = self.app.hub.room(&room) {
            if let Err(_unavailable) = self.app.broker.activate(&room, super::send::retention(&self.app, &target)).await {
                let body = ErrorBody::new(ErrorCode::Unavailable, t("join-unavailable")).retry_after(1000);
                return self.error(body.with_id(id)).await;
            }
        }
        match self.app.hub.join(&room, request) {
            Ok(joined) => {
                self.rooms.insert(room.clone(), joined.me.clone());
                self.reply(&ServerMessage::Joined {
                    id,
                    room: joined.info,
                    me: joined.me,
                    members: joined.members,
                    history: joined.history,
                    epoch: joined.epoch,
                    seq: joined.seq,
                    recovered: joined.recovered,
                })
                .await?;
                if self.may_moderate(&room) {
                    // A facilitator arriving late sees the reports still open and the queue.
                    for (_, report) in self.app.moderation.open_reports(Some(&room)) {
                        self.reply(&ServerMessage::ReportFiled { room: room.clone(), report }).await?;
                    }
                    if let Some(r) = self.app.hub.room(&room) {
                        self.reply(&ServerMessage::Hands { room: room.clone(), queue: r.hands() }).await?;
                    }
                }
                Ok(())
            }
            Err(refusal) => self.error(ErrorBody::from(refusal).with_id(id)).await,
        }
    }
}
