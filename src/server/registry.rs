//! What the admin pages show of the connections, beside what the hub knows of them:
//! every open connection with its transport, peer and start; what the lab programs
//! sent; and how many messages go through per second.
//!
//! The hub knows names, sessions and rooms but never sockets or dialects, so this is
//! kept in the server layer, touched when a connection opens and when it ends (and
//! when it resumes another session), never per message: the one cost per message is
//! a relaxed increment of [`Registry::count_message`]. Entries are keyed by the
//! connection's own client id, which no other connection ever has; a resumed session
//! changes the client id it shows, not its key. A connection that ends moves, under
//! the same lock, to a bounded record of closed connections with its reason: touched
//! once per connection, never per message (what a connection carried is counted in
//! its queue, which the entry reaches without keeping it alive).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use foldhash::HashMap;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::outbound::{CloseReason, Counts, OutQueue};
use crate::protocol::{ClientId, now_millis, rfc3339_of_millis};

/// Closed connections kept for `/api/connz`; older ones are forgotten.
pub const CLOSED_KEPT: usize = 10_000;

/// Lab submissions kept for the dashboard; older ones are forgotten.
pub const LAB_KEPT: usize = 200;
/// Seconds of message rates kept: five minutes.
pub const RATE_SECONDS: usize = 300;

/// How a connection reaches the server: one of the three TCP dialects, the native
/// protocol over TLS, or a WebSocket (which speaks the native protocol's JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Native,
    Text,
    Lab,
    #[serde(rename = "native/tls")]
    NativeTls,
    WebSocket,
}

impl Transport {
    /// Its slot in [`crate::metrics::DIALECTS`], which spells it as serde does.
    fn slot(self) -> usize {
        self as usize
    }

    /// Its name, as the admin pages and the metrics' `dialect` label spell it.
    pub fn name(self) -> &'static str {
        crate::metrics::DIALECTS[self.slot()]
    }
}

/// One open connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client id it is known by: its own, or that of the session it resumed.
    pub client_id: ClientId,
    pub transport: Transport,
    pub peer: SocketAddr,
    /// When it connected, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Its queue, where its counters are; gone once the session is.
    pub queue: Weak<OutQueue>,
}

/// A connection that ended, as it was then.
#[derive(Debug, Clone)]
pub struct Closed {
    pub client_id: ClientId,
    pub transport: Transport,
    pub peer: SocketAddr,
    pub start_ms: i64,
    pub stop_ms: i64,
    pub name: Option<String>,
    pub rooms: Vec<String>,
    pub counts: Counts,
    /// Frames still queued for it when it ended.
    pub pending: usize,
    pub reason: CloseReason,
}

/// The open connections and the last closed ones, under one lock, so that a
/// connection is always in exactly one of them.
#[derive(Debug)]
struct Connections {
    open: HashMap<ClientId, Connection>,
    closed: VecDeque<Closed>,
    /// How many closed connections are kept.
    kept: usize,
}

/// What a lab program sent that was not a request.
#[derive(Debug, Clone, Serialize)]
pub struct Submission {
    /// Numbers every submission since the server started, from 1: a reader asks for
    /// those after the last it has.
    pub seq: u64,
    /// When it arrived, RFC 3339.
    pub at: String,
    pub client_id: ClientId,
    /// The sender's name, if it had said hello (most lab programs never do).
    pub name: Option<String>,
    pub peer: Option<SocketAddr>,
    /// The dict's entries as the program spelled them, in key order.
    pub fields: Vec<(String, String)>,
    /// The whole value as Python prints it, cut short.
    pub summary: String,
}

/// The lab submissions kept, newest last.
#[derive(Debug, Default)]
struct LabLog {
    kept: VecDeque<Submission>,
    last_seq: u64,
}

/// Messages per second, sampled once a second.
#[derive(Debug, Default)]
struct Rates {
    /// Messages in each of the last seconds, oldest first.
    per_second: VecDeque<u64>,
    /// The message count at the last sample.
    counted: u64,
}

