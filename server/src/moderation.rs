//! Moderation state that outlives a restart — bans, mutes, open reports,
//! crisis alerts, forgotten accounts — and the append-only audit log. In the embedded
//! default both live in the data dir: state as one JSON file replaced
//! atomically on every change, the audit log as JSON lines, fsynced. In a
//! cluster both live in Redis: the state as one versioned document changed by
//! compare-and-set (a change made on two nodes at once is retried, never
//! lost) and published to every node, which keeps a copy for its checks;
//! the audit log as a stream.
//! Authorization and the effects on live rooms are the session's and the hub's.

use crate::alerts::{AlertChanges, OnDuty, Resolution, StoredAlert};
use crate::rooms::rfc3339;
use crate::store::{Doc, Document, Log, Place, Versioned};
use chrono::{DateTime, Utc};
use kindred_protocol::AlertId;
use kindred_protocol::{AccountId, MemberId, Report, ReportId, RoomId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// A ban or mute on one account, in one room or (`room: None`) the whole service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sanction {
    pub room: Option<RoomId>,
    pub account: AccountId,
    pub member_id: Option<MemberId>,
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

impl Sanction {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|t| t > now)
    }

    pub fn until_text(&self) -> Option<String> {
        self.until.map(rfc3339)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Persisted {
    #[serde(default)]
    bans: Vec<Sanction>,
    #[serde(default)]
    mutes: Vec<Sanction>,
    #[serde(default)]
    reports: Vec<(RoomId, Report)>,
    #[serde(default)]
    forgotten: HashSet<AccountId>,
    /// Crisis alerts: open ones until resolved, resolved ones for a day
    /// (so a node that was away learns who closed what).
    #[serde(default)]
    alerts: Vec<StoredAlert>,
}

/// How long a resolved alert stays in the state, and how many at most.
const RESOLVED_ALERTS_KEPT: chrono::Duration = chrono::Duration::hours(24);
const RESOLVED_ALERTS_MAX: usize = 200;

/// One line of the audit log: who did what to whom, when and why. Never the
/// text of a message, except the reported one a report quotes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: String,
    /// The actor's token `sub` (staff) or room member id (reports).
    pub by: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<RoomId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

pub(crate) use crate::store::StoreError;

pub struct ModerationStore {
    /// Where the state is kept: the file `moderation.json`, or the document every node shares.
    doc: Doc<Persisted>,
    /// The audit log: `audit.jsonl`, or a Redis stream.
    log: Log,
    /// The newest version this node knows (read under every send).
    state: Mutex<Persisted>,
    /// The version and lineage of `state`.
    version: Mutex<(u64, String)>,
    /// This node's staff connections, told of alerts as the state changes.
    on_duty: OnceLock<Arc<OnDuty>>,
}

impl ModerationStore {
    /// Open (or start) the store in `data_dir` (one node), as the tests do.
    #[cfg(test)]
    fn open(data_dir: &std::path::Path) -> anyhow::Result<ModerationStore> {
        Self::new(&Place::Files(data_dir.to_owned()))
    }

    /// The store in `place`. In a cluster nothing is read yet: the broker
    /// hands over the shared document ([`ModerationStore::install`]) before
    /// the node says it is ready.
    pub(crate) fn new(place: &Place) -> anyhow::Result<ModerationStore> {
        let doc = Doc::open(place, Document::Moderation)?;
        let (version, state) = doc.local().map_or_else(Default::default, |d: Versioned<Persisted>| ((d.v, d.g), d.doc));
        Ok(ModerationStore { doc, log: Log::audit(place), state: Mutex::new(state), version: Mutex::new(version), on_duty: OnceLock::new() })
    }

    /// Who to tell when alerts are raised or resolved, here or on another node.
    pub fn set_on_duty(&self, on_duty: Arc<OnDuty>) {
        // Set once, when the App is built; a second call keeps the first.
        let _ = self.on_duty.set(on_duty);
    }

    fn tell(&self, changes: AlertChanges) {
        if let (false, Some(on_duty)) = (changes.is_empty(), self.on_duty.get()) {
            on_duty.deliver(&changes);
        }
    }

    /// A version of the state: made here, published by another node, or (`force`)
    /// read again after a loss, when what the store holds is the truth whatever
    /// this node held. Older versions are ignored. Whether the mutes changed.
    pub(crate) fn install(&self, d: Versioned<Persisted>, force: bool) -> bool {
        let (mutes_changed, alerts) = {
            let mut current = self.state.lock();
            let mut held = self.version.lock();
            if !(force || d.supersedes(held.0, &held.1)) {
                return false;
            }
            let mutes_changed = current.mutes != d.doc.mutes;
            let alerts = AlertChanges::between(&current.alerts, &d.doc.alerts);
            *current = d.doc;
            *held = (d.v, d.g);
            (mutes_changed, alerts)
        };
        self.tell(alerts);
        mutes_changed
    }

    /// Change the state and store it before returning (`store::Doc::update`:
    /// group commit to the file on one node, compare-and-set in a cluster),
    /// then hold the new version here and tell staff what it changed.
    async fn change<T>(&self, f: impl Fn(&mut Persisted) -> T) -> Result<T, StoreError> {
        let (out, made) = self
            .doc
            .update(|state| {
                let out = f(state);
                prune(state);
                out
            })
            .await?;
        self.install(made, false);
        Ok(out)
    }

    fn find(list: &[Sanction], room: Option<&RoomId>, account: &AccountId, now: DateTime<Utc>) -> Option<Sanction> {
        list.iter().find(|s| s.room.as_ref() == room && &s.account == account && s.active(now)).cloned()
    }

    pub async fn ban(&self, sanction: Sanction) -> Result<(), StoreError> {
        self.change(|s| {
            s.bans.retain(|b| !(b.room == sanction.room && b.account == sanction.account));
            s.bans.push(sanction.clone());
        })
        .await
    }

    /// Lift a ban; true if there was one.
    pub async fn unban(&self, room: Option<&RoomId>, account: &AccountId) -> Result<bool, StoreError> {
        self.change(|s| {
            let before = s.bans.len();
            s.bans.retain(|b| !(b.room.as_ref() == room && &b.account == account));
            before != s.bans.len()
        })
        .await
    }

    /// The ban keeping `account` out of `room` (or the service), if any.
    pub fn banned(&self, room: &RoomId, account: &AccountId) -> Option<Sanction> {
        let state = self.state.lock();
        let now = Utc::now();
        Self::find(&state.bans, None, account, now).or_else(|| Self::find(&state.bans, Some(room), account, now))
    }

    pub fn banned_from_service(&self, account: &AccountId) -> Option<Sanction> {
        Self::find(&self.state.lock().bans, None, account, Utc::now())
    }

    /// Find a member's account by its room member id, from a ban or mute on record.
    pub fn account_of(&self, room: &RoomId, member_id: &MemberId) -> Option<AccountId> {
        let state = self.state.lock();
        state
            .bans
            .iter()
            .chain(state.mutes.iter())
            .find(|s| s.room.as_ref() == Some(room) && s.member_id.as_ref() == Some(member_id))
            .map(|s| s.account.clone())
    }

    pub async fn mute(&self, sanction: Sanction) -> Result<(), StoreError> {
        self.change(|s| {
            s.mutes.retain(|m| !(m.room == sanction.room && m.account == sanction.account));
            s.mutes.push(sanction.clone());
        })
        .await
    }

    pub async fn unmute(&self, room: &RoomId, account: &AccountId) -> Result<bool, StoreError> {
        self.change(|s| {
            let before = s.mutes.len();
            s.mutes.retain(|m| !(m.room.as_ref() == Some(room) && &m.account == account));
            before != s.mutes.len()
        })
        .await
    }

    pub fn muted(&self, room: &RoomId, account: &AccountId) -> Option<Sanction> {
        Self::find(&self.state.lock().mutes, Some(room), account, Utc::now())
    }

    /// The mute as a member's `muted_until` carries it: `None` when not
    /// muted, `Some(None)` when muted with no end.
    pub fn muted_until(&self, room: &RoomId, account: &AccountId) -> Option<Option<String>> {
        self.muted(room, account).map(|m| m.until_text())
    }

    /// File a report, unless this reporter already has one open on that
    /// message: the report that is open now, and whether it is new.
    pub async fn add_report(&self, room: &RoomId, report: Report) -> Result<(Report, bool), StoreError> {
        self.change(|s| {
            let open = s.reports.iter().find(|(r, rep)| r == room && rep.by == report.by && rep.message.message_id == report.message.message_id);
            match open {
                Some((_, rep)) => (rep.clone(), false),
                None => {
                    s.reports.push((room.clone(), report.clone()));
                    (report.clone(), true)
                }
            }
        })
        .await
    }

    /// Close a report; the report if it was open.
    pub async fn resolve_report(&self, room: &RoomId, id: &ReportId) -> Result<Option<Report>, StoreError> {
        self.change(|s| {
            let at = s.reports.iter().position(|(r, rep)| r == room && &rep.id == id)?;
            Some(s.reports.remove(at).1)
        })
        .await
    }

    /// Open reports, of one room or (None) all.
    pub fn open_reports(&self, room: Option<&RoomId>) -> Vec<(RoomId, Report)> {
        let state = self.state.lock();
        state.reports.iter().filter(|(r, _)| room.is_none_or(|room| room == r)).cloned().collect()
    }

    /// Forget an account: its reports' quoted texts and its open reports go,
    /// and the text of its crisis alerts (the alerts stay: a facilitator may
    /// still need to know that someone in the room was in crisis); its
    /// session tokens stop working. Bans stay bans.
    pub async fn forget(&self, account: &AccountId, member_ids: &HashMap<RoomId, MemberId>) -> Result<(), StoreError> {
        self.change(|s| {
            s.forgotten.insert(account.clone());
            s.reports.retain(|(room, rep)| member_ids.get(room).is_none_or(|m| &rep.by != m && &rep.message.from.member_id != m));
            for alert in &mut s.alerts {
                if member_ids.get(&alert.room) == Some(&alert.message.from.member_id) {
                    alert.message.text.clear();
                    alert.message.cw = None;
                    alert.message.reply_to = None;
                }
            }
        })
        .await
    }

    /// Store a new crisis alert, unless its author already has one open in
    /// that room (then the open one stands, and staff are not told twice:
    /// a member repeating themselves must not flood the people on duty).
    /// The alert that is open for the author now, and whether it is new.
    pub async fn raise_alert(&self, alert: StoredAlert) -> Result<(StoredAlert, bool), StoreError> {
        self.change(|s| {
            let open = s.alerts.iter().find(|a| a.is_open() && a.room == alert.room && a.message.from.member_id == alert.message.from.member_id);
            match open {
                Some(open) => (open.clone(), false),
                None => {
                    s.alerts.push(alert.clone());
                    (alert.clone(), true)
                }
            }
        })
        .await
    }

    /// Close an open alert; the alert if it was open.
    pub async fn resolve_alert(&self, room: &RoomId, id: &AlertId, resolution: Resolution) -> Result<Option<StoredAlert>, StoreError> {
        self.change(|s| {
            let alert = s.alerts.iter_mut().find(|a| &a.room == room && &a.alert_id == id && a.is_open())?;
            alert.resolved = Some(resolution.clone());
            Some(alert.clone())
        })
        .await
    }

    /// Open alerts whose room `wanted` accepts, oldest first.
    pub fn open_alerts(&self, wanted: impl Fn(&RoomId) -> bool) -> Vec<StoredAlert> {
        let state = self.state.lock();
        let mut open: Vec<StoredAlert> = state.alerts.iter().filter(|a| a.is_open() && wanted(&a.room)).cloned().collect();
        open.sort_by(|a, b| a.at.cmp(&b.at));
        open
    }

    pub fn is_forgotten(&self, account: &AccountId) -> bool {
        self.state.lock().forgotten.contains(account)
    }

    /// Append to the audit log and make it durable. One node: group commit,
    /// like the state (lines queued while an fsync runs share the next one).
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.log.append(serde_json::to_vec(&entry).expect("audit entries serialize")).await
    }

    /// The newest `limit` audit entries, oldest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.log.tail(limit).await?.iter().filter_map(|line| serde_json::from_str(line).ok()).collect())
    }
}

