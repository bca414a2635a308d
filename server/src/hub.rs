//! Live rooms on this node: who is connected to each room, the room's recent
//! message log, and fan-out. A frame is encoded once and its bytes shared by
//! every recipient's bounded mailbox; the fan-out loop never awaits, and a
//! recipient whose mailbox is full is closed with 4408 (it resumes from
//! history) instead of slowing the room down. The hub never touches sockets.

use crate::refusal::Refusal;
use crate::mailbox::{Key, Kind};
use crate::config::Limits;
use crate::rooms::{RoomDef, rfc3339};
use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use dashmap::DashMap;
use kindred_protocol::{
    AccountId, ChatMessage, CloseCode, Member, MemberId, Position, Role,
    RoomId, RoomInfo, RoomMode, RoomSummary, ServerMessage,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// An encoded frame, shared by every mailbox it is queued in.
pub type Frame = Utf8Bytes;

/// One WebSocket connection, unique on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    pub fn next() -> ConnId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Lets the hub ask a connection to close itself, even when its mailbox is full.
///
/// One waiter (the connection's own task) and one event, so an `AtomicWaker`
/// instead of a `Notify`: the session waits on this on every turn of its
/// loop, and a `Notify` locks its waiter list to register and again to drop.
#[derive(Debug, Default)]
pub struct Control {
    code: AtomicU16,
    waker: futures_util::task::AtomicWaker,
}

impl Control {
    /// Ask the connection to close with `code`; the first request wins.
    pub fn close(&self, code: CloseCode) {
        if self.code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.waker.wake();
        }
    }

    fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    /// Resolves once `close` was called, with its code.
    pub fn closed(&self) -> impl std::future::Future<Output = CloseCode> + '_ {
        std::future::poll_fn(move |cx| {
            if let Some(code) = self.requested() {
                return std::task::Poll::Ready(code);
            }
            self.waker.register(cx.waker());
            // A close between the first look and the registration woke nobody: look again.
            match self.requested() {
                Some(code) => std::task::Poll::Ready(code),
                None => std::task::Poll::Pending,
            }
        })
    }
}

/// Where the hub delivers a connection's frames.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub tx: crate::mailbox::Sender,
    pub control: Arc<Control>,
}

/// Encode a server frame once.
pub fn encode(msg: &ServerMessage) -> Frame {
    // Serializing our own types into a String cannot fail.
    Utf8Bytes::from(serde_json::to_string(msg).expect("protocol types serialize"))
}

/// Encode a chat message as a `message` frame without cloning it.
pub fn encode_message(msg: &ChatMessage) -> Frame {
    let body = serde_json::to_string(msg).expect("protocol types serialize");
    // `body` is a JSON object: splice the tag in after its opening brace.
    let mut frame = String::with_capacity(body.len() + 18);
    frame.push_str("{\"type\":\"message\",");
    frame.push_str(&body[1..]);
    Utf8Bytes::from(frame)
}

/// A message in a room's log, with what only the server may know about it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub msg: ChatMessage,
    pub account: AccountId,
    pub at: Instant,
}

