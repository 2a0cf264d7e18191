//! The async client library for the native protocol.
//!
//! [`Client::connect`] opens the connection and completes the handshake (the server's
//! `welcome`); each op is an async method. Requests may be issued concurrently from
//! several tasks: they are pipelined on the one connection and matched to their
//! responses by id. Server pushes arrive on the [`Client::take_events`] stream.
//!
//! A client made with [`ClientOptions::reconnect`] comes back by itself after a cut
//! and resumes its session; its stream is [`Client::take_updates`], which also tells
//! the cut, the return, and what was missed meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frame::{self, FrameError};
use crate::protocol::{
    ClientId, ErrorBody, ErrorCode, Event, HistoryPage, InboxPage, Menu, Recipient, Request,
    ResumeToken, RoomLine, RoomPosition, UserInfo,
};

mod addr;
mod conn;
mod greeting;
mod link;
mod mail;
mod options;
mod resume;
mod tls;

pub use addr::{DEFAULT_PORT, normalize_addr, resolve_addr};
pub use greeting::{Greeting, in_words};
pub use mail::Peeked;
pub use options::ClientOptions;
pub use resume::{Gap, Reconnected, Update};
pub use tls::{ClientTls, TlsSetupError};
use tls::{ReadHalf, WriteHalf};

use conn::{Sink, within};
use link::{Core, Gone, Link};
use resume::Marks;

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
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
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
    /// A reconnecting client was cut while this request waited for its answer.
    #[error(
        "the connection was cut before the server answered; the client is reconnecting, \
         and the request may or may not have been carried out"
    )]
    Interrupted,
    #[error("the connection was lost and could not be made again: {0}")]
    GaveUp(String),
}

