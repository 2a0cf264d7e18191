//! Every bound a client could push against: the handshake timeout (on tokio's paused
//! clock), the connection limit, and a slow consumer in a busy room.

use std::time::Duration;

use serde_json::json;
use switchboard::server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::common::{PATIENCE, Raw, TestServer, code};

/// A server with a fresh store and `tune` applied to its configuration.
async fn start(tune: impl FnOnce(&mut Config)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.path().join("limits.db"),
        ..Config::default()
    };
    tune(&mut config);
    (TestServer::start_with(config).await, dir)
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_says_hello_is_closed_with_timeout() {
    let (server, _dir) = start(|c| c.handshake_timeout = Duration::from_secs(5)).await;
    let mut raw = server.raw().await;
    assert_eq!(raw.recv().await["event"], "welcome");
    // A ping is a frame, but not a hello: the handshake deadline still holds.
    assert_eq!(raw.call(json!({"op": "ping"})).await["ok"], true);
    let last = raw.until_closed().await;
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0]["event"], "error");
    assert_eq!(code(&last[0]), "timeout");
    assert!(
        last[0]["message"].as_str().unwrap().contains("hello"),
        "{last:?}"
    );
}

#[tokio::test]
async fn over_the_connection_limit_clients_get_server_full_until_others_leave() {
    let (server, _dir) = start(|c| c.max_connections = 3).await;
    let mut inside = Vec::new();
    for _ in 0..3 {
        let mut raw = server.raw().await;
        assert_eq!(raw.recv().await["event"], "welcome");
        inside.push(raw);
    }
    for _ in 0..5 {
        let mut refused = server.raw().await;
        let frames = refused.until_closed().await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(code(&frames[0]), "server_full");
    }
    // Those inside are served as before.
    assert_eq!(inside[0].call(json!({"op": "ping"})).await["ok"], true);

    // One leaves: its place is given back once its session has ended.
    let mut leaving = inside.pop().unwrap();
    leaving.call(json!({"op": "bye"})).await;
    leaving.until_closed().await;
    let welcomed = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut raw = server.raw().await;
            let first = raw.recv_frame().await;
            match first {
                Some(frame) if frame["event"] == "welcome" => return raw,
                Some(frame) => assert_eq!(code(&frame), "server_full"),
                None => panic!("closed without a word"),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a place frees up");
    drop(welcomed);
}

/// A member that stops reading is cut off alone: the speaker is answered every time,
/// the other member gets every message, and the stalled one is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_member_is_disconnected_and_nobody_waits_for_it() {
    const MORE: usize = 100;
    // Resume off: the cut member then leaves at once, and the others hear it.
    let (server, _dir) = start(|c| {
        c.queue_depth = 64;
        c.resume_grace = Duration::ZERO;
    })
    .await;
    let mut owner = server.raw().await;
    owner.hello("owner").await;
    assert_eq!(
        owner.call(json!({"op": "create_room", "room": "r"})).await["ok"],
        true
    );
    let mut reader = server.raw().await;
    reader.hello("reader").await;
    assert_eq!(
        reader.call(json!({"op": "join_room", "room": "r"})).await["ok"],
        true
    );

    // The stalled member: a small receive window, and it never reads a byte.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = Raw::from_stream(socket.connect(server.addr).await.unwrap());
    stalled
        .send(&json!({"id": 1, "op": "hello", "name": "stalled"}))
        .await;
    stalled
        .send(&json!({"id": 2, "op": "join_room", "room": "r"}))
        .await;
    loop {
        let event = owner.event().await;
        if event["event"] == "joined" && event["name"] == "stalled" {
            break;
        }
    }

    // The reader counts messages until the last one.
    let reading = tokio::spawn(async move {
        let mut got = 0;
        loop {
            let event = reader.event().await;
            if event["event"] == "room_message" {
                got += 1;
                if event["text"] == "last" {
                    return got;
                }
            }
        }
    });
    // Say until the stalled member is cut off (its kernel buffers and its queue of 64
    // full), then some more: every say is answered, whatever the stalled one does.
    let text = "m".repeat(4096);
    let mut said = 0;
    let mut cut_off = false;
    while !cut_off {
        assert!(said < 20_000, "the stalled member was never disconnected");
        let answer = owner
            .call(json!({"op": "say", "room": "r", "text": text}))
            .await;
        assert_eq!(answer["ok"], true, "{answer}");
        said += 1;
        cut_off = owner
            .kept_events()
            .iter()
            .any(|e| e["event"] == "left" && e["name"] == "stalled");
    }
    for _ in 0..MORE {
        owner
            .call(json!({"op": "say", "room": "r", "text": text}))
            .await;
    }
    owner
        .call(json!({"op": "say", "room": "r", "text": "last"}))
        .await;
    let got = tokio::time::timeout(PATIENCE, reading)
        .await
        .expect("the reader gets everything")
        .unwrap();
    assert_eq!(got, said + MORE + 1);
    let users = owner.call(json!({"op": "users"})).await;
    let names: Vec<_> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.contains(&"stalled".to_owned()), "{names:?}");
    drop(stalled);
}

/// A client that pipelines sends and does not read its answers fills its queue: the
/// session waits for room, reading no more meanwhile, and loses nothing. Every answer
/// comes, in order, once the client reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_pipelined_sends_wait_for_room_in_a_full_queue() {
    const REQUESTS: u64 = 3_000;
    let (server, _dir) = start(|c| c.queue_depth = 4).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let (mut rd, mut wr) = socket.connect(server.addr).await.unwrap().into_split();
    let mut batch = bytes::BytesMut::new();
    let hello = json!({"id": 0, "op": "hello", "name": "hoarder"});
    switchboard::frame::encode(hello.to_string().as_bytes(), &mut batch);
    for id in 1..=REQUESTS {
        let request = if id % 2 == 0 {
            json!({"id": id, "op": "send", "to": "hoarder", "text": "x".repeat(200)})
        } else {
            json!({"id": id, "op": "ping"})
        };
        switchboard::frame::encode(request.to_string().as_bytes(), &mut batch);
    }
    // Written while nothing is read: the server stops reading when the queue is full,
    // so this write finishes only as the answers are read below.
    let writing = tokio::spawn(async move {
        wr.write_all(&batch).await.unwrap();
        wr
    });
    // Slowly at first, so that the answers pile up in the queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut buf = bytes::BytesMut::new();
    let mut next = 0;
    while next <= REQUESTS {
        let payload = loop {
            if let Some(payload) = switchboard::frame::decode(&mut buf, 1 << 20).unwrap() {
                break payload;
            }
            let read = tokio::time::timeout(PATIENCE, rd.read_buf(&mut buf)).await;
            assert!(
                read.expect("answers keep coming").unwrap() > 0,
                "closed at {next}"
            );
        };
        let frame: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if frame.get("event").is_some() {
            continue;
        }
        assert_eq!(frame["id"], next, "answers come in request order: {frame}");
        assert_eq!(frame["ok"], true, "{frame}");
        next += 1;
    }
    drop(writing.await.unwrap());
    server.stop().await;
}
