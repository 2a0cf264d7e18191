//! Properties of the pure codecs: whatever is encoded decodes back to the same value,
//! however the bytes are split on arrival.

use bytes::BytesMut;
use proptest::prelude::*;
use switchboard::dialect::native::parse_request;
use switchboard::dialect::{Dialect, Incoming, Lab, Native, Text};
use switchboard::frame;
use switchboard::protocol::{Envelope, Recipient, Request, ResumeToken};

fn request() -> impl Strategy<Value = Request> {
    let text = ".{0,40}";
    let name = "[A-Za-z0-9_.-]{1,32}";
    prop_oneof![
        Just(Request::Ping),
        Just(Request::Menu),
        Just(Request::Users),
        Just(Request::Bye),
        (
            name,
            proptest::option::of(text),
            proptest::option::of(text),
            proptest::option::of(proptest::collection::btree_map(name, any::<u64>(), 0..4)),
        )
            .prop_map(|(name, password, resume, seen)| Request::Hello(Box::new(
                switchboard::protocol::Hello {
                    name,
                    password: password.map(switchboard::protocol::Password),
                    resume: resume.map(ResumeToken),
                    seen,
                }
            ))),
        (any::<u64>(), text).prop_map(|(id, text)| Request::Send {
            to: Recipient::Id(id),
            text
        }),
        (name, text).prop_map(|(n, text)| Request::Send {
            to: Recipient::Name(n),
            text
        }),
        (proptest::option::of(any::<u32>()), any::<bool>())
            .prop_map(|(limit, peek)| Request::Inbox { limit, peek }),
        any::<u64>().prop_map(|up_to| Request::Ack { up_to }),
        name.prop_map(|room| Request::CreateRoom { room }),
        (
            name,
            proptest::option::of(any::<u64>()),
            proptest::option::of(name)
        )
            .prop_map(|(room, after, epoch)| Request::JoinRoom {
                room,
                after,
                epoch: epoch.map(String::into_boxed_str)
            }),
        (
            name,
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(room, before, limit)| Request::History {
                room,
                before,
                limit
            }),
        (name, text).prop_map(|(room, text)| Request::Say { room, text }),
        name.prop_map(|room| Request::LeaveRoom { room }),
        name.prop_map(|room| Request::CloseRoom { room }),
    ]
}

/// The fuzz targets' property, run here on proptest's inputs too: no panic, and the
/// same units however the stream is cut.
#[path = "../../fuzz/fuzz_targets/common.rs"]
mod split_check;

/// A `hello` as a text line (`HELLO` or `RESUME`), when the grammar can say it.
fn hello_line(hello: &switchboard::protocol::Hello) -> Option<String> {
    let word = |w: &str| !w.is_empty() && !w.contains(char::is_whitespace);
    Some(match hello.clone() {
        switchboard::protocol::Hello {
            name,
            password: None,
            resume: None,
            seen: None,
        } => format!("HELLO {name}"),
        switchboard::protocol::Hello {
            name,
            password: Some(p),
            resume: None,
            seen: None,
        } if !p.0.is_empty() && !p.0.contains(char::is_whitespace) => {
            format!("HELLO {name} {}", p.0)
        }
        switchboard::protocol::Hello {
            name,
            password: None,
            resume: Some(token),
            seen,
        } if word(&token.0) => {
            let mut line = format!("RESUME {name} {}", token.0);
            match seen {
                None => {}
                Some(seen) if seen.is_empty() => return None,
                Some(seen) => {
                    for (room, seq) in seen {
                        line.push_str(&format!(" {room}={seq}"));
                    }
                }
            }
            line
        }
        _ => return None,
    })
}