/// Drop what is over: ended sanctions, alerts resolved long ago, and the
/// oldest resolved alerts past the most kept.
fn prune(state: &mut Persisted) {
    let now = Utc::now();
    state.bans.retain(|s| s.active(now));
    state.mutes.retain(|s| s.active(now));
    let cutoff = rfc3339(now - RESOLVED_ALERTS_KEPT);
    state.alerts.retain(|a| a.resolved.as_ref().is_none_or(|r| r.at > cutoff));
    let resolved = state.alerts.iter().filter(|a| !a.is_open()).count();
    let mut extra = resolved.saturating_sub(RESOLVED_ALERTS_MAX);
    state.alerts.retain(|a| {
        let drop = extra > 0 && !a.is_open();
        extra -= usize::from(drop);
        !drop
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sanctions_survive_reopening_and_expire() {
        let dir = std::env::temp_dir().join(format!("kindred-mod-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let account = AccountId::from("a_1");
        let room = RoomId::from("grief");
        {
            let store = ModerationStore::open(&dir).unwrap();
            store.ban(Sanction { room: Some(room.clone()), account: account.clone(), member_id: None, until: None, reason: Some("r".into()) }).await.unwrap();
            store
                .mute(Sanction {
                    room: Some(room.clone()),
                    account: account.clone(),
                    member_id: None,
                    until: Some(Utc::now() - chrono::Duration::seconds(1)),
                    reason: None,
                })
                .await
                .unwrap();
            store
                .audit(AuditEntry {
                    at: "t".into(),
                    by: "sam".into(),
                    action: "ban".into(),
                    room: Some(room.clone()),
                    target: None,
                    reason: None,
                    detail: None,
                })
                .await
                .unwrap();
        }
        let store = ModerationStore::open(&dir).unwrap();
        assert!(store.banned(&room, &account).is_some());
        assert!(store.banned(&"anxiety".into(), &account).is_none());
        assert!(store.muted(&room, &account).is_none(), "an expired mute is over");
        assert_eq!(store.audit_log(10).await.unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_changes_shares_writes_and_every_change_is_on_disk() {
        let dir = std::env::temp_dir().join(format!("kindred-mod-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let room = RoomId::from("grief");
        let store = Arc::new(ModerationStore::open(&dir).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (store, room) = (store.clone(), room.clone());
                tokio::spawn(async move {
                    let account = AccountId::from(format!("a_{i}").as_str());
                    store.ban(Sanction { room: Some(room.clone()), account, member_id: None, until: None, reason: None }).await.unwrap();
                    store
                        .audit(AuditEntry {
                            at: "t".into(),
                            by: "sam".into(),
                            action: "ban".into(),
                            room: Some(room),
                            target: None,
                            reason: None,
                            detail: None,
                        })
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let writes = store.doc.writes();
        assert!(writes < 200, "200 changes made while others were written share writes: {writes} writes");
        let reopened = ModerationStore::open(&dir).unwrap();
        for i in 0..200 {
            assert!(reopened.banned(&room, &AccountId::from(format!("a_{i}").as_str())).is_some(), "ban {i} is on disk");
        }
        assert_eq!(reopened.audit_log(1000).await.unwrap().len(), 200, "every audit line is on disk, once");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
