//! Names seen and their passwords, in the `sb-accounts` bucket: what the SQLite store's
//! users table holds on one node. One key per name token; a password is set by a
//! compare-and-set on the key's revision, so two nodes registering one name at once
//! leave exactly one hash.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{CAS_TRIES, ClusterError, Latest, back_off, lost_race, name_token, read_latest};
use crate::store::Account;

/// What `sb-accounts` holds for a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The name as first seen: its display case.
    name: String,
    /// A PHC string (argon2), never a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
}

impl From<Stored> for Account {
    fn from(stored: Stored) -> Self {
        Account {
            name: stored.name,
            hash: stored.hash,
        }
    }
}

/// The account of `name` (in any case), read through the bucket's leader.
pub async fn account(accounts: &kv::Store, name: &str) -> Result<Option<Account>, ClusterError> {
    let token = name_token(name);
    Ok(current(accounts, &token).await?.1.map(Account::from))
}

/// Records `name` as seen unless it is; its name as first seen.
pub async fn see(accounts: &kv::Store, name: &str) -> Result<String, ClusterError> {
    let token = name_token(name);
    for attempt in 0..CAS_TRIES {
        let (revision, stored) = current(accounts, &token).await?;
        if let Some(stored) = stored {
            return Ok(stored.name);
        }
        let value = encode(&Stored {
            name: name.to_owned(),
            hash: None,
        })?;
        match accounts.update(&token, value, revision).await {
            Ok(_) => return Ok(name.to_owned()),
            Err(e) if lost_race(&e) => back_off(attempt).await,
            Err(e) => return Err(ClusterError::nats(format!("recording name {token}"), e)),
        }
    }
    Err(contended(&token))
}

/// Protects `name` with `hash` unless it is protected already; true when this hash
/// took effect.
pub async fn register(accounts: &kv::Store, name: &str, hash: &str) -> Result<bool, ClusterError> {
    let token = name_token(name);
    for attempt in 0..CAS_TRIES {
        let (revision, stored) = current(accounts, &token).await?;
        let display = match stored {
            Some(Stored { hash: Some(_), .. }) => return Ok(false),
            Some(stored) => stored.name,
            None => name.to_owned(),
        };
        let value = encode(&Stored {
            name: display,
            hash: Some(hash.to_owned()),
        })?;
        match accounts.update(&token, value, revision).await {
            Ok(_) => return Ok(true),
            Err(e) if lost_race(&e) => back_off(attempt).await,
            Err(e) => return Err(ClusterError::nats(format!("protecting name {token}"), e)),
        }
    }
    Err(contended(&token))
}

/// Sets (a PHC string) or removes the password of `name`, as an operator does; false
/// when the name was never seen.
pub async fn set_password(
    accounts: &kv::Store,
    name: &str,
    hash: Option<String>,
) -> Result<bool, ClusterError> {
    let token = name_token(name);
    for attempt in 0..CAS_TRIES {
        let (revision, stored) = current(accounts, &token).await?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let value = encode(&Stored {
            hash: hash.clone(),
            ..stored
        })?;
        match accounts.update(&token, value, revision).await {
            Ok(_) => return Ok(true),
            Err(e) if lost_race(&e) => back_off(attempt).await,
            Err(e) => {
                return Err(ClusterError::nats(
                    format!("setting the password of {token}"),
                    e,
                ));
            }
        }
    }
    Err(contended(&token))
}

/// Every name seen, by name token: its name as first seen and whether it is
/// protected.
pub async fn all(accounts: &kv::Store) -> Result<Vec<(String, String, bool)>, ClusterError> {
    use futures_util::TryStreamExt;
    let keys: Vec<String> = accounts
        .keys()
        .await
        .map_err(|e| ClusterError::nats("listing sb-accounts", e))?
        .try_collect()
        .await
        .map_err(|e| ClusterError::nats("listing sb-accounts", e))?;
    let mut found = Vec::with_capacity(keys.len());
    for token in keys {
        if let (_, Some(stored)) = current(accounts, &token).await? {
            found.push((token, stored.name, stored.hash.is_some()));
        }
    }
    Ok(found)
}

/// Forgets `name`'s account.
pub async fn forget(accounts: &kv::Store, name: &str) -> Result<(), ClusterError> {
    let token = name_token(name);
    accounts
        .delete(&token)
        .await
        .map_err(|e| ClusterError::nats(format!("forgetting name {token}"), e))
}

/// The key's revision (0 when never written; that of its removal when removed) and
/// what it holds.
async fn current(accounts: &kv::Store, token: &str) -> Result<(u64, Option<Stored>), ClusterError> {
    match read_latest(accounts, token).await? {
        None => Ok((0, None)),
        Some(Latest {
            revision,
            value: None,
        }) => Ok((revision, None)),
        Some(Latest {
            revision,
            value: Some(value),
        }) => {
            let stored = serde_json::from_slice(&value).map_err(|e| ClusterError::Corrupt {
                what: format!("the account of {token}"),
                detail: e.to_string(),
            })?;
            Ok((revision, Some(stored)))
        }
    }
}

fn encode(stored: &Stored) -> Result<Bytes, ClusterError> {
    serde_json::to_vec(stored)
        .map(Bytes::from)
        .map_err(|e| ClusterError::Corrupt {
            what: format!("the account of {}", stored.name),
            detail: e.to_string(),
        })
}

fn contended(token: &str) -> ClusterError {
    ClusterError::Contended {
        what: format!("the account of {token}"),
        tries: CAS_TRIES,
    }
}
