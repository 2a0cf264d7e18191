//! TLS: the native protocol on `--tls-listen`, HTTPS and wss:// on the HTTP listener, a
//! self-signed certificate kept beside the database, clients that trust a CA file or
//! pin a fingerprint; and bad TLS input (garbage, a stalled handshake) on every TLS
//! port, which costs only that connection while everyone else is served.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::Client;
use switchboard::client::ClientOptions;
use switchboard::client::{ClientError, ClientTls};
use switchboard::protocol::Event;
use switchboard::server::tls::{fingerprint, self_signed_paths};
use switchboard::server::{Config, HttpListen, Server, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{PATIENCE, next_event, run_switchboard};

/// Short, so that the stalled handshakes end quickly.
const HANDSHAKE: Duration = Duration::from_millis(400);

/// A server with a self-signed certificate: plain native, native over TLS, HTTPS.
struct TlsServer {
    plain: SocketAddr,
    tls: SocketAddr,
    https: SocketAddr,
    fingerprint: String,
    cert: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl TlsServer {
    async fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = TlsServer::start_on(&dir.path().join("switchboard.db")).await;
        server._dir = Some(dir);
        server
    }

    async fn start_on(db: &Path) -> TlsServer {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(Config {
            listen: any,
            tls_listen: Some(any),
            http_listen: HttpListen::Given(any),
            tls: Some(TlsSource::SelfSigned),
            db: db.to_path_buf(),
            handshake_timeout: HANDSHAKE,
            ..Config::default()
        })
        .await
        .expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        TlsServer {
            plain: server.local_addr().unwrap(),
            tls: server.tls_addr().expect("tls listens"),
            https: server.http_addr().expect("https listens"),
            fingerprint: server.tls_fingerprint().expect("a certificate").to_owned(),
            cert: self_signed_paths(db).0,
            stop: Some(stop),
            task: tokio::spawn(async move {
                let _ = server.run(async { drop(stopped.await) }).await;
            }),
            _dir: None,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("stops in time")
            .unwrap();
    }

    /// A library client over TLS trusting the certificate file, said hello as `name`.
    async fn tls_client(&self, name: &str) -> Client {
        let tls = ClientTls::with_ca_file(&self.cert).unwrap();
        let options = ClientOptions::default().tls(tls);
        let client = Client::connect_with(format!("localhost:{}", self.tls.port()), &options)
            .await
            .expect("connect over tls");
        client.hello(name).await.expect("hello");
        client
    }

    /// The JSON body of `GET path` on the HTTPS listener.
    async fn https_get(&self, path: &str) -> Value {
        let mut stream = self.raw_tls(self.https).await;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).unwrap()
    }

    /// A raw TLS stream to `addr`, trusting the certificate file.
    async fn raw_tls(&self, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.cert).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = ClientConfig::builder_with_provider(switchboard::server::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let stream = TcpStream::connect(addr).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), stream)
            .await
            .expect("tls handshake")
    }
}

/// What the fingerprint of the certificate in `path` is.
fn file_fingerprint(path: &Path) -> String {
    let cert = CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    fingerprint(&cert)
}

#[tokio::test]
async fn a_self_signed_certificate_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchboard.db");
    let first = TlsServer::start_on(&db).await;
    let fingerprint = first.fingerprint.clone();
    assert_eq!(fingerprint, file_fingerprint(&first.cert));
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = self_signed_paths(&db).1;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
    }
    first.stop().await;
    let again = TlsServer::start_on(&db).await;
    assert_eq!(
        again.fingerprint, fingerprint,
        "pinned fingerprints stay valid"
    );
    again.stop().await;
}

#[tokio::test]
async fn the_server_prints_its_fingerprint_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("switchboard.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "off"])
        .args(["--tls-listen", "127.0.0.1:0", "--tls-self-signed", "--db"])
        .arg(&db)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("fingerprint"))
    });
    let line = tokio::time::timeout(PATIENCE, line).await;
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("in time").unwrap().expect("a fingerprint line");
    let expected = file_fingerprint(&self_signed_paths(&db).0);
    assert!(
        line.contains(&format!("--fingerprint {expected}")),
        "{line}"
    );
}

