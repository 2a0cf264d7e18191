//! `GET /api/connz`: every connection, open or among the last closed, with what it
//! carried and, once closed, why it ended; filtered, sorted and paged. An admin page
//! (`admin_token.rs`). Everything is gathered when asked: the registry and each
//! connection's counters are read, and the hub is asked once for names and rooms.

use std::cmp::{Ordering, Reverse};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use super::SessionKit;
use super::admin_token::{self, AdminAccess};
use super::registry::{Closed, Registry, Transport};
use crate::outbound::{CloseReason, Counts};
use crate::protocol::{ClientId, rfc3339_of_millis};
use crate::service::Services;

/// Connections in one answer unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1024;
/// Connections in one answer at most, whatever `limit` says.
pub const MAX_LIMIT: usize = 10_000;

/// `/api/connz`, behind the admin guard.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    kit: &SessionKit,
    access: &Arc<AdminAccess>,
) -> Router<S> {
    admin_token::guarded(Router::new().route("/api/connz", get(connz)), access)
        .with_state(kit.clone())
}

/// Which connections are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Open,
    Closed,
    All,
}

/// What the list is sorted by. Names, ids, reasons and starts go up; times of
/// activity or of the end, counters and queues go down, the busiest or latest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    ClientId,
    Start,
    LastActivity,
    InMsgs,
    OutMsgs,
    InBytes,
    OutBytes,
    Pending,
    Stop,
    Reason,
    Name,
    Dialect,
    Peer,
    Rooms,
}

const SORT_KEYS: [(&str, SortKey); 14] = [
    ("client_id", SortKey::ClientId),
    ("start", SortKey::Start),
    ("last_activity", SortKey::LastActivity),
    ("in_msgs", SortKey::InMsgs),
    ("out_msgs", SortKey::OutMsgs),
    ("in_bytes", SortKey::InBytes),
    ("out_bytes", SortKey::OutBytes),
    ("pending", SortKey::Pending),
    ("stop", SortKey::Stop),
    ("reason", SortKey::Reason),
    ("name", SortKey::Name),
    ("dialect", SortKey::Dialect),
    ("peer", SortKey::Peer),
    ("rooms", SortKey::Rooms),
];

/// What the query asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Query {
    which: Which,
    sort: SortKey,
    limit: usize,
    offset: usize,
}

/// A parameter that cannot be understood, and why.
#[derive(Debug, PartialEq, Eq)]
struct BadParameter {
    parameter: &'static str,
    message: String,
}

impl Query {
    /// Reads the query string; parameters other than these (the admin `token`) are
    /// left to others. A `limit` over [`MAX_LIMIT`] is taken as [`MAX_LIMIT`].
    fn parse(query: &str) -> Result<Query, BadParameter> {
        let mut parsed = Query {
            which: Which::Open,
            sort: SortKey::ClientId,
            limit: DEFAULT_LIMIT,
            offset: 0,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "state" => {
                    parsed.which = match value {
                        "open" => Which::Open,
                        "closed" => Which::Closed,
                        "all" => Which::All,
                        _ => return Err(bad("state", "is one of open, closed, all")),
                    }
                }
                "sort" => {
                    parsed.sort = SORT_KEYS
                        .iter()
                        .find(|(name, _)| *name == value)
                        .map(|(_, key)| *key)
                        .ok_or_else(|| {
                            let names: Vec<&str> = SORT_KEYS.iter().map(|(n, _)| *n).collect();
                            bad("sort", &format!("is one of {}", names.join(", ")))
                        })?;
                }
                "limit" => {
                    let limit: usize = value
                        .parse()
                        .map_err(|_| bad("limit", "is a whole number, 0 or more"))?;
                    parsed.limit = limit.min(MAX_LIMIT);
                }
                "offset" => {
                    parsed.offset = value
                        .parse()
                        .map_err(|_| bad("offset", "is a whole number, 0 or more"))?;
                }
                _ => {}
            }
        }
        if parsed.which == Which::Open && matches!(parsed.sort, SortKey::Stop | SortKey::Reason) {
            return Err(bad(
                "sort",
                "stop and reason sort closed connections: add state=closed or state=all",
            ));
        }
        Ok(parsed)
    }
}

fn bad(parameter: &'static str, what: &str) -> BadParameter {
    BadParameter {
        parameter,
        message: format!("{parameter} {what}"),
    }
}

/// One connection as `/api/connz` shows it.
#[derive(Debug, Clone, Serialize)]
struct Row {
    client_id: ClientId,
    name: Option<String>,
    dialect: Transport,
    peer: String,
    start: String,
    last_activity: String,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    pending: usize,
    rooms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<CloseReason>,
    #[serde(skip)]
    order: Order,
}

