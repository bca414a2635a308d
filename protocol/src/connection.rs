//! A client with reconnect and gap-free resume built in (feature `client`).
//!
//! [`Client::connect`] opens the WebSocket, says `hello`, and returns a
//! [`Client`] (a handle, cheap to clone) and [`Events`], a [`Stream`] of
//! everything the server sends that is not a reply: messages, presence,
//! notices… and [`Event::Closed`], [`Event::Reconnecting`] and
//! [`Event::Reconnected`].
//!
//! One task owns the socket. When the connection drops, it follows the
//! close-code table of `docs/protocol.md` ([`CloseCode::should_reconnect`]):
//! it reconnects with exponential backoff and full jitter, says `hello` with
//! the `session_token` of the first `welcome` (the same member, or the same
//! staff token, comes back), joins every room again with `since`, and
//! delivers what was missed in between once and in order before
//! [`Event::Reconnected`] says, room by room, whether the resume was
//! complete (`recovered`). A room whose history could not be recovered says
//! `recovered: false`; it is never hidden.
//!
//! Why ~660 lines: the socket task is one state machine (connect, `hello`,
//! rejoin with `since`, backoff, requests waiting for their replies) whose
//! states share the pending requests and each room's position; this file
//! is that machine and its public handle, nothing else.
//!
//! ```no_run
//! # async fn bot() -> Result<(), kindred_protocol::connection::ClientError> {
//! use futures_util::StreamExt;
//! use kindred_protocol::connection::{Client, Event, Options};
//! use kindred_protocol::ServerMessage;
//!
//! let (client, mut events) = Client::connect("ws://127.0.0.1:8080/ws", Options::default()).await?;
//! client.join("grief", None).await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Frame(ServerMessage::Message(m)) = event {
//!         println!("{}: {}", m.from.handle, m.text);
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::{ChatMessage, ClientMessage, CloseCode, ErrorBody, MessageId, Position, RequestId, RoomId, SUBPROTOCOL, ServerMessage};
use futures_util::{SinkExt, Stream, StreamExt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a client says who it is and how patient it is.
#[derive(Debug, Clone)]
pub struct Options {
    /// A facilitator's or admin's JWT, or a member's `session_token` from an
    /// earlier visit. None: a new anonymous member.
    pub token: Option<String>,
    /// The handle to ask for (the server may refuse it: `invalid_handle`).
    pub handle: Option<String>,
    /// The language of the server's texts (`en`, `es`, `fr`, `de`, `pt`, `ar`).
    pub locale: Option<String>,
    /// Other nodes of the same cluster. Each reconnect tries the next
    /// address in turn (the first one given to `connect`, then these), so a
    /// node that died is left behind; any node serves every room.
    pub failover: Vec<String>,
    /// How long a request waits for its reply, a wait to reconnect included.
    pub request_timeout: Duration,
    /// The first reconnect waits up to this long; each failure doubles it…
    pub base_delay: Duration,
    /// …up to this.
    pub max_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            handle: None,
            locale: None,
            failover: Vec::new(),
            request_timeout: Duration::from_secs(15),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

/// What [`Events`] yields.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "a frame unboxed lets callers match `Event::Frame(ServerMessage::Message(m))`")]
pub enum Event {
    /// A server event: a `message`, `presence`, `notice`… Messages missed
    /// during a reconnect come this way too, once and in order, before
    /// [`Event::Reconnected`].
    Frame(ServerMessage),
    /// The connection ended. `code` is the close code (None when the socket
    /// just dropped); `reconnect` says whether the client will try again. If
    /// not, this is the last event.
    Closed { code: Option<u16>, reconnect: bool },
    /// The next attempt to connect, after `delay`.
    Reconnecting { attempt: u32, delay: Duration },
    /// Connected again: each room that was joined, resumed or not.
    Reconnected { rooms: Vec<Resumed> },
}

/// How one room came back after a reconnect.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    pub room: RoomId,
    /// Every message since the last one seen was delivered. False: the
    /// server could not honour `since` (older than its history keeps, or a
    /// history that started over), and only its latest window came.
    pub recovered: bool,
    /// The room refused the join (banned meanwhile, closed, new rules…):
    /// the client is no longer in it.
    pub refused: Option<ErrorBody>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an `error` frame.
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Refused(Box<ErrorBody>),
    /// The connection dropped after the request was sent and before its reply:
    /// the server may or may not have acted on it.
    #[error("the connection dropped before the reply")]
    Disconnected,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The client was closed, by [`Client::close`] or by a close code after
    /// which reconnecting cannot help.
    #[error("the client is closed")]
    Closed,
    /// The first connection could not be opened.
    #[error("could not connect: {0}")]
    Connect(#[source] Box<tungstenite::Error>),
    /// A reply of another type than the request's (a server bug).
    #[error("unexpected reply `{0}`")]
    Unexpected(&'static str),
}

impl ClientError {
    /// The error code of a refusal (`rate_limited`, `forbidden`…).
    pub fn code(&self) -> Option<crate::ErrorCode> {
        match self {
            ClientError::Refused(body) => Some(body.code),
            _ => None,
        }
    }
}

/// The handle to a connection: requests go through it. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    welcome: ServerMessage,
    request_timeout: Duration,
}

/// Server events as a [`Stream`]; it ends after the last [`Event::Closed`].
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

type Reply = oneshot::Sender<Result<ServerMessage, ClientError>>;

enum Command {
    Request(ClientMessage, Reply),
    Close,
}

impl Client {
    /// Connect and say `hello`. Fails if the first connection cannot be
    /// opened or the server refuses the `hello`; later drops are reconnected.
    pub async fn connect(url: impl Into<String>, options: Options) -> Result<(Client, Events), ClientError> {
        let url = url.into();
        let mut socket = open(&url).await.map_err(|e| ClientError::Connect(Box::new(e)))?;
        let hello = ClientMessage::Hello { id: None, token: options.token.clone(), handle: options.handle.clone(), locale: options.locale.clone() };
        let welcome = match timeout(options.request_timeout, handshake(&mut socket, hello)).await {
            Ok(Ok(welcome)) => welcome,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ClientError::Timeout(options.request_timeout)),
        };
        let (commands, inbox) = mpsc::unbounded_channel();
        let (events, rx) = mpsc::unbounded_channel();
        let request_timeout = options.request_timeout;
        let driver = Driver::new(url, options, &welcome, events);
        tokio::spawn(driver.run(socket, inbox));
        Ok((Client { commands, welcome, request_timeout }, Events { rx }))
    }

    /// The `welcome` of the first connection: the account, handle, role and limits.
    pub fn welcome(&self) -> &ServerMessage {
        &self.welcome
    }

    /// Join a room (`accept_rules`: the rules version the member accepted).
    /// The client joins it again after every reconnect, with `since`.
    pub async fn join(&self, room: impl Into<RoomId>, accept_rules: Option<u32>) -> Result<ServerMessage, ClientError> {
        self.request(ClientMessage::Join { id: None, room: room.into(), accept_rules, since: None }).await
    }

    /// Send a message to a room; the reply is `sent`, with its `message_id` and `seq`.
    pub async fn send(&self, room: impl Into<RoomId>, text: impl Into<String>) -> Result<ServerMessage, ClientError> {
        self.request(ClientMessage::Send { id: None, room: room.into(), text: text.into(), reply_to: None, cw: None, staff: false }).await
    }

    /// Send a reply to a message, with or without a content warning.
    pub async fn reply(&self, room: impl Into<RoomId>, text: impl Into<String>, reply_to: MessageId, cw: Option<String>) -> Result<ServerMessage, ClientError> {
        self.request(ClientMessage::Send { id: None, room: room.into(), text: text.into(), reply_to: Some(reply_to), cw, staff: false }).await
    }

    /// Any request; the client gives it an id and returns its reply. An
    /// `error` reply is [`ClientError::Refused`]. A request made while the
    /// client reconnects is sent once it is connected again, within the
    /// request timeout.
    pub async fn request(&self, frame: ClientMessage) -> Result<ServerMessage, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Request(frame, reply)).map_err(|_| ClientError::Closed)?;
        match timeout(self.request_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout(self.request_timeout)),
        }
    }

    /// Close the connection for good (code 1000); the events end with `Closed`.
    pub fn close(&self) {
        let _already_closed = self.commands.send(Command::Close);
    }
}

