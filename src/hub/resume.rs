//! Parked sessions and their resumption. A connection cut without `bye` leaves its
//! session parked for the resume grace: still a member and owner of its rooms, which
//! go on numbering messages, but unlisted and sent nothing. Its client takes it back
//! with the session's token (or the name's password) and is replayed what it missed;
//! when the grace ends, the session ends as if it had said `bye`.

use std::sync::{Arc, LazyLock};

use super::rooms::replay_items;
use super::{Hub, HubError, State, Token, name_key};
use crate::outbound::{Bounds, CloseReason, Closing, OutQueue, Outbound, Outbox, SharedEvent};
use crate::protocol::{ClientId, Event, Reply, ResumeToken, RoomPosition, Seen};

/// The outbox of every parked session: one closed queue for all of them, so that a
/// parked session keeps nothing of its connection.
static PARKED: LazyLock<Outbox> = LazyLock::new(|| {
    let queue = OutQueue::new(Bounds {
        frames: 2,
        bytes: 1,
    });
    queue.close();
    Outbox::new(Arc::new(queue))
});

/// How a session's connection ended, in the hub.
#[derive(Debug, PartialEq, Eq)]
pub enum Departure {
    /// The session is over; its name, if it had one.
    Gone(Option<String>),
    /// Parked for its client to resume.
    Parked(String),
    /// Another connection had taken the session over already.
    Replaced,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client said `bye`: its session ends.
    Bye,
    /// Without `bye`: its session is parked for resuming, when it can be.
    Cut,
    /// The server is stopping: the session ends without a word to anyone, since
    /// rooms end with the server and are not closed one by one.
    Shutdown,
}

/// What proves a `hello` may take a session over.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// The session's resume token, which takes over a parked session, or a live one
    /// whose connection the server has not yet seen end.
    Token(&'a ResumeToken),
    /// The name's password, checked already: it takes over a parked session only.
    Password,
}

impl Hub {
    /// The connection whose queue is `queue` ended: when it was cut, and while resume
    /// is on and there is room, its session is parked; otherwise it ends. A connection
    /// whose session was taken over by another leaves nothing behind.
    pub fn depart(&self, id: ClientId, queue: &OutQueue, how: Ending) -> Departure {
        let now = self.now_ms();
        let mut state = self.lock();
        let Some(member) = state.clients.get(&id) else {
            return Departure::Gone(None);
        };
        if !member.outbox.is(queue) {
            return Departure::Replaced;
        }
        self.leave(&mut state, id, how, now)
    }

    /// What [`Hub::depart`] does once it knows the session is the connection's own.
    pub(super) fn leave(
        &self,
        state: &mut State,
        id: ClientId,
        how: Ending,
        now: u64,
    ) -> Departure {
        let Some(member) = state.clients.get(&id) else {
            return Departure::Gone(None);
        };
        if how == Ending::Shutdown {
            return Departure::Gone(state.remove_quietly(id));
        }
        let park = how == Ending::Cut;
        let parkable = park
            && self.resumes()
            && member.name.is_some()
            && state.parked < self.config.max_parked;
        if !parkable {
            if park && member.name.is_some() && self.resumes() {
                tracing::warn!(
                    client_id = id,
                    parked = state.parked,
                    "not parked: as many sessions are parked as the server keeps"
                );
            }
            return Departure::Gone(state.remove(id));
        }
        state.parked += 1;
        let State { clients, rooms, .. } = state;
        let Some(member) = clients.get_mut(&id) else {
            return Departure::Gone(None);
        };
        member.parked = true;
        member.since_ms = now;
        member.outbox = PARKED.clone();
        for seat in &mut member.rooms {
            let latest = rooms.get(&seat.room).map_or(0, |room| room.seq());
            seat.queued.get_or_insert(latest);
        }
        Departure::Parked(member.name.as_deref().unwrap_or_default().to_owned())
    }

