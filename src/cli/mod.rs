//! The command-line clients of `switchboard`: the interactive menu client, the one-shot
//! commands for scripts, and the lab programs' pickle client. `main` only parses
//! arguments and reports, in one line, the errors these return.

pub mod admin;
pub mod args;
pub mod config_file;
pub mod console;
pub mod lab;
pub mod menu;
pub mod oneshot;
pub mod serve;
pub mod stats;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{ClientError, ClientOptions};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Connect(String),
    #[error("{}", .0.message)]
    Server(crate::protocol::ErrorBody),
    #[error("the connection to the server was lost")]
    Lost,
    #[error("{0}")]
    Client(ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Server(body) => CliError::Server(body),
            ClientError::Closed | ClientError::Io(_) => CliError::Lost,
            e => CliError::Client(e),
        }
    }
}

/// A person's explanation of a failed connect, naming the address and the likely cause.
pub fn connect_failure(addr: &str, error: &io::Error, server_hint: &str) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!(
                "could not connect to {addr}: connection refused ({server_hint} may not be running)"
            )
        }
        io::ErrorKind::TimedOut => format!("could not connect to {addr}: timed out"),
        _ => format!("could not connect to {addr}: {error}"),
    }
}

fn connect_error(addr: &str, e: ClientError) -> CliError {
    CliError::Connect(match e {
        ClientError::Connect { source, .. } => {
            connect_failure(addr, &source, "`switchboard serve`")
        }
        // These name the address themselves.
        e @ (ClientError::Address { .. }
        | ClientError::ConnectTimeout { .. }
        | ClientError::NoWelcome { .. }) => e.to_string(),
        e => format!("{addr}: {e}"),
    })
}

/// How the long-lived clients (the menu client, `listen`) connect: they come back by
/// themselves after a cut. The environment variable `SWITCHBOARD_GIVE_UP_AFTER`
/// (seconds) shortens the two minutes they keep trying, for tests.
pub fn reconnecting() -> ClientOptions {
    let options = ClientOptions::default().reconnect();
    let given = std::env::var("SWITCHBOARD_GIVE_UP_AFTER").ok();
    match given.and_then(|secs| Duration::try_from_secs_f64(secs.parse().ok()?).ok()) {
        Some(give_up_after) => options.reconnect_backoff(
            ClientOptions::DEFAULT_RETRY_FIRST,
            ClientOptions::DEFAULT_RETRY_MOST,
            give_up_after,
        ),
        None => options,
    }
}

/// What a reconnecting client says when its connection is cut: why, unless the
/// connection simply ended.
pub fn lost_line(why: &ClientError) -> String {
    match why {
        ClientError::Closed => "Connection lost; reconnecting...".to_owned(),
        ClientError::Dropped(body) => {
            format!(
                "Connection lost ({}); reconnecting...",
                crate::client::in_words(body)
            )
        }
        why => format!("Connection lost ({why}); reconnecting..."),
    }
}

/// The first address `addr` resolves to; a bare port is on this machine.
async fn resolve(addr: &str) -> Result<SocketAddr, CliError> {
    crate::client::resolve_addr(addr)
        .await
        .map_err(|e| CliError::Connect(e.to_string()))
}

/// An RFC 3339 time as the user's local "2026-11-21 17:45".
pub fn local_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}
