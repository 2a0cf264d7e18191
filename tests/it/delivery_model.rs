//! A model of room delivery (DESIGN "Delivery: acknowledged reads, room sequence,
//! resume") checked against a real server: random interleavings of says, connection
//! resets, resumes with and without `seen`, joins with `after`, leaves, fresh joins and
//! rooms opened again under the same name, with a short room history; one room is a
//! member's, so it stays open while that member is parked. The model says
//! what every member must receive: for each member and room, the `room_message` seqs it
//! receives (live and replayed) come one by one from where it came in to the room's
//! latest, never twice; the only gaps are those the server announces (`resume_gap`,
//! `recovered: false`) where the history limit (or a new epoch) explains them, and those
//! DESIGN gives a resume without `seen` (it starts after what the old connection had
//! been queued, which a reset may have lost).
//!
//! Synchronised without sleeps: a member has read everything queued to it once its
//! `ping` is answered, and a cut session is parked once `users` no longer lists it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::{PATIENCE, Raw, TestServer};

/// Messages each room keeps: small, so that a parked member easily misses more.
const HISTORY: u64 = 8;
const MAX_ROOMS: usize = 3;
const MAX_MEMBERS: usize = 5;

/// One step. Indices are taken modulo the case's members and rooms; a step that does
/// not apply (cutting a parked member, say) is skipped.
#[derive(Debug, Clone)]
enum Op {
    /// `count` messages by the talker (`by: None`), or by the member if it is online
    /// and in the room.
    Say {
        room: usize,
        by: Option<usize>,
        count: u8,
    },
    /// Resets an online member's connection (SO_LINGER 0): with `read_first` once it has
    /// read all that was queued to it, else with what was queued lost in the socket.
    /// With `wait`, the next step comes once the server has parked the session;
    /// without, the steps race the server noticing the reset, and the member's next
    /// resume gives `seen` for every room (what the old connection was queued is then
    /// not known) and may take over a session not yet parked.
    Cut {
        member: usize,
        read_first: bool,
        wait: bool,
    },
    /// An online member stops reading and writing without closing its connection (a
    /// peer gone without a word): the server still has it online, and the member's
    /// next resume takes the session over from that connection (closed, `replaced`).
    Vanish { member: usize },
    /// A parked member takes its session back with its token, giving `seen` (the
    /// highest seq it really has) for the rooms whose bit is set; mask 0 gives no `seen`.
    /// With `talk`, the talker says that many messages in that room meanwhile.
    Resume {
        member: usize,
        seen_mask: u8,
        talk: Option<(usize, u8)>,
    },
    /// A parked member says hello with a used-up token: a plain hello, which ends
    /// the parked session (its rooms left, the one it owns closed).
    Restart { member: usize },
    /// An online member not in the room joins it: with `after` what it knows of the
    /// room, if it was in it before (the epoch it knows sent, or left out when
    /// `epoch` is false and the room is the same incarnation); else a fresh join.
    /// With `talk`, the talker says that many messages in that room meanwhile.
    Join {
        member: usize,
        room: usize,
        after: bool,
        epoch: bool,
        talk: Option<(usize, u8)>,
    },
    /// An online member leaves a room it is in.
    Leave { member: usize, room: usize },
    /// A member (the talker for `None`) reads everything queued to it.
    Read { member: Option<usize> },
    /// The room's owner, if online, closes it, and the talker opens it again under its
    /// name: a new epoch.
    Reopen { room: usize },
}

#[derive(Debug, Clone)]
struct Case {
    members: usize,
    rooms: usize,
    ops: Vec<Op>,
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..MAX_MEMBERS;
    let r = 0..MAX_ROOMS;
    prop_oneof![
        6 => (r.clone(), proptest::option::weighted(0.3, m.clone()), 1..=4u8)
            .prop_map(|(room, by, count)| Op::Say { room, by, count }),
        3 => (m.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(member, read_first, wait)| Op::Cut { member, read_first, wait }),
        1 => m.clone().prop_map(|member| Op::Vanish { member }),
        3 => (m.clone(), 0..8u8, talk())
            .prop_map(|(member, seen_mask, talk)| Op::Resume { member, seen_mask, talk }),
        1 => m.clone().prop_map(|member| Op::Restart { member }),
        2 => (m.clone(), r.clone(), any::<bool>(), any::<bool>(), talk()).prop_map(
            |(member, room, after, epoch, talk)| Op::Join { member, room, after, epoch, talk }
        ),
        2 => (m.clone(), r.clone()).prop_map(|(member, room)| Op::Leave { member, room }),
        2 => proptest::option::of(m).prop_map(|member| Op::Read { member }),
        1 => r.prop_map(|room| Op::Reopen { room }),
    ]
}

