//! The foundation of cluster mode: several switchboard nodes serving one hub through NATS
//! with JetStream, a replicated engine that switchboard builds on rather than inventing
//! its own. This module connects to NATS ([`connect`]), creates the key-value buckets
//! and streams the cluster keeps its shared state in ([`ensure_layout`], layout.rs says
//! what each one holds and why it is shaped so), and gives the few operations whose
//! correctness rests on JetStream rather than on switchboard: claiming a name by
//! compare-and-set, handing out client ids, storing and acking inbox mail, appending to
//! a room with a gap-free `seq`.
//!
//! Nodes do not serve through it yet: the hub and the store are still local. docs/cluster.md
//! draws the whole layout and says which NATS settings "acknowledged means kept" takes.
//!
//! Durability rests on the NATS servers as much as on the streams: every server must run
//! with `jetstream { sync_interval: always }`, so that an acknowledged write is on disk
//! on a majority of replicas. Under the default (an fsync every two minutes) a crash of
//! several servers at once loses acknowledged writes (Jepsen's NATS 2.12.1 analysis,
//! nats-server issue #7564).

mod accounts;
mod claims;
mod connect;
mod directory;
mod heal;
mod ids;
mod inbox;
mod keys;
mod layout;
mod node;
mod rooms;

pub use claims::{Claim, Claimed, claim_name, release_name};
pub use connect::{Connected, NatsUrl, connect, parse_urls};
pub use ids::{DEFAULT_ID_BLOCK, IdAllocator};
pub use inbox::{
    Mail, ack_mail, drop_read, keep_read, mail_up_to, peek_mail, store_mail, unread_counts,
};
pub use keys::{check_node, name_token, room_token};
pub use layout::{
    ACCOUNTS, IDS, INBOX_STREAM, Layout, NAMES, NODES, ROOMS, ROOMS_STREAM, SESSIONS, Settings,
    ensure_layout, inbox_subject, node_subject, read_subject, room_event_subject, room_subject,
};
pub use node::{Node, NodeConfig};
pub use rooms::{Appended, SEQ_HEADER, append_to_room};

use std::time::Duration;

/// What can go wrong between a node and NATS.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{url:?} is not a NATS address: {why} (expected nats://HOST:PORT)")]
    BadUrl { url: String, why: String },
    #[error("no NATS address given (expected nats://HOST:PORT[,nats://HOST:PORT...])")]
    NoUrls,
    #[error("could not reach NATS at {} within {:?}", urls.join(", "), timeout)]
    Unreachable {
        urls: Vec<String>,
        timeout: Duration,
    },
    #[error("could not connect to NATS at {urls}: {detail}")]
    Connect { urls: String, detail: String },
    #[error("{0:?} is not a node name: letters, digits, '_' and '-', 1 to 64 characters")]
    BadNode(String),
    #[error("NATS: {doing}: {detail}")]
    Nats { doing: String, detail: String },
    #[error(
        "{name} exists with {field} = {found}, but this node expects {wanted}; \
         change it with the nats tool or start with matching settings"
    )]
    LayoutMismatch {
        name: String,
        field: &'static str,
        found: String,
        wanted: String,
    },
    #[error("{what} holds a value that is not switchboard's: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{what} kept changing under {tries} attempts; giving up")]
    Contended { what: String, tries: usize },
}

impl ClusterError {
    /// A NATS call that failed, with what it was for.
    pub(crate) fn nats(doing: impl Into<String>, error: impl std::fmt::Display) -> Self {
        ClusterError::Nats {
            doing: doing.into(),
            detail: error.to_string(),
        }
    }
}

/// How many times a compare-and-set that keeps losing is retried before it is reported:
/// enough for many nodes starting at once, few enough that a bug cannot spin forever.
const CAS_TRIES: usize = 64;

/// Whether `error`, or an error under it, is JetStream refusing a write because the
/// subject's last sequence (a key's revision) was not the one expected: a lost
/// compare-and-set, to be retried or reported as taken. async-nats 0.52 recognises only
/// code 10071 for it, but servers since 2.12 answer 10164 ("wrong last sequence",
/// without the sequence found) too.
pub(crate) fn lost_race(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    use async_nats::jetstream::kv::{UpdateError, UpdateErrorKind};
    use async_nats::jetstream::{Error as JsError, ErrorCode};
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(js) = e.downcast_ref::<JsError>() {
            let code = js.error_code();
            if code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                || code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            {
                return true;
            }
        }
        if e.downcast_ref::<PublishError>()
            .is_some_and(|p| p.kind() == PublishErrorKind::WrongLastSequence)
            || e.downcast_ref::<UpdateError>()
                .is_some_and(|u| u.kind() == UpdateErrorKind::WrongLastRevision)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A key's last write, read through its bucket's leader.
#[derive(Debug)]
pub(crate) struct Latest {
    pub revision: u64,
    /// None when the last write deleted or purged the key.
    pub value: Option<bytes::Bytes>,
}

/// The last write of `key`, read through the bucket's stream leader rather than with
/// the client library's `entry`, which reads from any replica: a follower that has not
/// applied the latest write would show a released name as still held, or make a
/// compare-and-set lose again and again on a revision already gone.
pub(crate) async fn read_latest(
    bucket: &async_nats::jetstream::kv::Store,
    key: &str,
) -> Result<Option<Latest>, ClusterError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("$KV.{}.{key}", bucket.name);
    match bucket
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(message) => {
            let removed = message
                .headers
                .get("KV-Operation")
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
            Ok(Some(Latest {
                revision: message.sequence,
                value: (!removed).then_some(message.payload),
            }))
        }
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok(None),
            LastRawMessageErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::NO_MESSAGE_FOUND =>
            {
                Ok(None)
            }
            _ => Err(ClusterError::nats(
                format!("reading {key} in {}", bucket.name),
                e,
            )),
        },
    }
}

/// Waits a random while before the `attempt`th retry of a lost compare-and-set, longer
/// the more it has lost (up to 64 ms), so that racing nodes stop colliding in lockstep.
/// A leader refuses a conditional write while another one to the same subject is still
/// being replicated, so racers that retry at once mostly lose again.
pub(crate) async fn back_off(attempt: usize) {
    let mut noise = [0u8; 2];
    // Without randomness the wait is the longest: slower, never wrong.
    let noise = match getrandom::getrandom(&mut noise) {
        Ok(()) => u64::from(u16::from_le_bytes(noise)),
        Err(_) => u64::MAX,
    };
    let ceiling = 1u64 << attempt.min(6);
    let micros = noise % (ceiling * 1000) + 100;
    tokio::time::sleep(Duration::from_micros(micros)).await;
}
