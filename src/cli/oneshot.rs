//! One-shot commands for scripts: `users`, `send`, `inbox`, `listen`. Each connects
//! first (so a server that is not running is the error reported), says hello, does one
//! thing, and prints it for people or, with `--json`, as one JSON object per line with
//! the protocol's own field names. Without `--name`, `users` and `listen` say hello as
//! a made-up guest (`guest-` and 8 random hex digits), whom the server forgets on
//! disconnect; `send` and `inbox` need a name, and the argument parser asks for it.
//!
//! Output that cannot be written (stdout closed, as by `| head -1`) is returned as
//! [`CliError::Output`]; `main` ends quietly on a broken pipe.

use std::hash::{BuildHasher, Hasher};
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

/// Connects and says hello: as `--name`, or else as a made-up guest. The events are
/// taken before hello, so that none after it is missed.
async fn open(common: &Common) -> Result<(Client, mpsc::Receiver<Event>, String, bool), CliError> {
    let mut client = Client::connect(common.addr.as_str())
        .await
        .map_err(|e| connect_error(&common.addr, e))?;
    let (name, guest) = match &common.name {
        Some(name) => (name.clone(), false),
        None => (guest_name(), true),
    };
    let events = client.take_events().ok_or(CliError::Lost)?;
    client.hello_with(&name, common.password.as_deref()).await?;
    Ok((client, events, name, guest))
}

/// 32 random bits, from the standard library's randomly keyed hasher: enough to keep
/// made-up names apart, and no dependency for it.
pub fn random_u32() -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// A made-up guest name: `guest-` and 8 random hex digits.
pub fn guest_name() -> String {
    guest_names()(0)
}

/// Guest names for one run of many connections, all different: 8 hex digits counting
/// up from a random start.
pub fn guest_names() -> impl Fn(usize) -> String + Clone + Send + Sync + 'static {
    let base = random_u32();
    move |i| format!("guest-{:08x}", base.wrapping_add(i as u32))
}

/// A recipient as a person types it (`--to`): a bare word is always a name, `#17` is
/// client id 17. The value parser of `send --to`.
pub fn recipient(to: &str) -> Result<Recipient, String> {
    if to.is_empty() {
        return Err("empty; expected a name, or # and a client id".into());
    }
    Recipient::typed(to)
}

/// Writes one line to stdout.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

fn line(
    json: bool,
    value: &impl Serialize,
    human: impl FnOnce() -> String,
) -> Result<(), CliError> {
    if json {
        print(&serde_json::to_string(value).map_err(|e| CliError::Usage(e.to_string()))?)
    } else {
        print(&human())
    }
}

/// Who is online (a made-up guest name leaves itself out).
pub async fn users(common: &Common) -> Result<(), CliError> {
    let (client, _, _, guest) = open(common).await?;
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
pub async fn send(common: &Common, to: &Recipient, text: &str) -> Result<(), CliError> {
    let (client, _, _, _) = open(common).await?;
    let message_id = client.send(to.clone(), text).await?;
    let to = match to {
        Recipient::Name(name) => name.clone(),
        Recipient::Id(id) => format!("#{id}"),
    };
    line(
        common.json,
        &Sent {
            message_id,
            to: &to,
        },
        || format!("Message {message_id} sent to {to}."),
    )?;
    let _ = client.bye().await;
    Ok(())
}

/// Prints every unread message, page by page, and marks each page read only once it
/// is printed: killed before that, or cut off, the command leaves the page unread for
/// the next read. When the output breaks off mid-page, what was printed is still
/// marked read.
pub async fn inbox(common: &Common) -> Result<(), CliError> {
    let (client, _, _, _) = open(common).await?;
    let mut any = false;
    loop {
        let page = client.read_inbox(None).await?;
        let mut printed = None;
        for m in &page.messages {
            any = true;
            let shown = line(common.json, m, || {
                format!("{} {}: {}", local_time(&m.sent_at), m.from, m.text)
            });
            if let Err(e) = shown {
                if let Some(up_to) = printed {
                    let _ = client.ack(up_to).await;
                }
                return Err(e);
            }
            printed = Some(m.message_id);
        }
        let more = page.more;
        page.ack().await?;
        if !more {
            break;
        }
    }
    if !any && !common.json {
        print("No new messages.")?;
    }
    let _ = client.bye().await;
    Ok(())
}

/// Joins `room` and prints each of its lines until Ctrl-C or until the room closes.
pub async fn listen(common: &Common, room: &str) -> Result<(), CliError> {
    let (client, mut events, name, _) = open(common).await?;
    // Listening for Ctrl-C starts before anything is printed, so that an interrupt
    // arriving between two room lines is never missed.
    let mut interrupt = Interrupt::new()?;
    let members = client.join_room(room).await?;
    let _ = writeln!(
        std::io::stderr(),
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
                let _ = writeln!(std::io::stderr(), "The server is shutting down: {reason}.");
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