/// What a row sorts by, kept beside what it shows.
#[derive(Debug, Clone, Default)]
struct Order {
    start_ms: i64,
    stop_ms: Option<i64>,
    last_ms: i64,
    /// The peer as an address, which sorts as addresses do (127.0.0.2 before
    /// 127.0.0.10), not as the text shown.
    peer: Option<SocketAddr>,
}

impl Row {
    fn new(
        (client_id, transport, peer, start_ms): (ClientId, Transport, SocketAddr, i64),
        counts: Counts,
        pending: usize,
        (name, rooms): (Option<String>, Vec<String>),
        end: Option<(i64, CloseReason)>,
    ) -> Row {
        // A client that never sent anything was last active when it connected.
        let last_ms = if counts.last_activity_ms > 0 {
            counts.last_activity_ms
        } else {
            start_ms
        };
        Row {
            client_id,
            name,
            dialect: transport,
            peer: peer.to_string(),
            start: rfc3339_of_millis(start_ms),
            last_activity: rfc3339_of_millis(last_ms),
            in_msgs: counts.in_msgs,
            out_msgs: counts.out_msgs,
            in_bytes: counts.in_bytes,
            out_bytes: counts.out_bytes,
            pending,
            rooms,
            stop: end.map(|(ms, _)| rfc3339_of_millis(ms)),
            reason: end.map(|(_, reason)| reason),
            order: Order {
                start_ms,
                stop_ms: end.map(|(ms, _)| ms),
                last_ms,
                peer: Some(peer),
            },
        }
    }

    fn closed(closed: Closed) -> Row {
        Row::new(
            (
                closed.client_id,
                closed.transport,
                closed.peer,
                closed.start_ms,
            ),
            closed.counts,
            closed.pending,
            (closed.name, closed.rooms),
            Some((closed.stop_ms, closed.reason)),
        )
    }
}

/// The open connections as they are now, with their names and rooms from the hub.
fn open_rows(registry: &Registry, services: &Services) -> Vec<Row> {
    let open = registry.connections();
    let mut sessions = services
        .backend
        .names_and_rooms(open.iter().map(|c| c.client_id));
    open.into_iter()
        .map(|c| {
            let queue = c.queue.upgrade();
            let counts = queue.as_ref().map(|q| q.stats.counts()).unwrap_or_default();
            let pending = queue.as_ref().map_or(0, |q| q.len());
            let session = sessions.remove(&c.client_id).unwrap_or_default();
            Row::new(
                (c.client_id, c.transport, c.peer, c.start_ms),
                counts,
                pending,
                session,
                None,
            )
        })
        .collect()
}

/// Sorts `rows` by `key`; rows that tie are in client id order, then by start.
fn sort(rows: &mut [Row], key: SortKey) {
    let tie = |a: &Row, b: &Row| {
        (a.client_id, a.order.start_ms, a.order.stop_ms).cmp(&(
            b.client_id,
            b.order.start_ms,
            b.order.stop_ms,
        ))
    };
    let by = |a: &Row, b: &Row| -> Ordering {
        match key {
            SortKey::ClientId => Ordering::Equal,
            SortKey::Start => a.order.start_ms.cmp(&b.order.start_ms),
            SortKey::LastActivity => Reverse(a.order.last_ms).cmp(&Reverse(b.order.last_ms)),
            SortKey::InMsgs => Reverse(a.in_msgs).cmp(&Reverse(b.in_msgs)),
            SortKey::OutMsgs => Reverse(a.out_msgs).cmp(&Reverse(b.out_msgs)),
            SortKey::InBytes => Reverse(a.in_bytes).cmp(&Reverse(b.in_bytes)),
            SortKey::OutBytes => Reverse(a.out_bytes).cmp(&Reverse(b.out_bytes)),
            SortKey::Pending => Reverse(a.pending).cmp(&Reverse(b.pending)),
            // Open connections (no stop, no reason) after the closed ones.
            SortKey::Stop => (a.order.stop_ms.is_none(), Reverse(a.order.stop_ms))
                .cmp(&(b.order.stop_ms.is_none(), Reverse(b.order.stop_ms))),
            SortKey::Reason => {
                let reason = |r: &Row| (r.reason.is_none(), r.reason.map(CloseReason::as_str));
                reason(a).cmp(&reason(b))
            }
            // Those without a name yet after those with one.
            SortKey::Name => (a.name.is_none(), &a.name).cmp(&(b.name.is_none(), &b.name)),
            SortKey::Dialect => a.dialect.name().cmp(b.dialect.name()),
            SortKey::Peer => a.order.peer.cmp(&b.order.peer),
            // Those in the most rooms first, as for the counters.
            SortKey::Rooms => Reverse(a.rooms.len()).cmp(&Reverse(b.rooms.len())),
        }
    };
    rows.sort_by(|a, b| by(a, b).then_with(|| tie(a, b)));
}

