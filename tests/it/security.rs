//! Who may hold a name: a password is proven before a name is claimed, and names are
//! unique without regard to case.

use serde_json::json;

use crate::common::{TestServer, code};

/// A guesser repeating wrong passwords for a protected name never holds it: the owner
/// gets in with the right one, and the guesser is never listed as, nor notified for,
/// the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_guesser_never_holds_the_name_it_guesses() {
    let server = TestServer::start().await;
    let mut owner = server.raw().await;
    owner.event().await;
    let reply = owner
        .call(json!({"op": "hello", "name": "vault", "password": "right horse"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    owner.call(json!({"op": "bye"})).await;

    let mut guesser = server.raw().await;
    guesser.event().await;
    let mut watcher = server.raw().await;
    watcher.hello("watcher").await;
    // The guesses go out pipelined: each waits on a password hash, and the owner's
    // hello and the watcher's requests land while they do.
    for k in 0..10u64 {
        let hello =
            json!({"id": k, "op": "hello", "name": "vault", "password": format!("guess {k}")});
        guesser.send(&hello).await;
    }
    for _ in 0..10 {
        let users = watcher.call(json!({"op": "users"})).await;
        let names: Vec<&str> = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["watcher"], "a guesser is never listed");
        let sent = watcher
            .call(json!({"op": "send", "to": "vault", "text": "for the owner only"}))
            .await;
        assert_eq!(sent["ok"], true, "{sent}");
    }
    let mut owner = server.raw().await;
    owner.event().await;
    let reply = owner
        .call(json!({"op": "hello", "name": "vault", "password": "right horse"}))
        .await;
    assert_eq!(
        reply["ok"], true,
        "the owner gets in while guesses go on: {reply}"
    );
    // Guesses served after the owner got in find the name taken: either way, refused.
    for k in 0..10u64 {
        let answer = guesser.response(Some(k)).await;
        assert!(
            ["auth_failed", "name_taken"].contains(&code(&answer)),
            "{answer}"
        );
    }
    let told: Vec<_> = guesser
        .kept_events()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .collect();
    assert!(
        told.is_empty(),
        "the guesser was told of vault's mail: {told:?}"
    );
    let inbox = owner.call(json!({"op": "inbox"})).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 10);
    server.stop().await;
}

/// Online, a name differing only in case is taken; the case first given is displayed.
#[tokio::test]
async fn names_are_unique_without_regard_to_case() {
    let server = TestServer::start().await;
    let mut nina = server.raw().await;
    nina.hello("Nina").await;
    for variant in ["nina", "NINA", "nInA"] {
        let mut other = server.raw().await;
        other.event().await;
        let reply = other.call(json!({"op": "hello", "name": variant})).await;
        assert_eq!(code(&reply), "name_taken", "{variant}: {reply}");
    }
    let sent = nina
        .call(json!({"op": "send", "to": "NINA", "text": "to myself"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let event = nina.event().await;
    assert_eq!(event["event"], "message", "{event}");
    let users = nina.call(json!({"op": "users"})).await;
    assert_eq!(users["users"][0]["name"], "Nina");
    nina.call(json!({"op": "bye"})).await;
    // Offline, the name keeps the case it was first given in.
    let mut again = server.raw().await;
    again.event().await;
    let reply = again.call(json!({"op": "hello", "name": "NINA"})).await;
    assert_eq!(reply["name"], "Nina", "{reply}");
    server.stop().await;
}

/// A guest is served like anyone while online and forgotten when it leaves: its mail
/// goes with it, and a guest name cannot be protected.
#[tokio::test]
async fn a_guest_is_forgotten_when_it_leaves_and_cannot_be_protected() {
    let server = TestServer::start().await;
    let mut guest = server.raw().await;
    guest.hello("guest-1a2b3c4d").await;
    let mut nina = server.raw().await;
    nina.hello("nina").await;
    let sent = nina
        .call(json!({"op": "send", "to": "guest-1a2b3c4d", "text": "hello guest"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    guest.call(json!({"op": "bye"})).await;
    let mut after = None;
    for _ in 0..100 {
        let sent = nina
            .call(json!({"op": "send", "to": "guest-1a2b3c4d", "text": "still there?"}))
            .await;
        if code(&sent) == "no_such_user" {
            after = Some(sent);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(after.is_some(), "the guest was forgotten");
    let mut again = server.raw().await;
    again.event().await;
    let protect = again
        .call(json!({"op": "hello", "name": "GUEST-x", "password": "secret"}))
        .await;
    assert_eq!(code(&protect), "bad_name", "{protect}");
    let inbox_check = again
        .call(json!({"op": "hello", "name": "guest-1a2b3c4d"}))
        .await;
    assert_eq!(inbox_check["ok"], true);
    let inbox = again.call(json!({"op": "inbox"})).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 0, "{inbox}");
    server.stop().await;
}
