//! Live rooms on this node: who is connected to each room, the room's recent
//! message log, and fan-out. A frame is encoded once and its bytes shared by
//! every recipient's bounded mailbox; the fan-out loop never awaits, and a
//! recipient whose mailbox is full is closed with 4408 (it resumes from
//! history) instead of slowing the room down. The hub never touches sockets.

use crate::config::Limits;
use crate::rooms::{RoomDef, rfc3339};
use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use dashmap::DashMap;
use kindred_protocol::{
    AccountId, ChatMessage, CloseCode, ErrorBody, ErrorCode, Member, MemberId, Position, Role,
    RoomId, RoomInfo, RoomMode, RoomSummary, ServerMessage,
};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

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
#[derive(Debug, Default)]
pub struct Control {
    code: AtomicU16,
    notify: Notify,
}

impl Control {
    /// Ask the connection to close with `code`; the first request wins.
    pub fn close(&self, code: CloseCode) {
        if self.code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // notify_one stores a permit, so a session that is busy now still sees it.
            self.notify.notify_one();
        }
    }

    /// Resolves once `close` was called, with its code.
    pub async fn closed(&self) -> CloseCode {
        loop {
            if let Some(code) = CloseCode::from_code(self.code.load(Ordering::Acquire)) {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// Where the hub delivers a connection's frames.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub tx: mpsc::Sender<Frame>,
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

/// Why a join was refused, as the contract's error.
pub type JoinError = ErrorBody;

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
    conns: u32,
}

struct RoomState {
    conns: HashMap<ConnId, ConnEntry>,
    members: HashMap<MemberId, Present>,
    log: VecDeque<Stored>,
    last_seq: u64,
    /// Every message up to this seq has left the log by age or count.
    pruned_through: u64,
    slow_mode_s: u32,
    locked: bool,
    topic_now: Option<String>,
    mode: RoomMode,
    last_sent: HashMap<MemberId, Instant>,
    last_typing: HashMap<MemberId, Instant>,
    /// Structured mode: members waiting to speak, in order.
    hands: Vec<MemberId>,
}

/// One room's live state on this node.
pub struct Room {
    metrics: Arc<crate::metrics::Metrics>,
    def: RwLock<Arc<RoomDef>>,
    state: Mutex<RoomState>,
    epoch: String,
    limits: Arc<Limits>,
}

impl Room {
    fn new(def: RoomDef, epoch: String, limits: Arc<Limits>, metrics: Arc<crate::metrics::Metrics>) -> Room {
        Room {
            metrics,
            def: RwLock::new(Arc::new(def)),
            state: Mutex::new(RoomState {
                conns: HashMap::new(),
                members: HashMap::new(),
                log: VecDeque::new(),
                last_seq: 0,
                pruned_through: 0,
                slow_mode_s: 0,
                locked: false,
                topic_now: None,
                mode: RoomMode::Open,
                last_sent: HashMap::new(),
                last_typing: HashMap::new(),
                hands: Vec::new(),
            }),
            epoch,
            limits,
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
        def.summary(Utc::now(), state.members.len() as u32, state.mode)
    }

    fn info(def: &RoomDef, state: &RoomState) -> RoomInfo {
        RoomInfo {
            summary: def.summary(Utc::now(), state.members.len() as u32, state.mode),
            rules: def.rules.clone(),
            topic_now: state.topic_now.clone(),
            slow_mode_s: state.slow_mode_s,
            locked: state.locked,
        }
    }

    /// Join the room: checks, then registration and the history snapshot
    /// under one lock, so the member misses nothing and sees nothing twice.
    fn join(&self, req: JoinRequest, alternatives: impl FnOnce() -> Vec<RoomSummary>) -> Result<Joined, JoinError> {
        let def = self.def();
        let now = Utc::now();
        let staff = req.role.is_staff();
        if !staff {
            if let Some(crate::rooms::schedule::Status::Closed { next_open_at }) = def.status(now) {
                let mut e = ErrorBody::new(ErrorCode::RoomClosed, "This room is closed now. It opens again at the time shown.");
                e.next_open_at = next_open_at.map(rfc3339);
                return Err(e);
            }
            if req.accept_rules.is_none_or(|v| v < def.rules_version) {
                let mut e = ErrorBody::new(
                    ErrorCode::RulesNotAccepted,
                    "Please read the room's ground rules, then join again with accept_rules.",
                );
                e.rules_version = Some(def.rules_version);
                e.rules = Some(def.rules.clone());
                return Err(e);
            }
        }
        let mut state = self.state.lock();
        self.prune(&def, &mut state);
        let already_present = state.members.contains_key(&req.member_id);
        if !staff && !already_present {
            if state.locked {
                return Err(ErrorBody::new(ErrorCode::RoomLocked, "This room is not taking new members right now."));
            }
            let members = state.members.values().filter(|p| !p.member.role.is_staff()).count();
            if members >= def.capacity as usize {
                drop(state);
                let mut e = ErrorBody::new(ErrorCode::RoomFull, "This room is full. These rooms on the same topic have space.");
                e.alternatives = Some(alternatives());
                return Err(e);
            }
        }

        let new_conn = !state.conns.contains_key(&req.conn);
        let me = match state.members.get_mut(&req.member_id) {
            Some(present) => {
                if new_conn {
                    present.conns += 1;
                }
                present.member.clone()
            }
            None => {
                let handle = crate::handles::unique_in_room(&req.handle, |h| {
                    state.members.values().any(|p| p.member.handle.eq_ignore_ascii_case(h))
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
                state.members.insert(req.member_id.clone(), Present { member: member.clone(), account: req.account.clone(), conns: 1 });
                member
            }
        };
        if new_conn {
            state.conns.insert(req.conn, ConnEntry { member_id: req.member_id.clone(), staff, outbox: req.outbox });
        }

        let visible = |s: &&Stored| staff || !s.msg.staff;
        let resume_from = req.since.as_ref().filter(|p| {
            p.epoch == self.epoch && p.seq >= state.pruned_through && p.seq <= state.last_seq
        });
        let (history, recovered) = match resume_from {
            Some(p) => (
                state.log.iter().filter(|s| s.msg.seq > p.seq).filter(visible).map(|s| s.msg.clone()).collect(),
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
            epoch: self.epoch.clone(),
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
            self.fan_out(&def.id, &mut state, &frame, Audience::AllBut(&me.member_id));
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
            Some(p) if p.conns > 1 => {
                p.conns -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            state.members.remove(member_id);
            state.last_typing.remove(member_id);
            state.hands.retain(|m| m != member_id);
            let frame = encode(&ServerMessage::Presence {
                room: room.clone(),
                joined: None,
                left: Some(member_id.clone()),
                member_count: state.members.len() as u32,
            });
            self.fan_out(room, state, &frame, Audience::All);
        }
    }

    /// Queue `frame` for the audience without waiting for anyone. Connections
    /// whose mailbox is full are told to close (4408) and leave the room.
    fn fan_out(&self, room: &RoomId, state: &mut RoomState, frame: &Frame, audience: Audience<'_>) {
        let mut dead: Vec<ConnId> = Vec::new();
        let mut delivered = 0u64;
        for (id, entry) in &state.conns {
            let wanted = match audience {
                Audience::All => true,
                Audience::Staff => entry.staff,
                Audience::AllBut(m) => &entry.member_id != m,
                Audience::Member(m) => &entry.member_id == m,
            };
            if !wanted {
                continue;
            }
            match entry.outbox.tx.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    entry.outbox.control.close(CloseCode::TooSlow);
                    crate::metrics::Metrics::add(&self.metrics.slow_consumer_closes, 1);
                    dead.push(*id);
                }
                // The session ended and will leave the room itself; skip it.
                Err(mpsc::error::TrySendError::Closed(_)) => dead.push(*id),
            }
        }
        crate::metrics::Metrics::add(&self.metrics.deliveries, delivered);
        for id in dead {
            if let Some(entry) = state.conns.remove(&id) {
                tracing::debug!(room = %room, conn = id.0, "connection too slow or gone; removed from room");
                self.drop_member_conn(room, state, &entry.member_id);
            }
        }
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
    pub fn admit_send(&self, member_id: &MemberId, role: Role, staff_only: bool) -> Result<(), ErrorBody> {
        let def = self.def();
        let mut state = self.state.lock();
        let Some(present) = state.members.get(member_id) else {
            return Err(ErrorBody::new(ErrorCode::NotMember, "Join the room before sending to it."));
        };
        if staff_only && !role.is_staff() {
            return Err(ErrorBody::new(ErrorCode::Forbidden, "Only facilitators can use the staff channel."));
        }
        if role.is_staff() {
            return Ok(());
        }
        let has_floor = present.member.has_floor;
        if def.requires_facilitator && !state.members.values().any(|p| p.member.role.is_staff()) {
            return Err(ErrorBody::new(
                ErrorCode::WaitingForFacilitator,
                "A facilitator will open the conversation soon. You can read along until then.",
            ));
        }
        if state.mode == RoomMode::Structured && !has_floor {
            return Err(ErrorBody::new(ErrorCode::NotYourTurn, "Raise your hand and a facilitator will give you the floor."));
        }
        if state.slow_mode_s > 0 {
            let gap = Duration::from_secs(state.slow_mode_s.into());
            if let Some(last) = state.last_sent.get(member_id) {
                let waited = last.elapsed();
                if waited < gap {
                    let wait = (gap - waited).as_millis() as u64;
                    return Err(ErrorBody::new(ErrorCode::SlowMode, "Slow mode is on: take a breath, then send again.")
                        .retry_after(wait.max(1)));
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
        if !draft.msg.staff {
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

    /// Deliver an ephemeral event (typing, presence, updates) to this node's members.
    pub fn broadcast(&self, frame: &Frame, audience: Audience<'_>) {
        let id = self.id();
        let mut state = self.state.lock();
        self.fan_out(&id, &mut state, frame, audience);
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
}

impl Hub {
    pub fn new(defs: Vec<RoomDef>, limits: Arc<Limits>, metrics: Arc<crate::metrics::Metrics>) -> Hub {
        let epoch = format!("e{:x}", rand::random::<u64>());
        let rooms = DashMap::new();
        for def in defs {
            rooms.insert(def.id.clone(), Arc::new(Room::new(def, epoch.clone(), limits.clone(), metrics.clone())));
        }
        Hub { inner: Arc::new(Inner { rooms, metrics, epoch, limits }) }
    }

    pub fn epoch(&self) -> &str {
        &self.inner.epoch
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

    pub fn join(&self, room: &RoomId, req: JoinRequest) -> Result<Joined, JoinError> {
        let Some(target) = self.room(room) else {
            return Err(ErrorBody::new(ErrorCode::NotFound, format!("There is no room called '{room}'.")));
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
                r.broadcast(&frame, Audience::AllBut(member_id));
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
    }

    /// The account behind a member id: someone present, or the author of a message in the log.
    pub fn account_of(&self, member_id: &MemberId) -> Option<AccountId> {
        let state = self.state.lock();
        if let Some(p) = state.members.get(member_id) {
            return Some(p.account.clone());
        }
        state.log.iter().find(|s| &s.msg.from.member_id == member_id).map(|s| s.account.clone())
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
        let Some(at) = state.log.iter().position(|s| &s.msg.message_id == id) else { return false };
        let removed = state.log.remove(at).expect("the position was just found");
        let frame = encode(&ServerMessage::MessageDeleted { room: room.clone(), message_id: id.clone() });
        let audience = if removed.msg.staff { Audience::Staff } else { Audience::All };
        self.fan_out(&room, &mut state, &frame, audience);
        true
    }

    /// Remove every message `account` wrote; the ids removed.
    pub fn delete_by_account(&self, account: &AccountId) -> Vec<kindred_protocol::MessageId> {
        let room = self.id();
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
        if !state.members.contains_key(member_id) {
            return false;
        }
        self.fan_out(&room, &mut state, frame, Audience::Member(member_id));
        true
    }

    /// Take a member out of the room (kick or ban): `notice` goes to it alone
    /// first, then the room sees it leave.
    pub fn remove_member(&self, member_id: &MemberId, notice: &Frame) -> bool {
        let room = self.id();
        let mut state = self.state.lock();
        if !state.members.contains_key(member_id) {
            return false;
        }
        self.fan_out(&room, &mut state, notice, Audience::Member(member_id));
        state.conns.retain(|_, c| &c.member_id != member_id);
        if let Some(p) = state.members.get_mut(member_id) {
            p.conns = 1;
        }
        self.drop_member_conn(&room, &mut state, member_id);
        true
    }

    /// Change a present member's flags and tell the room with `member_update`.
    fn change_member(&self, state: &mut RoomState, member_id: &MemberId, f: impl FnOnce(&mut Member)) -> bool {
        let room = self.id();
        let Some(p) = state.members.get_mut(member_id) else { return false };
        f(&mut p.member);
        let frame = encode(&ServerMessage::MemberUpdate { room: room.clone(), member: p.member.clone() });
        self.fan_out(&room, state, &frame, Audience::All);
        true
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
        let frame = encode(&ServerMessage::Hands { room: room.clone(), queue: state.hands.clone() });
        self.fan_out(&room, state, &frame, Audience::Staff);
    }

    /// Raise or lower a member's hand; staff see the queue.
    pub fn set_hand(&self, member_id: &MemberId, raised: bool) -> bool {
        let mut state = self.state.lock();
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
                slot.insert(Arc::new(Room::new(def, self.inner.epoch.clone(), self.inner.limits.clone(), self.inner.metrics.clone())));
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
