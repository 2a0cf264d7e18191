//! The delivery ops as a person types them at `nc`: room seq on say and on the event
//! lines, join-after replay, history pages, and resume with the hello line's token.

use crate::common::TestServer;
use crate::wire::TextConn;

/// A text connection that has said hello as `name`, and its hello status line.
async fn signed_in(server: &TestServer, name: &str) -> (TextConn, String) {
    let (mut conn, _) = TextConn::connect(server.text.unwrap()).await;
    let (status, _) = conn.call(&format!("HELLO {name}")).await;
    assert!(status.starts_with("+OK "), "{status}");
    (conn, status)
}

/// The value of `key=` on a status line.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .split(' ')
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {status:?}"))
}

/// `sent_at` then the rest of a history item, checked to be RFC 3339 in between.
fn without_sent_at(item: &str) -> String {
    let words: Vec<&str> = item.splitn(4, ' ').collect();
    assert_eq!(words[0], "=", "{item}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(words[2]).is_ok(),
        "{item}"
    );
    format!("= {} {}", words[1], words[3])
}

#[tokio::test]
async fn say_answers_its_seq_and_members_hear_it() {
    let server = TestServer::start_dialects().await;
    let (mut ana, _) = signed_in(&server, "ana").await;
    let (mut bob, _) = signed_in(&server, "bob").await;
    let (created, _) = ana.call("CREATE_ROOM r").await;
    let epoch = field(&created, "epoch").to_owned();
    assert!(!epoch.is_empty());
    assert_eq!(created, format!("+OK epoch={epoch} seq=0"));
    let (joined, members) = bob.call("JOIN_ROOM r").await;
    assert_eq!(joined, format!("+OK 2 epoch={epoch} seq=0"));
    assert_eq!(members, ["= ana", "= bob"]);
    assert_eq!(ana.event().await, "* joined r bob");

    assert_eq!(ana.call("SAY r hi").await.0, "+OK 1");
    assert_eq!(bob.event().await, "* room_message r 1 ana: hi");
    assert_eq!(bob.call("say r hello  there").await.0, "+OK 2");
    assert_eq!(ana.event().await, "* room_message r 2 bob: hello  there");
    server.stop().await;
}

#[tokio::test]
async fn join_room_after_replays_what_was_missed_then_the_live_ones() {
    let server = TestServer::start_dialects().await;
    let (mut ana, _) = signed_in(&server, "ana").await;
    let (created, _) = ana.call("CREATE_ROOM r").await;
    let epoch = field(&created, "epoch").to_owned();
    for (seq, text) in ["one", "two", "three"].iter().enumerate() {
        assert_eq!(
            ana.call(&format!("SAY r {text}")).await.0,
            format!("+OK {}", seq + 1)
        );
    }

    // From the start, with the epoch left out: the current one is assumed.
    let (mut bob, _) = signed_in(&server, "bob").await;
    let (joined, members) = bob.call("JOIN_ROOM r 0").await;
    assert_eq!(joined, format!("+OK 2 epoch={epoch} seq=3 recovered=true"));
    assert_eq!(members, ["= ana", "= bob"]);
    for line in [
        "* room_message r 1 ana: one",
        "* room_message r 2 ana: two",
        "* room_message r 3 ana: three",
    ] {
        assert_eq!(bob.event().await, line);
    }

    // After a seq, in the epoch it counts in; then live, with no gap.
    let (mut carl, _) = signed_in(&server, "carl").await;
    let (joined, _) = carl.call(&format!("JOIN_ROOM r 2 {epoch}")).await;
    assert_eq!(joined, format!("+OK 3 epoch={epoch} seq=3 recovered=true"));
    assert_eq!(carl.event().await, "* room_message r 3 ana: three");
    assert_eq!(ana.call("SAY r four").await.0, "+OK 4");
    assert_eq!(carl.event().await, "* room_message r 4 ana: four");
    assert!(carl.events.is_empty(), "{:?}", carl.events);

    // Another incarnation's seq means nothing here: nothing is replayed.
    let (mut dan, _) = signed_in(&server, "dan").await;
    let (joined, _) = dan.call("JOIN_ROOM r 1 not-this-one").await;
    assert_eq!(
        joined,
        format!("+OK 4 epoch={epoch} seq=4 recovered=false oldest=1")
    );
    assert_eq!(ana.call("SAY r five").await.0, "+OK 5");
    assert_eq!(dan.event().await, "* room_message r 5 ana: five");

    let (refused, _) = dan.call("JOIN_ROOM r soon").await;
    assert!(
        refused.starts_with("-ERR bad_request after is a whole number"),
        "{refused}"
    );
    server.stop().await;
}

