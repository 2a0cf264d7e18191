//! Reading mail so that none is lost on the way: peek a page, hand it over, and only
//! then acknowledge it. A client cut (or killed) in between finds the page again at its
//! next read, as IMAP's `BODY.PEEK` and `\Seen` allow.

use std::ops::Deref;

use super::{Client, ClientError};
use crate::protocol::{InboxPage, Request};

#[derive(serde::Deserialize)]
struct AckedReply {
    acked: u64,
}

/// An inbox page read but not yet acknowledged: its messages stay unread on the server
/// until [`Peeked::ack`]. Dropped without that, they are read again next time.
#[must_use = "the page stays unread until it is acknowledged"]
pub struct Peeked<'c> {
    client: &'c Client,
    page: InboxPage,
}

impl Peeked<'_> {
    /// The id of the newest message on the page: what [`Peeked::ack`] acknowledges.
    pub fn last_id(&self) -> Option<u64> {
        self.page.messages.last().map(|m| m.message_id)
    }

    /// Marks the page read, now that it was handed over; how many messages that was.
    /// An empty page asks the server nothing.
    pub async fn ack(self) -> Result<u64, ClientError> {
        match self.last_id() {
            Some(up_to) => self.client.ack(up_to).await,
            None => Ok(0),
        }
    }
}

impl std::fmt::Debug for Peeked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peeked").field("page", &self.page).finish()
    }
}

impl Deref for Peeked<'_> {
    type Target = InboxPage;

    fn deref(&self) -> &InboxPage {
        &self.page
    }
}

impl Client {
    /// The oldest unread messages, as [`Client::inbox`] gives them, but left unread;
    /// `None` asks for the server's default count.
    pub async fn inbox_peek(&self, limit: Option<u32>) -> Result<InboxPage, ClientError> {
        self.call(Request::Inbox { limit, peek: true }).await
    }

    /// Marks read every unread message of this user with an id up to `up_to`; returns
    /// how many. Ids that are not this user's, or already read, count for nothing.
    pub async fn ack(&self, up_to: u64) -> Result<u64, ClientError> {
        Ok(self.call::<AckedReply>(Request::Ack { up_to }).await?.acked)
    }

    /// Peeks a page, to be acknowledged once handed over:
    ///
    /// ```no_run
    /// # async fn show(client: &switchboard::Client) -> Result<(), switchboard::client::ClientError> {
    /// loop {
    ///     let page = client.read_inbox(None).await?;
    ///     for m in &page.messages {
    ///         println!("{}: {}", m.from, m.text);
    ///     }
    ///     let more = page.more;
    ///     page.ack().await?;
    ///     if !more {
    ///         break;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_inbox(&self, limit: Option<u32>) -> Result<Peeked<'_>, ClientError> {
        let page = self.inbox_peek(limit).await?;
        Ok(Peeked { client: self, page })
    }
}
