//! Acknowledged inbox reads: `inbox` with `peek` leaves the page unread, `ack` marks
//! read what was handed over, and nothing is lost when a connection or a client dies
//! in between; our own clients read that way.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use switchboard::Client;
use switchboard::server::Config;
use switchboard::store::KeepRead;

use crate::common::{PATIENCE, TestServer, client_code, run_switchboard};
use crate::wire::{LabConn, Serve, dict, get, s};

fn texts(page: &switchboard::protocol::InboxPage) -> Vec<&str> {
    page.messages.iter().map(|m| m.text.as_str()).collect()
}

fn ids(page: &switchboard::protocol::InboxPage) -> Vec<u64> {
    page.messages.iter().map(|m| m.message_id).collect()
}

/// Sends `texts` from `from` to `to` (whose name is made known first); returns their
/// message ids.
async fn mail(addr: impl std::fmt::Display, from: &str, to: &str, texts: &[&str]) -> Vec<u64> {
    let addr = addr.to_string();
    let recipient = hello_when_free(&addr, to).await;
    recipient.bye().await.unwrap();
    let sender = Client::connect(addr.as_str()).await.unwrap();
    sender.hello(from).await.unwrap();
    let mut ids = Vec::new();
    for text in texts {
        ids.push(sender.send(to, text).await.unwrap());
    }
    sender.bye().await.unwrap();
    ids
}

/// Says hello as `name`, retrying while the server has not yet seen the connection
/// that held it end.
async fn hello_when_free(addr: impl std::fmt::Display, name: &str) -> Client {
    let addr = addr.to_string();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let client = Client::connect(addr.as_str()).await.unwrap();
        match client.hello(name).await {
            Ok(_) => return client,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(client_code(Err::<(), _>(e)), "name_taken");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{name} still taken: {e}"),
        }
    }
}

#[tokio::test]
async fn a_peek_leaves_the_page_unread_until_a_plain_inbox_takes_it() {
    let server = TestServer::start().await;
    let sent = mail(server.addr, "jose", "nina", &["one", "two", "three"]).await;
    let nina = server.client("nina").await;

    let first = nina.inbox_peek(Some(2)).await.unwrap();
    assert_eq!(texts(&first), ["one", "two"]);
    assert!(first.more);
    assert_eq!(ids(&first), sent[..2]);
    // Peeked again: the same page, nothing was read.
    assert_eq!(nina.inbox_peek(Some(2)).await.unwrap(), first);
    assert_eq!(nina.inbox_peek(None).await.unwrap().messages.len(), 3);

    // A plain inbox keeps its meaning: read on reply.
    let taken = nina.inbox(None).await.unwrap();
    assert_eq!(texts(&taken), ["one", "two", "three"]);
    assert!(nina.inbox_peek(None).await.unwrap().messages.is_empty());
    assert_eq!(nina.ack(u64::MAX).await.unwrap(), 0);
    server.stop().await;
}

#[tokio::test]
async fn ack_marks_read_exactly_the_unread_mail_up_to_its_id() {
    let server = TestServer::start().await;
    let sent = mail(server.addr, "jose", "nina", &["a", "b", "c", "d"]).await;
    let to_ana = mail(server.addr, "jose", "ana", &["for ana"]).await;
    let nina = server.client("nina").await;
    let ana = server.client("ana").await;

    // Below the first id: nothing.
    assert_eq!(nina.ack(sent[0] - 1).await.unwrap(), 0);
    assert_eq!(nina.ack(sent[1]).await.unwrap(), 2);
    assert_eq!(texts(&nina.inbox_peek(None).await.unwrap()), ["c", "d"]);
    // Again, or another user's id below nina's unread: nothing more.
    assert_eq!(nina.ack(sent[1]).await.unwrap(), 0);
    assert!(to_ana[0] > sent[3]);
    // ana's message has a higher id than all of nina's: acking up to it marks nina's
    // own, never ana's.
    assert_eq!(nina.ack(to_ana[0]).await.unwrap(), 2);
    assert!(nina.inbox_peek(None).await.unwrap().messages.is_empty());
    assert_eq!(texts(&ana.inbox_peek(None).await.unwrap()), ["for ana"]);
    // ana acks ids that were nina's: they are not hers, nothing happens to hers.
    assert_eq!(ana.ack(sent[3]).await.unwrap(), 0);
    assert_eq!(texts(&ana.inbox_peek(None).await.unwrap()), ["for ana"]);
    server.stop().await;
}

