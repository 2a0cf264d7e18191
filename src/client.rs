//! The async client library for the native protocol.
//!
//! [`Client::connect`] opens the connection and completes the handshake (the server's
//! `welcome`); each op is an async method. Requests may be issued concurrently from
//! several tasks: they are pipelined on the one connection and matched to their
//! responses by id. Server pushes arrive on the [`Client::take_events`] stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frame::{self, FrameError};
use crate::protocol::{
    ClientId, ErrorBody, ErrorCode, Event, InboxPage, Menu, Recipient, Request, UserInfo,
};

mod addr;
mod greeting;

pub use addr::{DEFAULT_PORT, normalize_addr, resolve_addr};
pub use greeting::{Greeting, in_words};

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

/// How a [`Client`] connects and keeps its connection alive. The defaults suit people
/// and scripts; tests shorten them.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    connect_timeout: Duration,
    keepalive: Option<Keepalive>,
}

/// A ping after `ping_after` without sending anything; the connection is lost when
/// nothing at all arrives within `answer_within` of something sent.
#[derive(Debug, Clone, Copy)]
struct Keepalive {
    ping_after: Duration,
    answer_within: Duration,
}

/// Shorter intervals would turn the keepalive into a flood.
const MIN_KEEPALIVE: Duration = Duration::from_millis(10);

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: ClientOptions::DEFAULT_CONNECT_TIMEOUT,
            keepalive: Some(Keepalive {
                ping_after: ClientOptions::DEFAULT_PING_AFTER,
                answer_within: ClientOptions::DEFAULT_ANSWER_WITHIN,
            }),
        }
    }
}

impl ClientOptions {
    /// How long connecting and the server's welcome may take together.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Quiet time after which the client sends a `ping`: it keeps NATs and firewalls
    /// open, and finds a server that has gone away without a word.
    pub const DEFAULT_PING_AFTER: Duration = Duration::from_secs(30);
    /// How long after sending the client waits for any byte before it gives up.
    pub const DEFAULT_ANSWER_WITHIN: Duration = Duration::from_secs(30);

    /// How long connecting and waiting for the welcome may take together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Pings after `ping_after` without sending; the connection counts as lost when
    /// nothing arrives within `answer_within` of sending. Each is at least 10 ms.
    pub fn keepalive(mut self, ping_after: Duration, answer_within: Duration) -> Self {
        self.keepalive = Some(Keepalive {
            ping_after: ping_after.max(MIN_KEEPALIVE),
            answer_within: answer_within.max(MIN_KEEPALIVE),
        });
        self
    }

    /// Never pings and never gives up on a quiet server (TCP still notices a reset).
    pub fn no_keepalive(mut self) -> Self {
        self.keepalive = None;
        self
    }
}

type Answer = Result<Value, ErrorBody>;

/// Why the connection ended.
#[derive(Debug, Clone)]
enum Ended {
    Closed,
    Dropped(ErrorBody),
    Unresponsive(Duration),
}

impl Ended {
    fn error(&self) -> ClientError {
        match self {
            Ended::Closed => ClientError::Closed,
            Ended::Dropped(body) => ClientError::Dropped(body.clone()),
            Ended::Unresponsive(after) => ClientError::Unresponsive(*after),
        }
    }
}

/// Requests sent and not yet answered, by id.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    ended: Option<Ended>,
}

/// When the server was last heard from, for the keepalive.
struct Heard {
    at: Instant,
    /// The reader waits for the application to take events, so it is not reading:
    /// the server's silence then proves nothing.
    stalled: bool,
}

/// What the connection's tasks and the [`Client`] share.
struct Shared {
    pending: Mutex<Pending>,
    heard: Mutex<Heard>,
    /// Tells the read task that the keepalive gave up on the server.
    lost: Notify,
}

