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

use std::fmt::Write as _;
use std::net::SocketAddr;

use proptest::prelude::*;

use crate::common::TestServer;

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

mod model;
mod sessions;
mod world;

use world::World;

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
