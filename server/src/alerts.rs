//! Who is on duty, and crisis alerts reaching them. Every staff connection
//! of this node registers here after `hello` with its scope, joined to a
//! room or not; a new alert is written to each one whose scope covers the
//! room, and a resolution to every other one. In a cluster each node also
//! publishes the scopes of its staff connections (the health tick), so the
//! node that raises an alert can tell the member truthfully how many people
//! were told. What an alert is and where it is kept are the moderation
//! store's; who may resolve one is the session's.

use crate::frame::{Frame, encode};
use crate::hub::{ConnId, Outbox};
use crate::metrics::Metrics;
use chrono::{DateTime, Utc};
use kindred_protocol::{AlertId, AlertKind, ChatMessage, Role, RoomId, ServerMessage};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The rooms a staff connection answers for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `None`: every room (admins, and facilitator tokens without `rooms`).
    pub rooms: Option<Vec<RoomId>>,
    /// When the token stops counting (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl Scope {
    /// The scope of a verified identity; `None` for members.
    pub fn of(identity: &crate::auth::Identity) -> Option<Scope> {
        match identity.role {
            Role::Admin => Some(Scope { rooms: None, expires_at: identity.expires_at }),
            Role::Facilitator => Some(Scope { rooms: identity.rooms.clone(), expires_at: identity.expires_at }),
            Role::Member => None,
        }
    }

    /// Whether this scope covers `room` now.
    pub fn covers(&self, room: &RoomId) -> bool {
        self.expires_at.is_none_or(|exp| exp >= crate::auth::now_s()) && self.rooms.as_ref().is_none_or(|rooms| rooms.contains(room))
    }
}

/// An alert as stored: open until a facilitator in scope resolves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub alert_id: AlertId,
    pub room: RoomId,
    /// RFC 3339, with milliseconds.
    pub at: String,
    pub message: ChatMessage,
    /// Staff connections it reached when it was raised.
    pub facilitators_alerted: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolution>,
}

/// Who closed an alert. `node` and `conn` name the resolving connection,
/// which has its reply and is not sent the event as well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub by: String,
    pub at: String,
    pub node: String,
    pub conn: u64,
}

impl StoredAlert {
    pub fn is_open(&self) -> bool {
        self.resolved.is_none()
    }

    pub fn frame(&self) -> ServerMessage {
        ServerMessage::Alert {
            room: self.room.clone(),
            kind: AlertKind::Crisis,
            message: self.message.clone(),
            alert_id: self.alert_id.clone(),
            at: self.at.clone(),
            facilitators_alerted: self.facilitators_alerted,
        }
    }
}

/// How alerts changed between two versions of the stored state.
#[derive(Debug, Default)]
pub struct AlertChanges {
    pub raised: Vec<StoredAlert>,
    pub resolved: Vec<StoredAlert>,
}

