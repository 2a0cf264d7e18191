//! `switchboard connect`, the interactive menu client, driven through a pseudo-terminal
//! as a person would use it, against a real server.

use std::process::Command;

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{ControlCode, Eof, Expect, Session};

use crate::common::{PATIENCE, TestServer};

fn spawn(args: &[&str]) -> OsSession {
    // A cut is given up on after 1 s, not 2 minutes: a vanished server ends a test soon.
    spawn_giving_up_after(args, "1")
}

/// The menu client on a pseudo-terminal, giving a cut connection up after `secs`.
pub fn spawn_giving_up_after(args: &[&str], secs: &str) -> OsSession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.arg("connect").args(args).env("NO_COLOR", "1");
    command.env("SWITCHBOARD_GIVE_UP_AFTER", secs);
    let mut session = Session::spawn(command).expect("spawn on a pty");
    session.set_expect_timeout(Some(PATIENCE));
    session
}

#[track_caller]
pub fn expect(session: &mut OsSession, text: &str) {
    if let Err(e) = session.expect(text) {
        panic!("waiting for {text:?}: {e}");
    }
}

#[track_caller]
fn menu(session: &mut OsSession) {
    expect(session, "6. Disconnect from server");
    expect(session, "Your option <enter a number>:");
}

fn choose(session: &mut OsSession, line: &str) {
    session.send_line(line).expect("type a line");
}

fn exit_code(session: &OsSession) -> i32 {
    match session.get_process().wait().expect("wait") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("did not exit normally: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_people_go_through_all_six_options() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut nina = spawn(&["--addr", &addr, "--name", "nina"]);
        expect(
            &mut nina,
            &format!(
                "Successfully connected to server with IP: 127.0.0.1 and port: {}",
                addr.rsplit(':').next().unwrap()
            ),
        );
        expect(&mut nina, "Your client info is:");
        expect(&mut nina, "Client Name: nina");
        expect(&mut nina, "Client ID: ");
        expect(&mut nina, "****** TCP CHAT ******");
        menu(&mut nina);

        // jose gives no name on the command line: he is asked for it.
        let mut jose = spawn(&["--addr", &addr]);
        expect(&mut jose, "Enter a username:");
        choose(&mut jose, "jose");
        expect(&mut jose, "Client Name: jose");
        menu(&mut jose);

        choose(&mut nina, "1");
        expect(&mut nina, "Users in server: nina:");
        expect(&mut nina, ", jose:");
        menu(&mut nina);

        choose(&mut nina, "2");
        expect(&mut nina, "Enter your message:");
        choose(&mut nina, "Hello World!");
        expect(
            &mut nina,
            "Enter recipient (a name, or #id for a client id):",
        );
        choose(&mut nina, "jose");
        expect(&mut nina, "Message sent!");
        menu(&mut nina);
        choose(&mut nina, "2");
        expect(&mut nina, "Enter your message:");
        choose(&mut nina, "anyone?");
        expect(
            &mut nina,
            "Enter recipient (a name, or #id for a client id):",
        );
        choose(&mut nina, "nobody");
        expect(&mut nina, "Message not sent: ");
        menu(&mut nina);

        // The notice arrives while jose sits at his prompt.
        expect(&mut jose, "New message from nina");
        choose(&mut jose, "3");
        expect(&mut jose, "My messages:");
        expect(&mut jose, ": Hello World! (from: nina)");
        menu(&mut jose);
        choose(&mut jose, "3");
        expect(&mut jose, "No new messages.");
        menu(&mut jose);

        // nina opens a room; jose joins, they talk, jose leaves.
        choose(&mut nina, "4");
        expect(&mut nina, "Enter new chat room id:");
        choose(&mut nina, "3456");
        expect(&mut nina, "Type 'exit' to close the chat room.");
        expect(&mut nina, "Waiting for other users to join...");
        choose(&mut jose, "5");
        expect(&mut jose, "Enter chat room id to join:");
        choose(&mut jose, "3456");
        expect(&mut jose, "Type 'bye' to exit this chat room.");
        expect(&mut nina, "jose joined.");
        choose(&mut jose, "Hello");
        expect(&mut nina, "jose> Hello");
        choose(&mut nina, "Hi jose");
        expect(&mut jose, "nina> Hi jose");
        choose(&mut jose, "bye");
        expect(&mut jose, "You left chat room 3456.");
        menu(&mut jose);
        expect(&mut nina, "jose left.");
        choose(&mut nina, "exit");
        expect(&mut nina, "Chat room 3456 closed.");
        menu(&mut nina);

        // A room closed by its owner sends its members back to the menu.
        choose(&mut nina, "4");
        expect(&mut nina, "Enter new chat room id:");
        choose(&mut nina, "lobby");
        expect(&mut nina, "Waiting for other users to join...");
        choose(&mut jose, "5");
        expect(&mut jose, "Enter chat room id to join:");
        choose(&mut jose, "lobby");
        expect(&mut jose, "Type 'bye' to exit this chat room.");
        expect(&mut nina, "jose joined.");
        // jose is halfway through a line when the room goes: the menu's prompt is
        // drawn afresh, without it.
        jose.send("half a th").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        choose(&mut nina, "exit");
        expect(
            &mut jose,
            "Chat room lobby was closed by its owner nina. Back to the menu.",
        );
        menu(&mut jose);
        choose(&mut jose, "1");
        expect(&mut jose, "Users in server: ");

        choose(&mut jose, "seven");
        expect(&mut jose, "Please enter the number of an option");
        menu(&mut jose);

        choose(&mut nina, "6");
        expect(&mut nina, "Disconnected from the server.");
        nina.expect(Eof).expect("nina's client exits");
        assert_eq!(exit_code(&nina), 0);

        // End of input says bye too.
        jose.send(ControlCode::EndOfTransmission).unwrap();
        expect(&mut jose, "Disconnected from the server.");
        assert_eq!(exit_code(&jose), 0);
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_says_bye_and_a_vanished_server_is_one_line_and_exit_1() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let session = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            let mut ana = spawn(&["--addr", &addr, "--name", "ana"]);
            menu(&mut ana);
            ana.send(ControlCode::EndOfText).unwrap();
            expect(&mut ana, "Disconnected from the server.");
            assert_eq!(exit_code(&ana), 0);

            let mut leo = spawn(&["--addr", &addr, "--name", "leo"]);
            menu(&mut leo);
            leo
        }
    })
    .await
    .unwrap();
    server.stop().await;
    tokio::task::spawn_blocking(move || {
        let mut leo = session;
        expect(&mut leo, "The server is shutting down");
        expect(&mut leo, "Connection lost; reconnecting...");
        expect(
            &mut leo,
            "switchboard: the connection was lost and could not be made again: not back within 1 s",
        );
        assert_eq!(exit_code(&leo), 1);
    })
    .await
    .unwrap();
}

