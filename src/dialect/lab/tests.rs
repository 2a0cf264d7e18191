use super::*;
use crate::protocol::{Envelope, HistoryPage, Request, ResumeToken, RoomLine, RoomPosition, Seen};

fn decode(bytes: &[u8]) -> Vec<Incoming> {
    let mut lab = Lab::new(1 << 20);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(incoming) = lab.decode(&mut buf).unwrap() {
        out.push(incoming);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    out
}

/// Found by the fuzzer: a set of mixed numbers made serde-pickle's sort panic.
#[test]
fn sets_are_refused_before_serde_pickle_sorts_them() {
    for pickle in [
        &include_bytes!("../../../fuzz/regressions/lab/set-with-nan.pickle")[..],
        &include_bytes!("../../../fuzz/regressions/lab/frozenset.pickle")[..],
    ] {
        let mut lab = Lab::new(1 << 20);
        let mut buf = BytesMut::from(pickle);
        // The fuzzer's input may end in framing garbage; up to there, no panic and
        // nothing but refusals.
        while let Ok(Some(unit)) = lab.decode(&mut buf) {
            assert!(matches!(unit, Incoming::Invalid { .. }), "{unit:?}");
        }
    }
}

/// Found by the round-trip property: Python pickles an id past 2^63 as a long.
#[test]
fn an_id_past_two_to_the_63_comes_through_as_on_the_native_wire() {
    let mut stream = b"\x80\x02}q\x00(X\x02\x00\x00\x00opX\x04\x00\x00\x00ping".to_vec();
    stream.extend(b"X\x02\x00\x00\x00id\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00u.");
    assert_eq!(
        decode(&stream),
        [Incoming::Request(Envelope {
            id: Some(1 << 63),
            request: Request::Ping,
        })]
    );
    // Past 2^64 it is no id at all: answered as a bad request.
    let mut stream = b"\x80\x02}q\x00(X\x02\x00\x00\x00opX\x04\x00\x00\x00ping".to_vec();
    stream.extend(b"X\x02\x00\x00\x00id\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01u.");
    assert!(matches!(&decode(&stream)[..], [Incoming::Invalid { .. }]));
}

#[test]
fn dicts_are_data_and_op_dicts_are_requests() {
    let data = serde_pickle::to_vec(
        &std::collections::BTreeMap::from([("name", "Jose Ortiz"), ("id", "9")]),
        SerOptions::new(),
    )
    .unwrap();
    let mut stream = data.clone();
    stream.extend(
        serde_pickle::to_vec(
            &std::collections::BTreeMap::from([("op", "hello"), ("name", "jose")]),
            SerOptions::new(),
        )
        .unwrap(),
    );
    let all = decode(&stream);
    assert_eq!(
        all[0],
        Incoming::Data {
            summary: r#"{"id": "9", "name": "Jose Ortiz"}"#.into(),
            fields: vec![
                ("id".into(), "9".into()),
                ("name".into(), "Jose Ortiz".into())
            ],
        }
    );
    assert_eq!(
        all[1],
        Incoming::Request(Envelope {
            id: None,
            request: Request::Hello(Box::new(crate::protocol::Hello {
                name: "jose".into(),
                password: None,
                resume: None,
                seen: None,
            }))
        })
    );
}

#[test]
fn the_welcome_and_the_ack_are_the_lab_programs_dicts() {
    let lab = Lab::new(1 << 20);
    let mut buf = BytesMut::new();
    lab.encode_event(&Event::welcome(7), &mut buf);
    let welcome = serde_pickle::value_from_slice(&buf, DeOptions::new()).unwrap();
    assert_eq!(welcome.to_string(), r#"{"clientid": 7}"#);
    buf.clear();
    lab.encode_response(
        &Response {
            id: None,
            outcome: Ok(Reply::Ack { ack: true }),
        },
        &mut buf,
    );
    let ack = serde_pickle::value_from_slice(&buf, DeOptions::new()).unwrap();
    assert_eq!(ack.to_string(), r#"{"ack": True}"#);
}

#[test]
fn a_refused_pickle_is_answered_and_the_stream_goes_on() {
    let mut stream = b"cos\nsystem\n(S'touch /tmp/x'\ntR.".to_vec();
    stream.extend_from_slice(b"\x80\x04N.");
    let all = decode(&stream);
    assert!(
        matches!(&all[0], Incoming::Invalid { error, .. } if error.message.contains("global")),
        "{all:?}"
    );
    assert_eq!(
        all[1],
        Incoming::Data {
            summary: "None".into(),
            fields: Vec::new(),
        }
    );
}

#[test]
fn a_long_value_is_printed_only_up_to_the_cut() {
    let long = Value::List(vec![Value::String("é".repeat(10)); 10_000]);
    let shown = summary(&long);
    assert!(shown.ends_with("..."));
    assert!(shown.len() <= MAX_SUMMARY + 3, "{}", shown.len());
    assert!(long.to_string().starts_with(shown.trim_end_matches("...")));
    assert_eq!(summary(&Value::None), "None");
}

fn pickled(fields: &[(&str, Value)]) -> Vec<u8> {
    let dict = Value::Dict(
        fields
            .iter()
            .map(|(k, v)| (HashableValue::String((*k).to_owned()), v.clone()))
            .collect(),
    );
    serde_pickle::value_to_vec(&dict, SerOptions::new()).unwrap()
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// The lab programs' dicts for the delivery ops, as Python pickles them.
#[test]
fn delivery_dicts_decode_into_their_requests() {
    let seen = Value::Dict(
        [(HashableValue::String("r".into()), Value::I64(3))]
            .into_iter()
            .collect(),
    );
    let cases = [
        (
            pickled(&[("op", s("inbox")), ("peek", Value::Bool(true))]),
            Request::Inbox {
                limit: None,
                peek: true,
            },
        ),
        (
            pickled(&[("op", s("ack")), ("up_to", Value::I64(3))]),
            Request::Ack { up_to: 3 },
        ),
        (
            pickled(&[
                ("op", s("join_room")),
                ("room", s("r")),
                ("after", Value::I64(0)),
                ("epoch", s("x")),
            ]),
            Request::JoinRoom {
                room: "r".into(),
                after: Some(0),
                epoch: Some("x".into()),
            },
        ),
        (
            pickled(&[("op", s("history")), ("room", s("r"))]),
            Request::History {
                room: "r".into(),
                before: None,
                limit: None,
            },
        ),
        (
            pickled(&[
                ("op", s("history")),
                ("room", s("r")),
                ("limit", Value::I64(10)),
                ("before", Value::I64(90)),
            ]),
            Request::History {
                room: "r".into(),
                before: Some(90),
                limit: Some(10),
            },
        ),
        (
            pickled(&[
                ("op", s("hello")),
                ("name", s("n")),
                ("resume", s("tok")),
                ("seen", seen),
            ]),
            Request::Hello(Box::new(crate::protocol::Hello {
                name: "n".into(),
                password: None,
                resume: Some(ResumeToken("tok".into())),
                seen: Some(Seen::from([("r".into(), 3)])),
            })),
        ),
    ];
    for (pickle, request) in cases {
        assert_eq!(
            decode(&pickle),
            [Incoming::Request(Envelope { id: None, request })]
        );
    }
    // A wrong type is a bad request, not a panic nor a default.
    for pickle in [
        pickled(&[("op", s("ack")), ("up_to", Value::I64(-1))]),
        pickled(&[("op", s("ack")), ("up_to", s("3"))]),
        pickled(&[("op", s("ack"))]),
        pickled(&[("op", s("inbox")), ("peek", s("yes"))]),
        pickled(&[("op", s("hello")), ("name", s("n")), ("seen", s("r=3"))]),
    ] {
        let all = decode(&pickle);
        assert!(
            matches!(&all[..], [Incoming::Invalid { error, .. }] if error.code == ErrorCode::BadRequest),
            "{all:?}"
        );
    }
}

/// The reply or event as Python would print the unpickled dict.
fn unpickled(bytes: &BytesMut) -> String {
    serde_pickle::value_from_slice(bytes, DeOptions::new())
        .unwrap()
        .to_string()
}

fn reply_pickle(reply: Reply) -> String {
    let mut buf = BytesMut::new();
    Lab::new(1 << 20).encode_response(
        &Response {
            id: Some(1),
            outcome: Ok(reply),
        },
        &mut buf,
    );
    unpickled(&buf)
}

fn event_pickle(event: Event) -> String {
    let mut buf = BytesMut::new();
    Lab::new(1 << 20).encode_event(&event, &mut buf);
    unpickled(&buf)
}

#[test]
fn delivery_replies_pickle_with_their_fields_and_without_absent_ones() {
    assert_eq!(
        reply_pickle(Reply::Said { seq: 4 }),
        r#"{"id": 1, "ok": True, "seq": 4}"#
    );
    assert_eq!(
        reply_pickle(Reply::Acked { acked: 2 }),
        r#"{"acked": 2, "id": 1, "ok": True}"#
    );
    assert_eq!(
        reply_pickle(Reply::Created {
            epoch: "e1".into(),
            seq: 0
        }),
        r#"{"epoch": "e1", "id": 1, "ok": True, "seq": 0}"#
    );
    assert_eq!(
        reply_pickle(Reply::Joined {
            members: vec!["ana".into()],
            epoch: "e1".into(),
            seq: 9,
            recovered: None,
            oldest: None,
        }),
        r#"{"epoch": "e1", "id": 1, "members": ["ana"], "ok": True, "seq": 9}"#
    );
    assert_eq!(
        reply_pickle(Reply::Joined {
            members: vec![],
            epoch: "e1".into(),
            seq: 9,
            recovered: Some(false),
            oldest: Some(5),
        }),
        r#"{"epoch": "e1", "id": 1, "members": [], "ok": True, "oldest": 5, "recovered": False, "seq": 9}"#
    );
    assert_eq!(
        reply_pickle(Reply::History(HistoryPage {
            messages: vec![RoomLine {
                seq: 3,
                from: "ana".into(),
                text: "hi".into(),
                sent_at: "t".into(),
            }],
            more: false,
        })),
        r#"{"id": 1, "messages": [{"from": "ana", "sent_at": "t", "seq": 3, "text": "hi"}], "more": False, "ok": True}"#
    );
    assert_eq!(
        reply_pickle(Reply::Hello {
            client_id: 7,
            name: "n".into(),
            resume_token: None,
            resumed: None,
            rooms: None,
        }),
        r#"{"client_id": 7, "id": 1, "name": "n", "ok": True}"#
    );
    assert_eq!(
        reply_pickle(Reply::Hello {
            client_id: 7,
            name: "n".into(),
            resume_token: Some(ResumeToken("tok".into())),
            resumed: Some(true),
            rooms: Some(vec![RoomPosition {
                room: "r".into(),
                epoch: "e1".into(),
                seq: 3,
            }]),
        }),
        r#"{"client_id": 7, "id": 1, "name": "n", "ok": True, "resume_token": "tok", "resumed": True, "rooms": [{"epoch": "e1", "room": "r", "seq": 3}]}"#
    );
}

#[test]
fn delivery_events_pickle_with_seq_replay_and_gaps() {
    let message = |replay| Event::RoomMessage {
        room: "r".into(),
        from: "ana".into(),
        text: "hi".into(),
        sent_at: "t".into(),
        seq: 1,
        replay,
    };
    assert_eq!(
        event_pickle(message(false)),
        r#"{"event": "room_message", "from": "ana", "room": "r", "sent_at": "t", "seq": 1, "text": "hi"}"#
    );
    assert_eq!(
        event_pickle(message(true)),
        r#"{"event": "room_message", "from": "ana", "replay": True, "room": "r", "sent_at": "t", "seq": 1, "text": "hi"}"#
    );
    assert_eq!(
        event_pickle(Event::ResumeGap {
            room: "r".into(),
            oldest: 58
        }),
        r#"{"event": "resume_gap", "oldest": 58, "room": "r"}"#
    );
}

#[test]
fn a_data_dict_keeps_a_few_short_fields_as_text() {
    use std::collections::BTreeMap;
    let mut map = BTreeMap::new();
    map.insert(
        HashableValue::String("Name".into()),
        Value::String("Ana".into()),
    );
    map.insert(HashableValue::I64(7), Value::I64(42));
    map.insert(
        HashableValue::String("github".into()),
        Value::String("é".repeat(500)),
    );
    let shown = fields(&Value::Dict(map));
    assert_eq!(shown[0], ("7".into(), "42".into()));
    assert_eq!(shown[1], ("Name".into(), "Ana".into()));
    assert_eq!(shown[2].0, "github");
    assert!(shown[2].1.ends_with("...") && shown[2].1.len() <= MAX_FIELD_VALUE + 3);

    let many = (0..100)
        .map(|n| {
            (
                HashableValue::String(format!("{}{n}", "k".repeat(100))),
                Value::List(vec![Value::I64(n); 1000]),
            )
        })
        .collect();
    let shown = fields(&Value::Dict(many));
    assert_eq!(shown.len(), MAX_FIELDS);
    for (key, value) in shown {
        assert!(key.len() <= MAX_FIELD_KEY + 3, "{key}");
        assert!(value.len() <= MAX_FIELD_VALUE + 3, "{value}");
    }
    assert!(fields(&Value::List(vec![])).is_empty());
}