impl AlertChanges {
    /// What `after` holds that `before` did not: new open alerts, and alerts
    /// open before and resolved now.
    pub fn between(before: &[StoredAlert], after: &[StoredAlert]) -> AlertChanges {
        let old: HashMap<&AlertId, &StoredAlert> = before.iter().map(|a| (&a.alert_id, a)).collect();
        let mut changes = AlertChanges::default();
        for alert in after {
            match old.get(&alert.alert_id) {
                None if alert.is_open() => changes.raised.push(alert.clone()),
                Some(was) if was.is_open() && !alert.is_open() => changes.resolved.push(alert.clone()),
                _ => {}
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.raised.is_empty() && self.resolved.is_empty()
    }
}

struct Desk {
    scope: Scope,
    outbox: Outbox,
}

/// This node's staff connections, and the other nodes' scopes.
pub struct OnDuty {
    /// This process, unique among the nodes (names resolutions made here).
    node: String,
    metrics: Arc<Metrics>,
    desks: Mutex<HashMap<ConnId, Desk>>,
    /// Cluster: the scopes of other nodes' staff connections, as of the last health tick.
    remote: Mutex<HashMap<String, Vec<Scope>>>,
}

impl OnDuty {
    /// `node`: the configured node name (made unique to this process here).
    pub fn new(node: &str, metrics: Arc<Metrics>) -> OnDuty {
        let node = format!("{node}-{:08x}", rand::random::<u32>());
        OnDuty { node, metrics, desks: Mutex::new(HashMap::new()), remote: Mutex::new(HashMap::new()) }
    }

    /// This process among the nodes.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn register(&self, conn: ConnId, scope: Scope, outbox: Outbox) {
        self.desks.lock().insert(conn, Desk { scope, outbox });
    }

    pub(crate) fn unregister(&self, conn: ConnId) {
        self.desks.lock().remove(&conn);
    }

    /// The scopes of this node's staff connections (for other nodes' counts).
    pub fn local_scopes(&self) -> Vec<Scope> {
        self.desks.lock().values().map(|d| d.scope.clone()).collect()
    }

    /// Cluster: the other live nodes' staff scopes, replacing what was known.
    pub fn set_remote(&self, remote: HashMap<String, Vec<Scope>>) {
        *self.remote.lock() = remote;
    }

    /// Staff connections, on this node and (cluster) the others, whose scope covers `room`.
    pub fn count(&self, room: &RoomId) -> u32 {
        let local = self.desks.lock().values().filter(|d| d.scope.covers(room)).count();
        let remote: usize = self.remote.lock().values().map(|scopes| scopes.iter().filter(|s| s.covers(room)).count()).sum();
        (local + remote) as u32
    }

    /// Tell this node's staff connections what changed: a new alert to every
    /// one in scope, a resolution to every one but the resolver's.
    pub fn deliver(&self, changes: &AlertChanges) {
        for alert in &changes.raised {
            let reached = self.send(&alert.room, &encode(&alert.frame()), None);
            if reached > 0 {
                // From the message's acceptance (its `ts`) to its alert queued for a person.
                if let Ok(at) = DateTime::parse_from_rfc3339(&alert.message.ts) {
                    let waited = (Utc::now() - at.with_timezone(&Utc)).to_std().unwrap_or_default();
                    self.metrics.alert_delivery.observe(waited);
                }
            }
        }
        for alert in &changes.resolved {
            let Some(resolution) = &alert.resolved else { continue };
            let event = ServerMessage::AlertResolved { id: None, room: alert.room.clone(), alert_id: alert.alert_id.clone(), by: resolution.by.clone() };
            let resolver = (resolution.node == self.node).then_some(ConnId(resolution.conn));
            self.send(&alert.room, &encode(&event), resolver);
        }
    }

    /// Queue `frame` for every staff connection covering `room` but `except`; how many took it.
    fn send(&self, room: &RoomId, frame: &Frame, except: Option<ConnId>) -> usize {
        let desks = self.desks.lock();
        let mut reached = 0;
        for (conn, desk) in desks.iter() {
            if Some(*conn) == except || !desk.scope.covers(room) {
                continue;
            }
            match desk.outbox.tx.try_send(frame.clone()) {
                Ok(()) => reached += 1,
                Err(crate::mailbox::TrySendError::Full) => {
                    // Too slow to keep up: it resumes, and gets every open alert again after `welcome`.
                    desk.outbox.control.close(kindred_protocol::CloseCode::TooSlow);
                    Metrics::add(&self.metrics.slow_consumer_closes, 1);
                }
                // Closing: it unregisters itself.
                Err(crate::mailbox::TrySendError::Closed) => {}
            }
        }
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(rooms: Option<&[&str]>) -> Scope {
        Scope { rooms: rooms.map(|r| r.iter().map(|id| RoomId::from(*id)).collect()), expires_at: None }
    }

    #[test]
    fn a_scope_covers_its_rooms_until_it_expires() {
        assert!(scope(None).covers(&"anxiety".into()));
        assert!(scope(Some(&["grief"])).covers(&"grief".into()));
        assert!(!scope(Some(&["grief"])).covers(&"anxiety".into()));
        let expired = Scope { rooms: None, expires_at: Some(crate::auth::now_s() - 1) };
        assert!(!expired.covers(&"grief".into()));
    }

    #[test]
    fn the_count_adds_other_nodes_in_scope() {
        let duty = OnDuty::new("a", Arc::default());
        let (tx, _rx) = crate::mailbox::mailbox(8);
        duty.register(ConnId(1), scope(Some(&["grief"])), Outbox { tx, control: Arc::default() });
        duty.set_remote(HashMap::from([("b".to_owned(), vec![scope(None), scope(Some(&["anxiety"]))])]));
        assert_eq!(duty.count(&"grief".into()), 2);
        assert_eq!(duty.count(&"anxiety".into()), 2);
        assert_eq!(duty.count(&"veterans".into()), 1);
        duty.unregister(ConnId(1));
        assert_eq!(duty.count(&"grief".into()), 1);
    }
}
