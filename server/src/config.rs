//! Configuration: one struct that is both the command line and the
//! environment (`clap`), plus the optional TOML file for limits and the room
//! directory. Every limit is a field here with its default; nothing else in
//! the server hard-codes one.

use crate::rooms::{RoomDef, RoomsFile};
use anyhow::Context;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `kindred serve` flags; each also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port (printed on start).
    #[arg(long, env = "KINDRED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TOML file with `[limits]` and `[[rooms]]`; without it the built-in directory is used.
    #[arg(long, env = "KINDRED_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where state that outlives a restart is kept (the signing secret among it).
    #[arg(long, env = "KINDRED_DATA_DIR", default_value = "kindred-data")]
    pub data_dir: PathBuf,
    /// Serve the web client from this directory (`client-web/static`) instead of the copy built into the
    /// binary; its client library, `/sdk/kindred-client.js`, is read from the `sdk/` directory beside it.
    #[arg(long, env = "KINDRED_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Signing secret for session and facilitator tokens (at least 32 bytes). Without it a
    /// random secret is created in the data dir on first start. Every node of a cluster needs the same one.
    #[arg(long, env = "KINDRED_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// This node's name, shown in `welcome.server.node`.
    #[arg(long, env = "KINDRED_NODE", default_value = "node-1")]
    pub node: String,
    /// Messages a member may send per 10 s; overrides the config file (raise it for load runs).
    #[arg(long, env = "KINDRED_MESSAGES_PER_10S")]
    pub messages_per_10s: Option<u32>,
    /// Open connections allowed from one IP address; overrides the config file.
    #[arg(long, env = "KINDRED_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,
    /// Open connections allowed in all (0: from the open-file limit); overrides the config file.
    #[arg(long, env = "KINDRED_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client
    /// (comma-separated); overrides the config file.
    #[arg(long, env = "KINDRED_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpAddr>>,
    /// Issuer (`iss`) facilitator and admin tokens must carry.
    #[arg(long, env = "KINDRED_JWT_ISSUER", default_value = crate::auth::DEFAULT_ISSUER)]
    pub jwt_issuer: String,
    /// Audience (`aud`) facilitator and admin tokens must carry.
    #[arg(long, env = "KINDRED_JWT_AUDIENCE", default_value = crate::auth::DEFAULT_AUDIENCE)]
    pub jwt_audience: String,
    /// The one algorithm staff tokens may be signed with: HS256 (with the secret), RS256, ES256 or EdDSA.
    #[arg(long, env = "KINDRED_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: String,
    /// PEM public key of the identity provider, for RS256, ES256 or EdDSA.
    #[arg(long, env = "KINDRED_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Redis URL (`redis://host:6379/0`): run as one node of a cluster sharing rooms
    /// through Redis. Without it the node runs alone with no external service.
    #[arg(long, env = "KINDRED_REDIS_URL")]
    pub redis: Option<String>,
    /// `--redis` names Redis Cluster nodes (comma-separated seed URLs); rooms use sharded pub/sub.
    #[arg(long, env = "KINDRED_REDIS_CLUSTER")]
    pub redis_cluster: bool,
    /// Cluster: seconds after which a node that stopped heartbeating loses its members.
    #[arg(long, env = "KINDRED_PRESENCE_TTL_S", default_value_t = 30)]
    pub presence_ttl_s: u64,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "KINDRED_LOG_JSON")]
    pub log_json: bool,
}

