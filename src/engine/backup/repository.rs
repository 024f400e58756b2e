//! [`Repository`]: a directory of backups sharing their unchanged files.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{archive, count_rows, sync_dir, BackupSummary, Failure, FailureKind, ProgressFn};
use crate::engine::catalog::Catalog;
use crate::engine::mvcc::stored_last_ts;
use crate::engine::storage::{Cf, RocksDb, RocksOptions, Storage, SyncMode, WriteBatch};

const MARKER: &str = "omen-backups";
const FORMAT: u32 = 1;
const FILES: &str = "files";
const BACKUPS: &str = "backups";
/// The meta-family key of the database's id (16 random bytes), which names
/// its archive segments and changes when a backup is restored.
pub const DATABASE_ID_KEY: &[u8] = b"database.id";

/// One backup's description, stored as `backups/<id>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The repository format.
    pub format: u32,
    /// The omen that took it.
    pub omen_version: String,
    /// The backup's number in its repository, from 1.
    pub id: u64,
    /// The id of the database backed up (hex), which its archive carries.
    pub database_id: String,
    /// The newest commit the backup holds (microseconds since 1970).
    pub commit_ts: u64,
    /// When the backup was taken (RFC 3339, UTC).
    pub created: String,
    /// The same, in microseconds since 1970.
    pub created_micros: u64,
    /// The database's files.
    pub files: Vec<FileEntry>,
    /// Rows per table at `commit_ts`.
    pub tables: Vec<TableCount>,
    /// Files this backup added to the repository.
    pub files_copied: usize,
    /// Bytes this backup added to the repository.
    pub bytes_copied: u64,
}

/// One file of a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the data directory.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// blake3 of its content, hex: its name under `files/`.
    pub blake3: String,
    /// Where it was copied from (device, inode, modification time in
    /// nanoseconds): the next backup does not read a file again whose source
    /// is the same.
    #[serde(default)]
    pub source: Option<(u64, u64, i64)>,
}

/// A table and its rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Table name.
    pub name: String,
    /// Rows visible at the backup's commit.
    pub rows: u64,
}

/// A backup as `--list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// Its id.
    pub id: u64,
    /// Its manifest, when it reads back intact.
    pub manifest: Option<Manifest>,
    /// Why it cannot be restored, when it cannot.
    pub problem: Option<String>,
}

impl Listed {
    /// Whether it reads back and every file it names is there.
    pub fn valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// Which backups to keep: those any rule keeps. With no rule, all of them.
#[derive(Clone, Debug, Default)]
pub struct Retention {
    /// The newest N.
    pub keep: Option<usize>,
    /// Those taken within this long.
    pub keep_within: Option<std::time::Duration>,
}

/// What a prune did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneSummary {
    /// Backups removed.
    pub removed: usize,
    /// Files no backup needs any more, removed.
    pub files_removed: usize,
    /// Archive segments older than every backup kept, removed.
    pub segments_removed: usize,
}

/// What `Repository::restore` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// The directory to restore into.
    pub data_dir: PathBuf,
    /// Which backup (the newest fitting one when None).
    pub backup: Option<u64>,
    /// Replay the archive to the commits at or before this timestamp.
    pub to_timestamp: Option<u64>,
    /// Replay the whole archive.
    pub to_latest: bool,
    /// Replace a directory that holds files.
    pub force: bool,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The backup restored.
    pub backup: u64,
    /// Its commit timestamp.
    pub backup_ts: u64,
    /// The newest commit in the restored database.
    pub commit_ts: u64,
    /// Archived commits replayed after the backup.
    pub commits_replayed: u64,
    /// Files and bytes copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// What a verification found (it fails otherwise).
