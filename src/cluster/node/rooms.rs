//! Rooms across nodes. A room is a record in `sb-rooms` (`r.<room>`: owner, epoch),
//! one key per member (`m.<room>.<client>`), and its messages in `SB_ROOMS`, each with
//! its gap-free `seq`. A node with members in a room follows it: an ordered consumer of
//! the room's subject hands it every message in `seq` order (its own members' too), and
//! core NATS `sb.ev.room.<room>` brings joins, leaves and the close from other nodes.
//! The node's hub holds the room as a projection (`crate::hub::Stored`) and delivers to
//! its own members as on one node.

use std::sync::Arc;

use async_nats::jetstream::consumer::DeliverPolicy;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::follow::{self, catch_up, read_now, stored};
use crate::cluster::{
    ClusterError, Latest, append_to_room, lost_race, read_latest, room_event_subject, room_subject,
    room_token,
};
use crate::hub::HubError;
use crate::protocol::{ClientId, now_millis};

/// What `sb-rooms` holds for an open room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RoomRecord {
    /// The owner's client id, name, and node (with its boot).
    pub owner: ClientId,
    pub owner_name: String,
    pub node: String,
    pub boot: u64,
    pub epoch: String,
}

/// A member, under `m.<room>.<client>`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Seat {
    /// The room's name (the key holds its token).
    #[serde(default)]
    pub(super) room: String,
    pub(super) name: String,
    pub(super) node: String,
    pub(super) boot: u64,
}

/// A room message as `SB_ROOMS` keeps it (its `seq` is in a header).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Said {
    pub(super) from: String,
    pub(super) client: ClientId,
    pub(super) text: String,
    pub(super) sent_ms: i64,
}

/// What one node tells the others' members of a room.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum News {
    Joined {
        name: String,
        node: String,
        boot: u64,
    },
    Left {
        name: String,
        node: String,
        boot: u64,
    },
    Closed {
        by: String,
        node: String,
        boot: u64,
    },
}

fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(e.to_string())
}

fn record_key(token: &str) -> String {
    format!("r.{token}")
}

fn seat_key(token: &str, id: ClientId) -> String {
    format!("m.{token}.{id}")
}

impl Inner {
    /// The room's record, read through the bucket's leader.
    pub(super) async fn room_record(
        &self,
        room: &str,
    ) -> Result<Option<(u64, RoomRecord)>, HubError> {
        match read_latest(&self.layout.rooms, &record_key(&room_token(room)))
            .await
            .map_err(unavailable)?
        {
            Some(Latest {
                revision,
                value: Some(value),
            }) => serde_json::from_slice(&value)
                .map(|record| Some((revision, record)))
                .map_err(unavailable),
            _ => Ok(None),
        }
    }

    pub(super) async fn create_room(
        self: Arc<Self>,
        id: ClientId,
        room: String,
    ) -> Result<String, HubError> {
        let name = self.hub.name_of(id).ok_or(HubError::NotRegistered)?;
        let open = self.open_rooms().len();
        if open >= self.hub.room_limits().rooms {
            return Err(HubError::TooManyRooms(open));
        }
        let token = room_token(&room);
        let made = self
            .rooms_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let epoch = format!("{:012x}.{made}", self.boot >> 16);
        let record = RoomRecord {
            owner: id,
            owner_name: name.clone(),
            node: self.name.clone(),
            boot: self.boot,
            epoch: epoch.clone(),
        };
        let value = serde_json::to_vec(&record).map_err(unavailable)?;
        let key = record_key(&token);
        let revision = match read_latest(&self.layout.rooms, &key)
            .await
            .map_err(unavailable)?
        {
            Some(Latest { value: Some(_), .. }) => return Err(HubError::RoomExists(room)),
            Some(Latest { revision, .. }) => revision,
            None => 0,
        };
        match self.layout.rooms.update(&key, value.into(), revision).await {
            Ok(_) => {}
            Err(e) if lost_race(&e) => return Err(HubError::RoomExists(room)),
            Err(e) => return Err(unavailable(e)),
        }
        // Messages of an earlier room of the name that a crash left behind.
        let _ = self
            .layout
            .room_history
            .purge()
            .filter(room_subject(&token))
            .await;
        if let Err(e) = self.hub.create_room_as(id, &room, Some(epoch.clone())) {
            let _ = self.layout.rooms.delete_expect_revision(&key, None).await;
            return Err(e);
        }
        self.seat(&room, id, &name).await?;
        self.follow(&room, &record).await?;
        Ok(epoch)
    }

