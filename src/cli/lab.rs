//! `switchboard connect --dialect lab`: what the course's lab #2 client does, against
//! any lab-style server (switchboard's `--lab-listen`, or a student's lab #3 server).
//! Connect, print the assigned client id, send the fields as one pickled dict, then
//! print everything the server sends until it closes.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::BytesMut;
use serde_pickle::{HashableValue, SerOptions, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::dialect::lab::next_pickle;
use crate::dialect::lab::scan::Scanner;
use crate::frame::{DEFAULT_MAX_FRAME, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum LabClientError {
    #[error("{0}")]
    Connect(String),
    #[error("connection to the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server does not speak pickle: {0}")]
    Stream(#[from] FrameError),
}

/// Runs the lab client against `addr`, printing to `out`.
pub async fn run(
    addr: &str,
    fields: &[(String, String)],
    out: &mut impl Write,
) -> Result<(), LabClientError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| LabClientError::Connect(super::connect_failure(addr, &e, "a lab server")))?;
    writeln!(out, "Connected to {addr}")?;
    let mut scanner = Scanner::default();
    let mut buf = BytesMut::with_capacity(4096);
    let mut sent = false;
    loop {
        while let Some(pickle) = next_pickle(&mut scanner, &mut buf, DEFAULT_MAX_FRAME)? {
            match pickle {
                Ok(value) => match client_id(&value) {
                    Some(id) if !sent => writeln!(out, "Assigned client id by server: {id}")?,
                    _ => writeln!(out, "Server: {value}")?,
                },
                Err(why) => writeln!(out, "Server sent a pickle this client refuses: {why}")?,
            }
            if !sent {
                stream.write_all(&pickled(fields)).await?;
                writeln!(out, "Sent: {}", Value::Dict(dict(fields)))?;
                sent = true;
            }
            out.flush()?;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            if !buf.is_empty() {
                return Err(FrameError::Truncated.into());
            }
            writeln!(out, "Server closed the connection")?;
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
