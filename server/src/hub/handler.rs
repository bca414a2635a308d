//! The hub as its broker's [`Handler`]: what arrives for a room id goes to
//! that room, if this node has it.

use super::*;
use crate::broker::{Gap, Handler};

impl Handler for Hub {
    fn on_message(&self, room: &RoomId, epoch: &str, stored: Stored) -> Option<Gap> {
        self.room(room)?.deliver(epoch, stored)
    }

    fn on_event(&self, room: &RoomId, node: &Arc<str>, event: Event) {
        if let Some(r) = self.room(room) {
            r.apply_remote(node, event);
        }
    }

    fn on_loading(&self, room: &RoomId) {
        if let Some(r) = self.room(room) {
            r.begin_load();
        }
    }

    fn on_history(&self, room: &RoomId, epoch: &str, seq: u64, entries: Vec<Stored>) -> Option<Gap> {
        self.room(room)?.load(epoch, seq, entries)
    }

    fn on_filled(&self, room: &RoomId, epoch: &str, to: u64, entries: Vec<Stored>) -> Option<Gap> {
        self.room(room)?.filled(epoch, to, entries)
    }

    fn on_settings(&self, room: &RoomId, settings: Settings) {
        if let Some(r) = self.room(room) {
            r.set_settings(settings);
        }
    }

    fn on_presence(&self, room: &RoomId, remote: Vec<RemoteMember>, read_at: Instant) {
        if let Some(r) = self.room(room) {
            r.sync_remote_members(remote, read_at);
        }
    }

    fn on_node_gone(&self, node: &str) -> usize {
        self.rooms().iter().map(|r| r.forget_node(node)).sum()
    }

    fn on_reaction(&self, room: &RoomId, reaction: &Reaction) {
        if let Some(r) = self.room(room) {
            // False when the message left the history meanwhile: nothing to count.
            let _counted = r.react(reaction);
        }
    }

    fn on_reactions_forgotten(&self, room: &RoomId, member_id: &MemberId) {
        if let Some(r) = self.room(room) {
            r.forget_reactions(member_id);
        }
    }

    fn on_counts(&self, room: &RoomId, counts: Vec<(kindred_protocol::MessageId, kindred_protocol::ReactionCounts)>) {
        if let Some(r) = self.room(room) {
            r.load_counts(counts);
        }
    }

    fn position(&self, room: &RoomId) -> Option<(String, u64)> {
        self.room(room).map(|r| r.position())
    }

    fn needs_reload(&self, room: &RoomId, epoch: &str) -> bool {
        self.room(room).is_some_and(|r| r.needs_reload(epoch))
    }

    fn local_members(&self, room: &RoomId) -> Vec<(Member, AccountId)> {
        self.room(room).map(|r| r.local_members()).unwrap_or_default()
    }

    fn conn_count(&self, room: &RoomId) -> usize {
        self.room(room).map_or(0, |r| r.conn_count())
    }

    fn reactable(&self, room: &RoomId, message_id: &kindred_protocol::MessageId) -> Option<u64> {
        self.room(room)?.reactable(message_id)
    }

    fn room_ids(&self) -> Vec<RoomId> {
        self.inner.rooms.iter().map(|r| r.key().clone()).collect()
    }
}
