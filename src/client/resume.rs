//! Coming back after a cut: the reconnecting client's watch over its connection, the
//! backoff between tries, and the resume handshake (DESIGN "Session resume"). A cut
//! before the first successful `hello` ends the client as it would a plain one: there
//! is no session to come back to.
//!
//! After a cut the supervisor connects again and, before any request of the
//! application may use the new connection, says `hello` with the resume token and
//! what the application has seen of each room, then a `ping`. The server queues a
//! resume's replay right after its answer, so the ping's answer marks the end of what
//! was missed: everything before it is handed over in one [`Reconnected`].

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conn::{self, Connection, Sink, within};
use super::link::{Core, Gone, Link};
use super::{CLIENT_MAX_FRAME, ClientError, HelloReply, KEEPALIVE_ID, Opened, open};
use crate::frame;
use crate::protocol::{ClientId, ErrorBody, ErrorCode, Event, Request, RoomPosition, Seen};

/// What a reconnecting client tells the application, in the order it happened.
#[derive(Debug, Clone)]
pub enum Update {
    /// A server event, as [`Client::take_events`](super::Client::take_events) gives
    /// them; a room's messages come once each, in order.
    Event(Event),
    /// The connection was cut (the error says how); the client is reconnecting.
    /// Requests that were waiting for an answer failed with
    /// [`ClientError::Interrupted`]; new ones wait for the new connection.
    Lost(Arc<ClientError>),
    /// Connected again; what was missed meanwhile follows in it, the live events after.
    Reconnected(Reconnected),
    /// No try succeeded within the time allowed, or the server refused the session for
    /// good (a wrong password): the client is closed, and this is the last update.
    GaveUp(Arc<ClientError>),
}

/// The outcome of a reconnection.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnected {
    /// The server took the old session over: same client id, same rooms. When false
    /// (the server restarted, or the grace ran out), this is a new session and every
    /// room the client was in is in `gone`.
    pub resumed: bool,
    pub client_id: ClientId,
    /// The room messages said while the client was away, in order, each once:
    /// `room_message` events with `replay: true`.
    pub missed: Vec<Event>,
    /// Rooms where more was missed than the server still keeps: none of their missed
    /// messages are in `missed` (`history` pages what is kept).
    pub gaps: Vec<Gap>,
    /// Rooms the client was in and is no longer (closed meanwhile, or the session not
    /// resumed).
    pub gone: Vec<String>,
}

/// A room whose missed messages the server no longer all keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub room: String,
    /// The oldest `seq` the room still keeps.
    pub oldest: u64,
}

/// The last `seq` handed to the application, by room: what a resume asks the server
/// to replay after, and what a replay is checked against so that nothing comes twice.
#[derive(Debug, Default)]
pub(super) struct Marks {
    rooms: BTreeMap<String, u64>,
}

impl Marks {
    /// Whether `event` is new to the application; notes it if so.
    pub(super) fn admit(&mut self, event: &Event) -> bool {
        match event {
            Event::RoomMessage { room, seq, .. } if *seq > 0 => match self.rooms.get_mut(room) {
                Some(last) if *seq <= *last => false,
                Some(last) => {
                    *last = *seq;
                    true
                }
                None => {
                    self.rooms.insert(room.clone(), *seq);
                    true
                }
            },
            Event::RoomClosed { room, .. } => {
                self.rooms.remove(room);
                true
            }
            _ => true,
        }
    }

    /// The client is in `room`, and has had everything up to `seq`.
    pub(super) fn set(&mut self, room: &str, seq: u64) {
        self.rooms.insert(room.to_owned(), seq);
    }

    /// The client said `seq` itself: it need not come back.
    pub(super) fn raise(&mut self, room: &str, seq: u64) {
        if let Some(last) = self.rooms.get_mut(room) {
            *last = (*last).max(seq);
        }
    }

    pub(super) fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    fn seen(&self) -> Seen {
        self.rooms.clone()
    }
}

/// Watches the connection; after a cut, reconnects and resumes, until the client
/// leaves (`bye`), is dropped, or gives up.
pub(super) async fn supervise(
    core: Arc<Core>,
    updates: mpsc::Sender<Update>,
    mut line: Arc<Connection>,
) {
    loop {
        line.shared.finished().await;
        if !core.would_return() {
            let gone = if core.leaving.load(Ordering::Relaxed) {
                Gone::Closed
            } else {
                Gone::Ended(line)
            };
            core.link.send_replace(Link::Gone(gone));
            return;
        }
        let why = line.shared.ended_error().unwrap_or(ClientError::Closed);
        core.link.send_replace(Link::Down);
        tell(&core, &updates, Update::Lost(Arc::new(why))).await;
        match reconnect(&core, &updates).await {
            Ok(next) => {
                line = Arc::new(next);
                core.link.send_replace(Link::Up(Arc::clone(&line)));
            }
            Err(gone) => {
                core.link.send_replace(Link::Gone(gone.clone()));
                if let Gone::GaveUp(_) = gone {
                    tell(&core, &updates, Update::GaveUp(Arc::new(gone.error()))).await;
                }
                return;
            }
        }
    }
}

