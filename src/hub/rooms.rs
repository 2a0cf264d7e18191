//! Chat rooms: opened by their owner, joined by anyone named, closed by the owner (or
//! when the owner leaves, or its session ends). Each numbers its messages and keeps
//! the last of them, so that a member who was away can be given what it missed.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Hub, HubError, Seat, State};
use crate::outbound::{Kept, Outbound, Replay};
use crate::protocol::{
    ClientId, Event, HistoryPage, Reply, RoomLine, now_millis, rfc3339_of_millis,
};

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

/// Lines of one replay item at most, and bytes of their texts: the writer encodes an
/// item at once, so a long replay goes as several.
const REPLAY_LINES: usize = 256;
const REPLAY_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub(super) struct Room {
    pub(super) owner: ClientId,
    /// In joining order; the owner is the first. On a cluster node, only its own.
    pub(super) members: Vec<ClientId>,
    /// On a cluster node, the names of the members on other nodes, kept from the
    /// room's seats and the other nodes' news; always empty on one node.
    pub(super) others: Vec<String>,
    /// Differs for every room ever created on this server under any name.
    pub(super) epoch: String,
    /// The latest message's number; 0 before the first.
    pub(super) seq: u64,
    /// The last messages, oldest first, with no gap up to `seq`.
    pub(super) history: VecDeque<Arc<Kept>>,
}

/// A join's request to replay: the last `seq` the client has, in which incarnation.
#[derive(Debug, Clone, Copy)]
pub struct After<'a> {
    pub seq: u64,
    /// `None` takes the room's current incarnation as the client's.
    pub epoch: Option<&'a str>,
}

impl Room {
    pub(super) fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(super) fn remove_member(&mut self, id: ClientId) {
        self.members.retain(|&m| m != id);
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// The oldest `seq` kept; one past the latest when none is.
    pub(super) fn oldest(&self) -> u64 {
        self.history.front().map_or(self.seq + 1, |line| line.seq)
    }

    /// Every message after `seq`, if all of them are kept.
    pub(super) fn since(&self, seq: u64) -> Option<Vec<Arc<Kept>>> {
        if seq >= self.seq {
            return Some(Vec::new());
        }
        if seq + 1 < self.oldest() {
            return None;
        }
        let missed = (self.seq - seq) as usize;
        let skip = self.history.len() - missed;
        Some(self.history.iter().skip(skip).cloned().collect())
    }
}

/// `lines` of `room` as queue items of a bounded size each.
pub(super) fn replay_items(room: &str, lines: Vec<Arc<Kept>>) -> Vec<Outbound> {
    let mut items = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for line in lines {
        if !chunk.is_empty() && (chunk.len() >= REPLAY_LINES || bytes >= REPLAY_BYTES) {
            let lines = std::mem::take(&mut chunk);
            items.push(Outbound::Replay(Box::new(Replay {
                room: room.to_owned(),
                lines,
            })));
            bytes = 0;
        }
        bytes += line.text().len();
        chunk.push(line);
    }
    if !chunk.is_empty() {
        items.push(Outbound::Replay(Box::new(Replay {
            room: room.to_owned(),
            lines: chunk,
        })));
    }
    items
}

/// Bytes `line` takes in a reply as JSON, found without encoding it (the hub's lock is
/// held): a control character is written as six, a quote or backslash as two.
fn encoded_len(line: &Kept) -> usize {
    fn string(s: &str) -> usize {
        2 + s
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                0..0x20 => 6,
                _ => 1,
            })
            .sum::<usize>()
    }
    // `{"seq":…,"from":…,"text":…,"sent_at":…},` around the values.
    const FIELDS: usize = 40;
    // A `sent_at` is 24 characters and a `seq` at most 20 digits.
    FIELDS + 20 + string(line.from()) + string(line.text()) + 26
}

impl Hub {
    /// Opens `room` owned by `id`; returns its epoch.
    pub fn create_room(&self, id: ClientId, room: &str) -> Result<String, HubError> {
        self.create_room_as(id, room, None)
    }

    /// Opens `room` owned by `id` under `epoch` (made by the cluster), or under an
    /// epoch of this hub's own; returns the epoch.
    pub fn create_room_as(
        &self,
        id: ClientId,
        room: &str,
        epoch: Option<String>,
    ) -> Result<String, HubError> {
        let mut state = self.lock();
        state.named(id)?;
        if state.rooms.contains_key(room) {
            return Err(HubError::RoomExists(room.to_owned()));
        }
        if state.rooms.len() >= self.config.rooms.rooms {
            return Err(HubError::TooManyRooms(state.rooms.len()));
        }
        self.check_room_count(&state, id)?;
        state.created += 1;
        let epoch = epoch.unwrap_or_else(|| format!("{:012x}.{}", self.nonce >> 16, state.created));
        state.rooms.insert(
            room.to_owned(),
            Room {
                owner: id,
                members: vec![id],
                others: Vec::new(),
                epoch: epoch.clone(),
                seq: 0,
                history: VecDeque::new(),
            },
        );
        state.member_mut(id)?.rooms.push(Seat::new(room));
        Ok(epoch)
    }

