//! The connection's two tasks and what they share with the [`Client`](super::Client):
//! the reader routes responses and events, the writer sends requests and keeps the
//! connection alive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tls::{ReadHalf, WriteHalf};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::options::Keepalive;
use super::resume::{Marks, Update};
use super::{CLIENT_MAX_FRAME, ClientError, KEEPALIVE_ID};
use crate::frame;
use crate::protocol::{ErrorBody, ErrorCode, Event, Request};

#[derive(Serialize)]
struct Outgoing<'a> {
    id: u64,
    #[serde(flatten)]
    request: &'a Request,
}

pub(super) type Answer = Result<Value, ErrorBody>;

/// What a successful answer changes in the client's own state (a room joined, a
/// resume token given); run by the reader before it routes the next frame, so that
/// the events after the answer are judged by it.
pub(super) type OnAnswer = Box<dyn FnOnce(&serde_json::Map<String, Value>) + Send>;

/// A request waiting for its answer.
struct Waiter {
    answer: oneshot::Sender<Answer>,
    on_ok: Option<OnAnswer>,
}

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
    waiting: HashMap<u64, Waiter>,
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
pub(super) struct Shared {
    pending: Mutex<Pending>,
    heard: Mutex<Heard>,
    /// Tells the read task that the keepalive gave up on the server.
    lost: Notify,
    /// Told once the read task has routed its last frame.
    finished: Notify,
}

impl Shared {
    /// Why the connection ended, once it has.
    pub(super) fn ended_error(&self) -> Option<ClientError> {
        self.ended().map(|why| why.error())
    }

    /// Registers the waiter for request `id`, unless the connection has ended.
    pub(super) fn wait_for(
        &self,
        id: u64,
        answer: oneshot::Sender<Answer>,
        on_ok: Option<OnAnswer>,
    ) -> Result<(), ClientError> {
        let mut pending = self.pending.lock().map_err(|_| ClientError::Closed)?;
        if let Some(why) = &pending.ended {
            return Err(why.error());
        }
        pending.waiting.insert(id, Waiter { answer, on_ok });
        Ok(())
    }

    /// Resolves once the connection has ended and everything that arrived before the
    /// end has been routed.
    pub(super) async fn finished(&self) {
        self.finished.notified().await;
    }

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

/// A running connection: its tasks and the ends the [`Client`](super::Client) keeps.
/// Dropping it stops both tasks, which closes the socket.
pub(super) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) writer: mpsc::Sender<Bytes>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Where the reader hands server events.
pub(super) enum Sink {
    /// As they come: a client that does not reconnect.
    Events(mpsc::Sender<Event>),
    /// Wrapped, with each room's messages passed once (a reconnecting client).
    Updates {
        updates: mpsc::Sender<Update>,
        marks: Arc<Mutex<Marks>>,
    },
}

/// Starts the reader and the writer on a connection whose welcome has been read;
/// `buf` holds what arrived after it. Events go to `sink` once `listening` is set.
pub(super) fn start(
    read_half: ReadHalf,
    write_half: WriteHalf,
    buf: BytesMut,
    keepalive: Option<Keepalive>,
    sink: Sink,
    listening: Arc<AtomicBool>,
) -> Connection {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        heard: Mutex::new(Heard {
            at: Instant::now(),
            stalled: false,
        }),
        lost: Notify::new(),
        finished: Notify::new(),
    });
    let (writer, outgoing) = mpsc::channel(1024);
    let router = Router {
        shared: Arc::clone(&shared),
        sink,
        listening,
        last_words: None,
    };
    let tasks = [
        tokio::spawn(read_task(read_half, buf, router)),
        tokio::spawn(write_task(
            write_half,
            outgoing,
            keepalive,
            Arc::clone(&shared),
        )),
    ];
    Connection {
        shared,
        writer,
        tasks,
    }
}

/// Request `id` as a frame.
pub(super) fn request_frame(id: u64, request: &Request) -> Bytes {
    let mut buf = BytesMut::new();
    frame::encode_json(&Outgoing { id, request }, &mut buf);
    buf.freeze()
}

/// Where the read task sends what arrives.
struct Router {
    shared: Arc<Shared>,
    sink: Sink,
    listening: Arc<AtomicBool>,
    /// The `error` event that came last, if nothing came after it: why the server is
    /// closing the connection.
    last_words: Option<ErrorBody>,
}

/// Reads frames until the connection ends, routing responses to their waiters and
/// events to the event stream.
async fn read_task(mut socket: ReadHalf, mut buf: BytesMut, mut router: Router) {
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
    shared.finished.notify_one();
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
            match &self.sink {
                Sink::Events(events) => self.deliver(events, event).await,
                Sink::Updates { updates, marks } => {
                    let fresh = marks.lock().map(|mut m| m.admit(&event)).unwrap_or(true);
                    if fresh {
                        self.deliver(updates, Update::Event(event)).await;
                    }
                }
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
            if let Some(on_ok) = waiter.on_ok {
                on_ok(&map);
            }
            Ok(Value::Object(map))
        } else {
            Err(map
                .get("error")
                .cloned()
                .and_then(|e| serde_json::from_value::<ErrorBody>(e).ok())
                .unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "malformed error response")))
        };
        let _ = waiter.answer.send(answer);
    }

    /// Hands `item` to the application, once it listens. A full stream holds the
    /// reader (the server's silence meanwhile proves nothing); a dropped one means the
    /// application stopped listening: fine.
    async fn deliver<T>(&self, to: &mpsc::Sender<T>, item: T) {
        if !self.listening.load(Ordering::Relaxed) {
            return;
        }
        match to.try_send(item) {
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.shared.hear(true);
                let _ = to.send(item).await;
                self.shared.hear(false);
            }
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Completes `work`, or gives `None` at `deadline` (never, when there is none).
pub(super) async fn within<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Option<T> {
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
    mut socket: WriteHalf,
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
