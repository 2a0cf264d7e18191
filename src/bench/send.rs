//! The `send` scenario: N senders, each sending acknowledged messages to recipients
//! who are offline, one at a time; every answer means the message is on disk. This is
//! what group commit is for. Against Redis it is LPUSH, durable when the server runs
//! with `appendfsync always`.

use std::time::{Duration, Instant};

use super::target::{Conn, Target, native_request, resp_command};
use super::{BenchError, Report, histogram, join_latencies, progress, running};
use crate::cli::oneshot::{guest_names, random_u32};

pub struct SendOptions {
    pub target: Target,
    pub addr: String,
    pub senders: usize,
    pub duration: Duration,
    /// Bytes of text per message.
    pub size: usize,
}

/// Recipients the senders take turns writing to, so that no single inbox is hot.
const RECIPIENTS: usize = 8;

pub async fn run(options: &SendOptions) -> Result<Report, BenchError> {
    let target = options.target;
    if !matches!(target, Target::Switchboard | Target::Redis) {
        return Err(BenchError::Unsupported(format!(
            "`send` needs a durable store: switchboard or redis, not {}",
            target.name()
        )));
    }
    // The recipients are real names, kept with their mail: hence a scratch store.
    let run_id = random_u32();
    let recipients: Vec<String> = (0..RECIPIENTS)
        .map(|k| format!("bench-r{k}-{run_id:08x}"))
        .collect();
    if target == Target::Switchboard {
        // The recipients must have been seen, and be offline.
        for name in &recipients {
            Conn::open(target, &options.addr, name).await?;
        }
    }
    let names = guest_names();
    let mut senders = Vec::with_capacity(options.senders);
    for i in 0..options.senders {
        senders.push(Conn::open(target, &options.addr, &names(i)).await?);
    }
    let text = "x".repeat(options.size);
    let bar = progress(options.duration, "send");
    let start = Instant::now();
    let deadline = start + options.duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut sender)| {
            let to = &recipients[i % RECIPIENTS];
            let request = match target {
                Target::Redis => resp_command(&[b"LPUSH", to.as_bytes(), text.as_bytes()]),
                _ => native_request(
                    &serde_json::json!({"id": 1, "op": "send", "to": to, "text": text}),
                ),
            };
            tokio::spawn(async move {
                let mut latencies = histogram();
                while running(deadline) {
                    let sent = Instant::now();
                    sender.write(&request).await?;
                    sender.answer().await?;
                    let _ = latencies.record(sent.elapsed().as_micros() as u64);
                }
                Ok::<_, BenchError>(latencies)
            })
        })
        .collect();
    let all = join_latencies(tasks, &bar, start, deadline).await?;
    Ok(Report::new(
        "send",
        target,
        options.senders,
        &all,
        start.elapsed(),
    ))
}
