//! The embedded broker's history on disk: an append-only log in
//! `<data dir>/history/`, so that a message a member was told was `sent`
//! outlives a restart or a crash within its room's retention
//! (docs/architecture.md says why a log, and how an operator inspects or
//! wipes it).
//!
//! Why one file of ~1,000 lines: about 215 are tests, and the rest is one
//! writer thread's state (segments, the index, the live counts compaction
//! reads), which recovery, retention and compaction all change; split, each
//! part would have to expose that state to the others.
//!
//! - **Group commit.** Appends queue to one writer thread. It writes all
//!   that is queued to the current segment with one `write` and one
//!   `fdatasync`, then hands the batch to delivery (a task on the runtime,
//!   woken once per commit), which delivers those messages to the hub in
//!   queue order (each room's `seq` order) and answers their senders while
//!   the writer goes on with the next batch.
//! - **Records.** `[length: u32][xxh3 of the JSON: u64][JSON]`, little
//!   endian: a message (with its room's stream position and retention), a
//!   deletion, a `forget_me`, or a checkpoint of every room's position, which
//!   opens each segment so that a position outlives the messages that set it.
//! - **Index.** The writer keeps, per room, where each message within
//!   retention lies (segment, offset, length), never its text; a room's
//!   history is read back from there when the room is loaded.
//! - **Retention and compaction.** Messages past their room's count or age
//!   leave the index as rooms append and on a sweep every few seconds. The
//!   oldest segment is deleted once nothing in it is live; when more than
//!   half the log is dead, its live records are first copied forward. The
//!   log stays within about twice what retention keeps, plus a segment.
//!   Deletions (`delete_message`, `unsend`, `forget_me`) leave the index at
//!   once and are logged, so nothing deleted comes back after a restart.
//! - **Recovery.** Opening replays every segment in order and starts a new
//!   one. A damaged record in the newest segment is where the last run
//!   stopped mid-write (nothing from there on was acknowledged): the segment
//!   is cut there. Damage in any older segment stops start-up with an error
//!   naming the file and the offset.

use super::{Appended, Retention};
use crate::hub::Stored;
use crate::metrics::Metrics;
use kindred_protocol::{AccountId, ChatMessage, MessageId, RoomId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most operations one commit covers.
const BATCH: usize = 4096;
/// How often the writer drops what expired and compacts, busy or idle.
const SWEEP: Duration = Duration::from_secs(5);
/// Length and checksum in front of each record.
const HEADER: usize = 12;

/// Where a room's stream stands on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Position {
    pub epoch: String,
    pub seq: u64,
    pub staff_seq: u64,
}

/// A message to store; `then` runs with whether it is on disk.
pub(crate) struct Append {
    pub room: RoomId,
    pub at: Appended,
    pub stream: Position,
    pub stored: Stored,
    pub retention: Retention,
    /// Runs in queue order, from delivery, once the commit is done.
    pub then: Box<dyn FnOnce(bool, Stored) + Send>,
}

/// A room's stream and its history as stored (oldest first).
pub(crate) type Loaded = (Position, Vec<Stored>);

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
    /// Read a room back, after everything queued before it is stored.
    Load {
        room: RoomId,
        retention: Retention,
        reply: mpsc::SyncSender<Result<Option<Loaded>, DiskError>>,
    },
    /// Finish what is queued, then let go of the files.
    Close,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DiskError {
    #[error("the history log {path} cannot be opened: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("the history log {path} is damaged at byte {offset} ({why}); move the file out of the directory to start without the history it holds")]
    Damaged { path: PathBuf, offset: u64, why: &'static str },
    #[error("the history log {path} cannot be read: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// How the log is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// A segment is sealed and the next one begun past this many bytes.
    pub segment_bytes: u64,
    /// How long the writer waits for more messages before a commit while
    /// commits are shared (0: it commits what is queued as soon as the last
    /// commit is done).
    pub commit_window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { segment_bytes: 8 << 20, commit_window: Duration::from_millis(2) }
    }
}

pub(crate) struct Disk {
    queue: mpsc::Sender<Op>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// A write failed: nothing more is written or acknowledged until a restart.
    failed: Arc<AtomicBool>,
}

