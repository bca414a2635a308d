//! A connection as the hub sees it: its id, its mailbox, and a way to ask
//! it to close.

use kindred_protocol::CloseCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

/// Every connection on this node by account: a service ban or an erasure
/// (`forget_me`), made here or on another node, closes them all.
pub(crate) type Accounts = Arc<dashmap::DashMap<kindred_protocol::AccountId, Vec<(ConnId, Arc<Control>)>>>;

/// One WebSocket connection, unique on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnId(pub u64);

impl ConnId {
    pub(crate) fn next() -> ConnId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Lets the hub ask a connection to close itself, even when its mailbox is full.
///
/// One waiter (the connection's own task) and one event, so an `AtomicWaker`
/// instead of a `Notify`: the session waits on this on every turn of its
/// loop, and a `Notify` locks its waiter list to register and again to drop.
#[derive(Debug, Default)]
pub(crate) struct Control {
    code: AtomicU16,
    waker: futures_util::task::AtomicWaker,
}

impl Control {
    /// Ask the connection to close with `code`; the first request wins.
    pub(crate) fn close(&self, code: CloseCode) {
        if self.code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.waker.wake();
        }
    }

    fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    /// Resolves once `close` was called, with its code.
    pub(crate) fn closed(&self) -> impl std::future::Future<Output = CloseCode> + '_ {
        std::future::poll_fn(move |cx| {
            if let Some(code) = self.requested() {
                return std::task::Poll::Ready(code);
            }
            self.waker.register(cx.waker());
            // A close between the first look and the registration woke nobody: look again.
            match self.requested() {
                Some(code) => std::task::Poll::Ready(code),
                None => std::task::Poll::Pending,
            }
        })
    }
}

/// Where the hub delivers a connection's frames.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    pub tx: crate::mailbox::Sender,
    pub control: Arc<Control>,
}
