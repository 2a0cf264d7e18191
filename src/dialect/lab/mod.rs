//! The lab dialect of docs/protocol.md: the course's Python programs, which exchange
//! pickled dicts over raw `recv(4096)`.
//!
//! Each pickle is found with [`scan::Scanner`] (pickles carry no length) and only then
//! decoded by serde-pickle, data-only: nothing in a pickle is ever resolved to code. A
//! dict with an `op` key is a native request with the native field names; anything else
//! is data to show on the console, acknowledged with `{'ack': True}`.

pub mod scan;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_pickle::{DeOptions, HashableValue, SerOptions, Value};

use super::{Dialect, DialectKind, Incoming, WireResponse, native};
use crate::frame::FrameError;
use crate::protocol::{ErrorBody, ErrorCode, Event, Reply, Response};
use scan::{ScanError, Scanned, Scanner};

/// Longest summary of received data put on the console.
const MAX_SUMMARY: usize = 2000;
/// Entries of a data dict kept as fields: the lab programs send four or five.
pub const MAX_FIELDS: usize = 32;
/// Longest key of a field kept, in bytes (cut on a character boundary).
pub const MAX_FIELD_KEY: usize = 64;
/// Longest value of a field kept, in bytes (cut on a character boundary).
pub const MAX_FIELD_VALUE: usize = 200;

#[derive(Debug, Clone)]
pub struct Lab {
    max_pickle: usize,
    scanner: Scanner,
}

impl Lab {
    pub fn new(max_pickle: usize) -> Self {
        Lab {
            max_pickle,
            scanner: Scanner::default(),
        }
    }
}

impl Dialect for Lab {
    const KIND: DialectKind = DialectKind::Lab;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        Ok(
            next_pickle(&mut self.scanner, src, self.max_pickle)?.map(|pickle| match pickle {
                Ok(value) => from_value(value),
                Err(why) => Incoming::Invalid {
                    id: None,
                    error: ErrorBody::new(ErrorCode::BadRequest, format!("pickle refused: {why}")),
                },
            }),
        )
    }

    fn held(&self) -> usize {
        self.scanner.held()
    }

    fn encode_response(&self, response: &Response, dst: &mut BytesMut) {
        match &response.outcome {
            Ok(Reply::Ack { ack }) => put_pickle(&Ack { ack: *ack }, dst),
            _ => put_pickle(&WireResponse::new(response), dst),
        }
    }

    fn encode_event(&self, event: &Event, dst: &mut BytesMut) {
        match event {
            Event::Welcome { client_id, .. } => put_pickle(
                &Welcome {
                    clientid: *client_id,
                },
                dst,
            ),
            event => put_pickle(event, dst),
        }
    }
}

/// The lab #3 handshake: `{'clientid': <id>}`.
#[derive(Serialize)]
struct Welcome {
    clientid: u64,
}

#[derive(Serialize)]
struct Ack {
    ack: bool,
}

fn put_pickle<T: Serialize>(value: &T, dst: &mut BytesMut) {
    let start = dst.len();
    // Our own protocol types always pickle; should one ever fail, no partial pickle
    // may stay in the stream.
    if serde_pickle::to_writer(&mut dst.writer(), value, SerOptions::new()).is_err() {
        dst.truncate(start);
    }
}

/// Takes one pickle off the front of `src`, once it is all there: its value, or why it
/// was refused (in which case its bytes are gone and the stream goes on).
pub fn next_pickle(
    scanner: &mut Scanner,
    src: &mut BytesMut,
    max: usize,
) -> Result<Option<Result<Value, String>>, FrameError> {
    let (len, refused) = match scanner.scan(src, max) {
        Ok(Scanned::Incomplete) => return Ok(None),
        Ok(Scanned::Complete { len, refused }) => (len, refused),
        Err(ScanError::TooLarge { max }) => {
            return Err(FrameError::TooLarge {
                len: src.len(),
                max,
            });
        }
        Err(e) => return Err(FrameError::Unreadable(format!("not a pickle stream: {e}"))),
    };
    let pickle = src.split_to(len);
    if let Some(why) = refused {
        return Ok(Some(Err(why.to_owned())));
    }
    Ok(Some(
        serde_pickle::value_from_slice(&pickle, DeOptions::new()).map_err(|e| e.to_string()),
    ))
}