impl Disk {
    /// Open (or create) `<data dir>/history/`, replay it, and start its
    /// writer thread and its delivery. Damage the replay cannot put down to an
    /// interrupted write is an error naming the file: the server does not
    /// start over a history it cannot read.
    pub(crate) fn open(data_dir: &Path, options: Options, metrics: Arc<Metrics>) -> Result<Disk, DiskError> {
        if data_dir.join("history.redb").exists() {
            tracing::warn!("history.redb (the history store of earlier builds) is no longer read; delete it once it is not needed");
        }
        let log = Log::open(&data_dir.join("history"), options)?;
        let (queue, ops) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let spawn_error = |source| DiskError::Open { path: log.dir.clone(), source };
        // Delivery runs on the runtime when there is one (waking sessions from
        // one of its own threads is cheap), else on a thread of its own.
        let (deliver, mut delivered) = tokio::sync::mpsc::unbounded_channel::<Delivery>();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    while let Some(delivery) = delivered.recv().await {
                        delivery.run();
                    }
                });
            }
            Err(_) => {
                std::thread::Builder::new()
                    .name("kindred-deliver".into())
                    .spawn(move || {
                        while let Some(delivery) = delivered.blocking_recv() {
                            delivery.run();
                        }
                    })
                    .map_err(spawn_error)?;
            }
        }
        let dir = log.dir.clone();
        let writer = std::thread::Builder::new()
            .name("kindred-history".into())
            .spawn(move || {
                write_loop(log, &ops, &flag, &deliver, options.commit_window, &metrics);
                let (ack, acked) = mpsc::sync_channel(1);
                if deliver.send(Delivery::Flushed(ack)).is_ok() {
                    let _gone = acked.recv();
                }
            })
            .map_err(|source| DiskError::Open { path: dir, source })?;
        Ok(Disk { queue, writer: parking_lot::Mutex::new(Some(writer)), failed })
    }

    /// At shutdown: write what is queued, deliver it, then release the
    /// files. Blocks until done.
    pub(crate) fn close(&self) {
        self.queue(Op::Close);
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

    /// A room's stream and its history as stored (oldest first), what is past
    /// `retention` left out. Waits for the writer (one commit at most, unless
    /// it is compacting); `None` for a room the log does not know.
    pub(crate) fn load(&self, room: &RoomId, retention: Retention) -> Result<Option<Loaded>, DiskError> {
        let (reply, answer) = mpsc::sync_channel(1);
        if self.queue.send(Op::Load { room: room.clone(), retention, reply }).is_err() {
            return Ok(None);
        }
        answer.recv().unwrap_or(Ok(None))
    }
}

/// What the writer hands to delivery, in order.
enum Delivery {
    /// Stored (or refused, if false): deliver to the hub and answer the senders.
    Batch(bool, Vec<Append>),
    /// Answer once everything before is delivered (at close).
    Flushed(mpsc::SyncSender<()>),
}

impl Delivery {
    fn run(self) {
        match self {
            Delivery::Batch(stored, appends) => {
                for append in appends {
                    (append.then)(stored, append.stored);
                }
            }
            Delivery::Flushed(ack) => {
                let _gone = ack.send(());
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn instant_of(ms: u64) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(ms));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

fn keep_of(retention: Retention) -> [u64; 2] {
    [retention.max_messages as u64, retention.ms]
}

/// A record as written (borrowing what it stores).
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Record<'a> {
    Message { room: &'a RoomId, at: u64, p: &'a Position, keep: [u64; 2], m: &'a ChatMessage, a: &'a AccountId },
    Delete { room: &'a RoomId, seq: u64, id: &'a MessageId },
    Forget { room: &'a RoomId, a: &'a AccountId },
    Checkpoint { rooms: Vec<(&'a RoomId, &'a Position, [u64; 2])> },
}

/// A record as read back (one at a time, so the size of its largest variant does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Recorded {
    Message { room: RoomId, at: u64, p: Position, keep: [u64; 2], m: ChatMessage, a: AccountId },
    Delete { room: RoomId, seq: u64, id: MessageId },
    Forget { room: RoomId, a: AccountId },
    Checkpoint { rooms: Vec<(RoomId, Position, [u64; 2])> },
}

/// Append one record to `buf`; returns its length, header included.
fn encode(buf: &mut Vec<u8>, record: &Record<'_>) -> u32 {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    serde_json::to_writer(&mut *buf, record).expect("records serialize");
    let json = &buf[start + HEADER..];
    let (len, sum) = (json.len() as u32, xxhash_rust::xxh3::xxh3_64(json));
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + HEADER].copy_from_slice(&sum.to_le_bytes());
    (buf.len() - start) as u32
}

