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
use crate::client::{Client, ClientError, ClientOptions, Update};
use tokio::sync::mpsc;

use crate::protocol::{ErrorCode, Event, Recipient};

/// What every one-shot command takes.
#[derive(Debug, Clone)]
pub struct Common {
    pub addr: String,
    pub name: Option<String>,
    pub password: Option<String>,
    pub json: bool,
    /// Whom to trust, for a connection over TLS.
    pub tls: Option<crate::client::ClientTls>,
}

/// Connects and says hello: as `--name`, or else as a made-up guest. The events are
/// taken before hello, so that none after it is missed.
async fn open(common: &Common) -> Result<(Client, mpsc::Receiver<Event>, String, bool), CliError> {
    let options = super::tls::with_tls(ClientOptions::default(), common.tls.as_ref());
    let mut client = Client::connect_with(common.addr.as_str(), &options)
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
/// After a cut it reconnects and resumes, printing what was said meanwhile once and in
/// order; when the session could not be resumed, it waits for the room to exist again
/// and rejoins it.
pub async fn listen(common: &Common, room: &str) -> Result<(), CliError> {
    let options = super::tls::with_tls(super::reconnecting(), common.tls.as_ref());
    let mut client = Client::connect_with(common.addr.as_str(), &options)
        .await
        .map_err(|e| connect_error(&common.addr, e))?;
    let name = common.name.clone().unwrap_or_else(guest_name);
    let mut updates = client.take_updates().ok_or(CliError::Lost)?;
    client.hello_with(&name, common.password.as_deref()).await?;
    // Listening for Ctrl-C starts before anything is printed, so that an interrupt
    // arriving between two room lines is never missed.
    let mut interrupt = Interrupt::new()?;
    let members = client.join_room(room).await?;
    say(&format!(
        "Listening to chat room {room} as {name} with {}; Ctrl-C to stop.",
        members.join(", ")
    ));
    // Set while the room is gone (the session was not resumed): when to look again.
    let mut rejoin_at: Option<tokio::time::Instant> = None;
    // The server said it is stopping; reset by the return.
    let mut stopping = false;
    loop {
        let update = tokio::select! {
            () = interrupt.recv() => {
                let _ = client.leave_room(room).await;
                let _ = client.bye().await;
                return Ok(());
            }
            () = until(rejoin_at) => {
                rejoin_at = rejoin(&client, room).await?;
                continue;
            }
            update = updates.recv() => update.ok_or(CliError::Lost)?,
        };
        let event = match update {
            Update::Event(event) => event,
            Update::Lost(why) => {
                say(&super::lost_line(&why));
                continue;
            }
            Update::Reconnected(back) => {
                stopping = false;
                let gone = back.gone.iter().any(|r| r == room);
                if gone && back.resumed {
                    // As when it closes before one's eyes: nothing more to listen to.
                    say("Reconnected; the chat room was closed while the connection was down.");
                    let _ = client.bye().await;
                    return Ok(());
                }
                if gone {
                    say(&format!(
                        "Reconnected, but the server did not resume the session (it may have \
                         restarted): chat room {room} is gone; waiting for it to exist again."
                    ));
                    rejoin_at = rejoin(&client, room).await?;
                    continue;
                }
                let missed: Vec<&Event> = back.missed.iter().filter(|e| in_room(e, room)).collect();
                match missed.len() {
                    0 => say("Reconnected."),
                    1 => say("Reconnected; 1 message you missed:"),
                    n => say(&format!("Reconnected; {n} messages you missed:")),
                }
                for event in missed {
                    print_room_event(common.json, event)?;
                }
                for gap in back.gaps.iter().filter(|g| g.room == room) {
                    say(&format!(
                        "Some messages of chat room {room} are no longer kept by the server \
                         (the oldest kept is number {}).",
                        gap.oldest
                    ));
                }
                continue;
            }
            Update::GaveUp(why) => return Err(CliError::Connect(why.to_string())),
        };
        if let Event::Shutdown { reason } = &event {
            say(&format!("The server is shutting down: {reason}."));
            stopping = true;
        }
        // Rooms end with a stopping server, and the room is waited for after it.
        if !in_room(&event, room) || stopping && matches!(event, Event::RoomClosed { .. }) {
            continue;
        }
        print_room_event(common.json, &event)?;
        if matches!(event, Event::RoomClosed { .. }) {
            let _ = client.bye().await;
            return Ok(());
        }
    }
}

/// A line for the person running `listen`, on stderr (stdout carries the room).
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Whether `event` is about `room`.
fn in_room(event: &Event, room: &str) -> bool {
    match event {
        Event::RoomMessage { room: r, .. }
        | Event::Joined { room: r, .. }
        | Event::Left { room: r, .. }
        | Event::RoomClosed { room: r, .. } => r == room,
        _ => false,
    }
}

fn print_room_event(json: bool, event: &Event) -> Result<(), CliError> {
    line(json, event, || match event {
        Event::RoomMessage { from, text, .. } => format!("{from}> {text}"),
        Event::Joined { name, .. } => format!("{name} joined."),
        Event::Left { name, .. } => format!("{name} left."),
        Event::RoomClosed { by, .. } => format!("The chat room was closed by {by}."),
        _ => String::new(),
    })
}

/// How often `listen` looks for its room again while it is gone.
const REJOIN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Joins `room` again if it exists; otherwise, when to look next.
async fn rejoin(client: &Client, room: &str) -> Result<Option<tokio::time::Instant>, CliError> {
    match client.join_room(room).await {
        Ok(_) => {
            say(&format!("Chat room {room} is back; listening again."));
            Ok(None)
        }
        Err(ClientError::Server(e)) if e.code == ErrorCode::NoSuchRoom => {
            Ok(Some(tokio::time::Instant::now() + REJOIN_EVERY))
        }
        Err(ClientError::Interrupted) => Ok(Some(tokio::time::Instant::now() + REJOIN_EVERY)),
        Err(e) => Err(e.into()),
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