fn bad_request(message: String) -> Incoming {
    Incoming::Invalid {
        id: None,
        error: ErrorBody::new(ErrorCode::BadRequest, message),
    }
}

/// A dict with an `op` key is a request; anything else is data for the console.
fn from_value(value: Value) -> Incoming {
    let is_request = matches!(&value, Value::Dict(map)
        if map.contains_key(&HashableValue::String("op".into())));
    if !is_request {
        return Incoming::Data {
            summary: summary(&value),
            fields: fields(&value),
        };
    }
    match to_json(value) {
        Ok(json) => native::request_from_value(json),
        Err(e) => bad_request(format!("request fields must be plain values: {e}")),
    }
}

/// The request dict as the JSON value the native dialect parses. Python ints are
/// unbounded and pickled past 2^63 as longs, which serde-pickle cannot turn into JSON
/// itself: an id up to 2^64-1 must come through as it does on the native wire.
fn to_json(value: Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::I64(n) => Json::from(n),
        Value::Int(big) => {
            let digits = big.to_string();
            match digits.parse::<u64>() {
                Ok(n) => Json::from(n),
                Err(_) => return Err(format!("integer out of range: {digits}")),
            }
        }
        Value::F64(x) => serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s),
        Value::Bytes(_) => return Err("bytes where text was expected".into()),
        Value::List(items) | Value::Tuple(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Set(items) | Value::FrozenSet(items) => Json::Array(
            items
                .into_iter()
                .map(|item| to_json(item.into_value()))
                .collect::<Result<_, _>>()?,
        ),
        Value::Dict(map) => {
            let mut object = serde_json::Map::new();
            for (key, value) in map {
                let HashableValue::String(key) = key else {
                    return Err("dict keys must be strings".into());
                };
                object.insert(key, to_json(value)?);
            }
            Json::Object(object)
        }
    })
}

/// The value as Python would print it, cut short for the console. Printing stops at
/// the cut: a value that prints many times larger than its pickle is never printed
/// whole.
pub fn summary(value: &Value) -> String {
    capped(value, MAX_SUMMARY)
}

/// A dict's first [`MAX_FIELDS`] entries as text: a string as it is, anything else as
/// Python prints it, each cut short. Keys are kept as the program spelled them (`Name`,
/// `student_id`, `studentId`...): which of them are which is the reader's business.
pub fn fields(value: &Value) -> Vec<(String, String)> {
    let Value::Dict(map) = value else {
        return Vec::new();
    };
    map.iter()
        .take(MAX_FIELDS)
        .map(|(key, value)| {
            let key = match key {
                HashableValue::String(key) => cut(key, MAX_FIELD_KEY),
                key => capped(key, MAX_FIELD_KEY),
            };
            let value = match value {
                Value::String(text) => cut(text, MAX_FIELD_VALUE),
                value => capped(value, MAX_FIELD_VALUE),
            };
            (key, value)
        })
        .collect()
}

/// `text`, or its first `max` bytes (on a character boundary) and `...`.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `value` printed, up to `max` bytes and `...`; printing stops at the cut.
fn capped(value: &impl std::fmt::Display, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = Capped {
        text: String::new(),
        max,
    };
    if write!(out, "{value}").is_err() {
        let mut cut = max;
        while !out.text.is_char_boundary(cut) {
            cut -= 1;
        }
        out.text.truncate(cut);
        out.text.push_str("...");
    }
    out.text
}

/// A string that refuses to grow past `max` bytes (and a character).
struct Capped {
    text: String,
    max: usize,
}

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let limit = self.max + 4;
        let room = limit - self.text.len().min(limit);
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&s[..cut]);
        Err(std::fmt::Error)
    }
}

#[cfg(test)]
mod tests;
