//! The listener: binds, accepts, starts one session task per connection, and drains on
//! shutdown. The only layer, with the sessions, that touches sockets.

pub mod admin;
mod admin_token;
mod config;
mod connz;
mod dashboard;
mod http;
mod lifecycle;
mod pages;
mod partial;
mod rate;
mod registry;
mod session;
mod stream;
#[cfg(test)]
mod tests;
pub mod tls;
mod upgrade;
mod varz;
mod writer;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, Local};
use crate::cluster::{ClusterError, Node};
use crate::dialect::{Dialect, DialectKind, Lab, Native, Text};
pub use crate::hub::RoomLimits;
use crate::hub::{HubConfig, Timeouts};
use crate::metrics::Metrics;
use crate::outbound::Bounds;
use crate::protocol::{ClientId, ErrorBody, ErrorCode, Event};
use crate::service::{Policy, Services};
use crate::store::{Options, Store, StoreCloser, StoreError};

pub use crate::outbound::CloseReason;
pub use admin_token::{AdminToken, MAX_ADMIN_TOKEN};
pub use config::{Config, DEFAULT_MAX_PARTIAL_TOTAL, DEFAULT_MAX_PENDING, connection_budget};
pub use http::{DEFAULT_HTTP_LISTEN, HttpListen};
pub use rate::RateLimit;
use session::Session;
pub use tls::{TlsError, TlsSource};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    /// The cause is said in the message and not kept as `source()`, which `anyhow`
    /// would print a second time.
    #[error("cannot open the store {}: {cause}", .path.display())]
    Store { path: PathBuf, cause: StoreError },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot join the cluster: {0}")]
    Cluster(ClusterError),
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    text_listener: Option<TcpListener>,
    lab_listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
    tls_listener: Option<TcpListener>,
    tls: Option<tls::Tls>,
    services: Arc<Services>,
    /// The SQLite store's, on a node that serves alone.
    store_closer: Option<StoreCloser>,
    config: Config,
}

