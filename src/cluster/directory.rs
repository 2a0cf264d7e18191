//! Who holds which name across the cluster, as this node last heard it: `sb-names`
//! watched and kept in memory, so that `users`, a send by client id and a check before
//! hashing a password read locally. The bucket decides every claim (compare-and-set).
//! The view lags the bucket by the watch's delivery; `users` and a send to an id the
//! view does not know first wait for the watch to reach the bucket's latest write (see
//! [`Directory::caught_up_to`]), so what another node acknowledged before is seen.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::Claim;
use crate::protocol::{ClientId, UserInfo};

#[derive(Debug)]
pub struct Directory {
    held: Mutex<Claims>,
    /// The latest revision of `sb-names` the watch has brought.
    watched: tokio::sync::watch::Sender<u64>,
}

/// The claims by name token, and the token of each client id holding one.
#[derive(Debug, Default)]
struct Claims {
    by_token: HashMap<String, Held>,
    by_client: HashMap<ClientId, String>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            held: Mutex::default(),
            watched: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// One claim in `sb-names`, with the revision that wrote it (what a release or a
/// cleanup names when it deletes it).
#[derive(Debug, Clone)]
pub struct Held {
    pub claim: Claim,
    pub revision: u64,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, Claims> {
        // Every step leaves the maps whole; a panic elsewhere does not poison them.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claim of name token `token` was written (or rewritten) at `revision`.
    pub fn put(&self, token: String, claim: Claim, revision: u64) {
        let mut held = self.lock();
        let client = claim.client;
        if let Some(old) = held
            .by_token
            .insert(token.clone(), Held { claim, revision })
            && old.claim.client != client
        {
            held.by_client.remove(&old.claim.client);
        }
        held.by_client.insert(client, token);
    }

    /// The claim of `token` was deleted.
    pub fn remove(&self, token: &str) {
        let mut held = self.lock();
        if let Some(old) = held.by_token.remove(token) {
            held.by_client.remove(&old.claim.client);
        }
    }

    /// Who holds `token`, if anyone.
    pub fn holder(&self, token: &str) -> Option<Held> {
        self.lock().by_token.get(token).cloned()
    }

    /// The watch of `sb-names` has brought every write up to `revision`.
    pub fn watched(&self, revision: u64) {
        self.watched.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
    }

    /// Waits until the watch has brought every write up to `revision`.
    pub async fn caught_up_to(&self, revision: u64) {
        let mut watched = self.watched.subscribe();
        let _ = watched.wait_for(|&latest| latest >= revision).await;
    }

    /// Everyone online under a name, on every node, in client id order (parked
    /// sessions are not online).
    pub fn users(&self) -> Vec<UserInfo> {
        let mut users: Vec<UserInfo> = (self.lock().by_token.values())
            .filter(|held| !held.claim.parked)
            .map(|held| UserInfo {
                client_id: held.claim.client,
                name: held.claim.name.clone(),
            })
            .collect();
        users.sort_unstable_by_key(|u| u.client_id);
        users
    }

    /// The name client `id` holds, on whichever node.
    pub fn name_of(&self, id: ClientId) -> Option<String> {
        let held = self.lock();
        let token = held.by_client.get(&id)?;
        (held.by_token.get(token))
            .filter(|held| !held.claim.parked)
            .map(|held| held.claim.name.clone())
    }

    /// The claims whose holder `alive` says is gone, with their tokens.
    pub fn orphans(&self, alive: impl Fn(&Claim) -> bool) -> Vec<(String, Held)> {
        (self.lock().by_token.iter())
            .filter(|(_, held)| !alive(&held.claim))
            .map(|(token, held)| (token.clone(), held.clone()))
            .collect()
    }
}
