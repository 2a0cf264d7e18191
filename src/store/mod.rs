//! The durable part of switchboard: the names seen (unique without regard to case) with
//! their passwords, and every direct message until it is read (or, with `--keep-read`,
//! some days longer), in one SQLite file. Guests are forgotten when they go (see
//! `lifecycle.rs`); the file is checked before anything is written to it (`open.rs`).
//!
//! One thread owns the connection. Sessions hand it commands over a channel and await
//! the answer; the thread takes every command waiting at that moment and runs them in a
//! single transaction (group commit), so concurrent senders share one fsync, and
//! answers only after that transaction is committed: "ok" means on disk. On a
//! single-threaded server (`serve --threads 1`) the store is instead a task on that
//! one thread and commits there, as Redis does (see [`Store::open_inline`]).

mod batch;
mod error;
mod lifecycle;
mod open;
mod queue;
mod schema;
mod unread;
mod worker;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread;

use tokio::sync::oneshot;

use crate::metrics::Metrics;
use crate::protocol::InboxPage;
pub use error::StoreError;
pub use lifecycle::{KeepRead, is_guest};
use worker::{Db, Worker};

/// Commands waiting beyond this many are taken by the next transaction, which keeps
/// one transaction's latency bounded under load.
pub const DEFAULT_COMMIT_BATCH: usize = 1024;

/// How a store runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most commands committed in one transaction (1: a transaction and an fsync per
    /// command, the baseline group commit beats).
    pub commit_batch: usize,
    /// How long read mail is kept.
    pub keep_read: KeepRead,
    /// Runs as a task of the current runtime instead of a thread (see
    /// [`Store::open_inline`]).
    pub inline: bool,
    /// Where each commit's time and size are counted, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            commit_batch: DEFAULT_COMMIT_BATCH,
            keep_read: KeepRead::No,
            inline: false,
            metrics: None,
        }
    }
}

/// A name the store has seen: as first stored (its display case), and its password
/// hash if it is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub hash: Option<String>,
}

/// One user, as `switchboard admin users` lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserSummary {
    pub name: String,
    pub protected: bool,
    pub unread: usize,
}

/// A direct message committed, with the names it was sent with handed back (the text
/// is the store's to drop).
#[derive(Debug)]
pub struct Appended {
    pub id: u64,
    /// The recipient's name as first stored, whatever the case it was sent to.
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
    /// How many messages an `ack` marked read.
    Acked(u64),
    /// A name as first stored.
    Name(String),
    /// A name's account; None when it was never seen.
    Account(Option<Account>),
    /// Whether the command took effect (a password registered, a user found).
    Changed(bool),
    Users(Vec<UserSummary>),
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
    Inbox {
        name: String,
        limit: u32,
        byte_budget: usize,
        /// Leave the page unread (it is read once acknowledged).
        peek: bool,
    },
    Ack {
        name: String,
        up_to: u64,
    },
    /// Forgets a user: its mail and password, and its row unless mail it sent is there.
    Forget {
        name: String,
        only_guest: bool,
    },
    SetPassword {
        name: String,
        hash: Option<String>,
    },
    Users,
    Backup {
        to: PathBuf,
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
        Store::start(path, Options::default())
    }

    /// As [`Store::open`], committing at most `commit_batch` commands per transaction.
    pub fn open_with(path: &Path, commit_batch: usize) -> Result<(Store, StoreCloser), StoreError> {
        let options = Options {
            commit_batch,
            ..Options::default()
        };
        Store::start(path, options)
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
        let options = Options {
            commit_batch,
            inline: true,
            ..Options::default()
        };
        Store::start(path, options)
    }

    /// Opens the store at `path` as `options` say and starts it.
    pub fn start(path: &Path, options: Options) -> Result<(Store, StoreCloser), StoreError> {
        if options.inline {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
            if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
                tracing::warn!(
                    "an inline store on a multi-threaded runtime blocks a worker per commit"
                );
            }
            let (conn, worker) = Worker::open(path, &options)?;
            let (tx, rx) = queue::queue(queue::Kind::Task);
            let commits = Arc::clone(&worker.commits);
            let task = runtime.spawn(worker.run_inline(conn, rx));
            return Ok((Store { tx, commits }, StoreCloser(Closer::Task(task))));
        }
        let (conn, worker) = Worker::open(path, &options)?;
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

