//! Presence that heals: a node that dies without a goodbye stops renewing its lease in
//! `sb-nodes`, and once it has gone unheard for `heal_after` every other node removes
//! its claims from `sb-names`, each with a delete that names the revision it removes (so
//! a claim made since is never touched). Leases are judged by each node's own clock:
//! when it last saw a lease renewed, not timestamps written by another machine.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::node::{Inner, Lease};
use super::release_name;

/// Watches the leases and cleans up after the nodes that stop renewing theirs.
pub(super) fn spawn(nodes: kv::Store, names: kv::Store, inner: Weak<Inner>, heal_after: Duration) {
    tokio::spawn(async move {
        let mut leases = match nodes.watch_with_history(">").await {
            Ok(leases) => leases,
            Err(e) => {
                tracing::error!(
                    "cannot watch sb-nodes: dead nodes' users will not be cleaned up: {e}"
                );
                return;
            }
        };
        let started = Instant::now();
        // When each node's lease was last seen renewed, and by which boot.
        let mut heard: HashMap<String, (u64, Instant)> = HashMap::new();
        let mut check = tokio::time::interval((heal_after / 4).max(Duration::from_millis(100)));
        loop {
            let Some(stop) = inner.upgrade().map(|inner| inner.stop.clone()) else {
                return;
            };
            tokio::select! {
                () = stop.cancelled() => return,
                entry = leases.next() => match entry {
                    Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                        if let Ok(lease) = serde_json::from_slice::<Lease>(&entry.value) {
                            heard.insert(entry.key, (lease.boot, Instant::now()));
                        }
                    }
                    Some(Ok(entry)) => { heard.remove(&entry.key); }
                    Some(Err(e)) => tracing::warn!("watching sb-nodes: {e}"),
                    None => return,
                },
                _ = check.tick() => {
                    let Some(inner) = inner.upgrade() else { return };
                    let now = Instant::now();
                    let judged = now.duration_since(started) >= heal_after;
                    let orphans = inner.directory.orphans(|claim| {
                        inner.is_mine(claim)
                            || heard.get(&claim.node).map_or(!judged, |&(boot, at)| {
                                boot == claim.boot && now.duration_since(at) < heal_after
                            })
                    });
                    let mut dead: Vec<(String, u64)> = Vec::new();
                    for (_, held) in &orphans {
                        let pair = (held.claim.node.clone(), held.claim.boot);
                        if !dead.contains(&pair) {
                            dead.push(pair);
                        }
                    }
                    for (token, held) in orphans {
                        if let Ok(true) = release_name(&names, &token, held.revision).await {
                            tracing::info!(
                                name = %held.claim.name,
                                node = %held.claim.node,
                                "name freed: its node went unheard for {heal_after:?}"
                            );
                        }
                        inner.directory.remove(&token);
                    }
                    if !dead.is_empty() {
                        inner.heal_rooms(&dead).await;
                    }
                }
            }
        }
    });
}
