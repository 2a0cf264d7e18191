//! The durable part of switchboard: the names ever seen and every direct message until it
//! is read, in one SQLite file.
//!
//! One thread owns the connection. Sessions hand it commands over a channel and await
//! the answer; the thread takes every command waiting at that moment and runs them in a
//! single transaction (group commit), so concurrent senders share one fsync, and
//! answers only after that transaction is committed: "ok" means on disk. On a
//! single-threaded server (`serve --threads 1`) the store is instead a task on that
//! one thread and commits there, as Redis does (see [`Store::open_inline`]).

mod queue;
mod schema;
mod unread;
mod worker;

use foldhash::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread;

use rusqlite::Connection;

use tokio::sync::oneshot;

use crate::protocol::{ErrorBody, ErrorCode, InboxPage};
use unread::Unread;
use worker::{Db, Worker};

/// Commands waiting beyond this many are taken by the next transaction, which keeps
/// one transaction's latency bounded under load.
pub const DEFAULT_COMMIT_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no user {0} has ever been seen")]
    NoSuchUser(String),
    #[error("the store is closed")]
    Closed,
    #[error("the store could not commit: {0}")]
    Failed(String),
    #[error("an inline store must be opened within a tokio runtime")]
    NoRuntime,
}

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchUser(_) => ErrorBody::new(ErrorCode::NoSuchUser, e.to_string()),
            StoreError::Closed => ErrorBody::new(ErrorCode::ShuttingDown, e.to_string()),
            StoreError::Sqlite(_) | StoreError::Failed(_) | StoreError::NoRuntime => {
                ErrorBody::new(ErrorCode::Internal, "storage failed; nothing was stored")
            }
        }
    }
}

/// A direct message committed, with the names it was sent with handed back (the text
/// is the store's to drop).
#[derive(Debug)]
pub struct Appended {
    pub id: u64,
    pub to: String,
    pub from: Arc<str>,
}

/// The answer to a command queued with the store thread, ready once the command's
/// transaction is committed. A named type rather than an `async` block, so that a
/// session can keep it in a plain enum while it waits.
#[must_use = "the answer says whether the command was kept"]
pub struct Pending<T> {
    /// None when the store thread is gone and the command was not queued.
    answer: Option<oneshot::Receiver<Result<Outcome, StoreError>>>,
    pick: fn(Outcome) -> Option<T>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("queued", &self.answer.is_some())
            .finish()
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(answer) = self.answer.as_mut() else {
            return Poll::Ready(Err(StoreError::Closed));
        };
        let outcome = match Pin::new(answer).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(outcome)) => outcome?,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(StoreError::Closed)),
        };
        Poll::Ready(
            (self.pick)(outcome)
                .ok_or_else(|| StoreError::Failed("an answer of the wrong kind".into())),
        )
    }
}

/// What the store thread answers a command with, once its transaction is committed.
enum Outcome {
    Done,
    Stored(Appended),
    Page(InboxPage),
    /// A name's password hash, if it is protected.
    Hash(Option<String>),
    /// Whether a password was registered (false: the name was protected meanwhile).
    Registered(bool),
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

struct Command {
    op: Op,
    reply: Reply,
}

enum Op {
    Seen {
        name: String,
    },
    Credentials {
        name: String,
    },
    Register {
        name: String,
        hash: String,
    },
    Append {
        to: String,
        from: Arc<str>,
        text: String,
    },
    TakeInbox {
        name: String,
        limit: u32,
        byte_budget: usize,
    },
}

/// A handle on the store thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    tx: queue::Sender,
    commits: Arc<AtomicU64>,
}

/// Waits for the store to finish its last batch and close the database.
#[derive(Debug)]
pub struct StoreCloser(Closer);

