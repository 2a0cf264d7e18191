//! The server's counters, as `/metrics` (Prometheus) and `/api/varz` show them.
//!
//! Counting sits on every request and every delivery, so a count is one relaxed atomic
//! add into an array slot chosen by a fixed index: no label lookup, lock, hash or
//! allocation per event. Every label value is known in advance and small (dialects,
//! close reasons, ops, error codes; never a name or an id), so each series exists from
//! the start, at zero. prometheus-client writes the exposition at scrape time from a
//! snapshot of the atomics ([`Collector`]); only the store's two histograms take a
//! lock, once per committed batch, not per message.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::outbound::CloseReason;
use crate::protocol::{ErrorCode, OPS, Request};

/// Every metric's name starts with this and `_`.
pub const PREFIX: &str = "switchboard";

/// How a connection reaches the server, as the `dialect` label says it: in the order
/// of the server's `Transport`, and spelled as the admin pages spell it.
pub const DIALECTS: [&str; 5] = ["native", "text", "lab", "native/tls", "websocket"];

/// Every error code, in the order of [`ErrorCode`]'s variants, so that a code's
/// discriminant is its slot.
pub const CODES: [ErrorCode; 17] = [
    ErrorCode::BadRequest,
    ErrorCode::UnknownOp,
    ErrorCode::NotRegistered,
    ErrorCode::BadName,
    ErrorCode::NameTaken,
    ErrorCode::AuthFailed,
    ErrorCode::NoSuchUser,
    ErrorCode::NoSuchRoom,
    ErrorCode::RoomExists,
    ErrorCode::NotMember,
    ErrorCode::NotOwner,
    ErrorCode::TooLarge,
    ErrorCode::SlowConsumer,
    ErrorCode::ServerFull,
    ErrorCode::Timeout,
    ErrorCode::ShuttingDown,
    ErrorCode::Internal,
];

/// The slot of `request`'s op in [`OPS`].
pub fn op_index(request: &Request) -> usize {
    match request {
        Request::Ping => 0,
        Request::Hello(_) => 1,
        Request::Menu => 2,
        Request::Users => 3,
        Request::Send { .. } => 4,
        Request::Inbox { .. } => 5,
        Request::Ack { .. } => 6,
        Request::History { .. } => 7,
        Request::CreateRoom { .. } => 8,
        Request::JoinRoom { .. } => 9,
        Request::Say { .. } => 10,
        Request::LeaveRoom { .. } => 11,
        Request::CloseRoom { .. } => 12,
        Request::Bye => 13,
    }
}

const OP_COUNT: usize = OPS.len();

