//! The text and lab dialects over TCP, and all three dialects sharing one hub.

use serde_pickle::Value;
use switchboard::protocol::Event;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{TestServer, next_event, noise};
use crate::wire::{LabConn, TextConn, dict, get, s};

fn int(n: i64) -> Value {
    Value::I64(n)
}

#[tokio::test]
async fn text_lines_follow_the_grammar() {
    let server = TestServer::start_dialects().await;
    let (mut tom, welcome) = TextConn::connect(server.text.unwrap()).await;
    let words: Vec<_> = welcome.split_whitespace().collect();
    assert_eq!(words[..2], ["*", "welcome"], "{welcome}");
    assert!(words[2].parse::<u64>().is_ok(), "{welcome}");
    assert_eq!(words[3..].join(" "), switchboard::protocol::SERVER_NAME);

    assert!(
        tom.call("USERS")
            .await
            .0
            .starts_with("-ERR not_registered ")
    );
    assert_eq!(tom.call("ping").await.0, "+OK");
    let (status, _) = tom.call("HELLO tom").await;
    assert!(
        status.starts_with(&format!("+OK {} tom token=", words[2])),
        "{status}"
    );
    let (status, items) = tom.call("menu").await;
    assert_eq!(status, "+OK 6");
    assert_eq!(items[0], "= 1 Get user list: USERS");
    assert_eq!(items[1], "= 2 Send a message: SEND <name|#id> <text>");
    assert_eq!(items[5], "= 6 Disconnect from server: QUIT");
    assert!(
        tom.call("dance now")
            .await
            .0
            .starts_with("-ERR unknown_op ")
    );
    assert!(
        tom.call("SEND tom")
            .await
            .0
            .starts_with("-ERR bad_request usage: SEND")
    );
    assert!(
        tom.call("SEND nobody hi")
            .await
            .0
            .starts_with("-ERR no_such_user ")
    );

    // A line over 64 KiB is answered with one error and the session goes on.
    let long = "x".repeat(70 * 1024);
    assert!(tom.call(&long).await.0.starts_with("-ERR too_large "));
    assert_eq!(tom.call("PING").await.0, "+OK");

    let (status, items) = tom.call("JOIN_ROOM nowhere").await;
    assert!(status.starts_with("-ERR no_such_room "), "{status}");
    assert!(items.is_empty());
    assert!(tom.call("CREATE_ROOM 3456").await.0.starts_with("+OK"));
    assert_eq!(tom.call("SAY 3456 hi all").await.0, "+OK 1");
    assert_eq!(tom.call("QUIT").await.0, "+OK");
    assert_eq!(tom.line().await, None, "QUIT closes the connection");
    server.stop().await;
}