/// A connection to a switchboard server.
pub struct Client {
    server: String,
    core: Arc<Core>,
    events: Option<mpsc::Receiver<Event>>,
    updates: Option<mpsc::Receiver<Update>>,
    /// The reconnecting client's watch over its connection.
    supervisor: Option<JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(supervisor) = &self.supervisor {
            supervisor.abort();
        }
        // Dropping the connection stops its tasks, which closes the socket.
        self.core.link.send_replace(Link::Gone(Gone::Closed));
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

#[derive(Debug, serde::Deserialize)]
struct HelloReply {
    client_id: ClientId,
    name: String,
    #[serde(default)]
    resume_token: Option<ResumeToken>,
    #[serde(default)]
    resumed: Option<bool>,
    #[serde(default)]
    rooms: Option<Vec<RoomPosition>>,
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
    #[serde(default)]
    seq: u64,
}

/// Reads the server's first frame: its welcome, or why there is none.
async fn read_welcome(
    socket: &mut ReadHalf,
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

/// A connection whose welcome has been read; `buf` holds what arrived after it.
struct Opened {
    read: ReadHalf,
    write: WriteHalf,
    buf: BytesMut,
    client_id: ClientId,
    server: String,
}

/// Connects to `addr` (called `name` in errors) and reads the welcome, all within `after`.
async fn open(
    addr: impl ToSocketAddrs,
    name: &str,
    after: Duration,
    tls: Option<&ClientTls>,
) -> Result<Opened, ClientError> {
    let name = name.to_owned();
    let deadline = Instant::now().checked_add(after);
    let stream = match within(deadline, TcpStream::connect(addr)).await {
        None => return Err(ClientError::ConnectTimeout { addr: name, after }),
        Some(Err(source)) => return Err(ClientError::Connect { addr: name, source }),
        Some(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    let (mut read, write) = match tls {
        None => tls::split(stream),
        Some(tls) => match within(deadline, tls.connect(&name, stream)).await {
            None => return Err(ClientError::NoWelcome { addr: name, after }),
            Some(Err(source)) => return Err(ClientError::Tls { addr: name, source }),
            Some(Ok(stream)) => tls::split(stream),
        },
    };
    let mut buf = BytesMut::with_capacity(4096);
    let Some(welcome) = within(deadline, read_welcome(&mut read, &mut buf)).await else {
        return Err(ClientError::NoWelcome { addr: name, after });
    };
    let (client_id, server) = welcome?;
    Ok(Opened {
        read,
        write,
        buf,
        client_id,
        server,
    })
}

impl Client {
    /// Connects and waits for the server's `welcome`, with the default
    /// [`ClientOptions`]: 10 s to connect, a ping after 30 s of quiet.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, ClientError> {
        Self::connect_with(addr, &ClientOptions::default()).await
    }

    /// Connects and waits for the server's `welcome`, as `options` say. A reconnecting
    /// client connects again to the address as written here (resolving it anew).
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let name = addr.to_string();
        let opened = open(addr, &name, options.connect_timeout, options.tls.as_ref()).await?;
        let listening = Arc::new(AtomicBool::new(false));
        let marks = Arc::new(Mutex::new(Marks::default()));
        let (sink, events, updates) = if options.reconnect.is_some() {
            let (tx, rx) = mpsc::channel(EVENT_BUFFER);
            let marks = Arc::clone(&marks);
            (Sink::Updates { updates: tx, marks }, None, Some(rx))
        } else {
            let (tx, rx) = mpsc::channel(EVENT_BUFFER);
            (Sink::Events(tx), Some(rx), None)
        };
        let updates_tx = match &sink {
            Sink::Updates { updates, .. } => Some(updates.clone()),
            Sink::Events(_) => None,
        };
        let Opened {
            read,
            write,
            buf,
            client_id,
            server,
        } = opened;
        let line = Arc::new(conn::start(
            read,
            write,
            buf,
            options.keepalive,
            sink,
            Arc::clone(&listening),
        ));
        let (link, _) = watch::channel(Link::Up(Arc::clone(&line)));
        let core = Arc::new(Core {
            addr: name,
            options: options.clone(),
            client_id: AtomicU64::new(client_id),
            next_id: AtomicU64::new(KEEPALIVE_ID + 1),
            link,
            listening,
            login: Arc::new(Mutex::new(None)),
            marks,
            leaving: AtomicBool::new(false),
            leave: Notify::new(),
        });
        let supervisor = updates_tx
            .map(|updates| tokio::spawn(resume::supervise(Arc::clone(&core), updates, line)));
        Ok(Client {
            server,
            core,
            events,
            updates,
            supervisor,
        })
    }

    /// Why the connection ended, once it has: [`ClientError::Closed`], or the server's
    /// last words ([`ClientError::Dropped`]), or [`ClientError::Unresponsive`]; for a
    /// reconnecting client, only once it has stopped trying ([`ClientError::GaveUp`]).
    pub fn ended(&self) -> Option<ClientError> {
        match &*self.core.link.borrow() {
            Link::Up(line) if !self.core.reconnects() => line.shared.ended_error(),
            Link::Up(_) | Link::Down => None,
            Link::Gone(gone) => Some(gone.error()),
        }
    }

    /// The id the server assigned to this session.
    pub fn client_id(&self) -> ClientId {
        self.core.client_id.load(Ordering::Relaxed)
    }

    /// The server's name and version, from `welcome`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The stream of server events (mail notices, room traffic, shutdown). Until it is
    /// taken, and after it is dropped, events are discarded. Once taken, drain it: when
    /// [`EVENT_BUFFER`] events wait unread, the connection stops reading until there is
    /// room, as a server would for a slow reader. A reconnecting client has none: see
    /// [`Client::take_updates`].
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Event>> {
        self.core.listening.store(true, Ordering::Relaxed);
        self.events.take()
    }

    /// The stream of a reconnecting client ([`ClientOptions::reconnect`]): the server's
    /// events, and the cuts and returns between them, in order. It ends after `bye`, or
    /// after [`Update::GaveUp`]. Drain it as [`Client::take_events`] says.
    pub fn take_updates(&mut self) -> Option<mpsc::Receiver<Update>> {
        self.core.listening.store(true, Ordering::Relaxed);
        self.updates.take()
    }

    /// Sends any request and returns the response's fields, or the server's error.
    /// A reconnecting client sends it on the connection it has, or, while it is
    /// reconnecting, once it is back; a request cut off before its answer fails with
    /// [`ClientError::Interrupted`] and is not sent again.
    pub async fn request(&self, request: &Request) -> Result<Value, ClientError> {
        if let Request::Bye = request {
            self.core.leaving.store(true, Ordering::Relaxed);
            self.core.leave.notify_one();
        }
        let reconnects = self.core.reconnects();
        let mut ended = None;
        loop {
            let line = self.core.line(ended.as_ref()).await?;
            let id = self.core.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            let on_ok = self.core.on_answer(request);
            let sent = match line.shared.wait_for(id, tx, on_ok) {
                Ok(()) => line
                    .writer
                    .send(conn::request_frame(id, request))
                    .await
                    .is_ok(),
                Err(e) if !reconnects => return Err(e),
                Err(_) => false,
            };
            if !sent {
                if !reconnects {
                    return Err(line.shared.ended_error().unwrap_or(ClientError::Closed));
                }
                // Never sent: it goes on the next connection.
                ended = Some(line);
                continue;
            }
            return match rx.await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(body)) => Err(ClientError::Server(body)),
                Err(_) if self.core.would_return() => Err(ClientError::Interrupted),
                Err(_) => Err(line.shared.ended_error().unwrap_or(ClientError::Closed)),
            };
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
            .call(Request::Hello(Box::new(crate::protocol::Hello {
                name: name.to_owned(),
                password: password.map(Into::into),
                resume: None,
                seen: None,
            })))
            .await?;
        debug_assert!(reply.name.eq_ignore_ascii_case(name));
        self.core
            .client_id
            .store(reply.client_id, Ordering::Relaxed);
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

    /// Joins `room` and returns its members and its last `last` messages, oldest
    /// first: those said up to the moment of the join, which no live `room_message`
    /// repeats.
    pub async fn join_room_with_history(
        &self,
        room: &str,
        last: u32,
    ) -> Result<(Vec<String>, Vec<RoomLine>), ClientError> {
        let joined: JoinedReply = self
            .call(Request::JoinRoom {
                room: room.to_owned(),
                after: None,
                epoch: None,
            })
            .await?;
        if joined.seq == 0 || last == 0 {
            return Ok((joined.members, Vec::new()));
        }
        let page = self.history(room, Some(joined.seq + 1), Some(last)).await?;
        Ok((joined.members, page.messages))
    }

    /// A page of `room`'s kept messages: the newest `limit` before `before` (or the
    /// newest of all), oldest first.
    pub async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        self.call(Request::History {
            room: room.to_owned(),
            before,
            limit,
        })
        .await
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
