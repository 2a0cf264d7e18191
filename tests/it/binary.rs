//! The `switchboard serve` binary as a person runs it: its console lines, and a clean
//! drain and exit on SIGTERM and Ctrl-C.

use std::time::Duration;

use serde_json::json;
use switchboard::Client;
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::common::{PATIENCE, Raw};
use crate::wire::Serve;

#[tokio::test]
async fn serve_logs_each_client_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // A client's mistakes are logged for debugging only.
    let args = ["--listen", "127.0.0.1:0", "--log-level", "debug"];
    let mut serve = Serve::start(&dir.path().join("sb.db"), &args, 1).await;
    let addr = serve.addrs[0].clone();

    let client = Client::connect(addr.as_str()).await.unwrap();
    let id = client.client_id();
    let connect = serve.line_with("connect").await;
    assert!(connect.contains(&format!("client_id={id}")), "{connect}");
    client.hello("projector").await.unwrap();
    let hello = serve.line_with("hello").await;
    assert!(hello.contains("name=projector"), "{hello}");
    let error = client.send("nobody", "hi").await;
    assert!(error.is_err());
    let logged = serve.line_with("error").await;
    assert!(
        logged.contains("no_such_user") && logged.contains("name=projector"),
        "{logged}"
    );
    client.bye().await.unwrap();
    let bye = serve.line_with("disconnect").await;
    assert!(bye.contains("name=projector"), "{bye}");
    assert!(bye.contains("reason=bye"), "{bye}");

    let mut stayer = Client::connect(addr.as_str()).await.unwrap();
    let mut events = stayer.take_events().unwrap();
    stayer.hello("stayer").await.unwrap();
    let pid = serve.child.id().expect("running") as i32;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let shutdown = crate::common::next_event(&mut events).await;
    assert!(matches!(
        shutdown,
        switchboard::protocol::Event::Shutdown { .. }
    ));
    serve.line_with("store closed").await;
    let exit = tokio::time::timeout(PATIENCE, serve.child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Without `--threads`, a machine of two cores or fewer gets one thread with the store
/// committing on it, and a larger one a store thread of its own; `--threads` overrides.
#[tokio::test]
async fn serve_picks_where_the_store_commits_from_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = "committed on the server's one thread";
    let own = "committed on a thread of its own";
    let by_default = if cores <= 2 { one } else { own };
    let cases: [(&[&str], &str); 3] = [
        (&[], by_default),
        (&["--threads", "1"], one),
        (&["--threads", "2"], own),
    ];
    for (threads, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(threads);
        let mut serve = Serve::start(&dir.path().join("sb.db"), &args, 1).await;
        let line = serve.logged("store:").await;
        assert!(
            line.contains(expected),
            "{threads:?} on {cores} cores: {line}"
        );
    }
}

#[tokio::test]
async fn serve_reports_a_port_in_use_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", &addr, "--db"])
        .arg(dir.path().join("x.db"))
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// Ctrl-C drains: no new connections, every queued room message and then the
/// `shutdown` event reach the member, the store is closed cleanly (its WAL folded back
/// into the database), and the process exits 0 within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_flushes_queues_tells_clients_closes_the_store_and_exits_0() {
    const SAID: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("drain.db");
    let mut serve = Serve::start(&db, &["--listen", "127.0.0.1:0"], 1).await;
    let addr: std::net::SocketAddr = serve.addrs[0].parse().unwrap();

    // Mail for someone offline, acknowledged before the shutdown.
    let owner = Client::connect(addr).await.unwrap();
    owner.hello("owner").await.unwrap();
    owner.bye().await.unwrap();
    let mailer = Client::connect(addr).await.unwrap();
    mailer.hello("mailer").await.unwrap();
    mailer
        .send("owner", "kept through the shutdown")
        .await
        .unwrap();
    // Room messages queued for a member who has not read them yet.
    let speaker = Client::connect(addr).await.unwrap();
    speaker.hello("speaker").await.unwrap();
    speaker.create_room("hall").await.unwrap();
    let mut member = Raw::connect(addr).await;
    member.hello("member").await;
    member
        .call(json!({"op": "join_room", "room": "hall"}))
        .await;
    for k in 0..SAID {
        speaker.say("hall", &format!("m{k}")).await.unwrap();
    }

    let pid = serve.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    serve.line_with("Ctrl-C received").await;

    let frames = member.until_closed().await;
    let said: Vec<_> = frames
        .iter()
        .filter(|f| f["event"] == "room_message")
        .map(|f| f["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<_> = (0..SAID).map(|k| format!("m{k}")).collect();
    assert_eq!(said, expected, "every queued message is flushed, in order");
    assert_eq!(
        frames.last().unwrap()["event"],
        "shutdown",
        "the shutdown event comes last"
    );
    serve.line_with("store closed").await;
    let exit = tokio::time::timeout(Duration::from_secs(5), serve.child.wait())
        .await
        .expect("exits within a few seconds")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    let wal = dir.path().join("drain.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the store was closed cleanly"
    );

    // The mail acknowledged before the shutdown is there after a restart.
    let serve = Serve::start(&db, &["--listen", "127.0.0.1:0"], 1).await;
    let owner = Client::connect(serve.addrs[0].as_str()).await.unwrap();
    owner.hello("owner").await.unwrap();
    let page = owner.inbox(None).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text, "kept through the shutdown");
}
