//! [`Transaction`]: snapshot reads plus buffered writes.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use super::commit::{CommitApply, CommitCheck, Request, Write};
use super::store::Mvcc;
use super::version::{decode_version, split_versioned};
use crate::engine::cancel::Canceller;
use crate::engine::error::{Error, Result};
use crate::engine::locks::{self, Locks, Mode, Scope, SessionId, Target};
use crate::engine::memory;
use crate::engine::storage::{Cf, KvIter, WriteBatch};

/// Isolation levels, with PostgreSQL's meaning (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IsolationLevel {
    /// A new snapshot for every statement.
    #[default]
    ReadCommitted,
    /// One snapshot for the whole transaction; first committer wins.
    RepeatableRead,
    /// As if transactions ran one at a time.
    Serializable,
}

impl IsolationLevel {
    /// The name SQL uses.
    pub fn sql_name(&self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read committed",
            IsolationLevel::RepeatableRead => "repeatable read",
            IsolationLevel::Serializable => "serializable",
        }
    }
}

/// What a write assumes about the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// The key must not hold a row (a primary key insert): a concurrent insert
    /// of the same key fails this one with a unique violation (40001 when
    /// SERIALIZABLE).
    Insert,
    /// Replace or delete the version the statement read (SQL UPDATE and
    /// DELETE, and the old key of an UPDATE that changes the key). If another
    /// transaction committed a newer version after that read, the write was
    /// decided on a row that no longer is, so it fails with 40001 at every
    /// isolation level; at READ COMMITTED PostgreSQL waits for the other
    /// writer and re-checks the row instead. There is no blind write: every
    /// change of an existing row is checked.
    Update,
}

/// How a transaction takes row locks: in its session's name, with the
/// session's `lock_timeout` and cancel switch ending waits.
#[derive(Clone)]
pub struct RowLocker {
    pub locks: Arc<Locks>,
    pub session: SessionId,
    pub canceller: Canceller,
    /// `lock_timeout` in milliseconds (0: none).
    pub lock_timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// `deadlock_timeout` in milliseconds.
    pub deadlock_timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Names a session in messages (its process id on a server).
    pub describe: Arc<dyn Fn(SessionId) -> String + Send + Sync>,
    /// Set once the session's transaction takes a lock (a row lock, or a
    /// transaction-level advisory lock), so that the end of a transaction
    /// that took none skips the lock table.
    pub holds: Arc<std::sync::atomic::AtomicBool>,
}

impl RowLocker {
    /// Locks row `key` in `mode` until the transaction ends, waiting for
    /// transactions that hold a conflicting lock unless `block` is off;
    /// false when it did not wait and another holds it.
    pub fn lock(&self, key: &[u8], mode: Mode, block: bool) -> Result<bool> {
        self.lock_target(&Target::Row(key.into()), mode, block)
    }

