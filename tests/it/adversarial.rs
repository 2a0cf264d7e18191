//! What a hostile or broken network throws at the server, over real TCP: stalled
//! half-frames, resets in the middle of a frame, requests with every field of the
//! wrong type. After each, the server is alive and serving.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{PATIENCE, Raw, TestServer, XorShift};
use crate::wire::Serve;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_half_frames_do_not_slow_anyone_else() {
    let server = TestServer::start().await;
    let mut stalled = Vec::new();
    for k in 0..150u32 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        // A header announcing 1000 bytes, then a few of them, then nothing.
        let mut half = 1000u32.to_be_bytes().to_vec();
        half.extend_from_slice(&b"{\"id\":1,\"op\""[..(k as usize % 12) + 1]);
        conn.write_all(&half).await.unwrap();
        stalled.push(conn);
    }
    let mut pinger = server.raw().await;
    pinger.hello("pinger").await;
    let mut slowest = Duration::ZERO;
    for _ in 0..500 {
        let sent = std::time::Instant::now();
        assert_eq!(pinger.call(json!({"op": "ping"})).await["ok"], true);
        slowest = slowest.max(sent.elapsed());
    }
    eprintln!("slowest of 500 pings beside 150 stalled half-frames: {slowest:?}");
    let users = pinger.call(json!({"op": "users"})).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
    drop(stalled);
    server.stop().await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 400 connections, half of them after hello, reset (RST) in the middle of a frame.
