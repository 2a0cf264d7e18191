//! What flows from the hub and the session to a connection's single writer: responses,
//! events shared by many queues, and the order to close.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::mpsc::error::TrySendError;

use crate::dialect::DialectKind;
use crate::protocol::{Event, Reply, Response};

/// One item in a connection's bounded outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// Boxed: a queue allocates its slots in blocks up front, and a slot is as large
    /// as the largest item, so this keeps an idle connection's queue small.
    Response(Box<Response>),
    /// The answer to a ping, a say or a send (`message_id`), most of all answers: small
    /// enough to queue as it is, without a box allocated and freed for each.
    Ok {
        id: Option<u64>,
        message_id: Option<NonZeroU64>,
    },
    Event(Arc<SharedEvent>),
    /// Write everything queued before this, then close the connection.
    Close,
}

/// An event that may go to many connections: each dialect serializes it at most once,
/// and every member's queue shares those bytes.
#[derive(Debug)]
pub struct SharedEvent {
    event: Event,
    encoded: [OnceLock<Bytes>; DialectKind::COUNT],
}

impl Outbound {
    /// `response` as a queue item, unboxed if it is a plain ok.
    pub fn response(response: Response) -> Self {
        match response.outcome {
            Ok(Reply::Done {}) => Outbound::Ok {
                id: response.id,
                message_id: None,
            },
            Ok(Reply::Sent { message_id }) if message_id > 0 => Outbound::Ok {
                id: response.id,
                message_id: NonZeroU64::new(message_id),
            },
            _ => Outbound::Response(Box::new(response)),
        }
    }
}

impl SharedEvent {
    pub fn new(event: Event) -> Arc<Self> {
        Arc::new(SharedEvent {
            event,
            encoded: Default::default(),
        })
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event's bytes in `kind`'s encoding, computed by the first writer that asks.
    pub fn encoded(&self, kind: DialectKind, encode: impl FnOnce(&Event) -> Bytes) -> &Bytes {
        self.encoded[kind as usize].get_or_init(|| encode(&self.event))
    }
}

/// The hub's handle on one connection: push events without ever waiting, and stop the
/// connection when it cannot keep up.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: Arc<OutQueue>,
}

/// Why and when a session must end, set by whoever notices first (hub or writer), and
/// whether the server is draining. Only the session's own task ever waits on it, so one
/// registered waker is enough: cheaper to poll on every request than a broadcast wait.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    draining: AtomicBool,
    /// Set by the server's sweep when the connection was silent too long.
    expired: Mutex<Option<&'static str>>,
    /// A whole frame arrived since the last sweep.
    active: AtomicBool,
    /// When the sweep last saw the connection active (or it connected), in
    /// milliseconds of the hub's clock.
    last_frame_ms: AtomicU64,
    reason: Mutex<Option<String>>,
    waker: AtomicWaker,
}

/// What a session's read loop is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// End now: the reason is in [`StopSignal::reason`].
    Stop,
    /// The server is shutting down: say so after what is queued, then close.
    Drain,
    /// A timeout ran out: tell the client why, then close.
    Expired(&'static str),
}

