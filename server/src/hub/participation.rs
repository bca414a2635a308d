//! Participation: who has had a chance to speak in a room, for its
//! facilitators. Counts only — who, when, how long — never text, in memory
//! only, and no longer than the room keeps its history.
//!
//! A message is counted where the room delivers it to its log
//! ([`Room::push_and_send`]), so in a cluster every node counts every node's
//! messages as they arrive through its broker, with no state of its own in
//! Redis; a (re)load of the history from Redis counts what this node had
//! not yet seen.

use super::*;
use chrono::DateTime;
use kindred_protocol::Participant;

/// The most spoken entries a room keeps, whatever its retention: a bound on
/// memory for a busy room with long history.
const MAX_ENTRIES: usize = 20_000;

/// The window the dominance nudge looks at, and how often one member may be nudged.
const NUDGE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Fewer members speaking than this and no one is told they dominate.
const NUDGE_MIN_ACTIVE: usize = 4;

/// One message to the room: who, when, how long. Never what.
pub(super) struct Spoke {
    member_id: MemberId,
    /// When it was sent, as the broker stamped it (the same on every node).
    ts: DateTime<Utc>,
    /// When this node received it, for pruning by the room's retention.
    at: Instant,
    chars: u32,
}

/// A room's participation counts on this node.
#[derive(Default)]
pub(super) struct Participation {
    spoken: VecDeque<Spoke>,
    /// The highest room `seq` counted in `epoch`, so a reload of history
    /// counts only what is new.
    counted_through: u64,
    epoch: String,
    /// When each member was last nudged (see [`Participation::dominates`]).
    nudged: HashMap<MemberId, Instant>,
}

impl Participation {
    /// Count a room message (staff back-channel messages are not the room's conversation).
    pub(super) fn count(&mut self, epoch: &str, stored: &Stored) {
        let msg = &stored.msg;
        if msg.staff {
            return;
        }
        if self.epoch != epoch {
            // A new history (Redis lost the old one): seqs start again.
            self.epoch = epoch.to_owned();
            self.counted_through = 0;
        }
        if msg.seq <= self.counted_through {
            return;
        }
        self.counted_through = msg.seq;
        let ts = DateTime::parse_from_rfc3339(&msg.ts).map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc));
        let chars = u32::try_from(msg.text.chars().count()).unwrap_or(u32::MAX);
        self.spoken.push_back(Spoke { member_id: msg.from.member_id.clone(), ts, at: stored.at, chars });
    }

    /// Whether `member` (who just spoke) should get the dominance nudge now:
    /// with at least 4 members speaking in the last 15 minutes, their share
    /// of those messages exceeds `share`, and they were not nudged in the last
    /// 15 minutes. Every node decides the same from the same messages, and
    /// tells only its own connections, so no node has to tell another.
    pub(super) fn dominates(&mut self, member: &MemberId, share: f64) -> bool {
        let since = Utc::now() - chrono::Duration::from_std(NUDGE_WINDOW).unwrap_or_default();
        let mut per_member: HashMap<&MemberId, u32> = HashMap::new();
        for s in self.spoken.iter().rev().take_while(|s| s.ts >= since) {
            *per_member.entry(&s.member_id).or_default() += 1;
        }
        let total: u32 = per_member.values().sum();
        let mine = per_member.get(member).copied().unwrap_or(0);
        if per_member.len() < NUDGE_MIN_ACTIVE || total == 0 || f64::from(mine) / f64::from(total) <= share {
            return false;
        }
        if self.nudged.get(member).is_some_and(|at| at.elapsed() < NUDGE_WINDOW) {
            return false;
        }
        self.nudged.retain(|_, at| at.elapsed() < NUDGE_WINDOW);
        self.nudged.insert(member.clone(), Instant::now());
        true
    }

    /// Forget what is older than the room's retention, and the oldest past [`MAX_ENTRIES`].
    pub(super) fn prune(&mut self, retention: Duration) {
        while let Some(front) = self.spoken.front() {
            if self.spoken.len() > MAX_ENTRIES || retention.is_zero() || front.at.elapsed() >= retention {
                self.spoken.pop_front();
            } else {
                break;
            }
        }
    }

    /// Every member in `present`, with what they said from `since` on, quietest first
    /// (fewest messages, then fewest characters, then by handle).
    pub(super) fn report<'a>(&self, since: DateTime<Utc>, present: impl Iterator<Item = &'a Member>) -> Vec<Participant> {
        let mut counts: HashMap<&MemberId, (u32, u64, DateTime<Utc>)> = HashMap::new();
        for s in self.spoken.iter().filter(|s| s.ts >= since) {
            let entry = counts.entry(&s.member_id).or_insert((0, 0, s.ts));
            entry.0 += 1;
            entry.1 += u64::from(s.chars);
            entry.2 = entry.2.max(s.ts);
        }
        let mut members: Vec<Participant> = present
            .map(|m| {
                let (messages, chars, last) = counts.get(&m.member_id).copied().map_or((0, 0, None), |(n, c, t)| (n, c, Some(t)));
                Participant { member_id: m.member_id.clone(), handle: m.handle.clone(), messages, chars, last_at: last.map(rfc3339) }
            })
            .collect();
        members.sort_by(|a, b| (a.messages, a.chars, &a.handle).cmp(&(b.messages, b.chars, &b.handle)));
        members
    }
}

impl Room {
    /// After `member`'s message entered the log: the gentle nudge to them if
    /// they dominate a room that asks for it (`dominance_share`), privately,
    /// and the `participation` event to the room's staff on this node.
    pub(super) fn nudge_if_dominating(&self, def: &RoomDef, state: &mut RoomState, member: &MemberId) {
        let Some(share) = def.dominance_share else { return };
        if !state.participation.dominates(member, share) {
            return;
        }
        let text = crate::texts::in_lang(crate::texts::Lang::of(Some(&def.language)), "dominance-nudge");
        let notice = ServerMessage::Notice(kindred_protocol::Notice {
            room: Some(def.id.clone()),
            kind: kindred_protocol::NoticeKind::System,
            text,
            resources: None,
            facilitators_alerted: None,
        });
        self.fan_out(&def.id, state, &encode(&notice), Audience::Member(member));
        let since = Utc::now() - chrono::Duration::minutes(60);
        let members = state.participation.report(since, state.members.values().map(|p| &p.member));
        let event = ServerMessage::Participation { id: None, room: def.id.clone(), since: rfc3339(since), members };
        self.fan_out(&def.id, state, &encode(&event), Audience::Staff);
    }

    /// The `participation` reply's members: everyone present in the room (on
    /// any node) with their counts from `since` (the last 60 minutes, or a
    /// session's start once rooms have sessions).
    pub(crate) fn participation(&self, since: DateTime<Utc>) -> Vec<Participant> {
        let def = self.def();
        let mut state = self.state.lock();
        self.prune(&def, &mut state);
        state.participation.report(since, state.members.values().map(|p| &p.member))
    }
}
