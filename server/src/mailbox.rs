//! A connection's mailbox: frames the hub queued for one session, bounded.
//!
//! Why not `tokio::sync::mpsc`: its channel allocates about 1.5 KiB up front
//! (a 32-slot block and two cache-padded halves), and most of the time a
//! connection has nothing queued. This one is a `VecDeque` behind a mutex
//! that allocates for what is queued (the reader gives it back once it is
//! quiet), with an `AtomicWaker` for the one reader. The hub pushes with
//! `try_send` and never waits: a full mailbox means the reader is too slow
//! (closed with 4408).
//!
//! Presence, member state, typing, the hand queue and a message's reaction
//! counts are news only in their newest form: a frame of that kind carries
//! a [`Key`], and queuing it drops the older frames it supersedes that the
//! reader has not taken yet. A
//! reader who fell behind gets the latest state rather than every step of
//! it, so one member raising and lowering a hand 4,000 times (or joining and
//! leaving) cannot fill everyone's mailbox; a reader who keeps up still
//! sees every step.

use crate::frame::Frame;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A drained queue keeps at most this many slots when its reader releases it.
const KEEP_SLOTS: usize = 8;

struct Shared {
    state: Mutex<State>,
    reader: AtomicWaker,
}

/// What a frame is news of: its kind, and whom (a hash of room and member,
/// or of the room for the hand queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub kind: Kind,
    pub subject: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `presence`: a member joined or left; says everything about it.
    Presence,
    /// `member_update`: a present member's flags.
    Member,
    /// `typing`.
    Typing,
    /// `hands`: the whole queue.
    Hands,
    /// `reactions`: one message's counts.
    Reactions,
}

impl Key {
    pub(crate) fn new(kind: Kind, subject: impl std::hash::Hash) -> Key {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        Key { kind, subject: BuildHasherDefault::<DefaultHasher>::default().hash_one(subject) }
    }

    /// Whether a reader given this frame no longer needs `older`.
    fn supersedes(&self, older: &Key) -> bool {
        self.subject == older.subject && (self.kind == older.kind || (self.kind == Kind::Presence && older.kind == Kind::Member))
    }
}

struct State {
    frames: VecDeque<(Frame, Option<Key>)>,
    capacity: usize,
    /// The reader is gone: nothing will ever be read again.
    closed: bool,
}

/// The hub's side: cheap to clone, never blocks.
#[derive(Clone)]
pub(crate) struct Sender(Arc<Shared>);

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mailbox::Sender").field("queued", &self.0.state.lock().frames.len()).finish()
    }
}

/// The session's side.
pub(crate) struct Receiver(Arc<Shared>);

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// `capacity` frames are already waiting.
    Full,
    /// The session ended.
    Closed,
}

/// A mailbox holding at most `capacity` frames (at least one).
pub(crate) fn mailbox(capacity: usize) -> (Sender, Receiver) {
    let shared =
        Arc::new(Shared { state: Mutex::new(State { frames: VecDeque::new(), capacity: capacity.max(1), closed: false }), reader: AtomicWaker::new() });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    pub(crate) fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.try_send_keyed(frame, None)
    }

    /// Queue `frame`, first dropping the queued frames its `key` supersedes.
    pub(crate) fn try_send_keyed(&self, frame: Frame, key: Option<Key>) -> Result<(), TrySendError> {
        let was_empty = {
            let mut state = self.0.state.lock();
            if state.closed {
                return Err(TrySendError::Closed);
            }
            if let Some(key) = key.filter(|_| !state.frames.is_empty()) {
                state.frames.retain(|(_, older)| !older.is_some_and(|older| key.supersedes(&older)));
            }
            if state.frames.len() >= state.capacity {
                return Err(TrySendError::Full);
            }
            state.frames.push_back((frame, key));
            state.frames.len() == 1
        };
        // Only a frame into an empty mailbox wakes the reader: it sleeps only
        // after finding the mailbox empty, and reads on until it is empty again.
        if was_empty {
            self.0.reader.wake();
        }
        Ok(())
    }
}

