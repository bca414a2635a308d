//! One WebSocket connection from `hello` to close: a single task with one
//! `select!` over the socket, the connection's mailbox, heartbeats, the
//! hub's close requests and server shutdown. Reads are decoded, validated,
//! authorized and rate-limited here; broadcast frames arrive through the
//! mailbox already encoded and are written in batches with one flush.

use crate::App;
use crate::auth::Identity;
use crate::frame::{Frame, encode};
use crate::hub::{ConnId, Control, Draft, JoinRequest, Outbox};
use crate::metrics::Metrics;
use crate::ratelimit::TokenBucket;
use crate::rooms::rfc3339;
use crate::texts::{f, t};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use kindred_protocol::{
    ChatMessage, ClientMessage, CloseCode, ErrorBody, ErrorCode, Limits as WireLimits, Member, MessageId, Notice, NoticeKind, RequestId, RoomId, Sender,
    ServerInfo, ServerMessage,
};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// A client's WebSocket, on our own write buffer (see `wire`).
pub(crate) type Socket = tokio_tungstenite::WebSocketStream<crate::wire::Wire<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>>;

mod crisis;
mod hello;
mod join;
mod moderate;
mod send;
mod words;
mod writer;

use send::{Pending, oldest_stored};
use writer::hold_ends;

/// The most mailbox frames written before one flush.
const MAX_BATCH: usize = 256;

/// Why the read loop stopped.
enum End {
    /// Close the WebSocket with this code and reason.
    Close(CloseCode, &'static str),
    /// The peer went away or the socket failed: nothing more to say.
    Gone,
}

type Step = Result<(), End>;

pub(crate) struct Session {
    app: Arc<App>,
    conn: ConnId,
    socket: Socket,
    rx: crate::mailbox::Receiver,
    outbox: Outbox,
    /// Boxed: every idle connection carries this struct in its future, and
    /// the identity is read only by requests, never by the write path.
    identity: Option<Box<Identity>>,
    /// The handle in `welcome`: the chosen one, used in every room, or
    /// (`handle_per_room`) the generated one shown outside rooms.
    handle: String,
    handle_per_room: bool,
    /// `hello.locale`, for texts the server writes (crisis notices).
    locale: Option<Box<str>>,
    /// Rooms this connection is in, with how it appears there.
    rooms: MyRooms,
    bucket: TokenBucket,
    /// Joins, leaves, hands and reports: each can make the server write to a whole room.
    actions: TokenBucket,
    /// `rate_limited` answers in a row (messages and actions); past the limit the connection closes with 4429.
    strikes: u32,
    last_seen: Instant,
    /// When mailbox frames were last flushed to the socket.
    last_flush: Instant,
    /// Write coalescing (see `on_mailbox`): the timer that ends a hold, made
    /// on the connection's first hold and reused after. Boxed: most
    /// connections never hold, and every byte here is per connection.
    hold: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A hold is running: queued frames wait for its end.
    holding: bool,
    /// Messages handed to the broker whose `sent` waits for their commit,
    /// oldest first (see `send`).
    pending: VecDeque<Pending>,
}

/// The rooms a connection is in (at most `max_rooms_per_connection`, usually
/// one): a vector sized exactly, where a map would allocate room for four
/// ~100-byte entries on every connection.
#[derive(Default)]
struct MyRooms(Vec<(RoomId, Member)>);

impl MyRooms {
    fn get(&self, room: &RoomId) -> Option<&Member> {
        self.0.iter().find(|(id, _)| id == room).map(|(_, me)| me)
    }
    fn insert(&mut self, room: RoomId, me: Member) {
        match self.0.iter_mut().find(|(id, _)| *id == room) {
            Some(entry) => entry.1 = me,
            None => {
                self.0.reserve_exact(1);
                self.0.push((room, me));
            }
        }
    }
    fn remove(&mut self, room: &RoomId) -> Option<Member> {
        let i = self.0.iter().position(|(id, _)| id == room)?;
        Some(self.0.swap_remove(i).1)
    }
    fn retain(&mut self, mut keep: impl FnMut(&RoomId, &Member) -> bool) {
        self.0.retain(|(id, me)| keep(id, me));
    }
    fn keys(&self) -> impl Iterator<Item = &RoomId> {
        self.0.iter().map(|(id, _)| id)
    }
    fn contains_key(&self, room: &RoomId) -> bool {
        self.get(room).is_some()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Serve one upgraded connection until it closes.
pub(crate) async fn run(app: Arc<App>, socket: Socket) {
    let (tx, rx) = crate::mailbox::mailbox(app.config.limits.mailbox_frames);
    let limits = &app.config.limits;
    let session = Session {
        conn: ConnId::next(),
        socket,
        rx,
        outbox: Outbox { tx, control: Arc::new(Control::default()) },
        identity: None,
        handle: String::new(),
        handle_per_room: false,
        locale: None,
        rooms: MyRooms::default(),
        bucket: TokenBucket::new(limits.messages_per_10s, Duration::from_secs(10)),
        actions: TokenBucket::new(limits.actions_per_10s, Duration::from_secs(10)),
        strikes: 0,
        last_seen: Instant::now(),
        last_flush: Instant::now(),
        hold: None,
        holding: false,
        pending: VecDeque::new(),
        app,
    };
    crate::texts::scope(session.serve()).await;
}

impl Session {
    async fn serve(mut self) {
        tracing::debug!(conn = self.conn.0, "connection opened");
        Metrics::add(&self.app.metrics.connections_opened, 1);
        let app = self.app.clone();
        let limits = &app.config.limits;
        // One timer for two deadlines: `hello` in time, then (for staff) the token's expiry.
        let deadline = tokio::time::sleep(limits.hello_timeout());
        tokio::pin!(deadline);
        let mut deadline_armed = true;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + limits.heartbeat(), limits.heartbeat());
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let control = self.outbox.control.clone();
        let shutdown = self.app.shutdown.clone();
        let mut said_hello = false;

        let end = loop {
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let notice = ServerMessage::Notice(Notice {
                        room: None,
                        kind: NoticeKind::Shutdown,
                        text: t("shutdown"),
                        resources: None,
                        facilitators_alerted: None,
                    });
                    // Best effort: the close frame below says the same to clients that miss it.
                    let _ = Box::pin(self.write(encode(&notice))).await;
                    Err(End::Close(CloseCode::Restarting, "server restarting"))
                }
                code = control.closed() => Err(End::Close(code, close_reason(code))),
                // The answer to a message goes out before the room's frames
                // that follow it (its own copy among them) while it is pending.
                stored = oldest_stored(&mut self.pending), if !self.pending.is_empty() => Box::pin(self.on_stored(stored)).await,
                () = self.rx.ready(), if !self.holding && self.pending.is_empty() => self.on_mailbox().await,
                () = hold_ends(&mut self.hold), if self.holding && self.pending.is_empty() => self.on_hold_end().await,
                incoming = self.socket.next() => Box::pin(self.on_frame(incoming)).await,
                _ = heartbeat.tick() => self.heartbeat(limits).await,
                _ = &mut deadline, if deadline_armed => match self.identity {
                    None => Err(End::Close(CloseCode::Policy, "no hello")),
                    Some(_) => Box::pin(self.staff_token_expired()).await,
                },
            };
            if !said_hello && self.identity.is_some() {
                said_hello = true;
                match self.identity.as_ref().and_then(|i| i.expires_at) {
                    Some(exp) => {
                        let left = Duration::from_secs(exp.saturating_sub(crate::auth::now_s()));
                        deadline.as_mut().reset(tokio::time::Instant::now() + left);
                    }
                    None => deadline_armed = false,
                }
            }
            if let Err(end) = step {
                break end;
            }
        };

