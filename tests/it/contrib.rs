//! contrib/: the systemd unit's ExecStart and the Containerfile's ENTRYPOINT, run as
//! they are written with the sample configuration (its store and ports moved to a temp
//! dir and free ports), serve; the sample configuration sets every key there is.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{PATIENCE, Raw, run_switchboard};

const CONFIG_PATH: &str = "/etc/switchboard/switchboard.toml";
const BINARY_PATH: &str = "/usr/local/bin/switchboard";

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(contrib(name)).unwrap()
}

/// The unit's command line, split as systemd splits one without quotes.
fn exec_start() -> Vec<String> {
    let unit = read("switchboard.service");
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    line.split_whitespace().map(str::to_owned).collect()
}

/// The Containerfile's ENTRYPOINT, a JSON array.
fn entrypoint() -> Vec<String> {
    let containerfile = read("Containerfile");
    let line = containerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT line");
    serde_json::from_str(line).expect("ENTRYPOINT in exec form")
}

/// contrib/switchboard.toml with its store in `dir` and its listeners on free ports
/// of loopback.
fn sample_config_in(dir: &Path) -> PathBuf {
    let mut table: toml::Table = toml::from_str(&read("switchboard.toml")).unwrap();
    table.insert("db".into(), dir.join("sb.db").to_str().unwrap().into());
    for key in ["listen", "http-listen"] {
        assert!(table.contains_key(key), "the sample sets {key}");
        table.insert(key.into(), "127.0.0.1:0".into());
    }
    let file = dir.join("switchboard.toml");
    std::fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
    file
}

/// Runs `command` (as the unit or the image would) with the built binary and a
/// loopback copy of the sample configuration; checks that it welcomes a client and
/// stops cleanly on SIGTERM.
async fn serves(command: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let config = sample_config_in(dir.path());
    let args: Vec<&Path> = command[1..]
        .iter()
        .map(|arg| match arg.as_str() {
            CONFIG_PATH => config.as_path(),
            arg => Path::new(arg),
        })
        .collect();
    assert!(
        args.contains(&config.as_path()),
        "{command:?} reads {CONFIG_PATH}"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(&args)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let native = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("(native protocol)") {
                return line;
            }
        }
        panic!("{command:?} exited before listening");
    })
    .await
    .expect("listening in time");
    let addr = native
        .split_whitespace()
        .skip_while(|word| *word != "on")
        .nth(1)
        .expect("an address after 'listening on'");
    let mut raw = Raw::connect(addr.parse().unwrap()).await;
    assert_eq!(raw.event().await["event"], "welcome");
    assert!(dir.path().join("sb.db").exists());

    let pid = child.id().expect("running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(kill.unwrap().success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn the_systemd_units_exec_start_serves() {
    let command = exec_start();
    assert_eq!(command[0], BINARY_PATH);
    serves(&command).await;
}

#[tokio::test]
async fn the_containers_entrypoint_serves() {
    let command = entrypoint();
    assert_eq!(command[0], "switchboard", "on the image's PATH");
    serves(&command).await;
}

/// The unit's state directory and the image's volume are where the sample keeps its
/// store; the image puts the sample and the binary where the entrypoint finds them.
#[test]
fn the_unit_the_image_and_the_sample_agree() {
    let table: toml::Table = toml::from_str(&read("switchboard.toml")).unwrap();
    let db = table["db"].as_str().unwrap();
    assert!(db.starts_with("/var/lib/switchboard/"), "{db}");
    let unit = read("switchboard.service");
    assert!(unit.lines().any(|l| l == "StateDirectory=switchboard"));
    let containerfile = read("Containerfile");
    assert!(containerfile.contains("VOLUME /var/lib/switchboard"));
    assert!(containerfile.contains(&format!("COPY contrib/switchboard.toml {CONFIG_PATH}")));
    assert!(containerfile.contains(&format!(" {BINARY_PATH}\n")));
    assert!(table["listen"].as_str().unwrap().starts_with("0.0.0.0:"));
}

/// The sample loads as it is, and names every key (set, or commented out with its
/// default), so that a key added to `serve` is added to it too.
#[tokio::test]
async fn the_sample_config_loads_and_shows_every_key() {
    let sample = contrib("switchboard.toml");
    let args = [
        "serve",
        "--print-config",
        "--config",
        sample.to_str().unwrap(),
    ];
    let output = run_switchboard(&args, "").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let in_force = String::from_utf8_lossy(&output.stdout);
    assert!(
        in_force.contains("listen = \"0.0.0.0:12000\""),
        "{in_force}"
    );
    let text = read("switchboard.toml");
    let keys = in_force.lines().filter_map(|line| {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let key = line.split([' ', '=']).next()?;
        let is_key = line[key.len()..].starts_with(" = ")
            || line.ends_with(" is not set (see `switchboard serve --help`)");
        is_key.then_some(key)
    });
    let mut seen = 0;
    for key in keys {
        seen += 1;
        let set = format!("\n{key} = ");
        let shown = format!("\n# {key} = ");
        assert!(
            text.contains(&set) || text.contains(&shown),
            "contrib/switchboard.toml does not show `{key}`"
        );
    }
    assert!(seen > 20, "{in_force}");
}
