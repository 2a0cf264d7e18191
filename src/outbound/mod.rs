//! What flows from the hub and the session to a connection's single writer: responses,
//! events shared by many queues, and the order to close; the queue they wait in, and
//! the signal that ends a session.

mod close;
mod queue;
mod replay;
mod signal;
mod stats;

use std::num::NonZeroU64;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

pub use close::{CloseReason, Closing};
pub use queue::{Bounds, HARD_FACTOR, OutQueue};
pub use replay::{Kept, Replay};
pub use signal::{Signal, StopSignal};
pub use stats::{ConnStats, Counts};

use crate::dialect::DialectKind;
use crate::protocol::{Event, Reply, Response};

/// One item in a connection's bounded outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// Boxed: a queue allocates its slots in blocks up front, and a slot is as large
    /// as the largest item, so this keeps an idle connection's queue small.
    Response(Box<Response>),
    /// The answer to a ping, a say (its `seq`) or a send (its `message_id`), most of all
    /// answers: small enough to queue as it is, without a box allocated and freed for
    /// each.
    Ok {
        id: Option<u64>,
        number: Option<OkNumber>,
    },
    Event(Arc<SharedEvent>),
    /// Room messages sent again from the room's history, written one by one by the
    /// writer: they share the history's lines rather than each being an event.
    Replay(Box<Replay>),
    /// Bytes written as they are, outside the dialect: a hint in plain text to a
    /// person who typed at the native port. Boxed, to keep every item as small as
    /// before it was added (24 bytes): the queue moves items by value.
    Raw(Box<[u8]>),
    /// Write everything queued before this, then close the connection.
    Close,
}

/// The one number of a short answer, and which it is, in eight bytes: the top bit
/// set for a `seq`, clear for a `message_id` (both stay far below 2^63).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkNumber(NonZeroU64);

const SEQ_BIT: u64 = 1 << 63;

impl OkNumber {
    fn message_id(id: u64) -> Option<Self> {
        if id & SEQ_BIT != 0 {
            return None;
        }
        NonZeroU64::new(id).map(OkNumber)
    }

    fn seq(seq: u64) -> Option<Self> {
        if seq == 0 || seq & SEQ_BIT != 0 {
            return None;
        }
        NonZeroU64::new(seq | SEQ_BIT).map(OkNumber)
    }

    /// The reply it stands for.
    pub fn reply(self) -> Reply {
        let n = self.0.get();
        if n & SEQ_BIT == 0 {
            Reply::Sent { message_id: n }
        } else {
            Reply::Said { seq: n & !SEQ_BIT }
        }
    }
}

/// An event that may go to many connections: each dialect serializes it at most once,
/// and every member's queue shares those bytes.
#[derive(Debug)]
pub struct SharedEvent {
    event: Event,
    /// About what the event costs in a queue, in bytes (see [`Outbound::weight`]).
    weight: usize,
    encoded: [OnceLock<Bytes>; DialectKind::COUNT],
}

impl Outbound {
    /// `response` as a queue item, unboxed if it is a plain ok.
    pub fn response(response: Response) -> Self {
        match response.outcome {
            Ok(Reply::Done {}) => Outbound::Ok {
                id: response.id,
                number: None,
            },
            Ok(Reply::Sent { message_id }) if OkNumber::message_id(message_id).is_some() => {
                Outbound::Ok {
                    id: response.id,
                    number: OkNumber::message_id(message_id),
                }
            }
            Ok(Reply::Said { seq }) if OkNumber::seq(seq).is_some() => Outbound::Ok {
                id: response.id,
                number: OkNumber::seq(seq),
            },
            _ => Outbound::Response(Box::new(response)),
        }
    }
}

/// Bytes an item takes on the wire and in memory, near enough for the queue's byte
/// bound: its variable parts plus a fixed allowance for the rest of the frame. Shared
/// events count in full in every queue that holds them, as each would write them.
const FRAME_ALLOWANCE: usize = 64;

