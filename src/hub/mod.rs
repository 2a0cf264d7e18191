//! The shared state every session serves from: who is online under which name, and the
//! chat rooms. Plain synchronous state behind one short-held lock: it never sees bytes or
//! dialects and never waits for a client, because pushing to a queue never blocks.

mod projection;
mod resume;
mod rooms;
mod token;

// foldhash, not std's SipHash: a third of the hashing cost per lookup, still seeded per
// process, so names chosen by clients cannot be made to collide.
use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::outbound::{Outbox, SharedEvent};
use crate::protocol::{ClientId, ErrorBody, ErrorCode, Event, UserInfo};

pub use projection::Stored;
pub use resume::{Departure, Ending, Proof};
pub use resume::{ParkedSeat, ParkedSession};
use rooms::Room;
pub use rooms::{After, RoomLimits, RoomView};
pub use token::{Token, digest_matches};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("the name {0} is in use by a client online now")]
    NameTaken(String),
    #[error("this connection already said hello as {0}")]
    AlreadyRegistered(String),
    #[error("say hello first")]
    NotRegistered,
    #[error("no user {0} is online")]
    NoSuchUser(String),
    #[error("no room {0}")]
    NoSuchRoom(String),
    #[error("a room {0} exists already")]
    RoomExists(String),
    #[error("you are not a member of room {0}")]
    NotMember(String),
    #[error("only the owner of room {0} can close it")]
    NotOwner(String),
    #[error("the server has {0} rooms open, as many as it allows (--max-rooms)")]
    TooManyRooms(usize),
    #[error("room {0} has {1} members, as many as a room may have (--max-room-members)")]
    RoomFull(String, usize),
    #[error("you are in {0} rooms, as many as one client may be in (--max-rooms-per-client)")]
    InTooManyRooms(usize),
    /// A cluster node's NATS did not confirm the change: it is not acknowledged (and
    /// may or may not have taken effect).
    #[error("not acknowledged: the cluster did not confirm it ({0})")]
    Unavailable(String),
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::NameTaken(_) => ErrorCode::NameTaken,
            HubError::AlreadyRegistered(_) => ErrorCode::BadRequest,
            HubError::NotRegistered => ErrorCode::NotRegistered,
            HubError::NoSuchUser(_) => ErrorCode::NoSuchUser,
            HubError::NoSuchRoom(_) => ErrorCode::NoSuchRoom,
            HubError::RoomExists(_) => ErrorCode::RoomExists,
            HubError::NotMember(_) => ErrorCode::NotMember,
            HubError::NotOwner(_) => ErrorCode::NotOwner,
            HubError::TooManyRooms(_) | HubError::RoomFull(..) => ErrorCode::ServerFull,
            HubError::InTooManyRooms(_) => ErrorCode::TooLarge,
            HubError::Unavailable(_) => ErrorCode::Internal,
        }
    }
}

impl From<HubError> for ErrorBody {
    fn from(e: HubError) -> Self {
        ErrorBody::new(e.code(), e.to_string())
    }
}

/// What the hub knows of one connection, or of a session parked after its connection
/// was cut (see `resume.rs`).
#[derive(Debug)]
struct Member {
    /// A boxed `str`, not a `String`: names never change, and every connection holds
    /// a member.
    name: Option<Box<str>>,
    outbox: Outbox,
    /// Rooms this client is in, in the order it entered them.
    rooms: Vec<Seat>,
    /// When it connected, or while it is parked since when, in milliseconds of the
    /// hub's clock.
    since_ms: u64,
    /// What takes the session over after a cut; none while resume is off.
    token: Option<Token>,
    /// The session is parked (see `resume.rs`).
    parked: bool,
    /// A push to its queue failed: the connection is ending, and nothing more is
    /// queued for it.
    lost: bool,
}

impl Member {
    /// Online: named, and neither parked nor losing its connection.
    fn reachable(&self) -> bool {
        !self.parked && !self.lost
    }
}

// Every connection has a member, idle or not: resume added a token and two flags to
// it, and must not add more.
const _MEMBERS_STAY_SMALL: () = assert!(std::mem::size_of::<Member>() <= 80);

/// A member's place in one room: what resuming it must replay from.
#[derive(Debug)]
struct Seat {
    room: String,
    /// The `seq` of its own last `say` here.
    said: u64,
    /// The last `seq` queued to its connection, once that connection was lost; while
    /// it is live, everything up to the room's latest was.
    queued: Option<u64>,
}

