//! Online backups, verified restores and point-in-time recovery.
//!
//! A backup repository is a directory:
//!
//! ```text
//!   REPO/omen-backups           marks the directory as a repository (format version)
//!   REPO/lock                   held while a backup, prune or restore runs
//!   REPO/files/<blake3>         every file of every backup, named by its content:
//!                               a file that did not change is stored once
//!   REPO/backups/<id>.json      one manifest per backup, with its own checksum
//!   REPO/archive/*.omenlog      the commit log, when a database archives into REPO
//! ```
//!
//! A backup is a RocksDB checkpoint of the live database (consistent at one
//! commit, taken while writers go on, hard links inside the data directory)
//! copied into `files/`: files whose inode, size and modification time match
//! a file of an earlier backup are not read again. Its manifest records the
//! commit timestamp and, per table, the rows visible at it, which restores
//! and verification check.
//!
//! The data directory is locked by the process that has it open; that
//! process listens on `DIR/omen.sock` (see [`control`]), so `omen backup
//! --data-dir DIR` from cron reaches a database a server holds.

pub mod archive;
pub mod control;
mod repository;

use std::path::Path;

pub use repository::{
    new_database_id, rfc3339, FileEntry, Listed, Manifest, PruneSummary, Repository,
    RestoreRequest, RestoreSummary, Retention, TableCount, VerifySummary, DATABASE_ID_KEY,
};

use super::catalog::Catalog;
use super::error::Error;
use super::mvcc::{decode_version, split_versioned};
use super::storage::{Cf, Storage};

/// Why a backup or restore failed, as the exit status of `omen backup` and
/// `omen restore` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Anything else (I/O, bad arguments): exit status 1.
    Failed,
    /// A checksum, the catalog or a row count does not match: exit status 3.
    Verification,
    /// The restore's target directory holds files: exit status 4.
    TargetNotEmpty,
    /// Another backup, prune or restore holds the repository: exit status 5.
    Busy,
    /// The data directory is held by a process that does not answer: exit status 6.
    Unreachable,
    /// The restore's target is a database some process has open: exit status 7.
    TargetInUse,
}

impl FailureKind {
    /// The exit status documented for this failure.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::Failed => 1,
            FailureKind::Verification => 3,
            FailureKind::TargetNotEmpty => 4,
            FailureKind::Busy => 5,
            FailureKind::Unreachable => 6,
            FailureKind::TargetInUse => 7,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Verification => "verification",
            FailureKind::TargetNotEmpty => "target_not_empty",
            FailureKind::Busy => "busy",
            FailureKind::Unreachable => "unreachable",
            FailureKind::TargetInUse => "target_in_use",
        }
    }

    fn from_name(name: &str) -> FailureKind {
        [
            FailureKind::Verification,
            FailureKind::TargetNotEmpty,
            FailureKind::Busy,
            FailureKind::Unreachable,
            FailureKind::TargetInUse,
        ]
        .into_iter()
        .find(|k| k.name() == name)
        .unwrap_or(FailureKind::Failed)
    }
}

/// A failed backup or restore: what kind, and what happened.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Which documented failure.
    pub kind: FailureKind,
    /// What happened, naming the file, table or process.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    fn io(what: impl std::fmt::Display, e: std::io::Error) -> Failure {
        Failure::new(FailureKind::Failed, format!("{what}: {e}"))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let kind = match e {
            Error::Corruption(_) => FailureKind::Verification,
            _ => FailureKind::Failed,
        };
        Failure::new(kind, e.to_string())
    }
}

/// What `Database::backup` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct BackupRequest {
    /// The repository (created when missing).
    pub repository: std::path::PathBuf,
    /// Backups to keep afterwards.
    pub retention: Retention,
    /// Restore the new backup into a scratch directory and check it.
    pub verify: bool,
}

/// What a backup did.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BackupSummary {
    /// The new backup's id.
    pub id: u64,
    /// The commit timestamp it holds (microseconds since 1970).
    pub commit_ts: u64,
    /// Bytes of the database files.
    pub bytes: u64,
    /// Files copied into the repository.
    pub files_copied: usize,
    /// Files already in the repository from earlier backups.
    pub files_reused: usize,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Tables and their rows.
    pub tables: usize,
    /// Rows in all tables.
    pub rows: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Whether the backup was restored and checked.
    pub verified: bool,
    /// Backups removed by the retention rules.
    pub pruned: usize,
}

/// Calls made while a long step runs: bytes done of bytes in all.
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// The rows of every table visible at `ts`, counted straight from storage.
fn count_rows(
    storage: &dyn Storage,
    catalog: &Catalog,
    ts: u64,
) -> Result<Vec<TableCount>, Failure> {
    let mut counts = Vec::new();
    for table in catalog.tables() {
        let mut rows = 0u64;
        let mut current: Option<Vec<u8>> = None;
        for entry in storage.scan(Cf::Rows, &table.key_prefix(), Some(&table.key_end())) {
            let (key, value) = entry?;
            let Some((user, version)) = split_versioned(&key) else {
                continue;
            };
            if version > ts || current.as_deref() == Some(user) {
                continue;
            }
            // The newest version at or below `ts` decides whether the row exists.
            current = Some(user.to_vec());
            if decode_version(&value)?.is_some() {
                rows += 1;
            }
        }
        counts.push(TableCount {
            name: table.name.clone(),
            rows,
        });
    }
    counts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(counts)
}

/// fsyncs a directory, so the names created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> super::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}
