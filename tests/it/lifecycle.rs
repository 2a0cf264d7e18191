//! The store's rules for names and data over time: names are unique without regard to
//! case, read mail is deleted (or kept `--keep-read` days), guests are forgotten, a
//! message id is never given twice, and a store whose file is deleted under the server
//! refuses to acknowledge anything more.

use std::path::Path;

use switchboard::Client;
use switchboard::store::{KeepRead, Options, Store, StoreCloser};

use crate::common::{TestServer, client_code};
use crate::wire::Serve;

fn open(db: &Path, keep_read: KeepRead) -> (Store, StoreCloser) {
    let options = Options {
        keep_read,
        ..Options::default()
    };
    Store::start(db, options).unwrap()
}

async fn close(store: Store, closer: StoreCloser) {
    drop(store);
    closer.closed().await;
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_finds_a_name_in_any_case_and_keeps_the_first_case() {
    let dir = tempfile::tempdir().unwrap();
    let (store, closer) = open(&dir.path().join("s.db"), KeepRead::No);
    assert_eq!(store.seen("nina").await.unwrap(), "nina");
    assert_eq!(store.seen("NiNa").await.unwrap(), "nina");
    assert!(store.credentials("ghost").await.unwrap().is_none());
    assert!(store.register("NINA", "hash-1".into()).await.unwrap());
    assert!(!store.register("nina", "hash-2".into()).await.unwrap());
    let account = store.credentials("Nina").await.unwrap().unwrap();
    assert_eq!(account.name, "nina");
    assert_eq!(account.hash.as_deref(), Some("hash-1"));

    let sent = store
        .append("NINA".into(), "Bob".into(), "hi".into())
        .await
        .unwrap();
    assert_eq!(sent.to, "nina");
    // The sender's first case is kept too: later it is "bob" in any case.
    let again = store
        .append("nina".into(), "BOB".into(), "again".into())
        .await
        .unwrap();
    let page = store
        .take_inbox("nInA".into(), 10, usize::MAX)
        .await
        .unwrap();
    let got: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.message_id, &*m.from))
        .collect();
    assert_eq!(got, [(sent.id, "Bob"), (again.id, "Bob")]);
    let users = store.users().await.unwrap();
    let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["Bob", "nina"]);
    close(store, closer).await;
}