impl Seat {
    fn new(room: &str) -> Self {
        Seat {
            room: room.to_owned(),
            said: 0,
            queued: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<ClientId, Member>,
    /// Names by their [`name_key`], online or parked: unique without regard to case,
    /// while each member keeps the case it is displayed in.
    by_name: HashMap<String, ClientId>,
    rooms: HashMap<String, Room>,
    /// Sessions parked now.
    parked: usize,
    /// Rooms created so far: each one's epoch is new.
    created: u64,
    /// Where the events queued for clients are counted.
    metrics: Arc<Metrics>,
}

/// What the operator chooses of the hub's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    pub rooms: RoomLimits,
    /// Messages each room keeps for `history`, `join_room ... after` and resume.
    pub history: usize,
    /// How long a cut session is kept for its client to resume; zero turns resume off.
    pub resume_grace: Duration,
    /// Sessions parked at once, at most.
    pub max_parked: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            rooms: RoomLimits::default(),
            history: 1000,
            resume_grace: Duration::from_secs(30),
            max_parked: 1024,
        }
    }
}

#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    /// The start of the hub's clock (tokio's, so that tests can pause it).
    epoch: Instant,
    clock: ServedClock,
    config: HubConfig,
    /// Random per process, so that a room's epoch differs from every epoch of an
    /// earlier run of the server.
    nonce: u64,
}

/// The clock that client deadlines are judged by: time during which the server ran.
/// Each sweep advances it by the real time since the last one, but never by more than
/// one sweep period: a server that was stopped (SIGSTOP, a paused VM, a disk stall on
/// the one-thread server) does not hold the stall against its clients, who could not
/// be served meanwhile.
#[derive(Debug, Default)]
struct ServedClock {
    /// Milliseconds of served time.
    served_ms: AtomicU64,
    /// The real time of the last sweep, in milliseconds since the hub's epoch.
    last_real_ms: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

/// What the sweep holds connections to; see [`Hub::sweep`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From connecting to the end of the handshake.
    pub handshake: Duration,
    /// How long an outbound queue may stay over its bounds.
    pub write_deadline: Duration,
}

impl Timeouts {
    /// How often the sweep runs: a deadline is kept to within a tenth of it (at least
    /// 50 ms, at most a second).
    pub fn period(&self) -> Duration {
        (self.handshake.min(self.write_deadline) / 10)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Hub::counted(config, Arc::default())
    }

    /// A hub that counts the events it queues for clients into `metrics`.
    pub fn counted(config: HubConfig, metrics: Arc<Metrics>) -> Self {
        Hub {
            state: Mutex::new(State {
                metrics,
                ..State::default()
            }),
            epoch: Instant::now(),
            clock: ServedClock::default(),
            config,
            nonce: u64::from_le_bytes(token::random_bytes()),
        }
    }

    /// Whether sessions are parked for resuming.
    pub fn resumes(&self) -> bool {
        !self.config.resume_grace.is_zero()
    }

    /// Milliseconds of served time (see [`ServedClock`]), the clock of connection
    /// deadlines.
    pub fn now_ms(&self) -> u64 {
        self.clock.served_ms.load(Ordering::Relaxed)
    }

    /// Expires every connection past a deadline: no handshake within its timeout, or an
    /// outbound queue over its bounds for longer than the write deadline. One sweep of
    /// the table replaces a timer in every session (a timer was a tenth of an idle
    /// session). Silence is no deadline: a quiet client is kept, and a dead one is
    /// found by TCP keepalive. Parked sessions whose grace is over are ended, as is
    /// (parked, if it can be) a session whose connection is gone without a word (its
    /// task panicked); the names of the sessions ended are returned.
    pub fn sweep(&self, timeouts: Timeouts) -> Vec<String> {
        let real = self.epoch.elapsed().as_millis() as u64;
        let last = self.clock.last_real_ms.swap(real, Ordering::Relaxed);
        let step = real
            .saturating_sub(last)
            .min(timeouts.period().as_millis() as u64);
        let now = self.clock.served_ms.fetch_add(step, Ordering::Relaxed) + step;
        let handshake = timeouts.handshake.as_millis() as u64;
        let deadline = timeouts.write_deadline.as_millis() as u64;
        let grace = self.config.resume_grace.as_millis() as u64;
        let mut state = self.lock();
        let mut expired = Vec::new();
        let mut orphaned = Vec::new();
        for (&id, member) in &state.clients {
            if member.parked {
                if now.saturating_sub(member.since_ms) >= grace {
                    expired.push(id);
                }
                continue;
            }
            if member.outbox.is_orphaned() {
                orphaned.push(id);
                continue;
            }
            let signal = member.outbox.signal();
            if member.name.is_none()
                && !signal.is_greeted()
                && now.saturating_sub(member.since_ms) >= handshake
            {
                signal.expire("handshake timeout: no hello in time");
            }
            member.outbox.check(now, deadline);
        }
        let mut ended: Vec<String> = expired
            .into_iter()
            .filter_map(|id| state.remove(id))
            .collect();
        for id in orphaned {
            tracing::warn!(
                client_id = id,
                "a session's connection ended without cleaning up"
            );
            if let Departure::Gone(Some(name)) = self.leave(&mut state, id, Ending::Cut, now) {
                ended.push(name);
            }
        }
        ended
    }