    /// Records that `name` exists, so that mail to it is kept while it is offline;
    /// answers its name as first stored.
    pub fn seen(&self, name: &str) -> Pending<String> {
        let name = name.to_owned();
        self.call(Op::Seen { name }, |outcome| match outcome {
            Outcome::Name(name) => Some(name),
            _ => None,
        })
    }

    /// The account of `name` (in any case): its name as first stored and its password
    /// hash, if it is protected; None if it was never seen.
    pub fn credentials(&self, name: &str) -> Pending<Option<Account>> {
        let name = name.to_owned();
        self.call(Op::Credentials { name }, |outcome| match outcome {
            Outcome::Account(account) => Some(account),
            _ => None,
        })
    }

    /// Protects `name` with `hash` (a PHC string, never a password) unless it is
    /// protected already; records the name as seen. True when this hash took effect.
    pub fn register(&self, name: &str, hash: String) -> Pending<bool> {
        let name = name.to_owned();
        self.call(Op::Register { name, hash }, changed)
    }

    /// Forgets guest `name` when it goes: its user row and its mail, read or not. Mail
    /// it sent stays for its recipients, and with it the row that names its sender,
    /// until that mail is gone (then the next start prunes it). Does nothing to a name
    /// that is not a guest's.
    pub fn forget_guest(&self, name: &str) -> Pending<bool> {
        let name = name.to_owned();
        let op = Op::Forget {
            name,
            only_guest: true,
        };
        self.call(op, changed)
    }

    /// Forgets user `name` (an operator's `admin forget`): as for a guest, and its
    /// password too. False when no such user was ever seen.
    pub fn forget(&self, name: &str) -> Pending<bool> {
        let name = name.to_owned();
        let op = Op::Forget {
            name,
            only_guest: false,
        };
        self.call(op, changed)
    }

    /// Sets (a PHC string) or removes the password of `name`; false if it was never
    /// seen.
    pub fn set_password(&self, name: &str, hash: Option<String>) -> Pending<bool> {
        let name = name.to_owned();
        self.call(Op::SetPassword { name, hash }, changed)
    }

    /// Every user, with whether it is protected and its unread count.
    pub fn users(&self) -> Pending<Vec<UserSummary>> {
        self.call(Op::Users, |outcome| match outcome {
            Outcome::Users(users) => Some(users),
            _ => None,
        })
    }

    /// Copies the whole database, as committed so far, to `to` by SQLite's online
    /// backup, on the store's own thread: a temporary file beside `to`, renamed over
    /// it once complete.
    pub fn backup(&self, to: PathBuf) -> Pending<()> {
        self.call(Op::Backup { to }, |outcome| match outcome {
            Outcome::Done => Some(()),
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
        self.inbox(name, limit, byte_budget, false)
    }

    /// The page [`Store::take_inbox`] would take, left unread: a client acknowledges
    /// it with [`Store::ack`] once it has handed it over, so that a client cut in
    /// between finds it again.
    pub fn peek_inbox(&self, name: String, limit: u32, byte_budget: usize) -> Pending<InboxPage> {
        self.inbox(name, limit, byte_budget, true)
    }

    fn inbox(
        &self,
        name: String,
        limit: u32,
        byte_budget: usize,
        peek: bool,
    ) -> Pending<InboxPage> {
        let op = Op::Inbox {
            name,
            limit,
            byte_budget,
            peek,
        };
        self.call(op, |outcome| match outcome {
            Outcome::Page(page) => Some(page),
            _ => None,
        })
    }

    /// Marks read every unread message of `name` with an id up to `up_to`, as a plain
    /// inbox read would have; answers how many, once that is committed. Ids that are
    /// not `name`'s, or not unread, are passed over: acknowledging twice is harmless.
    pub fn ack(&self, name: String, up_to: u64) -> Pending<u64> {
        self.call(Op::Ack { name, up_to }, |outcome| match outcome {
            Outcome::Acked(acked) => Some(acked),
            _ => None,
        })
    }
}

fn changed(outcome: Outcome) -> Option<bool> {
    match outcome {
        Outcome::Changed(done) => Some(done),
        _ => None,
    }
}
