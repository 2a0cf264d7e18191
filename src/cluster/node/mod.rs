//! A switchboard node serving its share of one hub through NATS: the cluster's side of
//! the backend seam (`crate::backend`).
//!
//! The node keeps a hub of its own for its own connections (their queues, what each
//! was sent), and keeps in JetStream what every node must agree on: names, passwords,
//! inboxes, client id blocks, and its lease. What another node must hear now (mail just
//! stored for a client connected there) goes over core NATS to that node's subject.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod admin;
mod follow;
mod mail;
mod resume;
mod rooms;
mod tasks;

use super::directory::Directory;
use super::{
    Claim, Claimed, ClusterError, IdAllocator, Layout, Settings, claim_name, connect,
    ensure_layout, name_token, node_subject, release_name,
};
use crate::backend::{Answer, Kept};
use crate::hub::{
    After, Departure, Ending, Holder, Hub, HubConfig, HubError, Proof, Timeouts, Token,
};
use crate::metrics::Metrics;
use crate::outbound::{OutQueue, Outbound};
use crate::protocol::{ClientId, Reply, Seen};
use crate::store::{Appended, KeepRead, StoreError};

/// How long each NATS address is given to answer at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Client ids a node takes at a time: so many that it never needs a second block, and
/// few enough that ids stay below 2^53 (exact in a browser's JSON numbers) for two
/// million boots.
const ID_BLOCK: u64 = 1 << 32;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `nats://HOST:PORT[,...]`.
    pub urls: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Replicas of every stream and bucket the node creates.
    pub replicas: usize,
    /// How long a node may go unheard before the others clean up after it.
    pub heal_after: Duration,
}

/// A node of the cluster; cheap to clone.
#[derive(Debug, Clone)]
pub struct Node(Arc<Inner>);

#[derive(Debug)]
pub(super) struct Inner {
    name: String,
    boot: u64,
    client: async_nats::Client,
    js: jetstream::Context,
    layout: Layout,
    hub: Hub,
    pub(super) directory: Directory,
    /// The revision of each claim this node wrote and still holds, by name token.
    own: Mutex<HashMap<String, u64>>,
    ids: Range<u64>,
    /// Sends made by this boot, which make each one's `Nats-Msg-Id`.
    sends: std::sync::atomic::AtomicU64,
    /// Stops the node's background tasks.
    pub(super) stop: CancellationToken,
    /// When each node's lease was last seen renewed (by this node's clock), and by
    /// which boot; kept by the heal task's watch of `sb-nodes`.
    leases: Mutex<HashMap<String, (u64, tokio::time::Instant)>>,
    /// When this node started watching the leases.
    started: tokio::time::Instant,
    heal_after: Duration,
    resume_grace: Duration,
    /// Taken while a session is written to `sb-sessions`.
    notes: tokio::sync::Mutex<()>,
    /// Rooms this node created, which make each one's epoch.
    rooms_made: std::sync::atomic::AtomicU64,
    /// The rooms this node follows (it has members in, or had a moment ago).
    follows: Arc<tokio::sync::Mutex<HashMap<String, rooms::Following>>>,
    /// Clients on their way into each room, by room (see [`Inner::entering`]).
    entering: Mutex<HashMap<String, usize>>,
    /// The rooms of each session parked here, by name token: left in the cluster if
    /// the session ends without being resumed.
    parked: Mutex<HashMap<String, (ClientId, Vec<String>)>>,
    /// The rooms open in the cluster, by room token, kept by a watch of `sb-rooms`:
    /// what `--max-rooms` counts.
    open_rooms: Mutex<HashSet<String>>,
    /// Display names of recipients seen, by name token (see [`Inner::recipient`]).
    recipients: Mutex<HashMap<String, String>>,
    /// Cleanup in the cluster after sessions that ended, waited for when the node
    /// leaves.
    chores: TaskTracker,
}