impl Shared {
    /// Marks the connection ended (the first reason stays) and answers every waiter.
    fn end(&self, why: Ended) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.ended.get_or_insert(why);
            // Dropping the waiters wakes each; they read `ended` for the reason.
            pending.waiting.clear();
        }
    }

    fn ended(&self) -> Option<Ended> {
        match self.pending.lock() {
            Ok(pending) => pending.ended.clone(),
            Err(_) => Some(Ended::Closed),
        }
    }

    fn hear(&self, stalled: bool) {
        if let Ok(mut heard) = self.heard.lock() {
            heard.at = Instant::now();
            heard.stalled = stalled;
        }
    }

    /// Whether the server may be taken as alive since `since`.
    fn heard_since(&self, since: Instant) -> Option<Instant> {
        let heard = self.heard.lock().ok()?;
        if heard.stalled {
            Some(Instant::now())
        } else {
            (heard.at >= since).then_some(heard.at)
        }
    }
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
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            heard: Mutex::new(Heard {
                at: Instant::now(),
                stalled: false,
            }),
            lost: Notify::new(),
        });
        let (writer, outgoing) = mpsc::channel(1024);
        let (event_tx, events) = mpsc::channel(EVENT_BUFFER);
        let listening = Arc::new(AtomicBool::new(false));
        let router = Router {
            shared: Arc::clone(&shared),
            events: event_tx,
            listening: Arc::clone(&listening),
            last_words: None,
        };
        let tasks = [
            tokio::spawn(read_task(read_half, buf, router)),
            tokio::spawn(write_task(
                write_half,
                outgoing,
                options.keepalive,
                Arc::clone(&shared),
            )),
        ];
        Ok(Client {
            client_id,
            server,
            next_id: AtomicU64::new(KEEPALIVE_ID + 1),
            shared,
            writer,
            events: Some(events),
            listening,
            tasks,
        })
    }

    /// Why the connection ended, once it has: [`ClientError::Closed`], or the server's
    /// last words ([`ClientError::Dropped`]), or [`ClientError::Unresponsive`].
    pub fn ended(&self) -> Option<ClientError> {
        self.shared.ended().map(|why| why.error())
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
            let mut pending = self
                .shared
                .pending
                .lock()
                .map_err(|_| ClientError::Closed)?;
            if let Some(why) = &pending.ended {
                return Err(why.error());
            }
            pending.waiting.insert(id, tx);
        }
        if self.writer.send(buf.freeze()).await.is_err() {
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
            })
            .await?;
        debug_assert_eq!(reply.name, name);
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
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    listening: Arc<AtomicBool>,
    /// The `error` event that came last, if nothing came after it: why the server is
    /// closing the connection.
    last_words: Option<ErrorBody>,
}

/// Reads frames until the connection ends, routing responses to their waiters and
/// events to the event stream.
async fn read_task(mut socket: OwnedReadHalf, mut buf: BytesMut, mut router: Router) {
    let shared = Arc::clone(&router.shared);
    'read: loop {
        loop {
            match frame::decode(&mut buf, CLIENT_MAX_FRAME) {
                Ok(Some(payload)) => router.route(&payload).await,
                Ok(None) => break,
                Err(_) => break 'read,
            }
        }
        tokio::select! {
            read = socket.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => shared.hear(false),
            },
            () = shared.lost.notified() => break,
        }
    }
    shared.end(match router.last_words.take() {
        Some(body) => Ended::Dropped(body),
        None => Ended::Closed,
    });
}

impl Router {
    async fn route(&mut self, payload: &[u8]) {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        self.last_words = None;
        if map.contains_key("event") {
            let Ok(event) = serde_json::from_value::<Event>(Value::Object(map)) else {
                return;
            };
            if let Event::Error { code, message } = &event {
                self.last_words = Some(ErrorBody::new(*code, message.clone()));
            }
            if !self.listening.load(Ordering::Relaxed) {
                return;
            }
            match self.events.try_send(event) {
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.shared.hear(true);
                    // A dropped receiver means the application stopped listening: fine.
                    let _ = self.events.send(event).await;
                    self.shared.hear(false);
                }
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
            return;
        }
        let Some(id) = map.get("id").and_then(Value::as_u64) else {
            return;
        };
        let waiter = self
            .shared
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

/// Completes `work`, or gives `None` at `deadline` (never, when there is none).
async fn within<T>(deadline: Option<Instant>, work: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes queued request frames, gathering whatever is waiting into one write; and
/// keeps the connection alive: a `ping` after a quiet spell, and the connection given
/// up when the server stays silent too long after something was sent.
async fn write_task(
    mut socket: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Bytes>,
    keepalive: Option<Keepalive>,
    shared: Arc<Shared>,
) {
    let mut ping = BytesMut::new();
    frame::encode_json(
        &Outgoing {
            id: KEEPALIVE_ID,
            request: &Request::Ping,
        },
        &mut ping,
    );
    let mut buf = BytesMut::new();
    let mut last_sent = Instant::now();
    // The first moment something was sent that no byte from the server has followed.
    let mut unanswered: Option<Instant> = None;
    loop {
        let ping_at = keepalive.and_then(|k| last_sent.checked_add(k.ping_after));
        let give_up_at = keepalive
            .zip(unanswered)
            .and_then(|(k, since)| since.checked_add(k.answer_within));
        tokio::select! {
            next = outgoing.recv() => {
                let Some(first) = next else { break };
                buf.extend_from_slice(&first);
                while let Ok(more) = outgoing.try_recv() {
                    buf.extend_from_slice(&more);
                    if buf.len() > 64 * 1024 {
                        break;
                    }
                }
            }
            () = until(ping_at) => buf.extend_from_slice(&ping),
            () = until(give_up_at) => {
                let (Some(since), Some(k)) = (unanswered, keepalive) else { continue };
                match shared.heard_since(since) {
                    // Heard from: what was sent after that is what now waits.
                    Some(heard) => unanswered = (last_sent > heard).then_some(last_sent),
                    None => {
                        shared.end(Ended::Unresponsive(k.answer_within));
                        shared.lost.notify_one();
                        return;
                    }
                }
                continue;
            }
        }
        if socket.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        last_sent = Instant::now();
        unanswered.get_or_insert(last_sent);
    }
    let _ = socket.shutdown().await;
}
