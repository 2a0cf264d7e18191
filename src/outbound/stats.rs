//! What a connection has carried, for `/api/connz`: counted by its reader and writer
//! with relaxed atomic adds in the queue they already share, so that counting costs
//! neither a lock nor an allocation, and an idle connection no more than 40 bytes.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::protocol::now_millis;

#[derive(Debug, Default)]
pub struct ConnStats {
    in_msgs: AtomicU64,
    out_msgs: AtomicU64,
    in_bytes: AtomicU64,
    out_bytes: AtomicU64,
    /// When the client last sent anything, in milliseconds since the Unix epoch (0:
    /// never).
    last_activity: AtomicI64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub last_activity_ms: i64,
}

impl ConnStats {
    /// `n` bytes read from the client. The clock is read once per read, not per
    /// message: a read of many requests costs one.
    #[inline]
    pub fn read(&self, n: usize) {
        self.in_bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.last_activity.store(now_millis(), Ordering::Relaxed);
    }

    /// One message (request, line, lab dict) from the client.
    #[inline]
    pub fn received(&self) {
        self.in_msgs.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` messages handed to the writer.
    #[inline]
    pub fn sent(&self, n: u64) {
        self.out_msgs.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes the socket took.
    #[inline]
    pub fn wrote(&self, n: usize) {
        self.out_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            in_msgs: self.in_msgs.load(Ordering::Relaxed),
            out_msgs: self.out_msgs.load(Ordering::Relaxed),
            in_bytes: self.in_bytes.load(Ordering::Relaxed),
            out_bytes: self.out_bytes.load(Ordering::Relaxed),
            last_activity_ms: self.last_activity.load(Ordering::Relaxed),
        }
    }
}
