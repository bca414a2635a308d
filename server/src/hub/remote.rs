//! The cluster side of a room: the events one node sends the others, and
//! how a room applies another node's changes and presence.

use super::*;
use crate::broker::Erasure;

/// A change one node made to a room, applied by every other node that has
/// members in it (cluster mode). Messages do not travel this way: they are
/// ordered and stored by the broker.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A member connected on the sending node.
    Joined {
        member: Member,
        account: AccountId,
    },
    /// A member's last connection on the sending node ended.
    Left {
        member_id: MemberId,
    },
    /// A frame for this room's members on every node.
    Frame {
        frame: String,
        audience: Aud,
    },
    /// Boxed: it holds the pinned message, and every event is as big as the biggest.
    Settings(Box<Settings>),
    Member {
        member: Member,
    },
    Hands {
        queue: Vec<MemberId>,
    },
    Deleted {
        message_id: kindred_protocol::MessageId,
        seq: u64,
    },
    /// Remove every message this account wrote (`forget_me`).
    Forget {
        account: AccountId,
    },
    /// Take a member out (kick or ban); its own node does it.
    Remove {
        member_id: MemberId,
        notice: String,
    },
    /// A message's reaction counts, as Redis holds them after a change. The
    /// reaction script publishes it (server/src/lua/react.lua), so the node
    /// that made the change applies it too, in the order Redis made them.
    Reactions {
        message_id: MessageId,
        counts: kindred_protocol::ReactionCounts,
    },
}

impl Event {
    /// Whether the node that sent the event applies it as well when it comes
    /// back (it did not apply it when it was made).
    pub(crate) fn for_sender_too(&self) -> bool {
        matches!(self, Event::Reactions { .. })
    }
}

/// [`Audience`], owned, for the wire between nodes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Aud {
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
    pub(super) fn as_audience(&self) -> Audience<'_> {
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
pub(crate) struct Settings {
    pub slow_mode_s: u32,
    pub locked: bool,
    pub topic_now: Option<String>,
    pub mode: RoomMode,
    #[serde(default)]
    pub pinned: Option<Box<ChatMessage>>,
    #[serde(default)]
    pub session: Option<SessionInfo>,
}

impl RoomState {
    /// The live settings, as they travel between nodes.
    pub(super) fn settings(&self) -> Settings {
        Settings {
            slow_mode_s: self.slow_mode_s,
            locked: self.locked,
            topic_now: self.topic_now.clone(),
            mode: self.mode,
            pinned: self.pinned.clone(),
            session: self.session.clone(),
        }
    }

    pub(super) fn set_settings(&mut self, s: Settings) {
        let Settings { slow_mode_s, locked, topic_now, mode, pinned, session } = s;
        (self.slow_mode_s, self.locked, self.topic_now, self.mode, self.pinned, self.session) = (slow_mode_s, locked, topic_now, mode, pinned, session);
    }
}

/// Where a room's changes go beyond this node's memory (the one place that
/// knows which): in a cluster, the Redis broker's queue, so other nodes
/// apply them; on one node, only deletions, to the broker's history on
/// disk, so nothing deleted comes back after a restart. The cluster queue
/// is bounded: when Redis is too slow to keep up a change stays local, is
/// counted, and presence is repaired by the next sync.
/// Removes what was deleted from a room's history on disk.
pub(crate) type Eraser = Arc<dyn Fn(&RoomId, Erasure) + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) enum Replicator {
    /// One node keeping history in memory only: nothing leaves.
    #[default]
    Local,
    /// One node with history on disk: deletions go there.
    LocalErasing(Eraser),
    Cluster(mpsc::Sender<Outgoing>),
}

impl Replicator {
    /// One node keeping history in memory only (tests): changes stay here.
    #[cfg(test)]
    pub(crate) fn local() -> Replicator {
        Replicator::Local
    }

    /// One node whose history outlives it: `erase` removes what is deleted from it.
    pub(crate) fn local_erasing(erase: impl Fn(&RoomId, Erasure) + Send + Sync + 'static) -> Replicator {
        Replicator::LocalErasing(Arc::new(erase))
    }