async fn reset_mid_frame(addr: &str, round: usize) {
    for k in 0..400 {
        let mut raw = Raw::connect(addr.parse().unwrap()).await;
        if k % 2 == 0 {
            raw.hello(&format!("reset-{round}-{k}")).await;
        }
        let mut half = 500u32.to_be_bytes().to_vec();
        half.extend_from_slice(br#"{"id":7,"op":"send","to":"#);
        raw.send_bytes(&half).await;
        raw.stream.set_zero_linger().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_mid_frame_leave_no_session_and_no_memory_behind() {
    const LIMIT: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let limit = LIMIT.to_string();
    let mut serve = Serve::start(
        &dir.path().join("reset.db"),
        &["--listen", "127.0.0.1:0", "--max-connections", &limit],
        1,
    )
    .await;
    serve.discard_console();
    let addr = serve.addrs[0].clone();
    let pid = serve.child.id().unwrap();
    let mut watcher = Raw::connect(addr.parse().unwrap()).await;
    watcher.hello("watcher").await;

    // The first round warms the allocator up; the second must not add to it.
    reset_mid_frame(&addr, 0).await;
    let only_watcher = |users: &Value| users["users"].as_array().map(Vec::len) == Some(1);
    let settle = async |watcher: &mut Raw| {
        tokio::time::timeout(PATIENCE, async {
            while !only_watcher(&watcher.call(json!({"op": "users"})).await) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every reset session is gone from the list");
    };
    settle(&mut watcher).await;
    let before = rss_kib(pid);
    reset_mid_frame(&addr, 1).await;
    settle(&mut watcher).await;
    let after = rss_kib(pid);
    eprintln!("server RSS before the second 400 resets: {before} KiB, after: {after} KiB");
    assert!(
        after < before + 2048,
        "memory grew by {} KiB",
        after - before
    );

    // No half-open session holds a place: all but the watcher's are free again.
    let mut inside = Vec::new();
    for _ in 0..LIMIT - 1 {
        let mut raw = Raw::connect(addr.parse().unwrap()).await;
        assert_eq!(raw.recv().await["event"], "welcome");
        inside.push(raw);
    }
    assert_eq!(watcher.call(json!({"op": "ping"})).await["ok"], true);
}

/// A request with `op` and its fields drawn from values of every JSON type.
fn fuzzed_request(rng: &mut XorShift) -> Value {
    // Every op but bye (which would end the connection), and one that does not exist.
    let ops: Vec<&str> = switchboard::protocol::OPS
        .iter()
        .copied()
        .filter(|op| *op != "bye")
        .chain(["no_such_op"])
        .collect();
    const FIELDS: [&str; 8] = [
        "name", "to", "text", "limit", "room", "password", "id", "op",
    ];
    let value = |rng: &mut XorShift| -> Value {
        match rng.below(12) {
            0 => Value::Null,
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.next_u64()),
            3 => json!(-(rng.below(1000) as i64)),
            4 => json!(rng.below(1000) as f64 / 7.0),
            5 => json!("x".repeat(rng.below(200_000))),
            6 => json!(format!("n{}", rng.below(50))),
            7 => json!(""),
            8 => json!([1, "two", null, {"three": 3}]),
            9 => json!({"nested": {"deeper": [rng.below(10)]}}),
            10 => json!("\u{0}\u{7f}\u{feff}é\n"),
            _ => json!(rng.below(100).to_string()),
        }
    };
    let mut request = serde_json::Map::new();
    let op = ops[rng.below(ops.len())];
    request.insert("op".into(), json!(op));
    for _ in 0..rng.below(4) {
        let field = FIELDS[rng.below(FIELDS.len())];
        let v = value(rng);
        request.insert(field.into(), v);
    }
    Value::Object(request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_fuzzed_requests_are_each_answered() {
    let server = TestServer::start().await;
    let mut rng = XorShift::new(0x5eed);
    let mut answered = 0;
    for conn in 0..15 {
        let mut raw = server.raw().await;
        if conn % 3 != 0 {
            raw.hello(&format!("fuzz{conn}")).await;
        }
        for _ in 0..100 {
            let request = fuzzed_request(&mut rng);
            raw.send(&request).await;
            // Exactly one response each, in order, with the id echoed when it was a
            // number and null otherwise.
            let response = loop {
                let frame = raw.recv().await;
                if frame.get("event").is_none() {
                    break frame;
                }
            };
            assert!(
                response["ok"] == true || response["error"]["code"].is_string(),
                "{request} -> {response}"
            );
            match request.get("id") {
                Some(id) if id.is_u64() => assert_eq!(&response["id"], id),
                _ => assert!(response["id"].is_null() || response["id"].is_u64()),
            }
            answered += 1;
        }
        assert_eq!(raw.call(json!({"op": "ping"})).await["ok"], true);
    }
    assert_eq!(answered, 1500);
    let after = server.client("after").await;
    after.ping().await.unwrap();
    server.stop().await;
}

/// Bytes the server has not yet read from its established connections on `port`,
/// from the kernel's table of TCP sockets (the `rx_queue` column).
fn unread_on_port(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
            let established = fields[3] == "01";
            let rx_queue = u64::from_str_radix(fields[4].split(':').nth(1)?, 16).ok()?;
            (local_port == port && established).then_some(rx_queue)
        })
        .sum()
}

/// Lab connections that each send a quarter of a megabyte of a pickle that never ends:
/// one string memoized again and again, which decoded would cost serde-pickle about
/// 86 bytes per byte sent. While they wait, the server holds little more than the
/// bytes themselves; once they are gone, so is the memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_memo_heavy_pickles_cost_the_server_about_their_size() {
    const CONNECTIONS: usize = 20;
    const SIZE: usize = 250_000;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--lab-listen", "127.0.0.1:0"];
    let mut serve = Serve::start(&dir.path().join("pickles.db"), &args, 2).await;
    serve.discard_console();
    let lab: std::net::SocketAddr = serve.addrs[1].parse().unwrap();
    let pid = serve.child.id().unwrap();
    let mut pickle = b"\x80\x04\x8c\x01a".to_vec();
    pickle.resize(SIZE, 0x94);

    // A first round warms the allocator up, as in the test of resets above.
    let round = async |pickle: &[u8]| {
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut conn = TcpStream::connect(lab).await.unwrap();
            conn.write_all(pickle).await.unwrap();
            conns.push(conn);
        }
        tokio::time::timeout(PATIENCE, async {
            while unread_on_port(lab.port()) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the server reads every byte sent");
        conns
    };
    drop(round(&pickle[..SIZE / 10]).await);
    let before = rss_kib(pid);
    let conns = round(&pickle).await;
    let holding = rss_kib(pid);
    drop(conns);
    let mut watcher = Raw::connect(serve.addrs[0].parse().unwrap()).await;
    watcher.hello("watcher").await;
    assert_eq!(watcher.call(json!({"op": "ping"})).await["ok"], true);
    let after = rss_kib(pid);
    let sent_kib = (CONNECTIONS * SIZE / 1024) as u64;
    eprintln!(
        "server RSS: {before} KiB before {sent_kib} KiB of unfinished pickles, \
         {holding} KiB holding them, {after} KiB after they closed"
    );
    assert!(
        holding < before + 3 * sent_kib,
        "holding {sent_kib} KiB of pickles grew memory by {} KiB",
        holding - before
    );
    assert!(
        after < before + sent_kib,
        "{} KiB stayed after the connections closed",
        after - before
    );
}
