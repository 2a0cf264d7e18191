//! Shared test harness: a real server on 127.0.0.1:0 with its SQLite file in a temp dir,
//! and a raw-frames connection for speaking the wire protocol byte for byte.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::{Value, json};
use switchboard::server::{Config, Server};
use switchboard::{Client, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bounds every wait so a broken server fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    /// The text dialect's address, when started with [`TestServer::start_dialects`].
    pub text: Option<SocketAddr>,
    /// The lab dialect's address, when started with [`TestServer::start_dialects`].
    pub lab: Option<SocketAddr>,
    /// The HTTP listener's address, when the configuration turned it on (it is off
    /// unless a test says otherwise, see tests/it/http.rs).
    pub http: Option<SocketAddr>,
    pub db: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with a fresh database of its own.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_on(&dir.path().join("switchboard.db")).await;
        server._dir = Some(dir);
        server
    }

    /// A server on the database file `db` (to restart on the same store).
    pub async fn start_on(db: &Path) -> Self {
        Self::start_on_tweaked(db, |_| {}).await
    }

    /// A server with a fresh database of its own, its configuration changed by `tweak`.
    pub async fn start_tweaked(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_on_tweaked(&dir.path().join("switchboard.db"), tweak).await;
        server._dir = Some(dir);
        server
    }

    /// A server on the database file `db`, its configuration changed by `tweak`.
    pub async fn start_on_tweaked(db: &Path, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: db.to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        Self::start_with(config).await
    }

    /// A server with a fresh database listening in all three dialects.
    pub async fn start_dialects() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let any = Some("127.0.0.1:0".parse().unwrap());
        let mut server = Self::start_with(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            text_listen: any,
            lab_listen: any,
            db: dir.path().join("switchboard.db"),
            ..Config::default()
        })
        .await;
        server._dir = Some(dir);
        server
    }

    pub async fn start_with(config: Config) -> Self {
        let db = config.db.clone();
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().expect("local addr");
        let (text, lab, http) = (server.text_addr(), server.lab_addr(), server.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server run");
        });
        TestServer {
            addr,
            text,
            lab,
            http,
            db,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// Shuts the server down gracefully and waits until its store is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
    }

    /// Keeps `dir` (the server's files) until the server is dropped.
    pub fn adopt_dir(&mut self, dir: tempfile::TempDir) {
        self._dir = Some(dir);
    }

    /// Takes the temp dir so it outlives this server (for restarts).
    pub fn keep_dir(&mut self) -> Option<tempfile::TempDir> {
        self._dir.take()
    }

    /// A library client that has said hello as `name`.
    pub async fn client(&self, name: &str) -> Client {
        let client = Client::connect(self.addr).await.expect("connect");
        client.hello(name).await.expect("hello");
        client
    }

    pub async fn raw(&self) -> Raw {
        Raw::connect(self.addr).await
    }
}

/// A connection that speaks raw frames, keeping events aside while it waits for a
/// response so that tests can look at both.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    events: VecDeque<Value>,
    next_id: u64,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    /// Wraps a stream connected some other way (with socket options set, say).
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream,
            buf: BytesMut::new(),
            events: VecDeque::new(),
            next_id: 1000,
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, value: &Value) {
        let mut buf = BytesMut::new();
        frame::encode(value.to_string().as_bytes(), &mut buf);
        self.send_bytes(&buf).await;
    }

    /// The next frame, or `None` when the server closed the connection.
    pub async fn recv_frame(&mut self) -> Option<Value> {
        let read = async {
            loop {
                if let Some(payload) = frame::decode(&mut self.buf, 64 << 20).expect("frame") {
                    return Some(serde_json::from_slice(&payload).expect("server sent JSON"));
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("server answers in time")
    }

    pub async fn recv(&mut self) -> Value {
        self.recv_frame().await.expect("connection open")
    }

    /// The response with `id` (or `id: null` for `None`); events read meanwhile are kept.
    pub async fn response(&mut self, id: Option<u64>) -> Value {
        loop {
            let frame = self.recv().await;
            if frame.get("event").is_some() {
                self.events.push_back(frame);
                continue;
            }
            assert_eq!(frame["id"], json!(id), "responses come in request order");
            return frame;
        }
    }

    /// Takes the events kept aside while waiting for responses.
    pub fn kept_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// The next event, from those kept aside first.
    pub async fn event(&mut self) -> Value {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        let frame = self.recv().await;
        assert!(
            frame.get("event").is_some(),
            "expected an event, got {frame}"
        );
        frame
    }

    /// Sends `request` with a fresh id and returns its response.
    pub async fn call(&mut self, mut request: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        request["id"] = json!(id);
        self.send(&request).await;
        self.response(Some(id)).await
    }

    /// Reads the welcome and says hello; returns the client id.
    pub async fn hello(&mut self, name: &str) -> u64 {
        let welcome = self.event().await;
        assert_eq!(welcome["event"], "welcome");
        let reply = self.call(json!({"op": "hello", "name": name})).await;
        assert_eq!(reply["ok"], true, "{reply}");
        reply["client_id"].as_u64().unwrap()
    }

    /// Reads until the server closes, returning what came before.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut frames: Vec<Value> = self.events.drain(..).collect();
        while let Some(frame) = self.recv_frame().await {
            frames.push(frame);
        }
        frames
    }
}

/// The error code of a response or error event.
pub fn code(value: &Value) -> &str {
    value["error"]["code"]
        .as_str()
        .or_else(|| value["code"].as_str())
        .unwrap_or("")
}

/// The server's error code in a library call's result.
pub fn client_code<T: std::fmt::Debug>(
    result: Result<T, switchboard::client::ClientError>,
) -> String {
    match result {
        Err(switchboard::client::ClientError::Server(body)) => body.code.to_string(),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Waits for the next event of a library client.
pub async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<switchboard::protocol::Event>,
) -> switchboard::protocol::Event {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("event in time")
        .expect("event stream open")
}

/// A reproducible random source (xorshift), so that a failing input can be replayed
/// from its seed.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// `len` reproducible random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Runs `switchboard ARGS` to completion with `input` on stdin, off the async runtime.
pub async fn run_switchboard(args: &[&str], input: &str) -> std::process::Output {
    let (args, input): (Vec<String>, String) = (
        args.iter().map(|s| s.to_string()).collect(),
        input.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("switchboard")
            .unwrap()
            .args(&args)
            .write_stdin(input)
            .timeout(PATIENCE)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// An address where nothing listens: a port the system gave and took back.
pub fn unused_addr() -> String {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    free.local_addr().unwrap().to_string()
}

impl TestServer {
    /// Begins a graceful shutdown without waiting for it; [`TestServer::stop`] then
    /// waits for the end.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
