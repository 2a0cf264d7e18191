//! The text dialect of docs/protocol.md: one command per line, so that a person with
//! `nc` or `telnet` (and the course's raw-bytes clients) can use the server.
//!
//! Every input line gets exactly one status line, `+OK [result]` or
//! `-ERR <code> <message>`; a list result is `+OK <n>`, perhaps with `key=value` words
//! after the count (`more=true`, a room's `epoch=`), and then n lines starting with
//! `= `. Events are lines of their own starting with `* `. Text that came from other
//! dialects may hold line breaks: they are written as `\n`, so that one line stays one
//! line.
//!
//! For a person at a terminal: `HELP` lists every command with its arguments, `MENU`
//! the course menu with each entry's command, and a menu number stands for its
//! command (`1` is `USERS`, `2 nina hi` is `SEND nina hi`). A recipient is a name as
//! typed, or `#17` for client id 17.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::{Dialect, DialectKind, Incoming};
use crate::frame::FrameError;
use crate::protocol::{ErrorBody, ErrorCode, Event, Reply, Response};

/// Longest input line, without its line break.
pub const MAX_LINE: usize = 64 * 1024;

/// Every command: its word, its arguments and what it does, as `HELP` lists them.
const COMMANDS: &[(&str, &str, &str)] = &[
    ("HELLO", "<name> [password]", "sign in with a name (first)"),
    (
        "RESUME",
        "<name> <token> [room=seq ...]",
        "sign in again, taking over your cut session",
    ),
    ("PING", "", "check that the server answers"),
    (
        "MENU",
        "",
        "the course menu; a menu number runs its command",
    ),
    ("HELP", "", "this list"),
    ("USERS", "", "who is online"),
    (
        "SEND",
        "<name|#id> <text>",
        "a message kept until read; #17 is client id 17",
    ),
    (
        "INBOX",
        "[PEEK]",
        "your unread messages; PEEK leaves them unread until ACK",
    ),
    (
        "ACK",
        "<id>",
        "mark read your messages up to id (INBOX's last=)",
    ),
    ("CREATE_ROOM", "<room>", "open a room that you own"),
    (
        "JOIN_ROOM",
        "<room> [after [epoch]]",
        "join a room; after: first replay what came after that seq",
    ),
    (
        "HISTORY",
        "<room> [limit [before]]",
        "a room's last messages, or those before a seq",
    ),
    ("SAY", "<room> <text>", "talk to the room"),
    ("LEAVE_ROOM", "<room>", "leave a room"),
    ("CLOSE_ROOM", "<room>", "close a room that you own"),
    ("QUIT", "", "leave (also BYE or CLOSE)"),
];

/// The text dialect carries no request ids, so the id of a request it makes up
/// itself marks it: `HELP` is a `ping` (allowed before `hello`) with this id, whose
/// answer is written as the list of commands.
const HELP_ID: u64 = 0x4845_4c50;

