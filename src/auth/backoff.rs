//! Slows down password guessing: each failed password for a name waits before its
//! `auth_failed`, the first 100 ms and each consecutive one twice the one before, up
//! to [`MAX_DELAY`]. Only the guesser's own connection waits; everyone else is served
//! meanwhile. A success forgets the name's failures, and so does a quiet while.
//!
//! The names remembered are bounded ([`REMEMBERED`]): a full table first forgets the
//! names quiet for long, then the one whose last failure is oldest. Someone who fails
//! on many names to push a victim's count out pays the delay of every one of them.

use std::sync::Mutex;
use std::time::Duration;

use foldhash::HashMap;
use tokio::time::Instant;

/// The wait before the first failure's answer.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait: at most one guess per name every ten seconds.
pub const MAX_DELAY: Duration = Duration::from_secs(10);
/// After this long without a failure, a name's count starts again.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Names whose failures are remembered at once.
pub const REMEMBERED: usize = 10_000;

/// Consecutive failed passwords per name.
#[derive(Debug)]
pub struct Backoff {
    failures: Mutex<HashMap<Box<str>, Failures>>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::with_capacity(REMEMBERED)
    }
}

impl Backoff {
    pub fn with_capacity(capacity: usize) -> Self {
        Backoff {
            failures: Mutex::new(HashMap::default()),
            capacity: capacity.max(1),
        }
    }

    /// Counts a failed password for `name` at `now`; returns how long to wait before
    /// saying so.
    pub fn failed(&self, name: &str, now: Instant) -> Duration {
        let key = fold(name);
        let Ok(mut failures) = self.failures.lock() else {
            return MAX_DELAY;
        };
        let count = match failures.get_mut(key.as_str()) {
            Some(entry) => {
                entry.count = if quiet(entry, now) {
                    1
                } else {
                    entry.count + 1
                };
                entry.last = now;
                entry.count
            }
            None => {
                if failures.len() >= self.capacity {
                    make_room(&mut failures, self.capacity, now);
                }
                failures.insert(
                    key.into(),
                    Failures {
                        count: 1,
                        last: now,
                    },
                );
                1
            }
        };
        delay(count)
    }

    /// The right password for `name`: its failures are forgotten.
    pub fn succeeded(&self, name: &str) {
        if let Ok(mut failures) = self.failures.lock()
            && !failures.is_empty()
        {
            failures.remove(fold(name).as_str());
        }
    }

    /// Names remembered now.
    pub fn len(&self) -> usize {
        self.failures.lock().map_or(0, |f| f.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The wait after `count` consecutive failures.
fn delay(count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

fn quiet(entry: &Failures, now: Instant) -> bool {
    now.saturating_duration_since(entry.last) >= FORGET_AFTER
}

/// Forgets the names quiet for long; if that leaves the table full, also the one whose
/// last failure is oldest.
fn make_room(failures: &mut HashMap<Box<str>, Failures>, capacity: usize, now: Instant) {
    failures.retain(|_, entry| !quiet(entry, now));
    if failures.len() < capacity {
        return;
    }
    let oldest = failures
        .iter()
        .min_by_key(|(_, entry)| entry.last)
        .map(|(name, _)| name.clone());
    if let Some(name) = oldest {
        failures.remove(&name);
    }
}

/// Names are one name whatever their ASCII case, as the store compares them.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_consecutive_failure_waits_twice_as_long_up_to_the_cap() {
        let backoff = Backoff::default();
        let now = Instant::now();
        let waits: Vec<u64> = (0..10)
            .map(|_| backoff.failed("Ada", now).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        // Another name is not slowed by Ada's guesser; the case does not matter.
        assert_eq!(backoff.failed("bob", now), FIRST_DELAY);
        assert_eq!(backoff.failed("ADA", now), MAX_DELAY);
    }

    #[test]
    fn a_success_or_a_quiet_while_starts_again() {
        let backoff = Backoff::default();
        let now = Instant::now();
        backoff.failed("ada", now);
        backoff.failed("ada", now);
        backoff.succeeded("Ada");
        assert_eq!(backoff.failed("ada", now), FIRST_DELAY);
        assert_eq!(backoff.failed("ada", now), FIRST_DELAY * 2);
        let later = now + FORGET_AFTER;
        assert_eq!(backoff.failed("ada", later), FIRST_DELAY);
    }

    #[test]
    fn the_names_remembered_are_bounded() {
        let backoff = Backoff::with_capacity(3);
        let start = Instant::now();
        for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            backoff.failed(name, start + Duration::from_secs(i as u64));
        }
        assert_eq!(backoff.len(), 3);
        // The oldest went first: "a" counts from one again, "e" is remembered.
        let now = start + Duration::from_secs(10);
        assert_eq!(backoff.failed("e", now), FIRST_DELAY * 2);
        assert_eq!(backoff.failed("a", now), FIRST_DELAY);
        assert_eq!(backoff.len(), 3);
        // Quiet names go before busy ones.
        let much_later = now + FORGET_AFTER;
        backoff.failed("a", much_later);
        backoff.failed("z", much_later);
        assert_eq!(backoff.len(), 2);
    }
}
