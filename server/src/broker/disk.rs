//! The embedded broker's history on disk: one redb file in the data dir
//! (`history.redb`), so a message a member was told was `sent` outlives a
//! restart or a crash within its room's retention (docs/architecture.md
//! says why redb, and how an operator inspects or wipes the file).
//!
//! - **Group commit.** Appends queue to one writer thread, which writes
//!   everything queued in one transaction and one fsync, then delivers
//!   those messages to the hub in the order they were queued (each room's
//!   `seq` order) and answers their senders. Under load a commit covers
//!   many messages; alone, one message waits for one fsync.
//! - **What is stored.** `messages`: (room, seq, staff_seq or 0) → the time
//!   it was stored (8 bytes, big-endian ms) and the JSON of the message and
//!   its author's account. `streams`: room → its epoch and counters.
//! - **Retention.** Each append drops up to 16 of the room's oldest entries
//!   past its age or count; a load skips any that expired meanwhile.
//!   Deletions (`delete_message`, `unsend`, `forget_me`) go through the same
//!   queue, so nothing deleted comes back after a restart.

use super::{Appended, Retention};
use crate::hub::Stored;
use kindred_protocol::{AccountId, ChatMessage, MessageId, RoomId};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESSAGES: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("messages");
const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");

/// The most messages one commit covers.
const BATCH: usize = 4096;

/// Where a room's stream stands on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Position {
    pub epoch: String,
    pub seq: u64,
    pub staff_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    m: ChatMessage,
    a: AccountId,
}

/// A message to store; `then` runs with whether it is on disk.
pub(crate) struct Append {
    pub room: RoomId,
    pub at: Appended,
    pub stream: Position,
    pub stored: Stored,
    pub retention: Retention,
    pub then: Box<dyn FnOnce(bool, Stored) + Send>,
}

/// What the writer does, in queue order.
pub(crate) enum Op {
    Append(Box<Append>),
    /// Remove one message (deleted by a facilitator or its author).
    Delete {
        room: RoomId,
        message_id: MessageId,
        seq: u64,
    },
    /// Remove everything one account wrote in a room (`forget_me`).
    Forget {
        room: RoomId,
        account: AccountId,
    },
    /// Finish what is queued, then let go of the file.
    Close,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiskError {
    #[error("the history store {path} cannot be opened: {source}")]
    Open { path: PathBuf, source: Box<redb::DatabaseError> },
    #[error("the history store {path} cannot be read: {source}")]
    Read { path: PathBuf, source: Box<redb::Error> },
}

pub(crate) struct Disk {
    /// `None` once closed: the writer and this are the file's only holders.
    db: parking_lot::RwLock<Option<Arc<Database>>>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
    queue: mpsc::Sender<Op>,
    /// A write failed: nothing more is written or acknowledged until a restart.
    failed: Arc<AtomicBool>,
}

impl Disk {
    /// Open (or create) `<data dir>/history.redb` and start its writer thread.
    /// A file that is not a redb database, or is damaged beyond what redb
    /// repairs on open, is an error naming the file: the server does not
    /// start over a history it cannot read.
    pub(crate) fn open(data_dir: &Path) -> Result<Disk, DiskError> {
        let path = data_dir.join("history.redb");
        let db = Database::create(&path).map_err(|source| DiskError::Open { path: path.clone(), source: Box::new(source) })?;
        let tx = db.begin_write().map_err(|e| DiskError::Read { path: path.clone(), source: Box::new(e.into()) })?;
        {
            let create = |e: redb::TableError| DiskError::Read { path: path.clone(), source: Box::new(e.into()) };
            tx.open_table(MESSAGES).map_err(create)?;
            tx.open_table(STREAMS).map_err(create)?;
        }
        tx.commit().map_err(|e| DiskError::Read { path: path.clone(), source: Box::new(e.into()) })?;
        let db = Arc::new(db);
        let (queue, ops) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let (writer, flag) = (db.clone(), failed.clone());
        let writer = std::thread::Builder::new()
            .name("kindred-history".into())
            .spawn(move || write_loop(&writer, &ops, &flag))
            .map_err(|e| DiskError::Read { path: path.clone(), source: Box::new(redb::Error::Io(e)) })?;
        Ok(Disk { db: parking_lot::RwLock::new(Some(db)), writer: parking_lot::Mutex::new(Some(writer)), path, queue, failed })
    }