impl StopSignal {
    pub fn stop(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.reason.lock()
            && slot.is_none()
        {
            *slot = Some(reason.into());
        }
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Asks the session to tell its client the server is stopping, and to finish.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Records that a whole frame arrived. A flag, not the time: reading the clock for
    /// every frame cost a ping 4% of its instructions, and the sweep that reads this
    /// only needs to know which of its periods the frame came in.
    pub fn touch(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// When a frame last arrived, as seen by the sweep at `now_ms`: at most a sweep
    /// period later than the truth, so an idle deadline is kept late, never early.
    pub fn last_frame_ms(&self, now_ms: u64) -> u64 {
        if self.active.swap(false, Ordering::Relaxed) {
            self.last_frame_ms.store(now_ms, Ordering::Relaxed);
        }
        self.last_frame_ms.load(Ordering::Relaxed)
    }

    /// Starts the idle clock at `now_ms`.
    pub fn reset_idle(&self, now_ms: u64) {
        self.last_frame_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Ends the connection for a timeout, saying `why` to the client.
    pub fn expire(&self, why: &'static str) {
        if let Ok(mut slot) = self.expired.lock()
            && slot.is_none()
        {
            *slot = Some(why);
        }
        self.waker.wake();
    }

    /// Ready with the first signal given; registers the task to be woken otherwise.
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        self.waker.register(cx.waker());
        if self.stopped.load(Ordering::Acquire) {
            Poll::Ready(Signal::Stop)
        } else if self.draining.load(Ordering::Acquire) {
            Poll::Ready(Signal::Drain)
        } else if let Some(why) = self.expired.lock().ok().and_then(|slot| *slot) {
            Poll::Ready(Signal::Expired(why))
        } else {
            Poll::Pending
        }
    }

    /// Completes once the session is stopped.
    pub async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.is_stopped() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|slot| slot.clone())
    }
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the client's outbound queue is full")]
    Full,
    #[error("the connection is closing")]
    Closed,
}

impl Outbox {
    pub fn new(queue: Arc<OutQueue>) -> Self {
        Outbox { queue }
    }

