//! Following a room: what JetStream keeps of it read first, then every new message in
//! `seq` order and the other nodes' news, handed to the hub's projection; and the
//! cleanup after nodes that died with members in rooms.

use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::rooms::{News, RoomRecord, Said, Seat};
use crate::cluster::{ClusterError, SEQ_HEADER};
use crate::hub::Stored;
use crate::protocol::{ClientId, Event};

impl Inner {
    /// Cleans up after the nodes (and boots) in `dead`: their clients' seats are taken
    /// out of their rooms, and the rooms they owned are closed, each heard by the
    /// members left. Every node that notices does this; a delete that names the
    /// revision it removes lets exactly one of them do each part and tell of it.
    pub(in crate::cluster) async fn heal_rooms(&self, dead: &[(String, u64)]) {
        let is_dead = |node: &str, boot: u64| dead.iter().any(|(n, b)| n == node && *b == boot);
        let prefix = format!("$KV.{}.", self.layout.rooms.name);
        let Ok(records) = read_now(
            &self.client,
            &self.layout.rooms.stream,
            format!("{prefix}r.>"),
            DeliverPolicy::LastPerSubject,
        )
        .await
        else {
            return;
        };
        for (revision, message) in records {
            let Ok(record) = serde_json::from_slice::<RoomRecord>(&message.payload) else {
                continue;
            };
            let Some(key) = message.subject.strip_prefix(&prefix) else {
                continue;
            };
            if !is_dead(&record.node, record.boot) {
                continue;
            }
            let Some(token) = key.strip_prefix("r.") else {
                continue;
            };
            if let Ok(()) = self
                .layout
                .rooms
                .delete_expect_revision(key, Some(revision))
                .await
            {
                tracing::info!(room = %token, "room closed: its owner's node went unheard");
                self.tell(
                    token,
                    &News::Closed {
                        by: record.owner_name.clone(),
                        node: record.node.clone(),
                        boot: record.boot,
                    },
                );
                self.clear_room(token).await;
            }
        }
        let Ok(seats) = read_now(
            &self.client,
            &self.layout.rooms.stream,
            format!("{prefix}m.>"),
            DeliverPolicy::LastPerSubject,
        )
        .await
        else {
            return;
        };
        for (revision, message) in seats {
            let Ok(seat) = serde_json::from_slice::<Seat>(&message.payload) else {
                continue;
            };
            let Some(key) = message.subject.strip_prefix(&prefix) else {
                continue;
            };
            if !is_dead(&seat.node, seat.boot) {
                continue;
            }
            let token = key
                .strip_prefix("m.")
                .and_then(|rest| rest.rsplit_once('.'))
                .map(|(room, _)| room.to_owned());
            if let (Some(token), Ok(())) = (
                token,
                self.layout
                    .rooms
                    .delete_expect_revision(key, Some(revision))
                    .await,
            ) {
                self.tell(
                    &token,
                    &News::Left {
                        name: seat.name,
                        node: seat.node,
                        boot: seat.boot,
                    },
                );
            }
        }
    }
}

/// The room's message as the hub takes it, with who said it.
pub(super) fn stored(message: &async_nats::Message) -> Option<(ClientId, Stored)> {
    let seq = message
        .headers
        .as_ref()?
        .get(SEQ_HEADER)?
        .as_str()
        .parse()
        .ok()?;
    let said: Said = serde_json::from_slice(&message.payload).ok()?;
    Some((
        said.client,
        Stored {
            seq,
            sent_ms: said.sent_ms,
            from: said.from,
            text: said.text,
        },
    ))
}

pub(super) type Messages = async_nats::jetstream::consumer::push::Ordered;

/// What `stream` holds under `filter` now (as `policy` picks), read once: the consumer
/// that read it is deleted at once rather than left to JetStream to expire (an ordered
/// consumer lives 30 s unread, and a busy node would pile them up).
pub(super) async fn read_now(
    client: &async_nats::Client,
    stream: &Stream,
    filter: String,
    policy: DeliverPolicy,
) -> Result<Vec<(u64, async_nats::Message)>, ClusterError> {
    let (kept, messages, name) = catch_up(client, stream, filter, policy).await?;
    drop(messages);
    let stream = stream.clone();
    tokio::spawn(async move {
        let _ = stream.delete_consumer(&name).await;
    });
    Ok(kept)
}

/// What `stream` holds under `filter` now (as `policy` picks), and an ordered consumer
/// (with its name) that goes on with what comes after.
pub(super) async fn catch_up(
    client: &async_nats::Client,
    stream: &Stream,
    filter: String,
    policy: DeliverPolicy,
) -> Result<(Vec<(u64, async_nats::Message)>, Messages, String), ClusterError> {
    let doing = || format!("reading {filter}");
    let config = OrderedConfig {
        deliver_subject: client.new_inbox(),
        filter_subject: filter.clone(),
        deliver_policy: policy,
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| ClusterError::nats(doing(), e))?;
    let name = consumer.cached_info().name.clone();
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| ClusterError::nats(doing(), e))?;
    let mut kept = Vec::new();
    while pending > 0 {
        let Some(message) = messages.next().await else {
            break;
        };
        let message = message.map_err(|e| ClusterError::nats(doing(), e))?;
        pending = message.info().map_or(0, |info| info.pending);
        let removed = (message.headers.as_ref())
            .and_then(|h| h.get("KV-Operation"))
            .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        if !removed {
            let revision = message.info().map_or(0, |info| info.stream_sequence);
            kept.push((revision, message.message));
        }
    }
    Ok((kept, messages, name))
}

/// Hands `room`'s new messages and the other nodes' news to the hub until stopped.
pub(super) async fn follow_room(
    inner: std::sync::Weak<Inner>,
    room: String,
    mut messages: Messages,
    mut news: async_nats::Subscriber,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            message = messages.next() => {
                let Some(inner) = inner.upgrade() else { return };
                match message {
                    Some(Ok(message)) => match stored(&message.message) {
                        Some((by, line)) => inner.hub.stored_in_room(&room, by, line),
                        None => tracing::warn!(room = %room, "a room message that is not switchboard's"),
                    },
                    Some(Err(e)) => tracing::warn!(room = %room, "following the room: {e}"),
                    None => return,
                }
            }
            heard = news.next() => {
                let Some(inner) = inner.upgrade() else { return };
                let Some(heard) = heard else { return };
                let Ok(news) = serde_json::from_slice::<News>(&heard.payload) else { continue };
                let mine = |node: &str, boot: u64| node == inner.name && boot == inner.boot;
                match news {
                    News::Joined { name, node, boot } if !mine(&node, boot) => {
                        inner.hub.heard_in_room(&room, Event::Joined { room: room.clone(), name });
                    }
                    News::Left { name, node, boot } if !mine(&node, boot) => {
                        inner.hub.heard_in_room(&room, Event::Left { room: room.clone(), name });
                    }
                    News::Closed { by, node, boot } if !mine(&node, boot) => {
                        inner.hub.closed_elsewhere(&room, &by);
                        inner.release_room(&room);
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}
