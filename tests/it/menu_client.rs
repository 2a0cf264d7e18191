//! `switchboard connect`, the interactive menu client, driven through a pseudo-terminal
//! as a person would use it, against a real server.

use std::process::Command;

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;
use expectrl::{ControlCode, Eof, Expect, Session};

use crate::common::{PATIENCE, TestServer};

fn spawn(args: &[&str]) -> OsSession {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.arg("connect").args(args).env("NO_COLOR", "1");
    let mut session = Session::spawn(command).expect("spawn on a pty");
    session.set_expect_timeout(Some(PATIENCE));
    session
}

#[track_caller]
fn expect(session: &mut OsSession, text: &str) {
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
        expect(&mut nina, "Enter recipient (name, or #id):");
        choose(&mut nina, "jose");
        expect(&mut nina, "Message sent!");
        menu(&mut nina);
        choose(&mut nina, "2");
        expect(&mut nina, "Enter your message:");
        choose(&mut nina, "anyone?");
        expect(&mut nina, "Enter recipient (name, or #id):");
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
        expect(
            &mut leo,
            "switchboard: the connection to the server was lost",
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