/// Messages the talker says in a room while another step is under way.
fn talk() -> impl Strategy<Value = Option<(usize, u8)>> {
    proptest::option::weighted(0.4, (0..MAX_ROOMS, 1..=6u8))
}

fn case() -> impl Strategy<Value = Case> {
    (
        3..=MAX_MEMBERS,
        2..=MAX_ROOMS,
        proptest::collection::vec(op(), 0..64),
    )
        .prop_map(|(members, rooms, ops)| Case {
            members,
            rooms,
            ops,
        })
}

/// Fails the case with a message, from a function returning `Result<_, String>`.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// The oldest seq a room still keeps once its latest is `latest`.
fn oldest(latest: u64) -> u64 {
    latest - latest.min(HISTORY) + 1
}

fn room_name(room: usize) -> String {
    format!("room{room}")
}

/// The text of message `seq` of incarnation `round` of `room`: what a replay must
/// carry under that seq.
fn text_of(room: usize, round: u32, seq: u64) -> String {
    format!("{}/{round}/{seq}", room_name(room))
}

#[derive(Debug)]
struct RoomState {
    /// Who opened it (an index into the people).
    owner: usize,
    epoch: String,
    /// How many times it was opened again.
    round: u32,
    seq: u64,
}

/// A member's place in one incarnation of a room, as the model sees it.
#[derive(Debug)]
struct Seat {
    epoch: String,
    round: u32,
    /// Everything up to here is accounted for: from before the member came in, or a
    /// gap that was explained.
    base: u64,
    /// Seqs after `base` the member has: received, or said itself.
    have: BTreeSet<u64>,
    /// Seqs up to here come as replays.
    replay_until: u64,
    /// The room was closed while the member was online: it still has `room_closed`
    /// to read.
    closing: bool,
}

impl Seat {
    fn new(room: &RoomState, base: u64) -> Self {
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
    fn high(&self) -> u64 {
        let mut high = self.base;
        while self.have.contains(&(high + 1)) {
            high += 1;
        }
        high
    }
}

/// A client as the model sees it; the talker is one too, never cut.
struct Person {
    name: String,
    /// `None` while its session is parked.
    conn: Option<Raw>,
    client_id: u64,
    token: String,
    /// A token already used up by a resume.
    spent_token: Option<String>,
    seats: BTreeMap<usize, Seat>,
    /// What it knew of each room it left (or lost): epoch and `high`.
    known: BTreeMap<usize, (String, u64)>,
    /// Rooms whose `resume_gap` it is owed: the `oldest` it must say, and the room's
    /// latest at the resume.
    gaps: BTreeMap<usize, (u64, u64)>,
    /// Each room's latest when its connection was cut: what had been queued to it.
    queued_at_cut: BTreeMap<usize, u64>,
    /// Cut, but the server may not have noticed yet.
    racing: bool,
    /// The connection it went silent on, still open.
    abandoned: Option<Raw>,
    /// `joined` and `left` events it is owed: kind, room, name. Parked members are
    /// announced neither when they are cut nor when they resume.
    notices: BTreeMap<(&'static str, usize, String), u32>,
}

impl Person {
    fn conn(&mut self) -> Result<&mut Raw, String> {
        let name = &self.name;
        self.conn
            .as_mut()
            .ok_or_else(|| format!("{name} is not connected"))
    }

    fn forget(&mut self, room: usize) {
        if let Some(seat) = self.seats.remove(&room) {
            let high = seat.high();
            self.known.insert(room, (seat.epoch, high));
        }
        self.gaps.remove(&room);
    }

