//! How a client connects, keeps its connection alive, and comes back after a cut.

use std::time::Duration;

use super::tls::ClientTls;

/// How a [`Client`](super::Client) connects and keeps its connection alive, and whether
/// it reconnects by itself. The defaults suit people and scripts; tests shorten them.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(super) connect_timeout: Duration,
    pub(super) keepalive: Option<Keepalive>,
    pub(super) reconnect: Option<Backoff>,
    pub(super) tls: Option<ClientTls>,
}

/// A ping after `ping_after` without sending anything; the connection is lost when
/// nothing at all arrives within `answer_within` of something sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keepalive {
    pub(super) ping_after: Duration,
    pub(super) answer_within: Duration,
}

/// When to try again after a cut: `first` after it, then twice as long each time up to
/// `most`, each wait jittered; no new try starts later than `give_up_after` the cut.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) first: Duration,
    pub(super) most: Duration,
    pub(super) give_up_after: Duration,
}

/// Shorter intervals would turn the keepalive into a flood.
const MIN_KEEPALIVE: Duration = Duration::from_millis(10);
/// Shorter waits between tries would hammer a server that is starting up.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: ClientOptions::DEFAULT_CONNECT_TIMEOUT,
            keepalive: Some(Keepalive {
                ping_after: ClientOptions::DEFAULT_PING_AFTER,
                answer_within: ClientOptions::DEFAULT_ANSWER_WITHIN,
            }),
            reconnect: None,
            tls: None,
        }
    }
}

impl ClientOptions {
    /// How long connecting and the server's welcome may take together.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Quiet time after which the client sends a `ping`: it keeps NATs and firewalls
    /// open, and finds a server that has gone away without a word.
    pub const DEFAULT_PING_AFTER: Duration = Duration::from_secs(30);
    /// How long after sending the client waits for any byte before it gives up.
    pub const DEFAULT_ANSWER_WITHIN: Duration = Duration::from_secs(30);
    /// The wait before the first try after a cut; each further wait doubles.
    pub const DEFAULT_RETRY_FIRST: Duration = Duration::from_millis(500);
    /// The longest wait between two tries.
    pub const DEFAULT_RETRY_MOST: Duration = Duration::from_secs(10);
    /// How long after a cut the client keeps trying.
    pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(120);

    /// How long connecting and waiting for the welcome may take together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Pings after `ping_after` without sending; the connection counts as lost when
    /// nothing arrives within `answer_within` of sending. Each is at least 10 ms.
    pub fn keepalive(mut self, ping_after: Duration, answer_within: Duration) -> Self {
        self.keepalive = Some(Keepalive {
            ping_after: ping_after.max(MIN_KEEPALIVE),
            answer_within: answer_within.max(MIN_KEEPALIVE),
        });
        self
    }

    /// Never pings and never gives up on a quiet server (TCP still notices a reset).
    pub fn no_keepalive(mut self) -> Self {
        self.keepalive = None;
        self
    }

    /// After a cut (once `hello` has made a session, the connection ends without `bye`:
    /// a reset, an end, the keepalive finding no answer, the server stopping), the
    /// client connects again by itself and resumes its session: 0.5 s after the cut,
    /// then twice as long each time up to 10 s, for up to 2 minutes. What happened is told on [`Client::take_updates`](super::Client::take_updates)
    /// instead of [`Client::take_events`](super::Client::take_events). A first connection
    /// that fails is still an error at once.
    pub fn reconnect(mut self) -> Self {
        self.reconnect = Some(Backoff {
            first: ClientOptions::DEFAULT_RETRY_FIRST,
            most: ClientOptions::DEFAULT_RETRY_MOST,
            give_up_after: ClientOptions::DEFAULT_GIVE_UP_AFTER,
        });
        self
    }

    /// Reconnects as [`ClientOptions::reconnect`] does, with other waits: `first` after
    /// the cut, doubling up to `most`, no new try later than `give_up_after` the cut.
    /// Each wait is at least 10 ms.
    pub fn reconnect_backoff(
        mut self,
        first: Duration,
        most: Duration,
        give_up_after: Duration,
    ) -> Self {
        let first = first.max(MIN_BACKOFF);
        self.reconnect = Some(Backoff {
            first,
            most: most.max(first),
            give_up_after,
        });
        self
    }

    /// Speaks TLS, trusting whom `tls` says; the host of the address connected to is
    /// the name the server's certificate must carry (unless a fingerprint is pinned).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }
}
