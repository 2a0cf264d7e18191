//! The `burst` scenario: a room of N members where everyone says one line at once and
//! every member reads everything, all along. Every member should get every other
//! member's line, N×(N−1) deliveries, and nobody should be cut as a slow consumer:
//! each of them is reading. Optionally K more members join and never read; those the
//! server should cut. Reports deliveries expected and received, members cut, the time
//! from the burst to each delivery, and deliveries per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::target::{Conn, Reply, Target, native_request};
use super::{BenchError, Report, STOP, histogram};
use crate::cli::oneshot::{guest_names, random_u32};

pub struct BurstOptions {
    pub target: Target,
    pub addr: String,
    /// Members who read all along; each says one line.
    pub members: usize,
    /// Members who join and never read.
    pub stall: usize,
    /// How long, from the burst, the stalled members stay unread before they are
    /// checked for having been cut.
    pub hold: Duration,
    /// Bytes of text per line.
    pub size: usize,
}

/// What the burst said and delivered, beside the latencies of [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Lines said and acknowledged (one per member not cut before the burst).
    pub said: u64,
    /// Deliveries owed: every member gets every other member's line.
    pub expected: u64,
    pub received: u64,
    /// Members whose connection ended (an `error` event such as `slow_consumer`, or a
    /// close) before they had everything.
    pub cut: u64,
    /// Members that heard nothing for [`QUIET`] while lines said had not reached them.
    pub gave_up: u64,
    /// Members that never read, and how many of them the server cut.
    pub stalled: usize,
    pub stalled_cut: usize,
}

impl Counts {
    pub fn notes(&self) -> String {
        let mut notes = format!(
            "said {}, received {} of {}, cut {}",
            self.said, self.received, self.expected, self.cut
        );
        if self.gave_up > 0 {
            notes.push_str(&format!(", {} heard nothing for {QUIET:?}", self.gave_up));
        }
        if self.stalled > 0 {
            notes.push_str(&format!(
                ", stalled {} of which cut {}",
                self.stalled, self.stalled_cut
            ));
        }
        notes
    }
}

/// Connections being opened and joined at once.
const OPENING: usize = 256;
/// A member that hears nothing for this long after the burst stops waiting.
const QUIET: Duration = Duration::from_secs(10);
/// A stalled member is read at the end until it closes, or until it stays silent
/// this long: then the server had not cut it.
const SILENT: Duration = Duration::from_secs(1);
/// The receive buffer of a stalled member: small, so that the server's queue for it
/// grows instead of the kernel's buffers.
const STALLED_BUFFER: u32 = 4096;

/// What one reading member heard.
struct Heard {
    latencies: hdrhistogram::Histogram<u64>,
    got: u64,
    said: bool,
    cut: bool,
    gave_up: bool,
    last: Option<Instant>,
}

impl Heard {
    fn delivered(&mut self, start: Instant) {
        let now = Instant::now();
        let _ = self
            .latencies
            .record(now.saturating_duration_since(start).as_micros().max(1) as u64);
        self.got += 1;
        self.last = Some(now);
    }
}

/// The lines of the burst as they are settled, so that each member knows when it has
/// every line there is: a member cut before it said its line never says it.
struct Tally {
    members: usize,
    settled: AtomicUsize,
    said: AtomicU64,
    /// Lines said in all, once every member's line is settled.
    all_said: watch::Sender<Option<u64>>,
}

/// One member's line in the [`Tally`]: settled once, as said or not (if never, when
/// the member is done).
struct Line {
    tally: Arc<Tally>,
    settled: bool,
}

impl Line {
    fn settle(&mut self, said: bool) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let tally = &self.tally;
        if said {
            tally.said.fetch_add(1, Ordering::SeqCst);
        }
        if tally.settled.fetch_add(1, Ordering::SeqCst) + 1 == tally.members {
            tally
                .all_said
                .send_replace(Some(tally.said.load(Ordering::SeqCst)));
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.settle(false);
    }
}

