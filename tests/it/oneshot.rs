//! The one-shot commands for scripts (`users`, `send`, `inbox`, `listen`) run as
//! programs against a real server, and against no server at all.

use std::process::Stdio;

use serde_json::Value;
use switchboard::protocol::Event;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{PATIENCE, TestServer, next_event, run_switchboard};

/// Runs `switchboard ARGS` to completion.
async fn run(args: Vec<String>) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_switchboard(&args, "").await
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
        "send", "--addr", &addr, "--name", "jose", "--to", &by_id, "--json", "second",
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

    let unknown = run(args(&[
        "send", "--addr", &addr, "--name", "jose", "--to", "nobody", "hi",
    ]))
    .await;
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
    let addr = crate::common::unused_addr();
    for command in [
        vec!["users"],
        vec!["send", "--name", "jose", "--to", "nina", "hi"],
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

/// A bare `--to` is a name even when it is all digits; `#17` is client id 17.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_of_digits_gets_mail_and_a_hash_means_a_client_id() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let digits = server.client("918273645").await;
    digits.bye().await.unwrap();
    let sent = run(args(&[
        "send",
        "--addr",
        &addr,
        "--name",
        "jose",
        "--to",
        "918273645",
        "for digits",
    ]))
    .await;
    assert!(sent.status.success(), "{}", err(&sent));
    assert!(
        out(&sent).ends_with(" sent to 918273645.\n"),
        "{}",
        out(&sent)
    );

    let nina = server.client("nina").await;
    let by_id = format!("#{}", nina.client_id());
    let sent = run(args(&[
        "send", "--addr", &addr, "--name", "jose", "--to", &by_id, "for nina",
    ]))
    .await;
    assert!(sent.status.success(), "{}", err(&sent));
    assert!(out(&sent).ends_with(&format!(" sent to {by_id}.\n")));

    let inbox = run(args(&[
        "inbox",
        "--addr",
        &addr,
        "--name",
        "918273645",
        "--json",
    ]))
    .await;
    let messages = json_lines(&inbox);
    assert_eq!(messages.len(), 1, "{}", out(&inbox));
    assert_eq!(messages[0]["text"], "for digits");
    let page = nina.inbox(None).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text, "for nina");

    for bad in ["#", "#x7", "#-1", "#99999999999999999999999", ""] {
        let refused = run(args(&[
            "send", "--addr", &addr, "--name", "jose", "--to", bad, "hi",
        ]))
        .await;
        assert_eq!(refused.status.code(), Some(2), "{bad:?}");
        assert!(err(&refused).contains("--to"), "{bad:?}: {}", err(&refused));
    }
    server.stop().await;
}

/// `send` and `inbox` need `--name`: the argument parser says so, before any
/// connection is tried, and so do their help texts.
#[tokio::test(flavor = "multi_thread")]
async fn send_and_inbox_without_a_name_are_refused_before_connecting() {
    let addr = crate::common::unused_addr();
    for command in [vec!["send", "--to", "nina", "hi"], vec!["inbox"]] {
        let mut list = command.clone();
        list.extend(["--addr", &addr]);
        let output = run(args(&list)).await;
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        let stderr = err(&output);
        assert!(
            stderr.contains("required") && stderr.contains("--name <NAME>"),
            "{command:?}: {stderr}"
        );
        assert!(!stderr.contains("could not connect"), "{stderr}");
        let help = run(args(&[command[0], "--help"])).await;
        let usage = out(&help);
        let usage = usage.lines().find(|l| l.starts_with("Usage:")).unwrap();
        assert!(
            usage.contains(" --name <NAME>") && !usage.contains("[--name"),
            "{usage}"
        );
    }
}

/// `--addr` takes HOST:PORT, a host name with a port, and a bare port.
#[tokio::test(flavor = "multi_thread")]
async fn addresses_take_a_host_name_and_a_bare_port() {
    let server = TestServer::start().await;
    let nina = server.client("nina").await;
    let port = server.addr.port().to_string();
    for addr in [
        server.addr.to_string(),
        format!("localhost:{port}"),
        port.clone(),
    ] {
        let users = run(args(&["users", "--addr", &addr])).await;
        assert!(users.status.success(), "{addr}: {}", err(&users));
        assert_eq!(out(&users), format!("{}\tnina\n", nina.client_id()));
    }
    let bad = run(args(&["users", "--addr", "localhost:99999"])).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(err(&bad).contains("--addr"), "{}", err(&bad));
    server.stop().await;
}