    pub(super) async fn join_room(
        self: Arc<Self>,
        id: ClientId,
        room: String,
        after: Option<(u64, Option<String>)>,
        answer: impl FnOnce(crate::protocol::Reply) -> crate::outbound::Outbound,
    ) -> Result<(), HubError> {
        let name = self.hub.name_of(id).ok_or(HubError::NotRegistered)?;
        let (_, record) =
            (self.room_record(&room).await?).ok_or_else(|| HubError::NoSuchRoom(room.clone()))?;
        let token = room_token(&room);
        let _entering = self.entering(&room);
        self.follow(&room, &record).await?;
        let already = self.hub.speaker(id, &room).is_ok();
        if !already {
            self.seat(&room, id, &name).await?;
        }
        let after = after.as_ref().map(|(seq, epoch)| crate::hub::After {
            seq: *seq,
            epoch: epoch.as_deref(),
        });
        if let Err(e) = self.hub.join_room(id, &room, after, answer) {
            // Refused here (the room full, the client in too many rooms): its seat goes.
            if !already {
                let _ = self.layout.rooms.delete(seat_key(&token, id)).await;
            }
            self.release_room(&room);
            return Err(e);
        }
        if !already {
            self.tell(
                &token,
                &News::Joined {
                    name,
                    node: self.name.clone(),
                    boot: self.boot,
                },
            );
        }
        Ok(())
    }

    pub(super) async fn say(
        self: Arc<Self>,
        id: ClientId,
        room: String,
        text: String,
    ) -> Result<u64, HubError> {
        let from = match self.hub.speaker(id, &room) {
            Ok(name) => name,
            Err(HubError::NoSuchRoom(_)) if self.room_record(&room).await?.is_some() => {
                return Err(HubError::NotMember(room));
            }
            Err(e) => return Err(e),
        };
        let said = Said {
            from,
            client: id,
            text,
            sent_ms: now_millis(),
        };
        let payload = serde_json::to_vec(&said).map_err(unavailable)?;
        let appended = append_to_room(
            &self.js,
            &self.layout.room_history,
            &room_token(&room),
            payload.into(),
        )
        .await
        .map_err(unavailable)?;
        Ok(appended.seq)
    }

    pub(super) async fn leave_room(
        self: Arc<Self>,
        id: ClientId,
        room: String,
    ) -> Result<(), HubError> {
        let name = self.hub.speaker(id, &room)?;
        let record = self.room_record(&room).await?;
        if record.as_ref().is_some_and(|(_, r)| r.owner == id) {
            return self.close_room(id, room).await;
        }
        self.hub.leave_room(id, &room)?;
        self.gone_from(&room, id, &name).await;
        Ok(())
    }

    pub(super) async fn close_room(
        self: Arc<Self>,
        id: ClientId,
        room: String,
    ) -> Result<(), HubError> {
        let name = self.hub.name_of(id).ok_or(HubError::NotRegistered)?;
        let (revision, record) =
            (self.room_record(&room).await?).ok_or_else(|| HubError::NoSuchRoom(room.clone()))?;
        if record.owner != id {
            return Err(HubError::NotOwner(room));
        }
        let token = room_token(&room);
        (self.layout.rooms)
            .delete_expect_revision(record_key(&token), Some(revision))
            .await
            .map_err(unavailable)?;
        self.tell(
            &token,
            &News::Closed {
                by: name,
                node: self.name.clone(),
                boot: self.boot,
            },
        );
        let _ = self.hub.close_room(id, &room);
        self.release_room(&room);
        let inner = Arc::clone(&self);
        tokio::spawn(async move { inner.clear_room(&token).await });
        Ok(())
    }

