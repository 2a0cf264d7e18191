//! The model's view of rooms and clients, and its check of each frame a client reads.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::text_of;
use crate::common::Raw;

#[derive(Debug)]
pub(super) struct RoomState {
    /// Who opened it (an index into the people).
    pub(super) owner: usize,
    pub(super) epoch: String,
    /// How many times it was opened again.
    pub(super) round: u32,
    pub(super) seq: u64,
}

/// A member's place in one incarnation of a room, as the model sees it.
#[derive(Debug)]
pub(super) struct Seat {
    pub(super) epoch: String,
    pub(super) round: u32,
    /// Everything up to here is accounted for: from before the member came in, or a
    /// gap that was explained.
    pub(super) base: u64,
    /// Seqs after `base` the member has: received, or said itself.
    pub(super) have: BTreeSet<u64>,
    /// Seqs up to here come as replays.
    pub(super) replay_until: u64,
    /// The room was closed while the member was online: it still has `room_closed`
    /// to read.
    pub(super) closing: bool,
}

impl Seat {
    pub(super) fn new(room: &RoomState, base: u64) -> Self {
        Seat {
            epoch: room.epoch.clone(),
            round: room.round,
            base,
            have: BTreeSet::new(),
            replay_until: base,
            closing: false,
        }
    }

    /// The highest seq up to which the member has every message: its `seen`.
    pub(super) fn high(&self) -> u64 {
        let mut high = self.base;
        while self.have.contains(&(high + 1)) {
            high += 1;
        }
        high
    }
}

/// A client as the model sees it; the talker is one too, never cut.
pub(super) struct Person {
    pub(super) name: String,
    /// `None` while its session is parked.
    pub(super) conn: Option<Raw>,
    pub(super) client_id: u64,
    pub(super) token: String,
    /// A token already used up by a resume.
    pub(super) spent_token: Option<String>,
    pub(super) seats: BTreeMap<usize, Seat>,
    /// What it knew of each room it left (or lost): epoch and `high`.
    pub(super) known: BTreeMap<usize, (String, u64)>,
    /// Rooms whose `resume_gap` it is owed: the `oldest` it must say, and the room's
    /// latest at the resume.
    pub(super) gaps: BTreeMap<usize, (u64, u64)>,
    /// Each room's latest when its connection was cut: what had been queued to it.
    pub(super) queued_at_cut: BTreeMap<usize, u64>,
    /// Cut, but the server may not have noticed yet.
    pub(super) racing: bool,
    /// The connection it went silent on, still open.
    pub(super) abandoned: Option<Raw>,
    /// `joined` and `left` events it is owed: kind, room, name. Parked members are
    /// announced neither when they are cut nor when they resume.
    pub(super) notices: BTreeMap<(&'static str, usize, String), u32>,
}

impl Person {
    pub(super) fn conn(&mut self) -> Result<&mut Raw, String> {
        let name = &self.name;
        self.conn
            .as_mut()
            .ok_or_else(|| format!("{name} is not connected"))
    }

    pub(super) fn forget(&mut self, room: usize) {
        if let Some(seat) = self.seats.remove(&room) {
            let high = seat.high();
            self.known.insert(room, (seat.epoch, high));
        }
        self.gaps.remove(&room);
    }

    /// Checks one frame the member received against the model, and records it.
    pub(super) fn receive(&mut self, frame: &Value) -> Result<(), String> {
        let who = &self.name;
        let room_of = |frame: &Value| {
            frame["room"]
                .as_str()
                .and_then(|r| r.strip_prefix("room"))
                .and_then(|r| r.parse::<usize>().ok())
                .ok_or_else(|| format!("{who}: a frame for an unknown room: {frame}"))
        };
        match frame["event"].as_str() {
            Some("room_message") => {
                let room = room_of(frame)?;
                let seq = frame["seq"].as_u64().unwrap_or(0);
                let replay = frame["replay"].as_bool().unwrap_or(false);
                ensure!(
                    !self.gaps.contains_key(&room),
                    "{who}: {frame} came before the resume_gap of room{room} it was owed"
                );
                let Some(seat) = self.seats.get_mut(&room) else {
                    return Err(format!("{who}: {frame} for a room it is not in"));
                };
                let next = seat.high() + 1;
                ensure!(
                    seq == next,
                    "{who}: room{room}: got seq {seq}, expected {next}: {} ({frame})",
                    if seq < next {
                        "a duplicate"
                    } else {
                        "a gap nothing explains"
                    }
                );
                ensure!(
                    frame["text"] == text_of(room, seat.round, seq),
                    "{who}: room{room} seq {seq} carries another message's text: {frame}"
                );
                ensure!(
                    replay == (seq <= seat.replay_until),
                    "{who}: room{room} seq {seq} should {}be a replay (replayed up to {}): {frame}",
                    if replay { "not " } else { "" },
                    seat.replay_until
                );
                seat.have.insert(seq);
            }
            Some("resume_gap") => {
                let room = room_of(frame)?;
                let Some((want, latest)) = self.gaps.remove(&room) else {
                    return Err(format!(
                        "{who}: {frame} that the history limit does not explain"
                    ));
                };
                ensure!(
                    frame["oldest"] == want,
                    "{who}: {frame} should say oldest {want}"
                );
                let Some(seat) = self.seats.get_mut(&room) else {
                    return Err(format!("{who}: {frame} for a room it is not in"));
                };
                // The member knows the room's latest from its hello reply; what came
                // before is the explained gap.
                seat.base = latest;
                seat.have.retain(|&seq| seq > latest);
                seat.replay_until = latest;
            }
            Some("room_closed") => {
                let room = room_of(frame)?;
                ensure!(
                    self.seats.get(&room).is_some_and(|seat| seat.closing),
                    "{who}: {frame} for a room not closed under it"
                );
                self.forget(room);
            }
            Some(kind @ ("joined" | "left")) => {
                let kind = if kind == "joined" { "joined" } else { "left" };
                let key = (
                    kind,
                    room_of(frame)?,
                    frame["name"].as_str().unwrap_or_default().to_owned(),
                );
                match self.notices.get_mut(&key) {
                    Some(1) => {
                        self.notices.remove(&key);
                    }
                    Some(owed) => *owed -= 1,
                    None => {
                        return Err(format!(
                            "{who}: {frame} that no join or leave explains (a parked member is not announced)"
                        ));
                    }
                }
            }
            _ => return Err(format!("{who}: unexpected frame {frame}")),
        }
        Ok(())
    }
}
