//! The cluster broker: nodes share rooms through Redis.
//!
//! - **Order and durability.** One Lua script gives a message its room's
//!   next `seq`, appends it to the room's history stream (entry id `seq-n`,
//!   MAXLEN and a TTL) and publishes it, atomically. `sent` is only answered
//!   after the script returned. Every node delivers what its subscription
//!   brings in `seq` order ([`Room::deliver`]); a gap is filled from the
//!   stream. The sender's node delivers its own message from the script's
//!   reply already, still in `seq` order, and drops the push that follows
//!   as a duplicate. A lost subscription (disconnect, or a push
//!   this node could not queue) is treated as possible loss and every warm
//!   room is repaired from the stream.
//! - **Epochs.** Each room's history has an epoch kept beside its `seq`. If
//!   Redis loses it (flushed, or restarted without persistence), the next
//!   append makes a new one and nodes ask their clients to reconnect, so
//!   resumes come back `recovered: false` instead of silently skipping.
//! - **Connections.** One RESP3 subscriber per node with automatic
//!   resubscription; a room's channel is subscribed while this node has a
//!   connection in it ("warm"), with a short linger; no pattern subscriptions.
//!   Publishing, scripts and state go over a separate multiplexed
//!   (pipelining) connection; room changes are batched into pipelines, one
//!   per room. On a Redis Cluster every room's keys and channel share its
//!   hash tag, so each room lives on one slot and uses sharded pub/sub
//!   (`SPUBLISH`/`SSUBSCRIBE`, also from inside the scripts).
//! - **Shared state.** Presence is a hash per room whose entries name their
//!   node; nodes heartbeat into a sorted set and the entries of a node silent
//!   for `presence_ttl` are dropped by the others. Room settings are a
//!   document per room. Moderation state is the moderation store's.

pub(crate) mod codec;