    /// Checks one frame the member received against the model, and records it.
    fn receive(&mut self, frame: &Value) -> Result<(), String> {
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

struct World {
    server: SocketAddr,
    /// The talker first, then the members.
    people: Vec<Person>,
    rooms: Vec<RoomState>,
    log: String,
    pings: u64,
    /// The room the talker is saying messages in meanwhile, and how many.
    talk: Option<(usize, u64)>,
}

/// The talker's connection while it says messages meanwhile, and the answers.
type Talking = tokio::task::JoinHandle<(Raw, Vec<Value>)>;

impl World {
    async fn new(server: SocketAddr, members: usize, rooms: usize) -> Result<World, String> {
        let mut world = World {
            server,
            people: Vec::new(),
            rooms: Vec::new(),
            log: String::new(),
            pings: 0,
            talk: None,
        };
        let talker = world.person("talker").await?;
        world.people.push(talker);
        let first = world.person("m1").await?;
        world.people.push(first);
        // room0 is m1's: it stays open while m1 is parked, and closes when m1 leaves it
        // or its parked session is ended.
        world.open(0, 1).await?;
        world.join(0, 0, false, false).await?;
        for room in 1..rooms {
            world.open(room, 0).await?;
        }
        for member in 1..=members {
            if member > 1 {
                let person = world.person(&format!("m{member}")).await?;
                world.people.push(person);
            }
            for room in 0..rooms {
                if !world.people[member].seats.contains_key(&room) {
                    world.join(member, room, false, false).await?;
                }
            }
        }
        Ok(world)
    }

    /// A new client said hello as `name`.
    async fn person(&self, name: &str) -> Result<Person, String> {
        let (conn, reply) = self.hello(json!({"op": "hello", "name": name})).await;
        ensure!(reply["ok"] == true, "hello {name}: {reply}");
        Ok(Person {
            name: name.to_owned(),
            conn: Some(conn),
            client_id: reply["client_id"].as_u64().unwrap_or_default(),
            token: reply["resume_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            spent_token: None,
            seats: BTreeMap::new(),
            known: BTreeMap::new(),
            gaps: BTreeMap::new(),
            queued_at_cut: BTreeMap::new(),
            racing: false,
            abandoned: None,
            notices: BTreeMap::new(),
        })
    }

    /// A new connection that said `hello`, and the reply.
    async fn hello(&self, hello: Value) -> (Raw, Value) {
        let mut conn = Raw::connect(self.server).await;
        let welcome = conn.event().await;
        assert_eq!(welcome["event"], "welcome");
        let reply = conn.call(hello).await;
        (conn, reply)
    }

    fn note(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.log, "  {}", line.as_ref());
    }

    /// The member at index `member` of the case's members, if online (or parked).
    fn member(&self, member: usize) -> usize {
        member % (self.people.len() - 1) + 1
    }

    fn online(&self, who: usize) -> bool {
        self.people[who].conn.is_some()
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Say { room, by, count } => {
                let room = room % self.rooms.len();
                let sayer = by.map(|m| self.member(m)).filter(|&who| {
                    self.online(who)
                        && self.people[who]
                            .seats
                            .get(&room)
                            .is_some_and(|seat| !seat.closing)
                });
                self.say(sayer.unwrap_or(0), room, count).await
            }
            Op::Cut {
                member,
                read_first,
                wait,
            } => {
                let who = self.member(member);
                if self.online(who) {
                    self.cut(who, read_first, wait).await?;
                }
                Ok(())
            }
            Op::Vanish { member } => {
                let who = self.member(member);
                if self.online(who) {
                    self.vanish(who)?;
                }
                Ok(())
            }
            Op::Resume {
                member,
                seen_mask,
                talk,
            } => {
                let who = self.member(member);
                if self.online(who) {
                    return Ok(());
                }
                let talking = self.start_talk(talk)?;
                let outcome = self.resume(who, seen_mask).await;
                let talked = self.finish_talk(talking).await;
                outcome.and(talked)
            }
            Op::Restart { member } => {
                let who = self.member(member);
                if !self.online(who) {
                    self.restart(who).await?;
                }
                Ok(())
            }
            Op::Join {
                member,
                room,
                after,
                epoch,
                talk,
            } => {
                let (who, room) = (self.member(member), room % self.rooms.len());
                if !self.online(who) {
                    return Ok(());
                }
                self.read(who).await?;
                if self.people[who].seats.contains_key(&room) {
                    return Ok(());
                }
                let talking = self.start_talk(talk)?;
                let outcome = self.join(who, room, after, epoch).await;
                let talked = self.finish_talk(talking).await;
                outcome.and(talked)
            }
            Op::Leave { member, room } => {
                let (who, room) = (self.member(member), room % self.rooms.len());
                if self.online(who) {
                    self.read(who).await?;
                    if self.people[who].seats.contains_key(&room) {
                        self.leave(who, room).await?;
                    }
                }
                Ok(())
            }
            Op::Read { member } => {
                let who = member.map_or(0, |m| self.member(m));
                if self.online(who) {
                    self.read(who).await?;
                }
                Ok(())
            }
            Op::Reopen { room } => self.reopen(room % self.rooms.len()).await,
        }
    }

    /// Starts the talker saying `talk`'s messages on a task of its own.
    fn start_talk(&mut self, talk: Option<(usize, u8)>) -> Result<Option<Talking>, String> {
        let Some((room, count)) = talk else {
            return Ok(None);
        };
        let room = room % self.rooms.len();
        let state = &self.rooms[room];
        let texts: Vec<String> = (1..=u64::from(count))
            .map(|i| text_of(room, state.round, state.seq + i))
            .collect();
        let mut talker = self.people[0].conn.take().ok_or("the talker is busy")?;
        self.talk = Some((room, u64::from(count)));
        Ok(Some(tokio::spawn(async move {
            let mut replies = Vec::new();
            for text in texts {
                let say = json!({"op": "say", "room": room_name(room), "text": text});
                replies.push(talker.call(say).await);
            }
            (talker, replies)
        })))
    }

    /// Waits for the talker's messages begun by [`World::start_talk`] and counts them in.
    async fn finish_talk(&mut self, talking: Option<Talking>) -> Result<(), String> {
        let Some(talking) = talking else {
            return Ok(());
        };
        let (talker, replies) = talking.await.map_err(|e| format!("the talker: {e}"))?;
        self.people[0].conn = Some(talker);
        let Some((room, _)) = self.talk.take() else {
            return Ok(());
        };
        let first = self.rooms[room].seq + 1;
        for reply in replies {
            let seq = self.rooms[room].seq + 1;
            ensure!(
                reply["ok"] == true && reply["seq"] == seq,
                "talker says in room{room} meanwhile: expected seq {seq}, got {reply}"
            );
            self.rooms[room].seq = seq;
            if let Some(seat) = self.people[0].seats.get_mut(&room) {
                seat.have.insert(seq);
            }
        }
        let last = self.rooms[room].seq;
        self.note(format!(
            "  meanwhile talker says room{room} {first}..={last}"
        ));
        Ok(())
    }

    /// The seqs a room's latest may be at now: more than the model's while the
    /// talker is saying messages in it.
    fn seq_range(&self, room: usize) -> (u64, u64) {
        let seq = self.rooms[room].seq;
        match self.talk {
            Some((talking, count)) if talking == room => (seq, seq + count),
            _ => (seq, seq),
        }
    }

    async fn say(&mut self, who: usize, room: usize, count: u8) -> Result<(), String> {
        let first = self.rooms[room].seq + 1;
        for _ in 0..count {
            let state = &mut self.rooms[room];
            let seq = state.seq + 1;
            let text = text_of(room, state.round, seq);
            let person = &mut self.people[who];
            let reply = person
                .conn()?
                .call(json!({"op": "say", "room": room_name(room), "text": text}))
                .await;
            ensure!(
                reply["ok"] == true && reply["seq"] == seq,
                "{} says in room{room}: expected seq {seq}, got {reply}",
                person.name
            );
            state.seq = seq;
            if let Some(seat) = person.seats.get_mut(&room) {
                seat.have.insert(seq);
            }
        }
        let (name, last) = (self.people[who].name.clone(), self.rooms[room].seq);
        self.note(format!("{name} says room{room} {first}..={last}"));
        Ok(())
    }

    /// Reads what was queued to `who` up to the answer of a `ping`, checks each frame,
    /// and then that it has every room it is in up to the latest.
    async fn read(&mut self, who: usize) -> Result<(), String> {
        self.pings += 1;
        let ping = (1 << 40) | self.pings;
        let person = &mut self.people[who];
        let conn = person.conn()?;
        conn.send(&json!({"id": ping, "op": "ping"})).await;
        let mut frames = conn.kept_events();
        loop {
            let frame = conn.recv().await;
            if frame.get("event").is_some() {
                frames.push(frame);
                continue;
            }
            ensure!(
                frame["id"] == ping && frame["ok"] == true,
                "{}: expected the ping's answer, got {frame}",
                person.name
            );
            break;
        }
        for frame in &frames {
            person.receive(frame)?;
        }
        let who = &person.name;
        ensure!(
            person.notices.is_empty(),
            "{who}: never got {:?}",
            person.notices
        );
        ensure!(
            person.gaps.is_empty(),
            "{who}: never got the resume_gap of {:?}",
            person
                .gaps
                .keys()
                .map(|&r| room_name(r))
                .collect::<Vec<_>>()
        );
        for (&room, seat) in &person.seats {
            let state = &self.rooms[room];
            ensure!(
                !seat.closing,
                "{who}: room{room} was closed but room_closed never came"
            );
            ensure!(
                seat.epoch == state.epoch && seat.high() == state.seq,
                "{who}: room{room}: has everything up to {} only (latest {}), missing {:?}",
                seat.high(),
                state.seq,
                (seat.high() + 1..=state.seq)
                    .filter(|seq| !seat.have.contains(seq))
                    .collect::<Vec<_>>()
            );
        }
        Ok(())
    }

    async fn cut(&mut self, who: usize, read_first: bool, wait: bool) -> Result<(), String> {
        if read_first {
            self.read(who).await?;
        }
        let person = &mut self.people[who];
        let Some(mut conn) = person.conn.take() else {
            return Ok(());
        };
        // Events read while waiting for an answer were received; the rest is lost.
        for frame in conn.kept_events() {
            person.receive(&frame)?;
        }
        conn.stream
            .set_zero_linger()
            .map_err(|e| format!("linger: {e}"))?;
        drop(conn);
        person.gaps.clear();
        person.notices.clear();
        let closed: Vec<usize> = (person.seats.iter())
            .filter(|(_, seat)| seat.closing)
            .map(|(&room, _)| room)
            .collect();
        for room in closed {
            person.forget(room);
        }
        person.queued_at_cut = (person.seats.keys())
            .map(|&room| (room, self.rooms[room].seq))
            .collect();
        person.racing = !wait;
        let name = person.name.clone();
        let highs: Vec<String> = (person.seats.iter())
            .map(|(room, seat)| format!("room{room}@{}", seat.high()))
            .collect();
        self.note(format!(
            "{name} cut{}{} (has {})",
            if read_first { " after reading" } else { "" },
            if wait { "" } else { ", not waiting" },
            highs.join(" ")
        ));
        if wait {
            self.wait_parked(&name).await?;
        }
        Ok(())
    }

    fn vanish(&mut self, who: usize) -> Result<(), String> {
        let person = &mut self.people[who];
        let Some(mut conn) = person.conn.take() else {
            return Ok(());
        };
        for frame in conn.kept_events() {
            person.receive(&frame)?;
        }
        person.abandoned = Some(conn);
        person.gaps.clear();
        person.notices.clear();
        let closed: Vec<usize> = (person.seats.iter())
            .filter(|(_, seat)| seat.closing)
            .map(|(&room, _)| room)
            .collect();
        for room in closed {
            person.forget(room);
        }
        let name = person.name.clone();
        self.note(format!("{name} goes silent, its connection open"));
        Ok(())
    }

    /// Waits until `users` no longer lists `name`: its session is parked.
    async fn wait_parked(&mut self, name: &str) -> Result<(), String> {
        let talker = self.people[0].conn()?;
        let wait = async {
            loop {
                let reply = talker.call(json!({"op": "users"})).await;
                let listed = reply["users"]
                    .as_array()
                    .is_some_and(|users| users.iter().any(|u| u["name"] == name));
                if !listed {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .map_err(|_| format!("{name} is still listed in users after its cut"))
    }

    async fn resume(&mut self, who: usize, seen_mask: u8) -> Result<(), String> {
        let person = &mut self.people[who];
        let seen_mask = if std::mem::take(&mut person.racing) {
            0xff
        } else {
            seen_mask
        };
        let person = &self.people[who];
        let seen: Option<BTreeMap<usize, u64>> = (seen_mask != 0).then(|| {
            (person.seats.iter())
                .filter(|&(&room, _)| seen_mask & (1 << room) != 0)
                .map(|(&room, seat)| (room, seat.high()))
                .collect()
        });
        let mut hello = json!({"op": "hello", "name": person.name, "resume": person.token});
        if let Some(seen) = &seen {
            let wire: BTreeMap<String, u64> = seen
                .iter()
                .map(|(&room, &seq)| (room_name(room), seq))
                .collect();
            hello["seen"] = json!(wire);
        }
        let ranges: Vec<(u64, u64)> = (0..self.rooms.len()).map(|r| self.seq_range(r)).collect();
        let (mut conn, reply) = self.hello(hello).await;
        let person = &mut self.people[who];
        let name = person.name.clone();
        // A session taken over from a live connection: everything was queued to it.
        let taken_from_live = person.abandoned.take();
        let early = conn.kept_events();
        ensure!(
            early.is_empty(),
            "{name} resumes: {early:?} came before the answer to hello"
        );
        ensure!(
            reply["ok"] == true
                && reply["resumed"] == true
                && reply["client_id"] == person.client_id,
            "{name} resumes: expected resumed:true as client {}, got {reply}",
            person.client_id
        );
        let token = reply["resume_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            !token.is_empty() && token != person.token,
            "{name} resumes: the token must be new: {reply}"
        );
        let told: BTreeMap<String, (String, u64)> = (reply["rooms"].as_array())
            .into_iter()
            .flatten()
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (
                    field("room"),
                    (field("epoch"), r["seq"].as_u64().unwrap_or(0)),
                )
            })
            .collect();
        let expected: BTreeMap<String, (String, (u64, u64))> = (person.seats.iter())
            .map(|(&room, seat)| (room_name(room), (seat.epoch.clone(), ranges[room])))
            .collect();
        let fits = told.len() == expected.len()
            && told.iter().all(|(room, (epoch, seq))| {
                expected
                    .get(room)
                    .is_some_and(|(e, (lo, hi))| e == epoch && (lo..=hi).contains(&seq))
            });
        ensure!(
            fits,
            "{name} resumes: rooms {told:?}, expected {expected:?} (epoch, latest between)"
        );
        person.spent_token = Some(std::mem::replace(&mut person.token, token));
        person.conn = Some(conn);
        let mut notes = Vec::new();
        for (&room, seat) in &mut person.seats {
            let latest = told[&room_name(room)].1;
            let given = seen.as_ref().and_then(|seen| seen.get(&room)).copied();
            let queued = if taken_from_live.is_some() {
                Some(latest)
            } else {
                person.queued_at_cut.get(&room).copied()
            };
            let Some(from) = given.or(queued) else {
                return Err(format!("{name}: no record of room{room} at its cut"));
            };
            let high = seat.high();
            if from < latest && latest - from > HISTORY {
                person.gaps.insert(room, (oldest(latest), latest));
                notes.push(format!("room{room} after {from}: resume_gap"));
                continue;
            }
            seat.have.retain(|&seq| seq <= from);
            if from > high {
                // No `seen`: DESIGN replays after what was queued to the old
                // connection, which the reset may have lost.
                seat.base = from;
            }
            seat.replay_until = latest;
            notes.push(format!(
                "room{room} after {from}{}: replay to {latest}",
                if given.is_some() { " (seen)" } else { "" }
            ));
        }
        self.note(format!("{name} resumes: {}", notes.join(", ")));
        if let Some(mut old) = taken_from_live {
            // The connection it went silent on is closed by the server.
            old.until_closed().await;
        }
        Ok(())
    }

    async fn restart(&mut self, who: usize) -> Result<(), String> {
        if self.people[who].abandoned.is_some() {
            // Its session is online still: the name is taken.
            let person = &self.people[who];
            let hello = json!({"op": "hello", "name": person.name, "resume": "00"});
            let (_, reply) = self.hello(hello).await;
            ensure!(
                reply["ok"] == false && reply["error"]["code"] == "name_taken",
                "{}: a plain hello while its session is online: {reply}",
                person.name
            );
            let name = person.name.clone();
            self.note(format!("{name} says hello anew: name_taken"));
            return Ok(());
        }
        // A plain hello for a name online is refused: only a parked one is ended.
        if std::mem::take(&mut self.people[who].racing) {
            let name = self.people[who].name.clone();
            self.wait_parked(&name).await?;
        }
        let person = &self.people[who];
        let stale = person.spent_token.clone().unwrap_or_else(|| {
            let mut token = person.token.clone();
            let last = if token.ends_with('0') { '1' } else { '0' };
            token.pop();
            token.push(last);
            token
        });
        let hello = json!({"op": "hello", "name": person.name, "resume": stale});
        let (conn, reply) = self.hello(hello).await;
        let person = &mut self.people[who];
        ensure!(
            reply["ok"] == true
                && reply["resumed"] == false
                && reply["client_id"] != person.client_id
                && reply["resume_token"].is_string(),
            "{} with a spent token: expected a plain hello with resumed:false, got {reply}",
            person.name
        );
        person.client_id = reply["client_id"].as_u64().unwrap_or_default();
        person.token = reply["resume_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        person.conn = Some(conn);
        let rooms: Vec<usize> = person.seats.keys().copied().collect();
        let name = person.name.clone();
        self.note(format!(
            "{name} says hello with a spent token: a new session"
        ));
        // Its rooms were all left (or closed) before the answer: announce every `left`
        // before anyone reads.
        let (owned, joined): (Vec<usize>, Vec<usize>) = rooms
            .into_iter()
            .partition(|&room| self.rooms[room].owner == who);
        for room in joined {
            self.people[who].forget(room);
            self.announce("left", room, who);
        }
        for room in owned {
            self.closed(room, who).await?;
        }
        Ok(())
    }

    /// The online members of `room` (its current incarnation) but `subject` are owed
    /// a `kind` event naming `subject`.
    fn announce(&mut self, kind: &'static str, room: usize, subject: usize) {
        let name = self.people[subject].name.clone();
        let epoch = &self.rooms[room].epoch;
        for (i, person) in self.people.iter_mut().enumerate() {
            // The talker is online even while its connection is away saying things.
            let hears = i != subject
                && (i == 0 || person.conn.is_some())
                && (person.seats.get(&room))
                    .is_some_and(|seat| !seat.closing && seat.epoch == *epoch);
            if hears {
                *person
                    .notices
                    .entry((kind, room, name.clone()))
                    .or_default() += 1;
            }
        }
    }

    async fn join(
        &mut self,
        who: usize,
        room: usize,
        after: bool,
        epoch: bool,
    ) -> Result<(), String> {
        self.announce("joined", room, who);
        let (lo, hi) = self.seq_range(room);
        let state = &self.rooms[room];
        let person = &mut self.people[who];
        let known = person.known.get(&room).filter(|_| after).cloned();
        let mut request = json!({"op": "join_room", "room": room_name(room)});
        if let Some((known_epoch, seq)) = &known {
            request["after"] = json!(seq);
            if epoch || *known_epoch != state.epoch {
                request["epoch"] = json!(known_epoch);
            }
        }
        let reply = person.conn()?.call(request.clone()).await;
        // What came before the answer was queued before the join: nothing of the room.
        for frame in person.conn()?.kept_events() {
            person.receive(&frame)?;
        }
        let who = &person.name;
        let latest = reply["seq"].as_u64().unwrap_or(u64::MAX);
        ensure!(
            reply["ok"] == true && reply["epoch"] == state.epoch && (lo..=hi).contains(&latest),
            "{who}: {request} at epoch {} seq {lo}..={hi}: {reply}",
            state.epoch,
        );
        let note = match known {
            None => {
                ensure!(
                    reply.get("recovered").is_none(),
                    "{who}: a join without after: {reply}"
                );
                person.seats.insert(room, Seat::new(state, latest));
                format!("{who} joins room{room} at {latest}")
            }
            Some((known_epoch, after)) => {
                let recovers =
                    known_epoch == state.epoch && (after >= latest || latest - after <= HISTORY);
                if recovers {
                    ensure!(
                        reply["recovered"] == true && reply.get("oldest").is_none(),
                        "{who}: {request}: expected recovered:true, got {reply}"
                    );
                    let mut seat = Seat::new(state, after);
                    seat.replay_until = latest;
                    person.seats.insert(room, seat);
                    format!("{who} joins room{room} after {after}: replay to {latest}")
                } else {
                    ensure!(
                        reply["recovered"] == false && reply["oldest"] == oldest(latest),
                        "{who}: {request}: expected recovered:false oldest {}, got {reply}",
                        oldest(latest)
                    );
                    person.seats.insert(room, Seat::new(state, latest));
                    format!("{who} joins room{room} after {after}: not recovered (latest {latest})")
                }
            }
        };
        self.note(note);
        Ok(())
    }

    async fn leave(&mut self, who: usize, room: usize) -> Result<(), String> {
        let person = &mut self.people[who];
        let reply = person
            .conn()?
            .call(json!({"op": "leave_room", "room": room_name(room)}))
            .await;
        ensure!(
            reply["ok"] == true,
            "{} leaves room{room}: {reply}",
            person.name
        );
        let name = person.name.clone();
        self.note(format!("{name} leaves room{room}"));
        if self.rooms[room].owner == who {
            return self.closed(room, who).await;
        }
        self.people[who].forget(room);
        self.announce("left", room, who);
        Ok(())
    }

    /// Opens `room` (again, under its name) owned by `by`: a new epoch.
    async fn open(&mut self, room: usize, by: usize) -> Result<(), String> {
        let person = &mut self.people[by];
        let created = person
            .conn()?
            .call(json!({"op": "create_room", "room": room_name(room)}))
            .await;
        let epoch = created["epoch"].as_str().unwrap_or_default().to_owned();
        let fresh = self
            .rooms
            .get(room)
            .is_none_or(|state| state.epoch != epoch);
        ensure!(
            created["ok"] == true && created["seq"] == 0 && fresh,
            "{} opens room{room}: {created}",
            person.name
        );
        let round = self.rooms.get(room).map_or(0, |state| state.round + 1);
        let state = RoomState {
            owner: by,
            epoch,
            round,
            seq: 0,
        };
        person.seats.insert(room, Seat::new(&state, 0));
        if room < self.rooms.len() {
            self.rooms[room] = state;
        } else {
            self.rooms.push(state);
        }
        Ok(())
    }

    /// `room` was closed by its owner `by` (closing it, leaving it, or its session
    /// ended): every other online member is owed `room_closed`; a parked session is
    /// taken out of it silently and learns so when it resumes. The talker opens it
    /// again at once.
    async fn closed(&mut self, room: usize, by: usize) -> Result<(), String> {
        for (i, person) in self.people.iter_mut().enumerate() {
            let online = i == 0 || person.conn.is_some();
            match person.seats.get_mut(&room) {
                Some(seat) if online && i != by => seat.closing = true,
                Some(_) => person.forget(room),
                None => {}
            }
        }
        let name = self.people[by].name.clone();
        self.note(format!(
            "room{room} closed by {name}; the talker opens it again"
        ));
        // The talker reads the old incarnation's messages, and room_closed, first.
        self.read(0).await?;
        self.open(room, 0).await
    }

    /// The room's owner, if online, closes it; the talker opens it again.
    async fn reopen(&mut self, room: usize) -> Result<(), String> {
        let owner = self.rooms[room].owner;
        if !self.online(owner) {
            return Ok(());
        }
        // The owner reads the old incarnation's messages before it is gone.
        self.read(owner).await?;
        let person = &mut self.people[owner];
        let closed = person
            .conn()?
            .call(json!({"op": "close_room", "room": room_name(room)}))
            .await;
        ensure!(
            closed["ok"] == true,
            "{} closes room{room}: {closed}",
            person.name
        );
        self.closed(room, owner).await
    }

    /// Every parked member resumes with all it has seen, then everyone reads.
    async fn settle(&mut self) -> Result<(), String> {
        for who in 1..self.people.len() {
            if !self.online(who) {
                self.resume(who, 0xff).await?;
            }
        }
        for who in 0..self.people.len() {
            self.read(who).await?;
        }
        // Each listed once, under the client id its session has had since its hello.
        let reply = self.people[0].conn()?.call(json!({"op": "users"})).await;
        let mut listed: Vec<(u64, String)> = (reply["users"].as_array().into_iter().flatten())
            .map(|u| {
                let name = u["name"].as_str().unwrap_or_default().to_owned();
                (u["client_id"].as_u64().unwrap_or_default(), name)
            })
            .collect();
        listed.sort();
        let mut expected: Vec<(u64, String)> = (self.people.iter())
            .map(|p| (p.client_id, p.name.clone()))
            .collect();
        expected.sort();
        ensure!(
            listed == expected,
            "users lists {listed:?}, expected {expected:?}"
        );
        Ok(())
    }
}

impl Drop for World {
    /// A check that panics (a connection the server closed, an answer that never
    /// came) still shows the steps that led to it.
    fn drop(&mut self) {
        if std::thread::panicking() && !self.log.is_empty() {
            eprintln!("steps taken:\n{}", self.log);
        }
    }
}

async fn run(case: &Case) -> Result<(), String> {
    let server = TestServer::start_tweaked(|c| c.room_history = HISTORY as usize).await;
    let outcome = play(server.addr, case).await;
    server.stop().await;
    outcome
}

async fn play(server: SocketAddr, case: &Case) -> Result<(), String> {
    let mut world = World::new(server, case.members, case.rooms).await?;
    let mut outcome = Ok(());
    for (step, op) in case.ops.iter().enumerate() {
        let _ = writeln!(world.log, "{step}: {op:?}");
        outcome = world.apply(op).await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        let _ = writeln!(world.log, "end: everyone resumes and reads");
        outcome = world.settle().await;
    }
    let log = std::mem::take(&mut world.log);
    outcome.map_err(|why| format!("{why}\nsteps taken:\n{log}"))
}

proptest! {
    // PROPTEST_CASES=1000 for a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24),
        max_shrink_iters: 400,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_member_gets_each_room_message_once_in_order_across_cuts_and_resumes(case in case()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        if let Err(why) = runtime.block_on(run(&case)) {
            return Err(TestCaseError::fail(why));
        }
    }
}
