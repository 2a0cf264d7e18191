//! `switchboard bench`'s flags and the choice of scenario; `main` prints the report.

use std::time::Duration;

use super::wire::{WS_SCHEME, WSS_SCHEME};
use super::{BenchError, Report, STOP, Target, burst, conns, echo, fanout, rr, send, sessions};
use crate::cli::args::{Address, count, seconds};
use crate::cli::tls::TlsArgs;
use crate::client::DEFAULT_PORT;
use crate::server::DEFAULT_HTTP_LISTEN;

/// The HTTP listener's usual port, for `--ws --addr HOST`.
const HTTP_PORT: u16 = DEFAULT_HTTP_LISTEN.port();

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Scenario {
    /// N connections, each keeping P pings outstanding.
    Rr,
    /// N senders, each sending acknowledged (durable) messages to offline users.
    Send,
    /// One publisher saying to a room of N members, W messages in flight.
    Fanout,
    /// N idle connections that completed the handshake; server memory per connection.
    Conns,
    /// A room of N members (1300 unless -n) who all say one line at once and all read
    /// everything: deliveries expected and received, members cut (should be none).
    Burst,
    /// N clients each going through whole sessions, one after another: connect,
    /// hello, join a room, leave it, bye (switchboard over plain TCP).
    Sessions,
}

/// Bytes of text a message may carry (docs/protocol.md: at most 64 KiB).
const MAX_TEXT: u64 = crate::protocol::MAX_TEXT as u64;
/// Connections `bench` opens at most.
const MAX_BENCH_CONNECTIONS: u64 = 100_000;
/// Members in the `burst` room unless `-n` says otherwise: the room of the report
/// where 796 to 826 of 1,300 readers were cut.
const BURST_MEMBERS: usize = 1300;
/// Seconds `bench` runs unless `--duration` says otherwise; for `burst`, how long the
/// stalled members stay unread, beyond `serve`'s default write deadline of 10 s.
const BENCH_SECONDS: Duration = Duration::from_secs(5);
const BURST_HOLD: Duration = Duration::from_secs(15);

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The server under load; echo is started by the bench itself.
    #[arg(long, value_enum, default_value = "switchboard")]
    pub target: Target,
    /// Server address: HOST:PORT, HOST or PORT [default: the target's usual port on
    /// 127.0.0.1].
    #[arg(long, value_parser = Address::parse)]
    pub addr: Option<Address>,
    /// Connections: senders for `send`, members for `fanout` and `burst`
    /// (1..=100000) [default: 32; burst: 1300].
    #[arg(long, short = 'n', value_name = "N", value_parser = count::<usize>(1..=MAX_BENCH_CONNECTIONS))]
    pub connections: Option<usize>,
    /// `rr`: pings each connection keeps outstanding (1..=10000).
    #[arg(long, short = 'P', value_name = "N", default_value = "1", value_parser = count::<usize>(1..=10_000))]
    pub pipeline: usize,
    /// `fanout`: messages the publisher keeps in flight (1..=100000).
    #[arg(long, short = 'W', value_name = "N", default_value = "16", value_parser = count::<usize>(1..=100_000))]
    pub in_flight: usize,
    /// How long to run, in seconds, 0.1..=86400 (`conns` runs until all are open)
    /// [default: 5]; `burst`: how long the --stall members stay unread [default: 15].
    #[arg(long, value_name = "SECS", value_parser = seconds(0.1, 86_400.0))]
    pub duration: Option<Duration>,
    /// Bytes of text per message (`send`, `fanout`, `burst`), 1..=65536.
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = count::<usize>(1..=MAX_TEXT))]
    pub size: usize,
    /// `conns`: the server's process id, to read its memory from /proc (1..=4194304).
    #[arg(long, value_parser = count::<u32>(1..=4_194_304))]
    pub pid: Option<u32>,
    /// `burst`: members that join too and never read; the server should cut them as
    /// slow consumers (0..=100000).
    #[arg(long, value_name = "K", default_value = "0", value_parser = count::<usize>(0..=MAX_BENCH_CONNECTIONS))]
    pub stall: usize,
    /// `send` leaves durable mail in the server's store: say that the server runs on
    /// a scratch store, or `send` refuses to run.
    #[arg(long)]
    pub scratch: bool,
    /// Reach switchboard over a WebSocket (`/ws` on its HTTP listener) instead of
    /// plain TCP; --addr is then the HTTP listener's [default: 127.0.0.1:12080]. With
    /// --tls, over wss:// (the listener serves HTTPS when the server has a certificate).
    #[arg(long)]
    pub ws: bool,
    /// `fanout`, `sessions`: the members (clients) connect to these addresses in turn
    /// (the nodes of a cluster, say), the publisher (the room's host) to --addr
    /// (switchboard over plain TCP).
    #[arg(long, value_name = "ADDR,ADDR...", value_delimiter = ',', value_parser = Address::parse)]
    pub spread: Vec<Address>,
    /// `rr`: one more connection, beside the measured ones, that sends R pings a
    /// second whatever the answers, as a runaway client does (switchboard over plain
    /// TCP; 1..=10000000). Against `serve --rate` far below R, the others' latency
    /// should be what it is without it.
    #[arg(long, value_name = "R", value_parser = count::<u32>(1..=10_000_000))]
    pub flood: Option<u32>,
    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// switchboard over TLS: point --addr at the server's --tls-listen port (with --ws,
    /// at its HTTP listener).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Runs the scenario `args` names against its target and reports what it measured