#[tokio::test]
async fn tls_and_plain_clients_talk_to_each_other() {
    let server = TlsServer::start().await;
    let mut plain = Client::connect(server.plain).await.unwrap();
    let mut plain_events = plain.take_events().unwrap();
    plain.hello("plain").await.unwrap();
    let mut tls = server.tls_client("secure").await;
    let mut tls_events = tls.take_events().unwrap();
    let mut names: Vec<_> = tls
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    names.sort();
    assert_eq!(names, ["plain", "secure"]);

    tls.send("plain", "over tls").await.unwrap();
    assert!(
        matches!(next_event(&mut plain_events).await, Event::Message { from, .. } if from == "secure")
    );
    let mail = plain.inbox(None).await.unwrap();
    assert_eq!(mail.messages[0].text, "over tls");

    tls.create_room("r").await.unwrap();
    plain.join_room("r").await.unwrap();
    assert!(
        matches!(next_event(&mut tls_events).await, Event::Joined { name, .. } if name == "plain")
    );
    plain.say("r", "back in clear").await.unwrap();
    loop {
        if let Event::RoomMessage { text, .. } = next_event(&mut tls_events).await {
            assert_eq!(text, "back in clear");
            break;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_pinned_fingerprint_is_trusted_and_a_wrong_one_refused() {
    let server = TlsServer::start().await;
    let pinned = ClientTls::with_fingerprint(&server.fingerprint).unwrap();
    // Pinned, the certificate's names do not matter: an IP address will do.
    let client = Client::connect_with(server.tls, &ClientOptions::default().tls(pinned))
        .await
        .expect("connect with the pinned fingerprint");
    client.hello("pinned").await.unwrap();
    client.ping().await.unwrap();

    let mut wrong = server.fingerprint.replace(':', "").into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = ClientTls::with_fingerprint(std::str::from_utf8(&wrong).unwrap()).unwrap();
    match Client::connect_with(server.tls, &ClientOptions::default().tls(wrong)).await {
        Err(e @ ClientError::Tls { .. }) => {
            let said = e.to_string();
            assert!(said.contains(&server.fingerprint), "{said}");
            assert!(said.contains("not the one given"), "{said}");
        }
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("a wrong fingerprint was accepted"),
    }
    assert!(ClientTls::with_fingerprint("AB:CD").is_err());
    server.stop().await;
}

#[tokio::test]
async fn the_cli_clients_speak_tls() {
    let server = TlsServer::start().await;
    let addr = server.tls.to_string();
    let localhost = format!("localhost:{}", server.tls.port());
    let cert = server.cert.to_str().unwrap().to_owned();
    let _listener = server.tls_client("listener").await;
    let pinned = run_switchboard(
        &[
            "users",
            "--addr",
            &addr,
            "--tls",
            "--fingerprint",
            &server.fingerprint,
        ],
        "",
    )
    .await;
    assert!(pinned.status.success(), "{pinned:?}");
    assert!(String::from_utf8_lossy(&pinned.stdout).contains("listener"));
    let with_ca = run_switchboard(
        &[
            "send", "--addr", &localhost, "--tls", "--ca", &cert, "--name", "cli", "--to",
            "listener", "hi",
        ],
        "",
    )
    .await;
    assert!(with_ca.status.success(), "{with_ca:?}");
    let no_trust = run_switchboard(&["users", "--addr", &addr, "--tls"], "").await;
    assert!(!no_trust.status.success());
    assert!(String::from_utf8_lossy(&no_trust.stderr).contains("--fingerprint"));
    let plain_port = run_switchboard(
        &[
            "users",
            "--addr",
            &server.plain.to_string(),
            "--tls",
            "--ca",
            &cert,
        ],
        "",
    )
    .await;
    assert!(!plain_port.status.success());
    assert!(String::from_utf8_lossy(&plain_port.stderr).contains("--tls-listen"));
    server.stop().await;
}

/// An HTTP/1.1 GET over `stream`; the whole answer.
async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_http_listener_serves_https_and_wss() {
    let server = TlsServer::start().await;
    let answer = get(server.raw_tls(server.https).await, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let stream = server.raw_tls(server.https).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", stream)
        .await
        .expect("websocket over tls");
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"));
    let hello = json!({"op": "hello", "id": 1, "name": "web"}).to_string();
    ws.send(Message::text(hello)).await.unwrap();
    let answer: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(answer["name"], "web", "{answer}");

    // Plain HTTP on the HTTPS port gets nothing but a closed connection.
    let plain = TcpStream::connect(server.https).await.unwrap();
    let answer = get(plain, "/healthz").await;
    assert!(!answer.contains("200"), "{answer}");
    server.stop().await;
}

/// Both kinds of client are served: a ping round trip on each.
async fn others_are_served(plain: &Client, tls: &Client) {
    tokio::time::timeout(PATIENCE, async {
        plain.ping().await.unwrap();
        tls.ping().await.unwrap();
    })
    .await
    .expect("served meanwhile");
}

/// Reads from `stream` until it ends; how long that took.
async fn until_closed(mut stream: TcpStream) -> Duration {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
    .expect("the bad connection is closed");
    start.elapsed()
}

/// The first 60 bytes of a real ClientHello, then silence.
async fn half_a_client_hello(server: &TlsServer, addr: SocketAddr) -> TcpStream {
    // A client hello is what a connector writes first: capture it from a loopback pair.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let tls = ClientTls::with_fingerprint(&server.fingerprint).unwrap();
    let connecting = tokio::spawn(async move {
        let _ = Client::connect_with(
            local,
            &ClientOptions::default()
                .tls(tls)
                .connect_timeout(Duration::from_millis(500)),
        )
        .await;
    });
    let (mut capture, _) = listener.accept().await.unwrap();
    let mut hello = vec![0u8; 60];
    capture.read_exact(&mut hello).await.unwrap();
    connecting.abort();
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&hello).await.unwrap();
    stream
}

#[tokio::test]
async fn bad_tls_input_costs_only_its_connection() {
    let server = TlsServer::start().await;
    let plain = Client::connect(server.plain).await.unwrap();
    plain.hello("plain").await.unwrap();
    let tls = server.tls_client("secure").await;
    for port in [server.tls, server.https] {
        // Garbage: refused at once.
        let mut garbage = TcpStream::connect(port).await.unwrap();
        garbage
            .write_all(&crate::common::noise(7, 300))
            .await
            .unwrap();
        others_are_served(&plain, &tls).await;
        let took = until_closed(garbage).await;
        assert!(took < PATIENCE, "{took:?}");

        // Silence, and half a client hello: cut at the handshake timeout, while the
        // others are served meanwhile.
        let silent = TcpStream::connect(port).await.unwrap();
        let half = half_a_client_hello(&server, port).await;
        others_are_served(&plain, &tls).await;
        let (silent, half) = tokio::join!(until_closed(silent), until_closed(half));
        for took in [silent, half] {
            assert!(took < HANDSHAKE * 4, "{port}: cut after {took:?}");
        }
        others_are_served(&plain, &tls).await;
    }
    // A new TLS client after all that is served too.
    let late = server.tls_client("late").await;
    late.ping().await.unwrap();

    // The native TLS port's would-be clients are listed among the closed connections,
    // with how their handshake ended.
    let connz = server.https_get("/api/connz?state=closed").await;
    let mut reasons: Vec<&str> = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["dialect"] == "native/tls")
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["bad_frame", "handshake_timeout", "handshake_timeout"],
        "{connz}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_measures_over_tls_and_wss() {
    let server = TlsServer::start().await;
    let native = server.tls.to_string();
    let https = server.https.to_string();
    let fp = server.fingerprint.clone();
    let runs = ["rr", "fanout", "conns"]
        .into_iter()
        .flat_map(|scenario| [(scenario, &native, None), (scenario, &https, Some("--ws"))]);
    for (scenario, addr, ws) in runs {
        let mut args = vec![
            "bench",
            scenario,
            "--addr",
            addr,
            "-n",
            "2",
            "--duration",
            "0.2",
            "--json",
            "--tls",
            "--fingerprint",
            &fp,
        ];
        args.extend(ws);
        let output = run_switchboard(&args, "").await;
        assert!(output.status.success(), "{scenario}: {output:?}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(report["ops"].as_u64().unwrap() > 0, "{scenario}: {report}");
        if scenario == "fanout" {
            assert_eq!(report["lost"], 0, "{report}");
        }
    }
    let other = run_switchboard(
        &[
            "bench",
            "rr",
            "--target",
            "redis",
            "--tls",
            "--fingerprint",
            &fp,
        ],
        "",
    )
    .await;
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("switchboard target"));
    server.stop().await;
}

/// Why a server with `source` does not start.
async fn refused(source: TlsSource, db: &Path) -> String {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = Config {
        listen: any,
        tls_listen: Some(any),
        tls: Some(source),
        db: db.to_path_buf(),
        ..Config::default()
    };
    match Server::bind(config).await {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_bad_certificate_or_key_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.db"), dir.path().join("two.db"));
    TlsServer::start_on(&one).await.stop().await;
    TlsServer::start_on(&two).await.stop().await;
    let ((cert, key), (_, other_key)) = (self_signed_paths(&one), self_signed_paths(&two));
    let files = |cert: &Path, key: &Path| TlsSource::Files {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let db = dir.path().join("three.db");
    let missing = dir.path().join("missing.pem");
    let said = refused(files(&missing, &key), &db).await;
    assert!(
        said.starts_with("cannot read") && said.contains("missing.pem"),
        "{said}"
    );
    let said = refused(files(&key, &key), &db).await;
    assert!(said.contains("no PEM certificate"), "{said}");
    let said = refused(files(&cert, &cert), &db).await;
    assert!(said.contains("no PEM private key"), "{said}");
    let said = refused(files(&cert, &other_key), &db).await;
    assert!(said.contains("does not fit the certificate"), "{said}");

    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let no_cert = Config {
        listen: any,
        tls_listen: Some(any),
        db,
        ..Config::default()
    };
    let said = Server::bind(no_cert).await.err().unwrap().to_string();
    assert!(said.contains("--tls-self-signed"), "{said}");

    let flags = run_switchboard(&["serve", "--tls-listen", "127.0.0.1:0"], "").await;
    assert!(!flags.status.success());
    let flags = run_switchboard(
        &[
            "serve",
            "--tls-self-signed",
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "b.pem",
        ],
        "",
    )
    .await;
    assert!(!flags.status.success());
    assert!(String::from_utf8_lossy(&flags.stderr).contains("cannot be used with"));
}

/// Relays connections to `target`; aborting the tasks it keeps cuts them.
async fn cuttable_relay(
    target: SocketAddr,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let relays = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&relays);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let relay = tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            kept.lock().unwrap().push(relay);
        }
    });
    (addr, relays)
}