/// What one node hands another.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Delivery {
    /// Mail just stored for a client connected there.
    Mail {
        to: String,
        from: String,
        message_id: u64,
    },
    /// A session parked there was resumed here.
    Taken { client: ClientId, name: String },
    /// A session parked there was ended from here: its name said hello without the
    /// proof to resume it.
    Ended { client: ClientId, name: String },
    /// A client came back here with the token (whose digest is `digest`) of a session
    /// still live there, its old connection not yet seen to end: that connection is to
    /// be closed (`replaced`) and the session parked for this node to take over.
    /// Answered once it is.
    Surrender {
        client: ClientId,
        name: String,
        digest: String,
    },
}

/// A node's lease in `sb-nodes`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Lease {
    pub boot: u64,
}

impl Node {
    /// Connects to NATS, makes sure of the layout, takes a block of client ids and its
    /// lease, and starts listening for what other nodes hand it.
    pub async fn start(
        config: &NodeConfig,
        hub: HubConfig,
        keep_read: KeepRead,
        metrics: Arc<Metrics>,
    ) -> Result<Node, ClusterError> {
        let connected = connect(&config.urls, &config.node, CONNECT_TIMEOUT).await?;
        for url in &connected.unreachable {
            tracing::warn!("NATS at {url} does not answer; connected through the others");
        }
        let client = connected.client;
        let js = jetstream::new(client.clone());
        let mut settings = Settings::new(config.replicas);
        settings.history = i64::try_from(hub.history.max(1)).unwrap_or(i64::MAX);
        if let KeepRead::Days(days) = keep_read {
            settings.keep_read = Some(Duration::from_secs(u64::from(days) * 86_400));
        }
        let layout = ensure_layout(&js, &settings).await?;
        let start = IdAllocator::new(layout.ids.clone(), ID_BLOCK)
            .take_block()
            .await?;
        let mut boot = [0u8; 8];
        getrandom::getrandom(&mut boot)
            .map_err(|e| ClusterError::nats("drawing the node's boot number", e))?;
        let inner = Arc::new(Inner {
            name: config.node.clone(),
            boot: u64::from_le_bytes(boot),
            client,
            js,
            layout,
            hub: Hub::counted(hub, metrics),
            directory: Directory::default(),
            own: Mutex::default(),
            ids: start,
            sends: Default::default(),
            stop: CancellationToken::new(),
            leases: Mutex::default(),
            started: tokio::time::Instant::now(),
            heal_after: config.heal_after,
            resume_grace: hub.resume_grace,
            notes: tokio::sync::Mutex::new(()),
            rooms_made: Default::default(),
            follows: Arc::default(),
            entering: Mutex::default(),
            parked: Mutex::default(),
            open_rooms: Mutex::default(),
            recipients: Mutex::default(),
            chores: TaskTracker::new(),
        });
        inner.renew_lease().await?;
        let deliveries = (inner.client)
            .subscribe(node_subject(&inner.name))
            .await
            .map_err(|e| ClusterError::nats("listening on the node's subject", e))?;
        let names = (inner.layout.names)
            .watch_with_history(">")
            .await
            .map_err(|e| ClusterError::nats("watching sb-names", e))?;
        let rooms = (inner.layout.rooms)
            .watch_with_history("r.*")
            .await
            .map_err(|e| ClusterError::nats("watching sb-rooms", e))?;
        tokio::spawn(tasks::deliver(Arc::downgrade(&inner), deliveries));
        tokio::spawn(tasks::watch_rooms(Arc::downgrade(&inner), rooms));
        tokio::spawn(tasks::watch_names(Arc::downgrade(&inner), names));
        tokio::spawn(tasks::keep_lease(Arc::downgrade(&inner), config.heal_after));
        super::heal::spawn(
            inner.layout.nodes.clone(),
            inner.layout.names.clone(),
            Arc::downgrade(&inner),
            config.heal_after,
        );
        tracing::info!(
            node = %inner.name,
            "joined the cluster; client ids from {}",
            inner.ids.start
        );
        Ok(Node(inner))
    }

    /// This node's own connections.
    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    /// The client ids this node hands out.
    pub fn ids(&self) -> Range<u64> {
        self.0.ids.clone()
    }