/// (marked `interrupted` when [`STOP`] cut it short).
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let target = args.target;
    if matches!(args.scenario, Scenario::Send) && !args.scratch {
        return Err(BenchError::Unsupported(
            "`bench send` leaves durable mail in the store of the server it measures: run it \
             against a server on a scratch store, and say so with --scratch"
                .into(),
        ));
    }
    match args.tls.client_tls() {
        Ok(None) => {}
        Ok(Some(_)) if target != Target::Switchboard => {
            return Err(BenchError::Unsupported(format!(
                "--tls is for the switchboard target, not {}",
                target.name()
            )));
        }
        Ok(Some(tls)) => {
            let _ = super::TLS.set(tls);
        }
        Err(e) => return Err(BenchError::Unsupported(e.to_string())),
    }
    // Each connection is a file descriptor: allow as many as the hard limit permits.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let burst = matches!(args.scenario, Scenario::Burst);
    let duration = args
        .duration
        .unwrap_or(if burst { BURST_HOLD } else { BENCH_SECONDS });
    let n = args
        .connections
        .unwrap_or(if burst { BURST_MEMBERS } else { 32 });
    let mut echo_child = None;
    if args.ws && target != Target::Switchboard {
        return Err(BenchError::Unsupported(
            "--ws measures switchboard's WebSocket: it needs --target switchboard".into(),
        ));
    }
    if args.flood.is_some()
        && (!matches!(args.scenario, Scenario::Rr)
            || target != Target::Switchboard
            || args.ws
            || args.tls.tls)
    {
        return Err(BenchError::Unsupported(
            "--flood adds a flooder to `rr` against switchboard over plain TCP".into(),
        ));
    }
    if matches!(args.scenario, Scenario::Sessions)
        && (target != Target::Switchboard || args.ws || args.tls.tls)
    {
        return Err(BenchError::Unsupported(
            "`sessions` measures switchboard over plain TCP".into(),
        ));
    }
    if !args.spread.is_empty()
        && (!matches!(args.scenario, Scenario::Fanout | Scenario::Sessions)
            || target != Target::Switchboard
            || args.ws
            || args.tls.tls)
    {
        return Err(BenchError::Unsupported(
            "--spread spreads the members of `fanout` or the clients of `sessions` against \
             switchboard over plain TCP"
                .into(),
        ));
    }
    let spread: Vec<String> = (args.spread.iter())
        .map(|addr| addr.with_port(DEFAULT_PORT))
        .collect();
    let ws_scheme = if args.tls.tls { WSS_SCHEME } else { WS_SCHEME };
    let addr = match (&args.addr, target) {
        (Some(addr), _) if args.ws => format!("{ws_scheme}{}/ws", addr.with_port(HTTP_PORT)),
        (None, _) if args.ws => format!("{ws_scheme}{DEFAULT_HTTP_LISTEN}/ws"),
        (Some(addr), _) => {
            let port = target.default_addr().rsplit(':').next();
            addr.with_port(port.and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT))
        }
        (None, Target::Echo) => {
            let child = echo::EchoChild::start().await?;
            let addr = child.addr.clone();
            echo_child = Some(child);
            addr
        }
        (None, _) => target.default_addr().to_owned(),
    };
    let pid = args
        .pid
        .or_else(|| echo_child.as_ref().and_then(echo::EchoChild::pid));
    let report = match args.scenario {
        Scenario::Rr => {
            rr::run(&rr::RrOptions {
                target,
                addr,
                connections: n,
                pipeline: args.pipeline,
                duration,
                flood: args.flood,
            })
            .await?
        }
        Scenario::Send => {
            send::run(&send::SendOptions {
                target,
                addr,
                senders: n,
                duration,
                size: args.size,
            })
            .await?
        }
        Scenario::Fanout => {
            fanout::run(&fanout::FanoutOptions {
                target,
                addr,
                members: n,
                spread,
                in_flight: args.in_flight,
                duration,
                size: args.size,
            })
            .await?
        }
        Scenario::Conns => {
            conns::run(&conns::ConnsOptions {
                target,
                addr,
                connections: n,
                pid,
            })
            .await?
        }
        Scenario::Sessions => {
            sessions::run(&sessions::SessionsOptions {
                addr,
                spread,
                clients: n,
                duration,
            })
            .await?
        }
        Scenario::Burst => {
            burst::run(&burst::BurstOptions {
                target,
                addr,
                members: n,
                stall: args.stall,
                hold: duration,
                size: args.size,
            })
            .await?
        }
    };
    drop(echo_child);
    let mut report = report;
    report.interrupted = STOP.is_cancelled();
    Ok(report)
}
