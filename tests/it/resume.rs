//! Session resume (DESIGN "Delivery"): a connection cut without `bye` is parked for the
//! resume grace, unlisted but still in and owning its rooms, which go on numbering;
//! its client takes it back with its token (or its name's password), is replayed what
//! it missed before anything live, and gets a new token. When the grace ends, the
//! session ends as if it had said `bye`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::server::Config;
use tokio::sync::Notify;

use crate::common::{Raw, TestServer, code};
use crate::room_seq::{replayed, room_message, say_many};

/// Paused time needs the store on the runtime's thread, so that waits on it count.
pub(crate) fn paused(c: &mut Config) {
    c.inline_store = true;
}

/// A new connection that says `hello` with `args` (a name at least); returns it, the
/// client id its welcome gave, and the hello's whole response.
pub(crate) async fn hello(server: &TestServer, args: Value) -> (Raw, u64, Value) {
    let mut raw = server.raw().await;
    let welcome = raw.event().await;
    assert_eq!(welcome["event"], "welcome");
    let mut request = json!({"op": "hello"});
    for (k, v) in args.as_object().unwrap() {
        request[k] = v.clone();
    }
    let reply = raw.call(request).await;
    (raw, welcome["client_id"].as_u64().unwrap(), reply)
}

/// A named connection; returns it, its client id and its resume token.
pub(crate) async fn named(server: &TestServer, name: &str) -> (Raw, u64, String) {
    let (raw, id, reply) = hello(server, json!({"name": name})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["client_id"], id);
    let token = reply["resume_token"].as_str().expect("a token").to_owned();
    (raw, id, token)
}

pub(crate) fn token_of(reply: &Value) -> String {
    reply["resume_token"].as_str().expect("a token").to_owned()
}

pub(crate) async fn call(raw: &mut Raw, request: Value) -> Value {
    let reply = raw.call(request).await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}

pub(crate) async fn create(raw: &mut Raw, room: &str) {
    call(raw, json!({"op": "create_room", "room": room})).await;
}

pub(crate) async fn join(raw: &mut Raw, room: &str) {
    call(raw, json!({"op": "join_room", "room": room})).await;
}

pub(crate) async fn say(raw: &mut Raw, room: &str, text: &str) -> u64 {
    let said = call(raw, json!({"op": "say", "room": room, "text": text})).await;
    said["seq"].as_u64().unwrap()
}

/// Resets the connection (SO_LINGER 0): the server sees it end without `bye`.
pub(crate) fn cut(raw: Raw) {
    raw.stream.set_zero_linger().unwrap();
    drop(raw);
}

