//! Key-value storage under the MVCC layer.
//!
//! The engine talks to storage only through [`Storage`]: point reads, ordered
//! scans, atomic write batches and compaction. [`RocksDb`] is the real one;
//! [`Memory`] is a model with the same behaviour, used to check RocksDB
//! against on random operation sequences and to back fast tests.
//!
//! Column families, one purpose each:
//!
//! ```text
//!   catalog   table definitions (unversioned; changed through the commit pipeline)
//!   rows      versioned rows:  table id | key encoding | !commit_ts
//!   meta      database-wide settings: the timestamp oracle's high-water mark, ids
//! ```

mod memory;
mod rocks;

pub use memory::Memory;
pub use rocks::{RocksDb, RocksOptions};

use crate::engine::error::Result;

/// A column family: one keyspace with one purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Table definitions.
    Catalog,
    /// Versioned table rows.
    Rows,
    /// Database-wide metadata.
    Meta,
}

impl Cf {
    /// Every column family.
    pub const ALL: [Cf; 3] = [Cf::Catalog, Cf::Rows, Cf::Meta];

    /// The name RocksDB knows the family by.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Catalog => "catalog",
            Cf::Rows => "rows",
            Cf::Meta => "meta",
        }
    }
}

/// One change in a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// Keyspace.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Keyspace.
        cf: Cf,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key in `from..to`.
    DeleteRange {
        /// Keyspace.
        cf: Cf,
        /// First key removed.
        from: Vec<u8>,
        /// First key kept after the range.
        to: Vec<u8>,
    },
}

/// Changes applied all together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put { cf, key, value });
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: Cf, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete { cf, key });
    }

    /// Adds a range delete of `from..to`.
    pub fn delete_range(&mut self, cf: Cf, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(BatchOp::DeleteRange { cf, from, to });
    }

    /// Drops every operation after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        self.ops.truncate(len);
    }

    /// Appends every operation of `other`.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// The operations in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Whether a batch must be on disk before the write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync the write-ahead log before returning.
    Durable,
    /// Leave flushing to the operating system (a crash may lose the write).
    Buffered,
}

/// What [`Storage::scan_each`] calls with each entry (key, value): false
/// stops the scan.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<bool>;

/// An ordered stream of key-value pairs from a scan.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send + 'a>;

/// Decides, during compaction of the rows family, which entries to drop. It is
/// handed every entry of one compaction in key order.
pub trait CompactionFilter: Send {
    /// Whether to keep the entry.
    fn keep(&mut self, key: &[u8], value: &[u8]) -> bool;
}

/// Makes a [`CompactionFilter`] for each compaction of the rows family.
pub trait CompactionFilterFactory: Send + Sync {
    /// A filter for one compaction; `full` when it sees every entry of the family.
    fn create(&self, full: bool) -> Box<dyn CompactionFilter>;
}

