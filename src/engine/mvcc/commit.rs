//! The commit pipeline: validation, timestamps and group commit.
//!
//! Committing transactions queue up; the first one to find no leader becomes
//! the leader and commits everything queued as one group, while the next
//! arrivals queue behind it. A group is validated in queue order, stamped with
//! increasing timestamps, written as one batch with one fsync and then made
//! visible at once. Under load every fsync carries many commits (group commit).
//!
//! The conflict tracker remembers, for every key written by a transaction that
//! committed after the oldest running snapshot, the last commit timestamp and
//! whether the key then held a row. That answers every validation question
//! without reading storage.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::horizon::{now_micros, Horizon};
use super::store::KeyDirectory;
use super::transaction::{IsolationLevel, WriteKind};
use super::version::{encode_version, versioned_key};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::storage::{Cf, Storage, SyncMode, WriteBatch};

/// The meta-family key holding the newest commit timestamp.
pub(super) const LAST_TS_KEY: &[u8] = b"oracle.last_ts";

/// A check run by the leader just before a transaction is stamped, in commit
/// order (for example: the tables it writes still exist).
pub type CommitCheck = Box<dyn FnOnce() -> Result<()> + Send>;
/// Work run by the leader after the transaction is durable and before it is
/// visible, with its commit timestamp (for example: updating the in-memory catalog).
pub type CommitApply = Box<dyn FnOnce(u64) + Send>;

/// One buffered write of a transaction.
#[derive(Clone, Debug)]
pub(super) struct Write {
    /// The new value, or None for a delete.
    pub value: Option<Vec<u8>>,
    /// Whether the key had to be absent.
    pub kind: WriteKind,
    /// The snapshot the write was decided at.
    pub read_ts: u64,
}

/// What a transaction hands the pipeline at commit.
pub(super) struct Request {
    pub isolation: IsolationLevel,
    pub start_ts: u64,
    pub writes: Vec<(Vec<u8>, Write)>,
    pub reads: Vec<Vec<u8>>,
    pub ranges: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub extra: WriteBatch,
    pub check: Option<CommitCheck>,
    pub apply: Option<CommitApply>,
}

/// Last writes of recently committed transactions.
#[derive(Default)]
pub(super) struct Tracker {
    last: BTreeMap<Vec<u8>, (u64, bool)>,
    prune_at: usize,
}

impl Tracker {
    /// The last commit that wrote `key`, if it is recent: (timestamp, key holds a row).
    pub fn last_write(&self, key: &[u8]) -> Option<(u64, bool)> {
        self.last.get(key).copied()
    }

    fn changed_in_range(&self, from: &[u8], to: Option<&[u8]>, after: u64) -> bool {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        if matches!(upper, Bound::Excluded(t) if t <= from) {
            return false;
        }
        self.last
            .range::<[u8], _>((Bound::Included(from), upper))
            .any(|(_, (ts, _))| *ts > after)
    }

    fn validate(&self, req: &Request) -> Result<()> {
        let strict = req.isolation != IsolationLevel::ReadCommitted;
        for (key, write) in &req.writes {
            let Some((ts, exists)) = self.last_write(key) else {
                continue;
            };
            if ts <= write.read_ts {
                continue;
            }
            if write.kind == WriteKind::Insert && exists {
                if req.isolation == IsolationLevel::Serializable {
                    return Err(conflict("a concurrent insert of the same key"));
                }
                return Err(Error::ConstraintViolation {
                    code: SqlState::UNIQUE_VIOLATION,
                    message: "duplicate key value violates unique constraint: \
                              a concurrent transaction inserted the same key"
                        .into(),
                });
            }
            if strict || write.kind == WriteKind::Update {
                return Err(conflict("a concurrent update"));
            }
        }
        if req.isolation == IsolationLevel::Serializable {
            let read_changed = req
                .reads
                .iter()
                .any(|k| self.last_write(k).is_some_and(|(ts, _)| ts > req.start_ts));
            let range_changed = req
                .ranges
                .iter()
                .any(|(from, to)| self.changed_in_range(from, to.as_deref(), req.start_ts));
            if read_changed || range_changed {
                return Err(conflict("read/write dependencies among transactions"));
            }
        }
        Ok(())
    }

    fn record(&mut self, key: &[u8], ts: u64, exists: bool) {
        self.last.insert(key.to_vec(), (ts, exists));
    }

    /// Forgets writes that every running snapshot already sees.
    fn prune(&mut self, oldest_snapshot: u64) {
        if self.last.len() < self.prune_at {
            return;
        }
        self.last.retain(|_, (ts, _)| *ts > oldest_snapshot);
        self.prune_at = (self.last.len() * 2).max(4096);
    }
}

fn conflict(reason: &str) -> Error {
    Error::SerializationConflict {
        reason: reason.into(),
    }
}

struct Slot {
    request: Mutex<Option<Request>>,
    result: Mutex<Option<Result<u64>>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Arc<Slot>>,
    leading: bool,
}

struct LeaderState {
    last_ts: u64,
    failure: Option<Arc<Error>>,
}

