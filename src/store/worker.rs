//! The store's loop, on a thread of its own or as a task of a single-threaded runtime:
//! takes the commands waiting, runs them in one transaction, and answers them once it
//! is committed.

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{CachedStatement, Connection, OptionalExtension, Statement, params};

use super::queue::{Receiver, Taken};
use super::unread::Unread;
use super::{Appended, Command, Op, Outcome, Reply, StoreError};
use crate::protocol::{InboxPage, StoredMessage, now_rfc3339};

/// How long the store thread stays awake for the next command after a commit.
const STAY_AWAKE: Duration = Duration::from_micros(60);
/// How long a batch waits for the senders of the last one.
const GATHER: Duration = Duration::from_micros(150);
/// Batches smaller than this do not wait for more (see [`Worker::gather`]).
const GATHER_FROM: usize = 16;
/// Rounds of the scheduler an inline store lets pass between the first command of a
/// batch and its commit, for the other sessions made ready meanwhile to queue theirs.
/// Measured with 64 senders: 3 rounds 9% faster than 1, 2 slower than 3, 4 and 8 no
/// faster.
const INLINE_GATHER_ROUNDS: usize = 3;

/// The connection with the statements every batch runs, taken out of the statement
/// cache once per batch or (on the store thread) once for its life, never once per
/// message: each use through the cache hashed its SQL to find it and cleared its
/// bindings to put it back, about 300 instructions per message with 64 senders.
pub(super) struct Db<'c> {
    conn: &'c Connection,
    begin: CachedStatement<'c>,
    commit: CachedStatement<'c>,
    insert: CachedStatement<'c>,
}

impl<'c> Db<'c> {
    pub fn prepare(conn: &'c Connection) -> Result<Self, rusqlite::Error> {
        Ok(Db {
            conn,
            begin: conn.prepare_cached("BEGIN")?,
            commit: conn.prepare_cached("COMMIT")?,
            insert: conn.prepare_cached(
                "INSERT INTO messages (recipient, sender, body, sent_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
        })
    }
}

/// What the store keeps between batches, wherever they run.
pub(super) struct Worker {
    /// Every name in `users` with its id, so a send to an unknown name costs no query,
    /// and a known one's id none either.
    pub known: HashMap<String, i64>,
    pub unread: Unread,
    /// The transaction that last changed `unread` was rolled back: reload it.
    pub unread_stale: bool,
    pub commit_batch: usize,
    pub commits: Arc<AtomicU64>,
}

impl Worker {
    /// The store thread's loop: sleeps until commands come, gathers, commits, answers.
    pub fn run(mut self, db: &mut Db<'_>, rx: Receiver) {
        let mut batch = Vec::with_capacity(self.commit_batch);
        let (mut last, mut before) = (0, 0);
        // Awake only for a lone sender: with many, a batch of one is a straggler, and
        // the next batch is the others on their way back, not this sender again.
        while self.first(&rx, &mut batch, last == 1 && before == 1) {
            self.gather(&rx, &mut batch, last);
            (last, before) = (batch.len(), last);
            self.run_batch(db, &mut batch);
        }
        self.finish(db.conn);
    }

    /// The store's loop as a task of a single-threaded runtime, where it is the same
    /// thread as every session, as Redis is: a batch is whatever the sessions queued in
    /// the rounds of the scheduler since the first command came, and it is committed
    /// there and then, the fsync included, while every session waits. No thread hands
    /// commands and answers to another, which on two cores shared with the clients was
    /// most of the cost of a durable send (see README, "Durability"); the price is that
    /// a disk that stalls stalls every client, not only those sending.
    pub async fn run_inline(mut self, conn: Connection, rx: Receiver) {
        let mut batch = Vec::with_capacity(self.commit_batch);
        loop {
            match rx.take(&mut batch, self.commit_batch) {
                Taken::Ended => break,
                Taken::Some(0) => {
                    rx.notified().await;
                    for _ in 0..INLINE_GATHER_ROUNDS {
                        tokio::task::yield_now().await;
                    }
                }
                Taken::Some(_) => match Db::prepare(&conn) {
                    Ok(mut db) => self.run_batch(&mut db, &mut batch),
                    Err(e) => self.refuse(&mut batch, &e),
                },
            }
        }
        self.finish(&conn);
    }

    /// A clean stop leaves the newest mark, so the next start reads the least.
    fn finish(&mut self, conn: &Connection) {
        if !self.unread_stale
            && let Err(e) = self.unread.save_mark(conn)
        {
            tracing::warn!("could not save where unread mail starts: {e}");
        }
    }

