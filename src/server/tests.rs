//! A panic inside one session, which no network input can cause, is contained: a
//! dialect that panics on a marker frame stands in for a bug.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Config, Session, contained};
use crate::Client;
use crate::dialect::{Dialect, DialectKind, Incoming, Native};
use crate::frame::{self, FrameError};
use crate::protocol::{Event, Response};
use crate::service::Services;
use crate::store::Store;

/// The native dialect, with a bug: a frame saying `boom` panics.
#[derive(Clone)]
struct Buggy(Native);

impl Dialect for Buggy {
    const KIND: DialectKind = DialectKind::Native;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        assert!(!src.ends_with(b"boom"), "a bug in the dialect");
        self.0.decode(src)
    }

    fn encode_response(&self, response: &Response, dst: &mut BytesMut) {
        self.0.encode_response(response, dst)
    }

    fn encode_event(&self, event: &Event, dst: &mut BytesMut) {
        self.0.encode_event(event, dst)
    }
}

/// A server of buggy sessions on loopback: its services, its address, its connection
/// slots (4), and what closes its store.
async fn buggy_server(
    dir: &std::path::Path,
) -> (
    Arc<Services>,
    std::net::SocketAddr,
    Arc<Semaphore>,
    crate::store::StoreCloser,
) {
    let (store, closer) = Store::open(&dir.join("panic.db")).unwrap();
    let config = Config::default();
    let services = Arc::new(Services::new(
        store,
        crate::service::Policy {
            max_frame: config.max_frame,
            max_text: config.max_text,
            require_password: false,
            hub: crate::hub::HubConfig::default(),
        },
    ));
    let slots = Arc::new(Semaphore::new(4));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let services = Arc::clone(&services);
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            let mut next_id = 1;
            while let Ok((stream, peer)) = listener.accept().await {
                let session = Session {
                    client_id: next_id,
                    services: Arc::clone(&services),
                    bounds: crate::outbound::Bounds {
                        frames: config.queue_depth,
                        bytes: config.max_pending,
                    },
                    shared: Arc::new(super::session::Shared {
                        partial: super::partial::PartialBudget::new(1 << 30),
                        text_addr: None,
                        registry: Default::default(),
                        rate: None,
                    }),
                    shutdown: CancellationToken::new(),
                };
                next_id += 1;
                let slot = Arc::clone(&slots).try_acquire_owned().unwrap();
                let dialect = Buggy(Native::new(config.max_frame));
                tokio::spawn(contained(session, stream, peer, dialect, slot));
            }
        });
    }
    (services, addr, slots, closer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_is_cleaned_up_and_the_server_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_services, addr, slots, _closer) = buggy_server(dir.path()).await;
    let bystander = Client::connect(addr).await.unwrap();
    bystander.hello("bystander").await.unwrap();
    let victim = Client::connect(addr).await.unwrap();
    victim.hello("victim").await.unwrap();
    drop(victim);
    let mut bomber = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    frame::encode(br#"{"id":1,"op":"hello","name":"bomber"}"#, &mut out);
    bomber.write_all(&out).await.unwrap();
    let mut seen = Vec::new();
    // Read the welcome and the hello's answer, then set the bug off.
    while !String::from_utf8_lossy(&seen).contains("\"ok\":true") {
        let mut chunk = [0; 256];
        let n = bomber.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before hello was answered");
        seen.extend_from_slice(&chunk[..n]);
    }
    bomber.write_all(b"boom").await.unwrap();
    let mut rest = Vec::new();
    let _ = bomber.read_to_end(&mut rest).await;

    // The bomber's session is gone from the hub, its name free, its slot given back;
    // everyone else is served as before.
    let mut names = Vec::new();
    for _ in 0..1000 {
        names = bystander.users().await.unwrap();
        if names
            .iter()
            .all(|u| u.name != "bomber" && u.name != "victim")
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    let names: Vec<_> = names.into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["bystander"]);
    let again = Client::connect(addr).await.unwrap();
    again.hello("bomber").await.unwrap();
    bystander.ping().await.unwrap();
    assert!(
        slots.available_permits() >= 2,
        "the panicked session's slot is back"
    );
}

/// Reads frames until one answers a request; returns it.
async fn answer(stream: &mut TcpStream) -> serde_json::Value {
    loop {
        let len = stream.read_u32().await.unwrap() as usize;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if value.get("id").is_some() {
            return value;
        }
    }
}

async fn request(stream: &mut TcpStream, json: serde_json::Value) -> serde_json::Value {
    let mut out = BytesMut::new();
    frame::encode(&serde_json::to_vec(&json).unwrap(), &mut out);
    stream.write_all(&out).await.unwrap();
    answer(stream).await
}

/// A session that panics after it took a parked session over leaves that session in
/// the hub under another client id than its connection's: the sweep finds it by its
/// queue, which nothing but the hub holds any more, and parks it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_panics_after_a_resume_is_parked_by_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (services, addr, _slots, _closer) = buggy_server(dir.path()).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let hello = request(
        &mut first,
        serde_json::json!({"id": 1, "op": "hello", "name": "ghost"}),
    )
    .await;
    let token = hello["resume_token"].as_str().unwrap().to_owned();
    first.set_zero_linger().unwrap();
    drop(first);
    while services.backend.parked_count() == 0 {
        tokio::task::yield_now().await;
    }
    let mut second = TcpStream::connect(addr).await.unwrap();
    let resumed = request(
        &mut second,
        serde_json::json!({"id": 1, "op": "hello", "name": "ghost", "resume": token}),
    )
    .await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    second.write_all(b"boom").await.unwrap();
    let mut rest = Vec::new();
    let _ = second.read_to_end(&mut rest).await;
    let timeouts = crate::hub::Timeouts {
        handshake: std::time::Duration::from_secs(10),
        write_deadline: std::time::Duration::from_secs(10),
    };
    // The session's task lets go of its queue a moment after its socket closes: on a
    // busy machine, more than a thousand yields later.
    let mut parked = false;
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < give_up {
        services.sweep(timeouts);
        if services.backend.parked_count() == 1 {
            parked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(parked, "the orphaned session was parked again");
    assert!(
        services.backend.users().is_empty(),
        "and is no longer listed"
    );
}