async fn open(url: &str) -> Result<Socket, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    let (socket, _response) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// Say `hello` on a fresh socket and wait for `welcome` (nothing else comes before it).
async fn handshake(socket: &mut Socket, hello: ClientMessage) -> Result<ServerMessage, ClientError> {
    send_frame(socket, &hello).await.map_err(|_| ClientError::Disconnected)?;
    while let Some(Ok(message)) = socket.next().await {
        match parse(&message) {
            Some(welcome @ ServerMessage::Welcome { .. }) => return Ok(welcome),
            Some(ServerMessage::Error(body)) => return Err(ClientError::Refused(Box::new(body))),
            _ => {}
        }
    }
    Err(ClientError::Disconnected)
}

async fn send_frame(socket: &mut Socket, frame: &ClientMessage) -> Result<(), tungstenite::Error> {
    let text = serde_json::to_string(frame).expect("client frames always serialize");
    socket.send(Message::text(text)).await
}

fn parse(message: &Message) -> Option<ServerMessage> {
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str()).ok(),
        _ => None,
    }
}

/// How many message ids a room remembers to drop a duplicate.
const RECENT_IDS: usize = 512;

/// A joined room: where its history is up to for this client.
struct Room {
    accept_rules: Option<u32>,
    /// None until the first `joined`.
    position: Option<Position>,
    /// Messages that came before the `joined` reply of a join in flight.
    held: Option<Vec<ChatMessage>>,
    recent: VecDeque<MessageId>,
    recent_set: HashSet<MessageId>,
}