    /// Locks `target` in `mode` until the transaction ends, as [`lock`](RowLocker::lock).
    pub fn lock_target(&self, target: &Target, mode: Mode, block: bool) -> Result<bool> {
        let timeout = self
            .lock_timeout_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let wait = locks::Wait {
            block,
            lock_timeout: (timeout > 0).then(|| std::time::Duration::from_millis(timeout)),
            canceller: &self.canceller,
            deadlock_timeout: std::time::Duration::from_millis(
                self.deadlock_timeout_ms
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            describe: self.describe.as_ref(),
        };
        let taken = self
            .locks
            .lock(self.session, target, mode, Scope::Transaction, &wait)?;
        if taken {
            self.holds.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(taken)
    }
}

/// What a row lock found: see [`Transaction::row_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLock {
    /// No transaction changed the row after this one's snapshot.
    Fresh,
    /// A transaction committed a change of the row after the snapshot;
    /// `exists` says whether the row is there now.
    Changed { exists: bool },
    /// Another transaction holds a conflicting lock and the caller would not wait.
    Busy,
}

/// A transaction: reads at its snapshot, buffers writes until commit.
///
/// Dropping a transaction without committing rolls it back.
pub struct Transaction {
    mvcc: Arc<Mvcc>,
    isolation: IsolationLevel,
    start_ts: u64,
    read_ts: u64,
    writes: BTreeMap<Vec<u8>, Write>,
    reads: Vec<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    extra: WriteBatch,
    checks: Vec<CommitCheck>,
    applies: Vec<CommitApply>,
    /// What the running statement changed, to undo it alone when it fails
    /// (a statement-level savepoint); None outside an explicit statement.
    undo: Option<Undo>,
    /// Bytes the buffered writes take, about; bounded by `memory_limit`.
    bytes: usize,
    memory_limit: usize,
    /// Takes row locks; None for transactions outside a session (tests).
    locker: Option<Arc<RowLocker>>,
    finished: bool,
}

/// What one buffered write costs beyond its key and value, about: its
/// entry in the write buffer, and its row lock's in the lock table (which
/// holds two more copies of the key).
const WRITE_OVERHEAD: usize = 64 + 160;

fn write_size(key: &[u8], write: &Write) -> usize {
    3 * key.len() + write.value.as_ref().map_or(0, Vec::len) + WRITE_OVERHEAD
}

/// The changes of one statement, in order: each key's buffered write before
/// the statement wrote it, and the lengths of the unversioned parts.
#[derive(Default)]
struct Undo {
    writes: Vec<(Vec<u8>, Option<Write>)>,
    extra: usize,
    checks: usize,
    applies: usize,
}

/// A transaction's changes at one point, for savepoints.
#[derive(Clone)]
pub struct Mark {
    writes: BTreeMap<Vec<u8>, Write>,
    extra: WriteBatch,
    checks: usize,
    applies: usize,
}

impl Transaction {
    pub(super) fn new(mvcc: Arc<Mvcc>, isolation: IsolationLevel) -> Transaction {
        let start_ts = mvcc.horizon().register();
        let memory_limit = mvcc.memory_limit();
        Transaction {
            mvcc,
            isolation,
            start_ts,
            read_ts: start_ts,
            writes: BTreeMap::new(),
            reads: Vec::new(),
            ranges: Vec::new(),
            extra: WriteBatch::new(),
            checks: Vec::new(),
            applies: Vec::new(),
            undo: None,
            bytes: 0,
            memory_limit,
            locker: None,
            finished: false,
        }
    }

    /// Sets how many bytes of writes the transaction may buffer.
    pub fn set_memory_limit(&mut self, bytes: usize) {
        self.memory_limit = bytes;
    }

    /// Makes the transaction lock the rows it writes, in `locker`'s session's name.
    pub fn set_locker(&mut self, locker: Arc<RowLocker>) {
        self.locker = Some(locker);
    }

    /// How the transaction takes row locks (None: it takes none). Waiting
    /// for a lock needs no access to the transaction, so callers wait
    /// without holding it.
    pub fn locker(&self) -> Option<Arc<RowLocker>> {
        self.locker.clone()
    }

    /// Whether a transaction committed a change of row `key` that this
    /// one's snapshot does not see; asked once the row is locked, when no
    /// other can change it any more. Statements decide what a change means:
    /// re-read the row at READ COMMITTED, fail with 40001 above.
    pub fn row_state(&self, key: &[u8]) -> Result<RowLock> {
        if self.writes.contains_key(key) {
            // Locked since this transaction first wrote it.
            return Ok(RowLock::Fresh);
        }
        Ok(match self.mvcc.written_after(key, self.read_ts)? {
            Some((_, exists)) => RowLock::Changed { exists },
            None => RowLock::Fresh,
        })
    }

    /// Moves reads to the newest commit and returns the snapshot they had
    /// (READ COMMITTED re-reads a row that changed while it waited for it).
    pub fn refresh_snapshot(&mut self) -> u64 {
        let old = self.read_ts;
        self.read_ts = self.mvcc.horizon().visible().max(self.start_ts);
        old
    }

    /// Returns reads to a snapshot [`refresh_snapshot`](Transaction::refresh_snapshot) left.
    pub fn restore_snapshot(&mut self, read_ts: u64) {
        self.read_ts = read_ts;
    }

    /// The isolation level.
    pub fn isolation(&self) -> IsolationLevel {
        self.isolation
    }

    /// The timestamp reads currently see.
    pub fn read_ts(&self) -> u64 {
        self.read_ts
    }

    /// Makes the transaction read as of `read_ts`, an older snapshot than
    /// its own, which a transaction still open keeps from garbage
    /// collection (a cursor's reads at its declaring statement's snapshot).
    pub fn pin_snapshot(&mut self, read_ts: u64) {
        self.read_ts = read_ts.min(self.read_ts);
    }

    /// Whether the transaction has written anything.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty() || !self.extra.is_empty()
    }

