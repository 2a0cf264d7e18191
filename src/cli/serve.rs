//! `switchboard serve`'s flags: every bound docs/operations.md lists has one,
//! each with its default and a range that clap enforces before anything starts.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::args::{count, seconds};
use crate::client::normalize_addr;
use crate::cluster::NodeConfig;
use crate::server::{
    AdminToken, Config, DEFAULT_HTTP_LISTEN, DEFAULT_MAX_PARTIAL_TOTAL, DEFAULT_MAX_PENDING,
    HttpListen, RateLimit, RoomLimits, TlsSource,
};

/// Most threads `--threads` takes: more would only cost memory and switching.
const MAX_THREADS: u64 = 1024;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Threads serving connections [default: one per core, and 1 on a machine of two
    /// cores or fewer]. 1 runs every session on one thread and commits sends there
    /// too, as Redis does: on a small machine shared with its clients that is the
    /// fastest for durable sends and room messages, but a disk that stalls then stalls
    /// every client. 2 or more keep the store on a thread of its own.
    #[arg(long, value_name = "N", value_parser = count::<usize>(1..=MAX_THREADS))]
    pub threads: Option<usize>,
    /// Address for the native protocol (HOST:PORT, or a bare port on 127.0.0.1). Use
    /// 0.0.0.0:12000 or the LAN address to serve other machines.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:12000", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Address for the text dialect, one command per line, for nc and telnet (off
    /// unless given).
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub text_listen: Option<SocketAddr>,
    /// Address for the lab dialect, pickled dicts as the course's programs send them
    /// (off unless given).
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub lab_listen: Option<SocketAddr>,
    /// Address for HTTP: the browser chat page `/`, its WebSocket `/ws`, the projector
    /// `/dashboard` and `/healthz`; or `off` [default: 127.0.0.1:12080]. When the
    /// default address is taken the server warns and runs without HTTP; an address
    /// given here that cannot be bound stops the start. With a certificate
    /// (--tls-cert or --tls-self-signed) it serves HTTPS and wss:// instead of HTTP.
    #[arg(long, value_name = "ADDR|off", value_parser = http_listen)]
    pub http_listen: Option<HttpListen>,
    /// Token the admin pages (/dashboard, /api/*) require, as `Authorization: Bearer
    /// TOKEN` or `?token=TOKEN`, on any address [default: none: the pages are open on a
    /// loopback HTTP listener, and on any other need a token made up at start and
    /// printed as a ready URL]. Printable ASCII without spaces, at most 256 bytes.
    #[arg(long, value_name = "TOKEN", value_parser = AdminToken::parse)]
    pub admin_token: Option<AdminToken>,
    /// Address for the native protocol over TLS (off unless given; needs --tls-cert
    /// and --tls-key, or --tls-self-signed). Plain --listen keeps serving beside it.
    #[arg(long, value_name = "ADDR", value_parser = listen_addr, requires = "tls_source")]
    pub tls_listen: Option<SocketAddr>,
    /// The server's TLS certificate chain (PEM). With a certificate the HTTP listener
    /// serves HTTPS and wss:// instead of plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key", group = "tls_source")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Make a certificate at the first start and keep it beside the database
    /// (DB.tls-cert.pem, DB.tls-key.pem), reused at every later start; its SHA-256
    /// fingerprint is printed at start for clients to pin (--fingerprint).
    #[arg(long, group = "tls_source")]
    pub tls_self_signed: bool,
    /// SQLite file for names and inboxes; created if missing.
    #[arg(long, value_name = "FILE", default_value = "switchboard.db")]
    pub db: PathBuf,
    /// Refuse a hello without a password (auth_failed). Without it, anyone who can
    /// reach the server can take any unprotected name and read its mail.
    #[arg(long)]
    pub require_password: bool,
    /// Most sends (and other store commands) committed together in one transaction
    /// and one fsync; 1 turns group commit off, for measuring what it saves.
    #[arg(long, value_name = "N", default_value_t = crate::store::DEFAULT_COMMIT_BATCH,
          value_parser = count::<usize>(1..=65_536))]
    pub commit_batch: usize,
    /// Largest frame (native) or pickle (lab) a client may send, in bytes (a text line
    /// is at most 64 KiB whatever this says).
    #[arg(long, value_name = "BYTES", default_value_t = crate::frame::DEFAULT_MAX_FRAME,
          value_parser = count::<usize>(4096..=64 << 20))]
    pub max_frame: usize,
    /// Longest text of a direct or room message, in bytes (the protocol allows at most
    /// 64 KiB); longer ones are refused with `too_large`.
    #[arg(long, value_name = "BYTES", default_value_t = crate::protocol::MAX_TEXT,
          value_parser = count::<usize>(1..=crate::protocol::MAX_TEXT as u64))]
    pub max_text: usize,
    /// Most clients connected at once; more are told `server_full` and closed
    /// [default: what the open-file limit allows, logged at start].
    #[arg(long, value_name = "N", value_parser = count::<usize>(1..=1_000_000))]
    pub max_connections: Option<usize>,
    /// Seconds a new connection has to complete its handshake (`hello`, a lab
    /// program's data, or any line typed at the text port) before it is closed.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds(0.1, 3600.0))]
    pub handshake_timeout: Duration,
    /// Seconds within which a dead peer (a machine switched off, a cable pulled) is
    /// found, by TCP keepalive. A quiet client is never cut for being quiet.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds(1.0, 86_400.0))]
    pub idle_timeout: Duration,
    /// Outbound frames that may wait for one client; see --write-deadline.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = count::<usize>(2..=1_000_000))]
    pub queue_depth: usize,
    /// Outbound bytes that may wait for one client; see --write-deadline.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PENDING,
          value_parser = count::<usize>(65_536..=1 << 32))]
    pub max_pending: usize,
    /// Seconds a client's outbound queue may stay over --queue-depth or --max-pending
    /// (or it may read nothing while messages wait) before it is cut as a slow
    /// consumer. Four times over a bound cuts at once.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds(0.1, 3600.0))]
    pub write_deadline: Duration,
    /// Bytes of unfinished messages (a frame, line or pickle not yet complete) all
    /// clients together may make the server hold; the client that would go over is
    /// told `too_large` and closed. One client's is bounded by --max-frame.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PARTIAL_TOTAL,
          value_parser = count::<usize>(1 << 20..=1 << 40))]
    pub max_partial_total: usize,
    /// Days read direct messages are kept before they are deleted; 0 deletes a message
    /// as it is read.
    #[arg(long, value_name = "DAYS", default_value_t = 0, value_parser = count::<u32>(0..=36_500))]
    pub keep_read: u32,
    /// Rooms open at once on the server.
    #[arg(long, value_name = "N", default_value_t = RoomLimits::default().rooms,
          value_parser = count::<usize>(1..=1_000_000))]
    pub max_rooms: usize,
    /// Rooms one client may be in (created or joined) at once.
    #[arg(long, value_name = "N", default_value_t = RoomLimits::default().per_client,
          value_parser = count::<usize>(1..=100_000))]
    pub max_rooms_per_client: usize,
    /// Members one room may have.
    #[arg(long, value_name = "N", default_value_t = RoomLimits::default().members,
          value_parser = count::<usize>(2..=1_000_000))]
    pub max_room_members: usize,
    /// Messages each room keeps, for `history`, for a member who rejoins and for a
    /// session resumed after a cut; 0 keeps none.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = count::<usize>(0..=1_000_000))]
    pub room_history: usize,
    /// Seconds a session cut without `bye` is kept (its name, rooms and rooms it
    /// owns) for its client to resume; 0 turns resume off.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds(0.0, 86_400.0))]
    pub resume_grace: Duration,
    /// Requests per second each connection may have served, on average [default: no
    /// limit]. Over it the server stops reading that connection until its budget
    /// refills: the client waits, it is never cut, and nobody else waits with it.
    #[arg(long, value_name = "N", value_parser = count::<u32>(1..=1_000_000))]
    pub rate: Option<u32>,
    /// Requests a connection may send at once after a quiet while, under --rate
    /// [default: one second's worth, the --rate].
    #[arg(long, value_name = "N", requires = "rate", value_parser = count::<u32>(1..=1_000_000))]
    pub burst: Option<u32>,
    /// Serve one hub with other nodes through NATS JetStream instead of alone with
    /// SQLite: `nats://HOST:PORT[,nats://HOST:PORT...]` (see docs/cluster.md). Names,
    /// passwords and inboxes are then kept in NATS, not in --db.
    #[arg(long, value_name = "URLS", requires = "node")]
    pub cluster: Option<String>,
    /// This node's name in the cluster, unique among its nodes (letters, digits, `_`,
    /// `-`).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub node: Option<String>,
    /// Copies JetStream keeps of every stream and bucket the cluster creates: 3 loses
    /// nothing acknowledged when one NATS server of three dies.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = count::<usize>(1..=5))]
    pub replicas: usize,
    /// Seconds a cluster node may go unheard before the other nodes free its users'
    /// names (its connections are gone with it).
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = seconds(1.0, 3600.0))]
    pub heal_after: Duration,
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line) for a log collector.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A TOML file setting any of these flags: each key is a flag's name without the
    /// leading dashes (`listen = "0.0.0.0:12000"`, `require-password = true`). A flag
    /// given here wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the configuration in force (command line, --config file, defaults) as a
    /// file --config takes, and exit without serving.
    #[arg(long)]
    pub print_config: bool,
}

