//! The browser chat page at `/`, in a real (headless) Chromium: people in browsers chat
//! with each other and with native and text clients, join rooms with history, and lose
//! nothing (and see nothing twice) when their WebSocket is cut.

mod dashboard;
mod harness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use switchboard::server::HttpListen;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::{PATIENCE, Raw, TestServer};
use crate::wire::TextConn;
use harness::{Driver, ENTER, Page};

/// A server with HTTP and the text dialect on ports of the system's choosing.
async fn start() -> TestServer {
    TestServer::start_tweaked(|c| {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        c.http_listen = HttpListen::Given(any);
        c.text_listen = Some(any);
    })
    .await
}

fn page_url(http: SocketAddr) -> String {
    format!("http://{http}/")
}

/// A native client that has said hello as `name`.
async fn native(server: &TestServer, name: &str) -> Raw {
    let mut raw = server.raw().await;
    raw.hello(name).await;
    raw
}

async fn ok(raw: &mut Raw, request: Value) -> Value {
    let reply = raw.call(request).await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}

/// Sends a direct message from the page's form.
async fn send_mail(page: &Page, to: &str, text: &str) {
    page.fill("dm-to", to).await;
    page.type_into("dm-text", &format!("{text}{ENTER}")).await;
    page.wait_for(
        "the message sent",
        "return document.getElementById('dm-text').value === '';",
    )
    .await;
}

/// Waits for the new-mail badge to say `count`, reads the inbox, and returns what it
/// shows as `[from, text]`.
async fn read_mail(page: &Page, count: usize) -> Vec<(String, String)> {
    page.wait_for(
        &format!("{count} new mail on the badge"),
        &format!("return document.getElementById('badge').textContent === '{count} new';"),
    )
    .await;
    page.click("inbox-read").await;
    page.wait_for(
        "the badge cleared",
        "return document.getElementById('badge').hidden;",
    )
    .await;
    let shown = page
        .eval(
            "return [...document.querySelectorAll('#inbox li')]\
             .map(li => [li.querySelector('.from').textContent, li.querySelector('.text').textContent]);",
        )
        .await;
    serde_json::from_value(shown).expect("mail lines")
}

/// Says `text` in the page's current room and waits for it to show with its `seq`.
async fn say(page: &Page, room: &str, text: &str, seq: usize) {
    page.type_into("say-text", &format!("{text}{ENTER}")).await;
    page.wait_for_lines(room, seq).await;
}