/// Limits and timeouts. All have defaults; set any of them under `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest message text, in characters. Default 2000.
    pub max_text_chars: u32,
    /// Largest text frame read, in bytes; larger closes with 1009. Default 16384.
    pub max_frame_bytes: u32,
    /// Messages one member may send per 10 seconds. Default 10.
    pub messages_per_10s: u32,
    /// `rate_limited` errors in a row after which a flooding connection is closed with 4429. Default 20.
    pub flood_close_after: u32,
    /// Room actions other than messages — join, leave, raising or lowering
    /// a hand, reports — per connection per 10 s. Default 30. Each can make
    /// the server write to everyone in a room, so a flood of them is refused
    /// (`rate_limited`, then 4429 like a message flood).
    pub actions_per_10s: u32,
    /// Open connections from one client address, counted from the TCP
    /// accept, WebSockets and plain HTTP alike; an IPv6 address counts by its
    /// /64, as one host usually holds a whole /64. Held in memory only, never
    /// logged. Default 64.
    pub max_connections_per_ip: u32,
    /// Open connections in all. Past it a new connection is answered 503
    /// (`overloaded`) and closed, instead of the accept failing for want of a
    /// file and nobody getting an answer. Default 0: the open-file soft limit
    /// (`RLIMIT_NOFILE`) less a tenth of it, and at least 64, kept for the
    /// listener, data files, Redis, the webhook and refusals in progress.
    pub max_connections: u32,
    /// Shortest and longest handle, in characters. Defaults 2 and 32.
    pub min_handle_chars: u32,
    pub max_handle_chars: u32,
    /// Longest content-warning tag, in characters. Default 40.
    pub max_cw_chars: u32,
    /// Server ping interval, in seconds; a connection silent for twice this is closed. Default 25.
    pub heartbeat_s: u32,
    /// Seconds a client has to send a complete HTTP request head, counted from
    /// the connection's accept or from the first byte of a later request.
    /// Default 10. A connection that sends nothing, or trickles its headers
    /// (slowloris), would otherwise hold a file for as long as it likes.
    pub header_timeout_s: u32,
    /// Seconds an HTTP keep-alive connection (not a WebSocket) may wait for its
    /// next request after the last response before it is closed. Default 60.
    pub idle_timeout_s: u32,
    /// Seconds a new connection has to send `hello`. Default 10.
    pub hello_timeout_s: u32,
    /// Frames queued for one connection before it counts as too slow (closed with 4408). Default 512.
    pub mailbox_frames: usize,
    /// Seconds a write to one socket may take before the connection is dropped. Default 10.
    pub write_timeout_s: u32,
    /// Longest hold, in milliseconds, of a busy connection's next write so the
    /// frames arriving meanwhile share one `send`. The hold is 0 up to
    /// `write_coalesce_start_rate` deliveries per second on the node, then
    /// grows linearly with the rate, reaching this at
    /// `write_coalesce_full_rate`; 0 turns coalescing off. Default 60.
    pub write_coalesce_ms: u32,
    /// Deliveries per second of the node below which every frame is written at once. Default 50000.
    pub write_coalesce_start_rate: u64,
    /// Deliveries per second at which the hold reaches `write_coalesce_ms`. Default 300000.
    pub write_coalesce_full_rate: u64,
    /// Seconds graceful shutdown waits for connections to close. Default 10.
    pub drain_timeout_s: u32,
    /// History kept per room: at most this many messages… Default 500.
    pub history_max_messages: usize,
    /// …and none older than this, in minutes (rooms may set their own; 0 keeps none). Default 360.
    pub history_minutes: u32,
    /// Messages sent with `joined` when not resuming. Default 50.
    pub history_on_join: usize,
    /// One node: longest wait, in milliseconds, for more messages to share
    /// one commit (one fsync) of the history log, taken only while commits
    /// are already shared; 0 commits what is queued as soon as the last
    /// commit is done. Default 2.
    pub history_commit_ms: u32,
    /// Rooms one connection may be in at once. Default 10.
    pub max_rooms_per_connection: usize,
    /// WebSocket read buffer per connection, in bytes. Default 512: most
    /// connections sit idle and chat frames are small; a larger frame costs a
    /// few more reads. (Per idle connection: 4096 measured 12.7 KiB, 1024
    /// 9.6 KiB; with the mailbox change 1024 measured 8.2 KiB and 512 7.7 KiB.)
    pub read_buffer_bytes: usize,
    /// Bytes buffered for a socket before a flush is forced. Default 16384.
    pub write_buffer_bytes: usize,
    /// The quiet reactions members may give, from `support`, `hug` and
    /// `same` (unknown names are ignored); empty turns reactions off.
    /// Default all three.
    pub reactions: Vec<String>,
    /// Reactions given or taken back per member per room per 10 s, like
    /// typing: each makes the server write to everyone in the room. Over it:
    /// `rate_limited`. Default 10.
    pub reactions_per_10s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_chars: 2000,
            max_frame_bytes: 16 * 1024,
            messages_per_10s: 10,
            flood_close_after: 20,
            actions_per_10s: 30,
            max_connections_per_ip: 64,
            max_connections: 0,
            min_handle_chars: 2,
            max_handle_chars: 32,
            max_cw_chars: 40,
            heartbeat_s: 25,
            header_timeout_s: 10,
            idle_timeout_s: 60,
            hello_timeout_s: 10,
            mailbox_frames: 512,
            write_timeout_s: 10,
            write_coalesce_ms: 60,
            write_coalesce_start_rate: 50_000,
            write_coalesce_full_rate: 300_000,
            drain_timeout_s: 10,
            history_max_messages: 500,
            history_minutes: 360,
            history_on_join: 50,
            history_commit_ms: 2,
            max_rooms_per_connection: 10,
            read_buffer_bytes: 512,
            write_buffer_bytes: 16 * 1024,
            reactions: REACTIONS.iter().map(|r| (*r).to_owned()).collect(),
            reactions_per_10s: 10,
        }
    }
}