    /// A cluster node: changes go to the broker through `queue`.
    pub(crate) fn cluster(queue: mpsc::Sender<Outgoing>) -> Replicator {
        Replicator::Cluster(queue)
    }

    /// Whether anyone else will apply what this node sends (so it is worth building).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Replicator::Cluster(_))
    }

    pub(crate) fn send(&self, out: Outgoing, metrics: &crate::metrics::Metrics) {
        match (self, out) {
            (Replicator::Cluster(queue), out) => {
                let Err(_full) = queue.try_send(out) else { return };
                crate::metrics::Metrics::add(&metrics.cluster_events_dropped, 1);
                tracing::warn!("cluster event queue full; event kept local");
            }
            (Replicator::LocalErasing(erase), Outgoing::Event(room, Event::Deleted { message_id, seq })) => erase(&room, Erasure::Message { message_id, seq }),
            (Replicator::LocalErasing(erase), Outgoing::Event(room, Event::Forget { account })) => erase(&room, Erasure::Account(account)),
            _ => {}
        }
    }
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Replicator::Local => "Local",
            Replicator::LocalErasing(_) => "LocalErasing",
            Replicator::Cluster(_) => "Cluster",
        })
    }
}

/// What a room hands the cluster broker.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Event(RoomId, Event),
    /// A local member's entry in the room's shared presence (new or changed).
    Present(RoomId, Member, AccountId),
    /// The room has no connection left on this node.
    Idle(RoomId),
}

/// A member another node holds, as the shared presence lists it.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMember {
    pub node: Arc<str>,
    pub member: Member,
    pub account: AccountId,
}

/// The cluster side of a room: history ordered by Redis and changes from other nodes.
impl Room {
    /// Apply a change another node made.
    pub(crate) fn apply_remote(&self, node: &Arc<str>, event: Event) {
        let room = self.id();
        let mut state = self.state.lock();
        if let Event::Joined { member: Member { member_id, .. }, .. } | Event::Member { member: Member { member_id, .. } } | Event::Left { member_id } = &event
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
                state.set_settings(*s);
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
            Event::Reactions { message_id, counts } => self.set_counts(&room, &mut state, &message_id, counts),
        }
    }

    pub(super) fn add_remote(&self, room: &RoomId, state: &mut RoomState, r: RemoteMember) {
        let member = r.member.clone();
        self.remember(&self.def(), state, &member.member_id, &r.account);
        state.members.insert(member.member_id.clone(), Present { member: r.member, account: r.account, conns: 0, node: Some(r.node) });
        let key = Key::new(Kind::Presence, (room, &member.member_id));
        let count = state.members.len() as u32;
        let frames =
            Self::member_frames(&member, |member| ServerMessage::Presence { room: room.clone(), joined: Some(member), left: None, member_count: count });
        self.fan_out_split(room, state, &frames, Audience::All, Some(key));
    }

    /// Make the members other nodes hold match the shared presence list
    /// (after a reconnect, and periodically: a crashed node's members go).
    /// `read_at`: when the list was read; a member some node's event spoke of
    /// since then is left as that event made it.
    pub(crate) fn sync_remote_members(&self, remote: Vec<RemoteMember>, read_at: Instant) {
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
    pub(crate) fn forget_node(&self, node: &str) -> usize {
        let room = self.id();
        let mut state = self.state.lock();
        let gone: Vec<MemberId> = state.members.values().filter(|p| p.node.as_deref() == Some(node)).map(|p| p.member.member_id.clone()).collect();
        for member_id in &gone {
            self.forget_member(&room, &mut state, member_id);
        }
        gone.len()
    }

    /// This node's members of the room, with their accounts (for the shared presence list).
    pub(crate) fn local_members(&self) -> Vec<(Member, AccountId)> {
        self.state.lock().members.values().filter(|p| p.is_local()).map(|p| (p.member.clone(), p.account.clone())).collect()
    }

    pub(crate) fn set_settings(&self, s: Settings) {
        self.state.lock().set_settings(s);
    }

    pub(crate) fn conn_count(&self) -> usize {
        self.state.lock().conns.len()
    }
}
