//! Nobody is cut off for being quiet, a stall of the server itself counts against no
//! client, and a slow consumer is one that does not drain: a burst it keeps up with
//! never cuts it, and a cut one is told why after whole frames.

use std::time::Duration;

use serde_json::json;
use switchboard::server::Config;
use tokio::net::TcpSocket;

use crate::common::{PATIENCE, Raw, TestServer, code};
use crate::wire::{LabConn, TextConn, dict, get, s};

fn dialects(config: &mut Config) {
    let any = Some("127.0.0.1:0".parse().unwrap());
    config.text_listen = any;
    config.lab_listen = any;
}

/// A native client, a `nc` user and a lab #2 program that sent its data each stay
/// silent for an hour of (paused) time with a one-second idle timeout and a
/// five-second handshake timeout: every one is still served.
#[tokio::test(start_paused = true)]
async fn quiet_connections_of_every_dialect_are_kept() {
    let server = TestServer::start_tweaked(|c| {
        dialects(c);
        // The store commits on the runtime's thread, so that paused time waits for it.
        c.inline_store = true;
        c.idle_timeout = Duration::from_secs(1);
        c.handshake_timeout = Duration::from_secs(5);
    })
    .await;
    let mut native = server.raw().await;
    native.hello("quiet").await;
    let (mut text, _) = TextConn::connect(server.text.unwrap()).await;
    assert!(text.call("HELLO reader").await.0.starts_with("+OK"));
    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    let data = dict(&[("name", s("Ada")), ("student_id", s("17"))]);
    lab.send(&data).await;
    assert_eq!(
        get(&lab.reply().await, "ack"),
        Some(&serde_pickle::Value::Bool(true))
    );

    tokio::time::sleep(Duration::from_secs(3600)).await;

    assert_eq!(native.call(json!({"op": "users"})).await["ok"], true);
    assert!(native.kept_events().is_empty(), "no timeout was said");
    assert!(text.call("USERS").await.0.starts_with("+OK 2"));
    assert!(text.events.is_empty(), "{:?}", text.events);
    lab.send(&data).await;
    assert_eq!(
        get(&lab.reply().await, "ack"),
        Some(&serde_pickle::Value::Bool(true))
    );
    server.stop().await;
}

