//! A WebSocket connection (`GET /ws`): the native protocol's JSON objects, one per text
//! message both ways, served by the same services and hub as the TCP sessions.
//!
//! A connection runs as a TCP session does (`session.rs`): one reader serving requests
//! in order, one writer draining the connection's bounded queue, in one task. Answers
//! and events are encoded by the native dialect and each frame goes out as one text
//! message without its length prefix, so an event shared by many connections is still
//! encoded once for all of them.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::dialect::native::parse_request;
use crate::dialect::{Dialect, DialectKind, Native};
use crate::metrics::Metrics;
use crate::outbound::{CloseReason, Closing, OutQueue, Outbound, SharedEvent, Signal, StopSignal};
use crate::protocol::{ErrorBody, ErrorCode, Event, Reply, Response};
use crate::service::SessionState;

use super::partial::Unfinished;
use super::registry::Transport;
use super::session::{FLUSH_GRACE, Queue, Session, ended};
use super::upgrade::{OverBudget, WebSocket};

/// After this long without a message from the client, the server sends a ping: it
/// keeps NATs and proxies from dropping a quiet connection. A ping still unanswered
/// after as long again ends the connection (`idle_timeout`): every WebSocket client
/// answers pings by itself, so only a dead or stuck one does not (a dead peer is also
/// found by TCP keepalive, as for every connection).
pub const DEFAULT_WS_PING: Duration = Duration::from_secs(30);

/// The writer sends what is queued in batches of up to about this many bytes before it
/// flushes.
const WRITE_BATCH: usize = 64 * 1024;

/// Close codes (RFC 6455, 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_UNSUPPORTED: u16 = 1003;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

/// What the reader tells the writer. Both run in the connection's one task, but the
/// task must be `Send`, so these are atomics rather than cells.
struct Link {
    start: Instant,
    /// When the client last sent anything (pongs included), in microseconds after
    /// `start`: finer than the time a pong takes over loopback, so that an answer is
    /// never taken for silence before the ping.
    heard: AtomicU64,
    /// The close code the connection ends with.
    close: AtomicU16,
}

impl Link {
    fn new() -> Self {
        Link {
            start: Instant::now(),
            heard: AtomicU64::new(0),
            close: AtomicU16::new(CLOSE_NORMAL),
        }
    }

    fn heard_now(&self) {
        let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.heard.store(us, Ordering::Relaxed);
    }

    fn heard(&self) -> Instant {
        self.start + Duration::from_micros(self.heard.load(Ordering::Relaxed))
    }

    fn set_close(&self, code: u16) {
        self.close.store(code, Ordering::Relaxed);
    }

    fn close(&self) -> u16 {
        self.close.load(Ordering::Relaxed)
    }
}

impl Session {
    /// Serves a WebSocket until it ends; cleans up the client in the hub and logs why
    /// it ended, as [`Session::run`] does for a TCP connection.
    pub(super) async fn run_ws(
        self,
        socket: WebSocket,
        unfinished: Arc<Unfinished>,
        peer: SocketAddr,
        max_frame: usize,
        ping_after: Duration,
    ) {
        let (queue, listed) = self.open(Transport::WebSocket, peer);
        let stop = &queue.signal;

        let link = Link::new();
        let mut state = SessionState::new(self.client_id);
        let writer = write_loop(
            &socket,
            Native::new(max_frame),
            &queue,
            stop,
            &link,
            ping_after,
        );
        tokio::pin!(writer);
        let (reason, writer_done) = tokio::select! {
            biased;
            reason = self.read_ws(&socket, &unfinished, &queue, stop, &mut state, &link) => (reason, false),
            () = &mut writer => (ended(stop), true),
        };
        let writer = (!writer_done).then_some(writer);
        self.end(&state, &queue, listed, reason, writer, " (websocket)")
            .await;
    }

