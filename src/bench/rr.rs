//! The `rr` scenario: N connections, each keeping P pings outstanding for a duration;
//! the latency of each is from its write to its answer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::flood::Flooder;
use super::target::{Conn, ECHO_PING, Target, resp_command};
use super::{BenchError, Report, histogram, join_latencies, progress, running};
use crate::cli::oneshot::guest_names;
use crate::frame;

pub struct RrOptions {
    pub target: Target,
    pub addr: String,
    pub connections: usize,
    /// Pings each connection keeps outstanding.
    pub pipeline: usize,
    pub duration: Duration,
    /// Pings a second one more connection sends whatever the answers (`--flood`).
    pub flood: Option<u32>,
}

/// One ping in the target's protocol.
fn ping(target: Target) -> Vec<u8> {
    match target {
        Target::Switchboard => {
            let mut buf = bytes::BytesMut::new();
            frame::encode(br#"{"id":1,"op":"ping"}"#, &mut buf);
            buf.to_vec()
        }
        Target::Redis => resp_command(&[b"PING"]),
        Target::Nats => b"PING\r\n".to_vec(),
        Target::Echo => ECHO_PING.to_vec(),
    }
}

pub async fn run(options: &RrOptions) -> Result<Report, BenchError> {
    let names = guest_names();
    let pipeline = options.pipeline.max(1);
    let mut conns = Vec::with_capacity(options.connections);
    for i in 0..options.connections {
        conns.push(Conn::open(options.target, &options.addr, &names(i)).await?);
    }
    let request = ping(options.target);
    let flooder = match options.flood {
        Some(rate) => Some(Flooder::start(&options.addr, rate).await?),
        None => None,
    };
    let bar = progress(options.duration, "rr");
    let start = Instant::now();
    let deadline = start + options.duration;
    let tasks = conns
        .into_iter()
        .map(|mut conn| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut sent_at = VecDeque::with_capacity(pipeline);
                conn.write(&request.repeat(pipeline)).await?;
                sent_at.extend(std::iter::repeat_n(Instant::now(), pipeline));
                while let Some(sent) = sent_at.pop_front() {
                    conn.answer().await?;
                    let now = Instant::now();
                    let _ = latencies.record((now - sent).as_micros() as u64);
                    if running(deadline) {
                        conn.write(&request).await?;
                        sent_at.push_back(Instant::now());
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let all = join_latencies(tasks, &bar, start, deadline).await?;
    let mut report = Report::new(
        "rr",
        options.target,
        options.connections,
        &all,
        start.elapsed(),
    );
    report.flood = flooder.map(Flooder::stop);
    Ok(report)
}