/// A command with its arguments, as a person types it: `SEND <name|#id> <text>`.
fn usage_of(word: &str) -> String {
    let word = word.to_ascii_uppercase();
    let word = if word == "BYE" { "QUIT" } else { &word };
    match COMMANDS.iter().find(|(w, ..)| *w == word) {
        Some((w, "", _)) => (*w).to_owned(),
        Some((w, args, _)) => format!("{w} {args}"),
        None => word.to_owned(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Text {
    /// Bytes of the buffer already searched for a line break, so that a long line
    /// arriving in many reads is scanned once.
    scanned: usize,
    /// Inside a line that was too long and already answered: drop it up to its end.
    discarding: bool,
}

impl Dialect for Text {
    const KIND: DialectKind = DialectKind::Text;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(offset) = src[self.scanned..].iter().position(|&b| b == b'\n') else {
                if self.discarding {
                    src.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                // One byte of slack for the '\r' of a line that is exactly MAX_LINE long.
                if src.len() > MAX_LINE + 1 {
                    src.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(line_too_long()));
                }
                self.scanned = src.len();
                return Ok(None);
            };
            let end = self.scanned + offset;
            let line = src.split_to(end + 1);
            self.scanned = 0;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            if end > MAX_LINE + 1 {
                return Ok(Some(line_too_long()));
            }
            return Ok(Some(parse_line(&line[..end])));
        }
    }

    /// A last line without a line break still counts: `printf 'USERS' | nc` and the
    /// tutorial's client, which sends one message and closes, both expect that.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        if let Some(incoming) = self.decode(src)? {
            return Ok(Some(incoming));
        }
        if src.is_empty() || self.discarding {
            src.clear();
            return Ok(None);
        }
        let line = src.split();
        self.scanned = 0;
        Ok(Some(parse_line(&line)))
    }

    fn encode_response(&self, response: &Response, dst: &mut BytesMut) {
        let reply = match &response.outcome {
            Ok(_) if response.id == Some(HELP_ID) => {
                let _ = write!(dst, "+OK {}\r\n", COMMANDS.len());
                for (word, _, what) in COMMANDS {
                    let _ = write!(dst, "= {}: {what}\r\n", usage_of(word));
                }
                return;
            }
            Ok(reply) => reply,
            Err(error) => {
                let _ = write!(dst, "-ERR {} ", error.code);
                put_clean(dst, &error.message);
                dst.put_slice(b"\r\n");
                return;
            }
        };
        match reply {
            Reply::Hello {
                client_id,
                name,
                resume_token,
                resumed,
                rooms,
            } => {
                let _ = write!(dst, "+OK {client_id} {name}");
                if let Some(token) = resume_token {
                    dst.put_slice(b" token=");
                    put_word(dst, &token.0);
                }
                if let Some(resumed) = resumed {
                    let _ = write!(dst, " resumed={resumed}");
                }
                if let Some(rooms) = rooms {
                    dst.put_slice(b" rooms=");
                    for (i, position) in rooms.iter().enumerate() {
                        if i > 0 {
                            dst.put_u8(b',');
                        }
                        let _ = write!(dst, "{}@", position.room);
                        put_word(dst, &position.epoch);
                        let _ = write!(dst, ":{}", position.seq);
                    }
                }
                dst.put_slice(b"\r\n");
            }
            Reply::Menu(menu) => {
                let _ = write!(dst, "+OK {}\r\n", menu.options.len());
                for option in &menu.options {
                    let _ = write!(
                        dst,
                        "= {} {}: {}\r\n",
                        option.key,
                        option.label,
                        usage_of(&option.op)
                    );
                }
            }
            Reply::Users { users } => {
                let _ = write!(dst, "+OK {}\r\n", users.len());
                for user in users {
                    let _ = write!(dst, "= {} {}\r\n", user.client_id, user.name);
                }
            }
            Reply::Sent { message_id } => {
                let _ = write!(dst, "+OK {message_id}\r\n");
            }
            Reply::Inbox(page) => {
                let _ = write!(dst, "+OK {}", page.messages.len());
                if let Some(last) = page.messages.iter().map(|m| m.message_id).max() {
                    let _ = write!(dst, " last={last}");
                }
                put_more(dst, page.more);
                for message in &page.messages {
                    let _ = write!(dst, "= {} {}: ", message.sent_at, message.from);
                    put_clean(dst, &message.text);
                    dst.put_slice(b"\r\n");
                }
            }
            Reply::Joined {
                members,
                epoch,
                seq,
                recovered,
                oldest,
            } => {
                let _ = write!(dst, "+OK {} epoch=", members.len());
                put_word(dst, epoch);
                let _ = write!(dst, " seq={seq}");
                if let Some(recovered) = recovered {
                    let _ = write!(dst, " recovered={recovered}");
                }
                if let Some(oldest) = oldest {
                    let _ = write!(dst, " oldest={oldest}");
                }
                dst.put_slice(b"\r\n");
                for member in members {
                    let _ = write!(dst, "= {member}\r\n");
                }
            }
            Reply::Ack { .. } => dst.put_slice(b"+OK ack\r\n"),
            Reply::Acked { acked } => {
                let _ = write!(dst, "+OK {acked}\r\n");
            }
            Reply::Said { seq } => {
                let _ = write!(dst, "+OK {seq}\r\n");
            }
            Reply::Created { epoch, seq } => {
                dst.put_slice(b"+OK epoch=");
                put_word(dst, epoch);
                let _ = write!(dst, " seq={seq}\r\n");
            }
            Reply::History(page) => {
                let _ = write!(dst, "+OK {}", page.messages.len());
                put_more(dst, page.more);
                for line in &page.messages {
                    let _ = write!(dst, "= {} {} {}: ", line.seq, line.sent_at, line.from);
                    put_clean(dst, &line.text);
                    dst.put_slice(b"\r\n");
                }
            }
            Reply::Done {} => dst.put_slice(b"+OK\r\n"),
        }
    }

    fn encode_event(&self, event: &Event, dst: &mut BytesMut) {
        match event {
            Event::Welcome {
                client_id, server, ..
            } => {
                let _ = write!(dst, "* welcome {client_id} {server}");
            }
            Event::Message { from, .. } => {
                let _ = write!(dst, "* message {from}");
            }
            Event::Joined { room, name } => {
                let _ = write!(dst, "* joined {room} {name}");
            }
            Event::Left { room, name } => {
                let _ = write!(dst, "* left {room} {name}");
            }
            // A replayed message looks like a live one: its seq says where it belongs.
            Event::RoomMessage {
                room,
                from,
                text,
                seq,
                ..
            } => {
                let _ = write!(dst, "* room_message {room} {seq} {from}: ");
                put_clean(dst, text);
            }
            Event::RoomClosed { room, by } => {
                let _ = write!(dst, "* room_closed {room} {by}");
            }
            Event::Shutdown { reason } => {
                dst.put_slice(b"* shutdown ");
                put_clean(dst, reason);
            }
            Event::Error { code, message } => {
                let _ = write!(dst, "* error {code} ");
                put_clean(dst, message);
            }
            Event::ResumeGap { room, oldest } => {
                let _ = write!(dst, "* resume_gap {room} {oldest}");
            }
        }
        dst.put_slice(b"\r\n");
    }
}

