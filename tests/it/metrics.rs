//! `/metrics`, `/api/varz` and `switchboard stats`: every metric DESIGN.md names, with
//! its type and its fixed labels; counters that move by exactly the traffic a test
//! makes; the admin token's rule; and the stats lines against a running server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Scrape, Value as Metric};
use serde_json::{Value, json};
use switchboard::server::{AdminToken, Config, HttpListen};

use crate::common::{PATIENCE, TestServer, run_switchboard, unused_addr};
use crate::dashboard::fetch;
use crate::wire::TextConn;

const TOKEN: &str = "metrics-T0ken";

async fn start(tweak: impl FnOnce(&mut Config)) -> (TestServer, SocketAddr) {
    let any = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start_tweaked(|c| {
        c.text_listen = any;
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        tweak(c);
    })
    .await;
    let http = server.http.expect("http listens");
    (server, http)
}

/// One scrape: each series by its name and labels (sorted `k=v` pairs joined by `,`).
struct Series(HashMap<(String, String), Metric>);

impl Series {
    fn labels_key(labels: &prometheus_parse::Labels) -> String {
        let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs.join(",")
    }

    fn get(&self, name: &str, labels: &str) -> &Metric {
        self.0
            .get(&(name.to_owned(), labels.to_owned()))
            .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
    }

    /// The value of a counter or gauge.
    fn value(&self, name: &str, labels: &str) -> f64 {
        match self.get(name, labels) {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            other => panic!("{name}{{{labels}}} is {other:?}"),
        }
    }
}

async fn scrape(http: SocketAddr) -> Series {
    let answer = fetch(http, "/metrics", "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        answer.head
    );
    let lines = answer.body.lines().map(|l| Ok(l.to_owned()));
    let parsed = Scrape::parse(lines).expect("the Prometheus text format");
    Series(
        parsed
            .samples
            .into_iter()
            .map(|s| ((s.metric, Series::labels_key(&s.labels)), s.value))
            .collect(),
    )
}

