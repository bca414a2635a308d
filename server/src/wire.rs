//! The socket under a WebSocket: reads pass through; writes go to a buffer
//! of our own, so that a connection holds no write buffer while it idles.
//!
//! tungstenite keeps its own write buffer at the size of the largest frame
//! it ever wrote and never gives the memory back. A `joined` reply carries a
//! room's member list and history (tens of KiB in a room of 100, hundreds in
//! a room of 1,000), and every member of a big room would keep that much for
//! as long as it stays. So tungstenite is set to hand every frame through at
//! once (a write buffer size of 0), the session sends large frames in
//! fragments of [`FRAGMENT`] bytes, and this wire batches the bytes into one
//! write to the socket per flush, as tungstenite's buffer did, and lets the
//! buffer go once it is written.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Frames longer than this go out as a text frame and continuations of at
/// most this many bytes each (RFC 6455 §5.4; every client reassembles them).
pub(crate) const FRAGMENT: usize = 1024;

/// A buffer this big or smaller is kept between flushes; a larger one is freed.
const KEEP: usize = 1024;

pub(crate) struct Wire<S> {
    io: S,
    out: Vec<u8>,
    /// How much of `out` the socket has taken.
    written: usize,
    /// Bytes gathered before a write goes to the socket without waiting for a flush.
    flush_at: usize,
    /// Past this, writes wait for the socket (the mailbox and the write
    /// timeout are what bound a slow client; this bounds the buffer).
    limit: usize,
}

impl<S> Wire<S> {
    pub(crate) fn new(io: S, flush_at: usize, limit: usize) -> Wire<S> {
        Wire { io, out: Vec::new(), written: 0, flush_at, limit: limit.max(flush_at) }
    }

    /// The bytes waiting for the socket.
    fn pending(&self) -> usize {
        self.out.len() - self.written
    }
}

impl<S: AsyncWrite + Unpin> Wire<S> {
    /// Write out what is buffered; then let a large buffer go.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.out.capacity() > KEEP {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Wire<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.pending() >= self.flush_at {
            // Start writing; wait only when the buffer is at its limit.
            match self.poll_drain(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if self.pending() + buf.len() > self.limit => return Poll::Pending,
                _ => {}
            }
        }
        self.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_arrive_in_order_and_the_buffer_goes_after_a_flush() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut wire = Wire::new(near, 16, 1 << 20);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 10_000];
            far.read_exact(&mut got).await.unwrap();
            got
        });
        for chunk in data.chunks(700) {
            wire.write_all(chunk).await.unwrap();
        }
        wire.flush().await.unwrap();
        assert_eq!(wire.out.capacity(), 0, "nothing kept after a large write");
        assert_eq!(reader.await.unwrap(), data);
    }

    #[tokio::test]
    async fn a_full_buffer_waits_for_the_socket() {
        let (near, _far) = tokio::io::duplex(8);
        let mut wire = Wire::new(near, 4, 32);
        let mut accepted = 0;
        while tokio::time::timeout(std::time::Duration::from_millis(50), wire.write_all(&[1; 8])).await.is_ok() {
            accepted += 8;
            assert!(accepted <= 64, "the wire kept taking bytes the socket would not");
        }
    }
}
