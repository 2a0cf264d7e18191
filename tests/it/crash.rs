//! "Answered ok" means kept: the server runs as its own process and is killed with
//! SIGKILL in the middle of traffic; after a restart on the same file, every message
//! that was acknowledged is delivered exactly once, in each sender's order, and
//! messages already read stay read through another kill. Both ways the store can run:
//! on a thread of its own (`--threads 2`, the default on more than two cores) and
//! inline on a single-threaded server's only thread (`--threads 1`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard::Client;
use tokio::sync::Notify;

use crate::wire::Serve;

const SENDERS: usize = 8;
/// The server is killed once this many sends have been acknowledged in all.
const KILL_AFTER: usize = 400;

fn kill9(serve: &Serve) {
    let pid = serve.child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
}

async fn start(db: &std::path::Path, extra: &[&str]) -> (Serve, String) {
    let args: Vec<&str> = ["--listen", "127.0.0.1:0"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let serve = Serve::start(db, &args, 1).await;
    let addr = serve.addrs[0].clone();
    (serve, addr)
}

/// Reads the whole inbox of `name`, page by page.
async fn read_all(addr: &str, name: &str) -> Vec<String> {
    let client = Client::connect(addr).await.unwrap();
    client.hello(name).await.unwrap();
    let mut texts = Vec::new();
    loop {
        let page = client.inbox(Some(97)).await.unwrap();
        texts.extend(page.messages.into_iter().map(|m| m.text));
        if !page.more {
            break;
        }
    }
    client.bye().await.unwrap();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sends_survive_kill_9_with_a_store_thread() {
    // Spelled out: on a machine of two cores or fewer the default is one thread.
    acknowledged_sends_survive_kill_9_with(&["--threads", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sends_survive_kill_9_with_the_store_inline() {
    acknowledged_sends_survive_kill_9_with(&["--threads", "1"]).await;
}

async fn acknowledged_sends_survive_kill_9_with(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let (mut serve, addr) = start(&db, extra).await;
    let owner = Client::connect(addr.as_str()).await.unwrap();
    owner.hello("owner").await.unwrap();
    owner.bye().await.unwrap();

    let acked_total = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let (addr, acked_total, enough) = (addr.clone(), acked_total.clone(), enough.clone());
            tokio::spawn(async move {
                let client = Client::connect(addr.as_str()).await.unwrap();
                client.hello(&format!("sender{i}")).await.unwrap();
                let mut acked = 0u64;
                // Until the server dies under us: each send waits for its answer.
                while client.send("owner", &format!("{i}:{acked}")).await.is_ok() {
                    acked += 1;
                    if acked_total.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                        enough.notify_one();
                    }
                }
                acked
            })
        })
        .collect();
    enough.notified().await;
    kill9(&serve);
    let _ = serve.child.wait().await;
    let mut acked = Vec::new();
    for sender in senders {
        acked.push(sender.await.unwrap());
    }
    assert!(acked.iter().sum::<u64>() >= KILL_AFTER as u64);

    let (serve, addr) = start(&db, extra).await;
    let texts = read_all(&addr, "owner").await;
    let mut by_sender: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for text in &texts {
        let (i, seq) = text.split_once(':').unwrap();
        by_sender
            .entry(i.parse().unwrap())
            .or_default()
            .push(seq.parse().unwrap());
    }
    for (i, &count) in acked.iter().enumerate() {
        let got = by_sender.remove(&i).unwrap_or_default();
        // Exactly once and in order: 0, 1, 2, ... with nothing skipped or repeated.
        let expected: Vec<u64> = (0..got.len() as u64).collect();
        assert_eq!(got, expected, "sender {i}: order or duplicates");
        // Every acknowledged one is there; at most the one in flight at the kill
        // made it to disk without its answer.
        assert!(
            got.len() as u64 >= count,
            "sender {i}: {count} acked, {} kept",
            got.len()
        );
        assert!(
            got.len() as u64 <= count + 1,
            "sender {i}: invented messages"
        );
    }

    // What was read stays read, through another kill -9.
    kill9(&serve);
    drop(serve);
    let (_serve, addr) = start(&db, extra).await;
    assert_eq!(read_all(&addr, "owner").await, Vec::<String>::new());
}

/// Read mail is deleted, the newest included; a kill -9 right after must not let the
/// restarted server give a deleted message's id to a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_deleted_mail_are_not_given_again_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ids.db");
    let (serve, addr) = start(&db, &[]).await;
    let client = Client::connect(addr.as_str()).await.unwrap();
    client.hello("sender").await.unwrap();
    let owner = Client::connect(addr.as_str()).await.unwrap();
    owner.hello("owner").await.unwrap();
    owner.bye().await.unwrap();
    let mut last = 0;
    for i in 0..3 {
        last = client.send("owner", &format!("m{i}")).await.unwrap();
    }
    assert_eq!(read_all(&addr, "owner").await.len(), 3);
    kill9(&serve);
    drop(serve);
    let (_serve, addr) = start(&db, &[]).await;
    let client = Client::connect(addr.as_str()).await.unwrap();
    client.hello("sender").await.unwrap();
    assert_eq!(client.send("owner", "new").await.unwrap(), last + 1);
}
