use super::*;
use crate::protocol::{InboxPage, StoredMessage, UserInfo};

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
        &Request::Hello {
            name: "nina".into(),
            password: Some("s3cret".into()),
            resume: None,
            seen: None,
        }
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
        "+OK 1\r\n= 2026-11-21T17:45:00Z jose: two\\nlines\r\n"
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
            seq: 0,
            replay: false,
        },
        &mut buf,
    );
    assert_eq!(&buf[..], b"* room_message 3456 alice: hi all\r\n");
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
            "= 3 Get my messages: INBOX",
            "= 4 Create a new chat room: CREATE_ROOM <room>",
            "= 5 Join an existing chat room: JOIN_ROOM <room>",
            "= 6 Disconnect from server: QUIT",
        ]
    );
}
