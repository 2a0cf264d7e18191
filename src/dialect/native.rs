//! The native protocol of docs/protocol.md: length-prefixed frames of one JSON object each.

use std::borrow::Cow;
use std::io::Write;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::{Dialect, DialectKind, Incoming};
use crate::frame::{self, FrameError};
use crate::protocol::{
    Envelope, ErrorBody, ErrorCode, Event, OPS, Password, Recipient, Reply, Request, Response,
    ResumeToken, Seen,
};

#[derive(Debug, Clone)]
pub struct Native {
    max_frame: usize,
}

impl Native {
    pub fn new(max_frame: usize) -> Self {
        Native { max_frame }
    }
}

impl Default for Native {
    fn default() -> Self {
        Native::new(frame::DEFAULT_MAX_FRAME)
    }
}

impl Dialect for Native {
    const KIND: DialectKind = DialectKind::Native;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        frame::decode_with(src, self.max_frame, parse_request)
    }

    fn encode_response(&self, response: &Response, dst: &mut BytesMut) {
        if !write_short_response(response, dst) {
            frame::encode_with(dst, |out| write_response(response, out))
        }
    }

    fn encode_event(&self, event: &Event, dst: &mut BytesMut) {
        frame::encode_json(event, dst)
    }
}

/// The answers to ping, say and send, most of all answers, written by hand as one
/// frame: `{"id":…,"ok":true}` and `{"id":…,"ok":true,"message_id":…}`. Through serde
/// they cost a thousand instructions each, more than the rest of a ping's reply, and
/// through `io::Write` a few hundred. False for every other response.
fn write_short_response(response: &Response, dst: &mut BytesMut) -> bool {
    let mut id_digits = itoa::Buffer::new();
    let id = match response.id {
        Some(id) => id_digits.format(id).as_bytes(),
        None => b"null",
    };
    let mut message_digits = itoa::Buffer::new();
    let parts: [&[u8]; 5] = match &response.outcome {
        Ok(Reply::Done {}) => [b"{\"id\":", id, b",\"ok\":true}", b"", b""],
        Ok(Reply::Sent { message_id }) => [
            b"{\"id\":",
            id,
            b",\"ok\":true,\"message_id\":",
            message_digits.format(*message_id).as_bytes(),
            b"}",
        ],
        Ok(Reply::Said { seq }) => [
            b"{\"id\":",
            id,
            b",\"ok\":true,\"seq\":",
            message_digits.format(*seq).as_bytes(),
            b"}",
        ],
        _ => return false,
    };
    let len: usize = parts.iter().map(|part| part.len()).sum();
    dst.reserve(4 + len);
    dst.put_u32(len as u32);
    for part in parts {
        dst.put_slice(part);
    }
    true
}

/// `{"id":…,"ok":true,<the reply's fields>}` or `{"id":…,"ok":false,"error":{…}}`,
/// written straight out: serde's `flatten` (as in [`super::WireResponse`]) goes through
/// a map of buffered values, which made answering a ping cost more than reading it.
fn write_response(response: &Response, out: &mut impl Write) -> std::io::Result<()> {
    let mut digits = itoa::Buffer::new();
    out.write_all(b"{\"id\":")?;
    match response.id {
        Some(id) => out.write_all(digits.format(id).as_bytes())?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",")?;
    match &response.outcome {
        Ok(reply) => {
            out.write_all(b"\"ok\":true")?;
            // Every reply is an object: its fields continue this one.
            serde_json::to_writer(&mut Continue::new(out), reply).map_err(std::io::Error::other)
        }
        Err(error) => {
            out.write_all(b"\"ok\":false,\"error\":")?;
            serde_json::to_writer(&mut *out, error).map_err(std::io::Error::other)?;
            out.write_all(b"}")
        }
    }
}

/// Writes a JSON object's fields as the continuation of an object already open: drops
/// its `{`, and puts a `,` before the first field (none if it has no fields).
struct Continue<'a, W: Write> {
    out: &'a mut W,
    seen: u8,
}

impl<'a, W: Write> Continue<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Continue { out, seen: 0 }
    }
}

impl<W: Write> Write for Continue<'_, W> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len();
        if self.seen == 0 && !buf.is_empty() {
            buf = &buf[1..];
            self.seen = 1;
        }
        if self.seen == 1 && !buf.is_empty() {
            if buf[0] != b'}' {
                self.out.write_all(b",")?;
            }
            self.seen = 2;
        }
        self.out.write_all(buf)?;
        Ok(len)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The request fields as they arrive, for the common case of a well-formed request.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<Password>,
    #[serde(default)]
    to: Option<Recipient>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    peek: Option<bool>,
    #[serde(default)]
    up_to: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    resume: Option<ResumeToken>,
    #[serde(default)]
    seen: Option<Seen>,
}