    /// Sessions parked now.
    pub fn parked_count(&self) -> usize {
        self.lock().parked
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent at every step we
        // take, so carrying on with a poisoned lock is safe and keeps the server up.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new connection: reachable for events from now on, but unnamed until `hello`.
    pub fn connect(&self, id: ClientId, outbox: Outbox) {
        let now = self.now_ms();
        self.lock().clients.insert(
            id,
            Member {
                name: None,
                outbox,
                rooms: Vec::new(),
                since_ms: now,
                token: None,
                parked: false,
                lost: false,
            },
        );
    }

    /// Whether connection `id` may still say hello as `name`: it has no name yet and
    /// nobody online holds `name` (in any case); a parked session may hold it. Checked
    /// before a password is, so that a hopeless `hello` costs no hash;
    /// [`Hub::claim_name`] decides.
    pub fn may_claim(&self, id: ClientId, name: &str) -> Result<Holder, HubError> {
        let state = self.lock();
        let member = state.clients.get(&id).ok_or(HubError::NotRegistered)?;
        if let Some(current) = &member.name {
            return Err(HubError::AlreadyRegistered(current.to_string()));
        }
        match state.by_name.get(name_key(name).as_ref()) {
            None => Ok(Holder::Free),
            Some(holder) if state.clients.get(holder).is_some_and(|m| m.parked) => {
                Ok(Holder::Parked)
            }
            Some(_) => Err(HubError::NameTaken(name.to_owned())),
        }
    }

    /// Gives connection `id` the name `name`, if no one online holds it in any case,
    /// and returns the session's resume token (none while resume is off). Called only
    /// once the name's password (if any) has been proven: until then the connection
    /// holds nothing, is listed nowhere and is told nothing of the name.
    pub fn claim_name(&self, id: ClientId, name: &str) -> Result<Option<Token>, HubError> {
        let token = self.resumes().then(Token::random);
        let mut state = self.lock();
        let State {
            clients, by_name, ..
        } = &mut *state;
        let member = clients.get_mut(&id).ok_or(HubError::NotRegistered)?;
        if let Some(current) = &member.name {
            return Err(HubError::AlreadyRegistered(current.to_string()));
        }
        match by_name.entry(name_key(name).into_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => {
                return Err(HubError::NameTaken(name.to_owned()));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
            }
        }
        member.name = Some(name.into());
        member.token.clone_from(&token);
        Ok(token)
    }

    /// Everyone who has completed `hello`, in the order they connected.
    pub fn users(&self) -> Vec<UserInfo> {
        let state = self.lock();
        let mut users: Vec<UserInfo> = state
            .clients
            .iter()
            .filter(|(_, member)| !member.parked)
            .filter_map(|(&client_id, member)| {
                Some(UserInfo {
                    client_id,
                    name: member.name.as_deref()?.to_owned(),
                })
            })
            .collect();
        users.sort_unstable_by_key(|u| u.client_id);
        users
    }

    /// How many rooms there may be, and how large.
    pub fn room_limits(&self) -> RoomLimits {
        self.config.rooms
    }

    /// The name of the named client online as `id`.
    pub fn name_of(&self, id: ClientId) -> Option<String> {
        let state = self.lock();
        let member = state.clients.get(&id).filter(|m| !m.parked)?;
        member.name.as_deref().map(str::to_owned)
    }

    /// The name and rooms of each of the sessions `ids` the hub knows, in one look.
    pub fn names_and_rooms(
        &self,
        ids: impl IntoIterator<Item = ClientId>,
    ) -> HashMap<ClientId, (Option<String>, Vec<String>)> {
        let state = self.lock();
        ids.into_iter()
            .filter_map(|id| {
                let member = state.clients.get(&id)?;
                let name = member.name.as_deref().map(str::to_owned);
                let rooms = member.rooms.iter().map(|seat| seat.room.clone()).collect();
                Some((id, (name, rooms)))
            })
            .collect()
    }

    /// Connections now (parked sessions have none).
    pub fn online_count(&self) -> usize {
        let state = self.lock();
        state.clients.len() - state.parked
    }

    /// Tells every connection the server is shutting down; each says so to its client
    /// after what is already queued, and closes.
    pub fn drain_all(&self) {
        for member in self.lock().clients.values() {
            if !member.parked {
                member.outbox.drain();
            }
        }
    }

    /// Tells `to`, if online, that mail from `from` is waiting.
    pub fn notify_mail(&self, to: &str, from: &str, message_id: u64) {
        let state = self.lock();
        if let Some(member) = (state.by_name.get(name_key(to).as_ref()))
            .and_then(|id| state.clients.get(id))
            .filter(|member| member.reachable())
        {
            let event = SharedEvent::new(Event::Message {
                from: from.to_owned(),
                message_id,
            });
            if member.outbox.push(event).is_ok() {
                state.metrics.delivered(1);
            }
        }
    }

    /// Sends `event` to every connection, named or not (the server is stopping).
    pub fn broadcast(&self, event: Event) {
        let event = SharedEvent::new(event);
        let state = self.lock();
        let mut queued = 0;
        for member in state.clients.values() {
            if !member.parked && member.outbox.push(Arc::clone(&event)).is_ok() {
                queued += 1;
            }
        }
        state.metrics.delivered(queued);
    }

    /// Forgets client `id`, connected or parked: its name is free again, it leaves
    /// every room it is in, and the rooms it owns close. Returns its name, if it had
    /// one.
    pub fn disconnect(&self, id: ClientId) -> Option<String> {
        self.lock().remove(id)
    }
}

/// Who holds a name that a `hello` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// A parked session, which the right token or password takes over.
    Parked,
}

