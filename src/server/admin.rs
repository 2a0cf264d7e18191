//! The operator's socket: a Unix domain socket beside the database (`<db>.sock`),
//! through which `switchboard backup` and `switchboard admin` reach the store of a
//! running server, whose file is locked to everyone else.
//!
//! The socket file is made mode 0600, and a connection from any other user than the
//! server's own is refused as well: as with Docker's or Redis's Unix socket, whoever
//! may open the file may administer the server. One JSON object per line each way.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::cluster::Node;
use crate::hub::Hub;
use crate::service::Services;
use crate::store::{Store, UserSummary, is_guest};

/// The most bytes read from one connection; a request is a name or a path.
const MAX_LINE: u64 = 64 * 1024;

/// The admin socket of the store at `db`.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".sock");
    PathBuf::from(path)
}

/// What an operator asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Users,
    /// A backup to this path (absolute: the server's working directory is not the
    /// operator's).
    Backup {
        to: PathBuf,
    },
    /// Sets the password hash (a PHC string, never a password) of a name, or removes it.
    SetPassword {
        name: String,
        hash: Option<String>,
    },
    Forget {
        name: String,
    },
}

/// The answer: `ok`, or `error` saying why not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserSummary>>,
}

impl Response {
    fn refused(error: impl Into<String>) -> Response {
        Response {
            error: Some(error.into()),
            ..Response::default()
        }
    }

    fn done() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }
}

/// Serves `request` on `store`; `hub` says who is online, when a server runs.
pub async fn execute(store: &Store, hub: Option<&Hub>, request: Request) -> Response {
    run(Target::Store(store, hub), request).await
}

/// What an admin request is served on: a store (and the hub beside it, when a server
/// runs), or a cluster through one of its nodes, whose accounts and inboxes are in
/// NATS, the same from every node.
enum Target<'a> {
    Store(&'a Store, Option<&'a Hub>),
    Cluster(&'a Node),
}

async fn run(target: Target<'_>, request: Request) -> Response {
    let seen = |name: &str, found: bool| {
        if found {
            Response::done()
        } else {
            Response::refused(format!("no user {name} has ever been seen"))
        }
    };
    let result = match request {
        Request::Users => target.users().await.map(|users| Response {
            users: Some(users),
            ..Response::done()
        }),
        Request::Backup { to } => target.backup(to).await.map(|()| Response::done()),
        Request::SetPassword {
            name,
            hash: Some(_),
        } if is_guest(&name) => {
            return Response::refused(format!("{name} is a guest name; guests have no password"));
        }
        Request::SetPassword { name, hash } => target
            .set_password(&name, hash)
            .await
            .map(|found| seen(&name, found)),
        Request::Forget { name } => {
            if target.online(&name) {
                return Response::refused(format!(
                    "{name} is online now; forget it once it has left"
                ));
            }
            target.forget(&name).await.map(|found| seen(&name, found))
        }
    };
    result.unwrap_or_else(Response::refused)
}

impl Target<'_> {
    async fn users(&self) -> Result<Vec<UserSummary>, String> {
        match self {
            Target::Store(store, _) => store.users().await.map_err(|e| e.to_string()),
            Target::Cluster(node) => node.user_summaries().await.map_err(|e| e.to_string()),
        }
    }

    async fn backup(&self, to: PathBuf) -> Result<(), String> {
        match self {
            Target::Store(store, _) => store.backup(to).await.map_err(|e| e.to_string()),
            Target::Cluster(_) => Err("this node serves a cluster, whose data is in NATS \
                 JetStream, not in a store of its own: back up its streams and buckets with \
                 the nats tool (see docs/cluster.md, \"Backup\")"
                .to_owned()),
        }
    }

    async fn set_password(&self, name: &str, hash: Option<String>) -> Result<bool, String> {
        match self {
            Target::Store(store, _) => {
                (store.set_password(name, hash).await).map_err(|e| e.to_string())
            }
            Target::Cluster(node) => {
                (node.set_password(name, hash).await).map_err(|e| e.to_string())
            }
        }
    }

    /// Whether `name` is online now (a parked session is not).
    fn online(&self, name: &str) -> bool {
        match self {
            Target::Store(_, hub) => hub
                .is_some_and(|hub| (hub.users().iter()).any(|u| u.name.eq_ignore_ascii_case(name))),
            Target::Cluster(node) => node.online(name),
        }
    }

    async fn forget(&self, name: &str) -> Result<bool, String> {
        match self {
            Target::Store(store, _) => store.forget(name).await.map_err(|e| e.to_string()),
            Target::Cluster(node) => node.forget_user(name).await.map_err(|e| e.to_string()),
        }
    }
}

/// The listening socket; stopped, and its file removed, when dropped.
pub struct AdminSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl AdminSocket {
    /// Listens beside `db`. Without a socket the server still serves: only `admin` and
    /// `backup` then need it stopped, so a failure is a warning.
    pub fn start(db: &Path, services: Arc<Services>) -> Option<AdminSocket> {
        let path = socket_path(db);
        let started = listen(&path).map(|(listener, owner)| {
            let task = tokio::spawn(accept(listener, owner, services));
            AdminSocket {
                path: path.clone(),
                task,
            }
        });
        match started {
            Ok(socket) => {
                tracing::info!("admin socket {}", path.display());
                Some(socket)
            }
            Err(e) => {
                tracing::warn!(
                    "no admin socket at {}: {e}; `switchboard admin` and `backup` need \
                     the server stopped",
                    path.display()
                );
                None
            }
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path`, replacing the socket a crashed server left (this server holds the
/// database's lock, so no live server owns it) but never any other file. Answers the
/// listener and the user it belongs to.
fn listen(path: &Path) -> std::io::Result<(UnixListener, u32)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let owner = std::fs::metadata(path)?.uid();
    Ok((listener, owner))
}

async fn accept(listener: UnixListener, owner: u32, services: Arc<Services>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let uid = stream.peer_cred().map(|c| c.uid()).ok();
                    if uid != Some(owner) && uid != Some(0) {
                        tracing::warn!("admin socket: refused a connection from user {uid:?}");
                        continue;
                    }
                    connections.spawn(serve(stream, Arc::clone(&services)));
                }
                Err(e) => {
                    tracing::error!("admin socket: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Answers each request line of one connection.
async fn serve(stream: UnixStream, services: Arc<Services>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                tracing::info!("admin: {}", describe(&request));
                match &services.backend {
                    Backend::Local(local) => {
                        execute(local.store(), Some(local.hub()), request).await
                    }
                    Backend::Cluster(node) => run(Target::Cluster(node), request).await,
                }
            }
            Err(e) => Response::refused(format!("not a request: {e}")),
        };
        let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
        bytes.push(b'\n');
        if write.write_all(&bytes).await.is_err() {
            break;
        }
    }
}

/// A request as the log shows it: never a hash.
fn describe(request: &Request) -> String {
    match request {
        Request::Users => "users".into(),
        Request::Backup { to } => format!("backup to {}", to.display()),
        Request::SetPassword {
            name,
            hash: Some(_),
        } => format!("reset the password of {name}"),
        Request::SetPassword { name, hash: None } => format!("remove the password of {name}"),
        Request::Forget { name } => format!("forget {name}"),
    }
}
