//! `switchboard connect --dialect lab`: what the course's lab #2 client does, against
//! any lab-style server (switchboard's `--lab-listen`, or a student's lab #3 server).
//! Connect, print the assigned client id, send the fields as one pickled dict, then
//! print everything the server sends until it closes.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use bytes::BytesMut;
use serde_pickle::{HashableValue, SerOptions, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dialect::lab::next_pickle;
use crate::dialect::lab::scan::Scanner;
use crate::frame::{DEFAULT_MAX_FRAME, FrameError};

/// How long connecting may take before the client gives up on the host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LabClientError {
    #[error("{0}")]
    Connect(String),
    #[error("connection to the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server does not speak pickle: {0}")]
    Stream(#[from] FrameError),
    #[error("{0}")]
    OtherDialect(&'static str),
    /// Nobody reads the output any more (`connect ... | head`).
    #[error("the output was closed")]
    OutputGone,
}

/// What another of switchboard's dialects greets with, said for the person who
/// pointed the lab client at it; `None` when the bytes may be a pickle.
fn other_dialect(first: &[u8]) -> Option<&'static str> {
    match first.first()? {
        0 => Some(
            "this is switchboard's native listener, not a lab-dialect (pickle) one; \
             use `connect` without `--dialect lab`, or the server's lab port (`serve --lab-listen`)",
        ),
        b'*' => Some(
            "this is switchboard's text dialect (for nc/telnet), not a lab-dialect (pickle) \
             listener; the lab dialect is on the server's lab port (`serve --lab-listen`)",
        ),
        _ => None,
    }
}

/// Writes one line of output.
fn put(out: &mut impl Write, line: std::fmt::Arguments) -> Result<(), LabClientError> {
    out.write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|_| LabClientError::OutputGone)
}

/// Runs the lab client against `addr`, printing to `out`. An output that is closed
/// ends it quietly.
pub async fn run(
    addr: &str,
    fields: &[(String, String)],
    out: &mut impl Write,
) -> Result<(), LabClientError> {
    match talk(addr, fields, out).await {
        Err(LabClientError::OutputGone) => Ok(()),
        done => done,
    }
}

async fn talk(
    addr: &str,
    fields: &[(String, String)],
    out: &mut impl Write,
) -> Result<(), LabClientError> {
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let why = super::connect_failure(addr, &e, "a lab server");
            return Err(LabClientError::Connect(why));
        }
        Err(_) => {
            let why = format!(
                "could not connect to {addr}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            );
            return Err(LabClientError::Connect(why));
        }
    };
    put(out, format_args!("Connected to {addr}"))?;
    let mut scanner = Scanner::default();
    let mut buf = BytesMut::with_capacity(4096);
    let mut sent = false;
    loop {
        if !sent && let Some(why) = other_dialect(&buf) {
            return Err(LabClientError::OtherDialect(why));
        }
        while let Some(pickle) = next_pickle(&mut scanner, &mut buf, DEFAULT_MAX_FRAME)? {
            match pickle {
                Ok(value) => match client_id(&value) {
                    Some(id) if !sent => {
                        put(out, format_args!("Assigned client id by server: {id}"))?
                    }
                    _ => put(out, format_args!("Server: {value}"))?,
                },
                Err(why) => put(
                    out,
                    format_args!("Server sent a pickle this client refuses: {why}"),
                )?,
            }
            if !sent {
                stream.write_all(&pickled(fields)).await?;
                put(out, format_args!("Sent: {}", Value::Dict(dict(fields))))?;
                sent = true;
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            if !buf.is_empty() {
                return Err(FrameError::Truncated.into());
            }
            put(out, format_args!("Server closed the connection"))?;
            return Ok(());
        }
    }
}

fn client_id(value: &Value) -> Option<&Value> {
    match value {
        Value::Dict(map) => map.get(&HashableValue::String("clientid".into())),
        _ => None,
    }
}

fn dict(fields: &[(String, String)]) -> BTreeMap<HashableValue, Value> {
    fields
        .iter()
        .map(|(k, v)| (HashableValue::String(k.clone()), Value::String(v.clone())))
        .collect()
}

fn pickled(fields: &[(String, String)]) -> Vec<u8> {
    // A dict of strings always pickles.
    serde_pickle::value_to_vec(&Value::Dict(dict(fields)), SerOptions::new()).unwrap_or_default()
}
