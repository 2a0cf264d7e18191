//! The `switchboard` command: the server and, in later subcommands, its clients.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::bench::Target;
use switchboard::cli::{self, menu, oneshot};
use switchboard::server::{self, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "A centralized TCP message hub: users, direct messages kept until read, chat rooms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with its SQLite store: the native protocol, and optionally the
    /// text dialect (nc, telnet) and the lab dialect (the course's pickle programs).
    Serve(ServeArgs),
    /// The interactive menu client of the course project (or, with `--dialect lab`,
    /// the lab #2 pickle client).
    Connect(ConnectArgs),
    /// Print who is online.
    Users(CommonArgs),
    /// Send a direct message; it waits in the recipient's inbox until read.
    Send(SendArgs),
    /// Print (and so read) your unread messages; needs --name.
    Inbox(CommonArgs),
    /// Join a chat room and print each of its lines until Ctrl-C.
    Listen(ListenArgs),
    /// Measure a running server (or Redis, NATS, an echo floor) under a load scenario:
    /// throughput and latency percentiles.
    Bench(BenchArgs),
    /// The `bench --target echo` server: sends back what it gets.
    #[command(hide = true)]
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Scenario {
    /// N connections, each keeping P pings outstanding.
    Rr,
    /// N senders, each sending acknowledged (durable) messages to offline users.
    Send,
    /// One publisher saying to a room of N members, W messages in flight.
    Fanout,
    /// N idle connections that completed the handshake; server memory per connection.
    Conns,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// The server under load; echo is started by the bench itself.
    #[arg(long, value_enum, default_value = "switchboard")]
    target: Target,
    /// Server address [default: the target's usual port on 127.0.0.1].
    #[arg(long)]
    addr: Option<String>,
    /// Connections (senders for `send`, members for `fanout`).
    #[arg(long, short = 'n', default_value_t = 32)]
    connections: usize,
    /// `rr`: pings each connection keeps outstanding.
    #[arg(long, short = 'P', default_value_t = 1)]
    pipeline: usize,
    /// `fanout`: messages the publisher keeps in flight.
    #[arg(long, short = 'W', default_value_t = 16)]
    in_flight: usize,
    /// How long to run, in seconds (`conns` runs until all are open).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Bytes of text per message (`send`, `fanout`).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// `conns`: the server's process id, to read its memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Threads serving connections [default: one per core, and 1 on a machine of two
    /// cores or fewer]. 1 runs every session on one thread and commits sends there
    /// too, as Redis does: on a small machine shared with its clients that is the
    /// fastest for durable sends and room messages, but a disk that stalls then stalls
    /// every client. 2 or more keep the store on a thread of its own.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Address for the native protocol.
    #[arg(long, default_value = "127.0.0.1:12000")]
    listen: SocketAddr,
    /// Address for the text dialect, one command per line (off unless given).
    #[arg(long, value_name = "ADDR")]
    text_listen: Option<SocketAddr>,
    /// Address for the lab dialect, pickled dicts as the course's programs send them
    /// (off unless given).
    #[arg(long, value_name = "ADDR")]
    lab_listen: Option<SocketAddr>,
    /// SQLite file for names and inboxes; created if missing.
    #[arg(long, default_value = "switchboard.db")]
    db: PathBuf,
    /// Refuse a hello without a password (auth_failed).
    #[arg(long)]
    require_password: bool,
    /// Most sends (and other store commands) committed together in one transaction
    /// and one fsync; 1 turns group commit off, for measuring what it saves.
    #[arg(long, value_name = "N", default_value_t = switchboard::store::DEFAULT_COMMIT_BATCH)]
    commit_batch: usize,
    /// Largest frame (native) or pickle (lab) a client may send, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = switchboard::frame::DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Most clients connected at once; more are told `server_full` and closed
    /// [default: what the open-file limit allows, logged at start].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds a new connection has to complete `hello` before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Seconds without a single frame from a client (ping counts) before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    idle_timeout: f64,
    /// Outbound frames queued per client; a client that lets it fill is disconnected
    /// as a slow consumer.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    queue_depth: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DialectArg {
    Native,
    Lab,
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// Server address; asked for when not given.
    #[arg(long)]
    addr: Option<String>,
    /// Your name on the server; asked for when not given.
    #[arg(long)]
    name: Option<String>,
    /// Password of a protected name; asked for only when the server says it is needed.
    #[arg(long)]
    password: Option<String>,
    /// Which protocol the server speaks: `lab` acts as the course's lab #2 client.
    #[arg(long, value_enum, default_value = "native")]
    dialect: DialectArg,
    /// With `--dialect lab`: a field of the dict to send, as key=value (repeatable).
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
}

#[derive(clap::Args)]
struct CommonArgs {
    /// Server address.
    #[arg(long, default_value = menu::DEFAULT_ADDR)]
    addr: String,
    /// Name to say hello with (a guest name is made up where one is not needed).
    #[arg(long)]
    name: Option<String>,
    /// Password of a protected name.
    #[arg(long)]
    password: Option<String>,
    /// One JSON object per line, with the protocol's field names.
    #[arg(long)]
    json: bool,
}

impl CommonArgs {
    fn common(self) -> oneshot::Common {
        oneshot::Common {
            addr: self.addr,
            name: self.name,
            password: self.password,
            json: self.json,
        }
    }
}

#[derive(clap::Args)]
struct SendArgs {
    /// Recipient: a name, or a client id written #17.
    #[arg(long)]
    to: String,
    /// The message.
    text: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(clap::Args)]
struct ListenArgs {
    /// The chat room to join and print.
    #[arg(long)]
    room: String,
    #[command(flatten)]
    common: CommonArgs,
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Up to this many cores, `serve` runs on one thread unless told otherwise. Measured on
/// two cores shared with the load generator (README, "Benchmarks"): one thread, store
/// included, was ahead of the server with a store thread and two workers on durable
/// sends (1.15x) and room fan-out (1.1x) and about 4% behind on request-response, and
/// ahead of or level with Redis on every scenario, where the other missed in turn.
/// With more cores the extra threads stop competing with each other and the clients.
const ONE_THREAD_UP_TO_CORES: usize = 2;

/// The thread count `serve` uses when `--threads` is not given (`None` is tokio's
/// default, one worker per core), and the machine's cores.
fn default_serve_threads() -> (Option<usize>, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    ((cores <= ONE_THREAD_UP_TO_CORES).then_some(1), cores)
}

fn run() -> anyhow::Result<ExitCode> {
    let mut cli = Cli::parse();
    let mut one_thread_for_cores = None;
    if let Command::Serve(args) = &mut cli.command
        && args.threads.is_none()
    {
        let (threads, cores) = default_serve_threads();
        args.threads = threads;
        one_thread_for_cores = threads.map(|_| cores);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if let Some(cores) = one_thread_for_cores {
        tracing::info!("{cores} cores: serving on one thread (--threads N to choose)");
    }
    let threads = match &cli.command {
        Command::Serve(args) => args.threads,
        Command::EchoServer { threads, .. } => *threads,
        _ => None,
    };
    let runtime = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    }
    .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)).map(|()| ExitCode::SUCCESS),
        Command::Connect(args) => runtime.block_on(connect(args)),
        Command::Users(args) => done(runtime.block_on(oneshot::users(&args.common()))),
        Command::Send(args) => {
            done(runtime.block_on(oneshot::send(&args.common.common(), &args.to, &args.text)))
        }
        Command::Bench(args) => runtime.block_on(bench(args)),
        Command::EchoServer { listen, .. } => {
            runtime.block_on(switchboard::bench::echo::serve(listen))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inbox(args) => done(runtime.block_on(oneshot::inbox(&args.common()))),
        Command::Listen(args) => {
            done(runtime.block_on(oneshot::listen(&args.common.common(), &args.room)))
        }
    }
}

