//! The queue of commands from the sessions to the store thread.
//!
//! A `Mutex<VecDeque>` rather than std's mpsc channel, whose send cost about 730
//! instructions (it allocates and zeroes a block for every 31 commands). Here a send is
//! a lock and a push; the store thread is woken only when it sleeps waiting for as many
//! commands as are now queued, and takes everything waiting under one lock. An inline
//! store, a task rather than a thread, waits on a tokio `Notify` instead.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::Command;

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    /// Set for a store that is a task: every send, and the last handle's drop, wake it.
    task: Option<tokio::sync::Notify>,
}

#[derive(Default)]
struct State {
    commands: VecDeque<Command>,
    /// Handles that may still send; none left and nothing queued is the end.
    senders: usize,
    /// The store thread is gone: sends are refused.
    closed: bool,
    /// The store thread sleeps on `ready`...
    waiting: bool,
    /// ...until this many commands are queued.
    wanted: usize,
}

impl Shared {
    /// The state, even if a thread panicked while holding it: every change to it is a
    /// single push, pop or flag, so it is never left half done.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A queue for a store of `kind`.
pub(super) fn queue(kind: Kind) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        task: (kind == Kind::Task).then(tokio::sync::Notify::new),
        ..Shared::default()
    });
    shared.lock().senders = 1;
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

/// What takes the commands: a thread of its own, or a task of the async runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Thread,
    Task,
}

pub(super) struct Sender(Arc<Shared>);

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.0.lock();
        f.debug_struct("Sender")
            .field("queued", &state.commands.len())
            .field("senders", &state.senders)
            .finish()
    }
}

impl Sender {
    /// Queues `command`; hands it back if the store thread is gone.
    pub fn send(&self, command: Command) -> Result<(), Command> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(command);
        }
        state.commands.push_back(command);
        let wake = state.waiting && state.commands.len() >= state.wanted;
        if wake {
            state.waiting = false;
        }
        drop(state);
        if wake {
            self.0.ready.notify_one();
        }
        if let Some(task) = &self.0.task {
            task.notify_one();
        }
        Ok(())
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(Arc::clone(&self.0))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        if state.senders == 0 {
            drop(state);
            self.0.ready.notify_one();
            if let Some(task) = &self.0.task {
                task.notify_one();
            }
        }
    }
}

/// What [`Receiver::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// This many commands were added to the batch (maybe none).
    Some(usize),
    /// Nothing is queued and no handle is left to send more.
    Ended,
}

pub(super) struct Receiver(Arc<Shared>);

impl Receiver {
    /// For a store that is a task: returns once a command was queued or the last handle
    /// dropped since the last return (possibly at once, for one already taken).
    pub async fn notified(&self) {
        if let Some(task) = &self.0.task {
            task.notified().await;
        }
    }

    /// Moves up to `max` waiting commands to `batch`, without waiting.
    pub fn take(&self, batch: &mut Vec<Command>, max: usize) -> Taken {
        let mut state = self.0.lock();
        if state.commands.is_empty() && state.senders == 0 {
            return Taken::Ended;
        }
        let n = state.commands.len().min(max);
        batch.extend(state.commands.drain(..n));
        Taken::Some(n)
    }

    /// Waits until a command is queued (true) or no handle is left to send one (false).
    pub fn wait(&self) -> bool {
        self.wait_for(1, None)
    }

    /// Waits until `n` commands are queued or `until` has passed (true), or no handle
    /// is left to send more (false). One sleep, woken by the send that makes `n`: the
    /// store thread no longer wakes up every few microseconds to count.
    pub fn wait_for(&self, n: usize, until: Option<Instant>) -> bool {
        let mut state = self.0.lock();
        loop {
            if state.commands.len() >= n {
                return true;
            }
            if state.senders == 0 {
                return !state.commands.is_empty();
            }
            state.waiting = true;
            state.wanted = n.max(1);
            state = match until {
                None => self
                    .0
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.waiting = false;
                        return true;
                    }
                    match self.0.ready.wait_timeout(state, left) {
                        Ok((state, _)) => state,
                        Err(poisoned) => poisoned.into_inner().0,
                    }
                }
            };
        }
    }
}