    /// Ends the parked session holding `name`, as if it had said `bye`; returns its
    /// name. A `hello` without the proof to resume it does this, so that a client
    /// restarted without its token is not locked out of its name.
    pub fn end_parked(&self, name: &str) -> Option<String> {
        let mut state = self.lock();
        let id = *state.by_name.get(name_key(name).as_ref())?;
        state.clients.get(&id).filter(|m| m.parked)?;
        state.remove(id)
    }

    /// Gives connection `new_id` the session holding `name`, if `proof` allows: the
    /// session keeps its client id, rooms and ownerships, and gets a new token. The
    /// reply `answer` makes is queued first, then, for each room, every kept message
    /// after what the client has seen (`seen`, or else what was queued to the old
    /// connection, or it said itself), or `resume_gap` where those are no longer all
    /// kept; all in one step, before any live message. Returns the session's client
    /// id and name.
    pub fn take_over(
        &self,
        new_id: ClientId,
        name: &str,
        proof: Proof<'_>,
        seen: Option<&Seen>,
        answer: impl FnOnce(Reply) -> Outbound,
    ) -> Result<(ClientId, String), HubError> {
        let token = Token::random();
        let mut state = self.lock();
        let refused = || HubError::NameTaken(name.to_owned());
        let old_id = *state
            .by_name
            .get(name_key(name).as_ref())
            .ok_or_else(refused)?;
        if old_id == new_id {
            return Err(HubError::AlreadyRegistered(name.to_owned()));
        }
        let holder = state.clients.get(&old_id).ok_or_else(refused)?;
        let proven = match proof {
            Proof::Token(given) => holder.token.as_ref().is_some_and(|t| t.matches(given)),
            Proof::Password => holder.parked,
        };
        if !proven {
            return Err(refused());
        }
        match state.clients.get(&new_id) {
            Some(newcomer) if newcomer.name.is_none() => {}
            Some(newcomer) => {
                let current = newcomer.name.as_deref().unwrap_or_default().to_owned();
                return Err(HubError::AlreadyRegistered(current));
            }
            None => return Err(HubError::NotRegistered),
        }
        let Some(newcomer) = state.clients.remove(&new_id) else {
            return Err(HubError::NotRegistered);
        };
        let State {
            clients,
            rooms,
            parked,
            ..
        } = &mut *state;
        let Some(member) = clients.get_mut(&old_id) else {
            return Err(refused());
        };
        if std::mem::take(&mut member.parked) {
            *parked -= 1;
        } else {
            member.outbox.signal().stop(Closing::new(
                CloseReason::Replaced,
                "the session was resumed on another connection",
            ));
        }
        member.outbox = newcomer.outbox;
        member.lost = false;
        member.token = Some(token.clone());
        let display = member.name.as_deref().unwrap_or_default().to_owned();
        let mut positions = Vec::with_capacity(member.rooms.len());
        let mut then = Vec::new();
        for seat in &mut member.rooms {
            let Some(room) = rooms.get(&seat.room) else {
                continue;
            };
            positions.push(RoomPosition {
                room: seat.room.clone(),
                epoch: room.epoch().to_owned(),
                seq: room.seq(),
            });
            let queued = seat.queued.take().unwrap_or(room.seq()).max(seat.said);
            let from = seen
                .and_then(|seen| seen.get(&seat.room).copied())
                .unwrap_or(queued);
            match room.since(from) {
                Some(lines) => then.extend(replay_items(&seat.room, lines)),
                None => then.push(Outbound::Event(SharedEvent::new(Event::ResumeGap {
                    room: seat.room.clone(),
                    oldest: room.oldest(),
                }))),
            }
        }
        let reply = Reply::Hello {
            client_id: old_id,
            name: display.clone(),
            resume_token: Some(token.to_wire()),
            resumed: Some(true),
            rooms: Some(positions),
        };
        let _ = member.outbox.push_item(answer(reply));
        let mut replayed = 0;
        for item in then {
            let events = item.events();
            if member.outbox.push_item(item).is_ok() {
                replayed += events;
            }
        }
        state.metrics.delivered(replayed);
        Ok((old_id, display))
    }
}

