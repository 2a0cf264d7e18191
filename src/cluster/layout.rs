//! The buckets and streams a cluster keeps its shared state in, created idempotently by
//! every node at start ([`ensure_layout`]), each with the same replica count.
//!
//! | name | kind | key or subject | holds |
//! |---|---|---|---|
//! | `sb-accounts` | KV | name token | display name and argon2 hash: the store's names seen |
//! | `sb-names` | KV | name token | who holds the name now: node, boot, client id ([`crate::cluster::Claim`]) |
//! | `sb-nodes` | KV, max_age = lease | node | the node's lease, refreshed by its heartbeat |
//! | `sb-rooms` | KV | `r.<room>`, `m.<room>.<client>` | a room's owner and epoch; one key per member |
//! | `sb-sessions` | KV | name | each session's note: token hash, client id, seats, node |
//! | `sb-ids` | KV | `next` | the next client id not handed out |
//! | `SB_INBOX` | stream | `sb.inbox.<name>` | each direct message until acked |
//! | `SB_ROOMS` | stream, per subject ≤ history | `sb.room.<room>` | each room's last messages, `Sb-Seq` in a header |
//! | `SB_READ` | stream, max_age = `--keep-read` | `sb.read.<name>` | read mail, only with `--keep-read` |
//!
//! Core NATS, not stored: `sb.node.<node>.deliver` carries what one node hands another
//! (mail just stored for a client connected there, a takeover), `sb.ev.room.<room>` a
//! room's stored messages and joins to every node with a member in it.
//!
//! Healing is by node lease, not per-client TTLs: a node refreshes one key, not one per
//! client (50,000 clients each refreshed every few seconds would be thousands of
//! replicated writes a second per node). Every claim, presence and membership names its
//! node and boot; once a lease has aged out of `sb-nodes`, any node removes that boot's
//! entries, each with a revision-checked delete, so cleanup never removes a claim made
//! since. A node that cannot refresh its lease for a whole lease period drops its own
//! clients, since the others may have taken their names by then.

use std::time::Duration;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{Context, ErrorCode};

use tokio::time::Instant;

use super::ClusterError;

pub const ACCOUNTS: &str = "sb-accounts";
pub const NAMES: &str = "sb-names";
pub const NODES: &str = "sb-nodes";
pub const ROOMS: &str = "sb-rooms";
pub const SESSIONS: &str = "sb-sessions";
pub const IDS: &str = "sb-ids";
pub const INBOX_STREAM: &str = "SB_INBOX";
pub const ROOMS_STREAM: &str = "SB_ROOMS";
pub const READ_STREAM: &str = "SB_READ";

/// The stream subject of `token`'s inbox (see [`super::name_token`]).
pub fn inbox_subject(token: &str) -> String {
    format!("sb.inbox.{token}")
}

/// The stream subject of `token`'s read mail, kept for `--keep-read`.
pub fn read_subject(token: &str) -> String {
    format!("sb.read.{token}")
}

/// The stream subject of `token`'s room history (see [`super::room_token`]).
pub fn room_subject(token: &str) -> String {
    format!("sb.room.{token}")
}

/// The core subject node `node` listens on for what other nodes hand it.
pub fn node_subject(node: &str) -> String {
    format!("sb.node.{node}.deliver")
}

/// The core subject a room's live events go out on, to every node with a member.
pub fn room_event_subject(token: &str) -> String {
    format!("sb.ev.room.{token}")
}

/// What the layout is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Copies of every bucket and stream: 3 survives the loss of one server of three
    /// without losing an acknowledged write or stopping; 1 survives nothing.
    pub replicas: usize,
    /// How long a node's lease lasts without a heartbeat: the bound on how long a dead
    /// node's users and memberships are still seen.
    pub lease: Duration,
    /// Messages kept per room for `history` and resume.
    pub history: i64,
    /// How long read mail is kept in `SB_READ` after it was read (`--keep-read`);
    /// `None` deletes it as it is read, and `SB_READ` is not made.
    pub keep_read: Option<Duration>,
    /// How long JetStream remembers a publish's `Nats-Msg-Id`: a node that retries a
    /// send after losing the answer stores it once if it retries within this window.
    pub dedup_window: Duration,
}

impl Settings {
    pub fn new(replicas: usize) -> Self {
        Settings {
            replicas,
            lease: Duration::from_secs(15),
            history: 1000,
            keep_read: None,
            dedup_window: Duration::from_secs(120),
        }
    }
}

