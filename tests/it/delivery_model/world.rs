//! The clients and the server they talk to: the steps that move connections.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::{Value, json};

use super::model::{Person, RoomState};
use super::{Op, room_name, text_of};
use crate::common::{PATIENCE, Raw};

pub(super) struct World {
    pub(super) server: SocketAddr,
    /// The talker first, then the members.
    pub(super) people: Vec<Person>,
    pub(super) rooms: Vec<RoomState>,
    pub(super) log: String,
    pub(super) pings: u64,
    /// The room the talker is saying messages in meanwhile, and how many.
    pub(super) talk: Option<(usize, u64)>,
}

/// The talker's connection while it says messages meanwhile, and the answers.
pub(super) type Talking = tokio::task::JoinHandle<(Raw, Vec<Value>)>;

impl World {
    pub(super) async fn new(
        server: SocketAddr,
        members: usize,
        rooms: usize,
    ) -> Result<World, String> {
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
    pub(super) async fn person(&self, name: &str) -> Result<Person, String> {
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
    pub(super) async fn hello(&self, hello: Value) -> (Raw, Value) {
        let mut conn = Raw::connect(self.server).await;
        let welcome = conn.event().await;
        assert_eq!(welcome["event"], "welcome");
        let reply = conn.call(hello).await;
        (conn, reply)
    }

    pub(super) fn note(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.log, "  {}", line.as_ref());
    }

    /// The member at index `member` of the case's members, if online (or parked).
    pub(super) fn member(&self, member: usize) -> usize {
        member % (self.people.len() - 1) + 1
    }

    pub(super) fn online(&self, who: usize) -> bool {
        self.people[who].conn.is_some()
    }

    pub(super) async fn apply(&mut self, op: &Op) -> Result<(), String> {
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
    pub(super) fn start_talk(
        &mut self,
        talk: Option<(usize, u8)>,
    ) -> Result<Option<Talking>, String> {
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
    pub(super) async fn finish_talk(&mut self, talking: Option<Talking>) -> Result<(), String> {
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
    pub(super) fn seq_range(&self, room: usize) -> (u64, u64) {
        let seq = self.rooms[room].seq;
        match self.talk {
            Some((talking, count)) if talking == room => (seq, seq + count),
            _ => (seq, seq),
        }
    }

    pub(super) async fn say(&mut self, who: usize, room: usize, count: u8) -> Result<(), String> {
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
    pub(super) async fn read(&mut self, who: usize) -> Result<(), String> {
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

    pub(super) async fn cut(
        &mut self,
        who: usize,
        read_first: bool,
        wait: bool,
    ) -> Result<(), String> {
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

    pub(super) fn vanish(&mut self, who: usize) -> Result<(), String> {
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
    pub(super) async fn wait_parked(&mut self, name: &str) -> Result<(), String> {
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