use super::{BoxFuture, Broker, BrokerError};
use crate::api::SavedRooms;
use crate::config::Limits;
use crate::hub::{ConnId, Control, Draft, Event, Hub, Outgoing, RemoteMember, Room, Stored};
use crate::metrics::Metrics;
use crate::moderation::ModerationStore;
use crate::rooms::RoomDef;
use crate::store::RedisConn;
use crate::store::{CONTROL_CHANNEL, SharedDoc, Versioned};
use codec::{Payload, Published};
use dashmap::DashMap;
use kindred_protocol::{AccountId, ChatMessage, CloseCode, Member, RoomId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushKind, Value};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Give a message its seq (a staff message: its staff_seq, written into the
/// JSON's `"staff_seq":0` placeholder), store it, publish it: one atomic step.
/// KEYS: meta, log. ARGV: new epoch, staff (1/0), message JSON, account JSON,
/// message id, now (ms), max entries, retention (ms), channel, PUBLISH or SPUBLISH.
///
/// The stream is capped at about `max entries`: Redis trims whole nodes
/// (`MAXLEN ~`, half the cost of an exact trim), so it may keep up to one
/// node's worth more; a node loads only the newest `max entries`.
/// Entries past retention are dropped from the front, up to 16 per append,
/// reading one entry at a time: the oldest is almost always still fresh, and
/// reading 16 whole entries into Lua to learn that made the script 40 µs
/// instead of 18 (Redis runs one per message, on its one thread).
const APPEND: &str = include_str!("../../lua/append.lua");

/// Delete the history entries between two ids whose field equals a value:
/// one message (`seq`..`seq`, `i`, message id) or everything one account
/// wrote (`-`..`+`, `a`, account JSON). KEYS: log. ARGV: start, end, field, value.
const DELETE: &str = include_str!("../../lua/delete.lua");

const NODES_KEY: &str = "kindred:nodes";
/// Per node, the scopes of its staff connections (JSON), so the node that
/// raises a crisis alert can count everyone it reaches. Its hash tag puts it
/// in the slot of `kindred:nodes` on a Redis Cluster: the health tick
/// pipelines both.
const STAFF_KEY: &str = "{kindred:nodes}:staff";
/// How long a Redis call may take before the node treats Redis as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a room stays subscribed after its last local connection left.
const LINGER: Duration = Duration::from_secs(5);
/// How often the health loop runs: heartbeat, dead-node sweep, a slice of presence audits.
const TICK: Duration = Duration::from_millis(500);
/// Every warm room's presence list is audited against Redis once per this
/// period, a slice of the rooms on each tick. Joins and leaves travel as
/// events and dead nodes are swept on every tick, so the audit is only the
/// safety net: it used to run every third of the TTL and, at 4,500 rooms,
/// cost a tenth of the nodes' CPU and doubled the message p99.
const PRESENCE_AUDIT: Duration = Duration::from_secs(120);

/// A room's keys share one hash tag, so a room lives on one Redis Cluster slot.
struct Keys {
    meta: String,
    log: String,
    members: String,
    settings: String,
    channel: String,
}

impl Keys {
    fn of(room: &RoomId) -> Keys {
        Keys {
            meta: format!("kindred:{{{room}}}:meta"),
            log: format!("kindred:{{{room}}}:log"),
            members: format!("kindred:{{{room}}}:members"),
            settings: format!("kindred:{{{room}}}:settings"),
            channel: format!("kindred:{{{room}}}:ch"),
        }
    }

    fn room_of_channel(channel: &str) -> Option<RoomId> {
        let inner = channel.strip_prefix("kindred:{")?.strip_suffix("}:ch")?;
        Some(RoomId::from(inner))
    }
}

/// A member's entry in a room's shared presence.
#[derive(Serialize, Deserialize)]
struct PresenceEntry {
    member: Member,
    account: AccountId,
}

impl Shared {
    /// This node's field for a member in a room's presence hash: `node|member_id`.
    fn presence_field(&self, member_id: &kindred_protocol::MemberId) -> String {
        format!("{}|{}", self.node, member_id)
    }

    /// Queue the write of a local member's presence entry.
    fn set_present(&self, pipe: &mut redis::Pipeline, keys: &Keys, member: &Member, account: &AccountId) {
        pipe.cmd("HSET").arg(&keys.members).arg(self.presence_field(&member.member_id)).arg(presence_entry(member, account)).ignore();
    }

    /// The nodes whose heartbeat is within the TTL, as of the last health tick
    /// (read from Redis if no tick has run yet).
    async fn alive(&self) -> Result<Arc<HashSet<String>>, BrokerError> {
        if let Some(alive) = self.alive.lock().clone() {
            return Ok(alive);
        }
        self.alive_now().await
    }

    /// The nodes whose heartbeat is within the TTL, read from Redis now.
    async fn alive_now(&self) -> Result<Arc<HashSet<String>>, BrokerError> {
        let since = now_ms().saturating_sub(self.presence_ttl.as_millis() as u64);
        let alive: Vec<String> = bounded(redis::cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(since).arg("+inf").query_async(&mut self.publisher.clone())).await?;
        Ok(Arc::new(alive.into_iter().collect()))
    }
}

/// A member's entry in the shared presence list, as stored.
fn presence_entry(member: &Member, account: &AccountId) -> String {
    serde_json::to_string(&PresenceEntry { member: member.clone(), account: account.clone() }).expect("presence entries serialize")
}

/// Connections per account on this node (the app's), so a service ban made
/// on another node closes them here too.
pub(crate) type Accounts = Arc<DashMap<AccountId, Vec<(ConnId, Arc<Control>)>>>;

pub struct RedisBroker {
    shared: Arc<Shared>,
}

struct Shared {
    node: Arc<str>,
    hub: Hub,
    moderation: Arc<ModerationStore>,
    accounts: Accounts,
    on_duty: Arc<crate::alerts::OnDuty>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    publisher: RedisConn,
    subscriber: RedisConn,
    /// Per room: whether this node is subscribed and holds its history.
    warm: DashMap<RoomId, Arc<tokio::sync::Mutex<bool>>>,
    /// Both connections answer and every warm room has been repaired since the last loss.
    ready: AtomicBool,
    /// Something may have been missed: the subscriber disconnected or a push was dropped.
    lost: AtomicBool,
    presence_ttl: Duration,
    /// The nodes alive at the last health tick.
    alive: parking_lot::Mutex<Option<Arc<HashSet<String>>>>,
    rooms: SharedDoc,
    base_rooms: Vec<RoomDef>,
    append: redis::Script,
    /// Cancelled once this node has taken its members out of the shared presence at shutdown.
    left: CancellationToken,
}

/// The connections a node needs, made lazily (they connect in the background
/// and reconnect by themselves).
pub struct Connections {
    pub publisher: RedisConn,
    subscriber: RedisConn,
    pushes: mpsc::Receiver<redis::PushInfo>,
    lost: Arc<AtomicBool>,
}

impl Connections {
    /// `urls`: one Redis URL, or with `cluster`, the comma-separated seed nodes of a Redis Cluster.
    pub fn open(urls: &str, cluster: bool) -> anyhow::Result<Connections> {
        // Pushes go through a bounded queue; one that does not fit marks the
        // subscription as lossy, and the health loop repairs every room.
        let (tx, pushes) = mpsc::channel(65_536);
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let sender = move |info: redis::PushInfo| -> Result<(), ()> {
            if info.kind == PushKind::Disconnection {
                flag.store(true, Ordering::Release);
            }
            tx.try_send(info).map_err(|_| flag.store(true, Ordering::Release))
        };
        if cluster {
            let seeds: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
            let builder = || {
                redis::cluster::ClusterClient::builder(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(Duration::from_secs(1))
                    .response_timeout(CALL_TIMEOUT)
                    .retries(2)
            };
            let publisher = builder().build().map_err(|e| anyhow::anyhow!("--redis is not a valid list of cluster nodes: {e}"))?;
            let subscriber = builder().push_sender(sender).build()?;
            return Ok(Connections { publisher: RedisConn::cluster_of(publisher), subscriber: RedisConn::cluster_of(subscriber), pushes, lost });
        }
        use redis::IntoConnectionInfo;
        let info = urls.into_connection_info().map_err(|e| anyhow::anyhow!("--redis is not a valid Redis URL: {e}"))?;
        let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let config = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(CALL_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1))
        };
        let publisher = ConnectionManager::new_lazy_with_config(client.clone(), config())?;
        let subscriber = ConnectionManager::new_lazy_with_config(client, config().set_push_sender(sender).set_automatic_resubscription())?;
        Ok(Connections { publisher: RedisConn::Single(publisher), subscriber: RedisConn::Single(subscriber), pushes, lost })
    }
}

