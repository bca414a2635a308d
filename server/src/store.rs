//! What outlives a restart. In the embedded default: files in the data dir,
//! each replaced by write-to-temporary, fsync and rename, so a crash
//! mid-write leaves the old version or the new one, never half of each. In a
//! cluster: a versioned JSON document in Redis, changed by compare-and-set.
//! The moderation state, the API's rooms and the audit log take one of two
//! shapes, [`Doc`] (a document changed whole) and [`Log`] (lines appended),
//! which work the same in both [`Place`]s; the place is chosen once, when
//! the node starts. (Message history is the broker's.)

use crate::broker::redis::codec;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
pub(crate) enum RedisConn {
    Single(redis::aio::ConnectionManager),
    Cluster(std::sync::Arc<ClusterLink>),
}

/// A cluster client and its connection, made on first use (a cluster client
/// has no lazy constructor).
pub(crate) struct ClusterLink {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

impl RedisConn {
    pub(crate) fn cluster_of(client: redis::cluster::ClusterClient) -> RedisConn {
        RedisConn::Cluster(std::sync::Arc::new(ClusterLink { client, conn: tokio::sync::OnceCell::new() }))
    }

    async fn cluster(link: &ClusterLink) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
        link.conn.get_or_try_init(|| link.client.get_async_connection()).await.cloned()
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    pub(crate) fn publish_command(&self) -> &'static str {
        match self {
            RedisConn::Single(_) => "PUBLISH",
            RedisConn::Cluster(..) => "SPUBLISH",
        }
    }

    /// Subscribe to a channel (`SSUBSCRIBE` on a cluster); resubscribed after a reconnect.
    pub(crate) async fn subscribe(&self, channel: &str) -> redis::RedisResult<()> {
        match self {
            RedisConn::Single(c) => c.clone().subscribe(channel).await,
            RedisConn::Cluster(link) => Self::cluster(link).await?.ssubscribe(channel).await,
        }
    }

