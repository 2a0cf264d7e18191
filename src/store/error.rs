//! What can go wrong with the store, each cause said once: the messages name what
//! happened and what to do, and carry no `source()` chain that would repeat them.

use std::path::PathBuf;

use crate::protocol::{ErrorBody, ErrorCode};

use super::schema::SCHEMA_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the directory {} does not exist", .0.display())]
    NoDirectory(PathBuf),
    #[error("it is a directory, not a file")]
    IsDirectory,
    #[error("SQLite cannot open or create it; check the permissions of the file and its directory")]
    CannotOpen,
    #[error("it is in use by another switchboard server (or another program)")]
    InUse,
    #[error(
        "it is not a SQLite database or it is corrupt ({0}); restore it from a backup, or move it aside to start an empty store"
    )]
    Corrupt(String),
    #[error("it is not a switchboard store ({0}); it was left untouched")]
    Foreign(String),
    #[error(
        "it was written by a newer switchboard (schema version {0}; this one knows up to {SCHEMA_VERSION}); it was left untouched"
    )]
    Newer(i64),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("no user {0} has ever been seen")]
    NoSuchUser(String),
    /// A send by client id, to an id no one online holds.
    #[error("no user is online with client id {0}")]
    NoSuchClient(crate::protocol::ClientId),
    #[error("the store is closed")]
    Closed,
    #[error("the store could not commit: {0}")]
    Failed(String),
    #[error(
        "the store's database file was removed or replaced while the server ran; nothing was stored"
    )]
    Lost,
    #[error("an inline store must be opened within a tokio runtime")]
    NoRuntime,
    #[error("{0}")]
    Backup(String),
    /// A cluster node's NATS did not confirm the write: it may or may not have been
    /// kept, and it was not acknowledged.
    #[error("the cluster did not confirm it ({0})")]
    Unconfirmed(String),
}

/// Not `#[from]`, which would also make the SQLite error this one's `source()`, and
/// `anyhow`'s `{:#}` would print it twice.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<StoreError> for ErrorBody {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchUser(_) | StoreError::NoSuchClient(_) => {
                ErrorBody::new(ErrorCode::NoSuchUser, e.to_string())
            }
            StoreError::Closed => ErrorBody::new(ErrorCode::ShuttingDown, e.to_string()),
            StoreError::Lost => ErrorBody::new(
                ErrorCode::Internal,
                "storage failed: the server lost its database file; nothing was stored",
            ),
            StoreError::Unconfirmed(_) => ErrorBody::new(
                ErrorCode::Internal,
                format!("not acknowledged: {e}; try again once the cluster is back"),
            ),
            _ => ErrorBody::new(ErrorCode::Internal, "storage failed; nothing was stored"),
        }
    }
}