#[derive(Debug)]
enum Closer {
    Thread(thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl StoreCloser {
    /// Blocks until every handle is dropped and the store thread has closed the file.
    /// For an inline store (a task, which cannot be waited for by blocking the thread
    /// it may run on), use [`StoreCloser::closed`].
    pub fn join(self) {
        match self.0 {
            Closer::Thread(thread) => {
                if thread.join().is_err() {
                    tracing::error!("the store thread panicked");
                }
            }
            Closer::Task(_) => {
                tracing::error!("an inline store can only be waited for with `closed`");
            }
        }
    }

    /// Returns once every handle is dropped and the store has closed the file.
    pub async fn closed(self) {
        let done = match self.0 {
            Closer::Thread(thread) => tokio::task::spawn_blocking(move || thread.join().is_ok())
                .await
                .unwrap_or(false),
            Closer::Task(task) => task.await.is_ok(),
        };
        if !done {
            tracing::error!("the store panicked");
        }
    }
}

impl Store {
    /// Opens (creating if need be) the database at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<(Store, StoreCloser), StoreError> {
        Store::open_with(path, DEFAULT_COMMIT_BATCH)
    }

    /// As [`Store::open`], committing at most `commit_batch` commands per transaction
    /// (1: a transaction and an fsync per command, the baseline group commit beats).
    pub fn open_with(path: &Path, commit_batch: usize) -> Result<(Store, StoreCloser), StoreError> {
        let (conn, worker) = Store::open_db(path, commit_batch)?;
        // Unbounded, yet bounded by the connections: a session serves its requests in
        // order, so it has at most one command here at a time.
        let (tx, rx) = queue::queue(queue::Kind::Thread);
        let commits = Arc::clone(&worker.commits);
        let thread = thread::Builder::new()
            .name("store".into())
            .spawn(move || match Db::prepare(&conn) {
                Ok(mut db) => worker.run(&mut db, rx),
                Err(e) => tracing::error!("the store could not prepare its statements: {e}"),
            })
            .map_err(|_| StoreError::Closed)?;
        let closer = StoreCloser(Closer::Thread(thread));
        Ok((Store { tx, commits }, closer))
    }

    /// As [`Store::open_with`], but the store runs as a task of the current runtime
    /// instead of a thread of its own, and commits on the runtime's thread (see
    /// `Worker::run_inline`). Meant for a single-threaded runtime, where it is the
    /// fastest way to durable sends; on a multi-threaded one it would block a worker
    /// for every commit. Must be called within a runtime.
    pub fn open_inline(
        path: &Path,
        commit_batch: usize,
    ) -> Result<(Store, StoreCloser), StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            tracing::warn!(
                "an inline store on a multi-threaded runtime blocks a worker per commit"
            );
        }
        let (conn, worker) = Store::open_db(path, commit_batch)?;
        let (tx, rx) = queue::queue(queue::Kind::Task);
        let commits = Arc::clone(&worker.commits);
        let task = runtime.spawn(worker.run_inline(conn, rx));
        Ok((Store { tx, commits }, StoreCloser(Closer::Task(task))))
    }

    /// Opens the database with the settings durability needs, brings its tables up to
    /// date and loads what the store keeps in memory.
    fn open_db(path: &Path, commit_batch: usize) -> Result<(Connection, Worker), StoreError> {
        let conn = Connection::open(path)?;
        // journal_mode=WAL: a commit appends the transaction's pages to the WAL and
        // syncs that one file, instead of the rollback journal's two or more syncs
        // (journal, then database); readers never block the writer.
        // synchronous=FULL: every commit fsyncs the WAL before it returns, so a send
        // answered ok survives a process crash (kill -9) *and* a power loss or kernel
        // panic. NORMAL would sync only at checkpoints: safe against a process crash
        // (the WAL is in the OS page cache) but a power loss could drop the last
        // commits, breaking "acknowledged means kept". OFF would lose both.
        // FULL costs one fsync per transaction; group commit (below) shares it among
        // every command waiting, so its cost is per batch, not per message.
        // locking_mode=EXCLUSIVE: the server is the file's only user, so it takes the
        // lock once instead of with fcntl calls around every transaction (six per
        // commit otherwise, a third of a lone sender's time outside fsync); a second
        // server started on the same file is refused instead of interleaving.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A checkpoint copies the newest version of every page in the WAL back into the
        // database and syncs it. Sends rewrite the same few pages (the last table page,
        // the index leaves) in commit after commit, so checkpointing every 8,000 pages
        // (32 MiB of WAL) instead of SQLite's 1,000 copies each page once where it
        // would have copied it many times, and syncs the database file far less often.
        conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
        schema::prepare(&conn)?;
        let known = {
            let mut stmt = conn.prepare("SELECT name, id FROM users")?;
            stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<HashMap<_, _>, _>>()?
        };
        let unread = Unread::load(&conn)?;
        // Prepared here, so that a statement SQLite refuses fails the open.
        drop(Db::prepare(&conn)?);
        let worker = Worker {
            known,
            unread,
            unread_stale: false,
            commit_batch: commit_batch.max(1),
            commits: Arc::new(AtomicU64::new(0)),
        };
        Ok((conn, worker))
    }

    /// Transactions committed so far: with group commit, fewer than commands.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `op` at once and returns the wait for its answer, which `pick` takes
    /// apart. Queued now rather than when first polled, so that the future a session
    /// keeps while it waits holds only the answer's receiver, not the command.
    fn call<T>(&self, op: Op, pick: fn(Outcome) -> Option<T>) -> Pending<T> {
        let (reply, answer) = oneshot::channel();
        let queued = self.tx.send(Command { op, reply }).is_ok();
        Pending {
            answer: queued.then_some(answer),
            pick,
        }
    }

    /// Records that `name` exists, so that mail to it is kept while it is offline.
    pub fn seen(&self, name: &str) -> Pending<()> {
        let name = name.to_owned();
        self.call(Op::Seen { name }, |outcome| match outcome {
            Outcome::Done => Some(()),
            _ => None,
        })
    }

    /// The password hash protecting `name`, if any.
    pub fn credentials(&self, name: &str) -> Pending<Option<String>> {
        let name = name.to_owned();
        self.call(Op::Credentials { name }, |outcome| match outcome {
            Outcome::Hash(hash) => Some(hash),
            _ => None,
        })
    }

    /// Protects `name` with `hash` (a PHC string, never a password) unless it is
    /// protected already; records the name as seen. True when this hash took effect.
    pub fn register(&self, name: &str, hash: String) -> Pending<bool> {
        let name = name.to_owned();
        self.call(Op::Register { name, hash }, |outcome| match outcome {
            Outcome::Registered(done) => Some(done),
            _ => None,
        })
    }

    /// Stores a direct message; answers once it is committed to disk.
    pub fn append(&self, to: String, from: Arc<str>, text: String) -> Pending<Appended> {
        self.call(Op::Append { to, from, text }, |outcome| match outcome {
            Outcome::Stored(appended) => Some(appended),
            _ => None,
        })
    }

    /// Takes up to `limit` of `name`'s unread messages, oldest first, whose JSON fits
    /// in about `byte_budget` bytes (at least one, so the reader always progresses),
    /// and marks them read.
    pub fn take_inbox(&self, name: String, limit: u32, byte_budget: usize) -> Pending<InboxPage> {
        let op = Op::TakeInbox {
            name,
            limit,
            byte_budget,
        };
        self.call(op, |outcome| match outcome {
            Outcome::Page(page) => Some(page),
            _ => None,
        })
    }
}
