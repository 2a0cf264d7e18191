//! TLS for the native protocol (`--tls-listen`) and the HTTP listener: the certificate
//! (given, or made at start with `--tls-self-signed` and kept beside the database), and
//! the listener that takes each connection through its handshake in the connection's
//! own task, so that a peer that stalls or sends garbage costs only its connection.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dialect::{Dialect, Native};
use crate::outbound::CloseReason;
use crate::protocol::{ErrorBody, ErrorCode, Event, now_millis};

use super::registry::Transport;
use super::session::Session;
use super::{ClientIds, SessionKit};

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files the operator gave (`--tls-cert`, `--tls-key`).
    Files { cert: PathBuf, key: PathBuf },
    /// Made at the first start and kept beside the database, so that a fingerprint
    /// clients pinned stays valid across restarts (`--tls-self-signed`).
    SelfSigned,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {cause}", .path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write {}: {cause}", .path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .0.display())]
    NoCert(PathBuf),
    #[error("{} holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)", .0.display())]
    NoKey(PathBuf),
    #[error("the key {} does not fit the certificate {}: {cause}", .key.display(), .cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        cause: rustls::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(rcgen::Error),
    #[error(
        "--tls-listen needs a certificate: give --tls-cert and --tls-key, or --tls-self-signed"
    )]
    NoCertificate,
}

/// The server's TLS side, ready to accept.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` writes it.
    pub fingerprint: String,
    /// Where the certificate is, for the console line that says what clients trust.
    pub cert_path: PathBuf,
}

/// The certificate and key files `--tls-self-signed` keeps beside the database.
pub fn self_signed_paths(db: &Path) -> (PathBuf, PathBuf) {
    let beside = |suffix: &str| {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    (beside(".tls-cert.pem"), beside(".tls-key.pem"))
}

impl Tls {
    /// The server's TLS side as `config` asks for it, if at all.
    pub(super) fn configure(config: &super::Config) -> Result<Option<Tls>, TlsError> {
        let ips: Vec<IpAddr> = [Some(config.listen), config.tls_listen]
            .into_iter()
            .flatten()
            .map(|addr| addr.ip())
            .collect();
        match &config.tls {
            Some(source) => Tls::load(source, &config.db, &ips).map(Some),
            None if config.tls_listen.is_some() => Err(TlsError::NoCertificate),
            None => Ok(None),
        }
    }

    /// Loads the certificate, or for a self-signed one reuses what an earlier start
    /// made beside `db` and makes one (for localhost, this machine's name and `ips`)
    /// when there is none.
    pub fn load(source: &TlsSource, db: &Path, ips: &[IpAddr]) -> Result<Tls, TlsError> {
        let mut reused = false;
        let (cert, key) = match source {
            TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
            TlsSource::SelfSigned => {
                let (cert, key) = self_signed_paths(db);
                if !cert.exists() || !key.exists() {
                    make_self_signed(&cert, &key, ips)?;
                } else {
                    reused = true;
                }
                (cert, key)
            }
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|cause| TlsError::Read {
                path: path.to_owned(),
                cause,
            })
        };
        let chain = CertificateDer::pem_slice_iter(&read(&cert)?)
            .filter_map(Result::ok)
            .collect::<Vec<_>>();
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCert(cert));
        };
        let fingerprint = fingerprint(leaf);
        if reused {
            warn_of_addresses_not_named(leaf, &cert, ips);
        }
        let private = PrivateKeyDer::from_pem_slice(&read(&key)?)
            .map_err(|_| TlsError::NoKey(key.clone()))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
            .map_err(|cause| TlsError::Mismatch {
                cert: cert.clone(),
                key,
                cause,
            })?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
            cert_path: cert,
        })
    }
}