/// Hands `update` to the application, once it listens.
async fn tell(core: &Core, updates: &mpsc::Sender<Update>, update: Update) {
    if core.listening.load(Ordering::Relaxed) {
        let _ = updates.send(update).await;
    }
}

/// Tries again with backoff until a connection is back (its missed messages told),
/// the time is up, or the client leaves.
async fn reconnect(core: &Core, updates: &mpsc::Sender<Update>) -> Result<Connection, Gone> {
    let Some(backoff) = core.options.reconnect else {
        return Err(Gone::Closed);
    };
    let cut = Instant::now();
    let mut wait = backoff.first;
    let mut last = None;
    loop {
        let at = Instant::now() + jitter(wait);
        if at.duration_since(cut) > backoff.give_up_after {
            let tried = match last {
                Some(last) => format!(" (the last try: {last})"),
                None => String::new(),
            };
            return Err(Gone::GaveUp(format!(
                "not back within {} s{tried}",
                backoff.give_up_after.as_secs_f64()
            )));
        }
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = core.leave.notified() => return Err(Gone::Closed),
        }
        if core.leaving.load(Ordering::Relaxed) {
            return Err(Gone::Closed);
        }
        match attempt(core).await {
            Ok(back) => return Ok(settle(core, updates, back).await),
            Err(e) if for_good(&e) => return Err(Gone::GaveUp(e.to_string())),
            Err(e) => last = Some(e),
        }
        wait = wait.saturating_mul(2).min(backoff.most);
    }
}

/// A refusal that no later try would change.
fn for_good(e: &ClientError) -> bool {
    match e {
        ClientError::Server(body) => {
            matches!(body.code, ErrorCode::AuthFailed | ErrorCode::BadName)
        }
        ClientError::OtherDialect(_) | ClientError::Address { .. } => true,
        _ => false,
    }
}

/// `wait`, give or take a quarter, so that clients cut at once do not all come back
/// at once.
fn jitter(wait: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    let unit = (hasher.finish() % 1001) as f64 / 1000.0;
    wait.mul_f64(0.75 + unit / 2.0)
}

/// A connection made again, its handshake done, not yet started.
struct Back {
    opened: Opened,
    hello: Option<HelloReply>,
    /// What arrived between the hello's answer and the ping's.
    window: Vec<Event>,
}

/// One try: connect, and resume the session if there is one.
async fn attempt(core: &Core) -> Result<Back, ClientError> {
    let after = core.options.connect_timeout;
    let mut opened = open(
        core.addr.as_str(),
        &core.addr,
        after,
        core.options.tls.as_ref(),
    )
    .await?;
    let login = core.login.lock().ok().and_then(|l| l.clone());
    let Some(login) = login else {
        return Ok(Back {
            opened,
            hello: None,
            window: Vec::new(),
        });
    };
    let seen = core.marks.lock().map(|m| m.seen()).unwrap_or_default();
    let hello = Request::Hello(Box::new(crate::protocol::Hello {
        name: login.name,
        password: login.password,
        resume: login.token,
        seen: (!seen.is_empty()).then_some(seen),
    }));
    let hello_id = core.next_id.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now().checked_add(after);
    match within(deadline, exchange(&mut opened, hello_id, &hello)).await {
        Some(done) => {
            let (hello, window) = done?;
            Ok(Back {
                opened,
                hello: Some(hello),
                window,
            })
        }
        None => Err(ClientError::Unresponsive(after)),
    }
}

/// Sends `hello` and a `ping`; reads up to the ping's answer.
async fn exchange(
    opened: &mut Opened,
    hello_id: u64,
    hello: &Request,
) -> Result<(HelloReply, Vec<Event>), ClientError> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&conn::request_frame(hello_id, hello));
    out.extend_from_slice(&conn::request_frame(KEEPALIVE_ID, &Request::Ping));
    opened.write.write_all(&out).await?;
    let mut reply = None;
    let mut window = Vec::new();
    let mut last_words = None;
    loop {
        while let Some(payload) = frame::decode(&mut opened.buf, CLIENT_MAX_FRAME)? {
            let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&payload) else {
                continue;
            };
            if map.contains_key("event") {
                if let Ok(event) = serde_json::from_value::<Event>(Value::Object(map)) {
                    last_words = match &event {
                        Event::Error { code, message } => {
                            Some(ErrorBody::new(*code, message.clone()))
                        }
                        _ => None,
                    };
                    window.push(event);
                }
                continue;
            }
            let id = map.get("id").and_then(Value::as_u64);
            if map.get("ok") != Some(&Value::Bool(true)) {
                let body = map
                    .get("error")
                    .cloned()
                    .and_then(|e| serde_json::from_value::<ErrorBody>(e).ok())
                    .unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "malformed error"));
                return Err(ClientError::Server(body));
            }
            if id == Some(hello_id) {
                reply = Some(
                    serde_json::from_value::<HelloReply>(Value::Object(map))
                        .map_err(|e| ClientError::Protocol(format!("hello: {e}")))?,
                );
            } else if id == Some(KEEPALIVE_ID) {
                return reply
                    .map(|reply| (reply, window))
                    .ok_or_else(|| ClientError::Protocol("ping answered before hello".into()));
            }
        }
        if opened.read.read_buf(&mut opened.buf).await? == 0 {
            return Err(last_words.map_or(ClientError::Closed, ClientError::Dropped));
        }
    }
}

