//! `serve --config FILE`: its keys are the flags, a flag on the command line wins, a
//! mistake in the file stops the start naming the key and the file; `--print-config`,
//! `--version` and `--log-format json`.

use std::path::{Path, PathBuf};

use crate::common::run_switchboard;
use crate::wire::Serve;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let file = dir.join("switchboard.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `serve ARGS`'s exit, and its stdout and stderr.
async fn serve(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let output = run_switchboard(&all, "").await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_files_keys_set_flags_and_a_flag_on_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "listen = \"127.0.0.1:0\"\nhttp-listen = \"off\"\nmax-connections = 500\n\
         queue-depth = 7\nrequire-password = true\nhandshake-timeout = 2.5\n",
    );
    let file = file.to_str().unwrap();
    let args = ["--config", file, "--max-connections", "42"];
    let mut serve = Serve::start(&dir.path().join("sb.db"), &args, 1).await;
    let bounds = serve.logged("clients at once").await;
    assert!(bounds.contains("at most 42 clients"), "{bounds}");
    assert!(bounds.contains("outbound bounds 7 frames"), "{bounds}");
    assert!(bounds.contains("handshake timeout 2.5s"), "{bounds}");
    assert!(
        serve.seen.iter().all(|line| !line.contains("http")),
        "http-listen = \"off\": {:?}",
        serve.seen
    );

    // A password is required: the file's `require-password = true` took.
    let mut raw = crate::common::Raw::connect(serve.addrs[0].parse().unwrap()).await;
    assert_eq!(raw.event().await["event"], "welcome");
    let answer = raw
        .call(serde_json::json!({"op": "hello", "name": "ana"}))
        .await;
    assert_eq!(crate::common::code(&answer), "auth_failed", "{answer}");
}

#[tokio::test]
async fn an_unknown_key_stops_the_start_naming_the_key_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "listen = \"127.0.0.1:0\"\nmax-conections = 5\n");
    let (ok, _, stderr) = serve(&["--config", file.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(stderr.contains("unknown key `max-conections`"), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[tokio::test]
async fn a_bad_value_stops_the_start_naming_the_key_and_file() {
    let cases = [
        (
            "max-connections = -1",
            "max-connections",
            "-1 is not in 1..=1000000",
        ),
        (
            "max-connections = 0",
            "max-connections",
            "0 is not in 1..=1000000",
        ),
        (
            "max-connections = \"500\"",
            "max-connections",
            "expected a number",
        ),
        ("listen = 5", "listen", "expected a string"),
        (
            "listen = \"nowhere at all\"",
            "listen",
            "not an address to listen on",
        ),
        (
            "handshake-timeout = 0.01",
            "handshake-timeout",
            "is not in 0.1..=3600",
        ),
        (
            "require-password = \"yes\"",
            "require-password",
            "expected true or false",
        ),
        (
            "log-format = \"xml\"",
            "log-format",
            "not one of text, json",
        ),
        ("listen = [\"0.0.0.0:12000\"]", "listen", "an array"),
        ("[listen]\nport = 1", "listen", "a table"),
    ];
    for (text, key, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let file = write_config(dir.path(), text);
        let db = dir.path().join("sb.db");
        let (ok, _, stderr) = serve(&[
            "--config",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ])
        .await;
        assert!(!ok, "{text}");
        assert!(
            stderr.contains(&format!("bad value for key `{key}`")),
            "{text}: {stderr}"
        );
        assert!(stderr.contains(why), "{text}: {stderr}");
        assert!(stderr.contains(file.to_str().unwrap()), "{text}: {stderr}");
        assert!(!db.exists(), "{text}: the server started");
    }
}

#[tokio::test]
async fn a_file_that_is_not_toml_or_not_there_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "listen = \"127.0.0.1:0\"\n\nlisten 12000\n");
    let (ok, _, stderr) = serve(&["--config", file.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    let missing = dir.path().join("missing.toml");
    let (ok, _, stderr) = serve(&["--config", missing.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot read the config file"), "{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
}

/// What `--print-config` prints is a file `--config` takes back, and it puts the same
/// configuration in force: file, flags and defaults together.
#[tokio::test]
async fn print_config_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "listen = \"0.0.0.0:12000\"\nmax-connections = 500\nrequire-password = true\n\
         http-listen = \"off\"\nresume-grace = 0.5\ndb = \"/var/lib/sb \\\"x\\\".db\"\n\
         log-level = \"debug\"\n",
    );
    let (ok, first, stderr) = serve(&[
        "--config",
        file.to_str().unwrap(),
        "--queue-depth",
        "9",
        "--print-config",
    ])
    .await;
    assert!(ok, "{stderr}");
    let table: toml::Table = toml::from_str(&first).expect("TOML");
    assert_eq!(table["listen"].as_str(), Some("0.0.0.0:12000"));
    assert_eq!(table["max-connections"].as_integer(), Some(500));
    assert_eq!(table["queue-depth"].as_integer(), Some(9));
    assert_eq!(table["require-password"].as_bool(), Some(true));
    assert_eq!(table["http-listen"].as_str(), Some("off"));
    assert_eq!(table["resume-grace"].as_float(), Some(0.5));
    assert_eq!(table["db"].as_str(), Some("/var/lib/sb \"x\".db"));
    assert_eq!(table["log-level"].as_str(), Some("debug"));
    // Defaults too.
    assert_eq!(table["idle-timeout"].as_integer(), Some(300));
    assert_eq!(table["log-format"].as_str(), Some("text"));
    assert!(first.contains("# threads is not set"), "{first}");

    let again = write_config(dir.path(), &first);
    let (ok, second, stderr) =
        serve(&["--config", again.to_str().unwrap(), "--print-config"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(first, second);
}

#[tokio::test]
async fn version_is_the_packages() {
    let output = run_switchboard(&["--version"], "").await;
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("switchboard {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "off",
        "--log-format",
        "json",
    ];
    let mut serve = Serve::start(&dir.path().join("sb.db"), &args, 1).await;
    serve.logged("clients at once").await;
    let client = switchboard::Client::connect(serve.addrs[0].as_str())
        .await
        .unwrap();
    client.hello("ana").await.unwrap();
    serve.line_with("hello").await;
    assert!(serve.seen.len() >= 3, "{:?}", serve.seen);
    for line in &serve.seen {
        let event: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(event["level"].is_string(), "{line}");
        assert!(event["message"].is_string(), "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
    }
    let hello = serve.seen.last().unwrap();
    let hello: serde_json::Value = serde_json::from_str(hello).unwrap();
    assert_eq!(hello["name"], "ana", "{hello}");
}

/// docs/operations.md lists every key there is, and nothing else.
#[tokio::test]
async fn the_operators_guide_lists_every_key() {
    const OPERATIONS: &str = include_str!("../../docs/operations.md");
    let listed: std::collections::BTreeSet<&str> = OPERATIONS
        .split_once("So the keys are")
        .and_then(|(_, rest)| rest.split_once("The server reads"))
        .expect("the list of keys in \"Configuration file\"")
        .0
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !word.contains(' '))
        .collect();
    let (ok, in_force, stderr) = serve(&["--print-config"]).await;
    assert!(ok, "{stderr}");
    let keys: std::collections::BTreeSet<&str> = in_force
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            let (key, rest) = line.split_once(' ')?;
            (rest.starts_with("= ") || rest.starts_with("is not set")).then_some(key)
        })
        .collect();
    assert_eq!(listed, keys);
}
