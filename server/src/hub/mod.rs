//! Live rooms on this node: who is connected to each room, the room's recent
//! message log, and fan-out. A frame is encoded once and its bytes shared by
//! every recipient's bounded mailbox; the fan-out loop never awaits, and a
//! recipient whose mailbox is full is closed with 4408 (it resumes from
//! history) instead of slowing the room down. The hub never touches sockets.

mod conn;
mod handler;
mod members;
mod participation;
mod reactions;
mod remote;
mod room;
mod sequencer;
#[cfg(test)]
pub(crate) mod tests;

use crate::frame::{Frame, encode, encode_message};
pub(crate) use conn::{Accounts, ConnId, Control, Outbox};
pub(crate) use reactions::Reaction;
use reactions::Reacts;
pub(crate) use remote::{Aud, Event, Outgoing, RemoteMember, Replicator, Settings};
pub(crate) use room::Room;
use room::{Present, RoomState, Seen};

use crate::config::Limits;
use crate::mailbox::{Key, Kind};
use crate::refusal::Refusal;
use crate::rooms::{RoomDef, rfc3339};
use chrono::Utc;
use dashmap::DashMap;
use kindred_protocol::{
    AccountId, ChatMessage, CloseCode, Member, MemberId, MessageId, Position, Role, RoomId, RoomInfo, RoomMode, RoomSummary, ServerMessage, SessionInfo,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A message in a room's log, with what only the server may know about it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub msg: ChatMessage,
    pub account: AccountId,
    pub at: Instant,
}

/// Who receives a frame in a room.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Audience<'a> {
    All,
    Staff,
    AllBut(&'a MemberId),
    /// Every connection of one member.
    Member(&'a MemberId),
}

/// A new message, before the room gives it its `seq`.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub msg: ChatMessage,
    pub account: AccountId,
}

/// What a joining connection brings.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub conn: ConnId,
    pub account: AccountId,
    pub member_id: MemberId,
    pub handle: String,
    pub role: Role,
    pub accept_rules: Option<u32>,
    pub since: Option<Position>,
    pub outbox: Outbox,
    /// A mute on record for this member: `Some(None)` until lifted.
    pub muted: Option<Option<String>>,
}

/// What the joining connection gets back (the `joined` reply, less its id).
#[derive(Debug)]
pub(crate) struct Joined {
    pub info: RoomInfo,
    pub me: Member,
    pub members: Vec<Member>,
    pub history: Vec<ChatMessage>,
    pub epoch: String,
    pub seq: u64,
    pub recovered: bool,
}

/// A new history epoch: random, so a resume from another history (before a
/// restart, or one Redis lost) is never taken for this one.
pub(crate) fn new_epoch() -> String {
    format!("e{:x}", rand::random::<u64>())
}

/// Every room on this node. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    rooms: DashMap<RoomId, Arc<Room>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Random per process: the embedded history does not survive a restart,
    /// so a resume from before it must come back `recovered: false`.
    epoch: String,
    limits: Arc<Limits>,
    link: Replicator,
}

impl Hub {
    /// The rooms of one node; `link` carries this node's changes to the
    /// cluster (None on a single node).
    pub(crate) fn new(defs: Vec<RoomDef>, limits: Arc<Limits>, metrics: Arc<crate::metrics::Metrics>, link: Replicator) -> Hub {
        let epoch = new_epoch();
        let rooms = DashMap::new();
        for def in defs {
            rooms.insert(def.id.clone(), Arc::new(Room::new(def, epoch.clone(), limits.clone(), metrics.clone(), link.clone())));
        }
        Hub { inner: Arc::new(Inner { rooms, metrics, epoch, limits, link }) }
    }

    pub fn room(&self, id: &RoomId) -> Option<Arc<Room>> {
        self.inner.rooms.get(id).map(|r| r.clone())
    }

    /// The directory, sorted by name.
    pub(crate) fn summaries(&self) -> Vec<RoomSummary> {
        let rooms: Vec<Arc<Room>> = self.inner.rooms.iter().map(|r| r.value().clone()).collect();
        let mut list: Vec<RoomSummary> = rooms.iter().map(|r| r.summary()).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    pub(crate) fn join(&self, room: &RoomId, req: JoinRequest) -> Result<Joined, Refusal> {
        let Some(target) = self.room(room) else {
            return Err(Refusal::NoSuchRoom(room.clone()));
        };
        let topic = target.def().topic.clone();
        target.join(req, || self.summaries().into_iter().filter(|s| &s.id != room && s.topic == topic && s.open && s.member_count < s.capacity).collect())
    }

    pub(crate) fn leave(&self, room: &RoomId, conn: ConnId) -> bool {
        self.room(room).is_some_and(|r| r.leave(conn))
    }

    /// Tell the room's other members that `member_id` is typing (throttled).
    pub(crate) fn typing(&self, room: &RoomId, member_id: &MemberId) {
        if let Some(r) = self.room(room) {
            if r.typing_allowed(member_id) {
                let frame = encode(&ServerMessage::Typing { room: room.clone(), member_id: member_id.clone() });
                r.broadcast_keyed(&frame, Audience::AllBut(member_id), Some(Key::new(Kind::Typing, (room, member_id))));
            }
        }
    }
}

impl Hub {
    /// Add a room (admin API). False if one with that id exists.
    pub(crate) fn add_room(&self, def: RoomDef) -> bool {
        match self.inner.rooms.entry(def.id.clone()) {
            dashmap::mapref::entry::Entry::Occupied(_) => false,
            dashmap::mapref::entry::Entry::Vacant(slot) => {
                let room = Room::new(def, self.inner.epoch.clone(), self.inner.limits.clone(), self.inner.metrics.clone(), self.inner.link.clone());
                slot.insert(Arc::new(room));
                true
            }
        }
    }

    /// Close a room: everyone in it is told (`removed`, reason `closed`) and it leaves the directory.
    pub(crate) fn remove_room(&self, id: &RoomId, note: &str) -> bool {
        let Some((_, room)) = self.inner.rooms.remove(id) else { return false };
        let frame =
            encode(&ServerMessage::Removed { room: id.clone(), reason: kindred_protocol::RemovedReason::Closed, note: Some(note.to_owned()), until: None });
        room.broadcast(&frame, Audience::All);
        true
    }

    /// Every room on this node.
    pub(crate) fn rooms(&self) -> Vec<Arc<Room>> {
        self.inner.rooms.iter().map(|r| r.value().clone()).collect()
    }
}