    /// At shutdown: write what is queued, then release the file (its lock
    /// too, so the same process may open it again). Blocks until done.
    pub(crate) fn close(&self) {
        self.queue(Op::Close);
        self.db.write().take();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }

    /// Whether messages can be stored (false for good after a failed write).
    pub(crate) fn is_ok(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Remove what was deleted from a room's history (queued after every earlier append).
    pub(crate) fn erase(&self, room: &RoomId, erasure: super::Erasure) {
        self.queue(match erasure {
            super::Erasure::Message { message_id, seq } => Op::Delete { room: room.clone(), message_id, seq },
            super::Erasure::Account(account) => Op::Forget { room: room.clone(), account },
        });
    }

    pub(crate) fn queue(&self, op: Op) {
        if let Err(mpsc::SendError(Op::Append(append))) = self.queue.send(op) {
            // The writer is gone (closed at shutdown): say not stored.
            (append.then)(false, append.stored);
        }
    }

    /// A room's stream and its history as stored (oldest first), expired entries skipped.
    pub(crate) fn load(&self, room: &RoomId, retention: Retention) -> Result<Option<(Position, Vec<Stored>)>, DiskError> {
        let read = |e: redb::Error| DiskError::Read { path: self.path.clone(), source: Box::new(e) };
        let Some(db) = self.db.read().clone() else { return Ok(None) };
        let tx = db.begin_read().map_err(|e| read(e.into()))?;
        let streams = tx.open_table(STREAMS).map_err(|e| read(e.into()))?;
        let Some(position) = streams.get(room.as_str()).map_err(|e| read(e.into()))? else { return Ok(None) };
        let Ok(position) = serde_json::from_slice::<Position>(position.value()) else {
            tracing::error!(room = %room, "a room's stream on disk cannot be read; it starts a new history");
            return Ok(None);
        };
        let messages = tx.open_table(MESSAGES).map_err(|e| read(e.into()))?;
        let oldest = now_ms().saturating_sub(retention.ms);
        let mut entries = Vec::new();
        for row in messages.range((room.as_str(), 0, 0)..=(room.as_str(), u64::MAX, u64::MAX)).map_err(|e| read(e.into()))? {
            let (_, value) = row.map_err(|e| read(e.into()))?;
            match decode(value.value()) {
                Some((at, _)) if at < oldest => {}
                Some((at, entry)) => entries.push(Stored { msg: entry.m, account: entry.a, at: instant_of(at) }),
                None => tracing::error!(room = %room, "a stored message cannot be read; it is skipped"),
            }
        }
        let keep = entries.len().saturating_sub(retention.max_messages);
        entries.drain(..keep);
        Ok(Some((position, entries)))
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn instant_of(ms: u64) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(ms));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

fn encode(at_ms: u64, stored: &Stored) -> Vec<u8> {
    let mut bytes = at_ms.to_be_bytes().to_vec();
    serde_json::to_writer(&mut bytes, &Entry { m: stored.msg.clone(), a: stored.account.clone() }).expect("messages serialize");
    bytes
}

fn decode(bytes: &[u8]) -> Option<(u64, Entry)> {
    let (at, json) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*at), serde_json::from_slice(json).ok()?))
}

fn time_of(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |at| u64::from_be_bytes(*at))
}

/// Take what is queued, write it in one transaction, then tell each sender.
///
/// A failed write stops the writer for good: what it could not store is
/// refused, and so is everything after it (refusing is safe, the sender
/// retries; writing on after a hole would deliver a room's messages with a
/// gap). The node reports unready so that operators and load balancers see it.
fn write_loop(db: &Database, ops: &mpsc::Receiver<Op>, failed: &AtomicBool) {
    let mut closing = false;
    while !closing {
        let Ok(first) = ops.recv() else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        closing = batch.iter().any(|op| matches!(op, Op::Close));
        let stored = !failed.load(Ordering::Acquire)
            && match write(db, &batch) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "history could not be written; this node refuses messages until it is restarted");
                    failed.store(true, Ordering::Release);
                    false
                }
            };
        for op in batch {
            if let Op::Append(append) = op {
                (append.then)(stored, append.stored);
            }
        }
    }
}

fn write(db: &Database, batch: &[Op]) -> Result<(), Box<redb::Error>> {
    write_batch(db, batch).map_err(Box::new)
}