/// `request` as a line of the text dialect, when the grammar can say it.
fn text_line(request: &Request) -> Option<String> {
    // A recipient is written as a person types it: a client id as `#17`, and a name
    // bare, whatever it is made of (digits too), unless it starts with '#'.
    let typed = |to: &Recipient| match to {
        Recipient::Name(name) if name.starts_with('#') => None,
        to => Some(to.to_string()),
    };
    // A value the grammar carries as one word.
    let word = |w: &str| !w.is_empty() && !w.contains(char::is_whitespace);
    Some(match request {
        Request::Hello(hello) => return hello_line(hello),
        Request::Ping => "PING".into(),
        Request::Menu => "menu".into(),
        Request::Users => "Users".into(),
        Request::Bye => "BYE".into(),

        Request::Send { to, text } if text.trim() == text && !text.is_empty() => {
            format!("SEND {} {text}", typed(to)?)
        }

        Request::Inbox {
            limit: None,
            peek: false,
        } => "INBOX".into(),
        Request::Inbox {
            limit: None,
            peek: true,
        } => "inbox Peek".into(),
        Request::Ack { up_to } => format!("ACK {up_to}"),
        Request::History {
            room,
            limit: None,
            before: None,
        } => format!("HISTORY {room}"),
        Request::History {
            room,
            limit: Some(limit),
            before: None,
        } => format!("history {room} {limit}"),
        Request::History {
            room,
            limit: Some(limit),
            before: Some(before),
        } => format!("HISTORY {room} {limit} {before}"),
        Request::CreateRoom { room } => format!("CREATE_ROOM {room}"),
        Request::JoinRoom {
            room,
            after: None,
            epoch: None,
        } => format!("join_room {room}"),
        Request::JoinRoom {
            room,
            after: Some(after),
            epoch: None,
        } => format!("JOIN_ROOM {room} {after}"),
        Request::JoinRoom {
            room,
            after: Some(after),
            epoch: Some(epoch),
        } if word(epoch) => format!("JOIN_ROOM {room} {after} {epoch}"),
        Request::Say { room, text } if text.trim() == text && !text.is_empty() => {
            format!("SAY {room} {text}")
        }
        Request::LeaveRoom { room } => format!("LEAVE_ROOM {room}"),
        Request::CloseRoom { room } => format!("CLOSE_ROOM {room}"),
        _ => return None,
    })
}

proptest! {
    #[test]
    fn frames_round_trip_across_any_split(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = BytesMut::new();
        for p in &payloads {
            frame::encode(p, &mut wire);
        }
        let cut = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(f) = frame::decode(&mut buf, 1024).unwrap() {
            got.push(f.to_vec());
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(f) = frame::decode(&mut buf, 1024).unwrap() {
            got.push(f.to_vec());
        }
        prop_assert_eq!(got, payloads);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn requests_round_trip_through_the_native_dialect(id in proptest::option::of(any::<u64>()), request in request()) {
        let mut value = serde_json::to_value(&request).unwrap();
        if let Some(id) = id {
            value["id"] = id.into();
        }
        let parsed = parse_request(value.to_string().as_bytes());
        prop_assert_eq!(parsed, Incoming::Request(Envelope { id, request }));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_native_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        use switchboard::dialect::Dialect;
        let mut native = Native::new(64);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = native.decode(&mut buf) {}
    }

    #[test]
    fn requests_round_trip_through_the_text_dialect(request in request(), crlf in any::<bool>()) {
        let Some(line) = text_line(&request) else { return Ok(()) };
        let mut buf = BytesMut::from(format!("{line}{}", if crlf { "\r\n" } else { "\n" }).as_bytes());
        let decoded = Text::default().decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(Incoming::Request(Envelope { id: None, request })));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn requests_round_trip_through_the_lab_dialect(id in proptest::option::of(any::<u64>()), request in request()) {
        let mut value = serde_json::to_value(&request).unwrap();
        if let Some(id) = id {
            value["id"] = id.into();
        }
        let pickle = serde_pickle::to_vec(&value, serde_pickle::SerOptions::new()).unwrap();
        let mut buf = BytesMut::from(&pickle[..]);
        let decoded = Lab::new(1 << 20).decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(Incoming::Request(Envelope { id, request })));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn no_decoder_panics_or_depends_on_where_the_stream_is_cut(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        pickled in proptest::collection::vec(request(), 1..4),
    ) {
        split_check::check(|| Native::new(256), &bytes);
        split_check::check(Text::default, &bytes);
        split_check::check(|| Lab::new(256), &bytes);
        // Noise rarely looks like a pickle: cut real ones too.
        let mut stream = vec![bytes.first().copied().unwrap_or(0)];
        for request in &pickled {
            stream.extend(serde_pickle::to_vec(request, serde_pickle::SerOptions::new()).unwrap());
        }
        split_check::check(|| Lab::new(1 << 20), &stream);
    }
}
