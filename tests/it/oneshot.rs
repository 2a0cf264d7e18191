//! The one-shot commands for scripts (`users`, `send`, `inbox`, `listen`) run as
//! programs against a real server, and against no server at all.

use std::process::Stdio;

use assert_cmd::Command;
use serde_json::Value;
use switchboard::protocol::Event;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{PATIENCE, TestServer, next_event};

/// Runs `switchboard ARGS` to completion off the async runtime.
async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::cargo_bin("switchboard")
            .unwrap()
            .args(&args)
            .timeout(PATIENCE)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn out(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_lines(output: &std::process::Output) -> Vec<Value> {
    out(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn users_send_and_inbox_for_people_and_for_jq() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let mut nina = server.client("nina").await;
    let mut events = nina.take_events().unwrap();

    let users = run(args(&["users", "--addr", &addr])).await;
    assert!(users.status.success(), "{}", err(&users));
    assert_eq!(out(&users), format!("{}\tnina\n", nina.client_id()));
    let users = run(args(&["users", "--addr", &addr, "--json"])).await;
    assert_eq!(
        json_lines(&users),
        [serde_json::json!({"client_id": nina.client_id(), "name": "nina"})]
    );

    let sent = run(args(&[
        "send", "--addr", &addr, "--name", "jose", "--to", "nina", "hi there",
    ]))
    .await;
    assert!(sent.status.success(), "{}", err(&sent));
    assert!(out(&sent).starts_with("Message ") && out(&sent).ends_with(" sent to nina.\n"));
    assert!(matches!(next_event(&mut events).await, Event::Message { from, .. } if from == "jose"));
    let by_id = format!("#{}", nina.client_id());
    let sent = run(args(&[
        "send", "--addr", &addr, "--to", &by_id, "--json", "second",
    ]))
    .await;
    assert!(sent.status.success(), "{}", err(&sent));
    let receipt = &json_lines(&sent)[0];
    assert!(receipt["message_id"].as_u64().is_some(), "{receipt}");
    nina.bye().await.unwrap();

    let inbox = run(args(&[
        "inbox", "--addr", &addr, "--name", "nina", "--json",
    ]))
    .await;
    assert!(inbox.status.success(), "{}", err(&inbox));
    let messages = json_lines(&inbox);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["from"], "jose");
    assert_eq!(messages[0]["text"], "hi there");
    for field in ["message_id", "from", "text", "sent_at"] {
        assert!(
            messages[1].get(field).is_some(),
            "{field} in {}",
            messages[1]
        );
    }
    let empty = run(args(&["inbox", "--addr", &addr, "--name", "nina"])).await;
    assert_eq!(out(&empty), "No new messages.\n");

    let nameless = run(args(&["inbox", "--addr", &addr])).await;
    assert!(!nameless.status.success());
    assert_eq!(err(&nameless).lines().count(), 1, "{}", err(&nameless));
    assert!(err(&nameless).contains("--name"));
    let unknown = run(args(&["send", "--addr", &addr, "--to", "nobody", "hi"])).await;
    assert!(!unknown.status.success());
    assert_eq!(err(&unknown).lines().count(), 1, "{}", err(&unknown));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_prints_each_room_line_until_ctrl_c() {
    let server = TestServer::start().await;
    let mut nina = server.client("nina").await;
    let mut events = nina.take_events().unwrap();
    nina.create_room("lobby").await.unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "listen", "--room", "lobby", "--json", "--name", "ear", "--addr",
        ])
        .arg(server.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(matches!(next_event(&mut events).await, Event::Joined { name, .. } if name == "ear"));
    nina.say("lobby", "hi all").await.unwrap();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("a line");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "room_message");
    assert_eq!(event["room"], "lobby");
    assert_eq!(event["from"], "nina");
    assert_eq!(event["text"], "hi all");

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(matches!(next_event(&mut events).await, Event::Left { name, .. } if name == "ear"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_says_when_no_server_runs() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    for command in [
        vec!["users"],
        vec!["send", "--to", "nina", "hi"],
        vec!["inbox", "--name", "nina"],
        vec!["listen", "--room", "lobby"],
    ] {
        let mut list = command.clone();
        list.extend(["--addr", &addr]);
        let output = run(args(&list)).await;
        assert!(!output.status.success(), "{command:?}");
        let stderr = err(&output);
        assert_eq!(stderr.lines().count(), 1, "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!("could not connect to {addr}"))
                && stderr.contains("`switchboard serve` may not be running"),
            "{command:?}: {stderr}"
        );
    }
}