#[tokio::test]
async fn acking_without_a_hello_is_refused_and_a_large_id_is_no_error() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    let _welcome = raw.event().await;
    let refused = raw.call(json!({"op": "ack", "up_to": 1})).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "not_registered", "{refused}");
    raw.call(json!({"op": "hello", "name": "nobody-with-mail"}))
        .await;
    let reply = raw.call(json!({"op": "ack", "up_to": u64::MAX})).await;
    assert_eq!(
        (&reply["ok"], &reply["acked"]),
        (&json!(true), &json!(0)),
        "{reply}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_wire_shape_of_peek_and_ack() {
    let server = TestServer::start().await;
    let sent = mail(server.addr, "jose", "nina", &["hi"]).await;
    let mut raw = server.raw().await;
    raw.hello("nina").await;
    let page = raw
        .call(json!({"op": "inbox", "peek": true, "limit": 10}))
        .await;
    assert_eq!(page["ok"], true, "{page}");
    assert_eq!(page["messages"][0]["message_id"], sent[0]);
    assert_eq!(page["messages"][0]["text"], "hi");
    assert_eq!(page["more"], false);
    let acked = raw.call(json!({"op": "ack", "up_to": sent[0]})).await;
    let id = &acked["id"];
    assert_eq!(acked, json!({"id": id, "ok": true, "acked": 1}));
    server.stop().await;
}

