//! A room's live state on this node and its core path: join and leave,
//! admission of a send, and fan-out to the connections' mailboxes.

use super::*;

pub(super) struct ConnEntry {
    pub(super) member_id: MemberId,
    pub(super) staff: bool,
    pub(super) outbox: Outbox,
}

pub(super) struct Present {
    pub(super) member: Member,
    pub(super) account: AccountId,
    /// Connections on this node; 0 for a member on another node.
    pub(super) conns: u32,
    /// The node the member is connected to, when it is not this one.
    pub(super) node: Option<Arc<str>>,
}

impl Present {
    pub(super) fn is_local(&self) -> bool {
        self.node.is_none()
    }
}

/// What a room remembers of a member it has seen (memory only, bounded; see `Room::remember`).
pub(super) struct Seen {
    pub(super) account: AccountId,
    /// When the room first saw it, as far as it remembers.
    pub(super) first: Instant,
    pub(super) last: Instant,
}

pub(super) struct RoomState {
    pub(super) conns: HashMap<ConnId, ConnEntry>,
    pub(super) members: HashMap<MemberId, Present>,
    pub(super) log: VecDeque<Stored>,
    pub(super) last_seq: u64,
    /// Every message up to this seq has left the log by age or count.
    pub(super) pruned_through: u64,
    pub(super) slow_mode_s: u32,
    pub(super) locked: bool,
    pub(super) topic_now: Option<String>,
    pub(super) mode: RoomMode,
    /// The pinned message, as in history (without reactions).
    pub(super) pinned: Option<Box<ChatMessage>>,
    /// The facilitator's timed session.
    pub(super) session: Option<SessionInfo>,
    /// Reactions to messages still in the log, by message (see `reactions.rs`).
    pub(super) reactions: HashMap<MessageId, Reacts>,
    /// Each member's budget of reactions (`reactions_per_10s`), like typing's throttle.
    pub(super) react_budget: HashMap<MemberId, crate::ratelimit::TokenBucket>,
    pub(super) last_sent: HashMap<MemberId, Instant>,
    pub(super) last_typing: HashMap<MemberId, Instant>,
    /// Structured mode: members waiting to speak, in order.
    pub(super) hands: Vec<MemberId>,
    /// The history's epoch: fixed per process in the embedded default, kept
    /// in Redis per room in a cluster (it changes when Redis loses history).
    pub(super) epoch: String,
    /// Cluster: messages that arrived ahead of a gap, by seq, until it is filled.
    pub(super) pending: BTreeMap<u64, Stored>,
    /// Cluster: the room's history is being (re)loaded; arrivals wait in `pending`.
    pub(super) loading: bool,
    /// Cluster: when another node's event last said who a member is (joined,
    /// left, changed), so a presence snapshot read before it cannot undo it.
    pub(super) presence_news: HashMap<MemberId, Instant>,
    /// Every member id the room has seen (joined, on any node), with its
    /// account and when, so a facilitator can warn, mute, ban or unban
    /// someone who already left, and staff can tell who is new. Memory
    /// only; see `remember`.
    pub(super) seen: HashMap<MemberId, Seen>,
    /// Connections `fan_out` found closed or too slow, not yet removed.
    pub(super) dead: Vec<ConnId>,
    /// A `fan_out` up the stack is removing `dead`: nested ones only add to it.
    pub(super) removing_dead: bool,
    /// Who has spoken lately, as counts (see `participation.rs`).
    pub(super) participation: super::participation::Participation,
}

/// One room's live state on this node.
pub struct Room {
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    pub(super) def: RwLock<Arc<RoomDef>>,
    pub(super) state: Mutex<RoomState>,
    pub(super) limits: Arc<Limits>,
    /// In a cluster: where changes made on this node go so other nodes apply them.
    pub(super) link: Replicator,
}

