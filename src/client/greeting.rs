//! What a client makes of a server's first bytes and of its error events: another
//! dialect's greeting, or an error, is told to the person in words.

use crate::protocol::{ErrorBody, ErrorCode};

/// A greeting that is not the native protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// A pickle (protocol 2 and later open with 0x80): the lab dialect, or a lab server.
    Lab,
    /// A line of text: switchboard's text dialect, or another line-based server.
    Text,
    /// Neither: something else listens there.
    Unknown,
}

impl Greeting {
    /// Judges a server's first bytes; `None` when they may be a native frame. A native
    /// greeting is a small frame, so its length prefix starts with a zero byte.
    pub fn sniff(first: &[u8]) -> Option<Greeting> {
        match *first.first()? {
            0 => None,
            0x80 => Some(Greeting::Lab),
            b'\t' | b'\r' | b'\n' | 0x20..=0x7e => Some(Greeting::Text),
            _ => Some(Greeting::Unknown),
        }
    }
}

impl std::fmt::Display for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Greeting::Lab => {
                "this is a lab-dialect (pickle) listener, not switchboard's native protocol; \
                 use `connect --dialect lab`, or the native port (12000 by default)"
            }
            Greeting::Text => {
                "this is switchboard's text dialect (for nc/telnet), not its native protocol; \
                 the native protocol is on another port (12000 by default)"
            }
            Greeting::Unknown => {
                "this server does not speak switchboard's native protocol \
                 (its first bytes are not a native frame)"
            }
        })
    }
}

/// An error the server sent as an event (no request to answer), said for a person:
/// why the server turned the connection away or is about to close it.
pub fn in_words(body: &ErrorBody) -> String {
    match body.code {
        ErrorCode::ServerFull => {
            "the server is full (it has as many clients as it allows); try again later".into()
        }
        ErrorCode::Timeout => format!("the server timed the connection out ({})", body.message),
        ErrorCode::SlowConsumer => {
            "the server cut the connection: this client did not read what it was sent \
             fast enough (slow consumer)"
                .into()
        }
        ErrorCode::ShuttingDown => "the server is shutting down".into(),
        ErrorCode::TooLarge => {
            format!("the server refused a frame as too large ({})", body.message)
        }
        _ => body.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_are_told_apart_by_their_first_byte() {
        assert_eq!(Greeting::sniff(&[]), None);
        assert_eq!(Greeting::sniff(&[0, 0, 0, 80, b'{']), None);
        assert_eq!(Greeting::sniff(&[0x80, 4, 0x95]), Some(Greeting::Lab));
        assert_eq!(Greeting::sniff(b"* welcome 1 x"), Some(Greeting::Text));
        assert_eq!(Greeting::sniff(&[0xff, 1]), Some(Greeting::Unknown));
    }

    #[test]
    fn error_events_read_as_sentences() {
        let full = ErrorBody::new(ErrorCode::ServerFull, "full");
        assert!(in_words(&full).starts_with("the server is full"));
        let slow = ErrorBody::new(ErrorCode::SlowConsumer, "queue full");
        assert!(in_words(&slow).contains("slow consumer"));
        let other = ErrorBody::new(ErrorCode::BadRequest, "no such thing");
        assert_eq!(in_words(&other), "no such thing");
    }
}
