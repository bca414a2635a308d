//! The cluster broker: nodes share rooms through Redis.
//!
//! - **Order and durability.** One Lua script gives a message its room's
//!   next `seq`, appends it to the room's history stream (entry id `seq-n`,
//!   MAXLEN and a TTL) and publishes it, atomically. `sent` is only answered
//!   after the script returned. Every node delivers what its subscription
//!   brings in `seq` order (its [`Handler`]); a gap is filled from the
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
//!   for `presence_ttl` are dropped by the others. Room settings (the pinned
//!   message and the session among them) are a document per room.
//!   Reactions are a hash per message that expires with it, changed and
//!   counted by one script that publishes the counts. The shared documents
//!   (moderation, the room directory) are changed by `store::Doc`; the
//!   broker carries their new versions to its [`NodeHandler`], and reads
//!   them again after a loss.

pub(crate) mod codec;
mod events;
mod health;
mod history;
mod keys;
mod presence;

use events::*;
use health::*;
use history::*;
use keys::*;
use presence::*;

use super::{Appended, BoxFuture, Broker, BrokerError, Handler, NodeHandler, Retention};
use crate::config::Limits;
use crate::hub::{Draft, Event, Outgoing, Reaction, RemoteMember, Stored};
use crate::metrics::Metrics;
use crate::store::RedisConn;
use crate::store::{CONTROL_CHANNEL, Document};
use codec::{Payload, Published};
use dashmap::DashMap;
use kindred_protocol::{AccountId, ChatMessage, Member, MemberId, MessageId, RoomId};
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

/// Give (`on` 1) or take back (0) one member's reaction to a message, and
/// when that changed anything: count, keep the counts for nodes that warm
/// the room later, and publish them as a room event, all in one atomic step,
/// so a reaction made through two nodes at once is counted once and every
/// node hears the counts in the order Redis made them (the node that made
/// the change included: it applies the counts when they come back).
/// KEYS: the message's reactions hash (fields `kind|member` and `#kind`),
/// the room's counts hash. ARGV: field, kind, on, expiry (ms since the Unix
/// epoch: the message's own, when it leaves the history), retention (ms, for
/// the counts hash), channel, PUBLISH or SPUBLISH, the event up to its
/// counts (`codec::reactions_event_prefix`), message id, the most counts
/// kept before the stale ones are swept, the reactions hash prefix, then
/// every kind the server allows, in order.
const REACT: &str = include_str!("../../lua/react.lua");

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

pub(crate) struct RedisBroker {
    shared: Arc<Shared>,
}

struct Shared {
    node: Arc<str>,
    /// Where what arrives for a room goes (the hub).
    handler: Arc<dyn Handler>,
    /// Where what is not one room's goes: shared documents, staff on other nodes.
    node_handler: Arc<dyn NodeHandler>,
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
    append: redis::Script,
    react: redis::Script,
    /// Cancelled once this node has taken its members out of the shared presence at shutdown.
    left: CancellationToken,
}

/// The connections a node needs, made lazily (they connect in the background
/// and reconnect by themselves).
pub(crate) struct Connections {
    pub publisher: RedisConn,
    subscriber: RedisConn,
    pushes: mpsc::Receiver<redis::PushInfo>,
    lost: Arc<AtomicBool>,
}

