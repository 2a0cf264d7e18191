//! switchboard nodes serving one hub through a real three-server NATS cluster: names
//! claimed once across nodes, `users` from every node, mail sent through one node and
//! read through another, a node that cannot reach NATS, and a node that dies without a
//! goodbye.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::cluster::NodeConfig;
use switchboard::server::{Config, HttpListen};

use super::harness::NatsCluster;
use crate::common::{PATIENCE, Raw, TestServer, code, run_switchboard, unused_addr};

/// A switchboard node named `node` joined to the cluster through NATS server `via`.
pub async fn node(nats: &NatsCluster, via: usize, node: &str, heal_after: Duration) -> TestServer {
    node_tweaked(nats, via, node, heal_after, |_| {}).await
}

/// [`node`], its configuration changed by `tweak` first.
pub async fn node_tweaked(
    nats: &NatsCluster,
    via: usize,
    node: &str,
    heal_after: Duration,
    tweak: impl FnOnce(&mut Config),
) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: HttpListen::Off,
        db: dir.path().join("unused.db"),
        cluster: Some(NodeConfig {
            urls: nats.url(via),
            node: node.to_owned(),
            replicas: 3,
            heal_after,
        }),
        ..Config::default()
    };
    tweak(&mut config);
    let mut server = TestServer::start_with(config).await;
    server.adopt_dir(dir);
    server
}