/// Who receives a frame in a room.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    All,
    Staff,
    AllBut(&'a MemberId),
    /// Every connection of one member.
    Member(&'a MemberId),
}

/// A new message, before the room gives it its `seq`.
#[derive(Debug, Clone)]
pub struct Draft {
    pub msg: ChatMessage,
    pub account: AccountId,
}


/// What a joining connection brings.
#[derive(Debug, Clone)]
pub struct JoinRequest {
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
pub struct Joined {
    pub info: RoomInfo,
    pub me: Member,
    pub members: Vec<Member>,
    pub history: Vec<ChatMessage>,
    pub epoch: String,
    pub seq: u64,
    pub recovered: bool,
    /// False when this connection was already in the room.
    pub new_member: bool,
}

struct ConnEntry {
    member_id: MemberId,
    staff: bool,
    outbox: Outbox,
}

struct Present {
    member: Member,
    account: AccountId,
    /// Connections on this node; 0 for a member on another node.
    conns: u32,
    /// The node the member is connected to, when it is not this one.
    node: Option<Arc<str>>,
}

impl Present {
    fn is_local(&self) -> bool {
        self.node.is_none()
    }
}

struct RoomState {
    conns: HashMap<ConnId, ConnEntry>,
    members: HashMap<MemberId, Present>,
    log: VecDeque<Stored>,
    last_seq: u64,
    /// Every message up to this seq has left the log by age or count.
    pruned_through: u64,
    /// The last staff-channel message's `staff_seq` (embedded default; in a cluster Redis assigns it).
    staff_seq: u64,
    slow_mode_s: u32,
    locked: bool,
    topic_now: Option<String>,
    mode: RoomMode,
    last_sent: HashMap<MemberId, Instant>,
    last_typing: HashMap<MemberId, Instant>,
    /// Structured mode: members waiting to speak, in order.
    hands: Vec<MemberId>,
    /// The history's epoch: fixed per process in the embedded default, kept
    /// in Redis per room in a cluster (it changes when Redis loses history).
    epoch: String,
    /// Cluster: messages that arrived ahead of a gap, by seq, until it is filled.
    pending: BTreeMap<u64, Stored>,
    /// Cluster: the room's history is being (re)loaded; arrivals wait in `pending`.
    loading: bool,
    /// Cluster: when another node's event last said who a member is (joined,
    /// left, changed), so a presence snapshot read before it cannot undo it.
    presence_news: HashMap<MemberId, Instant>,
    /// Every member id the room has seen (joined, on any node), with its
    /// account and when, so a facilitator can warn, mute, ban or unban
    /// someone who already left. Memory only; see `remember`.
    seen: HashMap<MemberId, (AccountId, Instant)>,
    /// Connections `fan_out` found closed or too slow, not yet removed.
    dead: Vec<ConnId>,
    /// A `fan_out` up the stack is removing `dead`: nested ones only add to it.
    removing_dead: bool,
}

/// One room's live state on this node.
pub struct Room {
    metrics: Arc<crate::metrics::Metrics>,
    def: RwLock<Arc<RoomDef>>,
    state: Mutex<RoomState>,
    limits: Arc<Limits>,
    /// In a cluster: where changes made on this node go so other nodes apply them.
    link: Option<mpsc::Sender<Outgoing>>,
}

impl Room {
    fn new(def: RoomDef, epoch: String, limits: Arc<Limits>, metrics: Arc<crate::metrics::Metrics>, link: Option<mpsc::Sender<Outgoing>>) -> Room {
        Room {
            metrics,
            link,
            def: RwLock::new(Arc::new(def)),
            state: Mutex::new(RoomState {
                conns: HashMap::new(),
                members: HashMap::new(),
                log: VecDeque::new(),
                last_seq: 0,
                pruned_through: 0,
                staff_seq: 0,
                slow_mode_s: 0,
                locked: false,
                topic_now: None,
                mode: RoomMode::Open,
                last_sent: HashMap::new(),
                last_typing: HashMap::new(),
                hands: Vec::new(),
                epoch,
                pending: BTreeMap::new(),
                loading: false,
                presence_news: HashMap::new(),
                seen: HashMap::new(),
                dead: Vec::new(),
                removing_dead: false,
            }),
            limits,
        }
    }

    /// Hand a change made on this node to the cluster (a no-op on one node).
    /// The queue is bounded: when Redis is too slow to keep up the change
    /// stays local, is counted, and presence is repaired by the next sync.
    fn emit(&self, room: &RoomId, event: Event) {
        if let Some(link) = &self.link {
            self.send_link(link, Outgoing::Event(room.clone(), event));
        }
    }

    fn send_link(&self, link: &mpsc::Sender<Outgoing>, out: Outgoing) {
        if link.try_send(out).is_err() {
            crate::metrics::Metrics::add(&self.metrics.cluster_events_dropped, 1);
            tracing::warn!("cluster event queue full; event kept local");
        }
    }

    pub fn def(&self) -> Arc<RoomDef> {
        self.def.read().clone()
    }

    pub fn id(&self) -> RoomId {
        self.def.read().id.clone()
    }

    fn retention(&self, def: &RoomDef) -> Duration {
        Duration::from_secs(u64::from(def.history_minutes.unwrap_or(self.limits.history_minutes)) * 60)
    }

    pub fn summary(&self) -> RoomSummary {
        let def = self.def();
        let state = self.state.lock();
        Self::summary_of(&def, &state)
    }

    /// The directory entry: the definition's, with what the live room adds —
    /// a locked or full room is not open to newcomers.
    fn summary_of(def: &RoomDef, state: &RoomState) -> RoomSummary {
        let mut summary = def.summary(Utc::now(), state.members.len() as u32, state.mode);
        let members = state.members.values().filter(|p| !p.member.role.is_staff()).count();
        summary.locked = state.locked;
        summary.open &= !state.locked && members < def.capacity as usize;
        summary
    }

    fn info(def: &RoomDef, state: &RoomState) -> RoomInfo {
        RoomInfo {
            summary: Self::summary_of(def, state),
            rules: def.rules.clone(),
            topic_now: state.topic_now.clone(),
            slow_mode_s: state.slow_mode_s,
        }
    }

    /// Join the room: checks, then registration and the history snapshot
    /// under one lock, so the member misses nothing and sees nothing twice.
    fn join(&self, req: JoinRequest, alternatives: impl FnOnce() -> Vec<RoomSummary>) -> Result<Joined, Refusal> {
        let def = self.def();
        let now = Utc::now();
        let staff = req.role.is_staff();
        if !staff {
            if let Some(crate::rooms::schedule::Status::Closed { next_open_at }) = def.status(now) {
                return Err(Refusal::Closed { next_open_at: next_open_at.map(rfc3339) });
            }
            if req.accept_rules.is_none_or(|v| v < def.rules_version) {
                return Err(Refusal::RulesNotAccepted { version: def.rules_version, rules: def.rules.clone() });
            }
        }
        let mut state = self.state.lock();
        self.prune(&def, &mut state);
        let already_present = state.members.contains_key(&req.member_id);
        if !staff && !already_present {
            if state.locked {
                return Err(Refusal::Locked);
            }
            let members = state.members.values().filter(|p| !p.member.role.is_staff()).count();
            if members >= def.capacity as usize {
                drop(state);
                return Err(Refusal::Full { alternatives: alternatives() });
            }
        }

        let new_conn = !state.conns.contains_key(&req.conn);
        let mut announce = false;
        let me = match state.members.get_mut(&req.member_id) {
            Some(present) => {
                if present.node.is_some() {
                    // Also on another node (a second tab); this node now holds it too.
                    present.node = None;
                    present.conns = 0;
                    announce = true;
                }
                if new_conn {
                    present.conns += 1;
                }
                present.member.clone()
            }
            None => {
                let handle = crate::handles::unique_in_room(&req.handle, |h| {
                    // Look-alikes clash too: a Cyrillic "Sаm" beside facilitator Sam becomes "Sаm 2".
                    state.members.values().any(|p| crate::handles::look_alike(&p.member.handle, h))
                });
                let member = Member {
                    member_id: req.member_id.clone(),
                    handle,
                    role: req.role,
                    muted: req.muted.is_some(),
                    muted_until: req.muted.clone().flatten(),
                    hand_raised: false,
                    has_floor: false,
                };
                state.members.insert(
                    req.member_id.clone(),
                    Present { member: member.clone(), account: req.account.clone(), conns: 1, node: None },
                );
                self.remember(&def, &mut state, &req.member_id, &req.account);
                announce = true;
                member
            }
        };
        if new_conn {
            state.conns.insert(req.conn, ConnEntry { member_id: req.member_id.clone(), staff, outbox: req.outbox });
        }

        let visible = |s: &&Stored| staff || !s.msg.staff;
        let resume_from = req.since.as_ref().filter(|p| {
            p.epoch == state.epoch && p.seq >= state.pruned_through && p.seq <= state.last_seq
        });
        let (history, recovered) = match resume_from {
            // A staff message shares the seq of the room message before it, so
            // one with the client's own seq may be news to it: staff get those
            // too, and dedupe by message_id.
            Some(p) => (
                state
                    .log
                    .iter()
                    .filter(|s| s.msg.seq > p.seq || (staff && s.msg.staff && s.msg.seq == p.seq))
                    .filter(visible)
                    .map(|s| s.msg.clone())
                    .collect(),
                true,
            ),
            None => {
                let window: Vec<ChatMessage> = state.log.iter().filter(visible).map(|s| s.msg.clone()).collect();
                let skip = window.len().saturating_sub(self.limits.history_on_join);
                (window.into_iter().skip(skip).collect(), req.since.is_none())
            }
        };
        let joined = Joined {
            info: Self::info(&def, &state),
            members: state.members.values().map(|p| p.member.clone()).collect(),
            me: me.clone(),
            history,
            epoch: state.epoch.clone(),
            seq: state.last_seq,
            recovered,
            new_member: !already_present,
        };
        if !already_present {
            let frame = encode(&ServerMessage::Presence {
                room: def.id.clone(),
                joined: Some(me.clone()),
                left: None,
                member_count: state.members.len() as u32,
            });
            let key = Key::new(Kind::Presence, (&def.id, &me.member_id));
            self.fan_out_keyed(&def.id, &mut state, &frame, Audience::AllBut(&me.member_id), Some(key));
        }
        if announce {
            self.emit(&def.id, Event::Joined { member: me.clone(), account: req.account.clone() });
        }
        Ok(joined)
    }

    /// Remove a connection; the member leaves when its last connection does.
    fn leave(&self, conn: ConnId) -> bool {
        let id = self.id();
        let mut state = self.state.lock();
        let Some(entry) = state.conns.remove(&conn) else { return false };
        self.drop_member_conn(&id, &mut state, &entry.member_id);
        true
    }

    fn drop_member_conn(&self, room: &RoomId, state: &mut RoomState, member_id: &MemberId) {
        let gone = match state.members.get_mut(member_id) {
            Some(p) if !p.is_local() => false,
            Some(p) if p.conns > 1 => {
                p.conns -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            self.emit(room, Event::Left { member_id: member_id.clone() });
            self.forget_member(room, state, member_id);
        }
        if state.conns.is_empty() {
            if let Some(link) = &self.link {
                self.send_link(link, Outgoing::Idle(room.clone()));
            }
        }
    }

    /// A member left (on this node or another): drop it and tell this node's members.
    fn forget_member(&self, room: &RoomId, state: &mut RoomState, member_id: &MemberId) {
        state.members.remove(member_id);
        state.last_typing.remove(member_id);
        state.hands.retain(|m| m != member_id);
        let frame = encode(&ServerMessage::Presence {
            room: room.clone(),
            joined: None,
            left: Some(member_id.clone()),
            member_count: state.members.len() as u32,
        });
        self.fan_out_keyed(room, state, &frame, Audience::All, Some(Key::new(Kind::Presence, (room, member_id))));
    }

    /// Queue `frame` for the audience without waiting for anyone. Connections
    /// whose mailbox is full are told to close (4408) and leave the room.
    ///
    /// Removing a dead connection announces the member's departure, which is
    /// a fan-out that may find more dead connections. They go on one worklist
    /// drained by the outermost call: when a room's members all drop at once
    /// (a proxy restart), recursing once per member would overflow the stack.
    fn fan_out(&self, room: &RoomId, state: &mut RoomState, frame: &Frame, audience: Audience<'_>) {
        self.fan_out_keyed(room, state, frame, audience, None);
    }

    /// [`Room::fan_out`] of a frame that supersedes older ones of its `key`
    /// still queued for a reader (presence, member state, typing, hands).
    fn fan_out_keyed(&self, room: &RoomId, state: &mut RoomState, frame: &Frame, audience: Audience<'_>, key: Option<Key>) {
        let mut delivered = 0u64;
        let RoomState { conns, dead, .. } = state;
        for (id, entry) in conns.iter() {
            let wanted = match audience {
                Audience::All => true,
                Audience::Staff => entry.staff,
                Audience::AllBut(m) => &entry.member_id != m,
                Audience::Member(m) => &entry.member_id == m,
            };
            if !wanted {
                continue;
            }
            match entry.outbox.tx.try_send_keyed(frame.clone(), key) {
                Ok(()) => delivered += 1,
                Err(crate::mailbox::TrySendError::Full) => {
                    entry.outbox.control.close(CloseCode::TooSlow);
                    crate::metrics::Metrics::add(&self.metrics.slow_consumer_closes, 1);
                    dead.push(*id);
                }
                // The session ended and will leave the room itself; skip it.
                Err(crate::mailbox::TrySendError::Closed) => dead.push(*id),
            }
        }
        crate::metrics::Metrics::add(&self.metrics.deliveries, delivered);
        if state.removing_dead {
            return;
        }
        state.removing_dead = true;
        while let Some(id) = state.dead.pop() {
            if let Some(entry) = state.conns.remove(&id) {
                tracing::debug!(room = %room, conn = id.0, "connection too slow or gone; removed from room");
                self.drop_member_conn(room, state, &entry.member_id);
            }
        }
        state.removing_dead = false;
    }

    fn prune(&self, def: &RoomDef, state: &mut RoomState) {
        let max_age = self.retention(def);
        let max_len = self.limits.history_max_messages;
        while let Some(front) = state.log.front() {
            if state.log.len() > max_len || front.at.elapsed() >= max_age {
                state.pruned_through = front.msg.seq;
                state.log.pop_front();
            } else {
                break;
            }
        }
        if max_age.is_zero() || max_len == 0 {
            state.pruned_through = state.last_seq;
        }
    }

    /// Checks a member's send against the room's live rules (membership, slow mode,
    /// structured mode, a facilitator's presence) and records it for slow mode.
    pub fn admit_send(&self, member_id: &MemberId, role: Role, staff_only: bool) -> Result<(), Refusal> {
        let def = self.def();
        let mut state = self.state.lock();
        let Some(present) = state.members.get(member_id) else {
            return Err(Refusal::NotMember);
        };
        if staff_only && !role.is_staff() {
            return Err(Refusal::StaffOnly);
        }
        if role.is_staff() {
            return Ok(());
        }
        let has_floor = present.member.has_floor;
        if def.requires_facilitator && !state.members.values().any(|p| p.member.role.is_staff()) {
            return Err(Refusal::WaitingForFacilitator);
        }
        if state.mode == RoomMode::Structured && !has_floor {
            return Err(Refusal::NotYourTurn);
        }
        if state.slow_mode_s > 0 {
            let gap = Duration::from_secs(state.slow_mode_s.into());
            if let Some(last) = state.last_sent.get(member_id) {
                let waited = last.elapsed();
                if waited < gap {
                    let wait = (gap - waited).as_millis() as u64;
                    return Err(Refusal::SlowMode { retry_after_ms: wait.max(1) });
                }
            }
            state.last_sent.insert(member_id.clone(), Instant::now());
        }
        Ok(())
    }

    /// Give `draft` the room's next seq, keep it in the log and deliver it, all
    /// under the room lock so every member sees one order. The embedded broker's append.
    pub fn commit(&self, mut draft: Draft) -> ChatMessage {
        let def = self.def();
        let mut state = self.state.lock();
        // Staff back-channel messages take no seq of their own, so members
        // see a room sequence without holes; they sort after the seq they follow.
        if draft.msg.staff {
            state.staff_seq += 1;
            draft.msg.staff_seq = Some(state.staff_seq);
        } else {
            state.last_seq += 1;
        }
        draft.msg.seq = state.last_seq;
        let msg = draft.msg.clone();
        let frame = encode_message(&msg);
        let audience = if msg.staff { Audience::Staff } else { Audience::All };
        state.log.push_back(Stored { msg: draft.msg, account: draft.account, at: Instant::now() });
        self.prune(&def, &mut state);
        self.fan_out(&def.id, &mut state, &frame, audience);
        msg
    }

    /// Deliver an ephemeral event (typing, alerts, reports) to the room's
    /// members, on every node.
    pub fn broadcast(&self, frame: &Frame, audience: Audience<'_>) {
        self.broadcast_keyed(frame, audience, None);
    }

    /// [`Room::broadcast`] of a frame that supersedes older ones of its `key`.
    pub fn broadcast_keyed(&self, frame: &Frame, audience: Audience<'_>, key: Option<Key>) {
        let id = self.id();
        let mut state = self.state.lock();
        self.fan_out_keyed(&id, &mut state, frame, audience, key);
        if self.link.is_some() {
            self.emit(&id, Event::Frame { frame: frame.as_str().to_owned(), audience: audience.into() });
        }
    }

    /// Whether `member_id` may announce typing now (at most every 2 s).
    fn typing_allowed(&self, member_id: &MemberId) -> bool {
        let mut state = self.state.lock();
        if !state.members.contains_key(member_id) {
            return false;
        }
        let now = Instant::now();
        match state.last_typing.get(member_id) {
            Some(last) if now.duration_since(*last) < Duration::from_secs(2) => false,
            _ => {
                state.last_typing.insert(member_id.clone(), now);
                true
            }
        }
    }

    /// Replace the room's definition (admin API) and tell everyone in it.
    pub fn set_def(&self, def: RoomDef) {
        *self.def.write() = Arc::new(def);
        self.update(|_| {});
    }

    /// Whether this connection is still in the room (the hub may have removed
    /// it: kicked, banned, too slow, or the room closed).
    pub fn has_conn(&self, conn: ConnId) -> bool {
        self.state.lock().conns.contains_key(&conn)
    }

    pub fn member_count(&self) -> usize {
        self.state.lock().members.len()
    }
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
    link: Option<mpsc::Sender<Outgoing>>,
}

impl Hub {
    /// The rooms of one node; `link` carries this node's changes to the
    /// cluster (None on a single node).
    pub fn new(defs: Vec<RoomDef>, limits: Arc<Limits>, metrics: Arc<crate::metrics::Metrics>, link: Option<mpsc::Sender<Outgoing>>) -> Hub {
        let epoch = format!("e{:x}", rand::random::<u64>());
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
    pub fn summaries(&self) -> Vec<RoomSummary> {
        let rooms: Vec<Arc<Room>> = self.inner.rooms.iter().map(|r| r.value().clone()).collect();
        let mut list: Vec<RoomSummary> = rooms.iter().map(|r| r.summary()).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    pub fn join(&self, room: &RoomId, req: JoinRequest) -> Result<Joined, Refusal> {
        let Some(target) = self.room(room) else {
            return Err(Refusal::NoSuchRoom(room.clone()));
        };
        let topic = target.def().topic.clone();
        target.join(req, || {
            self.summaries()
                .into_iter()
                .filter(|s| &s.id != room && s.topic == topic && s.open && s.member_count < s.capacity)
                .collect()
        })
    }

    pub fn leave(&self, room: &RoomId, conn: ConnId) -> bool {
        self.room(room).is_some_and(|r| r.leave(conn))
    }

    /// Tell the room's other members that `member_id` is typing (throttled).
    pub fn typing(&self, room: &RoomId, member_id: &MemberId) {
        if let Some(r) = self.room(room) {
            if r.typing_allowed(member_id) {
                let frame = encode(&ServerMessage::Typing { room: room.clone(), member_id: member_id.clone() });
                r.broadcast_keyed(&frame, Audience::AllBut(member_id), Some(Key::new(Kind::Typing, (room, member_id))));
            }
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Connections across every room (a connection in two rooms counts twice).
    pub fn room_connections(&self) -> usize {
        self.inner.rooms.iter().map(|r| r.state.lock().conns.len()).sum()
    }
}

/// Moderation effects on a live room. Authorization and persistence are the
/// caller's; these only change what this node's room shows and tell its members.
impl Room {
    fn update_frame(def: &RoomDef, state: &RoomState) -> Frame {
        encode(&ServerMessage::RoomUpdate { room: def.id.clone(), info: Self::info(def, state) })
    }

    /// Change the room's live settings and send everyone a `room_update`.
    pub fn update(&self, f: impl FnOnce(&mut RoomSettings<'_>)) {
        let def = self.def();
        let mut state = self.state.lock();
        {
            let state = &mut *state;
            let mut settings = RoomSettings {
                slow_mode_s: &mut state.slow_mode_s,
                locked: &mut state.locked,
                topic_now: &mut state.topic_now,
                mode: &mut state.mode,
            };
            f(&mut settings);
        }
        if state.mode == RoomMode::Open {
            state.hands.clear();
        }
        let frame = Self::update_frame(&def, &state);
        self.fan_out(&def.id, &mut state, &frame, Audience::All);
        let settings = Settings { slow_mode_s: state.slow_mode_s, locked: state.locked, topic_now: state.topic_now.clone(), mode: state.mode };
        self.emit(&def.id, Event::Settings(settings));
    }

    /// The account behind a member id: someone present, or the author of a message in the log.
    pub fn account_of(&self, member_id: &MemberId) -> Option<AccountId> {
        let state = self.state.lock();
        if let Some(p) = state.members.get(member_id) {
            return Some(p.account.clone());
        }
        if let Some((account, _)) = state.seen.get(member_id) {
            return Some(account.clone());
        }
        state.log.iter().find(|s| &s.msg.from.member_id == member_id).map(|s| s.account.clone())
    }

    /// Whether `member_id` is in the room now or was recently.
    pub fn has_seen(&self, member_id: &MemberId) -> bool {
        let state = self.state.lock();
        state.members.contains_key(member_id) || state.seen.contains_key(member_id)
    }

    /// Note that `member_id` (of `account`) was in the room. Kept for the
    /// room's history retention (at least an hour), and for at most
    /// `SEEN_MAX` members, the longest ago forgotten first.
    fn remember(&self, def: &RoomDef, state: &mut RoomState, member_id: &MemberId, account: &AccountId) {
        const SEEN_MAX: usize = 4096;
        let now = Instant::now();
        state.seen.insert(member_id.clone(), (account.clone(), now));
        if state.seen.len() > SEEN_MAX {
            let keep = self.retention(def).max(Duration::from_secs(3600));
            state.seen.retain(|_, (_, at)| now.duration_since(*at) < keep);
            if state.seen.len() > SEEN_MAX {
                let mut ages: Vec<Instant> = state.seen.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() - SEEN_MAX / 2];
                state.seen.retain(|_, (_, at)| *at >= cutoff);
            }
        }
    }

    pub fn member(&self, member_id: &MemberId) -> Option<Member> {
        self.state.lock().members.get(member_id).map(|p| p.member.clone())
    }

    pub fn find_message(&self, id: &kindred_protocol::MessageId) -> Option<ChatMessage> {
        self.state.lock().log.iter().find(|s| &s.msg.message_id == id).map(|s| s.msg.clone())
    }

    /// Remove a message from the log (and so from joins and resumes) and tell the room.
    pub fn delete_message(&self, id: &kindred_protocol::MessageId) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        let Some(seq) = state.log.iter().find(|s| &s.msg.message_id == id).map(|s| s.msg.seq) else { return false };
        self.remove_from_log(&room, &mut state, id);
        self.emit(&room, Event::Deleted { message_id: id.clone(), seq });
        true
    }

    fn remove_from_log(&self, room: &RoomId, state: &mut RoomState, id: &kindred_protocol::MessageId) {
        let staff = match state.log.iter().position(|s| &s.msg.message_id == id) {
            Some(at) => state.log.remove(at).is_some_and(|s| s.msg.staff),
            None => false,
        };
        let frame = encode(&ServerMessage::MessageDeleted { room: room.clone(), message_id: id.clone() });
        let audience = if staff { Audience::Staff } else { Audience::All };
        self.fan_out(room, state, &frame, audience);
    }

    /// Remove every message `account` wrote; the ids removed.
    pub fn delete_by_account(&self, account: &AccountId) -> Vec<kindred_protocol::MessageId> {
        let room = self.id();
        self.emit(&room, Event::Forget { account: account.clone() });
        self.delete_by_account_here(&room, account)
    }

    fn delete_by_account_here(&self, room: &RoomId, account: &AccountId) -> Vec<kindred_protocol::MessageId> {
        let room = room.clone();
        let mut state = self.state.lock();
        let mut removed = Vec::new();
        state.log.retain(|s| {
            let mine = &s.account == account;
            if mine {
                removed.push(s.msg.message_id.clone());
            }
            !mine
        });
        for id in &removed {
            let frame = encode(&ServerMessage::MessageDeleted { room: room.clone(), message_id: id.clone() });
            self.fan_out(&room, &mut state, &frame, Audience::All);
        }
        removed
    }

    /// Send a frame to one member's connections only.
    pub fn send_to(&self, member_id: &MemberId, frame: &Frame) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        let Some(local) = state.members.get(member_id).map(Present::is_local) else { return false };
        if local {
            self.fan_out(&room, &mut state, frame, Audience::Member(member_id));
        } else {
            self.emit(&room, Event::Frame { frame: frame.as_str().to_owned(), audience: Aud::Member(member_id.clone()) });
        }
        true
    }

    /// Take a member out of the room (kick or ban): `notice` goes to it alone
    /// first, then the room sees it leave.
    pub fn remove_member(&self, member_id: &MemberId, notice: &Frame) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        let Some(local) = state.members.get(member_id).map(Present::is_local) else { return false };
        if !local {
            // Its own node takes it out; the room then hears it leave from there.
            self.emit(&room, Event::Remove { member_id: member_id.clone(), notice: notice.as_str().to_owned() });
            return true;
        }
        self.remove_local_member(&room, &mut state, member_id, notice);
        true
    }

    fn remove_local_member(&self, room: &RoomId, state: &mut RoomState, member_id: &MemberId, notice: &Frame) {
        let room = room.clone();
        self.fan_out(&room, state, notice, Audience::Member(member_id));
        state.conns.retain(|_, c| &c.member_id != member_id);
        if let Some(p) = state.members.get_mut(member_id) {
            p.conns = 1;
        }
        self.drop_member_conn(&room, state, member_id);
    }

    /// Change a present member's flags and tell the room with `member_update`.
    fn change_member(&self, state: &mut RoomState, member_id: &MemberId, f: impl FnOnce(&mut Member)) -> bool {
        let room = self.id();
        let Some(p) = state.members.get_mut(member_id) else { return false };
        f(&mut p.member);
        let member = p.member.clone();
        self.emit(&room, Event::Member { member: member.clone() });
        self.member_changed(&room, state, member);
        true
    }

    fn member_changed(&self, room: &RoomId, state: &mut RoomState, member: Member) {
        if let (Some(link), Some(p)) = (&self.link, state.members.get(&member.member_id)) {
            if p.is_local() {
                self.send_link(link, Outgoing::Present(room.clone(), member.clone(), p.account.clone()));
            }
        }
        let key = Key::new(Kind::Member, (room, &member.member_id));
        let frame = encode(&ServerMessage::MemberUpdate { room: room.clone(), member });
        self.fan_out_keyed(room, state, &frame, Audience::All, Some(key));
    }

    pub fn set_muted(&self, member_id: &MemberId, muted_until: Option<Option<String>>) -> bool {
        let mut state = self.state.lock();
        self.change_member(&mut state, member_id, |m| {
            m.muted = muted_until.is_some();
            m.muted_until = muted_until.flatten();
        })
    }

    fn send_hands(&self, state: &mut RoomState) {
        let room = self.id();
        self.emit(&room, Event::Hands { queue: state.hands.clone() });
        let frame = encode(&ServerMessage::Hands { room: room.clone(), queue: state.hands.clone() });
        self.fan_out_keyed(&room, state, &frame, Audience::Staff, Some(Key::new(Kind::Hands, &room)));
    }

    /// Raise or lower a member's hand; staff see the queue.
    pub fn set_hand(&self, member_id: &MemberId, raised: bool) -> bool {
        let mut state = self.state.lock();
        match state.members.get(member_id) {
            None => return false,
            // Already so: nothing to tell anyone.
            Some(p) if p.member.hand_raised == raised => return true,
            Some(_) => {}
        }
        if !self.change_member(&mut state, member_id, |m| m.hand_raised = raised) {
            return false;
        }
        state.hands.retain(|m| m != member_id);
        if raised {
            state.hands.push(member_id.clone());
        }
        self.send_hands(&mut state);
        true
    }

    /// Give the floor to `member_id` (taking it from whoever held it), or end it.
    pub fn set_floor(&self, member_id: &MemberId, give: bool) -> bool {
        let mut state = self.state.lock();
        if !state.members.contains_key(member_id) {
            return false;
        }
        if give {
            let holders: Vec<MemberId> =
                state.members.values().filter(|p| p.member.has_floor && &p.member.member_id != member_id).map(|p| p.member.member_id.clone()).collect();
            for holder in holders {
                self.change_member(&mut state, &holder, |m| m.has_floor = false);
            }
            state.hands.retain(|m| m != member_id);
            self.change_member(&mut state, member_id, |m| {
                m.has_floor = true;
                m.hand_raised = false;
            });
            self.send_hands(&mut state);
        } else {
            self.change_member(&mut state, member_id, |m| m.has_floor = false);
        }
        true
    }

    /// Who holds the floor now, if anyone.
    pub fn floor_holder(&self) -> Option<MemberId> {
        self.state.lock().members.values().find(|p| p.member.has_floor).map(|p| p.member.member_id.clone())
    }

    pub fn hands(&self) -> Vec<MemberId> {
        self.state.lock().hands.clone()
    }
}

/// The live settings a facilitator can change.
pub struct RoomSettings<'a> {
    pub slow_mode_s: &'a mut u32,
    pub locked: &'a mut bool,
    pub topic_now: &'a mut Option<String>,
    pub mode: &'a mut RoomMode,
}

impl Hub {
    /// Add a room (admin API). False if one with that id exists.
    pub fn add_room(&self, def: RoomDef) -> bool {
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
    pub fn remove_room(&self, id: &RoomId, note: &str) -> bool {
        let Some((_, room)) = self.inner.rooms.remove(id) else { return false };
        let frame = encode(&ServerMessage::Removed {
            room: id.clone(),
            reason: kindred_protocol::RemovedReason::Closed,
            note: Some(note.to_owned()),
            until: None,
        });
        room.broadcast(&frame, Audience::All);
        true
    }

    /// Every room on this node.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.inner.rooms.iter().map(|r| r.value().clone()).collect()
    }
}

/// A change one node made to a room, applied by every other node that has
/// members in it (cluster mode). Messages do not travel this way: they are
/// ordered and stored by the broker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// A member connected on the sending node.
    Joined { member: Member, account: AccountId },
    /// A member's last connection on the sending node ended.
    Left { member_id: MemberId },
    /// A frame for this room's members on every node.
    Frame { frame: String, audience: Aud },
    Settings(Settings),
    Member { member: Member },
    Hands { queue: Vec<MemberId> },
    Deleted { message_id: kindred_protocol::MessageId, seq: u64 },
    /// Remove every message this account wrote (`forget_me`).
    Forget { account: AccountId },
    /// Take a member out (kick or ban); its own node does it.
    Remove { member_id: MemberId, notice: String },
}

/// [`Audience`], owned, for the wire between nodes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aud {
    All,
    Staff,
    AllBut(MemberId),
    Member(MemberId),
}

impl From<Audience<'_>> for Aud {
    fn from(a: Audience<'_>) -> Aud {
        match a {
            Audience::All => Aud::All,
            Audience::Staff => Aud::Staff,
            Audience::AllBut(m) => Aud::AllBut(m.clone()),
            Audience::Member(m) => Aud::Member(m.clone()),
        }
    }
}

