//! Kindred: a chat server for online peer-support groups.
//!
//! Crate map, in the direction a message flows:
//! - [`listen`]: accepting connections, the HTTP header and idle timeouts;
//!   [`http`]: routes (`/ws`, `/healthz`, `/readyz`, the web client) and refusals before upgrade;
//!   [`api`]: the admin HTTP API under `/api`.
//! - [`session`]: one connection: `hello`, decode, validate, authorize, rate-limit, write batches.
//! - [`hub`]: live rooms on this node: membership, the ordered log, encode-once fan-out.
//! - [`broker`]: orders, stores and carries messages between nodes (`local`: in-process;
//!   `redis`: a cluster of nodes sharing rooms through Redis).
//! - [`rooms`]: the room directory and schedules; [`auth`]: tokens and member ids;
//!   [`handles`]: display names; [`ratelimit`]; [`store`]: files that outlive a restart;
//!   [`config`]: flags, environment and the config file; [`web`]: the embedded client.

#![warn(unreachable_pub)]

pub(crate) mod alerts;
pub(crate) mod api;
pub mod auth;
pub(crate) mod broker;
pub(crate) mod coalesce;
pub mod config;
pub mod escalation;
pub(crate) mod frame;
pub mod handles;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod listen;
pub(crate) mod mailbox;
pub(crate) mod metrics;
pub(crate) mod moderation;
pub(crate) mod node;
pub(crate) mod ratelimit;
pub(crate) mod refusal;
pub mod rooms;
pub mod safety;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod texts;
pub(crate) mod web;
pub(crate) mod wire;

use auth::Auth;
use broker::Broker;
use config::Config;
use dashmap::DashMap;
use hub::Hub;
use kindred_protocol::{AccountId, RoomId};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State shared by every connection of this node.
pub struct App {
    pub config: Config,
    pub hub: Hub,
    pub(crate) broker: Arc<dyn Broker>,
    pub auth: Auth,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Every WebSocket session, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Open connections per client address (memory only, for the connection limit),
    /// keyed by [`http::address_key`].
    pub per_ip: DashMap<IpAddr, u32>,
    /// Open connections in all, against `max_connections`.
    pub connections: listen::Connections,
    /// Bans, mutes, reports, crisis alerts, forgotten accounts and the audit log.
    pub moderation: Arc<moderation::ModerationStore>,
    /// This node's staff connections, for crisis alerts.
    pub on_duty: Arc<alerts::OnDuty>,
    /// The on-call webhook for new crisis alerts.
    pub escalation: escalation::Escalation,
    pub safety: safety::Safety,
    pub metrics: Arc<metrics::Metrics>,
    /// How long busy connections hold their next write, from the node's delivery rate.
    pub coalescing: coalesce::Coalescing,
    /// Open connections per account, so a service ban closes them all.
    pub(crate) accounts: hub::Accounts,
    /// Rooms made, changed or closed through the admin API (in a cluster: shared by every node).
    pub(crate) saved_rooms: store::Doc<api::SavedRooms>,
    /// The rules version each account accepted per room, so a reconnect need not ask again.
    accepted_rules: DashMap<(AccountId, RoomId), u32>,
}

impl App {
    /// Whether the node accepts messages now (`/readyz`: the broker is ready).
    pub fn is_ready(&self) -> bool {
        self.broker.is_ready()
    }