    /// `room`'s record (at `revision`) names this node as its owner's now: the owner's
    /// session moved here, and the room must not be closed with its old node.
    pub(super) async fn own_room(&self, room: &str, revision: u64, record: RoomRecord) {
        let moved = RoomRecord {
            node: self.name.clone(),
            boot: self.boot,
            ..record
        };
        if let Ok(value) = serde_json::to_vec(&moved) {
            let key = record_key(&room_token(room));
            let _ = self.layout.rooms.update(key, value.into(), revision).await;
        }
    }

    /// What is left of a closed room in NATS: its messages and its members' keys.
    pub(super) async fn clear_room(&self, token: &str) {
        let _ = self
            .layout
            .room_history
            .purge()
            .filter(room_subject(token))
            .await;
        let filter = format!("$KV.{}.m.{token}.>", self.layout.rooms.name);
        let prefix = format!("$KV.{}.", self.layout.rooms.name);
        let got = read_now(
            &self.client,
            &self.layout.rooms.stream,
            filter,
            DeliverPolicy::LastPerSubject,
        )
        .await;
        if let Ok(seats) = got {
            for (_, seat) in seats {
                if let Some(key) = seat.subject.strip_prefix(&prefix) {
                    let _ = self.layout.rooms.delete(key).await;
                }
            }
        }
    }

    /// Client `id` (`name`) is out of `room` here: its key goes, the other nodes'
    /// members hear it left, and the node stops following a room it has no one in.
    pub(super) async fn gone_from(self: &Arc<Self>, room: &str, id: ClientId, name: &str) {
        let token = room_token(room);
        if let Err(e) = self.layout.rooms.delete(seat_key(&token, id)).await {
            tracing::warn!("could not take {name} out of room {room} in the cluster: {e}");
        }
        self.tell(
            &token,
            &News::Left {
                name: name.to_owned(),
                node: self.name.clone(),
                boot: self.boot,
            },
        );
        self.release_room(room);
    }

    /// A session that ended for good was in `rooms`: it leaves each in the cluster, and
    /// the rooms it owned close.
    pub(super) async fn left_rooms(
        self: Arc<Self>,
        id: ClientId,
        name: String,
        rooms: Vec<String>,
    ) {
        let by = (self.name.clone(), self.boot);
        self.leave_all(id, name, rooms, by).await;
    }

    /// [`Inner::left_rooms`] for a session of a node that is gone, told as that node's
    /// news (so that every live node, this one too, delivers it to its members).
    pub(super) async fn left_rooms_for(
        self: Arc<Self>,
        id: ClientId,
        name: String,
        rooms: Vec<String>,
        gone: (String, u64),
    ) {
        for room in &rooms {
            let token = room_token(room);
            let _ = self.layout.rooms.delete(seat_key(&token, id)).await;
        }
        self.leave_all(id, name, rooms, gone).await;
    }

    async fn leave_all(
        self: Arc<Self>,
        id: ClientId,
        name: String,
        rooms: Vec<String>,
        (node, boot): (String, u64),
    ) {
        let mine = node == self.name && boot == self.boot;
        for room in rooms {
            match self.room_record(&room).await {
                Ok(Some((revision, record))) if record.owner == id => {
                    let token = room_token(&room);
                    let _ = (self.layout.rooms)
                        .delete_expect_revision(record_key(&token), Some(revision))
                        .await;
                    let (node, boot) = (node.clone(), boot);
                    self.tell(
                        &token,
                        &News::Closed {
                            by: name.clone(),
                            node,
                            boot,
                        },
                    );
                    self.release_room(&room);
                    self.clear_room(&token).await;
                }
                _ if mine => self.gone_from(&room, id, &name).await,
                _ => {
                    let (name, node) = (name.clone(), node.clone());
                    self.tell(&room_token(&room), &News::Left { name, node, boot });
                }
            }
        }
    }

