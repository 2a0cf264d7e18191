//! `switchboard bench`: load scenarios against a running server, reported as
//! throughput and latency percentiles (hdrhistogram), for people or as JSON.
//!
//! Benchmarks live here and not in the tests: speed is measured and compared, never
//! asserted with a stopwatch.
//!
//! A bench leaves nothing behind in the server it measures: its connections say hello
//! with guest names, which the server forgets when they disconnect. Only `send` writes
//! durable mail, and the caller lets it run only against a scratch store.

pub mod burst;
pub mod cli;
pub mod conns;
pub mod echo;
pub mod fanout;
pub mod flood;
pub mod rr;
pub mod send;
pub mod sessions;
pub mod target;
mod wire;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::client::ClientError;
pub use target::Target;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("a load task failed: {0}")]
    Task(String),
    #[error("the server refused a request: {0}")]
    Refused(String),
    #[error("interrupted before the load began")]
    Interrupted,
    #[error("{0}")]
    Unsupported(String),
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub target: Target,
    pub connections: usize,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// `fanout`: messages some member never received (must be 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// `conns`: the server's resident memory per connection, in KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_conn: Option<f64>,
    /// `burst`: what was said, what should have arrived, and who was cut.
    #[serde(flatten)]
    pub burst: Option<burst::Counts>,
    /// `rr --flood`: what the flooder beside the measured connections did.
    #[serde(flatten)]
    pub flood: Option<flood::Flood>,
    /// Stopped early by Ctrl-C: the numbers cover the time it ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Cancelled by Ctrl-C: every scenario then stops its load, and its report covers
/// what was measured until then.
pub static STOP: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

/// Set once, before the load: switchboard's connections then speak TLS, trusting whom
/// it says (`bench --tls`).
pub static TLS: std::sync::OnceLock<crate::client::ClientTls> = std::sync::OnceLock::new();

/// Whether the load should go on: before `deadline` and not interrupted.
pub fn running(deadline: Instant) -> bool {
    Instant::now() < deadline && !STOP.is_cancelled()
}

/// Latencies in microseconds, from 1 µs to 100 s at 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

impl Report {
    pub fn new(
        scenario: &'static str,
        target: Target,
        connections: usize,
        latencies: &Histogram<u64>,
        elapsed: Duration,
    ) -> Report {
        let ops = latencies.len();
        let seconds = elapsed.as_secs_f64();
        Report {
            scenario,
            target,
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
            lost: None,
            kib_per_conn: None,
            burst: None,
            flood: None,
            interrupted: false,
        }
    }

    pub fn header() -> String {
        format!(
            "{:<9} {:<12} {:>6} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9}  {}",
            "scenario", "target", "conns", "ops", "ops/s", "p50", "p99", "p99.9", "max", "notes"
        )
    }

    pub fn row(&self) -> String {
        let mut notes = Vec::new();
        if let Some(lost) = self.lost {
            notes.push(format!("lost {lost}"));
        }
        if let Some(kib) = self.kib_per_conn {
            notes.push(format!("{kib:.2} KiB/conn"));
        }
        if let Some(burst) = &self.burst {
            notes.push(burst.notes());
        }
        if let Some(flood) = &self.flood {
            notes.push(flood.notes());
        }
        if self.interrupted {
            notes.push("interrupted".into());
        }
        format!(
            "{:<9} {:<12} {:>6} {:>10} {:>12.0} {:>9} {:>9} {:>9} {:>9}  {}",
            self.scenario,
            self.target.name(),
            self.connections,
            self.ops,
            self.ops_per_sec,
            micros(self.p50_us),
            micros(self.p99_us),
            micros(self.p999_us),
            micros(self.max_us),
            notes.join(", "),
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

/// Moves `bar` along with the clock until `deadline`; abort the task to stop it.
pub fn fill(bar: &ProgressBar, start: Instant, deadline: Instant) -> tokio::task::JoinHandle<()> {
    let bar = bar.clone();
    tokio::spawn(async move {
        while Instant::now() < deadline {
            bar.set_position(start.elapsed().as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Waits for every load task's latencies while the bar fills up to `deadline`.
pub async fn join_latencies(
    tasks: Vec<tokio::task::JoinHandle<Result<Histogram<u64>, BenchError>>>,
    bar: &ProgressBar,
    start: Instant,
    deadline: Instant,
) -> Result<Histogram<u64>, BenchError> {
    let ticker = fill(bar, start, deadline);
    let mut all = histogram();
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(latencies)) => {
                let _ = all.add(&latencies);
            }
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(BenchError::Task(e.to_string()))),
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    match failed {
        Some(e) => Err(e),
        None => Ok(all),
    }
}

/// Resident memory of process `pid`, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        BenchError::Unsupported(format!("cannot read the memory of pid {pid}: {e}"))
    })?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::Unsupported(format!("no VmRSS for pid {pid}")))
}