impl Aud {
    fn as_audience(&self) -> Audience<'_> {
        match self {
            Aud::All => Audience::All,
            Aud::Staff => Audience::Staff,
            Aud::AllBut(m) => Audience::AllBut(m),
            Aud::Member(m) => Audience::Member(m),
        }
    }
}

/// A room's live settings, as they travel between nodes and sit in Redis.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub slow_mode_s: u32,
    pub locked: bool,
    pub topic_now: Option<String>,
    pub mode: RoomMode,
}

/// What a room hands the cluster broker.
#[derive(Debug)]
pub enum Outgoing {
    Event(RoomId, Event),
    /// A local member's entry in the room's shared presence (new or changed).
    Present(RoomId, Member, AccountId),
    /// The room has no connection left on this node.
    Idle(RoomId),
}

/// A member another node holds, as the shared presence lists it.
#[derive(Debug, Clone)]
pub struct RemoteMember {
    pub node: Arc<str>,
    pub member: Member,
    pub account: AccountId,
}

/// The cluster side of a room: history ordered by Redis and changes from other nodes.
impl Room {
    /// Apply a change another node made.
    pub fn apply_remote(&self, node: &Arc<str>, event: Event) {
        let room = self.id();
        let mut state = self.state.lock();
        if let Event::Joined { member: Member { member_id, .. }, .. } | Event::Member { member: Member { member_id, .. } } | Event::Left { member_id } =
            &event
        {
            state.presence_news.insert(member_id.clone(), Instant::now());
        }
        match event {
            Event::Joined { member, account } => {
                if let Some(p) = state.members.get_mut(&member.member_id) {
                    if !p.is_local() {
                        p.node = Some(node.clone());
                        p.member = member;
                    }
                    return;
                }
                self.add_remote(&room, &mut state, RemoteMember { node: node.clone(), member, account });
            }
            Event::Left { member_id } => {
                if state.members.get(&member_id).is_some_and(|p| p.node.as_ref() == Some(node)) {
                    self.forget_member(&room, &mut state, &member_id);
                }
            }
            Event::Frame { frame, audience } => {
                self.fan_out(&room, &mut state, &Frame::from(frame), audience.as_audience());
            }
            Event::Settings(s) => {
                state.slow_mode_s = s.slow_mode_s;
                state.locked = s.locked;
                state.topic_now = s.topic_now;
                state.mode = s.mode;
                if state.mode == RoomMode::Open {
                    state.hands.clear();
                }
                let frame = Self::update_frame(&self.def(), &state);
                self.fan_out(&room, &mut state, &frame, Audience::All);
            }
            Event::Member { member } => {
                let Some(p) = state.members.get_mut(&member.member_id) else { return };
                p.member = member.clone();
                self.member_changed(&room, &mut state, member);
            }
            Event::Hands { queue } => {
                state.hands = queue;
                let frame = encode(&ServerMessage::Hands { room: room.clone(), queue: state.hands.clone() });
                self.fan_out_keyed(&room, &mut state, &frame, Audience::Staff, Some(Key::new(Kind::Hands, &room)));
            }
            Event::Deleted { message_id, .. } => self.remove_from_log(&room, &mut state, &message_id),
            Event::Forget { account } => {
                drop(state);
                self.delete_by_account_here(&room, &account);
            }
            Event::Remove { member_id, notice } => {
                if state.members.get(&member_id).is_some_and(Present::is_local) {
                    self.remove_local_member(&room, &mut state, &member_id, &Frame::from(notice));
                }
            }
        }
    }

