//! The seam between a node and the rest of the cluster, in the shape of
//! centrifuge's broker: a [`Broker`] gives a room's messages their order
//! and durability and carries room events to every node; it works on room
//! ids and never holds a room. What arrives (this node's own messages
//! included) it hands to its node's [`Handler`], which the hub implements.
//! What is not one room's (the documents every node shares, the staff on
//! duty elsewhere) goes to its [`NodeHandler`] (`crate::node`).
//! [`local::LocalBroker`] is the embedded default (one node, no external
//! service); [`redis::RedisBroker`] implements the same pair for
//! horizontal scaling. Nothing here knows sessions.

pub(crate) mod disk;
pub(crate) mod local;
pub(crate) mod redis;

use crate::alerts::Scope;
use crate::hub::{Draft, Event, Reaction, RemoteMember, Settings, Stored};
use crate::store::Document;
use kindred_protocol::{AccountId, Member, MemberId, MessageId, ReactionCounts, RoomId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    /// The backing store cannot be reached; nothing was stored, the client may retry.
    #[error("the message store is unavailable")]
    Unavailable,
}

/// Where an appended message landed in its room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Appended {
    pub epoch: String,
    /// A member message's own seq; a staff message keeps the seq of the room message before it.
    pub seq: u64,
    /// A staff message's place in the staff channel.
    pub staff_seq: Option<u64>,
}

/// How much of a room's history the broker keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub max_messages: usize,
    pub ms: u64,
}

/// What is removed from a room's stored history.
#[derive(Debug, Clone)]
pub(crate) enum Erasure {
    /// One message (deleted by a facilitator or its author).
    Message { message_id: MessageId, seq: u64 },
    /// Everything one account wrote (`forget_me`).
    Account(AccountId),
}

/// Messages `from..=to` a node is missing: the broker fills them from its store.
pub(crate) type Gap = (u64, u64);

pub(crate) trait Broker: Send + Sync + 'static {
    /// Store `draft` in its room's history and give it the next `seq`.
    /// Resolves once the message is durable (this is what `sent` promises);
    /// by then the handler of this node has it and it is on its way to
    /// every other node, in `seq` order.
    fn append<'a>(&'a self, room: &'a RoomId, draft: &'a Draft, retention: Retention) -> BoxFuture<'a, Result<Appended, BrokerError>>;

    /// Whether one connection's appends may be in flight together: the
    /// message takes its place in the room when `append` is called, so a
    /// sender's messages keep their order however many wait for a commit.
    /// Otherwise (Redis: a script reloaded after a restart could let a later
    /// message overtake) a connection hands over one message at a time.
    fn pipelines(&self) -> bool {
        false
    }

    /// Make the room ready for a local member to join: bring the node's copy
    /// of its history up to the broker's (in a cluster: subscribe and load
    /// history and presence unless this node already has).
    /// Give or take back a reaction, counted once however many nodes there
    /// are; the room's members hear the new counts (`reactions`). `stored_ms`:
    /// when the message was stored, so what is kept of the reaction expires
    /// with it.
    fn react<'a>(&'a self, room: &'a RoomId, reaction: Reaction, stored_ms: u64, retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Take back every reaction `member_id` gave in the room (`forget_me`);
    /// the room hears the counts that changed.
    fn forget_reactions<'a>(&'a self, room: &'a RoomId, member_id: MemberId, retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>>;

    fn activate<'a>(&'a self, room: &'a RoomId, retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Whether the broker can accept messages now (`/readyz`).
    fn is_ready(&self) -> bool;

    /// At shutdown, once sessions are drained: let the cluster know this
    /// node's members are gone (no-op on one node).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// What a broker tells its node (`on_*`) and asks of it, by room id. The hub
/// implements it; every broker calls it with what arrived. A room this node
/// does not have is ignored (`None`, empty).
pub(crate) trait Handler: Send + Sync + 'static {
    /// A message in `seq` order, from this node's append or from another
    /// node. One ahead of a gap waits for it; the gap is returned to fill.
    fn on_message(&self, room: &RoomId, epoch: &str, stored: Stored) -> Option<Gap>;
    /// A change another node made to a room.
    fn on_event(&self, room: &RoomId, node: &Arc<str>, event: Event);
    /// A (re)load of the room's history starts: arrivals wait for it.
    fn on_loading(&self, room: &RoomId);
    /// The room's history as stored (oldest first, up to `seq`); a new epoch
    /// means the old history was lost.
    fn on_history(&self, room: &RoomId, epoch: &str, seq: u64, entries: Vec<Stored>) -> Option<Gap>;
    /// A gap up to `to` filled from the store; what is not in `entries` was deleted or trimmed.
    fn on_filled(&self, room: &RoomId, epoch: &str, to: u64, entries: Vec<Stored>) -> Option<Gap>;
    /// The room's live settings as stored.
    fn on_settings(&self, room: &RoomId, settings: Settings);
    /// The members other nodes hold, as read from shared presence at `read_at`.
    fn on_presence(&self, room: &RoomId, remote: Vec<RemoteMember>, read_at: Instant);
    /// A node stopped heartbeating: its members leave every room. Returns how many left.
    fn on_node_gone(&self, node: &str) -> usize;
    /// A reaction given or taken back (one node: the broker counts it here).
    fn on_reaction(&self, room: &RoomId, reaction: &Reaction);
    /// Every reaction one member gave in the room is taken back (one node).
    fn on_reactions_forgotten(&self, room: &RoomId, member_id: &MemberId);
    /// The reaction counts as stored, when a room is loaded.
    fn on_counts(&self, room: &RoomId, counts: Vec<(MessageId, ReactionCounts)>);

    /// The epoch and seq this node has delivered up to.
    fn position(&self, room: &RoomId) -> Option<(String, u64)>;
    /// Whether a message of `epoch` means this node holds a history the broker no longer has.
    fn needs_reload(&self, room: &RoomId, epoch: &str) -> bool;
    /// The members connected to this node.
    fn local_members(&self, room: &RoomId) -> Vec<(Member, AccountId)>;
    /// How many of this node's connections are in the room.
    fn conn_count(&self, room: &RoomId) -> usize;
    /// Every room this node has.
    fn room_ids(&self) -> Vec<RoomId>;
    /// When a message that may take reactions was stored (ms), if it is still in history here.
    fn reactable(&self, room: &RoomId, message_id: &MessageId) -> Option<u64>;
}

/// What a cluster broker tells its node that is not one room's (`crate::node`).
/// The embedded broker has nothing to tell: one node's documents are its own.
pub(crate) trait NodeHandler: Send + Sync + 'static {
    /// A version of a shared document: its text as stored, `None` when there
    /// is none yet. `force`: read again after a loss, so it is the truth
    /// whatever this node held. An error: the text could not be read.
    fn on_document(&self, doc: Document, text: Option<&str>, force: bool) -> serde_json::Result<()>;
    /// The scopes of this node's staff connections, for the other nodes to count.
    fn staff_scopes(&self) -> Vec<Scope>;
    /// The staff scopes of every other live node.
    fn on_remote_staff(&self, remote: HashMap<String, Vec<Scope>>);
}
