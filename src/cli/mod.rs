//! The command-line clients of `switchboard`: the lab programs' pickle client today,
//! and what a person or a script runs against a server. `main` only parses arguments
//! and reports the one-line errors these return.

pub mod lab;

use std::io;

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
