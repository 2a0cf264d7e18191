//! What room history and resume cost: the memory of a parked session and of a room
//! keeping 1,000 messages of 64 bytes (counted by the allocator: bytes asked for, live),
//! and how fast a resuming client is replayed what it missed (a real server over
//! loopback).
//!
//!   cargo bench --bench delivery

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use switchboard::hub::{After, Ending, Hub, HubConfig};
use switchboard::outbound::{Bounds, OutQueue, Outbound, Outbox};
use switchboard::server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const BOUNDS: Bounds = Bounds {
    frames: 1024,
    bytes: 8 << 20,
};

/// Bytes per session: named and connected (the hub's share only), then parked.
fn parked_session() {
    const N: u64 = 10_000;
    let hub = Hub::new(HubConfig {
        max_parked: N as usize,
        ..HubConfig::default()
    });
    let before = live();
    let queues: Vec<Arc<OutQueue>> = (0..N)
        .map(|id| {
            let queue = Arc::new(OutQueue::new(BOUNDS));
            hub.connect(id, Outbox::new(Arc::clone(&queue)));
            hub.claim_name(id, &format!("user{id:05}")).expect("name");
            queue
        })
        .collect();
    let connected = live();
    for (id, queue) in queues.iter().enumerate() {
        hub.depart(id as u64, queue, Ending::Cut);
    }
    drop(queues);
    let parked = live();
    assert_eq!(hub.parked_count(), N as usize);
    println!(
        "a connected session, in the hub and its queue: {} bytes",
        (connected - before) / N as isize
    );
    println!(
        "a parked session (name, token, rooms; no socket, no queue): {} bytes",
        (parked - before) / N as isize
    );
}

/// Bytes of a room's history of 1,000 messages of 64 bytes.
fn room_history() {
    let hub = Hub::new(HubConfig::default());
    let queue = Arc::new(OutQueue::new(BOUNDS));
    hub.connect(1, Outbox::new(Arc::clone(&queue)));
    hub.claim_name(1, "owner").expect("name");
    hub.create_room(1, "hall").expect("room");
    let text = "x".repeat(64);
    let before = live();
    for _ in 0..1000 {
        hub.say(1, "hall", &text).expect("say");
    }
    println!(
        "a room keeping 1,000 messages of 64 bytes: {} bytes ({} per message)",
        live() - before,
        (live() - before) / 1000
    );
    // The replay a join takes shares the history's lines: pointers only.
    let before = live();
    hub.join_room(
        1,
        "hall",
        Some(After {
            seq: 0,
            epoch: None,
        }),
        |_| Outbound::Close,
    )
    .expect("join");
    println!(
        "its replay of 1,000 messages, queued: {} bytes",
        live() - before
    );
}

/// Nanoseconds the hub spends per `say` to a room of 64 whose members' queues are
/// drained as a writer would, keeping `history` messages.
fn say_cost(history: usize) -> f64 {
    const MEMBERS: u64 = 64;
    const SAYS: usize = 200_000;
    let hub = Hub::new(HubConfig {
        history,
        ..HubConfig::default()
    });
    let queues: Vec<Arc<OutQueue>> = (0..MEMBERS)
        .map(|id| {
            let queue = Arc::new(OutQueue::new(BOUNDS));
            hub.connect(id, Outbox::new(Arc::clone(&queue)));
            hub.claim_name(id, &format!("member{id}")).expect("name");
            queue
        })
        .collect();
    hub.create_room(0, "hall").expect("room");
    for id in 1..MEMBERS {
        hub.join_room(id, "hall", None, |_| Outbound::Close)
            .expect("join");
    }
    for queue in &queues {
        while queue.try_recv().is_some() {}
    }
    let text = "x".repeat(64);
    let started = Instant::now();
    for _ in 0..SAYS {
        hub.say(0, "hall", &text).expect("say");
        for queue in &queues[1..] {
            queue.try_recv();
        }
    }
    started.elapsed().as_nanos() as f64 / SAYS as f64
}

