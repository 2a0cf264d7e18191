//! The `switchboard serve` binary as a person runs it: its console lines, and a clean
//! exit on SIGTERM.

use std::process::Stdio;

use switchboard::Client;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

use crate::common::PATIENCE;

struct Serve {
    child: Child,
    lines: Lines<BufReader<ChildStderr>>,
}

impl Serve {
    async fn start(db: &std::path::Path) -> (Serve, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn switchboard serve");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut serve = Serve { child, lines };
        let line = serve.line_with("listening on").await;
        let addr = line
            .split_whitespace()
            .skip_while(|w| *w != "on")
            .nth(1)
            .expect("address after 'listening on'")
            .to_owned();
        (serve, addr)
    }

    /// The next console line containing `needle`.
    async fn line_with(&mut self, needle: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.next_line().await.expect("read stderr") {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("server exited before printing {needle:?}");
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("line in time")
    }
}

#[tokio::test]
async fn serve_logs_each_client_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, addr) = Serve::start(&dir.path().join("sb.db")).await;

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