/// Takes in the resumed session (or the new one): the token, the client id, which
/// rooms are gone; tells the application; starts the connection.
async fn settle(core: &Core, updates: &mpsc::Sender<Update>, back: Back) -> Connection {
    let Back {
        opened,
        hello,
        window,
    } = back;
    let (resumed, kept) = match &hello {
        Some(reply) => (
            reply.resumed == Some(true),
            reply.rooms.clone().unwrap_or_default(),
        ),
        None => (false, Vec::new()),
    };
    let client_id = hello.as_ref().map_or(opened.client_id, |r| r.client_id);
    core.client_id.store(client_id, Ordering::Relaxed);
    if let (Some(reply), Ok(mut login)) = (&hello, core.login.lock())
        && let Some(login) = login.as_mut()
    {
        login.token = reply.resume_token.clone();
    }
    let mut reconnected = Reconnected {
        resumed,
        client_id,
        missed: Vec::new(),
        gaps: Vec::new(),
        gone: Vec::new(),
    };
    let mut after = Vec::new();
    if let Ok(mut marks) = core.marks.lock() {
        reconnected.gone = gone_rooms(&marks, resumed, &kept);
        for room in &reconnected.gone {
            marks.forget(room);
        }
        for event in window {
            match event {
                Event::ResumeGap { room, oldest } => {
                    let latest = kept.iter().find(|k| k.room == room).map(|k| k.seq);
                    marks.set(&room, latest.unwrap_or(0));
                    reconnected.gaps.push(Gap { room, oldest });
                }
                event @ Event::RoomMessage { replay: true, .. } => {
                    if marks.admit(&event) {
                        reconnected.missed.push(event);
                    }
                }
                event => {
                    if marks.admit(&event) {
                        after.push(event);
                    }
                }
            }
        }
    }
    tell(core, updates, Update::Reconnected(reconnected)).await;
    for event in after {
        tell(core, updates, Update::Event(event)).await;
    }
    let sink = Sink::Updates {
        updates: updates.clone(),
        marks: Arc::clone(&core.marks),
    };
    let Opened {
        read, write, buf, ..
    } = opened;
    conn::start(
        read,
        write,
        buf,
        core.options.keepalive,
        sink,
        Arc::clone(&core.listening),
    )
}

/// The rooms the client was in that the new session does not have.
fn gone_rooms(marks: &Marks, resumed: bool, kept: &[RoomPosition]) -> Vec<String> {
    marks
        .rooms
        .keys()
        .filter(|room| !resumed || !kept.iter().any(|k| &k.room == *room))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(room: &str, seq: u64) -> Event {
        Event::RoomMessage {
            room: room.into(),
            from: "nina".into(),
            text: "hi".into(),
            sent_at: String::new(),
            seq,
            replay: false,
        }
    }

    #[test]
    fn a_room_message_is_handed_over_once() {
        let mut marks = Marks::default();
        marks.set("lobby", 3);
        assert!(!marks.admit(&said("lobby", 2)));
        assert!(!marks.admit(&said("lobby", 3)));
        assert!(marks.admit(&said("lobby", 4)));
        assert!(!marks.admit(&said("lobby", 4)));
        assert!(marks.admit(&said("other", 1)));
        // Without a seq (an older server) nothing can be judged: all pass.
        assert!(marks.admit(&said("lobby", 0)));
        marks.raise("lobby", 9);
        assert!(!marks.admit(&said("lobby", 9)));
        marks.raise("unknown", 9);
        assert!(!marks.seen().contains_key("unknown"));
    }

    #[test]
    fn a_closed_room_is_forgotten_and_may_start_again() {
        let mut marks = Marks::default();
        marks.set("lobby", 40);
        let closed = Event::RoomClosed {
            room: "lobby".into(),
            by: "nina".into(),
        };
        assert!(marks.admit(&closed));
        assert!(marks.admit(&said("lobby", 1)));
    }

    #[test]
    fn rooms_not_resumed_are_gone() {
        let mut marks = Marks::default();
        marks.set("a", 1);
        marks.set("b", 2);
        let kept = [RoomPosition {
            room: "a".into(),
            epoch: "e".into(),
            seq: 5,
        }];
        assert_eq!(gone_rooms(&marks, true, &kept), ["b"]);
        assert_eq!(gone_rooms(&marks, false, &kept), ["a", "b"]);
    }

    #[test]
    fn waits_are_jittered_around_the_backoff() {
        for _ in 0..100 {
            let wait = jitter(Duration::from_millis(1000));
            assert!(wait >= Duration::from_millis(750) && wait <= Duration::from_millis(1250));
        }
    }
}