/// Every reaction the protocol knows, in the order clients show them.
pub const REACTIONS: [&str; 3] = ["support", "hug", "same"];

impl Limits {
    /// The reactions this server accepts: the configured ones the protocol knows, in its order.
    pub fn reactions(&self) -> Vec<&'static str> {
        REACTIONS.iter().copied().filter(|r| self.reactions.iter().any(|c| c == r)).collect()
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_s.max(1).into())
    }
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_s.max(1).into())
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s.max(1).into())
    }
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_secs(self.hello_timeout_s.max(1).into())
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_s.max(1).into())
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_s.into())
    }
    /// `max_connections`, or when 0 the default from the open-file limit.
    pub fn max_connections(&self) -> usize {
        match self.max_connections {
            0 => connections_for_file_limit(open_file_limit()),
            n => n as usize,
        }
    }
}

/// The open-file soft limit of this process (1024, a common default, where it
/// cannot be read).
fn open_file_limit() -> u64 {
    #[cfg(unix)]
    if let Ok((soft, _hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        return soft;
    }
    1024
}

/// Connections that fit under an open-file limit of `files`, keeping a tenth
/// of it (and at least 64) for everything else the process opens.
fn connections_for_file_limit(files: u64) -> usize {
    // RLIM_INFINITY and other huge limits: memory binds long before this.
    let files = files.min(1 << 24);
    let reserve = (files / 10).max(64);
    files.saturating_sub(reserve).max(1) as usize
}

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    safety: Option<crate::safety::SafetyConfig>,
    #[serde(default)]
    trusted_proxies: Option<Vec<IpAddr>>,
    #[serde(flatten)]
    rooms: RoomsFile,
}

