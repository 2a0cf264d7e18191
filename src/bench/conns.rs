//! The `conns` scenario: N idle connections that completed the target's handshake,
//! and what they cost the server in resident memory (read from /proc for its pid).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::target::{Conn, ECHO_PING, Target, resp_command};
use super::{BenchError, Report, STOP, histogram, progress, rss_kib};
use crate::cli::oneshot::guest_names;

pub struct ConnsOptions {
    pub target: Target,
    pub addr: String,
    pub connections: usize,
    /// The server's process, whose memory is read before and after.
    pub pid: Option<u32>,
}

/// Handshakes in progress at once.
const OPENING: usize = 256;
/// Time for the server's memory to settle once every connection is open.
const SETTLE: Duration = Duration::from_millis(500);

/// Connects and completes the handshake: switchboard's hello and NATS's CONNECT in
/// [`Conn::open`], one PING for Redis, one round trip for echo.
async fn open(target: Target, addr: &str, name: String) -> Result<(Conn, Duration), BenchError> {
    let started = Instant::now();
    let mut conn = Conn::open(target, addr, &name).await?;
    match target {
        Target::Redis => {
            conn.write(&resp_command(&[b"PING"])).await?;
            conn.answer().await?;
        }
        Target::Echo => {
            conn.write(ECHO_PING).await?;
            conn.answer().await?;
        }
        Target::Switchboard | Target::Nats => {}
    }
    conn.release_buffer();
    Ok((conn, started.elapsed()))
}

pub async fn run(options: &ConnsOptions) -> Result<Report, BenchError> {
    let names = guest_names();
    let before = options.pid.map(rss_kib).transpose()?;
    let bar = progress(Duration::from_secs(2), "conns");
    bar.set_length(options.connections as u64);
    let start = Instant::now();
    let mut held = Vec::with_capacity(options.connections);
    let mut latencies = histogram();
    let mut opening = futures_util::stream::iter(0..options.connections)
        .map(|i| open(options.target, &options.addr, names(i)))
        .buffer_unordered(OPENING);
    loop {
        let opened = tokio::select! {
            () = STOP.cancelled() => break,
            opened = opening.next() => match opened {
                Some(opened) => opened,
                None => break,
            },
        };
        let (conn, took) = opened?;
        let _ = latencies.record(took.as_micros() as u64);
        held.push(conn);
        bar.inc(1);
    }
    drop(opening);
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let mut report = Report::new("conns", options.target, held.len(), &latencies, elapsed);
    if let (Some(pid), Some(before)) = (options.pid, before) {
        tokio::time::sleep(SETTLE).await;
        let after = rss_kib(pid)?;
        report.kib_per_conn = Some(after.saturating_sub(before) as f64 / held.len().max(1) as f64);
    }
    drop(held);
    Ok(report)
}
