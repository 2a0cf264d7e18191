//! One-shot commands for scripts: `users`, `send`, `inbox`, `listen`. Each connects
//! first (so a server that is not running is the error reported), says hello, does one
//! thing, and prints it for people or, with `--json`, as one JSON object per line with
//! the protocol's own field names.

use std::io::Write;

use serde::Serialize;

use super::{CliError, connect_error, local_time};
use crate::client::Client;
use tokio::sync::mpsc;

use crate::protocol::{Event, Recipient};

/// What every one-shot command takes.
#[derive(Debug, Clone)]
pub struct Common {
    pub addr: String,
    pub name: Option<String>,
    pub password: Option<String>,
    pub json: bool,
}

/// Connects and says hello: as `--name`, or else as a made-up guest unless `need` says
/// why this command needs a real name. The events are taken before hello, so that none
/// after it is missed.
async fn open(
    common: &Common,
    need: Option<&str>,
) -> Result<(Client, mpsc::Receiver<Event>, String, bool), CliError> {
    let mut client = Client::connect(common.addr.as_str())
        .await
        .map_err(|e| connect_error(&common.addr, e))?;
    let (name, guest) = match (&common.name, need) {
        (Some(name), _) => (name.clone(), false),
        (None, Some(why)) => return Err(CliError::Usage(why.to_owned())),
        (None, None) => (guest_name(), true),
    };
    let events = client.take_events().ok_or(CliError::Lost)?;
    client.hello_with(&name, common.password.as_deref()).await?;
    Ok((client, events, name, guest))
}

fn guest_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("guest-{}-{}", std::process::id(), nanos % 1_000_000)
}

fn line(
    json: bool,
    value: &impl Serialize,
    human: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(value).map_err(|e| CliError::Usage(e.to_string()))?;
        writeln!(out, "{text}")?;
    } else {
        writeln!(out, "{}", human())?;
    }
    Ok(())
}

/// Who is online (a made-up guest name leaves itself out).
pub async fn users(common: &Common) -> Result<(), CliError> {
    let (client, _, _, guest) = open(common, None).await?;
    let me = client.client_id();
    for user in client.users().await? {
        if guest && user.client_id == me {
            continue;
        }
        line(common.json, &user, || {
            format!("{}\t{}", user.client_id, user.name)
        })?;
    }
    let _ = client.bye().await;
    Ok(())
}

#[derive(Serialize)]
struct Sent<'a> {
    message_id: u64,
    to: &'a str,
}

/// Sends one direct message; answered once it is stored.
pub async fn send(common: &Common, to: &str, text: &str) -> Result<(), CliError> {
    let recipient = Recipient::typed(to).map_err(CliError::Usage)?;
    let (client, _, _, _) = open(common, None).await?;
    let message_id = client.send(recipient, text).await?;
    line(common.json, &Sent { message_id, to }, || {
        format!("Message {message_id} sent to {to}.")
    })?;
    let _ = client.bye().await;
    Ok(())
}

/// Prints and thereby reads every unread message.
pub async fn inbox(common: &Common) -> Result<(), CliError> {
    let (client, _, _, _) =
        open(common, Some("`inbox` needs --name: whose messages to read")).await?;
    let mut any = false;
    loop {
        let page = client.inbox(None).await?;
        for m in &page.messages {
            any = true;
            line(common.json, m, || {
                format!("{} {}: {}", local_time(&m.sent_at), m.from, m.text)
            })?;
        }
        if !page.more {
            break;
        }
    }
    if !any && !common.json {
        println!("No new messages.");
    }
    let _ = client.bye().await;
    Ok(())
}

/// Joins `room` and prints each of its lines until Ctrl-C or until the room closes.
pub async fn listen(common: &Common, room: &str) -> Result<(), CliError> {
    let (client, mut events, name, _) = open(common, None).await?;
    // Listening for Ctrl-C starts before anything is printed, so that an interrupt
    // arriving between two room lines is never missed.
    let mut interrupt = Interrupt::new()?;
    let members = client.join_room(room).await?;
    eprintln!(
        "Listening to chat room {room} as {name} with {}; Ctrl-C to stop.",
        members.join(", ")
    );
    loop {
        let event = tokio::select! {
            () = interrupt.recv() => {
                let _ = client.leave_room(room).await;
                let _ = client.bye().await;
                return Ok(());
            }
            event = events.recv() => event.ok_or(CliError::Lost)?,
        };
        let ours = match &event {
            Event::RoomMessage { room: r, .. }
            | Event::Joined { room: r, .. }
            | Event::Left { room: r, .. }
            | Event::RoomClosed { room: r, .. } => r == room,
            Event::Shutdown { reason } => {
                eprintln!("The server is shutting down: {reason}.");
                false
            }
            _ => false,
        };
        if !ours {
            continue;
        }
        line(common.json, &event, || match &event {
            Event::RoomMessage { from, text, .. } => format!("{from}> {text}"),
            Event::Joined { name, .. } => format!("{name} joined."),
            Event::Left { name, .. } => format!("{name} left."),
            Event::RoomClosed { by, .. } => format!("The chat room was closed by {by}."),
            _ => String::new(),
        })?;
        if matches!(event, Event::RoomClosed { .. }) {
            let _ = client.bye().await;
            return Ok(());
        }
    }
}

/// Ctrl-C, registered once: every SIGINT from creation on is seen.
struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> Result<Interrupt, CliError> {
        Ok(Interrupt {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
