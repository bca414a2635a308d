//! What facilitators change in a room: its live settings, members' flags
//! (mute, hand, floor), removals and deleted messages, and the room's memory
//! of who it has seen.

use super::*;

/// Moderation effects on a live room. Authorization and persistence are the
/// caller's; these only change what this node's room shows and tell its members.
impl Room {
    pub(super) fn update_frame(def: &RoomDef, state: &RoomState) -> Frame {
        encode(&ServerMessage::RoomUpdate { room: def.id.clone(), info: Self::info(def, state) })
    }

    /// Change the room's live settings and send everyone a `room_update`.
    pub(crate) fn update(&self, f: impl FnOnce(&mut RoomSettings<'_>)) {
        let def = self.def();
        let mut state = self.state.lock();
        {
            let state = &mut *state;
            let mut settings = RoomSettings {
                slow_mode_s: &mut state.slow_mode_s,
                locked: &mut state.locked,
                topic_now: &mut state.topic_now,
                mode: &mut state.mode,
                pinned: &mut state.pinned,
                session: &mut state.session,
            };
            f(&mut settings);
        }
        if state.mode == RoomMode::Open {
            state.hands.clear();
        }
        let frame = Self::update_frame(&def, &state);
        self.fan_out(&def.id, &mut state, &frame, Audience::All);
        self.emit(&def.id, Event::Settings(Box::new(state.settings())));
    }

    /// The account behind a member id: someone present, or the author of a message in the log.
    pub(crate) fn account_of(&self, member_id: &MemberId) -> Option<AccountId> {
        let state = self.state.lock();
        if let Some(p) = state.members.get(member_id) {
            return Some(p.account.clone());
        }
        if let Some(seen) = state.seen.get(member_id) {
            return Some(seen.account.clone());
        }
        state.log.iter().find(|s| &s.msg.from.member_id == member_id).map(|s| s.account.clone())
    }

    /// Whether `member_id` is in the room now or was recently.
    pub(crate) fn has_seen(&self, member_id: &MemberId) -> bool {
        let state = self.state.lock();
        state.members.contains_key(member_id) || state.seen.contains_key(member_id)
    }

    /// Note that `member_id` (of `account`) was in the room. Kept for the
    /// room's history retention (at least an hour), and for at most
    /// `SEEN_MAX` members, the longest ago forgotten first.
    pub(super) fn remember(&self, def: &RoomDef, state: &mut RoomState, member_id: &MemberId, account: &AccountId) {
        const SEEN_MAX: usize = 4096;
        let now = Instant::now();
        let keep = self.retention(def).max(Duration::from_secs(3600));
        match state.seen.get_mut(member_id) {
            // Seen again within what the room remembers: still the same first time.
            Some(seen) if now.duration_since(seen.last) < keep => seen.last = now,
            _ => {
                state.seen.insert(member_id.clone(), Seen { account: account.clone(), first: now, last: now });
            }
        }
        if state.seen.len() > SEEN_MAX {
            state.seen.retain(|_, seen| now.duration_since(seen.last) < keep);
            if state.seen.len() > SEEN_MAX {
                let mut ages: Vec<Instant> = state.seen.values().map(|seen| seen.last).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() - SEEN_MAX / 2];
                state.seen.retain(|_, seen| seen.last >= cutoff);
            }
        }
    }

    /// Whether a member joining now is new to the room, for its staff: the
    /// room has not seen it, nor a message of its in the history, within
    /// the history's retention (or an hour), other than in this visit — a
    /// visit being the `FIRST_VISIT` after the room first saw it, so a
    /// newcomer who reloads the page is still new. Derived from what the
    /// room holds anyway; nothing is kept for it.
    pub(super) fn is_first_visit(&self, state: &RoomState, member_id: &MemberId, account: &AccountId) -> bool {
        /// How long one visit lasts, for this purpose: a long session.
        const FIRST_VISIT: Duration = Duration::from_secs(3 * 3600);
        let keep = self.retention(&self.def()).max(Duration::from_secs(3600));
        match state.seen.get(member_id) {
            Some(seen) if seen.last.elapsed() < keep => seen.first.elapsed() < FIRST_VISIT,
            _ => !state.log.iter().any(|s| &s.account == account),
        }
    }

    pub fn member(&self, member_id: &MemberId) -> Option<Member> {
        self.state.lock().members.get(member_id).map(|p| p.member.clone())
    }

    pub(crate) fn find_message(&self, id: &kindred_protocol::MessageId) -> Option<ChatMessage> {
        let state = self.state.lock();
        state.log.iter().find(|s| &s.msg.message_id == id).map(|s| Self::with_reactions(&state, s.msg.clone()))
    }

