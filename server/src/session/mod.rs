//! One WebSocket connection from `hello` to close: a single task with one
//! `select!` over the socket, the connection's mailbox, heartbeats, the
//! hub's close requests and server shutdown. Reads are decoded, validated,
//! authorized and rate-limited here; broadcast frames arrive through the
//! mailbox already encoded and are written in batches with one flush.

use crate::App;
use crate::metrics::Metrics;
use crate::auth::Identity;
use crate::frame::{Frame, encode};
use crate::hub::{ConnId, Control, Draft, JoinRequest, Outbox};
use crate::ratelimit::TokenBucket;
use crate::rooms::rfc3339;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use futures_util::SinkExt;
use kindred_protocol::{
    ChatMessage, ClientMessage, CloseCode, ErrorBody, ErrorCode, Limits as WireLimits, Member,
    MessageId, Notice, NoticeKind, RequestId, RoomId, Sender, ServerInfo, ServerMessage,
};
use std::sync::Arc;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite;

mod crisis;
mod moderate;

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

pub struct Session {
    app: Arc<App>,
    conn: ConnId,
    socket: WebSocket,
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
pub async fn run(app: Arc<App>, socket: WebSocket) {
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
        app,
    };
    session.serve().await;
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
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + limits.heartbeat(),
            limits.heartbeat(),
        );
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
                        text: "The server is restarting. You will be reconnected in a moment.".into(),
                        resources: None,
                        facilitators_alerted: None,
                    });
                    // Best effort: the close frame below says the same to clients that miss it.
                    let _ = Box::pin(self.write(encode(&notice))).await;
                    Err(End::Close(CloseCode::Restarting, "server restarting"))
                }
                code = control.closed() => Err(End::Close(code, close_reason(code))),
                () = self.rx.ready(), if !self.holding => self.on_mailbox().await,
                () = hold_ends(&mut self.hold), if self.holding => self.on_hold_end().await,
                incoming = self.socket.recv() => Box::pin(self.on_frame(incoming)).await,
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
        Metrics::add(&self.app.metrics.connections_closed, 1);
        tracing::debug!(conn = self.conn.0, "connection closed");
    }

    /// Send a close frame, then let the peer answer it, so unread input does
    /// not turn our close into a reset that could swallow the close frame.
    async fn close(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame { code: code.code(), reason: Utf8Bytes::from_static(reason) };
        let timeout = self.app.config.limits.write_timeout();
        if tokio::time::timeout(timeout, self.socket.send(Message::Close(Some(frame)))).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.socket.recv().await {} };
        // The peer may never answer; the socket is dropped either way.
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    /// A facilitator's token ran out mid-session: say so, and close with 4401
    /// so the client signs in again with a fresh token (and resumes).
    async fn staff_token_expired(&mut self) -> Step {
        let notice = ServerMessage::Notice(Notice {
            room: None,
            kind: NoticeKind::System,
            text: "Your facilitator sign-in has expired. Please sign in again.".into(),
            resources: None,
                        facilitators_alerted: None,
        });
        self.reply(&notice).await?;
        Err(End::Close(CloseCode::Unauthorized, "token expired"))
    }

    async fn write(&mut self, frame: Frame) -> Step {
        let timeout = self.app.config.limits.write_timeout();
        match tokio::time::timeout(timeout, self.socket.send(Message::Text(frame))).await {
            Ok(Ok(())) => {
                Metrics::add(&self.app.metrics.socket_writes, 1);
                Ok(())
            }
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Gone),
        }
    }

    async fn reply(&mut self, msg: &ServerMessage) -> Step {
        self.write(encode(msg)).await
    }

    async fn error(&mut self, body: ErrorBody) -> Step {
        self.app.metrics.error(body.code);
        self.reply(&ServerMessage::Error(body)).await
    }

    /// The mailbox has a frame: written at once, or held if the connection
    /// was written to less than the node's current hold ago (see `coalesce`).
    /// Frames that arrive during the hold go out in the same write: under
    /// fan-out load one `send` per hold instead of one per frame. The socket
    /// is still read meanwhile; on a quiet node the hold is 0.
    async fn on_mailbox(&mut self) -> Step {
        let until = self.last_flush + self.app.coalescing.hold();
        if until <= Instant::now() {
            self.write_batch().await?;
            self.rx.release_slots();
            return Ok(());
        }
        self.hold_until(until);
        Ok(())
    }

    /// A hold is over: write what it gathered. A connection that had frames
    /// waiting is busy, so its next hold starts at once, without waiting to
    /// be woken by the mailbox (one wakeup per write instead of two); one
    /// that had none goes back to waiting on the mailbox.
    async fn on_hold_end(&mut self) -> Step {
        self.holding = false;
        if self.rx.is_empty() {
            self.rx.release_slots();
            return Ok(());
        }
        self.write_batch().await?;
        let hold = self.app.coalescing.hold();
        if hold.is_zero() {
            self.rx.release_slots();
        } else {
            self.hold_until(self.last_flush + hold);
        }
        Ok(())
    }

    /// Start a hold that ends at `until`, on the connection's reusable timer.
    fn hold_until(&mut self, until: Instant) {
        match &mut self.hold {
            Some(timer) => timer.as_mut().reset(until.into()),
            None => self.hold = Some(Box::pin(tokio::time::sleep_until(until.into()))),
        }
        self.holding = true;
    }

    /// Write what the mailbox holds (up to a batch), then flush once.
    async fn write_batch(&mut self) -> Step {
        self.write_with_queued(None).await
    }

    /// Write `reply` (if any) and then what the mailbox holds (up to a
    /// batch), with one flush: a sender's `sent` and its own copy of the
    /// message, already queued by the hub, go out in one `send`.
    async fn write_with_queued(&mut self, reply: Option<Frame>) -> Step {
        let Some(first) = reply.or_else(|| self.rx.try_recv()) else { return Ok(()) };
        let limits = &self.app.config.limits;
        let control = &self.outbox.control;
        let socket = &mut self.socket;
        let rx = &mut self.rx;
        let write = async {
            socket.feed(Message::Text(first)).await?;
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Some(frame) => socket.feed(Message::Text(frame)).await?,
                    None => break,
                }
            }
            socket.flush().await
        };
        let mut write = std::pin::pin!(write);
        // Most writes finish at once (the socket has room): no timer and no
        // close waiter are set up for those.
        let done = match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
            Poll::Ready(result) => result.is_ok(),
            Poll::Pending => tokio::select! {
                result = tokio::time::timeout(limits.write_timeout(), write) => matches!(result, Ok(Ok(()))),
                // The hub gave up on us while the socket was blocked.
                code = control.closed() => return Err(End::Close(code, close_reason(code))),
            },
        };
        if !done {
            return Err(End::Gone);
        }
        self.last_flush = Instant::now();
        Metrics::add(&self.app.metrics.socket_writes, 1);
        Ok(())
    }

    async fn heartbeat(&mut self, limits: &crate::config::Limits) -> Step {
        if self.last_seen.elapsed() > limits.heartbeat() * 2 {
            tracing::debug!(conn = self.conn.0, "no sign of life for two heartbeats");
            return Err(End::Close(CloseCode::GoingAway, "heartbeat timeout"));
        }
        let timeout = limits.write_timeout();
        match tokio::time::timeout(timeout, self.socket.send(Message::Ping(bytes::Bytes::new()))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn on_frame(&mut self, incoming: Option<Result<Message, axum::Error>>) -> Step {
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
                self.error(ErrorBody::new(ErrorCode::BadRequest, "Binary frames are not part of the protocol; send JSON text."))
                    .await?;
                Err(End::Close(CloseCode::Policy, "binary frame"))
            }
            Message::Ping(_) | Message::Pong(_) => Ok(()),
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
        let id = request.id().cloned();
        if id.as_ref().is_some_and(|id| !id.is_valid()) {
            let msg = format!("A request id may have at most {} characters.", RequestId::MAX_LEN);
            return self.error(ErrorBody::new(ErrorCode::BadRequest, msg)).await;
        }
        if self.identity.is_none() {
            return match request {
                ClientMessage::Hello { id, token, handle, locale } => Box::pin(self.hello(id, token, handle, locale)).await,
                _ => {
                    self.error(ErrorBody::new(ErrorCode::BadRequest, "The first frame must be hello.").with_id(id))
                        .await?;
                    Err(End::Close(CloseCode::Policy, "no hello first"))
                }
            };
        }
        match request {
            ClientMessage::Hello { id, .. } => {
                self.error(ErrorBody::new(ErrorCode::BadRequest, "This connection already said hello.").with_id(id))
                    .await
            }
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
            ClientMessage::Send { id, room, text, reply_to, cw, staff } => {
                Box::pin(self.send(id, room, text, reply_to, cw, staff)).await
            }
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
            ClientMessage::ResolveReport { id, room, report_id, resolution } => {
                Box::pin(self.resolve_report(id, room, report_id, resolution)).await
            }
            ClientMessage::ResolveAlert { id, room, alert_id, note } => {
                Box::pin(self.resolve_alert(id, room, alert_id, note)).await
            }
            ClientMessage::ForgetMe { id } => Box::pin(self.forget_me(id)).await,
        }
    }

    /// A frame that is not a valid request: JSON that does not fit gets
    /// `bad_request`; a frame that is not JSON at all breaks the protocol.
    async fn on_unparsable(&mut self, text: &str, error: serde_json::Error) -> Step {
        let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text) else {
            self.error(ErrorBody::new(ErrorCode::BadRequest, "Each frame must be one JSON object.")).await?;
            return Err(End::Close(CloseCode::Policy, "not JSON"));
        };
        let (id, kind) = envelope(&object);
        let id = match id {
            Ok(id) => id.filter(RequestId::is_valid),
            Err(()) => {
                let msg = "A request id must be a string of up to 64 characters or a whole number.";
                return self.error(ErrorBody::new(ErrorCode::BadRequest, msg)).await;
            }
        };
        let message = match &kind {
            Err(()) => "A request's \"type\" must be a string.".to_owned(),
            Ok(None) => "Every request needs a \"type\".".to_owned(),
            // A known request with an unknown `action` fails the same way inside.
            Ok(Some(kind)) if kind == "moderate" && error.to_string().starts_with("unknown variant") => {
                let action = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v.get("action")?.as_str().map(str::to_owned));
                format!("Unknown moderation action '{}'.", truncate(action.as_deref().unwrap_or(""), 40))
            }
            Ok(Some(kind)) if error.to_string().starts_with("unknown variant") => {
                format!("Unknown request type '{}'.", truncate(kind, 40))
            }
            // serde's message names the field and what it expected, never the value.
            Ok(Some(kind)) => format!("Invalid '{}' request: {error}", truncate(kind, 40)),
        };
        if self.identity.is_none() {
            self.error(ErrorBody::new(ErrorCode::BadRequest, message).with_id(id)).await?;
            return Err(End::Close(CloseCode::Policy, "no hello first"));
        }
        self.error(ErrorBody::new(ErrorCode::BadRequest, message).with_id(id)).await
    }

    async fn hello(&mut self, id: Option<RequestId>, token: Option<String>, wished: Option<String>, locale: Option<String>) -> Step {
        let app = self.app.clone();
        let limits = &app.config.limits;
        let identity = match token.as_deref() {
            None | Some("") => Identity {
                account: crate::auth::Auth::new_account(),
                role: kindred_protocol::Role::Member,
                name: None,
                rooms: None,
                expires_at: None,
            },
            Some(token) => match app.auth.verify(token) {
                Ok(identity) => identity,
                Err(e) => {
                    let msg = format!("{e}. Connect without a token to start fresh.");
                    return self.error(ErrorBody::new(ErrorCode::Unauthorized, msg).with_id(id)).await;
                }
            },
        };
        if app.moderation.is_forgotten(&identity.account) {
            let msg = "This session was erased at its owner's request. Connect without a token to start fresh.";
            return self.error(ErrorBody::new(ErrorCode::Unauthorized, msg).with_id(id)).await;
        }
        if let Some(ban) = app.moderation.banned_from_service(&identity.account) {
            let mut body = ErrorBody::new(ErrorCode::Banned, ban.reason.clone().unwrap_or_else(|| "You cannot use this service.".into()));
            body.until = ban.until_text();
            self.error(body.with_id(id)).await?;
            return Err(End::Close(CloseCode::Banned, "banned"));
        }
        // Staff may be called "Sam (facilitator)"; a member may not pass for staff.
        let check = if identity.role.is_staff() { crate::handles::validate_name } else { crate::handles::validate };
        // A chosen handle (wished now, or remembered in the token, or a
        // facilitator's name) is used in every room; without one, a member
        // gets a generated handle per room, not recognisable across rooms.
        let chosen = match wished.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            Some(wished) => match check(wished, limits.min_handle_chars, limits.max_handle_chars) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    // v1.1: a handle that hides or impersonates is a bad request, not a naming slip.
                    let code = match e {
                        crate::handles::HandleError::Invisible | crate::handles::HandleError::StaffWord => ErrorCode::BadRequest,
                        _ => ErrorCode::InvalidHandle,
                    };
                    return self.error(ErrorBody::new(code, format!("That name can't be used: {e}.")).with_id(id)).await;
                }
            },
            None => identity.name.as_deref().and_then(|n| check(n, limits.min_handle_chars, limits.max_handle_chars).ok()),
        };
        let session_token = match (identity.role, token) {
            (kindred_protocol::Role::Member, _) | (_, None) => app.auth.session_token(&identity.account, chosen.as_deref()),
            (_, Some(staff_token)) => staff_token,
        };
        self.handle_per_room = chosen.is_none();
        let handle = chosen.unwrap_or_else(|| app.auth.generated_handle(&identity.account, None));
        let welcome = ServerMessage::Welcome {
            id,
            account: identity.account.clone(),
            handle: handle.clone(),
            role: identity.role,
            session_token,
            heartbeat_s: limits.heartbeat_s,
            limits: WireLimits {
                max_text_chars: limits.max_text_chars,
                messages_per_10s: limits.messages_per_10s,
                max_frame_bytes: limits.max_frame_bytes,
                max_handle_chars: limits.max_handle_chars,
                max_rooms_per_connection: limits.max_rooms_per_connection as u32,
                max_cw_chars: limits.max_cw_chars,
            },
            server: ServerInfo { version: env!("CARGO_PKG_VERSION").into(), node: app.config.node.clone() },
        };
        tracing::debug!(conn = self.conn.0, role = identity.role.as_str(), "hello");
        app.accounts.entry(identity.account.clone()).or_default().push((self.conn, self.outbox.control.clone()));
        // A BCP 47 tag is short and plain; anything else is ignored, not refused.
        self.locale = locale
            .filter(|l| (1..=35).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map(String::into_boxed_str);
        let scope = crate::alerts::Scope::of(&identity);
        self.identity = Some(Box::new(identity));
        self.handle = handle;
        self.reply(&welcome).await?;
        if let Some(scope) = scope {
            // On duty from now: new alerts come through the mailbox, so
            // register before reading the open ones (one raised in between
            // may come twice; clients dedupe by `alert_id`).
            app.on_duty.register(self.conn, scope.clone(), self.outbox.clone());
            for alert in app.moderation.open_alerts(|room| scope.covers(room)) {
                self.reply(&alert.frame()).await?;
            }
        }
        Ok(())
    }

    async fn join(
        &mut self,
        id: Option<RequestId>,
        room: RoomId,
        accept_rules: Option<u32>,
        since: Option<kindred_protocol::Position>,
    ) -> Step {
        // Forget rooms the hub has taken this connection out of, so they do not
        // count against the limit.
        let (hub, conn) = (&self.app.hub, self.conn);
        self.rooms.retain(|id, _| hub.room(id).is_some_and(|r| r.has_conn(conn)));
        let identity = self.identity.as_ref().expect("join is handled after hello");
        if !self.rooms.contains_key(&room) && self.rooms.len() >= self.app.config.limits.max_rooms_per_connection {
            let msg = "You are in as many rooms as one connection may be; leave one first.";
            return self.error(ErrorBody::new(ErrorCode::Forbidden, msg).with_id(id)).await;
        }
        let account = identity.account.clone();
        if let Some(ban) = self.app.moderation.banned(&room, &account) {
            let note = ban.reason.clone().unwrap_or_else(|| "A facilitator removed you from this room.".into());
            let mut body = ErrorBody::new(ErrorCode::Banned, note);
            body.until = ban.until_text();
            return self.error(body.with_id(id)).await;
        }
        let muted = self.app.moderation.muted_until(&room, &account);
        let accept_rules = self.app.remember_rules(&account, &room, accept_rules);
        // Outside its token's scope a staff connection is a member in every
        // way: shown as one, bound by locks and modes, sent nothing for staff.
        let role = if self.may_moderate(&room) { identity.role } else { kindred_protocol::Role::Member };
        let handle = if self.handle_per_room { self.app.auth.generated_handle(&account, Some(&room)) } else { self.handle.clone() };
        let request = JoinRequest {
            conn: self.conn,
            member_id: self.app.auth.member_id(&account, &room),
            account,
            handle,
            role,
            accept_rules,
            since,
            outbox: self.outbox.clone(),
            muted,
        };
        if let Some(target) = self.app.hub.room(&room) {
            if let Err(e) = self.app.broker.activate(&target).await {
                let body = ErrorBody::new(ErrorCode::Unavailable, format!("Could not join now: {e}. Please try again.")).retry_after(1000);
                return self.error(body.with_id(id)).await;
            }
        }
        match self.app.hub.join(&room, request) {
            Ok(joined) => {
                self.rooms.insert(room.clone(), joined.me.clone());
                self.reply(&ServerMessage::Joined {
                    id,
                    room: joined.info,
                    me: joined.me,
                    members: joined.members,
                    history: joined.history,
                    epoch: joined.epoch,
                    seq: joined.seq,
                    recovered: joined.recovered,
                })
                .await?;
                if self.may_moderate(&room) {
                    // A facilitator arriving late sees the reports still open and the queue.
                    for (_, report) in self.app.moderation.open_reports(Some(&room)) {
                        self.reply(&ServerMessage::ReportFiled { room: room.clone(), report }).await?;
                    }
                    if let Some(r) = self.app.hub.room(&room) {
                        self.reply(&ServerMessage::Hands { room: room.clone(), queue: r.hands() }).await?;
                    }
                }
                Ok(())
            }
            Err(refusal) => self.error(ErrorBody::from(refusal).with_id(id)).await,
        }
    }

    async fn send(
        &mut self,
        id: Option<RequestId>,
        room_id: RoomId,
        text: String,
        reply_to: Option<MessageId>,
        cw: Option<String>,
        staff: bool,
    ) -> Step {
        let limits = &self.app.config.limits;
        let Some(me) = self.rooms.get(&room_id).cloned() else {
            let body = if self.app.hub.room(&room_id).is_some() { not_member(&room_id) } else { no_such_room(&room_id) };
            return self.error(body.with_id(id)).await;
        };
        let chars = text.chars().count();
        if text.trim().is_empty() {
            return self.error(ErrorBody::new(ErrorCode::BadRequest, "A message needs some text.").with_id(id)).await;
        }
        if chars > limits.max_text_chars as usize {
            let msg = format!("Messages can be up to {} characters; this one has {chars}.", limits.max_text_chars);
            return self.error(ErrorBody::new(ErrorCode::TooLarge, msg).with_id(id)).await;
        }
        let cw = cw.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if cw.as_ref().is_some_and(|c| c.chars().count() > limits.max_cw_chars as usize) {
            let msg = format!("A content warning can be up to {} characters.", limits.max_cw_chars);
            return self.error(ErrorBody::new(ErrorCode::BadRequest, msg).with_id(id)).await;
        }
        if reply_to.as_ref().is_some_and(|r| r.0.len() > 64) {
            return self.error(ErrorBody::new(ErrorCode::BadRequest, "reply_to is not a message id.").with_id(id)).await;
        }
        if let Err(wait) = self.bucket.take(Instant::now()) {
            let msg = "You're sending messages quickly. Please wait a moment before the next one.";
            return self.refuse_flood(id, wait, msg).await;
        }
        self.strikes = 0;
        let Some(room) = self.app.hub.room(&room_id) else {
            return self.error(not_member(&room_id).with_id(id)).await;
        };
        let account = self.identity.as_ref().expect("send is handled after hello").account.clone();
        if let Some(mute) = self.app.moderation.muted(&room_id, &account) {
            let mut body = ErrorBody::new(ErrorCode::Muted, mute.reason.clone().unwrap_or_else(|| "A facilitator has muted you for now.".into()));
            body.until = mute.until_text();
            if let Some(until) = mute.until {
                body.retry_after_ms = Some((until - Utc::now()).num_milliseconds().max(1) as u64);
            }
            return self.error(body.with_id(id)).await;
        }
        if let Err(refusal) = room.admit_send(&me.member_id, me.role, staff) {
            return self.error(ErrorBody::from(refusal).with_id(id)).await;
        }
        let def = room.def();
        let verdict = self.app.safety.check(&text, &def.language);
        if verdict.blocked {
            let msg = "This message can't be posted here: it contains words this community doesn't allow.";
            return self.error(ErrorBody::new(ErrorCode::ContentBlocked, msg).with_id(id)).await;
        }
        let pii_action = def.pii.unwrap_or(self.app.safety.config().pii);
        if let (Some(kind), crate::safety::PiiAction::Block) = (verdict.pii, pii_action) {
            let msg = format!(
                "This message wasn't posted: it looks like it contains {kind}. To keep you and others safe, please don't share contact details here."
            );
            return self.error(ErrorBody::new(ErrorCode::ContentBlocked, msg).with_id(id)).await;
        }
        let draft = Draft {
            msg: ChatMessage {
                room: room_id.clone(),
                message_id: MessageId(format!("{:016x}", rand::random::<u64>())),
                seq: 0,
                from: Sender { member_id: me.member_id.clone(), handle: me.handle.clone(), role: me.role },
                text,
                ts: rfc3339(Utc::now()),
                reply_to,
                cw,
                staff,
                staff_seq: None,
            },
            account,
        };
        match self.app.broker.append(&room, draft).await {
            Ok(msg) => {
                Metrics::add(&self.app.metrics.messages_in, 1);
                let sent = ServerMessage::Sent { id, room: room_id.clone(), message_id: msg.message_id.clone(), seq: msg.seq };
                // The alert is stored before anything is written back: a sender
                // whose socket fails right now (a closed tab) still reaches
                // whoever is on duty, and a `sent` means the alert is stored too.
                let alerted = match verdict.crisis {
                    true => Some(crisis::raise_alert(self.app.clone(), def.clone(), msg).await),
                    false => None,
                };
                self.write_with_queued(Some(encode(&sent))).await?;
                if let Some(kind) = verdict.pii {
                    let text = format!("Your message looks like it contains {kind}. Please take care sharing details that could identify you or others.");
                    let notice = Notice { room: Some(room_id.clone()), kind: NoticeKind::PiiWarning, text, resources: None, facilitators_alerted: None };
                    self.reply(&ServerMessage::Notice(notice)).await?;
                }
                if let Some(alerted) = alerted {
                    let locale = self.locale.as_deref();
                    let notice = Notice {
                        room: Some(room_id.clone()),
                        kind: NoticeKind::CrisisResources,
                        text: self.app.safety.crisis_text(locale, alerted),
                        resources: Some(self.app.safety.resources_for(locale)),
                        facilitators_alerted: Some(alerted),
                    };
                    self.reply(&ServerMessage::Notice(notice)).await?;
                }
                Ok(())
            }
            Err(e) => {
                let body = ErrorBody::new(ErrorCode::Unavailable, format!("Not sent: {e}. Please try again.")).retry_after(1000);
                self.error(body.with_id(id)).await
            }
        }
    }
}