    /// Reads and serves messages until the connection should end; returns why.
    async fn read_ws(
        &self,
        socket: &WebSocket,
        unfinished: &Unfinished,
        tx: &OutQueue,
        stop: &StopSignal,
        state: &mut SessionState,
        link: &Link,
    ) -> Closing {
        let queue = Queue { tx, stop };
        loop {
            let message = tokio::select! {
                biased;
                message = poll_fn(|cx| socket.poll_read(cx)) => message,
                signal = poll_fn(|cx| stop.poll_signal(cx)) => return signalled(signal, &queue, link),
            };
            link.heard_now();
            unfinished.complete();
            if let Some(Ok(message)) = &message {
                tx.stats.read(message.len());
            }
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    return refuse(
                        &self.services.metrics,
                        tx,
                        link,
                        CLOSE_UNSUPPORTED,
                        CloseReason::BadFrame,
                        "binary messages are not understood: send each request as one \
                         text message holding a JSON object",
                    );
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return CloseReason::ClientClosed.into(),
                Some(Err(e)) => {
                    return match e {
                        tungstenite::Error::Capacity(_) => refuse(
                            &self.services.metrics,
                            tx,
                            link,
                            CLOSE_TOO_BIG,
                            CloseReason::TooLarge,
                            "the message is larger than the server accepts (--max-frame)",
                        ),
                        tungstenite::Error::Utf8(_) => refuse(
                            &self.services.metrics,
                            tx,
                            link,
                            CLOSE_INVALID_DATA,
                            CloseReason::BadFrame,
                            "a text message must be UTF-8",
                        ),
                        tungstenite::Error::Io(e) => {
                            match e.get_ref().and_then(|e| e.downcast_ref::<OverBudget>()) {
                                Some(over) => refuse(
                                    &self.services.metrics,
                                    tx,
                                    link,
                                    CLOSE_TOO_BIG,
                                    CloseReason::TooLarge,
                                    &format!("{over}; yours was dropped"),
                                ),
                                None => Closing::io("read failed", &e),
                            }
                        }
                        e => read_failed(e),
                    };
                }
            };
            if let Some(limit) = self.shared.rate {
                if let Some(until) = limit.wait(state.rate_clock, Instant::now()) {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        signal = poll_fn(|cx| stop.poll_signal(cx)) => return signalled(signal, &queue, link),
                    }
                }
                limit.spend(&mut state.rate_clock, Instant::now());
            }
            if let Some(reason) = self
                .serve(parse_request(text.as_bytes()), state, &queue)
                .await
            {
                return reason;
            }
        }
    }
}

/// Why the session ends on a signal from the server, with what the client is told and
/// the close code it gets.
fn signalled(signal: Signal, queue: &Queue<'_>, link: &Link) -> Closing {
    let tell = |event| queue.tx.finish(Outbound::Event(SharedEvent::new(event)));
    match signal {
        Signal::Stop => queue.ended(),
        Signal::Cut => {
            link.set_close(CLOSE_POLICY);
            queue.ended()
        }
        Signal::Drain => {
            link.set_close(CLOSE_GOING_AWAY);
            tell(Event::Shutdown {
                reason: "the server is shutting down".into(),
            });
            CloseReason::Shutdown.into()
        }
        Signal::Expired(why) => {
            link.set_close(CLOSE_POLICY);
            tell(Event::error(ErrorBody::new(ErrorCode::Timeout, why)));
            Closing::new(CloseReason::HandshakeTimeout, why)
        }
    }
}

/// Ends the connection with an error event and then a close with `code`.
fn refuse(
    metrics: &Metrics,
    tx: &OutQueue,
    link: &Link,
    code: u16,
    reason: CloseReason,
    why: &str,
) -> Closing {
    link.set_close(code);
    let error = match reason {
        CloseReason::TooLarge => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    };
    metrics.error(error);
    let event = Event::error(ErrorBody::new(error, why));
    tx.finish(Outbound::Event(SharedEvent::new(event)));
    Closing::new(reason, why.to_owned())
}

/// What a WebSocket error other than a message's size or encoding says of how the
/// connection ended: a peer gone without the closing handshake has closed all the
/// same; one that broke the protocol sent what cannot be decoded.
fn read_failed(e: tungstenite::Error) -> Closing {
    use tungstenite::error::ProtocolError;
    let reason = match &e {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::ClientClosed
        }
        tungstenite::Error::Protocol(_) => CloseReason::BadFrame,
        _ => CloseReason::Reset,
    };
    Closing::new(reason, format!("read failed: {e}"))
}

