//! A connection's outbound queue, bounded in frames and in bytes: the hub and the
//! session push, the connection's one writer pops.
//!
//! The bounds are soft for the hub and hard for the session. A room burst may take a
//! member's queue over them for a moment while its writer catches up: that member is
//! cut only if the queue *stays* over for the write deadline (judged by the server's
//! sweep, [`OutQueue::check`]), or goes over [`HARD_FACTOR`] times a bound at once. The
//! session's own answers never go over: it waits for room, reading no more from its
//! client meanwhile, which is how a client that does not read is made to wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc::error::TrySendError;

use super::close::{CloseReason, Closing};
use super::stats::ConnStats;
use super::{Outbound, SharedEvent, StopSignal};
use crate::protocol::{ErrorBody, ErrorCode, Event};

/// A queue this many times over one of its bounds is cut at once: what one client can
/// make the server hold stays bounded however fast others talk to it.
pub const HARD_FACTOR: usize = 4;

/// How much may wait for one connection's writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Queued items (frames, or text lines).
    pub frames: usize,
    /// Queued bytes, as [`Outbound::weight`] estimates them.
    pub bytes: usize,
}

/// It costs about a hundred bytes while empty, where a tokio mpsc channel allocates a
/// block of 32 slots and cache-padded counters up front (about 1 KiB for every idle
/// connection). Only the session's own task waits on it, so one registered waker is
/// enough.
#[derive(Debug)]
pub struct OutQueue {
    /// The connection's stop and drain signal, kept here so that a connection costs
    /// one shared allocation, not two.
    pub signal: StopSignal,
    /// What the connection carried, counted here for the same reason.
    pub stats: ConnStats,
    state: Mutex<QueueState>,
    waker: AtomicWaker,
    /// The writer is waiting for an item: a push from another task must wake it.
    wants_item: AtomicBool,
    /// The session is waiting for room: the writer must wake it when it takes items.
    wants_room: AtomicBool,
    /// The writer holds bytes the socket would not take, and waits for it.
    blocked: AtomicBool,
    /// Bytes the writer got into a socket that had been full: the sweep's sign that a
    /// blocked writer still makes progress.
    unblocked_bytes: AtomicU64,
    bounds: Bounds,
}

#[derive(Debug, Default)]
struct QueueState {
    items: Items,
    /// What the queued items weigh, in bytes.
    bytes: usize,
    /// Since when (on the server's clock of [`OutQueue::check`]) the queue has been over
    /// a bound without a break; `None` while it is within them.
    over_since: Option<u64>,
    /// Since when the writer has been blocked without writing a byte, and what
    /// [`OutQueue::unblocked_bytes`] said then.
    stalled_since: Option<(u64, u64)>,
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

    fn clear(&mut self) {
        self.next = None;
        self.rest = VecDeque::new();
    }
}

impl QueueState {
    #[inline]
    fn over(&self, bounds: Bounds) -> bool {
        self.items.len() >= bounds.frames || self.bytes >= bounds.bytes
    }

    #[inline]
    fn push(&mut self, item: Outbound) {
        let weight = item.weight();
        self.push_weighed(item, weight);
    }

    #[inline]
    fn push_weighed(&mut self, item: Outbound, weight: usize) {
        self.bytes += weight;
        self.items.push_back(item);
    }
}