/// The record at the start of `bytes`, and its length with the header.
fn decode(bytes: &[u8]) -> Result<(Recorded, usize), &'static str> {
    let Some((len, rest)) = bytes.split_first_chunk::<4>() else { return Err("a record cut short") };
    let Some((sum, rest)) = rest.split_first_chunk::<8>() else { return Err("a record cut short") };
    let (len, sum) = (u32::from_le_bytes(*len) as usize, u64::from_le_bytes(*sum));
    if len == 0 {
        return Err("a record of length zero");
    }
    let Some(json) = rest.get(..len) else { return Err("a record cut short") };
    if xxhash_rust::xxh3::xxh3_64(json) != sum {
        return Err("a record whose checksum does not match");
    }
    let record = serde_json::from_slice(json).map_err(|_| "a record that is not one")?;
    Ok((record, HEADER + len))
}

/// Where one live message lies, and what deletions match it by.
#[derive(Debug)]
struct Live {
    seq: u64,
    at: u64,
    segment: u64,
    offset: u64,
    len: u32,
    id: MessageId,
    account: AccountId,
}

/// A room as the log knows it.
#[derive(Debug, Default)]
struct RoomLog {
    position: Position,
    keep: [u64; 2],
    /// Oldest first, in (seq, staff_seq) order.
    live: VecDeque<Live>,
}

#[derive(Debug)]
struct Segment {
    file: File,
    bytes: u64,
    live: u64,
    live_bytes: u64,
}

impl Segment {
    fn hold(&mut self, len: u32) {
        self.live += 1;
        self.live_bytes += u64::from(len);
    }

    fn take(&mut self, entry: &Live) {
        self.live -= 1;
        self.live_bytes -= u64::from(entry.len);
    }
}

/// The writer's state: the segments and the index.
struct Log {
    dir: PathBuf,
    options: Options,
    segments: BTreeMap<u64, Segment>,
    rooms: HashMap<RoomId, RoomLog>,
    buf: Vec<u8>,
}

fn segment_name(number: u64) -> String {
    format!("{number:016x}.log")
}

fn segment_number(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log").filter(|h| h.len() == 16)?;
    u64::from_str_radix(hex, 16).ok()
}

impl Log {
    fn open(dir: &Path, options: Options) -> Result<Log, DiskError> {
        let open_error = |source| DiskError::Open { path: dir.to_owned(), source };
        create_private_dir(dir).map_err(open_error)?;
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(open_error)? {
            let entry = entry.map_err(open_error)?;
            if let Some(number) = entry.file_name().to_str().and_then(segment_number) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        let mut log = Log { dir: dir.to_owned(), options, segments: BTreeMap::new(), rooms: HashMap::new(), buf: Vec::new() };
        let mut replayed: HashMap<RoomId, Replayed> = HashMap::new();
        for (i, &number) in numbers.iter().enumerate() {
            let newest = i + 1 == numbers.len();
            let path = dir.join(segment_name(number));
            let file = OpenOptions::new().read(true).append(true).open(&path).map_err(|source| DiskError::Open { path: path.clone(), source })?;
            let bytes = std::fs::read(&path).map_err(|source| DiskError::Read { path: path.clone(), source })?;
            let mut offset = 0;
            while offset < bytes.len() {
                match decode(&bytes[offset..]) {
                    Ok((record, len)) => {
                        replay(&mut replayed, record, number, offset as u64, len as u32);
                        offset += len;
                    }
                    Err(why) if newest => {
                        tracing::warn!(
                            file = %path.display(), at = offset, cut = bytes.len() - offset, why,
                            "the history log ends in an interrupted write; what it held was never acknowledged and is dropped"
                        );
                        file.set_len(offset as u64).and_then(|()| file.sync_all()).map_err(|source| DiskError::Open { path: path.clone(), source })?;
                        break;
                    }
                    Err(why) => return Err(DiskError::Damaged { path, offset: offset as u64, why }),
                }
            }
            log.segments.insert(number, Segment { file, bytes: offset as u64, live: 0, live_bytes: 0 });
        }
        for (room, r) in replayed {
            let live: VecDeque<Live> = r.live.into_values().collect();
            for entry in &live {
                log.segments.get_mut(&entry.segment).expect("replayed from a segment").hold(entry.len);
            }
            log.rooms.insert(room, RoomLog { position: r.position, keep: r.keep, live });
        }
        log.sweep();
        log.roll().map_err(|source| DiskError::Open { path: dir.to_owned(), source })?;
        log.compact();
        Ok(log)
    }

    fn current(&mut self) -> (u64, &mut Segment) {
        let (number, segment) = self.segments.iter_mut().next_back().expect("the log has a current segment");
        (*number, segment)
    }

    /// Write `buf` at the end of the current segment and make it durable.
    fn commit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let segment = self.segments.values_mut().next_back().expect("the log has a current segment");
        let mut file = &segment.file;
        let written = file.write_all(&self.buf).and_then(|()| file.sync_data());
        segment.bytes += self.buf.len() as u64;
        self.buf.clear();
        written
    }

