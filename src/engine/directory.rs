//! The in-memory key directory: for every table whose primary key is one
//! numeric or time column, the latest committed version of every key.
//!
//! ```text
//!   table 7 (id bigint primary key)      index (ALEX or BTreeMap), u64 -> payload
//!   key bytes: 00 00 00 07 | 01 | 80 00 00 00 00 00 00 2a      42 -> ts 1700...300
//!              table id    mark  order-preserving value        payload: commit ts,
//!                                read as a big-endian u64      top bit set if deleted
//! ```
//!
//! The commit pipeline updates it in commit order, after a commit is durable
//! and before it is visible, so it is never behind what readers can see and
//! never ahead of what is on disk. Reads use it to skip storage entirely for
//! keys that do not exist (a primary key insert's uniqueness check) and to
//! read the exact version of keys whose latest commit is in their snapshot.
//! Range reads ask it first: a range where it lists no key (or only keys
//! deleted by commits the reader sees, up to [`DIRECTORY_SCAN_LIMIT`] of them)
//! is answered without storage.
//!
//! Opening a database reads no rows: each table's directory starts empty
//! and not ready, and a background thread ([`Directories::build`]) reads its
//! keys from storage, starting a moment after the open (so a process that
//! runs one command and exits never does). Until a table's directory is ready, reads of it go to
//! storage as if it had none, while commits already record their keys in it;
//! when the build has read every key it merges them under those newer
//! records and the directory takes over.
//!
//! A deleted key stays (marked deleted) while a snapshot may still see an
//! older version of it; once its delete is at or below the garbage
//! collection watermark, no snapshot can, and the directory forgets the key,
//! so a delete-heavy table's directory does not grow for ever.
//!
//! [`DIRECTORY_SCAN_LIMIT`]: super::mvcc::DIRECTORY_SCAN_LIMIT

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::catalog::{Catalog, Table};
use super::error::Result;
use super::index::Alex;
use super::mvcc::{decode_version, split_versioned, DirectoryLookup, KeyDirectory};
use super::storage::{Cf, Storage};
use super::types::DataType;

/// Which in-memory structure serves as the key directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirectoryKind {
    /// The ALEX learned index (the default).
    #[default]
    Alex,
    /// The standard library's B-tree, for comparison.
    BTree,
    /// No directory: every read goes to RocksDB.
    None,
}

const DELETED: u64 = 1 << 63;

enum Index {
    Alex(Alex<u64>),
    BTree(BTreeMap<u64, u64>),
}