async fn join(
    target: Target,
    addr: &str,
    name: &str,
    room: &str,
    receive_buffer: Option<u32>,
) -> Result<Conn, BenchError> {
    let mut conn = Conn::connect_with(target, addr, receive_buffer)
        .await?
        .handshake(name)
        .await?;
    conn.request(&native_request(
        &serde_json::json!({"id": 1, "op": "join_room", "room": room}),
    ))
    .await
    .map_err(|e| match e {
        BenchError::Refused(why) if why.starts_with("no_such_room") => BenchError::Refused(
            format!("{why} (its owner's connection ended before every member had joined)"),
        ),
        e => e,
    })?;
    Ok(conn)
}

/// Reads everything until the burst, says its line, then reads until it has its own
/// answer and the lines of all the others (`expect`, or fewer if some were never said).
async fn member(
    mut conn: Conn,
    mut go: watch::Receiver<Option<Instant>>,
    say: Arc<Vec<u8>>,
    expect: u64,
    tally: Arc<Tally>,
) -> Heard {
    let mut all_said = tally.all_said.subscribe();
    let mut line = Line {
        tally,
        settled: false,
    };
    let mut heard = Heard {
        latencies: histogram(),
        got: 0,
        said: false,
        cut: false,
        gave_up: false,
        last: None,
    };
    let start = loop {
        tokio::select! {
            changed = go.changed() => {
                if changed.is_err() {
                    return heard;
                }
                if let Some(start) = *go.borrow_and_update() {
                    break start;
                }
            }
            reply = conn.next() => match reply {
                Err(_) | Ok(Reply::Cut(_)) => {
                    heard.cut = true;
                    return heard;
                }
                // A member quicker to hear the start has said its line already.
                Ok(Reply::Delivery(_)) => {
                    let start = (*go.borrow()).unwrap_or_else(Instant::now);
                    heard.delivered(start);
                }
                Ok(_) => {}
            },
        }
    };
    if conn.write(&say).await.is_err() {
        heard.cut = true;
        return heard;
    }
    let mut answered = false;
    loop {
        let there_are = all_said
            .borrow()
            .map_or(expect, |all| all.saturating_sub(u64::from(heard.said)));
        if answered && heard.got >= there_are {
            break;
        }
        let reply = tokio::select! {
            () = STOP.cancelled() => break,
            Ok(()) = all_said.changed() => continue,
            reply = tokio::time::timeout(QUIET, conn.next()) => reply,
        };
        match reply {
            Err(_) => {
                heard.gave_up = true;
                break;
            }
            Ok(Err(_)) | Ok(Ok(Reply::Cut(_))) => {
                heard.cut = true;
                break;
            }
            Ok(Ok(Reply::Delivery(_))) => heard.delivered(start),
            Ok(Ok(Reply::Answer)) => {
                answered = true;
                heard.said = true;
                line.settle(true);
            }
            Ok(Ok(Reply::Refused(_))) => {
                answered = true;
                line.settle(false);
            }
            Ok(Ok(Reply::Other)) => {}
        }
    }
    heard
}