impl OutQueue {
    pub fn new(bounds: Bounds) -> Self {
        OutQueue {
            signal: StopSignal::default(),
            stats: ConnStats::default(),
            state: Mutex::default(),
            waker: AtomicWaker::new(),
            wants_item: AtomicBool::new(false),
            wants_room: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            unblocked_bytes: AtomicU64::new(0),
            bounds: Bounds {
                frames: bounds.frames.max(2),
                bytes: bounds.bytes.max(1),
            },
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock; recover the state if it ever did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` from the session's own task, unless the queue is at a bound or
    /// closed. It wakes nobody: the session polls its reader before its writer, so the
    /// writer finds the item in the same poll.
    pub fn try_send(&self, item: Outbound) -> Result<(), TrySendError<Outbound>> {
        let mut state = self.state();
        if state.closed {
            return Err(TrySendError::Closed(item));
        }
        if state.over(self.bounds) {
            return Err(TrySendError::Full(item));
        }
        state.push(item);
        Ok(())
    }

    /// Queues an event from another task (the hub), waking the writer if it waits. It
    /// never waits: a queue [`HARD_FACTOR`] times over a bound is cut instead, alone.
    pub fn push(&self, event: std::sync::Arc<SharedEvent>) -> Result<(), TrySendError<()>> {
        self.push_item(Outbound::Event(event))
    }

    /// Queues any item as [`OutQueue::push`] queues an event: what the hub queues for a
    /// client in one step with others (a reply, then the replay that must follow it
    /// before any live message).
    pub fn push_item(&self, item: Outbound) -> Result<(), TrySendError<()>> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(TrySendError::Closed(()));
            }
            let weight = item.weight();
            if state.items.len() >= self.bounds.frames.saturating_mul(HARD_FACTOR)
                || state.bytes + weight > self.bounds.bytes.saturating_mul(HARD_FACTOR)
            {
                drop(state);
                self.cut(&format!(
                    "{HARD_FACTOR} times over the outbound bounds at once ({} frames or {} bytes \
                     waiting to be read)",
                    self.bounds.frames, self.bounds.bytes
                ));
                return Err(TrySendError::Full(()));
            }
            state.push_weighed(item, weight);
        }
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

    /// The session's last words (a timeout, the server's shutdown, a framing error):
    /// queued after what is there whatever the bounds, then the order to close.
    /// Nothing is queued after.
    pub fn finish(&self, last: Outbound) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.push(last);
        state.push(Outbound::Close);
        state.closed = true;
        drop(state);
        self.waker.wake();
    }

    /// Cuts a slow consumer: what waits for it is dropped, and the writer, once done
    /// with the write under way (whole frames), sends the `slow_consumer` error and
    /// closes. The reader stops at once.
    pub fn cut(&self, why: &str) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.items.clear();
        state.bytes = 0;
        state.over_since = None;
        state.stalled_since = None;
        let event = SharedEvent::new(Event::error(ErrorBody::new(
            ErrorCode::SlowConsumer,
            format!("disconnected as a slow consumer: {why}"),
        )));
        state.push(Outbound::Event(event));
        state.push(Outbound::Close);
        state.closed = true;
        drop(state);
        self.signal
            .cut(Closing::new(CloseReason::SlowConsumer, why.to_owned()));
        self.waker.wake();
    }

    /// The writer is waiting for the socket to take bytes (`true`), or is not.
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// The blocked writer got `n` more bytes into the socket.
    pub fn wrote(&self, n: usize) {
        self.unblocked_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The server's sweep, at `now` on its clock: a connection whose queue has stayed
    /// over a bound, or whose writer has not got a byte into the socket, for `deadline`
    /// is cut.
    pub fn check(&self, now: u64, deadline: u64) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.stalled_since = if self.blocked.load(Ordering::Relaxed) {
            let written = self.unblocked_bytes.load(Ordering::Relaxed);
            match state.stalled_since {
                Some((since, at)) if at == written => Some((since, at)),
                _ => Some((now, written)),
            }
        } else {
            None
        };
        if state.over(self.bounds) {
            state.over_since.get_or_insert(now);
        } else {
            state.over_since = None;
        }
        let late = |since: Option<u64>| since.is_some_and(|t| now.saturating_sub(t) >= deadline);
        let why = if late(state.over_since) {
            format!(
                "{} frames ({} bytes) waited to be read for longer than the write deadline",
                state.items.len(),
                state.bytes,
            )
        } else if late(state.stalled_since.map(|(since, _)| since)) {
            "it read nothing for longer than the write deadline while messages waited".into()
        } else {
            return;
        };
        drop(state);
        self.cut(&format!("{why} ({:.1} s)", deadline as f64 / 1000.0));
    }

    /// The next item without waiting.
    pub fn try_recv(&self) -> Option<Outbound> {
        let item = {
            let mut state = self.state();
            let item = state.items.pop_front();
            if let Some(item) = &item {
                state.bytes -= item.weight();
                if state.over_since.is_some() && !state.over(self.bounds) {
                    state.over_since = None;
                }
            }
            item
        };
        if let Some(item) = &item {
            self.stats.sent(item.messages());
        }
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

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.state().items.len()
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
    use crate::protocol::{Reply, Response};

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

    fn event(text: &str) -> std::sync::Arc<SharedEvent> {
        SharedEvent::new(Event::RoomMessage {
            room: "r".into(),
            from: "f".into(),
            text: text.into(),
            sent_at: String::new(),
            seq: 0,
            replay: false,
        })
    }

    fn frames(frames: usize) -> Bounds {
        Bounds {
            frames,
            bytes: usize::MAX / HARD_FACTOR,
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
    fn the_session_waits_at_a_bound_where_the_hub_goes_over_it() {
        let queue = OutQueue::new(frames(2));
        assert!(queue.try_send(response(1)).is_ok());
        assert!(queue.try_send(response(2)).is_ok());
        assert!(matches!(
            queue.try_send(response(3)),
            Err(TrySendError::Full(_))
        ));
        assert!(queue.push(event("burst")).is_ok(), "a burst goes over");
        assert_eq!(id(queue.try_recv()), Some(1));
        assert_eq!(id(queue.try_recv()), Some(2));
        assert!(queue.try_recv().is_some());
        assert!(queue.is_empty());
        assert!(queue.try_send(response(3)).is_ok());
    }

    #[test]
    fn a_queue_that_stays_over_its_bound_past_the_deadline_is_cut() {
        let queue = OutQueue::new(frames(2));
        for _ in 0..3 {
            queue.push(event("x")).unwrap();
        }
        queue.check(1_000, 500);
        queue.check(1_400, 500);
        assert!(
            queue.push(event("still")).is_ok(),
            "not yet past the deadline"
        );
        // Drained under the bound for a moment: the clock starts again.
        while queue.try_recv().is_some() {}
        for _ in 0..3 {
            queue.push(event("x")).unwrap();
        }
        queue.check(1_600, 500);
        queue.check(2_000, 500);
        assert!(queue.push(event("y")).is_ok());
        queue.check(2_100, 500);
        assert!(queue.push(event("z")).is_err(), "cut");
        let last: Vec<_> = std::iter::from_fn(|| queue.try_recv()).collect();
        assert_eq!(last.len(), 2, "the error, then the close");
        match &last[0] {
            Outbound::Event(e) => {
                assert!(matches!(
                    e.event(),
                    Event::Error {
                        code: ErrorCode::SlowConsumer,
                        ..
                    }
                ))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(last[1], Outbound::Close));
    }

    #[test]
    fn hard_factor_times_over_a_bound_is_cut_at_once() {
        let queue = OutQueue::new(frames(2));
        for _ in 0..2 * HARD_FACTOR {
            queue.push(event("x")).unwrap();
        }
        assert_eq!(
            queue.push(event("one too many")),
            Err(TrySendError::Full(()))
        );
        assert_eq!(
            queue.signal.reason().map(|r| r.reason),
            Some(CloseReason::SlowConsumer)
        );
    }
}