    /// The account that wrote a message still in the log.
    pub(crate) fn author_of(&self, id: &kindred_protocol::MessageId) -> Option<AccountId> {
        self.state.lock().log.iter().find(|s| &s.msg.message_id == id).map(|s| s.account.clone())
    }

    /// Remove a message from the log (and so from joins and resumes) and tell
    /// the room; a pinned message is unpinned with it.
    pub(crate) fn delete_message(&self, id: &kindred_protocol::MessageId) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        let Some(seq) = state.log.iter().find(|s| &s.msg.message_id == id).map(|s| s.msg.seq) else { return false };
        self.remove_from_log(&room, &mut state, id);
        self.emit(&room, Event::Deleted { message_id: id.clone(), seq });
        let pinned = state.pinned.as_ref().is_some_and(|p| &p.message_id == id);
        drop(state);
        if pinned {
            self.update(|s| *s.pinned = None);
        }
        true
    }

    pub(super) fn remove_from_log(&self, room: &RoomId, state: &mut RoomState, id: &kindred_protocol::MessageId) {
        state.reactions.remove(id);
        let staff = match state.log.iter().position(|s| &s.msg.message_id == id) {
            Some(at) => state.log.remove(at).is_some_and(|s| s.msg.staff),
            None => false,
        };
        let frame = encode(&ServerMessage::MessageDeleted { room: room.clone(), message_id: id.clone() });
        let audience = if staff { Audience::Staff } else { Audience::All };
        self.fan_out(room, state, &frame, audience);
    }

    /// Remove every message `account` wrote; the ids removed.
    pub(crate) fn delete_by_account(&self, account: &AccountId) -> Vec<kindred_protocol::MessageId> {
        let room = self.id();
        self.emit(&room, Event::Forget { account: account.clone() });
        let removed = self.delete_by_account_here(&room, account);
        let pinned = self.state.lock().pinned.as_ref().is_some_and(|p| removed.contains(&p.message_id));
        if pinned {
            self.update(|s| *s.pinned = None);
        }
        removed
    }

    pub(super) fn delete_by_account_here(&self, room: &RoomId, account: &AccountId) -> Vec<kindred_protocol::MessageId> {
        let room = room.clone();
        let mut state = self.state.lock();
        let mut removed = Vec::new();
        state.log.retain(|s| {
            let mine = &s.account == account;
            if mine {
                removed.push(s.msg.message_id.clone());
            }
            !mine
        });
        for id in &removed {
            state.reactions.remove(id);
            let frame = encode(&ServerMessage::MessageDeleted { room: room.clone(), message_id: id.clone() });
            self.fan_out(&room, &mut state, &frame, Audience::All);
        }
        removed
    }

    /// Send a frame to one member's connections only.
    pub(crate) fn send_to(&self, member_id: &MemberId, frame: &Frame) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        let Some(local) = state.members.get(member_id).map(Present::is_local) else { return false };
        if local {
            self.fan_out(&room, &mut state, frame, Audience::Member(member_id));
        } else {
            self.emit(&room, Event::Frame { frame: frame.as_str().to_owned(), audience: Aud::Member(member_id.clone()) });
        }
        true
    }

    /// Take a member out of the room (kick or ban): `notice` goes to it alone
    /// first, then the room sees it leave.
    pub(crate) fn remove_member(&self, member_id: &MemberId, notice: &Frame) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        let Some(local) = state.members.get(member_id).map(Present::is_local) else { return false };
        if !local {
            // Its own node takes it out; the room then hears it leave from there.
            self.emit(&room, Event::Remove { member_id: member_id.clone(), notice: notice.as_str().to_owned() });
            return true;
        }
        self.remove_local_member(&room, &mut state, member_id, notice);
        true
    }

    pub(super) fn remove_local_member(&self, room: &RoomId, state: &mut RoomState, member_id: &MemberId, notice: &Frame) {
        let room = room.clone();
        self.fan_out(&room, state, notice, Audience::Member(member_id));
        state.conns.retain(|_, c| &c.member_id != member_id);
        if let Some(p) = state.members.get_mut(member_id) {
            p.conns = 1;
        }
        self.drop_member_conn(&room, state, member_id);
    }

    /// Change a present member's flags and tell the room with `member_update`.
    pub(super) fn change_member(&self, state: &mut RoomState, member_id: &MemberId, f: impl FnOnce(&mut Member)) -> bool {
        let room = self.id();
        let Some(p) = state.members.get_mut(member_id) else { return false };
        f(&mut p.member);
        let member = p.member.clone();
        self.emit(&room, Event::Member { member: member.clone() });
        self.member_changed(&room, state, member);
        true
    }

    pub(super) fn member_changed(&self, room: &RoomId, state: &mut RoomState, member: Member) {
        if let Some(p) = state.members.get(&member.member_id).filter(|p| p.is_local() && self.link.is_cluster()) {
            self.link.send(Outgoing::Present(room.clone(), member.clone(), p.account.clone()), &self.metrics);
        }
        let key = Key::new(Kind::Member, (room, &member.member_id));
        let frames = Self::member_frames(&member, |member| ServerMessage::MemberUpdate { room: room.clone(), member });
        self.fan_out_split(room, state, &frames, Audience::All, Some(key));
    }

    pub(crate) fn set_muted(&self, member_id: &MemberId, muted_until: Option<Option<String>>) -> bool {
        let mut state = self.state.lock();
        self.change_member(&mut state, member_id, |m| {
            m.muted = muted_until.is_some();
            m.muted_until = muted_until.flatten();
        })
    }

    pub(super) fn send_hands(&self, state: &mut RoomState) {
        let room = self.id();
        self.emit(&room, Event::Hands { queue: state.hands.clone() });
        let frame = encode(&ServerMessage::Hands { room: room.clone(), queue: state.hands.clone() });
        self.fan_out_keyed(&room, state, &frame, Audience::Staff, Some(Key::new(Kind::Hands, &room)));
    }

    /// Raise or lower a member's hand; staff see the queue.
    pub(crate) fn set_hand(&self, member_id: &MemberId, raised: bool) -> bool {
        let mut state = self.state.lock();
        match state.members.get(member_id) {
            None => return false,
            // Already so: nothing to tell anyone.
            Some(p) if p.member.hand_raised == raised => return true,
            Some(_) => {}
        }
        if !self.change_member(&mut state, member_id, |m| m.hand_raised = raised) {
            return false;
        }
        state.hands.retain(|m| m != member_id);
        if raised {
            state.hands.push(member_id.clone());
        }
        self.send_hands(&mut state);
        true
    }

    /// Give the floor to `member_id` (taking it from whoever held it), or end it.
    pub(crate) fn set_floor(&self, member_id: &MemberId, give: bool) -> bool {
        let mut state = self.state.lock();
        if !state.members.contains_key(member_id) {
            return false;
        }
        if give {
            let holders: Vec<MemberId> =
                state.members.values().filter(|p| p.member.has_floor && &p.member.member_id != member_id).map(|p| p.member.member_id.clone()).collect();
            for holder in holders {
                self.change_member(&mut state, &holder, |m| m.has_floor = false);
            }
            state.hands.retain(|m| m != member_id);
            self.change_member(&mut state, member_id, |m| {
                m.has_floor = true;
                m.hand_raised = false;
            });
            self.send_hands(&mut state);
        } else {
            self.change_member(&mut state, member_id, |m| m.has_floor = false);
        }
        true
    }

    /// Who holds the floor now, if anyone.
    pub(crate) fn floor_holder(&self) -> Option<MemberId> {
        self.state.lock().members.values().find(|p| p.member.has_floor).map(|p| p.member.member_id.clone())
    }

    /// The pinned message's id, if one is pinned.
    pub(crate) fn pinned_id(&self) -> Option<MessageId> {
        self.state.lock().pinned.as_ref().map(|m| m.message_id.clone())
    }

    /// Whether a facilitator's session is running.
    pub(crate) fn has_session(&self) -> bool {
        self.state.lock().session.is_some()
    }

    /// When the running session started, if one is running.
    pub(crate) fn session_started_at(&self) -> Option<chrono::DateTime<Utc>> {
        let started = self.state.lock().session.as_ref()?.started_at.clone();
        chrono::DateTime::parse_from_rfc3339(&started).ok().map(|t| t.with_timezone(&Utc))
    }

    pub(crate) fn hands(&self) -> Vec<MemberId> {
        self.state.lock().hands.clone()
    }
}

/// The live settings a facilitator can change.
pub(crate) struct RoomSettings<'a> {
    pub slow_mode_s: &'a mut u32,
    pub locked: &'a mut bool,
    pub topic_now: &'a mut Option<String>,
    pub mode: &'a mut RoomMode,
    pub pinned: &'a mut Option<Box<ChatMessage>>,
    pub session: &'a mut Option<SessionInfo>,
}
