//! The cluster's foundation against a real three-server NATS cluster with JetStream: the
//! layout, name claims by compare-and-set, client ids, inboxes and room `seq` across
//! several connections at once (each a node), and (faults.rs) the loss of a NATS server.

mod admin;
mod directory;
mod faults;
mod harness;
mod keep_read;
mod node_faults;
mod nodes;
mod resume;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, Context};
use switchboard::cluster::{
    self, Claim, Claimed, ClusterError, IdAllocator, Layout, Settings, ensure_layout,
};
use tokio::task::JoinSet;

use harness::NatsCluster;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's JetStream context, connected through the servers of `urls`.
pub async fn node(urls: &str, name: &str) -> Context {
    let connected = cluster::connect(urls, name, CONNECT_TIMEOUT)
        .await
        .expect("connect to NATS");
    jetstream::new(connected.client)
}

/// A node connected through server `i` alone, with the layout ensured at 3 replicas.
async fn node_at(nats: &NatsCluster, i: usize) -> (Context, Layout) {
    let js = node(&nats.url(i), &format!("node{i}")).await;
    let layout = ensure_layout(&js, &Settings::new(3))
        .await
        .expect("ensure layout");
    (js, layout)
}

const EVERYTHING: [&str; 8] = [
    "KV_sb-accounts",
    "KV_sb-names",
    "KV_sb-nodes",
    "KV_sb-rooms",
    "KV_sb-sessions",
    "KV_sb-ids",
    "SB_INBOX",
    "SB_ROOMS",
];

#[tokio::test]
async fn the_layout_is_created_at_three_replicas_once() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    // One address of the list down is a warning, not a refusal.
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let connected = cluster::connect(&format!("{dead},{}", nats.urls()), "first", CONNECT_TIMEOUT)
        .await
        .expect("connect through the live servers");
    assert_eq!(connected.unreachable, [dead]);
    let js = jetstream::new(connected.client);
    let layout = ensure_layout(&js, &Settings::new(3)).await.expect("layout");
    let mut created = layout.created.clone();
    created.sort();
    let mut expected: Vec<String> = EVERYTHING
        .iter()
        .map(|n| n.strip_prefix("KV_").unwrap_or(n).to_owned())
        .collect();
    expected.sort();
    assert_eq!(created, expected);

    let mut born = Vec::new();
    for name in EVERYTHING {
        let info = js.get_stream(name).await.expect(name).cached_info().clone();
        assert_eq!(info.config.num_replicas, 3, "{name}");
        assert_eq!(info.config.storage, StorageType::File, "{name}");
        let peers = info.cluster.expect("cluster info").replicas.len();
        assert_eq!(peers, 2, "{name}: a leader and two followers");
        born.push(info.created);
    }

    // Again, from another node through another server: nothing is created or changed.
    let again = node(&nats.url(2), "second").await;
    let layout = ensure_layout(&again, &Settings::new(3))
        .await
        .expect("again");
    assert!(layout.created.is_empty(), "{:?}", layout.created);
    for (name, born) in EVERYTHING.iter().zip(born) {
        let info = again
            .get_stream(*name)
            .await
            .expect(name)
            .cached_info()
            .clone();
        assert_eq!(info.created, born, "{name} was not recreated");
        assert_eq!(info.config.num_replicas, 3, "{name}");
    }

    // A node asking for other durability is told, not obeyed.
    let err = ensure_layout(&again, &Settings::new(1)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClusterError::LayoutMismatch {
                field: "replicas",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("replicas"), "{err}");
}

#[tokio::test]
async fn nodes_creating_the_layout_at_once_all_succeed() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let mut nodes = JoinSet::new();
    for i in 0..3 {
        let url = nats.url(i);
        nodes.spawn(async move {
            let js = node(&url, &format!("n{i}")).await;
            ensure_layout(&js, &Settings::new(3))
                .await
                .map(|l| l.created)
        });
    }
    while let Some(done) = nodes.join_next().await {
        done.unwrap().expect("ensure layout while others do");
    }
}

/// A loopback port where nothing listens (most likely: it was free a moment ago).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn claim(node: &str, client: u64) -> Claim {
    Claim {
        name: "Alice".into(),
        node: node.into(),
        boot: 7,
        client,
        parked: false,
    }
}

#[tokio::test]
async fn of_two_nodes_claiming_a_name_exactly_one_wins() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let (_, a) = node_at(&nats, 0).await;
    let (_, b) = node_at(&nats, 1).await;
    for round in 0..20 {
        let token = cluster::name_token(&format!("Alice{round}"));
        let (mine, theirs) = (claim("a", 1), claim("b", 2));
        let (x, y) = tokio::join!(
            cluster::claim_name(&a.names, &token, &mine),
            cluster::claim_name(&b.names, &token, &theirs),
        );
        let (x, y) = (x.expect("claim on a"), y.expect("claim on b"));
        let (winner, revision) = match (&x, &y) {
            (Claimed::Won { revision }, Claimed::Taken { holder, .. }) => {
                assert_eq!(holder, &mine, "round {round}");
                (&a, *revision)
            }
            (Claimed::Taken { holder, .. }, Claimed::Won { revision }) => {
                assert_eq!(holder, &theirs, "round {round}");
                (&b, *revision)
            }
            _ => panic!("round {round}: exactly one wins, got {x:?} and {y:?}"),
        };
        if round == 0 {
            // Released once, by the revision it was won at; a stale release is a no-op
            // and does not remove the claim made since.
            assert!(
                cluster::release_name(&winner.names, &token, revision)
                    .await
                    .unwrap()
            );
            assert!(
                !cluster::release_name(&winner.names, &token, revision)
                    .await
                    .unwrap()
            );
            let again = cluster::claim_name(&b.names, &token, &theirs)
                .await
                .unwrap();
            let Claimed::Won { revision: now } = again else {
                panic!("a released name is free: {again:?}");
            };
            assert!(
                !cluster::release_name(&a.names, &token, revision)
                    .await
                    .unwrap()
            );
            let held = cluster::claim_name(&a.names, &token, &mine).await.unwrap();
            assert_eq!(
                held,
                Claimed::Taken {
                    holder: theirs.clone(),
                    revision: now
                }
            );
        }
    }
}

