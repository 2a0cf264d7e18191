//! The byte streams a bench connection runs on: plain TCP, TLS, or switchboard's native
//! protocol over a WebSocket (`/ws` on the HTTP listener, plain or over TLS), which the
//! scenarios see as the same length-prefixed frames so that one parser serves all.
//!
//! The WebSocket client is written out here rather than taken from a library, to be as
//! lean as the raw TCP client beside it: the load generator shares the machine with
//! the server it measures, and a client that costs more per message than the server
//! measures the client. tokio-tungstenite's client masked every frame with a fresh
//! random key and went through its Sink per message; at 32 connections it took as much
//! CPU as the server and held WebSocket `rr` to half of what the server could do.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::either::Either;

use crate::frame;

/// How an address given to bench is reached: `ws://HOST:PORT/ws` is a WebSocket,
/// `wss://HOST:PORT/ws` one over TLS, anything else TCP.
pub const WS_SCHEME: &str = "ws://";
pub const WSS_SCHEME: &str = "wss://";

/// What a WebSocket runs on: TCP, or TLS over it.
pub type WsStream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

pub enum Wire {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Ws(Box<WsClient>),
}

/// Most bytes of the server's answer to the upgrade request.
const MAX_HANDSHAKE: usize = 16 * 1024;

/// The key every frame the client sends is masked with. RFC 6455 asks a client for a
/// fresh unpredictable key per frame, so that a script in a browser cannot choose the
/// bytes an intermediary sees; a load generator has no such script, and the server
/// unmasks with a zero key at the same cost as with any other, so the server's work
/// per message is what a browser's frames would cost it.
const MASK: [u8; 4] = [0; 4];

/// Frame opcodes (RFC 6455, 5.2).
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A WebSocket client connection past its handshake.
pub struct WsClient {
    stream: WsStream,
    frames: Frames,
}

/// The client's side of the framing, apart from the socket.
#[derive(Default)]
struct Frames {
    /// What was read and not yet taken apart into messages.
    read: BytesMut,
    /// The frames of one write, reused.
    write: Vec<u8>,
    /// A message that arrives in fragments, as far as it has come.
    fragments: Option<Vec<u8>>,
}

impl Wire {
    /// Upgrades `stream` to a WebSocket at `url`.
    pub async fn websocket(stream: WsStream, url: &str) -> Result<Wire, String> {
        let client = WsClient::handshake(stream, url)
            .await
            .map_err(|e| format!("websocket handshake with {url} failed: {e}"))?;
        Ok(Wire::Ws(Box::new(client)))
    }

    /// Writes `bytes`; over a WebSocket, each native frame in them goes as one text
    /// message without its length prefix, all flushed together.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Wire::Tcp(stream) => stream.write_all(bytes).await.map_err(|e| e.to_string()),
            Wire::Tls(stream) => {
                stream.write_all(bytes).await.map_err(|e| e.to_string())?;
                stream.flush().await.map_err(|e| e.to_string())
            }
            Wire::Ws(client) => client.write_all(bytes).await,
        }
    }

    /// Reads what arrives into `buf`; `Ok(0)` when the server closed the connection.
    /// A WebSocket text message lands as one native frame.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> Result<usize, String> {
        match self {
            Wire::Tcp(stream) => stream.read_buf(buf).await.map_err(|e| e.to_string()),
            Wire::Tls(stream) => stream.read_buf(buf).await.map_err(|e| e.to_string()),
            Wire::Ws(client) => client.read_buf(buf).await,
        }
    }
}