/// A protected name: the client asks for the password only when the server says so,
/// and what is typed shows as stars.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_is_asked_for_and_never_shown() {
    let server = TestServer::start().await;
    let owner = switchboard::Client::connect(server.addr).await.unwrap();
    owner.hello_with("vera", Some("s3cret")).await.unwrap();
    owner.bye().await.unwrap();
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut vera = spawn(&["--addr", &addr, "--name", "vera"]);
        expect(&mut vera, "The name vera is protected by a password.");
        expect(&mut vera, "Password: ");
        choose(&mut vera, "s3cret");
        let shown = vera.expect("Client Name: vera").expect("logged in");
        let shown = String::from_utf8_lossy(shown.before()).into_owned();
        assert!(
            !shown.contains("s3cret"),
            "the password was echoed: {shown:?}"
        );
        assert!(shown.contains("******"), "{shown:?}");
        menu(&mut vera);
        choose(&mut vera, "6");
        vera.expect(Eof).expect("exits");
        assert_eq!(exit_code(&vera), 0);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// A person's typed recipient: a bare word is a name, even all digits (a student id);
/// `#17` is client id 17. Ctrl-C inside an option goes back to the menu.
#[tokio::test(flavor = "multi_thread")]
async fn digits_are_a_name_and_hash_is_an_id() {
    let server = TestServer::start().await;
    let student = server.client("918273645").await;
    let other = server.client("other").await;
    let other_id = other.client_id();
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut nina = spawn(&["--addr", &addr, "--name", "nina"]);
        menu(&mut nina);
        for (text, to) in [
            ("to the student", "918273645".to_owned()),
            ("by id", format!("#{other_id}")),
        ] {
            choose(&mut nina, "2");
            expect(&mut nina, "Enter your message:");
            choose(&mut nina, text);
            expect(&mut nina, "Enter recipient");
            choose(&mut nina, &to);
            expect(&mut nina, "Message sent!");
            menu(&mut nina);
        }
        // Ctrl-C at a question of an option: back to the menu, still connected.
        choose(&mut nina, "2");
        expect(&mut nina, "Enter your message:");
        nina.send(ControlCode::EndOfText).unwrap();
        menu(&mut nina);
        choose(&mut nina, "1");
        expect(&mut nina, "Users in server:");
        menu(&mut nina);
        nina.send(ControlCode::EndOfText).unwrap();
        expect(&mut nina, "Disconnected from the server. Bye!");
        assert_eq!(exit_code(&nina), 0);
    })
    .await
    .unwrap();
    let texts = |page: switchboard::protocol::InboxPage| -> Vec<String> {
        page.messages.into_iter().map(|m| m.text).collect()
    };
    assert_eq!(
        texts(student.inbox(None).await.unwrap()),
        ["to the student"]
    );
    assert_eq!(texts(other.inbox(None).await.unwrap()), ["by id"]);
    server.stop().await;
}

