//! Our own clients come back after a cut: the library, `listen` and the menu client
//! reconnect through a proxy the test cuts, resume their session, and hand over what
//! was said meanwhile once and in order; a restarted server's lost rooms are told.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use expectrl::session::OsSession;
use expectrl::{Eof, Expect};
use switchboard::Client;
use switchboard::client::{ClientError, ClientOptions, Reconnected, Update};
use switchboard::protocol::Event;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::common::{PATIENCE, TestServer, unused_addr};
use crate::menu_client::expect;

/// A TCP proxy between clients and a server, which the test can cut.
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    target: SocketAddr,
    /// While false, each new connection is closed at once (the server is "down").
    open: bool,
    links: Vec<(JoinHandle<()>, watch::Sender<bool>)>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            target,
            open: true,
            links: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                if !state.open {
                    continue;
                }
                let target = state.target;
                let (freeze, frozen) = watch::channel(false);
                let link = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        let (from_client, to_client) = client.into_split();
                        let (from_server, to_server) = server.into_split();
                        tokio::select! {
                            () = pump(from_client, to_server, frozen.clone()) => {}
                            () = pump(from_server, to_client, frozen) => {}
                        }
                    }
                });
                state.links.push((link, freeze));
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Cuts every connection through the proxy; with `down`, new ones are closed at
    /// once until [`Proxy::up`].
    fn cut(&self, down: bool) {
        let mut state = self.state.lock().unwrap();
        state.open = !down;
        for (link, _) in state.links.drain(..) {
            link.abort();
        }
    }

    /// Stops forwarding on the connections open now, without closing them: a peer
    /// that has gone silent. New connections flow.
    fn freeze(&self) {
        for (_, freeze) in &self.state.lock().unwrap().links {
            freeze.send_replace(true);
        }
    }

    fn up(&self) {
        self.state.lock().unwrap().open = true;
    }

    /// Sends new connections to `target` (a restarted server's new port).
    fn retarget(&self, target: SocketAddr) {
        self.state.lock().unwrap().target = target;
    }
}

/// Forwards `from` to `to` until either ends; holds what it read while `frozen`.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let thawed = frozen.wait_for(|frozen| !frozen).await.is_ok();
        if !thawed || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(true);
    }
}

/// A reconnecting library client through `proxy`, said hello as `name`.
async fn reconnecting(proxy: &Proxy, name: &str) -> (Client, mpsc::Receiver<Update>) {
    let options = ClientOptions::default().reconnect();
    let mut client = Client::connect_with(proxy.addr, &options).await.unwrap();
    let updates = client.take_updates().unwrap();
    client.hello(name).await.unwrap();
    (client, updates)
}

async fn next_update(updates: &mut mpsc::Receiver<Update>) -> Update {
    tokio::time::timeout(PATIENCE, updates.recv())
        .await
        .expect("an update in time")
        .expect("the update stream is open")
}

/// Skips updates until the client is back.
async fn reconnected(updates: &mut mpsc::Receiver<Update>) -> Reconnected {
    let mut lost = false;
    loop {
        match next_update(updates).await {
            Update::Lost(_) => lost = true,
            Update::Reconnected(back) => {
                assert!(lost, "a loss is told before the return");
                return back;
            }
            Update::GaveUp(why) => panic!("gave up: {why}"),
            Update::Event(_) => {}
        }
    }
}

