//! Wire formats. Each dialect turns bytes into [`Incoming`] requests and responses and
//! events back into bytes, behind the one [`Dialect`] trait; sessions are generic over
//! it and the hub never sees which one a client speaks.

pub mod native;

use bytes::{Bytes, BytesMut};

use crate::frame::FrameError;
use crate::protocol::{Envelope, ErrorBody, Event, Response};

pub use native::Native;

/// Which encoding a connection speaks; indexes the per-dialect cache of shared events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectKind {
    Native = 0,
}

impl DialectKind {
    pub const COUNT: usize = 1;
}

/// One decoded unit of client input.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request(Envelope),
    /// Well framed but not a valid request: answered with this error, and the
    /// connection stays open.
    Invalid {
        id: Option<u64>,
        error: ErrorBody,
    },
}

/// A wire format. Decoding and encoding are pure and synchronous; only the session
/// touches the socket.
pub trait Dialect: Clone + Send + Sync + 'static {
    const KIND: DialectKind;

    /// Takes one unit off the front of `src`; `Ok(None)` until enough bytes are there.
    /// An error is a framing error: the stream cannot be trusted any more, and the
    /// connection is closed.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError>;

    fn encode_response(&self, response: &Response, dst: &mut BytesMut);

    fn encode_event(&self, event: &Event, dst: &mut BytesMut);

    /// The event as standalone bytes, for sharing between many connections' queues.
    fn event_bytes(&self, event: &Event) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode_event(event, &mut buf);
        buf.freeze()
    }
}
