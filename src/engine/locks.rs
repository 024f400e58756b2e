//! The lock table: row locks, which UPDATE, DELETE, INSERT and SELECT ... FOR
//! UPDATE/SHARE take on the rows they change or read, and advisory locks,
//! which applications and migration tools take for their own purposes
//! (`pg_advisory_lock` and its family).
//!
//! A lock is on a [`Target`] (a row, by its storage key, or an advisory key)
//! in one of four [`Mode`]s, with PostgreSQL's conflict table between the
//! row lock modes; advisory locks use two of them (shared: `Share`,
//! exclusive: `Update`). A session holds a lock until its transaction ends
//! or, for session-level advisory locks, until it unlocks it; it may take
//! the same lock again and never conflicts with itself.
//!
//! A session that asks for a lock another session holds in a conflicting
//! mode queues behind it, and behind earlier waiters whose modes conflict
//! (fair: a stream of readers cannot starve a writer). It waits until it is
//! admitted, the statement is cancelled or times out (57014), `lock_timeout`
//! passes (55P03), or the wait closes a cycle of sessions waiting on each
//! other (40P01, looked for once after `deadlock_timeout`, one second
//! unless the session sets it).
//!
//! ```text
//!   locks:  row t/1   -> NoKeyUpdate by session 3            queue: [5 Update]
//!           adv 42    -> Update by session 5 (2 session-level holds)
//!   held:   3 -> [row t/1]     5 -> [adv 42]
//!   waiting 5 -> row t/1 (5 waits for 3)
//! ```
//!
//! Row locks live in memory only, so they are as many as the rows a
//! transaction changes, next to the writes it buffers anyway.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::cancel::Canceller;
use super::error::{Error, Result, SqlState};

/// Who holds a lock: a session, by id.
pub type SessionId = u64;

/// How long a waiter waits before it looks for a deadlock, unless the
/// session sets `deadlock_timeout`.
pub const DEADLOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// What a lock is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An advisory lock key: one bigint, or a pair of integers (its own space).
    Advisory(i128),
    /// A table row, by its storage key (which begins with the table id).
    Row(Box<[u8]>),
    /// A whole table, by id: writers hold it shared (`KeyShare`, as
    /// PostgreSQL's ROW EXCLUSIVE), and building an index holds it
    /// exclusively (`Update`, as SHARE), so no write goes unindexed.
    Table(u32),
}

/// The lock modes, weakest first, with PostgreSQL's row lock conflicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// FOR KEY SHARE: conflicts with `Update` only.
    KeyShare,
    /// FOR SHARE, and shared advisory locks.
    Share,
    /// FOR NO KEY UPDATE, and UPDATE of columns outside the primary key.
    NoKeyUpdate,
    /// FOR UPDATE, DELETE, INSERT, UPDATE of a key, and exclusive advisory locks.
    Update,
}

impl Mode {
    /// Whether two sessions may hold a lock in `self` and `other` at once.
    pub fn conflicts(self, other: Mode) -> bool {
        use Mode::*;
        matches!(
            (self, other),
            (Update, _) | (_, Update) | (NoKeyUpdate, NoKeyUpdate | Share) | (Share, NoKeyUpdate)
        )
    }

    /// The name pg_locks gives the mode.
    pub fn name(self, target: &Target) -> &'static str {
        match (target, self) {
            (Target::Advisory(_), Mode::Update) => "ExclusiveLock",
            (Target::Advisory(_), _) => "ShareLock",
            (Target::Table(_), Mode::Update) => "ShareLock",
            (Target::Table(_), _) => "RowExclusiveLock",
            (_, Mode::KeyShare) => "ForKeyShare",
            (_, Mode::Share) => "ForShare",
            (_, Mode::NoKeyUpdate) => "ForNoKeyUpdate",
            (_, Mode::Update) => "ForUpdate",
        }
    }
}

/// How long a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Until unlocked, or the session ends (advisory locks only).
    Session,
    /// Until the transaction ends.
    Transaction,
}

/// One session's hold on one lock in one mode: counts per scope.
#[derive(Clone, Copy, Debug)]
struct Holder {
    session: SessionId,
    mode: Mode,
    in_session: u32,
    in_transaction: u32,
}

