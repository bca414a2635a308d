//! Writing to the socket: replies and errors, mailbox frames in batches
//! (held briefly when the node is busy, see `coalesce`), heartbeats, and
//! the closing handshake.

use super::*;

impl Session {
    /// Send a close frame, then let the peer answer it, so unread input does
    /// not turn our close into a reset that could swallow the close frame.
    pub(super) async fn close(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame { code: code.code().into(), reason: Utf8Bytes::from_static(reason) };
        let timeout = self.app.config.limits.write_timeout();
        if tokio::time::timeout(timeout, self.socket.send(Message::Close(Some(frame)))).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        // The peer may never answer; the socket is dropped either way.
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }

    pub(super) async fn write(&mut self, frame: Frame) -> Step {
        let timeout = self.app.config.limits.write_timeout();
        let socket = &mut self.socket;
        let send = async {
            feed(socket, frame).await?;
            socket.flush().await
        };
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok(())) => {
                Metrics::add(&self.app.metrics.socket_writes, 1);
                Ok(())
            }
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Gone),
        }
    }

    /// Answer a request, after the answers to the messages before it.
    pub(super) async fn reply(&mut self, msg: &ServerMessage) -> Step {
        Box::pin(self.settle()).await?;
        self.write(encode(msg)).await
    }

    pub(super) async fn error(&mut self, body: ErrorBody) -> Step {
        self.app.metrics.error(body.code);
        self.reply(&ServerMessage::Error(body)).await
    }

    /// The mailbox has a frame: written at once, or held if the connection
    /// was written to less than the node's current hold ago (see `coalesce`).
    /// Frames that arrive during the hold go out in the same write: under
    /// fan-out load one `send` per hold instead of one per frame. The socket
    /// is still read meanwhile; on a quiet node the hold is 0.
    pub(super) async fn on_mailbox(&mut self) -> Step {
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
    pub(super) async fn on_hold_end(&mut self) -> Step {
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
    pub(super) fn hold_until(&mut self, until: Instant) {
        match &mut self.hold {
            Some(timer) => timer.as_mut().reset(until.into()),
            None => self.hold = Some(Box::pin(tokio::time::sleep_until(until.into()))),
        }
        self.holding = true;
    }

    /// Write what the mailbox holds (up to a batch), then flush once.
    pub(super) async fn write_batch(&mut self) -> Step {
        self.write_with_queued(None).await
    }

    /// Write `replies` (if any) and then what the mailbox holds (up to a
    /// batch), with one flush: a sender's `sent` and its own copy of the
    /// message, already queued by the hub, go out in one `send`.
    pub(super) async fn write_with_queued(&mut self, replies: impl IntoIterator<Item = Frame, IntoIter: Send>) -> Step {
        let mut replies = replies.into_iter();
        let Some(first) = replies.next().or_else(|| self.rx.try_recv()) else { return Ok(()) };
        let limits = &self.app.config.limits;
        let control = &self.outbox.control;
        let socket = &mut self.socket;
        let rx = &mut self.rx;
        let write = async {
            feed(socket, first).await?;
            for frame in replies {
                feed(socket, frame).await?;
            }
            for _ in 1..MAX_BATCH {
                match rx.try_recv() {
                    Some(frame) => feed(socket, frame).await?,
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

    pub(super) async fn heartbeat(&mut self, limits: &crate::config::Limits) -> Step {
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
}

/// Queue a text frame on the socket; a large one in fragments, so that
/// tungstenite's own buffer never grows past one fragment (see `wire`).
async fn feed(socket: &mut Socket, frame: Frame) -> Result<(), tungstenite::Error> {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    if frame.len() <= crate::wire::FRAGMENT {
        return socket.feed(Message::Text(frame)).await;
    }
    let bytes = bytes::Bytes::from(frame);
    for start in (0..bytes.len()).step_by(crate::wire::FRAGMENT) {
        let end = (start + crate::wire::FRAGMENT).min(bytes.len());
        let opcode = OpCode::Data(if start == 0 { Data::Text } else { Data::Continue });
        socket.feed(Message::Frame(tungstenite::protocol::frame::Frame::message(bytes.slice(start..end), opcode, end == bytes.len()))).await?;
    }
    Ok(())
}

/// Completes when the hold's timer runs out (never, with no timer).
pub(super) async fn hold_ends(hold: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match hold {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}