/// What the broker needs from the app.
pub(crate) struct Parts {
    pub node: String,
    pub hub: Hub,
    pub moderation: Arc<ModerationStore>,
    pub accounts: Accounts,
    pub on_duty: Arc<crate::alerts::OnDuty>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub presence_ttl: Duration,
    /// Rooms made, changed or closed through the admin API, and the configured rooms they apply to.
    pub rooms: SharedDoc,
    pub base_rooms: Vec<RoomDef>,
    pub link: mpsc::Receiver<Outgoing>,
    pub shutdown: CancellationToken,
}

async fn bounded<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, BrokerError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "Redis call failed");
            Err(BrokerError::Unavailable)
        }
        Err(_) => Err(BrokerError::Unavailable),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The instant a message stored at `ms` (wall clock) was stored, for age-based pruning.
fn instant_of(ms: u64) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(ms));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

/// One history entry: id `seq-n`, fields m (message JSON), a (account JSON), t (ms).
fn parse_entry(id: &str, fields: &HashMap<String, String>) -> Option<Stored> {
    let seq: u64 = id.split('-').next()?.parse().ok()?;
    let mut msg: ChatMessage = serde_json::from_str(fields.get("m")?).ok()?;
    msg.seq = seq;
    let account: AccountId = serde_json::from_str(fields.get("a")?).ok()?;
    let at = instant_of(fields.get("t")?.parse().ok()?);
    Some(Stored { msg, account, at })
}

type Entries = Vec<(String, HashMap<String, String>)>;

fn parse_entries(rows: Entries) -> Vec<Stored> {
    rows.iter().filter_map(|(id, f)| parse_entry(id, f)).collect()
}

impl RedisBroker {
    /// Start the broker's tasks: the push dispatcher, the outgoing pipeline and the health loop.
    pub fn start(conns: Connections, parts: Parts) -> RedisBroker {
        let Connections { publisher, subscriber, pushes, lost } = conns;
        let node: Arc<str> = format!("{}-{:08x}", parts.node, rand::random::<u32>()).into();
        let shared = Arc::new(Shared {
            node,
            hub: parts.hub,
            moderation: parts.moderation,
            accounts: parts.accounts,
            on_duty: parts.on_duty,
            limits: parts.limits,
            metrics: parts.metrics,
            publisher,
            subscriber,
            warm: DashMap::new(),
            ready: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            presence_ttl: parts.presence_ttl,
            alive: parking_lot::Mutex::new(None),
            rooms: parts.rooms,
            base_rooms: parts.base_rooms,
            append: redis::Script::new(APPEND),
            left: CancellationToken::new(),
        });
        tokio::spawn(dispatch(shared.clone(), pushes, parts.shutdown.clone()));
        tokio::spawn(outgoing(shared.clone(), parts.link, parts.shutdown.clone()));
        tokio::spawn(health(shared.clone(), lost, parts.shutdown));
        RedisBroker { shared }
    }
}