    fn add_remote(&self, room: &RoomId, state: &mut RoomState, r: RemoteMember) {
        let member = r.member.clone();
        self.remember(&self.def(), state, &member.member_id, &r.account);
        state.members.insert(member.member_id.clone(), Present { member: r.member, account: r.account, conns: 0, node: Some(r.node) });
        let key = Key::new(Kind::Presence, (room, &member.member_id));
        let frame = encode(&ServerMessage::Presence {
            room: room.clone(),
            joined: Some(member),
            left: None,
            member_count: state.members.len() as u32,
        });
        self.fan_out_keyed(room, state, &frame, Audience::All, Some(key));
    }

    /// Make the members other nodes hold match the shared presence list
    /// (after a reconnect, and periodically: a crashed node's members go).
    /// `read_at`: when the list was read; a member some node's event spoke of
    /// since then is left as that event made it.
    pub fn sync_remote_members(&self, remote: Vec<RemoteMember>, read_at: Instant) {
        let room = self.id();
        let mut state = self.state.lock();
        state.presence_news.retain(|_, at| at.elapsed() < Duration::from_secs(120));
        let news = |state: &RoomState, m: &MemberId| state.presence_news.get(m).is_some_and(|at| *at >= read_at);
        let listed: std::collections::HashSet<&MemberId> = remote.iter().map(|r| &r.member.member_id).collect();
        let gone: Vec<MemberId> = state
            .members
            .values()
            .filter(|p| !p.is_local() && !listed.contains(&p.member.member_id) && !news(&state, &p.member.member_id))
            .map(|p| p.member.member_id.clone())
            .collect();
        for member_id in gone {
            self.forget_member(&room, &mut state, &member_id);
        }
        for r in remote {
            if news(&state, &r.member.member_id) {
                continue;
            }
            match state.members.get_mut(&r.member.member_id) {
                Some(p) if p.is_local() => {}
                Some(p) => {
                    p.node = Some(r.node);
                    p.member = r.member;
                }
                None => self.add_remote(&room, &mut state, r),
            }
        }
    }

