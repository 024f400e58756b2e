//! [`Database`]: one open database directory, shared by every session.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::backup::{
    BackupRequest, BackupSummary, Failure, FailureKind, ProgressFn, DATABASE_ID_KEY,
};
use super::catalog::Catalog;
use super::directory::{Directories, DirectoryKind};
use super::error::Result;
use super::mvcc::gc::GcFilterFactory;
use super::mvcc::{Durability, Horizon, KeyDirectory, Mvcc, MvccOptions};
use super::session::Session;
use super::storage::{Cf, Memory, RocksDb, RocksOptions, Storage, SyncMode, WriteBatch};

/// The directory under the data directory where sorts, joins and
/// aggregations past the memory limit spill; emptied when the database opens.
pub const SPILL_DIR: &str = "spill";
/// The directory under the data directory where backups make their
/// checkpoints; emptied when the database opens.
const CHECKPOINT_DIR: &str = "backup-checkpoints";

/// How to open a database.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// When commits are durable; [`Durability::Full`] unless asked otherwise.
    pub durability: Durability,
    /// How long overwritten versions stay readable before garbage collection.
    pub gc_retention: Duration,
    /// RocksDB tuning.
    pub rocks: RocksOptions,
    /// The in-memory key directory of numeric primary keys.
    pub key_directory: DirectoryKind,
    /// Bytes one statement (its sorts, joins, aggregations and result) or one
    /// transaction's buffered writes may take; None for a quarter of the
    /// machine's memory.
    pub memory_limit: Option<usize>,
    /// Partitions a statement's plan uses unless its session says otherwise
    /// (`SET omen.parallelism`); None for one per core.
    pub parallelism: Option<usize>,
    /// A backup repository whose archive receives every commit, for
    /// point-in-time recovery (see [`super::backup::archive`]).
    pub archive: Option<PathBuf>,
    /// For tests: no background thread builds the key directories at open;
    /// [`Database::build_directories`] does, when called.
    #[doc(hidden)]
    pub defer_directory_build: bool,
}

/// An open database. Cloning is cheap and shares it; it is safe to use from
/// many threads, with one [`Session`] per thread or client.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub mvcc: Arc<Mvcc>,
    pub catalog: Arc<Catalog>,
    pub directories: Arc<Directories>,
    /// Serialises schema changes, which read the catalog before committing.
    pub ddl: Mutex<()>,
    /// Held shared by a bulk load from before its commit to the end of its
    /// ingest, and exclusively while a backup takes its checkpoint: a
    /// checkpoint never holds a load's commit without the load's rows.
    pub ingesting: parking_lot::RwLock<()>,
    /// The next hidden row id for tables without a primary key. Ids start at
    /// the open time (or past the newest commit) in microseconds times 1024,
    /// so ids given out before a restart stay below those given out after it
    /// unless a process inserted more than 1024 rows per microsecond.
    pub row_ids: std::sync::atomic::AtomicI64,
    /// Runs DataFusion's query execution, which is async.
    pub runtime: tokio::runtime::Runtime,
    /// Bytes one statement or transaction may take (see [`Options::memory_limit`]).
    pub memory_limit: usize,
    /// Partitions a plan uses by default (see [`Options::parallelism`]).
    pub parallelism: usize,
    /// A panic armed by tests, standing for a bug inside a statement.
    pub fault: Mutex<Option<Fault>>,
    /// Whether `fault` is armed: every row written reads this, not the mutex.
    pub fault_armed: std::sync::atomic::AtomicBool,
    /// Row locks and advisory locks, held by sessions.
    pub locks: Arc<super::locks::Locks>,
    /// What each session is doing (pg_stat_activity).
    pub activity: Arc<super::activity::Activity>,
    /// Every sequence.
    pub sequences: Arc<super::sequences::Sequences>,
    /// Checks rows against their table's constraints.
    pub checks: super::sql::Checks,
    /// Row counts and ANALYZE's column statistics, for the planner.
    pub stats: Arc<super::sql::Stats>,
    /// The id the next session gets.
    pub next_session: std::sync::atomic::AtomicU64,
    /// The database's id, which names its archive (see [`DATABASE_ID_KEY`]).
    id: [u8; 16],
    /// Answers `omen backup` from other processes while this one holds the
    /// data directory.
    control: std::sync::OnceLock<super::backup::control::Listener>,
    /// Backups taken by this process so far, naming their checkpoints.
    backups: std::sync::atomic::AtomicU64,
    path: Option<PathBuf>,
    /// The thread building the key directories after the open, stopped and
    /// joined when the database closes.
    directory_builder: Mutex<Option<Builder>>,
}

