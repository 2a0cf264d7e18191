//! Rate limits that delay and never cut, on tokio's paused clock: a connection over
//! `--rate` waits while everyone else is served at once, and a wrong password waits
//! 100 ms, then twice as long each time, while everyone else is served at once.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::server::RateLimit;
use tokio::time::Instant;

use crate::common::{Raw, TestServer, code};
use crate::resume::paused;
use crate::ws::Ws;

const LIMIT: RateLimit = RateLimit {
    per_second: 10,
    burst: 5,
};

/// How long after `start` each of `n` pipelined pings was answered.
async fn answer_times(raw: &mut Raw, n: u64, start: Instant) -> Vec<Duration> {
    for id in 1..=n {
        raw.send(&json!({"op": "ping", "id": id})).await;
    }
    let mut times = Vec::new();
    for id in 1..=n {
        assert_eq!(raw.response(Some(id)).await["ok"], true);
        times.push(start.elapsed());
    }
    times
}

/// The burst at once, then one request every 100 ms, each within `slack` of its due.
fn assert_paced(times: &[Duration], slack: Duration) {
    for (i, &at) in times.iter().enumerate() {
        let due = Duration::from_millis(100) * (i as u32).saturating_sub(4);
        assert!(
            at >= due && at < due + slack,
            "request {i} answered at {at:?}, due at {due:?}: {times:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_flooder_waits_for_its_budget_and_everyone_else_is_served_at_once() {
    let server = TestServer::start_tweaked(|c| {
        paused(c);
        c.rate = Some(LIMIT);
    })
    .await;
    let mut flooder = server.raw().await;
    flooder.hello("flooder").await;
    let mut other = server.raw().await;
    other.hello("other").await;

    // hello spent one request of the burst: wait until it is whole again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flood = tokio::spawn(async move {
        let times = answer_times(&mut flooder, 25, Instant::now()).await;
        (times, flooder)
    });
    // While the flooder's requests wait, another client's (within its own budget)
    // are answered at once.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let asked = Instant::now();
    for _ in 0..LIMIT.burst {
        assert_eq!(other.call(json!({"op": "ping"})).await["ok"], true);
    }
    assert!(
        asked.elapsed() < Duration::from_millis(10),
        "{:?}",
        asked.elapsed()
    );

    let (times, mut flooder) = flood.await.unwrap();
    assert_paced(&times, Duration::from_millis(20));
    // Slowed, never cut: the flooder is still there, and served.
    assert_eq!(flooder.call(json!({"op": "ping"})).await["ok"], true);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_while_refills_the_burst() {
    let server = TestServer::start_tweaked(|c| {
        paused(c);
        c.rate = Some(LIMIT);
    })
    .await;
    let mut raw = server.raw().await;
    assert_eq!(raw.recv().await["event"], "welcome");
    for _ in 0..2 {
        let start = Instant::now();
        let times = answer_times(&mut raw, 10, start).await;
        assert_paced(&times, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_holds_over_a_websocket_too() {
    let server = crate::ws::start(|c| {
        paused(c);
        c.rate = Some(LIMIT);
    })
    .await;
    let mut ws = Ws::connect(&server).await;
    assert_eq!(ws.event().await["event"], "welcome");
    let start = Instant::now();
    for id in 1..=10 {
        ws.send(&json!({"op": "ping", "id": id})).await;
    }
    let mut times = Vec::new();
    for id in 1..=10 {
        assert_eq!(ws.response(id).await["ok"], true);
        times.push(start.elapsed());
    }
    assert_paced(&times, Duration::from_millis(20));
}

/// A hello for `name` with `password`: its answer, and how long it took.
async fn hello(server: &TestServer, name: &str, password: &str) -> (Value, Duration) {
    let mut raw = server.raw().await;
    assert_eq!(raw.recv().await["event"], "welcome");
    let start = Instant::now();
    let reply = raw
        .call(json!({"op": "hello", "name": name, "password": password}))
        .await;
    let took = start.elapsed();
    // Ended before the next hello for the name, whatever the load: a connection merely
    // dropped might still hold it when that hello arrives.
    if reply["ok"] == true {
        raw.call(json!({"op": "bye"})).await;
        raw.until_closed().await;
    }
    (reply, took)
}

#[tokio::test(start_paused = true)]
async fn each_wrong_password_waits_twice_as_long_and_a_right_one_starts_again() {
    let server = TestServer::start_tweaked(paused).await;
    let (reply, took) = hello(&server, "ada", "right horse").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(took < Duration::from_millis(10), "{took:?}");

    let mut waits = Vec::new();
    for _ in 0..4 {
        let (reply, took) = hello(&server, "ada", "wrong").await;
        assert_eq!(code(&reply), "auth_failed", "{reply}");
        waits.push(took);
    }
    for (i, took) in waits.iter().enumerate() {
        let due = Duration::from_millis(100 << i);
        assert!(
            *took >= due && *took < due + Duration::from_millis(20),
            "{waits:?}"
        );
    }
    // Another name is not slowed by ada's guesser.
    let (reply, took) = hello(&server, "bob", "whatever").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(took < Duration::from_millis(10), "{took:?}");

    // The right password is let in at once, and the count starts again.
    let (reply, took) = hello(&server, "ada", "right horse").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(took < Duration::from_millis(10), "{took:?}");
    let (reply, took) = hello(&server, "ada", "wrong").await;
    assert_eq!(code(&reply), "auth_failed");
    assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(120));
}

#[tokio::test(start_paused = true)]
async fn a_guesser_waiting_slows_no_one_else() {
    let server = TestServer::start_tweaked(paused).await;
    hello(&server, "ada", "right horse").await;
    for _ in 0..6 {
        hello(&server, "ada", "wrong").await;
    }
    // The seventh guess waits 6.4 s; meanwhile others come and go at once.
    let guesser = tokio::spawn({
        let addr = server.addr;
        async move {
            let mut raw = Raw::connect(addr).await;
            raw.recv().await;
            let start = Instant::now();
            let reply = raw
                .call(json!({"op": "hello", "name": "ada", "password": "wrong"}))
                .await;
            (code(&reply).to_owned(), start.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let mut other = server.raw().await;
    other.hello("carol").await;
    for _ in 0..10 {
        assert_eq!(other.call(json!({"op": "ping"})).await["ok"], true);
    }
    assert!(start.elapsed() < Duration::from_millis(10));
    let (code, took) = guesser.await.unwrap();
    assert_eq!(code, "auth_failed");
    assert!(took >= Duration::from_millis(6400), "{took:?}");
}