    /// Whether `name` is held by a client of another node (or another boot of this one).
    pub fn held_elsewhere(&self, name: &str) -> bool {
        (self.0.directory.holder(&name_token(name)))
            .is_some_and(|held| !self.0.is_mine(&held.claim))
    }

    /// Everyone online under a name, on every node.
    pub fn users(&self) -> Vec<crate::protocol::UserInfo> {
        self.0.directory.users()
    }

    /// The name client `id` holds, on whichever node.
    pub fn name_of(&self, id: ClientId) -> Option<String> {
        self.0.directory.name_of(id)
    }

    /// A session says `bye`: its name is freed across the cluster before the answer.
    pub fn bye(&self, id: ClientId) -> Answer<Result<(), HubError>> {
        let Some(name) = self.0.hub.name_of(id) else {
            return Answer::Now(Ok(()));
        };
        let inner = Arc::clone(&self.0);
        Answer::Later(Box::pin(async move {
            inner.release_before_bye(&name).await;
            Ok(())
        }))
    }

    /// Everyone online under a name, on every node, once this node has heard every
    /// claim and release the cluster acknowledged before.
    pub fn users_now(&self) -> Answer<Result<Vec<crate::protocol::UserInfo>, HubError>> {
        let inner = Arc::clone(&self.0);
        Answer::Later(Box::pin(async move {
            inner.catch_up_names().await;
            Ok(inner.directory.users())
        }))
    }

    /// A send to client `id`, once this node has heard every claim acknowledged
    /// before: a client that just said hello on another node is found.
    pub fn append_to_id(&self, id: ClientId, from: Arc<str>, text: String) -> Kept<Appended> {
        let node = self.clone();
        Kept::Later(Box::pin(async move {
            node.0.catch_up_names().await;
            let to = (node.0.directory.name_of(id)).ok_or(StoreError::NoSuchClient(id))?;
            node.append(to, from, text).await
        }))
    }

    /// Claims `name` for connection `id` across the cluster, then in this node's hub.
    pub fn claim_name(&self, id: ClientId, name: &str) -> Answer<Result<Option<Token>, HubError>> {
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        later(async move {
            let token = name_token(&name);
            let claim = Claim {
                name: name.clone(),
                node: inner.name.clone(),
                boot: inner.boot,
                client: id,
                parked: false,
            };
            match claim_name(&inner.layout.names, &token, &claim).await {
                Ok(Claimed::Won { revision }) => match inner.hub.claim_name(id, &name) {
                    Ok(resume) => {
                        inner.own().insert(token.clone(), revision);
                        inner.directory.put(token, claim, revision);
                        inner.note_later(id);
                        Ok(resume)
                    }
                    Err(e) => {
                        let _ = release_name(&inner.layout.names, &token, revision).await;
                        Err(e)
                    }
                },
                Ok(Claimed::Taken { .. }) => Err(HubError::NameTaken(name)),
                Err(e) => Err(HubError::Unavailable(e.to_string())),
            }
        })
    }

    /// Connection `id` (whose queue is `queue`) ended: in this node's hub, then in
    /// the cluster (its name freed, its rooms left) once its session is over.
    pub fn depart(&self, id: ClientId, queue: &OutQueue, how: Ending) -> Departure {
        let rooms = self.0.rooms_of(id);
        let departure = self.0.hub.depart(id, queue, how);
        match &departure {
            Departure::Gone(Some(name)) => self.0.ended(id, name, rooms),
            Departure::Parked(name) => {
                self.0.parked().insert(name_token(name), (id, rooms));
                self.0.chores.spawn(Arc::clone(&self.0).park(id));
            }
            Departure::Gone(None) | Departure::Replaced => {}
        }
        departure
    }

    /// Forgets client `id` whatever its state; its name, if it had one.
    pub fn disconnect(&self, id: ClientId) -> Option<String> {
        let rooms = self.0.rooms_of(id);
        let name = self.0.hub.disconnect(id)?;
        self.0.ended(id, &name, rooms);
        Some(name)
    }

