//! The native protocol byte for byte: welcome, request/response shape, error codes,
//! pipelining, and framing errors that close only their own connection.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::common::{Raw, TestServer, code};

#[tokio::test]
async fn welcome_carries_a_unique_client_id() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut raw = server.raw().await;
        let welcome = raw.event().await;
        assert_eq!(welcome["event"], "welcome");
        assert_eq!(welcome["protocol"], 1);
        assert!(
            welcome["server"]
                .as_str()
                .unwrap()
                .starts_with("switchboard ")
        );
        ids.push(welcome["client_id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    server.stop().await;
}

#[tokio::test]
async fn ping_works_before_hello_and_other_ops_need_it() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.event().await;
    let pong = raw.call(json!({"op": "ping"})).await;
    assert_eq!(pong["ok"], true);
    for op in ["users", "menu", "inbox"] {
        let reply = raw.call(json!({"op": op})).await;
        assert_eq!(reply["ok"], false);
        assert_eq!(code(&reply), "not_registered", "{op}");
    }
    let reply = raw
        .call(json!({"op": "send", "to": "x", "text": "hi"}))
        .await;
    assert_eq!(code(&reply), "not_registered");
    server.stop().await;
}

#[tokio::test]
async fn bad_json_and_unknown_ops_get_errors_and_the_connection_stays() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.hello("nina").await;

    let mut frame = bytes::BytesMut::new();
    switchboard::frame::encode(b"{not json", &mut frame);
    raw.send_bytes(&frame).await;
    let reply = raw.response(None).await;
    assert_eq!(reply["ok"], false);
    assert_eq!(code(&reply), "bad_request");
    assert!(reply["id"].is_null());

    raw.send(&json!({"op": "dance"})).await;
    let reply = raw.response(None).await;
    assert_eq!(code(&reply), "unknown_op");

    let reply = raw.call(json!({"op": "dance"})).await;
    assert_eq!(code(&reply), "unknown_op");
    let reply = raw.call(json!({"op": "send", "to": "nina"})).await;
    assert_eq!(code(&reply), "bad_request", "missing field");
    let reply = raw.call(json!({"op": 7})).await;
    assert_eq!(code(&reply), "bad_request");

    raw.send(&json!({"id": "seven", "op": "ping"})).await;
    assert_eq!(code(&raw.response(None).await), "bad_request");
    raw.send(&json!([1, 2, 3])).await;
    assert_eq!(code(&raw.response(None).await), "bad_request");

    let pong = raw.call(json!({"op": "ping"})).await;
    assert_eq!(pong["ok"], true, "still serving after every bad request");
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.hello("piper").await;
    let mut batch = bytes::BytesMut::new();
    // Sends among them: a send waits for the store, and what was read behind it
    // must be served after its answer, not before.
    let ops = ["ping", "send", "users", "menu", "send", "inbox", "dance"];
    for id in 0..210u64 {
        let op = ops[id as usize % ops.len()];
        let request = json!({"id": id, "op": op, "to": "piper", "text": format!("m{id}")});
        switchboard::frame::encode(request.to_string().as_bytes(), &mut batch);
    }
    raw.send_bytes(&batch).await;
    for id in 0..210u64 {
        let reply = raw.response(Some(id)).await;
        let op = ops[id as usize % ops.len()];
        assert_eq!(reply["ok"], op != "dance", "{reply}");
        if op == "send" {
            assert!(reply["message_id"].is_u64(), "{reply}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let server = TestServer::start().await;
    let mut good = server.raw().await;
    good.hello("good").await;

    let mut bad = server.raw().await;
    bad.event().await;
    bad.send_bytes(&(2u32 * 1024 * 1024).to_be_bytes()).await;
    let frames = bad.until_closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["event"], "error");
    assert_eq!(code(&frames[0]), "too_large");

    let mut empty = server.raw().await;
    empty.event().await;
    empty.send_bytes(&0u32.to_be_bytes()).await;
    let frames = empty.until_closed().await;
    assert_eq!(code(&frames[0]), "bad_request");

    let reply = good.call(json!({"op": "users"})).await;
    assert_eq!(reply["ok"], true);
    server.stop().await;
}

#[tokio::test]
async fn a_frame_cut_off_by_eof_cleans_up_the_client() {
    let server = TestServer::start().await;
    let mut cut = server.raw().await;
    cut.hello("cut").await;
    cut.send_bytes(&[0, 0, 0, 50, b'{']).await;
    cut.stream.shutdown().await.unwrap();
    assert!(
        cut.until_closed()
            .await
            .iter()
            .all(|f| f["event"] == "error")
    );

    let mut other = server.raw().await;
    other.hello("other").await;
    let users = other.call(json!({"op": "users"})).await;
    assert_eq!(users["users"], json!([{"client_id": 2, "name": "other"}]));
    server.stop().await;
}

#[tokio::test]
async fn a_frame_may_arrive_one_byte_at_a_time() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.event().await;
    let mut frame = bytes::BytesMut::new();
    switchboard::frame::encode(br#"{"id":5,"op":"ping"}"#, &mut frame);
    for byte in frame.iter() {
        raw.send_bytes(&[*byte]).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(raw.response(Some(5)).await["ok"], true);
    server.stop().await;
}

#[tokio::test]
async fn bye_is_answered_then_the_server_closes() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.hello("leaver").await;
    raw.send(&json!({"id": 9, "op": "bye"})).await;
    let frames = raw.until_closed().await;
    assert_eq!(frames, vec![json!({"id": 9, "ok": true})]);

    let mut again = Raw::connect(server.addr).await;
    again.hello("leaver").await;
    server.stop().await;
}