    /// Enters `room` (joining a room one is already in changes nothing and is not an
    /// error), and queues the answer that `answer` makes of the reply: the members'
    /// names (the newcomer last), the room's epoch and latest `seq`, and, when `after`
    /// asks for a replay, whether it is given. The replayed messages are queued right
    /// after the answer, in the same step: no live message can come between them, or
    /// before them.
    pub fn join_room(
        &self,
        id: ClientId,
        room: &str,
        after: Option<After<'_>>,
        answer: impl FnOnce(Reply) -> Outbound,
    ) -> Result<(), HubError> {
        let mut state = self.lock();
        let name = state.named(id)?.to_owned();
        let entry = state
            .rooms
            .get(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        if !entry.members.contains(&id) {
            // Members on other nodes count as much as this hub's own.
            let count = entry.members.len() + entry.others.len();
            if count >= self.config.rooms.members {
                return Err(HubError::RoomFull(room.to_owned(), count));
            }
            self.check_room_count(&state, id)?;
            let Some(entry) = state.rooms.get_mut(room) else {
                return Err(HubError::NoSuchRoom(room.to_owned()));
            };
            entry.members.push(id);
            let members = entry.members.clone();
            state.member_mut(id)?.rooms.push(Seat::new(room));
            let failed = state.deliver(
                &members,
                id,
                Event::Joined {
                    room: room.to_owned(),
                    name,
                },
            );
            state.lost(failed, None);
        }
        let here = state.member_names(room);
        let Some(entry) = state.rooms.get(room) else {
            return Err(HubError::NoSuchRoom(room.to_owned()));
        };
        let mut members: Vec<String> = (entry.others.iter())
            .filter(|name| !here.contains(name))
            .cloned()
            .collect();
        members.extend(here);
        let (recovered, oldest, lines) = match after {
            None => (None, None, Vec::new()),
            Some(after) => match after
                .epoch
                .is_none_or(|epoch| epoch == entry.epoch)
                .then(|| entry.since(after.seq))
                .flatten()
            {
                Some(lines) => (Some(true), None, lines),
                None => (Some(false), Some(entry.oldest()), Vec::new()),
            },
        };
        let reply = Reply::Joined {
            members,
            epoch: entry.epoch.clone(),
            seq: entry.seq,
            recovered,
            oldest,
        };
        let outbox = &state.member(id)?.outbox;
        let _ = outbox.push_item(answer(reply));
        let mut replayed = 0;
        for item in replay_items(room, lines) {
            let events = item.events();
            if outbox.push_item(item).is_ok() {
                replayed += events;
            }
        }
        state.metrics.delivered(replayed);
        Ok(())
    }

    /// Sends `text` to every other member of `room`; returns its `seq`.
    pub fn say(&self, id: ClientId, room: &str, text: &str) -> Result<u64, HubError> {
        let mut state = self.lock();
        let State { clients, rooms, .. } = &mut *state;
        let member = clients
            .get_mut(&id)
            .filter(|m| m.name.is_some())
            .ok_or(HubError::NotRegistered)?;
        let entry = rooms
            .get_mut(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        let Some(seat) = member.rooms.iter_mut().find(|seat| seat.room == room) else {
            return Err(HubError::NotMember(room.to_owned()));
        };
        entry.seq += 1;
        let seq = entry.seq;
        seat.said = seq;
        let from = member.name.as_deref().unwrap_or_default().to_owned();
        let sent_ms = now_millis();
        if self.config.history > 0 {
            if entry.history.len() >= self.config.history {
                entry.history.pop_front();
            }
            entry
                .history
                .push_back(Arc::new(Kept::new(seq, sent_ms, &from, text)));
        }
        let sent_at = rfc3339_of_millis(sent_ms);
        let event = Event::RoomMessage {
            room: room.to_owned(),
            from,
            text: text.to_owned(),
            sent_at,
            seq,
            replay: false,
        };
        let failed = state.deliver(&state.rooms[room].members, id, event);
        state.lost(failed, Some((room, seq)));
        Ok(seq)
    }

    /// The newest `limit` kept messages of `room` before `before` (or the newest of
    /// all), oldest first, as many of them as fit in `budget` bytes; members only.
    pub fn history(
        &self,
        id: ClientId,
        room: &str,
        before: Option<u64>,
        limit: usize,
        budget: usize,
    ) -> Result<HistoryPage, HubError> {
        let state = self.lock();
        state.named(id)?;
        let entry = state.member_room(id, room)?;
        let before = before.unwrap_or(u64::MAX);
        let mut newest_first = entry.history.iter().rev().filter(|l| l.seq < before);
        let mut messages = Vec::new();
        let mut spent = 0;
        for line in newest_first.by_ref() {
            let cost = encoded_len(line);
            if messages.len() >= limit || (spent + cost > budget && !messages.is_empty()) {
                messages.push(None);
                break;
            }
            spent += cost;
            messages.push(Some(line.to_line()));
        }
        let more = messages.last().is_some_and(Option::is_none);
        let mut messages: Vec<RoomLine> = messages.into_iter().flatten().collect();
        messages.reverse();
        Ok(HistoryPage { messages, more })
    }

    /// Leaves `room`; when its owner leaves, the room closes.
    pub fn leave_room(&self, id: ClientId, room: &str) -> Result<(), HubError> {
        let mut state = self.lock();
        let name = state.named(id)?.to_owned();
        state.member_room(id, room)?;
        state.member_mut(id)?.rooms.retain(|seat| seat.room != room);
        state.depart(id, &name, room);
        Ok(())
    }

    fn check_room_count(&self, state: &State, id: ClientId) -> Result<(), HubError> {
        let in_rooms = state.clients.get(&id).map_or(0, |m| m.rooms.len());
        if in_rooms >= self.config.rooms.per_client {
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
        state.member_mut(id)?.rooms.retain(|seat| seat.room != room);
        state.close(id, &name, room);
        Ok(())
    }
}

/// A room as the admin pages show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomView {
    pub room: String,
    /// The owner's name (its session may be parked).
    pub owner: Option<String>,
    /// Members' names in joining order, the owner first; at most as many as asked for.
    pub members: Vec<String>,
    /// Members in all.
    pub member_count: usize,
    /// The latest message's `seq`.
    pub seq: u64,
}

impl Hub {
    /// The first `max_rooms` rooms by name, each with at most `max_members` members
    /// named, and how many rooms there are: for the admin pages.
    pub fn rooms_overview(&self, max_rooms: usize, max_members: usize) -> (Vec<RoomView>, usize) {
        let state = self.lock();
        let name_of = |id: &ClientId| {
            state
                .clients
                .get(id)
                .and_then(|member| member.name.as_deref())
                .map(str::to_owned)
        };
        let mut rooms: Vec<(&String, &Room)> = state.rooms.iter().collect();
        rooms.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let total = rooms.len();
        let shown = rooms
            .into_iter()
            .take(max_rooms)
            .map(|(room, entry)| RoomView {
                room: room.clone(),
                owner: name_of(&entry.owner),
                // On a cluster node, with the members on other nodes after its own.
                members: (entry.members.iter().filter_map(name_of))
                    .chain(entry.others.iter().cloned())
                    .take(max_members)
                    .collect(),
                member_count: entry.members.len() + entry.others.len(),
                seq: entry.seq,
            })
            .collect();
        (shown, total)
    }
}

impl State {
    fn member(&self, id: ClientId) -> Result<&super::Member, HubError> {
        self.clients.get(&id).ok_or(HubError::NotRegistered)
    }

    fn member_mut(&mut self, id: ClientId) -> Result<&mut super::Member, HubError> {
        self.clients.get_mut(&id).ok_or(HubError::NotRegistered)
    }

    pub(super) fn member_room(&self, id: ClientId, room: &str) -> Result<&Room, HubError> {
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

    /// The names of `room`'s members; parked ones too, since they are still in it.
    fn member_names(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|entry| {
                entry
                    .members
                    .iter()
                    .filter_map(|id| {
                        self.clients
                            .get(id)
                            .and_then(|m| m.name.as_deref().map(str::to_owned))
                    })
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
        let failed = self.deliver(
            &members,
            id,
            Event::Left {
                room: room.to_owned(),
                name: name.to_owned(),
            },
        );
        self.lost(failed, None);
    }

    /// Removes `room`; every member but `by` hears `room_closed`.
    pub(super) fn close(&mut self, by: ClientId, by_name: &str, room: &str) {
        let Some(entry) = self.rooms.remove(room) else {
            return;
        };
        for member in &entry.members {
            if let Some(m) = self.clients.get_mut(member) {
                m.rooms.retain(|seat| seat.room != room);
            }
        }
        let failed = self.deliver(
            &entry.members,
            by,
            Event::RoomClosed {
                room: room.to_owned(),
                by: by_name.to_owned(),
            },
        );
        self.lost(failed, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_costed_at_least_at_its_json_size() {
        let line = Kept::new(7, 1_765_000_000_000, "ana", "hi");
        assert_eq!((line.from(), line.text()), ("ana", "hi"));
        assert_eq!(line.sent_at(), "2025-12-06T05:46:40.000Z");
        for text in ["plain", "quote \" back \\ ", "\u{1}\u{1f}\n\t", "é ü ✓", ""] {
            let line = Kept::new(u64::MAX, 1_765_000_000_000, "ana", text);
            let json = serde_json::to_vec(&line.to_line()).unwrap().len() + 1;
            assert!(
                encoded_len(&line) >= json,
                "{text:?}: {} < {json}",
                encoded_len(&line)
            );
            assert!(
                encoded_len(&line) <= json + 24,
                "{text:?}: {} vs {json}",
                encoded_len(&line)
            );
        }
    }
}
