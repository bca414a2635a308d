//! The embedded broker: one node, no external service. Each room's stream
//! is an epoch and two counters behind a lock. With a [`Disk`] (the
//! default), a message is stored in the history log (`disk.rs`) before it is delivered
//! and before `append` answers, so history outlives a restart; without one
//! (tests, or a room keeping no history) it is delivered at once. Either
//! way the hub receives a room's messages in `seq` order: the stream lock
//! is held while they are queued and while they are handed over.

use super::disk::{Append, Disk, Op, Position};
use super::{Appended, BoxFuture, Broker, BrokerError, Handler, Retention};
use crate::hub::{Draft, Reaction, Stored};
use dashmap::DashMap;
use kindred_protocol::{MemberId, RoomId};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct LocalBroker {
    handler: Arc<dyn Handler>,
    streams: DashMap<RoomId, Arc<Mutex<Stream>>>,
    disk: Option<Arc<Disk>>,
}

/// A room's position: the last member message's seq and the last staff message's staff_seq.
struct Stream {
    epoch: String,
    seq: u64,
    staff_seq: u64,
    /// The seq this node's hub has been handed (behind `seq` while writes are under way).
    delivered: u64,
    /// The hub's room holds this stream's history (it was loaded into it).
    loaded: bool,
    /// What the disk held when the stream was opened, kept for the hub's
    /// room until it takes it (dropped by an append: the disk is then ahead).
    unloaded: Option<Vec<Stored>>,
}

impl LocalBroker {
    pub(crate) fn new(handler: Arc<dyn Handler>, disk: Option<Arc<Disk>>) -> LocalBroker {
        LocalBroker { handler, streams: DashMap::new(), disk }
    }

    fn stream(&self, room: &RoomId, retention: Retention) -> Result<Arc<Mutex<Stream>>, BrokerError> {
        if let Some(s) = self.streams.get(room) {
            return Ok(s.clone());
        }
        // A stream starts where the disk has it, or else where the hub's room is
        // (its epoch, nothing sent yet).
        let stored = match &self.disk {
            Some(disk) => disk.load(room, retention).map_err(|e| {
                tracing::error!(room = %room, error = %e, "a room's history could not be read");
                BrokerError::Unavailable
            })?,
            None => None,
        };
        let stream = match stored {
            Some((p, entries)) => Stream { epoch: p.epoch, seq: p.seq, staff_seq: p.staff_seq, delivered: p.seq, loaded: false, unloaded: Some(entries) },
            None => {
                let (epoch, seq) = self.handler.position(room).unwrap_or_else(|| (crate::hub::new_epoch(), 0));
                Stream { epoch, seq, staff_seq: 0, delivered: seq, loaded: true, unloaded: None }
            }
        };
        Ok(self.streams.entry(room.clone()).or_insert_with(|| Arc::new(Mutex::new(stream))).clone())
    }
}