fn done(result: Result<(), cli::CliError>) -> anyhow::Result<ExitCode> {
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    match args.dialect {
        DialectArg::Lab => {
            let addr = args.addr.as_deref().unwrap_or(menu::DEFAULT_ADDR);
            cli::lab::run(addr, &args.fields, &mut std::io::stdout()).await?;
        }
        DialectArg::Native => {
            menu::run(menu::ConnectOptions {
                addr: args.addr,
                name: args.name,
                password: args.password,
            })
            .await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use switchboard::bench::{conns, echo, fanout, rr, send};
    // Each connection is a file descriptor: allow as many as the hard limit permits.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let duration = std::time::Duration::from_secs_f64(args.duration.max(0.0));
    let target = args.target;
    let mut echo_child = None;
    let addr = match (&args.addr, target) {
        (Some(addr), _) => addr.clone(),
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
    let n = args.connections.max(1);
    let report = match args.scenario {
        Scenario::Rr => {
            rr::run(&rr::RrOptions {
                target,
                addr,
                connections: n,
                pipeline: args.pipeline,
                duration,
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
    };
    drop(echo_child);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", switchboard::bench::Report::header());
        println!("{}", report.row());
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Each client is one file descriptor: allow as many as the hard limit permits.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let seconds = |what: &str, secs: f64| {
        if secs.is_finite() && secs > 0.0 {
            Ok(std::time::Duration::from_secs_f64(secs))
        } else {
            Err(anyhow::anyhow!(
                "--{what} must be a positive number of seconds"
            ))
        }
    };
    anyhow::ensure!(
        args.max_frame >= 4096,
        "--max-frame must be at least 4096 bytes"
    );
    anyhow::ensure!(args.queue_depth >= 2, "--queue-depth must be at least 2");
    anyhow::ensure!(
        args.max_connections != Some(0),
        "--max-connections must be at least 1"
    );
    let config = Config {
        max_frame: args.max_frame,
        max_connections: args
            .max_connections
            .unwrap_or_else(server::connection_budget),
        handshake_timeout: seconds("handshake-timeout", args.handshake_timeout)?,
        idle_timeout: seconds("idle-timeout", args.idle_timeout)?,
        queue_depth: args.queue_depth,
        listen: args.listen,
        text_listen: args.text_listen,
        lab_listen: args.lab_listen,
        db: args.db,
        require_password: args.require_password,
        commit_batch: args.commit_batch,
        inline_store: args.threads == Some(1),
        ..Config::default()
    };
    let server = server::Server::bind(config).await?;
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
