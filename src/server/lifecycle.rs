//! How every session begins and ends, whatever carries it (TCP, TLS, WebSocket): its
//! queue with the welcome first, its place in the hub and in the registry, its
//! departure (parked for resuming or gone) and the one line that says it ended.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::hub::{Departure, Ending};
use crate::outbound::{OutQueue, Outbound, Outbox, SharedEvent};
use crate::protocol::{ErrorCode, Event};
use crate::service::SessionState;

use super::registry::{Listed, Transport};
use super::session::{FLUSH_GRACE, Session};

impl Session {
    /// The connection's queue, its welcome queued first, and the connection in the hub
    /// and in the registry (until the guard returned drops).
    pub(super) fn open(
        &self,
        transport: Transport,
        peer: SocketAddr,
    ) -> (Arc<OutQueue>, Listed<'_>) {
        let listed = self.shared.registry.open(self.client_id, transport, peer);
        let queue = Arc::new(OutQueue::new(self.bounds));
        let welcome = SharedEvent::new(Event::welcome(self.client_id));
        // The queue is new and holds at least two items, so this cannot fail.
        let _ = queue.try_send(Outbound::Event(welcome));
        self.services
            .hub
            .connect(self.client_id, Outbox::new(Arc::clone(&queue)));
        // Shutdown drains every session the hub knows; one that joined the hub after
        // that sees the token instead.
        if self.shutdown.is_cancelled() {
            queue.signal.drain();
        }
        (queue, listed)
    }

    /// Ends a connection whose reader has stopped for `reason`: takes its session out of
    /// the hub, lets its writer (unless it already stopped) flush what is queued for
    /// at most [`FLUSH_GRACE`], and logs the one line that says it ended.
    pub(super) async fn end(
        &self,
        state: &SessionState,
        queue: &OutQueue,
        reason: &str,
        writer: Option<Pin<&mut impl Future<Output = ()>>>,
        transport: &str,
    ) {
        // Counted once the ending is decided, not after the flush, which may wait
        // out its grace for a client that does not read.
        self.count_disconnect(reason);
        let parked = self.depart(state, queue);
        // Nothing more will be queued: the writer flushes what is there, then stops.
        queue.close();
        if let Some(writer) = writer
            && tokio::time::timeout(FLUSH_GRACE, writer).await.is_err()
        {
            tracing::debug!(
                client_id = self.client_id,
                "gave up flushing to a client that does not read{transport}"
            );
        }
        self.log_disconnect(state, reason, parked, transport);
    }

    /// Counts how the connection ended. The slow consumer's and the handshake
    /// timeout's error events are counted here too, where the reason is known.
    fn count_disconnect(&self, reason: &str) {
        let metrics = &self.services.metrics;
        let label = close_reason(reason);
        match label {
            "slow_consumer" => {
                metrics.slow_consumer();
                metrics.error(ErrorCode::SlowConsumer);
            }
            "handshake_timeout" => metrics.error(ErrorCode::Timeout),
            _ => {}
        }
        metrics.disconnect(label);
    }

    /// Takes the ended connection's session out of the hub: a connection that ends
    /// without `bye` leaves it to be resumed, unless the server itself is stopping.
    /// True when it was parked.
    fn depart(&self, state: &SessionState, queue: &OutQueue) -> bool {
        let how = if self.shutdown.is_cancelled() {
            Ending::Shutdown
        } else if state.said_bye {
            Ending::Bye
        } else {
            Ending::Cut
        };
        matches!(
            self.services.depart(state.client_id, queue, how),
            Departure::Parked(_)
        )
    }

    /// The one line that says a connection ended, and why; `transport` is said after
    /// the word (` (websocket)`).
    fn log_disconnect(&self, state: &SessionState, reason: &str, parked: bool, transport: &str) {
        let parked = if parked {
            "; session parked for resuming"
        } else {
            ""
        };
        tracing::info!(
            client_id = state.client_id,
            name = %state.name.as_deref().unwrap_or("-"),
            reason = %reason,
            "disconnect{transport}{parked}"
        );
    }
}

/// The reason label (`metrics::REASONS`) of a session's ending as the session words it.
/// The words are a log line's, made in several places; this reads them back until
/// the ending is a value of its own.
fn close_reason(reason: &str) -> &'static str {
    let starts = |prefix: &str| reason.starts_with(prefix);
    if reason == "bye" {
        "bye"
    } else if reason == "closed by the client" || reason == "connection closed" {
        "client_closed"
    } else if starts("handshake timeout") {
        "handshake_timeout"
    } else if starts("slow consumer") {
        "slow_consumer"
    } else if starts("replaced") {
        "replaced"
    } else if reason == "server shutting down" {
        "shutdown"
    } else if starts("too_large")
        || starts("framing error: frame length") && reason.contains("over the limit")
    {
        "too_large"
    } else if starts("framing error") || starts("bad_request") {
        "bad_frame"
    } else if starts("read failed") || starts("write failed") {
        // TCP keepalive or TCP_USER_TIMEOUT gave up on a dead peer.
        if reason.contains("timed out") {
            "idle_timeout"
        } else {
            "reset"
        }
    } else {
        "internal"
    }
}

#[cfg(test)]
mod tests {
    use super::close_reason;
    use crate::frame::FrameError;

    #[test]
    fn the_endings_sessions_word_map_to_their_reasons() {
        let too_large = format!("framing error: {}", FrameError::TooLarge { len: 9, max: 8 });
        let truncated = format!("framing error: {}", FrameError::Truncated);
        for (reason, label) in [
            ("bye", "bye"),
            ("closed by the client", "client_closed"),
            ("handshake timeout: no hello in time", "handshake_timeout"),
            ("slow consumer: 4 times over", "slow_consumer"),
            (
                "replaced: the session was resumed on another connection",
                "replaced",
            ),
            ("server shutting down", "shutdown"),
            ("too_large: over the server's budget", "too_large"),
            (too_large.as_str(), "too_large"),
            (truncated.as_str(), "bad_frame"),
            ("bad_request: a text message must be UTF-8", "bad_frame"),
            (
                "read failed: Connection reset by peer (os error 104)",
                "reset",
            ),
            (
                "read failed: Connection timed out (os error 110)",
                "idle_timeout",
            ),
            ("write failed: Broken pipe (os error 32)", "reset"),
            ("something new", "internal"),
        ] {
            assert_eq!(close_reason(reason), label, "{reason}");
        }
    }
}