        Box::pin(self.finish_pending(matches!(end, End::Close(code, _) if code != CloseCode::TooSlow))).await;
        for room in self.rooms.keys() {
            self.app.hub.leave(room, self.conn);
        }
        self.app.on_duty.unregister(self.conn);
        if let Some(identity) = &self.identity {
            self.app.accounts.remove_if_mut(&identity.account, |_, conns| {
                conns.retain(|(c, _)| *c != self.conn);
                conns.is_empty()
            });
        }
        if let End::Close(code, reason) = end {
            // What the hub queued before asking us to close (a ban's `removed`,
            // perhaps held for coalescing) goes out first; not for a reader too
            // slow to take it.
            if code != CloseCode::TooSlow {
                // Best effort: the close follows either way.
                let _ = Box::pin(self.write_batch()).await;
            }
            Box::pin(self.close(code, reason)).await;
        }
        // tungstenite may end a connection with its last frame still in the
        // wire (the answer to a client's close): send it before the socket goes.
        let timeout = self.app.config.limits.write_timeout();
        let _ = tokio::time::timeout(timeout, Box::pin(tokio::io::AsyncWriteExt::flush(self.socket.get_mut()))).await;
        Metrics::add(&self.app.metrics.connections_closed, 1);
        tracing::debug!(conn = self.conn.0, "connection closed");
    }

