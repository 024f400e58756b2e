//! The commit pipeline: validation, timestamps and group commit.
//!
//! Committing transactions queue up; the first one to find no leader becomes
//! the leader and commits everything queued as one group, while the next
//! arrivals queue behind it. A group is validated in queue order, stamped with
//! increasing timestamps, written as one batch with one fsync and then made
//! visible at once. Under load every fsync carries many commits (group commit).
//!
//! The conflict tracker remembers, for keys written by transactions that
//! committed after the oldest running snapshot, the last commit timestamp and
//! whether the key then held a row. That answers validation questions without
//! reading storage. It holds at most [`TRACKER_CAPACITY`] keys: when an old
//! snapshot (a forgotten BEGIN) would make it grow further, it forgets its
//! oldest entries, and questions about keys it forgot go to the key directory
//! or to storage (the key's newest version), so memory stays bounded and
//! only transactions older than what it remembers pay for a lookup.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::horizon::{now_micros, Horizon};
use super::store::{DirectoryLookup, KeyDirectory};
use super::transaction::{IsolationLevel, WriteKind};
use super::version::{decode_version, into_version, split_versioned, versioned_key};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::storage::{Cf, CommitMark, Storage, SyncMode, WriteBatch};

/// The meta-family key holding the newest commit timestamp.
const LAST_TS_KEY: &[u8] = b"oracle.last_ts";

/// The newest commit timestamp `storage` holds (0 for a new database).
pub fn stored_last_ts(storage: &dyn Storage) -> Result<u64> {
    match storage.get(Cf::Meta, LAST_TS_KEY)? {
        Some(bytes) => Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
            Error::Corruption("timestamp oracle state is not 8 bytes".into())
        })?)),
        None => Ok(0),
    }
}

/// Records `ts` in `batch` as the newest commit timestamp.
pub fn put_last_ts(batch: &mut WriteBatch, ts: u64) {
    batch.put(Cf::Meta, LAST_TS_KEY.to_vec(), ts.to_be_bytes().to_vec());
}

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

/// Last writes of recently committed transactions, bounded: past
/// [`TRACKER_CAPACITY`] keys it forgets its oldest entries, and a question
/// about a key written before what it still holds is answered from the key
/// directory or storage (the newest version's timestamp) instead.
pub(super) struct Tracker {
    last: BTreeMap<Vec<u8>, (u64, bool)>,
    /// Every write after this timestamp is in `last`; older ones may be forgotten.
    forgotten_to: u64,
    prune_at: usize,
}

/// Keys the tracker remembers at most (a few tens of MB): what keeps its
/// memory bounded while a forgotten transaction holds an old snapshot.
#[cfg(not(test))]
pub(super) const TRACKER_CAPACITY: usize = 256 * 1024;
#[cfg(test)]
pub(super) const TRACKER_CAPACITY: usize = 64;

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            last: BTreeMap::new(),
            forgotten_to: 0,
            prune_at: 4096.min(TRACKER_CAPACITY),
        }
    }
}

/// Where the tracker looks up writes it has forgotten.
pub(super) struct History<'a> {
    pub storage: &'a dyn Storage,
    pub directory: Option<&'a dyn KeyDirectory>,
}

impl History<'_> {
    /// The newest committed version of `key`: (timestamp, holds a row).
    fn newest(&self, key: &[u8]) -> Result<Option<(u64, bool)>> {
        if let Some(directory) = self.directory {
            match directory.lookup(key) {
                DirectoryLookup::Absent => return Ok(None),
                DirectoryLookup::Latest { ts, exists } => return Ok(Some((ts, exists))),
                DirectoryLookup::NotCovered => {}
            }
        }
        let seek = versioned_key(key, u64::MAX);
        let Some((found, value)) = self.storage.seek_prefix(Cf::Rows, &seek, key.len())? else {
            return Ok(None);
        };
        match split_versioned(&found) {
            Some((user, ts)) if user == key => Ok(Some((ts, decode_version(&value)?.is_some()))),
            _ => Ok(None),
        }
    }
}

impl Tracker {
    /// The last commit that wrote `key`, when it committed after `since`:
    /// (timestamp, key holds a row).
    pub fn written_after(
        &self,
        key: &[u8],
        since: u64,
        history: &History<'_>,
    ) -> Result<Option<(u64, bool)>> {
        let last = match self.last.get(key) {
            Some(last) => Some(*last),
            None if since < self.forgotten_to => history.newest(key)?,
            None => None,
        };
        Ok(last.filter(|(ts, _)| *ts > since))
    }

