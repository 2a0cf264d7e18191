//! What leaves the store: read mail (at once, or after `--keep-read DAYS`), and guests,
//! whose names are not kept once they are gone. And what must never come back when it
//! does: a message id.
//!
//! Message ids are rowids given by the store, not by SQLite's max+1, which would give
//! the id of a deleted newest message again. The next id is kept in memory and saved
//! in `meta` by every transaction that deletes mail, so a restart never starts below
//! an id that was given; sends themselves write nothing more than their row.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

/// How long read mail is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepRead {
    /// Deleted by the transaction that reads it (`--keep-read 0`, the default).
    No,
    /// Kept this many days after it was read, then pruned.
    Days(u32),
    /// Never pruned here: for a store opened by `switchboard admin`, which does not
    /// know what the server's `--keep-read` is.
    Untouched,
}

impl KeepRead {
    /// `--keep-read DAYS`.
    pub fn days(days: u32) -> KeepRead {
        match days {
            0 => KeepRead::No,
            n => KeepRead::Days(n),
        }
    }
}

/// How often a server that keeps read mail prunes what is past its time.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Names that start with this (in any case) are guests, forgotten when they go.
const GUEST_PREFIX: &str = "guest-";

/// Whether `name` is a guest's: not kept once it goes, and never protected.
pub fn is_guest(name: &str) -> bool {
    name.len() >= GUEST_PREFIX.len()
        && name.as_bytes()[..GUEST_PREFIX.len()].eq_ignore_ascii_case(GUEST_PREFIX.as_bytes())
}

/// Deletes read mail past its time; how many messages went.
pub(super) fn prune_read(conn: &Connection, keep: KeepRead) -> Result<usize, rusqlite::Error> {
    let cutoff = match keep {
        KeepRead::Untouched => return Ok(0),
        KeepRead::No => i64::MAX,
        KeepRead::Days(days) => chrono::Utc::now().timestamp() - i64::from(days) * 86_400,
    };
    conn.prepare_cached("DELETE FROM messages WHERE read <> 0 AND read <= ?1")?
        .execute(params![cutoff])
}

/// Deletes the guests left over from before (a crash, or a guest whose sent mail was
/// still unread when it left) with their mail, keeping a row only while mail it sent is
/// still there to name it as sender. Only at open: nobody is online.
pub(super) fn prune_guests(conn: &Connection) -> Result<usize, rusqlite::Error> {
    conn.execute(
        "DELETE FROM messages WHERE recipient IN
             (SELECT id FROM users WHERE name LIKE 'guest-%')",
        [],
    )?;
    conn.execute(
        "DELETE FROM users WHERE name LIKE 'guest-%'
             AND id NOT IN (SELECT sender FROM messages)",
        [],
    )
}

/// The id the next message gets: above every id ever given, deleted or not.
pub(super) fn load_next_id(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let saved: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'next_id'", [], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(1);
    let after_max: i64 =
        conn.query_row("SELECT coalesce(max(id), 0) + 1 FROM messages", [], |row| {
            row.get(0)
        })?;
    Ok(saved.max(after_max).max(1) as u64)
}

/// Saves the next id, inside the caller's transaction (one that deletes mail).
pub(super) fn save_next_id(conn: &Connection, next_id: u64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('next_id', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![next_id as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_told_by_their_prefix_in_any_case() {
        assert!(is_guest("guest-1a2b3c4d"));
        assert!(is_guest("GUEST-x"));
        assert!(!is_guest("guest"));
        assert!(!is_guest("guests"));
        assert!(!is_guest("nina"));
    }
}