    /// Whether the transaction has written rows (not only definitions).
    pub fn has_row_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Starts a statement of an explicit transaction: under READ COMMITTED,
    /// reads move to the newest commit, and its changes are recorded until
    /// [`end_statement`](Transaction::end_statement) so that
    /// [`rollback_statement`](Transaction::rollback_statement) can undo them.
    pub fn begin_statement(&mut self) {
        if self.isolation == IsolationLevel::ReadCommitted {
            self.read_ts = self.mvcc.horizon().visible().max(self.start_ts);
        }
        self.undo = Some(Undo {
            writes: Vec::new(),
            extra: self.extra.len(),
            checks: self.checks.len(),
            applies: self.applies.len(),
        });
    }

    /// Ends the running statement: its changes stay.
    pub fn end_statement(&mut self) {
        self.undo = None;
    }

    /// Undoes every change of the running statement (which failed) and ends
    /// it; the transaction is as it was before the statement began. Without
    /// a running statement it does nothing.
    pub fn rollback_statement(&mut self) {
        let Some(undo) = self.undo.take() else {
            return;
        };
        for (key, before) in undo.writes.into_iter().rev() {
            match before {
                Some(write) => self.writes.insert(key, write),
                None => self.writes.remove(&key),
            };
        }
        self.extra.truncate(undo.extra);
        self.checks.truncate(undo.checks);
        self.applies.truncate(undo.applies);
        self.recount();
    }

    fn recount(&mut self) {
        self.bytes = self.writes.iter().map(|(k, w)| write_size(k, w)).sum();
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(write) = self.writes.get(key) {
            return Ok(write.value.clone());
        }
        if self.isolation == IsolationLevel::Serializable {
            self.reads.push(key.to_vec());
        }
        self.mvcc
            .read_at(key, self.mvcc.horizon().snapshot_for(key, self.read_ts))
    }

    /// Keys in `from..to` (to the end when `to` is None) with their values, in key order.
    pub fn scan(&mut self, from: &[u8], to: Option<&[u8]>) -> Scan<'_> {
        if self.isolation == IsolationLevel::Serializable {
            self.ranges.push((from.to_vec(), to.map(<[u8]>::to_vec)));
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        // Borrowed, not copied: a scan that reads a range in batches must not
        // copy all of the transaction's writes there for every batch.
        let own = if matches!(upper, Bound::Excluded(t) if t <= from) {
            None
        } else {
            Some(self.writes.range::<[u8], _>((Bound::Included(from), upper)))
        };
        let read_ts = self.mvcc.horizon().snapshot_for(from, self.read_ts);
        Scan::new(&self.mvcc, from, to, read_ts, own)
    }

    /// For a scan of `[from, to)` where the transaction has written
    /// nothing: the snapshot to read it at, which scans without the
    /// transaction (so the partitions of a query read storage in parallel).
    /// None when it has written there. The range counts as read.
    pub fn snapshot_scan(&mut self, from: &[u8], to: Option<&[u8]>) -> Option<Snapshot> {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        let empty = matches!(upper, Bound::Excluded(t) if t <= from);
        if !empty
            && self
                .writes
                .range::<[u8], _>((Bound::Included(from), upper))
                .next()
                .is_some()
        {
            return None;
        }
        if self.isolation == IsolationLevel::Serializable {
            self.ranges.push((from.to_vec(), to.map(<[u8]>::to_vec)));
        }
        Some(Snapshot {
            mvcc: self.mvcc.clone(),
            read_ts: self.mvcc.horizon().snapshot_for(from, self.read_ts),
        })
    }

