//! What a WebSocket client that misbehaves below the message level can cost: an upgrade
//! without the WebSocket headers is refused as HTTP, and the bytes of messages not yet
//! complete count against `--max-partial-total` as on every other connection.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::server::HttpListen;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{PATIENCE, TestServer};

async fn start(max_partial_total: usize) -> (TestServer, SocketAddr) {
    let server = TestServer::start_tweaked(|c| {
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        c.max_partial_total = max_partial_total;
    })
    .await;
    let http = server.http.expect("http listens");
    (server, http)
}

/// Sends a request head and reads the answer's head; the stream is left after it.
async fn exchange(stream: &mut TcpStream, head: &str) -> String {
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.push(byte[0]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\n\
                       Upgrade: websocket\r\nSec-WebSocket-Version: 13";
const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";

/// A raw WebSocket, its handshake done by hand.
async fn open(http: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(http).await.unwrap();
    let answer = exchange(&mut stream, &format!("{UPGRADE}\r\n{KEY}")).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    // RFC 6455's own example key and accept value.
    assert!(answer.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{answer}");
    let (_, welcome) = frame(&mut stream).await;
    assert_eq!(welcome["event"], "welcome", "{welcome}");
    stream
}

/// The next frame the server sends: its opcode and, for text, the JSON in it.
async fn frame(stream: &mut TcpStream) -> (u8, Value) {
    let mut head = [0u8; 2];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut head))
        .await
        .expect("a frame in time")
        .unwrap();
    let len = match head[1] & 0x7f {
        126 => usize::from(stream.read_u16().await.unwrap()),
        127 => stream.read_u64().await.unwrap() as usize,
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    let opcode = head[0] & 0x0f;
    let value = if opcode == 1 {
        serde_json::from_slice(&payload).unwrap()
    } else if opcode == 8 && len >= 2 {
        json!(u16::from_be_bytes([payload[0], payload[1]]))
    } else {
        Value::Null
    };
    (opcode, value)
}

/// The head of a masked text frame of `len` bytes; the mask is zero, so the payload
/// goes as it is.
fn text_head(len: usize) -> Vec<u8> {
    let mut head = vec![0x81, 0x80 | 127];
    head.extend_from_slice(&(len as u64).to_be_bytes());
    head.extend_from_slice(&[0, 0, 0, 0]);
    head
}

/// A ping request padded to exactly `len` bytes of JSON.
fn padded_ping(len: usize) -> Vec<u8> {
    let bare = json!({"id": 1, "op": "ping", "pad": ""}).to_string();
    let pad = "x".repeat(len - bare.len());
    let request = json!({"id": 1, "op": "ping", "pad": pad}).to_string();
    assert_eq!(request.len(), len);
    request.into_bytes()
}

/// A GET of /ws without the upgrade headers, with a wrong version, without a key or
/// with another method is answered as HTTP and the connection is not upgraded.
#[tokio::test]
async fn an_upgrade_without_the_websocket_headers_is_refused() {
    let (server, http) = start(1 << 20).await;
    let cases = [
        ("GET /ws HTTP/1.1\r\nHost: test".to_owned(), "400"),
        (
            "GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket".to_owned(),
            "400",
        ),
        (UPGRADE.to_owned(), "400"),
        (
            format!("{}\r\n{KEY}", UPGRADE.replace("Version: 13", "Version: 8")),
            "426",
        ),
        (
            format!("{}\r\n{KEY}", UPGRADE.replace("GET", "POST")),
            "405",
        ),
    ];
    for (head, status) in cases {
        let mut stream = TcpStream::connect(http).await.unwrap();
        let answer = exchange(&mut stream, &head).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{head:?}: {answer}"
        );
        if status == "426" {
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("sec-websocket-version: 13"),
                "{answer}"
            );
        }
    }
    // The listener serves on.
    let _ = open(http).await;
    server.stop().await;
}

