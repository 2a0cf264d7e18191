//! What unfinished messages may cost the server in all. One connection's unfinished
//! unit is bounded by `--max-frame`; this bounds their sum across connections, so that
//! many connections each sending most of a large message cannot make the server hold
//! connections times max-frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::session::Shared;

/// The bytes every connection holds of units not yet complete, against a limit.
#[derive(Debug)]
pub struct PartialBudget {
    held: AtomicUsize,
    limit: usize,
}

impl PartialBudget {
    pub fn new(limit: usize) -> Self {
        PartialBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Adds `more` bytes held; false when the total is then over the limit (they stay
    /// added: the caller gives them back).
    fn add(&self, more: usize) -> bool {
        self.held.fetch_add(more, Ordering::Relaxed) + more <= self.limit
    }

    fn sub(&self, less: usize) {
        self.held.fetch_sub(less, Ordering::Relaxed);
    }
}

/// One connection's share of the budget, given back when it is dropped.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a PartialBudget,
    bytes: usize,
}

impl<'a> Held<'a> {
    pub fn new(budget: &'a PartialBudget) -> Self {
        Held { budget, bytes: 0 }
    }

    /// The connection now holds `bytes`; false when that takes the total over the
    /// limit (the share is then given back: the connection is about to drop them).
    /// Costs nothing while the connection holds nothing, as one that sends whole
    /// requests does.
    pub fn set(&mut self, bytes: usize) -> bool {
        if bytes == self.bytes {
            return true;
        }
        if bytes > self.bytes {
            let within = self.budget.add(bytes - self.bytes);
            self.bytes = bytes;
            if !within {
                self.set(0);
                return false;
            }
        } else {
            self.budget.sub(self.bytes - bytes);
            self.bytes = bytes;
        }
        true
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// A WebSocket's share of the budget. Its bytes are counted as they are read from the
/// socket, beneath the WebSocket library that assembles them into messages, and
/// forgotten when a message is complete; bytes of the next message read along with
/// the end of one (at most one read, a few KiB) go uncounted.
#[derive(Debug)]
pub(super) struct Unfinished {
    shared: Arc<Shared>,
    bytes: AtomicUsize,
}

impl Unfinished {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Unfinished {
            shared,
            bytes: AtomicUsize::new(0),
        }
    }

    /// `more` bytes were read; false when the server now holds more of unfinished
    /// messages than it allows.
    pub fn read(&self, more: usize) -> bool {
        self.bytes.fetch_add(more, Ordering::Relaxed);
        self.shared.partial.add(more)
    }

    /// A whole message has arrived: what was held of it is not any more.
    pub fn complete(&self) {
        let bytes = self.bytes.swap(0, Ordering::Relaxed);
        if bytes > 0 {
            self.shared.partial.sub(bytes);
        }
    }

    pub fn limit(&self) -> usize {
        self.shared.partial.limit
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.complete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_are_given_back() {
        let budget = PartialBudget::new(100);
        let mut a = Held::new(&budget);
        let mut b = Held::new(&budget);
        assert!(a.set(60));
        assert!(!b.set(50), "60 + 50 is over 100");
        assert_eq!(budget.held.load(Ordering::Relaxed), 60);
        assert!(a.set(10));
        assert!(b.set(50));
        drop(a);
        assert_eq!(budget.held.load(Ordering::Relaxed), 50);
        drop(b);
        assert_eq!(budget.held.load(Ordering::Relaxed), 0);
    }
}
