//! Real Redis for the cluster tests and the Redis setup of the scenarios: a
//! `redis-server` (or a three-primary Redis Cluster) on ephemeral ports,
//! killed on drop; a raw connection for the tests' own commands; and
//! in-process nodes configured with its URL, returned once ready.

use super::{TempDir, TestServer, eventually};
use kindred_server::config::Config;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The JWT secret every node of a test cluster shares, so a token signed by one is good on all.
pub const SECRET: &str = "cluster-test-secret-cluster-test-secret-0123";

/// A `redis-server` on an ephemeral port with its own directory; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    /// What makes this server what it is: fsync on every write, or a Redis Cluster member.
    mode: &'static [&'static str],
}

impl Redis {
    /// One server with append-only persistence, fsynced on every write.
    pub fn start() -> Redis {
        Self::start_as(&["--appendfsync", "always", "--daemonize", "no"])
    }

    /// A server that can become a member of a Redis Cluster ([`RedisCluster`]).
    fn start_cluster_member() -> Redis {
        Self::start_as(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
    }

    fn start_as(mode: &'static [&'static str]) -> Redis {
        crate::web_client::ensure_packages("redis-server", &["redis-server"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Redis { child: None, port, dir: TempDir::new(), mode };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's process id (to SIGSTOP it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// Start (again) on the same port and directory: what was fsynced to the
    /// append-only file comes back.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "yes"])
            .args(self.mode)
            .args(["--protected-mode", "no", "--dir"])
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        tcp.write_all(b"PING\r\n").is_ok() && tcp.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-primary Redis Cluster on ephemeral ports; killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<Redis> = (0..3).map(|_| Redis::start_cluster_member()).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            let mut cli = RedisCli::connect(node);
            while !cli.cmd(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// The seeds, as `--redis` takes them with `--redis-cluster`.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",")
    }
}

/// A raw Redis connection for the tests' own commands.
pub struct RedisCli(std::net::TcpStream);

impl RedisCli {
    pub fn connect(redis: &Redis) -> RedisCli {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        RedisCli(tcp)
    }

    /// Send one command; the raw reply (read until the server pauses).
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = self.0.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An in-process node of the cluster, ready (connected and repaired).
pub async fn node(redis: &Redis, name: &str) -> TestServer {
    node_on(redis.url(), false, name, Duration::from_secs(3)).await
}

/// A ready node on `urls` (a Redis Cluster's seeds with `cluster`) whose silent peers expire after `ttl`.
pub async fn node_on(urls: String, cluster: bool, name: &str, ttl: Duration) -> TestServer {
    node_with(urls, cluster, name, ttl, |_| {}).await
}

/// [`node_on`], with more configuration on top of the cluster's.
pub async fn node_with(urls: String, cluster: bool, name: &str, ttl: Duration, configure: impl FnOnce(&mut Config)) -> TestServer {
    let server = TestServer::with(|c| {
        c.redis = Some(urls);
        c.redis_cluster = cluster;
        c.node = name.into();
        c.jwt_secret = Some(SECRET.into());
        c.presence_ttl = ttl;
        c.limits.messages_per_10s = 10_000;
        configure(c);
    })
    .await;
    wait_ready(&server, true).await;
    server
}

/// Wait (up to 15 s) until the node says it is `ready`, or says it is not.
pub async fn wait_ready(server: &TestServer, ready: bool) {
    let failure = format!("node never became {}", if ready { "ready" } else { "not ready" });
    eventually(&failure, Duration::from_secs(15), || server.app.is_ready() == ready).await;
}
