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
    for to in ["-1", "1.5", "true", "null", "[\"nina\"]", "{}"] {
        let request = format!(r#"{{"id":5,"op":"send","to":{to},"text":"hi"}}"#);
        assert_eq!(
            code_and_id(parse(&request)),
            (Some(5), ErrorCode::BadRequest),
            "to: {to}"
        );
    }
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
    native.encode_response(
        &Response {
            id: Some(u64::MAX),
            outcome: Ok(Reply::Done {}),
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
    let third = frame::decode(&mut buf, 1000).unwrap().unwrap();
    assert_eq!(&third[..], br#"{"id":18446744073709551615,"ok":true}"#);
}

/// The hand-written response writer says exactly what serde's flattening said.
#[test]
fn every_reply_shape_is_written_as_serde_would() {
    use crate::protocol::{InboxPage, Menu, StoredMessage, UserInfo};
    let replies = [
        Reply::Done {},
        Reply::Sent { message_id: 7 },
        Reply::Sent {
            message_id: u64::MAX,
        },
        Reply::Ack { ack: true },
        Reply::Hello {
            client_id: 3,
            name: "ana \"q\"".into(),
            resume_token: None,
            resumed: None,
            rooms: None,
        },
        Reply::Menu(Menu::course_project()),
        Reply::Users {
            users: vec![UserInfo {
                client_id: 1,
                name: "b".into(),
            }],
        },
        Reply::Joined {
            members: vec![],
            epoch: "e".into(),
            seq: 0,
            recovered: None,
            oldest: None,
        },
        Reply::Inbox(InboxPage {
            messages: vec![StoredMessage {
                message_id: 1,
                from: "c".into(),
                text: "{}\n".into(),
                sent_at: "t".into(),
            }],
            more: true,
        }),
    ];
    for (k, reply) in replies.into_iter().enumerate() {
        let response = Response {
            id: (k % 2 == 0).then_some(k as u64),
            outcome: Ok(reply),
        };
        let mut buf = BytesMut::new();
        Native::default().encode_response(&response, &mut buf);
        let written = frame::decode(&mut buf, 1 << 20).unwrap().unwrap();
        let written: Value = serde_json::from_slice(&written).unwrap();
        let expected = serde_json::to_value(super::super::WireResponse::new(&response)).unwrap();
        assert_eq!(written, expected);
    }
}

/// A request the fast way cannot read is worded from its known fields alone:
/// however many values it carries, what is built for it stays small.
#[test]
fn a_broken_request_is_worded_from_its_known_fields() {
    let mut pad = String::from("[0");
    pad.push_str(&",0".repeat(100_000));
    pad.push(']');
    let broken = format!(r#"{{"id":3,"op":"nope","pad":{pad},"text":{pad}}}"#);
    assert_eq!(code_and_id(parse(&broken)), (Some(3), ErrorCode::UnknownOp));
    let wrong = format!(r#"{{"id":4,"op":"say","room":"r","text":{pad}}}"#);
    match parse(&wrong) {
        Incoming::Invalid { id, error } => {
            assert_eq!((id, error.code), (Some(4), ErrorCode::BadRequest));
            assert!(error.message.contains("sequence"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse(r#"{"id":null,"op":"send","to":"nina","text":"hi","extra":[1]}"#),
        Incoming::Request(Envelope {
            id: None,
            request: Request::Send {
                to: Recipient::Name("nina".into()),
                text: "hi".into()
            }
        })
    );
    for (payload, message) in [
        ("[1,2]", "a request is a JSON object"),
        ("\"ping\"", "a request is a JSON object"),
    ] {
        match parse(payload) {
            Incoming::Invalid { error, .. } => assert_eq!(error.message, message),
            other => panic!("{other:?}"),
        }
    }
    match parse("{nope") {
        Incoming::Invalid { error, .. } => assert!(error.message.starts_with("not JSON: ")),
        other => panic!("{other:?}"),
    }
}
