//! Headless Chromium driven through chromedriver (WebDriver) with fantoccini: one
//! chromedriver per test, one browser session per person, each a separate profile.
//!
//! Without Chromium or chromedriver on the machine the browser tests are skipped with a
//! note, unless `SWITCHBOARD_REQUIRE_BROWSER=1` (CI) makes their absence a failure.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

/// How long a page may take to show what a test waits for.
const PAGE_PATIENCE: Duration = Duration::from_secs(10);
/// WebDriver's Enter key.
pub const ENTER: &str = "\u{E007}";

/// One browser test at a time: each starts browsers, and the machine has few cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A running chromedriver, and the Chromium it starts sessions of.
pub struct Driver {
    child: Child,
    url: String,
    chrome: PathBuf,
    profiles: tempfile::TempDir,
    sessions: usize,
    _turn: MutexGuard<'static, ()>,
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Driver {
    /// Starts chromedriver, or returns `None` (after saying why) when the machine has no
    /// browser and none is required.
    pub async fn start() -> Option<Driver> {
        let driver = on_path(&["chromedriver"]);
        let chrome = on_path(&["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chrome)) = (driver, chrome) else {
            let required = std::env::var("SWITCHBOARD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SWITCHBOARD_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed"
            );
            // Written to the process's stderr, past the test harness's capture, so
            // that the skip shows in a passing run.
            let _ = writeln!(
                std::io::stderr(),
                "browser test skipped: install chromium and chromium-driver to run it \
                 (SWITCHBOARD_REQUIRE_BROWSER=1 makes this a failure)"
            );
            return None;
        };
        let turn = ONE_AT_A_TIME.lock().await;
        let port = free_port();
        // Its own process group: Chromium's processes are killed with it, even when a
        // test fails before it closes its sessions.
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let started = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chrome,
            profiles: tempfile::tempdir().expect("temp dir"),
            sessions: 0,
            _turn: turn,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + PAGE_PATIENCE;
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver listens"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(started)
    }

    /// A new headless browser (its own profile) showing `url`.
    pub async fn open(&mut self, url: &str) -> Page {
        self.sessions += 1;
        self.session(url, self.sessions).await
    }

    /// Two browsers showing `url`, started side by side (a browser takes seconds to
    /// start on a busy machine).
    pub async fn open_two(&mut self, url: &str) -> (Page, Page) {
        self.sessions += 2;
        let (first, second) = (self.sessions - 1, self.sessions);
        tokio::join!(self.session(url, first), self.session(url, second))
    }

    async fn session(&self, url: &str, number: usize) -> Page {
        let profile = self.profiles.path().join(number.to_string());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": self.chrome,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-default-apps",
                    "--disable-sync",
                    // A window this size gives a page of about 1000 by 700 pixels.
                    "--window-size=1000,840",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session");
        client.goto(url).await.expect("open the page");
        Page { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

/// One person's browser showing the chat page.
pub struct Page {
    pub client: Client,
}

impl Page {
    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("script runs")
    }

    /// Waits until `script` returns something other than `null` or `false`, and
    /// returns it; fails the test with `what` after the patience runs out.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PAGE_PATIENCE;
        loop {
            let value = self.eval(script).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let seen = self
                    .eval(
                        "return document.getElementById('status').textContent + ' | ' \
                         + document.getElementById('activity').textContent;",
                    )
                    .await;
                panic!("the page did not show {what} in time; it shows: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Types `text` into the control with `id`, as a person would.
    pub async fn type_into(&self, id: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id} on the page: {e}"));
        field.send_keys(text).await.expect("typing");
    }

    /// Replaces what the control with `id` holds with `text`, typed.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id} on the page: {e}"));
        field.clear().await.expect("clearing");
        field.send_keys(text).await.expect("typing");
    }

    pub async fn click(&self, id: &str) {
        let button = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id} on the page: {e}"));
        button.click().await.expect("click");
    }

    /// Types a name into the name field, which has the focus, presses Enter, and
    /// waits until the chat shows.
    pub async fn log_in(&self, name: &str) {
        let focused = self
            .wait_for(
                "the name field with the focus",
                "return document.activeElement && document.activeElement.id === 'name';",
            )
            .await;
        assert_eq!(focused, json!(true));
        self.type_into("name", &format!("{name}{ENTER}")).await;
        self.wait_for(
            "the chat after logging in",
            "return !document.getElementById('chat').hidden \
             && document.getElementById('status').textContent === 'Connected';",
        )
        .await;
    }

    /// The `[seq, from, text]` of every message line in `room`'s log, in screen order.
    pub async fn room_lines(&self, room: &str) -> Vec<(u64, String, String)> {
        let script = format!(
            "return [...document.querySelectorAll('.room-log[data-room=\"{room}\"] li[data-seq]')]\
             .map(li => [Number(li.dataset.seq), li.querySelector('.from').textContent, \
             li.querySelector('.text').textContent]);"
        );
        let lines: Vec<(u64, String, String)> =
            serde_json::from_value(self.eval(&script).await).expect("lines");
        lines
    }

    /// Waits until `room` shows `count` messages, and returns them.
    pub async fn wait_for_lines(&self, room: &str, count: usize) -> Vec<(u64, String, String)> {
        let script = format!(
            "return document.querySelectorAll('.room-log[data-room=\"{room}\"] li[data-seq]')\
             .length >= {count};"
        );
        self.wait_for(&format!("{count} messages in {room}"), &script)
            .await;
        self.room_lines(room).await
    }

    /// Saves a screenshot as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