/// A key-value store with column families, atomic batches and ordered scans.
pub trait Storage: Send + Sync {
    /// The value at `key`, if any.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The first entry at or after `key` within `key`'s prefix `prefix_len`
    /// bytes long: a seek that storage may serve from prefix filters.
    fn seek_prefix(
        &self,
        cf: Cf,
        key: &[u8],
        prefix_len: usize,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>>;

    /// Entries with `from <= key < to` (no upper limit when `to` is None), in key order,
    /// as of one consistent point in time.
    fn scan(&self, cf: Cf, from: &[u8], to: Option<&[u8]>) -> KvIter<'_>;

    /// Applies `batch` atomically.
    fn write(&self, batch: WriteBatch, sync: SyncMode) -> Result<()>;

    /// Compacts the whole of `cf`, running the compaction filter over every entry.
    fn compact(&self, cf: Cf) -> Result<()>;

    /// Applies `batch` atomically, as [`Storage::write`]; `commits` says
    /// which operations belong to which commit, in order (the commit log of
    /// point-in-time recovery records each one).
    fn write_commits(
        &self,
        batch: WriteBatch,
        sync: SyncMode,
        commits: &[CommitMark],
    ) -> Result<()> {
        let _ = commits;
        self.write(batch, sync)
    }

    /// Writes a consistent copy of the whole store into the new directory
    /// `dir`, on the same file system (hard links where it can), while
    /// writes go on.
    fn checkpoint(&self, dir: &std::path::Path) -> Result<()>;

    /// Entries of [`Cf::Rows`] (row versions) scans have read since the
    /// store was opened.
    fn entries_scanned(&self) -> u64;

    /// A new file at `path` that takes entries of `cf` in ascending key
    /// order, for [`Storage::ingest`].
    fn sorted_file(&self, cf: Cf, path: &std::path::Path) -> Result<Box<dyn SortedFile + '_>>;

    /// Adds the entries of finished [`Storage::sorted_file`]s to `cf`, all
    /// of them or none, durably; the files are moved into the store (they
    /// are gone from their paths afterwards). Their keys must be keys no
    /// write of the store has used.
    fn ingest(&self, cf: Cf, files: &[std::path::PathBuf]) -> Result<()>;

    /// Whether [`Storage::ingest`] can be used.
    fn ingests(&self) -> bool {
        true
    }

    /// Calls `each` with the entries of `cf` in `[from, to)`, in key order,
    /// borrowed from the store (nothing is copied), until it returns false.
    fn scan_each(&self, cf: Cf, from: &[u8], to: Option<&[u8]>, each: Visit<'_>) -> Result<()> {
        for entry in self.scan(cf, from, to) {
            let (key, value) = entry?;
            if !each(&key, &value)? {
                break;
            }
        }
        Ok(())
    }

    /// About how many bytes the files of `cf` hold in `[from, to)` (entries
    /// still in memory are not counted); 0 when the store cannot tell.
    /// Cheaper than [`Storage::estimate`], which also counts entries.
    fn approximate_bytes(&self, _cf: Cf, _from: &[u8], _to: &[u8]) -> u64 {
        0
    }

    /// What the store knows, without reading them, of the entries of `cf`
    /// in `[from, to)`: about how many bytes and entries its files hold
    /// (entries still in memory are not counted). Zeros when it cannot tell.
    fn estimate(&self, _cf: Cf, _from: &[u8], _to: &[u8]) -> RangeEstimate {
        RangeEstimate::default()
    }

    /// Up to `parts - 1` keys strictly inside `(from, to)`, ascending, that
    /// cut the entries of `cf` in that range into parts of about equal
    /// size, found from the store's files without reading them; empty when
    /// it cannot tell.
    fn cuts(&self, _cf: Cf, _from: &[u8], _to: &[u8], _parts: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

/// The size of a key range, as a [`Storage`] estimates it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeEstimate {
    /// Bytes on disk (compressed).
    pub bytes: u64,
    /// Entries (row versions, for the rows family).
    pub entries: u64,
}

/// A file of sorted entries being written (see [`Storage::sorted_file`]).
pub trait SortedFile {
    /// Appends an entry; keys must ascend strictly.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Bytes written so far (about).
    fn size(&self) -> u64;
    /// Completes the file and makes it durable.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Counts the row versions a store's scans read.
#[derive(Default)]
pub(super) struct ScanCounter(std::sync::atomic::AtomicU64);

impl ScanCounter {
    /// `entries`, a scan of `cf`, counted when it is of [`Cf::Rows`].
    pub fn count<'a, I>(&'a self, cf: Cf, entries: I) -> KvIter<'a>
    where
        I: Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send + 'a,
    {
        if cf != Cf::Rows {
            return Box::new(entries);
        }
        Box::new(Counted {
            inner: entries,
            seen: 0,
            total: &self.0,
        })
    }

    pub fn total(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds `n` entries a scan of `cf` read.
    pub fn add(&self, cf: Cf, n: u64) {
        if cf == Cf::Rows {
            self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Counts what an iterator yields into a total, once, when dropped.
struct Counted<'a, I> {
    inner: I,
    seen: u64,
    total: &'a std::sync::atomic::AtomicU64,
}

impl<I: Iterator> Iterator for Counted<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        self.seen += u64::from(item.is_some());
        item
    }
}

impl<I> Drop for Counted<'_, I> {
    fn drop(&mut self) {
        self.total
            .fetch_add(self.seen, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One commit inside a [`WriteBatch`] written by the commit pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitMark {
    /// The commit timestamp before this one (the database's previous commit).
    pub prev_ts: u64,
    /// This commit's timestamp.
    pub ts: u64,
    /// The batch's operations up to this index (exclusive) belong to this
    /// commit and the ones before it.
    pub end: usize,
}

#[cfg(test)]
mod tests {
    //! The RocksDB storage checked against the in-memory model.

    use super::*;
    use proptest::prelude::*;

    /// (family, key or range start, value): see `batch`.
    type BatchStep = (u8, Option<Vec<u8>>, Option<u8>);

    #[derive(Clone, Debug)]
    enum Op {
        Write(Vec<BatchStep>),
        Get(u8, Vec<u8>),
        Seek(u8, Vec<u8>),
        Scan(u8, Vec<u8>, Option<Vec<u8>>),
        Compact(u8),
    }

    fn arb_key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff), 0u8..4], 0..4)
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(
                (0u8..3, proptest::option::of(arb_key()), proptest::option::of(0u8..4)),
                1..6
            ).prop_map(Op::Write),
            2 => (0u8..3, arb_key()).prop_map(|(c, k)| Op::Get(c, k)),
            1 => (0u8..3, arb_key()).prop_map(|(c, k)| Op::Seek(c, k)),
            2 => (0u8..3, arb_key(), proptest::option::of(arb_key())).prop_map(|(c, a, b)| Op::Scan(c, a, b)),
            1 => (0u8..3).prop_map(Op::Compact),
        ]
    }

