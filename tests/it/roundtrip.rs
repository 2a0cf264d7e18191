//! Properties of the pure codecs: whatever is encoded decodes back to the same value,
//! however the bytes are split on arrival.

use bytes::BytesMut;
use proptest::prelude::*;
use switchboard::dialect::native::parse_request;
use switchboard::dialect::{Incoming, Native};
use switchboard::frame;
use switchboard::protocol::{Envelope, Recipient, Request};

fn request() -> impl Strategy<Value = Request> {
    let text = ".{0,40}";
    let name = "[A-Za-z0-9_.-]{1,32}";
    prop_oneof![
        Just(Request::Ping),
        Just(Request::Menu),
        Just(Request::Users),
        Just(Request::Bye),
        (name, proptest::option::of(text)).prop_map(|(name, password)| Request::Hello {
            name,
            password: password.map(switchboard::protocol::Password),
        }),
        (any::<u64>(), text).prop_map(|(id, text)| Request::Send {
            to: Recipient::Id(id),
            text
        }),
        (name, text).prop_map(|(n, text)| Request::Send {
            to: Recipient::Name(n),
            text
        }),
        proptest::option::of(any::<u32>()).prop_map(|limit| Request::Inbox { limit }),
        name.prop_map(|room| Request::CreateRoom { room }),
        name.prop_map(|room| Request::JoinRoom { room }),
        (name, text).prop_map(|(room, text)| Request::Say { room, text }),
        name.prop_map(|room| Request::LeaveRoom { room }),
        name.prop_map(|room| Request::CloseRoom { room }),
    ]
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
}
