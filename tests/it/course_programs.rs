//! The course's own Python programs (tests/python, written from the seeds' snippets,
//! standard library only) against switchboard, and switchboard's lab client against a
//! student's lab #3 server.

use std::process::{Output, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{PATIENCE, TestServer};
use crate::wire::{Serve, TextConn};

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// How long a Python program may take: starting CPython costs far more than anything it
/// asks of the server, and 25 of them at once on a loaded 2-core machine took 8 s.
const PYTHON_PATIENCE: std::time::Duration = std::time::Duration::from_secs(40);

async fn python(name: &str, args: &[&str]) -> Output {
    let run = Command::new("python3")
        .arg(script(name))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(PYTHON_PATIENCE, run)
        .await
        .expect("python program finishes in time")
        .expect("python3 runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "{}{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The client id a lab #2 client printed.
fn assigned_id(output: &Output) -> u64 {
    let out = stdout(output);
    out.lines()
        .find_map(|l| l.strip_prefix("Assigned client id by server: "))
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("no client id in {out}"))
}

#[tokio::test]
async fn the_lab2_client_gets_an_id_its_data_on_the_console_and_an_ack() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--lab-listen", "127.0.0.1:0"];
    let mut serve = Serve::start(&dir.path().join("sb.db"), &args, 2).await;
    let port = serve.addrs[1].rsplit(':').next().unwrap().to_owned();
    let output = python(
        "lab2_client.py",
        &[&port, "Jose Ortiz", "918273645", "jortiz"],
    )
    .await;
    assert_ok(&output);
    let id = assigned_id(&output);
    assert!(stdout(&output).contains("Server says: {'ack': True}"));
    let logged = serve.line_with("data:").await;
    for shown in [
        &format!("client_id={id}"),
        "Jose Ortiz",
        "918273645",
        "jortiz",
        "jortiz@example.edu",
    ] {
        assert!(logged.contains(shown), "{shown} missing from {logged}");
    }
}

#[tokio::test]
async fn twenty_five_lab2_clients_at_once_get_distinct_ids() {
    let server = TestServer::start_dialects().await;
    let port = server.lab.unwrap().port().to_string();
    let runs = (0..25).map(|i| {
        let port = port.clone();
        async move {
            let name = format!("Student {i}");
            let github = format!("student{i}");
            python("lab2_client.py", &[&port, &name, &i.to_string(), &github]).await
        }
    });
    let outputs = futures_util::future::join_all(runs).await;
    let mut ids: Vec<u64> = outputs
        .iter()
        .map(|output| {
            assert_ok(output);
            assigned_id(output)
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 25, "ids are distinct: {ids:?}");
    server.stop().await;
}

#[tokio::test]
async fn switchboard_connect_speaks_to_a_lab3_python_server() {
    let mut lab3 = Command::new("python3")
        .arg(script("lab3_server.py"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut lines = BufReader::new(lab3.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("port line");
    let port = first.strip_prefix("port ").expect("port line").to_owned();

    let run = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connect", "--dialect", "lab", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--field", "name=Nina Park", "--field", "student_id=42"])
        .output();
    let output = tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
    assert_ok(&output);
    let out = stdout(&output);
    assert!(out.contains("Assigned client id by server: "), "{out}");
    assert!(out.contains(r#"Server: {"ack": True}"#), "{out}");
    assert!(out.contains("Server closed the connection"), "{out}");

    let seen = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("the server printed what it received");
    assert!(seen.starts_with("from client"), "{seen}");
    assert!(
        seen.contains("'name': 'Nina Park'") && seen.contains("'student_id': '42'"),
        "{seen}"
    );
}

#[tokio::test]
async fn switchboard_connect_says_when_nobody_listens() {
    let addr = crate::common::unused_addr();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["connect", "--dialect", "lab", "--addr", &addr])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("connection refused"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_notebook_and_tutorial_clients_get_answers_over_text() {
    let server = TestServer::start_dialects().await;
    let port = server.text.unwrap().port().to_string();
    let notebook = python("notebook_client.py", &[&port]).await;
    assert_ok(&notebook);
    assert!(stdout(&notebook).contains("from server -ERR unknown_op"));

    let tutorial = python("tutorial_client.py", &[&port]).await;
    assert_ok(&tutorial);
    assert!(
        stdout(&tutorial).starts_with("Server: * welcome "),
        "{}",
        stdout(&tutorial)
    );
    let (mut conn, _) = TextConn::connect(server.text.unwrap()).await;
    assert_eq!(conn.call("PING").await.0, "+OK");
    server.stop().await;
}

#[tokio::test]
async fn a_malicious_pickle_runs_nothing() {
    let server = TestServer::start_dialects().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let port = server.lab.unwrap().port().to_string();
    let output = python("malicious_pickle.py", &[&port, marker.to_str().unwrap()]).await;
    assert_ok(&output);
    assert!(!marker.exists(), "the exploit ran");
    server.stop().await;
}