/// A self-signed certificate made at an earlier start names the addresses the server
/// had then; one it listens on now that is not among them makes clients that check
/// names (`--ca`, browsers) refuse it there. Pinned fingerprints still work, and making
/// a new certificate would break them, so this only says so.
fn warn_of_addresses_not_named(leaf: &CertificateDer<'_>, path: &Path, ips: &[IpAddr]) {
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(leaf) else {
        return;
    };
    let unnamed: Vec<String> = ips
        .iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .filter(|ip| {
            let name = rustls::pki_types::ServerName::IpAddress((**ip).into());
            rustls::client::verify_server_name(&parsed, &name).is_err()
        })
        .map(IpAddr::to_string)
        .collect();
    if !unnamed.is_empty() {
        tracing::warn!(
            "the self-signed certificate {} was made for other addresses than {}: clients \
             that check names (--ca, browsers) refuse it there, while those pinning \
             --fingerprint connect; to make one for this machine's addresses now (with a \
             new fingerprint), delete it and its key and start again",
            path.display(),
            unnamed.join(", ")
        );
    }
}

/// The one crypto provider built in: ring, whose build needs no cmake. rustls now
/// prefers aws-lc-rs for its post-quantum key exchange, which a LAN hub can do without.
/// AES-128-GCM goes first, as in Go's and browsers' lists: as safe for this use, and
/// fewer rounds per record than AES-256 for a hub's many small records.
#[expect(
    deprecated,
    reason = "ring's provider lacks only post-quantum key exchange"
)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// SHA-256 of a certificate in colon-separated upper-case hex, as openssl prints it.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Makes a certificate for localhost, this machine's name and `ips`, and writes it and
/// its key (readable by the owner alone).
fn make_self_signed(cert: &Path, key: &Path, ips: &[IpAddr]) -> Result<(), TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(hostname());
    for ip in ips {
        if !ip.is_loopback() && !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(TlsError::Generate)?;
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |cause| TlsError::Write { path, cause }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(key).map_err(write_err(key))?;
    std::io::Write::write_all(&mut file, made.signing_key.serialize_pem().as_bytes())
        .map_err(write_err(key))?;
    std::fs::write(cert, made.cert.pem()).map_err(write_err(cert))?;
    tracing::info!(
        "made a self-signed TLS certificate {} (key {})",
        cert.display(),
        key.display()
    );
    Ok(())
}

/// This machine's name, where the system says it.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then(|| name.to_owned())
}

/// How long a connection over the limit is given to take its `server_full` error,
/// handshake included.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// The native protocol over TLS (`--tls-listen`).
pub(super) struct TlsListener {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max_connections: usize,
    idle_timeout: Duration,
    /// Its sessions, which shutdown waits for beside the others.
    sessions: TaskTracker,
    conn: Arc<TlsKit>,
}

/// What each TLS connection is served with.
struct TlsKit {
    acceptor: TlsAcceptor,
    kit: SessionKit,
    ids: Arc<ClientIds>,
    max_frame: usize,
    handshake_timeout: Duration,
}

impl TlsListener {
    /// The listener for `config`'s `--tls-listen`; `kit` is what its sessions are made
    /// with, their client ids, and where shutdown waits for them.
    pub fn new(
        listener: TcpListener,
        tls: Tls,
        config: &super::Config,
        slots: &Arc<Semaphore>,
        (kit, ids, sessions): (SessionKit, Arc<ClientIds>, TaskTracker),
    ) -> Self {
        TlsListener {
            listener,
            slots: Arc::clone(slots),
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            sessions,
            conn: Arc::new(TlsKit {
                acceptor: tls.acceptor,
                kit,
                ids,
                max_frame: config.max_frame,
                handshake_timeout: config.handshake_timeout,
            }),
        }
    }