    /// Drop the members a node held here: it stopped heartbeating. Returns how many.
    pub fn forget_node(&self, node: &str) -> usize {
        let room = self.id();
        let mut state = self.state.lock();
        let gone: Vec<MemberId> =
            state.members.values().filter(|p| p.node.as_deref() == Some(node)).map(|p| p.member.member_id.clone()).collect();
        for member_id in &gone {
            self.forget_member(&room, &mut state, member_id);
        }
        gone.len()
    }

    /// This node's members of the room, with their accounts (for the shared presence list).
    pub fn local_members(&self) -> Vec<(Member, AccountId)> {
        self.state.lock().members.values().filter(|p| p.is_local()).map(|p| (p.member.clone(), p.account.clone())).collect()
    }

    pub fn set_settings(&self, s: Settings) {
        let mut state = self.state.lock();
        state.slow_mode_s = s.slow_mode_s;
        state.locked = s.locked;
        state.topic_now = s.topic_now;
        state.mode = s.mode;
    }

    pub fn conn_count(&self) -> usize {
        self.state.lock().conns.len()
    }

    /// The position this node has delivered up to.
    pub fn position(&self) -> (String, u64) {
        let state = self.state.lock();
        (state.epoch.clone(), state.last_seq)
    }

    /// Start (re)loading history: arrivals wait until [`Room::load`].
    pub fn begin_load(&self) {
        self.state.lock().loading = true;
    }