impl Connections {
    /// `urls`: one Redis URL, or with `cluster`, the comma-separated seed nodes of a Redis Cluster.
    pub(crate) fn open(urls: &str, cluster: bool) -> anyhow::Result<Connections> {
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
    pub handler: Arc<dyn Handler>,
    pub node_handler: Arc<dyn NodeHandler>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub presence_ttl: Duration,
    pub link: mpsc::Receiver<Outgoing>,
    pub shutdown: CancellationToken,
}

/// A Redis call that gives up after 2 s (`store::bounded`) instead of waiting for a reconnect.
async fn bounded<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, BrokerError> {
    crate::store::bounded(f).await.map_err(|_| BrokerError::Unavailable)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The instant a message stored at `ms` (wall clock) was stored, for age-based pruning.
fn instant_of(ms: u64) -> Instant {
    let age = Duration::from_millis(now_ms().saturating_sub(ms));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

impl RedisBroker {
    /// Start the broker's tasks: the push dispatcher, the outgoing pipeline and the health loop.
    pub(crate) fn start(conns: Connections, parts: Parts) -> RedisBroker {
        let Connections { publisher, subscriber, pushes, lost } = conns;
        let node: Arc<str> = format!("{}-{:08x}", parts.node, rand::random::<u32>()).into();
        let shared = Arc::new(Shared {
            node,
            handler: parts.handler,
            node_handler: parts.node_handler,
            limits: parts.limits,
            metrics: parts.metrics,
            publisher,
            subscriber,
            warm: DashMap::new(),
            ready: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            presence_ttl: parts.presence_ttl,
            alive: parking_lot::Mutex::new(None),
            append: redis::Script::new(APPEND),
            react: redis::Script::new(REACT),
            left: CancellationToken::new(),
        });
        tokio::spawn(dispatch(shared.clone(), pushes, parts.shutdown.clone()));
        tokio::spawn(outgoing(shared.clone(), parts.link, parts.shutdown.clone()));
        tokio::spawn(health(shared.clone(), lost, parts.shutdown));
        RedisBroker { shared }
    }
}

impl Broker for RedisBroker {
    fn append<'a>(&'a self, room: &'a RoomId, draft: &'a Draft, retention: Retention) -> BoxFuture<'a, Result<Appended, BrokerError>> {
        Box::pin(async move {
            let s = &self.shared;
            if !s.ready.load(Ordering::Acquire) {
                return Err(BrokerError::Unavailable);
            }
            let keys = Keys::of(room);
            let now = now_ms();
            let account = serde_json::to_string(&draft.account).expect("ids serialize");
            let mut msg = draft.msg.clone();
            if msg.staff {
                // The script writes the real value over this placeholder.
                msg.staff_seq = Some(0);
            }
            let body = serde_json::to_string(&msg).expect("protocol types serialize");
            let mut invocation = s.append.key(&keys.meta);
            invocation
                .key(&keys.log)
                .arg(crate::hub::new_epoch())
                .arg(if msg.staff { "1" } else { "0" })
                .arg(body)
                .arg(account)
                .arg(&msg.message_id.0)
                .arg(now)
                .arg(retention.max_messages)
                .arg(retention.ms)
                .arg(&keys.channel)
                .arg(s.publisher.publish_command());
            let (epoch, seq, staff_seq): (String, u64, u64) = bounded(invocation.invoke_async(&mut s.publisher.clone())).await?;
            msg.seq = seq;
            msg.staff_seq = msg.staff.then_some(staff_seq);
            let appended = Appended { epoch, seq, staff_seq: msg.staff_seq };
            // This node's members need not wait for the message to come back
            // over the subscription (where it is then a duplicate), and the
            // sender's `sent` goes out in one write with its own copy. A gap
            // before it is left to the subscription, which is still bringing
            // what is missing (and this message's own push fills it if not).
            // Not a staff-channel message: it takes no `seq`, and in a room
            // keeping no history its push could not be told for a duplicate.
            if !msg.staff {
                let _gap_left_to_the_subscription =
                    s.handler.on_message(room, &appended.epoch, Stored { msg, account: draft.account.clone(), at: instant_of(now) });
            }
            Ok(appended)
        })
    }

    fn react<'a>(&'a self, room: &'a RoomId, reaction: Reaction, stored_ms: u64, retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let s = &self.shared;
            if !s.ready.load(Ordering::Acquire) {
                return Err(BrokerError::Unavailable);
            }
            let keys = Keys::of(room);
            let retention_ms = retention.ms;
            let mut invocation = s.react.key(keys.reacted(&reaction.message_id));
            invocation
                .key(&keys.reactions)
                .arg(format!("{}|{}", reaction.kind, reaction.member_id))
                .arg(reaction.kind)
                .arg(if reaction.on { "1" } else { "0" })
                .arg(stored_ms + retention_ms)
                .arg(retention_ms.max(1))
                .arg(&keys.channel)
                .arg(s.publisher.publish_command())
                .arg(codec::reactions_event_prefix(&s.node, &reaction.message_id))
                .arg(&reaction.message_id.0)
                .arg(s.limits.history_max_messages.max(1) * 2)
                .arg(&keys.reacted_prefix);
            for kind in s.limits.reactions() {
                invocation.arg(kind);
            }
            let _changed: u8 = bounded(invocation.invoke_async(&mut s.publisher.clone())).await?;
            Ok(())
        })
    }

    fn forget_reactions<'a>(&'a self, room: &'a RoomId, member_id: MemberId, retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            // The messages with reactions, as Redis has them (this node may not have the room open).
            let keys = Keys::of(room);
            let ids: Vec<String> = bounded(redis::cmd("HKEYS").arg(&keys.reactions).query_async(&mut self.shared.publisher.clone())).await?;
            for id in ids {
                let message_id = MessageId(id);
                // When it was stored, or at the latest now: the hash expires no later than the message.
                let stored_ms = self.shared.handler.reactable(room, &message_id).unwrap_or_else(now_ms);
                for kind in self.shared.limits.reactions() {
                    let reaction = Reaction { message_id: message_id.clone(), member_id: member_id.clone(), kind, on: false };
                    self.react(room, reaction, stored_ms, retention).await?;
                }
            }
            Ok(())
        })
    }

    fn activate<'a>(&'a self, room: &'a RoomId, _retention: Retention) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            if !self.shared.ready.load(Ordering::Acquire) && !self.shared.is_warm(room) {
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

impl Shared {
    /// Whether this node is subscribed to the room and holds its history
    /// (false while that is being set up: the set-up holds the lock).
    fn is_warm(&self, room: &RoomId) -> bool {
        self.warm.get(room).is_some_and(|w| w.try_lock().is_ok_and(|w| *w))
    }
}

/// Subscribe to a room and load its history, presence and settings, unless this node already has.
async fn activate(s: &Arc<Shared>, room: &RoomId) -> Result<(), BrokerError> {
    let lock = s.warm.entry(room.clone()).or_default().clone();
    let mut warm = lock.lock().await;
    if *warm {
        return Ok(());
    }
    s.handler.on_loading(room);
    let keys = Keys::of(room);
    bounded(s.subscriber.subscribe(&keys.channel)).await?;
    load(s, room).await?;
    presence_sync(s, room, false).await?;
    *warm = true;
    tracing::debug!(room = %room, "room warm on this node");
    Ok(())
}

/// Unsubscribe from a room once it has had no local connection for a while.
async fn deactivate(s: Arc<Shared>, room: RoomId) {
    tokio::time::sleep(LINGER).await;
    let Some(lock) = s.warm.get(&room).map(|l| l.clone()) else { return };
    let mut warm = lock.lock().await;
    if !*warm || s.handler.conn_count(&room) > 0 {
        return;
    }
    if let Err(e) = bounded(s.subscriber.unsubscribe(&Keys::of(&room).channel)).await {
        tracing::debug!(room = %room, error = %e, "unsubscribe failed; resubscription will carry it");
    }
    s.handler.on_presence(&room, Vec::new(), Instant::now());
    *warm = false;
    tracing::debug!(room = %room, "room cold on this node");
}