fn text_of(event: &Event) -> (&str, u64, bool) {
    match event {
        Event::RoomMessage {
            text, seq, replay, ..
        } => (text.as_str(), *seq, *replay),
        other => panic!("expected a room message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cut_client_comes_back_with_what_it_missed_once_and_in_order() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (nina, mut updates) = reconnecting(&proxy, "nina").await;
    let jose = server.client("jose").await;
    nina.create_room("lobby").await.unwrap();
    jose.join_room("lobby").await.unwrap();
    jose.say("lobby", "before").await.unwrap();
    loop {
        if let Update::Event(event @ Event::RoomMessage { .. }) = next_update(&mut updates).await {
            assert_eq!(text_of(&event).0, "before");
            break;
        }
    }

    proxy.cut(true);
    for text in ["one", "two", "three"] {
        jose.say("lobby", text).await.unwrap();
    }
    proxy.up();
    let back = reconnected(&mut updates).await;
    assert!(back.resumed, "{back:?}");
    assert!(back.gone.is_empty() && back.gaps.is_empty(), "{back:?}");
    let missed: Vec<_> = back.missed.iter().map(text_of).collect();
    assert_eq!(
        missed,
        [("one", 2, true), ("two", 3, true), ("three", 4, true)]
    );

    // Live again, on the same session and room, with nothing told twice.
    jose.say("lobby", "after").await.unwrap();
    loop {
        match next_update(&mut updates).await {
            Update::Event(event @ Event::RoomMessage { .. }) => {
                assert_eq!(text_of(&event), ("after", 5, false));
                break;
            }
            Update::Event(Event::Joined { .. } | Event::Left { .. }) => {}
            other => panic!("expected the live message, got {other:?}"),
        }
    }
    nina.say("lobby", "still here").await.unwrap();
    nina.bye().await.unwrap();
    assert!(
        tokio::time::timeout(PATIENCE, updates.recv())
            .await
            .unwrap()
            .is_none(),
        "after bye, no reconnection: the stream ends"
    );
}

#[tokio::test]
async fn a_restarted_server_is_reported_with_the_rooms_gone() {
    let mut server = TestServer::start().await;
    let _dir = server.keep_dir();
    let db = server.db.clone();
    let proxy = Proxy::start(server.addr).await;
    let (nina, mut updates) = reconnecting(&proxy, "nina").await;
    nina.create_room("lobby").await.unwrap();
    server.stop().await;
    let server = TestServer::start_on(&db).await;
    proxy.retarget(server.addr);

    let back = reconnected(&mut updates).await;
    assert!(!back.resumed);
    assert_eq!(back.gone, ["lobby"]);
    assert!(back.missed.is_empty());
    // A new session under the same name, usable at once.
    assert_eq!(nina.client_id(), back.client_id);
    let users = nina.users().await.unwrap();
    assert!(users.iter().any(|u| u.name == "nina"), "{users:?}");
    nina.create_room("lobby").await.unwrap();
}

#[tokio::test]
async fn a_first_connection_that_fails_is_an_error_at_once() {
    let options = ClientOptions::default().reconnect();
    let started = std::time::Instant::now();
    let e = Client::connect_with(unused_addr(), &options)
        .await
        .err()
        .expect("nothing listens there");
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(400), "no retry");
}

#[tokio::test]
async fn after_the_time_allowed_the_client_gives_up_and_says_so() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let options = ClientOptions::default().reconnect_backoff(
        Duration::from_millis(20),
        Duration::from_millis(50),
        Duration::from_millis(300),
    );
    let mut nina = Client::connect_with(proxy.addr, &options).await.unwrap();
    let mut updates = nina.take_updates().unwrap();
    nina.hello("nina").await.unwrap();
    proxy.cut(true);
    assert!(matches!(next_update(&mut updates).await, Update::Lost(_)));
    match next_update(&mut updates).await {
        Update::GaveUp(why) => {
            let why = why.to_string();
            assert!(why.contains("could not be made again"), "{why}");
            assert!(why.contains("not back within 0.3 s"), "{why}");
        }
        other => panic!("expected to give up, got {other:?}"),
    }
    assert!(
        updates.recv().await.is_none(),
        "giving up is the last update"
    );
    let e = nina.users().await.unwrap_err();
    assert!(matches!(e, ClientError::GaveUp(_)), "{e:?}");
    assert!(matches!(nina.ended(), Some(ClientError::GaveUp(_))));
}

#[tokio::test]
async fn a_request_made_while_reconnecting_waits_for_the_connection() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (nina, mut updates) = reconnecting(&proxy, "nina").await;
    proxy.cut(true);
    assert!(matches!(next_update(&mut updates).await, Update::Lost(_)));
    let up = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.up();
    };
    let (users, ()) = tokio::join!(nina.users(), up);
    let users = users.expect("sent once the client is back");
    assert!(users.iter().any(|u| u.name == "nina"), "{users:?}");
}