    /// Store a batch: records for every append and erasure, one write and
    /// one fsync, then the index. An error means none of it is durable.
    fn write(&mut self, batch: &[Op]) -> io::Result<()> {
        let (number, segment) = self.current();
        let base = segment.bytes;
        let now = now_ms();
        let mut places = Vec::with_capacity(batch.len());
        for op in batch {
            let offset = base + self.buf.len() as u64;
            let len = match op {
                Op::Append(append) => {
                    let Append { room, stream, stored, retention, .. } = &**append;
                    let record = Record::Message { room, at: now, p: stream, keep: keep_of(*retention), m: &stored.msg, a: &stored.account };
                    encode(&mut self.buf, &record)
                }
                Op::Delete { room, message_id, seq } => encode(&mut self.buf, &Record::Delete { room, seq: *seq, id: message_id }),
                Op::Forget { room, account } => encode(&mut self.buf, &Record::Forget { room, a: account }),
                Op::Load { .. } | Op::Close => 0,
            };
            places.push((offset, len));
        }
        self.commit()?;
        for (op, (offset, len)) in batch.iter().zip(places) {
            match op {
                Op::Append(append) => {
                    let Append { room, at, stream, stored, retention, .. } = &**append;
                    let entry = Live { seq: at.seq, at: now, segment: number, offset, len, id: stored.msg.message_id.clone(), account: stored.account.clone() };
                    self.segments.get_mut(&number).expect("the current segment").hold(len);
                    let r = self.rooms.entry(room.clone()).or_default();
                    r.position = stream.clone();
                    r.keep = keep_of(*retention);
                    r.live.push_back(entry);
                    trim(r, &mut self.segments, now);
                }
                Op::Delete { room, message_id, seq } => self.erase(room, |e| e.seq == *seq && e.id == *message_id),
                Op::Forget { room, account } => self.erase(room, |e| e.account == *account),
                Op::Load { .. } | Op::Close => {}
            }
        }
        Ok(())
    }