/// The answer to `query`: how many connections it selects, and the page asked for.
fn answer(registry: &Registry, services: &Services, query: Query) -> serde_json::Value {
    let mut rows = Vec::new();
    if query.which != Which::Closed {
        rows.extend(open_rows(registry, services));
    }
    if query.which != Which::Open {
        rows.extend(registry.closed().into_iter().map(Row::closed));
    }
    sort(&mut rows, query.sort);
    let total = rows.len();
    let page: Vec<Row> = rows
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect();
    json!({
        "total": total,
        "offset": query.offset,
        "connections": page,
    })
}

async fn connz(State(connz): State<SessionKit>, request: Request) -> Response {
    let (status, body) = match Query::parse(request.uri().query().unwrap_or("")) {
        Ok(query) => (
            StatusCode::OK,
            answer(&connz.shared.registry, &connz.services, query),
        ),
        Err(bad) => (
            StatusCode::BAD_REQUEST,
            json!({"error": bad.message, "parameter": bad.parameter}),
        ),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_has_defaults_caps_and_names_the_parameter_it_cannot_read() {
        let default = Query::parse("").unwrap();
        assert_eq!(
            default,
            Query {
                which: Which::Open,
                sort: SortKey::ClientId,
                limit: DEFAULT_LIMIT,
                offset: 0
            }
        );
        let given = Query::parse("state=all&sort=in_bytes&limit=99999&offset=5&token=x").unwrap();
        assert_eq!(
            (given.which, given.sort, given.limit, given.offset),
            (Which::All, SortKey::InBytes, MAX_LIMIT, 5)
        );
        for (query, parameter) in [
            ("state=gone", "state"),
            ("sort=colour", "sort"),
            ("limit=-1", "limit"),
            ("offset=x", "offset"),
            ("sort=reason", "sort"),
        ] {
            assert_eq!(Query::parse(query).unwrap_err().parameter, parameter);
        }
        assert!(Query::parse("state=closed&sort=reason").is_ok());
    }

    #[test]
    fn rows_sort_by_their_key_then_by_client_id() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let row = |id, in_msgs, name: Option<&str>, end| {
            let counts = Counts {
                in_msgs,
                ..Counts::default()
            };
            let session = (name.map(str::to_owned), Vec::new());
            Row::new((id, Transport::Native, peer, 0), counts, 0, session, end)
        };
        let mut rows = vec![
            row(3, 5, Some("cy"), None),
            row(1, 5, None, Some((20, CloseReason::Reset))),
            row(2, 9, Some("al"), Some((10, CloseReason::Bye))),
        ];
        let ids = |rows: &[Row]| rows.iter().map(|r| r.client_id).collect::<Vec<_>>();
        sort(&mut rows, SortKey::InMsgs);
        assert_eq!(ids(&rows), [2, 1, 3]);
        sort(&mut rows, SortKey::Name);
        assert_eq!(ids(&rows), [2, 3, 1]);
        sort(&mut rows, SortKey::Stop);
        assert_eq!(ids(&rows), [1, 2, 3]);
        sort(&mut rows, SortKey::Reason);
        assert_eq!(ids(&rows), [2, 1, 3]);
        sort(&mut rows, SortKey::ClientId);
        assert_eq!(ids(&rows), [1, 2, 3]);
    }

    #[test]
    fn peers_sort_as_addresses_rooms_by_count_dialects_by_name() {
        let row = |id, transport, peer: &str, rooms: &[&str]| {
            let rooms = rooms.iter().map(|r| r.to_string()).collect();
            let peer = peer.parse().unwrap();
            Row::new(
                (id, transport, peer, 0),
                Counts::default(),
                0,
                (None, rooms),
                None,
            )
        };
        let mut rows = vec![
            row(1, Transport::WebSocket, "127.0.0.10:1", &["a"]),
            row(2, Transport::Native, "127.0.0.2:1", &[]),
            row(3, Transport::Lab, "127.0.0.2:0", &["a", "b"]),
        ];
        let ids = |rows: &[Row]| rows.iter().map(|r| r.client_id).collect::<Vec<_>>();
        sort(&mut rows, SortKey::Peer);
        assert_eq!(ids(&rows), [3, 2, 1]);
        sort(&mut rows, SortKey::Rooms);
        assert_eq!(ids(&rows), [3, 1, 2]);
        sort(&mut rows, SortKey::Dialect);
        assert_eq!(ids(&rows), [3, 2, 1]);
    }
}