impl Broker for LocalBroker {
    fn append<'a>(&'a self, room: &'a RoomId, draft: &'a Draft, retention: Retention) -> BoxFuture<'a, Result<Appended, BrokerError>> {
        let stream = match self.stream(room, retention) {
            Ok(stream) => stream,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let mut s = stream.lock();
        s.unloaded = None;
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
        let stored = Stored { msg, account: draft.account.clone(), at: Instant::now() };
        let disk = self.disk.as_ref().filter(|_| retention.ms > 0 && retention.max_messages > 0);
        let Some(disk) = disk else {
            // A room that keeps no history writes nothing to disk.
            s.delivered = s.seq;
            let _no_gap_on_one_node = self.handler.on_message(room, &s.epoch, stored);
            return Box::pin(std::future::ready(Ok(appended)));
        };
        if !disk.is_ok() {
            return Box::pin(std::future::ready(Err(BrokerError::Unavailable)));
        }
        let (done, stored_on_disk) = tokio::sync::oneshot::channel();
        let position = Position { epoch: s.epoch.clone(), seq: s.seq, staff_seq: s.staff_seq };
        let (handler, to, at) = (self.handler.clone(), room.clone(), appended.clone());
        // Delivery (a task on the runtime, woken once per commit) hands the
        // messages to the hub in queue order and then answers their senders:
        // one wake-up from the writer's thread per commit, not one per message.
        let then = {
            let stream = stream.clone();
            move |ok: bool, stored: Stored| {
                if ok {
                    let mut s = stream.lock();
                    s.delivered = s.delivered.max(at.seq);
                    let _no_gap_on_one_node = handler.on_message(&to, &at.epoch, stored);
                }
                let _sender_gone = done.send(ok);
            }
        };
        disk.queue(Op::Append(Box::new(Append { room: room.clone(), at: appended.clone(), stream: position, stored, retention, then: Box::new(then) })));
        drop(s);
        Box::pin(async move {
            match stored_on_disk.await {
                Ok(true) => Ok(appended),
                Ok(false) | Err(_) => Err(BrokerError::Unavailable),
            }
        })
    }

    /// The seq is taken under the stream's lock when `append` is called.
    fn pipelines(&self) -> bool {
        true
    }

    /// One node: the room counts reactions in memory (they do not outlive a restart).
    fn react<'a>(&'a self, room: &'a RoomId, reaction: Reaction, _stored_ms: u64, _retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.handler.on_reaction(room, &reaction);
        Box::pin(std::future::ready(Ok(())))
    }

    fn forget_reactions<'a>(&'a self, room: &'a RoomId, member_id: MemberId, _retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.handler.on_reactions_forgotten(room, &member_id);
        Box::pin(std::future::ready(Ok(())))
    }

    /// Bring the hub's room to the stream: after a restart, the history on
    /// disk; for a room made again through the admin API (it starts empty),
    /// the stream's position.
    fn activate<'a>(&'a self, room: &'a RoomId, retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>> {
        let stream = match self.stream(room, retention) {
            Ok(stream) => stream,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let mut s = stream.lock();
        let behind = self.handler.position(room).is_some_and(|(epoch, seq)| epoch != s.epoch || seq != s.delivered);
        if !s.loaded || behind {
            let entries = match (s.unloaded.take(), &self.disk) {
                (Some(entries), _) => entries,
                (None, Some(disk)) => match disk.load(room, retention) {
                    Ok(stored) => stored.map(|(_, entries)| entries).unwrap_or_default(),
                    Err(e) => {
                        tracing::error!(room = %room, error = %e, "a room's history could not be read");
                        return Box::pin(std::future::ready(Err(BrokerError::Unavailable)));
                    }
                },
                (None, None) => Vec::new(),
            };
            self.handler.on_loading(room);
            let _no_gap = self.handler.on_history(room, &s.epoch, s.delivered, entries);
            s.loaded = true;
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn is_ready(&self) -> bool {
        self.disk.as_ref().is_none_or(|d| d.is_ok())
    }

    /// Write what is queued and release the history file.
    fn close(&self) -> BoxFuture<'_, ()> {
        let disk = self.disk.clone();
        Box::pin(async move {
            if let Some(disk) = disk {
                let _ = tokio::task::spawn_blocking(move || disk.close()).await;
            }
        })
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
            reactions: None,
        };
        Draft { msg, account: AccountId::from("a_1") }
    }

    const KEEP: Retention = Retention { max_messages: 100, ms: 3_600_000 };

    #[tokio::test]
    async fn messages_take_the_rooms_next_seq_and_staff_ones_keep_the_seq_before_them() {
        let defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
        let hub = Hub::new(defs, Arc::default(), Arc::default(), Replicator::local());
        let broker = LocalBroker::new(Arc::new(hub.clone()), None);
        let grief = RoomId::from("grief");
        broker.activate(&grief, KEEP).await.unwrap();
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
        let broker = LocalBroker::new(Arc::new(hub.clone()), None);
        let grief = RoomId::from("grief");
        broker.activate(&grief, KEEP).await.unwrap();
        broker.append(&grief, &draft("a", false), KEEP).await.unwrap();
        broker.append(&grief, &draft("b", false), KEEP).await.unwrap();
        assert!(hub.remove_room(&grief, "closed"));
        assert!(hub.add_room(def));
        broker.activate(&grief, KEEP).await.unwrap();
        let c = broker.append(&grief, &draft("c", false), KEEP).await.unwrap();
        assert_eq!(c.seq, 3);
        let room = hub.room(&grief).unwrap();
        assert_eq!(room.position(), (c.epoch, 3));
        assert!(room.find_message(&MessageId("c".into())).is_some(), "delivered, not held for a gap");
        assert!(room.find_message(&MessageId("a".into())).is_none(), "the closed room's messages are gone");
    }
}
