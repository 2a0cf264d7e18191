//! Chat rooms: the owner rules, the events, and cleanup when members vanish.

use std::time::Duration;

use serde_json::json;
use switchboard::protocol::Event;

use crate::common::{TestServer, client_code, next_event};

#[tokio::test]
async fn room_lifecycle_with_events() {
    let server = TestServer::start().await;
    let owner = server.client("owner").await;
    let mut guest = server.client("guest").await;
    let mut guest_events = guest.take_events().unwrap();
    let mut owner = owner;
    let mut owner_events = owner.take_events().unwrap();

    owner.create_room("3456").await.unwrap();
    assert_eq!(client_code(guest.create_room("3456").await), "room_exists");
    assert_eq!(client_code(guest.create_room("bad room").await), "bad_name");
    let members = guest.join_room("3456").await.unwrap();
    assert_eq!(members, ["owner", "guest"]);
    assert_eq!(
        next_event(&mut owner_events).await,
        Event::Joined {
            room: "3456".into(),
            name: "guest".into()
        }
    );

    guest.say("3456", "hi all").await.unwrap();
    match next_event(&mut owner_events).await {
        Event::RoomMessage {
            room, from, text, ..
        } => assert_eq!(
            (room.as_str(), from.as_str(), text.as_str()),
            ("3456", "guest", "hi all")
        ),
        other => panic!("{other:?}"),
    }
    owner.say("3456", "welcome").await.unwrap();
    match next_event(&mut guest_events).await {
        Event::RoomMessage { from, text, .. } => {
            assert_eq!((from, text), ("owner".into(), "welcome".into()))
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(client_code(guest.close_room("3456").await), "not_owner");
    guest.leave_room("3456").await.unwrap();
    assert_eq!(
        next_event(&mut owner_events).await,
        Event::Left {
            room: "3456".into(),
            name: "guest".into()
        }
    );
    assert_eq!(client_code(guest.say("3456", "hello?").await), "not_member");
    assert_eq!(client_code(guest.leave_room("3456").await), "not_member");

    guest.join_room("3456").await.unwrap();
    next_event(&mut owner_events).await;
    owner.close_room("3456").await.unwrap();
    assert_eq!(
        next_event(&mut guest_events).await,
        Event::RoomClosed {
            room: "3456".into(),
            by: "owner".into()
        }
    );
    for result in [
        guest.join_room("3456").await.map(drop),
        guest.say("3456", "x").await,
        guest.leave_room("3456").await,
        owner.close_room("3456").await,
    ] {
        assert_eq!(client_code(result), "no_such_room");
    }
    server.stop().await;
}

#[tokio::test]
async fn say_reaches_every_member_but_the_sender() {
    let server = TestServer::start().await;
    let speaker = server.client("speaker").await;
    speaker.create_room("hall").await.unwrap();
    let mut listeners = Vec::new();
    for i in 0..5 {
        let mut client = server.client(&format!("l{i}")).await;
        let events = client.take_events().unwrap();
        client.join_room("hall").await.unwrap();
        listeners.push((client, events));
    }
    speaker.say("hall", "one").await.unwrap();
    for (i, (_, events)) in listeners.iter_mut().enumerate() {
        // Earlier joiners first hear the later joins.
        loop {
            match next_event(events).await {
                Event::Joined { .. } => continue,
                Event::RoomMessage { text, .. } => {
                    assert_eq!(text, "one", "listener {i}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn without_resume_an_owner_who_disconnects_closes_its_rooms_and_members_leave_on_reset() {
    // With resume on, a cut session is parked instead (tests/it/resume.rs).
    let server = TestServer::start_tweaked(|c| c.resume_grace = Duration::ZERO).await;
    let owner = server.client("host").await;
    let mut member = server.client("member").await;
    let mut member_events = member.take_events().unwrap();
    owner.create_room("party").await.unwrap();
    member.join_room("party").await.unwrap();

    // A third client joins over raw TCP and then vanishes with a reset.
    let mut raw = server.raw().await;
    raw.hello("vanisher").await;
    assert_eq!(
        raw.call(json!({"op": "join_room", "room": "party"})).await["ok"],
        true
    );
    assert!(matches!(
        next_event(&mut member_events).await,
        Event::Joined { .. }
    ));
    raw.stream.set_zero_linger().unwrap();
    drop(raw);
    assert_eq!(
        next_event(&mut member_events).await,
        Event::Left {
            room: "party".into(),
            name: "vanisher".into()
        }
    );
    let names: Vec<_> = member
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(
        names,
        ["host", "member"],
        "the reset client is gone from users"
    );

    drop(owner);
    assert_eq!(
        next_event(&mut member_events).await,
        Event::RoomClosed {
            room: "party".into(),
            by: "host".into()
        }
    );
    // Both names are free again.
    server.client("vanisher").await;
    server.client("host").await;
    server.stop().await;
}

/// A shutdown ends rooms with the server: members hear `shutdown`, never that a room
/// closed because its owner's session ended first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_closes_no_room_one_by_one() {
    let server = TestServer::start().await;
    let mut members = Vec::new();
    for i in 0..8 {
        let mut owner = server.raw().await;
        owner.hello(&format!("owner{i}")).await;
        let room = format!("room{i}");
        owner.call(json!({"op": "create_room", "room": room})).await;
        let mut member = server.raw().await;
        member.hello(&format!("member{i}")).await;
        member.call(json!({"op": "join_room", "room": room})).await;
        members.push(member);
        members.push(owner);
    }
    server.stop().await;
    for mut member in members {
        let frames = member.until_closed().await;
        assert!(
            frames.iter().all(|f| f["event"] != "room_closed"),
            "{frames:?}"
        );
        assert!(
            frames.iter().any(|f| f["event"] == "shutdown"),
            "{frames:?}"
        );
    }
}