#[tokio::test]
async fn a_tls_client_reconnects_over_tls_and_resumes() {
    let server = TlsServer::start().await;
    let (relay, relays) = cuttable_relay(server.tls).await;
    let tls = ClientTls::with_ca_file(&server.cert).unwrap();
    let options = ClientOptions::default()
        .reconnect_backoff(
            Duration::from_millis(20),
            Duration::from_millis(100),
            PATIENCE,
        )
        .tls(tls);
    let mut client = Client::connect_with(format!("localhost:{}", relay.port()), &options)
        .await
        .unwrap();
    let mut updates = client.take_updates().unwrap();
    let id = client.hello("roamer").await.unwrap();
    for relay in relays.lock().unwrap().drain(..) {
        relay.abort();
    }
    let back = loop {
        let update = tokio::time::timeout(PATIENCE, updates.recv())
            .await
            .unwrap()
            .unwrap();
        match update {
            switchboard::client::Update::Reconnected(back) => break back,
            switchboard::client::Update::GaveUp(why) => panic!("gave up: {why}"),
            _ => {}
        }
    };
    assert!(back.resumed, "{back:?}");
    assert_eq!(client.client_id(), id);
    client.ping().await.unwrap();
    server.stop().await;
}

/// `switchboard stats` reads /api/varz from an HTTP listener that serves HTTPS,
/// trusting the pinned fingerprint; without --tls it says it cannot get an answer.
#[tokio::test(flavor = "multi_thread")]
async fn stats_reads_an_https_listener() {
    let server = TlsServer::start().await;
    let addr = format!("localhost:{}", server.https.port());
    let args = [
        "stats",
        "--addr",
        &addr,
        "--count",
        "1",
        "--interval",
        "0.1",
        "--tls",
        "--fingerprint",
        &server.fingerprint,
    ];
    let output = crate::common::run_switchboard(&args, "").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{output:?}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    let plain = crate::common::run_switchboard(&args[..7], "").await;
    assert!(!plain.status.success(), "{plain:?}");
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    server.stop().await;
}

/// The interactive menu client over TLS, pinning the fingerprint: connects, lists the
/// users (a plain TCP client among them), and leaves with option 6.
#[tokio::test(flavor = "multi_thread")]
async fn the_menu_client_works_over_tls() {
    use crate::menu_client::{expect, spawn_giving_up_after};
    use expectrl::Expect;
    let server = TlsServer::start().await;
    let plain = Client::connect(server.plain).await.unwrap();
    plain.hello("plainly").await.unwrap();
    let addr = format!("localhost:{}", server.tls.port());
    let fingerprint = server.fingerprint.clone();
    tokio::task::spawn_blocking(move || {
        let args = [
            "--addr",
            &addr,
            "--name",
            "tina",
            "--tls",
            "--fingerprint",
            &fingerprint,
        ];
        let mut tina = spawn_giving_up_after(&args, "1");
        expect(&mut tina, "Client Name: tina");
        expect(&mut tina, "Your option <enter a number>:");
        tina.send_line("1").unwrap();
        expect(&mut tina, "Users in server: ");
        expect(&mut tina, "plainly:");
        expect(&mut tina, "Your option <enter a number>:");
        tina.send_line("6").unwrap();
        tina.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();
    server.stop().await;
}
