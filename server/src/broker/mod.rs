//! The seam between a node and the rest of the cluster. A [`Broker`] gives a
//! room's messages their order and durability and carries room events to
//! every node; the hub delivers what it hands back. [`local::LocalBroker`]
//! is the embedded default (one node, no external service); a Redis broker
//! [`redis::RedisBroker`]
//! implements the same trait for horizontal scaling. Nothing here knows sessions.

pub mod local;
pub mod redis;

use crate::hub::{Draft, Reaction, Room};
use kindred_protocol::{ChatMessage, MemberId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The backing store cannot be reached; nothing was stored, the client may retry.
    #[error("the message store is unavailable")]
    Unavailable,
}

pub(crate) trait Broker: Send + Sync + 'static {
    /// Store `draft` in its room's history and give it the next `seq`. Resolves
    /// once the message is durable (this is what `sent` promises); by then it
    /// is on its way to every member on every node, in `seq` order.
    fn append<'a>(&'a self, room: &'a Arc<Room>, draft: Draft) -> BoxFuture<'a, Result<ChatMessage, BrokerError>>;

    /// Give or take back a reaction, counted once however many nodes there
    /// are; the room's members hear the new counts (`reactions`). `stored_ms`:
    /// when the message was stored, so what is kept of the reaction expires
    /// with it.
    fn react<'a>(&'a self, room: &'a Arc<Room>, reaction: Reaction, stored_ms: u64) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Take back every reaction `member_id` gave in the room (`forget_me`);
    /// the room hears the counts that changed.
    fn forget_reactions<'a>(&'a self, room: &'a Arc<Room>, member_id: MemberId) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Make the room ready for a local member to join: in a cluster, subscribe
    /// to it and load its history and presence unless this node already has.
    fn activate<'a>(&'a self, room: &'a Arc<Room>) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Whether the broker can accept messages now (`/readyz`).
    fn is_ready(&self) -> bool;

    /// At shutdown, once sessions are drained: let the cluster know this
    /// node's members are gone (no-op on one node).
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