/// Where bulk loads write their files before ingesting them: `bulk` in the
/// data directory (on the same file system, so ingesting moves them), or a
/// directory of the system's for a database in memory.
fn staging_dir(path: Option<&Path>, id: &[u8; 16]) -> PathBuf {
    match path {
        Some(path) => path.join("bulk"),
        None => {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            std::env::temp_dir().join(format!("omen-bulk-{hex}"))
        }
    }
}

impl Shared {
    /// Where bulk loads write their files (see [`staging_dir`]).
    pub fn staging_dir(&self) -> PathBuf {
        staging_dir(self.path.as_deref(), &self.id)
    }
}

/// A background thread and the flag that asks it to stop.
struct Builder {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Builder {
    /// Stops the thread and waits for it (also when an open fails after
    /// starting it), so the storage it reads closes with the database.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A panic that row `countdown` written into `table` raises (tests only).
pub(super) struct Fault {
    table: String,
    countdown: u64,
}

impl Drop for Shared {
    /// The database closes cleanly: the last session and handle are gone.
    fn drop(&mut self) {
        drop(self.directory_builder.get_mut().take());
        self.sequences.close();
    }
}

impl Shared {
    /// What a session's planner works with.
    pub fn planner_context(&self) -> super::sql::PlannerContext {
        super::sql::PlannerContext {
            directories: self.directories.clone(),
            stats: self.stats.clone(),
            memory: self.memory_limit,
            parallelism: self.parallelism,
            advisory: None,
            sequences: None,
            backup: None,
            spill_dir: self.path.as_ref().map(|p| p.join(SPILL_DIR)),
        }
    }

    /// Panics if a test armed a fault for this write into `table`.
    pub fn check_fault(&self, table: &str) {
        if !self.fault_armed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut fault = self.fault.lock();
        let Some(armed) = fault.as_mut() else {
            return;
        };
        if armed.table == table {
            armed.countdown -= 1;
            if armed.countdown == 0 {
                *fault = None;
                self.fault_armed
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                panic!("fault injected by a test into a write of \"{table}\"");
            }
        }
    }
}

/// How long after the open the key directories start to be built.
const DIRECTORY_BUILD_DELAY: Duration = Duration::from_millis(100);

/// Starts the thread that builds the key directories from storage.
fn start_directory_build(
    directories: &Arc<Directories>,
    storage: &Arc<dyn Storage>,
    catalog: &Arc<Catalog>,
) -> Result<Builder> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (directories, storage, catalog) = (directories.clone(), storage.clone(), catalog.clone());
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("omen-directory".into())
        .spawn(move || {
            // A short-lived process (`omen repl DIR -c ...`) closes before
            // this passes and never reads the keys.
            let start = std::time::Instant::now() + DIRECTORY_BUILD_DELAY;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let now = std::time::Instant::now();
                if now >= start {
                    break;
                }
                std::thread::park_timeout(start - now);
            }
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if let Err(e) = directories.build(storage.as_ref(), &catalog, &flag) {
                // Reads of the tables left unbuilt go on to storage.
                eprintln!("omen: building the key directories failed: {e}");
            }
        })
        .map_err(|e| super::Error::io("starting the key directory build", e))?;
    Ok(Builder {
        stop,
        thread: Some(thread),
    })
}