/// Ctrl-C at the first prompt leaves with a word; a wrong password is asked again,
/// three tries in all.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_are_asked_again_three_times() {
    let server = TestServer::start().await;
    let owner = switchboard::Client::connect(server.addr).await.unwrap();
    owner.hello_with("vera", Some("s3cret")).await.unwrap();
    owner.bye().await.unwrap();
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut quitter = spawn(&["--addr", &addr]);
        expect(&mut quitter, "can be taken by anyone");
        expect(&mut quitter, "Enter a username:");
        quitter.send(ControlCode::EndOfText).unwrap();
        expect(&mut quitter, "Bye!");
        assert_eq!(exit_code(&quitter), 0);

        let mut vera = spawn(&["--addr", &addr, "--name", "vera"]);
        expect(&mut vera, "The name vera is protected by a password.");
        expect(&mut vera, "Password: ");
        choose(&mut vera, "wrong1");
        expect(&mut vera, "Wrong password; please try again.");
        choose(&mut vera, "s3cret");
        expect(&mut vera, "Client Name: vera");
        menu(&mut vera);
        choose(&mut vera, "6");
        assert_eq!(exit_code(&vera), 0);

        let mut guesser = spawn(&["--addr", &addr, "--name", "vera", "--password", "a"]);
        expect(&mut guesser, "Wrong password; please try again.");
        choose(&mut guesser, "b");
        expect(&mut guesser, "Wrong password; please try again.");
        choose(&mut guesser, "c");
        expect(
            &mut guesser,
            "switchboard: wrong password for vera, 3 times",
        );
        assert_eq!(exit_code(&guesser), 1);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// On a server that requires passwords, a new name is asked to choose one, typed twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_name_chooses_its_password_twice() {
    let server = TestServer::start_tweaked(|c| c.require_password = true).await;
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut neo = spawn(&["--addr", &addr, "--name", "neo"]);
        expect(
            &mut neo,
            "This server requires a password: choose one for the name neo.",
        );
        expect(&mut neo, "Choose a password: ");
        choose(&mut neo, "matrix1");
        expect(&mut neo, "Type it again: ");
        choose(&mut neo, "matrix2");
        expect(&mut neo, "The two passwords differ; please choose again.");
        expect(&mut neo, "Choose a password: ");
        choose(&mut neo, "matrix");
        expect(&mut neo, "Type it again: ");
        choose(&mut neo, "matrix");
        let shown = neo.expect("Client Name: neo").expect("logged in");
        let shown = String::from_utf8_lossy(shown.before()).into_owned();
        assert!(!shown.contains("protected"), "{shown:?}");
        assert!(!shown.contains("matrix"), "{shown:?}");
        menu(&mut neo);
        choose(&mut neo, "6");
        assert_eq!(exit_code(&neo), 0);
    })
    .await
    .unwrap();
    let again = switchboard::Client::connect(server.addr).await.unwrap();
    again.hello_with("neo", Some("matrix")).await.unwrap();
    server.stop().await;
}

