//! What `serve` does with the file `--db` names before it writes a byte: a missing
//! directory, a store in use, a corrupt file and another program's database are each
//! refused in one line that says the cause once, the file untouched; a store from
//! before names were unique without regard to case is migrated without merging anyone.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use switchboard::Client;

use crate::wire::Serve;

/// What `switchboard serve --db DB` prints when it refuses to start, and how long it
/// took to.
fn refused(db: &Path) -> (String, Duration) {
    let started = Instant::now();
    let output = Command::cargo_bin("switchboard")
        .unwrap()
        .env_remove("RUST_LOG")
        .args(["serve", "--threads", "2", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    (String::from_utf8(output.stderr).unwrap(), started.elapsed())
}

fn with_suffix(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(suffix);
    path.into()
}

#[test]
fn a_missing_directory_is_called_that() {
    let (stderr, _) = refused(Path::new("/nonexistent/dir/x.db"));
    assert_eq!(
        stderr,
        "switchboard: cannot open the store /nonexistent/dir/x.db: \
         the directory /nonexistent/dir does not exist\n"
    );
}

#[tokio::test]
async fn a_store_in_use_by_another_server_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let _first = Serve::start(&db, &["--listen", "127.0.0.1:0"], 1).await;
    let (stderr, took) = tokio::task::spawn_blocking({
        let db = db.clone();
        move || refused(&db)
    })
    .await
    .unwrap();
    assert_eq!(
        stderr,
        format!(
            "switchboard: cannot open the store {}: \
             it is in use by another switchboard server (or another program)\n",
            db.display()
        )
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_corrupt_store_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("corrupt.db");
    std::fs::write(&db, crate::common::noise(7, 8192)).unwrap();
    let (stderr, _) = refused(&db);
    assert_eq!(
        stderr,
        format!(
            "switchboard: cannot open the store {}: it is not a SQLite database or it is \
             corrupt (file is not a database); restore it from a backup, or move it aside \
             to start an empty store\n",
            db.display()
        )
    );
}

/// The issue as reported: another application's database given as `--db` got a
/// `password_hash` column and WAL mode, and 67 lines of SQL.
#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (email TEXT, age INTEGER);
             INSERT INTO users VALUES ('ann@example.com', 41);",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let (stderr, _) = refused(&db);
    assert_eq!(
        stderr,
        format!(
            "switchboard: cannot open the store {}: it is not a switchboard store \
             (its tables: users); it was left untouched\n",
            db.display()
        )
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(!with_suffix(&db, suffix).exists(), "{suffix} left behind");
    }
    // A database with switchboard's table names but other columns is another's too.
    let db = dir.path().join("lookalike.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE users (name TEXT, first_seen TEXT, shoe_size INTEGER);
             CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let (stderr, _) = refused(&db);
    assert!(stderr.contains("not a switchboard store"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// A new store is marked as switchboard's, with its schema version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    let (store, closer) = switchboard::store::Store::open(&db).unwrap();
    drop(store);
    closer.closed().await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!((id, version), (0x5357_4244, 1));
}

/// A store written before names were unique without regard to case may hold "nina",
/// "Nina" and "NINA" as three people. The first seen keeps the name; the others are
/// renamed, each with its password and its own mail, with a warning per rename.
#[tokio::test]
async fn colliding_names_of_an_old_store_are_renamed_never_merged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                 first_seen TEXT NOT NULL, password_hash TEXT);
             CREATE TABLE messages (id INTEGER PRIMARY KEY, recipient INTEGER NOT NULL,
                 sender INTEGER NOT NULL, body TEXT NOT NULL, sent_at TEXT NOT NULL,
                 read INTEGER NOT NULL DEFAULT 0);
             INSERT INTO users VALUES
                 (1, 'NINA', '2026-03-01T00:00:00Z', NULL),
                 (2, 'nina', '2026-01-01T00:00:00Z', NULL),
                 (3, 'Nina', '2026-02-01T00:00:00Z', NULL),
                 (4, 'Nina-2', '2026-04-01T00:00:00Z', NULL),
                 (5, 'bob', '2026-01-01T00:00:00Z', NULL);
             INSERT INTO messages (recipient, sender, body, sent_at) VALUES
                 (1, 5, 'to NINA', '2026-05-01T00:00:00Z'),
                 (2, 5, 'to nina', '2026-05-01T00:00:00Z'),
                 (3, 5, 'to Nina', '2026-05-01T00:00:00Z');",
        )
        .unwrap();
    let mut serve = Serve::start(&db, &["--listen", "127.0.0.1:0"], 1).await;
    let first = serve.logged("user Nina renamed to Nina-3").await;
    assert!(
        first.contains("WARN") && first.contains("nina was seen first"),
        "{first}"
    );
    serve.logged("user NINA renamed to NINA-4").await;
    let addr = serve.addrs[0].clone();
    for (name, text) in [
        ("NiNa", "to nina"),
        ("nina-3", "to Nina"),
        ("nina-4", "to NINA"),
    ] {
        let client = Client::connect(addr.as_str()).await.unwrap();
        client.hello(name).await.unwrap();
        let page = client.inbox(None).await.unwrap();
        let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, [text], "{name}");
        client.bye().await.unwrap();
    }
}
