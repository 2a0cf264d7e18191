//! Resume is the hub's, not a dialect's: a session cut in one dialect is taken back in
//! any other, by `RESUME <name> <token>` at `nc`, a native `hello`, or a lab pickle,
//! with the same parking, replay, takeover and grace as the native tests show.

use std::time::Duration;

use serde_json::json;
use serde_pickle::Value as Pickle;
use switchboard::server::Config;

use crate::common::TestServer;
use crate::resume::{call, create, cut, heard, hello, join, named, unlisted};
use crate::room_seq::replayed;
use crate::wire::{LabConn, TextConn, dict, get, s};

fn dialects(c: &mut Config) {
    let any = Some("127.0.0.1:0".parse().unwrap());
    c.text_listen = any;
    c.lab_listen = any;
    c.inline_store = true;
}

/// The value of `key=` on a text status line.
fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .split(' ')
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {status:?}"))
}

/// A text connection that said `line` (a HELLO or RESUME); returns it and the status.
async fn text(server: &TestServer, line: &str) -> (TextConn, String) {
    let (mut conn, _) = TextConn::connect(server.text.unwrap()).await;
    let (status, _) = conn.call(line).await;
    (conn, status)
}

#[tokio::test]
async fn a_session_cut_in_one_dialect_resumes_in_another() {
    let server = TestServer::start_tweaked(dialects).await;
    let (mut observer, _, _) = named(&server, "observer").await;
    let (mut ana, ana_id, ana_token) = named(&server, "ana").await;
    create(&mut ana, "r").await;
    let (mut bob, hello_line) = text(&server, "HELLO bob").await;
    let bob_id: u64 = hello_line.split(' ').nth(1).unwrap().parse().unwrap();
    let bob_token = field(&hello_line, "token").to_owned();
    assert!(bob.call("JOIN_ROOM r").await.0.starts_with("+OK 2 "));

    // Native to text.
    cut(ana);
    unlisted(&mut observer, "ana").await;
    assert_eq!(bob.call("SAY r one").await.0, "+OK 1");
    let (mut ana, status) = text(&server, &format!("RESUME ana {ana_token}")).await;
    assert!(
        status.starts_with(&format!("+OK {ana_id} ana token=")),
        "{status}"
    );
    assert!(
        status.contains(" resumed=true rooms=r@") && status.ends_with(":1"),
        "{status}"
    );
    assert_eq!(ana.event().await, "* room_message r 1 bob: one");

    // Text to native.
    drop(bob);
    unlisted(&mut observer, "bob").await;
    assert_eq!(ana.call("SAY r two").await.0, "+OK 2");
    let (mut bob, _, reply) = hello(&server, json!({"name": "bob", "resume": bob_token})).await;
    assert_eq!(
        (&reply["resumed"], &reply["client_id"]),
        (&json!(true), &json!(bob_id)),
        "{reply}"
    );
    let missed = bob.event().await;
    assert_eq!(
        (&missed["seq"], replayed(&missed)),
        (&json!(2), true),
        "{missed}"
    );

    // Lab to lab.
    let (mut lab, welcome) = LabConn::connect(server.lab.unwrap()).await;
    lab.send(&dict(&[("op", s("hello")), ("name", s("cy"))]))
        .await;
    let reply = lab.reply().await;
    let Some(Pickle::String(cy_token)) = get(&reply, "resume_token").cloned() else {
        panic!("a token: {reply}");
    };
    lab.send(&dict(&[("op", s("join_room")), ("room", s("r"))]))
        .await;
    assert!(get(&lab.reply().await, "members").is_some());
    drop(lab);
    unlisted(&mut observer, "cy").await;
    call(&mut bob, json!({"op": "say", "room": "r", "text": "three"})).await;
    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    lab.send(&dict(&[
        ("op", s("hello")),
        ("name", s("cy")),
        ("resume", Pickle::String(cy_token)),
    ]))
    .await;
    let reply = lab.reply().await;
    assert_eq!(get(&reply, "resumed"), Some(&Pickle::Bool(true)), "{reply}");
    assert_eq!(get(&reply, "client_id"), get(&welcome, "clientid"));
    let missed = lab.recv().await.unwrap();
    assert_eq!(get(&missed, "seq"), Some(&Pickle::I64(3)), "{missed}");
    assert_eq!(get(&missed, "replay"), Some(&Pickle::Bool(true)));
    server.stop().await;
}