    /// The parked sessions whose grace ran out, ended here and in the cluster.
    pub fn sweep(&self, timeouts: Timeouts) -> Vec<String> {
        let ended = self.0.hub.sweep(timeouts);
        for name in &ended {
            self.parked_ended(name);
        }
        ended
    }

    /// Ends the parked session holding `name`, here and in the cluster.
    pub fn end_parked(&self, name: &str) -> Answer<Option<String>> {
        if let Some(ended) = self.0.hub.end_parked(name) {
            self.parked_ended(&ended);
            return Answer::Now(Some(ended));
        }
        if !self.held_elsewhere(name) {
            return Answer::Now(None);
        }
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        Answer::Later(Box::pin(async move {
            tokio::time::timeout(ANSWER_WITHIN, inner.end_parked_elsewhere(name))
                .await
                .unwrap_or(None)
        }))
    }

    /// A session resumed (taken over here): its rooms are its own again.
    pub fn resumed(&self, id: ClientId, name: &str) {
        self.0.parked().remove(&name_token(name));
        self.0.note_later(id);
    }

    /// Whether connection `id` may still say hello as `name`: as on one node, and a
    /// name held on another node is taken, unless its session is parked there.
    pub fn may_claim(&self, id: ClientId, name: &str) -> Answer<Result<Holder, HubError>> {
        let local = self.0.hub.may_claim(id, name);
        let Some(held) = self.0.directory.holder(&name_token(name)) else {
            return Answer::Now(local);
        };
        if local.is_err() || self.0.is_mine(&held.claim) {
            return Answer::Now(local);
        }
        let inner = Arc::clone(&self.0);
        let name = name.to_owned();
        later(async move {
            match inner.parked_record(&name).await? {
                Some((_, parked))
                    if parked.session.client == held.claim.client
                        && inner.may_take(&held.claim) =>
                {
                    Ok(Holder::Parked)
                }
                _ => Err(HubError::NameTaken(name)),
            }
        })
    }

    /// Gives connection `new_id` the session holding `name`, parked here or on
    /// another node, if `proof` allows.
    pub fn take_over(
        &self,
        new_id: ClientId,
        name: &str,
        proof: Proof<'_>,
        seen: Option<&Seen>,
        answer: impl FnOnce(Reply) -> Outbound + Send + 'static,
    ) -> Answer<Result<(ClientId, String), HubError>> {
        if !self.held_elsewhere(name) {
            let taken = self.0.hub.take_over(new_id, name, proof, seen, answer);
            if let Ok((id, name)) = &taken {
                self.resumed(*id, name);
            }
            return Answer::Now(taken);
        }
        let inner = Arc::clone(&self.0);
        let (name, proof, seen) = (name.to_owned(), resume::Proven::of(proof), seen.cloned());
        later(inner.take_over_elsewhere(new_id, name, proof, seen, answer))
    }

    fn parked_ended(&self, name: &str) {
        let parked = self.0.parked().remove(&name_token(name));
        let (id, rooms) = parked.unwrap_or_default();
        self.0.ended(id, name, rooms);
    }

    pub fn create_room(&self, id: ClientId, room: &str) -> Answer<Result<String, HubError>> {
        later(Arc::clone(&self.0).create_room(id, room.to_owned()))
    }

    pub fn join_room(
        &self,
        id: ClientId,
        room: &str,
        after: Option<After<'_>>,
        answer: impl FnOnce(Reply) -> Outbound + Send + 'static,
    ) -> Answer<Result<(), HubError>> {
        let after = after.map(|a| (a.seq, a.epoch.map(str::to_owned)));
        let joined = Arc::clone(&self.0).join_room(id, room.to_owned(), after, answer);
        later(joined)
    }

    pub fn say(&self, id: ClientId, room: &str, text: String) -> Answer<Result<u64, HubError>> {
        later(Arc::clone(&self.0).say(id, room.to_owned(), text))
    }

