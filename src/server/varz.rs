//! `GET /metrics` (Prometheus text format) and `GET /api/varz` (the counters' totals,
//! uptime and the configuration in force, as JSON, which `switchboard stats` reads),
//! both admin pages (`admin_token.rs`): what the server carries says who is busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::admin_token::{self, AdminAccess};
use super::config::Config;
use super::http::HttpListen;
use super::tls::TlsSource;
use crate::metrics::{Metrics, Totals};
use crate::protocol::{now_millis, rfc3339_of_millis};
use crate::store::KeepRead;

/// What the two routes read.
pub(super) struct Monitor {
    metrics: Arc<Metrics>,
    registry: Registry,
    /// When the server started, RFC 3339, and on the monotonic clock.
    start: String,
    started: Instant,
    /// The configuration as `/api/varz` shows it, made once.
    config: Value,
}

impl Monitor {
    pub fn new(metrics: Arc<Metrics>, config: &Config) -> Self {
        Monitor {
            registry: metrics.registry(),
            metrics,
            start: rfc3339_of_millis(now_millis()),
            started: Instant::now(),
            config: shown(config),
        }
    }
}

/// `config` with each address as bound (a port 0 replaced by the one given), for
/// `/api/varz`.
pub(super) fn bound_config(
    config: &Config,
    native: &TcpListener,
    [text, lab, http, tls]: [&Option<TcpListener>; 4],
) -> Config {
    let bound = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    Config {
        listen: native.local_addr().unwrap_or(config.listen),
        text_listen: bound(text),
        lab_listen: bound(lab),
        http_listen: bound(http).map_or(HttpListen::Off, HttpListen::Given),
        tls_listen: bound(tls),
        ..config.clone()
    }
}

/// `/api/varz`, behind the admin guard as every `/api/*` is, and `/metrics`, open as
/// DESIGN.md has it: its counts are the server's, never a person's (no label is a name
/// or an id), and scrapers expect it so.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    monitor: Arc<Monitor>,
    access: &Arc<AdminAccess>,
) -> Router<S> {
    admin_token::guarded(Router::new().route("/api/varz", get(varz)), access)
        .route("/metrics", get(metrics))
        .with_state(monitor)
}

async fn metrics(State(monitor): State<Arc<Monitor>>) -> Response {
    let mut text = String::with_capacity(16 * 1024);
    if prometheus_text::encode(&mut text, &monitor.registry).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
            .into_response();
    }
    no_store(
        (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
    )
}

/// `GET /api/varz`.
#[derive(Debug, Serialize)]
struct Varz<'a> {
    server: &'static str,
    version: &'static str,
    start: &'a str,
    now: String,
    uptime_seconds: u64,
    #[serde(flatten)]
    totals: Totals,
    config: &'a Value,
}

async fn varz(State(monitor): State<Arc<Monitor>>) -> Response {
    let varz = Varz {
        server: "switchboard",
        version: env!("CARGO_PKG_VERSION"),
        start: &monitor.start,
        now: rfc3339_of_millis(now_millis()),
        uptime_seconds: monitor.started.elapsed().as_secs(),
        totals: monitor.metrics.totals(),
        config: &monitor.config,
    };
    let body = serde_json::to_vec(&varz).unwrap_or_default();
    no_store(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The configuration in force, keyed as [`Config`]'s fields, durations in seconds.
/// The admin token is never shown, only whether one was given; nor is any key file's
/// content.
fn shown(config: &Config) -> Value {
    // Named one by one, with no `..`: a field added to Config does not compile until it
    // is shown here (or said not to be).
    let Config {
        listen,
        text_listen,
        lab_listen,
        http_listen: _,
        db,
        max_frame,
        max_text,
        queue_depth,
        max_pending,
        write_deadline,
        max_connections,
        handshake_timeout,
        idle_timeout,
        drain_timeout,
        require_password,
        commit_batch,
        max_partial_total,
        rooms,
        room_history,
        resume_grace,
        inline_store,
        keep_read: _,
        ws_ping,
        admin_token,
        tls: _,
        tls_listen,
        rate,
        cluster,
    } = config;
    let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
    let http_listen = match config.http_listen {
        HttpListen::Off => None,
        HttpListen::Default(a) | HttpListen::Given(a) => Some(a.to_string()),
    };
    let keep_read = match config.keep_read {
        KeepRead::No => json!(0),
        KeepRead::Days(days) => json!(days),
        KeepRead::Untouched => json!("untouched"),
    };
    let tls = match &config.tls {
        None => Value::Null,
        Some(TlsSource::SelfSigned) => json!("self-signed"),
        Some(TlsSource::Files { cert, .. }) => json!({ "cert": cert.display().to_string() }),
    };
    json!({
        "listen": listen.to_string(),
        "text_listen": addr(*text_listen),
        "lab_listen": addr(*lab_listen),
        "http_listen": http_listen,
        "tls_listen": addr(*tls_listen),
        "db": db.display().to_string(),
        "max_frame": max_frame,
        "max_text": max_text,
        "queue_depth": queue_depth,
        "max_pending": max_pending,
        "write_deadline": seconds(*write_deadline),
        "max_connections": max_connections,
        "handshake_timeout": seconds(*handshake_timeout),
        "idle_timeout": seconds(*idle_timeout),
        "drain_timeout": seconds(*drain_timeout),
        "require_password": require_password,
        "commit_batch": commit_batch,
        "max_partial_total": max_partial_total,
        "rooms": {
            "rooms": rooms.rooms,
            "per_client": rooms.per_client,
            "members": rooms.members,
        },
        "room_history": room_history,
        "resume_grace": seconds(*resume_grace),
        "inline_store": inline_store,
        "keep_read": keep_read,
        "ws_ping": seconds(*ws_ping),
        "admin_token": admin_token.is_some(),
        "tls": tls,
        "rate": rate.map(|r| json!({"per_second": r.per_second, "burst": r.burst})),
        "cluster": cluster.as_ref().map(|c| json!({
            "node": c.node,
            "replicas": c.replicas,
            "heal_after": seconds(c.heal_after),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::AdminToken;

    #[test]
    fn the_admin_token_is_never_shown() {
        let config = Config {
            admin_token: Some(AdminToken::parse("s3cret-token").unwrap()),
            ..Config::default()
        };
        let shown = shown(&config);
        assert!(!shown.to_string().contains("s3cret-token"));
        assert_eq!(shown["admin_token"], true);
        assert_eq!(shown["listen"], "127.0.0.1:12000");
        assert_eq!(shown["write_deadline"], 10.0);
    }
}
