//! The store's loop, on a thread of its own or as a task of a single-threaded runtime:
//! takes the commands waiting, runs them in one transaction, and answers them once it
//! is committed.

use foldhash::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{CachedStatement, Connection};

use super::batch::{Batch, User, fold};
use super::lifecycle::{self, KeepRead};
use super::open::FileIdentity;
use super::queue::{Receiver, Taken};
use super::unread::Unread;
use super::{Command, Op, Options, Outcome, Reply, StoreError};
use crate::metrics::Metrics;
use crate::protocol::now_rfc3339;

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
    pub insert: CachedStatement<'c>,
}

impl<'c> Db<'c> {
    pub fn prepare(conn: &'c Connection) -> Result<Self, rusqlite::Error> {
        Ok(Db {
            conn,
            begin: conn.prepare_cached("BEGIN")?,
            commit: conn.prepare_cached("COMMIT")?,
            insert: conn.prepare_cached(
                "INSERT INTO messages (recipient, sender, body, sent_at, id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?,
        })
    }
}

/// What the store keeps between batches, wherever they run.
pub(super) struct Worker {
    /// Every user in `users` by its name in lower case, so a send to an unknown name
    /// costs no query, and a known one's id none either.
    pub known: HashMap<String, User>,
    pub unread: Unread,
    /// The transaction that last changed `unread` was rolled back: reload it.
    pub unread_stale: bool,
    pub commit_batch: usize,
    pub commits: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
    keep_read: KeepRead,
    /// The id the next message gets (see `lifecycle.rs`).
    next_id: u64,
    /// Guests whose rows mail they sent may still name: every guest row found at open
    /// (the others were pruned), and each guest that sends. Only these keep their row
    /// when they leave, so that forgetting a guest needs no scan of the messages.
    guest_senders: HashSet<i64>,
    /// See `Batch::ids_in_step`.
    ids_in_step: bool,
    last_prune: Instant,
    /// The database file as opened; checked before every batch.
    identity: FileIdentity,
    path: PathBuf,
    /// The file was found gone or replaced (logged once): every write is refused.
    lost: bool,
}

impl Worker {
    /// Opens the database, prunes what its lifecycle says is gone, and loads what the
    /// store keeps in memory.
    pub fn open(path: &Path, options: &Options) -> Result<(Connection, Worker), StoreError> {
        let conn = super::open::open(path)?;
        let next_id = lifecycle::load_next_id(&conn)?;
        conn.execute_batch("BEGIN")?;
        let pruned = (|| {
            let read = lifecycle::prune_read(&conn, options.keep_read)?;
            let guests = lifecycle::prune_guests(&conn)?;
            lifecycle::save_next_id(&conn, next_id)?;
            conn.execute_batch("COMMIT")?;
            Ok::<_, rusqlite::Error>((read, guests))
        })();
        let (read, guests) = pruned.inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
        if read + guests > 0 {
            tracing::info!("store: pruned {read} read messages and {guests} guests left over");
        }
        let known = {
            let mut stmt = conn.prepare("SELECT name, id FROM users")?;
            stmt.query_map([], |row| {
                let name: String = row.get(0)?;
                let user = User {
                    id: row.get(1)?,
                    name: name.as_str().into(),
                };
                Ok((fold(&name).into_owned(), user))
            })?
            .collect::<Result<HashMap<_, _>, _>>()?
        };
        let guest_senders = known
            .iter()
            .filter(|(name, _)| lifecycle::is_guest(name))
            .map(|(_, user)| user.id)
            .collect();
        let unread = Unread::load(&conn)?;
        // Prepared here, so that a statement SQLite refuses fails the open.
        drop(Db::prepare(&conn)?);
        let worker = Worker {
            known,
            unread,
            unread_stale: false,
            commit_batch: options.commit_batch.max(1),
            commits: Arc::new(AtomicU64::new(0)),
            metrics: options.metrics.clone(),
            keep_read: options.keep_read,
            next_id,
            guest_senders,
            ids_in_step: false,
            last_prune: Instant::now(),
            identity: FileIdentity::of(path),
            path: path.to_path_buf(),
            lost: false,
        };
        Ok((conn, worker))
    }

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
    /// most of the cost of a durable send (see docs/operations.md, "Threads and the
    /// store"); the price is that a disk that stalls stalls every client, not only
    /// those sending.
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
            && !self.lost
            && let Err(e) = self.unread.save_mark(conn, self.next_id)
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
    /// commit, or all with an error if the transaction failed. Backups run after the
    /// commit, outside any transaction, so that they copy only what is committed.
    fn run_batch(&mut self, db: &mut Db<'_>, batch: &mut Vec<Command>) {
        let mut backups = Vec::new();
        if batch.iter().any(|cmd| matches!(cmd.op, Op::Backup { .. })) {
            let (copies, rest) = batch
                .drain(..)
                .partition(|c| matches!(c.op, Op::Backup { .. }));
            (backups, *batch) = (copies, rest);
        }
        if self.file_lost() {
            for cmd in batch.drain(..) {
                let _ = cmd.reply.send(Err(StoreError::Lost));
            }
        } else if !batch.is_empty() {
            self.run_transaction(db, batch);
        }
        for cmd in backups {
            if let Op::Backup { to } = cmd.op {
                let _ = cmd.reply.send(backup(db.conn, &to).map(|()| Outcome::Done));
            }
        }
    }

