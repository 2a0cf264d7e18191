//! The WebSocket handshake on `GET /ws` (RFC 6455, 4.2), done here rather than by
//! axum's extractor so that the socket beneath the WebSocket can be wrapped: the bytes
//! a client has sent of a message not yet complete count against
//! `--max-partial-total`, as on every other connection, where the library would hold
//! up to `--max-frame` per connection unseen.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use axum::http::header::{HeaderName, SEC_WEBSOCKET_VERSION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, WebSocketContext,
};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::either::Either;

use super::partial::Unfinished;

/// The WebSocket a session serves: tungstenite's state of the protocol and the socket
/// beneath, called with the task's own context. The session's reader and writer, two
/// futures of one task, take turns on it through a lock that is never contended.
/// tokio-tungstenite's stream is not used: it serves a reader and a writer that may be
/// in different tasks, so every call registers the caller's waker in proxies for both
/// sides, and `split` puts a lock and a message slot of its own in front of that.
pub(super) struct WebSocket(Mutex<Socket>);

struct Socket {
    context: WebSocketContext,
    io: Counted<Beneath>,
    /// Bytes of the client's frames that tungstenite has made into the messages it
    /// returned, reckoned as if each came in one frame with the shortest header. That
    /// is never more than it took, so when it equals what was read from the socket,
    /// tungstenite holds nothing unread (see [`WebSocket::poll_read`]).
    taken: u64,
    /// Whether a read must go to tungstenite even when it holds nothing: a ping it
    /// answers is sent by its next call, and after a close the reckoning is off. So
    /// does every read while a write is blocked, so that what tungstenite owes the
    /// client (a pong) goes as soon as the socket takes it.
    call_next: bool,
}

/// The socket as tungstenite's blocking reads and writes want it, for one call: a
/// socket not ready is `WouldBlock`, and the task is woken when it is.
struct Io<'a, 'b> {
    io: &'a mut Counted<Beneath>,
    cx: &'a mut Context<'b>,
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl WebSocket {
    fn new(io: Counted<Beneath>, config: WebSocketConfig) -> Self {
        let context = WebSocketContext::new(Role::Server, Some(config));
        WebSocket(Mutex::new(Socket {
            context,
            io,
            taken: 0,
            call_next: false,
        }))
    }

    fn with<R>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocketContext, &mut Io<'_, '_>) -> R,
    ) -> R {
        let mut socket = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Socket { context, io, .. } = &mut *socket;
        f(context, &mut Io { io, cx })
    }

    /// The next message; `None` once the connection has closed.
    ///
    /// When tungstenite holds nothing unread and the plain socket has nothing new, the
    /// read ends here: tungstenite would zero its read buffer and try the socket only
    /// to find it empty, once after every message.
    pub fn poll_read(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, tungstenite::Error>>> {
        let mut socket = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Socket {
            context,
            io,
            taken,
            call_next,
        } = &mut *socket;
        if !*call_next
            && *taken == io.total
            && !io.write_blocked
            && let Either::Left(drained) = &io.inner
            && drained.prefix.is_empty()
            && drained.socket.poll_read_ready(cx).is_pending()
        {
            return Poll::Pending;
        }
        *call_next = false;
        match context.read(&mut Io { io, cx }) {
            Ok(message) => {
                let payload = match &message {
                    Message::Text(text) => text.len(),
                    Message::Binary(bytes) | Message::Pong(bytes) => bytes.len(),
                    Message::Ping(bytes) => {
                        *call_next = true;
                        bytes.len()
                    }
                    Message::Close(_) | Message::Frame(_) => {
                        *call_next = true;
                        0
                    }
                };
                *taken += client_frame_len(payload);
                Poll::Ready(Some(Ok(message)))
            }
            Err(e) if would_block(&e) => Poll::Pending,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(None)
            }
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    /// Writes `messages` (taking them) and flushes, `sent` told of each as it is taken.
    /// tungstenite buffers what it is given up to its write buffer size, so a batch goes
    /// out in one write; a write the socket would not take whole stays buffered and
    /// the flush finishes it on a later poll.
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        messages: &mut Vec<Message>,
        mut sent: impl FnMut(&Message),
    ) -> Poll<Result<(), tungstenite::Error>> {
        self.with(cx, |context, io| {
            for message in messages.drain(..) {
                sent(&message);
                match context.write(io, message) {
                    Err(e) if !would_block(&e) => return Poll::Ready(Err(e)),
                    _ => {}
                }
            }
            match context.flush(io) {
                Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
                Err(e) if would_block(&e) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            }
        })
    }

    /// Sends the close (once, whatever `frame` holds on later polls) and flushes.
    pub fn poll_close(
        &self,
        cx: &mut Context<'_>,
        frame: &mut Option<CloseFrame>,
    ) -> Poll<Result<(), tungstenite::Error>> {
        self.with(cx, |context, io| match context.close(io, frame.take()) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) if would_block(&e) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        })
    }
}