/// Binds with SO_REUSEADDR, so that a restart right after a crash does not wait for
/// the old connections' TIME_WAIT to pass.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Server {
    /// Opens the store (or joins the cluster) and binds the listening sockets.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let metrics = Arc::new(Metrics::default());
        let options = Options {
            commit_batch: config.commit_batch,
            keep_read: config.keep_read,
            inline: config.inline_store,
            metrics: Some(Arc::clone(&metrics)),
        };
        // Before the store: a certificate that cannot be loaded stops the start at once.
        let tls = tls::Tls::configure(&config)?;
        let policy = Policy {
            max_frame: config.max_frame,
            max_text: config.max_text,
            require_password: config.require_password,
            hub: HubConfig {
                rooms: config.rooms,
                history: config.room_history,
                resume_grace: config.resume_grace,
                max_parked: config.max_connections,
            },
        };
        let (backend, store_closer) = match &config.cluster {
            None => {
                let (store, closer) =
                    Store::start(&config.db, options).map_err(|cause| ServerError::Store {
                        path: config.db.clone(),
                        cause,
                    })?;
                let local = Local::new(store, policy.hub, Arc::clone(&metrics));
                (Backend::Local(local), Some(closer))
            }
            Some(cluster) => {
                let node = Node::start(cluster, policy.hub, config.keep_read, Arc::clone(&metrics))
                    .await
                    .map_err(ServerError::Cluster)?;
                (Backend::Cluster(node), None)
            }
        };
        let bind =
            |addr: SocketAddr| listen(addr).map_err(|cause| ServerError::Bind { addr, cause });
        let listener = bind(config.listen)?;
        let text_listener = config.text_listen.map(bind).transpose()?;
        let lab_listener = config.lab_listen.map(bind).transpose()?;
        let tls_listener = config.tls_listen.map(bind).transpose()?;
        let http_listener = match config.http_listen {
            HttpListen::Off => None,
            HttpListen::Given(addr) => Some(bind(addr)?),
            HttpListen::Default(addr) => match listen(addr) {
                Ok(listener) => Some(listener),
                Err(e) => {
                    tracing::warn!(
                        "not serving HTTP: cannot listen on {addr}: {e} (--http-listen \
                         chooses another address, --http-listen off silences this)"
                    );
                    None
                }
            },
        };
        Ok(Server {
            listener,
            text_listener,
            lab_listener,
            http_listener,
            tls_listener,
            tls,
            services: Arc::new(Services::over(backend, policy, metrics)),
            store_closer,
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The text dialect's bound address, if it listens.
    pub fn text_addr(&self) -> Option<SocketAddr> {
        self.text_listener.as_ref()?.local_addr().ok()
    }

    /// The lab dialect's bound address, if it listens.
    pub fn lab_addr(&self) -> Option<SocketAddr> {
        self.lab_listener.as_ref()?.local_addr().ok()
    }

    /// The HTTP listener's bound address, if it listens.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener.as_ref()?.local_addr().ok()
    }

    /// The native protocol over TLS's bound address, if it listens.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener.as_ref()?.local_addr().ok()
    }

    /// The SHA-256 fingerprint of the server's certificate, if it has one.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|tls| tls.fingerprint.as_str())
    }

    /// Serves until `shutdown` completes, then stops accepting, tells every client,
    /// flushes their queues (for at most the drain timeout), and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            listener,
            text_listener,
            lab_listener,
            http_listener,
            tls_listener,
            tls,
            services,
            store_closer,
            config,
        } = self;
        let admin = admin::AdminSocket::start(&config.db, Arc::clone(&services));
        let monitor = Arc::new(varz::Monitor::new(
            Arc::clone(&services.metrics),
            &varz::bound_config(
                &config,
                &listener,
                [&text_listener, &lab_listener, &http_listener, &tls_listener],
            ),
        ));
        for (listener, kind) in [
            (Some(&listener), DialectKind::Native),
            (text_listener.as_ref(), DialectKind::Text),
            (lab_listener.as_ref(), DialectKind::Lab),
        ] {
            if let Some(Ok(addr)) = listener.map(TcpListener::local_addr) {
                tracing::info!(db = %config.db.display(), "listening on {addr} ({})", kind.name());
            }
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        if let Some(Ok(addr)) = http_listener.as_ref().map(TcpListener::local_addr) {
            tracing::info!(
                "listening on {scheme}://{addr}/ (chat page /, websocket /ws, dashboard /dashboard, /metrics, /healthz)"
            );
        }
        tls::announce(tls.as_ref(), tls_listener.as_ref());
        let beyond_loopback = [
            Some(listener.local_addr()),
            text_listener.as_ref().map(TcpListener::local_addr),
            lab_listener.as_ref().map(TcpListener::local_addr),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .any(|addr| !addr.ip().is_loopback());
        if beyond_loopback && !config.require_password {
            tracing::warn!(
                "serving other machines without --require-password: anyone who can reach \
                 this server can take any name not protected by a password and read its \
                 mail, and nothing is encrypted"
            );
        }
        tracing::info!(
            "at most {} clients at once; handshake timeout {:?}; dead peers found within {:?}; \
             outbound bounds {} frames, {} bytes, write deadline {:?}",
            config.max_connections,
            config.handshake_timeout,
            config.idle_timeout,
            config.queue_depth,
            config.max_pending,
            config.write_deadline,
        );
        if let Some(rate) = config.rate {
            tracing::info!(
                "rate limit: {} requests per second per connection, bursts of {}; a client \
                 over it is read no further until its budget refills",
                rate.per_second,
                rate.burst
            );
        }
        match &config.cluster {
            None => tracing::info!(
                "store: up to {} commands per commit, {}",
                config.commit_batch,
                if config.inline_store {
                    "committed on the server's one thread"
                } else {
                    "committed on a thread of its own"
                }
            ),
            Some(cluster) => tracing::info!(
                "names, mail and rooms kept in NATS JetStream at {} replicas (node {})",
                cluster.replicas,
                cluster.node
            ),
        }
        let sweeper = tokio::spawn(sweep(
            Arc::clone(&services),
            Timeouts {
                handshake: config.handshake_timeout,
                write_deadline: config.write_deadline,
            },
        ));
        let stopping = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(config.max_connections));
        // What every session is made with, whichever listener accepted it.
        let kit = SessionKit {
            services: Arc::clone(&services),
            bounds: Bounds {
                frames: config.queue_depth,
                bytes: config.max_pending,
            },
            shared: Arc::new(session::Shared {
                partial: partial::PartialBudget::new(config.max_partial_total),
                text_addr: text_listener.as_ref().and_then(|l| l.local_addr().ok()),
                registry: registry::Registry::counted(Arc::clone(&services.metrics)),
                rate: config.rate,
            }),
            shutdown: stopping.clone(),
        };
        let ids = Arc::new(ClientIds::new(services.backend.client_ids()));
        let ws_sessions = TaskTracker::new();
        let http_stop = CancellationToken::new();
        // The message rate is only ever shown on the HTTP listener's dashboard.
        let sampler = http_listener.as_ref().map(|_| {
            let shared = Arc::clone(&kit.shared);
            tokio::spawn(async move { shared.registry.sample_every_second().await })
        });
        let http = http_listener.map(|listener| {
            let admin = match listener.local_addr() {
                Ok(addr) => {
                    let (access, origin) = admin_token::access(config.admin_token.as_ref(), addr);
                    let scheme = if tls.is_some() { "https" } else { "http" };
                    admin_token::announce(&access, &origin, addr, scheme);
                    access
                }
                Err(_) => admin_token::AdminAccess::Closed,
            };
            let http = http::Http {
                admin: Arc::new(admin),
                monitor,
                listener,
                slots: Arc::clone(&slots),
                max_connections: config.max_connections,
                draining: stopping.clone(),
                header_timeout: config.handshake_timeout,
                idle_timeout: config.idle_timeout,
                tls: tls.as_ref().map(|tls| tls.acceptor.clone()),
                ws: Arc::new(http::WsKit {
                    kit: kit.clone(),
                    ids: Arc::clone(&ids),
                    max_frame: config.max_frame,
                    ping_after: config.ws_ping,
                    sessions: ws_sessions.clone(),
                }),
            };
            tokio::spawn(http.run(http_stop.clone(), config.drain_timeout))
        });
        if let (Some(listener), Some(tls)) = (tls_listener, tls) {
            let kit = (kit.clone(), Arc::clone(&ids), ws_sessions.clone());
            tokio::spawn(tls::TlsListener::new(listener, tls, &config, &slots, kit).run());
        }
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                (accepted, kind) = accept_any(&listener, text_listener.as_ref(), lab_listener.as_ref()) => match accepted {
                    Ok((stream, peer)) => {
                        let max = config.max_frame;
                        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                            let transport = match kind {
                                DialectKind::Native => registry::Transport::Native,
                                DialectKind::Text => registry::Transport::Text,
                                DialectKind::Lab => registry::Transport::Lab,
                            };
                            let client_id = ids.next();
                            kit.shared.registry.never_opened(client_id, (transport, peer), crate::protocol::now_millis(), CloseReason::ServerFull);
                            tracing::warn!(client_id, %peer, "refused: server full ({} clients)", config.max_connections);
                            services.metrics.never_opened(CloseReason::ServerFull);
                            services.metrics.error(ErrorCode::ServerFull);
                            match kind {
                                DialectKind::Native => tokio::spawn(refuse(stream, Native::new(max))),
                                DialectKind::Text => tokio::spawn(refuse(stream, Text::default())),
                                DialectKind::Lab => tokio::spawn(refuse(stream, Lab::new(max))),
                            };
                            continue;
                        };
                        if let Err(e) = keepalive(&stream, config.idle_timeout) {
                            tracing::warn!(%peer, "cannot set TCP keepalive: {e}");
                        }
                        let session = Session::new(ids.next(), &kit);
                        match kind {
                            DialectKind::Native => sessions.spawn(contained(session, stream, peer, Native::new(max), slot)),
                            DialectKind::Text => sessions.spawn(contained(session, stream, peer, Text::default(), slot)),
                            DialectKind::Lab => sessions.spawn(contained(session, stream, peer, Lab::new(max), slot)),
                        };
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: say so, and give
                        // closing connections a moment instead of spinning.
                        tracing::error!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop((listener, text_listener, lab_listener, admin));
        sweeper.abort();
        let _ = sweeper.await;
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        tracing::info!(
            clients = services.backend.online_count(),
            "shutting down: telling clients and flushing their queues"
        );
        kit.shared.registry.stopping();
        stopping.cancel();
        services.backend.drain_all();
        // No WebSocket or TLS session starts once draining has begun.
        ws_sessions.close();
        let drained = tokio::time::timeout(config.drain_timeout, async {
            while sessions.join_next().await.is_some() {}
            ws_sessions.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = sessions.len(),
                "drain timeout: closing the remaining connections"
            );
            sessions.shutdown().await;
        }
        // HTTP stays up through the drain, answering /healthz with 503.
        http_stop.cancel();
        if let Some(http) = http {
            let _ = http.await;
        }
        services.backend.leave().await;
        drop((services, kit));
        // The store finishes its last batch and closes the file once the last handle
        // is gone.
        if let Some(store_closer) = store_closer {
            store_closer.closed().await;
            tracing::info!("store closed; bye");
        } else {
            tracing::info!("left the cluster; bye");
        }
        Ok(())
    }
}