impl Index {
    fn build(kind: DirectoryKind, items: &[(u64, u64)]) -> Index {
        match kind {
            DirectoryKind::BTree => Index::BTree(items.iter().copied().collect()),
            _ => Index::Alex(Alex::bulk_load(items)),
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        match self {
            Index::Alex(a) => a.get(key),
            Index::BTree(b) => b.get(&key).copied(),
        }
    }

    fn insert(&mut self, key: u64, payload: u64) {
        match self {
            Index::Alex(a) => {
                a.insert(key, payload);
            }
            Index::BTree(b) => {
                b.insert(key, payload);
            }
        }
    }

    fn remove(&mut self, key: u64) {
        match self {
            Index::Alex(a) => {
                a.remove(key);
            }
            Index::BTree(b) => {
                b.remove(&key);
            }
        }
    }

    /// The smallest and the largest key.
    fn bounds(&self) -> Option<(u64, u64)> {
        match self {
            Index::Alex(a) => {
                let first = a.range(Bound::Unbounded, Bound::Unbounded).next()?.0;
                let last = a.range_rev(Bound::Unbounded, Bound::Unbounded).next()?.0;
                Some((first, last))
            }
            Index::BTree(b) => Some((*b.first_key_value()?.0, *b.last_key_value()?.0)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Index::Alex(a) => a.len(),
            Index::BTree(b) => b.len(),
        }
    }

    /// Keys from `lower` on with their payloads, in order, while `more` says so.
    fn for_each_from(&self, lower: u64, mut more: impl FnMut(u64, u64) -> bool) {
        match self {
            Index::Alex(a) => {
                for (k, p) in a.range(Bound::Included(lower), Bound::Unbounded) {
                    if !more(k, p) {
                        return;
                    }
                }
            }
            Index::BTree(b) => {
                for (k, p) in b.range(lower..) {
                    if !more(*k, *p) {
                        return;
                    }
                }
            }
        }
    }
}

/// The key directories of all eligible tables.
pub struct Directories {
    kind: DirectoryKind,
    tables: RwLock<HashMap<u32, TableIndex>>,
}

/// One table's directory, the width of its key values in bytes, and how
/// many deletes it has recorded since it last forgot deleted keys.
#[derive(Clone)]
struct TableIndex {
    width: usize,
    index: Arc<RwLock<Index>>,
    deletes: Arc<AtomicUsize>,
    /// Whether `index` holds every key; until then it holds only the keys
    /// committed since the database opened, and nothing reads it.
    ready: Arc<AtomicBool>,
}

impl TableIndex {
    fn new(width: usize, index: Index, ready: bool) -> TableIndex {
        TableIndex {
            width,
            index: Arc::new(RwLock::new(index)),
            deletes: Arc::new(AtomicUsize::new(0)),
            ready: Arc::new(AtomicBool::new(ready)),
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Deletes a table's directory records before it looks for deleted keys to
/// forget, at least; more for a large table, so the sweeps cost O(1) per delete.
const FORGET_AFTER_DELETES: usize = 256;

/// Bytes of the key value in an eligible table's key, by key column type.
fn key_width(table: &Table) -> Option<usize> {
    let [key] = table.primary_key_indices()[..] else {
        return None;
    };
    match table.columns[key].data_type {
        DataType::Int16 => Some(2),
        DataType::Int32 | DataType::Date | DataType::Float32 => Some(4),
        DataType::Int64
        | DataType::Float64
        | DataType::Time
        | DataType::Timestamp
        | DataType::TimestampTz => Some(8),
        _ => None,
    }
}

/// The directory key of a row key: the value bytes after table id and marker.
fn directory_key(key: &[u8]) -> Option<(u32, u64)> {
    let (table, rest) = key.split_first_chunk::<4>()?;
    let (&marker, value) = rest.split_first()?;
    if marker != 0x01 || value.is_empty() || value.len() > 8 {
        return None;
    }
    let number = value.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
    Some((u32::from_be_bytes(*table), number))
}

impl Directories {
    /// A directory for every eligible table of `catalog`, empty and not yet
    /// ready: [`Directories::build`] fills them from storage.
    pub fn new(kind: DirectoryKind, catalog: &Catalog) -> Directories {
        let directories = Directories {
            kind,
            tables: RwLock::new(HashMap::new()),
        };
        if kind == DirectoryKind::None {
            return directories;
        }
        for table in catalog.tables() {
            if let Some(width) = key_width(&table) {
                let table_index = TableIndex::new(width, Index::build(kind, &[]), false);
                directories.tables.write().insert(table.id, table_index);
            }
        }
        directories
    }

    /// Reads the keys of every table whose directory is not ready from
    /// storage, table by table, while the database is in use, and makes each
    /// directory ready. Returns early, leaving the rest not ready, when
    /// `stop` is set.
    pub fn build(&self, storage: &dyn Storage, catalog: &Catalog, stop: &AtomicBool) -> Result<()> {
        for table in catalog.tables() {
            let Some(target) = self.tables.read().get(&table.id).cloned() else {
                continue;
            };
            if target.is_ready() {
                continue;
            }
            let mut items: Vec<(u64, u64)> = Vec::new();
            let scan = storage.scan(Cf::Rows, &table.key_prefix(), Some(&table.key_end()));
            for (n, entry) in scan.enumerate() {
                if n % 4096 == 0 && stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let (key, value) = entry?;
                let Some((user, ts)) = split_versioned(&key) else {
                    continue;
                };
                let Some((_, k)) = directory_key(user) else {
                    continue;
                };
                // Versions of a key sort newest first: keep the first seen.
                if items.last().is_some_and(|(last, _)| *last == k) {
                    continue;
                }
                let deleted = decode_version(&value)?.is_none();
                items.push((k, ts | if deleted { DELETED } else { 0 }));
            }
            // Commits since the open are in the index already and newer than
            // anything the scan read of their keys.
            let mut index = target.index.write();
            let mut since = Vec::with_capacity(index.len());
            index.for_each_from(0, |k, payload| {
                since.push((k, payload));
                true
            });
            let merged = merge_newer(items, since);
            let deleted = merged.iter().filter(|(_, p)| p & DELETED != 0).count();
            *index = Index::build(self.kind, &merged);
            target.deletes.store(deleted, Ordering::Relaxed);
            target.ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Whether every table's directory is ready.
    pub fn is_ready(&self) -> bool {
        self.tables.read().values().all(TableIndex::is_ready)
    }

    /// Starts an empty directory for a new table, when its key is eligible.
    pub fn add_table(&self, table: &Table) {
        if self.kind == DirectoryKind::None {
            return;
        }
        if let Some(width) = key_width(table) {
            let table_index = TableIndex::new(width, Index::build(self.kind, &[]), true);
            self.tables.write().insert(table.id, table_index);
        }
    }

    /// Whether table `id` has a directory (ready or being built).
    pub fn covers(&self, id: u32) -> bool {
        self.tables.read().contains_key(&id)
    }

    /// The number a directory knows row key `key` of table `id` by.
    pub fn key_number(&self, id: u32, key: &[u8]) -> Option<u64> {
        directory_key(key)
            .filter(|(table, _)| *table == id)
            .map(|(_, k)| k)
    }

    /// Records rows under `keys` (numbers from [`Directories::key_number`],
    /// ascending) committed at `ts`, all at once: the keys of a bulk load,
    /// each new or replacing a deleted one. Whether the directory is ready
    /// does not change (one still being built merges them as newer).
    pub fn load(&self, id: u32, keys: Vec<u64>, ts: u64) {
        let Some(target) = self.tables.read().get(&id).cloned() else {
            return;
        };
        let mut index = target.index.write();
        let mut old = Vec::with_capacity(index.len());
        index.for_each_from(0, |k, payload| {
            old.push((k, payload));
            true
        });
        let new = keys.into_iter().map(|k| (k, ts)).collect();
        let merged = merge_newer(old, new);
        let deleted = merged.iter().filter(|(_, p)| p & DELETED != 0).count();
        *index = Index::build(self.kind, &merged);
        target.deletes.store(deleted, Ordering::Relaxed);
    }

    /// Forgets a dropped table.
    pub fn remove_table(&self, id: u32) {
        self.tables.write().remove(&id);
    }

    /// Number of keys (live and deleted) held for table `id`; None when it
    /// has no directory or its directory is not ready.
    pub fn len(&self, id: u32) -> Option<usize> {
        let len = self.ready(id)?.index.read().len();
        Some(len)
    }

    /// Keys that cut table `id`'s key range into `parts` pieces of equal
    /// width in key space, between its smallest and largest key (so pieces
    /// hold about as many rows when keys are dense, as serial ids and times
    /// are), when its directory holds at least `min_keys` keys; none
    /// otherwise. Ascending.
    pub fn split_points(&self, id: u32, parts: usize, min_keys: usize) -> Vec<Vec<u8>> {
        let Some(TableIndex { width, index, .. }) = self.ready(id) else {
            return Vec::new();
        };
        let index = index.read();
        if parts < 2 || index.len() < min_keys {
            return Vec::new();
        }
        let Some((low, high)) = index.bounds().filter(|(low, high)| low < high) else {
            return Vec::new();
        };
        let mut prefix = id.to_be_bytes().to_vec();
        prefix.push(0x01);
        let mut points: Vec<Vec<u8>> = (1..parts)
            .map(|i| {
                let span = (high - low) as u128 * i as u128 / parts as u128;
                let mut key = prefix.clone();
                key.extend_from_slice(&(low + span as u64).to_be_bytes()[8 - width..]);
                key
            })
            .collect();
        points.dedup();
        points
    }

    /// Table `id`'s directory, when it is ready.
    fn ready(&self, id: u32) -> Option<TableIndex> {
        let tables = self.tables.read();
        tables.get(&id).filter(|t| t.is_ready()).cloned()
    }

    fn index(&self, id: u32) -> Option<Arc<RwLock<Index>>> {
        self.ready(id).map(|t| t.index)
    }
}

impl KeyDirectory for Directories {
    fn lookup(&self, key: &[u8]) -> DirectoryLookup {
        let Some((table, k)) = directory_key(key) else {
            return DirectoryLookup::NotCovered;
        };
        let Some(index) = self.index(table) else {
            return DirectoryLookup::NotCovered;
        };
        let payload = index.read().get(k);
        match payload {
            None => DirectoryLookup::Absent,
            Some(p) => DirectoryLookup::Latest {
                ts: p & !DELETED,
                exists: p & DELETED == 0,
            },
        }
    }

    fn range_is_empty(&self, from: &[u8], to: Option<&[u8]>, read_ts: u64, limit: usize) -> bool {
        let Some(id) = from.first_chunk::<4>().map(|id| u32::from_be_bytes(*id)) else {
            return false;
        };
        let Some(TableIndex { width, index, .. }) = self.ready(id) else {
            return false;
        };
        let mut prefix = id.to_be_bytes().to_vec();
        prefix.push(0x01);
        // The range must stay inside this table's keys.
        let table_end = (id as u64 + 1).to_be_bytes()[4..].to_vec();
        let Some(to) = to.filter(|to| *to <= table_end.as_slice()) else {
            return false;
        };
        // Keys are the prefix and `width` big-endian bytes, so byte order is
        // number order: start at `from`'s value bytes padded with zeros.
        let lower = if from <= prefix.as_slice() {
            0
        } else if let Some(value) = from.strip_prefix(prefix.as_slice()) {
            let mut bytes = [0u8; 8];
            let n = value.len().min(width);
            bytes[8 - width..8 - width + n].copy_from_slice(&value[..n]);
            u64::from_be_bytes(bytes)
        } else {
            return false;
        };
        let mut empty = true;
        let mut seen = 0;
        let mut key = prefix.clone();
        index.read().for_each_from(lower, |k, payload| {
            key.truncate(prefix.len());
            key.extend_from_slice(&k.to_be_bytes()[8 - width..]);
            if key.as_slice() >= to {
                return false;
            }
            if key.as_slice() < from {
                return true;
            }
            seen += 1;
            let deleted = payload & DELETED != 0;
            if !deleted || payload & !DELETED > read_ts || seen > limit {
                // A row the snapshot may see, or too many keys to look at.
                empty = false;
                return false;
            }
            true
        });
        empty
    }

    fn apply(&self, key: &[u8], ts: u64, exists: bool) {
        let Some((table, k)) = directory_key(key) else {
            return;
        };
        let Some(table) = self.tables.read().get(&table).cloned() else {
            return;
        };
        table
            .index
            .write()
            .insert(k, ts | if exists { 0 } else { DELETED });
        if !exists {
            table.deletes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn forget_deleted(&self, watermark: &dyn Fn() -> u64) {
        let due: Vec<TableIndex> = self
            .tables
            .read()
            .values()
            .filter(|t| t.is_ready())
            .filter(|t| {
                let deletes = t.deletes.load(Ordering::Relaxed);
                deletes >= FORGET_AFTER_DELETES && deletes >= t.index.read().len() / 8
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        let watermark = watermark();
        for table in due {
            let mut forget = Vec::new();
            table.index.read().for_each_from(0, |k, payload| {
                if payload & DELETED != 0 && payload & !DELETED <= watermark {
                    forget.push(k);
                }
                true
            });
            let mut index = table.index.write();
            for k in forget {
                index.remove(k);
            }
            // Deletes an old snapshot still sees wait for the next sweep, which
            // comes after as many new deletes again: each sweep reads the whole
            // directory, so it must not run at every commit.
            table.deletes.store(0, Ordering::Relaxed);
        }
    }
}

/// `old` and `new`, two lists of (key, payload) in key order, as one: a
/// key in both takes its payload from `new`.
fn merge_newer(old: Vec<(u64, u64)>, new: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut merged = Vec::with_capacity(old.len() + new.len());
    let mut new = new.into_iter().peekable();
    for (k, payload) in old {
        while let Some(&(n, _)) = new.peek() {
            if n > k {
                break;
            }
            merged.extend(new.next());
        }
        if merged.last().is_none_or(|(last, _)| *last != k) {
            merged.push((k, payload));
        }
    }
    merged.extend(new);
    merged
}

#[cfg(test)]
mod tests {
    use super::merge_newer;

    #[test]
    fn merging_keeps_the_newer_payload_and_key_order() {
        let old = vec![(1, 10), (3, 30), (5, 50), (9, 90)];
        let new = vec![(0, 1), (3, 31), (6, 61), (9, 91), (12, 121)];
        assert_eq!(
            merge_newer(old, new),
            [
                (0, 1),
                (1, 10),
                (3, 31),
                (5, 50),
                (6, 61),
                (9, 91),
                (12, 121)
            ]
        );
        assert_eq!(merge_newer(vec![(1, 1)], vec![]), [(1, 1)]);
        assert_eq!(merge_newer(vec![], vec![(2, 2)]), [(2, 2)]);
    }
}