impl Room {
    fn new(accept_rules: Option<u32>) -> Room {
        Room { accept_rules, position: None, held: Some(Vec::new()), recent: VecDeque::new(), recent_set: HashSet::new() }
    }

    /// Whether a message is new to this client; if so it is now the latest seen.
    fn take(&mut self, msg: &ChatMessage, epoch: &str) -> bool {
        let same_history = self.position.as_ref().is_some_and(|p| p.epoch == epoch);
        if self.recent_set.contains(&msg.message_id) {
            return false;
        }
        if same_history && !msg.staff && self.position.as_ref().is_some_and(|p| msg.seq <= p.seq) {
            return false;
        }
        self.advance(epoch, msg.seq);
        self.recent.push_back(msg.message_id.clone());
        self.recent_set.insert(msg.message_id.clone());
        if self.recent.len() > RECENT_IDS {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        true
    }

    /// The room's history is known up to `seq` of `epoch` (a new epoch starts over).
    fn advance(&mut self, epoch: &str, seq: u64) {
        match &mut self.position {
            Some(p) if p.epoch == epoch => p.seq = p.seq.max(seq),
            _ => self.position = Some(Position { epoch: epoch.to_owned(), seq }),
        }
    }
}

/// A request sent and not yet answered.
struct Pending {
    frame: ClientMessage,
    reply: Option<Reply>,
}

/// Why a connection ended.
enum Ended {
    Closed(Option<u16>),
    ByClient,
}

/// The task that owns the socket.
struct Driver {
    /// Where to connect: the first address, then the failover ones, in turn.
    urls: Vec<String>,
    current: usize,
    options: Options,
    /// What `hello` presents after a reconnect: the same member or staff member.
    session_token: String,
    heartbeat: Duration,
    events: mpsc::UnboundedSender<Event>,
    rooms: HashMap<RoomId, Room>,
    pending: HashMap<RequestId, Pending>,
    /// Requests made while disconnected, sent once connected again.
    queued: Vec<(ClientMessage, Reply)>,
    next_id: i64,
}

impl Driver {
    fn new(url: String, options: Options, welcome: &ServerMessage, events: mpsc::UnboundedSender<Event>) -> Driver {
        let (session_token, heartbeat_s) = match welcome {
            ServerMessage::Welcome { session_token, heartbeat_s, .. } => (session_token.clone(), *heartbeat_s),
            _ => (String::new(), 25),
        };
        let heartbeat = Duration::from_secs(u64::from(heartbeat_s.max(1)));
        let urls = std::iter::once(url).chain(options.failover.iter().cloned()).collect();
        Driver { urls, current: 0, options, session_token, heartbeat, events, rooms: HashMap::new(), pending: HashMap::new(), queued: Vec::new(), next_id: 1 }
    }

