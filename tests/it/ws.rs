//! `GET /ws`: the native protocol over a WebSocket, one JSON object per text message.
//! WebSocket and TCP clients share one hub: they see each other, mail each other and
//! share rooms; the bounds (binary, too large) end the connection with a close code.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::server::{Config, HttpListen};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{PATIENCE, Raw, TestServer, code};
use crate::wire::TextConn;

/// A server with HTTP (and so `/ws`) on a port of the system's choosing.
pub(crate) async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_tweaked(|c| {
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        tweak(c);
    })
    .await
}

/// What the server sent: a JSON object, or the close with its code.
#[derive(Debug)]
enum Got {
    Json(Value),
    Close(Option<u16>),
}

/// A WebSocket client speaking the native protocol, as `Raw` does over TCP.
pub(crate) struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    events: VecDeque<Value>,
    next_id: u64,
}

impl Ws {
    pub(crate) async fn connect(server: &TestServer) -> Ws {
        Ws::connect_to(server.http.expect("http listens")).await
    }

    async fn connect_to(http: SocketAddr) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
            .await
            .expect("websocket handshake");
        Ws {
            socket,
            events: VecDeque::new(),
            next_id: 0,
        }
    }

    pub(crate) async fn send(&mut self, value: &Value) {
        self.send_message(Message::text(value.to_string())).await;
    }

    async fn send_message(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next JSON object or close; `Close(None)` also when the stream just ends.
    async fn got(&mut self) -> Got {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("server answers in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Got::Json(serde_json::from_str(&text).expect("server sent JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Got::Close(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(Message::Binary(_))) => panic!("the server sent a binary message"),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Got::Close(None),
            }
        }
    }

    pub(crate) async fn recv(&mut self) -> Value {
        match self.got().await {
            Got::Json(value) => value,
            Got::Close(code) => panic!("closed ({code:?}) where a message was expected"),
        }
    }

    pub(crate) async fn response(&mut self, id: u64) -> Value {
        loop {
            let value = self.recv().await;
            if value.get("event").is_some() {
                self.events.push_back(value);
                continue;
            }
            assert_eq!(value["id"], json!(id), "responses come in request order");
            return value;
        }
    }

    pub(crate) async fn event(&mut self) -> Value {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        let value = self.recv().await;
        assert!(value.get("event").is_some(), "expected an event: {value}");
        value
    }

    pub(crate) async fn call(&mut self, mut request: Value) -> Value {
        self.next_id += 1;
        request["id"] = json!(self.next_id);
        self.send(&request).await;
        self.response(self.next_id).await
    }

    /// Reads the welcome and says hello; returns the hello's reply.
    async fn hello(&mut self, name: &str) -> Value {
        let welcome = self.event().await;
        assert_eq!(welcome["event"], "welcome", "{welcome}");
        let reply = self.call(json!({"op": "hello", "name": name})).await;
        assert_eq!(reply["ok"], true, "{reply}");
        reply
    }

    /// Every object until the close, and the close code.
    async fn until_closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut values: Vec<Value> = self.events.drain(..).collect();
        loop {
            match self.got().await {
                Got::Json(value) => values.push(value),
                Got::Close(code) => return (values, code),
            }
        }
    }
}