/// The log's format on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, for a person at a console.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl ServeArgs {
    /// The server's configuration; `connection_budget` gives the default connection
    /// limit (it depends on the open-file limit, raised at start).
    pub fn config(&self, connection_budget: impl FnOnce() -> usize) -> Config {
        Config {
            listen: self.listen,
            text_listen: self.text_listen,
            lab_listen: self.lab_listen,
            http_listen: self
                .http_listen
                .unwrap_or(HttpListen::Default(DEFAULT_HTTP_LISTEN)),
            db: self.db.clone(),
            max_frame: self.max_frame,
            max_text: self.max_text,
            queue_depth: self.queue_depth,
            max_pending: self.max_pending,
            write_deadline: self.write_deadline,
            max_connections: self.max_connections.unwrap_or_else(connection_budget),
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            require_password: self.require_password,
            commit_batch: self.commit_batch,
            inline_store: self.threads == Some(1),
            max_partial_total: self.max_partial_total,
            keep_read: crate::store::KeepRead::days(self.keep_read),
            rooms: RoomLimits {
                rooms: self.max_rooms,
                per_client: self.max_rooms_per_client,
                members: self.max_room_members,
            },
            room_history: self.room_history,
            resume_grace: self.resume_grace,
            admin_token: self.admin_token.clone(),
            tls: self.tls_source(),
            tls_listen: self.tls_listen,
            rate: self.rate.map(|per_second| RateLimit {
                per_second,
                burst: self.burst.unwrap_or(per_second),
            }),
            cluster: (self.cluster.as_ref().zip(self.node.as_ref())).map(|(urls, node)| {
                NodeConfig {
                    urls: urls.clone(),
                    node: node.clone(),
                    replicas: self.replicas,
                    heal_after: self.heal_after,
                }
            }),
            ..Config::default()
        }
    }
}