/// Two WebSockets each sending most of a large message take the server over its
/// budget for unfinished messages: the second is told `too_large` and closed with
/// 1009; the first finishes its message and is answered; once it has, the budget is
/// free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_websocket_messages_count_against_the_budget() {
    const BUDGET: usize = 64 * 1024;
    const LEN: usize = 50_000;
    let (server, http) = start(BUDGET).await;
    let message = padded_ping(LEN);
    let (start, rest) = message.split_at(40_000);

    let mut first = open(http).await;
    first.write_all(&text_head(LEN)).await.unwrap();
    first.write_all(start).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut second = open(http).await;
    second.write_all(&text_head(LEN)).await.unwrap();
    second.write_all(start).await.unwrap();
    let (opcode, error) = frame(&mut second).await;
    assert_eq!(opcode, 1);
    assert_eq!(error["event"], "error", "{error}");
    assert_eq!(error["code"], "too_large", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("--max-partial-total"),
        "{error}"
    );
    assert_eq!(frame(&mut second).await, (8, json!(1009)));

    first.write_all(rest).await.unwrap();
    let (_, answer) = frame(&mut first).await;
    assert_eq!(answer["id"], 1, "{answer}");

    let mut third = open(http).await;
    third.write_all(&text_head(LEN)).await.unwrap();
    third.write_all(&message).await.unwrap();
    let (_, answer) = frame(&mut third).await;
    assert_eq!(answer["id"], 1, "{answer}");
    server.stop().await;
}

/// A client that sends its first message in the same write as the upgrade request:
/// what the HTTP side read past the request is the WebSocket's first bytes, served
/// before anything read from the socket after it.
#[tokio::test]
async fn a_message_sent_with_the_upgrade_request_is_served() {
    let (server, http) = start(1 << 20).await;
    let mut stream = TcpStream::connect(http).await.unwrap();
    let ping = json!({"id": 7, "op": "ping"}).to_string().into_bytes();
    let mut bytes = format!("{UPGRADE}\r\n{KEY}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(&text_head(ping.len()));
    bytes.extend_from_slice(&ping);
    stream.write_all(&bytes).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 101"));
    let (_, welcome) = frame(&mut stream).await;
    assert_eq!(welcome["event"], "welcome", "{welcome}");
    let (_, pong) = frame(&mut stream).await;
    assert_eq!(pong["id"], 7, "{pong}");
    assert_eq!(pong["ok"], true, "{pong}");
    server.stop().await;
}

/// A masked client frame with the shortest header for its length and a zero mask.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

fn ping_request(id: u64) -> Vec<u8> {
    client_frame(0x1, json!({"id": id, "op": "ping"}).to_string().as_bytes())
}

/// Messages that arrive in one read are all served, a ping among them answered with a
/// pong; after them, a message on its own and one that arrives in two parts a while
/// apart are served too (the server waits on the socket only when it holds nothing
/// of what it read).
#[tokio::test]
async fn messages_that_arrive_together_or_in_parts_are_all_served() {
    let (server, http) = start(1 << 20).await;
    let mut stream = open(http).await;
    let mut burst = [ping_request(1), ping_request(2), ping_request(3)].concat();
    burst.extend_from_slice(&client_frame(0x9, b"there?"));
    burst.extend_from_slice(&ping_request(4));
    stream.write_all(&burst).await.unwrap();
    let mut ids = Vec::new();
    let mut pongs = 0;
    while ids.len() < 4 || pongs == 0 {
        match frame(&mut stream).await {
            (0x1, answer) => ids.push(answer["id"].as_u64().unwrap()),
            (0xA, _) => pongs += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((ids, pongs), (vec![1, 2, 3, 4], 1));

    stream.write_all(&ping_request(5)).await.unwrap();
    assert_eq!(frame(&mut stream).await.1["id"], 5);
    let parts = ping_request(6);
    let (start, rest) = parts.split_at(9);
    stream.write_all(start).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(rest).await.unwrap();
    assert_eq!(frame(&mut stream).await.1["id"], 6);
    server.stop().await;
}
