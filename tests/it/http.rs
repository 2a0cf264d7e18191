//! The HTTP listener: `/healthz` while serving and while draining, what is not routed,
//! how it is bound, and what a bad or slow HTTP client can cost (only its connection).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::server::{Config, HttpListen, Server, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{PATIENCE, Raw, TestServer, code, run_switchboard};

/// A server with HTTP on a port of the system's choosing.
async fn start(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let server = TestServer::start_tweaked(|c| {
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        tweak(c);
    })
    .await;
    let http = server.http.expect("http listens");
    (server, http)
}

/// Everything the server says on `stream` until it closes it (or resets it).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close the connection in time"),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sends `head` (a request without its final blank line) and returns the status and
/// body of the answer.
async fn request(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("{head}\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut stream).await;
    parse(&answer)
}

fn parse(answer: &str) -> (u16, String) {
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, &format!("GET {path} HTTP/1.1")).await
}

#[tokio::test]
async fn healthz_is_ok_and_what_is_not_routed_is_404() {
    let (server, http) = start(|_| {}).await;
    assert_eq!(get(http, "/healthz").await, (200, "ok".into()));
    // A plain GET of the WebSocket's address is not an upgrade (see tests/it/ws.rs).
    assert_eq!(get(http, "/ws").await.0, 400);
    for path in ["/nothing"] {
        assert_eq!(get(http, path).await.0, 404, "{path}");
    }
    // HEAD too, as load balancers send it.
    assert_eq!(request(http, "HEAD /healthz HTTP/1.1").await.0, 200);
    server.stop().await;
}

/// Once shutdown has begun, and for as long as clients are still being drained,
/// `/healthz` says so with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_while_the_server_drains() {
    let (mut server, http) = start(|c| {
        c.queue_depth = 1_000_000;
        c.max_pending = 1 << 32;
        c.write_deadline = Duration::from_secs(60);
        c.drain_timeout = Duration::from_secs(3);
    })
    .await;
    // A client that never reads jams its queue, so the drain waits for it.
    let mut jammed = server.raw().await;
    jammed.hello("jammed").await;
    let (_read, mut write) = jammed.stream.into_split();
    let writing = tokio::spawn(async move {
        let request = json!({"id": 1, "op": "z".repeat(2000)}).to_string();
        let mut burst = bytes::BytesMut::new();
        for _ in 0..64 {
            switchboard::frame::encode(request.as_bytes(), &mut burst);
        }
        while let Ok(Ok(())) = tokio::time::timeout(PATIENCE, write.write_all(&burst)).await {}
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(http, "/healthz").await.0, 200);
    server.begin_stop();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut draining = None;
    while Instant::now() < deadline {
        let answer = get(http, "/healthz").await;
        if answer.0 == 503 {
            draining = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = draining.expect("503 during the drain");
    assert!(body.contains("draining"), "{body}");
    writing.abort();
    server.stop().await;
}

#[tokio::test]
async fn off_binds_nothing() {
    let server = TestServer::start_tweaked(|c| c.http_listen = HttpListen::Off).await;
    assert_eq!(server.http, None);
    server.stop().await;
}

#[tokio::test]
async fn a_given_address_that_is_taken_is_an_error_the_default_one_a_warning() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A store of its own for each: one that failed to start may not be closed yet.
    let config = |http_listen, db: &str| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen,
        db: dir.path().join(db),
        ..Config::default()
    };
    match Server::bind(config(HttpListen::Given(addr), "given.db")).await {
        Err(ServerError::Bind { addr: failed, .. }) => assert_eq!(failed, addr),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("bound an address that is taken"),
    }
    let server = Server::bind(config(HttpListen::Default(addr), "default.db"))
        .await
        .expect("the server starts without HTTP");
    assert_eq!(server.http_addr(), None);
    drop(server);

    // On the command line.
    let db = dir.path().join("cli.db");
    let out = run_switchboard(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
            "--http-listen",
            &addr.to_string(),
        ],
        "",
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

/// Bytes that are not HTTP cost only their own connection.
#[tokio::test]
async fn garbage_costs_only_its_connection() {
    let (server, http) = start(|_| {}).await;
    let mut garbage = TcpStream::connect(http).await.unwrap();
    garbage
        .write_all(&crate::common::noise(7, 3000))
        .await
        .unwrap();
    let answer = read_to_close(&mut garbage).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer:?}"
    );
    assert_eq!(get(http, "/healthz").await, (200, "ok".into()));
    let mut native = server.raw().await;
    native.hello("still-here").await;
    server.stop().await;
}

/// A client that sends its request head a byte at a time is closed after the
/// handshake timeout, and others are served meanwhile.
#[tokio::test]
async fn a_slow_header_trickle_is_closed_after_the_timeout() {
    let (server, http) = start(|c| c.handshake_timeout = Duration::from_millis(500)).await;
    let mut slow = TcpStream::connect(http).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let began = Instant::now();
    let (mut read, mut write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if write.write_all(b"X-Slow: a\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(get(http, "/healthz").await, (200, "ok".into()));
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, read.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the trickle was never closed"),
        }
    }
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    trickle.abort();
    assert_eq!(get(http, "/healthz").await, (200, "ok".into()));
    server.stop().await;
}

/// A request head over the size or header-count limit gets 431 (or a close), and the
/// server serves on.
#[tokio::test]
async fn headers_over_the_limit_get_431() {
    let (server, http) = start(|_| {}).await;
    let big = format!("GET /healthz HTTP/1.1\r\nX-Big: {}", "a".repeat(200 * 1024));
    let many: String = (0..200).map(|i| format!("\r\nX-H{i}: v")).collect();
    for head in [big, format!("GET /healthz HTTP/1.1{many}")] {
        let mut stream = TcpStream::connect(http).await.unwrap();
        let request = format!("{head}\r\n\r\n");
        // The server may close before it has read everything.
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.is_empty() || parse(&answer).0 == 431,
            "{:?}",
            answer.get(..100)
        );
    }
    assert_eq!(get(http, "/healthz").await, (200, "ok".into()));
    server.stop().await;
}

/// HTTP connections take a slot under --max-connections like any client.
#[tokio::test]
async fn http_connections_count_against_max_connections() {
    let (server, http) = start(|c| c.max_connections = 1).await;
    let mut native = server.raw().await;
    native.hello("only").await;
    let (status, body) = get(http, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("as many clients"), "{body}");
    drop(native);
    let deadline = Instant::now() + PATIENCE;
    while get(http, "/healthz").await.0 != 200 {
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And a held HTTP connection keeps a native one out.
    let mut held = TcpStream::connect(http).await.unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = held.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut refused = Raw::connect(server.addr).await;
    let frames = refused.until_closed().await;
    assert_eq!(code(frames.last().unwrap()), "server_full", "{frames:?}");
    drop(held);
    server.stop().await;
}
