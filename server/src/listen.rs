//! Accepting TCP connections and serving HTTP/1.1 on them, with the limits
//! `axum::serve` does not have:
//! - at accept, a connection past `max_connections` is answered 503, and one
//!   from an address that already has `max_connections_per_ip` is answered
//!   429, before anything else is read: silent connections count too;
//! - a connection that sends no complete request head within
//!   `header_timeout_s` is closed, and so is a keep-alive connection idle for
//!   `idle_timeout_s`. A connection upgraded to a WebSocket leaves both
//!   behind (the session has its own heartbeat) but keeps counting against
//!   the caps until its socket closes.

use crate::App;
use crate::http::{IpGuard, admit_ip, refuse};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kindred_protocol::ErrorCode;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Serve `router` on `listener` until the server shuts down, then let
/// connections finish their requests (up to the drain timeout). Each request
/// carries `ConnectInfo<SocketAddr>`, the peer's address.
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>, router: Router) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            _ = app.shutdown.cancelled() => break,
        };
        // Small frames must leave at once: with Nagle on, a frame written while an
        // earlier one is unacknowledged waits for the peer's delayed ACK (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        match admit(&app, peer.ip()) {
            Ok(admission) => {
                connections.spawn(serve_connection(app.clone(), router.clone(), tcp, peer, admission));
            }
            Err(refusal) => refuse_connection(&app, tcp, refusal),
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(app.config.limits.drain_timeout(), connections.wait()).await.is_err() {
        tracing::warn!(left = connections.len(), "shutdown: HTTP requests still running after the drain timeout");
    }
}

/// A connection reset before it was accepted is nothing to wait for; any
/// other error (out of files: EMFILE, ENFILE) would fail again at once, so
/// it is logged and waited out, as hyper's own server did.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Open connections, against `max_connections`.
pub struct Connections {
    open: AtomicUsize,
    max: usize,
    /// Connections being refused (each answered, then closed).
    refusing: AtomicUsize,
}

/// Refusals answered at once; past this, a refused connection is closed
/// without an answer, so a flood of them cannot use up the files kept aside.
const MAX_REFUSING: usize = 32;

/// The longest a refused connection is kept to read its request and answer.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections { open: AtomicUsize::new(0), max, refusing: AtomicUsize::new(0) }
    }

    /// Connections open now (HTTP and WebSocket).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// Counts one of `counter` up to `max`; the count drops with the guard.
struct Counted {
    app: Arc<App>,
    counter: fn(&Connections) -> &AtomicUsize,
}

impl Counted {
    fn take(app: &Arc<App>, counter: fn(&Connections) -> &AtomicUsize, max: usize) -> Option<Counted> {
        counter(&app.connections)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Counted { app: app.clone(), counter })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.counter)(&self.app.connections).fetch_sub(1, Ordering::Relaxed);
    }
}

/// What keeps an admitted connection counted, for as long as its socket lives.
struct Admission {
    _open: Counted,
    /// None for a trusted proxy: its requests are counted by the client each
    /// names (see `http::websocket`).
    _address: Option<IpGuard>,
}

/// Why a connection is refused at accept.
#[derive(Clone, Copy)]
enum Refusal {
    Full,
    TooManyFromAddress,
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Refusal::Full => refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded, "The server is full; try again shortly."),
            Refusal::TooManyFromAddress => refuse(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, "Too many connections from this address."),
        }
    }
}

/// Count a new connection from `ip` against both caps (a trusted proxy's
/// against the cap in all only).
fn admit(app: &Arc<App>, ip: IpAddr) -> Result<Admission, Refusal> {
    let open = Counted::take(app, |c| &c.open, app.connections.max).ok_or(Refusal::Full)?;
    let address = if app.config.is_trusted_proxy(ip) { None } else { Some(admit_ip(app, ip).ok_or(Refusal::TooManyFromAddress)?) };
    Ok(Admission { _open: open, _address: address })
}

/// Answer a refused connection's request with `refusal` and close it, within
/// `REFUSAL_WAIT`; or, when too many are being refused already, close it at once.
fn refuse_connection(app: &Arc<App>, tcp: TcpStream, refusal: Refusal) {
    let Some(slot) = Counted::take(app, |c| &c.refusing, MAX_REFUSING) else {
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let answer = hyper::service::service_fn(move |_| std::future::ready(Ok::<_, Infallible>(refusal.response())));
        let conn = http1::Builder::new().keep_alive(false).serve_connection(TokioIo::new(tcp), answer);
        let _ = tokio::time::timeout(REFUSAL_WAIT, conn).await;
    });
}

/// HTTP/1.1 on one connection until it closes, upgrades, times out, or
/// finishes its last request after shutdown began.
async fn serve_connection(app: Arc<App>, router: Router, tcp: TcpStream, peer: SocketAddr, admission: Admission) {
    let limits = &app.config.limits;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: tcp, activity: activity.clone(), _admission: admission });
    let router = TowerToHyperService::new(router);
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let answering = requests.begin();
        let response = router.call(request);
        async move {
            let response = response.await;
            drop(answering);
            response
        }
    });
    let mut builder = http1::Builder::new();
    // hyper's header timer runs from the end of one response to the end of
    // the next request head: that is the idle timeout. The stricter bound on
    // a head once it has begun is `head_overdue`.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout());
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            // Errors are the client's (a reset, a malformed head): nothing to log.
            _ = conn.as_mut() => return,
            // Dropping the connection closes the socket.
            _ = head_overdue(&activity, limits.header_timeout()) => return,
            _ = app.shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What the header timeout needs to know of a connection: whether a request
/// head is on its way, and since when.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`, plus one, at which the pending request head
    /// began (the accept, or the first byte read while no request was being
    /// answered); 0 while no head is pending.
    head_since: AtomicU64,
    /// Requests handed to the router and not yet answered.
    answering: AtomicU32,
    /// Told when a head begins, so the watch need not poll.
    head_began: Notify,
}

impl Activity {
    /// A new connection: its first head is pending from now.
    fn new() -> Activity {
        Activity { start: Instant::now(), head_since: AtomicU64::new(1), answering: AtomicU32::new(0), head_began: Notify::new() }
    }

    fn head_since(&self) -> Option<Instant> {
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start + Duration::from_millis(ms - 1)),
        }
    }

    /// Bytes arrived: between requests, they are the start of the next head.
    fn read(&self) {
        if self.answering.load(Ordering::Relaxed) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            let ms = self.start.elapsed().as_millis().min(u128::from(u64::MAX - 1)) as u64;
            self.head_since.store(ms + 1, Ordering::Relaxed);
            self.head_began.notify_one();
        }
    }

    /// A complete head reached the router: nothing pending until it is answered.
    fn begin(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        Answering(self.clone())
    }
}

/// A request being answered; dropped with its response (or its connection).
struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Completes once a request head has been pending for longer than `limit`.
async fn head_overdue(activity: &Activity, limit: Duration) {
    loop {
        let Some(since) = activity.head_since() else {
            activity.head_began.notified().await;
            continue;
        };
        tokio::time::sleep_until(since + limit).await;
        if activity.head_since() == Some(since) {
            return;
        }
    }
}

/// The socket, telling `Activity` when bytes arrive, and holding its place
/// under the caps until it closes (after an upgrade, inside the WebSocket).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _admission: Admission,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
