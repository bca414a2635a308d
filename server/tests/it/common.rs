//! Test harness: a real server on an ephemeral port (shut down on drop) and a
//! typed WebSocket client with a timeout on every wait. [`redis_server`]
//! starts a real `redis-server` and cluster nodes on it; [`deployment`] runs
//! one scenario on the embedded broker and on Redis.

pub mod deployment;
pub mod redis_server;

use futures_util::{SinkExt, StreamExt};
use kindred_protocol::{ClientMessage, ErrorCode, MemberId, Role, RoomId, ServerMessage};
use kindred_server::App;
use kindred_server::config::Config;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// Everything every test in this binary logged, at trace level.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get().expect("logging is set up by TestServer").lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = LogWriter(buffer.clone());
        tracing_subscriber::fmt()
            // Everything at trace, as an operator may set RUST_LOG: the server caps
            // the libraries that would log frames (see `log_filter`).
            .with_env_filter(kindred_server::log_filter("trace,tungstenite=trace,tokio_tungstenite=trace,hyper=trace"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    });
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    /// How long the clients made here wait for a frame (see [`TestClient::with_wait`]).
    pub client_wait: Duration,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: TempDir,
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("kindred-test-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut Config)) -> TestServer {
        Self::with_data(TempDir::new(), configure).await
    }

    /// A server on a given data dir (to restart one on the same state).
    pub async fn with_data(data: TempDir, configure: impl FnOnce(&mut Config)) -> TestServer {
        init_logging();
        let mut config = Config::new(&data.0);
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App::new(config).unwrap();
        let task = tokio::spawn(kindred_server::run(listener, app.clone()));
        TestServer { addr, app, client_wait: WAIT, task: Some(task), _data: data }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> TestClient {
        TestClient::connect(&self.url()).await.with_wait(self.client_wait)
    }

    /// A client that said hello and got its welcome.
    pub async fn member(&self, handle: Option<&str>) -> (TestClient, ServerMessage) {
        let mut c = self.client().await;
        let welcome = c.hello(None, handle).await;
        (c, welcome)
    }

    /// Begin graceful shutdown and wait for the server to finish.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// Shut down and hand back the data dir, for a restart on the same state.
    pub async fn stop(mut self) -> TempDir {
        self.app.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
        std::mem::replace(&mut self._data, TempDir(std::path::PathBuf::new()))
    }

    /// A member who said hello (with `handle`, or a generated one) and joined
    /// `room`, with the member id the room knows it by.
    pub async fn member_in(&self, room: &str, handle: Option<&str>) -> (TestClient, MemberId) {
        let (mut c, _) = self.member(handle).await;
        let id = c.join_returning_id(room).await;
        (c, id)
    }

    /// A signed-in facilitator (of `rooms`, or all) who joined `join`.
    pub async fn staff(&self, role: Role, rooms: Option<Vec<&str>>, join: &str) -> TestClient {
        self.staff_in(role, rooms, join).await.0
    }

    /// [`staff`](Self::staff), with the member id the room knows it by (to whisper to it).
    pub async fn staff_in(&self, role: Role, rooms: Option<Vec<&str>>, join: &str) -> (TestClient, MemberId) {
        let mut c = self.on_duty(role, "Sam Rivers", rooms).await;
        let id = c.join_returning_id(join).await;
        (c, id)
    }

    /// A client signed in with a staff token of `rooms` (all when `None`), in no room.
    pub async fn on_duty(&self, role: Role, name: &str, rooms: Option<Vec<&str>>) -> TestClient {
        let rooms = rooms.map(|r| r.into_iter().map(RoomId::from).collect());
        let token = self.app.auth.staff_token(role, name, rooms, Duration::from_secs(3600));
        let mut c = self.client().await;
        c.hello(Some(&token), None).await;
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestClient {
    pub ws: Ws,
    next_id: i64,
    /// How long `recv`, `expect` and the requests wait for a frame.
    wait: Duration,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    NoCloseFrame,
}

impl TestClient {
    pub async fn connect(url: &str) -> TestClient {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "kindred.v1".parse().unwrap());
        let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
        assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), "kindred.v1");
        TestClient { ws, next_id: 1, wait: WAIT }
    }

    pub fn from_ws(ws: Ws) -> TestClient {
        TestClient { ws, next_id: 1, wait: WAIT }
    }

    /// Wait up to `wait` (not [`WAIT`]) for each frame: for events that cross nodes.
    pub fn with_wait(mut self, wait: Duration) -> TestClient {
        self.wait = wait;
        self
    }

    pub fn next_id(&mut self) -> kindred_protocol::RequestId {
        self.next_id += 1;
        kindred_protocol::RequestId::Int(self.next_id)
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        let text = serde_json::to_string(msg).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    /// The next protocol frame (pings are skipped); panics after this client's wait ([`WAIT`] unless set).
    pub async fn recv(&mut self) -> ServerMessage {
        self.try_recv(self.wait).await.expect("a frame arrives in time")
    }

    /// The next frame within `wait`, or None (timeout or close).
    pub async fn try_recv(&mut self, wait: Duration) -> Option<ServerMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??;
            match next {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Read until a frame matches `pred`, skipping others; panics after this client's wait ([`WAIT`] unless set).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        self.expect_within(what, self.wait, pred).await
    }

    /// [`expect`](Self::expect) with its own wait (a node's heartbeat must lapse first, say).
    pub async fn expect_within(&mut self, what: &str, wait: Duration, pred: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_recv(left).await {
                Some(msg) if pred(&msg) => return msg,
                Some(_) => continue,
                None => panic!("no {what} arrived in time"),
            }
        }
    }

    pub async fn expect_error(&mut self, code: ErrorCode) -> kindred_protocol::ErrorBody {
        match self.expect(code.as_str(), |m| matches!(m, ServerMessage::Error(_))).await {
            ServerMessage::Error(e) => {
                assert_eq!(e.code, code, "{e:?}");
                e
            }
            _ => unreachable!(),
        }
    }

    /// Send `frame` with a fresh id and return the reply that echoes it (its
    /// success reply or an `error`), skipping events and other replies.
    pub async fn request(&mut self, mut frame: ClientMessage) -> ServerMessage {
        let id = self.next_id();
        frame.set_id(Some(id.clone()));
        self.send(&frame).await;
        self.expect(&format!("the reply to {}", frame.kind()), |m| m.id() == Some(&id)).await
    }

    /// [`request`](Self::request) that must be refused with `code`; the error.
    pub async fn refused(&mut self, frame: ClientMessage, code: ErrorCode) -> kindred_protocol::ErrorBody {
        match self.request(frame).await {
            ServerMessage::Error(e) => {
                assert_eq!(e.code, code, "{e:?}");
                e
            }
            other => panic!("expected {}, got {other:?}", code.as_str()),
        }
    }

    /// No frame matching `pred` for `wait` (whatever else arrives is read and dropped).
    pub async fn assert_none_for(&mut self, what: &str, wait: Duration, pred: impl Fn(&ServerMessage) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Some(m) = self.try_recv(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            assert!(!pred(&m), "unexpected {what}: {m:?}");
        }
    }

    /// Read until the server closes; the close code, if a close frame came.
    pub async fn closed(&mut self, wait: Duration) -> Closed {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the server did not close the connection in time"),
                Ok(None) | Ok(Some(Err(_))) => return Closed::NoCloseFrame,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return match frame {
                        Some(CloseFrame { code, .. }) => Closed::Code(code.into()),
                        None => Closed::NoCloseFrame,
                    };
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn hello(&mut self, token: Option<&str>, handle: Option<&str>) -> ServerMessage {
        let id = self.next_id();
        self.send(&ClientMessage::Hello { id: Some(id), token: token.map(str::to_owned), handle: handle.map(str::to_owned), locale: Some("en".into()) }).await;
        let reply = self.recv().await;
        assert!(matches!(reply, ServerMessage::Welcome { .. }), "expected welcome, got {reply:?}");
        reply
    }

    /// Join a room, accepting its ground rules when asked. Returns `joined`.
    pub async fn join(&mut self, room: &str) -> ServerMessage {
        self.join_since(room, None).await
    }

    pub async fn join_since(&mut self, room: &str, since: Option<kindred_protocol::Position>) -> ServerMessage {
        let mut accept = None;
        for _ in 0..2 {
            let reply = self.request(ClientMessage::Join { id: None, room: RoomId::from(room), accept_rules: accept, since: since.clone() }).await;
            match reply {
                ServerMessage::Error(e) if e.code == ErrorCode::RulesNotAccepted => accept = e.rules_version,
                ServerMessage::Error(e) => panic!("join {room} failed: {e:?}"),
                joined => return joined,
            }
        }
        panic!("join kept asking for rules")
    }

    /// Join `room` and return the member id the room knows this client by.
    pub async fn join_returning_id(&mut self, room: &str) -> MemberId {
        let joined = self.join(room).await;
        joined_parts(&joined).0.member_id.clone()
    }

    /// Send a message and wait for its `sent` ack; returns (message_id, seq).
    pub async fn say(&mut self, room: &str, text: &str) -> (String, u64) {
        match self.request(chat(room, text)).await {
            ServerMessage::Sent { message_id, seq, .. } => (message_id.0, seq),
            other => panic!("send failed: {other:?}"),
        }
    }

    /// Send a `moderate` request and return the reply (`moderated` or `error`).
    pub async fn moderate(&mut self, room: &str, action: kindred_protocol::ModerationAction) -> ServerMessage {
        self.request(ClientMessage::Moderate { id: None, room: RoomId::from(room), action }).await
    }

    /// Collect `n` chat messages, skipping other frames.
    pub async fn messages(&mut self, n: usize) -> Vec<kindred_protocol::ChatMessage> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let ServerMessage::Message(m) = self.expect("message", |m| matches!(m, ServerMessage::Message(_))).await {
                out.push(m);
            }
        }
        out
    }

    /// A ping/pong round trip: proves the connection is still served.
    pub async fn assert_alive(&mut self) {
        let id = self.next_id();
        self.send(&ClientMessage::Ping { id: Some(id.clone()) }).await;
        let got = self.expect("pong", |m| matches!(m, ServerMessage::Pong { .. })).await;
        assert_eq!(got, ServerMessage::Pong { id: Some(id) });
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Messages as (seq, message id): what two clients must agree on to have seen one order.
pub fn seqs_and_ids(msgs: &[kindred_protocol::ChatMessage]) -> Vec<(u64, String)> {
    msgs.iter().map(|m| (m.seq, m.message_id.0.clone())).collect()
}

/// Each message's `seq` one more than the one before: no gap, no duplicate.
pub fn assert_contiguous(msgs: &[kindred_protocol::ChatMessage]) {
    for pair in msgs.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "a gap or a duplicate in {:?}", seqs_and_ids(msgs));
    }
}