    /// Buffers a write of `value` to `key`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, kind: WriteKind) -> Result<()> {
        self.write(key, Some(value), kind)
    }

    /// Buffers a delete of `key`, a row the statement read: checked as an
    /// [`WriteKind::Update`] is.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.write(key, None, WriteKind::Update)
    }

    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>, kind: WriteKind) -> Result<()> {
        // Every write locks its row: a delete or an insert (which may be
        // the new key of an UPDATE) for update, a change in place for no
        // key update. A statement that re-reads rows locked them already.
        let mode = match (kind, &value) {
            (WriteKind::Update, Some(_)) => Mode::NoKeyUpdate,
            _ => Mode::Update,
        };
        // A key this transaction wrote keeps the assumption of its first
        // write and the snapshot that write was computed from.
        let earlier = self.writes.get(key).map(|w| (w.kind, w.read_ts));
        if let Some(locker) = &self.locker {
            if earlier.is_none() {
                locker.lock(key, mode, true)?;
            }
        }
        // Fail now rather than at commit, as PostgreSQL does.
        let since = match (self.isolation, kind) {
            (IsolationLevel::ReadCommitted, WriteKind::Update) => Some(self.read_ts),
            (IsolationLevel::ReadCommitted, _) => None,
            _ => Some(self.start_ts),
        };
        if let Some(since) = since {
            if self.mvcc.written_after(key, since)?.is_some() {
                return Err(Error::SerializationConflict {
                    reason: "a concurrent update".into(),
                });
            }
        }
        let (kind, read_ts) = earlier.unwrap_or((kind, self.read_ts));
        let write = Write {
            value,
            kind,
            read_ts,
        };
        let size = write_size(key, &write);
        let limit = self.memory_limit;
        if self.bytes + size > limit {
            return Err(memory::exceeded("the transaction's writes", limit));
        }
        self.bytes += size;
        let before = self.writes.insert(key.to_vec(), write);
        if let Some(old) = &before {
            self.bytes -= write_size(key, old);
        }
        if let Some(undo) = &mut self.undo {
            undo.writes.push((key.to_vec(), before));
        }
        Ok(())
    }

    /// The transaction's changes so far, to return to with
    /// [`rollback_to`](Transaction::rollback_to) (a savepoint).
    pub fn mark(&self) -> Mark {
        Mark {
            writes: self.writes.clone(),
            extra: self.extra.clone(),
            checks: self.checks.len(),
            applies: self.applies.len(),
        }
    }

    /// Undoes the changes made since `mark`. What was read stays read: a
    /// SERIALIZABLE transaction still conflicts with writes to it.
    pub fn rollback_to(&mut self, mark: &Mark) {
        self.undo = None;
        self.writes = mark.writes.clone();
        self.recount();
        self.extra = mark.extra.clone();
        self.checks.truncate(mark.checks);
        self.applies.truncate(mark.applies);
    }

    /// Adds unversioned changes (catalog, metadata) to the commit, with a check
    /// run in commit order before it and work run after it is durable.
    pub fn add_unversioned(
        &mut self,
        batch: WriteBatch,
        check: Option<CommitCheck>,
        apply: Option<CommitApply>,
    ) {
        self.extra.extend(batch);
        self.checks.extend(check);
        self.applies.extend(apply);
    }

    /// A check the commit pipeline runs in commit order before this transaction commits.
    pub fn add_commit_check(&mut self, check: CommitCheck) {
        self.checks.push(check);
    }

    /// Commits; returns the commit timestamp (None for a transaction that wrote nothing).
    pub fn commit(mut self) -> Result<Option<u64>> {
        self.finish();
        if !self.has_writes() {
            return Ok(None);
        }
        // Locks end after the commit (the drop releases them), so a waiter
        // that takes one sees what this transaction wrote.
        let checks = std::mem::take(&mut self.checks);
        let applies = std::mem::take(&mut self.applies);
        let request = Request {
            isolation: self.isolation,
            start_ts: self.start_ts,
            writes: std::mem::take(&mut self.writes).into_iter().collect(),
            reads: std::mem::take(&mut self.reads),
            ranges: std::mem::take(&mut self.ranges),
            extra: std::mem::take(&mut self.extra),
            check: (!checks.is_empty()).then(|| -> CommitCheck {
                Box::new(move || checks.into_iter().try_for_each(|check| check()))
            }),
            apply: (!applies.is_empty()).then(|| -> CommitApply {
                Box::new(move |ts| applies.into_iter().for_each(|apply| apply(ts)))
            }),
        };
        self.mvcc.commit_request(request).map(Some)
    }

    /// Discards every buffered write.
    pub fn rollback(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.mvcc.horizon().deregister(self.start_ts);
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish();
        // Its row locks and transaction-level advisory locks end with it,
        // and the sessions waiting for them wake.
        if let Some(locker) = &self.locker {
            if locker
                .holds
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                locker
                    .locks
                    .release(locker.session, Some(Scope::Transaction));
            }
        }
    }
}

/// A key and its value as a transaction sees it (None: deleted).
type Entry = (Vec<u8>, Option<Vec<u8>>);

/// The transaction's own writes in a scanned range.
type OwnWrites<'a> = std::iter::Flatten<
    std::option::IntoIter<std::collections::btree_map::Range<'a, Vec<u8>, Write>>,
>;

/// Keys and values of a range as a transaction sees them, in key order.
/// A transaction's snapshot of a range it has not written
/// ([`Transaction::snapshot_scan`]).
pub struct Snapshot {
    mvcc: Arc<Mvcc>,
    read_ts: u64,
}