    /// Adds to `batch` the commands waiting and, when the last batch was larger, those
    /// that arrive within [`GATHER`]: the senders just answered are on their way back,
    /// and each commit that does not wait for them costs its own page writes and sync.
    /// Only after a batch of [`GATHER_FROM`] or more: with that many senders the cores
    /// are busy and a commit saved is worth the wait (64 senders: 64k/s without it,
    /// 72k/s with it); with a few, the cores are idle and waiting only adds latency
    /// (8 senders: 33k/s without, 30k/s with).
    fn gather(&self, rx: &Receiver, batch: &mut Vec<Command>, last: usize) {
        let target = if last >= GATHER_FROM {
            last.min(self.commit_batch)
        } else {
            0
        };
        rx.take(batch, self.commit_batch.saturating_sub(batch.len()));
        if batch.len() < target {
            rx.wait_for(target - batch.len(), Some(Instant::now() + GATHER));
            rx.take(batch, self.commit_batch.saturating_sub(batch.len()));
        }
    }

    /// Takes the first commands of the next batch, waiting for them; false when every
    /// handle is gone and nothing is left. With `stay_awake` (two batches of one in a
    /// row: a lone sender), that sender usually sends again within tens of
    /// microseconds: waiting that long awake (yielding the core) saves the thread a
    /// sleep and a wake-up per send, most of a lone sender's time outside fsync. With
    /// more senders, batches are larger and the cores are better left to them.
    fn first(&self, rx: &Receiver, batch: &mut Vec<Command>, stay_awake: bool) -> bool {
        let until = Instant::now() + STAY_AWAKE;
        loop {
            match rx.take(batch, self.commit_batch) {
                Taken::Ended => return false,
                Taken::Some(0) if stay_awake && Instant::now() < until => thread::yield_now(),
                Taken::Some(0) => {
                    if !rx.wait() {
                        return false;
                    }
                }
                Taken::Some(_) => return true,
            }
        }
    }

    /// Runs every command of `batch` in one transaction; answers them all after the
    /// commit, or all with an error if the transaction failed.
    fn run_batch(&mut self, db: &mut Db<'_>, batch: &mut Vec<Command>) {
        let mut newly_known = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        let result = self.transact(db, batch, &mut replies, &mut newly_known);
        // Whatever an aborted transaction did not reach is refused with the rest.
        replies.extend(batch.drain(..).map(|cmd| cmd.reply));
        // A session that disconnected meanwhile no longer waits: ignore failed sends.
        match result {
            Ok(outcomes) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.known.extend(newly_known);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => refuse_all(replies, &e),
        }
    }

    /// Answers every command of `batch` with the error that kept it from running.
    fn refuse(&mut self, batch: &mut Vec<Command>, e: &rusqlite::Error) {
        refuse_all(batch.drain(..).map(|cmd| cmd.reply).collect(), e);
    }

    /// Applies `batch` in one transaction, taking each command's reply sender into
    /// `replies` as it goes.
    fn transact(
        &mut self,
        db: &mut Db<'_>,
        batch: &mut Vec<Command>,
        replies: &mut Vec<Reply>,
        newly_known: &mut Vec<(String, i64)>,
    ) -> Result<Vec<Result<Outcome, StoreError>>, rusqlite::Error> {
        if self.unread_stale {
            self.unread = Unread::load(db.conn)?;
            self.unread_stale = false;
        }
        // Not `Connection::transaction`, which parses BEGIN and COMMIT for every batch.
        db.begin.execute([])?;
        // From here until the commit, `unread` runs ahead of the database.
        self.unread_stale = true;
        let applied = self
            .apply(db, batch, replies, newly_known)
            .and_then(|outcomes| {
                db.commit.execute([])?;
                Ok(outcomes)
            });
        match applied {
            Ok(_) => self.unread_stale = false,
            // A failed statement or commit can leave the transaction open.
            Err(_) if !db.conn.is_autocommit() => {
                let _ = db.conn.execute_batch("ROLLBACK");
            }
            Err(_) => {}
        }
        applied
    }