    fn cf(c: u8) -> Cf {
        Cf::ALL[c as usize % 3]
    }

    /// Builds a batch from (cf, key-or-range-start, op) triples: a put when the
    /// third element is Some(value byte), a range delete when the key is None.
    fn batch(ops: &[BatchStep]) -> WriteBatch {
        let mut b = WriteBatch::new();
        for (i, (c, key, value)) in ops.iter().enumerate() {
            match (key, value) {
                (Some(k), Some(v)) => b.put(cf(*c), k.clone(), vec![*v; i + 1]),
                (Some(k), None) => b.delete(cf(*c), k.clone()),
                (None, Some(v)) => b.delete_range(cf(*c), vec![*v], vec![*v, 2]),
                (None, None) => b.delete_range(cf(*c), vec![], vec![1]),
            }
        }
        b
    }

    fn collect(iter: KvIter<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        iter.collect::<Result<_>>().unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn rocksdb_matches_memory(ops in proptest::collection::vec(arb_op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let rocks = RocksDb::open(dir.path(), RocksOptions::default(), None).unwrap();
            let memory = Memory::new(None);
            for op in &ops {
                match op {
                    Op::Write(w) => {
                        let b = batch(w);
                        rocks.write(b.clone(), SyncMode::Buffered).unwrap();
                        memory.write(b, SyncMode::Buffered).unwrap();
                    }
                    Op::Get(c, k) => prop_assert_eq!(rocks.get(cf(*c), k).unwrap(), memory.get(cf(*c), k).unwrap()),
                    Op::Seek(c, k) => {
                        let len = k.len().min(1);
                        prop_assert_eq!(
                            rocks.seek_prefix(cf(*c), k, len).unwrap(),
                            memory.seek_prefix(cf(*c), k, len).unwrap()
                        );
                    }
                    Op::Scan(c, from, to) => {
                        let expected = collect(memory.scan(cf(*c), from, to.as_deref()));
                        prop_assert_eq!(collect(rocks.scan(cf(*c), from, to.as_deref())), expected.clone());
                        // The borrowing scan sees the same, and stops when asked.
                        let mut visited = Vec::new();
                        rocks.scan_each(cf(*c), from, to.as_deref(), &mut |k, v| {
                            visited.push((k.to_vec(), v.to_vec()));
                            Ok(visited.len() < 3)
                        }).unwrap();
                        prop_assert_eq!(visited, expected.into_iter().take(3).collect::<Vec<_>>());
                    }
                    Op::Compact(c) => {
                        rocks.compact(cf(*c)).unwrap();
                        memory.compact(cf(*c)).unwrap();
                    }
                }
            }
            for c in Cf::ALL {
                prop_assert_eq!(collect(rocks.scan(c, &[], None)), collect(memory.scan(c, &[], None)));
            }
        }
    }
}
