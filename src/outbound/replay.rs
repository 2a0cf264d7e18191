//! Room messages kept in a room's history, and sent again from it: to a member who
//! rejoins with `after`, and to a resumed session.

use std::sync::Arc;

use crate::protocol::{Event, RoomLine, rfc3339_of_millis};

/// One kept room message, in two allocations (this and its text with its sender's
/// name before it), where a [`RoomLine`] takes four: a room keeps a thousand of them,
/// and each say makes one.
#[derive(Debug)]
pub struct Kept {
    pub seq: u64,
    /// When it was said, in milliseconds since the Unix epoch.
    sent_ms: i64,
    from_len: u32,
    /// The sender's name, then the text.
    data: Box<str>,
}

impl Kept {
    pub fn new(seq: u64, sent_ms: i64, from: &str, text: &str) -> Self {
        let mut data = String::with_capacity(from.len() + text.len());
        data.push_str(from);
        data.push_str(text);
        Kept {
            seq,
            sent_ms,
            from_len: from.len() as u32,
            data: data.into_boxed_str(),
        }
    }

    pub fn from(&self) -> &str {
        &self.data[..self.from_len as usize]
    }

    pub fn text(&self) -> &str {
        &self.data[self.from_len as usize..]
    }

    /// `sent_at` as the live message had it.
    pub fn sent_at(&self) -> String {
        rfc3339_of_millis(self.sent_ms)
    }

    pub fn to_line(&self) -> RoomLine {
        RoomLine {
            seq: self.seq,
            from: self.from().to_owned(),
            text: self.text().to_owned(),
            sent_at: self.sent_at(),
        }
    }
}

/// Kept room messages to send again, as `room_message` events with `replay: true`.
#[derive(Debug)]
pub struct Replay {
    pub room: String,
    pub lines: Vec<Arc<Kept>>,
}

impl Replay {
    /// The replayed lines as events, in order.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.lines.iter().map(|line| Event::RoomMessage {
            room: self.room.clone(),
            from: line.from().to_owned(),
            text: line.text().to_owned(),
            sent_at: line.sent_at(),
            seq: line.seq,
            replay: true,
        })
    }
}
