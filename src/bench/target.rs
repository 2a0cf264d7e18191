//! The servers a scenario can run against, each spoken raw and lean so that the load
//! generator costs every target the same: switchboard's native frames, Redis's RESP,
//! NATS's text protocol, and a bare echo server (the floor cost of a round trip).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BytesMut};
use tokio::net::TcpSocket;

use super::BenchError;
use super::wire::{WS_SCHEME, WSS_SCHEME, Wire};
use crate::frame;
use tokio_util::either::Either;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Switchboard,
    Redis,
    Nats,
    Echo,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Switchboard => "switchboard",
            Target::Redis => "redis",
            Target::Nats => "nats",
            Target::Echo => "echo",
        }
    }

    /// Where each target listens unless told otherwise.
    pub fn default_addr(self) -> &'static str {
        match self {
            Target::Switchboard => "127.0.0.1:12000",
            Target::Redis => "127.0.0.1:6379",
            Target::Nats => "127.0.0.1:4222",
            Target::Echo => "127.0.0.1:0",
        }
    }
}

/// What the echo target sends and gets back for one round trip.
pub const ECHO_PING: &[u8] = b"ping-0123456789\n";

/// Loopback source addresses the connections take turns on: each gives its own
/// ~28,000 ephemeral ports, so tens of thousands of connections fit.
const SOURCES: usize = 16;
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// A connection to a target with a read buffer and a parser for its replies.
pub struct Conn {
    pub target: Target,
    wire: Wire,
    buf: BytesMut,
    /// NATS pings its clients now and then; the answer is owed once it is parsed.
    answer_server_ping: bool,
}

/// One thing the server sent, as far as a scenario cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The answer to a request (ok, PONG, an integer, an echo).
    Answer,
    /// A message delivered to a subscriber, with its payload's first bytes.
    Delivery(Vec<u8>),
    /// Something the scenario does not count (a server PING answered, +OK, INFO).
    Other,
    /// switchboard's `error` event, with its code: the server is about to close the
    /// connection (`slow_consumer`, `shutdown`, ...).
    Cut(String),
    /// A request answered with an error: `code: message`.
    Refused(String),
}

impl Conn {
    /// Connects from the next loopback source address (for a loopback target). An
    /// `addr` of the form `ws://HOST:PORT/PATH` is a WebSocket speaking the native
    /// protocol.
    pub async fn connect(target: Target, addr: &str) -> Result<Conn, BenchError> {
        Conn::connect_with(target, addr, None).await
    }