impl Snapshot {
    /// The rows of `[from, to)` as of the snapshot, in key order.
    pub fn scan(&self, from: &[u8], to: Option<&[u8]>) -> Scan<'_> {
        Scan::new(&self.mvcc, from, to, self.read_ts, None)
    }

    /// Calls `each` with the rows of `[from, to)` as of the snapshot (user
    /// key and value, borrowed from storage: nothing is copied), in key
    /// order, until it returns false.
    pub fn scan_each(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        if self.mvcc.range_is_empty(from, to, self.read_ts) {
            return Ok(());
        }
        // The user key whose visible version was met; its older ones are passed.
        let mut seen: Vec<u8> = Vec::new();
        let mut any = false;
        self.mvcc
            .storage()
            .scan_each(Cf::Rows, from, to, &mut |key, stored| {
                let Some((user, ts)) = split_versioned(key) else {
                    return Err(Error::Corruption("row key without a version".into()));
                };
                if ts > self.read_ts || (any && seen.as_slice() == user) {
                    return Ok(true);
                }
                seen.clear();
                seen.extend_from_slice(user);
                any = true;
                match decode_version(stored)? {
                    Some(value) => each(user, value),
                    None => Ok(true),
                }
            })
    }
}

pub struct Scan<'a> {
    stored: Peekable<KvIter<'a>>,
    /// The next visible stored key, read ahead to merge with own writes.
    ahead: Option<Entry>,
    own: Peekable<OwnWrites<'a>>,
    read_ts: u64,
    failed: bool,
}

impl<'a> Scan<'a> {
    /// The rows of `[from, to)` stored at `read_ts`, merged with `own` writes.
    fn new(
        mvcc: &'a Mvcc,
        from: &[u8],
        to: Option<&[u8]>,
        read_ts: u64,
        own: Option<std::collections::btree_map::Range<'a, Vec<u8>, Write>>,
    ) -> Scan<'a> {
        // A range the key directory shows empty needs no storage read.
        let stored: KvIter<'a> = if mvcc.range_is_empty(from, to, read_ts) {
            Box::new(std::iter::empty())
        } else {
            mvcc.storage().scan(Cf::Rows, from, to)
        };
        Scan {
            stored: stored.peekable(),
            ahead: None,
            own: own.into_iter().flatten().peekable(),
            read_ts,
            failed: false,
        }
    }

    /// The next stored key visible at the snapshot, with its value (None if deleted).
    fn next_stored(&mut self) -> Option<Result<Entry>> {
        loop {
            let (mut key, mut stored) = match self.stored.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(e)),
            };
            let Some((user, ts)) = split_versioned(&key) else {
                return Some(Err(Error::Corruption("row key without a version".into())));
            };
            if ts > self.read_ts {
                continue;
            }
            // The newest visible version; skip the older ones of the same
            // key. The buffers read become the entry's (no copies per row).
            key.truncate(user.len());
            while let Some(Ok((next, _))) = self.stored.peek() {
                match split_versioned(next) {
                    Some((u, _)) if u == key.as_slice() => {
                        self.stored.next();
                    }
                    _ => break,
                }
            }
            return Some(match decode_version(&stored) {
                Ok(Some(value)) => {
                    let header = stored.len() - value.len();
                    stored.drain(..header);
                    Ok((key, Some(stored)))
                }
                Ok(None) => Ok((key, None)),
                Err(e) => Err(e),
            });
        }
    }

    fn next_merged(&mut self) -> Option<Result<Entry>> {
        if self.ahead.is_none() {
            match self.next_stored() {
                Some(Ok(entry)) => self.ahead = Some(entry),
                Some(Err(e)) => return Some(Err(e)),
                None => {}
            }
        }
        let order = match (self.own.peek(), &self.ahead) {
            (Some((own, _)), Some((stored, _))) => Some(own.as_slice().cmp(stored.as_slice())),
            (Some(_), None) => Some(std::cmp::Ordering::Less),
            (None, _) => None,
        };
        let own = |scan: &mut Self| {
            scan.own
                .next()
                .map(|(key, write)| Ok((key.clone(), write.value.clone())))
        };
        match order {
            Some(std::cmp::Ordering::Equal) => {
                // The transaction's own write replaces what is stored.
                self.ahead = None;
                own(self)
            }
            Some(std::cmp::Ordering::Less) => own(self),
            _ => self.ahead.take().map(Ok),
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            match self.next_merged()? {
                Ok((key, Some(value))) => return Some(Ok((key, value))),
                Ok((_, None)) => continue,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