    pub fn leave_room(&self, id: ClientId, room: &str) -> Answer<Result<(), HubError>> {
        later(Arc::clone(&self.0).leave_room(id, room.to_owned()))
    }

    pub fn close_room(&self, id: ClientId, room: &str) -> Answer<Result<(), HubError>> {
        later(Arc::clone(&self.0).close_room(id, room.to_owned()))
    }

    /// Tells `to`, on whichever node it is connected, that mail is waiting.
    pub fn notify_mail(&self, to: &str, from: &str, message_id: u64) {
        self.0.hub.notify_mail(to, from, message_id);
        let Some(held) = self.0.directory.holder(&name_token(to)) else {
            return;
        };
        if self.0.is_mine(&held.claim) {
            return;
        }
        let delivery = Delivery::Mail {
            to: to.to_owned(),
            from: from.to_owned(),
            message_id,
        };
        let Ok(payload) = serde_json::to_vec(&delivery) else {
            return;
        };
        let client = self.0.client.clone();
        let subject = node_subject(&held.claim.node);
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, payload.into()).await {
                tracing::warn!("could not tell another node of new mail: {e}");
            }
        });
    }

    /// Stops the node's background work, gives up its names and its lease: its
    /// clients have been told the server is going, and may say hello on another node
    /// at once.
    pub async fn leave(&self) {
        let inner = &self.0;
        inner.chores.close();
        inner.stop.cancel();
        let goodbye = async {
            inner.chores.wait().await;
            for (_, following) in inner.follows.lock().await.drain() {
                following.end(&inner.layout.room_history);
            }
            let own: Vec<(String, u64)> = inner.own().drain().collect();
            for (token, revision) in own {
                let _ = release_name(&inner.layout.names, &token, revision).await;
            }
            let _ = inner.layout.nodes.delete(&inner.name).await;
            let _ = inner.client.flush().await;
        };
        // With NATS gone the goodbye cannot be said; the others heal after the node
        // anyway, and a stop must not wait on a network that may never answer.
        if tokio::time::timeout(LEAVE_WITHIN, goodbye).await.is_err() {
            tracing::warn!(
                "left the cluster without a goodbye (NATS did not answer within {LEAVE_WITHIN:?}); \
                 the other nodes free this node's names after --heal-after"
            );
        }
    }
}

/// How long `users` (or a send to an unknown client id) waits for this node's view of
/// the names to catch up.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(1);

/// How long a stopping node tries to give up its names and lease.
const LEAVE_WITHIN: Duration = Duration::from_secs(5);

impl Inner {
    fn own(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Node `node` renewed its lease in boot `boot`.
    pub(super) fn heard(&self, node: String, boot: u64) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.insert(node, (boot, tokio::time::Instant::now()));
    }

    /// Whether boot `boot` of node `node` is gone: restarted since, or unheard for
    /// `--heal-after` (never heard, since this node has watched that long), as far as
    /// this node's own view of the leases is current.
    pub(super) fn gone(&self, node: &str, boot: u64) -> bool {
        if node == self.name && boot == self.boot {
            return false;
        }
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        // This node's own renewals come back through the same watch: while they do not
        // (NATS was away, the watch is catching up), its view of the others is stale,
        // and nobody is judged gone on it.
        let fresh = (leases.get(&self.name))
            .is_some_and(|&(boot, at)| boot == self.boot && at.elapsed() < self.heal_after);
        if !fresh {
            return false;
        }
        match leases.get(node) {
            Some(&(heard, _)) if heard != boot => true,
            Some(&(_, at)) => at.elapsed() >= self.heal_after,
            None => self.started.elapsed() >= self.heal_after,
        }
    }

    /// How long a session may wait to be resumed once its node is gone.
    pub(super) fn resume_grace(&self) -> Duration {
        self.resume_grace
    }

    fn rooms_of(&self, id: ClientId) -> Vec<String> {
        (self.hub.names_and_rooms([id]).remove(&id))
            .map(|(_, rooms)| rooms)
            .unwrap_or_default()
    }