/// Orders, validates and writes commits; see the module docs.
pub(super) struct Pipeline {
    queue: Mutex<Queue>,
    wakeup: Condvar,
    leader: Mutex<LeaderState>,
    tracker: Mutex<Tracker>,
}

impl Pipeline {
    /// A pipeline whose last commit was at `last_ts`.
    pub fn new(last_ts: u64) -> Pipeline {
        Pipeline {
            queue: Mutex::new(Queue::default()),
            wakeup: Condvar::new(),
            leader: Mutex::new(LeaderState {
                last_ts,
                failure: None,
            }),
            tracker: Mutex::new(Tracker::default()),
        }
    }

    /// The tracker, for early conflict checks when a transaction writes.
    pub fn tracker(&self) -> parking_lot::MutexGuard<'_, Tracker> {
        self.tracker.lock()
    }

    /// Commits `request` and returns its commit timestamp once it is durable and visible.
    pub fn commit(
        &self,
        request: Request,
        storage: &dyn Storage,
        horizon: &Horizon,
        directory: Option<&dyn KeyDirectory>,
        sync: SyncMode,
    ) -> Result<u64> {
        let slot = Arc::new(Slot {
            request: Mutex::new(Some(request)),
            result: Mutex::new(None),
        });
        let mut queue = self.queue.lock();
        queue.pending.push(slot.clone());
        loop {
            if let Some(result) = slot.result.lock().take() {
                return result;
            }
            if !queue.leading {
                break;
            }
            self.wakeup.wait(&mut queue);
        }
        queue.leading = true;
        let group = std::mem::take(&mut queue.pending);
        drop(queue);

        // Hand leadership on even if the group panics, so waiters are not stuck.
        struct Handoff<'a>(&'a Pipeline);
        impl Drop for Handoff<'_> {
            fn drop(&mut self) {
                self.0.queue.lock().leading = false;
                self.0.wakeup.notify_all();
            }
        }
        let handoff = Handoff(self);
        self.run_group(&group, storage, horizon, directory, sync);
        drop(handoff);

        let result = slot.result.lock().take();
        result.expect("the leader's own request is in its group")
    }

    fn run_group(
        &self,
        group: &[Arc<Slot>],
        storage: &dyn Storage,
        horizon: &Horizon,
        directory: Option<&dyn KeyDirectory>,
        sync: SyncMode,
    ) {
        let mut leader = self.leader.lock();
        if let Some(failure) = &leader.failure {
            for slot in group {
                *slot.result.lock() = Some(Err(stopped(failure)));
            }
            return;
        }
        let mut batch = WriteBatch::new();
        let mut outcomes: Vec<Result<u64>> = Vec::with_capacity(group.len());
        let mut applies = Vec::new();
        let mut committed = Vec::new();
        let mut tracker = self.tracker.lock();
        for slot in group {
            let mut request = slot
                .request
                .lock()
                .take()
                .expect("each request is committed once");
            let checked = match request.check.take() {
                Some(check) => check(),
                None => Ok(()),
            };
            if let Err(e) = checked.and_then(|()| tracker.validate(&request)) {
                outcomes.push(Err(e));
                continue;
            }
            let ts = (leader.last_ts + 1).max(now_micros());
            leader.last_ts = ts;
            for (key, write) in &request.writes {
                batch.put(
                    Cf::Rows,
                    versioned_key(key, ts),
                    encode_version(write.value.as_deref()),
                );
                tracker.record(key, ts, write.value.is_some());
            }
            batch.extend(std::mem::take(&mut request.extra));
            applies.extend(request.apply.take().map(|apply| (apply, ts)));
            if directory.is_some() {
                committed.push((std::mem::take(&mut request.writes), ts));
            }
            outcomes.push(Ok(ts));
        }
        drop(tracker);

        if outcomes.iter().any(|o| o.is_ok()) {
            batch.put(
                Cf::Meta,
                LAST_TS_KEY.to_vec(),
                leader.last_ts.to_be_bytes().to_vec(),
            );
            if let Err(e) = storage.write(batch, sync) {
                // What reached the log is unknown: refuse every later write rather
                // than risk acknowledging commits on top of a hole.
                let failure = Arc::new(e);
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(stopped(&failure));
                }
                leader.failure = Some(failure);
            } else {
                if let Some(directory) = directory {
                    for (writes, ts) in committed {
                        for (key, write) in writes {
                            directory.apply(&key, ts, write.value.is_some());
                        }
                    }
                }
                for (apply, ts) in applies {
                    apply(ts);
                }
                horizon.publish(leader.last_ts);
            }
        }
        drop(leader);

        for (slot, outcome) in group.iter().zip(outcomes) {
            *slot.result.lock() = Some(outcome);
        }
        self.tracker.lock().prune(horizon.oldest_snapshot());
    }
}

/// The error every commit gets once a write to storage has failed.
fn stopped(failure: &Arc<Error>) -> Error {
    Error::io(
        "a commit could not be written; the database accepts no more writes until reopened",
        SharedError(failure.clone()),
    )
}

/// One storage failure reported to every commit it affected.
#[derive(Debug)]
struct SharedError(Arc<Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}
