//! The tables, how a switchboard store is recognised, and the migration of stores
//! written by earlier versions.
//!
//! A store is marked with SQLite's `application_id` (the header's bytes 68-71) and its
//! schema version in `user_version`. Stores made before the mark are recognised by
//! their tables and columns and marked when they are brought up to date; anything else
//! is refused untouched.
//!
//! A message names its recipient and sender by user id, not by name: each send binds
//! two integers where it copied two names into SQLite, and its row is a third
//! smaller, so a commit writes fewer pages. `sent_at` stays RFC 3339 text, readable
//! with the `sqlite3` shell like the rest; it is bound once per batch. `read` is 0 for
//! unread mail and otherwise when it was read (Unix seconds), for `--keep-read`.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, params};

use super::StoreError;
use crate::protocol::MAX_NAME;

/// "SWBD": what `PRAGMA application_id` says of a switchboard store.
pub const APPLICATION_ID: i32 = 0x5357_4244;
/// The schema this version writes; a store with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// The columns of `users`. Names are unique without regard to (ASCII) case, as
/// SQLite's NOCASE folds; the case first stored is the one kept.
const USERS: &str = "id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    first_seen TEXT NOT NULL,
    password_hash TEXT";

/// The columns of `messages`.
const MESSAGES: &str = "id INTEGER PRIMARY KEY,
    recipient INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0";

/// What the file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Empty: a store is made in it.
    New,
    /// A marked store of this version.
    Current,
    /// A store from before the mark: tables and columns of switchboard's, nothing else.
    Unmarked,
}

/// Tells what the file is, reading only. The outer error is SQLite's (a locked or
/// corrupt file); the inner one a refusal.
pub(super) fn inspect(conn: &Connection) -> Result<Result<Found, StoreError>, rusqlite::Error> {
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects: Vec<(String, String, String)> = conn
        .prepare("SELECT type, name, tbl_name FROM sqlite_master")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    if application_id == APPLICATION_ID {
        return Ok(match version {
            v if v > SCHEMA_VERSION => Err(StoreError::Newer(v)),
            _ => Ok(Found::Current),
        });
    }
    if application_id != 0 {
        return Ok(Err(StoreError::Foreign(format!(
            "its application id is {application_id:#x}"
        ))));
    }
    if objects.is_empty() {
        return Ok(Ok(Found::New));
    }
    let tables: Vec<&str> = (objects.iter())
        .filter(|(kind, ..)| kind == "table")
        .map(|(_, name, _)| name.as_str())
        .collect();
    let foreign = || {
        Err(StoreError::Foreign(format!(
            "its tables: {}",
            tables.join(", ")
        )))
    };
    let ours = |(kind, name, table): &(String, String, String)| match kind.as_str() {
        "table" => matches!(name.as_str(), "users" | "messages" | "meta"),
        "index" => {
            matches!(table.as_str(), "users" | "messages" | "meta")
                && (name.starts_with("sqlite_autoindex_") || name.starts_with("messages_unread"))
        }
        _ => false,
    };
    if !objects.iter().all(ours) || !tables.contains(&"users") || !tables.contains(&"messages") {
        return Ok(foreign());
    }
    let users = columns(conn, "users")?;
    let messages = columns(conn, "messages")?;
    let users_ok = ["name", "first_seen"]
        .iter()
        .all(|c| users.iter().any(|u| u == c))
        && (users.iter())
            .all(|c| ["id", "name", "first_seen", "password_hash"].contains(&c.as_str()));
    let mut expected = ["id", "recipient", "sender", "body", "sent_at", "read"];
    let mut got: Vec<&str> = messages.iter().map(String::as_str).collect();
    expected.sort_unstable();
    got.sort_unstable();
    if !users_ok || got != expected {
        return Ok(foreign());
    }
    Ok(Ok(Found::Unmarked))
}

fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, rusqlite::Error> {
    conn.prepare("SELECT name FROM pragma_table_info(?1)")?
        .query_map([table], |row| row.get(0))?
        .collect()
}

/// Makes the tables of a new store, or brings an unmarked one up to date, in one
/// transaction that also marks the file: a crash leaves it as it was.
pub(super) fn prepare(conn: &Connection, found: Found) -> Result<(), StoreError> {
    if found == Found::Current {
        return Ok(());
    }
    conn.execute_batch("BEGIN")?;
    let done = match found {
        Found::New => conn
            .execute_batch(&format!(
                "CREATE TABLE users ({USERS});
                 CREATE TABLE messages ({MESSAGES});"
            ))
            .map_err(StoreError::from),
        _ => migrate_unmarked(conn),
    }
    .and_then(|()| {
        // Who has which unread mail is kept in memory, with no index on `messages` at
        // all (see `unread.rs`); `meta` keeps the marks a restart starts from. Stores
        // made before that have indexes for it, dropped here: they cost each send a
        // second B-tree insert and each commit more pages.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             DROP INDEX IF EXISTS messages_unread;
             DROP INDEX IF EXISTS messages_unread_ids;",
        )?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        conn.execute_batch("COMMIT")?;
        Ok(())
    });
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