/// The head and body of a plain `GET path` (no browser needed).
async fn fetch(http: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(http).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn the_page_its_script_and_style_are_served_with_a_strict_policy() {
    let server = start().await;
    let http = server.http.unwrap();
    let (head, body) = fetch(http, "/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let policy = format!("connect-src 'self' ws://{http} wss://{http};");
    assert!(
        head.contains("content-security-policy: default-src 'self';"),
        "{head}"
    );
    assert!(head.contains(&policy), "{head}");
    assert!(body.contains("<label for=\"name\">Your name</label>"));
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/link.js", "text/javascript"),
        ("/view.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let (head, body) = fetch(http, path).await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {kind}; charset=utf-8")),
            "{path}: {head}"
        );
        assert!(!body.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn two_browsers_chat_with_each_other_and_with_native_and_text_clients() {
    let Some(mut driver) = Driver::start().await else {
        return;
    };
    let server = start().await;
    let url = page_url(server.http.unwrap());
    let (ana, bob) = driver.open_two(&url).await;
    tokio::join!(ana.log_in("ana"), bob.log_in("bob"));
    let mut cy = native(&server, "cy").await;
    let (mut dee, _) = TextConn::connect(server.text.unwrap()).await;
    assert!(dee.call("HELLO dee").await.0.starts_with("+OK"));

    // Direct messages: browser to browser, native and text to browsers, browser to both.
    send_mail(&ana, "bob", "hi bob, from a browser").await;
    ok(
        &mut cy,
        json!({"op": "send", "to": "bob", "text": "hi bob, from tcp"}),
    )
    .await;
    assert!(
        dee.call("SEND bob hi bob, from nc")
            .await
            .0
            .starts_with("+OK")
    );
    let mail = read_mail(&bob, 3).await;
    assert_eq!(
        mail,
        [
            ("ana".to_owned(), "hi bob, from a browser".to_owned()),
            ("cy".to_owned(), "hi bob, from tcp".to_owned()),
            ("dee".to_owned(), "hi bob, from nc".to_owned()),
        ]
    );
    send_mail(&bob, "cy", "hello cy").await;
    send_mail(&bob, "dee", "hello dee").await;
    let inbox = ok(&mut cy, json!({"op": "inbox"})).await;
    assert_eq!(inbox["messages"][0]["text"], "hello cy");
    assert_eq!(inbox["messages"][0]["from"], "bob");
    let (status, lines) = dee.call("INBOX").await;
    assert!(status.starts_with("+OK 1"), "{status}");
    assert!(
        lines[0].contains("bob") && lines[0].contains("hello dee"),
        "{lines:?}"
    );

    // Everyone is listed online in the browser.
    ana.click("users-refresh").await;
    ana.wait_for(
        "everyone online",
        "const t = document.getElementById('users').textContent; \
         return ['ana (you)', 'bob', 'cy', 'dee'].every(n => t.includes(n));",
    )
    .await;

    // A room with all four: ana creates it, bob joins from the keyboard, cy and dee too.
    ana.type_into("room-name", "lobby").await;
    ana.click("room-create").await;
    ana.wait_for(
        "the room open",
        "return document.getElementById('room-title').textContent === 'lobby';",
    )
    .await;
    bob.type_into("room-name", &format!("lobby{ENTER}")).await;
    bob.wait_for(
        "the room joined, the focus on its message field",
        "return document.activeElement.id === 'say-text';",
    )
    .await;
    ok(&mut cy, json!({"op": "join_room", "room": "lobby"})).await;
    assert!(dee.call("JOIN_ROOM lobby").await.0.starts_with("+OK 4"));

    say(&ana, "lobby", "hello from ana", 1).await;
    say(&bob, "lobby", "hello from bob", 2).await;
    ok(
        &mut cy,
        json!({"op": "say", "room": "lobby", "text": "hello from cy"}),
    )
    .await;
    ana.wait_for_lines("lobby", 3).await;
    assert!(
        dee.call("SAY lobby hello from dee")
            .await
            .0
            .starts_with("+OK 4")
    );
    let expected: Vec<(u64, String, String)> = ["ana", "bob", "cy", "dee"]
        .iter()
        .zip(1..)
        .map(|(name, seq)| (seq, (*name).to_owned(), format!("hello from {name}")))
        .collect();
    assert_eq!(ana.wait_for_lines("lobby", 4).await, expected);
    assert_eq!(bob.wait_for_lines("lobby", 4).await, expected);

    // The native and text clients heard the browsers.
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let event = cy.event().await;
        if event["event"] == "room_message" {
            heard.push(event["text"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(heard, ["hello from ana", "hello from bob"]);
    let mut lines = Vec::new();
    while lines.len() < 3 {
        let line = dee.event().await;
        if line.starts_with("* room_message") {
            lines.push(line);
        }
    }
    assert_eq!(lines[0], "* room_message lobby 1 ana: hello from ana");
    assert_eq!(lines[1], "* room_message lobby 2 bob: hello from bob");

    bob.screenshot("chat").await;
    // A phone's screen: a page of about 360 by 740 pixels.
    bob.client.set_window_size(360, 880).await.expect("resize");
    bob.screenshot("chat-phone").await;

    // The owner closes the room from her page; everyone hears of it.
    ana.click("room-close").await;
    ana.wait_for(
        "the room gone",
        "return document.getElementById('room-panel').hidden;",
    )
    .await;
    bob.wait_for(
        "the room closed by ana",
        "return document.getElementById('activity').textContent.includes('lobby was closed by ana');",
    )
    .await;
    loop {
        if dee.event().await == "* room_closed lobby ana" {
            break;
        }
    }
    tokio::join!(ana.close(), bob.close());
    server.stop().await;
}

#[tokio::test]
async fn a_browser_joining_a_room_sees_its_last_messages_then_live_ones() {
    let Some(mut driver) = Driver::start().await else {
        return;
    };
    let server = start().await;
    let mut owner = native(&server, "owner").await;
    ok(&mut owner, json!({"op": "create_room", "room": "news"})).await;
    for n in 1..=25 {
        ok(
            &mut owner,
            json!({"op": "say", "room": "news", "text": format!("item {n}")}),
        )
        .await;
    }
    // The reader's name is protected: the page asks for the password only then.
    let mut setup = server.raw().await;
    setup.event().await;
    ok(
        &mut setup,
        json!({"op": "hello", "name": "reader", "password": "s3cret"}),
    )
    .await;
    ok(&mut setup, json!({"op": "bye"})).await;

    let page = driver.open(&page_url(server.http.unwrap())).await;
    page.wait_for(
        "the name field with the focus, no password field",
        "return document.activeElement.id === 'name' \
         && document.getElementById('password-row').hidden;",
    )
    .await;
    page.type_into("name", &format!("reader{ENTER}")).await;
    page.wait_for(
        "the password field with the focus",
        "return document.activeElement.id === 'password';",
    )
    .await;
    page.type_into("password", &format!("s3cret{ENTER}")).await;
    page.wait_for(
        "the chat",
        "return document.getElementById('me').textContent === 'You are reader';",
    )
    .await;
    page.type_into("room-name", &format!("news{ENTER}")).await;
    let lines = page.wait_for_lines("news", 20).await;
    let seqs: Vec<u64> = lines.iter().map(|line| line.0).collect();
    assert_eq!(seqs, (6..=25).collect::<Vec<_>>(), "the last 20, in order");
    assert_eq!(lines[19].2, "item 25");

    ok(
        &mut owner,
        json!({"op": "say", "room": "news", "text": "live"}),
    )
    .await;
    let lines = page.wait_for_lines("news", 21).await;
    assert_eq!(
        lines.last().unwrap(),
        &(26, "owner".to_owned(), "live".to_owned())
    );

    // The owner closes the room: the page lets it go and says so.
    ok(&mut owner, json!({"op": "close_room", "room": "news"})).await;
    page.wait_for(
        "the room closed",
        "return document.getElementById('activity').textContent.includes('news was closed by owner');",
    )
    .await;
    assert!(page.room_lines("news").await.is_empty());
    page.close().await;
    server.stop().await;
}

/// A TCP proxy between the browser and the server that the test can cut: every
/// connection through it ends at once, and new ones are refused until it is restored.
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let blocked = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (blocked, connections) = (Arc::clone(&blocked), Arc::clone(&connections));
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if blocked.load(Ordering::SeqCst) {
                        continue;
                    }
                    connections.lock().await.spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            }
        });
        Proxy {
            addr,
            blocked,
            connections,
            _accept: accept,
        }
    }

    /// Ends every connection through the proxy and refuses new ones.
    async fn cut(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    fn restore(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_cut_websocket_resumes_with_nothing_lost_or_shown_twice() {
    cut_and_come_back(true).await;
}

/// Without resume (`--resume-grace 0`) the page rejoins its rooms after the last
/// message it showed, and the room replays what it missed.
#[tokio::test]
async fn without_resume_a_cut_page_rejoins_its_rooms_and_misses_nothing() {
    cut_and_come_back(false).await;
}

async fn cut_and_come_back(resume: bool) {
    let Some(mut driver) = Driver::start().await else {
        return;
    };
    let server = TestServer::start_tweaked(|c| {
        c.http_listen = HttpListen::Given("127.0.0.1:0".parse().unwrap());
        if !resume {
            c.resume_grace = std::time::Duration::ZERO;
        }
    })
    .await;
    let proxy = Proxy::start(server.http.unwrap()).await;
    let mut cy = native(&server, "cy").await;
    ok(&mut cy, json!({"op": "create_room", "room": "live"})).await;
    let page = driver.open(&page_url(proxy.addr)).await;
    page.log_in("eve").await;
    page.type_into("room-name", &format!("live{ENTER}")).await;
    page.wait_for(
        "the room joined",
        "return document.getElementById('room-title').textContent === 'live';",
    )
    .await;
    for n in 1..=3 {
        ok(
            &mut cy,
            json!({"op": "say", "room": "live", "text": format!("before {n}")}),
        )
        .await;
    }
    page.wait_for_lines("live", 3).await;

    // The cut: messages said meanwhile, and mail sent, wait for the page to come back.
    proxy.cut().await;
    for n in 4..=6 {
        ok(
            &mut cy,
            json!({"op": "say", "room": "live", "text": format!("during {n}")}),
        )
        .await;
    }
    ok(
        &mut cy,
        json!({"op": "send", "to": "eve", "text": "mail while away"}),
    )
    .await;
    page.wait_for(
        "the page noticing the cut",
        "return document.getElementById('status').textContent === 'Reconnecting…';",
    )
    .await;
    proxy.restore();
    let back = if resume {
        "Reconnected; nothing was lost."
    } else {
        "Reconnected as a new session."
    };
    page.wait_for(
        "the page back in",
        &format!("return document.getElementById('activity').textContent.includes('{back}');"),
    )
    .await;
    ok(
        &mut cy,
        json!({"op": "say", "room": "live", "text": "after 7"}),
    )
    .await;
    page.type_into("say-text", &format!("mine 8{ENTER}")).await;

    let lines = page.wait_for_lines("live", 8).await;
    let seqs: Vec<u64> = lines.iter().map(|line| line.0).collect();
    assert_eq!(
        seqs,
        (1..=8).collect::<Vec<_>>(),
        "each message once, in order"
    );
    assert_eq!(lines[4].2, "during 5");
    assert_eq!(lines[7], (8, "eve".to_owned(), "mine 8".to_owned()));
    assert_eq!(read_mail(&page, 1).await[0].1, "mail while away");
    // Nothing more arrives late.
    ok(&mut cy, json!({"op": "ping"})).await;
    assert_eq!(page.room_lines("live").await.len(), 8);
    page.close().await;
    server.stop().await;
}
