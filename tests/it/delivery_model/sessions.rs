//! The steps that move sessions: resume, hello anew, join, leave, rooms closed and
//! opened.

use std::collections::BTreeMap;

use serde_json::json;

use super::model::{RoomState, Seat};
use super::world::World;
use super::{HISTORY, oldest, room_name};

impl World {
    /// A parked member (or one gone silent) takes its session back with its token.
    /// Per room, the model expects a replay of what came after its `seen` (without
    /// one, after what the old connection was queued), or `resume_gap` where more
    /// came than the history keeps.
    pub(super) async fn resume(&mut self, who: usize, seen_mask: u8) -> Result<(), String> {
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

    pub(super) async fn restart(&mut self, who: usize) -> Result<(), String> {
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
    pub(super) fn announce(&mut self, kind: &'static str, room: usize, subject: usize) {
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

    /// An online member enters a room it is not in; with `after`, the model expects
    /// the replay after it, or `recovered: false` where the history (or the epoch)
    /// no longer covers it.
    pub(super) async fn join(
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

    pub(super) async fn leave(&mut self, who: usize, room: usize) -> Result<(), String> {
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
    pub(super) async fn open(&mut self, room: usize, by: usize) -> Result<(), String> {
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
    pub(super) async fn closed(&mut self, room: usize, by: usize) -> Result<(), String> {
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
    pub(super) async fn reopen(&mut self, room: usize) -> Result<(), String> {
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
    pub(super) async fn settle(&mut self) -> Result<(), String> {
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
