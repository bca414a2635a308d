//! The embedded broker: one node, no external service. Each room's stream
//! is an epoch and two counters behind a lock; the lock is held while the
//! message is handed to the hub, so the hub receives a room's messages in
//! `seq` order. History itself lives in the hub's rooms (memory only, so
//! a new process starts new epochs and resumes from before it come back
//! `recovered: false`).

use super::{Appended, BoxFuture, Broker, BrokerError, Handler, Retention};
use crate::hub::{Draft, Stored};
use dashmap::DashMap;
use kindred_protocol::RoomId;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct LocalBroker {
    handler: Arc<dyn Handler>,
    streams: DashMap<RoomId, Arc<Mutex<Stream>>>,
}

/// A room's position: the last member message's seq and the last staff message's staff_seq.
struct Stream {
    epoch: String,
    seq: u64,
    staff_seq: u64,
}

impl LocalBroker {
    pub(crate) fn new(handler: Arc<dyn Handler>) -> LocalBroker {
        LocalBroker { handler, streams: DashMap::new() }
    }

    fn stream(&self, room: &RoomId) -> Arc<Mutex<Stream>> {
        if let Some(s) = self.streams.get(room) {
            return s.clone();
        }
        // A stream starts where the hub's room is (its epoch, nothing sent yet).
        let (epoch, seq) = self.handler.position(room).unwrap_or_else(|| (crate::hub::new_epoch(), 0));
        let fresh = || Arc::new(Mutex::new(Stream { epoch, seq, staff_seq: 0 }));
        self.streams.entry(room.clone()).or_insert_with(fresh).clone()
    }
}

impl Broker for LocalBroker {
    fn append<'a>(&'a self, room: &'a RoomId, draft: &'a Draft, _retention: Retention) -> BoxFuture<'a, Result<Appended, BrokerError>> {
        let stream = self.stream(room);
        let mut s = stream.lock();
        let mut msg = draft.msg.clone();
        // Staff back-channel messages take no seq of their own, so members
        // see a room sequence without holes; they sort after the seq they follow.
        if msg.staff {
            s.staff_seq += 1;
            msg.staff_seq = Some(s.staff_seq);
        } else {
            s.seq += 1;
        }
        msg.seq = s.seq;
        let appended = Appended { epoch: s.epoch.clone(), seq: msg.seq, staff_seq: msg.staff_seq };
        let _no_gap_on_one_node = self.handler.on_message(room, &s.epoch, Stored { msg, account: draft.account.clone(), at: Instant::now() });
        Box::pin(std::future::ready(Ok(appended)))
    }

    /// A room the hub made after this stream began (closed and made again
    /// through the admin API) starts empty: it takes the stream's position.
    fn activate<'a>(&'a self, room: &'a RoomId) -> BoxFuture<'a, Result<(), BrokerError>> {
        let stream = self.stream(room);
        let s = stream.lock();
        if self.handler.position(room).is_some_and(|(epoch, seq)| epoch != s.epoch || seq != s.seq) {
            self.handler.on_loading(room);
            let _no_gap = self.handler.on_history(room, &s.epoch, s.seq, Vec::new());
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, Replicator};
    use kindred_protocol::{AccountId, ChatMessage, MemberId, MessageId, Role, Sender};

    fn draft(id: &str, staff: bool) -> Draft {
        let msg = ChatMessage {
            room: RoomId::from("grief"),
            message_id: MessageId(id.into()),
            seq: 0,
            from: Sender { member_id: MemberId::from("m_1"), handle: "Ann".into(), role: Role::Facilitator },
            text: "hello".into(),
            ts: "2026-11-30T10:00:00.000Z".into(),
            reply_to: None,
            cw: None,
            staff,
            staff_seq: None,
        };
        Draft { msg, account: AccountId::from("a_1") }
    }

    const KEEP: Retention = Retention { max_messages: 100, ms: 3_600_000 };

    #[tokio::test]
    async fn messages_take_the_rooms_next_seq_and_staff_ones_keep_the_seq_before_them() {
        let defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
        let hub = Hub::new(defs, Arc::default(), Arc::default(), Replicator::local());
        let broker = LocalBroker::new(Arc::new(hub.clone()));
        let grief = RoomId::from("grief");
        broker.activate(&grief).await.unwrap();
        let a = broker.append(&grief, &draft("a", false), KEEP).await.unwrap();
        let b = broker.append(&grief, &draft("b", true), KEEP).await.unwrap();
        let c = broker.append(&grief, &draft("c", false), KEEP).await.unwrap();
        assert_eq!((a.seq, a.staff_seq), (1, None));
        assert_eq!((b.seq, b.staff_seq), (1, Some(1)));
        assert_eq!((c.seq, c.staff_seq), (2, None));
        let room = hub.room(&grief).unwrap();
        assert_eq!(room.position(), (c.epoch.clone(), 2), "the hub delivered every message");
        assert!(room.find_message(&MessageId("b".into())).is_some());
    }

    /// A room closed and made again through the admin API starts with an
    /// empty log; the stream goes on, so the new room must take its
    /// position before anyone sends, or it would hold every message as
    /// waiting for a gap.
    #[tokio::test]
    async fn a_room_made_again_takes_the_streams_position_and_delivers_at_once() {
        let defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
        let def = defs.iter().find(|d| d.id.0 == "grief").unwrap().clone();
        let hub = Hub::new(defs, Arc::default(), Arc::default(), Replicator::local());
        let broker = LocalBroker::new(Arc::new(hub.clone()));
        let grief = RoomId::from("grief");
        broker.activate(&grief).await.unwrap();
        broker.append(&grief, &draft("a", false), KEEP).await.unwrap();
        broker.append(&grief, &draft("b", false), KEEP).await.unwrap();
        assert!(hub.remove_room(&grief, "closed"));
        assert!(hub.add_room(def));
        broker.activate(&grief).await.unwrap();
        let c = broker.append(&grief, &draft("c", false), KEEP).await.unwrap();
        assert_eq!(c.seq, 3);
        let room = hub.room(&grief).unwrap();
        assert_eq!(room.position(), (c.epoch, 3));
        assert!(room.find_message(&MessageId("c".into())).is_some(), "delivered, not held for a gap");
        assert!(room.find_message(&MessageId("a".into())).is_none(), "the closed room's messages are gone");
    }
}
