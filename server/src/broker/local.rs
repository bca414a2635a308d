//! The embedded broker: one node, history in memory. The room's own lock
//! orders messages, so `append` completes at once.

use super::{BoxFuture, Broker, BrokerError};
use crate::hub::{Draft, Room};
use kindred_protocol::ChatMessage;
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn append<'a>(&'a self, room: &'a Arc<Room>, draft: Draft) -> BoxFuture<'a, Result<ChatMessage, BrokerError>> {
        let msg = room.commit(draft);
        Box::pin(std::future::ready(Ok(msg)))
    }

    fn activate<'a>(&'a self, _room: &'a Arc<Room>) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_ready(&self) -> bool {
        true
    }
}
