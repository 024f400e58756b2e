//! [`Mvcc`]: the versioned store that transactions run against.

use std::sync::Arc;
use std::time::Duration;

use super::commit::stored_last_ts;
use super::commit::{CommitApply, CommitCheck, History, Pipeline, Request};
use super::horizon::Horizon;
use super::transaction::{IsolationLevel, Transaction};
use super::version::{decode_version, split_versioned, versioned_key};
use crate::engine::error::{Error, Result};
use crate::engine::storage::{Cf, Storage, SyncMode, WriteBatch};

/// When a successful commit is on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// A commit returns after the write-ahead log is fsynced (the default).
    #[default]
    Full,
    /// A commit returns once written to the operating system; a power loss or
    /// kernel crash can lose the newest commits (never part of one).
    Buffered,
}

impl Durability {
    /// How a write at this durability reaches the disk.
    pub fn sync(self) -> SyncMode {
        match self {
            Durability::Full => SyncMode::Durable,
            Durability::Buffered => SyncMode::Buffered,
        }
    }
}

/// What an in-memory key directory knows of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryLookup {
    /// The directory does not cover this key; ask storage.
    NotCovered,
    /// No committed version of the key exists.
    Absent,
    /// The latest committed version: its timestamp and whether it holds a row.
    Latest {
        /// Commit timestamp of the latest version.
        ts: u64,
        /// False when the latest version is a delete.
        exists: bool,
    },
}

/// An in-memory directory of the latest committed version of keys, kept
/// exactly in step with commits by the pipeline.
pub trait KeyDirectory: Send + Sync {
    /// What the directory knows of `key`.
    fn lookup(&self, key: &[u8]) -> DirectoryLookup;
    /// Records a committed write, in commit order, before it becomes visible.
    fn apply(&self, key: &[u8], ts: u64, exists: bool);
    /// Whether a snapshot at `read_ts` sees no row in `from..to` (to the end
    /// when None): no key there was ever committed, or every one was deleted
    /// by a commit the snapshot sees. False when the directory does not
    /// cover the whole range or would have to look at more than `limit` keys.
    fn range_is_empty(&self, from: &[u8], to: Option<&[u8]>, read_ts: u64, limit: usize) -> bool;
    /// Forgets deleted keys whose delete is at or below `watermark()`: no
    /// snapshot can see any version of them. Called in commit order, between
    /// commits; it may do nothing until enough deletes have gathered (and
    /// then need not ask for the watermark).
    fn forget_deleted(&self, watermark: &dyn Fn() -> u64);
}

/// Most keys of a range the key directory looks at to show it holds no row.
pub const DIRECTORY_SCAN_LIMIT: usize = 1024;

/// Settings of the versioned store.
#[derive(Clone, Debug)]
pub struct MvccOptions {
    /// When commits are durable.
    pub durability: Durability,
    /// How long old versions stay readable after being overwritten.
    pub gc_retention: Duration,
    /// Bytes of writes one transaction may buffer.
    pub memory_limit: usize,
}

impl Default for MvccOptions {
    fn default() -> MvccOptions {
        MvccOptions {
            durability: Durability::default(),
            gc_retention: Duration::ZERO,
            memory_limit: crate::engine::memory::default_limit(),
        }
    }
}

/// Versioned keys and values with snapshot transactions; see the module docs.
pub struct Mvcc {
    storage: Arc<dyn Storage>,
    horizon: Arc<Horizon>,
    pipeline: Pipeline,
    options: MvccOptions,
    directory: Option<Arc<dyn KeyDirectory>>,
}

impl Mvcc {
    /// Opens the store over `storage`; `horizon` must be the one the storage's
    /// compaction filter reads.
    pub fn open(
        storage: Arc<dyn Storage>,
        horizon: Arc<Horizon>,
        options: MvccOptions,
        directory: Option<Arc<dyn KeyDirectory>>,
    ) -> Result<Arc<Mvcc>> {
        let last_ts = stored_last_ts(storage.as_ref())?;
        horizon.publish(last_ts);
        Ok(Arc::new(Mvcc {
            storage,
            horizon,
            pipeline: Pipeline::new(last_ts),
            options,
            directory,
        }))
    }

