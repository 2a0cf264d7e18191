//! `switchboard bench`: load scenarios against a running server, reported as
//! throughput and latency percentiles (hdrhistogram), for people or as JSON.
//!
//! Benchmarks live here and not in the tests: speed is measured and compared, never
//! asserted with a stopwatch.

pub mod send;

use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("a load task failed: {0}")]
    Task(String),
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub connections: usize,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Latencies in microseconds, from 1 µs to 100 s at 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

impl Report {
    pub fn new(
        scenario: &'static str,
        connections: usize,
        latencies: &Histogram<u64>,
        elapsed: Duration,
    ) -> Report {
        let ops = latencies.len();
        let seconds = elapsed.as_secs_f64();
        Report {
            scenario,
            connections,
            ops,
            seconds,
            ops_per_sec: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            p50_us: latencies.value_at_quantile(0.5),
            p99_us: latencies.value_at_quantile(0.99),
            p999_us: latencies.value_at_quantile(0.999),
            max_us: latencies.max(),
        }
    }

    pub fn header() -> String {
        format!(
            "{:<9} {:>6} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "scenario", "conns", "ops", "ops/s", "p50", "p99", "p99.9", "max"
        )
    }

    pub fn row(&self) -> String {
        format!(
            "{:<9} {:>6} {:>10} {:>12.0} {:>9} {:>9} {:>9} {:>9}",
            self.scenario,
            self.connections,
            self.ops,
            self.ops_per_sec,
            micros(self.p50_us),
            micros(self.p99_us),
            micros(self.p999_us),
            micros(self.max_us),
        )
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

/// A bar that fills over `duration`, shown only for runs over a second (and only on a
/// terminal: indicatif hides itself otherwise).
pub fn progress(duration: Duration, what: &str) -> ProgressBar {
    if duration <= Duration::from_secs(1) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {elapsed}/{duration}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}