    async fn on_frame(&mut self, incoming: Option<Result<Message, tungstenite::Error>>) -> Step {
        let msg = match incoming {
            None => return Err(End::Gone),
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return Err(read_error(e)),
        };
        self.last_seen = Instant::now();
        Metrics::add(&self.app.metrics.frames_in, 1);
        match msg {
            Message::Text(text) => self.on_text(text.as_str()).await,
            Message::Binary(_) => {
                self.error(ErrorBody::new(ErrorCode::BadRequest, t("binary-frame"))).await?;
                Err(End::Close(CloseCode::Policy, "binary frame"))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
            Message::Close(_) => {
                // tungstenite queued the answering close frame (RFC 6455 §5.5.1); send it.
                let timeout = self.app.config.limits.write_timeout();
                // Best effort: the peer is leaving either way.
                let _ = tokio::time::timeout(timeout, self.socket.flush()).await;
                Err(End::Gone)
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Step {
        // Only an object is a request: serde would also read `["ping"]` as one.
        let parsed = match text.trim_start().starts_with('{') {
            true => serde_json::from_str(text),
            false => serde_json::from_str::<ClientMessage>("[]"),
        };
        let request: ClientMessage = match parsed {
            Ok(request) => request,
            Err(e) => return Box::pin(self.on_unparsable(text, e)).await,
        };
        // Only messages are pipelined: any other request waits for them to be
        // stored and answered, so it sees them (an unsend, a report) and its
        // answer comes after theirs.
        if !matches!(request, ClientMessage::Send { .. }) {
            Box::pin(self.settle()).await?;
        }
        let id = request.id().cloned();
        if id.as_ref().is_some_and(|id| !id.is_valid()) {
            let msg = f("request-id-too-long", &[("max", &RequestId::MAX_LEN)]);
            return self.error(ErrorBody::new(ErrorCode::BadRequest, msg)).await;
        }
        if self.identity.is_none() {
            return match request {
                ClientMessage::Hello { id, token, handle, locale } => Box::pin(self.hello(id, token, handle, locale)).await,
                _ => {
                    self.error(ErrorBody::new(ErrorCode::BadRequest, t("hello-first")).with_id(id)).await?;
                    Err(End::Close(CloseCode::Policy, "no hello first"))
                }
            };
        }
        match request {
            ClientMessage::Hello { id, .. } => self.error(ErrorBody::new(ErrorCode::BadRequest, t("hello-again")).with_id(id)).await,
            ClientMessage::Ping { id } => self.reply(&ServerMessage::Pong { id }).await,
            ClientMessage::ListRooms { id } => {
                let rooms = self.app.hub.summaries();
                Box::pin(self.reply(&ServerMessage::Rooms { id, rooms })).await
            }
            ClientMessage::Join { id, room, accept_rules, since } => {
                if let Err(step) = self.throttle_action(&id).await {
                    return step;
                }
                Box::pin(self.join(id, room, accept_rules, since)).await
            }
            ClientMessage::Leave { id, room } => {
                if let Err(step) = self.throttle_action(&id).await {
                    return step;
                }
                if self.rooms.remove(&room).is_some() {
                    self.app.hub.leave(&room, self.conn);
                    self.reply(&ServerMessage::Left { id, room }).await
                } else {
                    self.error(not_member(&room).with_id(id)).await
                }
            }
            ClientMessage::Send { id, room, text, reply_to, cw, staff } => Box::pin(self.send(id, room, text, reply_to, cw, staff)).await,
            ClientMessage::Typing { id, room } => match self.rooms.get(&room) {
                Some(me) => {
                    self.app.hub.typing(&room, &me.member_id);
                    Ok(())
                }
                None => self.error(not_member(&room).with_id(id)).await,
            },
            ClientMessage::Report { id, room, message_id, reason } => Box::pin(self.report(id, room, message_id, reason)).await,
            ClientMessage::RaiseHand { id, room } => self.hand(id, room, true).await,
            ClientMessage::LowerHand { id, room } => self.hand(id, room, false).await,
            ClientMessage::Whisper { id, room, to, text } => Box::pin(self.whisper(id, room, to, text)).await,
            ClientMessage::Moderate { id, room, action } => Box::pin(self.moderate(id, room, action)).await,
            ClientMessage::ResolveReport { id, room, report_id, resolution } => Box::pin(self.resolve_report(id, room, report_id, resolution)).await,
            ClientMessage::ResolveAlert { id, room, alert_id, note } => Box::pin(self.resolve_alert(id, room, alert_id, note)).await,
            ClientMessage::Unsend { id, room, message_id } => Box::pin(self.unsend(id, room, message_id)).await,
            ClientMessage::React { id, room, message_id, reaction, on } => Box::pin(self.react(id, room, message_id, reaction, on)).await,
            ClientMessage::Participation { id, room } => Box::pin(self.participation(id, room)).await,
            ClientMessage::ForgetMe { id } => Box::pin(self.forget_me(id)).await,
        }
    }

    /// A frame that is not a valid request: JSON that does not fit gets
    /// `bad_request`; a frame that is not JSON at all breaks the protocol.
    async fn on_unparsable(&mut self, text: &str, error: serde_json::Error) -> Step {
        let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text) else {
            self.error(ErrorBody::new(ErrorCode::BadRequest, t("one-json-object"))).await?;
            return Err(End::Close(CloseCode::Policy, "not JSON"));
        };
        let (id, kind) = envelope(&object);
        let id = match id {
            Ok(id) => id.filter(RequestId::is_valid),
            Err(()) => {
                let msg = t("request-id-shape");
                return self.error(ErrorBody::new(ErrorCode::BadRequest, msg)).await;
            }
        };
        let message = match &kind {
            Err(()) => t("type-not-string"),
            Ok(None) => t("type-missing"),
            // A known request with an unknown `action` fails the same way inside.
            Ok(Some(kind)) if kind == "moderate" && error.to_string().starts_with("unknown variant") => {
                let action = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v.get("action")?.as_str().map(str::to_owned));
                f("unknown-action", &[("action", &truncate(action.as_deref().unwrap_or(""), 40))])
            }
            Ok(Some(kind)) if error.to_string().starts_with("unknown variant") => f("unknown-type", &[("type", &truncate(kind, 40))]),
            // serde's message names the field and what it expected, never the value.
            Ok(Some(kind)) => f("invalid-request", &[("type", &truncate(kind, 40)), ("detail", &error)]),
        };
        if self.identity.is_none() {
            self.error(ErrorBody::new(ErrorCode::BadRequest, message).with_id(id)).await?;
            return Err(End::Close(CloseCode::Policy, "no hello first"));
        }
        self.error(ErrorBody::new(ErrorCode::BadRequest, message).with_id(id)).await
    }
}

/// The `id` and `type` of a JSON object that is not a valid request: each
/// absent, present, or `Err` when of the wrong kind (an id must be a string
/// or a whole number: 1.0, 1e3 and 2^63 are not).
fn envelope(object: &serde_json::Map<String, serde_json::Value>) -> (Result<Option<RequestId>, ()>, Result<Option<String>, ()>) {
    use serde_json::Value;
    let id = match object.get("id") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(RequestId::Str(s.clone()))),
        Some(Value::Number(n)) => n.as_i64().map(|n| Some(RequestId::Int(n))).ok_or(()),
        Some(_) => Err(()),
    };
    let kind = match object.get("type") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    };
    (id, kind)
}

