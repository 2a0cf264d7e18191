//! The store's operations, as one transaction's batch runs them.

use std::borrow::Cow;

use foldhash::{HashMap, HashSet};
use rusqlite::{Connection, OptionalExtension, Statement, params};

use super::lifecycle::{self, KeepRead};
use super::unread::Unread;
use super::{Account, Appended, Op, Outcome, StoreError, UserSummary};
use crate::protocol::{InboxPage, StoredMessage};

/// A user the store knows: its id, and its name as first stored.
#[derive(Debug, Clone)]
pub(super) struct User {
    pub id: i64,
    pub name: Box<str>,
}

/// `name` as the store compares names: in ASCII lower case. Borrowed when it is
/// already, as most names are, so that a send's two lookups allocate nothing.
pub(super) fn fold(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// What one transaction's commands work on.
pub(super) struct Batch<'a, 'b> {
    /// In a transaction, until the batch is done.
    pub tx: &'a Connection,
    pub known: &'a HashMap<String, User>,
    /// Users added by this transaction, known to the others once it is committed.
    pub newly_known: &'a mut Vec<(String, User)>,
    /// Users forgotten by this transaction (folded names), unknown once it is committed.
    pub forgotten: &'a mut Vec<String>,
    pub unread: &'a mut Unread,
    pub now: &'a str,
    pub insert: &'a mut Statement<'b>,
    /// `now` is bound to the insert. A binding stays until it is replaced: the batch's
    /// time is bound once, not copied into SQLite for every message.
    pub now_bound: bool,
    pub keep_read: KeepRead,
    pub next_id: &'a mut u64,
    /// See `Worker::guest_senders`.
    pub guest_senders: &'a mut HashSet<i64>,
    /// Mail was deleted: the next id must be saved with this transaction.
    pub deleted: bool,
    /// SQLite would give a new message `next_id` by itself (its next rowid is one past
    /// the newest row, which exists): the insert then leaves the id to it, and SQLite
    /// appends without the seek an explicit id costs (580 of some 11,000 instructions
    /// per send, callgrind). False from open, and after mail is deleted, until a
    /// message is inserted with its id given.
    pub ids_in_step: &'a mut bool,
}

impl Batch<'_, '_> {
    fn user(&self, name: &str) -> Option<&User> {
        let folded = fold(name);
        let folded = folded.as_ref();
        if let Some((_, user)) = self.newly_known.iter().find(|(n, _)| n == folded) {
            return Some(user);
        }
        if self.forgotten.iter().any(|n| n == folded) {
            return None;
        }
        self.known.get(folded)
    }

    /// User `name`, who is added if never seen (or forgotten).
    fn see(&mut self, name: &str) -> Result<User, rusqlite::Error> {
        if let Some(user) = self.user(name) {
            return Ok(user.clone());
        }
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO users (name, first_seen) VALUES (?1, ?2)")?
            .execute(params![name, self.now])?;
        // The row may be older than this batch: a guest that left while mail it sent
        // was still there keeps it, and gets it back with its name.
        let (id, stored) = self
            .tx
            .prepare_cached("SELECT id, name FROM users WHERE name = ?1")?
            .query_row(params![name], |row| {
                Ok((row.get(0)?, row.get::<_, String>(1)?))
            })?;
        let user = User {
            id,
            name: stored.into(),
        };
        self.newly_known
            .push((fold(name).into_owned(), user.clone()));
        Ok(user)
    }

    /// Runs one operation inside the batch's transaction. An `Err` aborts the whole
    /// batch; an answer that is an error (an unknown recipient) does not.
    pub fn apply(&mut self, op: Op) -> Result<Result<Outcome, StoreError>, rusqlite::Error> {
        let tx = self.tx;
        Ok(match op {
            Op::Seen { name } => Ok(Outcome::Name(self.see(&name)?.name.into())),
            Op::Credentials { name } => {
                let Some(user) = self.user(&name) else {
                    return Ok(Ok(Outcome::Account(None)));
                };
                let hash = tx
                    .prepare_cached("SELECT password_hash FROM users WHERE id = ?1")?
                    .query_row(params![user.id], |row| row.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten();
                Ok(Outcome::Account(Some(Account {
                    name: user.name.to_string(),
                    hash,
                })))
            }
            Op::Register { name, hash } => {
                let user = self.see(&name)?;
                let changed = tx
                    .prepare_cached(
                        "UPDATE users SET password_hash = ?2
                         WHERE id = ?1 AND password_hash IS NULL",
                    )?
                    .execute(params![user.id, hash])?;
                Ok(Outcome::Changed(changed == 1))
            }
            Op::Append { to, from, text } => {
                let Some(recipient) = self.user(&to) else {
                    return Ok(Err(StoreError::NoSuchUser(to)));
                };
                // The name as first stored, copied only when it differs from the one
                // given (a send to NINA for Nina).
                let shown = (*recipient.name != *to).then(|| recipient.name.clone());
                let recipient = recipient.id;
                // A session's name was seen at its hello: this finds it, with no copy.
                let sender = match self.user(&from) {
                    Some(user) => user.id,
                    None => self.see(&from)?.id,
                };
                if lifecycle::is_guest(&from) {
                    self.guest_senders.insert(sender);
                }
                let id = *self.next_id;
                let insert = &mut *self.insert;
                if !self.now_bound {
                    insert.raw_bind_parameter(4, self.now)?;
                    self.now_bound = true;
                }
                insert.raw_bind_parameter(1, recipient)?;
                insert.raw_bind_parameter(2, sender)?;
                insert.raw_bind_parameter(3, &text)?;
                let given = self.deleted || !*self.ids_in_step;
                if given {
                    insert.raw_bind_parameter(5, id as i64)?;
                } else {
                    insert.raw_bind_parameter(5, rusqlite::types::Null)?;
                }
                insert.raw_execute()?;
                // The id SQLite chose: `next_id` while the invariant above holds.
                let id = if given {
                    id
                } else {
                    u64::try_from(tx.last_insert_rowid()).unwrap_or(id)
                };
                *self.ids_in_step = true;
                *self.next_id = id + 1;
                self.unread.push(recipient, id);
                let to = shown.map_or(to, String::from);
                Ok(Outcome::Stored(Appended { id, to, from }))
            }
            Op::Inbox {
                name,
                limit,
                byte_budget,
                peek,
            } => Ok(Outcome::Page(self.inbox(
                &name,
                limit,
                byte_budget,
                peek,
            )?)),
            Op::Ack { name, up_to } => Ok(Outcome::Acked(self.ack(&name, up_to)?)),
            Op::Forget { name, only_guest } => {
                if !only_guest {
                    return Ok(Ok(Outcome::Changed(self.forget(&name)?)));
                }
                if !lifecycle::is_guest(&name) {
                    return Ok(Ok(Outcome::Changed(false)));
                }
                Ok(Outcome::Changed(self.forget_guest(&name)?))
            }
            Op::SetPassword { name, hash } => {
                let Some(id) = self.user(&name).map(|u| u.id) else {
                    return Ok(Ok(Outcome::Changed(false)));
                };
                tx.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
                    .execute(params![id, hash])?;
                Ok(Outcome::Changed(true))
            }
            Op::Users => Ok(Outcome::Users(self.users()?)),
            // Taken out of the batch before it runs (see `Worker::run_batch`).
            Op::Backup { .. } => Err(StoreError::Failed("a backup inside a batch".into())),
        })
    }

    /// [`Batch::forget`] for a guest that left, as it happens many times a minute on
    /// a busy server: by primary key only, never a scan of the messages, which have no
    /// index but their ids. Its unread mail is deleted by the ids the store keeps in
    /// memory (read mail kept by --keep-read goes when that is pruned), and its row
    /// unless it sent mail that may still name it (left for the prune at next open).
    fn forget_guest(&mut self, name: &str) -> Result<bool, rusqlite::Error> {
        let Some(id) = self.user(name).map(|u| u.id) else {
            return Ok(false);
        };
        let unread: Vec<u64> = self.unread.oldest(id, usize::MAX).collect();
        let mut delete = self
            .tx
            .prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        for message in &unread {
            delete.execute(params![*message as i64])?;
        }
        self.deleted |= !unread.is_empty();
        self.unread.forget(id);
        if !self.guest_senders.contains(&id) {
            self.tx
                .prepare_cached("DELETE FROM users WHERE id = ?1")?
                .execute(params![id])?;
        }
        let folded = fold(name).into_owned();
        self.newly_known.retain(|(n, _)| *n != folded);
        self.forgotten.push(folded);
        Ok(true)
    }

    /// Deletes `name`'s mail and password, and its row unless mail it sent still names
    /// it; whether there was such a user.
    fn forget(&mut self, name: &str) -> Result<bool, rusqlite::Error> {
        let Some(id) = self
            .tx
            .prepare_cached("SELECT id FROM users WHERE name = ?1")?
            .query_row(params![name], |row| row.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(false);
        };
        let deleted = self
            .tx
            .prepare_cached("DELETE FROM messages WHERE recipient = ?1")?
            .execute(params![id])?;
        self.deleted |= deleted > 0;
        self.unread.forget(id);
        self.tx
            .prepare_cached(
                "UPDATE users SET password_hash = NULL WHERE id = ?1
                     AND EXISTS (SELECT 1 FROM messages WHERE sender = ?1)",
            )?
            .execute(params![id])?;
        self.tx
            .prepare_cached(
                "DELETE FROM users WHERE id = ?1
                     AND NOT EXISTS (SELECT 1 FROM messages WHERE sender = ?1)",
            )?
            .execute(params![id])?;
        let folded = fold(name).into_owned();
        self.newly_known.retain(|(n, _)| *n != folded);
        self.forgotten.push(folded);
        Ok(true)
    }

    fn users(&self) -> Result<Vec<UserSummary>, rusqlite::Error> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, name, password_hash IS NOT NULL FROM users ORDER BY name",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get(2)?))
        })?;
        let mut users = Vec::new();
        for row in rows {
            let (id, name, protected) = row?;
            // A forgotten user kept only to name the sender of mail is no one's account.
            if self.user(&name).is_none() {
                continue;
            }
            users.push(UserSummary {
                name,
                protected,
                unread: self.unread.count(id),
            });
        }
        Ok(users)
    }

    /// The oldest unread messages of `name` that fit `limit` and `byte_budget`, marked
    /// read unless `peek`.
    fn inbox(
        &mut self,
        name: &str,
        limit: u32,
        byte_budget: usize,
        peek: bool,
    ) -> Result<InboxPage, rusqlite::Error> {
        let Some(recipient) = self.user(name).map(|u| u.id) else {
            return Ok(InboxPage {
                messages: Vec::new(),
                more: false,
            });
        };
        let mut read = self.tx.prepare_cached(
            "SELECT users.name, body, sent_at FROM messages JOIN users ON users.id = sender
             WHERE messages.id = ?1 AND read = 0",
        )?;
        let mut messages = Vec::new();
        let mut used = 0;
        let mut more = false;
        for id in self.unread.oldest(recipient, limit as usize + 1) {
            let Some(message) = read
                .query_row(params![id as i64], |row| {
                    Ok(StoredMessage {
                        message_id: id,
                        from: row.get(0)?,
                        text: row.get(1)?,
                        sent_at: row.get(2)?,
                    })
                })
                .optional()?
            else {
                // The map and the table disagree: trust the table, reload the map.
                return Err(rusqlite::Error::QueryReturnedNoRows);
            };
            let size = serde_json::to_vec(&message).map_or(usize::MAX, |v| v.len() + 1);
            let fits = messages.is_empty() || used + size <= byte_budget;
            if messages.len() == limit as usize || !fits {
                more = true;
                break;
            }
            used += size;
            messages.push(message);
        }
        if !peek {
            let ids: Vec<u64> = messages.iter().map(|m| m.message_id).collect();
            self.mark_read(recipient, &ids)?;
        }
        Ok(InboxPage { messages, more })
    }

    /// Marks read the unread messages of `name` with ids up to `up_to`; how many.
    fn ack(&mut self, name: &str, up_to: u64) -> Result<u64, rusqlite::Error> {
        let Some(recipient) = self.user(name).map(|u| u.id) else {
            return Ok(0);
        };
        // Unread ids are kept oldest first: those up to `up_to` are the oldest ones.
        let ids: Vec<u64> = self
            .unread
            .oldest(recipient, usize::MAX)
            .take_while(|&id| id <= up_to)
            .collect();
        self.mark_read(recipient, &ids)?;
        Ok(ids.len() as u64)
    }

    /// Marks read `ids`, the oldest unread messages of `recipient`: deletes them, or
    /// with --keep-read stamps them with the time they were read.
    fn mark_read(&mut self, recipient: i64, ids: &[u64]) -> Result<(), rusqlite::Error> {
        if self.keep_read == KeepRead::No {
            let mut delete = self
                .tx
                .prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for &id in ids {
                delete.execute(params![id as i64])?;
            }
            self.deleted |= !ids.is_empty();
        } else {
            let mut mark = self
                .tx
                .prepare_cached("UPDATE messages SET read = ?2 WHERE id = ?1")?;
            let now = chrono::Utc::now().timestamp().max(1);
            for &id in ids {
                mark.execute(params![id as i64, now])?;
            }
        }
        self.unread.mark_read(recipient, ids.len());
        Ok(())
    }
}