    /// Replace the log with `entries` (oldest first, as stored in Redis, up to
    /// `seq`), then deliver whatever arrived meanwhile. Holes in `entries`
    /// are deleted messages. A changed epoch means the history was lost:
    /// this node's connections are asked to reconnect (1012) so every client
    /// learns it. Returns a gap to fill, if arrivals skipped ahead.
    pub fn load(&self, epoch: &str, seq: u64, entries: Vec<Stored>) -> Option<(u64, u64)> {
        let def = self.def();
        let mut state = self.state.lock();
        if state.epoch != epoch {
            for entry in state.conns.values() {
                entry.outbox.control.close(CloseCode::Restarting);
            }
            state.epoch = epoch.to_owned();
            state.pending.clear();
        }
        state.log = entries.into_iter().collect();
        state.last_seq = seq;
        state.pruned_through = state.log.iter().find(|s| !s.msg.staff).map_or(seq, |s| s.msg.seq.saturating_sub(1));
        state.loading = false;
        self.prune(&def, &mut state);
        self.drain_pending(&def, &mut state)
    }

    /// A message ordered by Redis, from the subscription or a gap fill. It is
    /// delivered in `seq` order: one ahead of a gap waits for the gap to be
    /// filled; one already delivered is dropped. Returns a gap to fill.
    pub fn deliver(&self, epoch: &str, stored: Stored) -> Option<(u64, u64)> {
        let def = self.def();
        let mut state = self.state.lock();
        if state.loading {
            state.pending.insert(pending_key(&stored), stored);
            return None;
        }
        if epoch != state.epoch {
            // From a history this node has not loaded (see `needs_reload`).
            return None;
        }
        if stored.msg.staff {
            if state.log.iter().any(|s| s.msg.message_id == stored.msg.message_id) {
                return None;
            }
            self.push_and_send(&def, &mut state, stored);
            return None;
        }
        let seq = stored.msg.seq;
        if seq <= state.last_seq {
            return None;
        }
        if seq > state.last_seq + 1 {
            let from = state.last_seq + 1;
            state.pending.insert(pending_key(&stored), stored);
            return Some((from, seq - 1));
        }
        state.last_seq = seq;
        self.push_and_send(&def, &mut state, stored);
        self.drain_pending(&def, &mut state)
    }

