//! Resume on another node than the one that was cut. A node that parks a session keeps
//! it in `sb-sessions` (whose entries age out with the resume grace): its client id,
//! name, the digest of its token, and where it stood in each room. The node its client
//! comes back to checks the token against the digest (or the name's password), moves
//! the name's claim to itself with a compare-and-set on its revision, tells the old
//! node to let the session go, follows its rooms, and gives it to the new connection
//! with the replay of what it missed, as one node does.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Delivery, Inner};
use crate::cluster::{Claim, Latest, lost_race, name_token, node_subject, read_latest};
use crate::hub::{Departure, HubError, ParkedSeat, ParkedSession, Proof, digest_matches};
use crate::outbound::Outbound;
use crate::protocol::{ClientId, Reply, ResumeToken, Seen};

/// A parked session in `sb-sessions`, with the node that parked it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Parked {
    pub session: ParkedSession,
    pub node: String,
    pub boot: u64,
}

/// What proves a take-over on another node; owned, as the take-over waits on NATS.
pub(super) enum Proven {
    Token(ResumeToken),
    /// The name's password, checked already.
    Password,
}

impl Proven {
    pub(super) fn of(proof: Proof<'_>) -> Proven {
        match proof {
            Proof::Token(token) => Proven::Token(token.clone()),
            Proof::Password => Proven::Password,
        }
    }
}

/// How long a node waits for another to hand over a live session.
const SURRENDER_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How long, at most, a resume with a token waits for the old node's note that the
/// session was parked: steps of 100 ms.
const PARK_PATIENCE_STEPS: usize = 10;
const PARK_PATIENCE_STEP: std::time::Duration = std::time::Duration::from_millis(100);

fn unavailable(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(e.to_string())
}

impl Inner {
    /// Keeps session `id`, parked here, in `sb-sessions` for any node to resume.
    pub(super) async fn park(self: Arc<Self>, id: ClientId) {
        self.note_session(id).await;
    }

    /// Writes session `id` as it stands now (its token's digest, its rooms) to
    /// `sb-sessions`, and marks its claim parked or not as it is: kept from its hello
    /// on, so that if this node dies the session can still be resumed on another.
    /// Notes are written one at a time, each as the session stands when it is
    /// written, so whatever order they run in, the last one is the truth.
    pub(super) async fn note_session(&self, id: ClientId) {
        let _turn = self.notes.lock().await;
        let Some((session, parked)) = self.hub.session_view(id) else {
            return;
        };
        let token = name_token(&session.name);
        let note = Parked {
            session,
            node: self.name.clone(),
            boot: self.boot,
        };
        let Ok(value) = serde_json::to_vec(&note) else {
            return;
        };
        if let Err(e) = self.layout.sessions.put(&token, value.into()).await {
            tracing::warn!("a session can be resumed on this node only: {e}");
        }
        self.mark_parked(&token, parked).await;
    }

    /// Notes session `id` in `sb-sessions` in the background (after a hello, a
    /// resume): its token's digest, which a resume on another node checks. Its rooms
    /// are in its seats in `sb-rooms`, so a join or a leave writes no note.
    pub(super) fn note_later(self: &Arc<Self>, id: ClientId) {
        let inner = Arc::clone(self);
        self.chores.spawn(async move {
            inner.note_session(id).await;
        });
    }

    /// Removes the note of session `id` (`name`), over: only if the note is still
    /// this node's, of that session (another node may have taken it over and noted
    /// it since), and the session has not been noted anew.
    async fn forget_note(&self, id: ClientId, name: &str) {
        let _turn = self.notes.lock().await;
        if self.hub.session_view(id).is_some() {
            return;
        }
        if let Ok(Some((revision, note))) = self.parked_record(name).await
            && note.session.client == id
            && note.node == self.name
            && note.boot == self.boot
        {
            let _ = (self.layout.sessions)
                .delete_expect_revision(&name_token(name), Some(revision))
                .await;
        }
    }

    /// The claim of name token `token` and its revision, read through the leader.
    async fn claim_of(&self, token: &str) -> Result<Option<(u64, Claim)>, HubError> {
        match read_latest(&self.layout.names, token)
            .await
            .map_err(unavailable)?
        {
            Some(Latest {
                revision,
                value: Some(value),
            }) => Ok((serde_json::from_slice::<Claim>(&value).ok()).map(|c| (revision, c))),
            _ => Ok(None),
        }
    }

