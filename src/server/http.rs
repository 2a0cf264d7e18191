//! The HTTP listener: axum routes served by hyper, one connection at a time under the
//! same connection limit as the protocol listeners. It answers `GET /healthz`,
//! `GET /ws` (a WebSocket speaking the native protocol, see `ws.rs`), the browser chat
//! page (`pages.rs`), the admin pages (`dashboard.rs`) and the metrics (`varz.rs`), and
//! nothing else (404).
//!
//! It is served connection by connection rather than with `axum::serve`, which has no
//! header read timeout and no way to take a slot under `--max-connections`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admin_token::AdminAccess;
use super::partial::Unfinished;
use super::session::Session;
use super::upgrade::WsRequest;
use super::varz::{self, Monitor};
use super::{ClientIds, SessionKit};
use super::{connz, dashboard};

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

/// Bytes a WebSocket reads from its socket at a time. tungstenite allocates its read
/// buffer up front (128 KiB unless told otherwise: 131 KiB of memory per idle
/// connection) and zeroes this much before every read, two reads per request: 1 KiB
/// costs 1.2% less server CPU per `rr` request than 4 KiB, and chat messages fit in
/// it. A larger message still grows the buffer as it arrives, a read at a time.
const WS_READ_BUFFER: usize = 1024;

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
    /// What a WebSocket session needs.
    pub ws: Arc<WsKit>,
    /// Who may read the admin pages.
    pub admin: Arc<AdminAccess>,
    /// What `/metrics` and `/api/varz` read.
    pub monitor: Arc<Monitor>,
    /// With a certificate, the listener serves HTTPS (and `wss://`) instead of HTTP.
    pub tls: Option<TlsAcceptor>,
}

/// What a WebSocket session needs from the server, beside its connection.
pub(super) struct WsKit {
    pub kit: SessionKit,
    /// Client ids, from the same sequence as the protocol listeners'.
    pub ids: Arc<ClientIds>,
    pub max_frame: usize,
    /// After how long without a message from its client a WebSocket is pinged.
    pub ping_after: Duration,
    /// The WebSocket sessions, which outlive their HTTP connection: shutdown waits
    /// for them as it does for the protocol sessions.
    pub sessions: TaskTracker,
}

/// What each request learns of its connection.
#[derive(Clone)]
struct Conn {
    peer: SocketAddr,
    /// The connection's place under `--max-connections`, held by the connection and,
    /// once it is upgraded, by its WebSocket session until that ends: it is given
    /// back when the last of them drops it.
    _slot: Arc<OwnedSemaphorePermit>,
}

/// The routes' state.
#[derive(Clone)]
struct App {
    draining: CancellationToken,
    ws: Arc<WsKit>,
    admin: Arc<AdminAccess>,
    monitor: Arc<Monitor>,
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
            ws,
            admin,
            monitor,
            tls,
        } = self;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_header_size(MAX_HEAD);
        let app = TowerToHyperService::new(router(App {
            draining,
            ws,
            admin,
            monitor,
        }));
        let connections = TaskTracker::new();
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
                tokio::spawn(refuse(builder.clone(), stream, tls.clone()));
                continue;
            };
            if let Err(e) = super::keepalive(&stream, idle_timeout) {
                tracing::warn!(%peer, "cannot set TCP keepalive: {e}");
            }
            let _ = stream.set_nodelay(true);
            let conn = Conn {
                peer,
                _slot: Arc::new(slot),
            };
            let app = app.clone();
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(conn.clone());
                    app.call(request)
                },
            );
            let (builder, stop, tls) = (builder.clone(), stop.clone(), tls.clone());
            connections.spawn(async move {
                let Some(tls) = tls else {
                    return serve(builder, stream, service, stop, peer).await;
                };
                // The handshake counts against the header timeout: a peer that stalls
                // or sends garbage costs only its own connection.
                let stopping = stop.clone();
                if let Ok(stream) =
                    super::tls::handshake(&tls, stream, peer, header_timeout, &stopping).await
                {
                    serve(builder, stream, service, stop, peer).await;
                }
            });
        }
        drop(listener);
        connections.close();
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("http: closing the connections still open after the drain");
        }
    }
}

/// Serves one connection until it ends or `stop` is cancelled, stopped as hyper_util's
/// GracefulShutdown would, which does not take connections that may be upgraded.
async fn serve<I, S>(
    builder: http1::Builder,
    io: I,
    service: S,
    stop: CancellationToken,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    match served {
        // A kept-alive connection left idle ends this way too: routine.
        Err(e) if e.is_timeout() => tracing::debug!(%peer, "http: {e}"),
        Err(e) => tracing::info!(%peer, "http connection closed: {e}"),
        Ok(()) => {}
    }
}

/// The routes; whatever is not routed is 404.
fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/ws", get(websocket))
        .merge(dashboard::routes(&app.ws.kit, &app.admin))
        .merge(varz::routes(Arc::clone(&app.monitor), &app.admin))
        .merge(connz::routes(&app.ws.kit, &app.admin))
        .merge(super::pages::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Upgrades to a WebSocket and serves the native protocol on it (`ws.rs`).
async fn websocket(
    State(app): State<App>,
    Extension(conn): Extension<Conn>,
    request: WsRequest,
) -> Response {
    if app.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
            .into_response();
    }
    let ws = app.ws;
    let (max_frame, ping_after) = (ws.max_frame, ws.ping_after);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
        .read_buffer_size(WS_READ_BUFFER);
    let unfinished = Unfinished::new(Arc::clone(&ws.kit.shared));
    let sessions = ws.sessions.clone();
    request.accept(
        config,
        unfinished,
        |session| drop(sessions.spawn(session)),
        move |socket, unfinished| {
            let client_id = ws.ids.next();
            tracing::info!(client_id, peer = %conn.peer, "connect (websocket)");
            let session = Session::new(client_id, &ws.kit);
            let services = Arc::clone(&ws.kit.services);
            // A panic ends this session alone, cleaned up as any disconnect.
            super::guarded(
                services,
                client_id,
                session.run_ws(socket, unfinished, conn.peer, max_frame, ping_after),
                conn,
            )
        },
    )
}

/// 200 `ok` while the server serves, 503 once it has begun to shut down, so that a
/// load balancer stops sending clients here before the listener goes away.
async fn healthz(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.draining.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: the server is shutting down",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

/// Answers every request on a connection over the limit with 503 and closes it.
async fn refuse(mut builder: http1::Builder, stream: TcpStream, tls: Option<TlsAcceptor>) {
    let full = Router::new().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has as many clients as it allows; try again later",
        )
    });
    builder.keep_alive(false);
    let service = TowerToHyperService::new(full);
    let _ = tokio::time::timeout(REFUSAL_GRACE, async {
        match tls {
            None => {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
            Some(tls) => {
                if let Ok(stream) = tls.accept(stream).await {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        }
    })
    .await;
}