#[tokio::test]
async fn dialects_share_users_inboxes_and_rooms() {
    let server = TestServer::start_dialects().await;
    let mut nina = server.client("nina").await;
    let mut nina_events = nina.take_events().unwrap();
    let (mut tom, _) = TextConn::connect(server.text.unwrap()).await;
    assert!(tom.call("HELLO tom").await.0.starts_with("+OK"));
    let (mut lab, welcome) = LabConn::connect(server.lab.unwrap()).await;
    assert!(get(&welcome, "clientid").is_some(), "{welcome}");
    lab.send(&dict(&[
        ("op", s("hello")),
        ("id", int(1)),
        ("name", s("ana")),
    ]))
    .await;
    assert_eq!(get(&lab.reply().await, "ok"), Some(&Value::Bool(true)));

    // Text to native, with the new-mail event, and the mail in the inbox.
    let (status, _) = tom.call("SEND nina hi from  text").await;
    assert!(status.starts_with("+OK "), "{status}");
    match next_event(&mut nina_events).await {
        Event::Message { from, .. } => assert_eq!(from, "tom"),
        other => panic!("{other:?}"),
    }
    let page = nina.inbox(None).await.unwrap();
    assert_eq!(page.messages[0].text, "hi from  text");
    assert_eq!(page.messages[0].from, "tom");

    // Native to text: an event line, then the message as an inbox item.
    nina.send("tom", "two\nlines").await.unwrap();
    assert_eq!(tom.event().await, "* message nina");
    let (status, items) = tom.call("INBOX").await;
    assert!(status.starts_with("+OK 1 last="), "{status}");
    assert!(items[0].starts_with("= ") && items[0].ends_with(" nina: two\\nlines"));

    // The pickle client sees everyone.
    lab.send(&dict(&[("op", s("users")), ("id", int(2))])).await;
    let users = lab.reply().await;
    let names: Vec<String> = match get(&users, "users") {
        Some(Value::List(list)) => list
            .iter()
            .map(|u| get(u, "name").unwrap().to_string())
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, [r#""nina""#, r#""tom""#, r#""ana""#]);

    // A room with a member on every dialect.
    nina.create_room("3456").await.unwrap();
    let (status, members) = tom.call("JOIN_ROOM 3456").await;
    assert!(status.starts_with("+OK 2 epoch="), "{status}");
    assert_eq!(members, ["= nina", "= tom"]);
    lab.send(&dict(&[
        ("op", s("join_room")),
        ("id", int(3)),
        ("room", s("3456")),
    ]))
    .await;
    assert_eq!(get(&lab.reply().await, "ok"), Some(&Value::Bool(true)));
    assert_eq!(tom.event().await, "* joined 3456 ana");

    nina.say("3456", "hi all").await.unwrap();
    assert_eq!(tom.event().await, "* room_message 3456 1 nina: hi all");
    let heard = loop {
        let event = lab.recv().await.unwrap();
        if get(&event, "event") == Some(&s("room_message")) {
            break event;
        }
    };
    assert_eq!(get(&heard, "text"), Some(&s("hi all")));
    assert_eq!(get(&heard, "from"), Some(&s("nina")));

    assert_eq!(tom.call("SAY 3456 hello from nc").await.0, "+OK 2");
    loop {
        if let Event::RoomMessage { from, text, .. } = next_event(&mut nina_events).await {
            assert_eq!((from.as_str(), text.as_str()), ("tom", "hello from nc"));
            break;
        }
    }
    nina.close_room("3456").await.unwrap();
    loop {
        let line = tom.event().await;
        if line.starts_with("* room_closed") {
            assert_eq!(line, "* room_closed 3456 nina");
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn pickles_split_across_reads_or_sharing_one_are_each_answered() {
    let server = TestServer::start_dialects().await;
    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    let ping = |id| dict(&[("op", s("ping")), ("id", int(id))]);
    let mut both = serde_pickle::value_to_vec(&ping(1), Default::default()).unwrap();
    both.extend(serde_pickle::value_to_vec(&ping(2), Default::default()).unwrap());
    lab.send_raw(&both).await;
    assert_eq!(get(&lab.reply().await, "id"), Some(&int(1)));
    assert_eq!(get(&lab.reply().await, "id"), Some(&int(2)));

    for byte in &both {
        lab.send_raw(&[*byte]).await;
    }
    assert_eq!(get(&lab.reply().await, "id"), Some(&int(1)));
    assert_eq!(get(&lab.reply().await, "id"), Some(&int(2)));
    server.stop().await;
}

#[tokio::test]
async fn random_bytes_on_every_listener_leave_the_server_serving() {
    let server = TestServer::start_dialects().await;
    let addrs = [server.addr, server.text.unwrap(), server.lab.unwrap()];
    for (i, addr) in addrs.iter().enumerate() {
        for seed in 0..20u64 {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let len = 1 + (seed as usize * 7919) % 100_000;
            // The server may close on garbage before taking it all; that is its right.
            let _ = conn.write_all(&noise(seed * 3 + i as u64, len)).await;
            let _ = conn.shutdown().await;
        }
    }
    let nina = server.client("nina").await;
    nina.ping().await.unwrap();
    let (mut tom, _) = TextConn::connect(server.text.unwrap()).await;
    assert_eq!(tom.call("PING").await.0, "+OK");
    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    lab.send(&dict(&[("op", s("ping")), ("id", int(1))])).await;
    assert_eq!(get(&lab.reply().await, "ok"), Some(&Value::Bool(true)));
    server.stop().await;
}

/// A name made of digits is a name: mail to it reaches it, never the client whose id
/// those digits spell; a client id is written `#17`.
#[tokio::test]
async fn over_text_a_bare_word_is_a_name_and_hash_digits_a_client_id() {
    let server = TestServer::start_dialects().await;
    let text = server.text.unwrap();
    let (mut twenty, _) = TextConn::connect(text).await;
    assert!(twenty.call("HELLO 20").await.0.starts_with("+OK "));
    let (mut tom, _) = TextConn::connect(text).await;
    let (status, _) = tom.call("HELLO tom").await;
    let tom_id = status.split_whitespace().nth(1).unwrap().to_owned();

    assert!(tom.call("SEND 20 to the name").await.0.starts_with("+OK "));
    assert_eq!(twenty.event().await, "* message tom");
    let (status, _) = twenty.call(&format!("SEND #{tom_id} to the id")).await;
    assert!(status.starts_with("+OK "), "{status}");
    assert_eq!(tom.event().await, "* message 20");
    let (status, items) = tom.call("3").await;
    assert!(status.starts_with("+OK 1 last="), "{status}");
    assert!(items[0].ends_with(" 20: to the id"), "{items:?}");
    let (status, items) = twenty.call("INBOX").await;
    assert!(status.starts_with("+OK 1 last="), "{status}");
    assert!(items[0].ends_with(" tom: to the name"), "{items:?}");

    let (status, _) = tom.call("SEND #twenty hi").await;
    assert!(status.starts_with("-ERR bad_request "), "{status}");
    assert_eq!(
        tom.call("2").await.0,
        "-ERR bad_request usage: SEND <name|#id> <text>"
    );
    let (status, users) = tom.call("1").await;
    assert_eq!(status, "+OK 2");
    assert_eq!(users.len(), 2);

    // HELP answers before HELLO too.
    let (mut newcomer, _) = TextConn::connect(text).await;
    let (status, commands) = newcomer.call("help").await;
    assert_eq!(status, format!("+OK {}", commands.len()));
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("= SEND <name|#id> <text>: "))
    );
    server.stop().await;
}

/// A person who types a command at the native port gets, after the welcome frame, one
/// line of text saying where to type, and the connection closes.
#[tokio::test]
async fn a_line_typed_at_the_native_port_gets_a_hint_in_text() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_dialects().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"USERS\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(crate::common::PATIENCE, stream.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let mut buf = bytes::BytesMut::from(&all[..]);
    let welcome = switchboard::frame::decode(&mut buf, 1 << 20)
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&welcome).contains("welcome"));
    let hint = String::from_utf8(buf.to_vec()).unwrap();
    let port = server.text.unwrap().port();
    assert!(
        hint.starts_with("-ERR bad_request this is switchboard's native port"),
        "{hint}"
    );
    assert!(hint.contains(&format!("port {port}")), "{hint}");
    assert!(
        hint.ends_with("\r\n") && hint.lines().count() == 1,
        "{hint:?}"
    );
    server.stop().await;
}