#[derive(Debug)]
pub struct Registry {
    connections: Mutex<Connections>,
    lab: Mutex<LabLog>,
    /// Room messages and direct messages asked for since the server started.
    messages: AtomicU64,
    rates: Mutex<Rates>,
    /// Counts the connections as they open and close.
    metrics: Arc<Metrics>,
    /// The server is shutting down: a session dropped unfinished was stopped by it.
    stopping: AtomicBool,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::keeping(CLOSED_KEPT)
    }
}

/// A connection's place in the registry: [`Listed::close`] moves it to the closed
/// connections with its reason. If it drops first (a panicking session's future is
/// dropped, or the drain timeout aborted it), the server's failure or its shutdown
/// is the reason.
#[must_use]
pub struct Listed<'a> {
    registry: &'a Registry,
    key: ClientId,
    transport: Transport,
    closed: bool,
}

impl Listed<'_> {
    /// The connection ended for `reason`, named `name` and in `rooms` then.
    pub fn close(mut self, reason: CloseReason, name: Option<String>, rooms: Vec<String>) {
        self.closed = true;
        self.registry.close(self.key, reason, name, rooms);
    }
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        if !self.closed {
            let reason = if self.registry.stopping.load(Ordering::Relaxed) {
                CloseReason::Shutdown
            } else {
                CloseReason::Internal
            };
            self.registry.close(self.key, reason, None, Vec::new());
        }
        self.registry.metrics.closed(self.transport.slot());
    }
}