    /// [`Conn::connect`] with the socket's receive buffer set to `receive_buffer`
    /// bytes: a member that never reads then stops the server's writes after a few KiB
    /// instead of the megabytes the kernel would otherwise take in for it.
    pub async fn connect_with(
        target: Target,
        addr: &str,
        receive_buffer: Option<u32>,
    ) -> Result<Conn, BenchError> {
        let scheme = [WS_SCHEME, WSS_SCHEME]
            .into_iter()
            .find(|scheme| addr.starts_with(scheme));
        let url = scheme.map(|_| addr);
        if url.is_some() && target != Target::Switchboard {
            return Err(BenchError::Unsupported(format!(
                "only switchboard is reached over a WebSocket, not {}",
                target.name()
            )));
        }
        let addr = match (url, scheme) {
            (Some(url), Some(scheme)) => {
                let rest = &url[scheme.len()..];
                rest.split_once('/').map_or(rest, |(host, _)| host)
            }
            _ => addr,
        };
        let fail =
            |e: std::io::Error| BenchError::Connect(format!("could not connect to {addr}: {e}"));
        let peer: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(fail)?
            .next()
            .ok_or_else(|| BenchError::Connect(format!("{addr} resolves to nothing")))?;
        let socket = if peer.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(fail)?;
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).map_err(fail)?;
        }
        if peer.ip().is_loopback() && peer.is_ipv4() {
            let k = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) % SOURCES;
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8));
            socket.bind(SocketAddr::new(source, 0)).map_err(fail)?;
        }
        let stream = socket.connect(peer).await.map_err(fail)?;
        let _ = stream.set_nodelay(true);
        let handshake_failed = |e: std::io::Error| {
            BenchError::Connect(format!("TLS handshake with {addr} failed: {e}"))
        };
        let wire = match (url, super::TLS.get(), target) {
            (Some(url), Some(tls), _) if scheme == Some(WSS_SCHEME) => {
                let stream = tls.connect(addr, stream).await.map_err(handshake_failed)?;
                Wire::websocket(Either::Right(stream), url)
                    .await
                    .map_err(BenchError::Connect)?
            }
            (Some(url), _, _) => Wire::websocket(Either::Left(stream), url)
                .await
                .map_err(BenchError::Connect)?,
            (None, Some(tls), Target::Switchboard) => {
                let shaken = tls.connect(addr, stream).await;
                Wire::Tls(Box::new(shaken.map_err(handshake_failed)?))
            }
            _ => Wire::Tcp(stream),
        };
        Ok(Conn {
            target,
            wire,
            buf: BytesMut::new(),
            answer_server_ping: false,
        })
    }

    /// Connects and completes the target's handshake: switchboard's welcome and
    /// `hello`, NATS's INFO and CONNECT; Redis and echo have none.
    pub async fn open(target: Target, addr: &str, name: &str) -> Result<Conn, BenchError> {
        Conn::connect(target, addr).await?.handshake(name).await
    }

    /// The target's handshake on a connection just made, as [`Conn::open`] does it.
    pub async fn handshake(mut self, name: &str) -> Result<Conn, BenchError> {
        let conn = &mut self;
        match conn.target {
            Target::Switchboard => {
                conn.next().await?;
                conn.request(&native_request(
                    &serde_json::json!({"id": 0, "op": "hello", "name": name}),
                ))
                .await?;
            }
            Target::Nats => {
                conn.next().await?;
                conn.write(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
                    .await?;
                conn.answer().await?;
            }
            Target::Redis | Target::Echo => {}
        }
        Ok(self)
    }

    /// Frees the read buffer of a connection that will only be held open.
    pub fn release_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        self.wire
            .write_all(bytes)
            .await
            .map_err(|e| BenchError::Task(format!("write failed: {e}")))
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        self.write(bytes).await?;
        self.answer().await
    }

    /// Waits for the next answer, skipping deliveries and the like.
    pub async fn answer(&mut self) -> Result<(), BenchError> {
        loop {
            match self.next().await? {
                Reply::Answer => return Ok(()),
                Reply::Refused(why) => return Err(BenchError::Refused(why)),
                _ => {}
            }
        }
    }

    /// The next reply, reading as needed.
    pub async fn next(&mut self) -> Result<Reply, BenchError> {
        loop {
            if let Some(reply) = self.parse()? {
                if self.answer_server_ping {
                    self.answer_server_ping = false;
                    self.write(b"PONG\r\n").await?;
                }
                return Ok(reply);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match self.wire.read_buf(&mut self.buf).await {
                Ok(0) => return Err(BenchError::Task("the server closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(BenchError::Task(format!("read failed: {e}"))),
            }
        }
    }

    /// One reply off the front of the buffer, if a whole one is there.
    fn parse(&mut self) -> Result<Option<Reply>, BenchError> {
        let bad = |what: &str| BenchError::Task(format!("{}: {what}", self.target.name()));
        match self.target {
            Target::Switchboard => {
                let Some(payload) = frame::decode(&mut self.buf, frame::DEFAULT_MAX_FRAME)
                    .map_err(|e| BenchError::Task(e.to_string()))?
                else {
                    return Ok(None);
                };
                if payload.starts_with(b"{\"event\":\"room_message\"") {
                    let text = find_text(&payload).unwrap_or_default();
                    return Ok(Some(Reply::Delivery(text.to_vec())));
                }
                if payload.starts_with(b"{\"event\":\"error\"") {
                    let code = error_of(&payload, None).unwrap_or_default();
                    return Ok(Some(Reply::Cut(code)));
                }
                if payload.starts_with(b"{\"event\"") {
                    return Ok(Some(Reply::Other));
                }
                if payload.windows(9).any(|w| w == b"\"ok\":true") {
                    return Ok(Some(Reply::Answer));
                }
                match error_of(&payload, Some("error")) {
                    Some(why) => Ok(Some(Reply::Refused(why))),
                    None => Err(bad(&String::from_utf8_lossy(&payload))),
                }
            }
            Target::Redis => match resp::parse(&self.buf).map_err(&bad)? {
                None => Ok(None),
                Some((len, reply)) => {
                    self.buf.advance(len);
                    Ok(Some(reply))
                }
            },
            Target::Nats => {
                let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                let line = &self.buf[..end];
                if let Some(rest) = line.strip_prefix(b"MSG ") {
                    // MSG <subject> <sid> [reply-to] <#bytes>
                    let size = rest
                        .rsplit(|&b| b == b' ')
                        .next()
                        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                        .ok_or_else(|| bad("MSG without a size"))?;
                    if self.buf.len() < end + 2 + size + 2 {
                        return Ok(None);
                    }
                    let payload = self.buf[end + 2..end + 2 + size].to_vec();
                    self.buf.advance(end + 2 + size + 2);
                    return Ok(Some(Reply::Delivery(payload)));
                }
                let reply = match line {
                    b"PONG" => Reply::Answer,
                    b"PING" => {
                        self.answer_server_ping = true;
                        Reply::Other
                    }
                    l if l.starts_with(b"-ERR") => {
                        return Err(bad(&String::from_utf8_lossy(l)));
                    }
                    _ => Reply::Other,
                };
                self.buf.advance(end + 2);
                Ok(Some(reply))
            }
            Target::Echo => {
                if self.buf.len() < ECHO_PING.len() {
                    return Ok(None);
                }
                self.buf.advance(ECHO_PING.len());
                Ok(Some(Reply::Answer))
            }
        }
    }
}

/// `code: message` of a native error, found in the object under `key` (a response's
/// `error`) or at the top (an `error` event); `None` for anything else.
fn error_of(payload: &[u8], key: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let error = match key {
        Some(key) => value.get(key)?,
        None => &value,
    };
    let code = error.get("code")?.as_str()?;
    let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some(if key.is_some() {
        format!("{code}: {message}")
    } else {
        code.to_owned()
    })
}

/// The `text` of a native `room_message` event, without parsing the JSON.
fn find_text(payload: &[u8]) -> Option<&[u8]> {
    let key = b"\"text\":\"";
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let len = payload[at..].iter().position(|&b| b == b'"')?;
    Some(&payload[at..at + len])
}

/// Just enough RESP (Redis's protocol) to frame replies and pub/sub messages.
mod resp {
    use super::Reply;

    /// The length of the first whole value in `buf` and what it is, if one is there.
    pub fn parse(buf: &[u8]) -> Result<Option<(usize, Reply)>, &'static str> {
        let Some((len, value)) = value(buf, 0)? else {
            return Ok(None);
        };
        let reply = match value {
            Value::Array(items) => match &items[..] {
                [Value::Bulk(kind), _, Value::Bulk(payload)] if kind == b"message" => {
                    Reply::Delivery(payload.clone())
                }
                _ => Reply::Other,
            },
            Value::Error => {
                return Err(
                    "the server answered an error (a Redis in protected mode refuses sources other than 127.0.0.1: run it with --protected-mode no)",
                );
            }
            _ => Reply::Answer,
        };
        Ok(Some((len, reply)))
    }

    enum Value {
        Simple,
        Error,
        Bulk(Vec<u8>),
        Array(Vec<Value>),
    }

    fn line(buf: &[u8], at: usize) -> Option<(usize, &[u8])> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((end + 2, &buf[at..end]))
    }

    fn number(digits: &[u8]) -> Result<i64, &'static str> {
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("not a RESP length")
    }

    /// One value starting at `at`: where it ends, and the value.
    fn value(buf: &[u8], at: usize) -> Result<Option<(usize, Value)>, &'static str> {
        let Some((next, head)) = line(buf, at) else {
            return Ok(None);
        };
        let (&kind, rest) = head.split_first().ok_or("empty RESP line")?;
        Ok(Some(match kind {
            b'+' | b':' => (next, Value::Simple),
            b'-' => (next, Value::Error),
            b'$' => {
                let n = number(rest)?;
                if n < 0 {
                    return Ok(Some((next, Value::Simple)));
                }
                let end = next + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                (end + 2, Value::Bulk(buf[next..end].to_vec()))
            }
            b'*' => {
                let n = number(rest)?.max(0) as usize;
                let mut items = Vec::with_capacity(n.min(16));
                let mut pos = next;
                for _ in 0..n {
                    let Some((after, item)) = value(buf, pos)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    pos = after;
                }
                (pos, Value::Array(items))
            }
            _ => return Err("not RESP"),
        }))
    }
}

/// A request on switchboard's native wire: one length-prefixed JSON frame.
pub fn native_request(request: &serde_json::Value) -> Vec<u8> {
    let mut buf = BytesMut::new();
    frame::encode_json(request, &mut buf);
    buf.to_vec()
}

/// A RESP command: an array of bulk strings.
pub fn resp_command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}