/// The form of a name that uniqueness is judged by: names are ASCII, and unique
/// without regard to case.
/// Borrowed when the name is in lower case already, as most are, so that finding the
/// recipient of a send allocates nothing.
pub fn name_key(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

impl State {
    /// Takes client `id` out of the hub (see [`Hub::disconnect`]).
    fn remove(&mut self, id: ClientId) -> Option<String> {
        let member = self.clients.remove(&id)?;
        if member.parked {
            self.parked -= 1;
        }
        let name = String::from(member.name?);
        self.by_name.remove(name_key(&name).as_ref());
        for seat in member.rooms {
            self.depart(id, &name, &seat.room);
        }
        Some(name)
    }

    /// Takes client `id` out of the hub and its rooms telling no one: the server is
    /// stopping, and its rooms end with it.
    fn remove_quietly(&mut self, id: ClientId) -> Option<String> {
        let member = self.clients.remove(&id)?;
        if member.parked {
            self.parked -= 1;
        }
        for seat in &member.rooms {
            if let Some(room) = self.rooms.get_mut(&seat.room) {
                room.remove_member(id);
            }
        }
        let name = String::from(member.name?);
        self.by_name.remove(name_key(&name).as_ref());
        Some(name)
    }

    pub(super) fn named(&self, id: ClientId) -> Result<&str, HubError> {
        self.clients
            .get(&id)
            .and_then(|m| m.name.as_deref())
            .ok_or(HubError::NotRegistered)
    }

    /// Queues `event` for each of `members` except `except` that is reachable; returns
    /// those whose queue refused it (their connection is ending).
    pub(super) fn deliver(
        &self,
        members: &[ClientId],
        except: ClientId,
        event: Event,
    ) -> Vec<ClientId> {
        let event = SharedEvent::new(event);
        let mut failed = Vec::new();
        let mut queued = 0;
        for &id in members.iter().filter(|&&id| id != except) {
            if let Some(member) = self.clients.get(&id).filter(|m| m.reachable()) {
                if member.outbox.push(Arc::clone(&event)).is_ok() {
                    queued += 1;
                } else {
                    failed.push(id);
                }
            }
        }
        // Once per event, not once per member.
        self.metrics.delivered(queued);
        failed
    }

    /// Marks members whose queue refused an event: their connection is ending, and
    /// what a resume replays for each room starts after what was queued before.
    /// `failed_at` is the room and `seq` of the message refused, if it was one.
    pub(super) fn lost(&mut self, failed: Vec<ClientId>, failed_at: Option<(&str, u64)>) {
        for id in failed {
            let Some(member) = self.clients.get_mut(&id) else {
                continue;
            };
            member.lost = true;
            for seat in &mut member.rooms {
                let latest = self.rooms.get(&seat.room).map_or(0, |room| room.seq());
                seat.queued = Some(match failed_at {
                    Some((room, seq)) if room == seat.room => seq - 1,
                    _ => latest,
                });
            }
        }
    }
}