impl Holder {
    fn count(&self) -> u32 {
        self.in_session + self.in_transaction
    }
}

#[derive(Default)]
struct Lock {
    holders: Vec<Holder>,
    /// Sessions waiting for the lock, in arrival order.
    queue: VecDeque<(SessionId, Mode)>,
}

impl Lock {
    /// The sessions `session` must wait for to take the lock in `mode`:
    /// other holders in a conflicting mode and, unless it already holds the
    /// lock, conflicting waiters queued ahead of it.
    fn blockers(&self, session: SessionId, mode: Mode) -> Vec<SessionId> {
        let mut blockers: Vec<SessionId> = self
            .holders
            .iter()
            .filter(|h| h.session != session && h.mode.conflicts(mode))
            .map(|h| h.session)
            .collect();
        if !self.holders.iter().any(|h| h.session == session) {
            let ahead = self
                .queue
                .iter()
                .take_while(|(s, _)| *s != session)
                .filter(|(s, m)| *s != session && m.conflicts(mode))
                .map(|(s, _)| *s);
            blockers.extend(ahead);
        }
        blockers.sort_unstable();
        blockers.dedup();
        blockers
    }

    /// Whether `session` holds the lock in `mode` or a stronger one, which
    /// excludes everything `mode` does (row locks need no second hold then).
    fn covers(&self, session: SessionId, mode: Mode) -> bool {
        self.holders
            .iter()
            .any(|h| h.session == session && h.mode >= mode)
    }

    fn is_free(&self) -> bool {
        self.holders.is_empty() && self.queue.is_empty()
    }
}

#[derive(Default)]
struct State {
    locks: HashMap<Target, Lock, ahash::RandomState>,
    /// The targets each session holds a lock on.
    held: HashMap<SessionId, Vec<Target>, ahash::RandomState>,
    /// What each waiting session waits for, and since when.
    waiting: HashMap<SessionId, (Target, Mode, Instant), ahash::RandomState>,
}

impl State {
    /// Removes `session`'s place in the queue of `target`.
    fn dequeue(&mut self, session: SessionId, target: &Target) {
        self.waiting.remove(&session);
        if let Some(lock) = self.locks.get_mut(target) {
            lock.queue.retain(|(s, _)| *s != session);
            if lock.is_free() {
                self.locks.remove(target);
            }
        }
    }
}

/// Every lock of a database; see the module docs.
#[derive(Default)]
pub struct Locks {
    state: Mutex<State>,
    released: Condvar,
}

/// How a wait for a lock may end early.
pub struct Wait<'a> {
    /// Whether to wait at all (false: try once, as `pg_try_advisory_lock`,
    /// NOWAIT and SKIP LOCKED do).
    pub block: bool,
    /// The session's `lock_timeout`; None for none.
    pub lock_timeout: Option<Duration>,
    /// The session's `deadlock_timeout`.
    pub deadlock_timeout: Duration,
    /// The session's statement cancel switch (cancel and statement_timeout).
    pub canceller: &'a Canceller,
    /// Names a session in messages (its process id on a server).
    pub describe: &'a dyn Fn(SessionId) -> String,
}

/// One lock, as pg_locks shows it.
pub struct LockRow {
    pub target: Target,
    pub session: SessionId,
    pub mode: Mode,
    pub granted: bool,
    /// When a waiter began waiting.
    pub waitstart: Option<Instant>,
}