#[tokio::test]
async fn welcome_then_hello_and_the_ops_answer_as_native() {
    let server = start(|_| {}).await;
    let mut ws = Ws::connect(&server).await;
    let welcome = ws.event().await;
    assert_eq!(welcome["event"], "welcome");
    assert_eq!(welcome["protocol"], 1);
    assert!(welcome["client_id"].as_u64().is_some(), "{welcome}");
    let early = ws.call(json!({"op": "users"})).await;
    assert_eq!(code(&early), "not_registered", "{early}");
    let reply = ws.call(json!({"op": "hello", "name": "webby"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["client_id"], welcome["client_id"]);
    assert_eq!(reply["name"], "webby");
    let pong = ws.call(json!({"op": "ping"})).await;
    assert_eq!(pong["ok"], true, "{pong}");

    // Bad JSON is answered and the connection stays.
    ws.send_message(Message::text("{not json")).await;
    let bad = ws.recv().await;
    assert_eq!(bad["ok"], false, "{bad}");
    assert_eq!(bad["id"], Value::Null);
    assert_eq!(code(&bad), "bad_request", "{bad}");
    let unknown = ws.call(json!({"op": "fly"})).await;
    assert_eq!(code(&unknown), "unknown_op", "{unknown}");

    let bye = ws.call(json!({"op": "bye"})).await;
    assert_eq!(bye["ok"], true, "{bye}");
    let (rest, close) = ws.until_closed().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(close, Some(1000));
    server.stop().await;
}

#[tokio::test]
async fn websocket_and_tcp_users_mail_each_other_and_share_a_room() {
    let server = start(|_| {}).await;
    let mut web = Ws::connect(&server).await;
    let web_id = web.hello("web").await["client_id"].as_u64().unwrap();
    let mut tcp = server.raw().await;
    let tcp_id = tcp.hello("tcp").await;
    assert_ne!(web_id, tcp_id, "client ids come from one sequence");

    for users in [
        web.call(json!({"op": "users"})).await,
        tcp.call(json!({"op": "users"})).await,
    ] {
        let mut names: Vec<&str> = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["tcp", "web"], "{users}");
    }

    // TCP to WebSocket by name, WebSocket to TCP by client id.
    let sent = tcp
        .call(json!({"op": "send", "to": "web", "text": "hi from tcp"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let mail = web.event().await;
    assert_eq!(mail["event"], "message", "{mail}");
    assert_eq!(mail["from"], "tcp");
    let inbox = web.call(json!({"op": "inbox"})).await;
    assert_eq!(inbox["messages"][0]["text"], "hi from tcp", "{inbox}");
    let sent = web
        .call(json!({"op": "send", "to": tcp_id, "text": "hi from the web"}))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    let mail = tcp.event().await;
    assert_eq!(mail["event"], "message", "{mail}");
    assert_eq!(mail["from"], "web");
    let inbox = tcp.call(json!({"op": "inbox"})).await;
    assert_eq!(inbox["messages"][0]["text"], "hi from the web", "{inbox}");

    // A room both ways, numbered in one sequence.
    let created = web.call(json!({"op": "create_room", "room": "mix"})).await;
    assert_eq!(created["ok"], true, "{created}");
    let joined = tcp.call(json!({"op": "join_room", "room": "mix"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    let event = web.event().await;
    assert_eq!(event["event"], "joined", "{event}");
    assert_eq!(event["name"], "tcp");
    let said = tcp
        .call(json!({"op": "say", "room": "mix", "text": "one"}))
        .await;
    assert_eq!(said["seq"], 1, "{said}");
    let heard = web.event().await;
    assert_eq!(heard["event"], "room_message", "{heard}");
    assert_eq!(
        (&heard["from"], &heard["text"], &heard["seq"]),
        (&json!("tcp"), &json!("one"), &json!(1))
    );
    let said = web
        .call(json!({"op": "say", "room": "mix", "text": "two"}))
        .await;
    assert_eq!(said["seq"], 2, "{said}");
    let heard = tcp.event().await;
    assert_eq!(heard["event"], "room_message", "{heard}");
    assert_eq!(
        (&heard["from"], &heard["text"], &heard["seq"]),
        (&json!("web"), &json!("two"), &json!(2))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_binary_message_gets_an_error_event_then_close_1003() {
    let server = start(|_| {}).await;
    let mut ws = Ws::connect(&server).await;
    ws.hello("bin").await;
    ws.send_message(Message::binary(b"{\"op\":\"ping\"}".to_vec()))
        .await;
    let (values, close) = ws.until_closed().await;
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(values[0]["event"], "error", "{values:?}");
    assert_eq!(code(&values[0]), "bad_request");
    assert_eq!(close, Some(1003));
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_max_frame_gets_too_large_then_close_1009() {
    let server = start(|c| c.max_frame = 1024).await;
    let mut ws = Ws::connect(&server).await;
    ws.hello("big").await;
    let text = "x".repeat(2000);
    ws.send(&json!({"id": 1, "op": "ping", "pad": text})).await;
    let (values, close) = ws.until_closed().await;
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(values[0]["event"], "error", "{values:?}");
    assert_eq!(code(&values[0]), "too_large");
    assert_eq!(close, Some(1009));
    server.stop().await;
}

#[tokio::test]
async fn a_dropped_websocket_resumes_on_a_new_one() {
    let server = start(|_| {}).await;
    let mut ws = Ws::connect(&server).await;
    let reply = ws.hello("roamer").await;
    let token = reply["resume_token"].as_str().expect("a token").to_owned();
    let id = reply["client_id"].clone();
    let created = ws.call(json!({"op": "create_room", "room": "r"})).await;
    assert_eq!(created["ok"], true, "{created}");
    let mut tcp = server.raw().await;
    tcp.hello("stay").await;
    let joined = tcp.call(json!({"op": "join_room", "room": "r"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    assert_eq!(ws.event().await["event"], "joined");
    drop(ws);

    // Said while the WebSocket is gone: kept for the resume.
    let said = tcp
        .call(json!({"op": "say", "room": "r", "text": "missed"}))
        .await;
    assert_eq!(said["seq"], 1, "{said}");

    let mut back = Ws::connect(&server).await;
    assert_eq!(back.event().await["event"], "welcome");
    let reply = back
        .call(json!({"op": "hello", "name": "roamer", "resume": token, "seen": {"r": 0}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["resumed"], true, "{reply}");
    assert_eq!(reply["client_id"], id, "{reply}");
    let replayed = back.event().await;
    assert_eq!(replayed["event"], "room_message", "{replayed}");
    assert_eq!(replayed["text"], "missed");
    assert_eq!(replayed["seq"], 1);
    assert_eq!(replayed["replay"], true);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_websocket_clients_then_closes_1001() {
    let mut server = start(|_| {}).await;
    let mut ws = Ws::connect(&server).await;
    ws.hello("leaving").await;
    server.begin_stop();
    let (values, close) = ws.until_closed().await;
    assert_eq!(values.len(), 1, "{values:?}");
    assert_eq!(values[0]["event"], "shutdown", "{values:?}");
    assert_eq!(close, Some(1001));
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_keeps_its_connection_slot_for_its_whole_life() {
    let server = start(|c| c.max_connections = 1).await;
    let mut ws = Ws::connect(&server).await;
    ws.hello("only").await;
    let mut refused: Raw = server.raw().await;
    let event = refused.event().await;
    assert_eq!(code(&event), "server_full", "{event}");
    let pong = ws.call(json!({"op": "ping"})).await;
    assert_eq!(pong["ok"], true, "{pong}");
    server.stop().await;
}

#[tokio::test]
async fn a_text_dialect_user_and_a_websocket_user_share_a_room() {
    let server = start(|c| c.text_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let mut web = Ws::connect(&server).await;
    web.hello("web").await;
    let (mut tom, _) = TextConn::connect(server.text.unwrap()).await;
    assert!(tom.call("HELLO tom").await.0.starts_with("+OK"));
    let created = web.call(json!({"op": "create_room", "room": "r"})).await;
    assert_eq!(created["ok"], true, "{created}");
    let (status, members) = tom.call("JOIN_ROOM r").await;
    assert!(status.starts_with("+OK 2 "), "{status}");
    assert_eq!(members, ["= web", "= tom"]);
    assert_eq!(web.event().await["event"], "joined");
    assert_eq!(tom.call("SAY r from nc").await.0, "+OK 1");
    let heard = web.event().await;
    assert_eq!(
        (&heard["from"], &heard["text"]),
        (&json!("tom"), &json!("from nc"))
    );
    let said = web
        .call(json!({"op": "say", "room": "r", "text": "from the web"}))
        .await;
    assert_eq!(said["seq"], 2, "{said}");
    assert_eq!(tom.event().await, "* room_message r 2 web: from the web");
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_that_says_no_hello_in_time_is_told_and_closed() {
    let server = start(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let mut ws = Ws::connect(&server).await;
    let (values, close) = ws.until_closed().await;
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(values[0]["event"], "welcome");
    assert_eq!(code(&values[1]), "timeout", "{values:?}");
    assert_eq!(close, Some(1008));
    server.stop().await;
}

#[tokio::test]
async fn a_text_message_that_is_not_utf8_is_refused_with_1007() {
    let server = start(|_| {}).await;
    let http = server.http.unwrap();
    // A client library will not send invalid UTF-8 as text: write the frame by hand
    // after the library's handshake, masked with a zero key.
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("websocket handshake");
    let mut stream = match socket.into_inner() {
        MaybeTlsStream::Plain(stream) => stream,
        _ => unreachable!("ws:// is plain TCP"),
    };
    stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .await
        .unwrap();
    let mut ws = Ws {
        socket: WebSocketStream::from_raw_socket(
            MaybeTlsStream::Plain(stream),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await,
        events: VecDeque::new(),
        next_id: 0,
    };
    let (values, close) = ws.until_closed().await;
    assert_eq!(values.last().map(code), Some("bad_request"), "{values:?}");
    assert_eq!(close, Some(1007));
    server.stop().await;
}

/// A quiet client is pinged (after 30 s by default; here sooner, in real time); the
/// client's pong is traffic, and requests are served as before.
#[tokio::test]
async fn a_quiet_websocket_client_is_pinged() {
    let ping = Duration::from_millis(300);
    let server = start(|c| c.ws_ping = ping).await;
    let mut ws = Ws::connect(&server).await;
    ws.hello("quiet").await;
    for _ in 0..2 {
        let start = tokio::time::Instant::now();
        let next = tokio::time::timeout(PATIENCE, ws.socket.next())
            .await
            .expect("a ping in time");
        assert!(matches!(next, Some(Ok(Message::Ping(_)))), "{next:?}");
        assert!(start.elapsed() >= ping * 9 / 10, "{:?}", start.elapsed());
        // The library queues the pong; a flush sends it.
        ws.socket.flush().await.unwrap();
    }
    let pong = ws.call(json!({"op": "ping"})).await;
    assert_eq!(pong["ok"], true, "{pong}");
    server.stop().await;
}

/// A WebSocket client that does not read is cut as a slow consumer, as a TCP one is:
/// the `slow_consumer` error comes last, then close 1008.
#[tokio::test]
async fn a_websocket_client_that_does_not_read_is_cut_as_a_slow_consumer() {
    let server = start(|c| {
        c.queue_depth = 16;
        c.write_deadline = Duration::from_millis(300);
    })
    .await;
    let mut slow = Ws::connect(&server).await;
    slow.hello("slow").await;
    let created = slow
        .call(json!({"op": "create_room", "room": "flood"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let mut fast = server.raw().await;
    fast.hello("fast").await;
    let joined = fast.call(json!({"op": "join_room", "room": "flood"})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    let text = "x".repeat(60 * 1024);
    for _ in 0..150 {
        let said = fast
            .call(json!({"op": "say", "room": "flood", "text": text}))
            .await;
        assert_eq!(said["ok"], true, "{said}");
    }
    let (values, close) = slow.until_closed().await;
    let last = values.last().expect("something before the close");
    assert_eq!(code(last), "slow_consumer", "{last}");
    assert_eq!(close, Some(1008));
    server.stop().await;
}
