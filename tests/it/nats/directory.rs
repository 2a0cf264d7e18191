//! Who is online, across nodes, read right after the change: `users` on one node lists
//! a name claimed on another as soon as the claim was answered, and no longer lists it
//! once its `bye` was; a send to the client id of a session that just began on another
//! node reaches it.

use std::time::Duration;

use serde_json::json;

use super::harness::NatsCluster;
use super::nodes::node;
use crate::common::Raw;

#[tokio::test]
async fn what_one_node_acknowledged_every_node_answers_at_once() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let heal = Duration::from_secs(15);
    let a = node(&nats, 0, "a", heal).await;
    let b = node(&nats, 1, "b", heal).await;
    let mut watcher = Raw::connect(b.addr).await;
    watcher.hello("watcher").await;
    for round in 0..20 {
        let name = format!("quick{round}");
        let mut raw = Raw::connect(a.addr).await;
        let id = raw.hello(&name).await;
        let users = watcher.call(json!({"op": "users"})).await;
        let listed = (users["users"].as_array().unwrap().iter())
            .any(|u| u["name"] == name.as_str() && u["client_id"] == id);
        assert!(listed, "round {round}: {users}");
        let sent = watcher
            .call(json!({"op": "send", "to": id, "text": "hi"}))
            .await;
        assert_eq!(sent["ok"], true, "round {round}: {sent}");
        let bye = raw.call(json!({"op": "bye"})).await;
        assert_eq!(bye["ok"], true, "{bye}");
        let users = watcher.call(json!({"op": "users"})).await;
        assert!(
            !users.to_string().contains(&format!("\"{name}\"")),
            "round {round}, after bye: {users}"
        );
    }
    a.stop().await;
    b.stop().await;
}
