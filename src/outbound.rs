//! What flows from the hub and the session to a connection's single writer: responses,
//! events shared by many queues, and the order to close.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::dialect::DialectKind;
use crate::protocol::{Event, Response};

/// One item in a connection's bounded outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// Boxed: a queue allocates its slots in blocks up front, and a slot is as large
    /// as the largest item, so this keeps an idle connection's queue small.
    Response(Box<Response>),
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
    stop: Arc<StopSignal>,
}

/// Why and when a session must end, set by whoever notices first (hub or writer).
#[derive(Debug, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Mutex<Option<String>>,
}

impl StopSignal {
    pub fn stop(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.reason.lock()
            && slot.is_none()
        {
            *slot = Some(reason.into());
        }
        self.token.cancel();
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
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
    pub fn new(queue: Arc<OutQueue>, stop: Arc<StopSignal>) -> Self {
        Outbox { queue, stop }
    }

    /// Queues an event without waiting. A full queue means a slow consumer: that
    /// connection alone is stopped, so that nobody else waits for it.
    pub fn push(&self, event: Arc<SharedEvent>) -> Result<(), PushError> {
        match self.queue.try_send(Outbound::Event(event)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.stop.stop("slow consumer: outbound queue full");
                Err(PushError::Full)
            }
            Err(TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }
}

/// A connection's bounded outbound queue: the hub and the session push, the
/// connection's one writer pops. It costs about a hundred bytes while empty, where a
/// tokio mpsc channel allocates a block of 32 slots and cache-padded counters up front
/// (about 1 KiB for every idle connection).
#[derive(Debug)]
pub struct OutQueue {
    state: Mutex<QueueState>,
    /// Wakes the writer: an item arrived, or the queue closed.
    arrived: Notify,
    /// Wakes a session waiting for room: the writer took items.
    taken: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Outbound>,
    closed: bool,
}

/// Slots kept when the queue empties; a burst's larger ring is given back.
const KEEP_SLOTS: usize = 8;

impl OutQueue {
    pub fn new(capacity: usize) -> Self {
        OutQueue {
            state: Mutex::default(),
            arrived: Notify::new(),
            taken: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock; recover the state if it ever did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` unless the queue is full or closed.
    pub fn try_send(&self, item: Outbound) -> Result<(), TrySendError<Outbound>> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(TrySendError::Closed(item));
            }
            if state.items.len() >= self.capacity {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
        }
        self.arrived.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room; `Err` once the queue is closed.
    pub async fn send(&self, mut item: Outbound) -> Result<(), Outbound> {
        loop {
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                // A wake-up sent between the failed try and this wait is kept by
                // Notify as a permit, so none is missed.
                Err(TrySendError::Full(back)) => item = back,
            }
            self.taken.notified().await;
        }
    }

    /// The next item without waiting.
    pub fn try_recv(&self) -> Option<Outbound> {
        let item = {
            let mut state = self.state();
            let item = state.items.pop_front();
            if state.items.is_empty() && state.items.capacity() > KEEP_SLOTS {
                state.items = VecDeque::new();
            }
            item
        };
        if item.is_some() {
            self.taken.notify_one();
        }
        item
    }

    /// The next item, waiting for one; `None` once the queue is closed and drained.
    pub async fn recv(&self) -> Option<Outbound> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.state().closed {
                return None;
            }
            self.arrived.notified().await;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.state().items.is_empty()
    }

    /// No more items will be taken; the writer drains what is queued and stops.
    pub fn close(&self) {
        self.state().closed = true;
        self.arrived.notify_one();
        self.taken.notify_one();
    }
}
