//! Inboxes in stream `SB_INBOX`: each direct message is one message on subject
//! `sb.inbox.<name token>`, and its stream sequence is its id. Ids so grow with every
//! message of the cluster, as the SQLite store's do: increasing within an inbox, not
//! consecutive.
//!
//! An ack is a purge of the inbox's subject below the acked id (`ack up_to` reads as
//! "everything up to and including"): one replicated operation, after which the mail is
//! gone from every replica and cannot be delivered again. With `--keep-read`, what an
//! ack removes is first copied to `SB_READ` (subject `sb.read.<name token>`), whose
//! `max_age` deletes it the given days after it was read: the inbox stays the unread
//! mail alone, and nothing needs to prune.

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{Context, ErrorCode};
use bytes::Bytes;

use super::{ClusterError, inbox_subject, read_subject};

/// One message of an inbox, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: u64,
    pub payload: Bytes,
}

/// Stores `payload` in the inbox of `token` and returns its id once JetStream has
/// acknowledged it, that is once a majority of the stream's replicas hold it.
/// `message_id` makes a retry idempotent: within the stream's duplicate window, the
/// same id is stored once and acknowledged with the first copy's sequence.
pub async fn store_mail(
    js: &Context,
    token: &str,
    message_id: &str,
    payload: Bytes,
) -> Result<u64, ClusterError> {
    let doing = || format!("storing mail for {token}");
    let ack = js
        .send_publish(
            inbox_subject(token),
            PublishMessage::build()
                .payload(payload)
                .message_id(message_id),
        )
        .await
        .map_err(|e| ClusterError::nats(doing(), e))?
        .await
        .map_err(|e| ClusterError::nats(doing(), e))?;
    Ok(ack.sequence)
}

/// Up to `limit` messages of the inbox of `token` with ids above `after`, oldest first.
/// Read through the stream's leader, so every acknowledged message is seen.
pub async fn peek_mail(
    inbox: &Stream,
    token: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Mail>, ClusterError> {
    let subject = inbox_subject(token);
    let mut mail = Vec::new();
    let mut from = after.saturating_add(1);
    while mail.len() < limit {
        let got = inbox
            .raw_message_builder()
            .next_by_subject(subject.clone())
            .sequence(from)
            .send()
            .await;
        let message = match got {
            Ok(message) => message,
            Err(e) if none_left(e.kind()) => break,
            Err(e) => return Err(ClusterError::nats(format!("reading mail of {token}"), e)),
        };
        from = message.sequence.saturating_add(1);
        mail.push(Mail {
            id: message.sequence,
            payload: message.payload,
        });
    }
    Ok(mail)
}

/// The mail of `token`'s inbox with ids up to `up_to`, oldest first.
pub async fn mail_up_to(
    inbox: &Stream,
    token: &str,
    up_to: u64,
) -> Result<Vec<Mail>, ClusterError> {
    let mut mail = Vec::new();
    let mut after = 0;
    loop {
        let page = peek_mail(inbox, token, after, 256).await?;
        let full = page.len() == 256;
        for letter in page {
            if letter.id > up_to {
                return Ok(mail);
            }
            after = letter.id;
            mail.push(letter);
        }
        if !full {
            return Ok(mail);
        }
    }
}

/// Keeps a copy of `mail`, read from `token`'s inbox and about to be acked, in
/// `SB_READ`; once JetStream has every copy. Each copy's `Nats-Msg-Id` names its mail,
/// so an ack retried within the duplicate window keeps one copy.
pub async fn keep_read(js: &Context, token: &str, mail: &[Mail]) -> Result<(), ClusterError> {
    let doing = || format!("keeping read mail of {token}");
    let mut acks = Vec::with_capacity(mail.len());
    for letter in mail {
        let ack = js
            .send_publish(
                read_subject(token),
                PublishMessage::build()
                    .payload(letter.payload.clone())
                    .message_id(format!("read.{token}.{}", letter.id)),
            )
            .await
            .map_err(|e| ClusterError::nats(doing(), e))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| ClusterError::nats(doing(), e))?;
    }
    Ok(())
}

/// Removes the read mail of `token` kept in `SB_READ` (a name forgotten).
pub async fn drop_read(read: &Stream, token: &str) -> Result<u64, ClusterError> {
    let purged = read
        .purge()
        .filter(read_subject(token))
        .await
        .map_err(|e| ClusterError::nats(format!("forgetting read mail of {token}"), e))?;
    Ok(purged.purged)
}

/// Acks the inbox of `token` up to and including id `up_to`; returns how many
/// messages that removed.
pub async fn ack_mail(inbox: &Stream, token: &str, up_to: u64) -> Result<u64, ClusterError> {
    let purged = inbox
        .purge()
        .filter(inbox_subject(token))
        .sequence(up_to.saturating_add(1))
        .await
        .map_err(|e| ClusterError::nats(format!("acking mail of {token}"), e))?;
    Ok(purged.purged)
}

fn none_left(kind: LastRawMessageErrorKind) -> bool {
    match kind {
        LastRawMessageErrorKind::NoMessageFound => true,
        LastRawMessageErrorKind::JetStream(e) => e.error_code() == ErrorCode::NO_MESSAGE_FOUND,
        _ => false,
    }
}

/// How many messages wait in each inbox, by name token.
pub async fn unread_counts(
    inbox: &Stream,
) -> Result<std::collections::HashMap<String, usize>, ClusterError> {
    use futures_util::TryStreamExt;
    let counting = |e| ClusterError::nats("counting unread mail", e);
    let mut info = inbox
        .info_with_subjects("sb.inbox.*")
        .await
        .map_err(counting)?;
    let mut counts = std::collections::HashMap::new();
    while let Some((subject, count)) = info.try_next().await.map_err(counting)? {
        if let Some(token) = subject.strip_prefix("sb.inbox.") {
            counts.insert(token.to_owned(), count);
        }
    }
    Ok(counts)
}