/// The bytes of a client's frame with `payload` bytes: the shortest header for its
/// length, and the mask key every client frame carries (RFC 6455, 5.2).
fn client_frame_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    (header + 4 + payload) as u64
}

impl io::Read for Io<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl io::Write for Io<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = Pin::new(&mut *self.io).poll_write(self.cx, buf);
        self.io.write_blocked = written.is_pending();
        match written {
            Poll::Ready(written) => written,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = Pin::new(&mut *self.io).poll_flush(self.cx);
        self.io.write_blocked = flushed.is_pending();
        match flushed {
            Poll::Ready(flushed) => flushed,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// What a WebSocket runs on: a plain connection's own socket, taken back from hyper
/// after the upgrade with what hyper had read past the request in front of it, so that
/// a read that empties the socket can say so (see [`Drained`]); hyper's stream as it is
/// for any other (TLS).
pub(super) type Beneath = Either<Drained, TokioIo<Upgraded>>;

/// The socket beneath an upgraded connection, as [`Beneath`] says.
fn beneath(upgraded: Upgraded) -> Beneath {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Either::Left(Drained {
            prefix: parts.read_buf,
            socket: parts.io.into_inner(),
        }),
        Err(upgraded) => Either::Right(TokioIo::new(upgraded)),
    }
}

/// A socket whose read that does not fill the buffer also clears its readiness, as the
/// native sessions' reads do (`session::read_ready`): the WebSocket library reads again
/// after every message, and that read would otherwise cost a `recv` that finds
/// nothing, one per request. What hyper had read past the request is read first.
pub(super) struct Drained {
    prefix: Bytes,
    socket: TcpStream,
}

impl AsyncRead for Drained {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let socket = &self.socket;
        loop {
            std::task::ready!(socket.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            let mut got = 0;
            let read = socket.try_io(Interest::READABLE, || {
                got = socket.try_read(unfilled)?;
                if got > 0 && got < room {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(got)
                }
            });
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got == 0 => continue,
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
                _ => {
                    buf.advance(got);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for Drained {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// A request to upgrade to a WebSocket, its headers checked.
pub(super) struct WsRequest {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for WsRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        if parts.method != Method::GET {
            return Err(
                (StatusCode::METHOD_NOT_ALLOWED, "a WebSocket opens with GET").into_response(),
            );
        }
        if !has_token(&parts.headers, CONNECTION, "upgrade")
            || !has_token(&parts.headers, UPGRADE, "websocket")
        {
            return Err((
                StatusCode::BAD_REQUEST,
                "this address is a WebSocket (ws://HOST:PORT/ws): open it with a WebSocket client",
            )
                .into_response());
        }
        if parts
            .headers
            .get(SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            let mut refusal = (
                StatusCode::UPGRADE_REQUIRED,
                "only WebSocket version 13 is spoken here",
            )
                .into_response();
            refusal
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return Err(refusal);
        }
        let Some(key) = parts.headers.get(SEC_WEBSOCKET_KEY) else {
            return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing").into_response());
        };
        let accept = HeaderValue::try_from(derive_accept_key(key.as_bytes()))
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err((
                StatusCode::BAD_REQUEST,
                "this connection cannot be upgraded",
            )
                .into_response());
        };
        Ok(WsRequest { accept, on_upgrade })
    }
}

impl WsRequest {
    /// Answers 101 and has `serve` run the WebSocket once the connection is handed
    /// over (told when a message is complete through its share of the budget);
    /// `spawn` runs that future.
    pub fn accept<F>(
        self,
        config: WebSocketConfig,
        unfinished: Unfinished,
        spawn: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>),
        serve: impl FnOnce(WebSocket, Arc<Unfinished>) -> F + Send + 'static,
    ) -> Response
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        spawn(Box::pin(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let unfinished = Arc::new(unfinished);
                    let io = Counted {
                        inner: beneath(upgraded),
                        unfinished: Arc::clone(&unfinished),
                        total: 0,
                        write_blocked: false,
                    };
                    serve(WebSocket::new(io, config), unfinished).await;
                }
                Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
            }
        }));
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_ACCEPT, self.accept);
        response
    }
}

/// Whether the comma-separated header `name` lists `token` (in any case).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// The upgraded connection, counting what is read against the budget for unfinished
/// messages; a read that takes the server over it fails with [`OverBudget`].
pub(super) struct Counted<T> {
    inner: T,
    unfinished: Arc<Unfinished>,
    /// Bytes read in all.
    total: u64,
    /// Whether the last write or flush found the socket full.
    write_blocked: bool,
}

/// The read error of a WebSocket that took the server over `--max-partial-total`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server holds as much of unfinished messages as it allows ({0} bytes, --max-partial-total)"
)]
pub(super) struct OverBudget(pub usize);

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.total += read as u64;
        if read > 0 && !self.unfinished.read(read) {
            let limit = self.unfinished.limit();
            return Poll::Ready(Err(io::Error::other(OverBudget(limit))));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
