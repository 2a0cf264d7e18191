//! The HTTP listener: axum routes served by hyper, one connection at a time under the
//! same connection limit as the protocol listeners. For now it answers `GET /healthz`
//! and nothing else (404).
//!
//! It is served connection by connection rather than with `axum::serve`, which has no
//! header read timeout and no way to take a slot under `--max-connections`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Where the HTTP listener listens when nothing else is said.
pub const DEFAULT_HTTP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 12080);

/// Where the HTTP listener listens, and how firmly it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// No HTTP listener.
    Off,
    /// The default address: when it cannot be bound (another server on the machine has
    /// it), a warning is logged and the server runs without HTTP.
    Default(SocketAddr),
    /// An address the operator gave: failing to bind it is an error at start.
    Given(SocketAddr),
}

/// Largest request head (request line and headers) in bytes; a larger one is answered
/// 431 (hyper checks between reads, so a head may run up to one read past it before
/// it is refused). Hyper's own default is about 400 KiB; browsers send a few KiB.
/// More than hyper's 100 header fields are answered 431 too; setting that number
/// ourselves would move every request's headers to the heap.
pub const MAX_HEAD: usize = 64 * 1024;

/// Largest request body an extractor will read. Nothing routed yet takes a body.
const MAX_BODY: usize = 64 * 1024;

/// How long a connection over the connection limit is given to take its 503.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// What the HTTP listener needs from the server.
pub(super) struct Http {
    pub listener: TcpListener,
    /// The server's connection slots, shared with the protocol listeners.
    pub slots: Arc<Semaphore>,
    pub max_connections: usize,
    /// Cancelled once shutdown has begun: `/healthz` answers 503 from then on.
    pub draining: CancellationToken,
    /// How long a client may take to send a request's head (the handshake timeout);
    /// it also ends a kept-alive connection that sends no next request.
    pub header_timeout: Duration,
    /// Within how long a dead peer is found (TCP keepalive).
    pub idle_timeout: Duration,
}

impl Http {
    /// Serves until `stop` is cancelled, then lets the requests in progress finish
    /// for at most `grace` and closes every connection.
    pub async fn run(self, stop: CancellationToken, grace: Duration) {
        let Http {
            listener,
            slots,
            max_connections,
            draining,
            header_timeout,
            idle_timeout,
        } = self;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_header_size(MAX_HEAD);
        let app = TowerToHyperService::new(router(draining));
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::error!("http accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(%peer, "refused (http): server full ({max_connections} clients)");
                tokio::spawn(refuse(builder.clone(), stream));
                continue;
            };
            if let Err(e) = super::keepalive(&stream, idle_timeout) {
                tracing::warn!(%peer, "cannot set TCP keepalive: {e}");
            }
            let _ = stream.set_nodelay(true);
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), app.clone()));
            tokio::spawn(async move {
                match connection.await {
                    // A kept-alive connection left idle ends this way too: routine.
                    Err(e) if e.is_timeout() => tracing::debug!(%peer, "http: {e}"),
                    Err(e) => tracing::info!(%peer, "http connection closed: {e}"),
                    Ok(()) => {}
                }
                drop(slot);
            });
        }
        drop(listener);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("http: closing the connections still open after the drain");
        }
    }
}

/// The routes; whatever is not routed is 404.
fn router(draining: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(draining)
}

/// 200 `ok` while the server serves, 503 once it has begun to shut down, so that a
/// load balancer stops sending clients here before the listener goes away.
async fn healthz(State(draining): State<CancellationToken>) -> (StatusCode, &'static str) {
    if draining.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: the server is shutting down",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

/// Answers every request on a connection over the limit with 503 and closes it.
async fn refuse(mut builder: http1::Builder, stream: TcpStream) {
    let full = Router::new().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has as many clients as it allows; try again later",
        )
    });
    builder.keep_alive(false);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(full));
    let _ = tokio::time::timeout(REFUSAL_GRACE, connection).await;
}
