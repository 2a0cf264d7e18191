//! Names seen, passwords and direct mail on a cluster node: `sb-accounts` and
//! `SB_INBOX`, each answered once JetStream has it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Inner, Node, failed, kept};
use crate::backend::Kept;
use crate::cluster::{
    ClusterError, Mail, accounts, ack_mail, drop_read, keep_read, mail_up_to, name_token,
    peek_mail, store_mail,
};
use crate::protocol::{InboxPage, StoredMessage, now_millis, rfc3339_of_millis};
use crate::store::{Account, Appended, StoreError};

/// A direct message as `SB_INBOX` keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Letter {
    from: String,
    text: String,
    sent_at: String,
}

/// Recipients' names a node remembers before it starts over.
const MAX_RECIPIENTS: usize = 100_000;

impl Node {
    pub fn credentials(&self, name: &str) -> Kept<Option<Account>> {
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        kept(async move {
            accounts::account(&inner.layout.accounts, &name)
                .await
                .map_err(failed)
        })
    }

    pub fn seen(&self, name: &str) -> Kept<String> {
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        kept(async move {
            accounts::see(&inner.layout.accounts, &name)
                .await
                .map_err(failed)
        })
    }

    pub fn register(&self, name: &str, hash: String) -> Kept<bool> {
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        kept(async move {
            accounts::register(&inner.layout.accounts, &name, &hash)
                .await
                .map_err(failed)
        })
    }

    /// Forgets guest `name` and its mail, in the background: nobody waits for it.
    pub fn forget_guest(&self, name: &str) -> Kept<bool> {
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        tokio::spawn(async move {
            let token = name_token(&name);
            let forgotten = async {
                accounts::forget(&inner.layout.accounts, &name).await?;
                inner.drop_mail(&token).await
            };
            if let Err(e) = forgotten.await {
                tracing::warn!(name = %name, "could not forget a guest in the cluster: {e}");
            }
        });
        kept(std::future::ready(Ok(true)))
    }

    /// Stores a direct message for `to` in JetStream; answers once it is stored (on a
    /// majority of the stream's replicas).
    pub fn append(&self, to: String, from: Arc<str>, text: String) -> Kept<Appended> {
        let inner = Arc::clone(&self.0);
        let sent = (inner.sends).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        kept(async move {
            let Some(display) = inner.recipient(&to).await? else {
                return Err(StoreError::NoSuchUser(to));
            };
            let letter = Letter {
                from: from.to_string(),
                text,
                sent_at: rfc3339_of_millis(now_millis()),
            };
            let payload = serde_json::to_vec(&letter).map_err(|e| failed(e.to_string()))?;
            let message_id = format!("{}.{:x}.{sent}", inner.name, inner.boot);
            let token = name_token(&to);
            let id = store_mail(&inner.js, &token, &message_id, payload.into())
                .await
                .map_err(failed)?;
            Ok(Appended {
                id,
                to: display,
                from,
            })
        })
    }

    /// A page of `name`'s unread mail, oldest first, as much as fits in `budget`
    /// bytes; taken (acked at once) unless `peek`.
    pub fn inbox(&self, name: String, limit: u32, budget: usize, peek: bool) -> Kept<InboxPage> {
        let inner = Arc::clone(&self.0);
        kept(async move {
            let token = name_token(&name);
            let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
            let mail = peek_mail(&inner.layout.inbox, &token, 0, limit.saturating_add(1))
                .await
                .map_err(failed)?;
            let mut more = mail.len() > limit;
            let mut messages = Vec::new();
            let mut spent = 0;
            for mail in mail.iter().take(limit) {
                let letter: Letter = serde_json::from_slice(&mail.payload)
                    .map_err(|e| failed(format!("mail {} is not switchboard's: {e}", mail.id)))?;
                let size = 80 + letter.from.len() + letter.text.len();
                if !messages.is_empty() && spent + size > budget {
                    more = true;
                    break;
                }
                spent += size;
                messages.push(StoredMessage {
                    message_id: mail.id,
                    from: letter.from,
                    text: letter.text,
                    sent_at: letter.sent_at,
                });
            }
            if !peek && let Some(last) = messages.last() {
                let read = &mail[..messages.len()];
                (inner.take_mail(&token, last.message_id, Some(read)).await).map_err(failed)?;
            }
            Ok(InboxPage { messages, more })
        })
    }

    pub fn ack(&self, name: String, up_to: u64) -> Kept<u64> {
        let inner = Arc::clone(&self.0);
        kept(
            async move { (inner.take_mail(&name_token(&name), up_to, None).await).map_err(failed) },
        )
    }
}

impl Inner {
    /// Acks `token`'s inbox up to `up_to`, keeping a copy of what goes in `SB_READ`
    /// first when read mail is kept: `read`, when the caller has just read it, or read
    /// again. How many messages went.
    async fn take_mail(
        &self,
        token: &str,
        up_to: u64,
        read: Option<&[Mail]>,
    ) -> Result<u64, ClusterError> {
        if self.layout.read.is_some() {
            match read {
                Some(read) => keep_read(&self.js, token, read).await?,
                None => {
                    let read = mail_up_to(&self.layout.inbox, token, up_to).await?;
                    keep_read(&self.js, token, &read).await?;
                }
            }
        }
        ack_mail(&self.layout.inbox, token, up_to).await
    }

    /// Deletes all of `token`'s mail, read and unread (a name forgotten).
    pub(super) async fn drop_mail(&self, token: &str) -> Result<(), ClusterError> {
        ack_mail(&self.layout.inbox, token, u64::MAX - 1).await?;
        if let Some(read) = &self.layout.read {
            drop_read(read, token).await?;
        }
        Ok(())
    }

    /// The display name of `to` if it was ever seen. A name once seen stays seen (a
    /// cluster forgets only guests, which are never remembered here), so the answer is
    /// kept: a send then costs JetStream one write and no read.
    async fn recipient(&self, to: &str) -> Result<Option<String>, StoreError> {
        let token = name_token(to);
        if let Some(display) = self.recipients().get(&token) {
            return Ok(Some(display.clone()));
        }
        let Some(account) = (accounts::account(&self.layout.accounts, to).await).map_err(failed)?
        else {
            return Ok(None);
        };
        if !crate::store::is_guest(to) {
            let mut known = self.recipients();
            if known.len() >= MAX_RECIPIENTS {
                known.clear();
            }
            known.insert(token, account.name.clone());
        }
        Ok(Some(account.name))
    }

    fn recipients(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.recipients.lock().unwrap_or_else(|p| p.into_inner())
    }
}
