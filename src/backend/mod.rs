//! The one seam between the services and the state they serve from: who is online,
//! rooms, names, passwords and inboxes. Two sides are chosen from at start: [`Local`],
//! one process's hub and SQLite store, and the cluster's, which keeps the same state in
//! NATS JetStream for several nodes. Sessions, dialects and services see only
//! [`Backend`].
//!
//! An enum, not a trait object or a generic: the sessions and the server stay concrete
//! types, and on one node each call costs a match that always takes the same arm.
//! The local side answers the hub's ops at once and the store's through its queue
//! without allocating; only the cluster's answers, which wait on the network, are
//! boxed futures.

mod local;

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::hub::{After, Departure, Ending, Holder, HubError, Proof, RoomView, Timeouts, Token};
use crate::outbound::{OutQueue, Outbound, Outbox};
use crate::protocol::{ClientId, HistoryPage, InboxPage, Reply, Seen, UserInfo};
use crate::store::{Account, Appended, Pending, StoreError};

pub use local::Local;

use crate::cluster::Node;

/// A future the cluster's side answers with; it owns what it needs.
pub type Later<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an op of the hub answers: at once (always, on one node), or once the cluster
/// has agreed.
#[must_use = "an answer says whether the op took effect"]
pub enum Answer<T> {
    Now(T),
    Later(Later<T>),
}

impl<T: Send + 'static> Answer<T> {
    /// The answer made into another, at once if it is here already.
    pub fn map<U>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Answer<U> {
        match self {
            Answer::Now(value) => Answer::Now(f(value)),
            Answer::Later(later) => Answer::Later(Box::pin(async move { f(later.await) })),
        }
    }

    /// Waits for the answer.
    pub async fn get(self) -> T {
        match self {
            Answer::Now(value) => value,
            Answer::Later(later) => later.await,
        }
    }
}

/// What an op of the store answers, once what it wrote is kept (committed on one node,
/// stored by JetStream in a cluster).
#[must_use = "the answer says whether the command was kept"]
pub enum Kept<T> {
    Local(Pending<T>),
    Later(Later<Result<T, StoreError>>),
}

impl<T> std::fmt::Debug for Kept<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kept::Local(pending) => pending.fmt(f),
            Kept::Later(_) => f.write_str("Kept::Later"),
        }
    }
}

impl<T> Future for Kept<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Kept::Local(pending) => Pin::new(pending).poll(cx),
            Kept::Later(later) => later.as_mut().poll(cx),
        }
    }
}

/// The state the services serve from; see the module's introduction.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per server, inside the shared services: boxing the local side would \
              cost every op on one node a pointer to follow and save nothing"
)]
pub enum Backend {
    Local(Local),
    Cluster(Node),
}

impl Backend {
    /// The local side, for what only one node's own store can do (the admin socket's
    /// backups and password resets).
    pub fn local(&self) -> Option<&Local> {
        match self {
            Backend::Local(local) => Some(local),
            Backend::Cluster(_) => None,
        }
    }

    /// Lets go of what this node holds for others to see (a cluster node's names and
    /// lease), once its sessions have ended.
    pub async fn leave(&self) {
        match self {
            Backend::Local(_) => {}
            Backend::Cluster(node) => node.leave().await,
        }
    }

    /// The client ids this node hands out: every id on one node; a block of its own in
    /// a cluster.
    pub fn client_ids(&self) -> std::ops::Range<ClientId> {
        match self {
            Backend::Local(_) => 1..ClientId::MAX,
            Backend::Cluster(node) => node.ids(),
        }
    }

    /// Whether sessions are parked for resuming.
    pub fn resumes(&self) -> bool {
        match self {
            Backend::Local(local) => local.hub().resumes(),
            Backend::Cluster(node) => node.hub().resumes(),
        }
    }

    /// A new connection, reachable for events from now on; unnamed until `hello`.
    pub fn connect(&self, id: ClientId, outbox: Outbox) {
        match self {
            Backend::Local(local) => local.hub().connect(id, outbox),
            Backend::Cluster(node) => node.hub().connect(id, outbox),
        }
    }

