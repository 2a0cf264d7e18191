//! The byte streams a bench connection runs on: plain TCP, TLS, or switchboard's native
//! protocol over a WebSocket (`/ws` on the HTTP listener, plain or over TLS), which the
//! scenarios see as the same length-prefixed frames so that one parser serves all.

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
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
    Ws(Box<WebSocketStream<WsStream>>),
}

impl Wire {
    /// Upgrades `stream` to a WebSocket at `url`.
    pub async fn websocket(stream: WsStream, url: &str) -> Result<Wire, String> {
        let (socket, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| format!("websocket handshake with {url} failed: {e}"))?;
        Ok(Wire::Ws(Box::new(socket)))
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
            Wire::Ws(socket) => {
                let mut rest = bytes;
                while rest.len() >= frame::HEADER {
                    let len = (&rest[..frame::HEADER]).get_u32() as usize;
                    let end = frame::HEADER + len;
                    let payload = rest.get(frame::HEADER..end).ok_or("a frame cut short")?;
                    let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
                    socket
                        .feed(Message::text(text))
                        .await
                        .map_err(|e| e.to_string())?;
                    rest = &rest[end..];
                }
                socket.flush().await.map_err(|e| e.to_string())
            }
        }
    }

    /// Reads what arrives into `buf`; `Ok(0)` when the server closed the connection.
    /// A WebSocket text message lands as one native frame.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> Result<usize, String> {
        match self {
            Wire::Tcp(stream) => stream.read_buf(buf).await.map_err(|e| e.to_string()),
            Wire::Tls(stream) => stream.read_buf(buf).await.map_err(|e| e.to_string()),
            Wire::Ws(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        buf.reserve(frame::HEADER + text.len());
                        buf.put_u32(text.len() as u32);
                        buf.put_slice(text.as_bytes());
                        return Ok(frame::HEADER + text.len());
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(0),
                    Some(Ok(_)) => {}
                    Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(0),
                    Some(Err(e)) => return Err(e.to_string()),
                }
            },
        }
    }
}
