//! `switchboard admin` against a cluster, through any node's admin socket: the
//! accounts and inboxes are the cluster's, the same from every node.

use std::time::Duration;

use switchboard::Client;

use super::harness::NatsCluster;
use super::nodes::node_tweaked;
use crate::admin::admin;
use crate::common::client_code;

#[tokio::test]
async fn admin_commands_through_any_node_act_on_the_whole_cluster() {
    let Some(nats) = NatsCluster::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let heal = Duration::from_secs(15);
    let a = node_tweaked(&nats, 0, "a", heal, |c| c.db = a_db.clone()).await;
    let b = node_tweaked(&nats, 1, "b", heal, |c| c.db = b_db.clone()).await;
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());

    let pat = Client::connect(a_addr.as_str()).await.unwrap();
    pat.hello_with("Pat", Some("old secret")).await.unwrap();
    pat.bye().await.unwrap();
    let bob = Client::connect(b_addr.as_str()).await.unwrap();
    bob.hello("bob").await.unwrap();
    for text in ["one", "two"] {
        bob.send("pat", text).await.unwrap();
    }

    // Either node lists everyone seen anywhere, with their waiting mail.
    let (ok, out, err) = admin(&a_db, &["users"], "").await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with("Pat") && lines[1].ends_with("yes       2"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("bob") && lines[2].ends_with("no        0"),
        "{out}"
    );
    let (_, from_b, _) = admin(&b_db, &["users"], "").await;
    assert_eq!(from_b, out);

    // A password reset through node b holds for a hello on node a.
    let (ok, _, err) = admin(&b_db, &["reset-password", "pat"], "new\nnew\n").await;
    assert!(ok, "{err}");
    let old = Client::connect(a_addr.as_str()).await.unwrap();
    assert_eq!(
        client_code(old.hello_with("pat", Some("old secret")).await),
        "auth_failed"
    );
    let renewed = Client::connect(a_addr.as_str()).await.unwrap();
    renewed.hello_with("pat", Some("new")).await.unwrap();
    renewed.bye().await.unwrap();
    let (ok, _, err) = admin(&a_db, &["remove-password", "pat"], "").await;
    assert!(ok, "{err}");
    let open = Client::connect(b_addr.as_str()).await.unwrap();
    open.hello("pat").await.unwrap();

    // Online on any node: not forgotten.
    let (ok, _, err) = admin(&b_db, &["forget", "pat"], "").await;
    assert!(!ok);
    assert_eq!(
        err,
        "switchboard: pat is online now; forget it once it has left\n"
    );
    open.bye().await.unwrap();
    // The watch of sb-names brings the release to node a a moment later.
    let deadline = tokio::time::Instant::now() + crate::common::PATIENCE;
    loop {
        let (ok, out, err) = admin(&a_db, &["forget", "pat"], "").await;
        if ok {
            assert_eq!(out, "pat: forgotten\n");
            break;
        }
        assert!(err.contains("online now"), "{err}");
        assert!(tokio::time::Instant::now() < deadline, "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, out, _) = admin(&b_db, &["users"], "").await;
    assert!(!out.contains("Pat"), "{out}");
    let (ok, _, err) = admin(&b_db, &["forget", "nobody"], "").await;
    assert!(!ok);
    assert_eq!(err, "switchboard: no user nobody has ever been seen\n");
    // Its mail went with it: a new pat finds none.
    let again = Client::connect(a_addr.as_str()).await.unwrap();
    again.hello("pat").await.unwrap();
    assert!(again.inbox(None).await.unwrap().messages.is_empty());

    // A cluster's data is NATS's: the backup says where to make one.
    let backup = dir.path().join("backup.db");
    let (ok, _, err) = crate::admin::run(
        &[
            "backup",
            backup.to_str().unwrap(),
            "--db",
            a_db.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert!(!ok);
    assert!(err.contains("cluster") && err.contains("nats"), "{err}");
    a.stop().await;
    b.stop().await;
}