    /// Whether a key in `from..to` was written after `after`; None when the
    /// tracker forgot writes that recent and cannot tell.
    fn changed_in_range(&self, from: &[u8], to: Option<&[u8]>, after: u64) -> Option<bool> {
        if after < self.forgotten_to {
            return None;
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        if matches!(upper, Bound::Excluded(t) if t <= from) {
            return Some(false);
        }
        Some(
            self.last
                .range::<[u8], _>((Bound::Included(from), upper))
                .any(|(_, (ts, _))| *ts > after),
        )
    }

    fn validate(&self, req: &Request, history: &History<'_>) -> Result<()> {
        let strict = req.isolation != IsolationLevel::ReadCommitted;
        for (key, write) in &req.writes {
            let Some((_, exists)) = self.written_after(key, write.read_ts, history)? else {
                continue;
            };
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
            for key in &req.reads {
                if self.written_after(key, req.start_ts, history)?.is_some() {
                    return Err(conflict("read/write dependencies among transactions"));
                }
            }
            for (from, to) in &req.ranges {
                match self.changed_in_range(from, to.as_deref(), req.start_ts) {
                    Some(false) => {}
                    Some(true) => {
                        return Err(conflict("read/write dependencies among transactions"))
                    }
                    None => {
                        return Err(conflict(
                            "a transaction that ran longer than omen tracks concurrent \
                             writes for (a range it read may have changed)",
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    fn record(&mut self, key: &[u8], ts: u64, exists: bool) {
        self.last.insert(key.to_vec(), (ts, exists));
    }

    /// Forgets writes that every running snapshot already sees, and past
    /// [`TRACKER_CAPACITY`], the older half of what remains.
    fn prune(&mut self, oldest_snapshot: u64) {
        if self.last.len() < self.prune_at {
            return;
        }
        self.last.retain(|_, (ts, _)| *ts > oldest_snapshot);
        self.forgotten_to = self.forgotten_to.max(oldest_snapshot);
        if self.last.len() > TRACKER_CAPACITY / 2 {
            let mut stamps: Vec<u64> = self.last.values().map(|(ts, _)| *ts).collect();
            let middle = stamps.len() / 2;
            let (_, cut, _) = stamps.select_nth_unstable(middle);
            let cut = *cut;
            self.last.retain(|_, (ts, _)| *ts > cut);
            self.forgotten_to = self.forgotten_to.max(cut);
        }
        self.prune_at = (self.last.len() * 2).clamp(16, TRACKER_CAPACITY);
    }

    /// Keys remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.last.len()
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
        let mut marks = Vec::new();
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
            let history = History { storage, directory };
            if let Err(e) = checked.and_then(|()| tracker.validate(&request, &history)) {
                outcomes.push(Err(e));
                continue;
            }
            let prev_ts = leader.last_ts;
            let ts = (prev_ts + 1).max(now_micros());
            leader.last_ts = ts;
            // Each value moves into its stored version, so a large
            // transaction's rows are not held twice while they are written.
            let mut keys = Vec::with_capacity(if directory.is_some() {
                request.writes.len()
            } else {
                0
            });
            for (key, write) in std::mem::take(&mut request.writes) {
                let exists = write.value.is_some();
                batch.put(Cf::Rows, versioned_key(&key, ts), into_version(write.value));
                tracker.record(&key, ts, exists);
                if directory.is_some() {
                    keys.push((key, exists));
                }
            }
            batch.extend(std::mem::take(&mut request.extra));
            marks.push(CommitMark {
                prev_ts,
                ts,
                end: batch.len(),
            });
            applies.extend(request.apply.take().map(|apply| (apply, ts)));
            if directory.is_some() {
                committed.push((keys, ts));
            }
            outcomes.push(Ok(ts));
        }
        drop(tracker);

        if outcomes.iter().any(|o| o.is_ok()) {
            put_last_ts(&mut batch, leader.last_ts);
            if let Err(e) = storage.write_commits(batch, sync, &marks) {
                // What reached the log is unknown: refuse every later write rather
                // than risk acknowledging commits on top of a hole.
                let failure = Arc::new(e);
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(stopped(&failure));
                }
                leader.failure = Some(failure);
            } else {
                if let Some(directory) = directory {
                    for (keys, ts) in committed {
                        for (key, exists) in keys {
                            directory.apply(&key, ts, exists);
                        }
                    }
                }
                for (apply, ts) in applies {
                    apply(ts);
                }
                horizon.publish(leader.last_ts);
                if let Some(directory) = directory {
                    directory.forget_deleted(&|| horizon.gc_watermark());
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mvcc::{Mvcc, MvccOptions};
    use crate::engine::storage::Memory;

    fn mvcc() -> Arc<Mvcc> {
        let horizon = Arc::new(Horizon::new(0, 0));
        let storage = Arc::new(Memory::new(None));
        Mvcc::open(storage, horizon, MvccOptions::default(), None).expect("open")
    }

    fn commit_keys(mvcc: &Arc<Mvcc>, keys: std::ops::Range<u32>) {
        for i in keys {
            let mut t = mvcc.begin(IsolationLevel::ReadCommitted);
            t.put(&i.to_be_bytes(), b"v".to_vec(), WriteKind::Insert)
                .expect("insert");
            t.commit().expect("commit");
        }
    }

    #[test]
    fn an_old_snapshot_does_not_grow_the_tracker_and_checks_stay_right() {
        // Bug: the tracker kept every key written since the oldest open
        // snapshot, so one forgotten BEGIN grew it without bound.
        let mvcc = mvcc();
        let mut old = mvcc.begin(IsolationLevel::RepeatableRead);
        commit_keys(&mvcc, 0..1000);
        assert!(
            mvcc.tracked_keys() <= TRACKER_CAPACITY,
            "{}",
            mvcc.tracked_keys()
        );
        // A key written after the old snapshot, which the tracker forgot,
        // still conflicts; one nobody wrote does not.
        let err = old
            .put(&5u32.to_be_bytes(), b"x".to_vec(), WriteKind::Update)
            .expect_err("a forgotten write still conflicts");
        assert_eq!(err.sqlstate(), SqlState::SERIALIZATION_FAILURE);
        old.put(&5000u32.to_be_bytes(), b"x".to_vec(), WriteKind::Insert)
            .expect("an untouched key");
        old.commit().expect("commit");
    }

    #[test]
    fn forgotten_writes_are_checked_at_commit() {
        let mvcc = mvcc();
        let mut old = mvcc.begin(IsolationLevel::ReadCommitted);
        old.begin_statement();
        // Decided on the snapshot before the other commits: validated at commit.
        old.put(&7u32.to_be_bytes(), b"x".to_vec(), WriteKind::Insert)
            .expect("buffered");
        old.put(&9000u32.to_be_bytes(), b"x".to_vec(), WriteKind::Update)
            .expect("buffered");
        old.end_statement();
        commit_keys(&mvcc, 0..1000);
        assert!(mvcc.tracked_keys() <= TRACKER_CAPACITY);
        let err = old.commit().expect_err("key 7 was inserted concurrently");
        assert_eq!(err.sqlstate(), SqlState::UNIQUE_VIOLATION, "{err}");
    }

    #[test]
    fn a_failed_statement_is_undone_alone() {
        // Bug: a statement that failed part-way kept its first writes in the
        // transaction.
        let mvcc = mvcc();
        let key = |n: u32| n.to_be_bytes().to_vec();
        let mut t = mvcc.begin(IsolationLevel::ReadCommitted);
        t.begin_statement();
        t.put(&key(1), b"a".to_vec(), WriteKind::Insert).unwrap();
        t.end_statement();
        t.begin_statement();
        t.put(&key(1), b"b".to_vec(), WriteKind::Update).unwrap();
        t.put(&key(2), b"c".to_vec(), WriteKind::Insert).unwrap();
        t.delete(&key(1)).unwrap();
        t.add_unversioned(WriteBatch::new(), None, None);
        t.rollback_statement();
        assert_eq!(t.get(&key(1)).unwrap(), Some(b"a".to_vec()));
        assert_eq!(t.get(&key(2)).unwrap(), None);
        // Without a running statement there is nothing to undo.
        t.rollback_statement();
        assert_eq!(t.get(&key(1)).unwrap(), Some(b"a".to_vec()));
        t.commit().unwrap();
        let mut reader = mvcc.begin(IsolationLevel::ReadCommitted);
        assert_eq!(reader.get(&key(1)).unwrap(), Some(b"a".to_vec()));
        assert_eq!(reader.get(&key(2)).unwrap(), None);
    }

    #[test]
    fn an_old_serializable_range_reader_fails_safe() {
        let mvcc = mvcc();
        let mut old = mvcc.begin(IsolationLevel::Serializable);
        assert_eq!(old.scan(&[0xff], None).count(), 0);
        commit_keys(&mvcc, 0..1000);
        old.put(&9000u32.to_be_bytes(), b"x".to_vec(), WriteKind::Insert)
            .expect("buffered");
        let err = old.commit().expect_err("the range cannot be validated");
        assert_eq!(err.sqlstate(), SqlState::SERIALIZATION_FAILURE);
    }
}
