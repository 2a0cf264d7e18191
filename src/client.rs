//! The async client library for the native protocol.
//!
//! [`Client::connect`] opens the connection and completes the handshake (the server's
//! `welcome`); each op is an async method. Requests may be issued concurrently from
//! several tasks: they are pipelined on the one connection and matched to their
//! responses by id. Server pushes arrive on the [`Client::take_events`] stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frame::{self, FrameError};
use crate::protocol::{
    ClientId, ErrorBody, ErrorCode, Event, InboxPage, Menu, Recipient, Request, UserInfo,
};

mod addr;
mod conn;
mod greeting;
mod mail;
mod options;

pub use addr::{DEFAULT_PORT, normalize_addr, resolve_addr};
pub use greeting::{Greeting, in_words};
pub use mail::Peeked;
pub use options::ClientOptions;

use conn::{Shared, within};

/// The client accepts frames up to this size, generously above the server's default, so
/// that a server configured for larger frames still works.
const CLIENT_MAX_FRAME: usize = 64 * 1024 * 1024;
/// Events buffered for the application before the reader waits for it to catch up.
const EVENT_BUFFER: usize = 4096;
/// The id of the library's own keepalive pings. Requests count from 1, so its answer
/// is never taken for another's.
const KEEPALIVE_ID: u64 = 0;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot use the address {addr:?}: {why}")]
    Address { addr: String, why: String },
    #[error("could not connect to {addr}: no answer within {} s", .after.as_secs_f64())]
    ConnectTimeout { addr: String, after: Duration },
    #[error(
        "{addr} took the connection but sent no welcome within {} s; is it a switchboard server?",
        .after.as_secs_f64()
    )]
    NoWelcome { addr: String, after: Duration },
    #[error("{0}")]
    OtherDialect(Greeting),
    #[error("the server turned the connection away: {}", in_words(.0))]
    Refused(ErrorBody),
    #[error("the server closed the connection before its welcome")]
    ClosedEarly,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    #[error("unexpected data from the server: {0}")]
    Protocol(String),
    #[error("{}: {}", .0.code, .0.message)]
    Server(ErrorBody),
    /// The server sent an `error` event, then closed the connection.
    #[error("the server closed the connection: {}", in_words(.0))]
    Dropped(ErrorBody),
    #[error(
        "the server did not answer for {} s; the connection is taken as lost",
        .0.as_secs_f64()
    )]
    Unresponsive(Duration),
    #[error("the connection is closed")]
    Closed,
}

/// A connection to a switchboard server.
pub struct Client {
    client_id: ClientId,
    server: String,
    next_id: AtomicU64,
    shared: Arc<Shared>,
    writer: mpsc::Sender<Bytes>,
    events: Option<mpsc::Receiver<Event>>,
    listening: Arc<AtomicBool>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Client {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl From<&str> for Recipient {
    fn from(name: &str) -> Self {
        Recipient::Name(name.to_owned())
    }
}

impl From<String> for Recipient {
    fn from(name: String) -> Self {
        Recipient::Name(name)
    }
}

impl From<ClientId> for Recipient {
    fn from(id: ClientId) -> Self {
        Recipient::Id(id)
    }
}

#[derive(serde::Deserialize)]
struct HelloReply {
    client_id: ClientId,
    name: String,
}

#[derive(serde::Deserialize)]
struct UsersReply {
    users: Vec<UserInfo>,
}

#[derive(serde::Deserialize)]
struct SentReply {
    message_id: u64,
}

#[derive(serde::Deserialize)]
struct JoinedReply {
    members: Vec<String>,
}

/// Reads the server's first frame: its welcome, or why there is none.
async fn read_welcome(
    socket: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<(ClientId, String), ClientError> {
    loop {
        if let Some(other) = Greeting::sniff(buf) {
            return Err(ClientError::OtherDialect(other));
        }
        if let Some(payload) = frame::decode(buf, CLIENT_MAX_FRAME)? {
            let event = serde_json::from_slice::<Event>(&payload)
                .map_err(|e| ClientError::Protocol(format!("expected welcome: {e}")))?;
            return match event {
                Event::Welcome {
                    client_id, server, ..
                } => Ok((client_id, server)),
                Event::Error { code, message } => {
                    Err(ClientError::Refused(ErrorBody::new(code, message)))
                }
                Event::Shutdown { .. } => Err(ClientError::Refused(ErrorBody::new(
                    ErrorCode::ShuttingDown,
                    "shutting down",
                ))),
                other => Err(ClientError::Protocol(format!(
                    "expected welcome, got {other:?}"
                ))),
            };
        }
        if socket.read_buf(buf).await? == 0 {
            return Err(ClientError::ClosedEarly);
        }
    }
}

impl Client {
    /// Connects and waits for the server's `welcome`, with the default
    /// [`ClientOptions`]: 10 s to connect, a ping after 30 s of quiet.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, &ClientOptions::default()).await
    }

    /// Connects and waits for the server's `welcome`, as `options` say.
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let name = addr.to_string();
        let after = options.connect_timeout;
        let deadline = Instant::now().checked_add(after);
        let stream = match within(deadline, TcpStream::connect(addr)).await {
            None => return Err(ClientError::ConnectTimeout { addr: name, after }),
            Some(Err(source)) => return Err(ClientError::Connect { addr: name, source }),
            Some(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let (mut read_half, write_half) = stream.into_split();
        let mut buf = BytesMut::with_capacity(4096);
        let Some(welcome) = within(deadline, read_welcome(&mut read_half, &mut buf)).await else {
            return Err(ClientError::NoWelcome { addr: name, after });
        };
        let (client_id, server) = welcome?;
        let conn = conn::start(read_half, write_half, buf, options.keepalive);
        Ok(Client {
            client_id,
            server,
            next_id: AtomicU64::new(KEEPALIVE_ID + 1),
            shared: conn.shared,
            writer: conn.writer,
            events: Some(conn.events),
            listening: conn.listening,
            tasks: conn.tasks,
        })
    }

    /// Why the connection ended, once it has: [`ClientError::Closed`], or the server's
    /// last words ([`ClientError::Dropped`]), or [`ClientError::Unresponsive`].
    pub fn ended(&self) -> Option<ClientError> {
        self.shared.ended_error()
    }

    /// The id the server assigned to this connection.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The server's name and version, from `welcome`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The stream of server events (mail notices, room traffic, shutdown). Until it is
    /// taken, and after it is dropped, events are discarded. Once taken, drain it: when
    /// [`EVENT_BUFFER`] events wait unread, the connection stops reading until there is
    /// room, as a server would for a slow reader.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Event>> {
        self.listening.store(true, Ordering::Relaxed);
        self.events.take()
    }

    /// Sends any request and returns the response's fields, or the server's error.
    pub async fn request(&self, request: &Request) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.wait_for(id, tx)?;
        if self
            .writer
            .send(conn::request_frame(id, request))
            .await
            .is_err()
        {
            return Err(self.ended().unwrap_or(ClientError::Closed));
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(body)) => Err(ClientError::Server(body)),
            Err(_) => Err(self.ended().unwrap_or(ClientError::Closed)),
        }
    }