impl Drop for Receiver {
    /// Refuses further sends, and drops what is queued (outside the lock), so that the
    /// sessions waiting on those commands are answered that the store is closed.
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        let orphans = std::mem::take(&mut state.commands);
        drop(state);
        drop(orphans);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::super::Op;
    use super::*;

    fn command(
        name: &str,
    ) -> (
        Command,
        oneshot::Receiver<Result<super::super::Outcome, super::super::StoreError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        let op = Op::Seen { name: name.into() };
        (Command { op, reply }, answer)
    }

    fn name(cmd: &Command) -> &str {
        match &cmd.op {
            Op::Seen { name } => name,
            _ => "",
        }
    }

    #[test]
    fn commands_come_out_in_order_and_at_most_max_at_a_time() {
        let (tx, rx) = queue(Kind::Thread);
        for n in ["a", "b", "c"] {
            assert!(tx.send(command(n).0).is_ok());
        }
        let mut batch = Vec::new();
        assert_eq!(rx.take(&mut batch, 2), Taken::Some(2));
        assert_eq!(rx.take(&mut batch, 2), Taken::Some(1));
        assert_eq!(rx.take(&mut batch, 2), Taken::Some(0));
        assert_eq!(batch.iter().map(name).collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn the_end_comes_once_every_sender_is_gone_and_all_is_taken() {
        let (tx, rx) = queue(Kind::Thread);
        let other = tx.clone();
        drop(tx);
        assert!(other.send(command("a").0).is_ok());
        drop(other);
        assert!(rx.wait());
        let mut batch = Vec::new();
        assert_eq!(rx.take(&mut batch, 10), Taken::Some(1));
        assert_eq!(rx.take(&mut batch, 10), Taken::Ended);
        assert!(!rx.wait());
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send_from_another_thread() {
        let (tx, rx) = queue(Kind::Thread);
        let shared = Arc::clone(&rx.0);
        let sender = std::thread::spawn(move || {
            // Sends only once the receiver sleeps, so that the wake-up is what is tested.
            while !shared.lock().waiting {
                std::thread::yield_now();
            }
            assert!(tx.send(command("a").0).is_ok());
        });
        assert!(rx.wait());
        assert!(sender.join().is_ok());
    }

    #[test]
    fn a_gathering_receiver_is_woken_by_the_send_that_makes_its_count() {
        let (tx, rx) = queue(Kind::Thread);
        assert!(tx.send(command("a").0).is_ok());
        let shared = Arc::clone(&rx.0);
        let sender = std::thread::spawn(move || {
            while !shared.lock().waiting {
                std::thread::yield_now();
            }
            // One more is not enough to wake it; the second is.
            assert!(tx.send(command("b").0).is_ok());
            assert!(shared.lock().waiting);
            assert!(tx.send(command("c").0).is_ok());
        });
        assert!(rx.wait_for(3, None));
        assert!(sender.join().is_ok());
        let mut batch = Vec::new();
        assert_eq!(rx.take(&mut batch, 10), Taken::Some(3));
    }

    #[test]
    fn a_gathering_receiver_gives_up_at_its_deadline() {
        let (tx, rx) = queue(Kind::Thread);
        assert!(tx.send(command("a").0).is_ok());
        assert!(rx.wait_for(5, Some(Instant::now())));
        let mut batch = Vec::new();
        assert_eq!(rx.take(&mut batch, 10), Taken::Some(1));
    }

    #[test]
    fn without_a_receiver_sends_are_refused_and_queued_commands_answered_closed() {
        let (tx, rx) = queue(Kind::Thread);
        let (queued, mut answer) = command("a");
        assert!(tx.send(queued).is_ok());
        drop(rx);
        assert_eq!(
            answer.try_recv().err(),
            Some(oneshot::error::TryRecvError::Closed)
        );
        assert!(tx.send(command("b").0).is_err());
    }
}