/// The buckets and streams, opened.
#[derive(Debug, Clone)]
pub struct Layout {
    pub accounts: kv::Store,
    pub names: kv::Store,
    pub nodes: kv::Store,
    pub rooms: kv::Store,
    pub sessions: kv::Store,
    pub ids: kv::Store,
    pub inbox: stream::Stream,
    pub room_history: stream::Stream,
    /// Read mail kept for `--keep-read`, when it is.
    pub read: Option<stream::Stream>,
    /// The buckets and streams this call created (the others existed already).
    pub created: Vec<String>,
}

/// Creates what is missing of the layout and opens all of it. What exists already is
/// checked, not changed: a bucket with fewer replicas than asked for is an error rather
/// than a silent downgrade of durability, since it is the operator's data.
pub async fn ensure_layout(js: &Context, settings: &Settings) -> Result<Layout, ClusterError> {
    let mut created = Vec::new();
    let bucket = |name: &str, max_age: Duration| kv::Config {
        bucket: name.to_owned(),
        history: 1,
        max_age,
        storage: StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    let accounts = ensure_bucket(js, bucket(ACCOUNTS, Duration::ZERO), &mut created).await?;
    let names = ensure_bucket(js, bucket(NAMES, Duration::ZERO), &mut created).await?;
    let nodes = ensure_bucket(js, bucket(NODES, settings.lease), &mut created).await?;
    let rooms = ensure_bucket(js, bucket(ROOMS, Duration::ZERO), &mut created).await?;
    // A live session's note lasts as long as the session, however long: a node removes
    // it when the session ends, and the node that heals after a dead one removes those
    // of its sessions nobody resumed.
    let sessions = ensure_bucket(js, bucket(SESSIONS, Duration::ZERO), &mut created).await?;
    let ids = ensure_bucket(js, bucket(IDS, Duration::ZERO), &mut created).await?;
    let inbox = ensure_stream(
        js,
        stream_config(INBOX_STREAM, "sb.inbox.*", settings, -1),
        &mut created,
    )
    .await?;
    let room_history = ensure_stream(
        js,
        stream_config(ROOMS_STREAM, "sb.room.*", settings, settings.history),
        &mut created,
    )
    .await?;
    let read = match settings.keep_read {
        Some(keep) => {
            let mut config = stream_config(READ_STREAM, "sb.read.*", settings, -1);
            config.max_age = keep;
            Some(ensure_stream(js, config, &mut created).await?)
        }
        None => {
            if js.get_stream(READ_STREAM).await.is_ok() {
                tracing::warn!(
                    "another node keeps read mail ({READ_STREAM} exists) but this one \
                     deletes it as it is read: give every node the same --keep-read"
                );
            }
            None
        }
    };
    Ok(Layout {
        accounts,
        names,
        nodes,
        rooms,
        sessions,
        ids,
        inbox,
        read,
        room_history,
        created,
    })
}

/// A stream of file storage and `settings.replicas` copies. Limits retention: a message
/// stays until it is purged (an inbox ack) or pushed out by the per-subject limit (a
/// room's history), never because a consumer read it.
fn stream_config(
    name: &str,
    subjects: &str,
    settings: &Settings,
    per_subject: i64,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: settings.replicas,
        max_messages_per_subject: per_subject,
        discard: DiscardPolicy::Old,
        duplicate_window: settings.dedup_window,
        // Reads go through the stream's leader: a direct get may be answered by a
        // follower that has not applied the latest acknowledged write.
        allow_direct: false,
        ..Default::default()
    }
}

/// How long a node keeps trying while the cluster settles: leaders being elected for
/// what another node just created, a meta leader being elected at start.
const SETTLE: Duration = Duration::from_secs(30);

/// Why one try at a bucket or stream failed.
enum Attempt {
    /// The cluster did not answer in time or is electing a leader: try again.
    Again(ClusterError),
    Fail(ClusterError),
}

impl From<ClusterError> for Attempt {
    fn from(e: ClusterError) -> Self {
        Attempt::Fail(e)
    }
}

/// `error`, classified: transient when JetStream timed out or has no leader yet.
fn attempt<E: std::error::Error + 'static>(doing: String, error: E) -> Attempt {
    let again = transient(&error);
    let error = ClusterError::nats(doing, error);
    if again {
        Attempt::Again(error)
    } else {
        Attempt::Fail(error)
    }
}

