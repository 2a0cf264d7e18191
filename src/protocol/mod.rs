//! The typed vocabulary every dialect decodes into and encodes from: requests, replies,
//! events and error codes, as docs/protocol.md states them. Nothing here knows about
//! sockets or wire formats beyond the serde field names, which are the native protocol's
//! own.

mod error;

pub use error::{ErrorBody, ErrorCode};

use serde::{Deserialize, Serialize};

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The server string announced in `welcome`.
pub const SERVER_NAME: &str = concat!("switchboard ", env!("CARGO_PKG_VERSION"));
/// Longest `text` of a direct or room message, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;
/// Longest user name, in characters.
pub const MAX_NAME: usize = 32;
/// Longest room name; rooms follow the user-name alphabet so that every dialect,
/// including whitespace-separated text lines, can carry them unquoted.
pub const MAX_ROOM: usize = 64;
/// `inbox` returns this many messages when the request gives no `limit`.
pub const DEFAULT_INBOX_LIMIT: u32 = 100;
/// `inbox` never returns more than this many messages, whatever `limit` says.
pub const MAX_INBOX_LIMIT: u32 = 1000;

/// Identifies one connection for the lifetime of the server process.
pub type ClientId = u64;

/// A request as the client sent it, with its correlation id.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Option<u64>,
    pub request: Request,
}

/// One operation a client can ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Ping,
    /// Boxed: its fields would make every request (and every session's task, which
    /// holds one while it waits) half as large again.
    Hello(Box<Hello>),
    Menu,
    Users,
    Send {
        to: Recipient,
        text: String,
    },
    Inbox {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Leave the page unread, to be acknowledged with `ack` once it is handed over.
        #[serde(default, skip_serializing_if = "is_false")]
        peek: bool,
    },
    Ack {
        up_to: u64,
    },
    CreateRoom {
        room: String,
    },
    JoinRoom {
        room: String,
        /// Replay the kept messages with a greater `seq` before the live ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// The incarnation `after` counts in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<Box<str>>,
    },
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    Say {
        room: String,
        text: String,
    },
    LeaveRoom {
        room: String,
    },
    CloseRoom {
        room: String,
    },
    Bye,
}

/// Every op name, so that a decoder can tell an unknown op from a malformed known one.
pub const OPS: &[&str] = &[
    "ping",
    "hello",
    "menu",
    "users",
    "send",
    "inbox",
    "ack",
    "history",
    "create_room",
    "join_room",
    "say",
    "leave_room",
    "close_room",
    "bye",
];

impl Request {
    /// May be served before `hello` has completed the handshake.
    pub fn allowed_before_hello(&self) -> bool {
        matches!(self, Request::Ping | Request::Hello(_) | Request::Bye)
    }
}

/// A `hello`'s fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    /// The token of a session to take over (see "Session resume").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeToken>,
    /// For each room, the last `seq` the client really received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
}

/// A password on its way to being checked. Its `Debug` hides it, so that no log line,
/// panic message or error can ever show one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Password(password.to_owned())
    }
}

/// A session's resume token: a secret like a password, so its `Debug` hides it too.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResumeToken(pub String);

impl std::fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeToken(***)")
    }
}

/// A resuming client's last `seq` received, by room.
pub type Seen = std::collections::BTreeMap<String, u64>;

/// Longest `history` page, and the default.
pub const MAX_HISTORY_LIMIT: u32 = 1000;
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

fn is_false(b: &bool) -> bool {
    !*b
}

/// The `to` of a `send`: a JSON string is a name, a JSON number a client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Recipient {
    Id(ClientId),
    Name(String),
}

/// By hand rather than `untagged`: that buffers the value and tries `Id` first, so
/// every send by name built (and formatted) an error before it was parsed as a name,
/// a fifth of the server's parsing time for a send.
impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Recipient;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a user's name or client id")
            }

            fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<Recipient, E> {
                Ok(Recipient::Id(id))
            }

            fn visit_i64<E: serde::de::Error>(self, id: i64) -> Result<Recipient, E> {
                u64::try_from(id)
                    .map(Recipient::Id)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(id), &self))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Recipient, E> {
                Ok(Recipient::Name(name.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<Recipient, E> {
                Ok(Recipient::Name(name))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Recipient {
    /// A recipient typed by a person (a text line, a prompt, a flag): a bare word is
    /// always a name, so that every name `hello` accepts (all digits included) can be
    /// reached; `#17` is client id 17. Anything else starting with `#` is refused,
    /// with the reason for a person.
    pub fn typed(to: &str) -> Result<Recipient, String> {
        let Some(id) = to.strip_prefix('#') else {
            return Ok(Recipient::Name(to.to_owned()));
        };
        match id.parse() {
            Ok(id) if to.len() > 1 && to[1..].bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Recipient::Id(id))
            }
            _ => Err(format!(
                "{to:?} is not a recipient: a client id is '#' and its digits (#17), a name is written bare"
            )),
        }
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Id(id) => write!(f, "#{id}"),
            Recipient::Name(name) => f.write_str(name),
        }
    }
}

/// The answer to one request: `reply` carries the op's result fields or its error.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Option<u64>,
    pub outcome: Result<Reply, ErrorBody>,
}