impl Session {
    /// Answer a request over its rate with `rate_limited`, or close a
    /// connection that keeps flooding (4429) after `flood_close_after` in a row.
    async fn refuse_flood(&mut self, id: Option<RequestId>, wait: Duration, msg: &str) -> Step {
        self.strikes += 1;
        if self.strikes > self.app.config.limits.flood_close_after {
            return Err(End::Close(CloseCode::RateLimited, "flooding"));
        }
        let body = ErrorBody::new(ErrorCode::RateLimited, msg).retry_after(wait.as_millis() as u64 + 1);
        self.error(body.with_id(id)).await
    }

    /// Take a token for a room action (join, leave, hand, report); `Err` is
    /// the step to return instead when there is none.
    async fn throttle_action(&mut self, id: &Option<RequestId>) -> Result<(), Step> {
        match self.actions.take(Instant::now()) {
            Ok(()) => {
                self.strikes = 0;
                Ok(())
            }
            Err(wait) => Err(self.refuse_flood(id.clone(), wait, "That's a lot at once. Please wait a moment and try again.").await),
        }
    }
}

/// Completes when the hold's timer runs out (never, with no timer).
async fn hold_ends(hold: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match hold {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
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
    ErrorBody::new(ErrorCode::NotFound, format!("There is no room '{}'.", truncate(room.as_str(), 64)))
}

fn not_member(room: &RoomId) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotMember, format!("You are not in the room '{room}'; join it first."))
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
fn read_error(error: axum::Error) -> End {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => End::Close(CloseCode::TooBig, "frame too big"),
        Some(tungstenite::Error::Protocol(_)) | Some(tungstenite::Error::Utf8(_)) => {
            End::Close(CloseCode::Policy, "protocol error")
        }
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
            let socket: axum::extract::ws::WebSocket = unreachable_socket().await;
            super::run(app, socket).await
        };
        let size = size_of_future(&fut);
        eprintln!("session future: {size} bytes; Session {} bytes; WebSocket {} bytes", std::mem::size_of::<super::Session>(), std::mem::size_of::<axum::extract::ws::WebSocket>());
        // Measured 5,432 bytes before the rare handlers were boxed and the deadlines merged.
        assert!(size <= 2600, "the session future is {size} bytes");
    }

    async fn unreachable_socket() -> axum::extract::ws::WebSocket {
        std::future::pending().await
    }
}
