//! The text dialect of DESIGN.md: one command per line, so that a person with `nc` or
//! `telnet` (and the seeds' raw-bytes clients) can use the server.
//!
//! Every input line gets exactly one status line, `+OK [result]` or
//! `-ERR <code> <message>`; a list result is `+OK <n>` and then n lines starting with
//! `= `. Events are lines of their own starting with `* `. Text that came from other
//! dialects may hold line breaks: they are written as `\n`, so that one line stays one
//! line.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::{Dialect, DialectKind, Incoming};
use crate::frame::FrameError;
use crate::protocol::{Envelope, ErrorBody, ErrorCode, Event, Recipient, Reply, Request, Response};

/// Longest input line, without its line break.
pub const MAX_LINE: usize = 64 * 1024;

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
            Ok(reply) => reply,
            Err(error) => {
                let _ = write!(dst, "-ERR {} ", error.code);
                put_clean(dst, &error.message);
                dst.put_slice(b"\r\n");
                return;
            }
        };
        match reply {
            Reply::Hello { client_id, name } => {
                let _ = write!(dst, "+OK {client_id} {name}\r\n");
            }
            Reply::Menu(menu) => {
                let _ = write!(dst, "+OK {}\r\n", menu.options.len());
                for option in &menu.options {
                    let _ = write!(
                        dst,
                        "= {} {} ({})\r\n",
                        option.key,
                        option.label,
                        option.op.to_ascii_uppercase()
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
                let _ = write!(dst, "+OK {}\r\n", page.messages.len());
                for message in &page.messages {
                    let _ = write!(dst, "= {} {}: ", message.sent_at, message.from);
                    put_clean(dst, &message.text);
                    dst.put_slice(b"\r\n");
                }
            }
            Reply::Joined { members } => {
                let _ = write!(dst, "+OK {}\r\n", members.len());
                for member in members {
                    let _ = write!(dst, "= {member}\r\n");
                }
            }
            Reply::Ack { .. } => dst.put_slice(b"+OK ack\r\n"),
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
            Event::RoomMessage {
                room, from, text, ..
            } => {
                let _ = write!(dst, "* room_message {room} {from}: ");
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
        }
        dst.put_slice(b"\r\n");
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

/// Splits off the first whitespace-separated word; the rest keeps its inner spacing.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], s[at..].trim_start()),
        None => (s, ""),
    }
}

/// One line, without its line break, as a request or the error that answers it.
pub fn parse_line(line: &[u8]) -> Incoming {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return invalid(ErrorCode::BadRequest, "a line must be UTF-8 text");
    };
    let (word, rest) = first_word(line);
    if word.is_empty() {
        return invalid(
            ErrorCode::BadRequest,
            "empty line: type MENU for the commands, QUIT to leave",
        );
    }
    let word = word.to_ascii_lowercase();
    let args: Vec<&str> = rest.split_whitespace().collect();
    let usage = |text: &str| invalid(ErrorCode::BadRequest, format!("usage: {text}"));
    let one_room = |make: fn(String) -> Request, text: &str| match args[..] {
        [room] => Ok(make(room.to_owned())),
        _ => Err(usage(text)),
    };
    let request = match word.as_str() {
        "hello" => match args[..] {
            [name] => Ok(Request::Hello {
                name: name.to_owned(),
                password: None,
            }),
            [name, password] => Ok(Request::Hello {
                name: name.to_owned(),
                password: Some((*password).into()),
            }),
            _ => Err(usage("HELLO name [password]")),
        },
        "ping" | "menu" | "users" | "inbox" | "bye" | "quit" | "close" if !args.is_empty() => {
            Err(usage(&word.to_ascii_uppercase()))
        }
        "ping" => Ok(Request::Ping),
        "menu" => Ok(Request::Menu),
        "users" => Ok(Request::Users),
        "inbox" => Ok(Request::Inbox { limit: None }),
        "bye" | "quit" | "close" => Ok(Request::Bye),
        "send" => match first_word(rest) {
            (to, text) if !to.is_empty() && !text.is_empty() => Ok(Request::Send {
                to: Recipient::typed(to),
                text: text.to_owned(),
            }),
            _ => Err(usage("SEND to text...")),
        },
        "say" => match first_word(rest) {
            (room, text) if !room.is_empty() && !text.is_empty() => Ok(Request::Say {
                room: room.to_owned(),
                text: text.to_owned(),
            }),
            _ => Err(usage("SAY room text...")),
        },
        "create_room" => one_room(|room| Request::CreateRoom { room }, "CREATE_ROOM room"),
        "join_room" => one_room(|room| Request::JoinRoom { room }, "JOIN_ROOM room"),
        "leave_room" => one_room(|room| Request::LeaveRoom { room }, "LEAVE_ROOM room"),
        "close_room" => one_room(|room| Request::CloseRoom { room }, "CLOSE_ROOM room"),
        _ => {
            let shown: String = word.chars().take(40).collect();
            Err(invalid(
                ErrorCode::UnknownOp,
                format!("unknown command {shown:?}; type MENU for the commands"),
            ))
        }
    };
    match request {
        Ok(request) => Incoming::Request(Envelope { id: None, request }),
        Err(error) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{InboxPage, StoredMessage, UserInfo};

    fn decode_all(input: &[u8]) -> Vec<Incoming> {
        let mut text = Text::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(incoming) = text.decode(&mut buf).unwrap() {
            out.push(incoming);
        }
        if let Some(last) = text.decode_eof(&mut buf).unwrap() {
            out.push(last);
        }
        out
    }

    fn request(incoming: &Incoming) -> &Request {
        match incoming {
            Incoming::Request(envelope) => &envelope.request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn code(incoming: &Incoming) -> ErrorCode {
        match incoming {
            Incoming::Invalid { error, .. } => error.code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn commands_are_case_insensitive_and_keep_the_text_whole() {
        let all =
            decode_all(b"hello nina s3cret\r\nSend 42  hi  there \nsay lobby a  b\nQUIT\nclose");
        assert_eq!(
            request(&all[0]),
            &Request::Hello {
                name: "nina".into(),
                password: Some("s3cret".into())
            }
        );
        assert_eq!(
            request(&all[1]),
            &Request::Send {
                to: Recipient::Id(42),
                text: "hi  there ".into()
            }
        );
        assert_eq!(
            request(&all[2]),
            &Request::Say {
                room: "lobby".into(),
                text: "a  b".into()
            }
        );
        assert_eq!(request(&all[3]), &Request::Bye);
        assert_eq!(request(&all[4]), &Request::Bye);
    }

    #[test]
    fn bad_lines_get_their_codes() {
        let all = decode_all(b"dance\n\nSEND nina\nUSERS now\n\xff\xfe\nJOIN_ROOM\n");
        let codes: Vec<_> = all.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                ErrorCode::UnknownOp,
                ErrorCode::BadRequest,
                ErrorCode::BadRequest,
                ErrorCode::BadRequest,
                ErrorCode::BadRequest,
                ErrorCode::BadRequest
            ]
        );
    }

    #[test]
    fn an_overlong_line_is_answered_once_and_skipped() {
        let mut text = Text::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&vec![b'x'; MAX_LINE + 10]);
        assert_eq!(
            code(&text.decode(&mut buf).unwrap().unwrap()),
            ErrorCode::TooLarge
        );
        assert!(buf.is_empty());
        buf.extend_from_slice(&vec![b'y'; 5000]);
        assert_eq!(text.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"yyy\nPING\n");
        assert_eq!(
            request(&text.decode(&mut buf).unwrap().unwrap()),
            &Request::Ping
        );
        assert_eq!(text.decode(&mut buf).unwrap(), None);
        let mut whole = vec![b'z'; MAX_LINE + 2];
        whole.extend_from_slice(b"\nPING\n");
        let all = decode_all(&whole);
        assert_eq!(code(&all[0]), ErrorCode::TooLarge);
        assert_eq!(request(&all[1]), &Request::Ping);
    }

    #[test]
    fn a_line_split_across_reads_is_found_once_complete() {
        let mut text = Text::default();
        let mut buf = BytesMut::from(&b"US"[..]);
        assert_eq!(text.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"ERS\r");
        assert_eq!(text.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\nPI");
        assert_eq!(
            request(&text.decode(&mut buf).unwrap().unwrap()),
            &Request::Users
        );
        assert_eq!(text.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"PI");
    }

    fn encoded(outcome: Result<Reply, ErrorBody>) -> String {
        let mut buf = BytesMut::new();
        Text::default().encode_response(&Response { id: None, outcome }, &mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn lists_are_counted_and_text_stays_on_one_line() {
        let users = Reply::Users {
            users: vec![UserInfo {
                client_id: 3,
                name: "nina".into(),
            }],
        };
        assert_eq!(encoded(Ok(users)), "+OK 1\r\n= 3 nina\r\n");
        let inbox = Reply::Inbox(InboxPage {
            messages: vec![StoredMessage {
                message_id: 1,
                from: "jose".into(),
                text: "two\nlines".into(),
                sent_at: "2026-11-21T17:45:00Z".into(),
            }],
            more: false,
        });
        assert_eq!(
            encoded(Ok(inbox)),
            "+OK 1\r\n= 2026-11-21T17:45:00Z jose: two\\nlines\r\n"
        );
        assert_eq!(
            encoded(Err(ErrorBody::new(ErrorCode::NoSuchUser, "no user\r\nbob"))),
            "-ERR no_such_user no user\\r\\nbob\r\n"
        );
        let mut buf = BytesMut::new();
        Text::default().encode_event(
            &Event::RoomMessage {
                room: "3456".into(),
                from: "alice".into(),
                text: "hi all".into(),
                sent_at: "x".into(),
            },
            &mut buf,
        );
        assert_eq!(&buf[..], b"* room_message 3456 alice: hi all\r\n");
    }
}