#[tokio::test]
async fn a_request_cut_off_by_a_silent_server_fails_clearly_and_the_session_comes_back() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let options = ClientOptions::default()
        .reconnect()
        .keepalive(Duration::from_secs(30), Duration::from_millis(300));
    let mut nina = Client::connect_with(proxy.addr, &options).await.unwrap();
    let mut updates = nina.take_updates().unwrap();
    nina.hello("nina").await.unwrap();
    nina.create_room("lobby").await.unwrap();
    let id = nina.client_id();
    let jose = server.client("jose").await;
    jose.join_room("lobby").await.unwrap();
    // Anything that arrives counts as an answer: the join's notice must be in first.
    assert!(matches!(
        next_update(&mut updates).await,
        Update::Event(Event::Joined { .. })
    ));

    // The server goes silent: the request is sent and never answered.
    proxy.freeze();
    let e = nina.users().await.unwrap_err();
    assert!(matches!(e, ClientError::Interrupted), "{e:?}");
    assert!(
        e.to_string()
            .contains("may or may not have been carried out")
    );
    match next_update(&mut updates).await {
        Update::Lost(why) => assert!(matches!(*why, ClientError::Unresponsive(_)), "{why:?}"),
        other => panic!("expected the loss, got {other:?}"),
    }
    jose.say("lobby", "while silent").await.unwrap();
    // The server has not seen the old connection end: the resume takes it over.
    let back = match next_update(&mut updates).await {
        Update::Reconnected(back) => back,
        other => panic!("expected the return, got {other:?}"),
    };
    assert!(back.resumed, "{back:?}");
    assert_eq!(back.client_id, id);
    let missed: Vec<_> = back.missed.iter().map(text_of).collect();
    assert_eq!(missed, [("while silent", 1, true)]);
    nina.say("lobby", "back").await.unwrap();
}

