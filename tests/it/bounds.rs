//! Every numeric flag of `serve` has a range, refused in one line naming the flag; and
//! the room bounds a client meets.

use assert_cmd::Command;
use serde_json::json;

use crate::common::{TestServer, code};

#[test]
fn out_of_range_serve_flags_are_refused_naming_the_flag_and_the_range() {
    let cases: &[(&str, &str)] = &[
        ("--threads", "0"),
        ("--threads", "100000"),
        ("--commit-batch", "0"),
        ("--handshake-timeout", "1e300"),
        ("--idle-timeout", "1e20"),
        ("--idle-timeout", "NaN"),
        ("--queue-depth", "-1"),
        ("--max-pending", "12"),
        ("--write-deadline", "inf"),
        ("--max-frame", "1"),
        ("--max-text", "70000"),
        ("--max-connections", "0"),
        ("--max-rooms", "-5"),
        ("--max-rooms-per-client", "0"),
        ("--max-room-members", "1"),
    ];
    for (flag, value) in cases {
        let out = Command::cargo_bin("switchboard")
            .unwrap()
            .args(["serve", "--db", "/nonexistent/never-opened.db", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag) && err.contains(&format!("'{value}'")) && err.contains("not in"),
            "{flag} {value}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test]
async fn rooms_are_bounded_in_number_per_client_and_in_members() {
    let server = TestServer::start_tweaked(|c| {
        c.rooms.rooms = 3;
        c.rooms.per_client = 2;
        c.rooms.members = 2;
    })
    .await;
    let mut a = server.raw().await;
    a.hello("a").await;
    for room in ["r1", "r2"] {
        assert_eq!(
            a.call(json!({"op": "create_room", "room": room})).await["ok"],
            true
        );
    }
    let third = a.call(json!({"op": "create_room", "room": "r3"})).await;
    assert_eq!(code(&third), "too_large", "{third}");
    assert!(
        third["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-rooms-per-client")
    );

    let mut b = server.raw().await;
    b.hello("b").await;
    assert_eq!(
        b.call(json!({"op": "create_room", "room": "r3"})).await["ok"],
        true
    );
    let fourth = b.call(json!({"op": "create_room", "room": "r4"})).await;
    assert_eq!(code(&fourth), "server_full", "{fourth}");
    assert!(
        fourth["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-rooms")
    );

    assert_eq!(
        b.call(json!({"op": "join_room", "room": "r1"})).await["ok"],
        true
    );
    let mut c = server.raw().await;
    c.hello("c").await;
    let full = c.call(json!({"op": "join_room", "room": "r1"})).await;
    assert_eq!(code(&full), "server_full", "{full}");
    assert!(
        full["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-room-members")
    );
    // Closing a room makes room for another.
    assert_eq!(
        a.call(json!({"op": "close_room", "room": "r2"})).await["ok"],
        true
    );
    assert_eq!(
        c.call(json!({"op": "create_room", "room": "r5"})).await["ok"],
        true
    );
    server.stop().await;
}

/// Unfinished frames count against one budget for the whole server: the connection
/// that would take it over is told `too_large` and closed; the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_are_bounded_in_all() {
    let server = TestServer::start_tweaked(|c| c.max_partial_total = 1 << 20).await;
    let pad = "p".repeat(800_000);
    let frame = |id: u64| {
        let body = json!({"id": id, "op": "ping", "pad": pad}).to_string();
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    };
    let mut first = server.raw().await;
    first.hello("first").await;
    let mut second = server.raw().await;
    second.hello("second").await;
    let (a, b) = (frame(1), frame(2));
    first.send_bytes(&a[..600_000]).await;
    // Until the server has read the first's part, the second's might be read first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    second.send_bytes(&b[..600_000]).await;
    let last = second.until_closed().await;
    let told = last.last().expect("told why");
    assert_eq!(code(told), "too_large", "{told}");
    assert!(
        told["message"]
            .as_str()
            .unwrap()
            .contains("--max-partial-total")
    );
    first.send_bytes(&a[600_000..]).await;
    let answer = first.response(Some(1)).await;
    assert_eq!(answer["ok"], true, "the first's frame was whole: {answer}");
    server.stop().await;
}

/// `--max-text` lowers the longest text a message may carry, for sends and says alike.
#[tokio::test]
async fn max_text_is_a_bound_of_its_own() {
    let server = TestServer::start_tweaked(|c| c.max_text = 10).await;
    let mut a = server.raw().await;
    a.hello("a").await;
    let long = a
        .call(json!({"op": "send", "to": "a", "text": "eleven byte"}))
        .await;
    assert_eq!(code(&long), "too_large", "{long}");
    assert!(
        long["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 10 bytes")
    );
    a.call(json!({"op": "create_room", "room": "r"})).await;
    let say = a
        .call(json!({"op": "say", "room": "r", "text": "eleven byte"}))
        .await;
    assert_eq!(code(&say), "too_large", "{say}");
    let fits = a
        .call(json!({"op": "send", "to": "a", "text": "ten bytes!"}))
        .await;
    assert_eq!(fits["ok"], true, "{fits}");
    server.stop().await;
}