fn transient(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind,
        KeyValueError,
    };
    use async_nats::{RequestError, RequestErrorKind};
    let mut cause = Some(error);
    while let Some(e) = cause {
        let again = e
            .downcast_ref::<async_nats::jetstream::Error>()
            .is_some_and(|j| j.error_code() == ErrorCode::CLUSTER_NOT_AVAILABLE)
            || e.downcast_ref::<RequestError>()
                .is_some_and(|r| r.kind() != RequestErrorKind::Other)
            || e.downcast_ref::<GetStreamError>()
                .is_some_and(|g| g.kind() == GetStreamErrorKind::Request)
            || e.downcast_ref::<CreateStreamError>().is_some_and(|c| {
                matches!(
                    c.kind(),
                    CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable
                )
            })
            || e.downcast_ref::<CreateKeyValueError>().is_some_and(|c| {
                matches!(
                    c.kind(),
                    CreateKeyValueErrorKind::TimedOut | CreateKeyValueErrorKind::JetStream
                )
            })
            // Opening a bucket whose stream was just found.
            || e.downcast_ref::<KeyValueError>().is_some();
        if again {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Runs `step` until it succeeds, fails for good, or [`SETTLE`] has passed.
async fn settle<T, F, Fut>(mut step: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(Attempt::Again(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(Attempt::Again(e) | Attempt::Fail(e)) => return Err(e),
        }
    }
}

async fn ensure_bucket(
    js: &Context,
    config: kv::Config,
    created: &mut Vec<String>,
) -> Result<kv::Store, ClusterError> {
    let (store, new) = settle(|| try_bucket(js, config.clone())).await?;
    if new {
        created.push(config.bucket);
    }
    Ok(store)
}

/// The bucket, and whether this call created it.
async fn try_bucket(js: &Context, config: kv::Config) -> Result<(kv::Store, bool), Attempt> {
    let name = config.bucket.clone();
    match js.get_stream(format!("KV_{name}")).await {
        Ok(stream) => {
            let found = &stream.cached_info().config;
            check(&name, "replicas", found.num_replicas, config.num_replicas)?;
            check(&name, "max_age", found.max_age, config.max_age)?;
            check(&name, "storage", found.storage, config.storage)?;
            let store = js
                .get_key_value(&name)
                .await
                .map_err(|e| attempt(format!("opening bucket {name}"), e))?;
            Ok((store, false))
        }
        Err(e) if not_found(&e) => {
            // Two nodes creating the same bucket at once both succeed: the configs are
            // identical, and JetStream answers an identical create as done.
            let store = js
                .create_key_value(config)
                .await
                .map_err(|e| attempt(format!("creating bucket {name}"), e))?;
            Ok((store, true))
        }
        Err(e) => Err(attempt(format!("looking up bucket {name}"), e)),
    }
}

async fn ensure_stream(
    js: &Context,
    config: stream::Config,
    created: &mut Vec<String>,
) -> Result<stream::Stream, ClusterError> {
    let (stream, new) = settle(|| try_stream(js, config.clone())).await?;
    if new {
        created.push(config.name);
    }
    Ok(stream)
}

/// The stream, and whether this call created it.
async fn try_stream(
    js: &Context,
    config: stream::Config,
) -> Result<(stream::Stream, bool), Attempt> {
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(stream) => {
            let found = &stream.cached_info().config;
            check(&name, "replicas", found.num_replicas, config.num_replicas)?;
            check(&name, "subjects", &found.subjects, &config.subjects)?;
            check(&name, "storage", found.storage, config.storage)?;
            check(&name, "retention", found.retention, config.retention)?;
            check(&name, "max_age", found.max_age, config.max_age)?;
            check(
                &name,
                "max_msgs_per_subject",
                found.max_messages_per_subject,
                config.max_messages_per_subject,
            )?;
            Ok((stream, false))
        }
        Err(e) if not_found(&e) => {
            let stream = js
                .create_stream(config)
                .await
                .map_err(|e| attempt(format!("creating stream {name}"), e))?;
            Ok((stream, true))
        }
        Err(e) => Err(attempt(format!("looking up stream {name}"), e)),
    }
}

fn not_found(error: &GetStreamError) -> bool {
    matches!(
        error.kind(),
        GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

fn check<T: PartialEq + std::fmt::Debug>(
    name: &str,
    field: &'static str,
    found: T,
    wanted: T,
) -> Result<(), ClusterError> {
    if found == wanted {
        return Ok(());
    }
    Err(ClusterError::LayoutMismatch {
        name: name.to_owned(),
        field,
        found: format!("{found:?}"),
        wanted: format!("{wanted:?}"),
    })
}