impl Broker for RedisBroker {
    fn append<'a>(&'a self, room: &'a Arc<Room>, draft: Draft) -> BoxFuture<'a, Result<ChatMessage, BrokerError>> {
        Box::pin(async move {
            let s = &self.shared;
            if !s.ready.load(Ordering::Acquire) {
                return Err(BrokerError::Unavailable);
            }
            let def = room.def();
            let keys = Keys::of(&def.id);
            let retention_ms = u64::from(def.history_minutes.unwrap_or(s.limits.history_minutes)) * 60_000;
            let now = now_ms();
            let account = serde_json::to_string(&draft.account).expect("ids serialize");
            let mut draft = draft;
            if draft.msg.staff {
                // The script writes the real value over this placeholder.
                draft.msg.staff_seq = Some(0);
            }
            let body = serde_json::to_string(&draft.msg).expect("protocol types serialize");
            let mut invocation = s.append.key(&keys.meta);
            invocation
                .key(&keys.log)
                .arg(format!("e{:x}", rand::random::<u64>()))
                .arg(if draft.msg.staff { "1" } else { "0" })
                .arg(body)
                .arg(account)
                .arg(&draft.msg.message_id.0)
                .arg(now)
                .arg(s.limits.history_max_messages)
                .arg(retention_ms)
                .arg(&keys.channel)
                .arg(s.publisher.publish_command());
            let (epoch, seq, staff_seq): (String, u64, u64) = bounded(invocation.invoke_async(&mut s.publisher.clone())).await?;
            let mut msg = draft.msg;
            msg.seq = seq;
            if msg.staff {
                msg.staff_seq = Some(staff_seq);
            }
            // This node's members need not wait for the message to come back
            // over the subscription (where it is then a duplicate), and the
            // sender's `sent` goes out in one write with its own copy. Not a
            // staff-channel message: it takes no `seq`, and in a room keeping
            // no history its push could not be told for a duplicate.
            if !msg.staff {
                room.deliver_appended(&epoch, Stored { msg: msg.clone(), account: draft.account, at: instant_of(now) });
            }
            Ok(msg)
        })
    }

    fn activate<'a>(&'a self, room: &'a Arc<Room>) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            if !self.shared.ready.load(Ordering::Acquire) && !self.is_warm(room) {
                return Err(BrokerError::Unavailable);
            }
            activate(&self.shared, room).await
        })
    }

    fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = tokio::time::timeout(CALL_TIMEOUT, self.shared.left.cancelled()).await;
        })
    }
}

impl RedisBroker {
    fn is_warm(&self, room: &Arc<Room>) -> bool {
        self.shared.warm.get(&room.id()).is_some_and(|w| w.try_lock().is_ok_and(|w| *w))
    }
}

/// Subscribe to a room and load its history, presence and settings, unless this node already has.
async fn activate(s: &Arc<Shared>, room: &Arc<Room>) -> Result<(), BrokerError> {
    let id = room.id();
    let lock = s.warm.entry(id.clone()).or_default().clone();
    let mut warm = lock.lock().await;
    if *warm {
        return Ok(());
    }
    room.begin_load();
    let keys = Keys::of(&id);
    bounded(s.subscriber.subscribe(&keys.channel)).await?;
    load(s, room).await?;
    presence_sync(s, room, false).await?;
    *warm = true;
    tracing::debug!(room = %id, "room warm on this node");
    Ok(())
}