#[tokio::test]
async fn quit_ends_a_text_session_at_once_and_its_token_with_it() {
    let server = TestServer::start_tweaked(dialects).await;
    let (mut tom, hello_line) = text(&server, "HELLO tom").await;
    let token = field(&hello_line, "token").to_owned();
    assert!(tom.call("CREATE_ROOM t").await.0.starts_with("+OK epoch="));
    let (mut member, _, _) = named(&server, "member").await;
    join(&mut member, "t").await;
    tom.send("QUIT").await;
    while tom.line().await.is_some() {}
    let closed = member.event().await;
    assert_eq!(
        closed,
        json!({"event": "room_closed", "room": "t", "by": "tom"})
    );
    let (_, status) = text(&server, &format!("RESUME tom {token}")).await;
    assert!(
        status.contains(" tom token=") && status.ends_with(" resumed=false"),
        "{status}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_live_text_connection_is_taken_over_by_its_token_and_closed() {
    let server = TestServer::start_tweaked(dialects).await;
    let (mut tia, hello_line) = text(&server, "HELLO tia").await;
    let token = field(&hello_line, "token").to_owned();
    let (_, status) = text(&server, &format!("RESUME tia {}", "0".repeat(32))).await;
    assert!(status.starts_with("-ERR name_taken "), "{status}");
    let (_, status) = text(&server, "HELLO tia").await;
    assert!(status.starts_with("-ERR name_taken "), "{status}");

    let (_tia, _, reply) = hello(&server, json!({"name": "tia", "resume": token})).await;
    assert_eq!(reply["resumed"], true, "{reply}");
    let mut rest = Vec::new();
    while let Some(line) = tia.line().await {
        rest.push(line);
    }
    assert!(
        rest.iter().all(|l| l.starts_with('*')),
        "only events, then closed: {rest:?}"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_text_session_cut_is_parked_until_a_hello_or_the_grace_ends_it() {
    let server = TestServer::start_tweaked(dialects).await;
    let (mut host, _, _) = named(&server, "host").await;
    create(&mut host, "h").await;
    let (mut tod, _) = text(&server, "HELLO tod").await;
    assert!(tod.call("JOIN_ROOM h").await.0.starts_with("+OK 2 "));
    let (mut tess, _) = text(&server, "HELLO tess").await;
    assert!(tess.call("CREATE_ROOM own").await.0.starts_with("+OK "));
    join(&mut host, "own").await;
    heard(&mut host).await;
    drop(tod);
    drop(tess);
    unlisted(&mut host, "tod").await;
    unlisted(&mut host, "tess").await;
    assert_eq!(heard(&mut host).await, Vec::<serde_json::Value>::new());

    // A plain HELLO for the parked name ends that session and proceeds.
    let (_, status) = text(&server, "HELLO tod").await;
    assert!(
        status.starts_with("+OK ") && !status.contains("resumed="),
        "{status}"
    );
    let left = host.event().await;
    assert_eq!(left, json!({"event": "left", "room": "h", "name": "tod"}));

    tokio::time::sleep(Duration::from_secs(31)).await;
    let closed = host.event().await;
    assert_eq!(
        closed,
        json!({"event": "room_closed", "room": "own", "by": "tess"})
    );
    server.stop().await;
}

/// Real time: the password is hashed off the runtime's thread.
#[tokio::test]
async fn a_text_password_takes_a_parked_session_over() {
    let server = TestServer::start_tweaked(dialects).await;
    let (mut observer, _, _) = named(&server, "observer").await;
    let (pam, hello_line) = text(&server, "HELLO pam s3cret").await;
    let pam_id = hello_line.split(' ').nth(1).unwrap().to_owned();
    let (_, status) = text(&server, "HELLO pam s3cret").await;
    assert!(status.starts_with("-ERR name_taken "), "live: {status}");
    drop(pam);
    unlisted(&mut observer, "pam").await;
    let (_, status) = text(&server, "HELLO pam wrong").await;
    assert!(status.starts_with("-ERR auth_failed "), "{status}");
    let (_back, status) = text(&server, "HELLO pam s3cret").await;
    assert!(
        status.starts_with(&format!("+OK {pam_id} pam token=")) && status.contains(" resumed=true"),
        "{status}"
    );
    let users = call(&mut observer, json!({"op": "users"})).await;
    assert_eq!(users["users"][1]["name"], "pam", "{users}");
    server.stop().await;
}