fn no_such_room(room: &RoomId) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, f("no-such-room", &[("room", &truncate(room.as_str(), 64))]))
}

fn not_member(room: &RoomId) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotMember, f("not-in-room", &[("room", room)]))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn close_reason(code: CloseCode) -> &'static str {
    match code {
        CloseCode::TooSlow => "too slow to keep up; resume to catch up",
        CloseCode::RateLimited => "flooding",
        CloseCode::Banned => "banned",
        CloseCode::Unauthorized => "unauthorized",
        CloseCode::Restarting => "server restarting",
        _ => "",
    }
}

/// A read error: an oversized frame gets 1009; anything else means the socket is gone.
fn read_error(error: tungstenite::Error) -> End {
    match error {
        tungstenite::Error::Capacity(_) => End::Close(CloseCode::TooBig, "frame too big"),
        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => End::Close(CloseCode::Policy, "protocol error"),
        _ => End::Gone,
    }
}

#[cfg(test)]
mod tests {
    /// Every idle connection holds its session future: keep it small.
    #[test]
    fn the_session_future_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let app = crate::App::new(crate::config::Config::new(std::env::temp_dir().join("kindred-size-test"))).unwrap();
        // Never polled: a WebSocket cannot be made without a real upgrade, so measure the
        // state machine through a function with the same body type.
        let fut = async move {
            let socket: super::Socket = unreachable_socket().await;
            super::run(app, socket).await
        };
        let size = size_of_future(&fut);
        eprintln!(
            "session future: {size} bytes; Session {} bytes; WebSocket {} bytes",
            std::mem::size_of::<super::Session>(),
            std::mem::size_of::<super::Socket>()
        );
        // Measured 5,432 bytes before the rare handlers were boxed and the
        // deadlines merged; 2,576 before the session's language became
        // task-local (`texts::scope`, 16 bytes more); 2,608 before the socket
        // had its own write buffer (`wire`: 24 bytes here for no buffer kept
        // between writes, where tungstenite's kept the largest frame); 2,640
        // before sends were pipelined (104 bytes: the pending queue, 32 in
        // `Session`, and its branch of the loop's `select!`; idle memory
        // stayed within its target, docs/benchmarks.md).
        assert!(size <= 2744, "the session future is {size} bytes");
    }

    async fn unreachable_socket() -> super::Socket {
        std::future::pending().await
    }
}