#[derive(Clone, Debug, Serialize)]
pub struct VerifySummary {
    /// The backup checked.
    pub backup: u64,
    /// Files whose checksums matched.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Tables whose row counts matched.
    pub tables: usize,
    /// Rows counted.
    pub rows: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// A directory of backups; see the module docs.
pub struct Repository {
    root: PathBuf,
}

/// Held while an operation uses the repository.
pub struct RepositoryLock {
    _file: File,
}

fn failed(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure::io(what, e)
}

fn verification(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::Verification, message)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The time `micros` after 1970 in RFC 3339, UTC.
pub fn rfc3339(micros: u64) -> String {
    chrono::DateTime::from_timestamp_micros(micros as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

impl Repository {
    /// The repository in `root`, which must be one.
    pub fn open(root: &Path) -> Result<Repository, Failure> {
        let marker = root.join(MARKER);
        let text = std::fs::read_to_string(&marker).map_err(|e| {
            Failure::new(
                FailureKind::Failed,
                format!("{} is not an omen backup repository ({e})", root.display()),
            )
        })?;
        if text.trim() != FORMAT.to_string() {
            return Err(Failure::new(
                FailureKind::Failed,
                format!(
                    "{} has backup format {}; this omen reads format {FORMAT}",
                    root.display(),
                    text.trim()
                ),
            ));
        }
        Ok(Repository {
            root: root.to_path_buf(),
        })
    }

    /// The repository in `root`, made when the directory is missing or empty.
    pub fn create(root: &Path) -> Result<Repository, Failure> {
        if root.join(MARKER).exists() {
            return Repository::open(root);
        }
        let empty = match std::fs::read_dir(root) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(Failure::io(format!("reading {}", root.display()), e)),
        };
        // A directory of other files is not taken over, except an archive
        // a database started there before the first backup.
        if !empty && !root.join(archive::ARCHIVE_DIR).exists() {
            return Err(Failure::new(
                FailureKind::TargetNotEmpty,
                format!(
                    "{} holds files and is not an omen backup repository",
                    root.display()
                ),
            ));
        }
        for dir in [FILES, BACKUPS] {
            std::fs::create_dir_all(root.join(dir))
                .map_err(failed(format!("creating {}", root.join(dir).display())))?;
        }
        let marker = root.join(MARKER);
        std::fs::write(&marker, format!("{FORMAT}\n"))
            .map_err(failed(format!("writing {}", marker.display())))?;
        sync_dir(root)?;
        Ok(Repository {
            root: root.to_path_buf(),
        })
    }

    /// The repository's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the repository's lock: exclusive for what writes to it, shared
    /// for what reads. Fails at once with [`FailureKind::Busy`] when taken.
    pub fn lock(&self, exclusive: bool) -> Result<RepositoryLock, Failure> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(failed(format!("opening {}", path.display())))?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => Ok(RepositoryLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Failure::new(
                FailureKind::Busy,
                format!(
                    "another backup, prune or restore is using {}; try again when it ends",
                    self.root.display()
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Failure::io(format!("locking {}", path.display()), e))
            }
        }
    }

    fn manifest_path(&self, id: u64) -> PathBuf {
        self.root.join(BACKUPS).join(format!("{id:06}.json"))
    }

    fn file_path(&self, hash: &str) -> PathBuf {
        self.root.join(FILES).join(hash)
    }

    /// Every backup, oldest first, with what is wrong with those that
    /// cannot be restored.
    pub fn list(&self) -> Result<Vec<Listed>, Failure> {
        let dir = self.root.join(BACKUPS);
        let mut ids = Vec::new();
        for entry in
            std::fs::read_dir(&dir).map_err(failed(format!("reading {}", dir.display())))?
        {
            let entry = entry.map_err(failed(format!("reading {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids
            .into_iter()
            .map(|id| match self.manifest(id) {
                Ok(manifest) => {
                    let missing = manifest.files.iter().find(|f| {
                        std::fs::metadata(self.file_path(&f.blake3))
                            .map(|m| m.len())
                            .ok()
                            != Some(f.size)
                    });
                    Listed {
                        id,
                        problem: missing.map(|f| {
                            format!(
                                "its file {} (files/{}) is missing or has the wrong size",
                                f.name, f.blake3
                            )
                        }),
                        manifest: Some(manifest),
                    }
                }
                Err(e) => Listed {
                    id,
                    manifest: None,
                    problem: Some(e.message),
                },
            })
            .collect())
    }

    /// The manifest of backup `id`, checked against its checksum.
    pub fn manifest(&self, id: u64) -> Result<Manifest, Failure> {
        let path = self.manifest_path(id);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::new(
                    FailureKind::Failed,
                    format!("there is no backup {id} in {}", self.root.display()),
                )
            } else {
                verification(format!(
                    "the manifest {} cannot be read: {e}",
                    path.display()
                ))
            }
        })?;
        let damaged = || verification(format!("the manifest {} is damaged", path.display()));
        let (body, trailer) = text.trim_end().rsplit_once('\n').ok_or_else(damaged)?;
        if trailer.strip_prefix("blake3 ") != Some(blake3::hash(body.as_bytes()).to_hex().as_str())
        {
            return Err(damaged());
        }
        serde_json::from_str(body).map_err(|_| damaged())
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), Failure> {
        let body = serde_json::to_string_pretty(manifest).expect("a manifest serialises");
        let text = format!(
            "{body}\nblake3 {}\n",
            blake3::hash(body.as_bytes()).to_hex()
        );
        let path = self.manifest_path(manifest.id);
        write_atomically(&path, text.as_bytes())
    }

    /// Removes what an interrupted backup or verification left: partial
    /// files and scratch directories. Needs the exclusive lock.
    fn clean(&self) {
        if let Ok(entries) = std::fs::read_dir(self.root.join(FILES)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".partial") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("verify-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// Stores the checkpoint in `checkpoint` (a directory this call may
    /// change) as a new backup of the database `database_id`. Needs the
    /// exclusive lock.
    pub(crate) fn store(
        &self,
        checkpoint: &Path,
        database_id: &[u8; 16],
        progress: ProgressFn<'_>,
    ) -> Result<BackupSummary, Failure> {
        let started = Instant::now();
        self.clean();
        let listed = self.list()?;
        let known: std::collections::HashMap<(String, (u64, u64, i64)), FileEntry> = listed
            .iter()
            .filter(|l| l.valid())
            .flat_map(|l| l.manifest.iter().flat_map(|m| m.files.iter()))
            .filter_map(|f| f.source.map(|s| ((f.name.clone(), s), f.clone())))
            .collect();
        let id = listed.last().map_or(1, |l| l.id + 1);

        let mut sources = Vec::new();
        for entry in std::fs::read_dir(checkpoint)
            .map_err(failed(format!("reading {}", checkpoint.display())))?
        {
            let entry = entry.map_err(failed(format!("reading {}", checkpoint.display())))?;
            let meta = entry
                .metadata()
                .map_err(failed(format!("reading {}", entry.path().display())))?;
            if meta.is_file() {
                sources.push((entry.file_name().to_string_lossy().into_owned(), meta));
            }
        }
        sources.sort_by(|a, b| a.0.cmp(&b.0));
        let total: u64 = sources.iter().map(|(_, m)| m.len()).sum();
        let mut done = 0;
        let mut files = Vec::new();
        let (mut files_copied, mut bytes_copied) = (0, 0);
        for (name, meta) in sources {
            let source = (
                meta.dev(),
                meta.ino(),
                meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            );
            let reuse = known
                .get(&(name.clone(), source))
                .filter(|f| f.size == meta.len() && self.file_path(&f.blake3).exists());
            let entry = match reuse {
                Some(entry) => entry.clone(),
                None => {
                    let (hash, copied) = self.store_file(&checkpoint.join(&name))?;
                    if copied {
                        files_copied += 1;
                        bytes_copied += meta.len();
                    }
                    FileEntry {
                        name,
                        size: meta.len(),
                        blake3: hash,
                        source: Some(source),
                    }
                }
            };
            done += entry.size;
            progress(done, total);
            files.push(entry);
        }
        sync_dir(&self.root.join(FILES))?;

        // What the checkpoint holds: opening it changes its directory, not
        // the files already copied.
        let storage = RocksDb::open(checkpoint, small_rocks(), None)?;
        let commit_ts = stored_last_ts(&storage)?;
        let catalog = Catalog::load(&storage)?;
        let tables = count_rows(&storage, &catalog, commit_ts)?;
        drop(storage);

        let created_micros = crate::engine::mvcc::now_micros();
        let manifest = Manifest {
            format: FORMAT,
            omen_version: env!("CARGO_PKG_VERSION").to_string(),
            id,
            database_id: hex(database_id),
            commit_ts,
            created: rfc3339(created_micros),
            created_micros,
            files_copied,
            bytes_copied,
            tables,
            files,
        };
        self.write_manifest(&manifest)?;
        Ok(BackupSummary {
            id,
            commit_ts,
            bytes: total,
            files_copied,
            files_reused: manifest.files.len() - files_copied,
            bytes_copied,
            tables: manifest.tables.len(),
            rows: manifest.tables.iter().map(|t| t.rows).sum(),
            seconds: started.elapsed().as_secs_f64(),
            verified: false,
            pruned: 0,
        })
    }

    /// Copies `path` into `files/` under its content's hash; returns the
    /// hash and whether it was new there.
    fn store_file(&self, path: &Path) -> Result<(String, bool), Failure> {
        let partial = self.root.join(FILES).join(format!(
            "{}-{}.partial",
            std::process::id(),
            crate::engine::mvcc::now_micros()
        ));
        let hash = copy_hashing(path, &partial)?;
        let target = self.file_path(&hash);
        if target.exists() {
            let _ = std::fs::remove_file(&partial);
            return Ok((hash, false));
        }
        std::fs::rename(&partial, &target)
            .map_err(failed(format!("storing {}", target.display())))?;
        Ok((hash, true))
    }

    /// The backup that `id` names, or the newest whose commit is at or
    /// before `before` (the newest of all when None).
    fn choose(&self, id: Option<u64>, before: Option<u64>) -> Result<Manifest, Failure> {
        if let Some(id) = id {
            let manifest = self.manifest(id)?;
            if before.is_some_and(|ts| manifest.commit_ts > ts) {
                return Err(Failure::new(
                    FailureKind::Failed,
                    format!("backup {id} is newer than the restore target"),
                ));
            }
            return Ok(manifest);
        }
        let listed = self.list()?;
        let damaged = listed
            .iter()
            .rev()
            .find_map(|l| l.problem.as_ref().map(|p| format!("backup {}: {p}", l.id)));
        listed
            .into_iter()
            .rev()
            .filter(|l| l.valid())
            .filter_map(|l| l.manifest)
            .find(|m| before.is_none_or(|ts| m.commit_ts <= ts))
            .ok_or_else(|| match (damaged, before) {
                // What made the candidates unusable is the answer, not "none".
                (Some(problem), _) => Failure::new(FailureKind::Verification, problem),
                (None, Some(ts)) => Failure::new(
                    FailureKind::Failed,
                    format!(
                        "no valid backup in {} is older than the target {}",
                        self.root.display(),
                        rfc3339(ts)
                    ),
                ),
                (None, None) => Failure::new(
                    FailureKind::Failed,
                    format!("{} holds no valid backup", self.root.display()),
                ),
            })
    }

    /// Copies backup `manifest`'s files into the new directory `dir`,
    /// checking each against its checksum.
    fn copy_out(
        &self,
        manifest: &Manifest,
        dir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<u64, Failure> {
        std::fs::create_dir_all(dir).map_err(failed(format!("creating {}", dir.display())))?;
        let total: u64 = manifest.files.iter().map(|f| f.size).sum();
        let mut done = 0;
        for file in &manifest.files {
            let source = self.file_path(&file.blake3);
            let target = dir.join(&file.name);
            let hash = copy_hashing(&source, &target).map_err(|e| {
                verification(format!(
                    "backup {}: its file {} (files/{}) cannot be read: {}",
                    manifest.id, file.name, file.blake3, e.message
                ))
            })?;
            if hash != file.blake3 {
                return Err(verification(format!(
                    "backup {}: its file {} (files/{}) does not match its checksum",
                    manifest.id, file.name, file.blake3
                )));
            }
            done += file.size;
            progress(done, total);
        }
        sync_dir(dir)?;
        Ok(total)
    }

    /// Opens a restored copy and checks its catalog, commit and row counts
    /// against `manifest`.
    fn check(&self, manifest: &Manifest, dir: &Path) -> Result<Vec<TableCount>, Failure> {
        let storage = RocksDb::open(dir, small_rocks(), None)
            .map_err(|e| verification(format!("backup {} does not open: {e}", manifest.id)))?;
        let catalog = Catalog::load(&storage).map_err(|e| {
            verification(format!(
                "backup {}: its catalog does not load: {e}",
                manifest.id
            ))
        })?;
        let commit_ts = stored_last_ts(&storage)?;
        if commit_ts != manifest.commit_ts {
            return Err(verification(format!(
                "backup {} holds commit {commit_ts}, its manifest says {}",
                manifest.id, manifest.commit_ts
            )));
        }
        let counts = count_rows(&storage, &catalog, commit_ts)?;
        if counts != manifest.tables {
            let differs = manifest
                .tables
                .iter()
                .find(|t| !counts.contains(t))
                .map(|t| t.name.clone())
                .or_else(|| {
                    counts
                        .iter()
                        .find(|t| !manifest.tables.contains(t))
                        .map(|t| t.name.clone())
                })
                .unwrap_or_default();
            return Err(verification(format!(
                "backup {}: table \"{differs}\" does not hold the rows its manifest counts",
                manifest.id
            )));
        }
        Ok(counts)
    }

    /// Restores backup `id` (the newest when None) into a scratch directory
    /// and checks every file, the catalog and every table's row count.
    pub fn verify(
        &self,
        id: Option<u64>,
        progress: ProgressFn<'_>,
    ) -> Result<VerifySummary, Failure> {
        let _lock = self.lock(false)?;
        self.verify_locked(id, progress)
    }

    pub(crate) fn verify_locked(
        &self,
        id: Option<u64>,
        progress: ProgressFn<'_>,
    ) -> Result<VerifySummary, Failure> {
        let started = Instant::now();
        let manifest = self.choose(id, None)?;
        let scratch = self
            .root
            .join(format!("verify-{}-{}", std::process::id(), manifest.id));
        let _ = std::fs::remove_dir_all(&scratch);
        let result = self
            .copy_out(&manifest, &scratch, progress)
            .and_then(|bytes| Ok((bytes, self.check(&manifest, &scratch)?)));
        let _ = std::fs::remove_dir_all(&scratch);
        let (bytes, counts) = result?;
        Ok(VerifySummary {
            backup: manifest.id,
            files: manifest.files.len(),
            bytes,
            tables: counts.len(),
            rows: counts.iter().map(|t| t.rows).sum(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Removes the backups `retention` does not keep (never the newest valid
    /// one), the files only they used, and archive segments older than every
    /// backup kept.
    pub fn prune(&self, retention: &Retention) -> Result<PruneSummary, Failure> {
        let _lock = self.lock(true)?;
        self.prune_locked(retention)
    }

    pub(crate) fn prune_locked(&self, retention: &Retention) -> Result<PruneSummary, Failure> {
        let mut summary = PruneSummary::default();
        if retention.keep.is_none() && retention.keep_within.is_none() {
            return Ok(summary);
        }
        let listed = self.list()?;
        let valid: Vec<&Manifest> = listed
            .iter()
            .filter(|l| l.valid())
            .filter_map(|l| l.manifest.as_ref())
            .collect();
        let now = crate::engine::mvcc::now_micros();
        let kept = |position: usize, manifest: &Manifest| {
            let from_end = valid.len() - 1 - position;
            from_end == 0
                || retention.keep.is_some_and(|n| from_end < n)
                || retention.keep_within.is_some_and(|d| {
                    now.saturating_sub(manifest.created_micros) <= d.as_micros() as u64
                })
        };
        let mut remaining: Vec<&Manifest> = Vec::new();
        for (position, manifest) in valid.iter().enumerate() {
            if kept(position, manifest) {
                remaining.push(manifest);
            } else {
                let path = self.manifest_path(manifest.id);
                std::fs::remove_file(&path)
                    .map_err(failed(format!("removing {}", path.display())))?;
                summary.removed += 1;
            }
        }
        sync_dir(&self.root.join(BACKUPS))?;
        // Backups that cannot be read name files nobody can know; those of
        // damaged manifests stay only while the manifest does.
        let needed: std::collections::HashSet<&str> = listed
            .iter()
            .filter(|l| !l.valid())
            .filter_map(|l| l.manifest.as_ref())
            .chain(remaining.iter().copied())
            .flat_map(|m| m.files.iter().map(|f| f.blake3.as_str()))
            .collect();
        let files = self.root.join(FILES);
        for entry in
            std::fs::read_dir(&files).map_err(failed(format!("reading {}", files.display())))?
        {
            let entry = entry.map_err(failed(format!("reading {}", files.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".partial") && !needed.contains(name.as_str()) {
                std::fs::remove_file(entry.path())
                    .map_err(failed(format!("removing {}", entry.path().display())))?;
                summary.files_removed += 1;
            }
        }
        let mut oldest: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for manifest in &remaining {
            let ts = oldest
                .entry(manifest.database_id.as_str())
                .or_insert(u64::MAX);
            *ts = (*ts).min(manifest.commit_ts);
        }
        for (database, ts) in oldest {
            if let Some(id) = parse_id(database) {
                summary.segments_removed += archive::prune(&self.root, &id, ts)?;
            }
        }
        Ok(summary)
    }

    /// Restores a backup into `request.data_dir`: into a scratch directory
    /// beside it first, renamed into place at the end, so an interrupted
    /// restore leaves the target as it was.
    pub fn restore(
        &self,
        request: &RestoreRequest,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreSummary, Failure> {
        let started = Instant::now();
        let _lock = self.lock(false)?;
        let target = &request.data_dir;
        check_target(target, request.force)?;
        let replay_to = if request.to_latest {
            Some(u64::MAX)
        } else {
            request.to_timestamp
        };
        let manifest = self.choose(request.backup, replay_to)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                Failure::new(
                    FailureKind::Failed,
                    format!("{} names no directory", target.display()),
                )
            })?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        remove_stale(&parent, &name);
        let scratch = parent.join(format!(".{name}.restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let result = self.restore_into(&manifest, &scratch, replay_to, progress);
        let (bytes, replayed) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        // Into place: an existing directory moves aside first.
        if target.exists() {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(target, &old)
                .map_err(failed(format!("moving {} aside", target.display())))?;
            std::fs::rename(&scratch, target)
                .map_err(failed(format!("renaming {}", scratch.display())))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&scratch, target)
                .map_err(failed(format!("renaming {}", scratch.display())))?;
        }
        sync_dir(&parent)?;
        Ok(RestoreSummary {
            backup: manifest.id,
            backup_ts: manifest.commit_ts,
            commit_ts: replayed.last_ts,
            commits_replayed: replayed.commits,
            files: manifest.files.len(),
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn restore_into(
        &self,
        manifest: &Manifest,
        scratch: &Path,
        replay_to: Option<u64>,
        progress: ProgressFn<'_>,
    ) -> Result<(u64, archive::Replayed), Failure> {
        let bytes = self.copy_out(manifest, scratch, progress)?;
        self.check(manifest, scratch)?;
        let storage = RocksDb::open(scratch, small_rocks(), None)?;
        let replayed = match replay_to {
            Some(target) => {
                let database = parse_id(&manifest.database_id).ok_or_else(|| {
                    verification(format!(
                        "backup {} has a malformed database id",
                        manifest.id
                    ))
                })?;
                archive::replay(
                    &self.root,
                    &database,
                    manifest.commit_ts,
                    Some(target),
                    &storage,
                )?
            }
            None => archive::Replayed {
                commits: 0,
                last_ts: manifest.commit_ts,
            },
        };
        // The restored database starts a history of its own: a new id keeps
        // its archive apart from the original's.
        let mut batch = WriteBatch::new();
        batch.put(
            Cf::Meta,
            DATABASE_ID_KEY.to_vec(),
            new_database_id()?.to_vec(),
        );
        storage.write(batch, SyncMode::Durable)?;
        drop(storage);
        Ok((bytes, replayed))
    }
}

/// Refuses a target directory that holds files (unless `force`) or that a
/// process has open.
fn check_target(target: &Path, force: bool) -> Result<(), Failure> {
    let entries = match std::fs::read_dir(target) {
        Ok(entries) => entries.count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Failure::io(format!("reading {}", target.display()), e)),
    };
    if entries == 0 {
        return Ok(());
    }
    let lock = target.join("LOCK");
    if lock.exists()
        && locked_by_another_process(&lock)
            .map_err(failed(format!("checking the lock {}", lock.display())))?
    {
        return Err(Failure::new(
            FailureKind::TargetInUse,
            format!(
                "{} is a database some process has open; stop it before restoring over it",
                target.display()
            ),
        ));
    }
    if !force {
        return Err(Failure::new(
            FailureKind::TargetNotEmpty,
            format!(
                "{} holds files; restore into a new directory, or give --force to replace it",
                target.display()
            ),
        ));
    }
    Ok(())
}

/// Whether another process holds RocksDB's lock on `lock`: RocksDB locks the
/// file with fcntl, which `F_GETLK` reports without taking the lock.
fn locked_by_another_process(lock: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let file = File::options().read(true).write(true).open(lock)?;
    // SAFETY: flock is plain data, for which all zeroes is a valid value.
    let mut query: libc::flock = unsafe { std::mem::zeroed() };
    query.l_type = libc::F_WRLCK as _;
    query.l_whence = libc::SEEK_SET as _;
    // SAFETY: the descriptor is open for the duration of the call, and
    // `query` is a valid flock that fcntl may write to.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut query) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i32::from(query.l_type) != libc::F_UNLCK)
}

/// Removes scratch directories of restores into `parent/name` whose process is gone.
fn remove_stale(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = file
            .strip_prefix(&format!(".{name}.restore-"))
            .or_else(|| file.strip_prefix(&format!(".{name}.old-")))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn parse_id(text: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// 16 random bytes.
pub fn new_database_id() -> Result<[u8; 16], Failure> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| Failure::new(FailureKind::Failed, "the random source failed"))?;
    Ok(id)
}

/// RocksDB settings for the short opens of checkpoints and restored copies.
fn small_rocks() -> RocksOptions {
    RocksOptions {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
    }
}

/// Copies `from` to the new file `to`, fsynced, and returns the blake3 hash
/// of what was copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<String, Failure> {
    let mut source = File::open(from).map_err(failed(format!("reading {}", from.display())))?;
    let mut target = File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(failed(format!("creating {}", to.display())))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = source
            .read(&mut buffer)
            .map_err(failed(format!("reading {}", from.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        target
            .write_all(&buffer[..n])
            .map_err(failed(format!("writing {}", to.display())))?;
    }
    target
        .sync_all()
        .map_err(failed(format!("writing {}", to.display())))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Writes `path` through a temporary file and a rename, fsynced, so a crash
/// leaves the old content or the new, never part.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let partial = path.with_extension("partial");
    let mut file =
        File::create(&partial).map_err(failed(format!("writing {}", partial.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(failed(format!("writing {}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(failed(format!("writing {}", path.display())))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}
