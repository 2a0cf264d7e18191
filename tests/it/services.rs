//! Every service and its error codes, through the client library.

use switchboard::Client;
use switchboard::protocol::{Event, MAX_TEXT, UserInfo};

use crate::common::{TestServer, client_code, next_event};

#[tokio::test]
async fn hello_checks_names_and_frees_them_on_disconnect() {
    let server = TestServer::start().await;
    let client = Client::connect(server.addr).await.unwrap();
    for bad in ["", "has space", "semi;colon", &"x".repeat(33), "ünï"] {
        assert_eq!(client_code(client.hello(bad).await), "bad_name", "{bad:?}");
    }
    let id = client.hello("nina").await.unwrap();
    assert_eq!(id, client.client_id());
    assert_eq!(client_code(client.hello("nina2").await), "bad_request");

    let rival = Client::connect(server.addr).await.unwrap();
    assert_eq!(client_code(rival.hello("nina").await), "name_taken");
    client.bye().await.unwrap();
    drop(client);
    // The name is free again once the first client is gone.
    let mut freed = false;
    for _ in 0..100 {
        match rival.hello("nina").await {
            Ok(_) => {
                freed = true;
                break;
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
    assert!(freed);
    server.stop().await;
}

#[tokio::test]
async fn menu_is_the_course_projects() {
    let server = TestServer::start().await;
    let client = server.client("menu_reader").await;
    let menu = client.menu().await.unwrap();
    assert_eq!(menu.title, "TCP CHAT");
    let rows: Vec<_> = menu
        .options
        .iter()
        .map(|o| (o.key, o.label.as_str(), o.op.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "Get user list", "users"),
            (2, "Send a message", "send"),
            (3, "Get my messages", "inbox"),
            (4, "Create a new chat room", "create_room"),
            (5, "Join an existing chat room", "join_room"),
            (6, "Disconnect from server", "bye"),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn users_lists_who_is_online() {
    let server = TestServer::start().await;
    let jose = server.client("Jose").await;
    let nina = server.client("Nina").await;
    let _anonymous = Client::connect(server.addr).await.unwrap();
    let users = jose.users().await.unwrap();
    assert_eq!(
        users,
        vec![
            UserInfo {
                client_id: jose.client_id(),
                name: "Jose".into()
            },
            UserInfo {
                client_id: nina.client_id(),
                name: "Nina".into()
            },
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn send_by_name_or_id_notifies_and_waits_in_the_inbox() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut bob_events = bob.take_events().unwrap();

    let first = alice.send("bob", "hello by name").await.unwrap();
    let second = alice.send(bob.client_id(), "hello by id").await.unwrap();
    assert!(second > first);
    for expected in [first, second] {
        match next_event(&mut bob_events).await {
            Event::Message { from, message_id } => {
                assert_eq!(from, "alice");
                assert_eq!(message_id, expected);
            }
            other => panic!("expected a message event, got {other:?}"),
        }
    }

    let page = bob.inbox(None).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hello by name", "hello by id"]);
    assert!(page.messages.iter().all(|m| m.from == "alice"));
    assert!(page.messages[0].sent_at.ends_with('Z'));
    assert!(!page.more);
    assert!(
        bob.inbox(None).await.unwrap().messages.is_empty(),
        "read now"
    );
    server.stop().await;
}

#[tokio::test]
async fn send_errors() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    assert_eq!(
        client_code(alice.send("ghost", "boo").await),
        "no_such_user"
    );
    assert_eq!(
        client_code(alice.send(9999u64, "boo").await),
        "no_such_user"
    );
    let big = "x".repeat(MAX_TEXT + 1);
    assert_eq!(client_code(alice.send("alice", &big).await), "too_large");
    let exactly = "y".repeat(MAX_TEXT);
    alice.send("alice", &exactly).await.unwrap();
    assert_eq!(alice.inbox(None).await.unwrap().messages[0].text, exactly);
    server.stop().await;
}

#[tokio::test]
async fn mail_waits_for_a_user_who_went_offline() {
    let server = TestServer::start().await;
    let carol = server.client("carol").await;
    carol.bye().await.unwrap();
    drop(carol);
    let dave = server.client("dave").await;
    dave.send("carol", "while you were out").await.unwrap();
    let carol = server.client("carol").await;
    let page = carol.inbox(None).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text, "while you were out");
    server.stop().await;
}

#[tokio::test]
async fn inbox_pages_with_limit_and_more() {
    let server = TestServer::start().await;
    let erin = server.client("erin").await;
    for i in 0..5 {
        erin.send("erin", &format!("note {i}")).await.unwrap();
    }
    let page = erin.inbox(Some(2)).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    assert!(page.more);
    assert_eq!(page.messages[0].text, "note 0");
    let page = erin.inbox(Some(10)).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["note 2", "note 3", "note 4"]);
    assert!(!page.more);
    server.stop().await;
}

#[tokio::test]
async fn inbox_never_returns_more_than_fits_a_frame() {
    let server = TestServer::start().await;
    let fred = server.client("fred").await;
    let text = "z".repeat(MAX_TEXT);
    for _ in 0..20 {
        fred.send("fred", &text).await.unwrap();
    }
    let page = fred.inbox(Some(1000)).await.unwrap();
    assert!(page.more);
    assert!(page.messages.len() < 20 && !page.messages.is_empty());
    let mut total = page.messages.len();
    loop {
        let page = fred.inbox(Some(1000)).await.unwrap();
        total += page.messages.len();
        if !page.more {
            break;
        }
    }
    assert_eq!(total, 20);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_at_once() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = TestServer::start().await;
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..2000 {
        let addr = server.addr;
        joins.spawn(async move {
            let client = Client::connect(addr).await.expect("connect");
            client.hello(&format!("user{i}")).await.expect("hello");
            client
        });
    }
    let mut clients = Vec::new();
    while let Some(client) = joins.join_next().await {
        clients.push(client.unwrap());
    }
    let users = clients[0].users().await.unwrap();
    assert_eq!(users.len(), 2000);
    let mut ids: Vec<_> = clients.iter().map(Client::client_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2000);
    server.stop().await;
}
