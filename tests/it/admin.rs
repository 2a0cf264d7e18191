//! `switchboard backup` and `switchboard admin`, against a running server (through its
//! admin socket) and against the file of a stopped one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use switchboard::Client;

use crate::common::{client_code, run_switchboard};
use crate::wire::Serve;

/// Runs `switchboard ARGS` with `stdin`; its success, stdout and stderr.
pub async fn run(args: &[&str], stdin: &str) -> (bool, String, String) {
    // Quiet: only what the command prints, and warnings.
    let all: Vec<&str> = std::iter::once("-q").chain(args.iter().copied()).collect();
    let output = run_switchboard(&all, stdin).await;
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

pub async fn admin(db: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let db = db.to_str().unwrap();
    let all: Vec<&str> = ["admin", "--db", db].iter().chain(args).copied().collect();
    run(&all, stdin).await
}

async fn start(db: &Path) -> (Serve, String) {
    let serve = Serve::start(db, &["--listen", "127.0.0.1:0"], 1).await;
    let addr = serve.addrs[0].clone();
    (serve, addr)
}

async fn hello(addr: &str, name: &str, password: Option<&str>) -> Client {
    let client = Client::connect(addr).await.unwrap();
    client.hello_with(name, password).await.unwrap();
    client
}

fn with_suffix(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(suffix);
    path.into()
}

/// The procedure the docs give: back up the running server, stop it, copy the backup
/// over the database, remove the -wal and -shm files, start. Every send acknowledged
/// before the backup is there, though most of it sat in the WAL.
#[tokio::test]
async fn a_backup_of_a_running_server_restores_every_acknowledged_send() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let (mut serve, addr) = start(&db).await;
    let socket = with_suffix(&db, ".sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    hello(&addr, "ann", None).await.bye().await.unwrap();
    let bob = hello(&addr, "bob", None).await;
    for i in 0..50 {
        bob.send("ann", &format!("m{i}")).await.unwrap();
    }
    let backup = dir.path().join("backup.db");
    let (ok, out, err) = run(
        &[
            "backup",
            backup.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("backed up"), "{out}");
    // Sent after the backup: not in it.
    bob.send("ann", "late").await.unwrap();
    drop(bob);
    serve.child.kill().await.unwrap();

    std::fs::copy(&backup, &db).unwrap();
    for suffix in ["-wal", "-shm", ".sock"] {
        let _ = std::fs::remove_file(with_suffix(&db, suffix));
    }
    let (_serve, addr) = start(&db).await;
    let ann = hello(&addr, "ann", None).await;
    let page = ann.inbox(None).await.unwrap();
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<_> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
}

#[tokio::test]
async fn admin_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (mut serve, addr) = start(&db).await;
    hello(&addr, "nina", Some("old secret"))
        .await
        .bye()
        .await
        .unwrap();
    let bob = hello(&addr, "bob", None).await;
    bob.send("nina", "one").await.unwrap();
    bob.send("nina", "two").await.unwrap();

    let (ok, out, err) = admin(&db, &["users"], "").await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "name  password  unread\nbob   no        0\nnina  yes       2\n"
    );

    let (ok, _, err) = admin(&db, &["reset-password", "NINA"], "new\nnew\n").await;
    assert!(ok, "{err}");
    let old = Client::connect(addr.as_str()).await.unwrap();
    assert_eq!(
        client_code(old.hello_with("nina", Some("old secret")).await),
        "auth_failed"
    );
    hello(&addr, "nina", Some("new")).await.bye().await.unwrap();
    let (ok, _, err) = admin(&db, &["reset-password", "nina"], "a\nb\n").await;
    assert!(!ok);
    assert_eq!(
        err,
        "switchboard: the two passwords differ; nothing changed\n"
    );

    let (ok, _, err) = admin(&db, &["remove-password", "nina"], "").await;
    assert!(ok, "{err}");
    let nina = hello(&addr, "nina", None).await;

    let (ok, _, err) = admin(&db, &["forget", "nina"], "").await;
    assert!(!ok);
    assert_eq!(
        err,
        "switchboard: nina is online now; forget it once it has left\n"
    );
    nina.bye().await.unwrap();
    let (ok, out, err) = admin(&db, &["forget", "nina"], "").await;
    assert!(ok, "{err}");
    assert_eq!(out, "nina: forgotten\n");
    assert_eq!(client_code(bob.send("nina", "three").await), "no_such_user");
    let (_, out, _) = admin(&db, &["users"], "").await;
    assert_eq!(out, "name  password  unread\nbob   no        0\n");
    let (ok, _, err) = admin(&db, &["forget", "nobody"], "").await;
    assert!(!ok);
    assert_eq!(err, "switchboard: no user nobody has ever been seen\n");
    serve.logged("admin: forget nina").await;
}

/// With the server stopped, admin and backup open the file itself; with a server that
/// holds the file but has no socket, they say so.
#[tokio::test]
async fn admin_on_the_file_of_a_stopped_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let (mut serve, addr) = start(&db).await;
    hello(&addr, "nina", Some("secret"))
        .await
        .bye()
        .await
        .unwrap();
    hello(&addr, "bob", None)
        .await
        .send("nina", "hi")
        .await
        .unwrap();

    std::fs::remove_file(with_suffix(&db, ".sock")).unwrap();
    let (ok, _, err) = admin(&db, &["users"], "").await;
    assert!(!ok);
    assert!(
        err.contains("in use by a server without an admin socket"),
        "{err}"
    );

    let pid = serve.child.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    serve.line_with("store closed").await;
    let _ = serve.child.wait().await;

    let (ok, out, err) = admin(&db, &["remove-password", "nina"], "").await;
    assert!(ok, "{err}");
    assert!(out.starts_with("nina: password removed"), "{out}");
    let (_, out, _) = admin(&db, &["users"], "").await;
    assert_eq!(
        out,
        "name  password  unread\nbob   no        0\nnina  no        1\n"
    );
    let backup = dir.path().join("copy.db");
    let (ok, _, err) = run(
        &[
            "backup",
            backup.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let (_, out, _) = admin(&backup, &["users"], "").await;
    assert!(out.contains("nina  no        1"), "{out}");

    let missing = dir.path().join("nothing.db");
    let (ok, _, err) = admin(&missing, &["users"], "").await;
    assert!(!ok);
    assert!(err.contains("there is no store at"), "{err}");
    assert!(!missing.exists());
}
