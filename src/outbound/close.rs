//! Why a connection ended: one kind from a fixed list, which `/api/connz` shows and by
//! which disconnects are counted, and a detail in words for the log line. It lives
//! beside the stop signal because the hub and the queue, not only the session, are
//! often the ones who decide that a connection ends (a takeover, a slow consumer).

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde::Serialize;

/// How a connection ended. The list is fixed: a new way for a connection to end is
/// one of these, so that what an operator counts and filters on never changes shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client said `bye`.
    Bye,
    /// The client closed its side cleanly (end of stream, a WebSocket close).
    ClientClosed,
    /// The peer reset the connection, or reading or writing it failed.
    Reset,
    /// A dead peer: TCP keepalive or `TCP_USER_TIMEOUT` gave it up, or a WebSocket
    /// ping went unanswered.
    IdleTimeout,
    /// No `hello` within the handshake timeout.
    HandshakeTimeout,
    /// The client did not read what was sent to it fast enough.
    SlowConsumer,
    /// A message over `--max-frame`, or over the server's budget for unfinished ones.
    TooLarge,
    /// Input that cannot be decoded, which ends the connection.
    BadFrame,
    /// Refused when accepted: the server had as many clients as it allows.
    ServerFull,
    /// Another connection resumed this connection's session.
    Replaced,
    /// The server shut down.
    Shutdown,
    /// The server failed (a panic in the session, a state it cannot go on from).
    Internal,
}

impl CloseReason {
    pub const ALL: [CloseReason; 12] = [
        CloseReason::Bye,
        CloseReason::ClientClosed,
        CloseReason::Reset,
        CloseReason::IdleTimeout,
        CloseReason::HandshakeTimeout,
        CloseReason::SlowConsumer,
        CloseReason::TooLarge,
        CloseReason::BadFrame,
        CloseReason::ServerFull,
        CloseReason::Replaced,
        CloseReason::Shutdown,
        CloseReason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Bye => "bye",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::Reset => "reset",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::TooLarge => "too_large",
            CloseReason::BadFrame => "bad_frame",
            CloseReason::ServerFull => "server_full",
            CloseReason::Replaced => "replaced",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Internal => "internal",
        }
    }

    /// The reason named `name` (as [`CloseReason::as_str`] spells it).
    pub fn parse(name: &str) -> Option<CloseReason> {
        CloseReason::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// What a failed read or write of the socket means: the kernel's keepalive or
    /// user timeout giving a dead peer up reports `ETIMEDOUT`; a peer that went away
    /// without closing, anything else.
    pub fn of_io(error: &io::Error) -> CloseReason {
        match error.kind() {
            io::ErrorKind::TimedOut => CloseReason::IdleTimeout,
            io::ErrorKind::UnexpectedEof => CloseReason::ClientClosed,
            _ => CloseReason::Reset,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`CloseReason`] with what the log line says of it (empty when the kind says all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub reason: CloseReason,
    pub detail: Cow<'static, str>,
}

impl Closing {
    pub fn new(reason: CloseReason, detail: impl Into<Cow<'static, str>>) -> Self {
        Closing {
            reason,
            detail: detail.into(),
        }
    }

    /// A failed read or write: `what` failed with `error`.
    pub fn io(what: &'static str, error: &io::Error) -> Self {
        Closing::new(CloseReason::of_io(error), format!("{what}: {error}"))
    }
}

impl From<CloseReason> for Closing {
    fn from(reason: CloseReason) -> Self {
        Closing::new(reason, "")
    }
}

impl fmt::Display for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_spelled_as_the_design_lists_it_and_parses_back() {
        let names: Vec<&str> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "bye",
                "client_closed",
                "reset",
                "idle_timeout",
                "handshake_timeout",
                "slow_consumer",
                "too_large",
                "bad_frame",
                "server_full",
                "replaced",
                "shutdown",
                "internal"
            ]
        );
        for reason in CloseReason::ALL {
            assert_eq!(CloseReason::parse(reason.as_str()), Some(reason));
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
        assert_eq!(CloseReason::parse("nope"), None);
    }

    #[test]
    fn socket_errors_say_a_dead_peer_apart_from_a_reset() {
        let kind = |k: io::ErrorKind| CloseReason::of_io(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::TimedOut), CloseReason::IdleTimeout);
        assert_eq!(kind(io::ErrorKind::ConnectionReset), CloseReason::Reset);
        assert_eq!(kind(io::ErrorKind::BrokenPipe), CloseReason::Reset);
        assert_eq!(
            Closing::io("read failed", &io::Error::from(io::ErrorKind::TimedOut)).reason,
            CloseReason::IdleTimeout
        );
    }
}