/// `switchboard listen` through the proxy, its stdout and stderr read line by line.
struct Listener {
    /// Killed when the listener is dropped.
    _child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Listener {
    fn start(addr: SocketAddr, room: &str) -> Listener {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["listen", "--addr", &addr.to_string(), "--name", "lis"])
            .args(["--room", room])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        let err = BufReader::new(child.stderr.take().unwrap());
        for (reader, tag) in [
            (
                Box::new(out) as Box<dyn tokio::io::AsyncBufRead + Unpin + Send>,
                "out",
            ),
            (Box::new(err), "err"),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = reader.lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let _ = tx.send(format!("{tag}: {line}"));
                }
            });
        }
        Listener {
            _child: child,
            lines,
        }
    }

    /// Reads lines until one contains `text`; returns those read, it included.
    async fn until(&mut self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(PATIENCE, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("waiting for {text:?}; read {seen:#?}"))
                .unwrap_or_else(|| panic!("listen ended while waiting for {text:?}: {seen:#?}"));
            let done = line.contains(text);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_prints_what_was_said_during_a_cut_once() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let nina = server.client("nina").await;
    nina.create_room("lobby").await.unwrap();
    let mut listener = Listener::start(proxy.addr, "lobby");
    listener.until("Listening to chat room lobby").await;
    nina.say("lobby", "first").await.unwrap();
    listener.until("out: nina> first").await;

    proxy.cut(true);
    listener.until("err: Connection lost").await;
    nina.say("lobby", "while away 1").await.unwrap();
    nina.say("lobby", "while away 2").await.unwrap();
    proxy.up();
    let mut lines = listener.until("out: nina> while away 2").await;
    // stderr and stdout are two pipes: the heading may be read after the lines.
    let heading = "err: Reconnected; 2 messages you missed:";
    if !lines.iter().any(|l| l == heading) {
        lines.extend(listener.until(heading).await);
    }
    let said: Vec<&String> = lines.iter().filter(|l| l.starts_with("out:")).collect();
    assert_eq!(said, ["out: nina> while away 1", "out: nina> while away 2"]);
    nina.say("lobby", "live").await.unwrap();
    let lines = listener.until("out: nina> live").await;
    let said: Vec<&String> = lines.iter().filter(|l| l.starts_with("out:")).collect();
    assert_eq!(said, ["out: nina> live"], "nothing twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_waits_for_its_room_after_a_restart_and_rejoins_it() {
    let mut server = TestServer::start().await;
    let _dir = server.keep_dir();
    let db = server.db.clone();
    let proxy = Proxy::start(server.addr).await;
    // The room's owner is away (parked) when the server stops, so that nothing but
    // the stop ends the room.
    let owners = Proxy::start(server.addr).await;
    let nina = Client::connect(owners.addr).await.unwrap();
    nina.hello("nina").await.unwrap();
    nina.create_room("lobby").await.unwrap();
    let mut listener = Listener::start(proxy.addr, "lobby");
    listener.until("Listening to chat room lobby").await;
    owners.cut(true);
    let probe = server.client("probe").await;
    while probe
        .users()
        .await
        .unwrap()
        .iter()
        .any(|u| u.name == "nina")
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(probe);
    server.stop().await;
    drop(nina);
    let server = TestServer::start_on(&db).await;
    proxy.retarget(server.addr);
    listener
        .until("chat room lobby is gone; waiting for it to exist again")
        .await;

    let nina = server.client("nina").await;
    nina.create_room("lobby").await.unwrap();
    listener.until("Chat room lobby is back").await;
    nina.say("lobby", "hello again").await.unwrap();
    listener.until("out: nina> hello again").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_gives_up_in_one_line_with_exit_1() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let nina = server.client("nina").await;
    nina.create_room("lobby").await.unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "listen",
            "--addr",
            &proxy.addr.to_string(),
            "--room",
            "lobby",
        ])
        .env("SWITCHBOARD_GIVE_UP_AFTER", "0.2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, err.next_line())
        .await
        .unwrap();
    assert!(first.unwrap().unwrap().starts_with("Listening"));
    proxy.cut(true);
    let mut rest = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(PATIENCE, err.next_line())
        .await
        .unwrap()
    {
        rest.push(line);
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{rest:#?}");
    assert_eq!(rest.len(), 2, "{rest:#?}");
    assert!(rest[0].starts_with("Connection lost"), "{rest:#?}");
    assert!(
        rest[1].starts_with("switchboard: the connection was lost and could not be made again"),
        "{rest:#?}"
    );
}

/// The menu client on a pseudo-terminal, trying for the real two minutes after a cut.
fn menu_client(args: &[&str]) -> OsSession {
    crate::menu_client::spawn_giving_up_after(args, "120")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_menu_client_tells_the_cut_and_shows_what_was_missed() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let addr = proxy.addr.to_string();
    let nina = server.client("nina").await;
    nina.create_room("lobby").await.unwrap();
    // The person's steps and the test's, in turn.
    let (step_tx, mut step) = mpsc::unbounded_channel::<()>();
    let (said_tx, said) = std::sync::mpsc::channel::<()>();
    let person = tokio::task::spawn_blocking(move || {
        let mut jose = menu_client(&["--addr", &addr, "--name", "jose"]);
        expect(&mut jose, "Your option <enter a number>:");
        jose.send_line("5").unwrap();
        expect(&mut jose, "Enter chat room id to join:");
        jose.send_line("lobby").unwrap();
        expect(&mut jose, "Type 'bye' to exit this chat room.");
        step_tx.send(()).unwrap();
        expect(&mut jose, "Connection lost; reconnecting...");
        step_tx.send(()).unwrap();
        said.recv().unwrap();
        expect(&mut jose, "Reconnected; 2 messages you missed:");
        expect(&mut jose, "nina> one");
        expect(&mut jose, "nina> two");
        step_tx.send(()).unwrap();
        expect(&mut jose, "nina> live");
        jose.send_line("bye").unwrap();
        expect(&mut jose, "You left chat room lobby.");
        expect(&mut jose, "Your option <enter a number>:");
        jose.send_line("6").unwrap();
        expect(&mut jose, "Disconnected from the server. Bye!");
        jose.expect(Eof).unwrap();
    });
    step.recv().await.unwrap();
    proxy.cut(true);
    step.recv().await.unwrap();
    nina.say("lobby", "one").await.unwrap();
    nina.say("lobby", "two").await.unwrap();
    proxy.up();
    said_tx.send(()).unwrap();
    step.recv().await.unwrap();
    nina.say("lobby", "live").await.unwrap();
    person.await.unwrap();
}
