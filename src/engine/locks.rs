//! Advisory locks: locks on keys that applications and migration tools take
//! for their own purposes (`pg_advisory_lock` and its family). A key is one
//! bigint or a pair of integers; the two kinds never meet, as in PostgreSQL.
//!
//! A lock is exclusive or shared, and held by a session either until it
//! unlocks it (session level) or until its transaction ends (transaction
//! level); a session may take the same lock again and must unlock it as many
//! times. A session that asks for a lock another session holds in a
//! conflicting mode waits until it is free, the statement is cancelled or
//! times out (57014), `lock_timeout` passes (55P03), or the wait closes a
//! cycle of sessions waiting on each other (40P01, found after
//! `deadlock_timeout`, one second).
//!
//! ```text
//!   held:   key 42 -> exclusive by session 3 (2 session-level, 1 in its transaction)
//!   waits:  session 5 -> key 42     (5 waits for 3)
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::cancel::Canceller;
use super::error::{Error, Result, SqlState};

/// Who holds a lock: a session, by id.
pub type SessionId = u64;

/// How long a waiter waits before it looks for a deadlock.
const DEADLOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// The two lock modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One holder at a time.
    Exclusive,
    /// Any number of holders, none exclusive.
    Shared,
}

/// How long a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Until unlocked, or the session ends.
    Session,
    /// Until the transaction ends.
    Transaction,
}

/// One session's hold on one lock: counts per scope.
#[derive(Clone, Copy, Default, Debug)]
struct Hold {
    session: u32,
    transaction: u32,
}

impl Hold {
    fn count(&self) -> u32 {
        self.session + self.transaction
    }
}

#[derive(Default)]
struct Lock {
    exclusive: HashMap<SessionId, Hold>,
    shared: HashMap<SessionId, Hold>,
}

impl Lock {
    /// Whether `session` may take the lock in `mode` now.
    fn admits(&self, session: SessionId, mode: Mode) -> bool {
        let others = |holders: &HashMap<SessionId, Hold>| holders.keys().any(|s| *s != session);
        match mode {
            Mode::Exclusive => !others(&self.exclusive) && !others(&self.shared),
            Mode::Shared => !others(&self.exclusive),
        }
    }

    fn holders(&self, mode: Mode) -> &HashMap<SessionId, Hold> {
        match mode {
            Mode::Exclusive => &self.exclusive,
            Mode::Shared => &self.shared,
        }
    }

    fn holders_mut(&mut self, mode: Mode) -> &mut HashMap<SessionId, Hold> {
        match mode {
            Mode::Exclusive => &mut self.exclusive,
            Mode::Shared => &mut self.shared,
        }
    }

    fn is_free(&self) -> bool {
        self.exclusive.is_empty() && self.shared.is_empty()
    }
}

#[derive(Default)]
struct State {
    locks: HashMap<i128, Lock>,
    /// What each waiting session waits for.
    waiting: HashMap<SessionId, i128>,
}

/// Every advisory lock of a database; see the module docs.
#[derive(Default)]
pub struct AdvisoryLocks {
    state: Mutex<State>,
    released: Condvar,
}

/// How a wait for a lock may end early.
pub struct Wait<'a> {
    /// Whether to wait at all (false: try once, as `pg_try_advisory_lock`).
    pub block: bool,
    /// The session's `lock_timeout`; None for none.
    pub lock_timeout: Option<Duration>,
    /// The session's statement cancel switch (cancel and statement_timeout).
    pub canceller: &'a Canceller,
}