    /// Session `id` (`name`) is over: its name is freed and its rooms left (or closed,
    /// those it owned) in the cluster.
    fn ended(self: &Arc<Self>, id: ClientId, name: &str, rooms: Vec<String>) {
        self.release(name);
        self.forget_later(id, name);
        if !rooms.is_empty() {
            let inner = Arc::clone(self);
            let name = name.to_owned();
            self.chores.spawn(inner.left_rooms(id, name, rooms));
        }
    }

    fn entering_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.entering.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (at most [`CATCH_UP_WITHIN`]) until this node's view of `sb-names` has
    /// every write the bucket holds now. Past that, or without NATS, the view answers
    /// as it stands: a `users` answer a moment behind beats none.
    async fn catch_up_names(&self) {
        let caught_up = async {
            if let Ok(info) = self.layout.names.stream.get_info().await {
                self.directory.caught_up_to(info.state.last_sequence).await;
            }
        };
        let _ = tokio::time::timeout(CATCH_UP_WITHIN, caught_up).await;
    }

    pub(super) fn open_rooms(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.open_rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ClientId, Vec<String>)>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_mine(&self, claim: &Claim) -> bool {
        claim.node == self.name && claim.boot == self.boot
    }

    fn release(&self, name: &str) {
        let token = name_token(name);
        let Some(revision) = self.own().remove(&token) else {
            return;
        };
        self.directory.remove(&token);
        let names = self.layout.names.clone();
        self.chores.spawn(async move {
            if let Err(e) = release_name(&names, &token, revision).await {
                tracing::warn!("could not free name {token} in the cluster: {e}");
            }
        });
    }

    /// Frees `name` in the cluster before its session's `bye` is answered, so that
    /// every node has it free once the client hears the answer. Bounded; what it
    /// could not do is left to the session's end ([`Inner::release`]).
    async fn release_before_bye(&self, name: &str) {
        let token = name_token(name);
        let Some(revision) = self.own().get(&token).copied() else {
            return;
        };
        let freed = tokio::time::timeout(
            CATCH_UP_WITHIN,
            release_name(&self.layout.names, &token, revision),
        )
        .await;
        if let Ok(Ok(_)) = freed
            && self.own().get(&token) == Some(&revision)
        {
            self.own().remove(&token);
            self.directory.remove(&token);
        }
    }

    async fn renew_lease(&self) -> Result<(), ClusterError> {
        let lease = serde_json::to_vec(&Lease { boot: self.boot })
            .map_err(|e| ClusterError::nats("writing the lease", e))?;
        (self.layout.nodes)
            .put(&self.name, lease.into())
            .await
            .map(drop)
            .map_err(|e| ClusterError::nats("renewing the node's lease", e))
    }
}

/// How long a request may wait on NATS before it is answered `internal`. A send is
/// acknowledged only once JetStream stored it; one that takes longer is refused rather
/// than left hanging (it may still be stored: the client that sends again may be
/// handed it twice, never none).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// An op of the hub that waits on NATS, bounded by [`ANSWER_WITHIN`].
fn later<T: Send + 'static>(
    op: impl Future<Output = Result<T, HubError>> + Send + 'static,
) -> Answer<Result<T, HubError>> {
    Answer::Later(Box::pin(async move {
        tokio::time::timeout(ANSWER_WITHIN, op)
            .await
            .unwrap_or_else(|_| Err(HubError::Unavailable(slow())))
    }))
}

/// An op of the store that waits on NATS, bounded by [`ANSWER_WITHIN`].
fn kept<T: Send + 'static>(
    op: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Kept<T> {
    Kept::Later(Box::pin(async move {
        tokio::time::timeout(ANSWER_WITHIN, op)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unconfirmed(slow())))
    }))
}

fn slow() -> String {
    format!("NATS did not answer within {ANSWER_WITHIN:?}")
}

/// A store error for what went wrong in the cluster: answered `internal`, and not
/// acknowledged.
fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unconfirmed(e.to_string())
}
