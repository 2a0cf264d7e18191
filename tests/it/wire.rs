//! Connections that speak the text and lab dialects byte for byte, and the `serve`
//! binary run as a person runs it, with its console lines.

use std::net::SocketAddr;
use std::process::Stdio;

use bytes::BytesMut;
use serde_pickle::{HashableValue, SerOptions, Value};
use switchboard::dialect::lab::next_pickle;
use switchboard::dialect::lab::scan::Scanner;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, ChildStderr, Command};

use crate::common::PATIENCE;

/// A text-dialect connection, as `nc` would hold it.
pub struct TextConn {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    /// Event lines (`* ...`) read while waiting for a status line.
    pub events: Vec<String>,
}

impl TextConn {
    /// Connects and reads the welcome line.
    pub async fn connect(addr: SocketAddr) -> (TextConn, String) {
        let (read, write) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let mut conn = TextConn {
            lines: BufReader::new(read).lines(),
            write,
            events: Vec::new(),
        };
        let welcome = conn.line().await.expect("welcome line");
        (conn, welcome)
    }

    pub async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }

    /// The next line without its line break, or `None` once the server closed.
    pub async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("line in time")
            .ok()
            .flatten()
    }

    /// Sends `line` and returns its status line and, for a list, its item lines.
    pub async fn call(&mut self, line: &str) -> (String, Vec<String>) {
        self.send(line).await;
        let status = loop {
            let next = self.line().await.expect("status line");
            if next.starts_with('*') {
                self.events.push(next);
            } else {
                break next;
            }
        };
        // The count may be followed by `key=value` words: `+OK 2 epoch=e1 seq=4`.
        let count = status
            .strip_prefix("+OK ")
            .and_then(|rest| rest.split(' ').next()?.parse::<usize>().ok())
            .filter(|_| is_list(line));
        let mut items = Vec::new();
        for _ in 0..count.unwrap_or(0) {
            items.push(self.line().await.expect("item line"));
        }
        (status, items)
    }

    /// The next event line, from those kept aside first.
    pub async fn event(&mut self) -> String {
        if !self.events.is_empty() {
            return self.events.remove(0);
        }
        let line = self.line().await.expect("event line");
        assert!(line.starts_with("* "), "expected an event, got {line:?}");
        line
    }
}

fn is_list(line: &str) -> bool {
    let word = line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    // A menu number stands for its command: 1 is USERS, 3 INBOX.
    matches!(
        word.as_str(),
        "MENU" | "HELP" | "USERS" | "INBOX" | "JOIN_ROOM" | "HISTORY" | "1" | "3" | "5"
    )
}

/// A lab-dialect connection that pickles dicts of strings and numbers.
pub struct LabConn {
    stream: TcpStream,
    buf: BytesMut,
    scanner: Scanner,
}

pub fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

pub fn dict(fields: &[(&str, Value)]) -> Value {
    Value::Dict(
        fields
            .iter()
            .map(|(k, v)| (HashableValue::String((*k).to_owned()), v.clone()))
            .collect(),
    )
}

/// The value under `key` in a pickled dict.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Dict(map) => map.get(&HashableValue::String(key.to_owned())),
        _ => None,
    }
}

impl LabConn {
    pub async fn connect(addr: SocketAddr) -> (LabConn, Value) {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut conn = LabConn {
            stream,
            buf: BytesMut::new(),
            scanner: Scanner::default(),
        };
        let welcome = conn.recv().await.expect("welcome pickle");
        (conn, welcome)
    }

    pub async fn send(&mut self, value: &Value) {
        let bytes = serde_pickle::value_to_vec(value, SerOptions::new()).unwrap();
        self.stream.write_all(&bytes).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next pickle from the server, or `None` once it closed.
    pub async fn recv(&mut self) -> Option<Value> {
        let read = async {
            loop {
                if let Some(pickle) =
                    next_pickle(&mut self.scanner, &mut self.buf, 1 << 20).expect("pickle stream")
                {
                    return Some(pickle.expect("plain pickle"));
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("pickle in time")
    }

    /// The next pickle that is not an event.
    pub async fn reply(&mut self) -> Value {
        loop {
            let value = self.recv().await.expect("reply");
            if get(&value, "event").is_none() {
                return value;
            }
        }
    }
}

/// `switchboard serve` as a child process, its console read line by line.
pub struct Serve {
    pub child: Child,
    lines: Option<Lines<BufReader<ChildStderr>>>,
    /// Addresses from the "listening on" lines: native first, then text and lab if on.
    pub addrs: Vec<String>,
    /// Every console line read so far.
    pub seen: Vec<String>,
}

impl Serve {
    /// Starts the binary with `args` after `serve --db DB`, and waits until each of the
    /// `listeners` has logged its address.
    pub async fn start(db: &std::path::Path, args: &[&str], listeners: usize) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .arg("--db")
            .arg(db)
            .args(args)
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn switchboard serve");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut serve = Serve {
            child,
            lines: Some(lines),
            addrs: Vec::new(),
            seen: Vec::new(),
        };
        for _ in 0..listeners {
            let line = serve.line_with("listening on").await;
            let addr = line
                .split_whitespace()
                .skip_while(|w| *w != "on")
                .nth(1)
                .expect("address after 'listening on'");
            serve.addrs.push(addr.to_owned());
        }
        serve
    }

    /// Reads the console from now on only to throw it away, so that a test with
    /// many clients does not fill the pipe and block the server's logging.
    pub fn discard_console(&mut self) {
        if let Some(mut lines) = self.lines.take() {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
    }

    /// The first console line containing `needle`, whether already read (by
    /// [`Serve::start`], say) or still to come.
    pub async fn logged(&mut self, needle: &str) -> String {
        match self.seen.iter().find(|line| line.contains(needle)) {
            Some(line) => line.clone(),
            None => self.line_with(needle).await,
        }
    }

    /// The next console line containing `needle`.
    pub async fn line_with(&mut self, needle: &str) -> String {
        let wait = async {
            let lines = self.lines.as_mut().expect("console not discarded");
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("server exited before printing {needle:?}");
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("line in time")
    }
}
