//! Chat rooms: opened by their owner, joined by anyone named, closed by the owner (or
//! when the owner leaves or disconnects).

use super::{Hub, HubError, State};
use crate::protocol::{ClientId, Event, now_rfc3339};

/// How many rooms there may be, and how large: every room costs the server memory and
/// every member a delivery per message, so none of it is left to clients alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Rooms open at once.
    pub rooms: usize,
    /// Rooms one client is in (created or joined) at once.
    pub per_client: usize,
    /// Members of one room.
    pub members: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            rooms: 10_000,
            per_client: 64,
            members: 10_000,
        }
    }
}

#[derive(Debug)]
pub(super) struct Room {
    owner: ClientId,
    /// In joining order; the owner is the first.
    members: Vec<ClientId>,
}

impl Hub {
    pub fn create_room(&self, id: ClientId, room: &str) -> Result<(), HubError> {
        let mut state = self.lock();
        state.named(id)?;
        if state.rooms.contains_key(room) {
            return Err(HubError::RoomExists(room.to_owned()));
        }
        if state.rooms.len() >= self.limits.rooms {
            return Err(HubError::TooManyRooms(state.rooms.len()));
        }
        self.check_room_count(&state, id)?;
        state.rooms.insert(
            room.to_owned(),
            Room {
                owner: id,
                members: vec![id],
            },
        );
        state.member_mut(id)?.rooms.push(room.to_owned());
        Ok(())
    }

    /// Enters `room` and returns its members' names, the newcomer last. Joining a
    /// room one is already in changes nothing and is not an error.
    pub fn join_room(&self, id: ClientId, room: &str) -> Result<Vec<String>, HubError> {
        let mut state = self.lock();
        let name = state.named(id)?.to_owned();
        let entry = state
            .rooms
            .get(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        if !entry.members.contains(&id) {
            if entry.members.len() >= self.limits.members {
                return Err(HubError::RoomFull(room.to_owned(), entry.members.len()));
            }
            self.check_room_count(&state, id)?;
            let Some(entry) = state.rooms.get_mut(room) else {
                return Err(HubError::NoSuchRoom(room.to_owned()));
            };
            entry.members.push(id);
            let members = entry.members.clone();
            state.member_mut(id)?.rooms.push(room.to_owned());
            state.deliver(
                &members,
                id,
                Event::Joined {
                    room: room.to_owned(),
                    name,
                },
            );
        }
        Ok(state.member_names(room))
    }

    /// Sends `text` to every other member of `room`.
    pub fn say(&self, id: ClientId, room: &str, text: &str) -> Result<(), HubError> {
        let state = self.lock();
        let name = state.named(id)?;
        let entry = state.member_room(id, room)?;
        state.deliver(
            &entry.members,
            id,
            Event::RoomMessage {
                room: room.to_owned(),
                from: name.to_owned(),
                text: text.to_owned(),
                sent_at: now_rfc3339(),
                seq: 0,
                replay: false,
            },
        );
        Ok(())
    }

    /// Leaves `room`; when its owner leaves, the room closes.
    pub fn leave_room(&self, id: ClientId, room: &str) -> Result<(), HubError> {
        let mut state = self.lock();
        let name = state.named(id)?.to_owned();
        state.member_room(id, room)?;
        state.member_mut(id)?.rooms.retain(|r| r != room);
        state.depart(id, &name, room);
        Ok(())
    }

    fn check_room_count(&self, state: &State, id: ClientId) -> Result<(), HubError> {
        let in_rooms = state.clients.get(&id).map_or(0, |m| m.rooms.len());
        if in_rooms >= self.limits.per_client {
            return Err(HubError::InTooManyRooms(in_rooms));
        }
        Ok(())
    }

    pub fn close_room(&self, id: ClientId, room: &str) -> Result<(), HubError> {
        let mut state = self.lock();
        let name = state.named(id)?.to_owned();
        let entry = state
            .rooms
            .get(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        if entry.owner != id {
            return Err(HubError::NotOwner(room.to_owned()));
        }
        state.member_mut(id)?.rooms.retain(|r| r != room);
        state.close(id, &name, room);
        Ok(())
    }
}

impl State {
    fn member_mut(&mut self, id: ClientId) -> Result<&mut super::Member, HubError> {
        self.clients.get_mut(&id).ok_or(HubError::NotRegistered)
    }

    fn member_room(&self, id: ClientId, room: &str) -> Result<&Room, HubError> {
        let entry = self
            .rooms
            .get(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        if entry.members.contains(&id) {
            Ok(entry)
        } else {
            Err(HubError::NotMember(room.to_owned()))
        }
    }

    fn member_names(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|entry| {
                entry
                    .members
                    .iter()
                    .filter_map(|id| self.clients.get(id).and_then(|m| m.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes client `id` (already off its own room list) out of `room`: the others
    /// hear `left`, or `room_closed` when it was the owner.
    pub(super) fn depart(&mut self, id: ClientId, name: &str, room: &str) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        if entry.owner == id {
            self.close(id, name, room);
            return;
        }
        entry.members.retain(|&m| m != id);
        let members = entry.members.clone();
        self.deliver(
            &members,
            id,
            Event::Left {
                room: room.to_owned(),
                name: name.to_owned(),
            },
        );
    }

    /// Removes `room`; every member but `by` hears `room_closed`.
    fn close(&mut self, by: ClientId, by_name: &str, room: &str) {
        let Some(entry) = self.rooms.remove(room) else {
            return;
        };
        for member in &entry.members {
            if let Some(m) = self.clients.get_mut(member) {
                m.rooms.retain(|r| r != room);
            }
        }
        self.deliver(
            &entry.members,
            by,
            Event::RoomClosed {
                room: room.to_owned(),
                by: by_name.to_owned(),
            },
        );
    }
}