/// Read a room's history, position and settings in one transaction and install them.
async fn load(s: &Arc<Shared>, room: &Arc<Room>) -> Result<(), BrokerError> {
    let keys = Keys::of(&room.id());
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("epoch")
        .arg(format!("e{:x}", rand::random::<u64>()))
        .ignore()
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("seq")
        .arg(0)
        .ignore()
        .cmd("HMGET")
        .arg(&keys.meta)
        .arg("epoch")
        .arg("seq")
        .cmd("XREVRANGE")
        .arg(&keys.log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(s.limits.history_max_messages.max(1))
        .cmd("GET")
        .arg(&keys.settings);
    let ((epoch, seq), mut rows, settings): ((String, u64), Entries, Option<String>) = bounded(pipe.query_async(&mut s.publisher.clone())).await?;
    rows.reverse();
    if let Some(settings) = settings.and_then(|j| serde_json::from_str(&j).ok()) {
        room.set_settings(settings);
    }
    if let Some((from, to)) = room.load(&epoch, seq, parse_entries(rows)) {
        spawn_fill(s.clone(), room.clone(), from, to);
    }
    Ok(())
}

fn spawn_fill(s: Arc<Shared>, room: Arc<Room>, from: u64, to: u64) {
    tokio::spawn(async move {
        if let Err(e) = fill(&s, &room, from, to).await {
            tracing::warn!(room = %room.id(), error = %e, "gap fill failed; the next repair retries");
            s.lost.store(true, Ordering::Release);
        }
    });
}

/// Deliver `from..=to` from the stored history (and anything after it that was missed).
async fn fill(s: &Arc<Shared>, room: &Arc<Room>, mut from: u64, mut to: u64) -> Result<(), BrokerError> {
    let keys = Keys::of(&room.id());
    loop {
        Metrics::add(&s.metrics.redis_gap_fills, 1);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGET").arg(&keys.meta).arg("epoch").cmd("XRANGE").arg(&keys.log).arg(from).arg(to);
        let (epoch, rows): (Option<String>, Entries) = bounded(pipe.query_async(&mut s.publisher.clone())).await?;
        let (mine, _) = room.position();
        if epoch.as_deref() != Some(mine.as_str()) {
            // The history this node holds is gone from Redis: start over.
            room.begin_load();
            return load(s, room).await;
        }
        match room.filled(&mine, to, parse_entries(rows)) {
            Some((f, t)) => (from, to) = (f, t),
            None => return Ok(()),
        }
    }
}

/// After a possible loss: deliver whatever was stored after this node's position.
async fn repair(s: &Arc<Shared>, room: &Arc<Room>) -> Result<(), BrokerError> {
    let keys = Keys::of(&room.id());
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("HMGET").arg(&keys.meta).arg("epoch").arg("seq");
    let ((epoch, seq),): ((Option<String>, Option<u64>),) = bounded(pipe.query_async(&mut s.publisher.clone())).await?;
    let (mine, at) = room.position();
    match (epoch, seq) {
        (Some(epoch), Some(seq)) if epoch == mine => {
            if seq > at {
                fill(s, room, at + 1, seq).await?;
            }
            Ok(())
        }
        _ => {
            room.begin_load();
            load(s, room).await
        }
    }
}

/// Audit a room's shared presence list against this node: write back (and
/// announce) this node's members it lacks or lists wrongly, or all of them
/// with `announce_all`; drop entries of this node's departed members and of
/// nodes gone silent; and show this node's members everyone else's.
/// In the steady state this is one read.
async fn presence_sync(s: &Arc<Shared>, room: &Arc<Room>, announce_all: bool) -> Result<(), BrokerError> {
    let id = room.id();
    let keys = Keys::of(&id);
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
    let mine = room.local_members();
    let mut pipe = redis::pipe();
    let mut local = HashSet::with_capacity(mine.len());
    for (member, account) in mine {
        let field = s.presence_field(&member.member_id);
        if announce_all || all.get(&field) != Some(&presence_entry(&member, &account)) {
            // Written and announced together: nodes that dropped the member (it
            // looked gone) take it back from the event.
            add_event(s, &mut pipe, &id, Event::Joined { member, account });
        }
        local.insert(field);
    }
    let mut remote = Vec::new();
    for (field, value) in all {
        let Some((node, member_id)) = field.split_once('|') else { continue };
        if node == &*s.node {
            if !local.contains(&field) {
                add_event(s, &mut pipe, &id, Event::Left { member_id: member_id.into() });
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
    room.sync_remote_members(remote, read_at);
    Ok(())
}

/// Unsubscribe from a room once it has had no local connection for a while.
async fn deactivate(s: Arc<Shared>, room: RoomId) {
    tokio::time::sleep(LINGER).await;
    let Some(lock) = s.warm.get(&room).map(|l| l.clone()) else { return };
    let mut warm = lock.lock().await;
    let Some(r) = s.hub.room(&room) else { return };
    if !*warm || r.conn_count() > 0 {
        return;
    }
    if let Err(e) = bounded(s.subscriber.unsubscribe(&Keys::of(&room).channel)).await {
        tracing::debug!(room = %room, error = %e, "unsubscribe failed; resubscription will carry it");
    }
    r.sync_remote_members(Vec::new(), Instant::now());
    *warm = false;
    tracing::debug!(room = %room, "room cold on this node");
}

/// Apply what the subscription brings: messages, room changes, moderation state.
async fn dispatch(s: Arc<Shared>, mut pushes: mpsc::Receiver<redis::PushInfo>, shutdown: CancellationToken) {
    loop {
        let push = tokio::select! {
            push = pushes.recv() => match push { Some(p) => p, None => return },
            () = shutdown.cancelled() => return,
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (push.data.first(), push.data.get(1)) else {
                    continue;
                };
                let (Ok(channel), Ok(payload)) = (std::str::from_utf8(channel), std::str::from_utf8(payload)) else { continue };
                if channel == CONTROL_CHANNEL {
                    match codec::decode_control(payload) {
                        Ok(Payload::Moderation(doc)) => {
                            let mutes_changed = s.moderation.install_published(doc);
                            enforce_service_bans(&s);
                            // (Reports change the document too; only a change of mutes walks the members.)
                            if mutes_changed {
                                follow_mutes(&s);
                            }
                        }
                        Ok(Payload::Rooms(doc)) => match serde_json::from_str::<Versioned<SavedRooms>>(doc) {
                            Ok(d) => d.doc.reconcile(&s.hub, &s.base_rooms),
                            Err(e) => tracing::error!(error = %e, "a published rooms document is not valid"),
                        },
                        Ok(_) | Err(_) => tracing::error!("a control payload of an unknown kind"),
                    }
                } else if let Some(room) = Keys::room_of_channel(channel).and_then(|id| s.hub.room(&id)) {
                    on_room_payload(&s, &room, payload);
                }
            }
            PushKind::Subscribe | PushKind::SSubscribe => {
                // Also sent when the client resubscribes after a reconnect it
                // may not have reported: repair the room, to be sure.
                let room = push.data.first().and_then(|c| match c {
                    Value::BulkString(c) => std::str::from_utf8(c).ok().and_then(Keys::room_of_channel),
                    _ => None,
                });
                if let Some(room) = room.and_then(|id| s.hub.room(&id)) {
                    let warm = s.warm.get(&room.id()).is_some_and(|w| w.try_lock().is_ok_and(|w| *w));
                    if warm {
                        let s = s.clone();
                        tokio::spawn(async move {
                            if repair(&s, &room).await.is_err() {
                                s.lost.store(true, Ordering::Release);
                            }
                        });
                    }
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("lost the Redis subscription; every room is repaired once it is back");
                Metrics::add(&s.metrics.redis_reconnects, 1);
                s.ready.store(false, Ordering::Release);
            }
            _ => {}
        }
    }
}

fn on_room_payload(s: &Arc<Shared>, room: &Arc<Room>, payload: &str) {
    match codec::decode_room(payload) {
        Ok(Payload::Message(Published { epoch, msg, account, at_ms })) => {
            if room.needs_reload(&epoch) {
                // A history this node does not hold: Redis lost the old one. Reload.
                let (s, room) = (s.clone(), room.clone());
                tokio::spawn(async move {
                    room.begin_load();
                    if load(&s, &room).await.is_err() {
                        s.lost.store(true, Ordering::Release);
                    }
                });
                return;
            }
            if let Some((from, to)) = room.deliver(&epoch, Stored { msg, account, at: instant_of(at_ms) }) {
                spawn_fill(s.clone(), room.clone(), from, to);
            }
        }
        Ok(Payload::Event { node, event }) if node != *s.node => room.apply_remote(&Arc::from(node.as_str()), event),
        Ok(_) => {}
        Err(e) => tracing::error!(room = %room.id(), error = %e, "a room payload could not be read"),
    }
}

/// The moderation document is the truth about mutes; this node's members
/// show it. A mute made on another node is announced there only if that
/// node held the member's record at that moment; a member leaving and
/// coming back meanwhile (a resume) would otherwise stay listed unmuted
/// while its sends were refused.
fn follow_mutes(s: &Arc<Shared>) {
    for room in s.hub.rooms() {
        let id = room.id();
        for (member, account) in room.local_members() {
            let muted = s.moderation.muted_until(&id, &account);
            if (member.muted, &member.muted_until) != (muted.is_some(), &muted.clone().flatten()) {
                room.set_muted(&member.member_id, muted);
            }
        }
    }
}

/// A service ban (or erasure) made on another node closes this node's connections of that account.
fn enforce_service_bans(s: &Arc<Shared>) {
    for entry in s.accounts.iter() {
        let account = entry.key();
        if s.moderation.banned_from_service(account).is_some() {
            entry.value().iter().for_each(|(_, c)| c.close(CloseCode::Banned));
        } else if s.moderation.is_forgotten(account) {
            entry.value().iter().for_each(|(_, c)| c.close(CloseCode::Unauthorized));
        }
    }
}

/// Learn the live peers' staff scopes; forget the entries of nodes that are gone.
async fn follow_staff(s: &Arc<Shared>, alive: &HashSet<String>, staff: HashMap<String, String>) -> Result<(), BrokerError> {
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
    s.on_duty.set_remote(remote);
    if !gone.is_empty() {
        bounded(redis::cmd("HDEL").arg(STAFF_KEY).arg(gone).exec_async(&mut s.publisher.clone())).await?;
    }
    Ok(())
}

/// Carry this node's room changes to Redis, batched into pipelines.
async fn outgoing(s: Arc<Shared>, mut link: mpsc::Receiver<Outgoing>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(256);
    loop {
        let n = tokio::select! {
            n = link.recv_many(&mut batch, 256) => n,
            () = shutdown.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        // One pipeline per room: on a Redis Cluster a pipeline must stay on one slot.
        let mut pipes: HashMap<RoomId, redis::Pipeline> = HashMap::new();
        for out in batch.drain(..) {
            match out {
                Outgoing::Event(room, event) => add_event(&s, pipes.entry(room.clone()).or_default(), &room, event),
                Outgoing::Present(room, member, account) => {
                    let keys = Keys::of(&room);
                    s.set_present(pipes.entry(room).or_default(), &keys, &member, &account);
                }
                Outgoing::Idle(room) => {
                    tokio::spawn(deactivate(s.clone(), room));
                }
            }
        }
        let sends = pipes.into_values().map(|pipe| {
            let mut conn = s.publisher.clone();
            async move { bounded(pipe.exec_async(&mut conn)).await }
        });
        if futures_util::future::join_all(sends).await.iter().any(Result::is_err) {
            tracing::warn!("room changes not carried to Redis; presence is repaired by the next sync");
            s.lost.store(true, Ordering::Release);
        }
    }
}

fn add_event(s: &Shared, pipe: &mut redis::Pipeline, room: &RoomId, event: Event) {
    let keys = Keys::of(room);
    match &event {
        Event::Joined { member, account } => s.set_present(pipe, &keys, member, account),
        Event::Left { member_id } => {
            pipe.cmd("HDEL").arg(&keys.members).arg(s.presence_field(member_id)).ignore();
        }
        Event::Settings(settings) => {
            pipe.cmd("SET").arg(&keys.settings).arg(serde_json::to_string(settings).expect("serializes")).ignore();
        }
        Event::Deleted { message_id, seq } => {
            pipe.cmd("EVAL").arg(DELETE).arg(1).arg(&keys.log).arg(seq).arg(seq).arg("i").arg(&message_id.0).ignore();
        }
        Event::Forget { account } => {
            let account = serde_json::to_string(account).expect("serializes");
            pipe.cmd("EVAL").arg(DELETE).arg(1).arg(&keys.log).arg("-").arg("+").arg("a").arg(account).ignore();
        }
        Event::Frame { .. } | Event::Member { .. } | Event::Hands { .. } | Event::Remove { .. } => {}
    }
    pipe.cmd(s.publisher.publish_command()).arg(&keys.channel).arg(codec::encode_event(&s.node, event)).ignore();
}

/// Keep both connections alive, say whether this node is ready, heartbeat
/// its presence, and repair every warm room after a possible loss.
async fn health(s: Arc<Shared>, lost: Arc<AtomicBool>, shutdown: CancellationToken) {
    let mut control_subscribed = false;
    let ticks_per_round = (PRESENCE_AUDIT.as_millis() / TICK.as_millis()).max(1) as u64;
    let mut tick: u64 = 0;
    let mut beat = Heartbeat::default();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let started = Instant::now();
        let publisher_ok = bounded(redis::cmd("PING").exec_async(&mut s.publisher.clone())).await.is_ok();
        if publisher_ok {
            s.metrics.redis_rtt_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        let subscriber_ok = bounded(redis::cmd("PING").exec_async(&mut s.subscriber.clone())).await.is_ok();
        if subscriber_ok && !control_subscribed {
            control_subscribed = bounded(s.subscriber.subscribe(CONTROL_CHANNEL)).await.is_ok();
        }
        let up = publisher_ok && subscriber_ok && control_subscribed;
        if !up {
            if s.ready.swap(false, Ordering::AcqRel) {
                tracing::warn!("Redis is unavailable; this node refuses messages until it is back");
                Metrics::add(&s.metrics.redis_reconnects, 1);
            }
            continue;
        }
        let was_lost = lost.swap(false, Ordering::AcqRel) | s.lost.swap(false, Ordering::AcqRel);
        let repairing = !s.ready.load(Ordering::Acquire) || was_lost;
        // Every warm room's presence is audited once per PRESENCE_AUDIT, a
        // slice of them on each tick: one pass over thousands of rooms at once
        // was a burst of round trips that queued behind (and delayed) messages.
        tick = tick.wrapping_add(1);
        let share = if repairing { Share::All } else { Share::Slice(tick % ticks_per_round, ticks_per_round) };
        match recover(&s, repairing, share, &mut beat).await {
            Ok(()) => {
                if !s.ready.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %s.node, "Redis connected; this node is ready");
                }
            }
            Err(_) => {
                s.lost.store(true, Ordering::Release);
                s.ready.store(false, Ordering::Release);
            }
        }
    }
    // Leaving: take this node's members out of every room it holds now.
    let mut sends = Vec::new();
    for room in s.hub.rooms() {
        let mut pipe = redis::pipe();
        for (member, _) in room.local_members() {
            add_event(&s, &mut pipe, &room.id(), Event::Left { member_id: member.member_id.clone() });
        }
        let mut conn = s.publisher.clone();
        sends.push(async move { bounded(pipe.exec_async(&mut conn)).await });
    }
    let _ = futures_util::future::join_all(sends).await;
    let _ = bounded(redis::cmd("ZREM").arg(NODES_KEY).arg(&*s.node).exec_async(&mut s.publisher.clone())).await;
    s.left.cancel();
}

/// Which warm rooms a health tick syncs presence for.
#[derive(Clone, Copy)]
enum Share {
    All,
    /// Slice `k` of `n`: rooms whose id hashes to `k` modulo `n`.
    Slice(u64, u64),
}

impl Share {
    fn takes(self, room: &RoomId) -> bool {
        match self {
            Share::All => true,
            Share::Slice(k, n) => {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                BuildHasherDefault::<DefaultHasher>::default().hash_one(room.0.as_str()) % n == k
            }
        }
    }
}

/// Presence syncs run together (their round trips share the connection's writes and reads).
const SYNCS_IN_FLIGHT: usize = 32;

/// What the health loop remembers between ticks about heartbeats.
#[derive(Default)]
struct Heartbeat {
    /// When this node's own heartbeat last reached Redis.
    last: Option<Instant>,
    /// The other nodes alive at the last tick.
    peers: HashSet<String>,
    /// Room events dropped on a full queue, as counted at the last tick.
    dropped: u64,
    /// This node's staff scopes as last written to Redis.
    staff: Option<String>,
}

/// Heartbeat; the members of nodes gone silent since the last tick leave
/// every room; presence for this tick's share of the warm rooms; with
/// `repairing`, also the moderation state and every warm room's history.
async fn recover(s: &Arc<Shared>, repairing: bool, share: Share, beat: &mut Heartbeat) -> Result<(), BrokerError> {
    let mut conn = s.publisher.clone();
    let now = now_ms();
    let ttl_ms = s.presence_ttl.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD").arg(NODES_KEY).arg(now).arg(&*s.node).ignore();
    pipe.cmd("ZREMRANGEBYSCORE").arg(NODES_KEY).arg("-inf").arg(now.saturating_sub(10 * ttl_ms)).ignore();
    pipe.cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(now.saturating_sub(ttl_ms)).arg("+inf");
    // This node's staff scopes: written when they change, and again after a
    // repair (Redis may have lost them); idle ticks write nothing.
    let scopes = serde_json::to_string(&s.on_duty.local_scopes()).expect("scopes serialize");
    let write_scopes = repairing || beat.staff.as_deref() != Some(scopes.as_str());
    if write_scopes {
        pipe.cmd("HSET").arg(STAFF_KEY).arg(&*s.node).arg(&scopes).ignore();
    }
    pipe.cmd("HGETALL").arg(STAFF_KEY);
    let (alive, staff): (Vec<String>, HashMap<String, String>) = bounded(pipe.query_async(&mut conn)).await?;
    if write_scopes {
        beat.staff = Some(scopes);
    }
    // This node's own heartbeat lapsed (a stall, or Redis out of reach): other
    // nodes may have dropped its members. Every room announces them again.
    let lapsed = beat.last.replace(Instant::now()).is_some_and(|t| t.elapsed() > s.presence_ttl / 2);
    let alive: HashSet<String> = alive.into_iter().collect();
    let peers: HashSet<String> = alive.iter().filter(|n| **n != *s.node).cloned().collect();
    for gone in beat.peers.difference(&peers) {
        let dropped: usize = s.hub.rooms().iter().map(|room| room.forget_node(gone)).sum();
        tracing::info!(dropped, "a node stopped heartbeating; its members left every room");
    }
    beat.peers = peers;
    follow_staff(s, &alive, staff).await?;
    *s.alive.lock() = Some(Arc::new(alive));
    if lapsed {
        tracing::warn!("this node's heartbeat lapsed; announcing its members again");
    }
    // A join or leave that never reached Redis: audit every room now, not in two minutes.
    let dropped = s.metrics.cluster_events_dropped.load(Ordering::Relaxed);
    let events_lost = std::mem::replace(&mut beat.dropped, dropped) != dropped;
    let share = if lapsed || events_lost { Share::All } else { share };
    if repairing {
        s.moderation.reload().await.map_err(|_| BrokerError::Unavailable)?;
        enforce_service_bans(s);
        let rooms = s.rooms.fetch::<SavedRooms>().await.map_err(|_| BrokerError::Unavailable)?;
        rooms.doc.reconcile(&s.hub, &s.base_rooms);
    }
    let warm: Vec<Arc<Room>> =
        s.warm.iter().filter(|w| share.takes(w.key()) && w.value().try_lock().is_ok_and(|w| *w)).filter_map(|w| s.hub.room(w.key())).collect();
    if repairing {
        for room in &warm {
            repair(s, room).await?;
        }
    }
    for rooms in warm.chunks(SYNCS_IN_FLIGHT) {
        let mut syncs = Vec::with_capacity(rooms.len());
        for room in rooms {
            syncs.push(presence_sync(s, room, lapsed));
        }
        for result in futures_util::future::join_all(syncs).await {
            result?;
        }
    }
    Ok(())
}