    fn erase(&mut self, room: &RoomId, matches: impl Fn(&Live) -> bool) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let segments = &mut self.segments;
        r.live.retain(|entry| {
            let gone = matches(entry);
            if gone {
                segments.get_mut(&entry.segment).expect("live in a segment").take(entry);
            }
            !gone
        });
    }

    /// A room's stream and what it keeps of its history, read back from the segments.
    fn load(&self, room: &RoomId, retention: Retention) -> Result<Option<Loaded>, DiskError> {
        let Some(r) = self.rooms.get(room) else { return Ok(None) };
        let oldest = now_ms().saturating_sub(retention.ms);
        let fresh: Vec<&Live> = r.live.iter().filter(|e| e.at >= oldest).collect();
        let keep = fresh.len().saturating_sub(retention.max_messages);
        let mut entries = Vec::with_capacity(fresh.len() - keep);
        for entry in &fresh[keep..] {
            let path = || self.dir.join(segment_name(entry.segment));
            let segment = &self.segments[&entry.segment];
            let mut bytes = vec![0; entry.len as usize];
            read_at(&segment.file, &mut bytes, entry.offset).map_err(|source| DiskError::Read { path: path(), source })?;
            match decode(&bytes) {
                Ok((Recorded::Message { m, a, at, .. }, _)) => entries.push(Stored { msg: m, account: a, at: instant_of(at) }),
                Ok(_) | Err(_) => return Err(DiskError::Damaged { path: path(), offset: entry.offset, why: "an indexed message that does not read back" }),
            }
        }
        Ok(Some((r.position.clone(), entries)))
    }

    /// Drop from the index every message past its room's age.
    fn sweep(&mut self) {
        let now = now_ms();
        for r in self.rooms.values_mut() {
            trim(r, &mut self.segments, now);
        }
    }

    /// Seal the current segment (if any) and begin the next, opened with
    /// every room's position.
    fn roll(&mut self) -> io::Result<()> {
        let number = self.segments.keys().next_back().map_or(1, |n| n + 1);
        let path = self.dir.join(segment_name(number));
        let file = create_private_file(&path)?;
        self.segments.insert(number, Segment { file, bytes: 0, live: 0, live_bytes: 0 });
        let rooms = self.rooms.iter().map(|(room, r)| (room, &r.position, r.keep)).collect();
        let mut buf = std::mem::take(&mut self.buf);
        encode(&mut buf, &Record::Checkpoint { rooms });
        self.buf = buf;
        self.commit()?;
        // The new file's name must be durable before anything in it is acknowledged.
        File::open(&self.dir)?.sync_all()
    }

    /// Roll past a full segment, then delete old segments that hold nothing
    /// live, copying the live records of the oldest forward first when more
    /// than half the log is dead.
    fn maintain(&mut self) -> io::Result<()> {
        let (_, current) = self.current();
        if current.bytes >= self.options.segment_bytes {
            self.roll()?;
        }
        self.compact();
        Ok(())
    }

    fn compact(&mut self) {
        loop {
            let (&oldest, segment) = self.segments.iter().next().expect("the log has a current segment");
            let live = segment.live;
            if Some(&oldest) == self.segments.keys().next_back() {
                return;
            }
            if live > 0 {
                let bytes: u64 = self.segments.values().map(|s| s.bytes).sum();
                let live: u64 = self.segments.values().map(|s| s.live_bytes).sum();
                if bytes <= 2 * live + self.options.segment_bytes {
                    return;
                }
                if let Err(e) = self.copy_forward(oldest) {
                    tracing::error!(error = %e, "the history log could not be compacted; it keeps its old segments");
                    return;
                }
            }
            let path = self.dir.join(segment_name(oldest));
            self.segments.remove(&oldest);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(file = %path.display(), error = %e, "an old history segment could not be deleted");
            }
        }
    }

    /// Copy the live records of segment `from` to the end of the current one.
    fn copy_forward(&mut self, from: u64) -> io::Result<()> {
        let (current, target) = self.current();
        let base = target.bytes;
        let source = &self.segments[&from];
        let mut moved = Vec::new();
        for (room, r) in &self.rooms {
            for (i, entry) in r.live.iter().enumerate().filter(|(_, e)| e.segment == from) {
                let start = self.buf.len();
                self.buf.resize(start + entry.len as usize, 0);
                read_at(&source.file, &mut self.buf[start..], entry.offset)?;
                moved.push((room.clone(), i, base + start as u64));
            }
        }
        self.commit()?;
        for (room, i, offset) in moved {
            let entry = &mut self.rooms.get_mut(&room).expect("a room of the index").live[i];
            self.segments.get_mut(&from).expect("the segment copied from").take(entry);
            self.segments.get_mut(&current).expect("the current segment").hold(entry.len);
            entry.segment = current;
            entry.offset = offset;
        }
        Ok(())
    }
}

/// Drop a room's oldest entries past its count or age.
fn trim(r: &mut RoomLog, segments: &mut BTreeMap<u64, Segment>, now: u64) {
    let [max, ms] = r.keep;
    let oldest = now.saturating_sub(ms);
    while let Some(entry) = r.live.front() {
        if (r.live.len() as u64) <= max && entry.at >= oldest {
            break;
        }
        segments.get_mut(&entry.segment).expect("live in a segment").take(entry);
        r.live.pop_front();
    }
}

/// A room as replay rebuilds it: copies forward may repeat a record, so by key.
#[derive(Default)]
struct Replayed {
    position: Position,
    keep: [u64; 2],
    live: BTreeMap<(u64, u64), Live>,
}

impl Replayed {
    fn advance(&mut self, p: &Position, keep: [u64; 2]) {
        if p.seq >= self.position.seq {
            self.position.epoch.clone_from(&p.epoch);
        }
        self.position.seq = self.position.seq.max(p.seq);
        self.position.staff_seq = self.position.staff_seq.max(p.staff_seq);
        self.keep = keep;
    }
}