    /// A message this node has just appended, from Redis's reply: delivered
    /// as from the subscription, except that a gap before it is not filled
    /// from here. What is missing is still on its way over the
    /// subscription, and this message's own push fills the gap if it is not.
    pub fn deliver_appended(&self, epoch: &str, stored: Stored) {
        let _gap_left_to_the_subscription = self.deliver(epoch, stored);
    }

    /// Whether a message of `epoch` means this node holds a history Redis
    /// no longer has (and no load is under way that will settle it).
    pub fn needs_reload(&self, epoch: &str) -> bool {
        let state = self.state.lock();
        !state.loading && state.epoch != epoch
    }

    /// A gap `from..=to` was filled from Redis with `entries`; whatever is not
    /// among them was deleted or trimmed, so delivery moves past it.
    pub fn filled(&self, epoch: &str, to: u64, entries: Vec<Stored>) -> Option<(u64, u64)> {
        for stored in entries {
            self.deliver(epoch, stored);
        }
        let def = self.def();
        let mut state = self.state.lock();
        if epoch != state.epoch || state.loading {
            return None;
        }
        if state.last_seq < to {
            state.last_seq = to;
        }
        self.drain_pending(&def, &mut state)
    }

    fn push_and_send(&self, def: &RoomDef, state: &mut RoomState, stored: Stored) {
        let frame = encode_message(&stored.msg);
        let audience = if stored.msg.staff { Audience::Staff } else { Audience::All };
        state.log.push_back(stored);
        self.prune(def, state);
        self.fan_out(&def.id, state, &frame, audience);
    }

    fn drain_pending(&self, def: &RoomDef, state: &mut RoomState) -> Option<(u64, u64)> {
        while let Some(entry) = state.pending.first_entry() {
            let stored = entry.get();
            let seq = stored.msg.seq;
            if stored.msg.staff {
                if seq > state.last_seq {
                    break;
                }
            } else if seq > state.last_seq + 1 {
                return Some((state.last_seq + 1, seq - 1));
            }
            let stored = entry.remove();
            if stored.msg.staff {
                if !state.log.iter().any(|s| s.msg.message_id == stored.msg.message_id) {
                    self.push_and_send(def, state, stored);
                }
            } else if seq == state.last_seq + 1 {
                state.last_seq = seq;
                self.push_and_send(def, state, stored);
            }
        }
        None
    }
}