/// A lock whose holder may have panicked: every step taken under these locks leaves
/// the data consistent, so going on is safe.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    /// A registry that counts the connections into `metrics`.
    pub fn counted(metrics: Arc<Metrics>) -> Self {
        Registry {
            metrics,
            ..Registry::default()
        }
    }

    /// A registry that keeps the last `kept` closed connections.
    pub fn keeping(kept: usize) -> Self {
        Registry {
            connections: Mutex::new(Connections {
                open: HashMap::default(),
                closed: VecDeque::new(),
                kept,
            }),
            lab: Mutex::default(),
            messages: AtomicU64::new(0),
            rates: Mutex::default(),
            stopping: AtomicBool::new(false),
            metrics: Arc::default(),
        }
    }

    /// Lists connection `client_id` (its own id), whose queue is `queue`, until the
    /// returned guard closes or drops.
    pub fn open(
        &self,
        client_id: ClientId,
        transport: Transport,
        peer: SocketAddr,
        queue: &Arc<OutQueue>,
    ) -> Listed<'_> {
        let connection = Connection {
            client_id,
            transport,
            peer,
            start_ms: now_millis(),
            queue: Arc::downgrade(queue),
        };
        lock(&self.connections).open.insert(client_id, connection);
        self.metrics.connected(transport.slot());
        Listed {
            registry: self,
            key: client_id,
            transport,
            closed: false,
        }
    }

    /// Moves connection `key` (its own id) to the closed ones.
    fn close(&self, key: ClientId, reason: CloseReason, name: Option<String>, rooms: Vec<String>) {
        let mut connections = lock(&self.connections);
        let Some(connection) = connections.open.remove(&key) else {
            return;
        };
        let queue = connection.queue.upgrade();
        let closed = Closed {
            client_id: connection.client_id,
            transport: connection.transport,
            peer: connection.peer,
            start_ms: connection.start_ms,
            stop_ms: now_millis(),
            name,
            rooms,
            counts: queue.as_ref().map(|q| q.stats.counts()).unwrap_or_default(),
            pending: queue.as_ref().map_or(0, |q| q.len()),
            reason,
        };
        connections.keep(closed);
    }

    /// A connection `client_id` from `peer`, accepted at `start_ms`, that ended for
    /// `reason` before it became a session: refused when the server was full, or its
    /// TLS handshake failed.
    pub fn never_opened(
        &self,
        client_id: ClientId,
        (transport, peer): (Transport, SocketAddr),
        start_ms: i64,
        reason: CloseReason,
    ) {
        lock(&self.connections).keep(Closed {
            client_id,
            transport,
            peer,
            start_ms,
            stop_ms: now_millis(),
            name: None,
            rooms: Vec::new(),
            counts: Counts::default(),
            pending: 0,
            reason,
        });
    }

    /// The server is shutting down: sessions dropped from now on were stopped by it.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Connection `key` (its own id) now speaks for session `client_id`: it resumed it.
    pub fn resumed(&self, key: ClientId, client_id: ClientId) {
        if let Some(connection) = lock(&self.connections).open.get_mut(&key) {
            connection.client_id = client_id;
        }
    }

    /// The open connections, in the order they connected.
    pub fn connections(&self) -> Vec<Connection> {
        let mut all: Vec<(ClientId, Connection)> = lock(&self.connections)
            .open
            .iter()
            .map(|(&key, connection)| (key, connection.clone()))
            .collect();
        all.sort_unstable_by_key(|(key, _)| *key);
        all.into_iter().map(|(_, connection)| connection).collect()
    }

    /// The closed connections kept, oldest first.
    pub fn closed(&self) -> Vec<Closed> {
        lock(&self.connections).closed.iter().cloned().collect()
    }

    /// The peer of the connection whose own id is `key`.
    fn peer_of(&self, key: ClientId) -> Option<SocketAddr> {
        lock(&self.connections).open.get(&key).map(|c| c.peer)
    }

    /// Keeps what connection `key` (its own id), known as `client_id`, sent.
    pub fn lab_data(
        &self,
        key: ClientId,
        client_id: ClientId,
        name: Option<&str>,
        fields: Vec<(String, String)>,
        summary: String,
    ) {
        let peer = self.peer_of(key);
        let mut lab = lock(&self.lab);
        lab.last_seq += 1;
        let submission = Submission {
            seq: lab.last_seq,
            at: rfc3339_of_millis(now_millis()),
            client_id,
            name: name.map(str::to_owned),
            peer,
            fields,
            summary,
        };
        if lab.kept.len() == LAB_KEPT {
            lab.kept.pop_front();
        }
        lab.kept.push_back(submission);
    }

    /// The kept submissions numbered after `after`, oldest first, and the number of
    /// the latest one.
    pub fn lab_since(&self, after: u64) -> (Vec<Submission>, u64) {
        let lab = lock(&self.lab);
        let newer = lab.kept.iter().filter(|s| s.seq > after).cloned().collect();
        (newer, lab.last_seq)
    }

    /// One room or direct message asked for.
    pub fn count_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages asked for since the server started.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Closes the second just past: what was counted since the last sample.
    pub fn sample(&self) {
        let now = self.messages();
        let mut rates = lock(&self.rates);
        let delta = now.saturating_sub(rates.counted);
        rates.counted = now;
        if rates.per_second.len() == RATE_SECONDS {
            rates.per_second.pop_front();
        }
        rates.per_second.push_back(delta);
    }

    /// Messages in each of the last seconds (oldest first), and those counted so far
    /// in the second under way.
    pub fn rates(&self) -> (Vec<u64>, u64) {
        let now = self.messages();
        let rates = lock(&self.rates);
        (
            rates.per_second.iter().copied().collect(),
            now.saturating_sub(rates.counted),
        )
    }

    /// Samples the message rate every second, for as long as it runs.
    pub async fn sample_every_second(&self) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: nothing to close yet.
        tick.tick().await;
        loop {
            tick.tick().await;
            self.sample();
        }
    }
}

