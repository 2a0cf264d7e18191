//! The course project, start to finish: four users, a user list, direct messages read
//! later, and a room with joins, chat, a leave and its owner closing it.

use switchboard::protocol::Event;

use crate::common::{TestServer, next_event};

#[tokio::test]
async fn four_users_follow_the_course_project() {
    let server = TestServer::start().await;
    let mut jose = server.client("Jose").await;
    let mut nina = server.client("Nina").await;
    let mut alice = server.client("Alice").await;
    let mut omar = server.client("Omar").await;
    let mut jose_ev = jose.take_events().unwrap();
    let mut nina_ev = nina.take_events().unwrap();
    let mut alice_ev = alice.take_events().unwrap();
    let mut omar_ev = omar.take_events().unwrap();

    // Option 1: the user list.
    let listed: Vec<String> = nina
        .users()
        .await
        .unwrap()
        .iter()
        .map(|u| format!("{}:{}", u.name, u.client_id))
        .collect();
    assert_eq!(
        listed,
        [
            format!("Jose:{}", jose.client_id()),
            format!("Nina:{}", nina.client_id()),
            format!("Alice:{}", alice.client_id()),
            format!("Omar:{}", omar.client_id()),
        ]
    );

    // Option 2: messages, one to a user who then disconnects and reads them later.
    jose.send("Nina", "Hello World!").await.unwrap();
    alice.send(nina.client_id(), "Hi Nina").await.unwrap();
    omar.send("Jose", "see you in class").await.unwrap();
    assert!(
        matches!(next_event(&mut nina_ev).await, Event::Message { from, .. } if from == "Jose")
    );
    assert!(
        matches!(next_event(&mut nina_ev).await, Event::Message { from, .. } if from == "Alice")
    );
    nina.bye().await.unwrap();
    drop(nina);
    drop(nina_ev);

    // Options 4 and 5: Jose opens room 3456, Alice and Omar join.
    jose.create_room("3456").await.unwrap();
    alice.join_room("3456").await.unwrap();
    let members = omar.join_room("3456").await.unwrap();
    assert_eq!(members, ["Jose", "Alice", "Omar"]);
    let mail = next_event(&mut jose_ev).await;
    assert!(
        matches!(mail, Event::Message { ref from, .. } if from == "Omar"),
        "{mail:?}"
    );
    assert!(
        matches!(next_event(&mut jose_ev).await, Event::Joined { name, .. } if name == "Alice")
    );
    assert!(matches!(next_event(&mut jose_ev).await, Event::Joined { name, .. } if name == "Omar"));
    assert!(
        matches!(next_event(&mut alice_ev).await, Event::Joined { name, .. } if name == "Omar")
    );

    alice.say("3456", "Hello").await.unwrap();
    for events in [&mut jose_ev, &mut omar_ev] {
        match next_event(events).await {
            Event::RoomMessage { from, text, .. } => {
                assert_eq!((from.as_str(), text.as_str()), ("Alice", "Hello"))
            }
            other => panic!("{other:?}"),
        }
    }
    omar.leave_room("3456").await.unwrap();
    for events in [&mut jose_ev, &mut alice_ev] {
        assert!(matches!(next_event(events).await, Event::Left { name, .. } if name == "Omar"));
    }
    jose.close_room("3456").await.unwrap();
    assert!(
        matches!(next_event(&mut alice_ev).await, Event::RoomClosed { by, .. } if by == "Jose")
    );

    // Option 3: Nina comes back and reads what was sent while she was away.
    let nina = server.client("Nina").await;
    let page = nina.inbox(None).await.unwrap();
    let got: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.from.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(got, [("Jose", "Hello World!"), ("Alice", "Hi Nina")]);
    let jose_mail = jose.inbox(None).await.unwrap();
    assert_eq!(jose_mail.messages[0].text, "see you in class");

    // Option 6: everyone says bye.
    for client in [&jose, &nina, &alice, &omar] {
        client.bye().await.unwrap();
    }
    server.stop().await;
}
