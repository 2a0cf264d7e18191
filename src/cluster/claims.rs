//! Names held online across the cluster, in bucket `sb-names`: one key per name token,
//! whose value says which node's client holds it. A claim is a compare-and-set on the
//! key's revision (0: the key must not hold a claim), never a read then a write, so two
//! nodes claiming one name at once cannot both win; a release deletes only the revision
//! its holder wrote, so it never removes a claim made since.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{CAS_TRIES, ClusterError, Latest, back_off, lost_race, read_latest};
use crate::protocol::ClientId;

/// Who holds a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The name in the case its holder said hello with.
    pub name: String,
    pub node: String,
    /// The node's boot: a node restarted under the same name has a new one, so the
    /// claims of its previous run can be told apart and cleaned up.
    pub boot: u64,
    pub client: ClientId,
    /// Its session is parked (its connection was cut): the name stays held, but the
    /// holder is not listed in `users` or reachable by its client id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
}

/// How a claim went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The name is ours, at this revision (what [`release_name`] needs).
    Won { revision: u64 },
    /// Someone holds it.
    Taken { holder: Claim, revision: u64 },
}

/// Claims the name of token `token` for `claim`.
pub async fn claim_name(
    names: &kv::Store,
    token: &str,
    claim: &Claim,
) -> Result<Claimed, ClusterError> {
    let value = Bytes::from(serde_json::to_vec(claim).map_err(|e| corrupt(token, e))?);
    // The revision the key must be at for the name to be free: 0 when it was never
    // written (or aged out), else that of the delete that released it.
    let mut free_at = 0;
    for attempt in 0..CAS_TRIES {
        match names.update(token, value.clone(), free_at).await {
            Ok(revision) => return Ok(Claimed::Won { revision }),
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(ClusterError::nats(format!("claiming name {token}"), e)),
        }
        match read_latest(names, token).await? {
            Some(Latest {
                revision,
                value: Some(value),
            }) => {
                return Ok(Claimed::Taken {
                    holder: decode(token, &value)?,
                    revision,
                });
            }
            // Released since: free at the delete's revision. A race lost to a write
            // still being replicated reads as the state before it; wait, then retry.
            Some(Latest { revision, .. }) => free_at = revision,
            None => free_at = 0,
        }
        back_off(attempt).await;
    }
    Err(ClusterError::Contended {
        what: format!("name {token}"),
        tries: CAS_TRIES,
    })
}

/// Releases the claim written at `revision`. False when the key holds another revision
/// now (the name was taken over, or cleaned up after this node's lease ran out): then
/// nothing is deleted.
pub async fn release_name(
    names: &kv::Store,
    token: &str,
    revision: u64,
) -> Result<bool, ClusterError> {
    match names.delete_expect_revision(token, Some(revision)).await {
        Ok(()) => Ok(true),
        Err(e) if lost_race(&e) => Ok(false),
        Err(e) => Err(ClusterError::nats(format!("releasing name {token}"), e)),
    }
}

fn decode(token: &str, value: &[u8]) -> Result<Claim, ClusterError> {
    serde_json::from_slice(value).map_err(|e| corrupt(token, e))
}

fn corrupt(token: &str, error: impl std::fmt::Display) -> ClusterError {
    ClusterError::Corrupt {
        what: format!("the claim of name {token}"),
        detail: error.to_string(),
    }
}
