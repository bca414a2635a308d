//! One scenario, both brokers. A [`Deployment`] is what a scenario connects
//! its clients to: "node A" and "node B". On [`Setup::Embedded`] both are
//! the same single server; on [`Setup::Redis`] they are two nodes sharing
//! one real `redis-server`, so clients put on different nodes talk only
//! through Redis. `both_brokers!(name)` turns `async fn name(d: &Deployment)`
//! into the tests `name::embedded` and `name::redis`.
//!
//! Cross-node delivery is asynchronous: clients made by a deployment's nodes
//! wait [`CROSS_NODE_WAIT`] for each frame, and conditions are polled
//! ([`Deployment::wait_on_duty`]), never slept on.

use super::redis_server::{Redis, SECRET, node_with};
use super::{TestServer, eventually};
use kindred_protocol::RoomId;
use kindred_server::config::Config;
use std::time::Duration;

/// How long a deployment's clients wait for a frame: generous, as an event
/// may go through Redis and another node on a loaded machine.
pub const CROSS_NODE_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// One server with the embedded broker.
    Embedded,
    /// Two nodes sharing one `redis-server`.
    Redis,
}

pub struct Deployment {
    /// One server, or nodes a and b (dropped before Redis).
    nodes: Vec<TestServer>,
    _redis: Option<Redis>,
}

/// What both setups share, so a scenario means the same on each: scenarios
/// send more than a member's rate limit allows (the nodes of the cluster
/// tests have the same limit and secret).
fn configure(c: &mut Config) {
    c.jwt_secret = Some(SECRET.into());
    c.limits.messages_per_10s = 10_000;
}

impl Deployment {
    pub async fn start(setup: Setup) -> Deployment {
        let (mut nodes, redis) = match setup {
            Setup::Embedded => (vec![TestServer::with(configure).await], None),
            Setup::Redis => {
                let redis = Redis::start();
                let mut nodes = Vec::new();
                for name in ["a", "b"] {
                    nodes.push(node_with(redis.url(), false, name, Duration::from_secs(3), configure).await);
                }
                (nodes, Some(redis))
            }
        };
        for node in &mut nodes {
            node.client_wait = CROSS_NODE_WAIT;
        }
        Deployment { nodes, _redis: redis }
    }

    /// Node A: where a scenario puts its facilitator.
    pub fn a(&self) -> &TestServer {
        &self.nodes[0]
    }

    /// Node B: where a scenario puts the member acted upon. The same server as
    /// [`a`](Self::a) on the embedded broker.
    pub fn b(&self) -> &TestServer {
        self.nodes.last().expect("a deployment has a node")
    }

    /// Wait until every node counts `n` staff connections on duty for `room`
    /// (a node learns of another node's staff on its next health tick).
    pub async fn wait_on_duty(&self, room: &str, n: u32) {
        let room = RoomId::from(room);
        for node in &self.nodes {
            let failure = format!("node {} never counted {n} on duty for {room}", node.app.config.node);
            eventually(&failure, CROSS_NODE_WAIT, || node.app.on_duty.count(&room) == n).await;
        }
    }
}

/// For each `async fn name(d: &Deployment)` named, a module `name` holding
/// the tests `embedded` and `redis`, each running the scenario on a fresh
/// deployment of that setup.
macro_rules! both_brokers {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            use $crate::common::deployment::{Deployment, Setup};

            #[tokio::test]
            async fn embedded() {
                super::$scenario(&Deployment::start(Setup::Embedded).await).await;
            }

            #[tokio::test]
            async fn redis() {
                super::$scenario(&Deployment::start(Setup::Redis).await).await;
            }
        }
    )+};
}
pub(crate) use both_brokers;