/// A member sees the others in the room but not themself, and leaves with `exit` or
/// `bye` or Ctrl-C; Ctrl-C in a room goes back to the menu.
#[tokio::test(flavor = "multi_thread")]
async fn members_leave_with_exit_bye_or_ctrl_c() {
    let server = TestServer::start().await;
    let owner = server.client("olga").await;
    owner.create_room("den").await.unwrap();
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut max = spawn(&["--addr", &addr, "--name", "max"]);
        for leave in ["exit", "bye", ""] {
            menu(&mut max);
            choose(&mut max, "5");
            expect(&mut max, "Enter chat room id to join:");
            choose(&mut max, "den");
            let joined = max.expect("Type 'bye' to exit").expect("joined");
            let joined = String::from_utf8_lossy(joined.before()).into_owned();
            assert!(
                joined.contains("Joined chat room den with olga."),
                "{joined:?}"
            );
            // Ctrl-C is a key only once the room's prompt reads keys; typed before,
            // the terminal would turn it into a signal.
            expect(&mut max, "> ");
            if leave.is_empty() {
                max.send(ControlCode::EndOfText).unwrap();
            } else {
                choose(&mut max, leave);
            }
            expect(&mut max, "You left chat room den.");
        }
        menu(&mut max);
        choose(&mut max, "6");
        assert_eq!(exit_code(&max), 0);
    })
    .await
    .unwrap();
    drop(owner);
    server.stop().await;
}

/// The server's reason for closing is said in words, once.
#[tokio::test(flavor = "multi_thread")]
async fn the_servers_reason_is_said_in_words() {
    let server =
        TestServer::start_tweaked(|c| c.handshake_timeout = std::time::Duration::from_millis(500))
            .await;
    let owner = switchboard::Client::connect(server.addr).await.unwrap();
    owner.hello_with("vera", Some("s3cret")).await.unwrap();
    owner.bye().await.unwrap();
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut slow = spawn(&["--addr", &addr, "--name", "vera"]);
        expect(&mut slow, "Password: ");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        choose(&mut slow, "s3cret");
        expect(
            &mut slow,
            "switchboard: the server closed the connection: the server timed the connection out (handshake timeout",
        );
        assert_eq!(exit_code(&slow), 1);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// A person who sits at the menu without typing for longer than the server's idle
/// timeout is still connected when they come back.
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_person_at_the_menu_outlasts_the_idle_timeout() {
    let server =
        TestServer::start_tweaked(|c| c.idle_timeout = std::time::Duration::from_secs(1)).await;
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut quiet = spawn(&["--addr", &addr, "--name", "quiet"]);
        menu(&mut quiet);
        std::thread::sleep(std::time::Duration::from_secs(3));
        choose(&mut quiet, "1");
        expect(&mut quiet, "Users in server: quiet");
        menu(&mut quiet);
        choose(&mut quiet, "6");
        assert_eq!(exit_code(&quiet), 0);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// Who joins a room sees the conversation so far: its last messages, oldest first, and
/// then what is said live, with nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn joining_shows_the_rooms_last_messages() {
    let server = TestServer::start().await;
    let owner = server.client("olga").await;
    owner.create_room("den").await.unwrap();
    for i in 1..=25 {
        owner.say("den", &format!("line {i}")).await.unwrap();
    }
    let addr = server.addr.to_string();
    let joined = tokio::task::spawn_blocking(move || {
        let mut max = spawn(&["--addr", &addr, "--name", "max"]);
        menu(&mut max);
        choose(&mut max, "5");
        expect(&mut max, "Enter chat room id to join:");
        choose(&mut max, "den");
        let shown = max.expect("olga> line 25").expect("the last line");
        let shown = String::from_utf8_lossy(shown.before()).into_owned();
        assert!(
            shown.contains("The last 20 messages said here:"),
            "{shown:?}"
        );
        assert!(shown.contains("olga> line 6\r\n"), "{shown:?}");
        assert!(
            !shown.contains("olga> line 5\r\n"),
            "only the last 20: {shown:?}"
        );
        let order: Vec<usize> = (6..=24)
            .map(|i| {
                shown
                    .find(&format!("olga> line {i}\r\n"))
                    .expect("each line once")
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "oldest first: {shown:?}"
        );
        expect(&mut max, "> ");
        max
    })
    .await
    .unwrap();
    owner.say("den", "live now").await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut max = joined;
        let live = max.expect("olga> live now").expect("the live line");
        let before = String::from_utf8_lossy(live.before()).into_owned();
        assert!(!before.contains("line 25"), "nothing twice: {before:?}");
        choose(&mut max, "bye");
        expect(&mut max, "You left chat room den.");
        menu(&mut max);
        choose(&mut max, "6");
        assert_eq!(exit_code(&max), 0);
    })
    .await
    .unwrap();
    server.stop().await;
}