    pub fn new(config: Config) -> anyhow::Result<Arc<App>> {
        let secret = Auth::load_secret(config.jwt_secret.as_deref(), &config.data_dir)?;
        let mut auth = Auth::new(&secret, &config.jwt_issuer, &config.jwt_audience);
        if let Some(path) = &config.jwt_public_key {
            let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            auth = auth.with_public_key(config.jwt_algorithm, &pem)?;
        }
        let safety =
            safety::Safety::new(config.safety.clone()).map_err(|e| anyhow::anyhow!("the [safety] crisis terms or blocklist cannot be compiled: {e}"))?;
        let limits = Arc::new(config.limits.clone());
        let metrics = Arc::new(metrics::Metrics::default());
        let on_duty = Arc::new(alerts::OnDuty::new(&config.node, metrics.clone()));
        let escalation = escalation::Escalation::new(config.safety.escalation.clone(), metrics.clone())?;
        let shutdown = CancellationToken::new();
        let accounts: hub::Accounts = Arc::default();
        // The one place the node chooses between one node and a cluster: where
        // what outlives a restart is kept, the broker, and whether the hub's
        // changes travel to other nodes.
        let redis = config.redis.as_deref().map(|url| broker::redis::Connections::open(url, config.redis_cluster)).transpose()?;
        let place = match &redis {
            None => store::Place::Files(config.data_dir.clone()),
            Some(conns) => store::Place::Redis(conns.publisher.clone()),
        };
        let moderation = Arc::new(moderation::ModerationStore::new(&place)?);
        let saved_rooms: store::Doc<api::SavedRooms> = store::Doc::open(&place, store::Document::Rooms)?;
        let mut rooms = config.rooms.clone();
        if let Some(saved) = saved_rooms.local() {
            // In a cluster the shared rooms document is applied once Redis answers.
            saved.doc.apply(&mut rooms)?;
        }
        let (hub, broker): (Hub, Arc<dyn Broker>) = match redis {
            None => {
                let options =
                    broker::disk::Options { commit_window: std::time::Duration::from_millis(config.limits.history_commit_ms.into()), ..Default::default() };
                let disk = Arc::new(broker::disk::Disk::open(&config.data_dir, options, metrics.clone())?);
                let erasing = disk.clone();
                let link = hub::Replicator::local_erasing(move |room, erasure| erasing.erase(room, erasure));
                let hub = Hub::new(rooms, limits, metrics.clone(), link);
                let broker = Arc::new(broker::local::LocalBroker::new(Arc::new(hub.clone()), Some(disk)));
                (hub, broker)
            }
            Some(conns) => {
                // Room changes queue here for Redis; bounded, so a slow Redis cannot grow memory.
                let (link, link_rx) = tokio::sync::mpsc::channel(65_536);
                let hub = Hub::new(rooms, limits.clone(), metrics.clone(), hub::Replicator::cluster(link));
                let node = node::Node {
                    hub: hub.clone(),
                    moderation: moderation.clone(),
                    accounts: accounts.clone(),
                    on_duty: on_duty.clone(),
                    base_rooms: config.rooms.clone(),
                };
                let parts = broker::redis::Parts {
                    node: config.node.clone(),
                    handler: Arc::new(hub.clone()),
                    node_handler: Arc::new(node),
                    limits,
                    metrics: metrics.clone(),
                    presence_ttl: config.presence_ttl,
                    link: link_rx,
                    shutdown: shutdown.clone(),
                };
                (hub, Arc::new(broker::redis::RedisBroker::start(conns, parts)))
            }
        };
        moderation.set_on_duty(on_duty.clone());
        let coalescing = coalesce::Coalescing::new(&config.limits);
        let connections = listen::Connections::new(config.limits.max_connections());
        tracing::info!(max_connections = connections.max(), "connection cap");
        Ok(Arc::new(App {
            config,
            hub,
            broker,
            auth,
            shutdown,
            tracker: TaskTracker::new(),
            per_ip: DashMap::new(),
            connections,
            moderation,
            on_duty,
            escalation,
            safety,
            coalescing,
            metrics,
            accounts,
            saved_rooms,
            accepted_rules: DashMap::new(),
        }))
    }

    /// The newest rules version this account accepted in this room, `offered` included.
    fn remember_rules(&self, account: &AccountId, room: &RoomId, offered: Option<u32>) -> Option<u32> {
        let key = (account.clone(), room.clone());
        match offered {
            Some(v) => {
                let mut entry = self.accepted_rules.entry(key).or_insert(v);
                *entry = (*entry).max(v);
                Some(*entry)
            }
            None => self.accepted_rules.get(&key).map(|v| *v),
        }
    }
}

/// Libraries whose debug and trace output can hold what the server must
/// never log: frame payloads (message text, tokens), headers, addresses,
/// Redis commands with their arguments.
const QUIET_TARGETS: &[&str] =
    &["tungstenite", "tokio_tungstenite", "hyper", "hyper_util", "h2", "axum", "tower_http", "reqwest", "rustls", "redis", "mio", "want"];

/// The log filter for `spec` (`RUST_LOG` syntax; `info` when it does not
/// parse), with the libraries above held at `info` whatever it says: the
/// promise that logs hold no message text, tokens or addresses holds at
/// every level.
pub fn log_filter(spec: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_new(spec).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for target in QUIET_TARGETS {
        // Our own constant strings: always a valid directive.
        filter = filter.add_directive(format!("{target}=info").parse().expect("a valid directive"));
    }
    filter
}

/// Serve on an already-bound listener until `shutdown` is cancelled, then
/// tell every connection to reconnect elsewhere (1012) and wait for them, up
/// to the configured drain timeout.
pub async fn run(listener: TcpListener, app: Arc<App>) -> anyhow::Result<()> {
    let router = http::router(app.clone());
    let follower = app.clone();
    tokio::spawn(async move { follower.coalescing.follow(&follower.metrics, follower.shutdown.clone()).await });
    listen::serve(listener, app.clone(), router).await;
    // Upgraded connections are no longer HTTP's: the tracker waits for them.
    app.tracker.close();
    let drained = tokio::time::timeout(app.config.limits.drain_timeout(), app.tracker.wait()).await;
    if drained.is_err() {
        tracing::warn!(left = app.tracker.len(), "shutdown: connections still open after the drain timeout");
    }
    app.broker.close().await;
    Ok(())
}
