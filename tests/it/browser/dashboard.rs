//! The projector dashboard in a real (headless) Chromium: it shows the class arriving
//! without a reload — clients of every dialect, a room with its owner and members, and
//! a lab program's dict within a second of it being sent.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{Value, json};
use switchboard::server::HttpListen;
use tokio_tungstenite::tungstenite::Message;

use super::harness::{Driver, Page};
use crate::common::TestServer;
use crate::wire::{LabConn, TextConn, dict, s};

/// How long the dashboard may take to show a change (DESIGN.md: within a second).
const WITHIN: Duration = Duration::from_secs(1);

/// Polls `script` on the dashboard until it is truthy; panics after `patience`.
async fn until(page: &Page, what: &str, script: &str, patience: Duration) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let value = page.eval(script).await;
        if !matches!(value, Value::Null | Value::Bool(false)) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard did not show {what} within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_dashboard_shows_clients_rooms_and_a_lab_dict_as_they_arrive() {
    let Some(mut driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start_tweaked(|c| {
        let any = "127.0.0.1:0".parse().unwrap();
        c.http_listen = HttpListen::Given(any);
        c.text_listen = Some(any);
        c.lab_listen = Some(any);
    })
    .await;
    let http = server.http.unwrap();
    // A loopback listener without --admin-token: the page is open to this machine.
    let page = driver.open(&format!("http://{http}/dashboard")).await;
    page.client
        .set_window_size(1280, 800)
        .await
        .expect("a projector-sized window");

    let mut nina = server.raw().await;
    nina.hello("nina").await;
    let created = nina
        .call(json!({"op": "create_room", "room": "3456"}))
        .await;
    assert_eq!(created["ok"], true, "{created}");
    let (mut jose, _) = TextConn::connect(server.text.unwrap()).await;
    assert!(jose.call("HELLO jose").await.0.starts_with("+OK"));
    assert!(jose.call("JOIN_ROOM 3456").await.0.starts_with("+OK"));
    let (mut wendy, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("websocket handshake");
    wendy
        .send(Message::text(
            json!({"id": 1, "op": "hello", "name": "wendy"}).to_string(),
        ))
        .await
        .unwrap();
    until(
        &page,
        "nina, jose and wendy, and the room",
        "const names = [...document.querySelectorAll('#clients [data-client-id]')]\
           .map(row => row.textContent);\
         const room = document.querySelector('#rooms [data-room=\"3456\"]');\
         return ['nina', 'jose', 'wendy'].every(name => names.some(n => n.includes(name)))\
           && room && room.textContent.includes('nina') && room.textContent.includes('jose');",
        Duration::from_secs(5),
    )
    .await;

    for k in 1..=20 {
        assert!(
            jose.call(&format!("SAY 3456 line {k}"))
                .await
                .0
                .starts_with("+OK")
        );
    }

    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    let sent = Instant::now();
    lab.send(&dict(&[
        ("name", s("Ana López")),
        ("email", s("ana@example.edu")),
        ("student_id", s("918273645")),
        ("github", s("ana-gh")),
    ]))
    .await;
    until(
        &page,
        "the lab dict",
        "const lab = document.getElementById('lab').textContent;\
         return lab.includes('Ana López') && lab.includes('ana@example.edu')\
           && lab.includes('918273645') && lab.includes('ana-gh');",
        WITHIN,
    )
    .await;
    let took = sent.elapsed();
    eprintln!("the dashboard showed the lab dict {took:?} after it was sent");
    until(
        &page,
        "messages on the rate plot",
        "return Number(document.getElementById('rate-total').textContent.split(' ')[0]) >= 20;",
        Duration::from_secs(3),
    )
    .await;
    page.screenshot("dashboard").await;
    drop(wendy);
    page.close().await;
    server.stop().await;
}
