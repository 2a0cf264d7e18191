//! Wire formats. Each dialect turns bytes into [`Incoming`] requests and responses and
//! events back into bytes, behind the one [`Dialect`] trait; sessions are generic over
//! it and the hub never sees which one a client speaks.

pub mod lab;
pub mod native;
pub mod text;

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::frame::FrameError;
use crate::protocol::{Envelope, ErrorBody, Event, Reply, Response};

pub use lab::Lab;
pub use native::Native;
pub use text::Text;

/// Which encoding a connection speaks; indexes the per-dialect cache of shared events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectKind {
    Native = 0,
    Text = 1,
    Lab = 2,
}

impl DialectKind {
    pub const COUNT: usize = 3;

    pub fn name(self) -> &'static str {
        match self {
            DialectKind::Native => "native protocol",
            DialectKind::Text => "text dialect",
            DialectKind::Lab => "lab dialect",
        }
    }
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
    /// Something a client shared that is not a request (the lab programs' dict of name,
    /// student id, email...): logged on the console, shown on the dashboard, and
    /// acknowledged.
    Data {
        /// The whole value as Python prints it, cut short.
        summary: String,
        /// A dict's entries, key and value as text, each cut short and only the first
        /// few: what the dashboard shows as columns. Empty for anything but a dict.
        fields: Vec<(String, String)>,
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

    /// Called once the peer has closed its side with `src` still holding bytes: the
    /// last unit, if the dialect can finish it, else a framing error.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        match self.decode(src)? {
            Some(incoming) => Ok(Some(incoming)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }

    /// Bytes the decoder holds for a unit still arriving, beside the bytes buffered for
    /// it: what a connection costs the server while its client takes its time. None
    /// for native frames and text lines; for a pickle, at most
    /// [`lab::scan::COST_FACTOR`] times (the buffered bytes + [`lab::scan::COST_SLACK`]).
    fn held(&self) -> usize {
        0
    }

    fn encode_response(&self, response: &Response, dst: &mut BytesMut);

    fn encode_event(&self, event: &Event, dst: &mut BytesMut);

    /// The event as standalone bytes, for sharing between many connections' queues.
    fn event_bytes(&self, event: &Event) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode_event(event, &mut buf);
        buf.freeze()
    }
}

/// A response with the native protocol's field names, for the dialects that serialize
/// it through serde (native JSON, lab pickles).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum WireResponse<'a> {
    Ok {
        id: Option<u64>,
        ok: bool,
        #[serde(flatten)]
        reply: &'a Reply,
    },
    Err {
        id: Option<u64>,
        ok: bool,
        error: &'a ErrorBody,
    },
}

impl<'a> WireResponse<'a> {
    pub(crate) fn new(response: &'a Response) -> Self {
        match &response.outcome {
            Ok(reply) => WireResponse::Ok {
                id: response.id,
                ok: true,
                reply,
            },
            Err(error) => WireResponse::Err {
                id: response.id,
                ok: false,
                error,
            },
        }
    }
}