/// Pending messages sort by seq, a staff message after the member message it follows.
fn pending_key(stored: &Stored) -> u64 {
    stored.msg.seq * 2 + u64::from(stored.msg.staff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindred_protocol::{MessageId, Sender};

    #[tokio::test]
    async fn a_close_request_reaches_a_waiting_or_a_late_session_and_the_first_wins() {
        let control = Arc::new(Control::default());
        let waiting = tokio::spawn({
            let control = control.clone();
            async move { control.closed().await }
        });
        tokio::task::yield_now().await;
        let asker = std::thread::spawn({
            let control = control.clone();
            move || control.close(CloseCode::TooSlow)
        });
        asker.join().unwrap();
        let code = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the waiting session was woken").unwrap();
        assert_eq!(code, CloseCode::TooSlow);
        control.close(CloseCode::Banned);
        assert_eq!(control.closed().await, CloseCode::TooSlow, "the first request wins, and a late look sees it");
    }

    fn stored(seq: u64) -> Stored {
        let msg = ChatMessage {
            room: RoomId::from("grief"),
            message_id: MessageId(format!("m{seq}")),
            seq,
            from: Sender { member_id: MemberId::from("m_1"), handle: "Ann".into(), role: Role::Member },
            text: format!("text {seq}"),
            ts: "2026-11-23T10:00:00.000Z".into(),
            reply_to: None,
            cw: None,
            staff: false,
            staff_seq: None,
        };
        Stored { msg, account: AccountId::from("a_1"), at: Instant::now() }
    }

    /// A cluster room with one staff connection; returns the room and what the connection receives.
    fn cluster_room() -> (Arc<Room>, crate::mailbox::Receiver) {
        let defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
        let (link, _link_rx) = mpsc::channel(1024);
        let hub = Hub::new(defs, Arc::new(Limits::default()), Arc::default(), Some(link));
        let room = hub.room(&RoomId::from("grief")).unwrap();
        room.begin_load();
        assert_eq!(room.load("e1", 0, Vec::new()), None);
        let (tx, rx) = crate::mailbox::mailbox(64);
        room.join(staff_join(ConnId::next(), "staff", "Sam", tx), Vec::new).unwrap();
        (room, rx)
    }

    /// A facilitator's join (no rules to accept), as account `a_{id}` and member `m_{id}`.
    fn staff_join(conn: ConnId, id: &str, handle: &str, tx: crate::mailbox::Sender) -> JoinRequest {
        JoinRequest {
            conn,
            account: AccountId::from(format!("a_{id}").as_str()),
            member_id: MemberId::from(format!("m_{id}").as_str()),
            handle: handle.into(),
            role: Role::Facilitator,
            accept_rules: None,
            since: None,
            outbox: Outbox { tx, control: Arc::default() },
            muted: None,
        }
    }

    fn seqs(rx: &mut crate::mailbox::Receiver) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(frame) = rx.try_recv() {
            if let Ok(ServerMessage::Message(m)) = serde_json::from_str(frame.as_str()) {
                out.push(m.seq);
            }
        }
        out
    }

    #[test]
    fn a_gap_holds_later_messages_until_it_is_filled() {
        let (room, mut rx) = cluster_room();
        assert_eq!(room.deliver("e1", stored(1)), None);
        assert_eq!(room.deliver("e1", stored(1)), None, "a duplicate is dropped");
        assert_eq!(room.deliver("e1", stored(4)), Some((2, 3)), "a gap asks to be filled");
        assert_eq!(room.deliver("e1", stored(5)), Some((2, 4)));
        assert_eq!(seqs(&mut rx), [1], "nothing after the gap goes out before it is filled");
        // The fill finds 2 only (3 was deleted): delivery moves past 3, then 4 and 5 follow.
        assert_eq!(room.filled("e1", 3, vec![stored(2)]), None);
        assert_eq!(seqs(&mut rx), [2, 4, 5]);
        assert_eq!(room.position(), ("e1".to_owned(), 5));
    }

    /// The sender's node delivers its own message from Redis's reply. One
    /// from another node that Redis ordered before it may still be on its
    /// way: the own message waits for it, and its push is a duplicate.
    #[test]
    fn an_appended_message_waits_for_earlier_ones_and_its_push_is_dropped() {
        let (room, mut rx) = cluster_room();
        assert_eq!(room.deliver("e1", stored(1)), None);
        room.deliver_appended("e1", stored(3));
        assert_eq!(seqs(&mut rx), [1], "not ahead of 2");
        assert_eq!(room.deliver("e1", stored(2)), None);
        assert_eq!(room.deliver("e1", stored(3)), None, "its push");
        assert_eq!(seqs(&mut rx), [2, 3]);
        room.deliver_appended("e1", stored(4));
        assert_eq!(room.deliver("e1", stored(4)), None);
        assert_eq!(seqs(&mut rx), [4]);
    }

    fn remote(id: &str) -> RemoteMember {
        let member = Member {
            member_id: MemberId::from(id),
            handle: id.to_owned(),
            role: Role::Member,
            muted: false,
            muted_until: None,
            hand_raised: false,
            has_floor: false,
        };
        RemoteMember { node: Arc::from("b"), member, account: AccountId::from("a_x") }
    }

    /// Regression: removing a dead connection announced the departure with a
    /// fan-out that removed the next dead connection, and so on: one level of
    /// recursion per member. A 2,000-member room whose connections all closed
    /// at once overflowed the stack and aborted the server.
    #[test]
    fn a_room_whose_connections_all_close_at_once_empties_without_recursing() {
        const MEMBERS: usize = 800;
        // A small stack: recursing once per member overflows it many times over.
        let worker = std::thread::Builder::new().stack_size(128 * 1024).spawn(|| {
            let mut defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
            defs.iter_mut().for_each(|d| d.capacity = 10_000);
            let hub = Hub::new(defs, Arc::new(Limits::default()), Arc::default(), None);
            let room = hub.room(&RoomId::from("grief")).unwrap();
            let mut mailboxes = Vec::new();
            for i in 0..MEMBERS {
                let (tx, rx) = crate::mailbox::mailbox(MEMBERS + 8);
                let conn = ConnId::next();
                room.join(staff_join(conn, &i.to_string(), &format!("Member {i}"), tx), Vec::new).unwrap();
                mailboxes.push((conn, rx));
            }
            let (first, _kept) = mailboxes.remove(0);
            drop(mailboxes);
            // The one live member leaves; its departure finds every other connection closed.
            assert!(room.leave(first));
            room.member_count()
        });
        assert_eq!(worker.unwrap().join().unwrap(), 0, "every closed connection was removed");
    }

    #[test]
    fn a_presence_snapshot_older_than_an_event_does_not_undo_it() {
        let (room, _rx) = cluster_room();
        let node: Arc<str> = Arc::from("b");
        room.sync_remote_members(vec![remote("m_old")], Instant::now());
        assert!(room.member(&MemberId::from("m_old")).is_some());
        let read_at = Instant::now();
        // After the snapshot was read, one member joined and another left.
        room.apply_remote(&node, Event::Joined { member: remote("m_new").member, account: AccountId::from("a_new") });
        room.apply_remote(&node, Event::Left { member_id: MemberId::from("m_old") });
        // The stale snapshot lists the leaver and lacks the newcomer.
        room.sync_remote_members(vec![remote("m_old")], read_at);
        assert!(room.member(&MemberId::from("m_new")).is_some(), "a newer join was undone");
        assert!(room.member(&MemberId::from("m_old")).is_none(), "a newer leave was undone");
        // A snapshot read after the events is applied as it is.
        room.sync_remote_members(Vec::new(), Instant::now());
        assert!(room.member(&MemberId::from("m_new")).is_none());
    }

    #[test]
    fn a_silent_nodes_members_go_and_the_others_stay() {
        let (room, _rx) = cluster_room();
        let other = RemoteMember { node: Arc::from("c"), ..remote("m_c") };
        room.sync_remote_members(vec![remote("m_b1"), remote("m_b2"), other], Instant::now());
        assert_eq!(room.forget_node("b"), 2);
        assert!(room.member(&MemberId::from("m_b1")).is_none());
        assert!(room.member(&MemberId::from("m_c")).is_some(), "a member of a live node was dropped");
        assert_eq!(room.forget_node("b"), 0);
    }

    #[test]
    fn arrivals_during_a_load_wait_for_it() {
        let (room, mut rx) = cluster_room();
        room.begin_load();
        assert_eq!(room.deliver("e1", stored(3)), None);
        assert_eq!(room.deliver("e1", stored(2)), None);
        assert!(seqs(&mut rx).is_empty());
        // The load brought history up to 2: 2 is a duplicate, 3 goes out.
        assert_eq!(room.load("e1", 2, vec![stored(1), stored(2)]), None);
        assert_eq!(seqs(&mut rx), [3]);
    }
}