/// The reply to a peek is in the client's socket buffer, unread, when the connection
/// is reset: with a plain inbox those messages would be gone (shown first); with a
/// peek a new connection finds them.
#[tokio::test]
async fn a_connection_reset_after_a_peek_loses_nothing() {
    let server = TestServer::start().await;
    mail(server.addr, "jose", "nina", &["lost?"]).await;
    let reset_after = async |request: serde_json::Value| {
        let mut raw = server.raw().await;
        raw.hello("nina").await;
        raw.send(&request).await;
        // Waits, without reading it, until the reply is here: the server has served it.
        let mut byte = [0; 1];
        tokio::time::timeout(PATIENCE, raw.stream.peek(&mut byte))
            .await
            .unwrap()
            .unwrap();
        socket2::SockRef::from(&raw.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(raw);
    };

    reset_after(json!({"op": "inbox", "id": 2})).await;
    let nina = hello_when_free(server.addr, "nina").await;
    assert!(nina.inbox_peek(None).await.unwrap().messages.is_empty());
    drop(nina);

    mail(server.addr, "jose", "nina", &["kept"]).await;
    reset_after(json!({"op": "inbox", "peek": true, "id": 2})).await;
    let nina = hello_when_free(server.addr, "nina").await;
    let page = nina.read_inbox(None).await.unwrap();
    assert_eq!(texts(&page), ["kept"]);
    assert_eq!(page.ack().await.unwrap(), 1);
    assert!(nina.inbox_peek(None).await.unwrap().messages.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_library_helper_acks_only_what_was_handed_over() {
    let server = TestServer::start().await;
    mail(server.addr, "jose", "nina", &["1", "2", "3"]).await;
    let nina = server.client("nina").await;
    // Dropped without an ack: read again.
    let page = nina.read_inbox(Some(2)).await.unwrap();
    assert_eq!(texts(&page), ["1", "2"]);
    drop(page);
    let page = nina.read_inbox(Some(2)).await.unwrap();
    assert_eq!(texts(&page), ["1", "2"]);
    assert_eq!(page.ack().await.unwrap(), 2);
    let page = nina.read_inbox(Some(2)).await.unwrap();
    assert_eq!((texts(&page), page.more), (vec!["3"], false));
    assert_eq!(page.ack().await.unwrap(), 1);
    let empty = nina.read_inbox(None).await.unwrap();
    assert!(empty.messages.is_empty());
    assert_eq!(empty.ack().await.unwrap(), 0);
    server.stop().await;
}

/// A served page never exceeds the frame budget, peeked or not: a peeker pages
/// through large mail one ack at a time.
#[tokio::test]
async fn peeked_pages_keep_the_frame_budget() {
    let server = TestServer::start_tweaked(|c| c.max_frame = 4096).await;
    let big = ["a", "b", "c"].map(|c| c.repeat(2000));
    mail(
        server.addr,
        "jose",
        "nina",
        &big.each_ref().map(String::as_str),
    )
    .await;
    let nina = server.client("nina").await;
    let mut seen = Vec::new();
    loop {
        let page = nina.read_inbox(None).await.unwrap();
        assert_eq!(page.messages.len(), 1);
        seen.push(page.messages[0].text.clone());
        let more = page.more;
        page.ack().await.unwrap();
        if !more {
            break;
        }
    }
    assert_eq!(seen, big);
    server.stop().await;
}

/// An answered ack is committed: SIGKILL right after it, and the restarted server
/// still has those messages read (deleted, or kept read with --keep-read), with the
/// store on a thread of its own and inline.
#[tokio::test(flavor = "multi_thread")]
async fn an_answered_ack_survives_kill_9() {
    for (keep_read, threads) in [("0", "1"), ("7", "2")] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("acks.db");
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--keep-read",
            keep_read,
            "--threads",
            threads,
        ];
        let mut serve = Serve::start(&db, &args, 1).await;
        let addr = serve.addrs[0].clone();
        let sent = mail(&addr, "jose", "nina", &["1", "2", "3"]).await;
        let nina = Client::connect(addr.as_str()).await.unwrap();
        nina.hello("nina").await.unwrap();
        assert_eq!(nina.inbox_peek(None).await.unwrap().messages.len(), 3);
        assert_eq!(nina.ack(sent[1]).await.unwrap(), 2);
        serve.child.kill().await.unwrap();
        drop(nina);

        let serve = Serve::start(&db, &args, 1).await;
        let nina = Client::connect(serve.addrs[0].as_str()).await.unwrap();
        nina.hello("nina").await.unwrap();
        let page = nina.inbox_peek(None).await.unwrap();
        assert_eq!(
            texts(&page),
            ["3"],
            "--keep-read {keep_read} --threads {threads}"
        );
        assert_eq!(nina.ack(sent[1]).await.unwrap(), 0);
        drop(serve);
    }
}

/// With --keep-read, acked mail is kept read, not deleted: the store counts it out of
/// the unread.
#[tokio::test]
async fn with_keep_read_acked_mail_is_no_longer_unread() {
    let server = TestServer::start_tweaked(|c: &mut Config| c.keep_read = KeepRead::days(7)).await;
    let sent = mail(server.addr, "jose", "nina", &["1", "2"]).await;
    let nina = server.client("nina").await;
    assert_eq!(nina.ack(sent[0]).await.unwrap(), 1);
    assert_eq!(texts(&nina.inbox(None).await.unwrap()), ["2"]);
    server.stop().await;
}

#[tokio::test]
async fn the_lab_dialect_peeks_and_acks_with_the_same_dicts() {
    let server = TestServer::start_dialects().await;
    let sent = mail(server.addr, "jose", "ana", &["x", "y"]).await;
    let (mut lab, _) = LabConn::connect(server.lab.unwrap()).await;
    let int = |n: u64| serde_pickle::Value::I64(n as i64);
    let ok = Some(&serde_pickle::Value::Bool(true));
    lab.send(&dict(&[
        ("op", s("hello")),
        ("id", int(1)),
        ("name", s("ana")),
    ]))
    .await;
    assert_eq!(get(&lab.reply().await, "ok"), ok);
    for id in [2, 3] {
        lab.send(&dict(&[
            ("op", s("inbox")),
            ("id", int(id)),
            ("peek", serde_pickle::Value::Bool(true)),
        ]))
        .await;
        let page = lab.reply().await;
        assert_eq!(get(&page, "ok"), ok, "{page}");
        match get(&page, "messages") {
            Some(serde_pickle::Value::List(list)) => assert_eq!(list.len(), 2, "{page}"),
            other => panic!("{other:?}"),
        }
    }
    lab.send(&dict(&[
        ("op", s("ack")),
        ("id", int(4)),
        ("up_to", int(sent[0])),
    ]))
    .await;
    let acked = lab.reply().await;
    assert_eq!(get(&acked, "acked"), Some(&int(1)), "{acked}");
    lab.send(&dict(&[("op", s("inbox")), ("id", int(5))])).await;
    let page = lab.reply().await;
    match get(&page, "messages") {
        Some(serde_pickle::Value::List(list)) => {
            assert_eq!(list.len(), 1, "{page}");
            assert_eq!(get(&list[0], "text"), Some(&s("y")));
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// `switchboard inbox` prints every page and leaves nothing unread; one whose output
/// is gone before it printed anything leaves the mail unread.
#[tokio::test(flavor = "multi_thread")]
async fn the_inbox_command_acks_only_what_it_printed() {
    let server = TestServer::start_tweaked(|c| c.max_frame = 4096).await;
    let addr = server.addr.to_string();
    let long = "z".repeat(3000);
    mail(server.addr, "jose", "nina", &["first", &long, "last"]).await;

    // Its stdout is closed before it starts: nothing can be printed, nothing is acked.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(["inbox", "--addr", &addr, "--name", "nina"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let quiet = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        drop(child.stdout.take());
        child.wait().unwrap()
    });
    tokio::time::timeout(PATIENCE, quiet)
        .await
        .unwrap()
        .unwrap();
    let nina = hello_when_free(server.addr, "nina").await;
    // Acks go oldest first: the oldest still unread means none was acked.
    let page = nina.inbox_peek(None).await.unwrap();
    assert_eq!((texts(&page), page.more), (vec!["first"], true));
    nina.bye().await.unwrap();
    drop(nina);

    let printed = run_switchboard(&["inbox", "--addr", &addr, "--name", "nina"], "").await;
    assert!(printed.status.success(), "{printed:?}");
    let out = String::from_utf8_lossy(&printed.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with(" jose: first"), "{out}");
    assert!(lines[1].ends_with(&long), "{out}");
    assert!(lines[2].ends_with(" jose: last"), "{out}");
    let again = run_switchboard(&["inbox", "--addr", &addr, "--name", "nina"], "").await;
    assert_eq!(String::from_utf8_lossy(&again.stdout), "No new messages.\n");
    server.stop().await;
}

/// The menu client's "Get my messages" shows a page, acks it, and only then asks for
/// the next: every message shown once, in order, however many pages.
#[tokio::test(flavor = "multi_thread")]
async fn the_menu_client_shows_every_page_once_and_acks_it() {
    use expectrl::{Eof, Expect, Session};

    let server = TestServer::start_tweaked(|c| c.max_frame = 4096).await;
    let addr = server.addr.to_string();
    let pages = ["p1", "p2", "p3"].map(|tag| format!("{tag}{}", "-".repeat(2000)));
    mail(
        server.addr,
        "jose",
        "nina",
        &pages.each_ref().map(String::as_str),
    )
    .await;
    let shown = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["connect", "--addr", &addr, "--name", "nina"])
            .env("NO_COLOR", "1");
        let mut menu = Session::spawn(command).expect("spawn on a pty");
        menu.set_expect_timeout(Some(PATIENCE));
        menu.expect("Your option <enter a number>:").unwrap();
        menu.send_line("3").unwrap();
        let shown = menu.expect("Your option <enter a number>:").unwrap();
        let shown = String::from_utf8_lossy(shown.before()).into_owned();
        menu.send_line("3").unwrap();
        menu.expect("No new messages.").unwrap();
        menu.send_line("6").unwrap();
        menu.expect(Eof).unwrap();
        shown
    })
    .await
    .unwrap();
    assert_eq!(shown.matches("My messages:").count(), 1, "{shown}");
    let at = |tag: &str| {
        assert_eq!(shown.matches(tag).count(), 1, "{tag} in {shown}");
        shown.find(tag).unwrap()
    };
    assert!(at("p1-") < at("p2-") && at("p2-") < at("p3-"), "{shown}");
    assert!(!shown.contains("No new messages."), "{shown}");
    server.stop().await;
}