/// Brings a store from before the mark up to date, inside the caller's transaction:
/// names that collide without regard to case are told apart, users get ids and unique
/// names without regard to case, and mail read before gets a time it was read.
fn migrate_unmarked(conn: &Connection) -> Result<(), StoreError> {
    tracing::info!("migrating the store to schema version {SCHEMA_VERSION}");
    let users = columns(conn, "users")?;
    // Stores made before names could be protected lack the column.
    if !users.iter().any(|c| c == "password_hash") {
        conn.execute_batch("ALTER TABLE users ADD COLUMN password_hash TEXT")?;
    }
    let by_name = !users.iter().any(|c| c == "id");
    rename_collisions(conn, by_name)?;
    if by_name {
        migrate_to_user_ids(conn)?;
    } else {
        conn.execute_batch(&format!(
            "CREATE TABLE users_nocase ({USERS});
             INSERT INTO users_nocase (id, name, first_seen, password_hash)
                 SELECT id, name, first_seen, password_hash FROM users;
             DROP TABLE users;
             ALTER TABLE users_nocase RENAME TO users;"
        ))?;
    }
    conn.execute(
        "UPDATE messages SET read = ?1 WHERE read <> 0",
        params![chrono::Utc::now().timestamp()],
    )?;
    Ok(())
}

/// Gives every user whose name equals an earlier one's without regard to case a name
/// of its own (`Nina` after `nina` becomes `Nina-2`), keeping its password and mail:
/// two people's inboxes are never merged. The earliest seen keeps its name. One warning
/// per rename, for the operator to tell the person.
fn rename_collisions(conn: &Connection, by_name: bool) -> Result<(), StoreError> {
    let users: Vec<(i64, String)> = conn
        .prepare("SELECT rowid, name FROM users ORDER BY first_seen, rowid")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let all: HashSet<String> = users.iter().map(|(_, n)| n.to_ascii_lowercase()).collect();
    let mut kept: HashMap<String, &str> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    for (rowid, name) in &users {
        let folded = name.to_ascii_lowercase();
        let Some(first) = kept.get(&folded).copied() else {
            kept.insert(folded, name);
            continue;
        };
        let new = (2..)
            .map(|n| suffixed(name, n))
            .find(|c| {
                let c = c.to_ascii_lowercase();
                !all.contains(&c) && !taken.contains(&c)
            })
            .unwrap_or_default();
        taken.insert(new.to_ascii_lowercase());
        conn.execute(
            "UPDATE users SET name = ?2 WHERE rowid = ?1",
            params![rowid, new],
        )?;
        if by_name {
            conn.execute(
                "UPDATE messages SET recipient = ?2 WHERE recipient = ?1",
                params![name, new],
            )?;
            conn.execute(
                "UPDATE messages SET sender = ?2 WHERE sender = ?1",
                params![name, new],
            )?;
        }
        tracing::warn!(
            "store: user {name} renamed to {new}: names are unique without regard to case \
             and {first} was seen first; its password and mail are kept"
        );
    }
    Ok(())
}

/// `name` with `-n` after it, shortened to stay within the longest name allowed.
fn suffixed(name: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let mut end = name.len().min(MAX_NAME.saturating_sub(suffix.len()));
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

/// Rebuilds a store whose messages name their users into one whose messages refer to
/// them by id, inside the caller's transaction. Message ids stay as they were. A
/// sender never seen (possible only through the store's own API) becomes a user, seen
/// when it first sent.
fn migrate_to_user_ids(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(&format!(
        "CREATE TABLE users_by_id ({USERS});
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
         ALTER TABLE messages_by_id RENAME TO messages;"
    ))
}

#[cfg(test)]
mod tests {
    use super::suffixed;

    #[test]
    fn a_suffixed_name_stays_within_the_longest_allowed() {
        assert_eq!(suffixed("Nina", 2), "Nina-2");
        let long = "a".repeat(32);
        let renamed = suffixed(&long, 12);
        assert_eq!(renamed.len(), 32);
        assert!(renamed.ends_with("a-12"));
    }
}
