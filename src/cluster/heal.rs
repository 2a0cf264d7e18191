//! Presence that heals. A node that dies without a goodbye stops renewing its lease in
//! `sb-nodes`; once it has gone unheard for `heal_after`, its sessions are taken as
//! parked: no longer listed, free to be resumed on another node (or ended by a plain
//! `hello` for their name), as a cut session is on one node. When the resume grace
//! has passed too, every node removes what is left of them: their name claims, their
//! seats, and the rooms they owned. Each removal is a write that names the revision it
//! changes, so exactly one node does it, and a claim made since is never touched.
//! Leases are judged by each node's own clock (when it last saw one renewed), never by
//! a timestamp written on another machine.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::node::{Inner, Lease};
use super::{Claim, release_name};

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
        // Since when each dead node's boot has been gone.
        let mut dead_since: HashMap<(String, u64), Instant> = HashMap::new();
        let mut check = tokio::time::interval((heal_after / 4).max(Duration::from_millis(100)));
        loop {
            let Some(stop) = inner.upgrade().map(|inner| inner.stop.clone()) else {
                return;
            };
            tokio::select! {
                () = stop.cancelled() => return,
                entry = leases.next() => {
                    let Some(inner) = inner.upgrade() else { return };
                    match entry {
                        Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                            if let Ok(lease) = serde_json::from_slice::<Lease>(&entry.value) {
                                inner.heard(entry.key, lease.boot);
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => tracing::warn!("watching sb-nodes: {e}"),
                        None => return,
                    }
                }
                _ = check.tick() => {
                    let Some(inner) = inner.upgrade() else { return };
                    let orphans = inner
                        .directory
                        .orphans(|claim| inner.is_mine(claim) || !inner.gone(&claim.node, claim.boot));
                    let now = Instant::now();
                    for (token, held) in &orphans {
                        let pair = (held.claim.node.clone(), held.claim.boot);
                        dead_since.entry(pair).or_insert(now);
                        if !held.claim.parked {
                            let parked = Claim { parked: true, ..held.claim.clone() };
                            if let Ok(value) = serde_json::to_vec(&parked) {
                                let _ = names.update(token, value.into(), held.revision).await;
                            }
                        }
                    }
                    let over: Vec<(String, u64)> = (dead_since.iter())
                        .filter(|(_, since)| now.duration_since(**since) >= inner.resume_grace())
                        .map(|(pair, _)| pair.clone())
                        .collect();
                    if over.is_empty() {
                        continue;
                    }
                    for (token, held) in &orphans {
                        let pair = (held.claim.node.clone(), held.claim.boot);
                        if !over.contains(&pair) {
                            continue;
                        }
                        if let Ok(true) = release_name(&names, token, held.revision).await {
                            inner.forget_dead_note(token, &held.claim).await;
                            tracing::info!(
                                name = %held.claim.name,
                                node = %held.claim.node,
                                "session ended: its node went unheard and it was not resumed"
                            );
                        }
                        inner.directory.remove(token);
                    }
                    inner.heal_rooms(&over).await;
                    for pair in over {
                        dead_since.remove(&pair);
                    }
                }
            }
        }
    });
}