    /// Client `id` (`name`) is a member of `room`: its seat in `sb-rooms`, which
    /// also says, should this node die, which rooms the session was in.
    pub(super) async fn seat(&self, room: &str, id: ClientId, name: &str) -> Result<(), HubError> {
        let seat = Seat {
            room: room.to_owned(),
            name: name.to_owned(),
            node: self.name.clone(),
            boot: self.boot,
        };
        let value = serde_json::to_vec(&seat).map_err(unavailable)?;
        self.layout
            .rooms
            .put(seat_key(&room_token(room), id), value.into())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The rooms client `id` has a seat in, on whichever node.
    pub(super) async fn seats_of(&self, id: ClientId) -> Result<Vec<String>, HubError> {
        let filter = format!("$KV.{}.m.*.{id}", self.layout.rooms.name);
        let seats = read_now(
            &self.client,
            &self.layout.rooms.stream,
            filter,
            DeliverPolicy::LastPerSubject,
        )
        .await
        .map_err(unavailable)?;
        Ok(seats
            .iter()
            .filter_map(|(_, m)| serde_json::from_slice::<Seat>(&m.payload).ok())
            .map(|seat| seat.room)
            .filter(|room| !room.is_empty())
            .collect())
    }

    /// The names of the room's members on other nodes (and earlier boots).
    async fn others_in(&self, token: &str) -> Result<Vec<String>, ClusterError> {
        let filter = format!("$KV.{}.m.{token}.>", self.layout.rooms.name);
        let seats = read_now(
            &self.client,
            &self.layout.rooms.stream,
            filter,
            DeliverPolicy::LastPerSubject,
        )
        .await?;
        Ok(seats
            .iter()
            .filter_map(|(_, m)| serde_json::from_slice::<Seat>(&m.payload).ok())
            .filter(|seat| !(seat.node == self.name && seat.boot == self.boot))
            .map(|seat| seat.name)
            .collect())
    }

    pub(super) fn tell(&self, token: &str, news: &News) {
        let Ok(payload) = serde_json::to_vec(news) else {
            return;
        };
        let client = self.client.clone();
        let subject = room_event_subject(token);
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, payload.into()).await {
                tracing::warn!("could not tell the other nodes of a room's news: {e}");
            }
        });
    }

    /// Follows `room` unless this node does: its news from now on, the messages the
    /// cluster keeps of it, then every new one.
    pub(super) async fn follow(
        self: &Arc<Self>,
        room: &str,
        record: &RoomRecord,
    ) -> Result<(), HubError> {
        let mut follows = self.follows.lock().await;
        if let Some(following) = follows.get_mut(room) {
            if self.hub.projects(room) {
                following.idle_since = None;
                return Ok(());
            }
            // A follower whose room closed here and has not been stopped yet.
            if let Some(following) = follows.remove(room) {
                following.end(&self.layout.room_history);
            }
        }
        let token = room_token(room);
        let news = (self.client)
            .subscribe(room_event_subject(&token))
            .await
            .map_err(unavailable)?;
        let (kept, messages, consumer) = catch_up(
            &self.client,
            &self.layout.room_history,
            room_subject(&token),
            DeliverPolicy::All,
        )
        .await
        .map_err(unavailable)?;
        let kept = kept
            .iter()
            .filter_map(|(_, m)| stored(m))
            .map(|(_, line)| line)
            .collect();
        // After subscribing to the room's news: a join or leave elsewhere meanwhile is
        // heard after this read, and counted once either way.
        let others = self.others_in(&token).await.map_err(unavailable)?;
        self.hub
            .project_room(room, record.owner, &record.epoch, kept, others);
        let stop = CancellationToken::new();
        follows.insert(
            room.to_owned(),
            Following {
                stop: stop.clone(),
                consumer,
                idle_since: None,
            },
        );
        tokio::spawn(follow::follow_room(
            Arc::downgrade(self),
            room.to_owned(),
            messages,
            news,
            stop,
        ));
        Ok(())
    }

    /// Stops following `room` once this node has nothing more to do with it: at once
    /// when the room closed, and [`LINGER`] after the last of its clients left (and
    /// none is on the way in, see [`Inner::entering`]), so that clients coming and
    /// going do not have the node read the room's history again each time. Decided
    /// under the same lock [`Inner::follow`] takes, so a room is never left projected
    /// without its follower, or followed without its projection.
    pub(super) fn release_room(self: &Arc<Self>, room: &str) {
        let inner = Arc::downgrade(self);
        let stop = self.stop.clone();
        let room = room.to_owned();
        tokio::spawn(async move {
            let Some(now) = inner.upgrade() else { return };
            if !now.release_if(&room, |_| false).await {
                return;
            }
            drop(now);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(LINGER) => {}
            }
            if let Some(inner) = inner.upgrade() {
                // Unless a later release (or a join) came since: that one decides.
                (inner.release_if(&room, |f| {
                    f.idle_since.is_some_and(|t| t.elapsed() >= LINGER)
                }))
                .await;
            }
        });
    }

    /// Stops following `room` if it is no longer projected, or (when `idle` says the
    /// follower has idled long enough) if none of this node's clients is in it or on
    /// the way in. True when the room is still followed, now marked idle.
    async fn release_if(&self, room: &str, idle: impl FnOnce(&Following) -> bool) -> bool {
        let mut follows = self.follows.lock().await;
        let Some(following) = follows.get_mut(room) else {
            return false;
        };
        if self.hub.projects(room) && idle(following) && !self.entering_now(room) {
            self.hub.unproject_if_empty(room);
        }
        if !self.hub.projects(room) {
            if let Some(following) = follows.remove(room) {
                following.end(&self.layout.room_history);
            }
            return false;
        }
        following
            .idle_since
            .get_or_insert_with(tokio::time::Instant::now);
        true
    }

    /// Marks a client on its way into `room` (a join, a resume) until the returned
    /// guard is dropped: the room stays projected meanwhile, though it has no member
    /// here yet.
    pub(super) fn entering(self: &Arc<Self>, room: &str) -> Entering {
        *self.entering_rooms().entry(room.to_owned()).or_default() += 1;
        Entering {
            inner: Arc::clone(self),
            room: room.to_owned(),
        }
    }

    fn entering_now(&self, room: &str) -> bool {
        self.entering_rooms().get(room).is_some_and(|&n| n > 0)
    }
}

/// How long a node goes on following a room none of its clients is in any more.
const LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// A room this node follows: what stops its follower, the ordered consumer it reads,
/// and since when none of the node's clients has been in it.
#[derive(Debug)]
pub(super) struct Following {
    stop: CancellationToken,
    consumer: String,
    idle_since: Option<tokio::time::Instant>,
}

impl Following {
    /// Stops the follower and deletes its consumer rather than leave it to JetStream
    /// to expire.
    pub(super) fn end(self, stream: &async_nats::jetstream::stream::Stream) {
        self.stop.cancel();
        let stream = stream.clone();
        tokio::spawn(async move {
            let _ = stream.delete_consumer(&self.consumer).await;
        });
    }
}

/// A client on its way into a room; see [`Inner::entering`].
pub(super) struct Entering {
    inner: Arc<Inner>,
    room: String,
}

impl Drop for Entering {
    fn drop(&mut self) {
        let mut entering = self.inner.entering_rooms();
        if let Some(n) = entering.get_mut(&self.room) {
            *n -= 1;
            if *n == 0 {
                entering.remove(&self.room);
            }
        }
    }
}
