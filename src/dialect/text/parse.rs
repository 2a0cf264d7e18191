//! A typed line as a request, or the `-ERR` that answers it: the grammar of HELP.

use super::{HELP_ID, invalid, usage_of};
use crate::dialect::Incoming;
use crate::protocol::{Envelope, ErrorCode, Menu, Recipient, Request, ResumeToken, Seen};

/// Splits off the first whitespace-separated word; the rest keeps its inner spacing.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], s[at..].trim_start()),
        None => (s, ""),
    }
}

/// The unsigned integer types a command takes, with their largest value for the
/// error that says a typed number is too large.
trait Whole: std::str::FromStr {
    const MAX: u64;
}

impl Whole for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Whole for u64 {
    const MAX: u64 = u64::MAX;
}

/// A whole number typed as the argument `what` of command `word`: digits only, in
/// the range of `T`; else the error that says so, with the command's usage.
fn number<T: Whole>(typed: &str, what: &str, word: &str) -> Result<T, Incoming> {
    let why = if !typed.is_empty() && typed.bytes().all(|b| b.is_ascii_digit()) {
        match typed.parse() {
            Ok(n) => return Ok(n),
            Err(_) => format!("{what} is at most {}", T::MAX),
        }
    } else {
        let shown: String = typed.chars().take(24).collect();
        format!("{what} is a whole number, not {shown:?}")
    };
    Err(invalid(
        ErrorCode::BadRequest,
        format!("{why}; usage: {}", usage_of(word)),
    ))
}

/// `RESUME`'s `room=seq` words: the last seq received in each room, or `None` for
/// none given (the server then goes by what it had sent).
fn parse_seen(words: &[&str], word: &str) -> Result<Option<Seen>, Incoming> {
    if words.is_empty() {
        return Ok(None);
    }
    let mut seen = Seen::new();
    for pair in words {
        let Some((room, seq)) = pair.split_once('=').filter(|(room, _)| !room.is_empty()) else {
            let shown: String = pair.chars().take(40).collect();
            return Err(invalid(
                ErrorCode::BadRequest,
                format!(
                    "after the token come room=seq words, not {shown:?}; usage: {}",
                    usage_of(word)
                ),
            ));
        };
        let seq = number(seq, "seq", word)?;
        if seen.insert(room.to_owned(), seq).is_some() {
            let shown: String = room.chars().take(40).collect();
            return Err(invalid(
                ErrorCode::BadRequest,
                format!("room {shown} is given twice"),
            ));
        }
    }
    Ok(Some(seen))
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
            "empty line: type HELP for the commands, QUIT to leave",
        );
    }
    let mut word = word.to_ascii_lowercase();
    if word.bytes().all(|b| b.is_ascii_digit()) {
        // A menu number stands for its entry's command.
        let entry = Menu::course_project()
            .options
            .into_iter()
            .find(|option| word.parse() == Ok(option.key));
        match entry {
            Some(option) => word = option.op,
            None => {
                let shown: String = word.chars().take(20).collect();
                return invalid(
                    ErrorCode::UnknownOp,
                    format!("no menu entry {shown}; type MENU for the menu, HELP for the commands"),
                );
            }
        }
    }
    let args: Vec<&str> = rest.split_whitespace().collect();
    let usage = |word: &str| invalid(ErrorCode::BadRequest, format!("usage: {}", usage_of(word)));
    let one_room = |make: fn(String) -> Request| match args[..] {
        [room] => Ok(make(room.to_owned())),
        _ => Err(usage(&word)),
    };
    let request = match word.as_str() {
        "hello" => match args[..] {
            [name] => Ok(Request::Hello(Box::new(crate::protocol::Hello {
                name: name.to_owned(),
                password: None,
                resume: None,
                seen: None,
            }))),
            [name, password] => Ok(Request::Hello(Box::new(crate::protocol::Hello {
                name: name.to_owned(),
                password: Some((*password).into()),
                resume: None,
                seen: None,
            }))),
            _ => Err(usage(&word)),
        },
        "ping" | "menu" | "help" | "users" | "bye" | "quit" | "close" if !args.is_empty() => {
            Err(usage(&word))
        }
        "help" => {
            return Incoming::Request(Envelope {
                id: Some(HELP_ID),
                request: Request::Ping,
            });
        }
        "ping" => Ok(Request::Ping),
        "menu" => Ok(Request::Menu),
        "users" => Ok(Request::Users),
        "inbox" => match args[..] {
            [] => Ok(Request::Inbox {
                limit: None,
                peek: false,
            }),
            [peek] if peek.eq_ignore_ascii_case("peek") => Ok(Request::Inbox {
                limit: None,
                peek: true,
            }),
            _ => Err(usage(&word)),
        },
        "ack" => match args[..] {
            [up_to] => number(up_to, "id", &word).map(|up_to| Request::Ack { up_to }),
            _ => Err(usage(&word)),
        },
        "resume" => match args[..] {
            [name, token, ref seen @ ..] => parse_seen(seen, &word).map(|seen| {
                Request::Hello(Box::new(crate::protocol::Hello {
                    name: name.to_owned(),
                    password: None,
                    resume: Some(ResumeToken(token.to_owned())),
                    seen,
                }))
            }),
            _ => Err(usage(&word)),
        },
        "bye" | "quit" | "close" => Ok(Request::Bye),
        "send" => match first_word(rest) {
            (to, text) if !to.is_empty() && !text.is_empty() => match Recipient::typed(to) {
                Ok(to) => Ok(Request::Send {
                    to,
                    text: text.to_owned(),
                }),
                Err(why) => Err(invalid(ErrorCode::BadRequest, why)),
            },
            _ => Err(usage(&word)),
        },
        "say" => match first_word(rest) {
            (room, text) if !room.is_empty() && !text.is_empty() => Ok(Request::Say {
                room: room.to_owned(),
                text: text.to_owned(),
            }),
            _ => Err(usage(&word)),
        },
        "create_room" => one_room(|room| Request::CreateRoom { room }),
        "join_room" => match args[..] {
            [room] => Ok(Request::JoinRoom {
                room: room.to_owned(),
                after: None,
                epoch: None,
            }),
            [room, after] | [room, after, _] => {
                number(after, "after", &word).map(|after| Request::JoinRoom {
                    room: room.to_owned(),
                    after: Some(after),
                    epoch: args.get(2).map(|epoch| Box::from(*epoch)),
                })
            }
            _ => Err(usage(&word)),
        },
        "history" => match args[..] {
            [room, ref numbers @ ..] if numbers.len() <= 2 => {
                let limit = numbers.first().map(|n| number(n, "limit", &word));
                let before = numbers.get(1).map(|n| number(n, "before", &word));
                match (limit.transpose(), before.transpose()) {
                    (Ok(limit), Ok(before)) => Ok(Request::History {
                        room: room.to_owned(),
                        before,
                        limit,
                    }),
                    (Err(error), _) | (_, Err(error)) => Err(error),
                }
            }
            _ => Err(usage(&word)),
        },
        "leave_room" => one_room(|room| Request::LeaveRoom { room }),
        "close_room" => one_room(|room| Request::CloseRoom { room }),
        _ => {
            let shown: String = word.chars().take(40).collect();
            Err(invalid(
                ErrorCode::UnknownOp,
                format!("unknown command {shown:?}; type HELP for the commands"),
            ))
        }
    };
    match request {
        Ok(request) => Incoming::Request(Envelope { id: None, request }),
        Err(error) => error,
    }
}