fn replay(rooms: &mut HashMap<RoomId, Replayed>, record: Recorded, segment: u64, offset: u64, len: u32) {
    match record {
        Recorded::Message { room, at, p, keep, m, a } => {
            let r = rooms.entry(room).or_default();
            r.advance(&p, keep);
            let (seq, sub) = (m.seq, m.staff_seq.unwrap_or(0));
            r.live.insert((seq, sub), Live { seq, at, segment, offset, len, id: m.message_id, account: a });
            // The count kept as the room wrote, deletions made meanwhile taken into account.
            while r.live.len() as u64 > keep[0] {
                r.live.pop_first();
            }
        }
        Recorded::Delete { room, seq, id } => {
            if let Some(r) = rooms.get_mut(&room) {
                r.live.retain(|_, e| e.seq != seq || e.id != id);
            }
        }
        Recorded::Forget { room, a } => {
            if let Some(r) = rooms.get_mut(&room) {
                r.live.retain(|_, e| e.account != a);
            }
        }
        Recorded::Checkpoint { rooms: positions } => {
            for (room, p, keep) in positions {
                rooms.entry(room).or_default().advance(&p, keep);
            }
        }
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A new segment, readable by the server's user only (it holds what members wrote).
fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Take what is queued, write it with one fsync, hand it to delivery, answer loads.
///
/// A failed write stops the writer for good: what it could not store is
/// refused, and so is everything after it (refusing is safe, the sender
/// retries; writing on after a hole would deliver a room's messages with a
/// gap). The node reports unready so that operators and load balancers see it.
fn write_loop(
    mut log: Log,
    ops: &mpsc::Receiver<Op>,
    failed: &AtomicBool,
    deliver: &tokio::sync::mpsc::UnboundedSender<Delivery>,
    window: Duration,
    metrics: &Metrics,
) {
    let mut swept = Instant::now();
    let (mut closing, mut busy) = (false, false);
    while !closing {
        let first = match ops.recv_timeout(SWEEP) {
            Ok(op) => op,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                log.sweep();
                log.compact();
                swept = Instant::now();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        // The window is waited out only while commits are shared (the last
        // one covered more than one operation): alone, a message waits for
        // its fsync and nothing else. The writer sleeps through it rather
        // than waiting on the queue, so the operations that arrive meanwhile
        // do not each wake it (a context switch per message, measured).
        if busy && !window.is_zero() {
            std::thread::sleep(window);
        }
        while batch.len() < BATCH {
            let Ok(op) = ops.try_recv() else { break };
            batch.push(op);
        }
        closing = batch.iter().any(|op| matches!(op, Op::Close));
        busy = batch.len() > 1;
        let began = Instant::now();
        let stored = !failed.load(Ordering::Acquire)
            && match log.write(&batch) {
                Ok(()) => {
                    let done = Instant::now();
                    if batch.iter().any(|op| matches!(op, Op::Append(_) | Op::Delete { .. } | Op::Forget { .. })) {
                        metrics.history_commit.0.observe(done - began);
                        Metrics::add(&metrics.history_commits, 1);
                    }
                    for op in &batch {
                        if let Op::Append(append) = op {
                            metrics.history_wait.0.observe(done.saturating_duration_since(append.stored.at));
                            Metrics::add(&metrics.history_appends, 1);
                        }
                    }
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "history could not be written; this node refuses messages until it is restarted");
                    failed.store(true, Ordering::Release);
                    false
                }
            };
        let mut appends = Vec::new();
        for op in batch {
            match op {
                Op::Append(append) => appends.push(*append),
                Op::Load { room, retention, reply } => {
                    let _gone = reply.send(log.load(&room, retention));
                }
                Op::Delete { .. } | Op::Forget { .. } | Op::Close => {}
            }
        }
        if !appends.is_empty() && deliver.send(Delivery::Batch(stored, appends)).is_err() {
            tracing::error!("history delivery has stopped");
        }
        if stored && swept.elapsed() >= SWEEP {
            log.sweep();
            swept = Instant::now();
        }
        if stored {
            if let Err(e) = log.maintain() {
                tracing::error!(error = %e, "the history log could not begin a new segment; this node refuses messages until it is restarted");
                failed.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hub::tests::stored_by as stored;

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let dir = std::env::temp_dir().join(format!("kindred-disk-{:x}", rand::random::<u64>()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn segments(&self) -> Vec<PathBuf> {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(self.0.join("history")).unwrap().map(|e| e.unwrap().path()).collect();
            paths.sort();
            paths
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const LONG: Retention = Retention { max_messages: 1000, ms: 3_600_000 };

    /// Append and wait for the writer's answer.
    fn append_to(disk: &Disk, room: &str, seq: u64, account: &str, retention: Retention) -> bool {
        let (tx, rx) = mpsc::channel();
        let room = RoomId::from(room);
        let at = Appended { epoch: "e1".into(), seq, staff_seq: None };
        let stream = Position { epoch: "e1".into(), seq, staff_seq: 0 };
        let then = Box::new(move |ok, _| tx.send(ok).unwrap());
        let mut stored = stored(seq, account);
        stored.msg.room = room.clone();
        disk.queue(Op::Append(Box::new(Append { room, at, stream, stored, retention, then })));
        rx.recv().unwrap()
    }

    fn append(disk: &Disk, seq: u64, account: &str, retention: Retention) -> bool {
        append_to(disk, "grief", seq, account, retention)
    }

    fn seqs_of(disk: &Disk, room: &str, retention: Retention) -> Vec<u64> {
        let (_, entries) = disk.load(&RoomId::from(room), retention).unwrap().unwrap();
        entries.iter().map(|s| s.msg.seq).collect()
    }

    fn seqs(disk: &Disk, retention: Retention) -> Vec<u64> {
        seqs_of(disk, "grief", retention)
    }

    #[test]
    fn what_is_stored_trimmed_and_erased_stays_so_after_a_reopen() {
        let dir = Dir::new();
        let keep = Retention { max_messages: 4, ms: 3_600_000 };
        let disk = Disk::open(&dir.0, Options::default(), Arc::default()).unwrap();
        for seq in 1..=8 {
            assert!(append(&disk, seq, if seq % 2 == 0 { "a_even" } else { "a_odd" }, keep));
        }
        assert_eq!(seqs(&disk, keep), [5, 6, 7, 8], "the count is kept");
        disk.erase(&RoomId::from("grief"), super::super::Erasure::Message { message_id: MessageId("m7".into()), seq: 7 });
        disk.erase(&RoomId::from("grief"), super::super::Erasure::Account(AccountId::from("a_even")));
        assert_eq!(seqs(&disk, keep), [5], "a load waits for the erasures queued before it");
        disk.close();
        drop(disk);

        let disk = Disk::open(&dir.0, Options::default(), Arc::default()).unwrap();
        assert_eq!(seqs(&disk, keep), [5], "deleted and forgotten messages do not come back");
        let (position, _) = disk.load(&RoomId::from("grief"), keep).unwrap().unwrap();
        assert_eq!(position, Position { epoch: "e1".into(), seq: 8, staff_seq: 0 }, "the stream goes on from where it was");
        let none = Retention { max_messages: 4, ms: 0 };
        assert!(seqs(&disk, none).is_empty(), "entries past the room's age are not loaded");
        assert!(disk.load(&RoomId::from("anxiety"), keep).unwrap().is_none(), "a room never written is unknown");
        disk.close();
    }

    /// Messages 1 to 3 in grief, the log closed; its newest segment.
    fn three_messages_written(dir: &Dir) -> PathBuf {
        let disk = Disk::open(&dir.0, Options::default(), Arc::default()).unwrap();
        for seq in 1..=3 {
            assert!(append(&disk, seq, "a_1", LONG));
        }
        disk.close();
        dir.segments().pop().unwrap()
    }

    #[test]
    fn an_interrupted_write_at_the_end_is_cut_off_and_the_log_goes_on() {
        let dir = Dir::new();
        let newest = three_messages_written(&dir);
        // A crash mid-write: half a record at the end of the newest segment.
        let bytes = std::fs::read(&newest).unwrap();
        let mut file = OpenOptions::new().append(true).open(&newest).unwrap();
        file.write_all(&bytes[bytes.len() - 40..bytes.len() - 10]).unwrap();
        drop(file);

        let disk = Disk::open(&dir.0, Options::default(), Arc::default()).unwrap();
        assert_eq!(seqs(&disk, LONG), [1, 2, 3], "every stored message is there, nothing more");
        assert!(append(&disk, 4, "a_1", LONG), "the log takes new messages");
        disk.close();
        drop(disk);
        let disk = Disk::open(&dir.0, Options::default(), Arc::default()).unwrap();
        assert_eq!(seqs(&disk, LONG), [1, 2, 3, 4]);
        disk.close();
    }

    #[test]
    fn damage_before_the_newest_segment_fails_with_the_file_and_offset() {
        let dir = Dir::new();
        let damaged = three_messages_written(&dir);
        let mut bytes = std::fs::read(&damaged).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 0x55;
        std::fs::write(&damaged, bytes).unwrap();
        // Damage in a segment a later run has gone on from.
        let number = segment_number(damaged.file_name().unwrap().to_str().unwrap()).unwrap();
        std::fs::write(dir.0.join("history").join(segment_name(number + 1)), b"").unwrap();

        let Err(e) = Disk::open(&dir.0, Options::default(), Arc::default()) else { panic!("damage is found") };
        let text = e.to_string();
        assert!(text.contains(damaged.to_str().unwrap()) && text.contains("damaged at byte"), "{text}");
    }

    #[test]
    fn old_segments_are_compacted_and_nothing_deleted_comes_back() {
        let dir = Dir::new();
        let options = Options { segment_bytes: 4096, commit_window: Duration::ZERO };
        let disk = Disk::open(&dir.0, options, Arc::default()).unwrap();
        // A quiet room keeps its five messages, written first.
        for seq in 1..=5 {
            assert!(append_to(&disk, "quiet", seq, "a_quiet", LONG));
        }
        disk.erase(&RoomId::from("quiet"), super::super::Erasure::Message { message_id: MessageId("m2".into()), seq: 2 });
        // A busy room keeps only its last two: its old records are dead weight.
        let two = Retention { max_messages: 2, ms: 3_600_000 };
        for seq in 1..=400 {
            assert!(append_to(&disk, "busy", seq, "a_busy", two));
        }
        let files = dir.segments().len();
        assert!(files <= 4, "the log was compacted: {files} segments");
        assert!(!dir.0.join("history").join(segment_name(1)).exists(), "the quiet room's first segment is gone");
        assert_eq!(seqs_of(&disk, "quiet", LONG), [1, 3, 4, 5], "the quiet room's records were carried forward");
        disk.close();
        drop(disk);

        let disk = Disk::open(&dir.0, options, Arc::default()).unwrap();
        assert_eq!(seqs_of(&disk, "quiet", LONG), [1, 3, 4, 5], "a deleted message does not come back after compaction");
        assert_eq!(seqs_of(&disk, "busy", two), [399, 400]);
        let (position, _) = disk.load(&RoomId::from("busy"), two).unwrap().unwrap();
        assert_eq!(position.seq, 400);
        disk.close();
    }
}

/// How many appends a second the log takes from many concurrent senders,
/// the rest of the server left out (docs/benchmarks.md). Not run by the
/// test command: `cargo test --release -p kindred-server --lib
/// broker::disk::throughput -- --ignored --nocapture`.
#[cfg(test)]
mod throughput {
    use super::*;
    use crate::hub::tests::stored_by as stored;

    #[test]
    #[ignore = "a measurement: run it in release, alone on the machine"]
    fn appends_per_second_from_4000_senders_in_2000_rooms() {
        const SENDERS: u64 = 4000;
        const EACH: u64 = 25;
        let dir = std::env::temp_dir().join(format!("kindred-throughput-{:x}", rand::random::<u64>()));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let disk = Arc::new(Disk::open(&dir, Options::default(), Arc::default()).unwrap());
            let keep = Retention { max_messages: 500, ms: 3_600_000 };
            let start = Instant::now();
            let senders: Vec<_> = (0..SENDERS)
                .map(|k| {
                    let disk = disk.clone();
                    tokio::spawn(async move {
                        // Two senders a room, taking turns: seqs 1, 3, 5… and 2, 4, 6…
                        let room = RoomId::new(format!("r{}", k / 2));
                        for i in 0..EACH {
                            let seq = i * 2 + k % 2 + 1;
                            let (done, stored_on_disk) = tokio::sync::oneshot::channel();
                            let mut message = stored(seq, "a_1");
                            message.msg.room = room.clone();
                            message.msg.text = "x".repeat(64);
                            disk.queue(Op::Append(Box::new(Append {
                                room: room.clone(),
                                at: Appended { epoch: "e1".into(), seq, staff_seq: None },
                                stream: Position { epoch: "e1".into(), seq, staff_seq: 0 },
                                stored: message,
                                retention: keep,
                                then: Box::new(move |ok, _| {
                                    let _ = done.send(ok);
                                }),
                            })));
                            assert_eq!(stored_on_disk.await, Ok(true));
                        }
                    })
                })
                .collect();
            for sender in senders {
                sender.await.unwrap();
            }
            let n = SENDERS * EACH;
            println!("{n} appends in {:.2?}: {:.0} a second", start.elapsed(), n as f64 / start.elapsed().as_secs_f64());
            disk.close();
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
