//! Quiet reactions to messages: anonymous counts per kind, one per member
//! per kind, for as long as the message is in the room's history. On one
//! node the room keeps who gave which (memory only, dropped with the
//! message); in a cluster Redis keeps that (`server/src/lua/react.lua`) and
//! every node keeps the counts the script publishes, in the order Redis
//! made them, so a reaction is counted once whichever node it came through.

use super::*;
use kindred_protocol::ReactionCounts;
use std::collections::HashSet;

/// A reaction given (`on`) or taken back.
#[derive(Debug, Clone)]
pub(crate) struct Reaction {
    pub message_id: MessageId,
    pub member_id: MemberId,
    /// One of `config::REACTIONS`.
    pub kind: &'static str,
    pub on: bool,
}

/// One message's reactions on this node.
#[derive(Debug, Default)]
pub(crate) struct Reacts {
    counts: ReactionCounts,
    /// One node only: who gave which (in a cluster, Redis knows).
    by: HashSet<(&'static str, MemberId)>,
}

impl Room {
    /// `msg` with its reaction counts, when it has any.
    pub(super) fn with_reactions(state: &RoomState, mut msg: ChatMessage) -> ChatMessage {
        msg.reactions = state.reactions.get(&msg.message_id).map(|r| r.counts.clone()).filter(|c| !c.is_empty());
        msg
    }

    /// When a message the whole room sees was stored (ms since the Unix
    /// epoch), while it is in the history: what can be reacted to.
    pub(crate) fn reactable(&self, id: &MessageId) -> Option<u64> {
        let state = self.state.lock();
        let stored = state.log.iter().find(|s| &s.msg.message_id == id && !s.msg.staff)?;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Some(now_ms.saturating_sub(stored.at.elapsed().as_millis() as u64))
    }

    /// Take one of the member's reaction tokens (`reactions_per_10s`), or say
    /// how long until one is free. Kept with the room, like typing's throttle.
    pub(crate) fn take_reaction_token(&self, member_id: &MemberId) -> Result<(), Duration> {
        let per_10s = self.limits.reactions_per_10s;
        let mut state = self.state.lock();
        let bucket = state.react_budget.entry(member_id.clone()).or_insert_with(|| crate::ratelimit::TokenBucket::new(per_10s, Duration::from_secs(10)));
        bucket.take(Instant::now())
    }

    /// One node: give or take back a reaction, and tell the room the new
    /// counts if they changed. False when the message is no longer in the history.
    pub(crate) fn react(&self, r: &Reaction) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        if !state.log.iter().any(|s| s.msg.message_id == r.message_id && !s.msg.staff) {
            return false;
        }
        let reacts = state.reactions.entry(r.message_id.clone()).or_default();
        let who = (r.kind, r.member_id.clone());
        let changed = if r.on { reacts.by.insert(who) } else { reacts.by.remove(&who) };
        if changed {
            let n = reacts.by.iter().filter(|(k, _)| *k == r.kind).count() as u32;
            match n {
                0 => reacts.counts.remove(r.kind),
                n => reacts.counts.insert(r.kind.to_owned(), n),
            };
            self.send_counts(&room, &mut state, &r.message_id);
        }
        true
    }

    /// One node: take back every reaction `member_id` gave (`forget_me`),
    /// telling the room the counts that changed.
    pub(crate) fn forget_reactions(&self, member_id: &MemberId) {
        let room = self.id();
        let mut state = self.state.lock();
        let mut changed = Vec::new();
        for (id, reacts) in state.reactions.iter_mut() {
            let before = reacts.by.len();
            reacts.by.retain(|(_, m)| m != member_id);
            if reacts.by.len() != before {
                reacts.counts.clear();
                for (kind, _) in &reacts.by {
                    *reacts.counts.entry((*kind).to_owned()).or_default() += 1;
                }
                changed.push(id.clone());
            }
        }
        for id in changed {
            self.send_counts(&room, &mut state, &id);
        }
    }

    /// A cluster node: the counts Redis published after a change.
    pub(super) fn set_counts(&self, room: &RoomId, state: &mut RoomState, id: &MessageId, counts: ReactionCounts) {
        if !state.log.iter().any(|s| &s.msg.message_id == id) {
            return;
        }
        state.reactions.entry(id.clone()).or_default().counts = counts;
        self.send_counts(room, state, id);
    }

    /// A cluster node warming the room: the counts Redis holds for the
    /// messages now in its log (what it holds for older ones is ignored).
    pub(crate) fn load_counts(&self, counts: impl IntoIterator<Item = (MessageId, ReactionCounts)>) {
        let mut state = self.state.lock();
        state.reactions.clear();
        for (id, counts) in counts {
            if state.log.iter().any(|s| s.msg.message_id == id) {
                state.reactions.entry(id).or_default().counts = counts;
            }
        }
    }

    /// `reactions` to everyone, superseding older counts of the same
    /// message still queued for a slow reader.
    fn send_counts(&self, room: &RoomId, state: &mut RoomState, id: &MessageId) {
        let counts = state.reactions.get(id).map(|r| r.counts.clone()).unwrap_or_default();
        if counts.is_empty() {
            state.reactions.remove(id);
        }
        let frame = encode(&ServerMessage::Reactions { room: room.clone(), message_id: id.clone(), counts });
        self.fan_out_keyed(room, state, &frame, Audience::All, Some(Key::new(Kind::Reactions, (room, id))));
    }
}