impl Receiver {
    /// The next frame, if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Frame> {
        self.0.state.lock().frames.pop_front().map(|(frame, _)| frame)
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.state.lock().frames.is_empty()
    }

    /// Give back the slots of a drained queue beyond a few. Called by a
    /// reader that is quiet for now; a busy one keeps them, rather than
    /// growing the queue again on every batch.
    pub(crate) fn release_slots(&mut self) {
        let mut state = self.0.state.lock();
        if state.frames.is_empty() && state.frames.capacity() > KEEP_SLOTS {
            state.frames = VecDeque::new();
        }
    }

    /// `Ready` once a frame is queued (it stays queued), or `Pending` with
    /// this task woken when one is.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_empty() {
            return Poll::Ready(());
        }
        self.0.reader.register(cx.waker());
        // A frame queued between the first look and the registration woke nobody: look again.
        if self.is_empty() { Poll::Pending } else { Poll::Ready(()) }
    }

    /// Wait until a frame is queued.
    pub(crate) async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.closed = true;
        state.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(s: &str) -> Frame {
        Frame::from(s.to_owned())
    }

    #[test]
    fn frames_come_out_in_order_up_to_the_capacity() {
        let (tx, mut rx) = mailbox(3);
        for s in ["a", "b", "c"] {
            tx.try_send(frame(s)).unwrap();
        }
        assert_eq!(tx.try_send(frame("d")), Err(TrySendError::Full));
        assert_eq!(rx.try_recv().as_deref(), Some("a"));
        tx.try_send(frame("d")).unwrap();
        let rest: Vec<String> = std::iter::from_fn(|| rx.try_recv()).map(|f| f.to_string()).collect();
        assert_eq!(rest, ["b", "c", "d"]);
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn a_drained_mailbox_keeps_its_slots_until_released() {
        let (tx, mut rx) = mailbox(512);
        for i in 0..100 {
            tx.try_send(frame(&i.to_string())).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(rx.0.state.lock().frames.capacity() >= 100, "a busy reader keeps its slots");
        rx.release_slots();
        assert_eq!(rx.0.state.lock().frames.capacity(), 0);
        // Not while something is queued.
        for i in 0..100 {
            tx.try_send(frame(&i.to_string())).unwrap();
        }
        rx.try_recv();
        rx.release_slots();
        assert_eq!(rx.try_recv().as_deref(), Some("1"));
    }

    #[test]
    fn sending_after_the_reader_is_gone_fails() {
        let (tx, rx) = mailbox(4);
        tx.try_send(frame("a")).unwrap();
        drop(rx);
        assert_eq!(tx.try_send(frame("b")), Err(TrySendError::Closed));
    }

    /// The reader parks until its waker runs. A frame queued while the
    /// reader was between "empty" and "registered" must still wake it.
    #[test]
    fn a_waiting_reader_is_woken_by_every_send_from_another_thread() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::task::{Wake, Waker};
        struct Unpark {
            thread: std::thread::Thread,
            woken: AtomicBool,
        }
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.woken.store(true, Ordering::SeqCst);
                self.thread.unpark();
            }
        }
        // Capacity 1: the writer retries while the reader finds the queue
        // empty and registers, which is when a wakeup can be lost.
        const N: usize = 100_000;
        let (tx, mut rx) = mailbox(1);
        let writer = std::thread::spawn(move || {
            let mut sent = 0;
            while sent < N {
                match tx.try_send(frame(&sent.to_string())) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full) => std::hint::spin_loop(),
                    Err(TrySendError::Closed) => panic!("reader gone"),
                }
            }
        });
        let unpark = Arc::new(Unpark { thread: std::thread::current(), woken: AtomicBool::new(false) });
        let waker = Waker::from(unpark.clone());
        let mut cx = Context::from_waker(&waker);
        for i in 0..N {
            let got = loop {
                unpark.woken.store(false, Ordering::SeqCst);
                if rx.poll_ready(&mut cx).is_ready() {
                    break rx.try_recv().expect("ready means a frame is queued");
                }
                // Parking may end early (a spurious or an earlier unpark); a frame
                // queued for seconds with no wake at all is a lost wakeup.
                let parked = std::time::Instant::now();
                while !unpark.woken.load(Ordering::SeqCst) {
                    std::thread::park_timeout(Duration::from_millis(100));
                    if parked.elapsed() > Duration::from_secs(5) {
                        let queued = !rx.0.state.lock().frames.is_empty();
                        assert!(unpark.woken.load(Ordering::SeqCst) || !queued, "frame {i} was queued but the reader was never woken");
                    }
                }
            };
            assert_eq!(got.as_str(), i.to_string());
        }
        writer.join().unwrap();
    }

    #[test]
    fn newer_state_of_a_member_replaces_what_the_reader_has_not_taken() {
        let (tx, mut rx) = mailbox(8);
        let (hand, sam) = (Key::new(Kind::Member, ("grief", "m_kit")), Key::new(Kind::Member, ("grief", "m_sam")));
        tx.try_send(frame("message 1")).unwrap();
        for i in 0..1000 {
            tx.try_send_keyed(frame(&format!("kit {i}")), Some(hand)).unwrap();
        }
        tx.try_send_keyed(frame("sam"), Some(sam)).unwrap();
        tx.try_send(frame("message 2")).unwrap();
        // Kit leaves: the presence frame makes its queued member state stale too.
        tx.try_send_keyed(frame("kit left"), Some(Key::new(Kind::Presence, ("grief", "m_kit")))).unwrap();
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv()).map(|f| f.to_string()).collect();
        assert_eq!(got, ["message 1", "sam", "message 2", "kit left"]);
        // A reader who keeps up sees every step.
        for i in 0..3 {
            tx.try_send_keyed(frame(&format!("kit {i}")), Some(hand)).unwrap();
            assert_eq!(rx.try_recv().unwrap().as_str(), format!("kit {i}"));
        }
        // A member's state never replaces a presence frame.
        tx.try_send_keyed(frame("kit joined"), Some(Key::new(Kind::Presence, ("grief", "m_kit")))).unwrap();
        tx.try_send_keyed(frame("kit hand"), Some(hand)).unwrap();
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv()).map(|f| f.to_string()).collect();
        assert_eq!(got, ["kit joined", "kit hand"]);
    }
}