impl ServeArgs {
    fn tls_source(&self) -> Option<TlsSource> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => self.tls_self_signed.then_some(TlsSource::SelfSigned),
        }
    }
}

/// A listening address as people type it (see [`normalize_addr`]: a bare port is on
/// 127.0.0.1, a host without a port gets 12000); a host name is looked up.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let full = normalize_addr(s);
    let refused = || {
        format!(
            "{s:?} is not an address to listen on; expected HOST:PORT (0.0.0.0:12000, \
             localhost:12000) or a bare port"
        )
    };
    match full.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(refused),
        Err(_) => Err(refused()),
    }
}

/// The HTTP listener's address as people type it: `off`, or as [`listen_addr`] takes
/// it except that a host without a port gets HTTP's 12080.
pub fn http_listen(s: &str) -> Result<HttpListen, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(HttpListen::Off);
    }
    let port = DEFAULT_HTTP_LISTEN.port();
    let full = match s.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) if !s.is_empty() && !s.contains(':') && !s.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{s}:{port}")
        }
        Err(_) => s.to_owned(),
    };
    listen_addr(&full)
        .map(HttpListen::Given)
        .map_err(|_| format!("{s:?} is not an address to listen on; expected HOST:PORT (0.0.0.0:12080), a bare port, or off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_as_people_type_them() {
        assert_eq!(listen_addr("12000").unwrap().to_string(), "127.0.0.1:12000");
        assert_eq!(
            listen_addr("0.0.0.0:12001").unwrap().to_string(),
            "0.0.0.0:12001"
        );
        assert!(listen_addr("localhost:12000").unwrap().ip().is_loopback());
        assert!(listen_addr("nowhere at all").is_err());
        assert!(listen_addr("70000").is_err());
    }

    #[test]
    fn http_addresses_as_people_type_them() {
        let given = |s| match http_listen(s) {
            Ok(HttpListen::Given(addr)) => addr.to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(http_listen("off"), Ok(HttpListen::Off));
        assert_eq!(http_listen("OFF"), Ok(HttpListen::Off));
        assert_eq!(given("8080"), "127.0.0.1:8080");
        assert_eq!(given("0.0.0.0"), "0.0.0.0:12080");
        assert_eq!(given("0.0.0.0:80"), "0.0.0.0:80");
        assert!(given("localhost").ends_with(":12080"));
        assert!(http_listen("nowhere at all").is_err());
        assert!(http_listen("").is_err());
    }
}
