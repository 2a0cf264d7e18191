use super::*;
use crate::protocol::{
    InboxPage, Menu, Recipient, Request, ResumeToken, Seen, StoredMessage, UserInfo,
};

fn decode_all(input: &[u8]) -> Vec<Incoming> {
    let mut text = Text::default();
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(incoming) = text.decode(&mut buf).unwrap() {
        out.push(incoming);
    }
    if let Some(last) = text.decode_eof(&mut buf).unwrap() {
        out.push(last);
    }
    out
}

fn request(incoming: &Incoming) -> &Request {
    match incoming {
        Incoming::Request(envelope) => &envelope.request,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn code(incoming: &Incoming) -> ErrorCode {
    match incoming {
        Incoming::Invalid { error, .. } => error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn commands_are_case_insensitive_and_keep_the_text_whole() {
    let all = decode_all(b"hello nina s3cret\r\nSend #42  hi  there \nsay lobby a  b\nQUIT\nclose");
    assert_eq!(
        request(&all[0]),
        &Request::Hello(Box::new(crate::protocol::Hello {
            name: "nina".into(),
            password: Some("s3cret".into()),
            resume: None,
            seen: None,
        }))
    );
    assert_eq!(
        request(&all[1]),
        &Request::Send {
            to: Recipient::Id(42),
            text: "hi  there ".into()
        }
    );
    assert_eq!(
        request(&all[2]),
        &Request::Say {
            room: "lobby".into(),
            text: "a  b".into()
        }
    );
    assert_eq!(request(&all[3]), &Request::Bye);
    assert_eq!(request(&all[4]), &Request::Bye);
}

#[test]
fn bad_lines_get_their_codes() {
    let all = decode_all(b"dance\n\nSEND nina\nUSERS now\n\xff\xfe\nJOIN_ROOM\n");
    let codes: Vec<_> = all.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            ErrorCode::UnknownOp,
            ErrorCode::BadRequest,
            ErrorCode::BadRequest,
            ErrorCode::BadRequest,
            ErrorCode::BadRequest,
            ErrorCode::BadRequest
        ]
    );
}

#[test]
fn an_overlong_line_is_answered_once_and_skipped() {
    let mut text = Text::default();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&vec![b'x'; MAX_LINE + 10]);
    assert_eq!(
        code(&text.decode(&mut buf).unwrap().unwrap()),
        ErrorCode::TooLarge
    );
    assert!(buf.is_empty());
    buf.extend_from_slice(&vec![b'y'; 5000]);
    assert_eq!(text.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"yyy\nPING\n");
    assert_eq!(
        request(&text.decode(&mut buf).unwrap().unwrap()),
        &Request::Ping
    );
    assert_eq!(text.decode(&mut buf).unwrap(), None);
    let mut whole = vec![b'z'; MAX_LINE + 2];
    whole.extend_from_slice(b"\nPING\n");
    let all = decode_all(&whole);
    assert_eq!(code(&all[0]), ErrorCode::TooLarge);
    assert_eq!(request(&all[1]), &Request::Ping);
}

#[test]
fn a_line_split_across_reads_is_found_once_complete() {
    let mut text = Text::default();
    let mut buf = BytesMut::from(&b"US"[..]);
    assert_eq!(text.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"ERS\r");
    assert_eq!(text.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\nPI");
    assert_eq!(
        request(&text.decode(&mut buf).unwrap().unwrap()),
        &Request::Users
    );
    assert_eq!(text.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], b"PI");
}

fn encoded(outcome: Result<Reply, ErrorBody>) -> String {
    let mut buf = BytesMut::new();
    Text::default().encode_response(&Response { id: None, outcome }, &mut buf);
    String::from_utf8(buf.to_vec()).unwrap()
}

#[test]
fn lists_are_counted_and_text_stays_on_one_line() {
    let users = Reply::Users {
        users: vec![UserInfo {
            client_id: 3,
            name: "nina".into(),
        }],
    };
    assert_eq!(encoded(Ok(users)), "+OK 1\r\n= 3 nina\r\n");
    let inbox = Reply::Inbox(InboxPage {
        messages: vec![StoredMessage {
            message_id: 1,
            from: "jose".into(),
            text: "two\nlines".into(),
            sent_at: "2026-11-21T17:45:00Z".into(),
        }],
        more: false,
    });
    assert_eq!(
        encoded(Ok(inbox)),
        "+OK 1 last=1\r\n= 2026-11-21T17:45:00Z jose: two\\nlines\r\n"
    );
    assert_eq!(
        encoded(Err(ErrorBody::new(ErrorCode::NoSuchUser, "no user\r\nbob"))),
        "-ERR no_such_user no user\\r\\nbob\r\n"
    );
    let mut buf = BytesMut::new();
    Text::default().encode_event(
        &Event::RoomMessage {
            room: "3456".into(),
            from: "alice".into(),
            text: "hi all".into(),
            sent_at: "x".into(),
            seq: 7,
            replay: false,
        },
        &mut buf,
    );
    assert_eq!(&buf[..], b"* room_message 3456 7 alice: hi all\r\n");
}

/// A bare word is a name, digits included: `HELLO 20` must be reachable, and a
/// message to it must never go to client 20.
#[test]
fn a_recipient_is_a_name_unless_written_hash_and_digits() {
    let all = decode_all(b"SEND 20 hi\nSEND #20 hi\nSEND #twenty hi\nSEND # hi\n");
    assert_eq!(
        request(&all[0]),
        &Request::Send {
            to: Recipient::Name("20".into()),
            text: "hi".into()
        }
    );
    assert_eq!(
        request(&all[1]),
        &Request::Send {
            to: Recipient::Id(20),
            text: "hi".into()
        }
    );
    assert_eq!(code(&all[2]), ErrorCode::BadRequest);
    assert_eq!(code(&all[3]), ErrorCode::BadRequest);
}

fn message(incoming: &Incoming) -> &str {
    match incoming {
        Incoming::Invalid { error, .. } => &error.message,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_menu_number_stands_for_its_command() {
    let all = decode_all(b"1\n3\n6\n2 nina hi there\n2\n4\n9\n");
    assert_eq!(request(&all[0]), &Request::Users);
    assert_eq!(
        request(&all[1]),
        &Request::Inbox {
            limit: None,
            peek: false
        }
    );
    assert_eq!(request(&all[2]), &Request::Bye);
    assert_eq!(
        request(&all[3]),
        &Request::Send {
            to: Recipient::Name("nina".into()),
            text: "hi there".into()
        }
    );
    assert_eq!(message(&all[4]), "usage: SEND <name|#id> <text>");
    assert_eq!(message(&all[5]), "usage: CREATE_ROOM <room>");
    assert_eq!(code(&all[6]), ErrorCode::UnknownOp);
    assert_eq!(message(&decode_all(b"users now\n")[0]), "usage: USERS");
}

#[test]
fn help_lists_every_command_with_its_arguments_before_hello_too() {
    let all = decode_all(b"help\nHELP me\n");
    let Incoming::Request(envelope) = &all[0] else {
        panic!("{all:?}");
    };
    assert!(envelope.request.allowed_before_hello());
    assert_eq!(code(&all[1]), ErrorCode::BadRequest);
    let mut buf = BytesMut::new();
    Text::default().encode_response(
        &Response {
            id: envelope.id,
            outcome: Ok(Reply::Done {}),
        },
        &mut buf,
    );
    let help = String::from_utf8(buf.to_vec()).unwrap();
    let lines: Vec<&str> = help.lines().collect();
    assert_eq!(lines[0], format!("+OK {}", lines.len() - 1));
    for shown in [
        "= HELLO <name> [password]: ",
        "= PING: ",
        "= MENU: ",
        "= HELP: ",
        "= SEND <name|#id> <text>: ",
        "= SAY <room> <text>: ",
        "= LEAVE_ROOM <room>: ",
        "= CLOSE_ROOM <room>: ",
        "= QUIT: ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(shown)),
            "{shown} in {help}"
        );
    }
    // A plain ping is still answered `+OK`.
    assert_eq!(encoded(Ok(Reply::Done {})), "+OK\r\n");
}

#[test]
fn the_menu_shows_each_entry_with_its_command() {
    let menu = encoded(Ok(Reply::Menu(Menu::course_project())));
    let lines: Vec<&str> = menu.lines().collect();
    assert_eq!(
        lines,
        [
            "+OK 6",
            "= 1 Get user list: USERS",
            "= 2 Send a message: SEND <name|#id> <text>",
            "= 3 Get my messages: INBOX [PEEK]",
            "= 4 Create a new chat room: CREATE_ROOM <room>",
            "= 5 Join an existing chat room: JOIN_ROOM <room> [after [epoch]]",
            "= 6 Disconnect from server: QUIT",
        ]
    );
}

fn event_line(event: Event) -> String {
    let mut buf = BytesMut::new();
    Text::default().encode_event(&event, &mut buf);
    String::from_utf8(buf.to_vec()).unwrap()
}

#[test]
fn the_delivery_commands_parse_into_their_requests() {
    let all = decode_all(
        b"INBOX PEEK\ninbox peek\nACK 41\nACK 0\n\
          HISTORY r\nhistory r 20\nHISTORY r 20 300\n\
          JOIN_ROOM r 0\nJOIN_ROOM r 12 e-7f\n3 PEEK\n5 r 3\n",
    );
    let peek = Request::Inbox {
        limit: None,
        peek: true,
    };
    let history = |limit, before| Request::History {
        room: "r".into(),
        before,
        limit,
    };
    let join = |after, epoch: Option<&str>| Request::JoinRoom {
        room: "r".into(),
        after,
        epoch: epoch.map(Box::from),
    };
    let expected = [
        peek.clone(),
        peek.clone(),
        Request::Ack { up_to: 41 },
        Request::Ack { up_to: 0 },
        history(None, None),
        history(Some(20), None),
        history(Some(20), Some(300)),
        join(Some(0), None),
        join(Some(12), Some("e-7f")),
        peek,
        join(Some(3), None),
    ];
    assert_eq!(all.len(), expected.len(), "{all:?}");
    for (got, want) in all.iter().zip(&expected) {
        assert_eq!(request(got), want);
    }
    assert_eq!(
        request(&decode_all(b"ACK 18446744073709551615\n")[0]),
        &Request::Ack { up_to: u64::MAX }
    );
}

#[test]
fn resume_is_a_hello_with_its_token_and_what_was_seen() {
    let all = decode_all(b"RESUME nina 9f86d081 \nresume nina 9f86d081 lobby=3 r.2=0\n");
    assert_eq!(
        request(&all[0]),
        &Request::Hello(Box::new(crate::protocol::Hello {
            name: "nina".into(),
            password: None,
            resume: Some(ResumeToken("9f86d081".into())),
            seen: None,
        }))
    );
    assert_eq!(
        request(&all[1]),
        &Request::Hello(Box::new(crate::protocol::Hello {
            name: "nina".into(),
            password: None,
            resume: Some(ResumeToken("9f86d081".into())),
            seen: Some(Seen::from([("lobby".into(), 3), ("r.2".into(), 0)])),
        }))
    );
    assert!(request(&all[1]).allowed_before_hello());
}

#[test]
fn wrong_delivery_arguments_say_what_is_wrong_and_how_to_type_it() {
    let cases: &[(&[u8], &str)] = &[
        (b"INBOX 5", "usage: INBOX [PEEK]"),
        (b"INBOX PEEK now", "usage: INBOX [PEEK]"),
        (b"ACK", "usage: ACK <id>"),
        (b"ACK 1 2", "usage: ACK <id>"),
        (b"ACK x", "id is a whole number, not \"x\"; usage: ACK <id>"),
        (
            b"ACK -1",
            "id is a whole number, not \"-1\"; usage: ACK <id>",
        ),
        (
            b"ACK +1",
            "id is a whole number, not \"+1\"; usage: ACK <id>",
        ),
        (
            b"ACK 18446744073709551616",
            "id is at most 18446744073709551615; usage: ACK <id>",
        ),
        (b"HISTORY", "usage: HISTORY <room> [limit [before]]"),
        (b"HISTORY r 1 2 3", "usage: HISTORY <room> [limit [before]]"),
        (
            b"HISTORY r 4294967296",
            "limit is at most 4294967295; usage: HISTORY <room> [limit [before]]",
        ),
        (
            b"HISTORY r 10 soon",
            "before is a whole number, not \"soon\"; usage: HISTORY <room> [limit [before]]",
        ),
        (b"JOIN_ROOM", "usage: JOIN_ROOM <room> [after [epoch]]"),
        (
            b"JOIN_ROOM r 1 e extra",
            "usage: JOIN_ROOM <room> [after [epoch]]",
        ),
        (
            b"JOIN_ROOM r e1",
            "after is a whole number, not \"e1\"; usage: JOIN_ROOM <room> [after [epoch]]",
        ),
        (
            b"RESUME nina",
            "usage: RESUME <name> <token> [room=seq ...]",
        ),
        (
            b"RESUME nina tok lobby",
            "after the token come room=seq words, not \"lobby\"; usage: RESUME <name> <token> [room=seq ...]",
        ),
        (
            b"RESUME nina tok =3",
            "after the token come room=seq words, not \"=3\"; usage: RESUME <name> <token> [room=seq ...]",
        ),
        (
            b"RESUME nina tok lobby=x",
            "seq is a whole number, not \"x\"; usage: RESUME <name> <token> [room=seq ...]",
        ),
        (b"RESUME nina tok r=1 r=2", "room r is given twice"),
    ];
    for (line, why) in cases {
        let all = decode_all(line);
        assert_eq!(code(&all[0]), ErrorCode::BadRequest, "{all:?}");
        assert_eq!(message(&all[0]), *why);
    }
    // A number typed long is cut short in the answer.
    let long = format!("ACK {}", "9".repeat(5000));
    assert!(message(&decode_all(long.as_bytes())[0]).len() < 100);
}

#[test]
fn help_shows_the_delivery_commands() {
    for word in ["ack", "history", "resume", "inbox", "join_room"] {
        assert!(COMMANDS.iter().any(|(w, ..)| w.eq_ignore_ascii_case(word)));
    }
    assert_eq!(usage_of("ack"), "ACK <id>");
    assert_eq!(usage_of("Resume"), "RESUME <name> <token> [room=seq ...]");
}

#[test]
fn delivery_replies_put_their_extras_on_the_status_line() {
    use crate::protocol::{HistoryPage, RoomLine, RoomPosition};
    assert_eq!(encoded(Ok(Reply::Said { seq: 41 })), "+OK 41\r\n");
    assert_eq!(encoded(Ok(Reply::Acked { acked: 3 })), "+OK 3\r\n");
    assert_eq!(
        encoded(Ok(Reply::Created {
            epoch: "e1a".into(),
            seq: 0
        })),
        "+OK epoch=e1a seq=0\r\n"
    );
    let joined = |recovered, oldest| {
        encoded(Ok(Reply::Joined {
            members: vec!["ana".into(), "tom".into()],
            epoch: "e1a".into(),
            seq: 41,
            recovered,
            oldest,
        }))
    };
    assert_eq!(
        joined(None, None),
        "+OK 2 epoch=e1a seq=41\r\n= ana\r\n= tom\r\n"
    );
    assert_eq!(
        joined(Some(true), None),
        "+OK 2 epoch=e1a seq=41 recovered=true\r\n= ana\r\n= tom\r\n"
    );
    assert_eq!(
        joined(Some(false), Some(30)),
        "+OK 2 epoch=e1a seq=41 recovered=false oldest=30\r\n= ana\r\n= tom\r\n"
    );
    let line = |seq, text: &str| RoomLine {
        seq,
        from: "ana".into(),
        text: text.into(),
        sent_at: "2026-12-07T09:00:00.000Z".into(),
    };
    assert_eq!(
        encoded(Ok(Reply::History(HistoryPage {
            messages: vec![line(4, "hi"), line(5, "a\nb")],
            more: true,
        }))),
        "+OK 2 more=true\r\n\
         = 4 2026-12-07T09:00:00.000Z ana: hi\r\n\
         = 5 2026-12-07T09:00:00.000Z ana: a\\nb\r\n"
    );
    assert_eq!(
        encoded(Ok(Reply::History(HistoryPage {
            messages: vec![],
            more: false,
        }))),
        "+OK 0\r\n"
    );

    let hello = |resume_token: Option<&str>, resumed, rooms| {
        encoded(Ok(Reply::Hello {
            client_id: 7,
            name: "Nina".into(),
            resume_token: resume_token.map(|t| ResumeToken(t.into())),
            resumed,
            rooms,
        }))
    };
    assert_eq!(hello(None, None, None), "+OK 7 Nina\r\n");
    assert_eq!(hello(Some("ab12"), None, None), "+OK 7 Nina token=ab12\r\n");
    assert_eq!(
        hello(Some("ab12"), Some(false), None),
        "+OK 7 Nina token=ab12 resumed=false\r\n"
    );
    let position = |room: &str, seq| RoomPosition {
        room: room.into(),
        epoch: "e1a".into(),
        seq,
    };
    assert_eq!(
        hello(
            Some("ab12"),
            Some(true),
            Some(vec![position("lobby", 41), position("r.2", 0)])
        ),
        "+OK 7 Nina token=ab12 resumed=true rooms=lobby@e1a:41,r.2@e1a:0\r\n"
    );
    assert_eq!(
        hello(Some("ab12"), Some(true), Some(vec![])),
        "+OK 7 Nina token=ab12 resumed=true rooms=\r\n"
    );
    // Values the server made stay one word whatever they hold.
    assert_eq!(
        hello(Some("a b\r\n"), None, None),
        "+OK 7 Nina token=a\\u{20}b\\u{d}\\u{a}\r\n"
    );
}

#[test]
fn inbox_pages_say_their_last_id_and_whether_more_remain() {
    let message = |message_id| StoredMessage {
        message_id,
        from: "jose".into(),
        text: "hi".into(),
        sent_at: "2026-12-07T09:00:00.000Z".into(),
    };
    let page = |messages, more| encoded(Ok(Reply::Inbox(InboxPage { messages, more })));
    assert_eq!(page(vec![], false), "+OK 0\r\n");
    assert_eq!(
        page(vec![message(3), message(9)], true),
        "+OK 2 last=9 more=true\r\n\
         = 2026-12-07T09:00:00.000Z jose: hi\r\n\
         = 2026-12-07T09:00:00.000Z jose: hi\r\n"
    );
    assert_eq!(
        page(vec![message(12)], false),
        "+OK 1 last=12\r\n= 2026-12-07T09:00:00.000Z jose: hi\r\n"
    );
}

#[test]
fn room_messages_carry_their_seq_replayed_or_live() {
    for replay in [false, true] {
        assert_eq!(
            event_line(Event::RoomMessage {
                room: "r".into(),
                from: "ana".into(),
                text: "hi\tthere\n".into(),
                sent_at: "x".into(),
                seq: 1,
                replay,
            }),
            "* room_message r 1 ana: hi\tthere\\n\r\n"
        );
    }
    assert_eq!(
        event_line(Event::ResumeGap {
            room: "lobby".into(),
            oldest: 58
        }),
        "* resume_gap lobby 58\r\n"
    );
}
