//! `switchboard connect`: the course project's interactive client. It asks for what
//! was not given, connects, shows the client info, fetches the menu from the server and
//! loops over it; rooms are entered from the menu and left with `exit` or `bye`.
//! Ctrl-C inside an option or a room goes back to the menu; at the menu, and at the
//! first prompts, it leaves (saying bye). After a cut it reconnects by itself and shows
//! what was missed meanwhile.

use tokio::sync::mpsc;

mod login;

use super::console::{Console, Input};
use super::{CliError, local_time, reconnecting, resolve};
use crate::client::{Client, ClientError, Reconnected, Update, in_words};
use crate::protocol::{ErrorBody, Event, MAX_TEXT, Menu, Recipient};
use login::{LoggedIn, log_in};

/// Messages of a room's conversation so far shown to who joins it.
const LAST_SHOWN: u32 = 20;

pub const DEFAULT_ADDR: &str = "127.0.0.1:12000";

pub struct ConnectOptions {
    pub addr: Option<String>,
    pub name: Option<String>,
    pub password: Option<String>,
    /// Whom to trust, for a connection over TLS.
    pub tls: Option<crate::client::ClientTls>,
}

/// Where the user is.
enum Place {
    Menu,
    Room { room: String },
}

/// What a prompt produced, events having been shown meanwhile.
enum Asked {
    Line(String),
    /// Ctrl-C.
    Interrupted,
    /// Ctrl-D or the end of input.
    Eof,
    /// The room the user was in was closed by its owner, or lost with the session.
    RoomClosed,
}

/// What an option leads to.
enum Next {
    Menu,
    Quit,
}

struct Session {
    console: Console,
    client: Client,
    updates: mpsc::Receiver<Update>,
    place: Place,
    name: String,
    /// An `error` event was shown: when the connection then ends, that was why.
    told: bool,
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
                None => return bye(&mut console),
            }
        }
    };
    let name = match options.name {
        Some(name) => name,
        None => match ask_name(&mut console).await {
            Some(name) => name,
            None => return bye(&mut console),
        },
    };
    let peer = resolve(&addr).await?;
    // Over TLS the address as typed is connected to, so that its host name is the
    // one the certificate is checked against.
    let mut client = match &options.tls {
        None => Client::connect_with(peer, &reconnecting()).await,
        Some(tls) => {
            let options = reconnecting().tls(tls.clone());
            Client::connect_with(crate::client::normalize_addr(&addr), &options).await
        }
    }
    .map_err(|e| super::connect_error(&peer.to_string(), e))?;
    let updates = client.take_updates().unwrap_or_else(|| mpsc::channel(1).1);
    let LoggedIn { client_id, name } =
        match log_in(&mut console, &client, name, options.password).await? {
            Some(done) => done,
            None => {
                let _ = client.bye().await;
                console.say("Disconnected from the server. Bye!");
                return Ok(());
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
        updates,
        place: Place::Menu,
        name,
        told: false,
    };
    let menu = session.client.menu().await?;
    session.menu_loop(&menu).await
}

/// Leaving before connecting.
fn bye(console: &mut Console) -> Result<(), CliError> {
    console.say("Bye!");
    Ok(())
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
        Input::Interrupted | Input::Eof | Input::Cancelled => None,
    }
}

/// Asks for a name until one is valid; `None` when the user quits.
async fn ask_name(console: &mut Console) -> Option<String> {
    console.say(
        "Note: a name without a password can be taken by anyone once you leave; \
         to keep yours, connect with --password the first time you use it.",
    );
    loop {
        let name = ask_plain(console, "Enter a username: ").await?;
        let name = name.trim();
        match crate::protocol::check_name(name) {
            None => return Some(name.to_owned()),
            Some(why) => console.say(format!("Sorry: {why}.")),
        }
    }
}

