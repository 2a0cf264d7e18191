//! `GET /api/connz` (DESIGN "Operations"): each way a connection can end, driven for
//! real and read back as that connection's `reason`; what a connection carried,
//! counted to the byte; and the query's state filter, sorting, paging and refusals.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::frame;
use switchboard::server::{CloseReason, Config, HttpListen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{PATIENCE, Raw, TestServer, code};
use crate::resume::{hello, named};

/// A server with the HTTP listener (open on loopback: no token needed).
async fn start(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let server = TestServer::start_tweaked(|c| {
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        tweak(c);
    })
    .await;
    let http = server.http.expect("http listens");
    (server, http)
}

/// `GET /api/connz?query`: the status and the JSON body.
async fn get(http: SocketAddr, query: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(http).await.expect("connect");
    let request =
        format!("GET /api/connz?{query} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head[9..12].parse().expect("a status");
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, body)
}

async fn connz(http: SocketAddr, query: &str) -> Value {
    let (status, body) = get(http, query).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls until `pick` finds something in the connections `query` lists.
async fn until<T>(http: SocketAddr, query: &str, pick: impl Fn(&[Value]) -> Option<T>) -> T {
    let wait = async {
        loop {
            // A 503 while the server is full (HTTP counts against the limit) is asked
            // again.
            let (status, answer) = get(http, query).await;
            if status == 200
                && let Some(found) = pick(answer["connections"].as_array().unwrap())
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("connz never showed it ({query})"))
}

/// The closed connection `client_id`, once it is listed.
async fn closed(http: SocketAddr, client_id: u64) -> Value {
    until(http, "state=closed", |rows| {
        rows.iter().find(|r| r["client_id"] == client_id).cloned()
    })
    .await
}

/// Why connection `client_id` ended.
async fn reason(http: SocketAddr, client_id: u64) -> String {
    let row = closed(http, client_id).await;
    let reason = row["reason"].as_str().expect("a reason").to_owned();
    assert!(
        CloseReason::ALL.iter().any(|r| r.as_str() == reason),
        "{row}"
    );
    assert!(row["stop"].is_string(), "{row}");
    reason
}

/// A connection's own client id, from its welcome.
async fn welcomed(raw: &mut Raw) -> u64 {
    let welcome = raw.event().await;
    assert_eq!(welcome["event"], "welcome");
    welcome["client_id"].as_u64().unwrap()
}

#[tokio::test]
async fn bye_and_a_clean_close_and_a_reset_are_told_apart() {
    let (server, http) = start(|_| {}).await;
    let mut polite = server.raw().await;
    let polite_id = polite.hello("polite").await;
    let bye = polite.call(json!({"op": "bye"})).await;
    assert_eq!(bye["ok"], true, "{bye}");

    let mut leaver = server.raw().await;
    let leaver_id = leaver.hello("leaver").await;
    drop(leaver);

    let mut rude = server.raw().await;
    let rude_id = rude.hello("rude").await;
    rude.stream.set_zero_linger().unwrap();
    drop(rude);

    assert_eq!(reason(http, polite_id).await, "bye");
    assert_eq!(reason(http, leaver_id).await, "client_closed");
    assert_eq!(reason(http, rude_id).await, "reset");
    let row = closed(http, polite_id).await;
    assert_eq!(row["name"], "polite", "{row}");
    server.stop().await;
}

/// A dead peer found by TCP keepalive cannot be made on loopback in a test's time (the
/// kernel answers the probes while the socket lives, and a closed socket resets), so
/// the WebSocket path stands for it: a ping left unanswered for as long again.
#[tokio::test]
async fn a_websocket_that_answers_no_ping_ends_as_idle_timeout() {
    let ping = Duration::from_millis(200);
    let (server, http) = start(|c| c.ws_ping = ping).await;
    let url = format!("ws://{http}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let welcome = loop {
        let message = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        if let Some(Ok(Message::Text(text))) = message {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    let id = welcome["client_id"].as_u64().unwrap();
    ws.send(Message::text(
        json!({"id": 1, "op": "hello", "name": "mute"}).to_string(),
    ))
    .await
    .unwrap();
    // From here on nothing is read, so no ping is answered.
    assert_eq!(reason(http, id).await, "idle_timeout");
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn no_hello_in_time_is_a_handshake_timeout() {
    let (server, http) = start(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let mut silent = server.raw().await;
    let id = welcomed(&mut silent).await;
    let last = silent.until_closed().await;
    assert_eq!(last.last().map(code), Some("timeout"), "{last:?}");
    assert_eq!(reason(http, id).await, "handshake_timeout");
    server.stop().await;
}

#[tokio::test]
async fn a_member_that_does_not_read_a_flooded_room_is_a_slow_consumer() {
    let (server, http) = start(|c| {
        c.queue_depth = 16;
        c.write_deadline = Duration::from_millis(300);
    })
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = Raw::from_stream(socket.connect(server.addr).await.unwrap());
    let slow_id = slow.hello("slow").await;
    let created = slow
        .call(json!({"op": "create_room", "room": "flood"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let mut fast = server.raw().await;
    fast.hello("fast").await;
    let joined = fast.call(json!({"op": "join_room", "room": "flood"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    let text = "x".repeat(32 * 1024);
    for _ in 0..100 {
        let said = fast
            .call(json!({"op": "say", "room": "flood", "text": text}))
            .await;
        if said["ok"] != true {
            break;
        }
    }
    assert_eq!(reason(http, slow_id).await, "slow_consumer");
    server.stop().await;
}

#[tokio::test]
async fn a_frame_over_max_frame_is_too_large_and_an_empty_one_a_bad_frame() {
    let (server, http) = start(|c| c.max_frame = 4096).await;
    let mut big = server.raw().await;
    let big_id = big.hello("big").await;
    big.send_bytes(&(1u32 << 20).to_be_bytes()).await;
    assert_eq!(big.until_closed().await.last().map(code), Some("too_large"));

    let mut broken = server.raw().await;
    let broken_id = broken.hello("broken").await;
    broken.send_bytes(&[0, 0, 0, 0]).await;
    assert_eq!(
        broken.until_closed().await.last().map(code),
        Some("bad_request")
    );

    assert_eq!(reason(http, big_id).await, "too_large");
    assert_eq!(reason(http, broken_id).await, "bad_frame");
    server.stop().await;
}

#[tokio::test]
async fn a_connection_refused_at_the_limit_is_listed_as_server_full() {
    let (server, http) = start(|c| c.max_connections = 2).await;
    let mut first = server.raw().await;
    first.hello("first").await;
    let mut second = server.raw().await;
    second.hello("second").await;
    let mut refused = server.raw().await;
    let peer = refused.stream.local_addr().unwrap().to_string();
    let told = refused.until_closed().await;
    assert_eq!(told.last().map(code), Some("server_full"), "{told:?}");
    // Room for the HTTP request.
    drop(second);
    let row = until(http, "state=closed", |rows| {
        rows.iter().find(|r| r["peer"] == peer.as_str()).cloned()
    })
    .await;
    assert_eq!(row["reason"], "server_full", "{row}");
    assert_eq!(row["in_msgs"], 0, "{row}");
    server.stop().await;
}

#[tokio::test]
async fn a_session_resumed_elsewhere_ends_its_old_connection_as_replaced() {
    let (server, http) = start(|_| {}).await;
    let (mut old, id, token) = named(&server, "mover").await;
    let (_new, _, reply) = hello(&server, json!({"name": "mover", "resume": token})).await;
    assert_eq!(reply["resumed"], true, "{reply}");
    old.until_closed().await;
    assert_eq!(reason(http, id).await, "replaced");
    // The new connection speaks for the session now, under its id, and is open.
    let open = until(http, "state=open", |rows| {
        rows.iter().find(|r| r["client_id"] == id).cloned()
    })
    .await;
    assert_eq!(open["name"], "mover", "{open}");
    server.stop().await;
}

/// connz is served by the HTTP listener, which stays up through the drain: while one
/// client that does not read holds the drain open, one that had nothing pending is
/// already listed as ended by the shutdown.
#[tokio::test]
async fn a_server_shutting_down_ends_connections_as_shutdown() {
    let (mut server, http) = start(|c| {
        c.queue_depth = 1_000_000;
        c.max_pending = 1 << 32;
        c.write_deadline = Duration::from_secs(60);
        c.drain_timeout = Duration::from_secs(3);
    })
    .await;
    let mut quick = server.raw().await;
    let quick_id = quick.hello("quick").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = Raw::from_stream(socket.connect(server.addr).await.unwrap());
    let stuck_id = stuck.hello("stuck").await;
    let created = quick.call(json!({"op": "create_room", "room": "r"})).await;
    assert_eq!(created["ok"], true, "{created}");
    let joined = stuck.call(json!({"op": "join_room", "room": "r"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    // Messages pile up unread until the server's writer for `stuck` is blocked.
    let text = "x".repeat(60 * 1024);
    for _ in 0..200 {
        let said = quick
            .call(json!({"op": "say", "room": "r", "text": text}))
            .await;
        assert_eq!(said["ok"], true, "{said}");
    }
    until(http, "state=open", |rows| {
        let row = rows.iter().find(|r| r["client_id"] == stuck_id)?;
        (row["pending"].as_u64()? > 0).then_some(())
    })
    .await;
    server.begin_stop();
    assert_eq!(reason(http, quick_id).await, "shutdown");
    drop((quick, stuck));
    server.stop().await;
}

/// One connection, byte by byte: what it sent and was sent, counted exactly.
struct Counting {
    stream: TcpStream,
    sent: u64,
    received: u64,
    frames_in: u64,
}

impl Counting {
    async fn send(&mut self, value: Value) {
        let mut buf = BytesMut::new();
        frame::encode(value.to_string().as_bytes(), &mut buf);
        self.stream.write_all(&buf).await.unwrap();
        self.sent += buf.len() as u64;
    }

    async fn recv(&mut self) -> Value {
        let mut len = [0; 4];
        self.stream.read_exact(&mut len).await.unwrap();
        let mut payload = vec![0; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut payload).await.unwrap();
        self.received += 4 + payload.len() as u64;
        self.frames_in += 1;
        serde_json::from_slice(&payload).unwrap()
    }
}

#[tokio::test]
async fn the_counters_move_by_exactly_the_traffic_made() {
    let (server, http) = start(|_| {}).await;
    let mut conn = Counting {
        stream: TcpStream::connect(server.addr).await.unwrap(),
        sent: 0,
        received: 0,
        frames_in: 0,
    };
    let id = conn.recv().await["client_id"].as_u64().unwrap();
    conn.send(json!({"id": 1, "op": "hello", "name": "counted"}))
        .await;
    conn.recv().await;
    conn.send(json!({"id": 2, "op": "create_room", "room": "lobby"}))
        .await;
    conn.recv().await;
    for n in 0..5 {
        conn.send(json!({"id": 10 + n, "op": "ping"})).await;
        conn.recv().await;
    }
    let row = until(http, "", |rows| {
        rows.iter().find(|r| r["client_id"] == id).cloned()
    })
    .await;
    assert_eq!(row["in_msgs"], 7, "{row}");
    assert_eq!(row["in_bytes"], conn.sent, "{row}");
    assert_eq!(row["out_msgs"], conn.frames_in, "{row}");
    assert_eq!(row["out_bytes"], conn.received, "{row}");
    assert_eq!(row["pending"], 0, "{row}");
    assert_eq!(row["name"], "counted", "{row}");
    assert_eq!(row["rooms"], json!(["lobby"]), "{row}");
    assert_eq!(row["dialect"], "native", "{row}");
    assert!(row.get("reason").is_none() && row.get("stop").is_none());
    assert!(row["last_activity"].as_str().unwrap() >= row["start"].as_str().unwrap());

    drop(conn);
    let row = closed(http, id).await;
    assert_eq!(row["in_msgs"], 7, "{row}");
    assert_eq!(row["rooms"], json!(["lobby"]), "{row}");
    server.stop().await;
}

#[tokio::test]
async fn the_list_is_filtered_sorted_and_paged_and_bad_parameters_are_named() {
    let (server, http) = start(|_| {}).await;
    let mut ids = Vec::new();
    let mut conns = Vec::new();
    for (name, pings) in [("ann", 1), ("bob", 3), ("cyd", 2)] {
        let mut raw = server.raw().await;
        ids.push(raw.hello(name).await);
        for _ in 0..pings {
            raw.call(json!({"op": "ping"})).await;
        }
        conns.push(raw);
    }
    let gone = conns.remove(0);
    drop(gone);
    closed(http, ids[0]).await;

    let open = connz(http, "state=open").await;
    assert_eq!(open["total"], 2, "{open}");
    let closed_only = connz(http, "state=closed").await;
    assert_eq!(closed_only["total"], 1, "{closed_only}");
    let all = connz(http, "state=all").await;
    assert_eq!(all["total"], 3, "{all}");
    let listed = |answer: &Value| -> Vec<u64> {
        answer["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["client_id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(listed(&all), ids, "by client id by default");
    let busiest = connz(http, "state=all&sort=in_msgs").await;
    assert_eq!(listed(&busiest), [ids[1], ids[2], ids[0]]);
    let by_name = connz(http, "state=all&sort=name").await;
    assert_eq!(listed(&by_name), ids);
    let page = connz(http, "state=all&sort=in_msgs&limit=1&offset=1").await;
    assert_eq!(
        (page["total"].clone(), page["offset"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(listed(&page), [ids[2]]);
    let by_reason = connz(http, "state=all&sort=reason").await;
    assert_eq!(listed(&by_reason)[0], ids[0], "closed first");

    for (query, parameter) in [
        ("state=gone", "state"),
        ("sort=colour", "sort"),
        ("limit=many", "limit"),
        ("offset=-1", "offset"),
        ("sort=stop", "sort"),
    ] {
        let (status, body) = get(http, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["parameter"], parameter, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    drop(conns);
    server.stop().await;
}