impl Locks {
    /// Takes a lock on `target` in `mode` for `session`; false when
    /// `wait.block` is off and another session's lock conflicts.
    pub fn lock(
        &self,
        session: SessionId,
        target: &Target,
        mode: Mode,
        scope: Scope,
        wait: &Wait<'_>,
    ) -> Result<bool> {
        let started = Instant::now();
        let mut state = self.state.lock();
        let mut checked_deadlock = false;
        let mut queued = false;
        loop {
            let lock = state.locks.entry(target.clone()).or_default();
            if matches!(target, Target::Row(_)) && lock.covers(session, mode) {
                return Ok(true);
            }
            let blockers = lock.blockers(session, mode);
            if blockers.is_empty() {
                let first = !lock.holders.iter().any(|h| h.session == session);
                let holder = match lock
                    .holders
                    .iter_mut()
                    .find(|h| h.session == session && h.mode == mode)
                {
                    Some(holder) => holder,
                    None => {
                        lock.holders.push(Holder {
                            session,
                            mode,
                            in_session: 0,
                            in_transaction: 0,
                        });
                        lock.holders.last_mut().expect("just pushed")
                    }
                };
                match scope {
                    Scope::Session => holder.in_session += 1,
                    Scope::Transaction => holder.in_transaction += 1,
                }
                if first {
                    state.held.entry(session).or_default().push(target.clone());
                }
                if queued {
                    state.dequeue(session, target);
                    // Waiters queued behind this one may now go first.
                    self.released.notify_all();
                }
                return Ok(true);
            }
            if !wait.block {
                if lock.is_free() {
                    state.locks.remove(target);
                }
                return Ok(false);
            }
            if !queued {
                queued = true;
                lock.queue.push_back((session, mode));
                state
                    .waiting
                    .insert(session, (target.clone(), mode, started));
            }
            let stop = if let Some(e) = wait.canceller.interrupted() {
                Some(e)
            } else if wait.lock_timeout.is_some_and(|t| started.elapsed() >= t) {
                Some(Error::TransactionState {
                    code: SqlState::LOCK_NOT_AVAILABLE,
                    message: format!(
                        "canceling statement due to lock timeout (waiting for {} held by {})",
                        describe_target(target),
                        describe_all(&blockers, wait.describe)
                    ),
                })
            } else if !checked_deadlock && started.elapsed() >= wait.deadlock_timeout {
                checked_deadlock = true;
                deadlock(&state, session, wait.describe)
            } else {
                None
            };
            if let Some(e) = stop {
                state.dequeue(session, target);
                drop(state);
                self.released.notify_all();
                return Err(e);
            }
            self.released
                .wait_for(&mut state, Duration::from_millis(20));
        }
    }

    /// Releases one session-level hold of advisory lock `target` in `mode`;
    /// false when `session` holds none (PostgreSQL then warns).
    pub fn unlock(&self, session: SessionId, target: &Target, mode: Mode) -> bool {
        let mut state = self.state.lock();
        let Some(lock) = state.locks.get_mut(target) else {
            return false;
        };
        let Some(i) = lock
            .holders
            .iter()
            .position(|h| h.session == session && h.mode == mode && h.in_session > 0)
        else {
            return false;
        };
        lock.holders[i].in_session -= 1;
        if lock.holders[i].count() == 0 {
            lock.holders.remove(i);
        }
        let still_held = lock.holders.iter().any(|h| h.session == session);
        if lock.is_free() {
            state.locks.remove(target);
        }
        if !still_held {
            if let Some(targets) = state.held.get_mut(&session) {
                targets.retain(|t| t != target);
            }
        }
        drop(state);
        self.released.notify_all();
        true
    }

    /// Releases `session`'s holds of `scope` (`Transaction`: its transaction
    /// ended; `Session`: `pg_advisory_unlock_all`, which leaves transaction
    /// holds), or every hold it has when `scope` is None (it ended).
    pub fn release(&self, session: SessionId, scope: Option<Scope>) {
        let mut state = self.state.lock();
        let Some(targets) = state.held.remove(&session) else {
            return;
        };
        let mut kept = Vec::new();
        for target in targets {
            let Some(lock) = state.locks.get_mut(&target) else {
                continue;
            };
            lock.holders.retain_mut(|h| {
                if h.session != session {
                    return true;
                }
                match scope {
                    Some(Scope::Session) => h.in_session = 0,
                    Some(Scope::Transaction) => h.in_transaction = 0,
                    None => return false,
                }
                h.count() > 0
            });
            let still_held = lock.holders.iter().any(|h| h.session == session);
            if lock.is_free() {
                state.locks.remove(&target);
            }
            if still_held {
                kept.push(target);
            }
        }
        if !kept.is_empty() {
            state.held.insert(session, kept);
        }
        drop(state);
        self.released.notify_all();
    }

