//! A connection's single writer: the only code that writes to its socket, fed by the
//! connection's bounded queue. It gathers what is queued into one write, in a buffer
//! per thread, so a connection keeps a write buffer only when its socket is full.

use std::cell::RefCell;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::dialect::Dialect;
use crate::outbound::{CloseReason, Closing, OutQueue, Outbound, StopSignal};
use crate::protocol::{Reply, Response};

/// The writer gathers queued frames into one write of up to about this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// The connection's only writer: drains the queue, gathering whatever is waiting into
/// one write, until the queue closes, a `Close` is reached, or the session is stopped.
pub(super) async fn write_loop<D: Dialect>(
    mut socket: OwnedWriteHalf,
    dialect: D,
    rx: &OutQueue,
    stop: &StopSignal,
) {
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        // Biased towards work: the stop signal is looked at only when there is none,
        // and is checked again before anything is written.
        let first = tokio::select! {
            biased;
            item = rx.recv() => item,
            () = &mut stopped => return,
        };
        if stop.is_stopped() {
            return;
        }
        let Some(first) = first else { break };
        let (left, close) = match write_now(&socket, &dialect, first, rx) {
            Ok(done) => done,
            Err(e) => {
                stop.stop(Closing::io("write failed", &e));
                return;
            }
        };
        // Boxed: a client that keeps up never needs it, and every task would hold it.
        if let Some(left) = left
            && !Box::pin(write_rest(&mut socket, &left, rx, stopped.as_mut(), stop)).await
        {
            return;
        }
        if close {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

/// Writes what the socket did not take at once; false when the session is over. The
/// queue is told while the writer is blocked and each time bytes get through, so that
/// the server's sweep can tell a reader that drains slowly from one that stopped.
async fn write_rest(
    socket: &mut OwnedWriteHalf,
    mut left: &[u8],
    queue: &OutQueue,
    mut stopped: std::pin::Pin<&mut impl Future<Output = ()>>,
    stop: &StopSignal,
) -> bool {
    queue.set_blocked(true);
    let done = loop {
        if left.is_empty() {
            break true;
        }
        tokio::select! {
            biased;
            written = socket.write(left) => match written {
                Ok(0) => {
                    stop.stop(Closing::new(CloseReason::Reset, "write failed: the socket takes no more bytes"));
                    break false;
                }
                Ok(n) => {
                    queue.wrote(n);
                    queue.stats.wrote(n);
                    left = &left[n..];
                }
                Err(e) => {
                    stop.stop(Closing::io("write failed", &e));
                    break false;
                }
            },
            () = stopped.as_mut() => break false,
        }
    };
    queue.set_blocked(false);
    done
}

thread_local! {
    /// Where the writers on this thread gather their frames, as the readers share one
    /// buffer per thread for reads.
    static GATHER: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(WRITE_BATCH));
}

/// Encodes `first` and whatever else is queued (up to about [`WRITE_BATCH`] bytes) in the
/// thread's gathering buffer and writes it at once. A client that reads keeps up, so
/// that is usually all: the connection never holds a write buffer. What the socket does
/// not take is handed back to be written when it can (and true when the last item was
/// the order to close).
fn write_now<D: Dialect>(
    socket: &OwnedWriteHalf,
    dialect: &D,
    first: Outbound,
    rx: &OutQueue,
) -> std::io::Result<(Option<BytesMut>, bool)> {
    GATHER.with_borrow_mut(|buf| {
        buf.clear();
        let mut close = encode(dialect, first, buf);
        while !close && buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Some(item) => close = encode(dialect, item, buf),
                None => break,
            }
        }
        let written = match socket.try_write(buf) {
            Ok(n) => {
                rx.stats.wrote(n);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        let left = (written < buf.len()).then(|| BytesMut::from(&buf[written..]));
        // One large item (an inbox page) must not keep its room on the thread.
        if buf.capacity() > WRITE_BATCH * 2 {
            *buf = BytesMut::with_capacity(WRITE_BATCH);
        }
        Ok((left, close))
    })
}

/// Appends `item`'s bytes to `buf`; true when it is the order to close.
pub(super) fn encode<D: Dialect>(dialect: &D, item: Outbound, buf: &mut BytesMut) -> bool {
    match item {
        Outbound::Response(response) => dialect.encode_response(&response, buf),
        Outbound::Ok { id, number } => {
            let outcome = Ok(number.map_or(Reply::Done {}, |n| n.reply()));
            dialect.encode_response(&Response { id, outcome }, buf)
        }
        Outbound::Replay(replay) => {
            for event in replay.events() {
                dialect.encode_event(&event, buf);
            }
        }
        Outbound::Event(event) => {
            buf.extend_from_slice(event.encoded(D::KIND, |e| dialect.event_bytes(e)))
        }
        Outbound::Raw(bytes) => buf.extend_from_slice(&bytes),
        Outbound::Close => return true,
    }
    false
}
