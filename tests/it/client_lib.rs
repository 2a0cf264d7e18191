//! The client library's own care for its connection: keepalive pings, a server that
//! stops answering, the connect-and-welcome timeout, another dialect's greeting and
//! the server's error events, each said in words.

use std::time::Duration;

use bytes::BytesMut;
use serde_json::json;
use switchboard::Client;
use switchboard::client::{ClientError, ClientOptions, Greeting};
use switchboard::protocol::{ErrorCode, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{PATIENCE, TestServer, next_event};

fn short(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A listener that greets each connection with a native welcome (or with `greeting`)
/// and then reads everything and answers nothing: a server that has hung.
async fn mute_server(greeting: Option<Vec<u8>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let greeting = greeting.clone();
            tokio::spawn(async move {
                let bytes = greeting.unwrap_or_else(|| {
                    let welcome = json!({"event": "welcome", "client_id": 1,
                        "server": "mute", "protocol": 1});
                    let mut buf = BytesMut::new();
                    switchboard::frame::encode(welcome.to_string().as_bytes(), &mut buf);
                    buf.to_vec()
                });
                let _ = stream.write_all(&bytes).await;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_quiet_client_keeps_its_connection_by_pinging() {
    let server = TestServer::start_tweaked(|c| c.idle_timeout = Duration::from_secs(1)).await;
    let options = ClientOptions::default().keepalive(short(300), short(1000));
    let quiet = Client::connect_with(server.addr, &options).await.unwrap();
    quiet.hello("quiet").await.unwrap();
    tokio::time::sleep(short(2500)).await;
    let users = quiet
        .users()
        .await
        .expect("still connected after 2.5 s of quiet");
    assert_eq!(users.len(), 1);
    assert!(quiet.ended().is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_stops_answering_is_given_up_in_words() {
    let addr = mute_server(None).await;
    let options = ClientOptions::default().keepalive(short(100), short(200));

    // A request that is never answered.
    let client = Client::connect_with(addr, &options).await.unwrap();
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(PATIENCE, client.ping())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, ClientError::Unresponsive(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        e.to_string(),
        "the server did not answer for 0.2 s; the connection is taken as lost"
    );
    assert!(matches!(
        client.ping().await,
        Err(ClientError::Unresponsive(_))
    ));

    // Nobody asks anything: the keepalive's own ping goes unanswered, the events end.
    let mut idle = Client::connect_with(addr, &options).await.unwrap();
    let mut events = idle.take_events().unwrap();
    let end = tokio::time::timeout(PATIENCE, events.recv()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    assert!(matches!(idle.ended(), Some(ClientError::Unresponsive(_))));
}

#[tokio::test]
async fn a_silent_host_is_a_timeout_not_a_hang() {
    let addr = mute_server(Some(Vec::new())).await;
    let options = ClientOptions::default().connect_timeout(short(200));
    let e = Client::connect_with(addr, &options).await.err().unwrap();
    assert!(matches!(e, ClientError::NoWelcome { .. }), "{e:?}");
    assert!(
        e.to_string().contains("sent no welcome within 0.2 s"),
        "{e}"
    );
}

#[tokio::test]
async fn another_dialects_greeting_is_named() {
    let server = TestServer::start_dialects().await;
    let e = Client::connect(server.lab.unwrap()).await.err().unwrap();
    assert!(
        matches!(e, ClientError::OtherDialect(Greeting::Lab)),
        "{e:?}"
    );
    let words = e.to_string();
    assert!(words.contains("lab-dialect (pickle) listener"), "{words}");
    assert!(words.contains("connect --dialect lab"), "{words}");
    let e = Client::connect(server.text.unwrap()).await.err().unwrap();
    assert!(
        matches!(e, ClientError::OtherDialect(Greeting::Text)),
        "{e:?}"
    );
    assert!(e.to_string().contains("text dialect"), "{e}");
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_is_said_in_words() {
    let server = TestServer::start_tweaked(|c| c.max_connections = 1).await;
    let first = server.client("first").await;
    let e = Client::connect(server.addr).await.err().unwrap();
    match &e {
        ClientError::Refused(body) => assert_eq!(body.code, ErrorCode::ServerFull),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("the server turned the connection away: the server is full"),
        "{e}"
    );
    drop(first);
    server.stop().await;
}

/// The server's `error` event before it closes reaches the event stream, and what
/// fails afterwards says why.
#[tokio::test]
async fn the_servers_last_words_are_kept() {
    let server =
        TestServer::start_tweaked(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let mut slow = Client::connect(server.addr).await.unwrap();
    let mut events = slow.take_events().unwrap();
    match next_event(&mut events).await {
        Event::Error { code, .. } => assert_eq!(code, ErrorCode::Timeout),
        other => panic!("expected the timeout, got {other:?}"),
    }
    let end = tokio::time::timeout(PATIENCE, events.recv()).await.unwrap();
    assert!(end.is_none());
    let e = slow.users().await.unwrap_err();
    assert!(matches!(&e, ClientError::Dropped(body) if body.code == ErrorCode::Timeout));
    assert!(
        e.to_string()
            .starts_with("the server closed the connection: the server timed the connection out"),
        "{e}"
    );
    server.stop().await;
}

#[tokio::test]
async fn addresses_as_people_type_them() {
    let server = TestServer::start().await;
    let port = server.addr.port().to_string();
    for typed in [port.clone(), format!("localhost:{port}")] {
        let addr = switchboard::client::resolve_addr(&typed).await.unwrap();
        let client = Client::connect(addr).await.unwrap();
        client.ping().await.unwrap();
    }
    let stream = TcpStream::connect(server.addr).await;
    assert!(stream.is_ok());
    server.stop().await;
}
