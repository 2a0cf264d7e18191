//! `switchboard connect` as a program with piped input: addresses as people type
//! them, another dialect's port, argument rules, long messages, a closed stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command as StdCommand, Stdio};

use crate::common::{TestServer, run_switchboard};

/// Runs `switchboard connect ARGS` with `input` on stdin.
async fn connect(args: Vec<String>, input: String) -> std::process::Output {
    let args: Vec<&str> = std::iter::once("connect")
        .chain(args.iter().map(String::as_str))
        .collect();
    run_switchboard(&args, &input).await
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_bare_port_and_a_host_name_are_addresses() {
    let server = TestServer::start().await;
    let port = server.addr.port().to_string();
    for addr in [port.clone(), format!("localhost:{port}")] {
        let out = connect(args(&["--addr", &addr, "--name", "ana"]), "6\n".into()).await;
        assert!(out.status.success(), "{addr}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!(
                "Successfully connected to server with IP: 127.0.0.1 and port: {port}"
            )),
            "{}",
            text(&out.stdout)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn another_dialects_port_is_named_not_misread() {
    let server = TestServer::start_dialects().await;
    let lab = server.lab.unwrap().to_string();
    let out = connect(args(&["--addr", &lab, "--name", "ana"]), String::new()).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("lab-dialect (pickle) listener"), "{err}");
    assert!(err.contains("connect --dialect lab"), "{err}");
    assert!(!err.contains("frame length"), "{err}");

    let text_addr = server.text.unwrap().to_string();
    let out = connect(
        args(&["--addr", &text_addr, "--name", "ana"]),
        String::new(),
    )
    .await;
    assert!(
        text(&out.stderr).contains("text dialect"),
        "{}",
        text(&out.stderr)
    );

    // The lab client, pointed at the native or the text port, says so too.
    let native = server.addr.to_string();
    for (addr, says) in [(native, "native listener"), (text_addr, "text dialect")] {
        let out = connect(
            args(&["--dialect", "lab", "--addr", &addr, "--field", "name=ana"]),
            String::new(),
        )
        .await;
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
    server.stop().await;
}

#[tokio::test]
async fn flags_of_the_other_mode_are_refused() {
    let out = connect(args(&["--field", "name=ana"]), String::new()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--dialect lab"));
    for flag in ["--name", "--password"] {
        let out = connect(args(&["--dialect", "lab", flag, "x"]), String::new()).await;
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(text(&out.stderr).contains(&format!("{flag} is for the menu client")));
    }
}

#[tokio::test]
async fn a_long_message_is_refused_before_the_recipient_is_asked() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let long = "x".repeat(70_000);
    // Blank texts and recipients are asked again; the message itself is checked first.
    let input = format!("2\n\n{long}\nshort one\n\n  \nana\n6\n");
    let out = connect(args(&["--addr", &addr, "--name", "ana"]), input).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("That message is 70000 bytes; the most is 65536."),
        "{}",
        &shown[..shown.len().min(2000)]
    );
    assert!(shown.contains("Message sent!"));
    // The line after the long one was taken as the message, the blank ones skipped,
    // and `ana` as the recipient.
    let ana = server.client("ana").await;
    let inbox = ana.inbox(None).await.unwrap();
    let texts: Vec<&str> = inbox.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["short one"]);
    server.stop().await;
}

/// `connect | head -3`: the client leaves quietly when nobody reads its output.
#[tokio::test]
async fn a_closed_stdout_ends_the_client_quietly() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let status = tokio::task::spawn_blocking(move || {
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["connect", "--addr", &addr, "--name", "ana"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..3 {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
        }
        drop(stdout);
        let mut stdin = child.stdin.take().unwrap();
        for _ in 0..50 {
            if stdin.write_all(b"1\n").is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        (out.status, text(&out.stderr))
    })
    .await
    .unwrap();
    let (status, err) = status;
    assert!(!err.contains("panicked"), "{err}");
    assert!(status.success(), "{status:?} {err}");
    server.stop().await;
}