impl Room {
    pub(super) fn new(def: RoomDef, epoch: String, limits: Arc<Limits>, metrics: Arc<crate::metrics::Metrics>, link: Replicator) -> Room {
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
                slow_mode_s: 0,
                locked: false,
                topic_now: None,
                mode: RoomMode::Open,
                pinned: None,
                session: None,
                reactions: HashMap::new(),
                react_budget: HashMap::new(),
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
                participation: Default::default(),
            }),
            limits,
        }
    }

    /// Hand a change made on this node to the cluster (a no-op on one node).
    pub(super) fn emit(&self, room: &RoomId, event: Event) {
        self.link.send(Outgoing::Event(room.clone(), event), &self.metrics);
    }

    pub fn def(&self) -> Arc<RoomDef> {
        self.def.read().clone()
    }

    pub(crate) fn id(&self) -> RoomId {
        self.def.read().id.clone()
    }

    /// How long the room keeps its messages.
    pub(crate) fn retention(&self, def: &RoomDef) -> Duration {
        Duration::from_secs(u64::from(def.history_minutes.unwrap_or(self.limits.history_minutes)) * 60)
    }

    pub(crate) fn summary(&self) -> RoomSummary {
        let def = self.def();
        let state = self.state.lock();
        Self::summary_of(&def, &state)
    }

    /// The directory entry: the definition's, with what the live room adds —
    /// a locked or full room is not open to newcomers.
    pub(super) fn summary_of(def: &RoomDef, state: &RoomState) -> RoomSummary {
        let mut summary = def.summary(Utc::now(), state.members.len() as u32, state.mode);
        let members = state.members.values().filter(|p| !p.member.role.is_staff()).count();
        summary.locked = state.locked;
        summary.open &= !state.locked && members < def.capacity as usize;
        summary
    }

    pub(super) fn info(def: &RoomDef, state: &RoomState) -> RoomInfo {
        RoomInfo {
            summary: Self::summary_of(def, state),
            rules: def.rules.clone(),
            topic_now: state.topic_now.clone(),
            slow_mode_s: state.slow_mode_s,
            pinned: state.pinned.clone(),
            session: state.session.clone(),
        }
    }

    /// Join the room: checks, then registration and the history snapshot
    /// under one lock, so the member misses nothing and sees nothing twice.
    pub(super) fn join(&self, req: JoinRequest, alternatives: impl FnOnce() -> Vec<RoomSummary>) -> Result<Joined, Refusal> {
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
                let first_time = !req.role.is_staff() && self.is_first_visit(&state, &req.member_id, &req.account);
                let member = Member {
                    member_id: req.member_id.clone(),
                    handle,
                    role: req.role,
                    muted: req.muted.is_some(),
                    muted_until: req.muted.clone().flatten(),
                    hand_raised: false,
                    has_floor: false,
                    first_time,
                };
                state.members.insert(req.member_id.clone(), Present { member: member.clone(), account: req.account.clone(), conns: 1, node: None });
                self.remember(&def, &mut state, &req.member_id, &req.account);
                announce = true;
                member
            }
        };
        if new_conn {
            state.conns.insert(req.conn, ConnEntry { member_id: req.member_id.clone(), staff, outbox: req.outbox });
        }

        let visible = |s: &&Stored| staff || !s.msg.staff;
        let with_reactions = |s: &Stored| Self::with_reactions(&state, s.msg.clone());
        let resume_from = req.since.as_ref().filter(|p| p.epoch == state.epoch && p.seq >= state.pruned_through && p.seq <= state.last_seq);
        let (history, recovered) = match resume_from {
            // A staff message shares the seq of the room message before it, so
            // one with the client's own seq may be news to it: staff get those
            // too, and dedupe by message_id.
            Some(p) => (
                state.log.iter().filter(|s| s.msg.seq > p.seq || (staff && s.msg.staff && s.msg.seq == p.seq)).filter(visible).map(with_reactions).collect(),
                true,
            ),
            None => {
                let window: Vec<ChatMessage> = state.log.iter().filter(visible).map(with_reactions).collect();
                let skip = window.len().saturating_sub(self.limits.history_on_join);
                (window.into_iter().skip(skip).collect(), req.since.is_none())
            }
        };
        // Who is new is for the room's staff alone: this is where it leaves the server.
        let shown = |m: &Member| if staff { m.clone() } else { Member { first_time: false, ..m.clone() } };
        let joined = Joined {
            info: Self::info(&def, &state),
            members: state.members.values().map(|p| shown(&p.member)).collect(),
            me: shown(&me),
            history,
            epoch: state.epoch.clone(),
            seq: state.last_seq,
            recovered,
        };
        if !already_present {
            let count = state.members.len() as u32;
            let frames =
                Self::member_frames(&me, |member| ServerMessage::Presence { room: def.id.clone(), joined: Some(member), left: None, member_count: count });
            let key = Key::new(Kind::Presence, (&def.id, &me.member_id));
            self.fan_out_split(&def.id, &mut state, &frames, Audience::AllBut(&me.member_id), Some(key));
        }
        if announce {
            self.emit(&def.id, Event::Joined { member: me.clone(), account: req.account.clone() });
        }
        Ok(joined)
    }

    /// Remove a connection; the member leaves when its last connection does.
    pub(super) fn leave(&self, conn: ConnId) -> bool {
        let id = self.id();
        let mut state = self.state.lock();
        let Some(entry) = state.conns.remove(&conn) else { return false };
        self.drop_member_conn(&id, &mut state, &entry.member_id);
        true
    }

    pub(super) fn drop_member_conn(&self, room: &RoomId, state: &mut RoomState, member_id: &MemberId) {
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
            self.link.send(Outgoing::Idle(room.clone()), &self.metrics);
        }
    }

    /// A member left (on this node or another): drop it and tell this node's members.
    pub(super) fn forget_member(&self, room: &RoomId, state: &mut RoomState, member_id: &MemberId) {
        state.members.remove(member_id);
        state.last_typing.remove(member_id);
        state.react_budget.remove(member_id);
        state.hands.retain(|m| m != member_id);
        let frame =
            encode(&ServerMessage::Presence { room: room.clone(), joined: None, left: Some(member_id.clone()), member_count: state.members.len() as u32 });
        self.fan_out_keyed(room, state, &frame, Audience::All, Some(Key::new(Kind::Presence, (room, member_id))));
    }

    /// Queue `frame` for the audience without waiting for anyone. Connections
    /// whose mailbox is full are told to close (4408) and leave the room.
    ///
    /// Removing a dead connection announces the member's departure, which is
    /// a fan-out that may find more dead connections. They go on one worklist
    /// drained by the outermost call: when a room's members all drop at once
    /// (a proxy restart), recursing once per member would overflow the stack.
    pub(super) fn fan_out(&self, room: &RoomId, state: &mut RoomState, frame: &Frame, audience: Audience<'_>) {
        self.fan_out_keyed(room, state, frame, audience, None);
    }

    /// [`Room::fan_out`] of a frame that supersedes older ones of its `key`
    /// still queued for a reader (presence, member state, typing, hands).
    pub(super) fn fan_out_keyed(&self, room: &RoomId, state: &mut RoomState, frame: &Frame, audience: Audience<'_>, key: Option<Key>) {
        self.fan_out_split(room, state, &(frame.clone(), None), audience, key);
    }

    /// The frames that tell the room about `member`: one for everyone, and
    /// when it says something for staff only (`first_time`), a second for
    /// the staff while everyone else's copy leaves it out.
    pub(super) fn member_frames(member: &Member, build: impl Fn(Member) -> ServerMessage) -> (Frame, Option<Frame>) {
        if member.first_time {
            (encode(&build(Member { first_time: false, ..member.clone() })), Some(encode(&build(member.clone()))))
        } else {
            (encode(&build(member.clone())), None)
        }
    }

    /// [`Room::fan_out_keyed`] of a frame with a staff-only version: staff
    /// connections (in scope: a facilitator joined outside its scope is not
    /// one) get the second frame when there is one.
    pub(super) fn fan_out_split(&self, room: &RoomId, state: &mut RoomState, frames: &(Frame, Option<Frame>), audience: Audience<'_>, key: Option<Key>) {
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
            let frame = match (&frames.1, entry.staff) {
                (Some(staff), true) => staff,
                _ => &frames.0,
            };
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

    pub(super) fn prune(&self, def: &RoomDef, state: &mut RoomState) {
        let max_age = self.retention(def);
        let max_len = self.limits.history_max_messages;
        while let Some(front) = state.log.front() {
            if state.log.len() > max_len || front.at.elapsed() >= max_age {
                state.pruned_through = front.msg.seq;
                if let Some(gone) = state.log.pop_front() {
                    state.reactions.remove(&gone.msg.message_id);
                }
            } else {
                break;
            }
        }
        if max_age.is_zero() || max_len == 0 {
            state.pruned_through = state.last_seq;
        }
        // A pinned message is kept no longer than the history keeps messages
        // by age (one pushed out by count stays pinned: it is not old).
        let expired = |p: &ChatMessage| {
            chrono::DateTime::parse_from_rfc3339(&p.ts).is_ok_and(|ts| Utc::now().signed_duration_since(ts).to_std().is_ok_and(|age| age >= max_age))
        };
        if state.pinned.as_deref().is_some_and(expired) {
            state.pinned = None;
            let frame = Self::update_frame(def, state);
            self.fan_out(&def.id, state, &frame, Audience::All);
            self.emit(&def.id, Event::Settings(Box::new(state.settings())));
        }
        state.participation.prune(max_age);
    }

    /// Checks a member's send against the room's live rules (membership, slow mode,
    /// structured mode, a facilitator's presence) and records it for slow mode.
    pub(crate) fn admit_send(&self, member_id: &MemberId, role: Role, staff_only: bool) -> Result<(), Refusal> {
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

    /// Deliver an ephemeral event (typing, alerts, reports) to the room's
    /// members, on every node.
    pub(crate) fn broadcast(&self, frame: &Frame, audience: Audience<'_>) {
        self.broadcast_keyed(frame, audience, None);
    }

    /// [`Room::broadcast`] of a frame that supersedes older ones of its `key`.
    pub(crate) fn broadcast_keyed(&self, frame: &Frame, audience: Audience<'_>, key: Option<Key>) {
        let id = self.id();
        let mut state = self.state.lock();
        self.fan_out_keyed(&id, &mut state, frame, audience, key);
        if self.link.is_cluster() {
            self.emit(&id, Event::Frame { frame: frame.as_str().to_owned(), audience: audience.into() });
        }
    }

    /// Whether `member_id` may announce typing now (at most every 2 s).
    pub(super) fn typing_allowed(&self, member_id: &MemberId) -> bool {
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
    pub(crate) fn set_def(&self, def: RoomDef) {
        *self.def.write() = Arc::new(def);
        self.update(|_| {});
    }

    /// Whether this connection is still in the room (the hub may have removed
    /// it: kicked, banned, too slow, or the room closed).
    pub(crate) fn has_conn(&self, conn: ConnId) -> bool {
        self.state.lock().conns.contains_key(&conn)
    }

    pub fn member_count(&self) -> usize {
        self.state.lock().members.len()
    }
}