    async fn run(mut self, mut socket: Socket, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut attempt = 0u32;
        loop {
            let ended = self.serve(&mut socket, &mut commands).await;
            self.fail_pending();
            let code = match ended {
                Ended::ByClient => {
                    let _ = socket.close(Some(CloseFrame { code: WsCloseCode::Normal, reason: "client closed".into() })).await;
                    self.emit(Event::Closed { code: Some(1000), reconnect: false });
                    return;
                }
                Ended::Closed(code) => code,
            };
            // Unknown codes and dropped sockets (no code) are worth another try.
            let reconnect = code.and_then(CloseCode::from_code).is_none_or(CloseCode::should_reconnect);
            self.emit(Event::Closed { code, reconnect });
            if !reconnect {
                return;
            }
            // A client told to slow down starts its backoff further along.
            if code == Some(CloseCode::RateLimited.code()) {
                attempt = attempt.max(3);
            }
            socket = loop {
                attempt += 1;
                let delay = self.backoff(attempt);
                self.emit(Event::Reconnecting { attempt, delay });
                if !self.wait(delay, &mut commands).await {
                    self.emit(Event::Closed { code: None, reconnect: false });
                    return;
                }
                match self.reconnect().await {
                    Ok(socket) => break socket,
                    Err(Some(refused)) => {
                        // The server said no to the hello itself (an expired token…).
                        self.emit(Event::Frame(ServerMessage::Error(refused)));
                        self.emit(Event::Closed { code: None, reconnect: false });
                        return;
                    }
                    Err(None) => continue,
                }
            };
            attempt = 0;
        }
    }

    /// Full jitter: a random wait up to a cap that doubles with each attempt.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.options.base_delay.saturating_mul(1 << attempt.min(16)).min(self.options.max_delay);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(100 + rand::random_range(0..=cap_ms))
    }