/// What the server counts; one per server, shared by every layer that counts.
#[derive(Debug)]
pub struct Metrics {
    connections: [AtomicI64; DIALECTS.len()],
    connections_total: AtomicU64,
    disconnects: [AtomicU64; CloseReason::ALL.len()],
    requests: [AtomicU64; OP_COUNT],
    errors: [AtomicU64; CODES.len()],
    direct_messages: AtomicU64,
    room_messages: AtomicU64,
    deliveries: AtomicU64,
    slow_consumers: AtomicU64,
    commit_seconds: Histogram,
    batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: [const { AtomicI64::new(0) }; DIALECTS.len()],
            connections_total: AtomicU64::new(0),
            disconnects: [const { AtomicU64::new(0) }; CloseReason::ALL.len()],
            requests: [const { AtomicU64::new(0) }; OP_COUNT],
            errors: [const { AtomicU64::new(0) }; CODES.len()],
            direct_messages: AtomicU64::new(0),
            room_messages: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            // 100 µs to about 3.3 s: an fsync on a fast disk to a stalled one.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 1 to 4096 commands, past the default --commit-batch of 1024.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// The totals `/api/varz` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Connections open now, every dialect.
    pub connections: u64,
    pub connections_total: u64,
    /// Requests served, every op: the messages in.
    pub in_msgs: u64,
    /// Events written to clients' queues: the messages out.
    pub out_msgs: u64,
    pub direct_messages: u64,
    pub room_messages: u64,
    pub slow_consumers: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Metrics {
    /// A connection of dialect slot `dialect` (see [`DIALECTS`]) opened.
    pub fn connected(&self, dialect: usize) {
        if let Some(gauge) = self.connections.get(dialect) {
            gauge.fetch_add(1, Relaxed);
        }
        add(&self.connections_total, 1);
    }

    /// The connection of dialect slot `dialect` is gone.
    pub fn closed(&self, dialect: usize) {
        if let Some(gauge) = self.connections.get(dialect) {
            gauge.fetch_sub(1, Relaxed);
        }
    }

    /// A connection that ended before it became a session (the server was full, its
    /// TLS handshake failed): counted among the connections and their endings, never
    /// open.
    pub fn never_opened(&self, reason: CloseReason) {
        add(&self.connections_total, 1);
        self.disconnect(reason);
    }

    /// A connection ended for `reason`.
    #[inline]
    pub fn disconnect(&self, reason: CloseReason) {
        add(&self.disconnects[reason as usize], 1);
    }

    /// A request was served (or began to be).
    #[inline]
    pub fn request(&self, request: &Request) {
        add(&self.requests[op_index(request)], 1);
    }

    /// A client was told `code`, as an answer or as an event.
    pub fn error(&self, code: ErrorCode) {
        if let Some(counter) = self.errors.get(code as usize) {
            add(counter, 1);
        }
    }

    /// A direct message was stored.
    pub fn direct_message(&self) {
        add(&self.direct_messages, 1);
    }

    /// A message was said in a room.
    pub fn room_message(&self) {
        add(&self.room_messages, 1);
    }

    /// `n` events went into clients' queues.
    #[inline]
    pub fn delivered(&self, n: u64) {
        add(&self.deliveries, n);
    }

    /// A client was cut as a slow consumer.
    pub fn slow_consumer(&self) {
        add(&self.slow_consumers, 1);
    }

    /// The store committed `commands` in one transaction, in `took`.
    pub fn store_commit(&self, took: Duration, commands: usize) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.batch_size.observe(commands as f64);
    }

    /// The totals, each read on its own (no two are taken at one instant).
    pub fn totals(&self) -> Totals {
        let load = |c: &AtomicU64| c.load(Relaxed);
        Totals {
            connections: self
                .connections
                .iter()
                .map(|g| u64::try_from(g.load(Relaxed)).unwrap_or(0))
                .sum(),
            connections_total: load(&self.connections_total),
            in_msgs: self.requests.iter().map(load).sum(),
            out_msgs: load(&self.deliveries),
            direct_messages: load(&self.direct_messages),
            room_messages: load(&self.room_messages),
            slow_consumers: load(&self.slow_consumers),
        }
    }

    /// A registry that encodes these metrics, prefixed, at each scrape.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(Arc::clone(self)));
        registry
    }
}

/// Writes the descriptor of a counter (whose name the encoder ends in `_total`) and its
/// one value for each label value.
fn counters<'v>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    key: &str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in series {
        ConstCounter::new(n).encode(metric.encode_family(&[(key, value)])?)?;
    }
    Ok(())
}