/// Ends a list's count line: ` more=true` when a next page holds more.
fn put_more(dst: &mut BytesMut, more: bool) {
    if more {
        dst.put_slice(b" more=true");
    }
    dst.put_slice(b"\r\n");
}

/// Appends a value the server made (an epoch, a token) that a reader splits on
/// spaces: whatever it holds, it stays one word on one line.
fn put_word(dst: &mut BytesMut, word: &str) {
    let plain = |c: char| !c.is_whitespace() && !c.is_control();
    if word.chars().all(plain) {
        dst.put_slice(word.as_bytes());
        return;
    }
    for c in word.chars() {
        if plain(c) {
            let mut utf8 = [0; 4];
            dst.put_slice(c.encode_utf8(&mut utf8).as_bytes());
        } else {
            let _ = write!(dst, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// Appends `text` with line breaks and other control characters (but tab) escaped.
fn put_clean(dst: &mut BytesMut, text: &str) {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        dst.put_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        match c {
            '\n' => dst.put_slice(b"\\n"),
            '\r' => dst.put_slice(b"\\r"),
            '\t' => dst.put_u8(b'\t'),
            c if c.is_control() => {
                let _ = write!(dst, "\\u{{{:x}}}", c as u32);
            }
            c => {
                let mut utf8 = [0; 4];
                dst.put_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

fn line_too_long() -> Incoming {
    invalid(
        ErrorCode::TooLarge,
        format!("line longer than {MAX_LINE} bytes; it was dropped"),
    )
}

fn invalid(code: ErrorCode, message: impl Into<String>) -> Incoming {
    Incoming::Invalid {
        id: None,
        error: ErrorBody::new(code, message),
    }
}

mod parse;

pub use parse::parse_line;

#[cfg(test)]
mod tests;