/// A handle that does not keep the database open.
pub(crate) struct WeakDatabase(std::sync::Weak<Shared>);

impl WeakDatabase {
    /// The database, while some handle or session still has it open.
    pub fn upgrade(&self) -> Option<Database> {
        self.0.upgrade().map(|shared| Database { shared })
    }
}

impl Database {
    /// A handle on `shared` that does not keep it open.
    pub(super) fn from_shared(shared: &Arc<Shared>) -> WeakDatabase {
        WeakDatabase(Arc::downgrade(shared))
    }

    /// A handle that does not keep the database open.
    pub(crate) fn downgrade(&self) -> WeakDatabase {
        Self::from_shared(&self.shared)
    }

    /// Opens the database in `dir`, creating it when missing.
    pub fn open(dir: &Path, options: Options) -> Result<Database> {
        const PID_FILE: &str = "omen.pid";
        std::fs::create_dir_all(dir).map_err(|e| {
            super::Error::io(format!("creating data directory {}", dir.display()), e)
        })?;
        let horizon = Arc::new(Horizon::new(0, options.gc_retention.as_micros() as u64));
        let filter = Arc::new(GcFilterFactory::new(horizon.clone()));
        let storage = match RocksDb::open(dir, options.rocks.clone(), Some(filter)) {
            Ok(storage) => Arc::new(storage) as Arc<dyn Storage>,
            Err(e) if e.to_string().contains("lock file") => {
                let holder = std::fs::read_to_string(dir.join(PID_FILE))
                    .ok()
                    .and_then(|pid| pid.trim().parse::<u32>().ok())
                    .map_or_else(String::new, |pid| format!(" (process {pid})"));
                return Err(super::Error::TransactionState {
                    code: super::SqlState::OBJECT_IN_USE,
                    message: format!(
                        "the data directory {} is in use by another omen{holder}: stop it, \
                         or reach the database through the server that holds it",
                        dir.display()
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        // Which process holds the directory, for the message above; the lock
        // is RocksDB's, this file only names its holder.
        let _ = std::fs::write(dir.join(PID_FILE), std::process::id().to_string());
        // Spill files of statements that a crash interrupted. The directory is
        // made after RocksDB holds the data directory's lock.
        let spill = dir.join(SPILL_DIR);
        let _ = std::fs::remove_dir_all(&spill);
        std::fs::create_dir_all(&spill).map_err(|e| {
            super::Error::io(
                format!("creating the spill directory {}", spill.display()),
                e,
            )
        })?;
        let _ = std::fs::remove_dir_all(dir.join(CHECKPOINT_DIR));
        let db = Self::start(storage, horizon, options, Some(dir.to_path_buf()))?;
        if let Some(listener) = super::backup::control::Listener::start(&db, dir) {
            let _ = db.shared.control.set(listener);
        }
        Ok(db)
    }

    /// A database that lives in memory only, for tests and scratch work.
    pub fn open_in_memory(options: Options) -> Result<Database> {
        let horizon = Arc::new(Horizon::new(0, options.gc_retention.as_micros() as u64));
        let filter = Arc::new(GcFilterFactory::new(horizon.clone()));
        Self::start(Arc::new(Memory::new(Some(filter))), horizon, options, None)
    }

    fn start(
        storage: Arc<dyn Storage>,
        horizon: Arc<Horizon>,
        options: Options,
        path: Option<PathBuf>,
    ) -> Result<Database> {
        let id = match storage.get(Cf::Meta, DATABASE_ID_KEY)? {
            Some(id) => id
                .try_into()
                .map_err(|_| super::Error::Corruption("the database id is not 16 bytes".into()))?,
            None => {
                let id = super::backup::new_database_id()
                    .map_err(|e| super::Error::Internal(e.message))?;
                let mut batch = WriteBatch::new();
                batch.put(Cf::Meta, DATABASE_ID_KEY.to_vec(), id.to_vec());
                storage.write(batch, SyncMode::Durable)?;
                id
            }
        };
        let staging = staging_dir(path.as_deref(), &id);
        super::sql::recover_bulk_loads(storage.as_ref(), &staging)?;
        let storage = match &options.archive {
            Some(repository) => {
                let last_ts = super::mvcc::stored_last_ts(storage.as_ref())?;
                let archive = super::backup::archive::Archive::open(repository, id, last_ts)?;
                Arc::new(super::backup::archive::Archived::new(storage, archive))
                    as Arc<dyn Storage>
            }
            None => storage,
        };
        let catalog = Arc::new(Catalog::load(storage.as_ref())?);
        let sequences = Arc::new(super::sequences::Sequences::load(
            storage.clone(),
            options.durability.sync(),
        )?);
        let directories = Arc::new(Directories::new(options.key_directory, &catalog));
        let directory_builder = (!options.defer_directory_build)
            .then(|| start_directory_build(&directories, &storage, &catalog))
            .transpose()?;
        let memory_limit = options
            .memory_limit
            .unwrap_or_else(super::memory::default_limit);
        let mvcc_options = MvccOptions {
            durability: options.durability,
            gc_retention: options.gc_retention,
            memory_limit,
        };
        let directory = (options.key_directory != DirectoryKind::None)
            .then(|| directories.clone() as Arc<dyn KeyDirectory>);
        let mvcc = Mvcc::open(storage, horizon, mvcc_options, directory)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("omen-query")
            .enable_all()
            .build()
            .map_err(|e| super::Error::io("starting the query runtime", e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let first_row_id = (now.max(mvcc.horizon().visible() + 1) as i64).saturating_mul(1024);
        let stats = Arc::new(super::sql::Stats::new(
            mvcc.storage().clone(),
            directories.clone(),
        ));
        let shared = Shared {
            stats,
            row_ids: std::sync::atomic::AtomicI64::new(first_row_id),
            mvcc,
            catalog,
            directories,
            ddl: Mutex::new(()),
            ingesting: parking_lot::RwLock::new(()),
            runtime,
            memory_limit,
            parallelism: options
                .parallelism
                .unwrap_or_else(super::sql::default_parallelism)
                .max(1),
            fault: Mutex::new(None),
            fault_armed: std::sync::atomic::AtomicBool::new(false),
            locks: Arc::default(),
            activity: Arc::default(),
            sequences,
            checks: Default::default(),
            next_session: std::sync::atomic::AtomicU64::new(1),
            id,
            control: std::sync::OnceLock::new(),
            backups: std::sync::atomic::AtomicU64::new(0),
            path,
            directory_builder: Mutex::new(directory_builder),
        };
        Ok(Database {
            shared: Arc::new(shared),
        })
    }

    /// A new session with no transaction open.
    pub fn session(&self) -> Session {
        Session::new(self.shared.clone())
    }

    /// For tests: the `nth` row (from 1) written into `table` from now on
    /// makes its statement panic, as a bug in the engine would, so tests can
    /// check that a panic undoes the statement and spares the session.
    #[doc(hidden)]
    pub fn inject_write_panic(&self, table: &str, nth: u64) {
        *self.shared.fault.lock() = Some(Fault {
            table: table.to_string(),
            countdown: nth.max(1),
        });
        self.shared
            .fault_armed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A random secret made once per database and kept in it: for values a
    /// client must not be able to predict that stay the same across restarts
    /// (the SCRAM salt shown for a name that cannot log in).
    pub fn secret(&self) -> Result<Vec<u8>> {
        const KEY: &[u8] = b"database.secret";
        let storage = self.shared.mvcc.storage();
        let _ddl = self.shared.ddl.lock();
        if let Some(secret) = storage.get(super::storage::Cf::Meta, KEY)? {
            return Ok(secret);
        }
        let mut secret = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| super::Error::Internal("the random source failed".into()))?;
        let mut batch = super::storage::WriteBatch::new();
        batch.put(super::storage::Cf::Meta, KEY.to_vec(), secret.clone());
        self.shared.mvcc.commit_unversioned(batch, None, None)?;
        Ok(secret)
    }

    /// Takes a backup into `request.repository` while sessions go on
    /// reading and writing: a checkpoint of one commit, copied with the files
    /// earlier backups hold shared, then the retention rules.
    pub fn backup(
        &self,
        request: &BackupRequest,
        progress: ProgressFn<'_>,
    ) -> std::result::Result<BackupSummary, Failure> {
        let started = std::time::Instant::now();
        let Some(dir) = self.path() else {
            return Err(Failure::new(
                FailureKind::Failed,
                "a database in memory has no files to back up",
            ));
        };
        let repository = super::backup::Repository::create(&request.repository)?;
        let _lock = repository.lock(true)?;
        let n = self
            .shared
            .backups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let checkpoint = dir
            .join(CHECKPOINT_DIR)
            .join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join(CHECKPOINT_DIR)).map_err(|e| {
            Failure::new(
                FailureKind::Failed,
                format!("creating {}: {e}", dir.join(CHECKPOINT_DIR).display()),
            )
        })?;
        let _ = std::fs::remove_dir_all(&checkpoint);
        let checkpointed = {
            let _no_ingest = self.shared.ingesting.write();
            self.shared.mvcc.storage().checkpoint(&checkpoint)
        };
        let stored = checkpointed
            .map_err(Failure::from)
            .and_then(|()| repository.store(&checkpoint, &self.shared.id, progress));
        let _ = std::fs::remove_dir_all(&checkpoint);
        let mut summary = stored?;
        if request.verify {
            repository.verify_locked(Some(summary.id), progress)?;
            summary.verified = true;
        }
        summary.pruned = repository.prune_locked(&request.retention)?.removed;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// The database's id: 16 random bytes made when it was created (or
    /// restored), naming its archive segments.
    pub fn id(&self) -> [u8; 16] {
        self.shared.id
    }

    /// The data directory, or None in memory.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    /// The newest commit timestamp that readers see.
    pub fn visible_ts(&self) -> u64 {
        self.shared.mvcc.horizon().visible()
    }

    /// Builds the key directories not built yet, on this thread (for tests
    /// that open with [`Options::defer_directory_build`]).
    #[doc(hidden)]
    pub fn build_directories(&self) -> Result<()> {
        let stop = std::sync::atomic::AtomicBool::new(false);
        self.shared.directories.build(
            self.shared.mvcc.storage().as_ref(),
            &self.shared.catalog,
            &stop,
        )
    }

    /// Whether every table's key directory is built: until then reads of a
    /// table whose directory is not go to storage.
    pub fn directories_ready(&self) -> bool {
        self.shared.directories.is_ready()
    }

    /// Waits until every key directory is built (see [`Database::directories_ready`]).
    pub fn wait_for_directories(&self) {
        while !self.directories_ready() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Row versions read from storage by scans since the database opened.
    pub fn entries_scanned(&self) -> u64 {
        self.shared.mvcc.storage().entries_scanned()
    }

    /// Keys held by the in-memory key directory of `table` (None when it has
    /// none, or while it is being built).
    pub fn directory_len(&self, table: &str) -> Result<Option<usize>> {
        let table = self.shared.catalog.table(table)?;
        Ok(self.shared.directories.len(table.id))
    }

    /// The catalog of tables.
    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// Removes versions that no snapshot can see, now (compactions also do it over time).
    pub fn gc(&self) -> Result<()> {
        self.shared.mvcc.gc()
    }

    /// The number of stored versions (live, overwritten and deleted) in the
    /// key range of `table`: what garbage collection shrinks.
    pub fn stored_versions(&self, table: &str) -> Result<usize> {
        let table = self.shared.catalog.table(table)?;
        let storage = self.shared.mvcc.storage();
        let mut count = 0;
        for entry in storage.scan(
            super::storage::Cf::Rows,
            &table.key_prefix(),
            Some(&table.key_end()),
        ) {
            entry?;
            count += 1;
        }
        Ok(count)
    }
}
