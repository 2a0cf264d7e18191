//! Opens many clients against a running server, each completing `hello`, then checks
//! that `users` lists them all and reports the server's resident memory.
//!
//! ```sh
//! cargo run --release -- serve --db /tmp/swarm.db &
//! target/release/examples/swarm 127.0.0.1:12000 10000 $(pgrep -f "switchboard serve")
//! ```
//! A rough check of "thousands at once" until the `bench` subcommand exists.

use std::time::Instant;

use switchboard::Client;

fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:12000".into());
    let count: usize = args.next().map_or(Ok(1000), |n| n.parse())?;
    let pid = args.next();
    rlimit::increase_nofile_limit(u64::MAX)?;

    let before = pid.as_deref().and_then(rss_kib);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(250) {
        let mut joins = tokio::task::JoinSet::new();
        for &i in chunk {
            let addr = addr.clone();
            joins.spawn(async move {
                let client = Client::connect(addr.as_str()).await?;
                client.hello(&format!("swarm{i}")).await?;
                Ok::<_, switchboard::client::ClientError>(client)
            });
        }
        while let Some(joined) = joins.join_next().await {
            clients.push(joined??);
        }
    }
    let elapsed = started.elapsed();
    let online = clients[0].users().await?.len();
    println!(
        "{count} clients connected and said hello in {:.2} s; users lists {online}",
        elapsed.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (before, pid.as_deref().and_then(rss_kib)) {
        let per = (after.saturating_sub(before)) as f64 / count as f64;
        println!("server RSS {before} KiB -> {after} KiB: {per:.1} KiB per connection");
    }
    Ok(())
}
