//! What outlives a restart. In the embedded default: files in the data dir,
//! each replaced by write-to-temporary, fsync and rename, so a crash
//! mid-write leaves the old version or the new one, never half of each. In a
//! cluster: [`SharedDoc`], a versioned JSON document in Redis.

use std::io::Write;
use std::path::Path;

/// Replace `path` with `bytes` atomically; `private` makes it readable by the owner only.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

/// Replace the document only if nobody changed it since it was read, and
/// tell every node. KEYS: the document. ARGV: version read, new document,
/// channel, prefix for the published copy, PUBLISH or SPUBLISH.
const CAS_SCRIPT: &str = include_str!("lua/cas.lua");

/// Where cluster nodes publish changes to shared documents (moderation,
/// rooms). The documents' keys share its hash tag, so on a Redis Cluster a
/// script can change one and publish on it (sharded pub/sub).
pub(crate) const CONTROL_CHANNEL: &str = "kindred:{control}:ch";

/// A connection to Redis: one server (or a primary behind a stable address),
/// or a Redis Cluster. Commands go through [`redis::aio::ConnectionLike`];
/// pub/sub through [`RedisConn::subscribe`], which is sharded on a cluster.
/// Cheap to clone (one is cloned per call).
#[derive(Clone)]
pub enum RedisConn {
    Single(redis::aio::ConnectionManager),
    Cluster(std::sync::Arc<ClusterLink>),
}

/// A cluster client and its connection, made on first use (a cluster client
/// has no lazy constructor).
pub struct ClusterLink {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

impl RedisConn {
    pub fn cluster_of(client: redis::cluster::ClusterClient) -> RedisConn {
        RedisConn::Cluster(std::sync::Arc::new(ClusterLink { client, conn: tokio::sync::OnceCell::new() }))
    }

    async fn cluster(link: &ClusterLink) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
        link.conn.get_or_try_init(|| link.client.get_async_connection()).await.cloned()
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    pub fn publish_command(&self) -> &'static str {
        match self {
            RedisConn::Single(_) => "PUBLISH",
            RedisConn::Cluster(..) => "SPUBLISH",
        }
    }

    /// Subscribe to a channel (`SSUBSCRIBE` on a cluster); resubscribed after a reconnect.
    pub async fn subscribe(&self, channel: &str) -> redis::RedisResult<()> {
        match self {
            RedisConn::Single(c) => c.clone().subscribe(channel).await,
            RedisConn::Cluster(link) => Self::cluster(link).await?.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&self, channel: &str) -> redis::RedisResult<()> {
        match self {
            RedisConn::Single(c) => c.clone().unsubscribe(channel).await,
            RedisConn::Cluster(link) => Self::cluster(link).await?.sunsubscribe(channel).await,
        }
    }
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(link) => Box::pin(async move { Self::cluster(link).await?.req_packed_command(cmd).await }),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a redis::Pipeline, offset: usize, count: usize) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(link) => Box::pin(async move { Self::cluster(link).await?.req_packed_commands(pipeline, offset, count).await }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(..) => 0,
        }
    }
}

/// A document as stored in Redis; `v` first, so the CAS script can read it.
/// `g` names the document's lineage: a document made afresh (Redis lost the
/// old one) gets a new one, so nodes holding a higher `v` of the old lineage
/// still take it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Versioned<D> {
    pub v: u64,
    #[serde(default)]
    pub g: String,
    pub doc: D,
}

impl<D> Versioned<D> {
    /// Whether this document replaces one at version `v` of lineage `g`.
    pub fn supersedes(&self, v: u64, g: &str) -> bool {
        self.g != g || self.v > v
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the shared store is unavailable")]
pub struct Unavailable;

impl From<redis::RedisError> for Unavailable {
    fn from(e: redis::RedisError) -> Unavailable {
        tracing::warn!(error = %e, "shared store: Redis error");
        Unavailable
    }
}

/// A Redis call that gives up after 2 s instead of waiting for a reconnect.
pub(crate) async fn bounded<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, Unavailable> {
    match tokio::time::timeout(std::time::Duration::from_secs(2), f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Unavailable),
    }
}

/// A small JSON document every node shares (cluster mode): read, changed by
/// compare-and-set (a change made on two nodes at once is retried, never
/// lost), and published on [`CONTROL_CHANNEL`] behind a one-letter prefix so
/// every node can apply it in order.
#[derive(Clone)]
pub struct SharedDoc {
    conn: RedisConn,
    key: &'static str,
    prefix: &'static str,
}

impl SharedDoc {
    pub fn new(conn: RedisConn, key: &'static str, prefix: &'static str) -> SharedDoc {
        SharedDoc { conn, key, prefix }
    }

    /// The document (version 0 of a new lineage, holding the default, when there is none).
    pub async fn fetch<D: serde::de::DeserializeOwned + Default>(&self) -> Result<Versioned<D>, Unavailable> {
        let text: Option<String> = bounded(redis::cmd("GET").arg(self.key).query_async(&mut self.conn.clone())).await?;
        match text {
            None => Ok(Versioned { v: 0, g: format!("g{:x}", rand::random::<u64>()), doc: D::default() }),
            Some(text) => serde_json::from_str::<Versioned<D>>(&text).map_err(|e| {
                tracing::error!(key = self.key, error = %e, "a shared document in Redis is not valid");
                Unavailable
            }),
        }
    }

    /// Apply `f` to the current document and store it; returns `f`'s result
    /// and the stored text (a [`Versioned`]).
    pub async fn update<D, T>(&self, f: impl Fn(&mut D) -> T) -> Result<(T, String), Unavailable>
    where
        D: serde::Serialize + serde::de::DeserializeOwned + Default,
    {
        let script = redis::Script::new(CAS_SCRIPT);
        for _ in 0..20 {
            let Versioned { v, g, mut doc } = self.fetch::<D>().await?;
            let out = f(&mut doc);
            let text = serde_json::to_string(&Versioned { v: v + 1, g, doc }).expect("documents serialize");
            let mut invocation = script.key(self.key);
            invocation.arg(v).arg(&text).arg(CONTROL_CHANNEL).arg(self.prefix).arg(self.conn.publish_command());
            let done: i64 = bounded(invocation.invoke_async(&mut self.conn.clone())).await?;
            if done == 1 {
                return Ok((out, text));
            }
        }
        tracing::error!(key = self.key, "a shared document change gave up after 20 conflicting writes");
        Err(Unavailable)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("kindred-store-{}", rand::random::<u64>()));
        let path = dir.join("x.json");
        super::write_atomic(&path, b"one", false).unwrap();
        super::write_atomic(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
