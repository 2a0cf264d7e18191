//! `switchboard bench` run as a program against a real server: its flags' ranges, the
//! `burst` scenario, the scratch rule for `send`, the names it leaves behind, Ctrl-C.

use std::process::Stdio;

use assert_cmd::Command;
use serde_json::Value;

use crate::common::{PATIENCE, TestServer};

/// Runs `switchboard ARGS` to completion off the async runtime.
async fn run(list: &[&str]) -> std::process::Output {
    let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::cargo_bin("switchboard")
            .unwrap()
            .args(&list)
            .timeout(PATIENCE)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn report(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout:?}, stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Every numeric flag has a range; a value outside it, negative, huge or not a number
/// is refused by the argument parser, naming the flag and the range, before anything
/// connects. No panic.
#[tokio::test(flavor = "multi_thread")]
async fn every_numeric_flag_refuses_values_out_of_range_by_name() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--duration", "1e30"], "--duration <SECS>", "0.1..=86400"),
        (&["--duration", "-1"], "--duration <SECS>", "0.1..=86400"),
        (&["--duration", "NaN"], "--duration <SECS>", "0.1..=86400"),
        (&["--duration", "inf"], "--duration <SECS>", "0.1..=86400"),
        (&["--duration", "0"], "--duration <SECS>", "0.1..=86400"),
        (&["-n", "-1"], "--connections <N>", "1..=100000"),
        (&["--connections", "0"], "--connections <N>", "1..=100000"),
        (&["-n", "1e9"], "--connections <N>", "1..=100000"),
        (&["-P", "0"], "--pipeline <N>", "1..=10000"),
        (&["--pipeline", "-3"], "--pipeline <N>", "1..=10000"),
        (&["-W", "0"], "--in-flight <N>", "1..=100000"),
        (&["--in-flight", "-1"], "--in-flight <N>", "1..=100000"),
        (&["--size", "65537"], "--size <BYTES>", "1..=65536"),
        (&["--size", "-1"], "--size <BYTES>", "1..=65536"),
        (&["--size", "0"], "--size <BYTES>", "1..=65536"),
        (&["--pid", "-1"], "--pid <PID>", "1..=4194304"),
        (&["--pid", "99999999999"], "--pid <PID>", "1..=4194304"),
        (&["--stall", "-1"], "--stall <K>", "0..=100000"),
        (&["--addr", "0"], "--addr <ADDR>", "1..=65535"),
        (&["--flood", "0"], "--flood <R>", "1..=10000000"),
    ];
    for (flags, flag, range) in cases {
        let mut list = vec!["bench", "rr"];
        list.extend_from_slice(flags);
        let output = run(&list).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(&format!("for '{flag}'")) && stderr.contains(range),
            "{flags:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{flags:?}: {stderr}");
    }
}

/// `bench send` writes durable mail, so it refuses a server unless told with
/// `--scratch` that its store is a scratch one; `help bench` states the rule.
#[tokio::test(flavor = "multi_thread")]
async fn send_runs_only_against_a_scratch_store() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let refused = run(&["bench", "send", "--addr", &addr, "-n", "2"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--scratch"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let sent = run(&[
        "bench",
        "send",
        "--addr",
        &addr,
        "-n",
        "2",
        "--duration",
        "0.2",
        "--scratch",
        "--json",
    ])
    .await;
    assert!(sent.status.success(), "{sent:?}");
    assert!(report(&sent)["ops"].as_u64().unwrap() > 0);

    let help = run(&["help", "bench"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("leaves nothing in the store") && help.contains("--scratch"),
        "{help}"
    );
    server.stop().await;
}

/// Text over 64 KiB is refused up front, by the argument parser.
#[tokio::test]
async fn a_size_over_64_kib_is_refused_up_front() {
    let output = run(&["bench", "fanout", "--size", "70000", "--addr", "1"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("70000 is not in 1..=65536"), "{stderr}");
}

/// A room where everyone says one line at once and everyone reads: every member gets
/// every other member's line and nobody is cut; a member that never reads is counted
/// apart.
#[tokio::test(flavor = "multi_thread")]
async fn burst_delivers_every_line_to_a_room_that_reads() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let output = run(&[
        "bench",
        "burst",
        "--addr",
        &addr,
        "-n",
        "20",
        "--stall",
        "1",
        "--duration",
        "0.2",
        "--json",
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(report["scenario"], "burst");
    assert_eq!(report["connections"], 20);
    assert_eq!(report["said"], 20);
    assert_eq!(report["expected"], 20 * 19);
    assert_eq!(report["received"], 20 * 19);
    assert_eq!(report["ops"], 20 * 19);
    assert_eq!(report["cut"], 0);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["stalled"], 1);
    assert!(report["stalled_cut"].as_u64().unwrap() <= 1);

    let table = run(&["bench", "burst", "--addr", &addr, "-n", "3"]).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("said 3, received 6 of 6, cut 0"), "{table}");
    server.stop().await;
}