/// `text` as a sentence: capitalized, with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
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
        if self.console.output_gone() {
            return Ok(Asked::Eof);
        }
        self.console.prompt(prompt);
        loop {
            tokio::select! {
                input = self.console.line() => return Ok(match input {
                    Input::Line(line) => Asked::Line(line),
                    Input::Interrupted => Asked::Interrupted,
                    Input::Eof => Asked::Eof,
                    // A prompt taken back late: this question is still open.
                    Input::Cancelled => {
                        self.console.prompt(prompt);
                        continue;
                    }
                }),
                update = self.updates.recv() => match update {
                    Some(Update::Event(event)) => {
                        let closes_here = matches!(&self.place, Place::Room { room }
                            if matches!(&event, Event::RoomClosed { room: closed, .. } if closed == room));
                        if closes_here {
                            // Its prompt goes first, so that what follows is drawn in order.
                            self.console.cancel().await;
                        }
                        if self.show(event) {
                            return Ok(Asked::RoomClosed);
                        }
                    }
                    Some(Update::Lost(why)) => self.console.say(super::lost_line(&why)),
                    Some(Update::Reconnected(back)) => {
                        let leaves_here = matches!(&self.place, Place::Room { room }
                            if back.gone.contains(room));
                        if leaves_here {
                            self.console.cancel().await;
                        }
                        self.show_return(back);
                        if leaves_here {
                            return Ok(Asked::RoomClosed);
                        }
                    }
                    Some(Update::GaveUp(why)) => return Err(CliError::Connect(why.to_string())),
                    None => return Err(self.ended()),
                },
            }
        }
    }

    /// Why the connection ended, said once: not again if the server's last words
    /// were shown already.
    fn ended(&self) -> CliError {
        match self.client.ended() {
            Some(ClientError::Dropped(_)) if self.told => CliError::Lost,
            Some(e) => e.into(),
            None => CliError::Lost,
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
            Event::Joined { .. } | Event::Left { .. } | Event::ResumeGap { .. } => {}
            Event::RoomClosed { room, by } => {
                if here(&room) {
                    self.console.say(format!(
                        "Chat room {room} was closed by its owner {by}. Back to the menu."
                    ));
                    self.place = Place::Menu;
                    return true;
                }
            }
            Event::Shutdown { reason } => {
                let said = if reason.to_ascii_lowercase().contains("shutting down") {
                    sentence(&reason)
                } else {
                    format!("The server is shutting down: {reason}.")
                };
                self.console.say(said)
            }
            Event::Error { code, message } => {
                self.told = true;
                let words = in_words(&ErrorBody::new(code, message));
                self.console.say(sentence(&words))
            }
            Event::Welcome { .. } => {}
        }
        false
    }

    /// Tells what a reconnection brought back, and what it could not.
    fn show_return(&mut self, back: Reconnected) {
        let back_to_menu = match &self.place {
            Place::Room { room } if back.gone.contains(room) => {
                self.place = Place::Menu;
                " Back to the menu."
            }
            _ => "",
        };
        let rooms = match back.gone.len() {
            1 => format!("chat room {}", back.gone[0]),
            _ => format!("chat rooms {}", back.gone.join(", ")),
        };
        if !back.resumed && !back.gone.is_empty() {
            self.console.say(format!(
                "Reconnected, but the server did not resume the session (it may have \
                 restarted): you are no longer in {rooms}.{back_to_menu}"
            ));
            return;
        }
        match back.missed.len() {
            0 => self.console.say("Reconnected."),
            1 => self.console.say("Reconnected; 1 message you missed:"),
            n => self
                .console
                .say(format!("Reconnected; {n} messages you missed:")),
        }
        for event in back.missed {
            self.show(event);
        }
        for gap in back.gaps {
            self.console.say(format!(
                "Some messages of chat room {} are no longer kept by the server \
                 (the oldest kept is number {}).",
                gap.room, gap.oldest
            ));
        }
        if !back.gone.is_empty() {
            self.console.say(format!(
                "You are no longer in {rooms}: it was closed while you were away.{back_to_menu}"
            ));
        }
    }

    async fn menu_loop(&mut self, menu: &Menu) -> Result<(), CliError> {
        let keys: Vec<String> = menu.options.iter().map(|o| o.key.to_string()).collect();
        loop {
            self.console.say(render(menu));
            let line = match self.ask("Your option <enter a number>: ").await? {
                Asked::Line(line) => line,
                Asked::Interrupted | Asked::Eof => return self.quit().await,
                Asked::RoomClosed => continue,
            };
            let choice = line.trim();
            let op = menu
                .options
                .iter()
                .find(|o| o.key.to_string() == choice)
                .map(|o| o.op.clone());
            let done = match op.as_deref() {
                Some("users") => self.users().await,
                Some("send") => self.send().await,
                Some("inbox") => self.inbox().await,
                Some("create_room") => self.create_room().await,
                Some("join_room") => self.join_room().await,
                Some("bye") => return self.quit().await,
                _ => {
                    self.console.say(format!(
                        "Please enter the number of an option ({}).",
                        keys.join(", ")
                    ));
                    Ok(Next::Menu)
                }
            };
            let next = match done {
                Err(CliError::Client(ClientError::Interrupted)) => {
                    self.console.say(
                        "The connection was cut before the server answered; \
                         once it is back, please try again.",
                    );
                    Next::Menu
                }
                other => other?,
            };
            if let Next::Quit = next {
                return self.quit().await;
            }
        }
    }

    /// Says bye and leaves cleanly.
    async fn quit(&mut self) -> Result<(), CliError> {
        let _ = self.client.bye().await;
        self.console.say("Disconnected from the server. Bye!");
        Ok(())
    }

    /// Asks a question inside an option until it gets a line that is not blank;
    /// `Err(next)` when the user went back to the menu (Ctrl-C) or quit (end of input).
    async fn question(&mut self, prompt: &str) -> Result<Result<String, Next>, CliError> {
        loop {
            match self.ask(prompt).await? {
                Asked::Line(line) if line.trim().is_empty() => {}
                Asked::Line(line) => return Ok(Ok(line)),
                Asked::Interrupted => return Ok(Err(Next::Menu)),
                Asked::Eof => return Ok(Err(Next::Quit)),
                Asked::RoomClosed => {}
            }
        }
    }

    async fn users(&mut self) -> Result<Next, CliError> {
        let users = self.client.users().await?;
        let list: Vec<String> = users
            .iter()
            .map(|u| format!("{}:{}", u.name, u.client_id))
            .collect();
        self.console
            .say(format!("Users in server: {}", list.join(", ")));
        Ok(Next::Menu)
    }

    async fn send(&mut self) -> Result<Next, CliError> {
        let text = loop {
            let text = match self.question("Enter your message: ").await? {
                Ok(text) => text,
                Err(next) => return Ok(next),
            };
            if text.len() <= MAX_TEXT {
                break text;
            }
            self.console.say(format!(
                "That message is {} bytes; the most is {MAX_TEXT}. Please write a shorter one.",
                text.len()
            ));
        };
        let prompt = "Enter recipient (a name, or #id for a client id): ";
        let to = match self.question(prompt).await? {
            Ok(to) => to,
            Err(next) => return Ok(next),
        };
        let to = match Recipient::typed(to.trim()) {
            Ok(to) => to,
            Err(why) => {
                self.console.say(format!("Message not sent: {why}."));
                return Ok(Next::Menu);
            }
        };
        match self.client.send(to, &text).await {
            Ok(_) => self.console.say("Message sent!"),
            Err(ClientError::Server(e)) => self
                .console
                .say(format!("Message not sent: {}.", e.message)),
            Err(e) => return Err(e.into()),
        }
        Ok(Next::Menu)
    }

    /// Shows every unread message, a page at a time, each page marked read only once
    /// it is shown: a client killed in between shows it again next time.
    async fn inbox(&mut self) -> Result<Next, CliError> {
        let mut any = false;
        loop {
            let page = self.client.read_inbox(None).await?;
            if page.messages.is_empty() && !any {
                self.console.say("No new messages.");
            }
            for m in &page.messages {
                if !any {
                    self.console.say("My messages:");
                    any = true;
                }
                self.console.say(format!(
                    "{}: {} (from: {})",
                    local_time(&m.sent_at),
                    m.text,
                    m.from
                ));
            }
            if self.console.output_gone() {
                return Ok(Next::Menu);
            }
            let more = page.more;
            page.ack().await?;
            if !more {
                break;
            }
        }
        Ok(Next::Menu)
    }

    async fn create_room(&mut self) -> Result<Next, CliError> {
        let room = match self.question("Enter new chat room id: ").await? {
            Ok(room) => room.trim().to_owned(),
            Err(next) => return Ok(next),
        };
        match self.client.create_room(&room).await {
            Ok(()) => {}
            Err(ClientError::Server(e)) => {
                self.console
                    .say(format!("Could not create the room: {}.", e.message));
                return Ok(Next::Menu);
            }
            Err(e) => return Err(e.into()),
        }
        self.console.say(format!(
            "Chat room {room} created. Type 'exit' to close the chat room."
        ));
        self.console.say("Waiting for other users to join...");
        self.in_room(room, true).await
    }

    async fn join_room(&mut self) -> Result<Next, CliError> {
        let room = match self.question("Enter chat room id to join: ").await? {
            Ok(room) => room.trim().to_owned(),
            Err(next) => return Ok(next),
        };
        let (members, last) = match self.client.join_room_with_history(&room, LAST_SHOWN).await {
            Ok(joined) => joined,
            Err(ClientError::Server(e)) => {
                self.console
                    .say(format!("Could not join the room: {}.", e.message));
                return Ok(Next::Menu);
            }
            Err(e) => return Err(e.into()),
        };
        let others: Vec<String> = members
            .into_iter()
            .filter(|m| !m.eq_ignore_ascii_case(&self.name))
            .collect();
        let with = if others.is_empty() {
            "nobody else yet".to_owned()
        } else {
            others.join(", ")
        };
        self.console.say(format!(
            "Joined chat room {room} with {with}. Type 'bye' to exit this chat room."
        ));
        if !last.is_empty() {
            self.console.say(match last.len() {
                1 => "The last message said here:".to_owned(),
                n => format!("The last {n} messages said here:"),
            });
            for line in last {
                self.console.say(format!("{}> {}", line.from, line.text));
            }
        }
        self.in_room(room, false).await
    }

    /// Says each line to the room until the user leaves it (`exit` or `bye`, or
    /// Ctrl-C); the owner leaving closes the room.
    async fn in_room(&mut self, room: String, owner: bool) -> Result<Next, CliError> {
        self.place = Place::Room { room: room.clone() };
        let next = loop {
            let line = match self.ask("> ").await? {
                Asked::Line(line) => line,
                Asked::Interrupted => {
                    self.leave(&room, owner).await?;
                    break Next::Menu;
                }
                Asked::Eof => break Next::Quit,
                Asked::RoomClosed => return Ok(Next::Menu),
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if text.eq_ignore_ascii_case("exit") || text.eq_ignore_ascii_case("bye") {
                self.leave(&room, owner).await?;
                break Next::Menu;
            }
            if let Err(e) = self.client.say(&room, &line).await {
                match e {
                    ClientError::Server(e) => self.console.say(format!("Not sent: {}.", e.message)),
                    ClientError::Interrupted => self.console.say(
                        "The connection was cut before the server answered: \
                         that line may not have been sent.",
                    ),
                    e => return Err(e.into()),
                }
            }
        };
        self.place = Place::Menu;
        Ok(next)
    }

    async fn leave(&mut self, room: &str, owner: bool) -> Result<(), CliError> {
        if owner {
            self.client.close_room(room).await?;
            self.console.say(format!("Chat room {room} closed."));
        } else {
            self.client.leave_room(room).await?;
            self.console.say(format!("You left chat room {room}."));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_start_high_and_stop() {
        assert_eq!(sentence("the server is full"), "The server is full.");
        assert_eq!(sentence("done."), "Done.");
        assert_eq!(sentence(""), ".");
    }
}
