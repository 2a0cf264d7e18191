//! README's Python example, run for real: a student's standard-library client works.

use crate::common::TestServer;

#[tokio::test]
async fn the_readme_python_client_talks_to_the_server() {
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/client.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(server.addr.port().to_string())
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].contains("'event': 'welcome'"));
    assert!(lines[1].contains("'ok': True") && lines[1].contains("'name': 'nina'"));
    assert!(lines[2].contains("'users': [{'client_id': 1, 'name': 'nina'}]"));
    assert_eq!(lines[3], "{'id': 3, 'ok': True}");
    server.stop().await;
}