/// Everything the server needs to run, resolved from flags, environment and file.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub web_dir: Option<PathBuf>,
    pub jwt_secret: Option<String>,
    pub node: String,
    pub limits: Limits,
    pub rooms: Vec<RoomDef>,
    /// Issuer and audience expected in facilitator/admin tokens.
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_algorithm: jsonwebtoken::Algorithm,
    pub jwt_public_key: Option<PathBuf>,
    pub safety: crate::safety::SafetyConfig,
    /// Cluster mode: the Redis URL (None: one node, nothing external)…
    pub redis: Option<String>,
    /// …or the seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
    /// Cluster: how long a silent node's members stay listed.
    pub presence_ttl: Duration,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a connection from
    /// one of them is counted by the client it names, not by the proxy.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Config {
    /// The embedded default: built-in rooms, default limits.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            web_dir: None,
            jwt_secret: None,
            node: "node-1".into(),
            limits: Limits::default(),
            rooms: RoomsFile::builtin().into_defs().expect("the built-in room directory is valid"),
            jwt_issuer: crate::auth::DEFAULT_ISSUER.into(),
            jwt_audience: crate::auth::DEFAULT_AUDIENCE.into(),
            jwt_algorithm: jsonwebtoken::Algorithm::HS256,
            jwt_public_key: None,
            safety: crate::safety::SafetyConfig::default(),
            redis: None,
            redis_cluster: false,
            presence_ttl: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }

    /// Whether `peer` is a configured reverse proxy (an IPv4-mapped address
    /// matches its IPv4 form).
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|p| p.to_canonical() == peer)
    }

    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Config> {
        let mut config = Config::new(&args.data_dir);
        if let Some(path) = &args.config {
            let file = load_file(path)?;
            if let Some(limits) = file.limits {
                config.limits = limits;
            }
            if let Some(safety) = file.safety {
                config.safety = safety;
            }
            if let Some(proxies) = file.trusted_proxies {
                config.trusted_proxies = proxies;
            }
            if !file.rooms.rooms.is_empty() {
                config.rooms = file.rooms.into_defs().with_context(|| format!("rooms in {}", path.display()))?;
            }
        }
        if let Some(n) = args.messages_per_10s {
            config.limits.messages_per_10s = n;
        }
        if let Some(n) = args.max_connections_per_ip {
            config.limits.max_connections_per_ip = n;
        }
        if let Some(n) = args.max_connections {
            config.limits.max_connections = n;
        }
        if let Some(proxies) = &args.trusted_proxies {
            config.trusted_proxies = proxies.clone();
        }
        config.web_dir = args.web_dir.clone();
        config.jwt_secret = args.jwt_secret.clone();
        config.node = args.node.clone();
        config.redis = args.redis.clone().filter(|u| !u.is_empty());
        config.redis_cluster = args.redis_cluster;
        config.presence_ttl = Duration::from_secs(args.presence_ttl_s.max(1));
        config.jwt_issuer = args.jwt_issuer.clone();
        config.jwt_audience = args.jwt_audience.clone();
        config.jwt_algorithm = args.jwt_algorithm.parse().map_err(|_| anyhow::anyhow!("unknown JWT algorithm {:?}", args.jwt_algorithm))?;
        anyhow::ensure!(
            config.jwt_algorithm == jsonwebtoken::Algorithm::HS256 || args.jwt_public_key.is_some(),
            "--jwt-algorithm {} needs --jwt-public-key",
            args.jwt_algorithm
        );
        config.jwt_public_key = args.jwt_public_key.clone();
        Ok(config)
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_cap_leaves_room_under_the_file_limit() {
        assert_eq!(connections_for_file_limit(256), 192);
        assert_eq!(connections_for_file_limit(1024), 922);
        assert_eq!(connections_for_file_limit(65_536), 58_983);
        assert_eq!(connections_for_file_limit(10), 1);
        assert_eq!(connections_for_file_limit(u64::MAX), 15_099_495);
        let limits = Limits { max_connections: 7, ..Limits::default() };
        assert_eq!(limits.max_connections(), 7);
        assert!(Limits::default().max_connections() < open_file_limit().max(65) as usize);
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_the_flag() {
        let file: FileConfig = toml::from_str("trusted_proxies = [\"10.0.0.2\", \"::1\"]\n[limits]\nmax_connections = 500\n").unwrap();
        assert_eq!(file.trusted_proxies.unwrap(), ["10.0.0.2".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(file.limits.unwrap().max_connections, 500);
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["kindred", "--trusted-proxies", "10.0.0.2,::ffff:10.0.0.3", "--max-connections", "9"]).unwrap();
        let config = Config::from_args(&cli.serve).unwrap();
        assert_eq!(config.limits.max_connections, 9);
        assert!(config.is_trusted_proxy("10.0.0.2".parse().unwrap()));
        assert!(config.is_trusted_proxy("10.0.0.3".parse().unwrap()), "IPv4-mapped matches its IPv4 form");
        assert!(config.is_trusted_proxy("::ffff:10.0.0.2".parse().unwrap()));
        assert!(!config.is_trusted_proxy("10.0.0.4".parse().unwrap()));
    }
}