/// A parked session as a cluster keeps it, for another node to take over: its name,
/// its token's digest (never the token), and where it stood in each room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParkedSession {
    pub client: ClientId,
    pub name: String,
    /// Hex of the token's SHA-256; none while resume is off.
    pub token: Option<String>,
    pub seats: Vec<ParkedSeat>,
}

/// One room of a parked session: its own last `say` and the last `seq` its connection
/// was given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParkedSeat {
    pub room: String,
    pub said: u64,
    pub queued: Option<u64>,
}

impl Hub {
    /// Session `id`, as another node would take it over, and whether it is parked.
    pub fn session_view(&self, id: ClientId) -> Option<(ParkedSession, bool)> {
        let state = self.lock();
        let member = state.clients.get(&id)?;
        let session = ParkedSession {
            client: id,
            name: member.name.as_deref()?.to_owned(),
            token: (member.token.as_ref())
                .map(|t| t.digest().iter().map(|b| format!("{b:02x}")).collect()),
            seats: (member.rooms.iter())
                .map(|seat| ParkedSeat {
                    room: seat.room.clone(),
                    said: seat.said,
                    queued: seat.queued,
                })
                .collect(),
        };
        Some((session, member.parked))
    }

    /// Takes in a session parked on another node, parked here now, in the rooms this
    /// hub projects (the node follows them first): [`Hub::take_over`] with the proof
    /// checked by the node gives it to its new connection.
    pub fn adopt_parked(&self, session: &ParkedSession) -> Result<(), HubError> {
        let now = self.now_ms();
        let mut state = self.lock();
        let key = name_key(&session.name).into_owned();
        if state.by_name.contains_key(&key) || state.clients.contains_key(&session.client) {
            return Err(HubError::NameTaken(session.name.clone()));
        }
        let mut seats = Vec::new();
        for seat in &session.seats {
            if let Some(room) = state.rooms.get_mut(&seat.room) {
                if !room.members.contains(&session.client) {
                    room.members.push(session.client);
                }
                // A member of another node until now.
                room.others.retain(|other| *other != session.name);
                seats.push(super::Seat {
                    room: seat.room.clone(),
                    said: seat.said,
                    queued: seat.queued,
                });
            }
        }
        state.by_name.insert(key, session.client);
        state.parked += 1;
        state.clients.insert(
            session.client,
            super::Member {
                name: Some(session.name.as_str().into()),
                outbox: PARKED.clone(),
                rooms: seats,
                since_ms: now,
                token: None,
                parked: true,
                lost: false,
            },
        );
        Ok(())
    }

    /// Gives up live session `id` for another node to take over, as a resume with its
    /// token does on one node: if its token's digest is `digest`, its connection is
    /// closed (`replaced`) and the session is parked, or ends when no more can be
    /// parked. `None` when it is not live here with that token.
    pub fn surrender(&self, id: ClientId, digest: &[u8; 32]) -> Option<Departure> {
        let now = self.now_ms();
        let mut state = self.lock();
        let member = state.clients.get(&id)?;
        if member.parked || !member.token.as_ref().is_some_and(|t| t.digest_is(digest)) {
            return None;
        }
        member.outbox.signal().stop(Closing::new(
            CloseReason::Replaced,
            "the session was resumed on another node",
        ));
        Some(self.leave(&mut state, id, Ending::Cut, now))
    }

    /// Lets parked session `id` go without a word to anyone: another node took it
    /// over, rooms and name with it.
    pub fn let_go(&self, id: ClientId) -> Option<String> {
        let mut state = self.lock();
        let member = state.clients.get(&id).filter(|m| m.parked)?;
        let rooms: Vec<String> = member.rooms.iter().map(|seat| seat.room.clone()).collect();
        let name = state.remove_quietly(id)?;
        // Still a member of its rooms, on another node now.
        for room in rooms {
            if let Some(entry) = state.rooms.get_mut(&room)
                && !entry.others.contains(&name)
            {
                entry.others.push(name.clone());
            }
        }
        Some(name)
    }
}
