//! Room sequence and history (DESIGN "Delivery"): every room numbers its messages from
//! 1 with no gap under an epoch of its own, keeps the last `--room-history` of them for
//! `history`, and a `join_room ... after` replays what a member missed before anything
//! live, with no gap and no duplicate.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{Raw, TestServer, code};

/// A named connection that created `room` (when `create`) or joined it.
pub async fn in_room(server: &TestServer, name: &str, room: &str, create: bool) -> Raw {
    let mut raw = server.raw().await;
    raw.hello(name).await;
    let op = if create { "create_room" } else { "join_room" };
    let reply = raw.call(json!({"op": op, "room": room})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    raw
}

/// Says `count` lines `prefix-<i>` in `room`, pipelined in batches; returns their seqs.
pub async fn say_many(raw: &mut Raw, room: &str, prefix: &str, count: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let batch = (count - next).min(100);
        for i in next..next + batch {
            let id = 1_000_000 + i as u64;
            let text = format!("{prefix}-{i}");
            raw.send(&json!({"id": id, "op": "say", "room": room, "text": text}))
                .await;
        }
        for i in next..next + batch {
            let reply = raw.response(Some(1_000_000 + i as u64)).await;
            assert_eq!(reply["ok"], true, "{reply}");
            seqs.push(reply["seq"].as_u64().expect("say answers seq"));
        }
        next += batch;
    }
    seqs
}

/// The next `room_message` event, skipping `joined`/`left`.
pub async fn room_message(raw: &mut Raw) -> Value {
    loop {
        let event = raw.event().await;
        match event["event"].as_str() {
            Some("room_message") => return event,
            Some("joined" | "left") => continue,
            _ => panic!("expected a room_message, got {event}"),
        }
    }
}

/// Whether an event was sent again from history.
pub fn replayed(event: &Value) -> bool {
    match event.get("replay") {
        None => false,
        Some(Value::Bool(true)) => true,
        Some(other) => panic!("replay is true or absent, got {other} in {event}"),
    }
}