async fn frame(stream: &mut TcpStream) -> Value {
    let len = stream.read_u32().await.expect("length") as usize;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.expect("payload");
    serde_json::from_slice(&payload).expect("json")
}

async fn call(stream: &mut TcpStream, request: Value) -> Value {
    let payload = serde_json::to_vec(&request).expect("json");
    stream.write_u32(payload.len() as u32).await.expect("write");
    stream.write_all(&payload).await.expect("write");
    loop {
        let reply = frame(stream).await;
        if reply.get("id").is_some() {
            return reply;
        }
    }
}

/// A named connection, and its resume token.
async fn connect(addr: std::net::SocketAddr, name: &str) -> (TcpStream, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    frame(&mut stream).await;
    let hello = call(&mut stream, json!({"id": 1, "op": "hello", "name": name})).await;
    assert_eq!(hello["ok"], true, "{hello}");
    (stream, hello["resume_token"].clone())
}

/// Messages per second replayed to a client that resumes after missing `missed`.
async fn replay_speed(missed: u64, rounds: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        db: dir.path().join("bench.db"),
        room_history: missed as usize,
        ..Config::default()
    })
    .await
    .expect("server");
    let addr = server.local_addr().expect("address");
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone().cancelled_owned()));
    let (mut owner, _) = connect(addr, "owner").await;
    call(
        &mut owner,
        json!({"id": 2, "op": "create_room", "room": "hall"}),
    )
    .await;
    let text = "x".repeat(64);
    let mut rates = Vec::new();
    for round in 0..rounds {
        let name = format!("reader{round}");
        let (mut reader, token) = connect(addr, &name).await;
        call(
            &mut reader,
            json!({"id": 2, "op": "join_room", "room": "hall"}),
        )
        .await;
        let seen = call(
            &mut owner,
            json!({"id": 3, "op": "say", "room": "hall", "text": text}),
        )
        .await["seq"]
            .as_u64()
            .expect("seq")
            - 1;
        reader.set_zero_linger().expect("linger");
        drop(reader);
        // Parked once it is no longer listed.
        loop {
            let users = call(&mut owner, json!({"id": 4, "op": "users"})).await;
            if !users["users"].to_string().contains(&format!("\"{name}\"")) {
                break;
            }
        }
        for _ in 1..missed {
            call(
                &mut owner,
                json!({"id": 3, "op": "say", "room": "hall", "text": text}),
            )
            .await;
        }
        let mut resumed = TcpStream::connect(addr).await.expect("connect");
        resumed.set_nodelay(true).expect("nodelay");
        frame(&mut resumed).await;
        let started = Instant::now();
        let hello = call(
            &mut resumed,
            json!({"id": 1, "op": "hello", "name": name, "resume": token, "seen": {"hall": seen}}),
        )
        .await;
        assert_eq!(hello["resumed"], true, "{hello}");
        let mut got = 0;
        while got < missed {
            let event = frame(&mut resumed).await;
            if event["event"] == "room_message" {
                got += 1;
            }
        }
        let rate = missed as f64 / started.elapsed().as_secs_f64();
        rates.push(rate);
        call(&mut resumed, json!({"id": 9, "op": "bye"})).await;
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "replay to a resuming client, {missed} messages of 64 bytes: median {:.0} messages/s over {rounds} rounds",
        rates[rates.len() / 2]
    );
    stop.cancel();
    let _ = serving.await;
}

fn main() {
    parked_session();
    room_history();
    for round in 0..3 {
        let (without, with) = (say_cost(0), say_cost(1000));
        println!(
            "a say to 64 members, delivered and taken off their queues (round {round}): \
             {without:.0} ns without history, {with:.0} ns keeping 1,000"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(replay_speed(1000, 9));
    runtime.block_on(replay_speed(100_000, 3));
}
