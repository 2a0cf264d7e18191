//! The `sessions` scenario: N clients, each going through whole sessions one after
//! another — connect, hello, join a room, leave it, bye — as a class arriving or a
//! reconnect storm does. What one costs is what a cluster writes for it (a name claim,
//! a session note, a seat) as much as what a node does.

use std::time::{Duration, Instant};

use super::target::Target;
use super::{BenchError, Report, histogram, join_latencies, progress, running};
use crate::Client;
use crate::cli::oneshot::guest_names;

pub struct SessionsOptions {
    pub addr: String,
    /// The addresses the clients connect to in turn (a cluster's nodes); `addr` alone
    /// when empty.
    pub spread: Vec<String>,
    pub clients: usize,
    pub duration: Duration,
}

/// Sessions one client may go through before its names repeat.
const SESSIONS_PER_CLIENT: usize = 1 << 20;

pub async fn run(options: &SessionsOptions) -> Result<Report, BenchError> {
    let names = guest_names();
    // The room every session joins, held open by a host for the whole run.
    let host = Client::connect(options.addr.as_str()).await?;
    let host_name = names(usize::MAX - 1);
    host.hello(&host_name).await?;
    let room = format!("bench-{host_name}");
    host.create_room(&room).await?;
    let bar = progress(options.duration, "sessions");
    let start = Instant::now();
    let deadline = start + options.duration;
    let tasks: Vec<_> = (0..options.clients)
        .map(|i| {
            let addr = match options.spread.len() {
                0 => options.addr.clone(),
                n => options.spread[i % n].clone(),
            };
            let (names, room) = (names.clone(), room.clone());
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut k = 0;
                while running(deadline) {
                    let began = Instant::now();
                    let client = Client::connect(addr.as_str()).await?;
                    client
                        .hello(&names(i.wrapping_mul(SESSIONS_PER_CLIENT).wrapping_add(k)))
                        .await?;
                    client.join_room(&room).await?;
                    client.leave_room(&room).await?;
                    client.bye().await?;
                    let _ = latencies.record(began.elapsed().as_micros() as u64);
                    k += 1;
                }
                Ok::<_, BenchError>(latencies)
            })
        })
        .collect();
    let all = join_latencies(tasks, &bar, start, deadline).await?;
    let elapsed = start.elapsed();
    host.bye().await?;
    Ok(Report::new(
        "sessions",
        Target::Switchboard,
        options.clients,
        &all,
        elapsed,
    ))
}