/// The connection's only writer: sends what is queued, a ping when the client has been
/// quiet, and the close when the queue ends.
async fn write_loop(
    socket: &WebSocket,
    dialect: Native,
    rx: &OutQueue,
    stop: &StopSignal,
    link: &Link,
    ping_after: Duration,
) {
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    let mut pinged = Instant::now();
    // The ping the client has not answered yet (nothing heard since it was sent).
    let mut unanswered = false;
    // One timer for the connection's life, set to when a ping may be due and moved on
    // only when it fires: a timer made afresh for every wait would be registered and
    // removed again for every message.
    let ping_timer = tokio::time::sleep_until(pinged + ping_after);
    tokio::pin!(ping_timer);
    // Whether the timer has been polled since it was set. Polled once, it wakes the
    // task when it fires, so until then a glance at it does: polling it again at every
    // wait of the writer, once per request, would register the task with it again.
    let mut ping_armed = false;
    // Reused: what the answers are encoded into, and the messages of one write.
    let mut encoded = BytesMut::new();
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            item = rx.recv() => item,
            () = &mut stopped => return,
            () = poll_fn(|cx| {
                if ping_armed && !ping_timer.is_elapsed() {
                    return Poll::Pending;
                }
                ping_armed = true;
                ping_timer.as_mut().poll(cx)
            }) => {
                ping_armed = false;
                let due = link.heard().max(pinged) + ping_after;
                let now = Instant::now();
                if due > now {
                    // Heard from since the timer was set: nothing is due yet.
                    ping_timer.as_mut().reset(due);
                    continue;
                }
                if unanswered && link.heard() < pinged {
                    stop.stop(Closing::new(
                        CloseReason::IdleTimeout,
                        format!("no answer to a ping within {ping_after:?}"),
                    ));
                    return;
                }
                pinged = now;
                unanswered = true;
                ping_timer.as_mut().reset(now + ping_after);
                batch.push(Message::Ping(Bytes::new()));
                if !send(socket, &mut batch, rx, stopped.as_mut(), stop).await {
                    return;
                }
                continue;
            }
        };
        if stop.is_stopped() {
            return;
        }
        let Some(first) = first else { break };
        let mut close = encode(&dialect, first, &mut encoded, &mut batch);
        let mut size: usize = batch.iter().map(message_len).sum();
        while !close && size < WRITE_BATCH {
            let Some(item) = rx.try_recv() else { break };
            let before = batch.len();
            close = encode(&dialect, item, &mut encoded, &mut batch);
            size += batch[before..].iter().map(message_len).sum::<usize>();
        }
        if !send(socket, &mut batch, rx, stopped.as_mut(), stop).await {
            return;
        }
        if close {
            break;
        }
    }
    let code = link.close();
    let mut frame = Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(close_reason(code)),
    });
    let close = poll_fn(|cx| socket.poll_close(cx, &mut frame));
    let _ = tokio::time::timeout(FLUSH_GRACE, close).await;
}

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_GOING_AWAY => "the server is shutting down",
        CLOSE_UNSUPPORTED => "binary message",
        CLOSE_INVALID_DATA => "not UTF-8",
        CLOSE_POLICY => "see the error event",
        CLOSE_TOO_BIG => "message too large",
        _ => "",
    }
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Frame(frame) => frame.payload().len(),
        _ => 0,
    }
}

/// Sends `messages` and flushes; false when the session is over. The queue is told
/// the writer is blocked meanwhile, and each message that gets through, so that the
/// server's sweep can tell a client that reads slowly from one that stopped.
async fn send(
    socket: &WebSocket,
    messages: &mut Vec<Message>,
    queue: &OutQueue,
    mut stopped: std::pin::Pin<&mut impl Future<Output = ()>>,
    stop: &StopSignal,
) -> bool {
    queue.set_blocked(true);
    let sent = poll_fn(|cx| {
        socket.poll_send(cx, messages, |message| {
            let len = message_len(message);
            queue.wrote(len);
            queue.stats.wrote(len);
        })
    });
    let done = tokio::select! {
        biased;
        sent = sent => match sent {
            Ok(()) => true,
            Err(e) => {
                let closing = match &e {
                    tungstenite::Error::Io(e) => Closing::io("write failed", e),
                    e => Closing::new(CloseReason::Reset, format!("write failed: {e}")),
                };
                stop.stop(closing);
                false
            }
        },
        () = stopped.as_mut() => false,
    };
    queue.set_blocked(false);
    done
}

/// Appends `item` to `out` as text messages, one per native frame; true when it is the
/// order to close. `buf` is the writer's own: each answer is split off it, so that its
/// allocation serves again once the answers written from it are gone.
fn encode(dialect: &Native, item: Outbound, buf: &mut BytesMut, out: &mut Vec<Message>) -> bool {
    match item {
        Outbound::Response(response) => dialect.encode_response(&response, buf),
        Outbound::Ok { id, number } => {
            let outcome = Ok(number.map_or(Reply::Done {}, |n| n.reply()));
            dialect.encode_response(&Response { id, outcome }, buf);
        }
        Outbound::Replay(replay) => {
            for event in replay.events() {
                dialect.encode_event(&event, buf);
            }
        }
        Outbound::Event(event) => {
            let frame = event.encoded(DialectKind::Native, |e| dialect.event_bytes(e));
            push_frames(frame.clone(), out);
            return false;
        }
        Outbound::Raw(bytes) => {
            out.push(Message::Text(
                String::from_utf8_lossy(&bytes).as_ref().into(),
            ));
            return false;
        }
        Outbound::Close => return true,
    }
    push_frames(buf.split().freeze(), out);
    false
}

/// Splits length-prefixed frames into text messages, without copying their bytes. The
/// native dialect writes JSON, which is UTF-8 by construction, so each goes as a text
/// frame made by tungstenite without checking that again.
fn push_frames(mut frames: Bytes, out: &mut Vec<Message>) {
    while frames.len() >= 4 {
        let len = (&frames[..4]).get_u32() as usize;
        frames.advance(4);
        let payload = frames.split_to(len.min(frames.len()));
        let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
        out.push(Message::Frame(frame));
    }
}
