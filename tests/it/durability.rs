//! The inbox lives in SQLite: unread mail survives a restart, read mail stays read.

use switchboard::Client;

use crate::common::{TestServer, client_code};

#[tokio::test]
async fn unread_mail_survives_a_restart_and_read_mail_stays_read() {
    let mut first = TestServer::start().await;
    let dir = first.keep_dir().unwrap();
    let db = first.db.clone();

    let reader = first.client("reader").await;
    reader.bye().await.unwrap();
    let writer = first.client("writer").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(writer.send("reader", &format!("m{i}")).await.unwrap());
    }
    drop(writer);
    first.stop().await;

    let second = TestServer::start_on(&db).await;
    let writer = second.client("writer").await;
    // "reader" was seen before the restart, so mail to it is still accepted.
    writer.send("reader", "after restart").await.unwrap();
    assert_eq!(
        client_code(writer.send("stranger", "x").await),
        "no_such_user"
    );
    let reader = second.client("reader").await;
    let page = reader.inbox(Some(5)).await.unwrap();
    let got: Vec<_> = page.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(got, ids[..5]);
    assert!(page.more);
    drop(reader);
    second.stop().await;

    let third = TestServer::start_on(&db).await;
    let reader = third.client("reader").await;
    let page = reader.inbox(None).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m5", "m6", "m7", "m8", "m9", "after restart"]);
    assert!(!page.more);
    third.stop().await;
    drop(dir);
}

#[tokio::test]
async fn graceful_shutdown_tells_clients() {
    let server = TestServer::start().await;
    let mut client = Client::connect(server.addr).await.unwrap();
    let mut events = client.take_events().unwrap();
    client.hello("stayer").await.unwrap();
    server.stop().await;
    let event = crate::common::next_event(&mut events).await;
    assert!(
        matches!(event, switchboard::protocol::Event::Shutdown { .. }),
        "{event:?}"
    );
}

#[tokio::test]
async fn a_restart_binds_the_same_port_at_once() {
    let first = TestServer::start().await;
    let addr = first.addr;
    // Connections the server closes itself leave TIME_WAIT entries on its port.
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(first.client(&format!("c{i}")).await);
    }
    first.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let second = TestServer::start_with(switchboard::server::Config {
        listen: addr,
        db: dir.path().join("again.db"),
        ..Default::default()
    })
    .await;
    assert_eq!(second.addr, addr);
    second.client("back").await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, closer) = switchboard::store::Store::open(&dir.path().join("s.db")).unwrap();
    store.seen("owner").await.unwrap();
    let before = store.commits();
    let sends = (0..500).map(|i| {
        let store = store.clone();
        async move {
            store
                .append("owner".into(), "sender".into(), format!("m{i}"))
                .await
        }
    });
    let ids = futures_util::future::join_all(sends).await;
    assert!(ids.iter().all(Result::is_ok));
    let commits = store.commits() - before;
    assert!(commits < 250, "500 sends took {commits} transactions");
    // Each send was answered only after its transaction: all 500 are readable.
    let page = store
        .take_inbox("owner".into(), 1000, usize::MAX)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 500);
    drop(store);
    tokio::task::spawn_blocking(move || closer.join())
        .await
        .unwrap();
}

/// The store as a task on a single-threaded runtime (`serve --threads 1`): sends queued
/// in the same rounds of the scheduler share a transaction, each is answered once it
/// is committed, and once the last handle is gone the store closes the file, so that
/// it can be opened again.
#[tokio::test]
async fn an_inline_store_shares_transactions_and_closes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inline.db");
    let (store, closer) = switchboard::store::Store::open_inline(&path, 1024).unwrap();
    store.seen("owner").await.unwrap();
    let before = store.commits();
    let sends = (0..500).map(|i| store.append("owner".into(), "sender".into(), format!("m{i}")));
    let ids = futures_util::future::join_all(sends).await;
    assert!(ids.iter().all(Result::is_ok));
    let commits = store.commits() - before;
    assert!(commits < 10, "500 sends took {commits} transactions");
    let page = store
        .take_inbox("owner".into(), 1000, usize::MAX)
        .await
        .unwrap();
    let texts: Vec<String> = page.messages.into_iter().map(|m| m.text).collect();
    let expected: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    drop(store);
    closer.closed().await;

    // The exclusive lock went with the file: a new store opens it and finds it all read.
    let (store, closer) = switchboard::store::Store::open_inline(&path, 1024).unwrap();
    let page = store
        .take_inbox("owner".into(), 10, usize::MAX)
        .await
        .unwrap();
    assert!(page.messages.is_empty());
    drop(store);
    closer.closed().await;
}

/// Outside a runtime there is nothing to run an inline store on: an error, not a panic.
#[test]
fn an_inline_store_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let opened = switchboard::store::Store::open_inline(&dir.path().join("x.db"), 16);
    assert!(matches!(
        opened,
        Err(switchboard::store::StoreError::NoRuntime)
    ));
}

/// A whole server with the store inline keeps unread mail through a restart.
#[tokio::test]
async fn a_server_with_the_store_inline_keeps_mail_through_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inline.db");
    let first = TestServer::start_on_tweaked(&db, |c| c.inline_store = true).await;
    first.client("reader").await.bye().await.unwrap();
    let writer = first.client("writer").await;
    for i in 0..20 {
        writer.send("reader", &format!("m{i}")).await.unwrap();
    }
    drop(writer);
    first.stop().await;

    let second = TestServer::start_on_tweaked(&db, |c| c.inline_store = true).await;
    let reader = second.client("reader").await;
    let page = reader.inbox(None).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    drop(reader);
    second.stop().await;
}