    /// Whether the session holding `claim` may be taken from its node: it is parked
    /// there, or its node is gone.
    pub(super) fn may_take(&self, claim: &Claim) -> bool {
        claim.parked || self.gone(&claim.node, claim.boot)
    }

    /// Marks this node's claim of name token `token` parked or not, so that every node
    /// lists (and reaches by id) only the sessions online.
    async fn mark_parked(&self, token: &str, parked: bool) {
        let Some(revision) = self.own().get(token).copied() else {
            return;
        };
        let Some(held) = self
            .directory
            .holder(token)
            .filter(|h| h.revision == revision && h.claim.parked != parked)
        else {
            return;
        };
        let claim = Claim {
            parked,
            ..held.claim
        };
        let Ok(value) = serde_json::to_vec(&claim) else {
            return;
        };
        if let Ok(revision) = self
            .layout
            .names
            .update(token, value.into(), revision)
            .await
        {
            let mut own = self.own();
            // Unless the session ended meanwhile and the name was released.
            if own.contains_key(token) {
                own.insert(token.to_owned(), revision);
                self.directory.put(token.to_owned(), claim, revision);
            }
        }
    }

    /// The session parked as `name` on some node, with its revision.
    pub(super) async fn parked_record(
        &self,
        name: &str,
    ) -> Result<Option<(u64, Parked)>, HubError> {
        match read_latest(&self.layout.sessions, &name_token(name))
            .await
            .map_err(unavailable)?
        {
            Some(Latest {
                revision,
                value: Some(value),
            }) => Ok(serde_json::from_slice(&value).ok().map(|p| (revision, p))),
            _ => Ok(None),
        }
    }

    /// Removes the note of the session that held `claim` (of name token `token`), on a
    /// node that is gone, once its grace passed without a resume.
    pub(crate) async fn forget_dead_note(&self, token: &str, claim: &Claim) {
        if let Ok(Some((revision, note))) = self.parked_record(&claim.name).await
            && note.session.client == claim.client
            && note.node == claim.node
            && note.boot == claim.boot
        {
            let _ = (self.layout.sessions)
                .delete_expect_revision(token, Some(revision))
                .await;
        }
    }

    /// Removes the note of session `id` (`name`), over, in the background.
    pub(super) fn forget_later(self: &Arc<Self>, id: ClientId, name: &str) {
        let inner = Arc::clone(self);
        let name = name.to_owned();
        self.chores.spawn(async move {
            inner.forget_note(id, &name).await;
        });
    }