    /// A commit timestamp of its own, with nothing written at it: the
    /// version timestamp of a bulk load, whose rows a later commit makes
    /// visible (see [`Horizon::hide`]).
    pub fn reserve_timestamp(&self) -> Result<u64> {
        self.commit_unversioned(WriteBatch::new(), None, None)
    }

    /// Starts a transaction at the newest visible commit.
    pub fn begin(self: &Arc<Self>, isolation: IsolationLevel) -> Transaction {
        Transaction::new(self.clone(), isolation)
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Bytes of writes one transaction may buffer.
    pub(super) fn memory_limit(&self) -> usize {
        self.options.memory_limit
    }

    /// The visibility horizon.
    pub fn horizon(&self) -> &Arc<Horizon> {
        &self.horizon
    }

    /// Commits unversioned changes (the catalog, metadata) through the
    /// pipeline, ordered with every transaction commit.
    pub fn commit_unversioned(
        &self,
        batch: WriteBatch,
        check: Option<CommitCheck>,
        apply: Option<CommitApply>,
    ) -> Result<u64> {
        let request = Request {
            isolation: IsolationLevel::ReadCommitted,
            start_ts: self.horizon.visible(),
            writes: Vec::new(),
            reads: Vec::new(),
            ranges: Vec::new(),
            extra: batch,
            check,
            apply,
        };
        self.commit_request(request)
    }

    pub(super) fn commit_request(&self, request: Request) -> Result<u64> {
        self.pipeline.commit(
            request,
            self.storage.as_ref(),
            &self.horizon,
            self.directory.as_deref(),
            self.options.durability.sync(),
        )
    }

    /// The last commit that wrote `key`, when it committed after `since`:
    /// (timestamp, key holds a row).
    pub(super) fn written_after(&self, key: &[u8], since: u64) -> Result<Option<(u64, bool)>> {
        let history = History {
            storage: self.storage.as_ref(),
            directory: self.directory.as_deref(),
        };
        self.pipeline.tracker().written_after(key, since, &history)
    }

    /// Keys the conflict tracker remembers now.
    #[cfg(test)]
    pub(super) fn tracked_keys(&self) -> usize {
        self.pipeline.tracker().len()
    }

    /// The value of `key`'s newest version at or below `ts` (None if absent or deleted).
    pub(super) fn read_at(&self, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>> {
        if let Some(directory) = &self.directory {
            match directory.lookup(key) {
                DirectoryLookup::Absent => return Ok(None),
                DirectoryLookup::Latest { ts: latest, exists } if latest <= ts => {
                    if !exists {
                        return Ok(None);
                    }
                    // The snapshot sees the latest version: read exactly that key.
                    let stored = self
                        .storage
                        .get(Cf::Rows, &versioned_key(key, latest))?
                        .ok_or_else(|| {
                            Error::Corruption(
                                "the key directory names a version storage does not have".into(),
                            )
                        })?;
                    return Ok(decode_version(&stored)?.map(<[u8]>::to_vec));
                }
                _ => {}
            }
        }
        let seek = versioned_key(key, ts);
        let Some((found, stored)) = self.storage.seek_prefix(Cf::Rows, &seek, key.len())? else {
            return Ok(None);
        };
        match split_versioned(&found) {
            Some((user, _)) if user == key => Ok(decode_version(&stored)?.map(<[u8]>::to_vec)),
            _ => Ok(None),
        }
    }

    /// The value of `key`'s newest committed version (None if absent or deleted).
    pub fn read_latest(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read_at(key, u64::MAX)
    }

    /// Whether the key directory shows that a snapshot at `read_ts` sees no
    /// row in `from..to`: no key there was ever committed, or every one was
    /// deleted by a commit the snapshot sees. Such a range read needs no
    /// storage at all. (Listing a non-empty range from the directory and
    /// reading each key's version costs more than a storage iterator, so
    /// those ranges stream from storage.)
    pub(super) fn range_is_empty(&self, from: &[u8], to: Option<&[u8]>, read_ts: u64) -> bool {
        self.directory
            .as_ref()
            .is_some_and(|d| d.range_is_empty(from, to, read_ts, DIRECTORY_SCAN_LIMIT))
    }

    /// Removes versions no snapshot can see, now rather than in a later compaction.
    pub fn gc(&self) -> Result<()> {
        self.storage.compact(Cf::Rows)
    }
}
