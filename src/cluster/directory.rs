//! Who holds which name across the cluster, as this node last heard it: `sb-names`
//! watched and kept in memory, so that `users`, a send by client id and a check before
//! hashing a password read locally. The bucket decides every claim (compare-and-set);
//! this view only answers questions that a moment's lag cannot make wrong in a way that
//! matters: a name just claimed elsewhere may be missing from one `users` answer.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::Claim;
use crate::protocol::{ClientId, UserInfo};

#[derive(Debug, Default)]
pub struct Directory {
    held: Mutex<HashMap<String, Held>>,
}

/// One claim in `sb-names`, with the revision that wrote it (what a release or a
/// cleanup names when it deletes it).
#[derive(Debug, Clone)]
pub struct Held {
    pub claim: Claim,
    pub revision: u64,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        // Every step leaves the map whole; a panic elsewhere does not poison it.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claim of name token `token` was written (or rewritten) at `revision`.
    pub fn put(&self, token: String, claim: Claim, revision: u64) {
        self.lock().insert(token, Held { claim, revision });
    }

    /// The claim of `token` was deleted.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Who holds `token`, if anyone.
    pub fn holder(&self, token: &str) -> Option<Held> {
        self.lock().get(token).cloned()
    }

    /// Everyone online under a name, on every node, in client id order (parked
    /// sessions are not online).
    pub fn users(&self) -> Vec<UserInfo> {
        let mut users: Vec<UserInfo> = (self.lock().values())
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
        (self.lock().values())
            .find(|held| held.claim.client == id && !held.claim.parked)
            .map(|held| held.claim.name.clone())
    }

    /// The claims whose holder `alive` says is gone, with their tokens.
    pub fn orphans(&self, alive: impl Fn(&Claim) -> bool) -> Vec<(String, Held)> {
        (self.lock().iter())
            .filter(|(_, held)| !alive(&held.claim))
            .map(|(token, held)| (token.clone(), held.clone()))
            .collect()
    }
}
