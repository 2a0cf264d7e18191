//! The `send` scenario: N senders, each sending acknowledged direct messages to users
//! who are offline, one at a time; every answer means the message is on disk. This is
//! what group commit is for.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BenchError, Report, histogram, progress};
use crate::client::Client;
use crate::frame;

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
        let sender = RawSender::connect(&options.addr, &format!("bench-s{i}-{run_id}")).await?;
        senders.push(sender);
    }
    let text = "x".repeat(options.size);
    let bar = progress(options.duration, "send");
    let start = Instant::now();
    let deadline = start + options.duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut sender)| {
            let request = serde_json::json!({
                "id": 1, "op": "send", "to": recipients[i % RECIPIENTS], "text": text,
            });
            let mut frame = BytesMut::new();
            frame::encode_json(&request, &mut frame);
            tokio::spawn(async move {
                let mut latencies = histogram();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    sender.call(&frame).await?;
                    let _ = latencies.record(sent.elapsed().as_micros() as u64);
                }
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

/// A sender that speaks raw frames with its request encoded once, so that the load
/// generator spends as little of the shared CPU as it can.
struct RawSender {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawSender {
    async fn connect(addr: &str, name: &str) -> Result<RawSender, BenchError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::Connect(format!("could not connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut sender = RawSender {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        sender.frame().await?;
        let mut hello = BytesMut::new();
        frame::encode_json(
            &serde_json::json!({"id": 0, "op": "hello", "name": name}),
            &mut hello,
        );
        sender.call(&hello).await?;
        Ok(sender)
    }

    /// The next frame from the server.
    async fn frame(&mut self) -> Result<bytes::Bytes, BenchError> {
        loop {
            if let Some(payload) = frame::decode(&mut self.buf, frame::DEFAULT_MAX_FRAME)
                .map_err(|e| BenchError::Task(e.to_string()))?
            {
                return Ok(payload);
            }
            let read = self.stream.read_buf(&mut self.buf).await;
            if matches!(read, Ok(0) | Err(_)) {
                return Err(BenchError::Task("the server closed the connection".into()));
            }
        }
    }

    /// Sends one request and waits for its answer, which must be ok.
    async fn call(&mut self, request: &[u8]) -> Result<(), BenchError> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| BenchError::Task(e.to_string()))?;
        loop {
            let answer = self.frame().await?;
            if answer.starts_with(b"{\"event\"") {
                continue;
            }
            if !answer.windows(9).any(|w| w == b"\"ok\":true") {
                return Err(BenchError::Task(
                    String::from_utf8_lossy(&answer).into_owned(),
                ));
            }
            return Ok(());
        }
    }
}
