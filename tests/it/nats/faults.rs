//! NATS servers killed with SIGKILL under streams of three replicas. One: nothing
//! acknowledged is lost, writes go on through the other two, and a client of the killed
//! server is connected again by itself once it is back. Two: nothing is acknowledged
//! until a majority is back.

use std::time::Duration;

use async_nats::connection::State;
use switchboard::cluster::{self, INBOX_STREAM, Settings, ensure_layout};
use tokio::time::Instant;

use super::harness::NatsCluster;
use super::node;

/// How long the cluster may take to elect new stream leaders, or a client to reconnect.
const FAILOVER: Duration = Duration::from_secs(30);

#[tokio::test]
async fn acknowledged_mail_survives_the_kill_of_its_streams_leader() {
    let Some(mut nats) = NatsCluster::start().await else {
        return;
    };
    let js = node(&nats.urls(), "sender").await;
    let layout = ensure_layout(&js, &Settings::new(3)).await.expect("layout");
    let bob = cluster::name_token("bob");
    let mut acked = Vec::new();
    for n in 0..20 {
        let id = cluster::store_mail(&js, &bob, &format!("before-{n}"), format!("{n}").into())
            .await
            .expect("stored");
        acked.push(id);
    }

    // The server that leads SB_INBOX is the one whose loss matters most.
    let leader = js
        .get_stream(INBOX_STREAM)
        .await
        .expect("inbox stream")
        .cached_info()
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("SB_INBOX has a leader");
    let victim = nats.index_of(&leader);
    let survivor = (victim + 1) % 3;
    // A client that knows only the victim's address.
    let loyal = cluster::connect(&nats.url(victim), "loyal", Duration::from_secs(2))
        .await
        .expect("connect to the victim")
        .client;
    nats.kill(victim);

    // Through the two servers left: every acknowledged message is there, and new
    // sends are acknowledged once a new leader is elected.
    let others = node(&nats.url(survivor), "reader").await;
    let inbox = retry("SB_INBOX through the survivors", || {
        let others = others.clone();
        async move { others.get_stream(INBOX_STREAM).await.ok() }
    })
    .await;
    let page = retry("the mail through the survivors", || {
        let inbox = inbox.clone();
        let bob = bob.clone();
        async move { cluster::peek_mail(&inbox, &bob, 0, 100).await.ok() }
    })
    .await;
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), acked);
    let during = retry("a send while a server is down", || {
        let others = others.clone();
        let bob = bob.clone();
        async move {
            cluster::store_mail(&others, &bob, "during", "d".into())
                .await
                .ok()
        }
    })
    .await;
    acked.push(during);

    nats.restart(victim).await;
    // The client that knew only the killed server is connected again by itself (to it,
    // or to a server the cluster told it of) and is served.
    let deadline = Instant::now() + FAILOVER;
    while loyal.connection_state() != State::Connected {
        assert!(Instant::now() < deadline, "the client reconnects by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loyal = async_nats::jetstream::new(loyal);
    let after = retry("a send through the reconnected client", || {
        let loyal = loyal.clone();
        let bob = bob.clone();
        async move {
            cluster::store_mail(&loyal, &bob, "after", "a".into())
                .await
                .ok()
        }
    })
    .await;
    acked.push(after);

    // And the restarted server, alone in a client's list, serves everything.
    let back = node(&nats.url(victim), "back").await;
    let layout_again = ensure_layout(&back, &Settings::new(3))
        .await
        .expect("layout");
    assert!(layout_again.created.is_empty());
    let page = cluster::peek_mail(&layout.inbox, &bob, 0, 100)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), acked);
}

/// Calls `attempt` until it gives a value, for at most [`FAILOVER`].
async fn retry<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + FAILOVER;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {FAILOVER:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn without_a_majority_of_servers_nothing_is_acknowledged() {
    let Some(mut nats) = NatsCluster::start().await else {
        return;
    };
    let js = node(&nats.url(0), "lonely").await;
    let layout = ensure_layout(&js, &Settings::new(3)).await.expect("layout");
    let bob = cluster::name_token("bob");
    let kept = cluster::store_mail(&js, &bob, "kept", "k".into())
        .await
        .expect("stored while all three run");

    nats.kill(1);
    nats.kill(2);
    // One server of three holds no majority: the send fails (in JetStream's ack
    // timeout) rather than being acknowledged by the one replica left.
    let lost = cluster::store_mail(&js, &bob, "alone", "a".into()).await;
    assert!(
        lost.is_err(),
        "acknowledged by one server of three: {lost:?}"
    );

    nats.restart(1).await;
    nats.restart(2).await;
    let after = retry("a send once a majority is back", || {
        let js = js.clone();
        let bob = bob.clone();
        async move {
            cluster::store_mail(&js, &bob, "after", "b".into())
                .await
                .ok()
        }
    })
    .await;
    let page = retry("the mail once a majority is back", || {
        let inbox = layout.inbox.clone();
        let bob = bob.clone();
        async move { cluster::peek_mail(&inbox, &bob, 0, 10).await.ok() }
    })
    .await;
    let ids: Vec<u64> = page.iter().map(|m| m.id).collect();
    assert_eq!(ids.first(), Some(&kept));
    assert_eq!(ids.last(), Some(&after));
}
