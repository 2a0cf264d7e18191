//! The server's configuration and its defaults: every bound a client meets has a field
//! here, and `serve`'s flags (src/cli/serve.rs) fill them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::NodeConfig;
use crate::frame::DEFAULT_MAX_FRAME;
use crate::hub::RoomLimits;
use crate::store::{DEFAULT_COMMIT_BATCH, KeepRead};

use super::admin_token::AdminToken;
use super::http::HttpListen;
use super::rate::RateLimit;
use super::tls::TlsSource;
use super::ws;

/// How the server runs; every bound has a default here.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the native protocol listens.
    pub listen: SocketAddr,
    /// Where the text dialect (nc, telnet) listens, if anywhere.
    pub text_listen: Option<SocketAddr>,
    /// Where the lab dialect (the course's pickle programs) listens, if anywhere.
    pub lab_listen: Option<SocketAddr>,
    /// Where HTTP (`/healthz`) listens, if anywhere. Off here; the command line's
    /// default is [`HttpListen::Default`] on [`DEFAULT_HTTP_LISTEN`](super::DEFAULT_HTTP_LISTEN).
    pub http_listen: HttpListen,
    /// The SQLite file that keeps names and inboxes.
    pub db: PathBuf,
    /// Largest frame accepted from or sent to a client, in bytes.
    pub max_frame: usize,
    /// Longest `text` of a message, in bytes (at most the protocol's 64 KiB).
    pub max_text: usize,
    /// Outbound frames queued per client; see [`Config::write_deadline`].
    pub queue_depth: usize,
    /// Outbound bytes queued per client; see [`Config::write_deadline`].
    pub max_pending: usize,
    /// How long a client's outbound queue may stay over `queue_depth` or
    /// `max_pending` before it is cut as a slow consumer.
    pub write_deadline: Duration,
    /// Clients connected at once; more are told `server_full` and closed.
    pub max_connections: usize,
    /// How long a connection may take to complete `hello`.
    pub handshake_timeout: Duration,
    /// Within how long a dead peer is found (TCP keepalive); silence alone never ends
    /// a connection.
    pub idle_timeout: Duration,
    /// How long shutdown waits for sessions to flush before cutting them off.
    pub drain_timeout: Duration,
    /// Refuse a `hello` without a password.
    pub require_password: bool,
    /// Most store commands committed in one transaction (group commit).
    pub commit_batch: usize,
    /// Bytes of unfinished messages (units not yet complete) all connections together
    /// may make the server hold.
    pub max_partial_total: usize,
    /// How many rooms, and how large.
    pub rooms: RoomLimits,
    /// Messages each room keeps (`--room-history`).
    pub room_history: usize,
    /// How long a cut session waits for its client to resume (`--resume-grace`); zero
    /// turns resume off.
    pub resume_grace: Duration,
    /// Run the store as a task that commits on the runtime's own thread rather than on
    /// a thread of its own (see [`Store::open_inline`]); for a single-threaded runtime.
    pub inline_store: bool,
    /// How long read mail is kept (`--keep-read`).
    pub keep_read: KeepRead,
    /// After how long without a message from its client a WebSocket is pinged.
    pub ws_ping: Duration,
    /// What the admin pages (`/dashboard`, `/api/*`) require (`--admin-token`); without
    /// it they are open on a loopback HTTP listener and need a token made up at start
    /// on any other.
    pub admin_token: Option<AdminToken>,
    /// The certificate, if any: with one, `tls_listen` serves the native protocol over
    /// TLS and the HTTP listener serves HTTPS instead of HTTP.
    pub tls: Option<TlsSource>,
    /// Where the native protocol over TLS listens, if anywhere.
    pub tls_listen: Option<SocketAddr>,
    /// Requests each connection may have served per second (`--rate`, `--burst`);
    /// over it, the server stops reading the connection until the budget refills.
    pub rate: Option<RateLimit>,
    /// Serve one hub with other nodes through NATS (`--cluster`, `--node`); without it,
    /// alone with the SQLite store at `db`.
    pub cluster: Option<NodeConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 12000)),
            text_listen: None,
            lab_listen: None,
            http_listen: HttpListen::Off,
            db: PathBuf::from("switchboard.db"),
            max_frame: DEFAULT_MAX_FRAME,
            max_text: crate::protocol::MAX_TEXT,
            queue_depth: 1024,
            max_pending: DEFAULT_MAX_PENDING,
            write_deadline: Duration::from_secs(10),
            max_connections: connection_budget(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(3),
            require_password: false,
            commit_batch: DEFAULT_COMMIT_BATCH,
            inline_store: false,
            rooms: RoomLimits::default(),
            room_history: 1000,
            resume_grace: Duration::from_secs(30),
            max_partial_total: DEFAULT_MAX_PARTIAL_TOTAL,
            keep_read: KeepRead::No,
            ws_ping: ws::DEFAULT_WS_PING,
            admin_token: None,
            tls: None,
            tls_listen: None,
            rate: None,
            cluster: None,
        }
    }
}

/// Outbound bytes a client may have waiting before its write deadline runs: as NATS's
/// max pending, enough for a busy room's burst, small beside the machine.
pub const DEFAULT_MAX_PENDING: usize = 8 * 1024 * 1024;

/// What unfinished messages may cost in all: 256 clients each most of the way through
/// a frame of the default size.
pub const DEFAULT_MAX_PARTIAL_TOTAL: usize = 256 * 1024 * 1024;

/// File descriptors kept for everything that is not a client: listeners, the store
/// and its WAL, logs, and the short-lived sockets of refused connections.
const RESERVED_FDS: u64 = 64;

/// How many clients the open-file limit leaves room for: each costs one descriptor.
pub fn connection_budget() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
}
