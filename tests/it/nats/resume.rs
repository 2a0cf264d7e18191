//! Resume on another node than the one that was cut: the session keeps its client id,
//! name and rooms, and is replayed what was said while it was away; a plain hello for
//! the name on another node ends it, as on one node.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::NatsCluster;
use super::node_faults::NodeProcess;
use super::nodes::{node, node_tweaked};
use crate::common::{PATIENCE, Raw, code};
use crate::resume::{cut, token_of};

/// Says hello on `raw` with `hello` until it is answered ok: the node that parked the
/// session writes it to the cluster a moment after the cut.
async fn hello_until_ok(addr: std::net::SocketAddr, hello: Value) -> (Raw, Value) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut raw = Raw::connect(addr).await;
        assert_eq!(raw.event().await["event"], "welcome");
        let mut request = hello.clone();
        request["op"] = json!("hello");
        let reply = raw.call(request).await;
        if reply["ok"] == true {
            return (raw, reply);
        }
        assert_eq!(code(&reply), "name_taken", "{reply}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never resumed: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `name` says hello at `at` and opens room `r`, which `host` joins at `other`: the
/// owner's connection, client id and token, and the host's connection.
async fn owner_and_guest(
    at: std::net::SocketAddr,
    name: &str,
    other: std::net::SocketAddr,
) -> (Raw, Value, String, Raw) {
    let mut owner = Raw::connect(at).await;
    assert_eq!(owner.event().await["event"], "welcome");
    let hello = owner.call(json!({"op": "hello", "name": name})).await;
    let token = token_of(&hello);
    let made = owner.call(json!({"op": "create_room", "room": "r"})).await;
    assert_eq!(made["ok"], true, "{made}");
    let mut host = Raw::connect(other).await;
    host.hello("host").await;
    let joined = host.call(json!({"op": "join_room", "room": "r"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    assert_eq!(owner.event().await["event"], "joined");
    (owner, hello["client_id"].clone(), token, host)
}

#[tokio::test]
async fn a_session_cut_on_one_node_resumes_on_another() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let b = node(&nats, 1, "b", Duration::from_secs(15)).await;

    let (away, away_id, token, mut host) = owner_and_guest(a.addr, "away", b.addr).await;
    cut(away);

    // Parked: not listed anywhere, not reachable by its client id.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let users = host.call(json!({"op": "users"})).await;
        if !users.to_string().contains("\"away\"") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still listed: {users}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let by_id = host
        .call(json!({"op": "send", "to": away_id, "text": "?"}))
        .await;
    assert_eq!(code(&by_id), "no_such_user", "{by_id}");

    // Said while it was away, through the other node.
    for text in ["one", "two"] {
        let said = host
            .call(json!({"op": "say", "room": "r", "text": text}))
            .await;
        assert_eq!(said["ok"], true, "{said}");
    }

    let (mut back, reply) = hello_until_ok(
        b.addr,
        json!({"name": "away", "resume": token, "seen": {"r": 0}}),
    )
    .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(reply["client_id"], away_id, "the session's own id: {reply}");
    assert_eq!(reply["rooms"][0]["room"], "r", "{reply}");
    assert_eq!(reply["rooms"][0]["seq"], 2, "{reply}");
    let mut replayed = Vec::new();
    while replayed.len() < 2 {
        let event = back.event().await;
        assert_eq!(event["replay"], true, "{event}");
        replayed.push(event["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(replayed, ["one", "two"]);

    let users = back.call(json!({"op": "users"})).await;
    let listed = (users["users"].as_array().unwrap().iter())
        .any(|u| u["name"] == "away" && u["client_id"] == away_id);
    assert!(listed, "{users}");

    // Live again, on its new node, and still the room's owner.
    let said = host
        .call(json!({"op": "say", "room": "r", "text": "three"}))
        .await;
    assert_eq!(said["seq"], 3);
    let live = back.event().await;
    assert_eq!(live["text"], "three", "{live}");
    assert_ne!(live["replay"], true, "{live}");
    let refused = host.call(json!({"op": "close_room", "room": "r"})).await;
    assert_eq!(code(&refused), "not_owner", "{refused}");

    // Cut again, now on node b: a plain hello for its name on node a ends it there (its
    // name is not protected), as on one node: the room it owns closes.
    cut(back);
    let (_, plain) = hello_until_ok(a.addr, json!({"name": "away"})).await;
    assert_ne!(plain["client_id"], away_id, "a new session: {plain}");
    assert_ne!(plain["resumed"], true, "{plain}");
    let closed = host.event().await;
    assert_eq!(
        (&closed["event"], &closed["room"]),
        (&json!("room_closed"), &json!("r")),
        "{closed}"
    );

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_session_whose_node_died_resumes_on_another() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(1)).await;
    let mut b = NodeProcess::start(&nats, 1, "b").await;
    let mut bob = Raw::connect(b.addr).await;
    assert_eq!(bob.event().await["event"], "welcome");
    let hello = bob.call(json!({"op": "hello", "name": "bob"})).await;
    let bob_id = hello["client_id"].clone();
    let token = token_of(&hello);
    assert_eq!(
        bob.call(json!({"op": "create_room", "room": "bobs"})).await["ok"],
        true
    );
    let mut ana = Raw::connect(a.addr).await;
    ana.hello("ana").await;
    assert_eq!(
        ana.call(json!({"op": "join_room", "room": "bobs"})).await["ok"],
        true
    );
    assert_eq!(bob.event().await["event"], "joined");

    b.kill();
    let said = ana
        .call(json!({"op": "say", "room": "bobs", "text": "are you there?"}))
        .await;
    assert_eq!(said["seq"], 1, "{said}");

    // Once node b has gone unheard for node a's --heal-after, bob takes its session back
    // there: its id, its room (still its own), and what it missed.
    let (mut back, reply) = hello_until_ok(
        a.addr,
        json!({"name": "bob", "resume": token, "seen": {"bobs": 0}}),
    )
    .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(reply["client_id"], bob_id, "{reply}");
    let missed = back.event().await;
    assert_eq!(
        (&missed["text"], &missed["replay"]),
        (&json!("are you there?"), &json!(true))
    );
    let refused = ana.call(json!({"op": "close_room", "room": "bobs"})).await;
    assert_eq!(code(&refused), "not_owner", "{refused}");
    assert_eq!(
        back.call(json!({"op": "say", "room": "bobs", "text": "here"}))
            .await["seq"],
        2
    );
    assert_eq!(ana.event().await["text"], "here");
    a.stop().await;
}

/// A client back on another node while its old connection there still looks alive (a
/// half-open socket): its token takes the session over at once, and the old node
/// closes the old connection; a wrong token disturbs nothing. A session is resumable
/// however long it has lasted, longer than the resume grace too.
#[tokio::test]
async fn a_resume_over_a_half_open_connection_on_another_node_takes_over_at_once() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let short_grace = |c: &mut switchboard::server::Config| c.resume_grace = Duration::from_secs(1);
    let a = node_tweaked(&nats, 0, "a", Duration::from_secs(15), short_grace).await;
    let b = node_tweaked(&nats, 1, "b", Duration::from_secs(15), short_grace).await;

    let (mut old, phone_id, token, mut host) = owner_and_guest(a.addr, "phone", b.addr).await;
    let said = host
        .call(json!({"op": "say", "room": "r", "text": "one"}))
        .await;
    assert_eq!(said["seq"], 1, "{said}");
    assert_eq!(old.event().await["text"], "one");

    let mut wrong = Raw::connect(b.addr).await;
    assert_eq!(wrong.event().await["event"], "welcome");
    let guess = "0123456789abcdef0123456789abcdef";
    let refused = wrong
        .call(json!({"op": "hello", "name": "phone", "resume": guess}))
        .await;
    assert_eq!(code(&refused), "name_taken", "{refused}");
    let users = old.call(json!({"op": "users"})).await;
    assert_eq!(users["ok"], true, "the live session is untouched: {users}");
    // Longer than the grace: a live session's note must not age out with it.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut new = Raw::connect(b.addr).await;
    assert_eq!(new.event().await["event"], "welcome");
    let reply = new
        .call(json!({"op": "hello", "name": "phone", "resume": token}))
        .await;
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(
        reply["client_id"], phone_id,
        "the session's own id: {reply}"
    );
    assert_eq!(reply["rooms"][0]["seq"], 1, "{reply}");
    assert_ne!(token_of(&reply), token, "a new token");
    let rest = old.until_closed().await;
    assert!(
        rest.iter().all(|f| f["event"] == "error"),
        "the old connection is closed: {rest:?}"
    );

    // One session, on its new node, still the room's owner and hearing it live; the
    // room's other member saw it neither leave nor join.
    let said = host
        .call(json!({"op": "say", "room": "r", "text": "two"}))
        .await;
    assert_eq!(said["seq"], 2, "{said}");
    let live = new.event().await;
    assert_eq!((&live["text"], &live["seq"]), (&json!("two"), &json!(2)));
    let refused = host.call(json!({"op": "close_room", "room": "r"})).await;
    assert_eq!(code(&refused), "not_owner", "{refused}");
    let users = host.call(json!({"op": "users"})).await;
    let phones: Vec<&Value> = (users["users"].as_array().unwrap().iter())
        .filter(|u| u["name"] == "phone")
        .collect();
    assert_eq!(
        phones,
        [&json!({"client_id": phone_id, "name": "phone"})],
        "{users}"
    );
    let heard = host.kept_events();
    assert!(
        heard.iter().all(|e| e["event"] == "room_message"),
        "no left, no joined: {heard:?}"
    );
    // Each node counts the room's members once each, wherever they are now (a late
    // joiner on the other node may or may not have been heard of yet).
    for (at, name) in [(a.addr, "late-a"), (b.addr, "late-b")] {
        let mut late = Raw::connect(at).await;
        late.hello(name).await;
        let joined = late.call(json!({"op": "join_room", "room": "r"})).await;
        let mut members: Vec<&str> = (joined["members"].as_array().unwrap().iter())
            .map(|m| m.as_str().unwrap())
            .filter(|m| !m.starts_with("late-") || *m == name)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["host", name, "phone"], "{joined}");
    }
    a.stop().await;
    b.stop().await;
}

/// A session cut and resumed on the same node at once, again and again: whatever
/// order the node's notes of it land in, it ends up listed, online, on every node.
#[tokio::test]
async fn a_session_resumed_at_once_on_its_own_node_is_listed_everywhere() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let b = node(&nats, 1, "b", Duration::from_secs(15)).await;
    let mut watcher = Raw::connect(b.addr).await;
    watcher.hello("watcher").await;

    let mut raw = Raw::connect(a.addr).await;
    assert_eq!(raw.event().await["event"], "welcome");
    let mut reply = raw.call(json!({"op": "hello", "name": "quick"})).await;
    let id = reply["client_id"].clone();
    for _ in 0..5 {
        let token = token_of(&reply);
        cut(raw);
        let (back, again) = hello_until_ok(a.addr, json!({"name": "quick", "resume": token})).await;
        assert_eq!(again["resumed"], true, "{again}");
        (raw, reply) = (back, again);
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // Listed, steadily: a late "parked" mark would unlist it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let users = watcher.call(json!({"op": "users"})).await;
        let listed = (users["users"].as_array().unwrap().iter())
            .any(|u| u["name"] == "quick" && u["client_id"] == id);
        if listed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never listed: {users}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users = watcher.call(json!({"op": "users"})).await;
    assert!(users.to_string().contains("\"quick\""), "{users}");
    assert_eq!(raw.call(json!({"op": "users"})).await["ok"], true);
    a.stop().await;
    b.stop().await;
}
