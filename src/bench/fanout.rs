//! The `fanout` scenario: one publisher says to a room of N members, keeping W
//! messages in flight; every member counts what it receives. Reports deliveries per
//! second, the latency from publishing to delivery, and messages lost (must be 0).
//! Against Redis it is PUBLISH/SUBSCRIBE; against NATS, PUB/SUB with a PING after
//! each PUB as its acknowledgment.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::target::{Conn, Reply, Target, native_request, resp_command};
use super::{BenchError, Report, fill, histogram, progress, running};
use crate::cli::oneshot::{guest_names, random_u32};

pub struct FanoutOptions {
    pub target: Target,
    pub addr: String,
    pub members: usize,
    /// Where the members connect, in turn; empty: `addr`.
    pub spread: Vec<String>,
    /// Messages the publisher keeps unacknowledged.
    pub in_flight: usize,
    pub duration: Duration,
    /// Bytes of text per message (at least 20: the send time is written in them).
    pub size: usize,
}

/// How long members wait for a message once publishing is over before counting it
/// as lost.
const GRACE: Duration = Duration::from_secs(3);
const STAMP: usize = 20;

/// A message whose first bytes say when, since `start`, it was published.
fn message(target: Target, room: &str, start: Instant, size: usize) -> Vec<u8> {
    let mut text = format!("{:0width$}", start.elapsed().as_micros(), width = STAMP);
    text.extend(std::iter::repeat_n('x', size.saturating_sub(STAMP)));
    match target {
        Target::Redis => resp_command(&[b"PUBLISH", room.as_bytes(), text.as_bytes()]),
        Target::Nats => format!("PUB {room} {}\r\n{text}\r\nPING\r\n", text.len()).into_bytes(),
        _ => native_request(&serde_json::json!({"id": 1, "op": "say", "room": room, "text": text})),
    }
}

/// Joins the room (subscribes to the subject) and waits until that took effect.
async fn subscribe(conn: &mut Conn, room: &str) -> Result<(), BenchError> {
    match conn.target {
        Target::Switchboard => {
            conn.request(&native_request(
                &serde_json::json!({"id": 1, "op": "join_room", "room": room}),
            ))
            .await
        }
        Target::Redis => {
            conn.write(&resp_command(&[b"SUBSCRIBE", room.as_bytes()]))
                .await?;
            while conn.next().await? != Reply::Other {}
            Ok(())
        }
        Target::Nats => {
            conn.write(format!("SUB {room} 1\r\nPING\r\n").as_bytes())
                .await?;
            conn.answer().await
        }
        Target::Echo => Err(BenchError::Unsupported("echo has no rooms".into())),
    }
}

pub async fn run(options: &FanoutOptions) -> Result<Report, BenchError> {
    let target = options.target;
    if target == Target::Echo {
        return Err(BenchError::Unsupported(
            "`fanout` needs rooms or subjects: switchboard, redis or nats".into(),
        ));
    }
    let room = format!("bench-{:08x}", random_u32());
    let names = guest_names();
    let mut publisher = Conn::open(target, &options.addr, &names(options.members)).await?;
    if target == Target::Switchboard {
        publisher
            .request(&native_request(
                &serde_json::json!({"id": 1, "op": "create_room", "room": room}),
            ))
            .await?;
    }
    let mut members = Vec::with_capacity(options.members);
    for i in 0..options.members {
        let addr = match options.spread.len() {
            0 => &options.addr,
            spread => &options.spread[i % spread],
        };
        let mut member = Conn::open(target, addr, &names(i)).await?;
        subscribe(&mut member, &room).await?;
        members.push(member);
    }

    let (total_tx, total_rx) = watch::channel(None::<u64>);
    let bar = progress(options.duration, "fanout");
    let start = Instant::now();
    let deadline = start + options.duration;
    let readers: Vec<_> = members
        .into_iter()
        .map(|mut member| {
            let mut total_rx = total_rx.clone();
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut got = 0u64;
                let mut last = start;
                loop {
                    let total = *total_rx.borrow_and_update();
                    if total.is_some_and(|total| got >= total) {
                        break;
                    }
                    let reply = match total {
                        None => tokio::select! {
                            reply = member.next() => Some(reply?),
                            _ = total_rx.changed() => None,
                        },
                        Some(_) => match tokio::time::timeout(GRACE, member.next()).await {
                            Ok(reply) => Some(reply?),
                            Err(_) => break,
                        },
                    };
                    if let Some(Reply::Delivery(payload)) = reply {
                        let now = Instant::now();
                        let stamp = std::str::from_utf8(&payload[..STAMP.min(payload.len())])
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .unwrap_or(0);
                        let since = (now - start).as_micros() as u64;
                        let _ = latencies.record(since.saturating_sub(stamp).max(1));
                        got += 1;
                        last = now;
                    }
                }
                Ok::<_, BenchError>((latencies, got, last))
            })
        })
        .collect();

    let ticker = fill(&bar, start, deadline);
    let in_flight = options.in_flight.max(1);
    let mut published = 0u64;
    let mut waiting = 0;
    let mut batch = Vec::new();
    while running(deadline) {
        while waiting < in_flight {
            batch.extend(message(target, &room, start, options.size));
            waiting += 1;
            published += 1;
        }
        publisher.write(&batch).await?;
        batch.clear();
        publisher.answer().await?;
        waiting -= 1;
    }
    while waiting > 0 {
        publisher.answer().await?;
        waiting -= 1;
    }
    let _ = total_tx.send(Some(published));
    ticker.abort();
    bar.finish_and_clear();

    let mut all = histogram();
    let mut lost = 0;
    let mut last = start;
    for reader in readers {
        let (latencies, got, at) = reader
            .await
            .map_err(|e| BenchError::Task(e.to_string()))??;
        let _ = all.add(&latencies);
        lost += published.saturating_sub(got);
        last = last.max(at);
    }
    let mut report = Report::new("fanout", target, options.members, &all, last - start);
    report.lost = Some(lost);
    Ok(report)
}