#[tokio::test]
async fn history_pages_back_from_the_newest() {
    let server = TestServer::start_dialects().await;
    let (mut ana, _) = signed_in(&server, "ana").await;
    ana.call("CREATE_ROOM r").await;
    for n in 1..=5 {
        assert_eq!(ana.call(&format!("SAY r m{n}")).await.0, format!("+OK {n}"));
    }
    let page = |items: Vec<String>| items.iter().map(|i| without_sent_at(i)).collect::<Vec<_>>();

    let (status, items) = ana.call("HISTORY r").await;
    assert_eq!(status, "+OK 5");
    assert_eq!(
        page(items),
        [
            "= 1 ana: m1",
            "= 2 ana: m2",
            "= 3 ana: m3",
            "= 4 ana: m4",
            "= 5 ana: m5"
        ]
    );
    let (status, items) = ana.call("HISTORY r 2").await;
    assert_eq!(status, "+OK 2 more=true");
    assert_eq!(page(items), ["= 4 ana: m4", "= 5 ana: m5"]);
    let (status, items) = ana.call("history r 2 4").await;
    assert_eq!(status, "+OK 2 more=true");
    assert_eq!(page(items), ["= 2 ana: m2", "= 3 ana: m3"]);
    let (status, items) = ana.call("HISTORY r 2 2").await;
    assert_eq!(status, "+OK 1");
    assert_eq!(page(items), ["= 1 ana: m1"]);

    let (mut bob, _) = signed_in(&server, "bob").await;
    let (status, items) = bob.call("HISTORY r").await;
    assert!(status.starts_with("-ERR not_member "), "{status}");
    assert!(items.is_empty());
    let (status, _) = bob.call("HISTORY r many").await;
    assert!(
        status.starts_with("-ERR bad_request limit is a whole number"),
        "{status}"
    );
    server.stop().await;
}

#[tokio::test]
async fn resume_takes_the_cut_session_over_with_the_token_from_hello() {
    let server = TestServer::start_dialects().await;
    let (mut ana, hello) = signed_in(&server, "ana").await;
    let ana_id = hello.split(' ').nth(1).unwrap().to_owned();
    let token = field(&hello, "token").to_owned();
    let (created, _) = ana.call("CREATE_ROOM r").await;
    let epoch = field(&created, "epoch").to_owned();
    let (mut bob, _) = signed_in(&server, "bob").await;
    bob.call("JOIN_ROOM r").await;
    assert_eq!(bob.call("SAY r before").await.0, "+OK 1");
    assert_eq!(ana.event().await, "* joined r bob");
    assert_eq!(ana.event().await, "* room_message r 1 bob: before");

    // Cut without QUIT: the session is parked, ana stays in the room.
    drop(ana);
    assert_eq!(bob.call("SAY r while away").await.0, "+OK 2");

    let (mut back, _) = TextConn::connect(server.text.unwrap()).await;
    let (status, _) = back.call(&format!("RESUME ana {token} r=1")).await;
    let new_token = field(&status, "token");
    assert_ne!(new_token, token, "a token is used once");
    assert_eq!(
        status,
        format!("+OK {ana_id} ana token={new_token} resumed=true rooms=r@{epoch}:2")
    );
    assert_eq!(back.event().await, "* room_message r 2 bob: while away");
    assert_eq!(bob.call("SAY r welcome back").await.0, "+OK 3");
    assert_eq!(back.event().await, "* room_message r 3 bob: welcome back");
    assert!(
        bob.events.is_empty(),
        "no left, no joined: {:?}",
        bob.events
    );

    // A used token resumes nothing: a plain hello, said so.
    let (mut again, _) = TextConn::connect(server.text.unwrap()).await;
    let (status, _) = again.call(&format!("RESUME carl {token}")).await;
    assert!(
        status.contains(" carl token=") && status.ends_with(" resumed=false"),
        "{status}"
    );
    server.stop().await;
}

