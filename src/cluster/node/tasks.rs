//! What a cluster node keeps doing in the background: taking what other nodes hand
//! it, keeping its view of `sb-names`, and renewing its lease.

use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;

use super::{Delivery, Inner};
use crate::cluster::Claim;

/// Pushes what other nodes hand this one into its clients' queues.
pub(super) async fn deliver(inner: Weak<Inner>, mut deliveries: async_nats::Subscriber) {
    while let Some(message) = deliveries.next().await {
        let Some(inner) = inner.upgrade() else { return };
        if inner.stop.is_cancelled() {
            return;
        }
        match serde_json::from_slice::<Delivery>(&message.payload) {
            Ok(Delivery::Mail {
                to,
                from,
                message_id,
            }) => inner.hub.notify_mail(&to, &from, message_id),
            Ok(Delivery::Taken { client, name }) => inner.taken_elsewhere(client, &name),
            Ok(Delivery::Ended { client, name }) => inner.ended_elsewhere(client, &name),
            Ok(Delivery::Surrender {
                client,
                name,
                digest,
            }) => {
                let nats = inner.client.clone();
                tokio::spawn(async move {
                    let surrendered = inner.surrender(client, &name, &digest).await;
                    if let Some(reply) = message.reply {
                        let answer = if surrendered {
                            "parked"
                        } else {
                            "not live here"
                        };
                        let _ = nats.publish(reply, answer.into()).await;
                    }
                });
            }
            Err(e) => tracing::warn!("a delivery from another node is not understood: {e}"),
        }
    }
}

/// Hands each change of a watched bucket to `apply` until the node stops.
async fn each_change(
    inner: Weak<Inner>,
    mut watch: jetstream::kv::Watch,
    bucket: &str,
    apply: impl Fn(&Inner, jetstream::kv::Entry),
) {
    while let Some(entry) = watch.next().await {
        let Some(inner) = inner.upgrade() else { return };
        if inner.stop.is_cancelled() {
            return;
        }
        match entry {
            Ok(entry) => apply(&inner, entry),
            Err(e) => tracing::warn!("watching {bucket}: {e}"),
        }
    }
}

/// Keeps the directory in step with `sb-names`.
pub(super) async fn watch_names(inner: Weak<Inner>, names: jetstream::kv::Watch) {
    use jetstream::kv::Operation;
    each_change(inner, names, "sb-names", |inner, entry| {
        let revision = entry.revision;
        match entry.operation {
            Operation::Put => match serde_json::from_slice::<Claim>(&entry.value) {
                Ok(claim) => inner.directory.put(entry.key, claim, revision),
                Err(e) => tracing::warn!("sb-names holds a claim that is not switchboard's: {e}"),
            },
            Operation::Delete | Operation::Purge => inner.directory.remove(&entry.key),
        }
        inner.directory.watched(revision);
    })
    .await;
}

/// Keeps the set of rooms open in the cluster in step with their records in
/// `sb-rooms`.
pub(super) async fn watch_rooms(inner: Weak<Inner>, records: jetstream::kv::Watch) {
    use jetstream::kv::Operation;
    each_change(inner, records, "sb-rooms", |inner, entry| {
        let Some(room) = entry.key.strip_prefix("r.") else {
            return;
        };
        let mut open = inner.open_rooms();
        match entry.operation {
            Operation::Put => open.insert(room.to_owned()),
            Operation::Delete | Operation::Purge => open.remove(room),
        };
    })
    .await;
}

/// Renews the node's lease several times within each `heal_after`, so that a late
/// heartbeat or two never has it taken for dead.
pub(super) async fn keep_lease(inner: Weak<Inner>, heal_after: Duration) {
    let period = (heal_after / 4).max(Duration::from_millis(100));
    loop {
        let stop = match inner.upgrade() {
            Some(inner) => inner.stop.clone(),
            None => return,
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.renew_lease().await {
            tracing::warn!("{e}");
        }
    }
}