fn seqs_of(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

async fn history(raw: &mut Raw, args: Value) -> Value {
    let mut request = json!({"op": "history"});
    for (k, v) in args.as_object().unwrap() {
        request[k] = v.clone();
    }
    raw.call(request).await
}

#[tokio::test]
async fn seq_starts_at_one_and_grows_by_one_across_speakers() {
    let server = TestServer::start().await;
    let mut owner = server.raw().await;
    owner.hello("owner").await;
    let created = owner
        .call(json!({"op": "create_room", "room": "lobby"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    assert_eq!(created["seq"], 0, "{created}");
    let epoch = created["epoch"]
        .as_str()
        .expect("epoch is a string")
        .to_owned();
    assert!(!epoch.is_empty());

    let mut member = server.raw().await;
    member.hello("member").await;
    let joined = member
        .call(json!({"op": "join_room", "room": "lobby"}))
        .await;
    assert_eq!(joined["members"], json!(["owner", "member"]), "{joined}");
    assert_eq!(
        (joined["epoch"].as_str(), &joined["seq"]),
        (Some(&*epoch), &json!(0))
    );
    assert!(
        joined.get("recovered").is_none() && joined.get("oldest").is_none(),
        "a join without after says nothing of recovery: {joined}"
    );

    let said = owner
        .call(json!({"op": "say", "room": "lobby", "text": "one"}))
        .await;
    assert_eq!(said["seq"], 1, "{said}");
    let heard = room_message(&mut member).await;
    assert_eq!((&heard["seq"], &heard["text"]), (&json!(1), &json!("one")));
    assert!(!replayed(&heard), "a live message is no replay: {heard}");

    let said = member
        .call(json!({"op": "say", "room": "lobby", "text": "two"}))
        .await;
    assert_eq!(said["seq"], 2, "{said}");
    let heard = room_message(&mut owner).await;
    assert_eq!(
        (&heard["seq"], &heard["from"]),
        (&json!(2), &json!("member"))
    );
    assert_eq!(
        say_many(&mut owner, "lobby", "x", 10).await,
        (3..=12).collect::<Vec<_>>()
    );
    for seq in 3..=12 {
        assert_eq!(room_message(&mut member).await["seq"], seq);
    }

    // A refused say takes no number.
    let refused = member
        .call(json!({"op": "say", "room": "lobby", "text": "y".repeat(70_000)}))
        .await;
    assert_eq!(code(&refused), "too_large", "{refused}");
    let said = member
        .call(json!({"op": "say", "room": "lobby", "text": "after"}))
        .await;
    assert_eq!(said["seq"], 13, "{said}");

    // A late joiner is told where the room stands.
    let mut late = server.raw().await;
    late.hello("late").await;
    let joined = late.call(json!({"op": "join_room", "room": "lobby"})).await;
    assert_eq!(
        (joined["epoch"].as_str(), &joined["seq"]),
        (Some(&*epoch), &json!(13))
    );

    // Each room numbers on its own.
    let other = owner
        .call(json!({"op": "create_room", "room": "other"}))
        .await;
    assert_eq!(other["seq"], 0);
    assert_ne!(other["epoch"], json!(epoch), "every room has its own epoch");
    let said = owner
        .call(json!({"op": "say", "room": "other", "text": "first"}))
        .await;
    assert_eq!(said["seq"], 1, "{said}");
    server.stop().await;
}

#[tokio::test]
async fn a_room_created_again_under_its_name_has_a_new_epoch_and_starts_over() {
    let server = TestServer::start().await;
    let mut owner = server.raw().await;
    owner.hello("owner").await;
    let mut epochs = Vec::new();
    for round in 0..3 {
        let created = owner
            .call(json!({"op": "create_room", "room": "again"}))
            .await;
        assert_eq!(created["seq"], 0, "round {round}: {created}");
        epochs.push(created["epoch"].as_str().unwrap().to_owned());
        say_many(&mut owner, "again", "m", 3).await;
        let closed = owner
            .call(json!({"op": "close_room", "room": "again"}))
            .await;
        assert_eq!(closed["ok"], true);
    }
    assert!(epochs[0] != epochs[1] && epochs[1] != epochs[2] && epochs[0] != epochs[2]);

    // The old incarnation's position means nothing in the new one.
    let created = owner
        .call(json!({"op": "create_room", "room": "again"}))
        .await;
    say_many(&mut owner, "again", "new", 2).await;
    let mut member = server.raw().await;
    member.hello("member").await;
    let joined = member
        .call(json!({"op": "join_room", "room": "again", "after": 1, "epoch": epochs[2]}))
        .await;
    assert_eq!(joined["epoch"], created["epoch"]);
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["oldest"], 1, "{joined}");
    server.stop().await;
}

#[tokio::test]
async fn history_is_for_members_pages_backwards_and_is_ascending() {
    let server = TestServer::start().await;
    let mut owner = in_room(&server, "owner", "hist", true).await;
    let mut outsider = server.raw().await;
    outsider.hello("outsider").await;

    let empty = history(&mut owner, json!({"room": "hist"})).await;
    assert_eq!(empty["messages"], json!([]), "{empty}");
    assert_eq!(empty["more"], false, "{empty}");

    say_many(&mut owner, "hist", "line", 120).await;
    assert_eq!(
        code(&history(&mut outsider, json!({"room": "hist"})).await),
        "not_member"
    );
    assert_eq!(
        code(&history(&mut owner, json!({"room": "nowhere"})).await),
        "no_such_room"
    );
    assert_eq!(
        code(&history(&mut outsider, json!({"room": "nowhere"})).await),
        "no_such_room"
    );

    let newest = history(&mut owner, json!({"room": "hist"})).await;
    assert_eq!(
        seqs_of(&newest),
        (71..=120).collect::<Vec<_>>(),
        "default limit 50"
    );
    assert_eq!(newest["more"], true);
    let first = &newest["messages"][0];
    assert_eq!(first["from"], "owner");
    assert_eq!(first["text"], "line-70");
    assert!(
        first["sent_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );

    let page = history(&mut owner, json!({"room": "hist", "before": 71})).await;
    assert_eq!(seqs_of(&page), (21..=70).collect::<Vec<_>>());
    assert_eq!(page["more"], true);
    let page = history(&mut owner, json!({"room": "hist", "before": 21})).await;
    assert_eq!(seqs_of(&page), (1..=20).collect::<Vec<_>>());
    assert_eq!(page["more"], false, "nothing older is kept");
    let page = history(&mut owner, json!({"room": "hist", "before": 1})).await;
    assert_eq!((seqs_of(&page), &page["more"]), (vec![], &json!(false)));

    let page = history(
        &mut owner,
        json!({"room": "hist", "limit": 3, "before": 50}),
    )
    .await;
    assert_eq!(
        (seqs_of(&page), &page["more"]),
        (vec![47, 48, 49], &json!(true))
    );
    let page = history(&mut owner, json!({"room": "hist", "limit": 500})).await;
    assert_eq!(
        (seqs_of(&page), &page["more"]),
        ((1..=120).collect(), &json!(false))
    );
    let page = history(&mut owner, json!({"room": "hist", "before": 9999})).await;
    assert_eq!(
        seqs_of(&page),
        (71..=120).collect::<Vec<_>>(),
        "before past the end"
    );

    // A member who left is no longer one.
    let mut member = in_room(&server, "member", "hist", false).await;
    assert_eq!(
        history(&mut member, json!({"room": "hist", "limit": 1})).await["ok"],
        true
    );
    member
        .call(json!({"op": "leave_room", "room": "hist"}))
        .await;
    assert_eq!(
        code(&history(&mut member, json!({"room": "hist"})).await),
        "not_member"
    );
    server.stop().await;
}

#[tokio::test]
async fn history_gives_at_most_a_thousand_and_the_room_keeps_a_thousand_by_default() {
    let server = TestServer::start().await;
    let mut owner = in_room(&server, "owner", "big", true).await;
    say_many(&mut owner, "big", "m", 1100).await;
    let page = history(&mut owner, json!({"room": "big", "limit": 5000})).await;
    assert_eq!(
        seqs_of(&page),
        (101..=1100).collect::<Vec<_>>(),
        "limit at most 1000"
    );
    assert_eq!(page["more"], false, "the default --room-history keeps 1000");
    let page = history(&mut owner, json!({"room": "big", "before": 101})).await;
    assert_eq!((seqs_of(&page), &page["more"]), (vec![], &json!(false)));
    server.stop().await;
}

#[tokio::test]
async fn room_history_n_keeps_the_last_n_and_zero_keeps_none() {
    let server = TestServer::start_tweaked(|c| c.room_history = 5).await;
    let mut owner = in_room(&server, "owner", "five", true).await;
    say_many(&mut owner, "five", "m", 8).await;
    let page = history(&mut owner, json!({"room": "five"})).await;
    assert_eq!(
        (seqs_of(&page), &page["more"]),
        ((4..=8).collect(), &json!(false))
    );
    assert_eq!(page["messages"][0]["text"], "m-3");
    server.stop().await;

    let server = TestServer::start_tweaked(|c| c.room_history = 0).await;
    let mut owner = in_room(&server, "owner", "none", true).await;
    let seqs = say_many(&mut owner, "none", "m", 3).await;
    assert_eq!(seqs, [1, 2, 3], "numbering goes on without history");
    let page = history(&mut owner, json!({"room": "none"})).await;
    assert_eq!((seqs_of(&page), &page["more"]), (vec![], &json!(false)));
    let mut member = server.raw().await;
    member.hello("member").await;
    let joined = member
        .call(json!({"op": "join_room", "room": "none", "after": 1}))
        .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(
        joined["oldest"], 4,
        "nothing kept: oldest is one past the latest"
    );
    let mut other = server.raw().await;
    other.hello("other").await;
    let joined = other
        .call(json!({"op": "join_room", "room": "none", "after": 3}))
        .await;
    assert_eq!(
        joined["recovered"], true,
        "missing nothing is recovered: {joined}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_history_page_fits_in_a_frame() {
    const MAX_FRAME: usize = 20_000;
    let server = TestServer::start_tweaked(|c| c.max_frame = MAX_FRAME).await;
    let mut owner = in_room(&server, "owner", "wide", true).await;
    for i in 0..10 {
        let text = format!("{i}{}", "w".repeat(4000));
        let said = owner
            .call(json!({"op": "say", "room": "wide", "text": text}))
            .await;
        assert_eq!(said["ok"], true, "{said}");
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let mut args = json!({"room": "wide", "limit": 1000});
        if let Some(before) = before {
            args["before"] = json!(before);
        }
        let page = history(&mut owner, args).await;
        let size = page.to_string().len();
        assert!(size <= MAX_FRAME, "a page of {size} bytes");
        let seqs = seqs_of(&page);
        assert!(!seqs.is_empty() && seqs.len() < 10, "{seqs:?}");
        seen.splice(0..0, seqs.iter().copied());
        before = Some(seqs[0]);
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(
        seen,
        (1..=10).collect::<Vec<_>>(),
        "the pages cover all, once"
    );
    server.stop().await;
}

#[tokio::test]
async fn join_after_replays_what_was_missed_then_live() {
    let server = TestServer::start().await;
    let mut owner = server.raw().await;
    owner.hello("owner").await;
    let created = owner.call(json!({"op": "create_room", "room": "r"})).await;
    let epoch = created["epoch"].as_str().unwrap().to_owned();
    say_many(&mut owner, "r", "m", 6).await;

    let mut back = server.raw().await;
    back.hello("back").await;
    let joined = back
        .call(json!({"op": "join_room", "room": "r", "after": 2, "epoch": epoch}))
        .await;
    assert_eq!(
        (&joined["recovered"], &joined["seq"]),
        (&json!(true), &json!(6)),
        "{joined}"
    );
    assert!(joined.get("oldest").is_none(), "{joined}");
    for seq in 3..=6 {
        let event = room_message(&mut back).await;
        assert_eq!(
            (&event["seq"], replayed(&event)),
            (&json!(seq), true),
            "{event}"
        );
        assert_eq!(event["text"], format!("m-{}", seq - 1));
        assert_eq!(event["room"], "r");
    }
    owner
        .call(json!({"op": "say", "room": "r", "text": "live"}))
        .await;
    let event = room_message(&mut back).await;
    assert_eq!(
        (&event["seq"], replayed(&event)),
        (&json!(7), false),
        "{event}"
    );

    // Without an epoch, the current incarnation is taken as the client's.
    let mut plain = server.raw().await;
    plain.hello("plain").await;
    let joined = plain
        .call(json!({"op": "join_room", "room": "r", "after": 5}))
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    for seq in 6..=7 {
        let event = room_message(&mut plain).await;
        assert_eq!((&event["seq"], replayed(&event)), (&json!(seq), true));
    }

    // Up to date, or ahead: recovered, nothing replayed.
    for after in [7, 100] {
        let mut current = server.raw().await;
        current.hello(&format!("current{after}")).await;
        let joined = current
            .call(json!({"op": "join_room", "room": "r", "after": after, "epoch": epoch}))
            .await;
        assert_eq!(joined["recovered"], true, "{joined}");
        owner
            .call(json!({"op": "say", "room": "r", "text": format!("to {after}")}))
            .await;
        let event = room_message(&mut current).await;
        assert!(!replayed(&event), "{event}");
        assert_eq!(event["text"], format!("to {after}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn join_after_replays_nothing_when_the_epoch_differs_or_the_gap_is_not_kept() {
    let server = TestServer::start_tweaked(|c| c.room_history = 4).await;
    let mut owner = in_room(&server, "owner", "r", true).await;
    say_many(&mut owner, "r", "m", 10).await;

    let mut stranger = server.raw().await;
    stranger.hello("stranger").await;
    let joined = stranger
        .call(json!({"op": "join_room", "room": "r", "after": 9, "epoch": "not-this-one"}))
        .await;
    assert_eq!(joined["ok"], true, "{joined}");
    assert_eq!(
        (&joined["recovered"], &joined["oldest"]),
        (&json!(false), &json!(7))
    );
    assert_eq!(
        joined["members"],
        json!(["owner", "stranger"]),
        "joined all the same"
    );

    let mut behind = server.raw().await;
    behind.hello("behind").await;
    let joined = behind
        .call(json!({"op": "join_room", "room": "r", "after": 5}))
        .await;
    assert_eq!(
        (&joined["recovered"], &joined["oldest"]),
        (&json!(false), &json!(7))
    );
    // Just within what is kept: all of it.
    let mut just = server.raw().await;
    just.hello("just").await;
    let joined = just
        .call(json!({"op": "join_room", "room": "r", "after": 6}))
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");

    owner
        .call(json!({"op": "say", "room": "r", "text": "live"}))
        .await;
    for raw in [&mut stranger, &mut behind] {
        let event = room_message(raw).await;
        assert_eq!(
            (&event["seq"], replayed(&event)),
            (&json!(11), false),
            "no partial replay"
        );
    }
    for seq in 7..=11 {
        let event = room_message(&mut just).await;
        assert_eq!((&event["seq"], replayed(&event)), (&json!(seq), seq <= 10));
    }
    server.stop().await;
}

/// A member rejoins with `after` while another keeps talking: it gets every message
/// after `after` exactly once and in order, the replayed ones (up to the reply's `seq`)
/// before any live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_after_while_another_talks_has_no_gap_and_no_duplicate() {
    const BEFORE: usize = 300;
    const DURING: usize = 1500;
    // History for all of it: however long the joiner takes to come in on a busy
    // machine, what it asks for is still kept.
    let server = TestServer::start_tweaked(|c| c.room_history = BEFORE + DURING).await;
    let mut owner = in_room(&server, "owner", "busy", true).await;
    let mut talker = in_room(&server, "talker", "busy", false).await;
    say_many(&mut owner, "busy", "before", BEFORE).await;

    let started = Arc::new(Notify::new());
    let talking = {
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            for i in 0..DURING {
                let said = talker
                    .call(json!({"op": "say", "room": "busy", "text": format!("during-{i}")}))
                    .await;
                assert_eq!(said["ok"], true, "{said}");
                if i == 50 {
                    started.notify_one();
                }
            }
            talker
        })
    };
    // The owner reads along, so that its queue never fills.
    let reading = tokio::spawn(async move {
        for _ in 0..DURING {
            room_message(&mut owner).await;
        }
        owner
    });

    started.notified().await;
    let mut joiner = server.raw().await;
    joiner.hello("joiner").await;
    let after = 100u64;
    let joined = joiner
        .call(json!({"op": "join_room", "room": "busy", "after": after}))
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let at_join = joined["seq"].as_u64().unwrap();
    let last = (BEFORE + DURING) as u64;
    assert!(
        at_join > BEFORE as u64 + 50 && at_join < last,
        "joined while the talker talked (at {at_join})"
    );
    let mut expected = after + 1;
    while expected <= last {
        let event = room_message(&mut joiner).await;
        assert_eq!(event["seq"], expected, "no gap, no duplicate: {event}");
        assert_eq!(replayed(&event), expected <= at_join, "{event}");
        expected += 1;
    }
    talking.await.unwrap();
    reading.await.unwrap();
    server.stop().await;
}

/// Texts that JSON escapes grow on the wire (a control character takes six bytes):
/// a page must fit the frame as sent, not as stored.
#[tokio::test]
async fn a_history_page_of_escaped_texts_fits_in_a_frame() {
    const MAX_FRAME: usize = 20_000;
    let server = TestServer::start_tweaked(|c| c.max_frame = MAX_FRAME).await;
    let mut owner = in_room(&server, "owner", "esc", true).await;
    for _ in 0..6 {
        let text = "\u{1}".repeat(3000);
        let said = owner
            .call(json!({"op": "say", "room": "esc", "text": text}))
            .await;
        assert_eq!(said["ok"], true, "{said}");
    }
    let page = history(&mut owner, json!({"room": "esc"})).await;
    let size = page.to_string().len();
    assert!(size <= MAX_FRAME, "a page of {size} bytes");
    assert!(!seqs_of(&page).is_empty());
    server.stop().await;
}