/// A `moderate` reply that is `moderated`, not an error.
pub fn moderated(reply: &ServerMessage) {
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "expected moderated, got {reply:?}");
}

/// A `send` of `text` to `room` (no id: [`TestClient::request`] gives it one).
pub fn chat(room: &str, text: &str) -> ClientMessage {
    ClientMessage::Send { id: None, room: RoomId::from(room), text: text.into(), reply_to: None, cw: None, staff: false }
}

/// Poll `done` until it holds; panics with `failure` if it still does not after `within`.
pub async fn eventually(failure: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{failure} (waited {within:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn token_of(welcome: &ServerMessage) -> String {
    match welcome {
        ServerMessage::Welcome { session_token, .. } => session_token.clone(),
        other => panic!("not a welcome: {other:?}"),
    }
}

pub fn joined_parts(joined: &ServerMessage) -> (&kindred_protocol::Member, &[kindred_protocol::ChatMessage], &str, u64, bool) {
    match joined {
        ServerMessage::Joined { me, history, epoch, seq, recovered, .. } => (me, history, epoch, *seq, *recovered),
        other => panic!("not joined: {other:?}"),
    }
}

/// How a handle looks (the server's own fold), for tests of look-alikes.
pub fn look(handle: &str) -> String {
    kindred_server::handles::look(handle)
}

/// Wait until `c` sees `members` join the room, in any order (one on its own
/// node may overtake one from another): only then does its node know them,
/// as a facilitator's screen lists someone before acting on them.
pub async fn sees_join(c: &mut TestClient, members: &[&MemberId]) {
    let mut unseen: Vec<&MemberId> = members.to_vec();
    while !unseen.is_empty() {
        let seen = c.expect("the members' presence", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if unseen.contains(&&j.member_id))).await;
        let ServerMessage::Presence { joined: Some(j), .. } = seen else { unreachable!() };
        unseen.retain(|id| **id != j.member_id);
    }
}