#[tokio::test]
async fn bench_send_reports_acknowledged_sends() {
    let server = TestServer::start().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "send",
            "-n",
            "4",
            "--duration",
            "0.3",
            "--scratch",
            "--json",
            "--addr",
        ])
        .arg(server.addr.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["scenario"], "send");
    assert_eq!(report["connections"], 4);
    assert!(report["ops"].as_u64().unwrap() > 0, "{report}");
    for field in ["ops_per_sec", "p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(report.get(field).is_some(), "{field} in {report}");
    }
    server.stop().await;
}

/// A store written before unread mail was indexed in memory, and before messages
/// referred to users by id: its (recipient, id) index is dropped, its tables are
/// rebuilt with user ids (keeping message ids and password hashes), the mail in it
/// is delivered in order, once, and mail read before is kept as read (`--keep-read`).
#[tokio::test]
async fn a_store_from_before_the_unread_map_keeps_its_mail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY, first_seen TEXT NOT NULL,
                                 password_hash TEXT);
             CREATE TABLE messages (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL,
                 sender TEXT NOT NULL, body TEXT NOT NULL, sent_at TEXT NOT NULL,
                 read INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX messages_unread ON messages (recipient, id) WHERE read = 0;
             INSERT INTO users VALUES ('ann', '2026-01-01T00:00:00Z', NULL),
                                      ('bob', '2026-01-01T00:00:00Z', NULL),
                                      ('dee', '2026-01-01T00:00:00Z', 'dee-hash');
             INSERT INTO messages (recipient, sender, body, sent_at, read) VALUES
                 ('ann', 'bob', 'read long ago', '2026-01-01T00:00:00Z', 1),
                 ('ann', 'bob', 'first', '2026-01-01T00:00:01Z', 0),
                 ('bob', 'ann', 'for bob', '2026-01-01T00:00:02Z', 0),
                 ('ann', 'bob', 'second', '2026-01-01T00:00:03Z', 0);",
        )
        .unwrap();
    }
    let server = TestServer::start_on_tweaked(&db, |c| {
        c.keep_read = switchboard::store::KeepRead::Days(30);
    })
    .await;
    let ann = server.client("ann").await;
    let page = ann.inbox(None).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["first", "second"]);
    assert_eq!(page.messages[0].message_id, 2);
    assert!(ann.inbox(None).await.unwrap().messages.is_empty());
    // New mail after the old continues its ids.
    let id = server
        .client("carl")
        .await
        .send("bob", "new")
        .await
        .unwrap();
    assert_eq!(id, 5);
    let bob = server.client("bob").await;
    let texts: Vec<_> = (bob.inbox(None).await.unwrap().messages)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["for bob", "new"]);
    server.stop().await;

    let conn = rusqlite::Connection::open(&db).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(indexes.is_empty(), "{indexes:?}");
    let rows: Vec<(i64, String, String, String, String)> = conn
        .prepare(
            "SELECT m.id, typeof(m.recipient) || '/' || typeof(m.sender), r.name, s.name, m.body
             FROM messages m JOIN users r ON r.id = m.recipient JOIN users s ON s.id = m.sender
             ORDER BY m.id",
        )
        .unwrap()
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: Vec<_> = rows
        .iter()
        .map(|(id, types, to, from, body)| format!("{id} {types} {from}->{to} {body}"))
        .collect();
    assert_eq!(
        rows,
        [
            "1 integer/integer bob->ann read long ago",
            "2 integer/integer bob->ann first",
            "3 integer/integer ann->bob for bob",
            "4 integer/integer bob->ann second",
            "5 integer/integer carl->bob new",
        ]
    );
    let hash: String = conn
        .query_row(
            "SELECT password_hash FROM users WHERE name = 'dee'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(hash, "dee-hash");
}

/// A restart finds unread mail from the saved mark on: after many reads (the mark is
/// saved along the way and at the stop), each user still has exactly their unread mail.
#[tokio::test(flavor = "multi_thread")]
async fn unread_mail_is_found_again_from_the_saved_mark() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (store, closer) = switchboard::store::Store::open(&db).unwrap();
    store.seen("ann").await.unwrap();
    store.seen("bob").await.unwrap();
    let mut bobs = Vec::new();
    for i in 0..400 {
        store
            .append("ann".into(), "x".into(), format!("a{i}"))
            .await
            .unwrap();
        if i % 4 == 0 {
            let stored = store
                .append("bob".into(), "x".into(), format!("b{i}"))
                .await
                .unwrap();
            bobs.push(stored.id);
        }
    }
    // 300 reads of one message each: the mark is saved after the 256th.
    for i in 0..300 {
        let page = store.take_inbox("ann".into(), 1, usize::MAX).await.unwrap();
        assert_eq!(page.messages[0].text, format!("a{i}"));
    }
    drop(store);
    tokio::task::spawn_blocking(move || closer.join())
        .await
        .unwrap();

    let mark: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'unread_from'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    // Bob has read nothing: the mark is his oldest message.
    assert_eq!(mark as u64, bobs[0]);

    let (store, closer) = switchboard::store::Store::open(&db).unwrap();
    let ann = store
        .take_inbox("ann".into(), 1000, usize::MAX)
        .await
        .unwrap();
    let texts: Vec<_> = ann.messages.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<_> = (300..400).map(|i| format!("a{i}")).collect();
    assert_eq!(texts, expected);
    let bob = store
        .take_inbox("bob".into(), 1000, usize::MAX)
        .await
        .unwrap();
    let ids: Vec<_> = bob.messages.iter().map(|m| m.message_id).collect();
    assert_eq!(ids, bobs);
    drop(store);
    tokio::task::spawn_blocking(move || closer.join())
        .await
        .unwrap();
}