/// Scrapes until `done` holds (what a session counts as it ends comes just after).
async fn scrape_until(http: SocketAddr, done: impl Fn(&Series) -> bool) -> Series {
    let wait = async {
        loop {
            let series = scrape(http).await;
            if done(&series) {
                return series;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("the counters show it in time")
}

const DIALECTS: [&str; 5] = ["native", "text", "lab", "native/tls", "websocket"];
const REASONS: [&str; 12] = [
    "bye",
    "client_closed",
    "reset",
    "idle_timeout",
    "handshake_timeout",
    "slow_consumer",
    "too_large",
    "bad_frame",
    "server_full",
    "replaced",
    "shutdown",
    "internal",
];
const CODES: [&str; 17] = [
    "bad_request",
    "unknown_op",
    "not_registered",
    "bad_name",
    "name_taken",
    "auth_failed",
    "no_such_user",
    "no_such_room",
    "room_exists",
    "not_member",
    "not_owner",
    "too_large",
    "slow_consumer",
    "server_full",
    "timeout",
    "shutting_down",
    "internal",
];
const OPS: [&str; 14] = [
    "ping",
    "hello",
    "menu",
    "users",
    "send",
    "inbox",
    "ack",
    "history",
    "create_room",
    "join_room",
    "say",
    "leave_room",
    "close_room",
    "bye",
];

#[tokio::test]
async fn every_metric_of_the_design_is_there_with_its_type_and_labels() {
    let (server, http) = start(|_| {}).await;
    let series = scrape(http).await;
    let gauge = |name: &str, labels: &str| {
        assert!(
            matches!(series.get(name, labels), Metric::Gauge(_)),
            "{name}{{{labels}}} is a gauge"
        );
    };
    let counter = |name: &str, labels: &str| {
        assert!(
            matches!(series.get(name, labels), Metric::Counter(_)),
            "{name}{{{labels}}} is a counter"
        );
    };
    for dialect in DIALECTS {
        gauge("switchboard_connections", &format!("dialect={dialect}"));
    }
    for reason in REASONS {
        counter("switchboard_disconnects_total", &format!("reason={reason}"));
    }
    for op in OPS {
        counter("switchboard_requests_total", &format!("op={op}"));
    }
    for code in CODES {
        counter("switchboard_errors_total", &format!("code={code}"));
    }
    for name in [
        "connections_total",
        "direct_messages_total",
        "room_messages_total",
        "deliveries_total",
        "slow_consumers_total",
    ] {
        counter(&format!("switchboard_{name}"), "");
    }
    for name in ["store_commit_seconds", "store_batch_size"] {
        let name = format!("switchboard_{name}");
        assert!(
            matches!(series.get(&name, ""), Metric::Histogram(buckets) if buckets.len() > 5),
            "{name} is a histogram"
        );
    }
    let version = format!("version={}", env!("CARGO_PKG_VERSION"));
    gauge("switchboard_build_info", &version);
    assert_eq!(series.value("switchboard_build_info", &version), 1.0);
    // Nothing outside the design's fixed label sets.
    for (name, labels) in series.0.keys() {
        assert!(name.starts_with("switchboard_"), "{name}");
        assert!(
            !labels.contains("name=") && !labels.contains("client_id"),
            "{labels}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn counters_move_by_exactly_the_traffic_made() {
    let (server, http) = start(|_| {}).await;
    let before = scrape(http).await;
    let delta = |after: &Series, name: &str, labels: &str| {
        after.value(name, labels) - before.value(name, labels)
    };
    let mut ann = server.raw().await;
    ann.hello("ann").await;
    let mut bob = server.raw().await;
    bob.hello("bob").await;
    let (mut text, _) = TextConn::connect(server.text.expect("text listens")).await;
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .expect("websocket");
    let open = scrape_until(http, |s| {
        s.value("switchboard_connections", "dialect=websocket") == 1.0
    })
    .await;
    assert_eq!(open.value("switchboard_connections", "dialect=native"), 2.0);
    assert_eq!(open.value("switchboard_connections", "dialect=text"), 1.0);
    assert_eq!(open.value("switchboard_connections", "dialect=lab"), 0.0);
    assert_eq!(delta(&open, "switchboard_connections_total", ""), 4.0);

    const SENDS: usize = 3;
    for n in 0..SENDS {
        let sent = ann
            .call(json!({"op": "send", "to": "bob", "text": format!("hi {n}")}))
            .await;
        assert_eq!(sent["ok"], true, "{sent}");
    }
    assert_eq!(
        ann.call(json!({"op": "create_room", "room": "r1"})).await["ok"],
        true
    );
    assert_eq!(
        bob.call(json!({"op": "join_room", "room": "r1"})).await["ok"],
        true
    );
    for text in ["one", "two"] {
        let said = ann
            .call(json!({"op": "say", "room": "r1", "text": text}))
            .await;
        assert_eq!(said["ok"], true, "{said}");
    }
    // Not yet registered: one not_registered error.
    text.call("USERS").await;
    // 3 new-mail events and 2 room messages to bob, ann told bob joined.
    let after = scrape_until(http, |s| {
        s.value("switchboard_deliveries_total", "")
            - before.value("switchboard_deliveries_total", "")
            >= 6.0
    })
    .await;
    let d = |name: &str, labels: &str| delta(&after, name, labels);
    assert_eq!(d("switchboard_direct_messages_total", ""), SENDS as f64);
    assert_eq!(d("switchboard_requests_total", "op=send"), SENDS as f64);
    assert_eq!(d("switchboard_room_messages_total", ""), 2.0);
    assert_eq!(d("switchboard_requests_total", "op=say"), 2.0);
    assert_eq!(d("switchboard_requests_total", "op=hello"), 2.0);
    assert_eq!(d("switchboard_requests_total", "op=users"), 1.0);
    assert_eq!(d("switchboard_deliveries_total", ""), 6.0);
    assert_eq!(d("switchboard_errors_total", "code=not_registered"), 1.0);
    assert_eq!(d("switchboard_slow_consumers_total", ""), 0.0);
    let store_commits = match after.get("switchboard_store_batch_size", "") {
        Metric::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        other => panic!("{other:?}"),
    };
    assert!(store_commits >= 1.0, "the sends were committed");

    assert_eq!(bob.call(json!({"op": "bye"})).await["ok"], true);
    text.send("QUIT").await;
    let ended = scrape_until(http, |s| {
        s.value("switchboard_connections", "dialect=native") == 1.0
            && s.value("switchboard_connections", "dialect=text") == 0.0
    })
    .await;
    assert_eq!(
        delta(&ended, "switchboard_disconnects_total", "reason=bye"),
        2.0
    );
    server.stop().await;
}

/// A member that does not read while its room is busy is cut: counted once as a slow
/// consumer, as its ending and as the error it was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_counted_once_everywhere() {
    let (server, http) = start(|c| {
        c.max_pending = 64 * 1024;
        c.write_deadline = Duration::from_millis(300);
    })
    .await;
    let mut owner = server.raw().await;
    owner.hello("owner").await;
    owner.call(json!({"op": "create_room", "room": "r"})).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut stalled = crate::common::Raw::from_stream(stream);
    stalled.hello("stalled").await;
    stalled.call(json!({"op": "join_room", "room": "r"})).await;
    let text = "x".repeat(60_000);
    let slow = |s: &Series| s.value("switchboard_slow_consumers_total", "") >= 1.0;
    for _ in 0..400 {
        let said = owner
            .call(json!({"op": "say", "room": "r", "text": text}))
            .await;
        assert_eq!(said["ok"], true);
        if slow(&scrape(http).await) {
            break;
        }
    }
    let cut = scrape_until(http, slow).await;
    assert_eq!(cut.value("switchboard_slow_consumers_total", ""), 1.0);
    // Read what it was sent, so that its writer need not wait out its grace.
    let frames = stalled.until_closed().await;
    assert_eq!(
        frames.last().map(crate::common::code),
        Some("slow_consumer")
    );
    let ended = scrape_until(http, |s| {
        s.value("switchboard_disconnects_total", "reason=slow_consumer") == 1.0
    })
    .await;
    assert_eq!(
        ended.value("switchboard_errors_total", "code=slow_consumer"),
        1.0
    );
    assert_eq!(
        ended.value("switchboard_connections", "dialect=native"),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn the_admin_token_guards_varz_and_not_metrics() {
    let (server, http) = start(|c| {
        c.admin_token = Some(AdminToken::parse(TOKEN).unwrap());
    })
    .await;
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(fetch(http, "/api/varz", "").await.status, 401);
    assert_eq!(fetch(http, "/api/varz", &bearer).await.status, 200);
    // The admin pages are /dashboard and /api/*; /metrics names no one.
    assert_eq!(fetch(http, "/metrics", "").await.status, 200);
    assert_eq!(fetch(http, "/metrics", &bearer).await.status, 200);
    let _ann = server.client("ann").await;
    let answer = fetch(http, &format!("/api/varz?token={TOKEN}"), "").await;
    assert!(!answer.body.contains(TOKEN), "the token is never shown");
    let varz: Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(varz["version"], env!("CARGO_PKG_VERSION"));
    assert!(varz["start"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(varz["uptime_seconds"].is_u64());
    assert_eq!(varz["connections"], 1);
    assert_eq!(varz["connections_total"], 1);
    assert_eq!(varz["in_msgs"], 1, "the hello");
    for key in [
        "out_msgs",
        "direct_messages",
        "room_messages",
        "slow_consumers",
    ] {
        assert_eq!(varz[key], 0, "{key}");
    }
    let config = &varz["config"];
    assert_eq!(config["admin_token"], true);
    assert_eq!(config["max_frame"], json!(Config::default().max_frame));
    assert_eq!(config["listen"], json!(server.addr.to_string()));
    assert_eq!(config["http_listen"], json!(http.to_string()));
    server.stop().await;
}

#[tokio::test]
async fn stats_prints_a_line_per_interval() {
    let (server, http) = start(|c| {
        c.admin_token = Some(AdminToken::parse(TOKEN).unwrap());
    })
    .await;
    let _ann = server.client("ann").await;
    let addr = http.to_string();
    let args = [
        "stats",
        "--addr",
        &addr,
        "--token",
        TOKEN,
        "--interval",
        "0.2",
        "--count",
        "2",
    ];
    let output = run_switchboard(&args, "").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{:?}", output.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("connections  requests/s"), "{stdout}");
    for line in &lines[1..] {
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|f| f.parse().expect("numbers"))
            .collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert_eq!(fields[0], 1, "one client connected: {line}");
    }

    let refused = run_switchboard(&["stats", "--addr", &addr, "--count", "1"], "").await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("401") && stderr.contains("--token"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    server.stop().await;

    let nobody = unused_addr();
    let unreachable = run_switchboard(&["stats", "--addr", &nobody], "").await;
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success());
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