fn is_guest_name(name: &str) -> bool {
    name.strip_prefix("guest-").is_some_and(|hex| {
        hex.len() == 8
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// Without `--name`, `users` and `listen` say hello as `guest-` and 8 random hex
/// digits, different for each run.
#[tokio::test(flavor = "multi_thread")]
async fn users_and_listen_without_a_name_are_guests() {
    let server = TestServer::start().await;
    let mut nina = server.client("nina").await;
    let mut events = nina.take_events().unwrap();
    nina.create_room("lobby").await.unwrap();
    let mut guests = Vec::new();
    for _ in 0..2 {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["listen", "--room", "lobby", "--addr"])
            .arg(server.addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let name = loop {
            if let Event::Joined { name, .. } = next_event(&mut events).await {
                break name;
            }
        };
        assert!(is_guest_name(&name), "{name}");
        guests.push(name);
        child.kill().await.unwrap();
    }
    assert_ne!(guests[0], guests[1]);
    // `users` as a guest lists everyone but itself.
    let users = run(args(&["users", "--addr", &server.addr.to_string()])).await;
    assert_eq!(out(&users), format!("{}\tnina\n", nina.client_id()));
    server.stop().await;
}

/// Spawns `switchboard ARGS` with its stdout a pipe whose reading end is closed at once,
/// as `| head -0` would; returns the child to wait for.
fn with_stdout_closed(list: &[&str]) -> std::process::Child {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(list)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child
}

/// What a program that found its stdout closed did: exit status and stderr.
async fn finished(child: std::process::Child) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        PATIENCE,
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .expect("exits in time")
    .unwrap();
    (output.status.code(), err(&output))
}

/// Writing to a closed stdout ends a command quietly with the status of a broken pipe:
/// no panic, no message.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_each_command_quietly() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let mut nina = server.client("nina").await;
    let mut events = nina.take_events().unwrap();
    nina.create_room("lobby").await.unwrap();
    server.client("mia").await.bye().await.unwrap();
    let jose = server.client("jose").await;
    jose.send("mia", "one").await.unwrap();

    let mut commands: Vec<Vec<&str>> = vec![
        vec!["users", "--addr", &addr],
        vec!["users", "--addr", &addr, "--json"],
        vec![
            "send", "--addr", &addr, "--name", "ana", "--to", "nina", "hi",
        ],
        vec![
            "bench",
            "rr",
            "--addr",
            &addr,
            "-n",
            "1",
            "--duration",
            "0.1",
        ],
    ];
    commands.push(vec!["inbox", "--addr", &addr, "--name", "mia"]);
    for command in commands {
        let (code, stderr) = finished(with_stdout_closed(&command)).await;
        assert_eq!(code, Some(141), "{command:?}: {stderr}");
        assert_eq!(stderr, "", "{command:?}");
    }

    let listen = with_stdout_closed(&["listen", "--room", "lobby", "--addr", &addr]);
    while !matches!(next_event(&mut events).await, Event::Joined { .. }) {}
    nina.say("lobby", "anyone?").await.unwrap();
    let (code, stderr) = finished(listen).await;
    assert_eq!(code, Some(141), "{stderr}");
    assert!(
        stderr.starts_with("Listening to chat room lobby"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    server.stop().await;
}

/// `listen` in a room where nobody says anything for longer than the server's idle
/// timeout still prints the next line said.
#[tokio::test(flavor = "multi_thread")]
async fn listen_outlasts_the_idle_timeout_in_a_quiet_room() {
    let server =
        TestServer::start_tweaked(|c| c.idle_timeout = std::time::Duration::from_secs(1)).await;
    let mut nina = server.client("nina").await;
    let mut events = nina.take_events().unwrap();
    nina.create_room("quiet").await.unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["listen", "--room", "quiet", "--json", "--addr"])
        .arg(server.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(matches!(
        next_event(&mut events).await,
        Event::Joined { .. }
    ));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    nina.say("quiet", "still there?").await.unwrap();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("a line");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["text"], "still there?");
    server.stop().await;
}