impl WsClient {
    /// Sends the upgrade request for `url` and checks the server's 101; what the server
    /// sent after it is kept for the first read.
    async fn handshake(mut stream: WsStream, url: &str) -> Result<WsClient, String> {
        let rest = [WS_SCHEME, WSS_SCHEME]
            .into_iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or("not a ws:// or wss:// address")?;
        let (host, path) = rest
            .find('/')
            .map_or((rest, "/"), |at| (&rest[..at], &rest[at..]));
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut read = BytesMut::with_capacity(4096);
        let end = loop {
            if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if read.len() > MAX_HANDSHAKE {
                return Err("the answer to the upgrade request has no end".into());
            }
            read.reserve(4096);
            if stream
                .read_buf(&mut read)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("the server closed the connection".into());
            }
        };
        let head = String::from_utf8_lossy(&read[..end]).into_owned();
        read.advance(end);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if status.split(' ').nth(1) != Some("101") {
            return Err(format!("the server answered {status:?}"));
        }
        let accept = lines.find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim())
        });
        if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
            return Err("the server's Sec-WebSocket-Accept does not match the key".into());
        }
        Ok(WsClient {
            stream,
            frames: Frames {
                read,
                ..Frames::default()
            },
        })
    }

    /// Sends each native frame in `bytes` as one text message, in one write.
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut rest = bytes;
        while rest.len() >= frame::HEADER {
            let len = (&rest[..frame::HEADER]).get_u32() as usize;
            let end = frame::HEADER + len;
            let payload = rest.get(frame::HEADER..end).ok_or("a frame cut short")?;
            put_frame(&mut self.frames.write, TEXT, payload);
            rest = &rest[end..];
        }
        self.send().await
    }

    /// Writes out the write buffer, emptied.
    async fn send(&mut self) -> Result<(), String> {
        let written = self.stream.write_all(&self.frames.write).await;
        self.frames.write.clear();
        written.map_err(|e| e.to_string())?;
        self.stream.flush().await.map_err(|e| e.to_string())
    }

    /// Appends every whole message read so far to `buf` as native frames, reading
    /// first if there is none; `Ok(0)` once the server has closed.
    async fn read_buf(&mut self, buf: &mut BytesMut) -> Result<usize, String> {
        loop {
            let (taken, closed) = self.frames.take_messages(buf)?;
            if !self.frames.write.is_empty() {
                // Pongs owed for the pings just read.
                self.send().await?;
            }
            if taken > 0 {
                return Ok(taken);
            }
            if closed {
                return Ok(0);
            }
            let read = &mut self.frames.read;
            if read.capacity() - read.len() < 4096 {
                read.reserve(16 * 1024);
            }
            match self.stream.read_buf(read).await {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Frames {
    /// Takes the whole frames at the front of what was read: messages go to `buf`,
    /// pings are answered (into the write buffer). Returns the bytes added to `buf`, and
    /// whether the server's close was reached (it stays unread, to end the next read).
    fn take_messages(&mut self, buf: &mut BytesMut) -> Result<(usize, bool), String> {
        let before = buf.len();
        loop {
            let Some((opcode, fin, header, len)) = frame_head(&self.read)? else {
                return Ok((buf.len() - before, false));
            };
            if self.read.len() < header + len {
                self.read.reserve(header + len - self.read.len());
                return Ok((buf.len() - before, false));
            }
            let payload = &self.read[header..header + len];
            match opcode {
                TEXT | BINARY if fin && self.fragments.is_none() => {
                    buf.reserve(frame::HEADER + len);
                    buf.put_u32(len as u32);
                    buf.put_slice(payload);
                }
                TEXT | BINARY if self.fragments.is_none() => {
                    self.fragments = Some(payload.to_vec());
                }
                CONTINUATION if self.fragments.is_some() => {
                    let mut message = self.fragments.take().unwrap_or_default();
                    message.extend_from_slice(payload);
                    if fin {
                        buf.reserve(frame::HEADER + message.len());
                        buf.put_u32(message.len() as u32);
                        buf.put_slice(&message);
                    } else {
                        self.fragments = Some(message);
                    }
                }
                CLOSE => return Ok((buf.len() - before, true)),
                PING => put_frame(&mut self.write, PONG, payload),
                PONG => {}
                _ => return Err(format!("unexpected WebSocket frame (opcode {opcode})")),
            }
            self.read.advance(header + len);
        }
    }
}

/// The opcode, FIN bit, header length and payload length of the frame at the front of
/// `read`, once its header is all there.
fn frame_head(read: &[u8]) -> Result<Option<(u8, bool, usize, usize)>, String> {
    let [first, second, ..] = *read else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err("the server masked a frame".into());
    }
    let (header, len) = match second & 0x7f {
        126 => match read.get(2..4) {
            Some(len) => (4, u16::from_be_bytes([len[0], len[1]]) as usize),
            None => return Ok(None),
        },
        127 => match read
            .get(2..10)
            .and_then(|len| <[u8; 8]>::try_from(len).ok())
        {
            Some(len) => (
                10,
                usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX),
            ),
            None => return Ok(None),
        },
        len => (2, len as usize),
    };
    if len > frame::DEFAULT_MAX_FRAME {
        return Err(format!("a WebSocket frame of {len} bytes"));
    }
    Ok(Some((first & 0x0f, first & 0x80 != 0, header, len)))
}

/// Appends a final client frame: header, the mask key, and the payload masked with it
/// (which a zero key leaves as it is).
fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    const MASKED: u8 = 0x80;
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(MASKED | len as u8),
        len @ 126..=0xffff => {
            out.push(MASKED | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(MASKED | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketContext};

    use super::*;

    /// tungstenite, as the server runs it, reads the client's frames of every length
    /// encoding as the text they carry.
    #[test]
    fn the_server_reads_the_clients_frames() {
        for len in [0, 125, 126, 0xffff, 0x10000] {
            let text = "x".repeat(len);
            let mut wire = Vec::new();
            put_frame(&mut wire, TEXT, text.as_bytes());
            let mut server = WebSocketContext::new(Role::Server, None);
            let message = server.read(&mut Cursor::new(wire)).unwrap();
            assert_eq!(message, Message::text(text), "{len} bytes");
        }
    }

    /// What the server writes arrives as native frames: whole messages, fragmented
    /// ones put together, pings answered with pongs, and the close ends the reading.
    #[test]
    fn the_clients_read_takes_the_servers_frames_apart() {
        let mut server = WebSocketContext::new(Role::Server, None);
        let mut wire = Cursor::new(Vec::new());
        let fragment = |data: &'static str, opcode, fin| {
            Message::Frame(Frame::message(data.as_bytes(), opcode, fin))
        };
        for message in [
            Message::text("{\"ok\":true}"),
            Message::Ping("p".into()),
            fragment("{\"a\":", OpCode::Data(Data::Text), false),
            fragment("1}", OpCode::Data(Data::Continue), true),
            Message::text("x".repeat(300)),
        ] {
            server.write(&mut wire, message).unwrap();
        }
        server.flush(&mut wire).unwrap();
        let mut frames = Frames::default();
        let bytes = wire.into_inner();
        let mut native = BytesMut::new();
        // A byte at a time: every cut of a frame waits for the rest.
        for &byte in &bytes[..bytes.len() - 1] {
            frames.read.put_u8(byte);
            assert!(!frames.take_messages(&mut native).unwrap().1);
        }
        frames.read.put_u8(bytes[bytes.len() - 1]);
        frames.take_messages(&mut native).unwrap();
        let mut texts = Vec::new();
        while let Some(payload) = frame::decode(&mut native, frame::DEFAULT_MAX_FRAME).unwrap() {
            texts.push(String::from_utf8(payload.to_vec()).unwrap());
        }
        assert_eq!(texts, ["{\"ok\":true}", "{\"a\":1}", &"x".repeat(300)]);
        let mut pong = Vec::new();
        put_frame(&mut pong, PONG, b"p");
        assert_eq!(frames.write, pong);

        let mut closing = Cursor::new(Vec::new());
        let _ = server.close(&mut closing, None);
        frames.read.extend_from_slice(&closing.into_inner());
        assert_eq!(frames.take_messages(&mut native).unwrap(), (0, true));
    }
}