    /// Whether connection `id` may still say hello as `name`; see
    /// [`crate::hub::Hub::may_claim`].
    pub fn may_claim(&self, id: ClientId, name: &str) -> Answer<Result<Holder, HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().may_claim(id, name)),
            Backend::Cluster(node) => node.may_claim(id, name),
        }
    }

    /// Gives connection `id` the name `name` if nobody holds it; its resume token.
    pub fn claim_name(&self, id: ClientId, name: &str) -> Answer<Result<Option<Token>, HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().claim_name(id, name)),
            Backend::Cluster(node) => node.claim_name(id, name),
        }
    }

    /// Takes the session holding `name` over for connection `new_id`, if `proof`
    /// allows; `answer` makes the reply queued before the replay.
    pub fn take_over(
        &self,
        new_id: ClientId,
        name: &str,
        proof: Proof<'_>,
        seen: Option<&Seen>,
        answer: impl FnOnce(Reply) -> Outbound + Send + 'static,
    ) -> Answer<Result<(ClientId, String), HubError>> {
        match self {
            Backend::Local(local) => {
                Answer::Now(local.hub().take_over(new_id, name, proof, seen, answer))
            }
            Backend::Cluster(node) => node.take_over(new_id, name, proof, seen, answer),
        }
    }

    /// Ends the parked session holding `name`; its name, if there was one.
    pub fn end_parked(&self, name: &str) -> Answer<Option<String>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().end_parked(name)),
            Backend::Cluster(node) => node.end_parked(name),
        }
    }

    /// Everyone online under a name, in the order they connected.
    pub fn users(&self) -> Vec<UserInfo> {
        match self {
            Backend::Local(local) => local.hub().users(),
            Backend::Cluster(node) => node.users(),
        }
    }

    /// Session `id` says `bye`; its session ends when its connection does. A cluster
    /// node frees its name across the cluster first.
    pub fn bye(&self, id: ClientId) -> Answer<Result<(), HubError>> {
        match self {
            Backend::Local(_) => Answer::Now(Ok(())),
            Backend::Cluster(node) => node.bye(id),
        }
    }

    /// [`Backend::users`] as a request answers it: a cluster node first catches up
    /// with every claim the cluster acknowledged before it was asked.
    pub fn users_now(&self) -> Answer<Result<Vec<UserInfo>, HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(Ok(local.hub().users())),
            Backend::Cluster(node) => node.users_now(),
        }
    }

    /// A send to client `id`, whom this node does not know (yet): a cluster node
    /// catches up with the claims acknowledged so far and sends if someone holds the
    /// id; one node knows everyone already (`None`).
    pub fn append_to_id(
        &self,
        id: ClientId,
        from: std::sync::Arc<str>,
        text: String,
    ) -> Option<Kept<Appended>> {
        match self {
            Backend::Local(_) => None,
            Backend::Cluster(node) => Some(node.append_to_id(id, from, text)),
        }
    }

    /// The name of the client online as `id`.
    pub fn name_of(&self, id: ClientId) -> Option<String> {
        match self {
            Backend::Local(local) => local.hub().name_of(id),
            Backend::Cluster(node) => node.name_of(id),
        }
    }

    /// The name and rooms of each of this node's sessions `ids`.
    pub fn names_and_rooms(
        &self,
        ids: impl IntoIterator<Item = ClientId>,
    ) -> foldhash::HashMap<ClientId, (Option<String>, Vec<String>)> {
        match self {
            Backend::Local(local) => local.hub().names_and_rooms(ids),
            Backend::Cluster(node) => node.hub().names_and_rooms(ids),
        }
    }

    /// This node's connections now.
    pub fn online_count(&self) -> usize {
        match self {
            Backend::Local(local) => local.hub().online_count(),
            Backend::Cluster(node) => node.hub().online_count(),
        }
    }

    /// Sessions parked now.
    pub fn parked_count(&self) -> usize {
        match self {
            Backend::Local(local) => local.hub().parked_count(),
            Backend::Cluster(node) => node.hub().parked_count(),
        }
    }

    /// Tells every connection of this node the server is shutting down.
    pub fn drain_all(&self) {
        match self {
            Backend::Local(local) => local.hub().drain_all(),
            Backend::Cluster(node) => node.hub().drain_all(),
        }
    }

    /// The rooms, their owners and members, for the dashboard.
    pub fn rooms_overview(&self, max_rooms: usize, max_members: usize) -> (Vec<RoomView>, usize) {
        match self {
            Backend::Local(local) => local.hub().rooms_overview(max_rooms, max_members),
            Backend::Cluster(node) => node.hub().rooms_overview(max_rooms, max_members),
        }
    }

    /// Tells `to`, wherever it is connected, that mail from `from` is waiting.
    pub fn notify_mail(&self, to: &str, from: &str, message_id: u64) {
        match self {
            Backend::Local(local) => local.hub().notify_mail(to, from, message_id),
            Backend::Cluster(node) => node.notify_mail(to, from, message_id),
        }
    }

    /// Opens `room` owned by `id`; its epoch.
    pub fn create_room(&self, id: ClientId, room: &str) -> Answer<Result<String, HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().create_room(id, room)),
            Backend::Cluster(node) => node.create_room(id, room),
        }
    }

    /// Enters `room`; `answer` makes the reply queued before any replay.
    pub fn join_room(
        &self,
        id: ClientId,
        room: &str,
        after: Option<After<'_>>,
        answer: impl FnOnce(Reply) -> Outbound + Send + 'static,
    ) -> Answer<Result<(), HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().join_room(id, room, after, answer)),
            Backend::Cluster(node) => node.join_room(id, room, after, answer),
        }
    }

    /// Sends `text` to `room`; its `seq`.
    pub fn say(&self, id: ClientId, room: &str, text: String) -> Answer<Result<u64, HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().say(id, room, &text)),
            Backend::Cluster(node) => node.say(id, room, text),
        }
    }

    /// A page of `room`'s kept messages; see [`crate::hub::Hub::history`].
    pub fn history(
        &self,
        id: ClientId,
        room: &str,
        before: Option<u64>,
        limit: usize,
        budget: usize,
    ) -> Answer<Result<HistoryPage, HubError>> {
        match self {
            Backend::Local(local) => {
                Answer::Now(local.hub().history(id, room, before, limit, budget))
            }
            Backend::Cluster(node) => {
                Answer::Now(node.hub().history(id, room, before, limit, budget))
            }
        }
    }

    pub fn leave_room(&self, id: ClientId, room: &str) -> Answer<Result<(), HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().leave_room(id, room)),
            Backend::Cluster(node) => node.leave_room(id, room),
        }
    }

    pub fn close_room(&self, id: ClientId, room: &str) -> Answer<Result<(), HubError>> {
        match self {
            Backend::Local(local) => Answer::Now(local.hub().close_room(id, room)),
            Backend::Cluster(node) => node.close_room(id, room),
        }
    }

    /// Connection `id` (whose queue is `queue`) ended; see [`crate::hub::Hub::depart`].
    pub fn depart(&self, id: ClientId, queue: &OutQueue, how: Ending) -> Departure {
        match self {
            Backend::Local(local) => local.hub().depart(id, queue, how),
            Backend::Cluster(node) => node.depart(id, queue, how),
        }
    }

    /// Forgets client `id` whatever its state; its name, if it had one.
    pub fn disconnect(&self, id: ClientId) -> Option<String> {
        match self {
            Backend::Local(local) => local.hub().disconnect(id),
            Backend::Cluster(node) => node.disconnect(id),
        }
    }

    /// Expires what is past its deadline; the names of the parked sessions ended.
    pub fn sweep(&self, timeouts: Timeouts) -> Vec<String> {
        match self {
            Backend::Local(local) => local.hub().sweep(timeouts),
            Backend::Cluster(node) => node.sweep(timeouts),
        }
    }

    /// The account of `name`: its name as first seen and its password hash.
    pub fn credentials(&self, name: &str) -> Kept<Option<Account>> {
        match self {
            Backend::Local(local) => Kept::Local(local.store().credentials(name)),
            Backend::Cluster(node) => node.credentials(name),
        }
    }

    /// Records that `name` exists; its name as first seen.
    pub fn seen(&self, name: &str) -> Kept<String> {
        match self {
            Backend::Local(local) => Kept::Local(local.store().seen(name)),
            Backend::Cluster(node) => node.seen(name),
        }
    }

    /// Protects `name` with `hash` unless it is protected already; true when it took.
    pub fn register(&self, name: &str, hash: String) -> Kept<bool> {
        match self {
            Backend::Local(local) => Kept::Local(local.store().register(name, hash)),
            Backend::Cluster(node) => node.register(name, hash),
        }
    }

    /// Forgets guest `name` and its mail.
    pub fn forget_guest(&self, name: &str) -> Kept<bool> {
        match self {
            Backend::Local(local) => Kept::Local(local.store().forget_guest(name)),
            Backend::Cluster(node) => node.forget_guest(name),
        }
    }

    /// Keeps a direct message for `to`; answers once it is kept.
    pub fn append(&self, to: String, from: std::sync::Arc<str>, text: String) -> Kept<Appended> {
        match self {
            Backend::Local(local) => Kept::Local(local.store().append(to, from, text)),
            Backend::Cluster(node) => node.append(to, from, text),
        }
    }

    /// A page of `name`'s unread mail: taken, or with `peek` left until acked.
    pub fn inbox(&self, name: String, limit: u32, budget: usize, peek: bool) -> Kept<InboxPage> {
        match self {
            Backend::Local(local) if peek => {
                Kept::Local(local.store().peek_inbox(name, limit, budget))
            }
            Backend::Local(local) => Kept::Local(local.store().take_inbox(name, limit, budget)),
            Backend::Cluster(node) => node.inbox(name, limit, budget, peek),
        }
    }

    /// Marks `name`'s unread mail read up to `up_to`; how many.
    pub fn ack(&self, name: String, up_to: u64) -> Kept<u64> {
        match self {
            Backend::Local(local) => Kept::Local(local.store().ack(name, up_to)),
            Backend::Cluster(node) => node.ack(name, up_to),
        }
    }
}
