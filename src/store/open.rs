//! Opening the database file: what is checked before anything is written, the settings
//! durability needs, and the file's identity, checked again before every batch.
//!
//! The checks come before any pragma that writes (`journal_mode=WAL` rewrites the
//! header): a file that is not a switchboard store, or that another server holds, is
//! refused untouched.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::StoreError;
use super::schema;

/// Opens `path`, refusing what is not a switchboard store (or a new, empty file), and
/// brings it to the current schema. The connection holds the file's lock from here on.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    precheck(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    // rusqlite waits 5 s for a lock by default; a server that holds it keeps it for
    // good, so waiting only delays the refusal.
    conn.busy_timeout(Duration::ZERO)?;
    // The server is the file's only user: it takes the lock once instead of with fcntl
    // calls around every transaction (six per commit otherwise, a third of a lone
    // sender's time outside fsync), and a second server on the same file is refused
    // instead of interleaving. The lock is taken by the first read, below.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let found = schema::inspect(&conn).map_err(classify)??;
    settings(&conn)?;
    schema::prepare(&conn, found)?;
    Ok(conn)
}

/// Says what is wrong with the path itself, in the words an operator needs, where
/// SQLite would only say "unable to open database file".
fn precheck(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(StoreError::NoDirectory(dir.to_path_buf()));
    }
    if path.is_dir() {
        return Err(StoreError::IsDirectory);
    }
    Ok(())
}

/// The store error for what SQLite answered while opening and inspecting the file.
fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(e.to_string())
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::CannotOpen
        }
        _ => StoreError::Sqlite(e),
    }
}

/// The settings every connection of the server's store runs with, once the file is
/// known to be a switchboard store.
fn settings(conn: &Connection) -> Result<(), StoreError> {
    // journal_mode=WAL: a commit appends the transaction's pages to the WAL and
    // syncs that one file, instead of the rollback journal's two or more syncs
    // (journal, then database); readers never block the writer.
    // synchronous=FULL: every commit fsyncs the WAL before it returns, so a send
    // answered ok survives a process crash (kill -9) *and* a power loss or kernel
    // panic. NORMAL would sync only at checkpoints: safe against a process crash
    // (the WAL is in the OS page cache) but a power loss could drop the last
    // commits, breaking "acknowledged means kept". OFF would lose both.
    // FULL costs one fsync per transaction; group commit shares it among every
    // command waiting, so its cost is per batch, not per message.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(classify)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A checkpoint copies the newest version of every page in the WAL back into the
    // database and syncs it. Sends rewrite the same few pages (the last table page,
    // the index leaves) in commit after commit, so checkpointing every 8,000 pages
    // (32 MiB of WAL) instead of SQLite's 1,000 copies each page once where it
    // would have copied it many times, and syncs the database file far less often.
    conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
    Ok(())
}

/// Which file a path names: a path whose identity changes, or that no longer exists,
/// no longer leads to the file the store writes, and what it commits is lost at the
/// next start.
#[derive(Debug)]
pub(super) struct FileIdentity {
    files: Vec<(PathBuf, (u64, u64))>,
}

impl FileIdentity {
    /// The identity of the database at `path` and of its WAL, as they are now.
    pub fn of(path: &Path) -> FileIdentity {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let files = [path.to_path_buf(), PathBuf::from(wal)]
            .into_iter()
            .filter_map(|path| identity(&path).map(|id| (path, id)))
            .collect();
        FileIdentity { files }
    }

    /// The first file that is gone or is another file now, if any.
    pub fn changed(&self) -> Option<&Path> {
        (self.files.iter())
            .find(|(path, id)| identity(path) != Some(*id))
            .map(|(path, _)| path.as_path())
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
