//! What an operator asks of a cluster through any node's admin socket: the accounts
//! in `sb-accounts` and the inboxes in `SB_INBOX`, which every node shares, so any
//! node answers for the whole cluster.

use super::Node;
use crate::cluster::{ClusterError, accounts, name_token, unread_counts};
use crate::store::UserSummary;

impl Node {
    /// Every name ever seen in the cluster, in name order, with whether it is protected
    /// and how much mail waits for it.
    pub async fn user_summaries(&self) -> Result<Vec<UserSummary>, ClusterError> {
        let inner = &self.0;
        let unread = unread_counts(&inner.layout.inbox).await?;
        let mut users: Vec<UserSummary> = accounts::all(&inner.layout.accounts)
            .await?
            .into_iter()
            .map(|(token, name, protected)| UserSummary {
                unread: unread.get(&token).copied().unwrap_or(0),
                name,
                protected,
            })
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Sets (a PHC string) or removes the password of `name`; false if it was never
    /// seen.
    pub async fn set_password(
        &self,
        name: &str,
        hash: Option<String>,
    ) -> Result<bool, ClusterError> {
        accounts::set_password(&self.0.layout.accounts, name, hash).await
    }

    /// Whether `name` is online now, on any node (a parked session is not).
    pub fn online(&self, name: &str) -> bool {
        (self.0.directory.holder(&name_token(name))).is_some_and(|held| !held.claim.parked)
    }

    /// Deletes `name`'s account and mail; false if it was never seen.
    pub async fn forget_user(&self, name: &str) -> Result<bool, ClusterError> {
        let inner = &self.0;
        let Some(_) = accounts::account(&inner.layout.accounts, name).await? else {
            return Ok(false);
        };
        inner.drop_mail(&name_token(name)).await?;
        accounts::forget(&inner.layout.accounts, name).await?;
        Ok(true)
    }
}
