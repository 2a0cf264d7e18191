//! switchboard nodes through faults: a node killed with SIGKILL while clients send
//! through it, NATS without a majority, and the NATS server a node is connected to
//! killed and restarted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::harness::NatsCluster;
use super::nodes::node;
use crate::common::{Raw, code, unused_addr};

/// A node run as its own process, so that it can be killed with SIGKILL; killed when
/// dropped.
pub(super) struct NodeProcess {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    pub async fn start(nats: &NatsCluster, via: usize, name: &str) -> NodeProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let listen = unused_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--listen", &listen, "--http-listen", "off", "--db"])
            .arg(dir.path().join("unused.db"))
            .args(["--cluster", &nats.url(via), "--node", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a node");
        let addr: SocketAddr = listen.parse().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {name} listens"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        NodeProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads all of `reader`'s mail, peeking and acking page by page: each text with how
/// many times it was handed over.
async fn read_everything(reader: &mut Raw) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    loop {
        let page = reader
            .call(json!({"op": "inbox", "peek": true, "limit": 500}))
            .await;
        let messages = page["messages"].as_array().expect("messages").clone();
        let Some(last) = messages.last() else {
            return seen;
        };
        for message in &messages {
            let text = message["text"].as_str().unwrap().to_owned();
            *seen.entry(text).or_default() += 1;
        }
        let acked = (reader.call(json!({"op": "ack", "up_to": last["message_id"]}))).await;
        assert_eq!(acked["ok"], true, "{acked}");
    }
}

/// Sends numbered messages to `to` until the connection fails; the texts answered ok.
async fn send_until_cut(addr: SocketAddr, me: String, to: &'static str, max: usize) -> Vec<String> {
    let mut raw = Raw::connect(addr).await;
    raw.hello(&me).await;
    let mut acked = Vec::new();
    for n in 0..max {
        let text = format!("{me}-{n}");
        raw.send(&json!({"op": "send", "id": n, "to": to, "text": text}))
            .await;
        match raw.recv_frame().await {
            Some(reply) if reply["ok"] == true => acked.push(text),
            Some(reply) if reply.get("event").is_some() => break,
            Some(reply) => panic!("{me}: {reply}"),
            None => break,
        }
    }
    acked
}

#[tokio::test]
async fn every_send_acknowledged_by_a_node_killed_mid_stream_is_read_once_elsewhere() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let mut b = NodeProcess::start(&nats, 1, "b").await;
    let mut sink = Raw::connect(a.addr).await;
    sink.hello("sink").await;

    let mut senders = JoinSet::new();
    for i in 0..8 {
        senders.spawn(send_until_cut(b.addr, format!("b{i}"), "sink", 100_000));
    }
    for i in 0..2 {
        senders.spawn(send_until_cut(a.addr, format!("a{i}"), "sink", 300));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.kill();
    let mut acked = Vec::new();
    while let Some(sent) = senders.join_next().await {
        acked.extend(sent.expect("sender"));
    }
    let through_b = acked.iter().filter(|t| t.starts_with('b')).count();
    assert!(
        through_b > 0,
        "node b acknowledged sends before it was killed"
    );

    let seen = read_everything(&mut sink).await;
    for text in &acked {
        assert_eq!(seen.get(text), Some(&1), "{text} read exactly once");
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "nothing is handed over twice: {doubled:?}"
    );
    a.stop().await;
}

/// The texts of `reader`'s unread mail, taken.
async fn inbox_texts(reader: &mut Raw) -> Vec<String> {
    let page = reader.call(json!({"op": "inbox"})).await;
    (page["messages"].as_array().expect("messages").iter())
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

/// Sends until one is answered ok, for at most `patience`.
async fn send_until_ok(raw: &mut Raw, to: &str, text: &str, patience: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let reply = raw
            .call(json!({"op": "send", "to": to, "text": text}))
            .await;
        if reply["ok"] == true {
            return reply;
        }
        assert_eq!(code(&reply), "internal", "{reply}");
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn without_a_majority_a_node_answers_internal_then_serves_again() {
    let Some(mut nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let mut ana = Raw::connect(a.addr).await;
    ana.hello("ana").await;
    let mut bob = Raw::connect(a.addr).await;
    bob.hello("bob").await;
    let before = ana
        .call(json!({"op": "send", "to": "bob", "text": "before"}))
        .await;
    assert_eq!(before["ok"], true, "{before}");

    nats.kill(1);
    nats.kill(2);
    let refused = (ana.call(json!({"op": "send", "to": "bob", "text": "lost"}))).await;
    assert_eq!(code(&refused), "internal", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not acknowledged")),
        "{refused}"
    );

    nats.restart(1).await;
    nats.restart(2).await;
    send_until_ok(&mut ana, "bob", "after", Duration::from_secs(30)).await;
    let texts = inbox_texts(&mut bob).await;
    assert_eq!(
        texts.first().map(String::as_str),
        Some("before"),
        "{texts:?}"
    );
    assert_eq!(texts.last().map(String::as_str), Some("after"), "{texts:?}");
    a.stop().await;
}

#[tokio::test]
async fn a_node_whose_nats_server_restarts_reconnects_by_itself() {
    let Some(mut nats) = NatsCluster::start().await else {
        return;
    };
    // Node a knows only server 0; it learns the others from it.
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let mut ana = Raw::connect(a.addr).await;
    ana.hello("ana").await;
    let mut bob = Raw::connect(a.addr).await;
    bob.hello("bob").await;

    nats.kill(0);
    send_until_ok(&mut ana, "bob", "while 0 is down", Duration::from_secs(30)).await;
    nats.restart(0).await;
    send_until_ok(&mut ana, "bob", "after 0 is back", Duration::from_secs(30)).await;
    let texts = inbox_texts(&mut bob).await;
    assert_eq!(texts, ["while 0 is down", "after 0 is back"]);
    a.stop().await;
}

#[tokio::test]
async fn a_node_stops_in_bounded_time_when_nats_is_gone() {
    let Some(mut nats) = NatsCluster::start().await else {
        return;
    };
    let a = node(&nats, 0, "a", Duration::from_secs(15)).await;
    let mut ana = Raw::connect(a.addr).await;
    ana.hello("ana").await;
    for i in 0..3 {
        nats.kill(i);
    }
    // Within the test's patience: the drain, then a goodbye NATS cannot hear.
    a.stop().await;
}
