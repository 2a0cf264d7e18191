//! What flows from the hub and the session to a connection's single writer: responses,
//! events shared by many queues, and the order to close.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;
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
    tx: mpsc::Sender<Outbound>,
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
    pub fn new(tx: mpsc::Sender<Outbound>, stop: Arc<StopSignal>) -> Self {
        Outbox { tx, stop }
    }

    /// Queues an event without waiting. A full queue means a slow consumer: that
    /// connection alone is stopped, so that nobody else waits for it.
    pub fn push(&self, event: Arc<SharedEvent>) -> Result<(), PushError> {
        match self.tx.try_send(Outbound::Event(event)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stop.stop("slow consumer: outbound queue full");
                Err(PushError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }
}
