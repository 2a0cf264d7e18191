//! The tables, and the migration of stores written by earlier versions.
//!
//! A message names its recipient and sender by user id, not by name: each send binds
//! two integers where it copied two names into SQLite, and its row is a third
//! smaller, so a commit writes fewer pages (with 64 senders, about 600 of some 14,000
//! instructions per send). `sent_at` stays RFC 3339 text, readable with the `sqlite3`
//! shell like the rest; it is bound once per batch.

use rusqlite::Connection;

/// The columns of `users`, for a new store and for the rebuild of an old one.
const USERS: &str = "id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    first_seen TEXT NOT NULL,
    password_hash TEXT";

/// The columns of `messages`, likewise.
const MESSAGES: &str = "id INTEGER PRIMARY KEY,
    recipient INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0";

/// Creates the tables of a new store, or brings an older store's up to date.
pub(super) fn prepare(conn: &Connection) -> Result<(), rusqlite::Error> {
    if has_table(conn, "users")? {
        // Stores made before names could be protected lack the column.
        if !has_column(conn, "users", "password_hash")? {
            conn.execute_batch("ALTER TABLE users ADD COLUMN password_hash TEXT")?;
        }
        if !has_column(conn, "users", "id")? {
            migrate_to_user_ids(conn)?;
        }
    }
    // Message ids are plain rowids, not AUTOINCREMENT: rows are marked read, never
    // deleted, so max+1 never reuses an id, and a commit does not also rewrite the
    // sqlite_sequence page. Who has which unread mail is kept in memory, with no index
    // on `messages` at all (see `unread.rs`); `meta` keeps the mark from which a
    // restart finds it. Stores made before that have indexes for it, dropped here:
    // they cost each send a second B-tree insert and each commit more pages.
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS users ({USERS});
         CREATE TABLE IF NOT EXISTS messages ({MESSAGES});
         CREATE TABLE IF NOT EXISTS meta (
             key TEXT PRIMARY KEY,
             value INTEGER NOT NULL
         );
         DROP INDEX IF EXISTS messages_unread;
         DROP INDEX IF EXISTS messages_unread_ids;"
    ))
}

/// Rebuilds a store whose messages name their users into one whose messages refer to
/// them by id, in one transaction: a crash leaves the old store as it was. Message ids
/// stay as they were. A sender never seen (possible only through the store's own API)
/// becomes a user, seen when it first sent.
fn migrate_to_user_ids(conn: &Connection) -> Result<(), rusqlite::Error> {
    tracing::info!("migrating the store: messages refer to users by id");
    conn.execute_batch(&format!(
        "BEGIN;
         CREATE TABLE users_by_id ({USERS});
         INSERT INTO users_by_id (name, first_seen, password_hash)
             SELECT name, first_seen, password_hash FROM users ORDER BY rowid;
         INSERT OR IGNORE INTO users_by_id (name, first_seen)
             SELECT sender, min(sent_at) FROM messages GROUP BY sender;
         INSERT OR IGNORE INTO users_by_id (name, first_seen)
             SELECT recipient, min(sent_at) FROM messages GROUP BY recipient;
         CREATE TABLE messages_by_id ({MESSAGES});
         INSERT INTO messages_by_id (id, recipient, sender, body, sent_at, read)
             SELECT m.id, r.id, s.id, m.body, m.sent_at, m.read
             FROM messages m
             JOIN users_by_id r ON r.name = m.recipient
             JOIN users_by_id s ON s.name = m.sender;
         DROP TABLE messages;
         DROP TABLE users;
         ALTER TABLE users_by_id RENAME TO users;
         ALTER TABLE messages_by_id RENAME TO messages;
         COMMIT;"
    ))
    .inspect_err(|_| {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    })
}

fn has_table(conn: &Connection, table: &str) -> Result<bool, rusqlite::Error> {
    conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([table])
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, rusqlite::Error> {
    conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])
}