/// The next connection on any of the listeners, with the dialect it speaks.
async fn accept_any(
    native: &TcpListener,
    text: Option<&TcpListener>,
    lab: Option<&TcpListener>,
) -> (std::io::Result<(TcpStream, SocketAddr)>, DialectKind) {
    async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
        match listener {
            Some(listener) => listener.accept().await,
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        accepted = native.accept() => (accepted, DialectKind::Native),
        accepted = accept(text) => (accepted, DialectKind::Text),
        accepted = accept(lab) => (accepted, DialectKind::Lab),
    }
}

/// Expires the connections past their handshake or write deadline, a few times per
/// shortest of them (see [`Timeouts::period`]).
async fn sweep(services: Arc<Services>, timeouts: Timeouts) {
    let mut tick = tokio::time::interval(timeouts.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        services.sweep(timeouts);
    }
}

/// Keepalive probes a dead peer gets before it is given up.
const KEEPALIVE_PROBES: u32 = 4;

/// Makes the kernel find a dead peer within about `within`, however quiet the
/// connection: after half of it without traffic, [`KEEPALIVE_PROBES`] probes spread
/// over the other half (a live peer's kernel answers them, whether or not its program
/// ever sends a byte, so a `nc` user or a lab program is never cut); and data that
/// stays unacknowledged for `within` (a peer gone while we were writing, when
/// keepalive does not probe) ends it too.
fn keepalive(stream: &TcpStream, within: Duration) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let half = (within / 2).max(Duration::from_secs(1));
    let interval = (half / KEEPALIVE_PROBES).max(Duration::from_secs(1));
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(half)
            .with_interval(interval)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(within))?;
    Ok(())
}

