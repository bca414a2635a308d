//! The Redis keys and channel of a room: every one carries the room's hash
//! tag, so on a Redis Cluster a room lives on one slot.

use super::*;

/// A room's keys share one hash tag, so a room lives on one Redis Cluster slot.
pub(super) struct Keys {
    pub(super) meta: String,
    pub(super) log: String,
    pub(super) members: String,
    pub(super) settings: String,
    pub(super) channel: String,
    /// Reaction counts by message id (JSON), for a node warming the room.
    pub(super) reactions: String,
    /// The prefix of one message's reactions (a hash: who gave which, and a count per kind).
    pub(super) reacted_prefix: String,
}

impl Keys {
    pub(super) fn of(room: &RoomId) -> Keys {
        Keys {
            meta: format!("kindred:{{{room}}}:meta"),
            log: format!("kindred:{{{room}}}:log"),
            members: format!("kindred:{{{room}}}:members"),
            settings: format!("kindred:{{{room}}}:settings"),
            channel: format!("kindred:{{{room}}}:ch"),
            reactions: format!("kindred:{{{room}}}:rxc"),
            reacted_prefix: format!("kindred:{{{room}}}:rx:"),
        }
    }

    /// One message's reactions: who gave which, and a count per kind.
    pub(super) fn reacted(&self, message_id: &kindred_protocol::MessageId) -> String {
        format!("{}{}", self.reacted_prefix, message_id.0)
    }

    pub(super) fn room_of_channel(channel: &str) -> Option<RoomId> {
        let inner = channel.strip_prefix("kindred:{")?.strip_suffix("}:ch")?;
        Some(RoomId::from(inner))
    }
}