/// Time during which the server did not run (here: the clock jumps ten seconds while
/// no task runs, as after a SIGSTOP) does not count towards a client's handshake.
#[tokio::test(start_paused = true)]
async fn a_stall_of_the_server_counts_against_no_client() {
    let server = TestServer::start_tweaked(|c| {
        c.inline_store = true;
        c.handshake_timeout = Duration::from_secs(3);
    })
    .await;
    let mut raw = server.raw().await;
    assert_eq!(raw.recv().await["event"], "welcome");
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let reply = raw.call(json!({"op": "hello", "name": "patient"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    server.stop().await;
}

/// A lab program that sent its data and keeps listening, as the handout teaches, is
/// not hit by the handshake timeout; one that sends nothing still is.
#[tokio::test(start_paused = true)]
async fn a_lab_client_that_sent_its_data_has_done_its_handshake() {
    let server = TestServer::start_tweaked(|c| {
        dialects(c);
        c.inline_store = true;
        c.handshake_timeout = Duration::from_secs(10);
    })
    .await;
    let (mut student, _) = LabConn::connect(server.lab.unwrap()).await;
    let (mut silent, _) = LabConn::connect(server.lab.unwrap()).await;
    student.send(&dict(&[("name", s("Grace"))])).await;
    assert_eq!(
        get(&student.reply().await, "ack"),
        Some(&serde_pickle::Value::Bool(true))
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let last = silent.recv().await.expect("the silent one is told");
    assert_eq!(get(&last, "code"), Some(&s("timeout")), "{last:?}");
    assert!(silent.recv().await.is_none(), "and closed");
    student.send(&dict(&[("name", s("Grace"))])).await;
    assert_eq!(
        get(&student.reply().await, "ack"),
        Some(&serde_pickle::Value::Bool(true))
    );
    server.stop().await;
}

async fn member(server: &TestServer, name: &str, room: &str) -> Raw {
    let mut raw = server.raw().await;
    raw.hello(name).await;
    let joined = raw.call(json!({"op": "join_room", "room": room})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    raw
}

/// Everyone in a room of 200 says one line at once, with queues bounded at 64 frames:
/// each member's queue goes over its bound for a moment, and since every member
/// reads, nobody is cut and every line reaches every other member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_that_readers_keep_up_with_cuts_nobody() {
    const MEMBERS: usize = 200;
    let server = TestServer::start_tweaked(|c| {
        c.queue_depth = 64;
        c.write_deadline = Duration::from_secs(5);
    })
    .await;
    let mut owner = server.raw().await;
    owner.hello("m0").await;
    owner
        .call(json!({"op": "create_room", "room": "burst"}))
        .await;
    let mut members = vec![owner];
    for k in 1..MEMBERS {
        members.push(member(&server, &format!("m{k}"), "burst").await);
    }
    // Everyone's line goes out before anyone reads a thing.
    for (k, m) in members.iter_mut().enumerate() {
        m.send(&json!({"id": 1, "op": "say", "room": "burst", "text": format!("line {k}")}))
            .await;
    }
    let readers = members.into_iter().map(|mut m| {
        tokio::spawn(async move {
            let mut got = 0;
            while got < MEMBERS - 1 {
                let frame = m.recv_frame().await.expect("not cut");
                assert_ne!(code(&frame), "slow_consumer", "{frame}");
                if frame["event"] == "room_message" {
                    got += 1;
                }
            }
            got
        })
    });
    for reader in readers {
        assert_eq!(reader.await.unwrap(), MEMBERS - 1);
    }
    server.stop().await;
}

/// A member that stops reading is cut once its writer has got nothing into the socket
/// for the write deadline (the queue bounds are set out of reach here); what it then
/// reads is whole frames, the `slow_consumer` error, and the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_cut_after_whole_frames_and_told_why() {
    let server = TestServer::start_tweaked(|c| {
        c.max_pending = 1 << 30;
        c.write_deadline = Duration::from_millis(300);
    })
    .await;
    let mut owner = server.raw().await;
    owner.hello("owner").await;
    owner.call(json!({"op": "create_room", "room": "r"})).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = Raw::from_stream(socket.connect(server.addr).await.unwrap());
    stalled.hello("stalled").await;
    stalled.call(json!({"op": "join_room", "room": "r"})).await;
    owner.event().await;
    // More than the kernel's buffers hold, so that the writer blocks.
    let text = "x".repeat(60_000);
    let mut cut = false;
    for _ in 0..400 {
        let said = owner
            .call(json!({"op": "say", "room": "r", "text": text}))
            .await;
        assert_eq!(said["ok"], true);
        // A cut session is parked for resuming: the others hear nothing, but it is no
        // longer listed.
        let users = owner.call(json!({"op": "users"})).await;
        if users["users"].as_array().unwrap().len() == 1 {
            cut = true;
            break;
        }
    }
    for _ in 0..100 {
        if cut {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let users = owner.call(json!({"op": "users"})).await;
        cut = users["users"].as_array().unwrap().len() == 1;
    }
    assert!(cut, "the stalled member was cut");
    let frames = stalled.until_closed().await;
    let last = frames.last().expect("frames");
    assert_eq!(last["event"], "error", "{last}");
    assert_eq!(code(last), "slow_consumer", "{last}");
    assert!(
        frames[..frames.len() - 1]
            .iter()
            .all(|f| f["event"] == "room_message" || f["ok"] == true),
        "whole frames before it"
    );
}

/// A client that keeps sending without ever reading fills the kernel's buffers and its
/// queue with answers; the server stops reading it and, once nothing has drained for
/// the write deadline, cuts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_within_the_write_deadline() {
    let server = TestServer::start_tweaked(|c| {
        c.queue_depth = 16;
        c.write_deadline = Duration::from_millis(300);
    })
    .await;
    let mut watcher = server.raw().await;
    watcher.hello("watcher").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut flooder = Raw::from_stream(socket.connect(server.addr).await.unwrap());
    flooder.hello("flooder").await;
    let (_read, mut write) = flooder.stream.into_split();
    let writing = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        // Each answer is an error that repeats the 2,000-byte op name.
        let request = json!({"id": 1, "op": "z".repeat(2000)}).to_string();
        let mut burst = bytes::BytesMut::new();
        for _ in 0..64 {
            switchboard::frame::encode(request.as_bytes(), &mut burst);
        }
        while let Ok(Ok(())) = tokio::time::timeout(PATIENCE, write.write_all(&burst)).await {}
    });
    let mut cut = false;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let users = watcher.call(json!({"op": "users"})).await;
        if users["users"].as_array().unwrap().len() == 1 {
            cut = true;
            break;
        }
    }
    assert!(cut, "the flooder was cut");
    writing.abort();
    server.stop().await;
}

/// A person at `nc` who has typed a line (HELP, say) has shown they are there: the
/// handshake timeout no longer applies while they choose a name.
#[tokio::test(start_paused = true)]
async fn a_nc_user_who_typed_a_line_has_time_to_choose_a_name() {
    let server = TestServer::start_tweaked(|c| {
        dialects(c);
        c.inline_store = true;
        c.handshake_timeout = Duration::from_secs(10);
    })
    .await;
    let (mut person, _) = TextConn::connect(server.text.unwrap()).await;
    person.call("PING").await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let (status, _) = person.call("HELLO slowtyper").await;
    assert!(status.starts_with("+OK"), "{status}");
    assert!(person.events.is_empty(), "{:?}", person.events);
    server.stop().await;
}
