//! How every session begins and ends, whatever carries it (TCP, TLS, WebSocket): its
//! queue with the welcome first, its place in the hub and in the registry, its
//! departure (parked for resuming or gone) and the one line that says it ended.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::hub::{Departure, Ending};
use crate::outbound::{CloseReason, Closing, OutQueue, Outbound, Outbox, SharedEvent};
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
        let queue = Arc::new(OutQueue::new(self.bounds));
        let listed = self
            .shared
            .registry
            .open(self.client_id, transport, peer, &queue);
        let welcome = SharedEvent::new(Event::welcome(self.client_id));
        // The queue is new and holds at least two items, so this cannot fail.
        let _ = queue.try_send(Outbound::Event(welcome));
        self.services
            .backend
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
    /// at most [`FLUSH_GRACE`], logs the one line that says it ended, and moves it to
    /// the registry's closed connections.
    pub(super) async fn end(
        &self,
        state: &SessionState,
        queue: &OutQueue,
        listed: Listed<'_>,
        reason: Closing,
        writer: Option<Pin<&mut impl Future<Output = ()>>>,
        transport: &str,
    ) {
        // Counted once the ending is decided, not after the flush, which may wait
        // out its grace for a client that does not read.
        self.count_disconnect(reason.reason);
        // What the session was in, taken before the hub forgets it; `state` knows the
        // name, which a replaced connection's successor now holds in the hub.
        let rooms = self
            .services
            .backend
            .names_and_rooms([state.client_id])
            .remove(&state.client_id)
            .map(|(_, rooms)| rooms)
            .unwrap_or_default();
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
        self.log_disconnect(state, &reason, parked, transport);
        // The one place where a connection's reason is final: whatever counts
        // disconnects by reason counts here.
        listed.close(
            reason.reason,
            state.name.as_deref().map(str::to_owned),
            rooms,
        );
    }

    /// Counts how the connection ended. The slow consumer's and the handshake
    /// timeout's error events are counted here too, where the reason is known.
    fn count_disconnect(&self, reason: CloseReason) {
        let metrics = &self.services.metrics;
        match reason {
            CloseReason::SlowConsumer => {
                metrics.slow_consumer();
                metrics.error(ErrorCode::SlowConsumer);
            }
            CloseReason::HandshakeTimeout => metrics.error(ErrorCode::Timeout),
            _ => {}
        }
        metrics.disconnect(reason);
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
    fn log_disconnect(
        &self,
        state: &SessionState,
        reason: &Closing,
        parked: bool,
        transport: &str,
    ) {
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
