//! Which messages each user has not read yet, in memory.
//!
//! SQLite could answer "the unread mail of X" from an index on (recipient, id), but
//! that index puts every recipient's new entries in a different leaf page: a commit of
//! 64 sends to 8 recipients rewrote about 18 pages where the rows themselves fill 3.
//! Kept here instead, the commit appends to the table's last pages and to one index of
//! unread ids (ordered like the rows, so appended at its end too), and a restart
//! rebuilds this map from that index, at a cost in unread messages, not history.

use std::collections::{HashMap, VecDeque};

use rusqlite::Connection;

/// Unread message ids by recipient, oldest first.
#[derive(Debug, Default)]
pub(super) struct Unread {
    by_recipient: HashMap<String, VecDeque<u64>>,
}

impl Unread {
    /// Every unread message in the database.
    pub fn load(conn: &Connection) -> Result<Unread, rusqlite::Error> {
        let mut unread = Unread::default();
        let mut stmt = conn.prepare(
            "SELECT id, recipient FROM messages INDEXED BY messages_unread_ids
             WHERE read = 0 ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id = row.get::<_, i64>(0)? as u64;
            let recipient: String = row.get(1)?;
            unread.push(&recipient, id);
        }
        Ok(unread)
    }

    /// Records a new message; ids only grow, so pushing at the back keeps the order.
    pub fn push(&mut self, recipient: &str, id: u64) {
        match self.by_recipient.get_mut(recipient) {
            Some(ids) => ids.push_back(id),
            None => {
                self.by_recipient
                    .insert(recipient.to_owned(), VecDeque::from([id]));
            }
        }
    }

    /// The oldest unread ids of `recipient`, at most `n`.
    pub fn oldest(&self, recipient: &str, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.by_recipient
            .get(recipient)
            .into_iter()
            .flat_map(move |ids| ids.iter().take(n).copied())
    }

    /// Forgets the oldest `n` unread ids of `recipient`: they have been read.
    pub fn mark_read(&mut self, recipient: &str, n: usize) {
        if let Some(ids) = self.by_recipient.get_mut(recipient) {
            ids.drain(..n.min(ids.len()));
            if ids.is_empty() {
                self.by_recipient.remove(recipient);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_forgets_the_oldest_and_an_empty_inbox_costs_nothing() {
        let mut unread = Unread::default();
        unread.push("a", 1);
        unread.push("b", 2);
        unread.push("a", 3);
        assert_eq!(unread.oldest("a", 10).collect::<Vec<_>>(), [1, 3]);
        unread.mark_read("a", 1);
        assert_eq!(unread.oldest("a", 10).collect::<Vec<_>>(), [3]);
        unread.mark_read("a", 5);
        assert_eq!(unread.oldest("a", 10).count(), 0);
        assert!(!unread.by_recipient.contains_key("a"));
        assert_eq!(unread.oldest("nobody", 10).count(), 0);
    }
}
