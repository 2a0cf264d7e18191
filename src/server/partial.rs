//! What unfinished messages may cost the server in all. One connection's unfinished
//! unit is bounded by `--max-frame`; this bounds their sum across connections, so that
//! many connections each sending most of a large message cannot make the server hold
//! connections times max-frame.

use std::sync::atomic::{AtomicUsize, Ordering};

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
            let more = bytes - self.bytes;
            let total = self.budget.held.fetch_add(more, Ordering::Relaxed) + more;
            self.bytes = bytes;
            if total > self.budget.limit {
                self.set(0);
                return false;
            }
        } else {
            self.budget
                .held
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
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
