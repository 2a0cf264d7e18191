//! The admin pages: `/dashboard` and its feed `/api/dashboard`, who may read them (the
//! admin token), and what the feed shows: every client of every transport, what lab
//! programs sent, the rooms, and the message rate.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::server::{AdminToken, Config, HttpListen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{PATIENCE, TestServer};
use crate::wire::{LabConn, Serve, TextConn, dict, get, s};

/// An HTTP answer: status, head (lower-cased), body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// `GET path` with the extra header lines `headers` (each ending in `\r\n`).
pub async fn fetch(addr: SocketAddr, path: &str, headers: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// The feed's snapshot, as an open (loopback, no token) server gives it.
async fn snapshot(http: SocketAddr, query: &str) -> Value {
    let answer = fetch(http, &format!("/api/dashboard{query}"), "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.head.contains("content-type: application/json"));
    serde_json::from_str(&answer.body).expect("JSON")
}

/// Polls the snapshot until `done` holds of it (the feed is read as the page reads it).
async fn snapshot_until(http: SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let snap = snapshot(http, "").await;
            if done(&snap) {
                return snap;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the snapshot shows it in time")
}

async fn start(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let any = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start_tweaked(|c| {
        c.text_listen = any;
        c.lab_listen = any;
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        tweak(c);
    })
    .await;
    let http = server.http.expect("http listens");
    (server, http)
}

#[tokio::test]
async fn with_an_admin_token_every_admin_page_needs_it() {
    let (server, http) = start(|c| {
        c.admin_token = Some(AdminToken::parse("s3cret-Token").unwrap());
    })
    .await;
    for path in ["/dashboard", "/api/dashboard"] {
        let refused = fetch(http, path, "").await;
        assert_eq!(refused.status, 401, "{path}");
        assert!(
            refused.head.contains("www-authenticate: bearer"),
            "{}",
            refused.head
        );
        assert!(refused.body.contains("admin token"), "{}", refused.body);
        assert!(!refused.body.contains("s3cret"));
        for wrong in [
            "Authorization: Bearer s3cret-token\r\n",
            "Authorization: Bearer s3cret\r\n",
            "Authorization: Basic s3cret-Token\r\n",
        ] {
            assert_eq!(fetch(http, path, wrong).await.status, 401, "{path} {wrong}");
        }
        assert_eq!(
            fetch(http, &format!("{path}?token=wrong"), "").await.status,
            401
        );
        let bearer = fetch(http, path, "Authorization: Bearer s3cret-Token\r\n").await;
        assert_eq!(bearer.status, 200, "{path}");
        let query = fetch(http, &format!("{path}?token=s3cret-Token"), "").await;
        assert_eq!(query.status, 200, "{path}");
    }
    let page = fetch(http, "/dashboard?token=s3cret-Token", "").await;
    assert!(page.head.contains("content-type: text/html"));
    assert!(page.head.contains("referrer-policy: no-referrer"));
    assert!(page.head.contains("cache-control: no-store"));
    for id in ["clients", "lab", "rooms", "rate"] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "#{id}");
    }
    // The page asks for its updates with the token it was opened with.
    assert!(page.body.contains("Authorization: \"Bearer \" + token"));
    // Pages that are not admin pages are not guarded.
    assert_eq!(fetch(http, "/healthz", "").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_a_loopback_listener_is_open() {
    let (server, http) = start(|_| {}).await;
    assert_eq!(fetch(http, "/dashboard", "").await.status, 200);
    let snap = snapshot(http, "").await;
    assert_eq!(snap["clients"], json!([]));
    assert_eq!(snap["lab"]["last"], 0);
    server.stop().await;
}

/// On an address beyond loopback and without `--admin-token`, the server makes up a
/// token and prints it once, as a ready URL; nothing else of it is logged.
#[tokio::test]
async fn beyond_loopback_the_token_made_up_at_start_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(
        &dir.path().join("switchboard.db"),
        &["--listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0"],
        1,
    )
    .await;
    let line = serve.logged("/dashboard?token=").await;
    let url = line[line.find("http://").expect("a URL")..].trim();
    let (place, token) = url.split_once("/dashboard?token=").unwrap();
    let port: u16 = place.rsplit(':').next().unwrap().parse().expect("a port");
    assert_eq!(token.len(), 32, "{line}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
    let http = SocketAddr::from(([127, 0, 0, 1], port));

    assert_eq!(fetch(http, "/dashboard", "").await.status, 401);
    assert_eq!(fetch(http, "/api/dashboard", "").await.status, 401);
    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(fetch(http, "/api/dashboard", &bearer).await.status, 200);
    assert_eq!(
        fetch(http, &format!("/dashboard?token={token}"), "")
            .await
            .status,
        200
    );
    // Refused and allowed requests alike leave the token out of the console: read it
    // up to a line logged after them.
    let native: SocketAddr = serve.addrs[0].parse().unwrap();
    let probe = switchboard::Client::connect(native).await.unwrap();
    probe.hello("probe").await.unwrap();
    serve.line_with("probe").await;
    let with_token = serve.seen.iter().filter(|l| l.contains(token)).count();
    assert_eq!(with_token, 1, "{:#?}", serve.seen);
}

#[tokio::test]
async fn the_feed_shows_every_transport_lab_data_rooms_and_the_rate() {
    let (server, http) = start(|_| {}).await;

    // One client of each transport.
    let nina = server.client("nina").await;
    let (mut tom, _) = TextConn::connect(server.text.unwrap()).await;
    assert!(tom.call("HELLO tom").await.0.starts_with("+OK"));
    let (mut lab, welcome) = LabConn::connect(server.lab.unwrap()).await;
    let lab_id = match get(&welcome, "clientid") {
        Some(serde_pickle::Value::I64(id)) => *id,
        other => panic!("{other:?}"),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("websocket handshake");
    ws.send(Message::text(
        json!({"id": 1, "op": "hello", "name": "wendy"}).to_string(),
    ))
    .await
    .unwrap();
    let ws_id = loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("hello answered")
            .expect("open")
            .expect("message");
        let value: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        if value["id"] == 1 {
            break value["client_id"].as_u64().expect("client id");
        }
    };

    let snap = snapshot_until(http, |snap| {
        snap["clients"].as_array().unwrap().len() == 4
            && snap["clients"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| !c["name"].is_null())
                .count()
                == 3
    })
    .await;
    let clients: Vec<(u64, Value, &str)> = snap["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
            assert!(c["since"].as_str().unwrap().starts_with("20"), "{c}");
            (
                c["client_id"].as_u64().unwrap(),
                c["name"].clone(),
                c["dialect"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        clients,
        [
            (nina.client_id(), json!("nina"), "native"),
            (clients[1].0, json!("tom"), "text"),
            (lab_id as u64, Value::Null, "lab"),
            (ws_id, json!("wendy"), "websocket"),
        ]
    );
    assert_eq!(snap["clients_total"], 4);

    // What the lab program sent, with its fields as given and the known columns.
    lab.send(&dict(&[
        ("Name", s("Ana López")),
        ("email", s("ana@example.edu")),
        ("student_id", s("918273")),
        ("GitHub", s("ana-gh")),
        ("team", serde_pickle::Value::I64(3)),
    ]))
    .await;
    assert_eq!(
        get(&lab.reply().await, "ack"),
        Some(&serde_pickle::Value::Bool(true))
    );
    let snap = snapshot_until(http, |snap| snap["lab"]["last"] == 1).await;
    let sent = &snap["lab"]["submissions"][0];
    assert_eq!(sent["client_id"], lab_id);
    assert_eq!(sent["seq"], 1);
    assert!(sent["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        sent["known"],
        json!({"name": "Ana López", "email": "ana@example.edu", "student_id": "918273", "github": "ana-gh"})
    );
    assert_eq!(
        sent["fields"],
        json!([
            ["GitHub", "ana-gh"],
            ["Name", "Ana López"],
            ["email", "ana@example.edu"],
            ["student_id", "918273"],
            ["team", "3"]
        ])
    );
    assert_eq!(sent["other"], json!([["team", "3"]]));
    // The lab program, which never said hello, is listed with the name it sent.
    let listed = snap["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == lab_id)
        .expect("the lab client");
    assert_eq!(
        (&listed["name"], &listed["sent_name"]),
        (&Value::Null, &json!("Ana López"))
    );
    // A reader that has it already is given nothing again.
    assert_eq!(
        snapshot(http, "?after=1").await["lab"]["submissions"],
        json!([])
    );

    // Rooms with their owner and members.
    nina.create_room("3456").await.unwrap();
    assert!(tom.call("JOIN_ROOM 3456").await.0.starts_with("+OK 2"));
    let snap = snapshot(http, "?after=1").await;
    assert_eq!(snap["rooms_total"], 1);
    assert_eq!(snap["rooms"][0]["room"], "3456");
    assert_eq!(snap["rooms"][0]["owner"], "nina");
    assert_eq!(snap["rooms"][0]["members"], json!(["nina", "tom"]));

    // The rate: the count moves at once, and the second it fell in is closed within
    // about a second.
    let before = snap["rate"]["messages_total"].as_u64().unwrap();
    nina.say("3456", "hello room").await.unwrap();
    nina.send("tom", "hello tom").await.unwrap();
    assert_eq!(tom.call("SAY 3456 hi").await.0, "+OK 2");
    let snap = snapshot(http, "?after=1").await;
    assert_eq!(snap["rate"]["messages_total"].as_u64().unwrap(), before + 3);
    let sampled = |snap: &Value| {
        snap["rate"]["per_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
            >= 3
    };
    snapshot_until(http, sampled).await;

    // A client that leaves is gone from the list.
    ws.close(None).await.unwrap();
    drop(ws);
    snapshot_until(http, |snap| {
        snap["clients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["dialect"] != "websocket")
    })
    .await;
    server.stop().await;
}

/// A connection that resumes a parked session is listed under the session's client id
/// and name; the parked session itself, which has no connection, is not listed.
#[tokio::test]
async fn a_resumed_session_is_listed_under_its_client_id() {
    let (server, http) = start(|_| {}).await;
    let mut first = server.raw().await;
    let _ = first.event().await;
    let hello = first.call(json!({"op": "hello", "name": "rita"})).await;
    let (id, token) = (hello["client_id"].clone(), hello["resume_token"].clone());
    drop(first);
    snapshot_until(http, |snap| snap["clients"] == json!([])).await;

    let mut second = server.raw().await;
    let _ = second.event().await;
    let resumed = second
        .call(json!({"op": "hello", "name": "rita", "resume": token}))
        .await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    let snap = snapshot(http, "").await;
    assert_eq!(snap["clients"].as_array().unwrap().len(), 1, "{snap}");
    assert_eq!(snap["clients"][0]["client_id"], id);
    assert_eq!(snap["clients"][0]["name"], "rita");
    assert_eq!(snap["clients"][0]["dialect"], "native");
    server.stop().await;
}
