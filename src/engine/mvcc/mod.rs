//! Multi-version concurrency control over [`Storage`](crate::engine::storage::Storage).
//!
//! Every committed write is a new version of its key, stamped with the commit
//! timestamp of its transaction. Keys in the rows family carry the timestamp
//! inverted, so a key's versions sort newest first:
//!
//! ```text
//!   user key (table id | key encoding)   !commit_ts (8 bytes, big-endian)   value
//!   ...07|01 80 00 00 2a                 !1700000000000300                  row  (newest)
//!   ...07|01 80 00 00 2a                 !1700000000000120                  tombstone
//!   ...07|01 80 00 00 2a                 !1700000000000050                  row  (oldest)
//! ```
//!
//! A transaction reads at a snapshot timestamp: for each key, the first version
//! at or below it, plus the transaction's own buffered writes. Writes are
//! buffered until commit and then applied in one atomic write batch, so a
//! reader never sees part of a transaction:
//!
//! ```text
//!   begin ──> snapshot = newest visible commit ts
//!     reads:  own writes, else newest version <= snapshot
//!     writes: buffered in the transaction
//!   commit ──> commit pipeline (one leader at a time, in order):
//!     validate  (isolation rules against the conflict tracker)
//!     stamp     ts = max(previous + 1, wall clock µs)
//!     group     one write batch for every transaction waiting, one fsync
//!     publish   visible ts = newest ts of the group; readers see it all at once
//! ```
//!
//! Isolation levels have PostgreSQL's meaning:
//! - READ COMMITTED: a new snapshot for every statement.
//! - REPEATABLE READ: one snapshot; a write to a key that another transaction
//!   changed after the snapshot fails with 40001 (first committer wins).
//! - SERIALIZABLE: as REPEATABLE READ, and at commit every key read and every
//!   range scanned must be unchanged since the snapshot (backward
//!   validation), so the transaction is equivalent to running alone at its
//!   commit point: no write skew, no phantoms. Read-only transactions read a
//!   consistent prefix of the commit order and never abort.
//!
//! Versions that no snapshot can see any more are removed during RocksDB
//! compactions (see [`gc`]), after a retention window.

mod commit;
pub mod gc;
mod horizon;
mod store;
mod transaction;
mod version;

pub use commit::{put_last_ts, stored_last_ts, CommitApply, CommitCheck};
pub use horizon::{now_micros, Horizon};
pub use store::{
    DirectoryLookup, Durability, KeyDirectory, Mvcc, MvccOptions, DIRECTORY_SCAN_LIMIT,
};
pub use transaction::{
    IsolationLevel, Mark, RowLock, RowLocker, Scan, Snapshot, Transaction, WriteKind,
};
pub use version::{
    decode_version, into_version, split_versioned, versioned_key, ROW as VERSION_ROW,
};
