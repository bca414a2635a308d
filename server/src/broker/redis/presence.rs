//! The shared presence of a room: a hash whose entries name their node,
//! read back into the rooms (members of other nodes come and go), and the
//! scopes of other nodes' staff connections.

use super::*;

/// A member's entry in a room's shared presence.
#[derive(Serialize, Deserialize)]
pub(super) struct PresenceEntry {
    pub(super) member: Member,
    pub(super) account: AccountId,
}

impl Shared {
    /// This node's field for a member in a room's presence hash: `node|member_id`.
    pub(super) fn presence_field(&self, member_id: &kindred_protocol::MemberId) -> String {
        format!("{}|{}", self.node, member_id)
    }

    /// Queue the write of a local member's presence entry.
    pub(super) fn set_present(&self, pipe: &mut redis::Pipeline, keys: &Keys, member: &Member, account: &AccountId) {
        pipe.cmd("HSET").arg(&keys.members).arg(self.presence_field(&member.member_id)).arg(presence_entry(member, account)).ignore();
    }

    /// The nodes whose heartbeat is within the TTL, as of the last health tick
    /// (read from Redis if no tick has run yet).
    pub(super) async fn alive(&self) -> Result<Arc<HashSet<String>>, BrokerError> {
        if let Some(alive) = self.alive.lock().clone() {
            return Ok(alive);
        }
        self.alive_now().await
    }

    /// The nodes whose heartbeat is within the TTL, read from Redis now.
    pub(super) async fn alive_now(&self) -> Result<Arc<HashSet<String>>, BrokerError> {
        let since = now_ms().saturating_sub(self.presence_ttl.as_millis() as u64);
        let alive: Vec<String> = bounded(redis::cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(since).arg("+inf").query_async(&mut self.publisher.clone())).await?;
        Ok(Arc::new(alive.into_iter().collect()))
    }
}

/// A member's entry in the shared presence list, as stored.
pub(super) fn presence_entry(member: &Member, account: &AccountId) -> String {
    serde_json::to_string(&PresenceEntry { member: member.clone(), account: account.clone() }).expect("presence entries serialize")
}

/// Audit a room's shared presence list against this node: write back (and
/// announce) this node's members it lacks or lists wrongly, or all of them
/// with `announce_all`; drop entries of this node's departed members and of
/// nodes gone silent; and show this node's members everyone else's.
/// In the steady state this is one read.
pub(super) async fn presence_sync(s: &Arc<Shared>, id: &RoomId, announce_all: bool) -> Result<(), BrokerError> {
    let keys = Keys::of(id);
    let mut conn = s.publisher.clone();
    let mut alive = s.alive().await?;
    let read_at = Instant::now();
    let all: HashMap<String, String> = bounded(redis::cmd("HGETALL").arg(&keys.members).query_async(&mut conn)).await?;
    // A node missing from the last tick's list may have started since: ask
    // again before taking its members for a dead node's.
    let node_of = |field: &String| field.split_once('|').map(|(node, _)| node.to_owned());
    if all.keys().filter_map(node_of).any(|node| node != *s.node && !alive.contains(&node)) {
        alive = s.alive_now().await?;
    }
    let mine = s.handler.local_members(id);
    let mut pipe = redis::pipe();
    let mut local = HashSet::with_capacity(mine.len());
    for (member, account) in mine {
        let field = s.presence_field(&member.member_id);
        if announce_all || all.get(&field) != Some(&presence_entry(&member, &account)) {
            // Written and announced together: nodes that dropped the member (it
            // looked gone) take it back from the event.
            add_event(s, &mut pipe, id, Event::Joined { member, account });
        }
        local.insert(field);
    }
    let mut remote = Vec::new();
    for (field, value) in all {
        let Some((node, member_id)) = field.split_once('|') else { continue };
        if node == &*s.node {
            if !local.contains(&field) {
                add_event(s, &mut pipe, id, Event::Left { member_id: member_id.into() });
            }
        } else if !alive.contains(node) {
            pipe.cmd("HDEL").arg(&keys.members).arg(&field).ignore();
        } else if let Ok(entry) = serde_json::from_str::<PresenceEntry>(&value) {
            remote.push(RemoteMember { node: node.into(), member: entry.member, account: entry.account });
        }
    }
    if !pipe.is_empty() {
        bounded(pipe.exec_async(&mut conn)).await?;
    }
    s.handler.on_presence(id, remote, read_at);
    Ok(())
}

/// Learn the live peers' staff scopes; forget the entries of nodes that are gone.
pub(super) async fn follow_staff(s: &Arc<Shared>, alive: &HashSet<String>, staff: HashMap<String, String>) -> Result<(), BrokerError> {
    let mut remote = HashMap::new();
    let mut gone = Vec::new();
    for (node, scopes) in staff {
        if !alive.contains(&node) {
            gone.push(node);
        } else if node != *s.node {
            match serde_json::from_str::<Vec<crate::alerts::Scope>>(&scopes) {
                Ok(scopes) => {
                    remote.insert(node, scopes);
                }
                Err(e) => tracing::error!(error = %e, "a node's staff scopes could not be read"),
            }
        }
    }
    s.node_handler.on_remote_staff(remote);
    if !gone.is_empty() {
        bounded(redis::cmd("HDEL").arg(STAFF_KEY).arg(gone).exec_async(&mut s.publisher.clone())).await?;
    }
    Ok(())
}