    /// Accepts until the server begins to shut down.
    pub async fn run(self) {
        let stopping = self.conn.kit.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                () = stopping.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::error!("tls accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                let client_id = self.conn.ids.next();
                self.conn.kit.shared.registry.never_opened(
                    client_id,
                    (Transport::NativeTls, peer),
                    now_millis(),
                    CloseReason::ServerFull,
                );
                tracing::warn!(client_id, %peer, "refused (tls): server full ({} clients)", self.max_connections);
                let metrics = &self.conn.kit.services.metrics;
                metrics.never_opened(CloseReason::ServerFull);
                metrics.error(crate::protocol::ErrorCode::ServerFull);
                tokio::spawn(refuse(
                    self.conn.acceptor.clone(),
                    stream,
                    self.conn.max_frame,
                ));
                continue;
            };
            if let Err(e) = super::keepalive(&stream, self.idle_timeout) {
                tracing::warn!(%peer, "cannot set TCP keepalive: {e}");
            }
            let _ = stream.set_nodelay(true);
            self.sessions
                .spawn(serve(Arc::clone(&self.conn), stream, peer, slot));
        }
    }
}

/// The TLS handshake under the handshake timeout, then the session. A handshake that
/// fails or stalls is logged in one line and ends this connection alone.
async fn serve(conn: Arc<TlsKit>, stream: TcpStream, peer: SocketAddr, slot: OwnedSemaphorePermit) {
    let start_ms = now_millis();
    let shaken = handshake(
        &conn.acceptor,
        stream,
        peer,
        conn.handshake_timeout,
        &conn.kit.shutdown,
    );
    let stream = match shaken.await {
        Ok(stream) => stream,
        Err(reason) => {
            // A would-be client all the same: listed among the closed connections.
            let kit = &conn.kit;
            let client_id = conn.ids.next();
            let how = (Transport::NativeTls, peer);
            kit.shared
                .registry
                .never_opened(client_id, how, start_ms, reason);
            kit.services.metrics.never_opened(reason);
            return;
        }
    };
    let client_id = conn.ids.next();
    tracing::info!(client_id, %peer, "connect (tls)");
    let session = Session::new(client_id, &conn.kit);
    let services = Arc::clone(&conn.kit.services);
    let dialect = Native::new(conn.max_frame);
    drop(conn);
    super::guarded(
        services,
        client_id,
        session.run_stream(stream, dialect, (Transport::NativeTls, peer), " (tls)"),
        slot,
    )
    .await;
}

/// Takes `stream` through the server side of the handshake within `timeout`; `None`
/// (logged) when it fails, stalls, or the server begins to stop meanwhile.
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    stopping: &CancellationToken,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, CloseReason> {
    let shaken = tokio::select! {
        shaken = tokio::time::timeout(timeout, acceptor.accept(stream)) => shaken,
        () = stopping.cancelled() => return Err(CloseReason::Shutdown),
    };
    match shaken {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            tracing::info!(%peer, "tls handshake failed: {e}");
            Err(match e.kind() {
                // Not TLS, or TLS gone wrong: what rustls could not decode.
                std::io::ErrorKind::InvalidData => CloseReason::BadFrame,
                _ => CloseReason::of_io(&e),
            })
        }
        Err(_) => {
            tracing::info!(%peer, "tls handshake timed out after {timeout:?}");
            Err(CloseReason::HandshakeTimeout)
        }
    }
}

/// Tells a connection over the limit why it is closed, after the handshake, then
/// closes it.
async fn refuse(acceptor: TlsAcceptor, stream: TcpStream, max_frame: usize) {
    let event = Event::error(ErrorBody::new(
        ErrorCode::ServerFull,
        "the server has as many clients as it allows; try again later",
    ));
    let bytes = Native::new(max_frame).event_bytes(&event);
    let _ = tokio::time::timeout(REFUSAL_GRACE, async {
        if let Ok(mut stream) = acceptor.accept(stream).await {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
    })
    .await;
}

/// Says on the console where TLS listens and what clients pin or trust.
pub(super) fn announce(tls: Option<&Tls>, native: Option<&TcpListener>) {
    let Some(tls) = tls else { return };
    if let Some(Ok(addr)) = native.map(TcpListener::local_addr) {
        tracing::info!("listening on {addr} (native over tls)");
    }
    tracing::info!(
        "tls certificate {}, SHA-256 fingerprint {}: clients connect with --tls \
         --fingerprint {}, or --tls --ca {}",
        tls.cert_path.display(),
        tls.fingerprint,
        tls.fingerprint,
        tls.cert_path.display(),
    );
}