    /// Queues an event without waiting. A full queue means a slow consumer: that
    /// connection alone is stopped, so that nobody else waits for it.
    pub fn push(&self, event: Arc<SharedEvent>) -> Result<(), PushError> {
        match self.queue.push(Outbound::Event(event)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.queue.signal.stop("slow consumer: outbound queue full");
                Err(PushError::Full)
            }
            Err(TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }

    /// Tells the session the server is shutting down.
    pub fn drain(&self) {
        self.queue.signal.drain();
    }

    pub fn signal(&self) -> &StopSignal {
        &self.queue.signal
    }
}

/// A connection's bounded outbound queue: the hub and the session push, the
/// connection's one writer pops. It costs about a hundred bytes while empty, where a
/// tokio mpsc channel allocates a block of 32 slots and cache-padded counters up front
/// (about 1 KiB for every idle connection). Only the session's own task waits on it,
/// so one registered waker is enough.
#[derive(Debug)]
pub struct OutQueue {
    /// The connection's stop and drain signal, kept here so that a connection costs
    /// one shared allocation, not two.
    pub signal: StopSignal,
    state: Mutex<QueueState>,
    waker: AtomicWaker,
    /// The writer is waiting for an item: a push from another task must wake it.
    wants_item: AtomicBool,
    /// The session is waiting for room: the writer must wake it when it takes items.
    wants_room: AtomicBool,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: Items,
    closed: bool,
}

/// The ring's first allocation, in items.
const RING: usize = 16;

/// Queued items, in order: the oldest in `next`, the others in a ring allocated only
/// while more than one is queued. A client that waits for each answer never has more
/// than one, so it costs no allocation per answer, and an idle connection no ring.
#[derive(Debug, Default)]
struct Items {
    next: Option<Outbound>,
    rest: VecDeque<Outbound>,
}

impl Items {
    fn len(&self) -> usize {
        usize::from(self.next.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.next.is_none() && self.rest.is_empty()
    }

    fn push_back(&mut self, item: Outbound) {
        if self.is_empty() {
            self.next = Some(item);
        } else {
            if self.rest.capacity() == 0 {
                // Room for a burst at once (a room's messages, many in flight), rather
                // than growing from 4 to 8 to 16 with a copy each time.
                self.rest.reserve(RING);
            }
            self.rest.push_back(item);
        }
    }

    fn pop_front(&mut self) -> Option<Outbound> {
        let item = self.next.take().or_else(|| self.rest.pop_front());
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
        item
    }
}

impl OutQueue {
    pub fn new(capacity: usize) -> Self {
        OutQueue {
            signal: StopSignal::default(),
            state: Mutex::default(),
            waker: AtomicWaker::new(),
            wants_item: AtomicBool::new(false),
            wants_room: AtomicBool::new(false),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock; recover the state if it ever did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` from the session's own task, unless the queue is full or closed.
    /// It wakes nobody: the session polls its reader before its writer, so the writer
    /// finds the item in the same poll.
    pub fn try_send(&self, item: Outbound) -> Result<(), TrySendError<Outbound>> {
        let mut state = self.state();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        Ok(())
    }

    /// Queues `item` from another task (the hub), waking the writer if it waits.
    pub fn push(&self, item: Outbound) -> Result<(), TrySendError<Outbound>> {
        self.try_send(item)?;
        // A plain load first: the swap is a locked instruction, and the writer is
        // usually busy, not waiting. The queue's lock orders the flag with the item.
        if self.wants_item.load(Ordering::Acquire) && self.wants_item.swap(false, Ordering::AcqRel)
        {
            self.waker.wake();
        }
        Ok(())
    }

    /// Queues `item` from the session's task, waiting for room; `Err` once closed.
    pub async fn send(&self, item: Outbound) -> Result<(), Outbound> {
        let mut item = Some(item);
        std::future::poll_fn(|cx| {
            let Some(next) = item.take() else {
                return Poll::Ready(Ok(()));
            };
            self.waker.register(cx.waker());
            self.wants_room.store(true, Ordering::Release);
            match self.try_send(next) {
                Ok(()) => {
                    self.wants_room.store(false, Ordering::Release);
                    Poll::Ready(Ok(()))
                }
                Err(TrySendError::Closed(back)) => Poll::Ready(Err(back)),
                Err(TrySendError::Full(back)) => {
                    item = Some(back);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The next item without waiting.
    pub fn try_recv(&self) -> Option<Outbound> {
        let item = self.state().items.pop_front();
        if item.is_some()
            && self.wants_room.load(Ordering::Acquire)
            && self.wants_room.swap(false, Ordering::AcqRel)
        {
            self.waker.wake();
        }
        item
    }

    /// The next item, waiting for one; `None` once the queue is closed and drained.
    pub async fn recv(&self) -> Option<Outbound> {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            self.wants_item.store(true, Ordering::Release);
            if let Some(item) = self.try_recv() {
                self.wants_item.store(false, Ordering::Release);
                return Poll::Ready(Some(item));
            }
            if self.state().closed {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    pub fn is_empty(&self) -> bool {
        self.state().items.is_empty()
    }

    /// No more items will be taken; the writer drains what is queued and stops.
    pub fn close(&self) {
        self.state().closed = true;
        self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Reply;

    fn response(id: u64) -> Outbound {
        Outbound::Response(Box::new(Response {
            id: Some(id),
            outcome: Ok(Reply::Done {}),
        }))
    }

    fn id(item: Option<Outbound>) -> Option<u64> {
        match item? {
            Outbound::Response(response) => response.id,
            _ => None,
        }
    }

    #[test]
    fn items_come_out_in_order_however_pushes_and_pops_interleave() {
        let mut items = Items::default();
        items.push_back(response(1));
        items.push_back(response(2));
        assert_eq!(id(items.pop_front()), Some(1));
        items.push_back(response(3));
        assert_eq!(items.len(), 2);
        assert_eq!(id(items.pop_front()), Some(2));
        assert_eq!(id(items.pop_front()), Some(3));
        assert!(items.is_empty());
        assert_eq!(items.rest.capacity(), 0, "an empty queue keeps no ring");
        items.push_back(response(4));
        assert_eq!(items.rest.capacity(), 0, "one item needs no ring");
        assert_eq!(id(items.pop_front()), Some(4));
        assert!(items.pop_front().is_none());
    }

    #[test]
    fn the_queue_refuses_beyond_its_capacity() {
        let queue = OutQueue::new(2);
        assert!(queue.try_send(response(1)).is_ok());
        assert!(queue.try_send(response(2)).is_ok());
        assert!(matches!(
            queue.try_send(response(3)),
            Err(TrySendError::Full(_))
        ));
        assert_eq!(id(queue.try_recv()), Some(1));
        assert!(queue.try_send(response(3)).is_ok());
        assert_eq!(id(queue.try_recv()), Some(2));
        assert_eq!(id(queue.try_recv()), Some(3));
        assert!(queue.is_empty());
    }
}