pub(crate) async fn user_names(observer: &mut Raw) -> Vec<(u64, String)> {
    let users = call(observer, json!({"op": "users"})).await;
    users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["client_id"].as_u64().unwrap(),
                u["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until `users` no longer lists `name` (the server has seen its connection end).
pub(crate) async fn unlisted(observer: &mut Raw, name: &str) {
    for _ in 0..2000 {
        if !user_names(observer).await.iter().any(|(_, n)| n == name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{name} is still listed");
}

/// Everything `raw` was sent up to an answer to a ping now (the hub queues events in
/// the same step as what caused them, so anything due has come before).
pub(crate) async fn heard(raw: &mut Raw) -> Vec<Value> {
    call(raw, json!({"op": "ping"})).await;
    raw.kept_events()
}

pub(crate) fn is_hex_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The next `count` events, each a replayed `room_message`: their rooms and seqs.
pub(crate) async fn replays(raw: &mut Raw, count: usize) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    for _ in 0..count {
        let event = raw.event().await;
        assert_eq!(event["event"], "room_message", "{event}");
        assert!(replayed(&event), "{event}");
        got.push((
            event["room"].as_str().unwrap().to_owned(),
            event["seq"].as_u64().unwrap(),
        ));
    }
    got
}

#[tokio::test(start_paused = true)]
async fn hello_gives_a_new_token_of_128_random_bits_each_time() {
    let server = TestServer::start_tweaked(paused).await;
    let mut tokens = Vec::new();
    for name in ["ada", "bob", "cyd"] {
        let (raw, _, reply) = hello(&server, json!({"name": name})).await;
        assert!(reply.get("resumed").is_none(), "no resume asked: {reply}");
        assert!(reply.get("rooms").is_none(), "{reply}");
        let token = token_of(&reply);
        assert!(is_hex_token(&token), "{token}");
        tokens.push(token);
        let mut raw = raw;
        call(&mut raw, json!({"op": "bye"})).await;
    }
    let (_, _, again) = hello(&server, json!({"name": "ada"})).await;
    tokens.push(token_of(&again));
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "every hello gets a token of its own");
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_resume_grace_zero_no_token_is_given_and_nothing_is_parked() {
    let server = TestServer::start_tweaked(|c| {
        paused(c);
        c.resume_grace = Duration::ZERO;
    })
    .await;
    let (mut owner, owner_id, reply) = hello(&server, json!({"name": "owner"})).await;
    assert!(reply.get("resume_token").is_none(), "{reply}");
    let (mut member, _, _) = hello(&server, json!({"name": "member"})).await;
    create(&mut owner, "gone").await;
    join(&mut member, "gone").await;
    let (mut host, _, _) = hello(&server, json!({"name": "host"})).await;
    create(&mut host, "stays").await;
    join(&mut owner, "stays").await;
    heard(&mut host).await;
    cut(owner);

    let closed = member.event().await;
    assert_eq!(
        closed,
        json!({"event": "room_closed", "room": "gone", "by": "owner"})
    );
    let left = host.event().await;
    assert_eq!(
        left,
        json!({"event": "left", "room": "stays", "name": "owner"})
    );
    unlisted(&mut member, "owner").await;

    // Even a hello that asks to resume is a plain one: nothing is taken over.
    let (_, id, reply) = hello(
        &server,
        json!({"name": "owner", "resume": "0123456789abcdef0123456789abcdef"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_ne!(reply["resumed"], true, "{reply}");
    assert!(reply.get("resume_token").is_none(), "{reply}");
    assert_eq!(reply["client_id"], id);
    assert_ne!(id, owner_id);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cut_session_is_parked_unlisted_and_resumed_by_its_token() {
    let server = TestServer::start_tweaked(paused).await;
    let (mut away, away_id, token) = named(&server, "away").await;
    let (mut host, _, _) = named(&server, "host").await;
    let (mut guest, _, _) = named(&server, "guest").await;
    create(&mut away, "own").await;
    create(&mut host, "theirs").await;
    join(&mut away, "theirs").await;
    join(&mut guest, "own").await;
    assert_eq!(say(&mut guest, "own", "before").await, 1);
    assert_eq!(room_message(&mut away).await["seq"], 1);
    heard(&mut host).await;
    heard(&mut guest).await;

    cut(away);
    unlisted(&mut host, "away").await;
    assert_eq!(heard(&mut host).await, Vec::<Value>::new(), "no left");
    assert_eq!(
        heard(&mut guest).await,
        Vec::<Value>::new(),
        "no room_closed"
    );

    // Its rooms stay open and go on numbering; it is still a member of both.
    assert_eq!(say(&mut guest, "own", "while away 1").await, 2);
    assert_eq!(say(&mut guest, "own", "while away 2").await, 3);
    assert_eq!(say(&mut host, "theirs", "while away 3").await, 1);
    let create_again = guest
        .call(json!({"op": "create_room", "room": "own"}))
        .await;
    assert_eq!(code(&create_again), "room_exists");
    let (mut third, _, _) = named(&server, "third").await;
    let joined = call(&mut third, json!({"op": "join_room", "room": "own"})).await;
    assert_eq!(
        joined["members"],
        json!(["away", "guest", "third"]),
        "{joined}"
    );
    // Not reachable by its client id; mail to its name is kept as ever.
    let by_id = host
        .call(json!({"op": "send", "to": away_id, "text": "hi"}))
        .await;
    assert_eq!(code(&by_id), "no_such_user", "{by_id}");
    call(&mut host, json!({"op": "send", "to": "away", "text": "hi"})).await;

    let (mut back, conn_id, reply) = hello(&server, json!({"name": "away", "resume": token})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(reply["client_id"], away_id, "the session's own id");
    assert_ne!(conn_id, away_id);
    assert_eq!(reply["name"], "away");
    let new_token = token_of(&reply);
    assert!(is_hex_token(&new_token) && new_token != token);
    let rooms = reply["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 2, "{reply}");
    assert_eq!(
        (&rooms[0]["room"], &rooms[0]["seq"]),
        (&json!("own"), &json!(3))
    );
    assert_eq!(
        (&rooms[1]["room"], &rooms[1]["seq"]),
        (&json!("theirs"), &json!(1))
    );
    assert!(
        rooms
            .iter()
            .all(|r| r["epoch"].as_str().is_some_and(|e| !e.is_empty()))
    );

    let missed = replays(&mut back, 3).await;
    assert_eq!(
        missed,
        [("own".into(), 2), ("own".into(), 3), ("theirs".into(), 1)]
    );
    assert_eq!(say(&mut guest, "own", "live").await, 4);
    let live = room_message(&mut back).await;
    assert_eq!(
        (&live["seq"], replayed(&live)),
        (&json!(4), false),
        "{live}"
    );

    // Back in users under its old id; nobody heard it leave or come back.
    let users = user_names(&mut host).await;
    assert!(users.contains(&(away_id, "away".to_owned())), "{users:?}");
    assert!(!users.iter().any(|(id, _)| *id == conn_id), "{users:?}");
    for raw in [&mut host, &mut guest] {
        let events = heard(raw).await;
        assert!(
            events.iter().all(|e| e["name"] != "away"),
            "no joined or left of away: {events:?}"
        );
    }
    // A send by its client id reaches it again.
    call(
        &mut host,
        json!({"op": "send", "to": away_id, "text": "again"}),
    )
    .await;
    let mail = back.event().await;
    assert_eq!(
        (&mail["event"], &mail["from"]),
        (&json!("message"), &json!("host"))
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_resume_replays_after_seen_or_else_after_what_was_queued() {
    let server = TestServer::start_tweaked(paused).await;
    let (mut owner, _, _) = named(&server, "owner").await;
    let (mut away, _, token) = named(&server, "away").await;
    create(&mut owner, "r").await;
    join(&mut away, "r").await;
    say(&mut owner, "r", "one").await;
    room_message(&mut away).await;
    assert_eq!(say(&mut away, "r", "two, its own").await, 2);
    cut(away);
    unlisted(&mut owner, "away").await;
    say_many(&mut owner, "r", "missed", 2).await;

    // No seen: after what was queued to the old connection (its own say included).
    let (mut back, _, reply) = hello(&server, json!({"name": "away", "resume": token})).await;
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(
        replays(&mut back, 2).await,
        [("r".into(), 3), ("r".into(), 4)]
    );
    assert_eq!(heard(&mut back).await, Vec::<Value>::new(), "nothing more");

    // With seen: after what the client says it has, its own say too.
    cut(back);
    unlisted(&mut owner, "away").await;
    say(&mut owner, "r", "five").await;
    let seen = json!({"r": 1, "elsewhere": 3});
    let (mut back, _, reply) = hello(
        &server,
        json!({"name": "away", "resume": token_of(&reply), "seen": seen}),
    )
    .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    let missed = replays(&mut back, 4).await;
    assert_eq!(
        missed.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    assert_eq!(heard(&mut back).await, Vec::<Value>::new(), "nothing more");

    // Seen at the latest, or past it: nothing.
    cut(back);
    unlisted(&mut owner, "away").await;
    let (mut back, _, reply) = hello(
        &server,
        json!({"name": "away", "resume": token_of(&reply), "seen": {"r": 99}}),
    )
    .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(heard(&mut back).await, Vec::<Value>::new());
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_resume_past_what_is_kept_gets_resume_gap_and_no_partial_replay() {
    let server = TestServer::start_tweaked(|c| {
        paused(c);
        c.room_history = 3;
    })
    .await;
    let (mut owner, _, _) = named(&server, "owner").await;
    let (mut away, _, token) = named(&server, "away").await;
    create(&mut owner, "far").await;
    create(&mut owner, "near").await;
    join(&mut away, "far").await;
    join(&mut away, "near").await;
    cut(away);
    unlisted(&mut owner, "away").await;
    say_many(&mut owner, "far", "far", 5).await;
    say(&mut owner, "near", "near").await;

    let (mut back, _, reply) = hello(&server, json!({"name": "away", "resume": token})).await;
    assert_eq!(reply["resumed"], true, "{reply}");
    let gap = back.event().await;
    assert_eq!(
        gap,
        json!({"event": "resume_gap", "room": "far", "oldest": 3})
    );
    let near = back.event().await;
    assert_eq!(
        (&near["room"], &near["seq"], replayed(&near)),
        (&json!("near"), &json!(1), true)
    );
    assert_eq!(
        heard(&mut back).await,
        Vec::<Value>::new(),
        "nothing of far replayed"
    );
    let page = call(&mut back, json!({"op": "history", "room": "far"})).await;
    let seqs: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, [3, 4, 5], "the client may page what is kept");
    say(&mut owner, "far", "live").await;
    let live = room_message(&mut back).await;
    assert_eq!((&live["seq"], replayed(&live)), (&json!(6), false));

    // Seen within what is kept: replayed.
    cut(back);
    unlisted(&mut owner, "away").await;
    let (mut back, _, reply) = hello(
        &server,
        json!({"name": "away", "resume": token_of(&reply), "seen": {"far": 3, "near": 1}}),
    )
    .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(
        replays(&mut back, 3)
            .await
            .iter()
            .map(|(_, s)| *s)
            .collect::<Vec<_>>(),
        [4, 5, 6]
    );
    server.stop().await;
}

/// A session resumes while another member keeps talking: it gets every message it
/// missed exactly once and in order, the replayed ones before any live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_while_another_talks_has_no_gap_and_no_duplicate() {
    const DURING: usize = 1500;
    let server = TestServer::start().await;
    let (mut owner, _, _) = named(&server, "owner").await;
    let (mut away, _, token) = named(&server, "away").await;
    let (mut talker, _, _) = named(&server, "talker").await;
    create(&mut owner, "busy").await;
    join(&mut away, "busy").await;
    join(&mut talker, "busy").await;
    say_many(&mut owner, "busy", "seen", 10).await;
    for _ in 0..10 {
        room_message(&mut away).await;
    }
    cut(away);
    unlisted(&mut owner, "away").await;
    say_many(&mut owner, "busy", "missed", 200).await;

    let started = Arc::new(Notify::new());
    let talking = {
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            for i in 0..DURING {
                say(&mut talker, "busy", &format!("during-{i}")).await;
                if i == 50 {
                    started.notify_one();
                }
            }
        })
    };
    let reading = tokio::spawn(async move {
        for _ in 0..DURING {
            room_message(&mut owner).await;
        }
    });
    started.notified().await;
    let (mut back, _, reply) = hello(&server, json!({"name": "away", "resume": token})).await;
    assert_eq!(reply["resumed"], true, "{reply}");
    let at_resume = reply["rooms"][0]["seq"].as_u64().unwrap();
    let last = (210 + DURING) as u64;
    assert!(
        at_resume > 260 && at_resume < last,
        "resumed mid-talk ({at_resume})"
    );
    for expected in 11..=last {
        let event = room_message(&mut back).await;
        assert_eq!(event["seq"], expected, "no gap, no duplicate: {event}");
        assert_eq!(replayed(&event), expected <= at_resume, "{event}");
    }
    talking.await.unwrap();
    reading.await.unwrap();
    server.stop().await;
}

/// A member cut as a slow consumer is parked like any other cut session; resuming
/// with `seen` at the last message it really read gives it the rest, with no gap,
/// whatever had died in its queue and socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_cut_resumes_from_what_it_read() {
    let server = TestServer::start_tweaked(|c| c.queue_depth = 8).await;
    let (mut owner, _, _) = named(&server, "owner").await;
    create(&mut owner, "r").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = Raw::from_stream(socket.connect(server.addr).await.unwrap());
    assert_eq!(slow.event().await["event"], "welcome");
    let reply = call(&mut slow, json!({"op": "hello", "name": "slow"})).await;
    let token = token_of(&reply);
    join(&mut slow, "r").await;
    heard(&mut owner).await;
    let text = "x".repeat(8000);
    let mut said = 0;
    let mut cut = false;
    while !cut {
        assert!(said < 2000, "the stalled member was never cut");
        said = say(&mut owner, "r", &text).await;
        if said % 10 == 0 {
            cut = !user_names(&mut owner)
                .await
                .iter()
                .any(|(_, n)| n == "slow");
        }
    }
    for _ in 0..5 {
        said = say(&mut owner, "r", &text).await;
    }
    let frames = slow.until_closed().await;
    assert_eq!(code(frames.last().unwrap()), "slow_consumer");
    let got: Vec<u64> = frames
        .iter()
        .filter(|f| f["event"] == "room_message")
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    let read = got.len() as u64;
    assert_eq!(got, (1..=read).collect::<Vec<_>>(), "whole, in order");
    assert!(read < said);

    let (mut back, _, reply) = hello(
        &server,
        json!({"name": "slow", "resume": token, "seen": {"r": read}}),
    )
    .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    for expected in read + 1..=said {
        let event = room_message(&mut back).await;
        assert_eq!((&event["seq"], replayed(&event)), (&json!(expected), true));
    }
    let live = say(&mut owner, "r", "live").await;
    let event = room_message(&mut back).await;
    assert_eq!((&event["seq"], replayed(&event)), (&json!(live), false));
    server.stop().await;
}