    async fn call<T: DeserializeOwned>(&self, request: Request) -> Result<T, ClientError> {
        let value = self.request(&request).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        self.request(&Request::Ping).await.map(drop)
    }

    /// Completes the handshake under `name`; returns the client id.
    pub async fn hello(&self, name: &str) -> Result<ClientId, ClientError> {
        self.hello_with(name, None).await
    }

    /// `hello` with an optional password.
    pub async fn hello_with(
        &self,
        name: &str,
        password: Option<&str>,
    ) -> Result<ClientId, ClientError> {
        let reply: HelloReply = self
            .call(Request::Hello {
                name: name.to_owned(),
                password: password.map(Into::into),
                resume: None,
                seen: None,
            })
            .await?;
        debug_assert!(reply.name.eq_ignore_ascii_case(name));
        Ok(reply.client_id)
    }

    pub async fn menu(&self) -> Result<Menu, ClientError> {
        self.call(Request::Menu).await
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        Ok(self.call::<UsersReply>(Request::Users).await?.users)
    }

    /// Sends a direct message; returns its message id once the server has stored it.
    pub async fn send(&self, to: impl Into<Recipient>, text: &str) -> Result<u64, ClientError> {
        let reply: SentReply = self
            .call(Request::Send {
                to: to.into(),
                text: text.to_owned(),
            })
            .await?;
        Ok(reply.message_id)
    }

    /// Takes unread messages, oldest first; `None` asks for the server's default count.
    /// They are read once the server answers, even if this client never sees the
    /// answer: [`Client::read_inbox`] loses none.
    pub async fn inbox(&self, limit: Option<u32>) -> Result<InboxPage, ClientError> {
        self.call(Request::Inbox { limit, peek: false }).await
    }

    pub async fn create_room(&self, room: &str) -> Result<(), ClientError> {
        let room = room.to_owned();
        self.request(&Request::CreateRoom { room }).await.map(drop)
    }

    /// Joins `room`; returns its members' names.
    pub async fn join_room(&self, room: &str) -> Result<Vec<String>, ClientError> {
        let room = room.to_owned();
        Ok(self
            .call::<JoinedReply>(Request::JoinRoom {
                room,
                after: None,
                epoch: None,
            })
            .await?
            .members)
    }

    pub async fn say(&self, room: &str, text: &str) -> Result<(), ClientError> {
        let (room, text) = (room.to_owned(), text.to_owned());
        self.request(&Request::Say { room, text }).await.map(drop)
    }

    pub async fn leave_room(&self, room: &str) -> Result<(), ClientError> {
        let room = room.to_owned();
        self.request(&Request::LeaveRoom { room }).await.map(drop)
    }

    pub async fn close_room(&self, room: &str) -> Result<(), ClientError> {
        let room = room.to_owned();
        self.request(&Request::CloseRoom { room }).await.map(drop)
    }

    /// Says goodbye; the server answers and closes the connection.
    pub async fn bye(&self) -> Result<(), ClientError> {
        self.request(&Request::Bye).await.map(drop)
    }
}
