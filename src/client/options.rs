//! How a client connects and keeps its connection alive.

use std::time::Duration;

/// How a [`Client`] connects and keeps its connection alive. The defaults suit people
/// and scripts; tests shorten them.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(super) connect_timeout: Duration,
    pub(super) keepalive: Option<Keepalive>,
}

/// A ping after `ping_after` without sending anything; the connection is lost when
/// nothing at all arrives within `answer_within` of something sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keepalive {
    pub(super) ping_after: Duration,
    pub(super) answer_within: Duration,
}

/// Shorter intervals would turn the keepalive into a flood.
const MIN_KEEPALIVE: Duration = Duration::from_millis(10);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: ClientOptions::DEFAULT_CONNECT_TIMEOUT,
            keepalive: Some(Keepalive {
                ping_after: ClientOptions::DEFAULT_PING_AFTER,
                answer_within: ClientOptions::DEFAULT_ANSWER_WITHIN,
            }),
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
}