/// The issue as reported: with "nina" protected, "Nina", "NINA" and "nInA" were free to
/// anyone without a password.
#[tokio::test]
async fn a_protected_name_is_protected_in_every_case() {
    let server = TestServer::start().await;
    let owner = Client::connect(server.addr).await.unwrap();
    owner.hello_with("nina", Some("s3cret")).await.unwrap();
    owner.bye().await.unwrap();
    for name in ["Nina", "NINA", "nInA"] {
        let thief = Client::connect(server.addr).await.unwrap();
        assert_eq!(
            client_code(thief.hello(name).await),
            "auth_failed",
            "{name}"
        );
        let guess = thief.hello_with(name, Some("guess")).await;
        assert_eq!(client_code(guess), "auth_failed", "{name}");
    }
    let owner = Client::connect(server.addr).await.unwrap();
    owner.hello_with("NINA", Some("s3cret")).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_mail_is_deleted_and_its_ids_are_never_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (store, closer) = open(&db, KeepRead::No);
    store.seen("ann").await.unwrap();
    let mut last = 0;
    for i in 0..3 {
        last = store
            .append("ann".into(), "x".into(), format!("m{i}"))
            .await
            .unwrap()
            .id;
    }
    let page = store
        .take_inbox("ann".into(), 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 3);
    // The newest rows are gone; SQLite's max+1 would give their ids again.
    let next = store.append("ann".into(), "x".into(), "m3".into()).await;
    assert_eq!(next.unwrap().id, last + 1);
    // SQLite's own next id is in step again, and is taken.
    let next = store.append("ann".into(), "x".into(), "m3b".into()).await;
    assert_eq!(next.unwrap().id, last + 2);
    store
        .take_inbox("ann".into(), 10, usize::MAX)
        .await
        .unwrap();
    close(store, closer).await;
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);

    let (store, closer) = open(&db, KeepRead::No);
    let after = store.append("ann".into(), "x".into(), "m4".into()).await;
    assert_eq!(after.unwrap().id, last + 3);
    close(store, closer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_read_keeps_read_mail_its_days_then_prunes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (store, closer) = open(&db, KeepRead::Days(2));
    store.seen("ann").await.unwrap();
    for i in 0..3 {
        store
            .append("ann".into(), "x".into(), format!("m{i}"))
            .await
            .unwrap();
    }
    store.take_inbox("ann".into(), 2, usize::MAX).await.unwrap();
    close(store, closer).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages WHERE read <> 0"),
        2
    );

    // Read a day ago: kept through a restart.
    let day = 86_400;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE messages SET read = read - ?1 WHERE read <> 0",
        [day],
    )
    .unwrap();
    drop(conn);
    let (store, closer) = open(&db, KeepRead::Days(2));
    close(store, closer).await;
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 3);

    // Read two days and more ago: pruned at open; the unread one stays unread.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE messages SET read = read - ?1 WHERE read <> 0",
        [day + 1],
    )
    .unwrap();
    drop(conn);
    let (store, closer) = open(&db, KeepRead::Days(2));
    let page = store
        .take_inbox("ann".into(), 10, usize::MAX)
        .await
        .unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m2"]);
    close(store, closer).await;
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 1);

    // Back to the default: what was kept read goes at the next start.
    let (store, closer) = open(&db, KeepRead::No);
    close(store, closer).await;
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_is_forgotten_when_it_goes_but_its_sent_mail_stays() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (store, closer) = open(&db, KeepRead::No);
    store.seen("ann").await.unwrap();
    store.seen("Guest-1a2b").await.unwrap();
    store
        .append("guest-1a2b".into(), "ann".into(), "for the guest".into())
        .await
        .unwrap();
    store
        .append("ann".into(), "Guest-1a2b".into(), "from the guest".into())
        .await
        .unwrap();
    // Not a guest: nothing happens.
    assert!(!store.forget_guest("ann").await.unwrap());
    assert!(store.forget_guest("GUEST-1a2b").await.unwrap());
    let refused = store
        .append("guest-1a2b".into(), "ann".into(), "too late".into())
        .await;
    assert!(refused.is_err());
    let page = store
        .take_inbox("ann".into(), 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(page.messages[0].from, "Guest-1a2b");
    let names: Vec<_> = (store.users().await.unwrap())
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ann"]);
    close(store, closer).await;
    // Its mail was read and deleted: the row that named it as sender goes at the start.
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 2);
    let (store, closer) = open(&db, KeepRead::No);
    close(store, closer).await;
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_left_over_by_a_crash_are_pruned_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (store, closer) = open(&db, KeepRead::No);
    store.seen("ann").await.unwrap();
    store.seen("guest-1").await.unwrap();
    store.seen("guest-2").await.unwrap();
    store
        .append("guest-1".into(), "ann".into(), "lost".into())
        .await
        .unwrap();
    store
        .append("ann".into(), "guest-2".into(), "kept".into())
        .await
        .unwrap();
    close(store, closer).await;
    let (store, closer) = open(&db, KeepRead::No);
    let names: Vec<_> = (store.users().await.unwrap())
        .into_iter()
        .map(|u| u.name)
        .collect();
    // guest-2's row stays while its mail to ann does.
    assert_eq!(names, ["ann", "guest-2"]);
    let page = store
        .take_inbox("ann".into(), 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(page.messages[0].from, "guest-2");
    close(store, closer).await;
    assert_eq!(count(&db, "SELECT count(*) FROM messages"), 0);
}

/// The issue as reported: with the database files deleted while the server ran, the
/// next send was answered ok and lost at the restart. Now it is refused, and the
/// console says so once.
#[tokio::test]
async fn a_store_deleted_under_the_server_acknowledges_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gone.db");
    let mut serve = Serve::start(&db, &["--listen", "127.0.0.1:0"], 1).await;
    let client = Client::connect(serve.addrs[0].as_str()).await.unwrap();
    client.hello("ann").await.unwrap();
    client.send("ann", "kept").await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(&path);
    }
    for _ in 0..2 {
        let refused = client.send("ann", "would be lost").await;
        let Err(switchboard::client::ClientError::Server(body)) = refused else {
            panic!("a send to a deleted store must be refused: {refused:?}");
        };
        assert_eq!(body.code.to_string(), "internal");
        assert!(
            body.message.starts_with("storage failed"),
            "{}",
            body.message
        );
    }
    let line = serve.line_with("deleted or replaced").await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("switchboard backup"), "{line}");
}
