//! Client ids unique across the cluster. Bucket `sb-ids` holds one key, `next`: the
//! first id no node has been given. A node takes a block of ids by moving `next` past it
//! with a compare-and-set on the key's revision, then hands them out locally with no
//! round trip; two nodes can never take the same block, since only one update of a
//! given revision succeeds. Ids of a block left unused when a node stops are skipped,
//! never reused.

use std::ops::Range;

use async_nats::jetstream::kv;
use tokio::sync::Mutex;

use super::{CAS_TRIES, ClusterError, Latest, back_off, lost_race, read_latest};
use crate::protocol::ClientId;

const NEXT: &str = "next";

/// Ids a node takes at a time: one compare-and-set per 1024 connections, and at most
/// 1024 ids skipped per node restart out of 2^64.
pub const DEFAULT_ID_BLOCK: u64 = 1024;

/// Hands out this node's client ids, taking a new block from the cluster when its block
/// is used up.
#[derive(Debug)]
pub struct IdAllocator {
    ids: kv::Store,
    block: u64,
    left: Mutex<Range<u64>>,
}

impl IdAllocator {
    /// An allocator over bucket `sb-ids`, taking `block` ids at a time (at least 1).
    pub fn new(ids: kv::Store, block: u64) -> Self {
        IdAllocator {
            ids,
            block: block.max(1),
            left: Mutex::new(0..0),
        }
    }

    /// An id no other client of the cluster has had.
    pub async fn next_id(&self) -> Result<ClientId, ClusterError> {
        let mut left = self.left.lock().await;
        if left.is_empty() {
            *left = self.take_block().await?;
        }
        let id = left.start;
        left.start += 1;
        Ok(id)
    }

    /// Moves `next` on by one block and hands over the block's ids, for a node that
    /// counts through them itself.
    pub async fn take_block(&self) -> Result<Range<u64>, ClusterError> {
        for attempt in 0..CAS_TRIES {
            // Ids start at 1: 0 is never a client's.
            let (start, revision) = match read_latest(&self.ids, NEXT).await? {
                Some(Latest {
                    revision,
                    value: Some(value),
                }) => (parse(&value)?, revision),
                Some(Latest { value: None, .. }) => {
                    return Err(ClusterError::Corrupt {
                        what: "the next client id".into(),
                        detail: "it was deleted, and counting again from 1 would repeat ids".into(),
                    });
                }
                None => (1, 0),
            };
            let end = start.checked_add(self.block).ok_or(ClusterError::Corrupt {
                what: "the next client id".into(),
                detail: "no ids left".into(),
            })?;
            match self
                .ids
                .update(NEXT, end.to_string().into(), revision)
                .await
            {
                Ok(_) => return Ok(start..end),
                Err(e) if lost_race(&e) => back_off(attempt).await,
                Err(e) => return Err(ClusterError::nats("taking a block of client ids", e)),
            }
        }
        Err(ClusterError::Contended {
            what: "the next client id".into(),
            tries: CAS_TRIES,
        })
    }
}

fn parse(value: &[u8]) -> Result<u64, ClusterError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ClusterError::Corrupt {
            what: "the next client id".into(),
            detail: format!("{:?} is not a number", String::from_utf8_lossy(value)),
        })
}