/// Asks `users` until `wanted` says yes (another node's claims arrive by a watch).
async fn users_until(raw: &mut Raw, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = raw.call(json!({"op": "users"})).await;
        let names: Vec<String> = (reply["users"].as_array().expect("users"))
            .iter()
            .map(|u| u["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        if wanted(&names) {
            return names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "users never became what was wanted: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn message_ids(page: &Value) -> Vec<u64> {
    (page["messages"].as_array().expect("messages"))
        .iter()
        .map(|m| m["message_id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn names_users_and_mail_span_the_nodes() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let b = node(&nats, 1, "b", Duration::from_secs(15)).await;

    let mut ana = Raw::connect(a.addr).await;
    let ana_id = ana.hello("ana").await;
    let mut bob = Raw::connect(b.addr).await;
    let bob_id = bob.hello("Bob").await;
    assert_ne!(ana_id, bob_id, "client ids are unique across nodes");

    // Each node lists the other's user.
    users_until(&mut ana, |names| names.contains(&"Bob".to_owned())).await;
    users_until(&mut bob, |names| names.contains(&"ana".to_owned())).await;

    // A name held on one node is refused on the other, in any case.
    let mut thief = Raw::connect(b.addr).await;
    assert_eq!(thief.event().await["event"], "welcome");
    let refused = thief.call(json!({"op": "hello", "name": "ANA"})).await;
    assert_eq!(code(&refused), "name_taken", "{refused}");

    // Mail through node a reaches bob on node b: answered once stored, told at once,
    // read (peeked, then acked) through node b.
    let sent = ana
        .call(json!({"op": "send", "to": "bob", "text": "hi"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let id = sent["message_id"].as_u64().unwrap();
    let told = bob.event().await;
    assert_eq!(told["event"], "message", "{told}");
    assert_eq!(told["message_id"], id);
    assert_eq!(told["from"], "ana");
    // And by client id, which node a knows from the directory.
    let sent = (ana.call(json!({"op": "send", "to": bob_id, "text": "by id"}))).await;
    assert_eq!(sent["ok"], true, "{sent}");
    let second = sent["message_id"].as_u64().unwrap();
    let page = bob.call(json!({"op": "inbox", "peek": true})).await;
    assert_eq!(message_ids(&page), [id, second], "{page}");
    assert_eq!(page["messages"][0]["text"], "hi");
    let acked = bob.call(json!({"op": "ack", "up_to": id})).await;
    assert_eq!(acked["acked"], 1, "{acked}");
    let page = bob.call(json!({"op": "inbox"})).await;
    assert_eq!(
        message_ids(&page),
        [second],
        "an acked message is never handed again"
    );
    let page = bob.call(json!({"op": "inbox"})).await;
    assert_eq!(message_ids(&page), Vec::<u64>::new(), "an inbox read takes");

    // Mail for a name that was seen but is offline waits for it on any node.
    let mut cleo = Raw::connect(b.addr).await;
    cleo.hello("cleo").await;
    assert_eq!(cleo.call(json!({"op": "bye"})).await["ok"], true);
    users_until(&mut ana, |names| !names.contains(&"cleo".to_owned())).await;
    let sent = ana
        .call(json!({"op": "send", "to": "cleo", "text": "later"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let mut cleo = Raw::connect(a.addr).await;
    cleo.hello("cleo").await;
    let page = cleo.call(json!({"op": "inbox"})).await;
    assert_eq!(page["messages"][0]["text"], "later", "{page}");
    let unknown = ana
        .call(json!({"op": "send", "to": "nobody", "text": "?"}))
        .await;
    assert_eq!(code(&unknown), "no_such_user", "{unknown}");

    // Passwords hold across nodes: protected through a, refused through b without it.
    let mut dana = Raw::connect(a.addr).await;
    assert_eq!(dana.event().await["event"], "welcome");
    let hello = json!({"op": "hello", "name": "dana", "password": "s3cret-pass"});
    assert_eq!(dana.call(hello.clone()).await["ok"], true);
    assert_eq!(dana.call(json!({"op": "bye"})).await["ok"], true);
    let mut other = Raw::connect(b.addr).await;
    assert_eq!(other.event().await["event"], "welcome");
    let wrong = json!({"op": "hello", "name": "dana", "password": "guess-guess"});
    let refused = loop {
        let reply = other.call(wrong.clone()).await;
        // The name may still be held for a moment after the bye above.
        if code(&reply) != "name_taken" {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code(&refused), "auth_failed", "{refused}");
    assert_eq!(other.call(hello).await["ok"], true);

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn of_clients_claiming_one_name_on_two_nodes_exactly_one_wins() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let b = node(&nats, 2, "b", Duration::from_secs(15)).await;
    for round in 0..10 {
        let name = format!("race{round}");
        let mut one = Raw::connect(a.addr).await;
        let mut two = Raw::connect(b.addr).await;
        assert_eq!(one.event().await["event"], "welcome");
        assert_eq!(two.event().await["event"], "welcome");
        let hello = json!({"op": "hello", "name": name});
        let (first, second) = tokio::join!(one.call(hello.clone()), two.call(hello));
        let won = [&first, &second]
            .iter()
            .filter(|reply| reply["ok"] == true)
            .count();
        assert_eq!(won, 1, "{first} / {second}");
        let lost = if first["ok"] == true { &second } else { &first };
        assert_eq!(code(lost), "name_taken", "{lost}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_that_cannot_reach_nats_says_so_in_one_line_and_exits_1() {
    let nowhere = format!("nats://{}", unused_addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("unused.db");
    let output = run_switchboard(
        &[
            "serve",
            "--cluster",
            &nowhere,
            "--node",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--db",
            db.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // What it says of NATS, besides the information logged before it tried.
    let lines: Vec<&str> = (stderr.lines())
        .filter(|l| !l.trim().is_empty() && !l.contains(" INFO "))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("could not reach NATS") && lines[0].contains(&nowhere),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_node_killed_without_a_goodbye_loses_its_names_seats_and_rooms_after_heal_after() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let heal = Duration::from_secs(1);
    let a = node(&nats, 0, "a", heal).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = unused_addr();
    let mut b = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", &listen, "--http-listen", "off", "--db"])
        .arg(dir.path().join("unused.db"))
        .args([
            "--cluster",
            &nats.url(1),
            "--node",
            "b",
            "--heal-after",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node b");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let mut bob = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break Raw::from_stream(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    bob.hello("bob").await;
    let mut ana = Raw::connect(a.addr).await;
    ana.hello("ana").await;
    users_until(&mut ana, |names| names.contains(&"bob".to_owned())).await;
    // Bob is in ana's room, and ana in bob's.
    assert_eq!(
        ana.call(json!({"op": "create_room", "room": "anas"})).await["ok"],
        true
    );
    assert_eq!(
        bob.call(json!({"op": "join_room", "room": "anas"})).await["ok"],
        true
    );
    assert_eq!(room_event(&mut ana).await["event"], "joined");
    assert_eq!(
        bob.call(json!({"op": "create_room", "room": "bobs"})).await["ok"],
        true
    );
    assert_eq!(
        ana.call(json!({"op": "join_room", "room": "bobs"})).await["ok"],
        true
    );

    b.kill().expect("kill -9 node b");
    let _ = b.wait();
    let killed = tokio::time::Instant::now();
    users_until(&mut ana, |names| !names.contains(&"bob".to_owned())).await;
    let healed = killed.elapsed();
    assert!(
        healed >= heal / 2,
        "freed before its lease ran out: {healed:?}"
    );
    // Its session is parked now, as a cut one: a plain hello for its name (which has no
    // password) ends it, and its seats and rooms go with it; the members left are told.
    let mut again = Raw::connect(a.addr).await;
    assert_eq!(again.event().await["event"], "welcome");
    let hello = again.call(json!({"op": "hello", "name": "bob"})).await;
    assert_eq!(
        hello["ok"], true,
        "the name is free for anyone again: {hello}"
    );
    let mut heard = vec![room_event(&mut ana).await, room_event(&mut ana).await];
    heard.sort_by_key(|e| e["event"].as_str().unwrap_or_default().to_owned());
    assert_eq!(heard[0]["event"], "left", "{heard:?}");
    assert_eq!(
        (&heard[0]["room"], &heard[0]["name"]),
        (&json!("anas"), &json!("bob"))
    );
    assert_eq!(heard[1]["event"], "room_closed", "{heard:?}");
    assert_eq!(heard[1]["room"], "bobs");
    let reopened = ana.call(json!({"op": "create_room", "room": "bobs"})).await;
    assert_eq!(reopened["ok"], true, "{reopened}");
    a.stop().await;
}

/// The next event of `raw` that is not a `message` (mail) notification.
async fn room_event(raw: &mut Raw) -> Value {
    loop {
        let event = raw.event().await;
        if event["event"] != "message" {
            return event;
        }
    }
}

#[tokio::test]
async fn rooms_span_the_nodes_with_one_gap_free_seq() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let b = node(&nats, 1, "b", Duration::from_secs(15)).await;
    let mut ana = Raw::connect(a.addr).await;
    ana.hello("ana").await;
    let mut bob = Raw::connect(b.addr).await;
    bob.hello("bob").await;

    let created = ana.call(json!({"op": "create_room", "room": "lab"})).await;
    assert_eq!(created["ok"], true, "{created}");
    let taken = bob.call(json!({"op": "create_room", "room": "LAB"})).await;
    assert_eq!(
        code(&taken),
        "room_exists",
        "room names are the cluster's: {taken}"
    );
    let joined = bob.call(json!({"op": "join_room", "room": "lab"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    assert_eq!(joined["members"], json!(["ana", "bob"]), "{joined}");
    assert_eq!(joined["epoch"], created["epoch"]);
    let heard = room_event(&mut ana).await;
    assert_eq!(
        (&heard["event"], &heard["name"]),
        (&json!("joined"), &json!("bob"))
    );

    // Both say things at once through their own nodes: one seq, no gap, each hears
    // the other's in seq order.
    let say = |text: String| json!({"op": "say", "room": "lab", "text": text});
    let (mut ana_seqs, mut bob_seqs) = (Vec::new(), Vec::new());
    for n in 0..10 {
        let (x, y) = tokio::join!(
            ana.call(say(format!("a{n}"))),
            bob.call(say(format!("b{n}")))
        );
        ana_seqs.push(x["seq"].as_u64().expect("said"));
        bob_seqs.push(y["seq"].as_u64().expect("said"));
    }
    let mut all: Vec<u64> = ana_seqs.iter().chain(&bob_seqs).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=20).collect::<Vec<u64>>(), "gap-free across nodes");
    for (listener, theirs) in [(&mut ana, &bob_seqs), (&mut bob, &ana_seqs)] {
        let mut heard = Vec::new();
        while heard.len() < theirs.len() {
            let event = room_event(listener).await;
            assert_eq!(event["event"], "room_message", "{event}");
            heard.push(event["seq"].as_u64().unwrap());
        }
        assert_eq!(
            &heard, theirs,
            "each hears the other's messages in seq order"
        );
    }

    // A newcomer on node b is given what it missed, and the history.
    let mut cleo = Raw::connect(b.addr).await;
    cleo.hello("cleo").await;
    let joined = cleo
        .call(json!({"op": "join_room", "room": "lab", "after": 15}))
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(joined["seq"], 20, "{joined}");
    let mut replayed = Vec::new();
    while replayed.len() < 5 {
        let event = room_event(&mut cleo).await;
        assert_eq!(event["replay"], true, "{event}");
        replayed.push(event["seq"].as_u64().unwrap());
    }
    assert_eq!(replayed, [16, 17, 18, 19, 20]);
    let history = cleo
        .call(json!({"op": "history", "room": "lab", "limit": 3}))
        .await;
    let seqs: Vec<u64> = (history["messages"].as_array().unwrap().iter())
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [18, 19, 20], "{history}");
    assert_eq!(room_event(&mut ana).await["name"], "cleo");

    // Only the owner closes; a leave is heard on every node; the close too.
    let refused = bob.call(json!({"op": "close_room", "room": "lab"})).await;
    assert_eq!(code(&refused), "not_owner", "{refused}");
    assert_eq!(
        bob.call(json!({"op": "leave_room", "room": "lab"})).await["ok"],
        true
    );
    for member in [&mut ana, &mut cleo] {
        let left = room_event(member).await;
        assert_eq!(
            (&left["event"], &left["name"]),
            (&json!("left"), &json!("bob")),
            "{left}"
        );
    }
    let outside = bob.call(say("still here?".into())).await;
    assert_eq!(code(&outside), "not_member", "{outside}");
    assert_eq!(
        ana.call(json!({"op": "close_room", "room": "lab"})).await["ok"],
        true
    );
    let closed = room_event(&mut cleo).await;
    assert_eq!(
        (&closed["event"], &closed["by"]),
        (&json!("room_closed"), &json!("ana")),
        "{closed}"
    );

    // Reopened, it counts from 1 under a new epoch.
    let again = bob.call(json!({"op": "create_room", "room": "lab"})).await;
    assert_eq!(again["ok"], true, "{again}");
    assert_ne!(again["epoch"], created["epoch"]);
    assert_eq!(bob.call(say("fresh".into())).await["seq"], 1);

    a.stop().await;
    b.stop().await;
}

/// `--max-rooms` and `--max-room-members` count the whole cluster's rooms and members,
/// and a join refused for them leaves no seat behind.
#[tokio::test]
async fn room_limits_count_the_whole_cluster() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let limits = |c: &mut Config| {
        c.rooms.rooms = 2;
        c.rooms.members = 3;
    };
    let heal = Duration::from_secs(15);
    let a = node_tweaked(&nats, 0, "a", heal, limits).await;
    let b = node_tweaked(&nats, 1, "b", heal, limits).await;
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for (i, raw) in (0..3).map(|i| (i, Raw::connect(a.addr))) {
        let mut raw = raw.await;
        raw.hello(&format!("a{i}")).await;
        on_a.push(raw);
    }
    for (i, raw) in (0..3).map(|i| (i, Raw::connect(b.addr))) {
        let mut raw = raw.await;
        raw.hello(&format!("b{i}")).await;
        on_b.push(raw);
    }
    let ok = |reply: Value| assert_eq!(reply["ok"], true, "{reply}");
    ok(on_a[0]
        .call(json!({"op": "create_room", "room": "r1"}))
        .await);
    ok(on_b[0]
        .call(json!({"op": "create_room", "room": "r2"}))
        .await);
    // Node a holds one room itself; the second is node b's, seen through the watch.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = on_a[1]
            .call(json!({"op": "create_room", "room": "r3"}))
            .await;
        if code(&reply) == "server_full" {
            break;
        }
        assert_eq!(reply["ok"], false, "a third room: {reply}");
        assert!(tokio::time::Instant::now() < deadline, "{reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    ok(on_b[1].call(json!({"op": "join_room", "room": "r1"})).await);
    ok(on_b[2].call(json!({"op": "join_room", "room": "r1"})).await);
    let full = on_a[1].call(json!({"op": "join_room", "room": "r1"})).await;
    assert_eq!(code(&full), "server_full", "a fourth member: {full}");
    ok(on_b[2]
        .call(json!({"op": "leave_room", "room": "r1"}))
        .await);
    let joined = on_b[0].call(json!({"op": "join_room", "room": "r1"})).await;
    let mut members: Vec<String> = (joined["members"].as_array().unwrap().iter())
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    members.sort();
    assert_eq!(
        members,
        ["a0", "b0", "b1"],
        "no seat left by the refused join: {joined}"
    );
    a.stop().await;
    b.stop().await;
}

/// Clients of one node joining and leaving a room at once, over and over: no join is
/// refused for a room the node was just letting go of, and the node still follows the
/// room for the member who stays.
#[tokio::test]
async fn joins_and_leaves_racing_on_one_node_all_succeed() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let heal = Duration::from_secs(15);
    let a = node(&nats, 0, "a", heal).await;
    let b = node(&nats, 1, "b", heal).await;
    let mut owner = Raw::connect(a.addr).await;
    owner.hello("owner").await;
    let made = owner
        .call(json!({"op": "create_room", "room": "busy"}))
        .await;
    assert_eq!(made["ok"], true, "{made}");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let addr = b.addr;
        tasks.spawn(async move {
            let mut raw = Raw::connect(addr).await;
            raw.hello(&format!("racer{i}")).await;
            for _ in 0..15 {
                let joined = raw.call(json!({"op": "join_room", "room": "busy"})).await;
                assert_eq!(joined["ok"], true, "{joined}");
                let left = raw.call(json!({"op": "leave_room", "room": "busy"})).await;
                assert_eq!(left["ok"], true, "{left}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let mut stays = Raw::connect(b.addr).await;
    stays.hello("stays").await;
    let joined = stays.call(json!({"op": "join_room", "room": "busy"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    let said = owner
        .call(json!({"op": "say", "room": "busy", "text": "still here?"}))
        .await;
    assert_eq!(said["ok"], true, "{said}");
    let heard = stays.event().await;
    assert_eq!(heard["text"], "still here?", "{heard}");
    a.stop().await;
    b.stop().await;
}