    pub(crate) async fn unsubscribe(&self, channel: &str) -> redis::RedisResult<()> {
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Versioned<D> {
    pub(crate) v: u64,
    #[serde(default)]
    pub(crate) g: String,
    pub(crate) doc: D,
}

impl<D> Versioned<D> {
    /// Whether this document replaces one at version `v` of lineage `g`.
    pub(crate) fn supersedes(&self, v: u64, g: &str) -> bool {
        self.g != g || self.v > v
    }
}

impl<D: serde::de::DeserializeOwned + Default> Versioned<D> {
    /// A document as Redis holds it; none yet is version 0 of a new lineage, holding the default.
    pub(crate) fn read(text: Option<&str>) -> serde_json::Result<Versioned<D>> {
        match text {
            None => Ok(Versioned { v: 0, g: format!("g{:x}", rand::random::<u64>()), doc: D::default() }),
            Some(text) => serde_json::from_str(text),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the shared store is unavailable")]
pub(crate) struct Unavailable;

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
struct SharedDoc {
    conn: RedisConn,
    key: &'static str,
    prefix: &'static str,
    /// One compare-and-set at a time from this node: its own changes never
    /// race each other (a burst of reports would otherwise spend the retries).
    changing: tokio::sync::Mutex<()>,
}

impl SharedDoc {
    /// The document (version 0 of a new lineage, holding the default, when there is none).
    async fn fetch<D: serde::de::DeserializeOwned + Default>(&self) -> Result<Versioned<D>, Unavailable> {
        let text: Option<String> = bounded(redis::cmd("GET").arg(self.key).query_async(&mut self.conn.clone())).await?;
        Versioned::read(text.as_deref()).map_err(|e| {
            tracing::error!(key = self.key, error = %e, "a shared document in Redis is not valid");
            Unavailable
        })
    }

    /// Apply `f` to the current document and store it; returns `f`'s result
    /// and the version stored.
    async fn update<D, T>(&self, f: impl Fn(&mut D) -> T) -> Result<(T, Versioned<D>), Unavailable>
    where
        D: serde::Serialize + serde::de::DeserializeOwned + Default,
    {
        let _one = self.changing.lock().await;
        let script = redis::Script::new(CAS_SCRIPT);
        for _ in 0..20 {
            let Versioned { v, g, mut doc } = self.fetch::<D>().await?;
            let out = f(&mut doc);
            let made = Versioned { v: v + 1, g, doc };
            let text = serde_json::to_string(&made).expect("documents serialize");
            let mut invocation = script.key(self.key);
            invocation.arg(v).arg(&text).arg(CONTROL_CHANNEL).arg(self.prefix).arg(self.conn.publish_command());
            let done: i64 = bounded(invocation.invoke_async(&mut self.conn.clone())).await?;
            if done == 1 {
                return Ok((out, made));
            }
        }
        tracing::error!(key = self.key, "a shared document change gave up after 20 conflicting writes");
        Err(Unavailable)
    }
}

/// The documents a node keeps beside its rooms' histories: one file each in
/// the data dir, or in a cluster one Redis key each, which every node reads
/// and changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Document {
    /// Bans, mutes, reports, crisis alerts and forgotten accounts.
    Moderation,
    /// Rooms made, changed or closed through the admin API.
    Rooms,
}

impl Document {
    /// Its Redis key. Both share the control channel's hash tag, so on a
    /// Redis Cluster the compare-and-set script can publish on it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Document::Moderation => "kindred:{control}:moderation",
            Document::Rooms => "kindred:{control}:rooms",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Document::Moderation => "moderation.json",
            Document::Rooms => "rooms.json",
        }
    }

    /// Whether only the server's user may read the file.
    fn private(self) -> bool {
        self == Document::Moderation
    }
}

/// Where what outlives a restart is kept, chosen once when the node starts.
#[derive(Clone)]
pub(crate) enum Place {
    /// The data dir (the embedded default, one node).
    Files(PathBuf),
    /// Redis, shared by every node of a cluster.
    Redis(RedisConn),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the change could not be saved: {0}")]
    Io(#[from] std::io::Error),
    #[error("the change could not be saved: the shared store is unavailable")]
    Unavailable,
}

impl StoreError {
    pub fn code(&self) -> kindred_protocol::ErrorCode {
        match self {
            StoreError::Io(_) => kindred_protocol::ErrorCode::Internal,
            StoreError::Unavailable => kindred_protocol::ErrorCode::Unavailable,
        }
    }
}

impl From<Unavailable> for StoreError {
    fn from(_: Unavailable) -> StoreError {
        StoreError::Unavailable
    }
}

/// A [`Document`] and the way it is changed, the same in both places: a
/// change returns once it is stored, with the version it made.
pub(crate) struct Doc<D> {
    place: DocPlace<D>,
}

enum DocPlace<D> {
    File(FileDoc<D>),
    Shared(SharedDoc),
}

/// One node: the document is held in memory and written whole, by group
/// commit: a change is made in memory at once, then the newest version is
/// written, so one write covers every change made while the previous one
/// was on disk (a flood of reports costs a write per fsync, not one per
/// report) and versions are never saved out of order.
struct FileDoc<D> {
    path: PathBuf,
    /// Readable by the server's user only.
    private: bool,
    current: parking_lot::Mutex<Versioned<D>>,
    /// The version on disk.
    saved: std::sync::atomic::AtomicU64,
    /// One write at a time.
    writing: tokio::sync::Mutex<()>,
    /// Writes made, for the tests of the group commit.
    writes: std::sync::atomic::AtomicU64,
}

impl<D> Doc<D>
where
    D: serde::Serialize + serde::de::DeserializeOwned + Default + Clone + Send + 'static,
{
    /// The document in `place`: a file is read now (an invalid one is an
    /// error naming it); Redis is read when the broker first repairs.
    pub(crate) fn open(place: &Place, kind: Document) -> anyhow::Result<Doc<D>> {
        let place = match place {
            Place::Files(dir) => {
                let path = dir.join(kind.file());
                let doc = match std::fs::read(&path) {
                    Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display()))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => D::default(),
                    Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
                };
                DocPlace::File(FileDoc {
                    path,
                    private: kind.private(),
                    current: parking_lot::Mutex::new(Versioned { v: 0, g: String::new(), doc }),
                    saved: Default::default(),
                    writing: Default::default(),
                    writes: Default::default(),
                })
            }
            Place::Redis(conn) => {
                DocPlace::Shared(SharedDoc { conn: conn.clone(), key: kind.key(), prefix: codec::prefix_of(kind), changing: Default::default() })
            }
        };
        Ok(Doc { place })
    }

    /// What the file held at start (one node); `None` in a cluster, where
    /// the broker reads and hands over the shared version.
    pub(crate) fn local(&self) -> Option<Versioned<D>> {
        match &self.place {
            DocPlace::File(file) => Some(file.current.lock().clone()),
            DocPlace::Shared(_) => None,
        }
    }

    /// Apply `f` and store the result; `f`'s answer and the version stored.
    /// In a cluster `f` may run more than once (a change made on two nodes
    /// at once is retried, never lost) and every node hears the new version.
    pub(crate) async fn update<T>(&self, f: impl Fn(&mut D) -> T) -> Result<(T, Versioned<D>), StoreError> {
        use std::sync::atomic::Ordering;
        match &self.place {
            DocPlace::Shared(shared) => Ok(shared.update(f).await?),
            DocPlace::File(file) => {
                // The lock is held only to change the document, never across a write.
                let (out, made) = {
                    let mut current = file.current.lock();
                    let out = f(&mut current.doc);
                    current.v += 1;
                    (out, current.clone())
                };
                let _one = file.writing.lock().await;
                if file.saved.load(Ordering::SeqCst) < made.v {
                    let (upto, bytes) = {
                        let current = file.current.lock();
                        (current.v, serde_json::to_vec_pretty(&current.doc).expect("documents serialize"))
                    };
                    let (path, private) = (file.path.clone(), file.private);
                    // Off the runtime's threads: an fsync can take milliseconds.
                    tokio::task::spawn_blocking(move || write_atomic(&path, &bytes, private)).await.map_err(std::io::Error::other)??;
                    file.saved.store(upto, Ordering::SeqCst);
                    file.writes.fetch_add(1, Ordering::Relaxed);
                }
                Ok((out, made))
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn writes(&self) -> u64 {
        match &self.place {
            DocPlace::File(file) => file.writes.load(std::sync::atomic::Ordering::Relaxed),
            DocPlace::Shared(_) => 0,
        }
    }
}

/// An append-only log of JSON lines (the audit log): `<name>.jsonl` in the
/// data dir, or a Redis stream every node appends to.
pub(crate) struct Log {
    place: LogPlace,
}

enum LogPlace {
    File(FileLog),
    Redis { conn: RedisConn, key: &'static str },
}

/// One node: lines queued while an fsync runs share the next one.
struct FileLog {
    path: PathBuf,
    /// Held by whoever reads or appends to the file.
    file: Arc<parking_lot::Mutex<()>>,
    /// Lines not yet on disk, and how many were queued and saved.
    pending: parking_lot::Mutex<Vec<u8>>,
    made: std::sync::atomic::AtomicU64,
    saved: std::sync::atomic::AtomicU64,
    writing: tokio::sync::Mutex<()>,
}

impl Log {
    /// The audit log in `place`.
    pub(crate) fn audit(place: &Place) -> Log {
        let place = match place {
            Place::Files(dir) => LogPlace::File(FileLog {
                path: dir.join("audit.jsonl"),
                file: Arc::default(),
                pending: Default::default(),
                made: Default::default(),
                saved: Default::default(),
                writing: Default::default(),
            }),
            Place::Redis(conn) => LogPlace::Redis { conn: conn.clone(), key: "kindred:audit" },
        };
        Log { place }
    }

    /// Append one line (JSON, no newline) and make it durable.
    pub(crate) async fn append(&self, line: Vec<u8>) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let log = match &self.place {
            LogPlace::Redis { conn, key } => {
                let cmd = redis::cmd("XADD").arg(*key).arg("*").arg("j").arg(line).clone();
                return Ok(bounded(cmd.exec_async(&mut conn.clone())).await?);
            }
            LogPlace::File(log) => log,
        };
        let mine = {
            let mut pending = log.pending.lock();
            pending.extend_from_slice(&line);
            pending.push(b'\n');
            log.made.fetch_add(1, Ordering::SeqCst) + 1
        };
        let _one = log.writing.lock().await;
        if log.saved.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        let (upto, lines) = {
            let mut pending = log.pending.lock();
            (log.made.load(Ordering::SeqCst), std::mem::take(&mut *pending))
        };
        let (path, lock, batch) = (log.path.clone(), log.file.clone(), lines.clone());
        let write = move || -> std::io::Result<()> {
            let _guard = lock.lock();
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            file.write_all(&batch)?;
            file.sync_data()
        };
        match tokio::task::spawn_blocking(write).await.map_err(std::io::Error::other) {
            Ok(Ok(())) => {
                log.saved.store(upto, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(e)) | Err(e) => {
                // Put the batch back in front, for the next writer to try again.
                let mut pending = log.pending.lock();
                let newer = std::mem::replace(&mut *pending, lines);
                pending.extend_from_slice(&newer);
                Err(e.into())
            }
        }
    }

    /// The newest `limit` lines, oldest first.
    pub(crate) async fn tail(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        match &self.place {
            LogPlace::File(log) => {
                let _guard = log.file.lock();
                let Ok(text) = std::fs::read_to_string(&log.path) else { return Ok(Vec::new()) };
                let lines: Vec<&str> = text.lines().collect();
                Ok(lines[lines.len().saturating_sub(limit)..].iter().map(|l| (*l).to_owned()).collect())
            }
            LogPlace::Redis { conn, key } => {
                let cmd = redis::cmd("XREVRANGE").arg(*key).arg("+").arg("-").arg("COUNT").arg(limit).clone();
                let rows: Vec<(String, std::collections::HashMap<String, String>)> = bounded(cmd.query_async(&mut conn.clone())).await?;
                Ok(rows.into_iter().rev().filter_map(|(_, mut f)| f.remove("j")).collect())
            }
        }
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
