//! The embedded broker: one node, history and reactions in memory. The
//! room's own lock orders messages, so `append` completes at once.

use super::{BoxFuture, Broker, BrokerError};
use crate::hub::{Draft, Reaction, Room};
use kindred_protocol::{ChatMessage, MemberId};
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn append<'a>(&'a self, room: &'a Arc<Room>, draft: Draft) -> BoxFuture<'a, Result<ChatMessage, BrokerError>> {
        let msg = room.commit(draft);
        Box::pin(std::future::ready(Ok(msg)))
    }

    fn react<'a>(&'a self, room: &'a Arc<Room>, reaction: Reaction, _stored_ms: u64) -> BoxFuture<'a, Result<(), BrokerError>> {
        // The message left the history meanwhile: nothing to count, and no one to tell.
        room.react(&reaction);
        Box::pin(std::future::ready(Ok(())))
    }

    fn forget_reactions<'a>(&'a self, room: &'a Arc<Room>, member_id: MemberId) -> BoxFuture<'a, Result<(), BrokerError>> {
        room.forget_reactions(&member_id);
        Box::pin(std::future::ready(Ok(())))
    }

    fn activate<'a>(&'a self, _room: &'a Arc<Room>) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_ready(&self) -> bool {
        true
    }
}
