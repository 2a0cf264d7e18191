//! The `send` scenario: N senders, each sending acknowledged direct messages to users
//! who are offline, one at a time; every answer means the message is on disk. This is
//! what group commit is for.

use std::time::{Duration, Instant};

use super::{BenchError, Report, histogram, progress};
use crate::client::Client;

pub struct SendOptions {
    pub addr: String,
    pub senders: usize,
    pub duration: Duration,
    /// Bytes of text per message.
    pub size: usize,
}

/// Recipients the senders take turns writing to, so that no single inbox is hot.
const RECIPIENTS: usize = 8;

pub async fn run(options: &SendOptions) -> Result<Report, BenchError> {
    let run_id = std::process::id();
    let connect = |addr: String| async move {
        Client::connect(addr.as_str())
            .await
            .map_err(|e| BenchError::Connect(format!("could not connect to {addr}: {e}")))
    };
    // The recipients must have been seen, and be offline.
    let recipients: Vec<String> = (0..RECIPIENTS)
        .map(|k| format!("bench-r{k}-{run_id}"))
        .collect();
    for name in &recipients {
        let client = connect(options.addr.clone()).await?;
        client.hello(name).await?;
        client.bye().await?;
    }
    let mut senders = Vec::with_capacity(options.senders);
    for i in 0..options.senders {
        let client = connect(options.addr.clone()).await?;
        client.hello(&format!("bench-s{i}-{run_id}")).await?;
        senders.push(client);
    }
    let text = "x".repeat(options.size);
    let bar = progress(options.duration, "send");
    let start = Instant::now();
    let deadline = start + options.duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (text, to) = (text.clone(), recipients[i % RECIPIENTS].clone());
            tokio::spawn(async move {
                let mut latencies = histogram();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    client.send(to.as_str(), &text).await?;
                    let _ = latencies.record(sent.elapsed().as_micros() as u64);
                }
                let _ = client.bye().await;
                Ok::<_, BenchError>(latencies)
            })
        })
        .collect();
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                bar.set_position(start.elapsed().as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut all = histogram();
    for task in tasks {
        let latencies = task.await.map_err(|e| BenchError::Task(e.to_string()))??;
        let _ = all.add(&latencies);
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok(Report::new("send", options.senders, &all, elapsed))
}