/// Writes a counter without labels.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, n: u64) -> fmt::Result {
    let counter = ConstCounter::new(n);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let load = |c: &AtomicU64| c.load(Relaxed);
        let e = &mut encoder;
        let mut metric = e.encode_descriptor(
            "connections",
            "Connections open now, by dialect.",
            None,
            MetricType::Gauge,
        )?;
        for (dialect, gauge) in DIALECTS.iter().zip(&self.connections) {
            let labels = [("dialect", *dialect)];
            ConstGauge::new(gauge.load(Relaxed)).encode(metric.encode_family(&labels)?)?;
        }
        counter(
            e,
            "connections",
            "Connections accepted since the start, refused ones included.",
            load(&self.connections_total),
        )?;
        counters(
            e,
            "disconnects",
            "Connections ended, by how they ended.",
            "reason",
            CloseReason::ALL
                .iter()
                .map(|reason| reason.as_str())
                .zip(self.disconnects.iter().map(load)),
        )?;
        counters(
            e,
            "requests",
            "Requests served, by op.",
            "op",
            OPS.iter().copied().zip(self.requests.iter().map(load)),
        )?;
        counters(
            e,
            "errors",
            "Errors told to clients, as answers or events, by code.",
            "code",
            CODES
                .iter()
                .map(|code| code.as_str())
                .zip(self.errors.iter().map(load)),
        )?;
        counter(
            e,
            "direct_messages",
            "Direct messages stored.",
            load(&self.direct_messages),
        )?;
        counter(
            e,
            "room_messages",
            "Messages said in rooms.",
            load(&self.room_messages),
        )?;
        counter(
            e,
            "deliveries",
            "Events written to clients' queues.",
            load(&self.deliveries),
        )?;
        counter(
            e,
            "slow_consumers",
            "Clients cut as slow consumers.",
            load(&self.slow_consumers),
        )?;
        let histograms = [
            (
                "store_commit_seconds",
                "Time to run and commit one store transaction.",
                &self.commit_seconds,
            ),
            (
                "store_batch_size",
                "Commands committed in one store transaction.",
                &self.batch_size,
            ),
        ];
        for (name, help, histogram) in histograms {
            histogram.encode(e.encode_descriptor(name, help, None, histogram.metric_type())?)?;
        }
        let mut info = e.encode_descriptor(
            "build_info",
            "Always 1; the label says the version.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Recipient;

    #[test]
    fn each_code_is_in_its_own_slot() {
        for (slot, code) in CODES.iter().enumerate() {
            assert_eq!(*code as usize, slot, "{code}");
        }
    }

    #[test]
    fn each_request_counts_under_its_own_op() {
        let room = || "r".to_owned();
        let requests = [
            Request::Ping,
            Request::Menu,
            Request::Users,
            Request::Send {
                to: Recipient::Name("a".into()),
                text: "t".into(),
            },
            Request::Inbox {
                limit: None,
                peek: false,
            },
            Request::Ack { up_to: 1 },
            Request::History {
                room: room(),
                before: None,
                limit: None,
            },
            Request::CreateRoom { room: room() },
            Request::JoinRoom {
                room: room(),
                after: None,
                epoch: None,
            },
            Request::Say {
                room: room(),
                text: "t".into(),
            },
            Request::LeaveRoom { room: room() },
            Request::CloseRoom { room: room() },
            Request::Bye,
        ];
        for request in requests {
            let json = serde_json::to_value(&request).unwrap();
            assert_eq!(json["op"], OPS[op_index(&request)], "{json}");
        }
        assert_eq!(OPS[1], "hello");
    }

    #[test]
    fn each_reason_has_its_own_slot() {
        for (slot, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, slot, "{reason:?}");
        }
    }

    #[test]
    fn the_exposition_names_every_series() {
        let metrics = Arc::new(Metrics::default());
        metrics.connected(3);
        metrics.request(&Request::Ping);
        metrics.disconnect(CloseReason::Internal);
        metrics.error(ErrorCode::NoSuchUser);
        metrics.store_commit(Duration::from_millis(2), 5);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.registry())
            .unwrap();
        for line in [
            "switchboard_connections{dialect=\"native/tls\"} 1",
            "switchboard_connections_total 1",
            "switchboard_disconnects_total{reason=\"internal\"} 1",
            "switchboard_requests_total{op=\"ping\"} 1",
            "switchboard_errors_total{code=\"no_such_user\"} 1",
            "switchboard_store_batch_size_count 1",
            "switchboard_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(metrics.totals().connections, 1);
    }
}