    /// Takes over for connection `new_id` the session of `name` parked on another
    /// node, if `proof` allows.
    pub(super) async fn take_over_elsewhere(
        self: Arc<Self>,
        new_id: ClientId,
        name: String,
        proof: Proven,
        seen: Option<Seen>,
        answer: impl FnOnce(Reply) -> Outbound,
    ) -> Result<(ClientId, String), HubError> {
        let refused = || HubError::NameTaken(name.clone());
        // A client back at once may be quicker than its old node's note that it was
        // parked: given a token, wait a moment for the note rather than have the hello
        // that follows end the very session it came back for.
        let token = name_token(&name);
        let mut steps = 0;
        let mut asked = false;
        let (parked_at, parked, revision, claim) = loop {
            let record = self.parked_record(&name).await?;
            let held = self.claim_of(&token).await?;
            if let (Some((at, parked)), Some((revision, claim))) = (record, held)
                && claim.client == parked.session.client
            {
                if self.may_take(&claim) {
                    break (at, parked, revision, claim);
                }
                // Still live on its node, whose connection has not been seen to end (a
                // half-open socket): its token takes it over at once, as on one node.
                // Its node is asked to close that connection and park the session.
                if !asked
                    && let Proven::Token(given) = &proof
                    && let Some(digest) = (parked.session.token.as_deref())
                        .filter(|d| unhex(d).is_some_and(|d| digest_matches(given, &d)))
                {
                    asked = true;
                    self.ask_to_surrender(&claim, digest).await;
                    continue;
                }
            }
            steps += 1;
            if steps > PARK_PATIENCE_STEPS || !matches!(proof, Proven::Token(_)) {
                return Err(refused());
            }
            tokio::time::sleep(PARK_PATIENCE_STEP).await;
        };
        if parked.node == self.name && parked.boot == self.boot {
            return Err(refused());
        }
        let proven = match &proof {
            Proven::Token(given) => (parked.session.token.as_deref())
                .and_then(unhex)
                .is_some_and(|digest| digest_matches(given, &digest)),
            Proven::Password => true,
        };
        if !proven {
            return Err(refused());
        }
        // The name moves to this node only if it is still the parked session's: the
        // compare-and-set names the revision read above.
        let moved = Claim {
            node: self.name.clone(),
            boot: self.boot,
            parked: false,
            ..claim
        };
        let value = serde_json::to_vec(&moved).map_err(unavailable)?;
        let revision = match self
            .layout
            .names
            .update(&token, value.into(), revision)
            .await
        {
            Ok(revision) => revision,
            Err(e) if lost_race(&e) => return Err(refused()),
            Err(e) => return Err(unavailable(e)),
        };
        let taken = Delivery::Taken {
            client: parked.session.client,
            name: parked.session.name.clone(),
        };
        self.settle(&token, parked_at, &parked.node, &taken).await;
        // The note is the session as it was last parked or resumed; the seats say
        // every room it is in now (a session noted live joins without a new note).
        let mut parked = parked;
        for room in self.seats_of(parked.session.client).await? {
            if !parked.session.seats.iter().any(|seat| seat.room == room) {
                parked.session.seats.push(ParkedSeat {
                    room,
                    said: 0,
                    queued: None,
                });
            }
        }
        let mut entering = Vec::with_capacity(parked.session.seats.len());
        let mut open = Vec::with_capacity(parked.session.seats.len());
        for seat in &parked.session.seats {
            if let Some((revision, record)) = self.room_record(&seat.room).await? {
                open.push(seat.clone());
                entering.push(self.entering(&seat.room));
                self.follow(&seat.room, &record).await?;
                if record.owner == parked.session.client {
                    self.own_room(&seat.room, revision, record).await;
                }
            }
        }
        // Only the rooms still open: a closed one's seat is not put back.
        parked.session.seats = open;
        self.hub.adopt_parked(&parked.session)?;
        self.own().insert(token.clone(), revision);
        self.directory.put(token, moved, revision);
        for seat in &parked.session.seats {
            self.seat(&seat.room, parked.session.client, &parked.session.name)
                .await?;
        }
        let resumed = self
            .hub
            .take_over(new_id, &name, Proof::Password, seen.as_ref(), answer)?;
        tracing::info!(
            name = %resumed.1,
            from = %parked.node,
            "session resumed from another node"
        );
        self.note_session(resumed.0).await;
        Ok(resumed)
    }

