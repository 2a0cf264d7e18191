//! `rr --flood R`: beside the measured connections, one more that asks R pings a
//! second whatever the answers, as a runaway client does. Against a server with
//! `--rate` far below R it shows what the limit is for: the flooder is slowed, and
//! the others' latency is what it was without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::BenchError;
use crate::frame;

/// How often the flooder writes what it owes.
const TICK: Duration = Duration::from_millis(10);

/// What the flooder did, per second of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Flood {
    /// Pings a second it meant to send.
    pub flood_offered: f64,
    /// Pings a second the server took (written into the connection).
    pub flood_sent: f64,
    /// Pings a second answered.
    pub flood_answered: f64,
}

impl Flood {
    pub fn notes(&self) -> String {
        format!(
            "flooder offered {:.0}/s, sent {:.0}/s, answered {:.0}/s",
            self.flood_offered, self.flood_sent, self.flood_answered
        )
    }
}

pub struct Flooder {
    rate: u32,
    sent: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    start: Instant,
    tasks: [JoinHandle<()>; 2],
}

impl Flooder {
    /// Connects to switchboard's native port at `addr`, says hello, and floods it with
    /// `rate` pings a second until stopped.
    pub async fn start(addr: &str, rate: u32) -> Result<Flooder, BenchError> {
        let failed = |e: std::io::Error| BenchError::Connect(format!("the flooder at {addr}: {e}"));
        let stream = TcpStream::connect(addr).await.map_err(failed)?;
        stream.set_nodelay(true).map_err(failed)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut hello = BytesMut::new();
        frame::encode(br#"{"op":"hello","name":"guest-flooder"}"#, &mut hello);
        writer.write_all(&hello).await.map_err(failed)?;
        let mut ping = BytesMut::new();
        frame::encode(br#"{"id":1,"op":"ping"}"#, &mut ping);

        let sent = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let write = tokio::spawn({
            let sent = Arc::clone(&sent);
            async move {
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                    let owed = due.saturating_sub(sent.load(Ordering::Relaxed));
                    if owed == 0 {
                        continue;
                    }
                    let batch = ping.repeat(owed as usize);
                    if writer.write_all(&batch).await.is_err() {
                        return;
                    }
                    sent.fetch_add(owed, Ordering::Relaxed);
                }
            }
        });
        let read = tokio::spawn({
            let answered = Arc::clone(&answered);
            async move {
                let mut buf = BytesMut::with_capacity(64 * 1024);
                // The welcome and hello's answer come first.
                let mut frames = 0u64;
                while let Ok(n) = reader.read_buf(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    while let Ok(Some(_)) = frame::decode(&mut buf, 1 << 20) {
                        frames += 1;
                        if frames > 2 {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Ok(Flooder {
            rate,
            sent,
            answered,
            start,
            tasks: [write, read],
        })
    }

    /// Stops flooding; what it did.
    pub fn stop(self) -> Flood {
        let seconds = self.start.elapsed().as_secs_f64().max(f64::EPSILON);
        for task in &self.tasks {
            task.abort();
        }
        Flood {
            flood_offered: f64::from(self.rate),
            flood_sent: self.sent.load(Ordering::Relaxed) as f64 / seconds,
            flood_answered: self.answered.load(Ordering::Relaxed) as f64 / seconds,
        }
    }
}
