//! A room's history on this node, as its broker orders it: messages are
//! delivered in `seq` order or wait in `pending` for a gap to be filled,
//! and loads and reloads replace the log. On one node the embedded broker
//! hands them over in order already; in a cluster they come from Redis.

use super::*;

impl Room {
    /// The position this node has delivered up to.
    pub(crate) fn position(&self) -> (String, u64) {
        let state = self.state.lock();
        (state.epoch.clone(), state.last_seq)
    }

    /// Start (re)loading history: arrivals wait until [`Room::load`].
    pub(crate) fn begin_load(&self) {
        self.state.lock().loading = true;
    }

    /// Replace the log with `entries` (oldest first, as stored in Redis, up to
    /// `seq`), then deliver whatever arrived meanwhile. Holes in `entries`
    /// are deleted messages. A changed epoch means the history was lost:
    /// this node's connections are asked to reconnect (1012) so every client
    /// learns it. Returns a gap to fill, if arrivals skipped ahead.
    pub(crate) fn load(&self, epoch: &str, seq: u64, entries: Vec<Stored>) -> Option<(u64, u64)> {
        let def = self.def();
        let mut state = self.state.lock();
        if state.epoch != epoch {
            for entry in state.conns.values() {
                entry.outbox.control.close(CloseCode::Restarting);
            }
            state.epoch = epoch.to_owned();
            state.pending.clear();
        }
        state.log = entries.into_iter().collect();
        let RoomState { log, participation, .. } = &mut *state;
        for stored in log.iter() {
            participation.count(epoch, stored);
        }
        state.last_seq = seq;
        state.pruned_through = state.log.iter().find(|s| !s.msg.staff).map_or(seq, |s| s.msg.seq.saturating_sub(1));
        state.loading = false;
        self.prune(&def, &mut state);
        self.drain_pending(&def, &mut state)
    }

    /// A message ordered by the broker: this node's own append, or in a
    /// cluster one from the subscription or a gap fill. It is
    /// delivered in `seq` order: one ahead of a gap waits for the gap to be
    /// filled; one already delivered is dropped. Returns a gap to fill.
    pub(crate) fn deliver(&self, epoch: &str, stored: Stored) -> Option<(u64, u64)> {
        let def = self.def();
        let mut state = self.state.lock();
        if state.loading {
            state.pending.insert(pending_key(&stored), stored);
            return None;
        }
        if epoch != state.epoch {
            // From a history this node has not loaded (see `needs_reload`).
            return None;
        }
        if stored.msg.staff {
            if state.log.iter().any(|s| s.msg.message_id == stored.msg.message_id) {
                return None;
            }
            self.push_and_send(&def, &mut state, stored);
            return None;
        }
        let seq = stored.msg.seq;
        if seq <= state.last_seq {
            return None;
        }
        if seq > state.last_seq + 1 {
            let from = state.last_seq + 1;
            state.pending.insert(pending_key(&stored), stored);
            return Some((from, seq - 1));
        }
        state.last_seq = seq;
        self.push_and_send(&def, &mut state, stored);
        self.drain_pending(&def, &mut state)
    }

    /// Whether a message of `epoch` means this node holds a history Redis
    /// no longer has (and no load is under way that will settle it).
    pub(crate) fn needs_reload(&self, epoch: &str) -> bool {
        let state = self.state.lock();
        !state.loading && state.epoch != epoch
    }

    /// A gap `from..=to` was filled from Redis with `entries`; whatever is not
    /// among them was deleted or trimmed, so delivery moves past it.
    pub(crate) fn filled(&self, epoch: &str, to: u64, entries: Vec<Stored>) -> Option<(u64, u64)> {
        for stored in entries {
            self.deliver(epoch, stored);
        }
        let def = self.def();
        let mut state = self.state.lock();
        if epoch != state.epoch || state.loading {
            return None;
        }
        if state.last_seq < to {
            state.last_seq = to;
        }
        self.drain_pending(&def, &mut state)
    }

    pub(super) fn push_and_send(&self, def: &RoomDef, state: &mut RoomState, stored: Stored) {
        let frame = encode_message(&stored.msg);
        let audience = if stored.msg.staff { Audience::Staff } else { Audience::All };
        state.participation.count(&state.epoch, &stored);
        let nudge = (def.dominance_share.is_some() && !stored.msg.staff && !stored.msg.from.role.is_staff()).then(|| stored.msg.from.member_id.clone());
        state.log.push_back(stored);
        self.prune(def, state);
        self.fan_out(&def.id, state, &frame, audience);
        if let Some(member) = nudge {
            self.nudge_if_dominating(def, state, &member);
        }
    }

    pub(super) fn drain_pending(&self, def: &RoomDef, state: &mut RoomState) -> Option<(u64, u64)> {
        while let Some(entry) = state.pending.first_entry() {
            let stored = entry.get();
            let seq = stored.msg.seq;
            if stored.msg.staff {
                if seq > state.last_seq {
                    break;
                }
            } else if seq > state.last_seq + 1 {
                return Some((state.last_seq + 1, seq - 1));
            }
            let stored = entry.remove();
            if stored.msg.staff {
                if !state.log.iter().any(|s| s.msg.message_id == stored.msg.message_id) {
                    self.push_and_send(def, state, stored);
                }
            } else if seq == state.last_seq + 1 {
                state.last_seq = seq;
                self.push_and_send(def, state, stored);
            }
        }
        None
    }
}

/// Pending messages sort by seq, a staff message after the member message it follows.
fn pending_key(stored: &Stored) -> u64 {
    stored.msg.seq * 2 + u64::from(stored.msg.staff)
}