impl Connections {
    /// Keeps `closed`, forgetting the oldest beyond the bound.
    fn keep(&mut self, closed: Closed) {
        if self.kept == 0 {
            return;
        }
        if self.closed.len() >= self.kept {
            self.closed.pop_front();
        }
        self.closed.push_back(closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    fn queue() -> Arc<OutQueue> {
        Arc::new(OutQueue::new(crate::outbound::Bounds {
            frames: 8,
            bytes: 1 << 20,
        }))
    }

    #[test]
    fn each_transport_is_counted_under_its_own_name() {
        use crate::metrics::DIALECTS;
        for transport in [
            Transport::Native,
            Transport::Text,
            Transport::Lab,
            Transport::NativeTls,
            Transport::WebSocket,
        ] {
            let json = serde_json::to_value(transport).unwrap();
            assert_eq!(json, DIALECTS[transport.slot()]);
        }
    }

    #[test]
    fn a_connection_is_listed_while_its_guard_lives() {
        let registry = Registry::default();
        let (q1, q2) = (queue(), queue());
        let first = registry.open(3, Transport::Lab, peer(), &q1);
        let second = registry.open(1, Transport::WebSocket, peer(), &q2);
        registry.resumed(1, 9);
        let listed: Vec<_> = registry
            .connections()
            .iter()
            .map(|c| (c.client_id, c.transport))
            .collect();
        assert_eq!(listed, [(9, Transport::WebSocket), (3, Transport::Lab)]);
        first.close(CloseReason::Bye, Some("ann".into()), vec!["r".into()]);
        assert_eq!(registry.connections().len(), 1);
        drop(second);
        assert!(registry.connections().is_empty());
        let closed: Vec<_> = registry
            .closed()
            .iter()
            .map(|c| (c.client_id, c.reason, c.name.clone()))
            .collect();
        assert_eq!(
            closed,
            [
                (3, CloseReason::Bye, Some("ann".into())),
                (9, CloseReason::Internal, None)
            ]
        );
    }

    #[test]
    fn closed_connections_are_kept_up_to_the_bound_oldest_forgotten_first() {
        let registry = Registry::keeping(3);
        for id in 1..=5 {
            let q = queue();
            q.stats.read(10);
            q.stats.received();
            registry.open(id, Transport::Native, peer(), &q).close(
                CloseReason::ClientClosed,
                None,
                Vec::new(),
            );
        }
        registry.never_opened(
            6,
            (Transport::Text, peer()),
            now_millis(),
            CloseReason::ServerFull,
        );
        let closed = registry.closed();
        let ids: Vec<_> = closed.iter().map(|c| c.client_id).collect();
        assert_eq!(ids, [4, 5, 6]);
        assert_eq!(closed[0].counts.in_bytes, 10);
        assert_eq!(closed[0].counts.in_msgs, 1);
        assert_eq!(closed[2].reason, CloseReason::ServerFull);
        assert_eq!(
            Registry::default().connections.lock().unwrap().kept,
            CLOSED_KEPT
        );
    }

    #[test]
    fn a_session_dropped_while_the_server_stops_was_shut_down() {
        let registry = Registry::default();
        let q = queue();
        registry.stopping();
        drop(registry.open(1, Transport::Native, peer(), &q));
        assert_eq!(registry.closed()[0].reason, CloseReason::Shutdown);
    }

    #[test]
    fn lab_submissions_are_kept_up_to_the_bound_and_read_after_a_cursor() {
        let registry = Registry::default();
        let q = queue();
        let _listed = registry.open(4, Transport::Lab, peer(), &q);
        for n in 0..LAB_KEPT + 5 {
            registry.lab_data(4, 4, None, vec![("n".into(), n.to_string())], String::new());
        }
        let (all, last) = registry.lab_since(0);
        assert_eq!(all.len(), LAB_KEPT);
        assert_eq!(last, (LAB_KEPT + 5) as u64);
        assert_eq!(all[0].seq, 6);
        assert_eq!(all[0].peer, Some(peer()));
        let (newer, _) = registry.lab_since(last - 2);
        assert_eq!(newer.len(), 2);
        assert!(registry.lab_since(last).0.is_empty());
    }

    #[test]
    fn rates_keep_five_minutes_of_seconds() {
        let registry = Registry::default();
        registry.count_message();
        registry.count_message();
        assert_eq!(registry.rates(), (vec![], 2));
        registry.sample();
        registry.count_message();
        assert_eq!(registry.rates(), (vec![2], 1));
        for _ in 0..RATE_SECONDS + 10 {
            registry.sample();
        }
        let (seconds, now) = registry.rates();
        assert_eq!((seconds.len(), now), (RATE_SECONDS, 0));
        assert_eq!(registry.messages(), 3);
    }
}