/// The scenarios that measure switchboard without `--scratch` leave nothing in its
/// store but guests (which the server forgets): no name a person could meet later.
#[tokio::test(flavor = "multi_thread")]
async fn the_scenarios_say_hello_only_as_guests() {
    let mut server = TestServer::start().await;
    let dir = server.keep_dir();
    let addr = server.addr.to_string();
    for scenario in [
        vec!["rr", "-n", "2"],
        vec!["fanout", "-n", "2"],
        vec!["conns", "-n", "3"],
        vec!["burst", "-n", "3"],
        vec!["sessions", "-n", "2"],
    ] {
        let mut list = vec!["bench"];
        list.extend_from_slice(&scenario);
        list.extend(["--addr", &addr, "--duration", "0.2"]);
        let output = run(&list).await;
        assert!(output.status.success(), "{scenario:?}: {output:?}");
    }
    let db = server.db.clone();
    server.stop().await;
    let store = rusqlite::Connection::open(&db).unwrap();
    let mut names = store.prepare("SELECT name FROM users").unwrap();
    let names: Vec<String> = names
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for name in names {
        assert!(name.starts_with("guest-"), "{name} kept in the store");
    }
    drop(dir);
}

/// `sessions` goes through whole sessions (connect, hello, join, leave, bye), spread
/// over the addresses given, and leaves no one behind.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_go_through_whole_sessions_and_leave_no_one_online() {
    let server = TestServer::start().await;
    let watcher = server.client("watcher").await;
    let addr = server.addr.to_string();
    let spread = format!("{addr},{addr}");
    let output = run(&[
        "bench",
        "sessions",
        "-n",
        "3",
        "--addr",
        &addr,
        "--spread",
        &spread,
        "--duration",
        "0.3",
        "--json",
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(report["scenario"], "sessions");
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        watcher.users().await.unwrap().len(),
        1,
        "only the watcher is left"
    );
    server.stop().await;
}

/// Ctrl-C stops the load and prints the result so far, marked interrupted (exit 130).
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_prints_the_partial_result() {
    let server = TestServer::start().await;
    let watcher = server.client("watcher").await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "rr",
            "-n",
            "2",
            "--duration",
            "600",
            "--json",
            "--addr",
        ])
        .arg(server.addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Once both connections are in, the load has begun (or is about to).
    tokio::time::timeout(PATIENCE, async {
        while watcher.users().await.unwrap().len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the bench connects");
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("stops soon after Ctrl-C")
        .unwrap();
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    let report = report(&output);
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["scenario"], "rr");
    assert!(report["seconds"].as_f64().unwrap() < 60.0);
    server.stop().await;
}

/// `--ws` runs `rr`, `fanout` and `conns` over WebSockets on the HTTP listener, with
/// every answer and every delivery counted as over TCP; another target is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_scenarios_run_over_a_websocket() {
    let server = TestServer::start_tweaked(|c| {
        c.http_listen = switchboard::server::HttpListen::Given("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let http = server.http.expect("http listens").to_string();
    for (scenario, n) in [("rr", "4"), ("fanout", "4"), ("conns", "8")] {
        let output = run(&[
            "bench",
            scenario,
            "--ws",
            "--addr",
            &http,
            "-n",
            n,
            "--duration",
            "0.3",
            "--json",
        ])
        .await;
        assert!(output.status.success(), "{scenario}: {output:?}");
        let report = report(&output);
        assert!(report["ops"].as_u64().unwrap() > 0, "{scenario}: {report}");
        if scenario == "fanout" {
            assert_eq!(report["lost"], 0, "{report}");
        }
    }
    let output = run(&["bench", "rr", "--ws", "--target", "redis"]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--target switchboard"),
        "{output:?}"
    );
}

/// `rr --flood R` adds a connection asking R pings a second; against `--rate` far
/// below R it is answered at the rate, and the measured connections are served.
#[tokio::test(flavor = "multi_thread")]
async fn rr_with_a_flooder_reports_what_the_flooder_got() {
    let server = TestServer::start_tweaked(|c| {
        c.rate = Some(switchboard::server::RateLimit {
            per_second: 200,
            burst: 200,
        });
    })
    .await;
    let addr = server.addr.to_string();
    let output = run(&[
        "bench",
        "rr",
        "--addr",
        &addr,
        "-n",
        "2",
        "--duration",
        "1",
        "--flood",
        "20000",
        "--json",
    ])
    .await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["flood_offered"], 20000.0, "{report}");
    // The burst and one second at the rate: at most 400, far below what it asked.
    let answered = report["flood_answered"].as_f64().unwrap();
    assert!(answered > 0.0 && answered <= 450.0, "{report}");

    let output = run(&["bench", "fanout", "--flood", "10"]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--flood adds a flooder to `rr`"),
        "{output:?}"
    );
}