/// The result fields of a successful request, one shape per op family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Hello {
        client_id: ClientId,
        name: String,
        /// Absent when the server keeps no sessions for resuming (`--resume-grace 0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<ResumeToken>,
        /// Only when the client asked to resume: whether it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed: Option<bool>,
        /// The resumed session's rooms, each with its latest `seq`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rooms: Option<Vec<RoomPosition>>,
    },
    Menu(Menu),
    Users {
        users: Vec<UserInfo>,
    },
    Sent {
        message_id: u64,
    },
    Inbox(InboxPage),
    History(HistoryPage),
    Acked {
        acked: u64,
    },
    Said {
        seq: u64,
    },
    /// Before [`Reply::Created`]: read back untagged, a join's answer has its fields too.
    Joined {
        members: Vec<String>,
        epoch: String,
        seq: u64,
        /// Only when the join asked for a replay (`after`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Only when `recovered` is false: the oldest `seq` the room still keeps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oldest: Option<u64>,
    },
    Created {
        epoch: String,
        seq: u64,
    },
    /// The acknowledgment of data that was not a request (the lab programs' dicts).
    Ack {
        ack: bool,
    },
    Done {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub client_id: ClientId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Menu {
    pub title: String,
    pub options: Vec<MenuOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuOption {
    pub key: u32,
    pub label: String,
    pub op: String,
}

impl Menu {
    /// The course project's menu: the server owns it so that every client renders the
    /// same services in the same order.
    pub fn course_project() -> Self {
        let options = [
            (1, "Get user list", "users"),
            (2, "Send a message", "send"),
            (3, "Get my messages", "inbox"),
            (4, "Create a new chat room", "create_room"),
            (5, "Join an existing chat room", "join_room"),
            (6, "Disconnect from server", "bye"),
        ]
        .into_iter()
        .map(|(key, label, op)| MenuOption {
            key,
            label: label.to_owned(),
            op: op.to_owned(),
        })
        .collect();
        Menu {
            title: "TCP CHAT".to_owned(),
            options,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxPage {
    pub messages: Vec<StoredMessage>,
    pub more: bool,
}

/// A room's kept messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub messages: Vec<RoomLine>,
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomLine {
    pub seq: u64,
    pub from: String,
    pub text: String,
    pub sent_at: String,
}

/// Where a room stands: which incarnation, and its latest `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPosition {
    pub room: String,
    pub epoch: String,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: u64,
    pub from: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub sent_at: String,
}

/// A server push, never correlated with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Welcome {
        client_id: ClientId,
        server: String,
        protocol: u32,
    },
    Message {
        from: String,
        message_id: u64,
    },
    Joined {
        room: String,
        name: String,
    },
    Left {
        room: String,
        name: String,
    },
    RoomMessage {
        room: String,
        from: String,
        text: String,
        sent_at: String,
        #[serde(default)]
        seq: u64,
        /// Sent again from the room's history, not live.
        #[serde(default, skip_serializing_if = "is_false")]
        replay: bool,
    },
    RoomClosed {
        room: String,
        by: String,
    },
    Shutdown {
        reason: String,
    },
    /// A resumed room whose missed messages are no longer all kept: nothing of it was
    /// replayed, and `history` pages what is.
    ResumeGap {
        room: String,
        oldest: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Event {
    pub fn welcome(client_id: ClientId) -> Self {
        Event::Welcome {
            client_id,
            server: SERVER_NAME.to_owned(),
            protocol: PROTOCOL_VERSION,
        }
    }

    pub fn error(body: ErrorBody) -> Self {
        Event::Error {
            code: body.code,
            message: body.message,
        }
    }
}

/// Why a name is refused, or `None` when it follows the rule of docs/protocol.md:
/// 1-32 characters of `A-Z a-z 0-9 _ . -`.
pub fn check_name(name: &str) -> Option<String> {
    check_identifier(name, MAX_NAME, "name")
}

/// Room names follow the same alphabet as user names, up to [`MAX_ROOM`] characters.
pub fn check_room(room: &str) -> Option<String> {
    check_identifier(room, MAX_ROOM, "room")
}

fn check_identifier(value: &str, max: usize, what: &str) -> Option<String> {
    if value.is_empty() || value.len() > max {
        return Some(format!("a {what} is 1 to {max} characters long"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !value.chars().all(allowed) {
        return Some(format!(
            "a {what} uses only letters, digits, '_', '.' and '-'"
        ));
    }
    None
}

/// The current time as docs/protocol.md's `sent_at`: RFC 3339 in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    // The system clock as it is, without chrono's calendar: this is read once per read
    // of every connection (its last activity), where a calendar date is never needed.
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since_epoch.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `ms` milliseconds since the Unix epoch as a `sent_at`.
pub fn rfc3339_of_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design_alphabet() {
        assert!(check_name("nina_2.x-y").is_none());
        assert!(check_name("").is_some());
        assert!(check_name("has space").is_some());
        assert!(check_name(&"a".repeat(33)).is_some());
        assert!(check_name(&"a".repeat(32)).is_none());
        assert!(check_name("héllo").is_some());
    }

    #[test]
    fn a_typed_recipient_is_a_name_unless_it_is_hash_and_digits() {
        assert_eq!(Recipient::typed("20"), Ok(Recipient::Name("20".into())));
        assert_eq!(Recipient::typed("nina"), Ok(Recipient::Name("nina".into())));
        assert_eq!(Recipient::typed("#20"), Ok(Recipient::Id(20)));
        assert_eq!(Recipient::typed("#007"), Ok(Recipient::Id(7)));
        for bad in [
            "#",
            "#x",
            "#-1",
            "#+1",
            "# 1",
            "#1a",
            "#99999999999999999999",
        ] {
            assert!(Recipient::typed(bad).is_err(), "{bad}");
        }
        // What a recipient is shown as is typed back to the same recipient.
        for to in [Recipient::Id(20), Recipient::Name("20".into())] {
            assert_eq!(Recipient::typed(&to.to_string()), Ok(to));
        }
    }

    #[test]
    fn menu_has_the_six_course_options() {
        let menu = Menu::course_project();
        let ops: Vec<_> = menu.options.iter().map(|o| o.op.as_str()).collect();
        assert_eq!(
            ops,
            ["users", "send", "inbox", "create_room", "join_room", "bye"]
        );
    }
}