    /// Wait out a backoff while taking requests to send later. False: the client closed.
    async fn wait(&mut self, delay: Duration, commands: &mut mpsc::UnboundedReceiver<Command>) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = sleep_until(until) => return true,
                command = commands.recv() => match command {
                    Some(Command::Request(frame, reply)) => self.queued.push((frame, reply)),
                    Some(Command::Close) | None => return false,
                },
            }
        }
    }

    /// Connect, `hello` as the same account, and join every room again with
    /// `since`. Err(Some): the hello was refused for good; Err(None): try again.
    async fn reconnect(&mut self) -> Result<Socket, Option<ErrorBody>> {
        // Each try goes to the next address: a node that died is left behind.
        self.current = (self.current + 1) % self.urls.len();
        let mut socket = open(&self.urls[self.current]).await.map_err(|_| None)?;
        let hello = ClientMessage::Hello { id: None, token: Some(self.session_token.clone()), handle: None, locale: self.options.locale.clone() };
        match timeout(self.options.request_timeout, handshake(&mut socket, hello)).await {
            Ok(Ok(_welcome)) => {}
            Ok(Err(ClientError::Refused(body))) if !body.code.is_retryable() => return Err(Some(*body)),
            _ => return Err(None),
        }
        let mut resumed = Vec::new();
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let Some(state) = self.rooms.get_mut(&room) else { continue };
            state.held = Some(Vec::new());
            let join = ClientMessage::Join { id: None, room: room.clone(), accept_rules: state.accept_rules, since: state.position.clone() };
            let id = self.send_request(&mut socket, join, None).await.map_err(|_| None)?;
            // Read until this join's reply; other rooms' events go on as usual.
            let reply = loop {
                let frame = match timeout(self.options.request_timeout, socket.next()).await {
                    Ok(Some(Ok(message))) => message,
                    _ => return Err(None),
                };
                let Some(frame) = parse(&frame) else { continue };
                if frame.id() == Some(&id) {
                    self.pending.remove(&id);
                    break frame;
                }
                self.on_frame(frame);
            };
            match reply {
                ServerMessage::Joined { recovered, .. } => {
                    self.on_joined(&room, &reply);
                    resumed.push(Resumed { room, recovered, refused: None });
                }
                ServerMessage::Error(body) => {
                    self.rooms.remove(&room);
                    resumed.push(Resumed { room, recovered: false, refused: Some(body) });
                }
                _ => return Err(None),
            }
        }
        self.emit(Event::Reconnected { rooms: resumed });
        for (frame, reply) in std::mem::take(&mut self.queued) {
            if !reply.is_closed() {
                self.send_request(&mut socket, frame, Some(reply)).await.map_err(|_| None)?;
            }
        }
        Ok(socket)
    }

    /// Serve one connection until it ends.
    async fn serve(&mut self, socket: &mut Socket, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        // The server pings every heartbeat; silence for two of them means a dead socket.
        let silence = self.heartbeat * 2 + Duration::from_secs(5);
        let mut deadline = Instant::now() + silence;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Request(frame, reply)) => {
                        if self.send_request(socket, frame, Some(reply)).await.is_err() {
                            return Ended::Closed(None);
                        }
                    }
                    Some(Command::Close) | None => return Ended::ByClient,
                },
                message = socket.next() => {
                    deadline = Instant::now() + silence;
                    match message {
                        Some(Ok(Message::Close(frame))) => return Ended::Closed(frame.map(|f| u16::from(f.code))),
                        Some(Ok(message)) => {
                            if let Some(frame) = parse(&message) {
                                self.on_frame(frame);
                            }
                        }
                        Some(Err(_)) | None => return Ended::Closed(None),
                    }
                }
                () = sleep_until(deadline) => return Ended::Closed(None),
            }
        }
    }

    /// Number a request, note it as pending and send it.
    async fn send_request(&mut self, socket: &mut Socket, mut frame: ClientMessage, reply: Option<Reply>) -> Result<RequestId, tungstenite::Error> {
        let id = RequestId::Int(self.next_id);
        self.next_id += 1;
        frame.set_id(Some(id.clone()));
        if let ClientMessage::Join { room, accept_rules, .. } = &frame {
            // Live messages that arrive before `joined` wait for it.
            self.rooms.entry(room.clone()).or_insert_with(|| Room::new(*accept_rules)).held.get_or_insert_with(Vec::new);
        }
        send_frame(socket, &frame).await?;
        self.pending.insert(id.clone(), Pending { frame, reply });
        Ok(id)
    }

    fn on_frame(&mut self, frame: ServerMessage) {
        let Some(pending) = frame.id().and_then(|id| self.pending.remove(id)) else {
            return self.on_event(frame);
        };
        match (&pending.frame, &frame) {
            (ClientMessage::Join { room, accept_rules, .. }, ServerMessage::Joined { .. }) => {
                if let Some(state) = self.rooms.get_mut(room) {
                    state.accept_rules = *accept_rules;
                }
                self.on_joined(room, &frame);
            }
            (ClientMessage::Join { room, .. }, ServerMessage::Error(_)) => match self.rooms.get(room).map(|r| r.position.is_some()) {
                // A second join of a room the client is in: it still is.
                Some(true) => self.release_held(room),
                // Not joined after all.
                Some(false) => drop(self.rooms.remove(room)),
                None => {}
            },
            (ClientMessage::Leave { room, .. }, ServerMessage::Left { .. }) => {
                self.rooms.remove(room);
            }
            _ => {}
        }
        if let Some(reply) = pending.reply {
            let result = match frame {
                ServerMessage::Error(body) => Err(ClientError::Refused(Box::new(body))),
                reply => Ok(reply),
            };
            let _caller_gave_up = reply.send(result);
        }
    }

    /// A `joined` reply: the room's history up to now is known. On a resume,
    /// what was missed is delivered, then anything held while waiting.
    fn on_joined(&mut self, room: &RoomId, joined: &ServerMessage) {
        let ServerMessage::Joined { history, epoch, seq, .. } = joined else { return };
        let Some(state) = self.rooms.get_mut(room) else { return };
        let resuming = state.position.is_some();
        let mut out = Vec::new();
        for msg in history {
            // A first join hands the history to the caller in the reply; only
            // a resume delivers it as events.
            if state.take(msg, epoch) && resuming {
                out.push(msg.clone());
            }
        }
        state.advance(epoch, *seq);
        for msg in out {
            self.emit(Event::Frame(ServerMessage::Message(msg)));
        }
        self.release_held(room);
    }

    /// Deliver what came while a join was in flight, in the history the room had.
    fn release_held(&mut self, room: &RoomId) {
        let Some(state) = self.rooms.get_mut(room) else { return };
        let epoch = state.position.as_ref().map(|p| p.epoch.clone()).unwrap_or_default();
        let fresh: Vec<ChatMessage> = state.held.take().unwrap_or_default().into_iter().filter(|m| state.take(m, &epoch)).collect();
        for msg in fresh {
            self.emit(Event::Frame(ServerMessage::Message(msg)));
        }
    }

    fn on_event(&mut self, frame: ServerMessage) {
        match &frame {
            ServerMessage::Message(msg) => {
                let Some(state) = self.rooms.get_mut(&msg.room) else { return self.emit(Event::Frame(frame)) };
                if let Some(held) = &mut state.held {
                    return held.push(msg.clone());
                }
                let epoch = state.position.as_ref().map(|p| p.epoch.clone()).unwrap_or_default();
                if !state.take(msg, &epoch) {
                    return;
                }
            }
            // Removed by a facilitator (or the room closed): not joined again after a reconnect.
            ServerMessage::Removed { room, .. } => {
                self.rooms.remove(room);
            }
            _ => {}
        }
        self.emit(Event::Frame(frame));
    }

    /// Requests in flight when the socket dropped may or may not have been acted on.
    fn fail_pending(&mut self) {
        for (_, pending) in self.pending.drain() {
            if let Some(reply) = pending.reply {
                let _caller_gave_up = reply.send(Err(ClientError::Disconnected));
            }
        }
        for state in self.rooms.values_mut() {
            state.held = None;
        }
    }

    fn emit(&self, event: Event) {
        let _nobody_listening = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, seq: u64) -> ChatMessage {
        serde_json::from_value(serde_json::json!({
            "room": "grief", "message_id": id, "seq": seq, "text": "hi", "ts": "2026-11-30T10:00:00.000Z",
            "from": {"member_id": "m_1", "handle": "Ann", "role": "member"}
        }))
        .unwrap()
    }

    #[test]
    fn a_room_takes_each_message_once_and_in_its_history() {
        let mut room = Room::new(None);
        room.position = Some(Position { epoch: "e1".into(), seq: 3 });
        assert!(!room.take(&msg("a", 3), "e1"), "seen by position");
        assert!(room.take(&msg("b", 4), "e1"));
        assert!(!room.take(&msg("b", 4), "e1"), "the same message again");
        assert!(room.take(&msg("c", 1), "e2"), "a history that started over");
        assert_eq!(room.position, Some(Position { epoch: "e2".into(), seq: 1 }));
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let (events, _rx) = mpsc::unbounded_channel();
        let options = Options { base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50), ..Options::default() };
        let welcome = ServerMessage::Pong { id: None };
        let driver = Driver::new("ws://127.0.0.1:1/ws".into(), options, &welcome, events);
        for attempt in 1..30 {
            assert!(driver.backoff(attempt) <= Duration::from_millis(150), "attempt {attempt}");
        }
    }
}
