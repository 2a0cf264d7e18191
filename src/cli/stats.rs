//! `switchboard stats`: a running server's traffic, one line per interval, as
//! `redis-cli --stat` shows Redis's. It reads the server's `/api/varz` on the HTTP
//! listener; the rates are differences of its counters between two reads.

use std::io::Write;
use std::time::Duration;

use axum::body::Body;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HOST};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::CliError;
use super::args::{count, seconds};
use super::tls::TlsArgs;
use crate::client::ClientTls;

/// Largest `/api/varz` answer read.
const MAX_BODY: usize = 1024 * 1024;

/// How long one read of `/api/varz` may take, connecting included.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// The server's HTTP listener (its `serve --http-listen`).
    #[arg(long, default_value = "127.0.0.1:12080")]
    pub addr: String,
    /// The admin token (the server's --admin-token, or the token= of the URL it printed);
    /// not needed on a loopback listener without one.
    #[arg(long)]
    pub token: Option<String>,
    /// Seconds between lines (0.01..=3600).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds(0.01, 3600.0))]
    pub interval: Duration,
    /// Stop after this many lines [default: until Ctrl-C].
    #[arg(long, value_name = "N", value_parser = count::<u64>(1..=u64::MAX))]
    pub count: Option<u64>,
    /// When the server has a certificate, its HTTP listener serves HTTPS: --tls, and
    /// whom to trust.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The counters `stats` reads from `/api/varz`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct Sample {
    connections: u64,
    in_msgs: u64,
    out_msgs: u64,
    direct_messages: u64,
    room_messages: u64,
    slow_consumers: u64,
}

const HEADER: &str = "connections  requests/s  deliveries/s  sends/s  room msgs/s  slow consumers";

/// Prints the header, then a line every `interval` until `count` lines are printed.
pub async fn run(args: &StatsArgs, out: &mut impl Write) -> Result<(), CliError> {
    let interval = args.interval;
    let token = args.token.as_deref();
    let tls = args.tls.client_tls()?;
    let tls = tls.as_ref();
    let mut last = read(&args.addr, token, tls).await?;
    writeln!(out, "{HEADER}")?;
    out.flush()?;
    let mut printed = 0;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while args.count.is_none_or(|count| printed < count) {
        tick.tick().await;
        let now = read(&args.addr, token, tls).await?;
        writeln!(out, "{}", line(&last, &now, interval.as_secs_f64()))?;
        out.flush()?;
        last = now;
        printed += 1;
    }
    Ok(())
}

/// One line: the connections now, rates per second since `last`, and the slow
/// consumers since the server started.
fn line(last: &Sample, now: &Sample, seconds: f64) -> String {
    let rate = |then: u64, now: u64| (now.saturating_sub(then) as f64 / seconds).round() as u64;
    format!(
        "{:>11}  {:>10}  {:>12}  {:>7}  {:>11}  {:>14}",
        now.connections,
        rate(last.in_msgs, now.in_msgs),
        rate(last.out_msgs, now.out_msgs),
        rate(last.direct_messages, now.direct_messages),
        rate(last.room_messages, now.room_messages),
        now.slow_consumers,
    )
}

/// Reads `/api/varz` once, over a connection of its own.
async fn read(
    addr: &str,
    token: Option<&str>,
    tls: Option<&ClientTls>,
) -> Result<Sample, CliError> {
    match tokio::time::timeout(READ_TIMEOUT, get_varz(addr, token, tls)).await {
        Ok(read) => read,
        Err(_) => Err(CliError::Connect(format!(
            "the server at {addr} did not answer /api/varz within {} s",
            READ_TIMEOUT.as_secs()
        ))),
    }
}

fn unreachable(addr: &str, e: &dyn std::fmt::Display) -> CliError {
    CliError::Connect(format!(
        "cannot reach the server's HTTP listener at {addr}: {e} (its serve \
         --http-listen; --addr chooses another)"
    ))
}

async fn get_varz(
    addr: &str,
    token: Option<&str>,
    tls: Option<&ClientTls>,
) -> Result<Sample, CliError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(addr, &e))?;
    match tls {
        Some(tls) => {
            let stream = tls
                .connect(addr, stream)
                .await
                .map_err(|e| unreachable(addr, &e))?;
            get_over(stream, addr, token).await
        }
        None => get_over(stream, addr, token).await,
    }
}

/// `GET /api/varz` over `io`, a connection to `addr`.
async fn get_over<IO>(io: IO, addr: &str, token: Option<&str>) -> Result<Sample, CliError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let unreachable = |e: &dyn std::fmt::Display| unreachable(addr, e);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get("/api/varz").header(HOST, addr);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Body::empty())
        .map_err(|e| CliError::Usage(format!("cannot make the request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    match response.status() {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => {
            return Err(CliError::Connect(format!(
                "the server at {addr} refused /api/varz (401): it needs the admin token; \
                 give --token T (its --admin-token, or the token= of the URL it printed)"
            )));
        }
        status => {
            return Err(CliError::Connect(format!(
                "the server at {addr} answered {status} to /api/varz"
            )));
        }
    }
    let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_BODY)
        .await
        .map_err(|e| unreachable(&e))?;
    serde_json::from_slice(&body).map_err(|e| {
        CliError::Connect(format!(
            "what {addr} answered to /api/varz is not a switchboard's: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_rates_per_second_under_the_header() {
        let last = Sample {
            connections: 2,
            in_msgs: 100,
            out_msgs: 10,
            direct_messages: 4,
            room_messages: 0,
            slow_consumers: 1,
        };
        let now = Sample {
            connections: 3,
            in_msgs: 150,
            out_msgs: 30,
            direct_messages: 8,
            room_messages: 6,
            slow_consumers: 1,
        };
        let text = line(&last, &now, 2.0);
        assert_eq!(text.len(), HEADER.len());
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields, ["3", "25", "10", "2", "3", "1"]);
    }
}
