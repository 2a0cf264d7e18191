//! The `switchboard` command: the server and, in later subcommands, its clients.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use switchboard::bench::cli::BenchArgs;
use switchboard::cli::args::Address;
use switchboard::cli::serve::{LogFormat, ServeArgs};
use switchboard::cli::tls::TlsArgs;
use switchboard::cli::{self, menu, oneshot};
use switchboard::protocol::Recipient;
use switchboard::server;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "A centralized TCP message hub: users, direct messages kept until read, chat rooms",
    after_help = "Security: a name without a password can be taken by anyone who reaches the \
                  server, who then reads its mail. Give a password at your first hello \
                  (connect --password, or when asked) to protect your name; serve \
                  --require-password makes passwords mandatory. Nothing is encrypted."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// What the console shows: error, warn, info, debug or trace [default: info, or
    /// RUST_LOG's filter when it is set].
    #[arg(long, global = true, value_name = "LEVEL", value_enum)]
    log_level: Option<LogLevel>,
    /// Only warnings and errors on the console (as --log-level warn).
    #[arg(long, short = 'q', global = true, conflicts_with = "log_level")]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Cli {
    /// The console's filter: a flag wins over RUST_LOG, which wins over `info`.
    fn log_filter(&self) -> EnvFilter {
        let level = match (self.quiet, self.log_level) {
            (true, _) => Some("warn"),
            (false, Some(level)) => Some(match level {
                LogLevel::Error => "error",
                LogLevel::Warn => "warn",
                LogLevel::Info => "info",
                LogLevel::Debug => "debug",
                LogLevel::Trace => "trace",
            }),
            (false, None) => None,
        };
        match level {
            Some(level) => EnvFilter::new(level),
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with its SQLite store: the native protocol, and optionally the
    /// text dialect (nc, telnet) and the lab dialect (the course's pickle programs).
    #[command(allow_negative_numbers = true)]
    Serve(Box<ServeArgs>),
    /// The interactive menu client of the course project (or, with `--dialect lab`,
    /// the lab #2 pickle client).
    Connect(ConnectArgs),
    /// Print who is online.
    Users(CommonArgs),
    /// Send a direct message as --name; it waits in the recipient's inbox until read.
    Send(SendArgs),
    /// Print (and so read) the unread messages of --name.
    Inbox(InboxArgs),
    /// Join a chat room and print each of its lines until Ctrl-C.
    Listen(ListenArgs),
    /// Copy the store, whole and consistent, to FILE: a running server's through its
    /// admin socket (every send acknowledged so far is in it), or the file of a
    /// stopped one.
    Backup(BackupArgs),
    /// What an operator needs: list users, reset or remove a password, forget a user
    /// (through a running server's admin socket, or on a stopped one's file).
    Admin(AdminArgs),
    /// A running server's traffic, a line per second: connections, requests, deliveries,
    /// direct and room messages per second, slow consumers (from its /api/varz).
    Stats(cli::stats::StatsArgs),
    /// Measure a running server (or Redis, NATS, an echo floor) under a load scenario:
    /// throughput and latency percentiles.
    ///
    /// A bench leaves nothing in the store of the server it measures: rr, fanout, conns
    /// and burst say hello with guest names (guest- and 8 hex digits), which the server
    /// forgets when they disconnect. `send` writes durable mail to real names, so it runs
    /// only with --scratch, the operator's word that the server runs on a scratch store
    /// (bench/*.sh start their own servers on temporary stores and pass it).
    ///
    /// Ctrl-C stops the load early and prints what was measured until then, marked
    /// "interrupted" (exit status 130).
    #[command(allow_negative_numbers = true)]
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

#[derive(clap::Args)]
struct BackupArgs {
    /// Where the backup goes; replaced if it exists (written beside it, then renamed).
    file: PathBuf,
    /// The store to back up (its server's `serve --db`).
    #[arg(long, default_value = "switchboard.db")]
    db: PathBuf,
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The store (its server's `serve --db`).
    #[arg(long, default_value = "switchboard.db")]
    db: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// List every user: whether its name is protected, and its unread messages.
    Users,
    /// Set a new password for NAME, asked twice (or two lines on stdin).
    ResetPassword { name: String },
    /// Remove NAME's password: anyone may then use the name, and its next hello with
    /// a password protects it again.
    RemovePassword { name: String },
    /// Delete NAME's mail and password, and the name itself (its row is kept, without
    /// password, only while mail it sent is still there). Refused while NAME is online.
    Forget { name: String },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DialectArg {
    Native,
    Lab,
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// Server address: host:port, a host (port 12000), or a port (on 127.0.0.1);
    /// asked for when not given.
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
    #[command(flatten)]
    tls: TlsArgs,
}

/// What every one-shot command takes besides a name.
#[derive(clap::Args)]
struct ServerArgs {
    /// Server address: HOST:PORT, HOST (port 12000) or PORT (on 127.0.0.1).
    #[arg(long, default_value = menu::DEFAULT_ADDR, value_parser = Address::parse)]
    addr: Address,
    /// Password of a protected name.
    #[arg(long)]
    password: Option<String>,
    /// One JSON object per line, with the protocol's field names.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

impl ServerArgs {
    fn common(self, name: Option<String>) -> Result<oneshot::Common, cli::CliError> {
        Ok(oneshot::Common {
            addr: self.addr.with_port(switchboard::client::DEFAULT_PORT),
            name,
            password: self.password,
            json: self.json,
            tls: self.tls.client_tls()?,
        })
    }
}

#[derive(clap::Args)]
struct CommonArgs {
    /// Name to say hello with [default: a made-up guest-<8 hex digits>, forgotten by
    /// the server when this command ends].
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

impl CommonArgs {
    fn common(self) -> Result<oneshot::Common, cli::CliError> {
        self.server.common(self.name)
    }
}

#[derive(clap::Args)]
struct InboxArgs {
    /// Whose unread messages to print (and so read).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct SendArgs {
    /// Recipient: a name (always, even all digits), or `#17` for client id 17.
    #[arg(long, value_parser = oneshot::recipient)]
    to: Recipient,
    /// The message.
    text: String,
    /// Name to send as: the sender the recipient sees.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    server: ServerArgs,
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

/// The exit status of a program that wrote to a closed pipe, as a shell reports one
/// killed by SIGPIPE (128 + 13).
const BROKEN_PIPE: u8 = 141;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        // Output closed early (`| head -1`): nothing to say, and nobody to say it to.
        Err(e) if broken_pipe(&e) => ExitCode::from(BROKEN_PIPE),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = match cause.downcast_ref::<cli::CliError>() {
            Some(cli::CliError::Output(io)) => Some(io),
            _ => cause.downcast_ref::<std::io::Error>(),
        };
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Up to this many cores, `serve` runs on one thread unless told otherwise. Measured on
/// two cores shared with the load generator (docs/benchmarks.md): one thread, store
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
    let given = cli::config_file::apply(Cli::command(), std::env::args_os().collect())?;
    let matches = Cli::command()
        .try_get_matches_from(&given.args)
        .unwrap_or_else(|e| refused(e, given.file.as_deref()));
    let mut cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    if let Command::Serve(args) = &cli.command
        && args.print_config
    {
        oneshot::print(cli::config_file::render(Cli::command(), &matches).trim_end())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut one_thread_for_cores = None;
    if let Command::Serve(args) = &mut cli.command
        && args.threads.is_none()
    {
        let (threads, cores) = default_serve_threads();
        args.threads = threads;
        one_thread_for_cores = threads.map(|_| cores);
    }
    let log = tracing_subscriber::fmt()
        .with_env_filter(cli.log_filter())
        .with_target(false)
        .with_writer(std::io::stderr);
    match &cli.command {
        Command::Serve(args) if args.log_format == LogFormat::Json => {
            log.json().flatten_event(true).init()
        }
        _ => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
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
        Command::Serve(args) => runtime.block_on(serve(*args)).map(|()| ExitCode::SUCCESS),
        Command::Connect(args) => runtime.block_on(connect(args)),
        Command::Users(args) => done(
            args.common()
                .and_then(|c| runtime.block_on(oneshot::users(&c))),
        ),
        Command::Send(args) => {
            let send = |common| runtime.block_on(oneshot::send(&common, &args.to, &args.text));
            done(args.server.common(Some(args.name)).and_then(send))
        }
        Command::Bench(args) => runtime.block_on(bench(args)),
        Command::Stats(args) => {
            done(runtime.block_on(cli::stats::run(&args, &mut std::io::stdout())))
        }
        Command::EchoServer { listen, .. } => {
            runtime.block_on(switchboard::bench::echo::serve(listen))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inbox(args) => {
            let inbox = |common| runtime.block_on(oneshot::inbox(&common));
            done(args.server.common(Some(args.name)).and_then(inbox))
        }
        Command::Backup(args) => done(runtime.block_on(cli::admin::backup(
            &args.db,
            &args.file,
            &mut std::io::stdout(),
        ))),
        Command::Admin(args) => {
            let command = match args.command {
                AdminCommand::Users => cli::admin::Command::Users,
                AdminCommand::ResetPassword { name } => cli::admin::Command::ResetPassword(name),
                AdminCommand::RemovePassword { name } => cli::admin::Command::RemovePassword(name),
                AdminCommand::Forget { name } => cli::admin::Command::Forget(name),
            };
            done(runtime.block_on(cli::admin::admin(&args.db, command, &mut std::io::stdout())))
        }
        Command::Listen(args) => {
            let listen = |common| runtime.block_on(oneshot::listen(&common, &args.room));
            done(args.common.common().and_then(listen))
        }
    }
}

/// Exits as clap does for a command line it refuses, saying when a config file's keys
/// were part of it (a conflict between two keys, say, is reported with their flags).
fn refused(e: clap::Error, file: Option<&std::path::Path>) -> ! {
    if let Some(file) = file
        && e.use_stderr()
    {
        let _ = e.print();
        let _ = writeln!(
            std::io::stderr(),
            "(the keys of the config file {} were given as these flags)",
            file.display()
        );
        std::process::exit(e.exit_code());
    }
    e.exit()
}

fn done(result: Result<(), cli::CliError>) -> anyhow::Result<ExitCode> {
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    // clap cannot say "only with --dialect lab" (or "not with it"): flags that would do
    // nothing in the mode chosen are refused here, as clap refuses the others.
    let misplaced = if args.dialect == DialectArg::Lab {
        [
            ("--name", args.name.is_some()),
            ("--password", args.password.is_some()),
            ("--tls", args.tls.tls),
        ]
        .into_iter()
        .find_map(|(flag, given)| {
            given.then(|| {
                format!(
                    "{flag} is for the menu client: the lab client sends --field KEY=VALUE instead"
                )
            })
        })
    } else {
        (!args.fields.is_empty())
            .then(|| "--field is for the lab client: it needs --dialect lab".to_owned())
    };
    if let Some(why) = misplaced {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, why)
            .exit();
    }
    match args.dialect {
        DialectArg::Lab => {
            let addr = args.addr.as_deref().unwrap_or(menu::DEFAULT_ADDR);
            let addr = switchboard::client::normalize_addr(addr);
            cli::lab::run(&addr, &args.fields, &mut std::io::stdout()).await?;
        }
        DialectArg::Native => {
            menu::run(menu::ConnectOptions {
                addr: args.addr,
                name: args.name,
                password: args.password,
                tls: args.tls.client_tls()?,
            })
            .await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    // Ctrl-C ends the load and the report covers what ran; a second one ends at once.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            switchboard::bench::STOP.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let json = args.json;
    let report = switchboard::bench::cli::run(args).await?;
    if json {
        oneshot::print(&serde_json::to_string(&report)?)?;
    } else {
        oneshot::print(&switchboard::bench::Report::header())?;
        oneshot::print(&report.row())?;
    }
    Ok(if report.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Each client is one file descriptor: allow as many as the hard limit permits.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let server = server::Server::bind(args.config(server::connection_budget)).await?;
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
