//! A cluster node's hub holds each room its own clients are in as a projection of the
//! room the cluster keeps: the owner and epoch from `sb-rooms`, the messages (and their
//! `seq`) as JetStream stored them, and this node's members only. The node feeds it
//! what the cluster decided, in the order it was decided; the hub delivers it to its
//! members as it delivers what is said on one node, and keeps the last messages for
//! `history`, replays and resume the same way.

use std::collections::VecDeque;
use std::sync::Arc;

use super::rooms::Room;
use super::{Hub, HubError};
use crate::outbound::Kept;
use crate::protocol::{ClientId, Event};

/// A room message as the cluster stored it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    pub sent_ms: i64,
    pub from: String,
    pub text: String,
}

impl Hub {
    /// Starts projecting `room` (owned by client `owner`, on whichever node) with the
    /// messages the cluster keeps of it, oldest first, and the names of its members on
    /// other nodes; false when it is projected already.
    pub fn project_room(
        &self,
        room: &str,
        owner: ClientId,
        epoch: &str,
        kept: Vec<Stored>,
        others: Vec<String>,
    ) -> bool {
        let mut state = self.lock();
        if state.rooms.contains_key(room) {
            return false;
        }
        let seq = kept.last().map_or(0, |line| line.seq);
        let skip = kept.len().saturating_sub(self.config.history);
        let history: VecDeque<Arc<Kept>> = (kept.into_iter().skip(skip))
            .map(|line| Arc::new(Kept::new(line.seq, line.sent_ms, &line.from, &line.text)))
            .collect();
        state.rooms.insert(
            room.to_owned(),
            Room {
                owner,
                members: Vec::new(),
                others,
                epoch: epoch.to_owned(),
                seq,
                history,
            },
        );
        true
    }

    /// A message the cluster stored for `room`, said by client `by` (on whichever
    /// node): kept, and queued to every member here but `by`. One the projection has
    /// already (its `seq` is not past the latest) is passed over.
    pub fn stored_in_room(&self, room: &str, by: ClientId, line: Stored) {
        let mut state = self.lock();
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        if line.seq <= entry.seq {
            return;
        }
        entry.seq = line.seq;
        if self.config.history > 0 {
            if entry.history.len() >= self.config.history {
                entry.history.pop_front();
            }
            let kept = Kept::new(line.seq, line.sent_ms, &line.from, &line.text);
            entry.history.push_back(Arc::new(kept));
        }
        let members = entry.members.clone();
        if let Some(seat) = (state.clients.get_mut(&by))
            .and_then(|m| m.rooms.iter_mut().find(|seat| seat.room == room))
        {
            seat.said = line.seq;
        }
        let event = Event::RoomMessage {
            room: room.to_owned(),
            from: line.from,
            text: line.text,
            sent_at: crate::protocol::rfc3339_of_millis(line.sent_ms),
            seq: line.seq,
            replay: false,
        };
        let failed = state.deliver(&members, by, event);
        state.lost(failed, Some((room, line.seq)));
    }

    /// Tells this hub's members of `room` what happened on another node (a join, a
    /// leave), and counts its members there accordingly.
    pub fn heard_in_room(&self, room: &str, event: Event) {
        let mut state = self.lock();
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        match &event {
            Event::Joined { name, .. } if !entry.others.contains(name) => {
                entry.others.push(name.clone());
            }
            Event::Left { name, .. } => entry.others.retain(|other| other != name),
            _ => {}
        }
        let members = entry.members.clone();
        let failed = state.deliver(&members, 0, event);
        state.lost(failed, None);
    }

    /// `room` was closed by `by` on another node: its members here hear `room_closed`
    /// and are out of it.
    pub fn closed_elsewhere(&self, room: &str, by: &str) {
        self.lock().close(0, by, room);
    }

    /// Stops projecting `room` if none of this hub's clients is in it; true when it
    /// stopped.
    pub fn unproject_if_empty(&self, room: &str) -> bool {
        let mut state = self.lock();
        if state.rooms.get(room).is_some_and(|r| r.members.is_empty()) {
            state.rooms.remove(room);
            return true;
        }
        false
    }

    /// The name client `id` speaks in `room` with, if it is a member here.
    pub fn speaker(&self, id: ClientId, room: &str) -> Result<String, HubError> {
        let state = self.lock();
        let name = state.named(id)?.to_owned();
        state.member_room(id, room)?;
        Ok(name)
    }

    /// Whether `room` is projected here.
    pub fn projects(&self, room: &str) -> bool {
        self.lock().rooms.contains_key(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{HubConfig, RoomLimits};
    use crate::outbound::{Bounds, OutQueue, Outbound, Outbox};
    use crate::protocol::Reply;

    fn named(hub: &Hub, id: ClientId, name: &str) {
        let queue = OutQueue::new(Bounds {
            frames: 64,
            bytes: 1 << 20,
        });
        hub.connect(id, Outbox::new(Arc::new(queue)));
        hub.claim_name(id, name).unwrap();
    }

    /// The members a join is answered with, or why it was refused.
    fn join(hub: &Hub, id: ClientId, room: &str) -> Result<Vec<String>, HubError> {
        let mut members = None;
        hub.join_room(id, room, None, |reply| {
            if let Reply::Joined { members: m, .. } = reply {
                members = Some(m);
            }
            Outbound::Ok {
                id: None,
                number: None,
            }
        })?;
        Ok(members.unwrap_or_default())
    }

    fn joined(room: &str, name: &str) -> Event {
        Event::Joined {
            room: room.to_owned(),
            name: name.to_owned(),
        }
    }

    /// A projected room counts and lists its members on other nodes as it does its own:
    /// against the member limit, in a join's answer and on the dashboard, and as they
    /// come, go, or move between nodes.
    #[test]
    fn members_on_other_nodes_count_as_members() {
        let hub = Hub::new(HubConfig {
            rooms: RoomLimits {
                members: 3,
                ..RoomLimits::default()
            },
            ..HubConfig::default()
        });
        let others = vec!["ana".to_owned()];
        assert!(hub.project_room("r", 99, "e1", Vec::new(), others));
        hub.heard_in_room("r", joined("r", "bob"));
        hub.heard_in_room("r", joined("r", "bob"));
        named(&hub, 1, "cy");
        assert_eq!(join(&hub, 1, "r").unwrap(), ["ana", "bob", "cy"]);
        named(&hub, 2, "di");
        assert!(matches!(join(&hub, 2, "r"), Err(HubError::RoomFull(_, 3))));
        hub.heard_in_room(
            "r",
            Event::Left {
                room: "r".to_owned(),
                name: "bob".to_owned(),
            },
        );
        assert_eq!(join(&hub, 2, "r").unwrap(), ["ana", "cy", "di"]);
        let (rooms, _) = hub.rooms_overview(10, 10);
        assert_eq!(rooms[0].members, ["cy", "di", "ana"]);
        assert_eq!(rooms[0].member_count, 3);
    }
}
