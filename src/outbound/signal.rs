//! Why and when a session must end, set by whoever notices first: the hub, the
//! server's sweep, or the connection's writer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use super::close::Closing;

/// Only the session's own task ever waits on it, so one registered waker is enough:
/// cheaper to poll on every request than a broadcast wait.
#[derive(Debug, Default)]
pub struct StopSignal {
    /// End now, reader and writer both.
    stopped: AtomicBool,
    draining: AtomicBool,
    /// The reader ends; the writer still writes what was left in the queue for it
    /// (a slow consumer's last words).
    cut: AtomicBool,
    /// The connection has finished its handshake: a `hello`, or (lab dialect) the data
    /// a course program sends instead.
    greeted: AtomicBool,
    /// Set by the server's sweep when the handshake took too long.
    expired: Mutex<Option<&'static str>>,
    reason: Mutex<Option<Closing>>,
    waker: AtomicWaker,
}

/// What a session's read loop is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// End now: the reason is in [`StopSignal::reason`].
    Stop,
    /// The server is shutting down: say so after what is queued, then close.
    Drain,
    /// A timeout ran out: tell the client why, then close.
    Expired(&'static str),
    /// Stop reading: the queue holds the last words, and the writer ends after them.
    Cut,
}

impl StopSignal {
    pub fn stop(&self, reason: impl Into<Closing>) {
        self.set_reason(reason);
        self.stopped.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ends the reader, leaving the writer to flush what is queued; see
    /// [`super::OutQueue::cut`].
    pub(super) fn cut(&self, reason: impl Into<Closing>) {
        self.set_reason(reason);
        self.cut.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The first reason given wins: it is what ended the connection.
    fn set_reason(&self, reason: impl Into<Closing>) {
        if let Ok(mut slot) = self.reason.lock()
            && slot.is_none()
        {
            *slot = Some(reason.into());
        }
    }

    /// Asks the session to tell its client the server is stopping, and to finish.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The handshake is done: no handshake deadline applies any more.
    pub fn greet(&self) {
        self.greeted.store(true, Ordering::Relaxed);
    }

    pub fn is_greeted(&self) -> bool {
        self.greeted.load(Ordering::Relaxed)
    }

    /// Ends the connection for a timeout, saying `why` to the client.
    pub fn expire(&self, why: &'static str) {
        if let Ok(mut slot) = self.expired.lock()
            && slot.is_none()
        {
            *slot = Some(why);
        }
        self.waker.wake();
    }

    /// Ready with the first signal given; registers the task to be woken otherwise.
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        self.waker.register(cx.waker());
        if self.stopped.load(Ordering::Acquire) {
            Poll::Ready(Signal::Stop)
        } else if self.cut.load(Ordering::Acquire) {
            Poll::Ready(Signal::Cut)
        } else if self.draining.load(Ordering::Acquire) {
            Poll::Ready(Signal::Drain)
        } else if let Some(why) = self.expired.lock().ok().and_then(|slot| *slot) {
            Poll::Ready(Signal::Expired(why))
        } else {
            Poll::Pending
        }
    }

    /// Completes once the session is stopped.
    pub async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.is_stopped() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    pub fn reason(&self) -> Option<Closing> {
        self.reason.lock().ok().and_then(|slot| slot.clone())
    }
}
