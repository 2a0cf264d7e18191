//! The async client library for the native protocol.
//!
//! [`Client::connect`] opens the connection and completes the handshake (the server's
//! `welcome`); each op is an async method. Requests may be issued concurrently from
//! several tasks: they are pipelined on the one connection and matched to their
//! responses by id. Server pushes arrive on the [`Client::take_events`] stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::frame::{self, FrameError};
use crate::protocol::{
    ClientId, ErrorBody, ErrorCode, Event, InboxPage, Menu, Recipient, Request, UserInfo,
};

/// The client accepts frames up to this size, generously above the server's default, so
/// that a server configured for larger frames still works.
const CLIENT_MAX_FRAME: usize = 64 * 1024 * 1024;
/// Events buffered for the application before the reader waits for it to catch up.
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    #[error("unexpected data from the server: {0}")]
    Protocol(String),
    #[error("{}: {}", .0.code, .0.message)]
    Server(ErrorBody),
    #[error("the connection is closed")]
    Closed,
}

type Answer = Result<Value, ErrorBody>;

/// Requests sent and not yet answered, by id.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    closed: bool,
}

/// A connection to a switchboard server.
pub struct Client {
    client_id: ClientId,
    server: String,
    next_id: AtomicU64,
    pending: Arc<Mutex<Pending>>,
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

#[derive(Serialize)]
struct Outgoing<'a> {
    id: u64,
    #[serde(flatten)]
    request: &'a Request,
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

impl Client {
    /// Connects and waits for the server's `welcome`.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, ClientError> {
        let name = addr.to_string();
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr: name, source })?;
        let _ = stream.set_nodelay(true);
        let (mut read_half, write_half) = stream.into_split();
        let mut buf = BytesMut::with_capacity(4096);
        let welcome = loop {
            if let Some(payload) = frame::decode(&mut buf, CLIENT_MAX_FRAME)? {
                break serde_json::from_slice::<Event>(&payload)
                    .map_err(|e| ClientError::Protocol(format!("expected welcome: {e}")))?;
            }
            if read_half.read_buf(&mut buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        };
        let Event::Welcome {
            client_id, server, ..
        } = welcome
        else {
            return Err(ClientError::Protocol(format!(
                "expected welcome, got {welcome:?}"
            )));
        };
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (writer, outgoing) = mpsc::channel(1024);
        let (event_tx, events) = mpsc::channel(EVENT_BUFFER);
        let listening = Arc::new(AtomicBool::new(false));
        let router = Router {
            pending: Arc::clone(&pending),
            events: event_tx,
            listening: Arc::clone(&listening),
        };
        let tasks = [
            tokio::spawn(read_task(read_half, buf, router)),
            tokio::spawn(write_task(write_half, outgoing)),
        ];
        Ok(Client {
            client_id,
            server,
            next_id: AtomicU64::new(1),
            pending,
            writer,
            events: Some(events),
            listening,
            tasks,
        })
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
        let mut buf = BytesMut::new();
        frame::encode_json(&Outgoing { id, request }, &mut buf);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().map_err(|_| ClientError::Closed)?;
            if pending.closed {
                return Err(ClientError::Closed);
            }
            pending.waiting.insert(id, tx);
        }
        self.writer
            .send(buf.freeze())
            .await
            .map_err(|_| ClientError::Closed)?;
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(body)) => Err(ClientError::Server(body)),
            Err(_) => Err(ClientError::Closed),
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
    pub async fn inbox(&self, limit: Option<u32>) -> Result<InboxPage, ClientError> {
        self.call(Request::Inbox { limit }).await
    }

    pub async fn create_room(&self, room: &str) -> Result<(), ClientError> {
        let room = room.to_owned();
        self.request(&Request::CreateRoom { room }).await.map(drop)
    }

    /// Joins `room`; returns its members' names.
    pub async fn join_room(&self, room: &str) -> Result<Vec<String>, ClientError> {
        let room = room.to_owned();
        Ok(self
            .call::<JoinedReply>(Request::JoinRoom { room })
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

/// Where the read task sends what arrives.
struct Router {
    pending: Arc<Mutex<Pending>>,
    events: mpsc::Sender<Event>,
    listening: Arc<AtomicBool>,
}

/// Reads frames until the connection ends, routing responses to their waiters and
/// events to the event stream.
async fn read_task(mut socket: OwnedReadHalf, mut buf: BytesMut, router: Router) {
    'read: loop {
        loop {
            match frame::decode(&mut buf, CLIENT_MAX_FRAME) {
                Ok(Some(payload)) => router.route(&payload).await,
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Ok(mut pending) = router.pending.lock() {
        pending.closed = true;
        // Dropping the waiters answers each with `Closed`.
        pending.waiting.clear();
    }
}

impl Router {
    async fn route(&self, payload: &[u8]) {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if map.contains_key("event") {
            if !self.listening.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(event) = serde_json::from_value::<Event>(Value::Object(map)) {
                // A dropped receiver means the application stopped listening: fine.
                let _ = self.events.send(event).await;
            }
            return;
        }
        let Some(id) = map.get("id").and_then(Value::as_u64) else {
            return;
        };
        let waiter = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.waiting.remove(&id));
        let Some(waiter) = waiter else {
            return;
        };
        let answer = if map.get("ok") == Some(&Value::Bool(true)) {
            Ok(Value::Object(map))
        } else {
            Err(map
                .get("error")
                .cloned()
                .and_then(|e| serde_json::from_value::<ErrorBody>(e).ok())
                .unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "malformed error response")))
        };
        let _ = waiter.send(answer);
    }
}

/// Writes queued request frames, gathering whatever is waiting into one write.
async fn write_task(mut socket: OwnedWriteHalf, mut outgoing: mpsc::Receiver<Bytes>) {
    let mut buf = BytesMut::new();
    while let Some(first) = outgoing.recv().await {
        buf.extend_from_slice(&first);
        while let Ok(more) = outgoing.try_recv() {
            buf.extend_from_slice(&more);
            if buf.len() > 64 * 1024 {
                break;
            }
        }
        if socket.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = socket.shutdown().await;
}