    /// Asks the node holding live session `claim` to close its connection
    /// (`replaced`) and park it: this node was given its token (whose digest is
    /// `digest`). Answered once the session is parked there, or not at all.
    async fn ask_to_surrender(&self, claim: &Claim, digest: &str) {
        let ask = Delivery::Surrender {
            client: claim.client,
            name: claim.name.clone(),
            digest: digest.to_owned(),
        };
        let Ok(payload) = serde_json::to_vec(&ask) else {
            return;
        };
        let request = self
            .client
            .request(node_subject(&claim.node), payload.into());
        match tokio::time::timeout(SURRENDER_WITHIN, request).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(node = %claim.node, "could not take a live session over from its node: {e}")
            }
            Err(_) => {
                tracing::warn!(node = %claim.node, "its node did not hand over a live session within {SURRENDER_WITHIN:?}")
            }
        }
    }

    /// Another node was given the token of live session `client` (`name`) here,
    /// whose digest is `digest`: its connection here is closed (`replaced`) and the
    /// session parked, noted and marked so, for that node to take over. Whether it
    /// was given up.
    pub(super) async fn surrender(
        self: Arc<Self>,
        client: ClientId,
        name: &str,
        digest: &str,
    ) -> bool {
        let Some(digest) = unhex(digest) else {
            return false;
        };
        let rooms = self.rooms_of(client);
        match self.hub.surrender(client, &digest) {
            Some(Departure::Parked(name)) => {
                self.parked().insert(name_token(&name), (client, rooms));
                Arc::clone(&self).park(client).await;
                tracing::info!(client_id = client, name = %name, "session taken over on another node: its connection here is replaced");
                true
            }
            Some(Departure::Gone(Some(ended))) => {
                self.ended(client, &ended, rooms);
                true
            }
            _ => {
                tracing::debug!(client_id = client, name = %name, "asked to hand over a session not live here");
                false
            }
        }
    }

    /// The parked session of name token `token` (written at `parked_at`) is dealt
    /// with: its note goes, and its node is told what became of it.
    async fn settle(&self, token: &str, parked_at: u64, node: &str, what: &Delivery) {
        let _ = (self.layout.sessions)
            .delete_expect_revision(token, Some(parked_at))
            .await;
        if let Ok(payload) = serde_json::to_vec(what) {
            let _ = self
                .client
                .publish(node_subject(node), payload.into())
                .await;
        }
    }

    /// This node no longer holds parked session `name` (another node took it over or
    /// ended it): its claim is not this node's to release; the rooms it was in.
    fn give_up(&self, name: &str) -> Vec<String> {
        let token = name_token(name);
        self.own().remove(&token);
        let parked = self.parked().remove(&token);
        parked.map(|(_, rooms)| rooms).unwrap_or_default()
    }

    /// Another node took over session `client` (`name`), parked here: it goes from
    /// this hub without a word, its name and seats now that node's.
    pub(super) fn taken_elsewhere(self: &Arc<Self>, client: ClientId, name: &str) {
        let rooms = self.give_up(name);
        self.hub.let_go(client);
        for room in rooms {
            self.release_room(&room);
        }
    }
}

impl Inner {
    /// Ends the session of `name` parked on another node, as a plain `hello` for its
    /// name does on one node: its claim is removed here (only if it is still the
    /// parked session's), and its node leaves its rooms. Its name, if it ended it.
    pub(super) async fn end_parked_elsewhere(self: Arc<Self>, name: String) -> Option<String> {
        let (parked_at, parked) = self.parked_record(&name).await.ok()??;
        if parked.node == self.name && parked.boot == self.boot {
            return None;
        }
        let token = name_token(&name);
        let Ok(Some(Latest {
            revision,
            value: Some(value),
        })) = read_latest(&self.layout.names, &token).await
        else {
            return None;
        };
        let claim: Claim = serde_json::from_slice(&value).ok()?;
        if claim.client != parked.session.client || !self.may_take(&claim) {
            return None;
        }
        let dead = self.gone(&claim.node, claim.boot);
        (self.layout.names)
            .delete_expect_revision(&token, Some(revision))
            .await
            .ok()?;
        self.directory.remove(&token);
        let ended = Delivery::Ended {
            client: parked.session.client,
            name: parked.session.name.clone(),
        };
        self.settle(&token, parked_at, &parked.node, &ended).await;
        if dead {
            // Its node is gone: this node leaves its rooms (all it has seats in) for it.
            let mut rooms: Vec<String> = (parked.session.seats.iter())
                .map(|s| s.room.clone())
                .collect();
            for room in self
                .seats_of(parked.session.client)
                .await
                .unwrap_or_default()
            {
                if !rooms.contains(&room) {
                    rooms.push(room);
                }
            }
            let name = parked.session.name.clone();
            let gone = (claim.node.clone(), claim.boot);
            (Arc::clone(&self))
                .left_rooms_for(parked.session.client, name, rooms, gone)
                .await;
        }
        tracing::info!(name = %parked.session.name, node = %parked.node, "parked session on another node ended: its name said hello anew");
        Some(parked.session.name)
    }

    /// Another node ended session `client` (`name`), parked here: it leaves its rooms
    /// (closing those it owned) as if it had said `bye`; its name is that node's to
    /// give now.
    pub(super) fn ended_elsewhere(self: &Arc<Self>, client: ClientId, name: &str) {
        let rooms = self.give_up(name);
        self.hub.end_parked(name);
        if !rooms.is_empty() {
            let inner = Arc::clone(self);
            let name = name.to_owned();
            self.chores.spawn(inner.left_rooms(client, name, rooms));
        }
    }
}

fn unhex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