#[tokio::test]
async fn what_is_no_longer_kept_is_a_gap_never_a_partial_replay() {
    let server = TestServer::start_tweaked(|config| {
        config.text_listen = Some("127.0.0.1:0".parse().unwrap());
        config.room_history = 2;
    })
    .await;
    let (mut ana, hello) = signed_in(&server, "ana").await;
    let token = field(&hello, "token").to_owned();
    ana.call("CREATE_ROOM r").await;
    let (mut bob, _) = signed_in(&server, "bob").await;
    bob.call("JOIN_ROOM r").await;
    drop(ana);
    for n in 1..=3 {
        assert_eq!(bob.call(&format!("SAY r m{n}")).await.0, format!("+OK {n}"));
    }

    let (mut back, _) = TextConn::connect(server.text.unwrap()).await;
    let (status, _) = back.call(&format!("RESUME ana {token} r=0")).await;
    assert!(status.contains(" resumed=true rooms=r@"), "{status}");
    assert!(status.ends_with(":3"), "{status}");
    assert_eq!(back.event().await, "* resume_gap r 2");
    assert_eq!(bob.call("SAY r m4").await.0, "+OK 4");
    assert_eq!(back.event().await, "* room_message r 4 bob: m4");

    let (mut carl, _) = signed_in(&server, "carl").await;
    let (joined, members) = carl.call("JOIN_ROOM r 0").await;
    assert!(
        joined.starts_with("+OK 3 epoch=") && joined.ends_with(" seq=4 recovered=false oldest=3"),
        "{joined}"
    );
    assert_eq!(members.len(), 3);
    assert_eq!(bob.call("SAY r m5").await.0, "+OK 5");
    assert_eq!(carl.event().await, "* room_message r 5 bob: m5");
    server.stop().await;
}

/// The lab programs' pickles carry the same fields as native frames.
#[tokio::test]
async fn over_pickles_say_answers_its_seq_and_a_join_after_replays() {
    use crate::wire::{LabConn, dict, get, s};
    use serde_pickle::Value;
    let server = TestServer::start_dialects().await;
    let (mut ana, _) = signed_in(&server, "ana").await;
    ana.call("CREATE_ROOM r").await;
    assert_eq!(ana.call("SAY r one").await.0, "+OK 1");
    assert_eq!(ana.call("SAY r two").await.0, "+OK 2");

    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    lab.send(&dict(&[("op", s("hello")), ("name", s("lab"))]))
        .await;
    let hello = lab.reply().await;
    assert!(
        matches!(get(&hello, "resume_token"), Some(Value::String(_))),
        "{hello}"
    );
    lab.send(&dict(&[
        ("op", s("join_room")),
        ("room", s("r")),
        ("after", Value::I64(1)),
    ]))
    .await;
    let joined = lab.reply().await;
    assert_eq!(
        get(&joined, "recovered"),
        Some(&Value::Bool(true)),
        "{joined}"
    );
    assert_eq!(get(&joined, "seq"), Some(&Value::I64(2)), "{joined}");
    let replayed = lab.recv().await.unwrap();
    assert_eq!(
        get(&replayed, "event"),
        Some(&s("room_message")),
        "{replayed}"
    );
    assert_eq!(get(&replayed, "seq"), Some(&Value::I64(2)));
    assert_eq!(get(&replayed, "replay"), Some(&Value::Bool(true)));

    lab.send(&dict(&[
        ("op", s("say")),
        ("room", s("r")),
        ("text", s("three")),
    ]))
    .await;
    assert_eq!(get(&lab.reply().await, "seq"), Some(&Value::I64(3)));
    assert_eq!(ana.event().await, "* joined r lab");
    assert_eq!(ana.event().await, "* room_message r 3 lab: three");
    server.stop().await;
}

#[tokio::test]
async fn inbox_peek_leaves_mail_unread_until_ack_up_to_its_last_id() {
    let server = TestServer::start_dialects().await;
    let (mut ana, _) = signed_in(&server, "ana").await;
    let (mut bob, _) = signed_in(&server, "bob").await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let (status, _) = ana.call(&format!("SEND bob {text}")).await;
        ids.push(status.strip_prefix("+OK ").unwrap().to_owned());
    }

    let (status, items) = bob.call("INBOX PEEK").await;
    assert_eq!(status, format!("+OK 3 last={}", ids[2]));
    assert!(items[0].ends_with(" ana: one"), "{items:?}");
    // Still there: a peek read nothing.
    let (again, _) = bob.call("inbox peek").await;
    assert_eq!(again, status);

    assert_eq!(bob.call(&format!("ACK {}", ids[1])).await.0, "+OK 2");
    assert_eq!(bob.call(&format!("ACK {}", ids[1])).await.0, "+OK 0");
    let (status, items) = bob.call("INBOX").await;
    assert_eq!(status, format!("+OK 1 last={}", ids[2]));
    assert!(items[0].ends_with(" ana: three"), "{items:?}");
    assert_eq!(bob.call("INBOX").await.0, "+OK 0");
    assert_eq!(bob.call("ACK 99999").await.0, "+OK 0");
    assert!(
        bob.call("ACK last")
            .await
            .0
            .starts_with("-ERR bad_request id is a whole number")
    );
    server.stop().await;
}
