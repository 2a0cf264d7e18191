//! `switchboard connect`: the course project's interactive client. It asks for what
//! was not given, connects, shows the client info, fetches the menu from the server and
//! loops over it; rooms are entered from the menu and left with `exit` (owner) or `bye`.

use tokio::sync::mpsc;

use super::console::{Console, Input};
use super::{CliError, local_time, resolve};
use crate::client::{Client, ClientError};
use crate::protocol::{ErrorCode, Event, Menu, Recipient};

pub const DEFAULT_ADDR: &str = "127.0.0.1:12000";

pub struct ConnectOptions {
    pub addr: Option<String>,
    pub name: Option<String>,
    pub password: Option<String>,
}

/// Where the user is.
enum Place {
    Menu,
    Room { room: String },
}

/// What a prompt produced, events having been shown meanwhile.
enum Asked {
    Line(String),
    Quit,
    /// The room the user was in was closed by its owner.
    RoomClosed,
}

struct Session {
    console: Console,
    client: Client,
    events: mpsc::Receiver<Event>,
    place: Place,
}

/// Runs the interactive client until the user leaves (Ok) or the server goes away.
pub async fn run(options: ConnectOptions) -> Result<(), CliError> {
    let mut console = Console::start();
    let addr = match options.addr {
        Some(addr) => addr,
        None => {
            match ask_plain(&mut console, &format!("Server address [{DEFAULT_ADDR}]: ")).await {
                Some(addr) if !addr.trim().is_empty() => addr.trim().to_owned(),
                Some(_) => DEFAULT_ADDR.to_owned(),
                None => return Ok(()),
            }
        }
    };
    let mut name = match options.name {
        Some(name) => name,
        None => match ask_name(&mut console).await {
            Some(name) => name,
            None => return Ok(()),
        },
    };
    let peer = resolve(&addr).await?;
    let mut client = Client::connect(peer)
        .await
        .map_err(|e| super::connect_error(&addr, e))?;
    let events = client.take_events().unwrap_or_else(|| mpsc::channel(1).1);
    let mut password = options.password;
    let client_id = loop {
        match client.hello_with(&name, password.as_deref()).await {
            Ok(id) => break id,
            Err(ClientError::Server(e))
                if e.code == ErrorCode::AuthFailed && password.is_none() =>
            {
                console.say(format!("The name {name} is protected by a password."));
                console.prompt_secret("Password: ");
                match typed(&mut console).await {
                    Some(pw) => password = Some(pw),
                    None => return Ok(()),
                }
            }
            Err(ClientError::Server(e))
                if matches!(
                    e.code,
                    ErrorCode::NameTaken | ErrorCode::BadName | ErrorCode::AuthFailed
                ) =>
            {
                console.say(format!("{}.", e.message));
                password = None;
                match ask_name(&mut console).await {
                    Some(next) => name = next,
                    None => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    console.say(format!(
        "Successfully connected to server with IP: {} and port: {}",
        peer.ip(),
        peer.port()
    ));
    console.say("Your client info is:");
    console.say(format!("Client Name: {name}"));
    console.say(format!("Client ID: {client_id}"));
    let mut session = Session {
        console,
        client,
        events,
        place: Place::Menu,
    };
    let menu = session.client.menu().await?;
    session.menu_loop(&menu).await
}

/// A line from a prompt before the session exists; `None` when the user quits.
async fn ask_plain(console: &mut Console, prompt: &str) -> Option<String> {
    console.prompt(prompt);
    typed(console).await
}

/// The line typed at the prompt showing; `None` on Ctrl-C or Ctrl-D.
async fn typed(console: &mut Console) -> Option<String> {
    match console.line().await {
        Input::Line(line) => Some(line),
        Input::Interrupted | Input::Eof => None,
    }
}

async fn ask_name(console: &mut Console) -> Option<String> {
    loop {
        let name = ask_plain(console, "Enter a username: ").await?;
        let name = name.trim();
        match crate::protocol::check_name(name) {
            None => return Some(name.to_owned()),
            Some(why) => console.say(format!("Sorry: {why}.")),
        }
    }
}

fn render(menu: &Menu) -> String {
    let mut text = format!(
        "****** {} ******\n-----------------------\nOptions Available:\n",
        menu.title
    );
    for option in &menu.options {
        text.push_str(&format!("{}. {}\n", option.key, option.label));
    }
    text
}

impl Session {
    /// Shows `prompt` and waits for its line, showing server events meanwhile.
    async fn ask(&mut self, prompt: &str) -> Result<Asked, CliError> {
        self.console.prompt(prompt);
        loop {
            tokio::select! {
                input = self.console.line() => return Ok(match input {
                    Input::Line(line) => Asked::Line(line),
                    Input::Interrupted | Input::Eof => Asked::Quit,
                }),
                event = self.events.recv() => match event {
                    Some(event) => if self.show(event) {
                        return Ok(Asked::RoomClosed);
                    },
                    None => return Err(CliError::Lost),
                },
            }
        }
    }

    /// Prints an event; true when it closed the room the user is in.
    fn show(&mut self, event: Event) -> bool {
        let current = match &self.place {
            Place::Room { room } => Some(room.clone()),
            Place::Menu => None,
        };
        let here = |room: &str| current.as_deref() == Some(room);
        match event {
            Event::Message { from, .. } => self
                .console
                .say(format!("New message from {from} (option 3 reads it).")),
            Event::RoomMessage {
                room, from, text, ..
            } if here(&room) => self.console.say(format!("{from}> {text}")),
            Event::RoomMessage {
                room, from, text, ..
            } => self.console.say(format!("[{room}] {from}> {text}")),
            Event::Joined { room, name } if here(&room) => {
                self.console.say(format!("{name} joined."))
            }
            Event::Left { room, name } if here(&room) => self.console.say(format!("{name} left.")),
            Event::Joined { .. } | Event::Left { .. } => {}
            Event::RoomClosed { room, by } => {
                if here(&room) {
                    self.console.say(format!(
                        "Chat room {room} was closed by its owner {by}. Back to the menu."
                    ));
                    self.place = Place::Menu;
                    return true;
                }
            }
            Event::Shutdown { reason } => self
                .console
                .say(format!("The server is shutting down: {reason}.")),
            Event::Error { message, .. } => self.console.say(format!("Server error: {message}.")),
            Event::Welcome { .. } => {}
        }
        false
    }

    async fn menu_loop(&mut self, menu: &Menu) -> Result<(), CliError> {
        let keys: Vec<String> = menu.options.iter().map(|o| o.key.to_string()).collect();
        loop {
            self.console.say(render(menu));
            let line = match self.ask("Your option <enter a number>: ").await? {
                Asked::Line(line) => line,
                Asked::Quit => return self.quit().await,
                Asked::RoomClosed => continue,
            };
            let choice = line.trim();
            let op = menu
                .options
                .iter()
                .find(|o| o.key.to_string() == choice)
                .map(|o| o.op.clone());
            let done = match op.as_deref() {
                Some("users") => self.users().await?,
                Some("send") => self.send().await?,
                Some("inbox") => self.inbox().await?,
                Some("create_room") => self.create_room().await?,
                Some("join_room") => self.join_room().await?,
                Some("bye") => {
                    self.client.bye().await?;
                    self.console.say("Disconnected from the server. Bye!");
                    return Ok(());
                }
                _ => {
                    self.console.say(format!(
                        "Please enter the number of an option ({}).",
                        keys.join(", ")
                    ));
                    false
                }
            };
            if done {
                return self.quit().await;
            }
        }
    }

    /// Ctrl-C or end of input: say bye and leave cleanly.
    async fn quit(&mut self) -> Result<(), CliError> {
        let _ = self.client.bye().await;
        self.console.say("Disconnected from the server. Bye!");
        Ok(())
    }

    /// Asks a question inside an option; `None` means the user quit.
    async fn question(&mut self, prompt: &str) -> Result<Option<String>, CliError> {
        loop {
            match self.ask(prompt).await? {
                Asked::Line(line) => return Ok(Some(line)),
                Asked::Quit => return Ok(None),
                Asked::RoomClosed => {}
            }
        }
    }

    async fn users(&mut self) -> Result<bool, CliError> {
        let users = self.client.users().await?;
        let list: Vec<String> = users
            .iter()
            .map(|u| format!("{}:{}", u.name, u.client_id))
            .collect();
        self.console
            .say(format!("Users in server: {}", list.join(", ")));
        Ok(false)
    }

    async fn send(&mut self) -> Result<bool, CliError> {
        let Some(text) = self.question("Enter your message: ").await? else {
            return Ok(true);
        };
        let Some(to) = self.question("Enter recipient (name, or #id): ").await? else {
            return Ok(true);
        };
        let to = match Recipient::typed(to.trim()) {
            Ok(to) => to,
            Err(why) => {
                self.console.say(format!("Message not sent: {why}."));
                return Ok(false);
            }
        };
        match self.client.send(to, &text).await {
            Ok(_) => self.console.say("Message sent!"),
            Err(ClientError::Server(e)) => self
                .console
                .say(format!("Message not sent: {}.", e.message)),
            Err(e) => return Err(e.into()),
        }
        Ok(false)
    }

    async fn inbox(&mut self) -> Result<bool, CliError> {
        let mut lines = Vec::new();
        loop {
            let page = self.client.inbox(None).await?;
            for m in &page.messages {
                lines.push(format!(
                    "{}: {} (from: {})",
                    local_time(&m.sent_at),
                    m.text,
                    m.from
                ));
            }
            if !page.more {
                break;
            }
        }
        if lines.is_empty() {
            self.console.say("No new messages.");
        } else {
            self.console.say("My messages:");
            for line in lines {
                self.console.say(line);
            }
        }
        Ok(false)
    }

    async fn create_room(&mut self) -> Result<bool, CliError> {
        let Some(room) = self.question("Enter new chat room id: ").await? else {
            return Ok(true);
        };
        let room = room.trim().to_owned();
        match self.client.create_room(&room).await {
            Ok(()) => {}
            Err(ClientError::Server(e)) => {
                self.console
                    .say(format!("Could not create the room: {}.", e.message));
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.console.say(format!(
            "Chat room {room} created. Type 'exit' to close the chat room."
        ));
        self.console.say("Waiting for other users to join...");
        self.in_room(room, true).await
    }

    async fn join_room(&mut self) -> Result<bool, CliError> {
        let Some(room) = self.question("Enter chat room id to join: ").await? else {
            return Ok(true);
        };
        let room = room.trim().to_owned();
        let members = match self.client.join_room(&room).await {
            Ok(members) => members,
            Err(ClientError::Server(e)) => {
                self.console
                    .say(format!("Could not join the room: {}.", e.message));
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        self.console.say(format!(
            "Joined chat room {room} with {}. Type 'bye' to exit this chat room.",
            members.join(", ")
        ));
        self.in_room(room, false).await
    }

    /// Says each line to the room until the user leaves it; true when the user quit.
    async fn in_room(&mut self, room: String, owner: bool) -> Result<bool, CliError> {
        self.place = Place::Room { room: room.clone() };
        let (leave_word, prompt) = (if owner { "exit" } else { "bye" }, "> ");
        let quit = loop {
            let line = match self.ask(prompt).await? {
                Asked::Line(line) => line,
                Asked::Quit => break true,
                Asked::RoomClosed => return Ok(false),
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if text.eq_ignore_ascii_case(leave_word) {
                if owner {
                    self.client.close_room(&room).await?;
                    self.console.say(format!("Chat room {room} closed."));
                } else {
                    self.client.leave_room(&room).await?;
                    self.console.say(format!("You left chat room {room}."));
                }
                break false;
            }
            if let Err(e) = self.client.say(&room, &line).await {
                match e {
                    ClientError::Server(e) => self.console.say(format!("Not sent: {}.", e.message)),
                    e => return Err(e.into()),
                }
            }
        };
        self.place = Place::Menu;
        Ok(quit)
    }
}
