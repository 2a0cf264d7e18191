//! Protected names: registration on first use with a password, auth_failed for a wrong
//! or missing one (also after a restart), --require-password, and privacy of inboxes.

use std::path::Path;

use switchboard::Client;

use crate::common::{TestServer, client_code};
use crate::wire::Serve;

async fn connect(server: &TestServer) -> Client {
    Client::connect(server.addr).await.expect("connect")
}

/// Claims `name` with `password` (its first hello registers it), then leaves.
async fn register(server: &TestServer, name: &str, password: &str) {
    let client = connect(server).await;
    client.hello_with(name, Some(password)).await.unwrap();
    client.bye().await.unwrap();
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every byte the store keeps on disk: the database, its WAL and shared memory.
fn store_bytes(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            all.extend(bytes);
        }
    }
    all
}

#[tokio::test]
async fn a_password_protects_a_name_across_restarts() {
    let mut server = TestServer::start().await;
    let dir = server.keep_dir();
    let db = server.db.clone();

    register(&server, "nina", "correct horse").await;

    let wrong = connect(&server).await;
    let wrong_err = wrong.hello_with("nina", Some("battery staple")).await;
    let missing = connect(&server).await;
    let missing_err = missing.hello_with("nina", None).await;
    let (Err(w), Err(m)) = (wrong_err, missing_err) else {
        panic!("a wrong or missing password must be refused");
    };
    assert_eq!(w.to_string(), m.to_string(), "no hint which it was");
    assert!(w.to_string().starts_with("auth_failed"), "{w}");
    assert!(!w.to_string().contains("horse") && !w.to_string().contains("battery"));

    // Names never used with a password stay open.
    let open = connect(&server).await;
    open.hello("jose").await.unwrap();
    open.bye().await.unwrap();
    let again = connect(&server).await;
    again.hello("jose").await.unwrap();
    again.bye().await.unwrap();
    server.stop().await;

    assert!(
        !contains(&store_bytes(&db), "correct horse"),
        "password in the store"
    );
    assert!(
        contains(&store_bytes(&db), "$argon2id$"),
        "an argon2id hash is kept"
    );

    let server = TestServer::start_on(&db).await;
    let missing = connect(&server).await;
    assert_eq!(client_code(missing.hello("nina").await), "auth_failed");
    let right = connect(&server).await;
    right
        .hello_with("nina", Some("correct horse"))
        .await
        .unwrap();
    server.stop().await;
    drop(dir);
}

#[tokio::test]
async fn require_password_refuses_a_bare_hello() {
    let server = TestServer::start_tweaked(|c| c.require_password = true).await;
    let bare = connect(&server).await;
    assert_eq!(client_code(bare.hello("nina").await), "auth_failed");
    let with = connect(&server).await;
    with.hello_with("nina", Some("pw")).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn nobody_reads_anothers_inbox() {
    let server = TestServer::start().await;
    let nina = connect(&server).await;
    nina.hello_with("nina", Some("s3cret")).await.unwrap();
    let jose = server.client("jose").await;
    jose.send("nina", "for nina only").await.unwrap();

    // jose's own inbox holds nothing of nina's.
    assert!(jose.inbox(None).await.unwrap().messages.is_empty());
    // While nina is online her name cannot be taken; once she is gone, it needs her
    // password; without a hello, there is no inbox at all.
    let thief = connect(&server).await;
    assert_eq!(
        client_code(thief.hello_with("nina", Some("s3cret")).await),
        "name_taken"
    );
    nina.bye().await.unwrap();
    let thief = connect(&server).await;
    assert_eq!(
        client_code(thief.hello_with("nina", Some("guess")).await),
        "auth_failed"
    );
    assert_eq!(client_code(thief.inbox(None).await), "not_registered");
    assert_eq!(client_code(thief.hello("nina").await), "auth_failed");

    let nina = connect(&server).await;
    nina.hello_with("nina", Some("s3cret")).await.unwrap();
    let page = nina.inbox(None).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text, "for nina only");
    server.stop().await;
}

#[tokio::test]
async fn passwords_never_reach_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--listen", "127.0.0.1:0", "--text-listen", "127.0.0.1:0"];
    let mut serve = Serve::start(&dir.path().join("sb.db"), &args, 2).await;
    let addr = serve.addrs[0].clone();
    let nina = Client::connect(addr.as_str()).await.unwrap();
    nina.hello_with("nina", Some("hunter2-secret"))
        .await
        .unwrap();
    nina.bye().await.unwrap();
    let thief = Client::connect(addr.as_str()).await.unwrap();
    assert!(
        thief
            .hello_with("nina", Some("wrong-secret"))
            .await
            .is_err()
    );
    let text = serve.addrs[1].parse().unwrap();
    let (mut conn, _) = crate::wire::TextConn::connect(text).await;
    assert!(
        conn.call("HELLO nina typed-secret")
            .await
            .0
            .starts_with("-ERR auth_failed")
    );
    drop(conn);
    thief.bye().await.unwrap();
    serve.line_with("reason=bye").await;
    let pid = serve.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    serve.line_with("store closed").await;
    let console = serve.seen.join("\n");
    assert!(console.contains("hello client_id"), "{console}");
    for secret in ["hunter2-secret", "wrong-secret", "typed-secret"] {
        assert!(!console.contains(secret), "{secret} logged:\n{console}");
    }
    assert!(console.contains("auth_failed"), "{console}");
}

/// With the store inline (`serve --threads 1`), registering and checking a password go
/// through the same batches as sends, and hashing still runs off the server's thread.
#[tokio::test]
async fn a_password_protects_a_name_with_the_store_inline() {
    let server = TestServer::start_tweaked(|c| c.inline_store = true).await;
    register(&server, "nina", "correct horse").await;
    let wrong = connect(&server).await;
    let refused = wrong.hello_with("nina", Some("battery staple")).await;
    assert_eq!(client_code(refused), "auth_failed");
    let right = connect(&server).await;
    right
        .hello_with("nina", Some("correct horse"))
        .await
        .unwrap();
    right.bye().await.unwrap();
    server.stop().await;
}