/// How long a refused connection is given to take its `server_full` error.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Tells a connection over the limit why it is closed, then closes it.
async fn refuse<D: Dialect>(mut stream: TcpStream, dialect: D) {
    let event = Event::error(ErrorBody::new(
        ErrorCode::ServerFull,
        "the server has as many clients as it allows; try again later",
    ));
    let bytes = dialect.event_bytes(&event);
    let _ = tokio::time::timeout(REFUSAL_GRACE, async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Runs one session so that a panic inside it is logged and cleaned up like any other
/// disconnect instead of taking anything else down. `slot` is its place under the
/// connection limit, given back when the session ends, however it ends.
///
/// Not an `async fn`: its arguments would stay in the task beside the session's own
/// copies of them for as long as it runs, 130 bytes in every connection's task.
fn contained<D: Dialect>(
    session: Session,
    stream: TcpStream,
    peer: SocketAddr,
    dialect: D,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> {
    let client_id = session.client_id;
    let services = Arc::clone(&session.services);
    let _ = stream.set_nodelay(true);
    tracing::info!(client_id, %peer, "connect");
    guarded(
        services,
        client_id,
        session.run(stream, peer, dialect),
        slot,
    )
}

/// `session`, whose panic is logged and cleaned up like any other disconnect; `held`
/// (its connection's slot) is dropped when it ends, however it ends. A combinator
/// rather than an `async` block, which would hold the session's future twice: as what
/// it captured and as what it awaits.
fn guarded<T>(
    services: Arc<Services>,
    client_id: ClientId,
    session: impl Future<Output = ()>,
    held: T,
) -> impl Future<Output = ()> {
    AssertUnwindSafe(session)
        .catch_unwind()
        .map(move |outcome| {
            if outcome.is_err() {
                services
                    .metrics
                    .disconnect(crate::outbound::CloseReason::Internal);
                let name = services.disconnect(client_id);
                tracing::error!(
                    client_id,
                    name = %name.as_deref().unwrap_or("-"),
                    "session panicked; client disconnected and cleaned up"
                );
            }
            drop(held);
        })
}

/// Where client ids come from: one sequence for every listener, so that an id names
/// one connection whatever it speaks, within the ids the backend gives this node.
#[derive(Debug)]
struct ClientIds {
    next: AtomicU64,
    ids: std::ops::Range<ClientId>,
}

impl ClientIds {
    fn new(ids: std::ops::Range<ClientId>) -> Self {
        ClientIds {
            next: AtomicU64::new(0),
            ids,
        }
    }

    /// The next id. A cluster node's block holds 2^32 ids; one that accepted more
    /// connections than that in one run would count through its block again, not
    /// into another node's.
    fn next(&self) -> ClientId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let span = self.ids.end.saturating_sub(self.ids.start).max(1);
        self.ids.start + n % span
    }
}

/// What every session of a server is made with, beside its client id.
#[derive(Clone)]
struct SessionKit {
    services: Arc<Services>,
    bounds: Bounds,
    shared: Arc<session::Shared>,
    shutdown: CancellationToken,
}

impl Session {
    fn new(client_id: ClientId, kit: &SessionKit) -> Self {
        Session {
            client_id,
            services: Arc::clone(&kit.services),
            bounds: kit.bounds,
            shared: Arc::clone(&kit.shared),
            shutdown: kit.shutdown.clone(),
        }
    }
}

/// Binds per `config` and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await
}
