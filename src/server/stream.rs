//! A session over any byte stream that is not a bare TCP socket (TLS): the same reader
//! and writer as `session.rs` and `writer.rs`, through `AsyncRead`/`AsyncWrite` where
//! those use the socket's readiness directly. The plain TCP path is left as it is.

use std::cell::RefCell;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::dialect::Dialect;
use crate::outbound::{Closing, OutQueue, StopSignal};
use crate::service::SessionState;

use super::partial::Held;
use super::registry::Transport;
use super::session::{Queue, Session, Step, ended, signalled};
use super::writer::encode;

/// Most bytes taken from the stream per read.
const READ_CHUNK: usize = 16 * 1024;
/// The writer gathers queued frames into one write of up to about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// Largest write buffer a connection keeps between writes.
const KEPT_WRITE_BUFFER: usize = 4096;

thread_local! {
    /// Where reads land first, shared by every stream session on the thread, so that a
    /// waiting connection holds no read buffer of its own.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(READ_CHUNK));
}

impl Session {
    /// Serves a connection over `stream` until it ends, as [`Session::run`] serves a
    /// TCP socket; `transport` is said in the disconnect line (` (tls)`).
    pub(super) async fn run_stream<S, D>(
        self,
        stream: S,
        dialect: D,
        (transport_kind, peer): (Transport, SocketAddr),
        transport: &str,
    ) where
        S: AsyncRead + AsyncWrite + Send,
        D: Dialect,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let (queue, listed) = self.open(transport_kind, peer);
        let stop = &queue.signal;

        let mut state = SessionState::new(self.client_id);
        let writer = write_loop(write_half, dialect.clone(), &queue, stop);
        tokio::pin!(writer);
        let (reason, writer_done) = tokio::select! {
            biased;
            reason = self.read_stream(read_half, dialect, &queue, stop, &mut state) => (reason, false),
            () = &mut writer => (ended(stop), true),
        };
        let writer = (!writer_done).then_some(writer);
        self.end(&state, &queue, listed, reason, writer, transport)
            .await;
    }

    /// Reads, decodes and serves until the connection should end; returns why.
    async fn read_stream<S: AsyncRead, D: Dialect>(
        &self,
        mut stream: ReadHalf<S>,
        mut dialect: D,
        tx: &OutQueue,
        stop: &StopSignal,
        state: &mut SessionState,
    ) -> Closing {
        let queue = Queue { tx, stop };
        let mut buf = BytesMut::new();
        let mut held = Held::new(&self.shared.partial);
        loop {
            let read = tokio::select! {
                biased;
                read = std::future::poll_fn(|cx| SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    scratch.reserve(READ_CHUNK);
                    tokio_util::io::poll_read_buf(Pin::new(&mut stream), cx, scratch)
                })) => read,
                signal = std::future::poll_fn(|cx| stop.poll_signal(cx)) => return signalled(signal, tx, stop),
            };
            // A client that exits without TLS's close_notify has closed all the same.
            let closed = match &read {
                Ok(n) => *n == 0,
                Err(e) => e.kind() == std::io::ErrorKind::UnexpectedEof,
            };
            if closed {
                return Box::pin(self.finish(&mut buf, &mut dialect, state, &queue)).await;
            }
            match read {
                Ok(n) => queue.tx.stats.read(n),
                Err(e) => return Closing::io("read failed", &e),
            }
            // Nothing was awaited since the read: the bytes are still in the scratch.
            let step = SCRATCH.with_borrow_mut(|scratch| {
                if buf.is_empty() {
                    let step = self.serve_buffered(scratch, &mut dialect, state, &queue);
                    buf.extend_from_slice(scratch);
                    step
                } else {
                    buf.extend_from_slice(scratch);
                    self.serve_buffered(&mut buf, &mut dialect, state, &queue)
                }
            });
            match step {
                Step::More => {}
                Step::End(reason) => return reason,
                Step::Wait(slow) => {
                    let waited = self.serve_waiting(slow, &mut buf, &mut dialect, state, &queue);
                    if let Some(reason) = Box::pin(waited).await {
                        return reason;
                    }
                }
            }
            if buf.is_empty() {
                buf = BytesMut::new();
            }
            if !held.set(buf.len() + dialect.held()) {
                return self.over_partial_budget(tx);
            }
        }
    }
}

/// The connection's only writer, as `writer.rs`'s for a TCP socket: drains the queue,
/// gathering whatever is waiting into one write, until the queue closes, a `Close` is
/// reached, or the session is stopped.
async fn write_loop<S: AsyncWrite, D: Dialect>(
    mut stream: WriteHalf<S>,
    dialect: D,
    rx: &OutQueue,
    stop: &StopSignal,
) {
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    let mut buf = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            item = rx.recv() => item,
            () = &mut stopped => return,
        };
        if stop.is_stopped() {
            return;
        }
        let Some(first) = first else { break };
        let mut close = encode(&dialect, first, &mut buf);
        while !close && buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Some(item) => close = encode(&dialect, item, &mut buf),
                None => break,
            }
        }
        // The queue is told while the writer waits, and each time bytes get through,
        // so that the sweep can tell a client that reads slowly from one that stopped.
        rx.set_blocked(true);
        let written = tokio::select! {
            biased;
            written = write_all(&mut stream, &buf, rx) => written,
            () = &mut stopped => return,
        };
        rx.set_blocked(false);
        if let Err(e) = written {
            stop.stop(Closing::io("write failed", &e));
            return;
        }
        // An idle connection keeps only a small buffer.
        buf = if buf.capacity() > KEPT_WRITE_BUFFER {
            BytesMut::new()
        } else {
            buf.clear();
            buf
        };
        if close {
            break;
        }
    }
    let _ = stream.shutdown().await;
}

/// Writes all of `bytes` and flushes, counting what gets through.
async fn write_all<W: AsyncWrite>(
    stream: &mut WriteHalf<W>,
    mut bytes: &[u8],
    rx: &OutQueue,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = stream.write(bytes).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        rx.wrote(n);
        rx.stats.wrote(n);
        bytes = &bytes[n..];
    }
    stream.flush().await
}
