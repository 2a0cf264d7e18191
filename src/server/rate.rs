//! `--rate N --burst M`: how many requests a connection may have served per second.
//! Over the budget the server stops reading the connection until it refills, as IRC
//! servers' fakelag does: the flooder's own requests wait (TCP's flow control pushes
//! back on it), it is never cut, and nobody else waits with it.
//!
//! The budget is kept as the generic cell rate algorithm keeps it: one instant per
//! connection, the time at which its budget would be whole again were it not for the
//! burst allowance; nothing ticks while a connection is quiet.

use std::time::Duration;

use tokio::time::Instant;

/// The server's rate limit, the same for every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, on average.
    pub per_second: u32,
    /// Requests that may come at once after a quiet while.
    pub burst: u32,
}

/// A connection's state under the limit: when its budget would be whole again, were
/// it not for the burst. `None` until its first request.
pub type RateClock = Option<Instant>;

impl RateLimit {
    /// The time one request uses of the budget.
    fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    /// How far ahead of now the clock may run: the burst.
    fn tolerance(&self) -> Duration {
        self.interval() * self.burst.saturating_sub(1)
    }

    /// `None` when a request may be served at `now`; otherwise the instant from which
    /// one may.
    pub fn wait(&self, clock: RateClock, now: Instant) -> Option<Instant> {
        let due = clock?.max(now);
        let ahead = due - now;
        (ahead > self.tolerance()).then(|| due - self.tolerance())
    }

    /// Takes one request's share of the budget at `now`.
    pub fn spend(&self, clock: &mut RateClock, now: Instant) {
        *clock = Some(clock.map_or(now, |due| due.max(now)) + self.interval());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many requests are served at each instant when a client asks again as soon
    /// as it may.
    fn served_by(limit: RateLimit, until: Duration) -> usize {
        let start = Instant::now();
        let mut clock = None;
        let mut now = start;
        let mut served = 0;
        while now <= start + until {
            match limit.wait(clock, now) {
                None => {
                    limit.spend(&mut clock, now);
                    served += 1;
                }
                Some(at) => {
                    assert!(at > now);
                    now = at;
                }
            }
        }
        served
    }

    #[test]
    fn a_burst_at_once_then_the_rate() {
        let limit = RateLimit {
            per_second: 10,
            burst: 5,
        };
        assert_eq!(served_by(limit, Duration::ZERO), 5);
        // The burst, then one every 100 ms: 100, 200, ..., 1000.
        assert_eq!(served_by(limit, Duration::from_secs(1)), 15);
        assert_eq!(served_by(limit, Duration::from_secs(10)), 105);
    }

    #[test]
    fn a_quiet_while_refills_the_burst_and_no_more() {
        let limit = RateLimit {
            per_second: 100,
            burst: 3,
        };
        let start = Instant::now();
        let mut clock = None;
        for _ in 0..3 {
            assert_eq!(limit.wait(clock, start), None);
            limit.spend(&mut clock, start);
        }
        assert_eq!(
            limit.wait(clock, start),
            Some(start + Duration::from_millis(10))
        );
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limit.wait(clock, later), None);
            limit.spend(&mut clock, later);
        }
        assert!(limit.wait(clock, later).is_some());
    }
}
