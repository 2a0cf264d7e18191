//! Which messages each user has not read yet, in memory.
//!
//! SQLite could answer "the unread mail of X" from an index on (recipient, id), but
//! that index puts every recipient's new entries in a different leaf page: a commit of
//! 64 sends to 8 recipients rewrote about 18 pages where the rows themselves fill 3. Any
//! index costs each insert a second B-tree insert, so there is none: a restart rebuilds
//! this map by reading the messages from a mark on, kept in the `meta` table, below which
//! every message has been read. The mark may lag (it is saved every [`MARK_EVERY`] inbox
//! reads and at shutdown; a crash leaves an older one), which only makes the restart
//! read a little more: messages only get higher ids, and reads only raise the oldest
//! unread one, so a mark once true stays a lower bound.

use std::collections::VecDeque;

use foldhash::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

/// Inbox reads between two saves of the mark.
const MARK_EVERY: usize = 256;

/// Unread message ids by recipient (user id), oldest first.
#[derive(Debug, Default)]
pub(super) struct Unread {
    by_recipient: HashMap<i64, VecDeque<u64>>,
    /// Inbox reads since the mark was last saved.
    reads: usize,
}

impl Unread {
    /// Every unread message in the database.
    pub fn load(conn: &Connection) -> Result<Unread, rusqlite::Error> {
        let from = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'unread_from'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0);
        let mut unread = Unread::default();
        let mut stmt = conn.prepare(
            "SELECT id, recipient FROM messages WHERE id >= ?1 AND read = 0 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![from])?;
        while let Some(row) = rows.next()? {
            let id = row.get::<_, i64>(0)? as u64;
            unread.push(row.get(1)?, id);
        }
        Ok(unread)
    }

    /// Records a new message; ids only grow, so pushing at the back keeps the order.
    pub fn push(&mut self, recipient: i64, id: u64) {
        self.by_recipient
            .entry(recipient)
            .or_default()
            .push_back(id);
    }

    /// The oldest unread ids of `recipient`, at most `n`.
    pub fn oldest(&self, recipient: i64, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.by_recipient
            .get(&recipient)
            .into_iter()
            .flat_map(move |ids| ids.iter().take(n).copied())
    }

    /// Forgets the oldest `n` unread ids of `recipient`: they have been read.
    pub fn mark_read(&mut self, recipient: i64, n: usize) {
        if let Some(ids) = self.by_recipient.get_mut(&recipient) {
            ids.drain(..n.min(ids.len()));
            if ids.is_empty() {
                self.by_recipient.remove(&recipient);
            }
        }
        if n > 0 {
            self.reads += 1;
        }
    }

    /// How many unread messages `recipient` has.
    pub fn count(&self, recipient: i64) -> usize {
        self.by_recipient.get(&recipient).map_or(0, VecDeque::len)
    }

    /// Forgets every unread id of `recipient`: its mail was deleted.
    pub fn forget(&mut self, recipient: i64) {
        self.by_recipient.remove(&recipient);
    }

    /// Whether enough has been read since the mark was saved to save it again.
    pub fn mark_due(&self) -> bool {
        self.reads >= MARK_EVERY
    }

    /// Saves the mark inside the caller's transaction: the oldest unread id, or the next
    /// id to be given when nothing is unread.
    pub fn save_mark(&mut self, conn: &Connection, next_id: u64) -> Result<(), rusqlite::Error> {
        let oldest = self
            .by_recipient
            .values()
            .filter_map(|ids| ids.front())
            .min();
        let from = oldest.copied().unwrap_or(next_id) as i64;
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('unread_from', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![from])?;
        self.reads = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_forgets_the_oldest_and_an_empty_inbox_costs_nothing() {
        let mut unread = Unread::default();
        let (a, b, nobody) = (1, 2, 3);
        unread.push(a, 1);
        unread.push(b, 2);
        unread.push(a, 3);
        assert_eq!(unread.oldest(a, 10).collect::<Vec<_>>(), [1, 3]);
        unread.mark_read(a, 1);
        assert_eq!(unread.oldest(a, 10).collect::<Vec<_>>(), [3]);
        unread.mark_read(a, 5);
        assert_eq!(unread.oldest(a, 10).count(), 0);
        assert!(!unread.by_recipient.contains_key(&a));
        assert_eq!(unread.oldest(nobody, 10).count(), 0);
    }
}