#[allow(clippy::result_large_err)] // boxed by `write`, its one caller
fn write_batch(db: &Database, batch: &[Op]) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut messages = tx.open_table(MESSAGES)?;
        let mut streams = tx.open_table(STREAMS)?;
        let now = now_ms();
        for op in batch {
            match op {
                Op::Append(append) => {
                    let Append { room, at, stream, stored, retention, .. } = &**append;
                    let key = (room.as_str(), at.seq, at.staff_seq.unwrap_or(0));
                    messages.insert(key, encode(now, stored).as_slice())?;
                    streams.insert(room.as_str(), serde_json::to_vec(stream).expect("positions serialize").as_slice())?;
                    // Up to 16 of the oldest entries past the room's age or count:
                    // the oldest is almost always still fresh, so this reads one.
                    let oldest = now.saturating_sub(retention.ms);
                    let below = at.seq.saturating_sub(retention.max_messages as u64);
                    let mut expired = Vec::new();
                    for row in messages.range((room.as_str(), 0, 0)..(room.as_str(), at.seq, 0))? {
                        let (key, value) = row?;
                        let (_, seq, sub) = key.value();
                        if expired.len() == 16 || (seq > below && time_of(value.value()) >= oldest) {
                            break;
                        }
                        expired.push((seq, sub));
                    }
                    for (seq, sub) in expired {
                        messages.remove((room.as_str(), seq, sub))?;
                    }
                }
                Op::Delete { room, message_id, seq } => {
                    messages.retain_in((room.as_str(), *seq, 0)..=(room.as_str(), *seq, u64::MAX), |_, value| {
                        decode(value).is_none_or(|(_, e)| &e.m.message_id != message_id)
                    })?;
                }
                Op::Close => {}
                Op::Forget { room, account } => {
                    messages.retain_in((room.as_str(), 0, 0)..=(room.as_str(), u64::MAX, u64::MAX), |_, value| {
                        decode(value).is_none_or(|(_, e)| &e.a != account)
                    })?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hub::tests::stored_by as stored;

    /// Append and wait for the writer's answer.
    fn append(disk: &Disk, seq: u64, account: &str, retention: Retention) -> bool {
        let (tx, rx) = mpsc::channel();
        let room = RoomId::from("grief");
        let at = Appended { epoch: "e1".into(), seq, staff_seq: None };
        let stream = Position { epoch: "e1".into(), seq, staff_seq: 0 };
        let then = Box::new(move |ok, _| tx.send(ok).unwrap());
        disk.queue(Op::Append(Box::new(Append { room, at, stream, stored: stored(seq, account), retention, then })));
        rx.recv().unwrap()
    }

    fn seqs(disk: &Disk, retention: Retention) -> Vec<u64> {
        let (_, entries) = disk.load(&RoomId::from("grief"), retention).unwrap().unwrap();
        entries.iter().map(|s| s.msg.seq).collect()
    }

    #[test]
    fn what_is_stored_trimmed_and_erased_stays_so_after_a_reopen() {
        let dir = std::env::temp_dir().join(format!("kindred-disk-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let keep = Retention { max_messages: 4, ms: 3_600_000 };
        let disk = Disk::open(&dir).unwrap();
        for seq in 1..=8 {
            assert!(append(&disk, seq, if seq % 2 == 0 { "a_even" } else { "a_odd" }, keep));
        }
        assert_eq!(seqs(&disk, keep), [5, 6, 7, 8], "the count is kept");
        disk.erase(&RoomId::from("grief"), super::super::Erasure::Message { message_id: MessageId("m7".into()), seq: 7 });
        disk.erase(&RoomId::from("grief"), super::super::Erasure::Account(AccountId::from("a_even")));
        disk.close();
        drop(disk);

        let disk = Disk::open(&dir).unwrap();
        assert_eq!(seqs(&disk, keep), [5], "deleted and forgotten messages do not come back");
        let (position, _) = disk.load(&RoomId::from("grief"), keep).unwrap().unwrap();
        assert_eq!(position, Position { epoch: "e1".into(), seq: 8, staff_seq: 0 }, "the stream goes on from where it was");
        let none = Retention { max_messages: 4, ms: 0 };
        assert!(seqs(&disk, none).is_empty(), "entries past the room's age are not loaded");
        disk.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
