//! The `switchboard serve` binary as a person runs it: its console lines, and a clean
//! exit on SIGTERM.

use switchboard::Client;
use tokio::process::Command;

use crate::common::PATIENCE;
use crate::wire::Serve;

#[tokio::test]
async fn serve_logs_each_client_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(&dir.path().join("sb.db"), &["--listen", "127.0.0.1:0"], 1).await;
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