    /// Whether the database file the store writes is no longer the one its path names:
    /// deleted, or replaced. What it would commit now is lost at the next start, so
    /// nothing more is acknowledged. One `stat` or two per batch, not per message.
    fn file_lost(&mut self) -> bool {
        if self.lost {
            return true;
        }
        let Some(changed) = self.identity.changed() else {
            return false;
        };
        self.lost = true;
        tracing::error!(
            "the store's file {} was deleted or replaced while the server ran: nothing is \
             stored from now on and every send is refused. What the server held until now \
             can still be saved: `switchboard backup FILE --db {}` while it runs; then stop \
             it and restore that backup (or the last one) in place of {}",
            changed.display(),
            self.path.display(),
            self.path.display()
        );
        true
    }

    fn run_transaction(&mut self, db: &mut Db<'_>, batch: &mut Vec<Command>) {
        let mut newly_known = Vec::new();
        let mut forgotten = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        let (started, commands) = (Instant::now(), batch.len());
        let result = self.transact(db, batch, &mut replies, &mut newly_known, &mut forgotten);
        // Whatever an aborted transaction did not reach is refused with the rest.
        replies.extend(batch.drain(..).map(|cmd| cmd.reply));
        // A session that disconnected meanwhile no longer waits: ignore failed sends.
        match result {
            Ok(outcomes) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                if let Some(metrics) = &self.metrics {
                    metrics.store_commit(started.elapsed(), commands);
                }
                for name in forgotten {
                    self.known.remove(&name);
                }
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
        newly_known: &mut Vec<(String, User)>,
        forgotten: &mut Vec<String>,
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
            .apply(db, batch, replies, newly_known, forgotten)
            .and_then(|outcomes| {
                db.commit.execute([])?;
                Ok(outcomes)
            });
        match applied {
            Ok(_) => self.unread_stale = false,
            Err(_) => {
                // What the batch inserted is gone: give the next message its id.
                self.ids_in_step = false;
                // A failed statement or commit can leave the transaction open.
                if !db.conn.is_autocommit() {
                    let _ = db.conn.execute_batch("ROLLBACK");
                }
            }
        }
        applied
    }

    /// Runs the commands of `batch` inside the open transaction.
    fn apply(
        &mut self,
        db: &mut Db<'_>,
        batch: &mut Vec<Command>,
        replies: &mut Vec<Reply>,
        newly_known: &mut Vec<(String, User)>,
        forgotten: &mut Vec<String>,
    ) -> Result<Vec<Result<Outcome, StoreError>>, rusqlite::Error> {
        // One time for the whole batch: its messages are kept at the same moment.
        let now = now_rfc3339();
        let mut batch_tx = Batch {
            tx: db.conn,
            known: &self.known,
            newly_known,
            forgotten,
            unread: &mut self.unread,
            now: &now,
            insert: &mut db.insert,
            now_bound: false,
            keep_read: self.keep_read,
            next_id: &mut self.next_id,
            guest_senders: &mut self.guest_senders,
            deleted: false,
            ids_in_step: &mut self.ids_in_step,
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for cmd in batch.drain(..) {
            replies.push(cmd.reply);
            outcomes.push(batch_tx.apply(cmd.op)?);
        }
        let mut deleted = batch_tx.deleted;
        if let KeepRead::Days(_) = self.keep_read
            && self.last_prune.elapsed() >= lifecycle::PRUNE_EVERY
        {
            self.last_prune = Instant::now();
            let pruned = lifecycle::prune_read(db.conn, self.keep_read)?;
            if pruned > 0 {
                tracing::info!("store: pruned {pruned} read messages past --keep-read");
                deleted = true;
            }
        }
        if deleted {
            lifecycle::save_next_id(db.conn, self.next_id)?;
            self.ids_in_step = false;
        }
        if self.unread.mark_due() {
            self.unread.save_mark(db.conn, self.next_id)?;
        }
        Ok(outcomes)
    }
}

/// Copies the database to a temporary file beside `to` by SQLite's online backup, then
/// renames it over `to`: a backup is whole or absent, never half written.
fn backup(conn: &Connection, to: &Path) -> Result<(), StoreError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backup(format!("cannot {what} {}: {e}", to.display()))
    };
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let copied = conn
        .backup(
            rusqlite::MAIN_DB,
            &partial,
            None::<fn(rusqlite::backup::Progress)>,
        )
        .map_err(|e| failed("write the backup", &e))
        .and_then(|()| {
            std::fs::File::open(&partial)
                .and_then(|f| f.sync_all())
                .map_err(|e| failed("write the backup", &e))
        })
        .and_then(|()| {
            std::fs::rename(&partial, to).map_err(|e| failed("rename the backup to", &e))
        });
    if copied.is_err() {
        let _ = std::fs::remove_file(&partial);
    } else {
        tracing::info!("store: backed up to {}", to.display());
    }
    copied
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
