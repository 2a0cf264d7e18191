//! The native protocol of DESIGN.md: length-prefixed frames of one JSON object each.

use bytes::BytesMut;
use serde_json::Value;

use super::{Dialect, DialectKind, Incoming, WireResponse};
use crate::frame::{self, FrameError};
use crate::protocol::{Envelope, ErrorBody, ErrorCode, Event, OPS, Request, Response};

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
        Ok(frame::decode(src, self.max_frame)?.map(|payload| parse_request(&payload)))
    }

    fn encode_response(&self, response: &Response, dst: &mut BytesMut) {
        frame::encode_json(&WireResponse::new(response), dst)
    }

    fn encode_event(&self, event: &Event, dst: &mut BytesMut) {
        frame::encode_json(event, dst)
    }
}

/// Turns one frame's payload into a request, or into the error that answers it.
pub fn parse_request(payload: &[u8]) -> Incoming {
    match serde_json::from_slice(payload) {
        Ok(value) => request_from_value(value),
        Err(e) => Incoming::Invalid {
            id: None,
            error: ErrorBody::new(ErrorCode::BadRequest, format!("not JSON: {e}")),
        },
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
mod tests {
    use super::*;
    use crate::protocol::{Recipient, Reply};

    fn parse(json: &str) -> Incoming {
        parse_request(json.as_bytes())
    }

    #[test]
    fn requests_parse_with_their_ids() {
        assert_eq!(
            parse(r#"{"id":7,"op":"send","to":"nina","text":"hi"}"#),
            Incoming::Request(Envelope {
                id: Some(7),
                request: Request::Send {
                    to: Recipient::Name("nina".into()),
                    text: "hi".into()
                }
            })
        );
        assert_eq!(
            parse(r#"{"id":1,"op":"send","to":42,"text":"hi"}"#),
            Incoming::Request(Envelope {
                id: Some(1),
                request: Request::Send {
                    to: Recipient::Id(42),
                    text: "hi".into()
                }
            })
        );
    }

    fn code_and_id(incoming: Incoming) -> (Option<u64>, ErrorCode) {
        match incoming {
            Incoming::Invalid { id, error } => (id, error.code),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn broken_requests_get_the_right_code() {
        assert_eq!(code_and_id(parse("{nope")), (None, ErrorCode::BadRequest));
        assert_eq!(code_and_id(parse("[1,2]")), (None, ErrorCode::BadRequest));
        assert_eq!(
            code_and_id(parse(r#"{"id":3,"op":"dance"}"#)),
            (Some(3), ErrorCode::UnknownOp)
        );
        assert_eq!(
            code_and_id(parse(r#"{"id":4,"op":"hello"}"#)),
            (Some(4), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_and_id(parse(r#"{"id":-1,"op":"ping"}"#)),
            (None, ErrorCode::BadRequest)
        );
        assert_eq!(
            code_and_id(parse(r#"{"op":"dance"}"#)),
            (None, ErrorCode::UnknownOp)
        );
    }

    #[test]
    fn responses_flatten_their_result() {
        let native = Native::default();
        let mut buf = BytesMut::new();
        native.encode_response(
            &Response {
                id: Some(2),
                outcome: Ok(Reply::Sent { message_id: 9 }),
            },
            &mut buf,
        );
        native.encode_response(
            &Response {
                id: None,
                outcome: Err(ErrorBody::new(ErrorCode::UnknownOp, "x")),
            },
            &mut buf,
        );
        let first = frame::decode(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(&first[..], br#"{"id":2,"ok":true,"message_id":9}"#);
        let second = frame::decode(&mut buf, 1000).unwrap().unwrap();
        assert_eq!(
            &second[..],
            br#"{"id":null,"ok":false,"error":{"code":"unknown_op","message":"x"}}"#
        );
    }
}