fn event_weight(event: &Event) -> usize {
    FRAME_ALLOWANCE
        + match event {
            Event::RoomMessage {
                room, from, text, ..
            } => room.len() + from.len() + text.len(),
            Event::Message { from, .. } => from.len(),
            Event::Joined { room, name } | Event::Left { room, name } => room.len() + name.len(),
            Event::RoomClosed { room, by } => room.len() + by.len(),
            Event::Shutdown { reason } => reason.len(),
            Event::Error { message, .. } => message.len(),
            Event::Welcome { server, .. } => server.len(),
            Event::ResumeGap { room, .. } => room.len(),
        }
}

impl Outbound {
    /// Events this item holds: a delivery each.
    pub fn events(&self) -> u64 {
        match self {
            Outbound::Event(_) => 1,
            Outbound::Replay(replay) => replay.lines.len() as u64,
            _ => 0,
        }
    }

    /// Messages the client gets of this item (a replay is many, the order to close
    /// none).
    #[inline]
    pub fn messages(&self) -> u64 {
        match self {
            Outbound::Replay(replay) => replay.lines.len() as u64,
            Outbound::Close => 0,
            _ => 1,
        }
    }

    /// What this item counts for against the queue's byte bound.
    #[inline]
    pub fn weight(&self) -> usize {
        match self {
            Outbound::Ok { .. } | Outbound::Close => FRAME_ALLOWANCE,
            // The lines are the room's history's own: a replay costs its pointers.
            Outbound::Replay(replay) => FRAME_ALLOWANCE + 8 * replay.lines.len(),
            Outbound::Raw(bytes) => bytes.len(),
            Outbound::Event(event) => event.weight,
            Outbound::Response(response) => {
                FRAME_ALLOWANCE
                    + match &response.outcome {
                        Ok(Reply::Inbox(page)) => page
                            .messages
                            .iter()
                            .map(|m| m.text.len() + m.from.len() + FRAME_ALLOWANCE)
                            .sum(),
                        Ok(Reply::Users { users }) => users.len() * FRAME_ALLOWANCE,
                        Ok(Reply::History(page)) => page
                            .messages
                            .iter()
                            .map(|m| m.text.len() + m.from.len() + FRAME_ALLOWANCE)
                            .sum(),
                        Ok(Reply::Joined { members, .. }) => {
                            members.iter().map(|m| m.len() + 4).sum()
                        }
                        Ok(_) => 0,
                        Err(error) => error.message.len(),
                    }
            }
        }
    }
}

const _ITEMS_STAY_SMALL: () = assert!(std::mem::size_of::<Outbound>() == 24);

impl SharedEvent {
    pub fn new(event: Event) -> Arc<Self> {
        Arc::new(SharedEvent {
            weight: event_weight(&event),
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

    /// Queues an event without waiting. A queue far over its bounds means a slow
    /// consumer: that connection alone is cut, so that nobody else waits for it.
    pub fn push(&self, event: Arc<SharedEvent>) -> Result<(), PushError> {
        self.queue.push(event).map_err(|e| match e {
            TrySendError::Full(()) => PushError::Full,
            TrySendError::Closed(()) => PushError::Closed,
        })
    }

    /// Queues any item without waiting, as [`Outbox::push`] does.
    pub fn push_item(&self, item: Outbound) -> Result<(), PushError> {
        self.queue.push_item(item).map_err(|e| match e {
            TrySendError::Full(()) => PushError::Full,
            TrySendError::Closed(()) => PushError::Closed,
        })
    }

    /// Whether no connection holds the queue any more, only this handle: its session
    /// ended without taking it out of the hub.
    pub fn is_orphaned(&self) -> bool {
        Arc::strong_count(&self.queue) == 1
    }

    /// Whether this is the handle of `queue`.
    pub fn is(&self, queue: &OutQueue) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.queue), queue)
    }

    /// The server's sweep: cuts the connection if its queue stayed over a bound for
    /// `deadline` (milliseconds of the server's clock, as `now` is).
    pub fn check(&self, now: u64, deadline: u64) {
        self.queue.check(now, deadline);
    }

    /// Tells the session the server is shutting down.
    pub fn drain(&self) {
        self.queue.signal.drain();
    }

    pub fn signal(&self) -> &StopSignal {
        &self.queue.signal
    }
}