#[tokio::test]
async fn concurrent_nodes_get_unique_client_ids() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let mut takers = JoinSet::new();
    for i in 0..3 {
        let (_, layout) = node_at(&nats, i).await;
        let ids = Arc::new(IdAllocator::new(layout.ids, 16));
        // Two tasks per node share its allocator, as its sessions would.
        for _ in 0..2 {
            let ids = ids.clone();
            takers.spawn(async move {
                let mut got = Vec::new();
                for _ in 0..100 {
                    got.push(ids.next_id().await.expect("an id"));
                }
                got
            });
        }
    }
    let mut seen = HashSet::new();
    while let Some(got) = takers.join_next().await {
        for id in got.unwrap() {
            assert!(id > 0, "0 is no client's id");
            assert!(seen.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(seen.len(), 600);
}

#[tokio::test]
async fn a_room_seq_has_no_gap_when_nodes_race() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let token = cluster::room_token("Lab.1");
    let mut nodes = JoinSet::new();
    for i in 0..3 {
        let (js, layout) = node_at(&nats, i).await;
        let token = token.clone();
        nodes.spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..20 {
                let text = format!("node {i} says {n}");
                let done = cluster::append_to_room(&js, &layout.room_history, &token, text.into())
                    .await
                    .expect("append");
                seqs.push(done.seq);
            }
            seqs
        });
    }
    let mut all = Vec::new();
    while let Some(seqs) = nodes.join_next().await {
        let seqs = seqs.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=60).collect::<Vec<u64>>());

    // As stored: in stream order, seq counts 1, 2, 3...
    let (_, layout) = node_at(&nats, 0).await;
    let subject = cluster::room_subject(&token);
    let mut from = 1;
    for expected in 1..=60u64 {
        let message = layout
            .room_history
            .raw_message_builder()
            .next_by_subject(subject.clone())
            .sequence(from)
            .send()
            .await
            .expect("a stored room message");
        let seq = message.headers.get(cluster::SEQ_HEADER).expect("Sb-Seq");
        assert_eq!(seq.as_str(), expected.to_string());
        from = message.sequence + 1;
    }
}

#[tokio::test]
async fn mail_is_peeked_in_order_and_acked_up_to_an_id() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let (js, layout) = node_at(&nats, 0).await;
    let bob = cluster::name_token("Bob");
    let carol = cluster::name_token("carol");
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = cluster::store_mail(&js, &bob, &format!("a-{n}"), format!("hi {n}").into())
            .await
            .unwrap();
        ids.push(id);
        cluster::store_mail(&js, &carol, &format!("c-{n}"), "other".into())
            .await
            .unwrap();
    }
    // A retry of the same send within the duplicate window is stored once.
    let again = cluster::store_mail(&js, &bob, "a-4", "hi 4".into())
        .await
        .unwrap();
    assert_eq!(again, ids[4]);

    let page = cluster::peek_mail(&layout.inbox, &bob, 0, 10)
        .await
        .unwrap();
    let got: Vec<(u64, String)> = page
        .iter()
        .map(|m| (m.id, String::from_utf8_lossy(&m.payload).into_owned()))
        .collect();
    let want: Vec<(u64, String)> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| (*id, format!("hi {n}")))
        .collect();
    assert_eq!(got, want);
    let two = cluster::peek_mail(&layout.inbox, &bob, ids[0], 2)
        .await
        .unwrap();
    assert_eq!(two.iter().map(|m| m.id).collect::<Vec<_>>(), ids[1..3]);

    assert_eq!(
        cluster::ack_mail(&layout.inbox, &bob, ids[2])
            .await
            .unwrap(),
        3
    );
    let left = cluster::peek_mail(&layout.inbox, &bob, 0, 10)
        .await
        .unwrap();
    assert_eq!(left.iter().map(|m| m.id).collect::<Vec<_>>(), ids[3..]);
    assert_eq!(
        cluster::ack_mail(&layout.inbox, &bob, ids[2])
            .await
            .unwrap(),
        0
    );
    let others = cluster::peek_mail(&layout.inbox, &carol, 0, 10)
        .await
        .unwrap();
    assert_eq!(others.len(), 5, "an ack touches only its own inbox");
}

#[tokio::test]
async fn an_address_where_nothing_listens_fails_fast_naming_it() {
    let urls = format!(
        "nats://127.0.0.1:{},nats://127.0.0.1:{}",
        free_port(),
        free_port()
    );
    let started = std::time::Instant::now();
    let err = cluster::connect(&urls, "lonely", CONNECT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < CONNECT_TIMEOUT * 2,
        "{:?}",
        started.elapsed()
    );
    let said = err.to_string();
    for url in urls.split(',') {
        assert!(said.contains(url), "{said}");
    }
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{said}");
    assert!(!said.contains('\n'), "one line: {said}");
}
