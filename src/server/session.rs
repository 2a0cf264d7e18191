//! One connection: a reader that decodes and serves requests in order, run beside the
//! connection's single writer (`writer.rs`), which the reader feeds through the
//! connection's bounded queue.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use crate::backend::Later;
use crate::dialect::{Dialect, DialectKind, Incoming};
use crate::frame::FrameError;
use crate::outbound::{
    Bounds, CloseReason, Closing, OutQueue, Outbound, SharedEvent, Signal, StopSignal,
};
use crate::protocol::{ClientId, Envelope, ErrorBody, ErrorCode, Event, Reply, Request, Response};
use crate::service::{Sending, Served, Services, SessionState};

use super::partial::{Held, PartialBudget};
use super::rate::RateLimit;
use super::registry::{Registry, Transport};
use super::writer::write_loop;
use std::net::SocketAddr;

/// After the reader is done, the writer gets this long to flush what is queued.
pub(super) const FLUSH_GRACE: Duration = Duration::from_secs(5);
/// Most bytes taken from the socket per read.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Where reads land first: one buffer per thread, shared by every session on it.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(READ_CHUNK));
}

/// Reads what the socket has into `scratch`, emptied first. `Ok(0)` is the end of the
/// stream.
///
/// A read that did not fill the buffer emptied the socket, so it also clears the
/// socket's readiness, as tokio's own `poll_read` does: otherwise the next wait would
/// return at once and cost a second `recv` that finds nothing, one per request when a
/// client waits for each answer. Data that arrives after the read raises a new
/// readiness event, which tokio does not let the clearing erase.
fn read_ready(socket: &OwnedReadHalf, scratch: &mut BytesMut) -> std::io::Result<usize> {
    scratch.clear();
    // Moves the emptied buffer back to the start of its allocation; allocates nothing
    // unless a dialect still holds bytes split off it.
    scratch.reserve(READ_CHUNK);
    let mut got = 0;
    let drained = socket.as_ref().try_io(Interest::READABLE, || {
        got = socket.try_read_buf(scratch)?;
        if got > 0 && got < READ_CHUNK {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(got)
        }
    });
    match drained {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// How far serving the complete units in a buffer got.
pub(super) enum Step {
    /// All served: more bytes are needed.
    More,
    /// The session must end, for this reason.
    End(Closing),
    /// A unit must wait (see [`Session::serve_now`]); what follows it is still buffered.
    Wait(Slow),
}

/// What every connection of a server shares, beyond the services.
#[derive(Debug)]
pub(super) struct Shared {
    pub partial: PartialBudget,
    /// Where the text dialect listens, for the hint to a person who typed at the
    /// native port.
    pub text_addr: Option<SocketAddr>,
    /// The connections as the admin pages show them.
    pub registry: Registry,
    /// Requests per second each connection may have served (`--rate`).
    pub rate: Option<RateLimit>,
}

pub(super) struct Session {
    pub client_id: ClientId,
    pub services: Arc<Services>,
    pub bounds: Bounds,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
}

impl Session {
    /// Serves the connection until it ends; cleans up the client in the hub and logs
    /// why it ended.
    pub async fn run<D: Dialect>(self, stream: TcpStream, peer: SocketAddr, dialect: D) {
        let (read_half, write_half) = stream.into_split();
        let transport = match D::KIND {
            DialectKind::Native => Transport::Native,
            DialectKind::Text => Transport::Text,
            DialectKind::Lab => Transport::Lab,
        };
        let (queue, listed) = self.open(transport, peer);
        let stop = &queue.signal;

        let mut state = SessionState::new(self.client_id);
        let writer = write_loop(write_half, dialect.clone(), &queue, stop);
        tokio::pin!(writer);
        // Biased: the reader queues its responses without waking the task, so the
        // writer must be polled after it, in the same round.
        let (reason, writer_done) = tokio::select! {
            biased;
            reason = self.read_loop(read_half, dialect, &queue, stop, &mut state) => (reason, false),
            () = &mut writer => (ended(stop), true),
        };
        let writer = (!writer_done).then_some(writer);
        self.end(&state, &queue, listed, reason, writer, "").await;
    }

    /// Reads, decodes and serves until the connection should end; returns why.
    async fn read_loop<D: Dialect>(
        &self,
        socket: OwnedReadHalf,
        mut dialect: D,
        tx: &OutQueue,
        stop: &StopSignal,
        state: &mut SessionState,
    ) -> Closing {
        let queue = Queue { tx, stop };
        // Only the bytes of a unit not yet complete stay with the connection: reads land
        // in the thread's scratch buffer, so a waiting connection holds no read buffer
        // (an idle connection's 8 KiB buffer was most of its memory).
        let mut buf = BytesMut::new();
        let mut held = Held::new(&self.shared.partial);
        loop {
            let read = tokio::select! {
                biased;
                // poll_read_ready, not readable(): its future is a closure over one
                // reference, where readable()'s would add 168 bytes to every session.
                ready = std::future::poll_fn(|cx| socket.as_ref().poll_read_ready(cx)) => {
                    ready.and_then(|()| self.read_now(&socket, &mut buf, &mut dialect, state, &queue))
                }
                signal = std::future::poll_fn(|cx| stop.poll_signal(cx)) => return signalled(signal, tx, stop),
            };
            // The slow path is boxed before it is awaited, so that the task keeps room
            // only for the box, not also for what it was made from; and scoped, so that
            // the box (which borrows `buf`) is gone after it.
            let ended = {
                let later = match read {
                    Ok(Some(Step::More)) => None,
                    Ok(Some(Step::End(reason))) => return reason,
                    // Most of what waits is a send: its answer is awaited here, a
                    // future of two words, where boxing the general path cost an
                    // allocation per message. The step after it is matched here again
                    // rather than fed back to this match: that kept a step in the task
                    // across the wait, 130 more bytes in every idle session.
                    Ok(Some(Step::Wait(Slow::Send { id, pending }))) => {
                        let outcome = self.services.sent(pending.await);
                        let step = match self.respond(id, outcome, state, &queue) {
                            Ok(None) => self.serve_buffered(&mut buf, &mut dialect, state, &queue),
                            Ok(Some(reason)) => return reason,
                            Err(slow) => Step::Wait(slow),
                        };
                        match step {
                            Step::More => None,
                            Step::End(reason) => return reason,
                            Step::Wait(slow) => Some(Box::pin(self.serve_waiting(
                                slow,
                                &mut buf,
                                &mut dialect,
                                state,
                                &queue,
                            ))),
                        }
                    }
                    Ok(Some(Step::Wait(slow))) => Some(Box::pin(self.serve_waiting(
                        slow,
                        &mut buf,
                        &mut dialect,
                        state,
                        &queue,
                    ))),
                    Ok(None) => {
                        return Box::pin(self.finish(&mut buf, &mut dialect, state, &queue)).await;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    Err(e) => return Closing::io("read failed", &e),
                };
                match later {
                    Some(later) => later.await,
                    None => None,
                }
            };
            if let Some(reason) = ended {
                return reason;
            }
            // An emptied buffer still holds its allocation, which an idle connection
            // should not.
            if buf.is_empty() {
                buf = BytesMut::new();
            }
            if !held.set(buf.len() + dialect.held()) {
                return self.over_partial_budget(tx);
            }
        }
    }

    /// Ends a connection whose unfinished message would take the server over its
    /// budget for them.
    pub(super) fn over_partial_budget(&self, tx: &OutQueue) -> Closing {
        let why = format!(
            "the server holds as much of unfinished messages as it allows ({} bytes, \
             --max-partial-total); yours was dropped",
            self.shared.partial.limit()
        );
        let event = Event::error(ErrorBody::new(ErrorCode::TooLarge, why));
        tx.finish(Outbound::Event(SharedEvent::new(event)));
        self.services.metrics.error(ErrorCode::TooLarge);
        Closing::new(
            CloseReason::TooLarge,
            "over the server's budget for unfinished messages",
        )
    }

    /// Reads what the socket has and serves every complete unit that needs no waiting.
    /// When nothing of an earlier read is left over, the units are served straight
    /// from the thread's scratch buffer, and only what remains is copied to `buf`: a
    /// client that sends whole requests so costs no allocation per read. `Ok(None)` is
    /// the end of the stream.
    fn read_now<D: Dialect>(
        &self,
        socket: &OwnedReadHalf,
        buf: &mut BytesMut,
        dialect: &mut D,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> std::io::Result<Option<Step>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let n = read_ready(socket, scratch)?;
            if n == 0 {
                return Ok(None);
            }
            queue.tx.stats.read(n);
            let step = if buf.is_empty() {
                let step = self.serve_buffered(scratch, dialect, state, queue);
                buf.extend_from_slice(scratch);
                step
            } else {
                buf.extend_from_slice(scratch);
                self.serve_buffered(buf, dialect, state, queue)
            };
            Ok(Some(step))
        })
    }

    /// Serves a unit that must wait, then the units buffered after it; `Some(reason)`
    /// when the session must end.
    pub(super) async fn serve_waiting<D: Dialect>(
        &self,
        mut slow: Slow,
        buf: &mut BytesMut,
        dialect: &mut D,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> Option<Closing> {
        loop {
            if let Some(reason) = self.serve_later(slow, state, queue).await {
                return Some(reason);
            }
            slow = match self.serve_buffered(buf, dialect, state, queue) {
                Step::More => return None,
                Step::End(reason) => return Some(reason),
                Step::Wait(slow) => slow,
            };
        }
    }

    /// Serves the complete units at the front of `src` until one must wait.
    pub(super) fn serve_buffered<D: Dialect>(
        &self,
        src: &mut BytesMut,
        dialect: &mut D,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> Step {
        loop {
            if let Some(limit) = self.shared.rate {
                let now = tokio::time::Instant::now();
                if let Some(until) = limit.wait(state.rate_clock, now) {
                    return Step::Wait(Slow::Throttle(until));
                }
            }
            match dialect.decode(src) {
                Ok(Some(incoming)) => {
                    if let Some(limit) = self.shared.rate {
                        limit.spend(&mut state.rate_clock, tokio::time::Instant::now());
                    }
                    // A person at `nc` or telnet has shown they are there once they
                    // typed a line (HELP, MENU, ...): they get all the time they need
                    // to choose a name.
                    if D::KIND == DialectKind::Text {
                        queue.stop.greet();
                    }
                    match self.serve_now(incoming, state, queue) {
                        Ok(None) => {}
                        Ok(Some(reason)) => return Step::End(reason),
                        Err(slow) => return Step::Wait(slow),
                    }
                }
                Ok(None) => return Step::More,
                Err(e) => return Step::End(self.framing_error(e, queue)),
            }
        }
    }

    /// The client has closed its side: serves what the dialect can still make of the
    /// bytes left (a text line without its line break), then ends.
    pub(super) async fn finish<D: Dialect>(
        &self,
        buf: &mut BytesMut,
        dialect: &mut D,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> Closing {
        loop {
            match dialect.decode_eof(buf) {
                Ok(Some(incoming)) => {
                    if let Some(reason) = self.serve(incoming, state, queue).await {
                        return reason;
                    }
                }
                Ok(None) => return CloseReason::ClientClosed.into(),
                Err(e) => return self.framing_error(e, queue),
            }
        }
    }

    /// Serves one decoded unit if that needs no waiting: `Ok(Some(reason))` when the
    /// session must end, `Err` with what is left when it must wait (for the store, a
    /// password hash, or room in the queue). Most requests are done here, so that the
    /// waiting part is a boxed future and not part of every idle session's task.
    fn serve_now(
        &self,
        incoming: Incoming,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> Result<Option<Closing>, Slow> {
        queue.tx.stats.received();
        let (id, outcome) = match incoming {
            Incoming::Invalid { id, error } => (id, Err(error)),
            Incoming::Data { summary, fields } => {
                // A lab program's handshake is the data it sends: it then listens until
                // the server closes, as its handout teaches, and must not time out.
                queue.stop.greet();
                tracing::info!(
                    client_id = self.client_id,
                    name = %state.name.as_deref().unwrap_or("-"),
                    "data: {summary}"
                );
                self.shared.registry.lab_data(
                    self.client_id,
                    state.client_id,
                    state.name.as_deref(),
                    fields,
                    summary,
                );
                (None, Ok(Reply::Ack { ack: true }))
            }
            Incoming::Request(envelope) if matches!(envelope.request, Request::Bye) => {
                self.services.metrics.request(&envelope.request);
                return Err(Slow::Serve(envelope));
            }
            Incoming::Request(envelope) => {
                self.services.metrics.request(&envelope.request);
                if matches!(envelope.request, Request::Say { .. } | Request::Send { .. }) {
                    self.shared.registry.count_message();
                }
                match self
                    .services
                    .serve_now(state, envelope.id, envelope.request)
                {
                    Served::Now(outcome) => (envelope.id, outcome),
                    Served::Queued => return Ok(None),
                    Served::Sending(pending) => {
                        return Err(Slow::Send {
                            id: envelope.id,
                            pending,
                        });
                    }
                    Served::Waiting(later) => {
                        return Err(Slow::Wait {
                            id: envelope.id,
                            later,
                        });
                    }
                    Served::Later(request) => {
                        return Err(Slow::Serve(Envelope {
                            id: envelope.id,
                            request,
                        }));
                    }
                }
            }
        };
        self.respond(id, outcome, state, queue)
    }

    /// Queues the answer to a request if there is room: `Ok(Some(reason))` when the
    /// session must end, `Err` with the answer when it must wait for room.
    fn respond(
        &self,
        id: Option<u64>,
        outcome: Result<Reply, ErrorBody>,
        state: &SessionState,
        queue: &Queue<'_>,
    ) -> Result<Option<Closing>, Slow> {
        self.log_error(&outcome, state);
        match queue
            .tx
            .try_send(Outbound::response(Response { id, outcome }))
        {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(item)) => Err(Slow::Queue(item)),
            Err(TrySendError::Closed(_)) => Ok(Some(queue.ended())),
        }
    }

    /// Finishes what [`Session::serve_now`] could not; `Some(reason)` when the session
    /// must end.
    async fn serve_later(
        &self,
        slow: Slow,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> Option<Closing> {
        let (id, outcome, bye) = match slow {
            Slow::Throttle(until) => return throttle(until, queue).await,
            Slow::Queue(item) => return (!queue.send(item).await).then(|| queue.ended()),
            Slow::Send { id, pending } => (id, self.services.sent(pending.await), false),
            Slow::Wait { id, later } => match later.await {
                Some(outcome) => (id, outcome, false),
                None => return None,
            },
            Slow::Serve(envelope) => {
                let bye = matches!(envelope.request, Request::Bye);
                state.said_bye |= bye;
                // Boxed: hello and inbox are rare next to sends, and their future is the
                // larger; unboxed, every send's box would make room for it.
                let before = state.client_id;
                let served = self.services.handle(state, envelope.id, envelope.request);
                let served = Box::pin(served).await;
                if state.client_id != before {
                    self.shared
                        .registry
                        .resumed(self.client_id, state.client_id);
                }
                match served {
                    Some(outcome) => (envelope.id, outcome, bye),
                    None => return None,
                }
            }
        };
        self.log_error(&outcome, state);
        let response = Outbound::response(Response { id, outcome });
        if !queue.send(response).await {
            return Some(queue.ended());
        }
        if bye {
            queue.send(Outbound::Close).await;
            return Some(CloseReason::Bye.into());
        }
        None
    }

    /// Serves one unit, waiting if it must.
    pub(super) async fn serve(
        &self,
        incoming: Incoming,
        state: &mut SessionState,
        queue: &Queue<'_>,
    ) -> Option<Closing> {
        match self.serve_now(incoming, state, queue) {
            Ok(ended) => ended,
            Err(slow) => Box::pin(self.serve_later(slow, state, queue)).await,
        }
    }

    /// A client's mistake (a bad name, a room it does not own) is its own business and
    /// logged for debugging only; a refused password is the operator's business, and
    /// the server's own failures are warned of.
    fn log_error(&self, outcome: &Result<Reply, ErrorBody>, state: &SessionState) {
        let Err(error) = outcome else { return };
        self.services.metrics.error(error.code);
        let name = state.name.as_deref().unwrap_or("-");
        if error.code == ErrorCode::Internal {
            tracing::warn!(client_id = self.client_id, name = %name, code = %error.code, "error: {}", error.message);
        } else if error.code == ErrorCode::AuthFailed {
            tracing::info!(client_id = self.client_id, name = %name, code = %error.code, "error: {}", error.message);
        } else {
            tracing::debug!(client_id = self.client_id, name = %name, code = %error.code, "error: {}", error.message);
        }
    }
}

/// What is left of a unit that could not be served without waiting.
pub(super) enum Slow {
    /// A direct message on its way to being kept, to be answered once it is.
    Send { id: Option<u64>, pending: Sending },
    /// A request the cluster is serving; `None` when its answer was queued already.
    Wait {
        id: Option<u64>,
        later: Later<Option<Result<Reply, ErrorBody>>>,
    },
    /// A request that waits on the store or a hash (or ends the session: bye).
    Serve(Envelope),
    /// A response computed, waiting for room in the queue.
    Queue(Outbound),
    /// The connection is over its rate limit: nothing more is read or served from it
    /// until this instant.
    Throttle(tokio::time::Instant),
}

/// Waits out a connection's rate limit; a signal from the server (shutdown, a cut)
/// does not wait for it. `Some(reason)` when the session must end.
pub(super) async fn throttle(until: tokio::time::Instant, queue: &Queue<'_>) -> Option<Closing> {
    tokio::select! {
        () = tokio::time::sleep_until(until) => None,
        signal = std::future::poll_fn(|cx| queue.stop.poll_signal(cx)) => {
            Some(signalled(signal, queue.tx, queue.stop))
        }
    }
}

/// Why the session ends on a signal from the server, with what the client is told.
pub(super) fn signalled(signal: Signal, tx: &OutQueue, stop: &StopSignal) -> Closing {
    match signal {
        Signal::Stop | Signal::Cut => ended(stop),
        Signal::Drain => {
            let event = Event::Shutdown {
                reason: "the server is shutting down".into(),
            };
            tx.finish(Outbound::Event(SharedEvent::new(event)));
            CloseReason::Shutdown.into()
        }
        Signal::Expired(why) => {
            let event = Event::error(ErrorBody::new(ErrorCode::Timeout, why));
            tx.finish(Outbound::Event(SharedEvent::new(event)));
            Closing::new(CloseReason::HandshakeTimeout, why)
        }
    }
}

/// The reader's side of the connection's queue.
pub(super) struct Queue<'a> {
    pub tx: &'a OutQueue,
    pub stop: &'a StopSignal,
}

impl Queue<'_> {
    /// Why the session is over once the queue refuses items.
    pub(super) fn ended(&self) -> Closing {
        ended(self.stop)
    }

    /// Queues a response, waiting while the queue is full (the client is not reading,
    /// so it is fair to stop reading from it); false when the session is over.
    async fn send(&self, item: Outbound) -> bool {
        let item = match self.tx.try_send(item) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(item)) => item,
        };
        // The waiting send is boxed for the same reason as the waiting ops.
        Box::pin(async {
            tokio::select! {
                sent = self.tx.send(item) => sent.is_ok(),
                () = self.stop.stopped() => false,
            }
        })
        .await
    }
}

impl Session {
    /// Tells the client why its stream is being closed, after what is queued. A person
    /// who typed at the native port gets it as a line of text, saying where to type.
    fn framing_error(&self, e: FrameError, queue: &Queue<'_>) -> Closing {
        if e == FrameError::Text {
            let place = match self.shared.text_addr {
                Some(addr) => format!("the text dialect on port {}", addr.port()),
                None => "the text dialect, which this server runs with --text-listen".into(),
            };
            let hint = format!(
                "-ERR bad_request this is switchboard's native port, which speaks \
                 length-prefixed JSON frames; to type commands (nc, telnet) use {place}\r\n"
            );
            queue
                .tx
                .finish(Outbound::Raw(hint.into_bytes().into_boxed_slice()));
            self.services.metrics.error(ErrorCode::BadRequest);
            return Closing::new(CloseReason::BadFrame, e.to_string());
        }
        let (code, reason) = match e {
            FrameError::TooLarge { .. } => (ErrorCode::TooLarge, CloseReason::TooLarge),
            _ => (ErrorCode::BadRequest, CloseReason::BadFrame),
        };
        let event = Event::error(ErrorBody::new(code, e.to_string()));
        queue.tx.finish(Outbound::Event(SharedEvent::new(event)));
        self.services.metrics.error(code);
        Closing::new(reason, e.to_string())
    }
}

/// Why the session is over, once the server or the writer has ended it: the reason
/// they gave. None given is the server's own failure, which should not happen.
pub(super) fn ended(stop: &StopSignal) -> Closing {
    stop.reason().unwrap_or_else(|| {
        Closing::new(
            CloseReason::Internal,
            "the connection ended without a reason",
        )
    })
}