/// A well-formed request read straight into its fields; `None` sends the payload the
/// general way ([`request_from_value`]), which also words every error.
fn parse_fast(payload: &[u8]) -> Option<Envelope> {
    // The payload checked as UTF-8 at once, then read as a `str`: from bytes, serde_json
    // checks each string on its own, which cost more than the one pass.
    let f: Fields<'_> = serde_json::from_str(std::str::from_utf8(payload).ok()?).ok()?;
    let request = match &*f.op {
        "ping" => Request::Ping,
        "hello" => Request::Hello(Box::new(crate::protocol::Hello {
            name: f.name?,
            password: f.password,
            resume: f.resume,
            seen: f.seen,
        })),
        "menu" => Request::Menu,
        "users" => Request::Users,
        "send" => Request::Send {
            to: f.to?,
            text: f.text?,
        },
        "inbox" => Request::Inbox {
            limit: f.limit,
            peek: f.peek.unwrap_or(false),
        },
        "ack" => Request::Ack { up_to: f.up_to? },
        "create_room" => Request::CreateRoom { room: f.room? },
        "join_room" => Request::JoinRoom {
            room: f.room?,
            after: f.after,
            epoch: f.epoch.map(String::into_boxed_str),
        },
        "history" => Request::History {
            room: f.room?,
            before: f.before,
            limit: f.limit,
        },
        "say" => Request::Say {
            room: f.room?,
            text: f.text?,
        },
        "leave_room" => Request::LeaveRoom { room: f.room? },
        "close_room" => Request::CloseRoom { room: f.room? },
        "bye" => Request::Bye,
        _ => return None,
    };
    Some(Envelope { id: f.id, request })
}

/// Turns one frame's payload into a request, or into the error that answers it.
pub fn parse_request(payload: &[u8]) -> Incoming {
    if let Some(envelope) = parse_fast(payload) {
        return Incoming::Request(envelope);
    }
    let invalid = |message: String| Incoming::Invalid {
        id: None,
        error: ErrorBody::new(ErrorCode::BadRequest, message),
    };
    let not_json = |e: serde_json::Error| invalid(format!("not JSON: {e}"));
    // Checked first: a struct would also take a JSON array, field by field.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return match serde_json::from_slice::<IgnoredAny>(payload) {
            Err(e) => not_json(e),
            Ok(_) => invalid("a request is a JSON object".into()),
        };
    }
    match serde_json::from_slice::<Loose>(payload) {
        Ok(loose) => request_from_value(loose.into_value()),
        Err(e) => match serde_json::from_slice::<IgnoredAny>(payload) {
            Err(e) => not_json(e),
            Ok(_) => invalid(e.to_string()),
        },
    }
}

/// The fields of a request that the fast way could not read, as values to word what
/// is wrong with them. Fields the protocol does not know are skipped unread, and a
/// known field holding an array or an object keeps only that it did (it is wrong
/// anyway): the value built is never much larger than the payload's own strings,
/// where a whole `serde_json::Value` costs a few dozen bytes per byte of `[0,0,...]`.
#[derive(Deserialize)]
struct Loose {
    #[serde(default)]
    id: Field,
    #[serde(default)]
    op: Field,
    #[serde(default)]
    name: Field,
    #[serde(default)]
    password: Field,
    #[serde(default)]
    to: Field,
    #[serde(default)]
    text: Field,
    #[serde(default)]
    limit: Field,
    #[serde(default)]
    room: Field,
    #[serde(default)]
    peek: Field,
    #[serde(default)]
    up_to: Field,
    #[serde(default)]
    after: Field,
    #[serde(default)]
    epoch: Field,
    #[serde(default)]
    before: Field,
    #[serde(default)]
    resume: Field,
    #[serde(default)]
    seen: Field,
}

impl Loose {
    fn into_value(self) -> Value {
        let fields = [
            ("id", self.id),
            ("op", self.op),
            ("name", self.name),
            ("password", self.password),
            ("to", self.to),
            ("text", self.text),
            ("limit", self.limit),
            ("room", self.room),
            ("peek", self.peek),
            ("up_to", self.up_to),
            ("after", self.after),
            ("epoch", self.epoch),
            ("before", self.before),
            ("resume", self.resume),
            ("seen", self.seen),
        ];
        Value::Object(
            fields
                .into_iter()
                .filter_map(|(key, field)| Some((key.to_owned(), field.0?)))
                .collect(),
        )
    }
}

/// One field as it came (`null` included), or `None` when it was not there.
#[derive(Default)]
struct Field(Option<Value>);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Value;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(v.into())
            }

            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(v.into())
            }

            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(v.into())
            }

            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(v.into())
            }

            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(v.into())
            }

            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Array(Vec::new()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Object(serde_json::Map::new()))
            }
        }
        deserializer
            .deserialize_any(Visitor)
            .map(|v| Field(Some(v)))
    }
}

/// Turns a request object with the native field names into a request, or into the
/// error that answers it; shared with the dialects that carry the same fields.
pub fn request_from_value(value: Value) -> Incoming {
    let invalid = |id, code, message: String| Incoming::Invalid {
        id,
        error: ErrorBody::new(code, message),
    };
    let Value::Object(map) = &value else {
        return invalid(
            None,
            ErrorCode::BadRequest,
            "a request is a JSON object".into(),
        );
    };
    let id = match map.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(id) => Some(id),
            None => {
                return invalid(
                    None,
                    ErrorCode::BadRequest,
                    "id must be a non-negative integer".into(),
                );
            }
        },
    };
    match map.get("op") {
        Some(Value::String(op)) if OPS.contains(&op.as_str()) => {}
        Some(Value::String(op)) => {
            let op: String = op.chars().take(40).collect();
            return invalid(id, ErrorCode::UnknownOp, format!("unknown op {op:?}"));
        }
        Some(_) => return invalid(id, ErrorCode::BadRequest, "op must be a string".into()),
        None => return invalid(id, ErrorCode::BadRequest, "missing field op".into()),
    }
    match serde_json::from_value::<Request>(value) {
        Ok(request) => Incoming::Request(Envelope { id, request }),
        Err(e) => invalid(id, ErrorCode::BadRequest, e.to_string()),
    }
}

#[cfg(test)]
mod tests;
