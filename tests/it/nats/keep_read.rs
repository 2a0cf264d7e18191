//! `--keep-read` in a cluster: what an ack or a plain `inbox` takes from the inbox is
//! kept in `SB_READ`, which deletes it the given days after it was read.

use std::time::Duration;

use switchboard::Client;
use switchboard::store::KeepRead;

use super::harness::NatsCluster;
use super::nodes::node_tweaked;

#[tokio::test]
async fn read_mail_is_kept_for_keep_read_days_and_the_inbox_holds_the_unread_only() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let heal = Duration::from_secs(15);
    let keep = |c: &mut switchboard::server::Config| c.keep_read = KeepRead::days(2);
    let a = node_tweaked(&nats, 0, "a", heal, keep).await;
    let addr = a.addr.to_string();
    let reader = Client::connect(addr.as_str()).await.unwrap();
    reader.hello("reader").await.unwrap();
    let sender = Client::connect(addr.as_str()).await.unwrap();
    sender.hello("sender").await.unwrap();
    for text in ["one", "two", "three"] {
        sender.send("reader", text).await.unwrap();
    }
    let page = reader.inbox_peek(Some(1)).await.unwrap();
    assert_eq!(page.messages[0].text, "one");
    assert_eq!(reader.ack(page.messages[0].message_id).await.unwrap(), 1);
    let rest = reader.inbox(None).await.unwrap();
    let texts: Vec<&str> = rest.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["two", "three"]);
    assert!(reader.inbox(None).await.unwrap().messages.is_empty());

    let js = super::node(&nats.urls(), "look").await;
    let mut read = js.get_stream("SB_READ").await.expect("SB_READ made");
    let info = read.info().await.unwrap();
    assert_eq!(info.state.messages, 3, "every read message kept once");
    assert_eq!(info.config.max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(info.config.num_replicas, 3);

    // Another node must keep read mail as long: a different --keep-read is refused,
    // naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let config = switchboard::server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: switchboard::server::HttpListen::Off,
        db: dir.path().join("unused.db"),
        keep_read: KeepRead::days(3),
        cluster: Some(switchboard::cluster::NodeConfig {
            urls: nats.url(1),
            node: "b".to_owned(),
            replicas: 3,
            heal_after: heal,
        }),
        ..switchboard::server::Config::default()
    };
    let refused = switchboard::server::Server::bind(config)
        .await
        .err()
        .expect("refused");
    let said = refused.to_string();
    assert!(
        said.contains("SB_READ") && said.contains("max_age"),
        "{said}"
    );
    a.stop().await;
}