impl AdvisoryLocks {
    /// Takes lock `key` in `mode` for `session`; false when `wait.block` is
    /// off and another session holds it.
    pub fn lock(
        &self,
        session: SessionId,
        key: i128,
        mode: Mode,
        scope: Scope,
        wait: &Wait<'_>,
    ) -> Result<bool> {
        let started = Instant::now();
        let mut state = self.state.lock();
        let mut checked_deadlock = false;
        loop {
            let lock = state.locks.entry(key).or_default();
            if lock.admits(session, mode) {
                let hold = lock.holders_mut(mode).entry(session).or_default();
                match scope {
                    Scope::Session => hold.session += 1,
                    Scope::Transaction => hold.transaction += 1,
                }
                state.waiting.remove(&session);
                return Ok(true);
            }
            if !wait.block {
                if lock.is_free() {
                    state.locks.remove(&key);
                }
                return Ok(false);
            }
            let stop = if let Some(e) = wait.canceller.interrupted() {
                Some(e)
            } else if wait.lock_timeout.is_some_and(|t| started.elapsed() >= t) {
                Some(Error::TransactionState {
                    code: SqlState::LOCK_NOT_AVAILABLE,
                    message: format!(
                        "canceling statement due to lock timeout (advisory lock {key})"
                    ),
                })
            } else if !checked_deadlock && started.elapsed() >= DEADLOCK_TIMEOUT {
                checked_deadlock = true;
                state.waiting.insert(session, key);
                deadlock(&state, session, key)
            } else {
                None
            };
            if let Some(e) = stop {
                state.waiting.remove(&session);
                return Err(e);
            }
            state.waiting.insert(session, key);
            self.released
                .wait_for(&mut state, Duration::from_millis(20));
        }
    }

    /// Releases one session-level hold of lock `key` in `mode`; false when
    /// `session` holds none (PostgreSQL then warns).
    pub fn unlock(&self, session: SessionId, key: i128, mode: Mode) -> bool {
        let mut state = self.state.lock();
        let Some(lock) = state.locks.get_mut(&key) else {
            return false;
        };
        let holders = lock.holders_mut(mode);
        let Some(hold) = holders.get_mut(&session) else {
            return false;
        };
        if hold.session == 0 {
            return false;
        }
        hold.session -= 1;
        if hold.count() == 0 {
            holders.remove(&session);
        }
        if lock.is_free() {
            state.locks.remove(&key);
        }
        drop(state);
        self.released.notify_all();
        true
    }

    /// Releases `session`'s holds of `scope` (its transaction ended), or
    /// every hold it has when `scope` is None (it ended, or
    /// `pg_advisory_unlock_all`, which leaves transaction holds: pass
    /// `Some(Scope::Session)` for that).
    pub fn release(&self, session: SessionId, scope: Option<Scope>) {
        let mut state = self.state.lock();
        let mut released = false;
        state.locks.retain(|_, lock| {
            for mode in [Mode::Exclusive, Mode::Shared] {
                let holders = lock.holders_mut(mode);
                if let Some(hold) = holders.get_mut(&session) {
                    match scope {
                        Some(Scope::Session) => hold.session = 0,
                        Some(Scope::Transaction) => hold.transaction = 0,
                        None => *hold = Hold::default(),
                    }
                    if hold.count() == 0 {
                        holders.remove(&session);
                        released = true;
                    }
                }
            }
            !lock.is_free()
        });
        if scope.is_none() {
            state.waiting.remove(&session);
        }
        drop(state);
        if released {
            self.released.notify_all();
        }
    }

    /// Whether `session` holds anything (for tests).
    pub fn holds_any(&self, session: SessionId) -> bool {
        let state = self.state.lock();
        state.locks.values().any(|l| {
            l.holders(Mode::Exclusive).contains_key(&session)
                || l.holders(Mode::Shared).contains_key(&session)
        })
    }
}

/// 40P01 when `session`, waiting for `key`, waits (through the sessions
/// holding it, and what they wait for) on itself.
fn deadlock(state: &State, session: SessionId, key: i128) -> Option<Error> {
    let holders_of = |key: i128| -> Vec<SessionId> {
        state.locks.get(&key).map_or(Vec::new(), |l| {
            l.exclusive.keys().chain(l.shared.keys()).copied().collect()
        })
    };
    let mut stack: Vec<SessionId> = holders_of(key)
        .into_iter()
        .filter(|s| *s != session)
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(other) = stack.pop() {
        if !seen.insert(other) {
            continue;
        }
        let Some(&wanted) = state.waiting.get(&other) else {
            continue;
        };
        let next = holders_of(wanted);
        if next.contains(&session) {
            return Some(Error::TransactionState {
                code: SqlState::DEADLOCK_DETECTED,
                message: format!(
                    "deadlock detected: session {session} waits for advisory lock {key}, held by \
                     session {other}, which waits for advisory lock {wanted}, held by session \
                     {session}"
                ),
            });
        }
        stack.extend(next.into_iter().filter(|s| *s != other));
    }
    None
}