    /// Runs the commands of `batch` inside the open transaction.
    fn apply(
        &mut self,
        db: &mut Db<'_>,
        batch: &mut Vec<Command>,
        replies: &mut Vec<Reply>,
        newly_known: &mut Vec<(String, i64)>,
    ) -> Result<Vec<Result<Outcome, StoreError>>, rusqlite::Error> {
        // One time for the whole batch: its messages are kept at the same moment.
        let now = now_rfc3339();
        let mut batch_tx = Batch {
            tx: db.conn,
            known: &self.known,
            newly_known,
            unread: &mut self.unread,
            now: &now,
            insert: &mut db.insert,
            now_bound: false,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for cmd in batch.drain(..) {
            replies.push(cmd.reply);
            outcomes.push(batch_tx.apply(cmd.op)?);
        }
        if self.unread.mark_due() {
            self.unread.save_mark(db.conn)?;
        }
        Ok(outcomes)
    }
}

fn refuse_all(replies: Vec<Reply>, e: &rusqlite::Error) {
    tracing::error!(
        "store transaction failed, {} commands refused: {e}",
        replies.len()
    );
    for reply in replies {
        let _ = reply.send(Err(StoreError::Failed(e.to_string())));
    }
}

/// What one transaction's commands work on.
struct Batch<'a, 'b> {
    /// In a transaction, until the batch is done.
    tx: &'a Connection,
    known: &'a HashMap<String, i64>,
    /// Users added by this transaction, known to the others once it is committed.
    newly_known: &'a mut Vec<(String, i64)>,
    unread: &'a mut Unread,
    now: &'a str,
    insert: &'a mut Statement<'b>,
    /// `now` is bound to the insert. A binding stays until it is replaced: the batch's
    /// time is bound once, not copied into SQLite for every message.
    now_bound: bool,
}

impl Batch<'_, '_> {
    fn user_id(&self, name: &str) -> Option<i64> {
        self.known.get(name).copied().or_else(|| {
            (self.newly_known.iter())
                .find(|(known, _)| known == name)
                .map(|&(_, id)| id)
        })
    }

    /// The id of user `name`, who is added if never seen.
    fn see(&mut self, name: &str) -> Result<i64, rusqlite::Error> {
        if let Some(id) = self.user_id(name) {
            return Ok(id);
        }
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO users (name, first_seen) VALUES (?1, ?2)")?
            .execute(params![name, self.now])?;
        let id = self
            .tx
            .prepare_cached("SELECT id FROM users WHERE name = ?1")?
            .query_row(params![name], |row| row.get(0))?;
        self.newly_known.push((name.to_owned(), id));
        Ok(id)
    }

    /// Runs one operation inside the batch's transaction. An `Err` aborts the whole
    /// batch; an answer that is an error (an unknown recipient) does not.
    fn apply(&mut self, op: Op) -> Result<Result<Outcome, StoreError>, rusqlite::Error> {
        let tx = self.tx;
        Ok(match op {
            Op::Seen { name } => {
                self.see(&name)?;
                Ok(Outcome::Done)
            }
            Op::Credentials { name } => {
                let hash = tx
                    .prepare_cached("SELECT password_hash FROM users WHERE name = ?1")?
                    .query_row(params![name], |row| row.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten();
                Ok(Outcome::Hash(hash))
            }
            Op::Register { name, hash } => {
                self.see(&name)?;
                let changed = tx
                    .prepare_cached(
                        "UPDATE users SET password_hash = ?2
                         WHERE name = ?1 AND password_hash IS NULL",
                    )?
                    .execute(params![name, hash])?;
                Ok(Outcome::Registered(changed == 1))
            }
            Op::Append { to, from, text } => {
                let Some(recipient) = self.user_id(&to) else {
                    return Ok(Err(StoreError::NoSuchUser(to)));
                };
                // A session's name was seen at its hello: this finds it.
                let sender = self.see(&from)?;
                let insert = &mut *self.insert;
                if !self.now_bound {
                    insert.raw_bind_parameter(4, self.now)?;
                    self.now_bound = true;
                }
                insert.raw_bind_parameter(1, recipient)?;
                insert.raw_bind_parameter(2, sender)?;
                insert.raw_bind_parameter(3, &text)?;
                insert.raw_execute()?;
                let id = tx.last_insert_rowid() as u64;
                self.unread.push(recipient, id);
                Ok(Outcome::Stored(Appended { id, to, from }))
            }
            Op::TakeInbox {
                name,
                limit,
                byte_budget,
            } => Ok(Outcome::Page(self.take_inbox(&name, limit, byte_budget)?)),
        })
    }

    fn take_inbox(
        &mut self,
        name: &str,
        limit: u32,
        byte_budget: usize,
    ) -> Result<InboxPage, rusqlite::Error> {
        let Some(recipient) = self.user_id(name) else {
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
        let mut mark = self
            .tx
            .prepare_cached("UPDATE messages SET read = 1 WHERE id = ?1")?;
        for message in &messages {
            mark.execute(params![message.message_id as i64])?;
        }
        self.unread.mark_read(recipient, messages.len());
        Ok(InboxPage { messages, more })
    }
}