/// Whether the server cut a member that never read: its stream ends (after an
/// `error` event) rather than going silent.
async fn was_cut(mut conn: Conn) -> bool {
    loop {
        match tokio::time::timeout(SILENT, conn.next()).await {
            Err(_) => return false,
            Ok(Err(_)) | Ok(Ok(Reply::Cut(_))) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

pub async fn run(options: &BurstOptions) -> Result<Report, BenchError> {
    let target = options.target;
    if target != Target::Switchboard {
        return Err(BenchError::Unsupported(format!(
            "`burst` measures switchboard's rooms, not {}",
            target.name()
        )));
    }
    let n = options.members.max(2);
    let names = guest_names();
    let room = format!("burst-{:08x}", random_u32());
    let addr = options.addr.as_str();
    let mut owner = Conn::open(target, addr, &names(0)).await?;
    owner
        .request(&native_request(
            &serde_json::json!({"id": 1, "op": "create_room", "room": room}),
        ))
        .await?;

    let text = "x".repeat(options.size.max(1));
    let say = Arc::new(native_request(
        &serde_json::json!({"id": 2, "op": "say", "room": room, "text": text}),
    ));
    let expect = n as u64 - 1;
    let (go_tx, go) = watch::channel(None);
    let tally = Arc::new(Tally {
        members: n,
        settled: AtomicUsize::new(0),
        said: AtomicU64::new(0),
        all_said: watch::channel(None).0,
    });
    let (joined_tx, mut joined) = mpsc::channel::<Result<(), BenchError>>(OPENING);
    let opening = Arc::new(Semaphore::new(OPENING));
    let mut members: Vec<JoinHandle<Heard>> = Vec::with_capacity(n);
    members.push(tokio::spawn(member(
        owner,
        go.clone(),
        say.clone(),
        expect,
        Arc::clone(&tally),
    )));
    for i in 1..n {
        let (name, room, addr) = (names(i), room.clone(), options.addr.clone());
        let (go, say, joined_tx) = (go.clone(), say.clone(), joined_tx.clone());
        let (opening, tally) = (Arc::clone(&opening), Arc::clone(&tally));
        members.push(tokio::spawn(async move {
            let conn = {
                let _permit = opening.acquire().await;
                join(target, &addr, &name, &room, None).await
            };
            match conn {
                Ok(conn) => {
                    let _ = joined_tx.send(Ok(())).await;
                    member(conn, go, say, expect, tally).await
                }
                Err(e) => {
                    let _ = joined_tx.send(Err(e)).await;
                    std::future::pending().await
                }
            }
        }));
    }
    drop(joined_tx);
    let abort = |members: &[JoinHandle<Heard>]| members.iter().for_each(JoinHandle::abort);
    for _ in 1..n {
        let outcome = tokio::select! {
            () = STOP.cancelled() => Err(BenchError::Interrupted),
            outcome = joined.recv() => outcome.unwrap_or(Err(BenchError::Interrupted)),
        };
        if let Err(e) = outcome {
            abort(&members);
            return Err(e);
        }
    }
    let mut stalled = Vec::with_capacity(options.stall);
    for i in 0..options.stall {
        let name = names(n + i);
        match join(target, addr, &name, &room, Some(STALLED_BUFFER)).await {
            Ok(conn) => stalled.push(conn),
            Err(e) => {
                abort(&members);
                return Err(e);
            }
        }
    }

    let start = Instant::now();
    let _ = go_tx.send(Some(start));
    let mut all = histogram();
    let mut counts = Counts {
        said: 0,
        expected: n as u64 * expect,
        received: 0,
        cut: 0,
        gave_up: 0,
        stalled: stalled.len(),
        stalled_cut: 0,
    };
    let mut last = start;
    for handle in members {
        let heard = handle.await.map_err(|e| BenchError::Task(e.to_string()))?;
        let _ = all.add(&heard.latencies);
        counts.said += u64::from(heard.said);
        counts.received += heard.got;
        let everything = heard.got >= expect;
        counts.cut += u64::from(heard.cut && !everything);
        counts.gave_up += u64::from(heard.gave_up);
        last = last.max(heard.last.unwrap_or(start));
    }
    if !stalled.is_empty() {
        tokio::select! {
            () = STOP.cancelled() => {}
            () = tokio::time::sleep_until((start + options.hold).into()) => {}
        }
        let checks: Vec<_> = stalled
            .into_iter()
            .map(|conn| tokio::spawn(was_cut(conn)))
            .collect();
        for check in checks {
            let cut = check.await.map_err(|e| BenchError::Task(e.to_string()))?;
            counts.stalled_cut += usize::from(cut);
        }
    }
    let mut report = Report::new("burst", target, n, &all, last - start);
    report.lost = Some(counts.expected.saturating_sub(counts.received));
    report.burst = Some(counts);
    Ok(report)
}