    /// Every lock held or awaited, for pg_locks: held ones first.
    pub fn rows(&self) -> Vec<LockRow> {
        let state = self.state.lock();
        let mut rows = Vec::new();
        for (target, lock) in &state.locks {
            for holder in &lock.holders {
                rows.push(LockRow {
                    target: target.clone(),
                    session: holder.session,
                    mode: holder.mode,
                    granted: true,
                    waitstart: None,
                });
            }
        }
        for (session, (target, mode, since)) in &state.waiting {
            rows.push(LockRow {
                target: target.clone(),
                session: *session,
                mode: *mode,
                granted: false,
                waitstart: Some(*since),
            });
        }
        rows
    }

    /// The sessions `session` waits for, if it waits (pg_blocking_pids).
    pub fn blocking(&self, session: SessionId) -> Vec<SessionId> {
        let state = self.state.lock();
        state
            .waiting
            .get(&session)
            .and_then(|(target, mode, _)| {
                state.locks.get(target).map(|l| l.blockers(session, *mode))
            })
            .unwrap_or_default()
    }

    /// What `session` is waiting for, if it is.
    pub fn waiting_for(&self, session: SessionId) -> Option<Target> {
        self.state
            .lock()
            .waiting
            .get(&session)
            .map(|(t, _, _)| t.clone())
    }
}

/// How messages name what is locked.
fn describe_target(target: &Target) -> String {
    match target {
        Target::Advisory(key) => format!("advisory lock {key}"),
        Target::Row(_) => "a row lock".into(),
        Target::Table(_) => "a table lock".into(),
    }
}

fn describe_all(sessions: &[SessionId], describe: &dyn Fn(SessionId) -> String) -> String {
    let names: Vec<String> = sessions.iter().map(|s| describe(*s)).collect();
    names.join(", ")
}

/// 40P01 when `session` waits (through the sessions blocking it, and what
/// they wait for) on itself; the message names each process of the cycle
/// and what it waits for, as PostgreSQL's detail does.
fn deadlock(
    state: &State,
    session: SessionId,
    describe: &dyn Fn(SessionId) -> String,
) -> Option<Error> {
    let blockers_of = |s: SessionId| -> Vec<SessionId> {
        state
            .waiting
            .get(&s)
            .and_then(|(target, mode, _)| state.locks.get(target).map(|l| l.blockers(s, *mode)))
            .unwrap_or_default()
    };
    // Depth-first search for a path from `session` back to itself.
    let mut path = vec![(session, blockers_of(session))];
    let mut seen = std::collections::HashSet::from([session]);
    while let Some((_, next)) = path.last_mut() {
        let Some(other) = next.pop() else {
            path.pop();
            continue;
        };
        if other == session {
            let steps: Vec<String> = path
                .iter()
                .enumerate()
                .map(|(i, (s, _))| {
                    let blocker = path.get(i + 1).map_or(session, |(b, _)| *b);
                    let what = state
                        .waiting
                        .get(s)
                        .map_or_else(String::new, |(t, _, _)| describe_target(t));
                    format!(
                        "{} waits for {what}; blocked by {}.",
                        describe(*s),
                        describe(blocker)
                    )
                })
                .collect();
            return Some(Error::TransactionState {
                code: SqlState::DEADLOCK_DETECTED,
                message: format!("deadlock detected: {}", steps.join(" ")),
            });
        }
        if seen.insert(other) {
            path.push((other, blockers_of(other)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::Mode::*;

    #[test]
    fn row_lock_modes_conflict_as_in_postgresql() {
        // PostgreSQL's table "Conflicting Row-Level Locks", row by row.
        let modes = [KeyShare, Share, NoKeyUpdate, Update];
        let table = [
            [false, false, false, true],
            [false, false, true, true],
            [false, true, true, true],
            [true, true, true, true],
        ];
        for (i, a) in modes.iter().enumerate() {
            for (j, b) in modes.iter().enumerate() {
                assert_eq!(a.conflicts(*b), table[i][j], "{a:?} against {b:?}");
            }
        }
    }
}
