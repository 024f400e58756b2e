//! Bulk loads: many rows into one table at one commit, written as sorted
//! storage files and ingested whole, rather than row by row through the
//! transaction's write buffer.
//!
//! ```text
//!   rows of text fields, or typed columns --(COPY's input rules, or INSERT's
//!        assignment; defaults, checks)--> (key, row)       [BulkEncoder, any thread]
//!        --> a run in memory --(past the run size: sorted)--> run files
//!        --(sorted; runs merged unless their key ranges are apart; duplicate
//!           keys and keys already in the table per OnDuplicate)--> SST files
//!        --(the transaction's commit at T)--> ingested, visible at T
//! ```
//!
//! Versions carry the commit timestamp in their keys, and the files are
//! written before the commit has one. So a load reserves a timestamp of its
//! own first (`at`) and stamps its rows with it, and the commit that ingests
//! them (at `T`) hides them from snapshots taken between `at` and `T`
//! ([`Horizon::hide`]), which read the table as of `at - 1`. The table
//! lock, taken before `at`, keeps every other write off the table until the
//! commit, so that is the table as those snapshots would see it; garbage
//! collection keeps what they read while they run.
//!
//! Atomicity: the commit records the files to ingest in the meta family
//! and ingests them before it becomes visible. A crash after the record is
//! on disk and before the ingest ends is finished at the next open
//! ([`recover`]): ingesting a file twice writes the same versions again. A
//! load that never committed leaves only its staging directory, which the
//! next open removes. A backup's checkpoint waits for an ingest in progress
//! (`Shared::ingesting`).
//!
//! Memory stays bounded by the run size: rows are kept in memory up to it,
//! then sorted and written to a run file; the runs are merged at the end.
//!
//! Tables with secondary indexes or foreign keys, and databases that
//! archive their commits (ingested files would bypass the archive), take
//! rows through COPY instead; [`Session::bulk_begin`] says so.
//!
//! [`Horizon::hide`]: crate::engine::mvcc::Horizon::hide

use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};

use super::execute::{assign, full_rows};
use crate::engine::catalog::Table;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::locks::{Mode, Target};
use crate::engine::mvcc::{versioned_key, VERSION_ROW};
use crate::engine::session::{commit, Open};
use crate::engine::storage::{Cf, Storage, SyncMode, WriteBatch};
use crate::engine::Session;

/// Meta-family keys of loads committed and maybe not yet ingested:
/// this prefix, then the version timestamp.
const PENDING_PREFIX: &[u8] = b"bulk.pending.";

/// The storage files of one load are cut at this size.
const FILE_BYTES: u64 = 256 << 20;

/// Bytes of rows a load keeps in memory before it writes a sorted run.
const MAX_RUN_BYTES: usize = 256 << 20;

/// A bulk load in progress (see the module docs).
pub(crate) struct BulkIn {
    table: Arc<Table>,
    /// The column each field fills.
    targets: Vec<usize>,
    /// The load's own transaction, outside a transaction block.
    implicit: Option<Open>,
    /// The timestamp the rows are written at.
    at: u64,
    /// Where its run files and storage files are written.
    staging: PathBuf,
    run: Run,
    run_bytes: usize,
    /// Run files written so far, each sorted.
    spilled: Vec<Spilled>,
    /// Whether the table may hold rows already (it was committed before
    /// the load), so each key must be looked up.
    existing: bool,
    on_duplicate: OnDuplicate,
}

/// A sorted run written to a file, with its first and last key.
struct Spilled {
    path: PathBuf,
    first: Vec<u8>,
    last: Vec<u8>,
}

/// Bytes of the blocks a [`Run`] keeps its entries in.
const BLOCK_BYTES: usize = 1 << 20;

/// Keys and encoded rows in memory, in blocks that never move (so growing
/// copies nothing, and runs join by handing blocks over).
#[derive(Default)]
struct Run {
    blocks: Vec<Vec<u8>>,
    /// Block, offset, key length and value length of each entry.
    entries: Vec<(u32, u32, u32, u32)>,
    /// Bytes of the blocks.
    bytes: usize,
}

impl Run {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        let need = key.len() + value.len();
        if self
            .blocks
            .last()
            .is_none_or(|b| b.capacity() - b.len() < need)
        {
            let block = Vec::with_capacity(BLOCK_BYTES.max(need));
            self.bytes += block.capacity();
            self.blocks.push(block);
        }
        let n = self.blocks.len() - 1;
        let block = &mut self.blocks[n];
        self.entries.push((
            n as u32,
            block.len() as u32,
            key.len() as u32,
            value.len() as u32,
        ));
        block.extend_from_slice(key);
        block.extend_from_slice(value);
    }

    /// Moves `other`'s entries to the end of this run.
    fn append(&mut self, other: Run) {
        let shift = self.blocks.len() as u32;
        self.entries.extend(
            other
                .entries
                .into_iter()
                .map(|(b, at, k, v)| (b + shift, at, k, v)),
        );
        self.blocks.extend(other.blocks);
        self.bytes += other.bytes;
    }

    fn size(&self) -> usize {
        self.bytes + self.entries.len() * std::mem::size_of::<(u32, u32, u32, u32)>()
    }

    fn key_of(&self, (b, at, k, _): (u32, u32, u32, u32)) -> &[u8] {
        &self.blocks[b as usize][at as usize..(at + k) as usize]
    }

    fn key(&self, i: usize) -> &[u8] {
        self.key_of(self.entries[i])
    }

    fn value(&self, i: usize) -> &[u8] {
        let (b, at, k, v) = self.entries[i];
        &self.blocks[b as usize][(at + k) as usize..(at + k + v) as usize]
    }

    /// Orders the entries by key (stable, so equal keys stay in arrival order).
    fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_by(|a, b| self.key_of(*a).cmp(self.key_of(*b)));
        self.entries = entries;
    }

    fn clear(&mut self) {
        *self = Run::default();
    }
}

/// Rows of a bulk load converted and encoded by a [`BulkEncoder`], for
/// [`Session::bulk_add`].
pub struct Encoded {
    run: Run,
    rows: u64,
    /// Rows left out (their index in the batch) and why.
    rejected: Vec<(usize, Error)>,
}

impl Encoded {
    /// How many rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The rows [`BulkEncoder::encode_skipping`] left out, by their index
    /// in the batch, with the reason.
    pub fn rejected(&self) -> &[(usize, Error)] {
        &self.rejected
    }
}

/// What a bulk load does with a row whose primary key another row of the
/// load, or of the table, holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Fails the load with 23505 (the default).
    #[default]
    Error,
    /// Keeps the row that was there or came first.
    Skip,
    /// Keeps the row that came last, replacing the table's.
    Update,
}

/// Converts and encodes the rows of a running bulk load; clones work on
/// other threads, so a load can use every core.
#[derive(Clone)]
pub struct BulkEncoder {
    shared: Arc<crate::engine::database::Shared>,
    planner: Arc<super::Planner>,
    table: Arc<Table>,
    targets: Arc<[usize]>,
    /// Definitions of the transaction block the load runs in.
    overlay: Option<crate::engine::catalog::Overlay>,
}

impl BulkEncoder {
    /// Rows of text fields (None for NULL), each field read as its
    /// column's type reads a string literal, as COPY reads them; checked
    /// against the table's constraints and encoded for storage.
    pub fn encode(&self, rows: &[Vec<Option<String>>]) -> std::result::Result<Encoded, RowError> {
        self.encode_rows(rows, false)
    }

    /// As [`BulkEncoder::encode`], but rows that fail to convert or break a
    /// constraint are left out: [`Encoded::rejected`] lists them.
    pub fn encode_skipping(&self, rows: &[Vec<Option<String>>]) -> Result<Encoded> {
        self.encode_rows(rows, true).map_err(|e| e.error)
    }

    fn encode_rows(
        &self,
        rows: &[Vec<Option<String>>],
        skip: bool,
    ) -> std::result::Result<Encoded, RowError> {
        // Rows of the wrong width go first; the others become text columns.
        let (mut rejected, mut kept) = (Vec::new(), Vec::with_capacity(rows.len()));
        for (i, row) in rows.iter().enumerate() {
            if row.len() == self.targets.len() {
                kept.push(i);
                continue;
            }
            let message = format!(
                "a row has {} fields where {} are expected",
                row.len(),
                self.targets.len()
            );
            let error = Error::invalid(SqlState::BAD_COPY_FILE_FORMAT, message);
            if !skip {
                return Err(RowError {
                    row: Some(i),
                    error,
                });
            }
            rejected.push((i, error));
        }
        let columns: Vec<ArrayRef> = (0..self.targets.len())
            .map(|f| {
                let text = kept.iter().map(|&i| rows[i][f].as_deref());
                Arc::new(StringArray::from_iter(text)) as ArrayRef
            })
            .collect();
        self.encode_columns(&columns, skip, &kept, rejected)
    }

    /// Rows whose columns arrive as Arrow arrays (a Parquet file's), one per
    /// column the load fills, in order: each converted as an INSERT assigns
    /// a value of that type to the column, checked and encoded.
    pub fn encode_arrays(&self, columns: &[ArrayRef]) -> std::result::Result<Encoded, RowError> {
        if columns.len() != self.targets.len() {
            let message = format!(
                "{} columns where {} are expected",
                columns.len(),
                self.targets.len()
            );
            return Err(Error::invalid(SqlState::BAD_COPY_FILE_FORMAT, message).into());
        }
        let rows: Vec<usize> = (0..columns.first().map_or(0, |c| c.len())).collect();
        self.encode_columns(columns, false, &rows, Vec::new())
    }

    /// Converts `columns` (text columns read by each type's input rules, or
    /// typed ones assigned as INSERT assigns), completes, checks and encodes
    /// the rows; `index` gives each row's place in the caller's batch. With
    /// `skip`, rows that fail join `rejected`; else the first fails it all.
    fn encode_columns(
        &self,
        columns: &[ArrayRef],
        skip: bool,
        index: &[usize],
        mut rejected: Vec<(usize, Error)>,
    ) -> std::result::Result<Encoded, RowError> {
        let _scope = self.overlay.as_ref().map(|o| o.enter());
        let (shared, table) = (&self.shared, &self.table);
        let convert = |columns: &[ArrayRef]| {
            let arrays = columns
                .iter()
                .zip(self.targets.iter())
                .map(|(array, &c)| {
                    let column = &table.columns[c];
                    assign(array, column.data_type, &column.name)
                })
                .collect::<Result<Vec<_>>>()?;
            let full = full_rows(shared, &self.planner, table, &self.targets, &arrays)?;
            full.into_iter()
                .map(|row| shared.checks.row(table, row))
                .collect::<Result<Vec<_>>>()
        };
        let one = |r: usize| -> Vec<ArrayRef> { columns.iter().map(|c| c.slice(r, 1)).collect() };
        let full = match convert(columns) {
            Ok(full) => full,
            Err(error) if !skip => {
                // Which row: each on its own, until one fails the same way.
                let row = (0..index.len()).find(|&r| convert(&one(r)).is_err());
                return Err(RowError {
                    row: row.map(|r| index[r]),
                    error,
                });
            }
            // Each row on its own, keeping those that convert.
            Err(_) => {
                let mut full = Vec::with_capacity(index.len());
                for (r, &i) in index.iter().enumerate() {
                    match convert(&one(r)) {
                        Ok(row) => full.extend(row),
                        Err(e) => rejected.push((i, e)),
                    }
                }
                rejected.sort_by_key(|(i, _)| *i);
                full
            }
        };
        self.encode_full(full, rejected)
    }

    /// Encodes converted rows for storage.
    fn encode_full(
        &self,
        full: Vec<Vec<crate::engine::types::Value>>,
        rejected: Vec<(usize, Error)>,
    ) -> std::result::Result<Encoded, RowError> {
        let (shared, table) = (&self.shared, &self.table);
        let mut run = Run::default();
        let mut value = Vec::new();
        for row in full {
            let key = if table.has_row_ids() {
                let id = shared
                    .row_ids
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                table.row_id_key(id)
            } else {
                table.row_key(&row)?
            };
            value.clear();
            value.push(VERSION_ROW);
            value.extend_from_slice(&table.encode_row(&row)?);
            run.push(&key, &value);
        }
        Ok(Encoded {
            rows: run.entries.len() as u64,
            run,
            rejected,
        })
    }
}

/// A row a load refused, and which row of the batch it was when known.
#[derive(Debug)]
pub struct RowError {
    /// Index of the row in the batch handed to [`Session::bulk_rows`].
    pub row: Option<usize>,
    /// Why.
    pub error: Error,
}

impl From<Error> for RowError {
    fn from(error: Error) -> RowError {
        RowError { row: None, error }
    }
}

impl Session {
    /// Starts a bulk load into `columns` of `table` (all columns when
    /// empty), in the open transaction block or in a transaction of its
    /// own; returns the number of fields each row has. None when the table
    /// or the database cannot take one (see the module docs), or the open
    /// transaction has written rows: load with COPY then. Rows follow with
    /// [`Session::bulk_rows`]; [`Session::bulk_commit`] commits them, with
    /// the whole transaction.
    pub fn bulk_begin(
        &mut self,
        table: &str,
        columns: &[String],
        on_duplicate: OnDuplicate,
    ) -> Result<Option<usize>> {
        let _scope = self.catalog_scope();
        self.copy_abort();
        self.bulk_abort();
        let (table, targets) = self.copy_targets(table, columns)?;
        let written = self
            .txn
            .as_ref()
            .is_some_and(|open| open.txn.lock().has_row_writes());
        let referenced = !self.shared.catalog.referencing(table.id).is_empty();
        if !table.indexes.is_empty()
            || !table.foreign_keys.is_empty()
            || referenced
            || written
            || !self.shared.mvcc.storage().ingests()
        {
            return Ok(None);
        }
        let implicit = match &self.txn {
            Some(open) if open.aborted => return Err(crate::engine::session::aborted()),
            Some(_) => None,
            None => Some(Open::new(self.begin_transaction(self.default_isolation()))),
        };
        let existing = self.shared.catalog.contains_id(table.id);
        {
            let open = implicit
                .as_ref()
                .or(self.txn.as_ref())
                .expect("a transaction is open");
            // No other write reaches the table until the commit: snapshots
            // taken meanwhile read it as of the reserved timestamp.
            if existing {
                if let Some(locker) = open.txn.lock().locker() {
                    locker.lock_target(&Target::Table(table.id), Mode::Update, true)?;
                }
            }
        }
        let at = self.shared.mvcc.reserve_timestamp()?;
        let staging = self.shared.staging_dir().join(at.to_string());
        std::fs::create_dir_all(&staging)
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        let run_bytes = (self.memory_limit / 4).clamp(64 << 10, MAX_RUN_BYTES);
        let fields = targets.len();
        self.bulk = Some(Box::new(BulkIn {
            table,
            targets,
            implicit,
            at,
            staging,
            run: Run::default(),
            run_bytes,
            spilled: Vec::new(),
            existing,
            on_duplicate,
        }));
        Ok(Some(fields))
    }

    /// A converter of rows for the running bulk load, which other threads
    /// may use (see [`Session::bulk_add`]).
    pub fn bulk_encoder(&mut self) -> Result<BulkEncoder> {
        let planner = self.planner()?;
        let overlay = self.txn.as_ref().map(|open| open.overlay.clone());
        let load = self.bulk.as_ref().ok_or_else(no_load)?;
        Ok(BulkEncoder {
            shared: self.shared.clone(),
            planner,
            table: load.table.clone(),
            targets: load.targets.clone().into(),
            overlay,
        })
    }

    /// Adds rows a [`BulkEncoder`] of the running load encoded.
    pub fn bulk_add(&mut self, encoded: Encoded) -> Result<()> {
        let result = match self.bulk.as_mut() {
            Some(load) => load.add(encoded),
            None => Err(no_load()),
        };
        if result.is_err() {
            self.bulk_abort();
        }
        result
    }

    /// Adds rows of text fields (None for NULL), each field read as its
    /// column's type reads a string literal, as COPY reads them. A failure
    /// ends the load (and aborts a transaction block): nothing of it is
    /// written.
    pub fn bulk_rows(
        &mut self,
        rows: &[Vec<Option<String>>],
    ) -> std::result::Result<u64, RowError> {
        let encoded = self.bulk_encoder()?.encode(rows);
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(e) => {
                self.bulk_abort();
                return Err(e);
            }
        };
        let rows = encoded.rows;
        self.bulk_add(encoded)?;
        Ok(rows)
    }

    /// Finishes the running bulk load: writes its files and commits the
    /// transaction it runs in (its own, or the open transaction block),
    /// making every row visible at once. Returns the rows written. When two
    /// rows, or a row and the table, share a primary key: 23505 and nothing
    /// written, unless the load's [`OnDuplicate`] skips or replaces.
    pub fn bulk_commit(&mut self) -> Result<u64> {
        let _scope = self.catalog_scope();
        let Some(mut load) = self.bulk.take() else {
            return Err(no_load());
        };
        let written = match load.write_files(&self.shared) {
            Ok(written) => written,
            Err(e) => {
                self.finish_failed(load);
                return Err(e);
            }
        };
        let Files { paths, keys, rows } = written;
        let shared = self.shared.clone();
        let (table, at) = (load.table.clone(), load.at);
        let ingested: Arc<parking_lot::Mutex<Option<Error>>> = Default::default();
        let apply = {
            let (shared, paths, failed) = (shared.clone(), paths.clone(), ingested.clone());
            let prefix = table.key_prefix();
            let id = table.id;
            Box::new(move |ts: u64| {
                shared.mvcc.horizon().hide(prefix, at, ts);
                if let Err(e) = shared.mvcc.storage().ingest(Cf::Rows, &paths) {
                    *failed.lock() = Some(e);
                    return;
                }
                if let Some(keys) = keys {
                    shared.directories.load(id, keys, at);
                }
            })
        };
        let mut record = WriteBatch::new();
        record.put(Cf::Meta, pending_key(at), pending_value(&paths));
        // A backup's checkpoint waits for the ingest (see `Shared::ingesting`).
        let ingesting = shared.ingesting.read();
        let committed = match load.implicit.take() {
            Some(open) => {
                open.txn.lock().add_unversioned(record, None, Some(apply));
                commit(&shared, open)
            }
            None => match &self.txn {
                Some(open) => {
                    open.txn.lock().add_unversioned(record, None, Some(apply));
                    self.commit()
                }
                None => Err(Error::Internal(
                    "the transaction of a bulk load ended before it".into(),
                )),
            },
        };
        drop(ingesting);
        let failed_ingest = ingested.lock().take();
        let outcome = match (committed, failed_ingest) {
            // Committed and on disk, but not yet in the table: the next open
            // ingests the files (see `recover`), so they stay.
            (Ok(()), Some(e)) => {
                return Err(Error::io(
                    "the load committed but its files could not be added to the table; reopening the database finishes it",
                    e,
                ))
            }
            (Ok(()), None) => {
                let mut done = WriteBatch::new();
                done.delete(Cf::Meta, pending_key(at));
                shared
                    .mvcc
                    .storage()
                    .write(done, SyncMode::Buffered)
                    .map(|()| rows)
            }
            (Err(e), _) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&load.staging);
        outcome
    }

    /// Ends the running bulk load without writing anything (a transaction
    /// block it ran in is aborted).
    pub fn bulk_abort(&mut self) {
        if let Some(load) = self.bulk.take() {
            self.finish_failed(load);
        }
    }

    fn finish_failed(&mut self, load: Box<BulkIn>) {
        let _ = std::fs::remove_dir_all(&load.staging);
        match load.implicit {
            Some(open) => open.into_transaction().rollback(),
            None => self.abort_statement(),
        }
    }
}

/// The files of a load, and its keys as the key directory knows them
/// (None when the table has no directory).
struct Files {
    paths: Vec<PathBuf>,
    keys: Option<Vec<u64>>,
    /// Rows written (duplicates skipped or replaced are not).
    rows: u64,
}

fn no_load() -> Error {
    Error::invalid(SqlState::PROTOCOL_VIOLATION, "no bulk load is running")
}

impl Files {
    /// The files of parts written in key order, as one.
    fn join(parts: Vec<Files>) -> Files {
        let mut files = Files {
            paths: Vec::new(),
            keys: None,
            rows: 0,
        };
        for part in parts {
            files.rows += part.rows;
            files.paths.extend(part.paths);
            if let Some(keys) = part.keys {
                files.keys.get_or_insert_with(Vec::new).extend(keys);
            }
        }
        files
    }
}

impl BulkIn {
    fn add(&mut self, encoded: Encoded) -> Result<()> {
        self.run.append(encoded.run);
        if self.run.size() >= self.run_bytes {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the rows in memory and writes them to a run file.
    fn spill(&mut self) -> Result<()> {
        self.run.sort();
        let path = self.staging.join(format!("run-{}", self.spilled.len()));
        let file = std::fs::File::create(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let write = |out: &mut BufWriter<std::fs::File>, bytes: &[u8]| {
            out.write_all(&(bytes.len() as u32).to_le_bytes())
                .and_then(|()| out.write_all(bytes))
        };
        for i in 0..self.run.entries.len() {
            write(&mut out, self.run.key(i))
                .and_then(|()| write(&mut out, self.run.value(i)))
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        out.flush()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let n = self.run.entries.len();
        let (first, last) = match n {
            0 => (Vec::new(), Vec::new()),
            _ => (self.run.key(0).to_vec(), self.run.key(n - 1).to_vec()),
        };
        self.spilled.push(Spilled { path, first, last });
        self.run.clear();
        Ok(())
    }

    /// Merges the rows into sorted storage files, refusing duplicate keys
    /// and keys the table holds.
    fn write_files(&mut self, shared: &crate::engine::database::Shared) -> Result<Files> {
        let storage = shared.mvcc.storage().as_ref();
        if !self.spilled.is_empty() && !self.run.entries.is_empty() {
            self.spill()?;
        }
        let directory_keys = shared.directories.covers(self.table.id);
        let output = |part: usize| Output {
            storage,
            staging: &self.staging,
            part,
            table: &self.table,
            at: self.at,
            file: None,
            paths: Vec::new(),
            pending: None,
            on_duplicate: self.on_duplicate,
            rows: 0,
            keys: Vec::new(),
            collect_keys: directory_keys,
            existing: self.existing,
            shared,
        };
        if self.spilled.is_empty() {
            self.run.sort();
            let files = write_parts(&self.run, output)?;
            self.run.clear();
            return Ok(files);
        }
        let files = self.merge_runs(output);
        for run in &self.spilled {
            let _ = std::fs::remove_file(&run.path);
        }
        files
    }

    /// Writes the spilled runs into storage files: each on its own, on a
    /// thread per core, when their key ranges do not overlap (as rows that
    /// arrive in key order give); else merged into one sorted stream.
    fn merge_runs<'a>(&self, output: impl Fn(usize) -> Output<'a> + Sync) -> Result<Files> {
        let mut order: Vec<usize> = (0..self.spilled.len()).collect();
        order.sort_by(|a, b| self.spilled[*a].first.cmp(&self.spilled[*b].first));
        let apart = order
            .windows(2)
            .all(|w| self.spilled[w[0]].last < self.spilled[w[1]].first);
        if apart {
            let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
            let group = order.len().div_ceil(threads);
            let output = &output;
            let written: Vec<Result<Vec<Files>>> = std::thread::scope(|scope| {
                let handles: Vec<_> = order
                    .chunks(group)
                    .map(|runs| {
                        scope.spawn(move || {
                            runs.iter()
                                .map(|&n| {
                                    let mut out = output(n);
                                    let mut reader = RunReader::open(&self.spilled[n].path)?;
                                    while let Some((key, value)) = reader.next()? {
                                        out.put(&key, &value)?;
                                    }
                                    out.finish()
                                })
                                .collect()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            let mut parts = Vec::new();
            for group in written {
                parts.extend(group?);
            }
            return Ok(Files::join(parts));
        }
        let mut out = output(0);
        let mut heap = BinaryHeap::new();
        let mut readers = Vec::new();
        for (n, run) in self.spilled.iter().enumerate() {
            let mut reader = RunReader::open(&run.path)?;
            if let Some(entry) = reader.next()? {
                heap.push(std::cmp::Reverse((entry, n)));
            }
            readers.push(reader);
        }
        while let Some(std::cmp::Reverse(((key, value), n))) = heap.pop() {
            out.put(&key, &value)?;
            if let Some(entry) = readers[n].next()? {
                heap.push(std::cmp::Reverse((entry, n)));
            }
        }
        out.finish()
    }
}

/// Rows of a sorted run below this many are written by one thread.
const PARALLEL_WRITE_ROWS: usize = 100_000;

/// Writes the sorted `run` into storage files, in parts of equal size on
/// a thread per core; `output(part)` makes the writer of each.
fn write_parts<'a>(run: &Run, output: impl Fn(usize) -> Output<'a> + Sync) -> Result<Files> {
    let n = run.entries.len();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let parts = if n < PARALLEL_WRITE_ROWS { 1 } else { threads };
    // Rows of one key stay in one part: no other part would see them.
    let mut bounds = vec![0];
    for p in 1..parts {
        let mut cut = (p * n / parts).max(bounds[p - 1]);
        while cut > 0 && cut < n && run.key(cut - 1) == run.key(cut) {
            let out = output(0);
            if out.on_duplicate == OnDuplicate::Error {
                return Err(out.duplicate(run.value(cut)));
            }
            cut += 1;
        }
        bounds.push(cut);
    }
    bounds.push(n);
    let written: Vec<Result<Files>> = std::thread::scope(|scope| {
        let output = &output;
        let handles: Vec<_> = bounds
            .windows(2)
            .enumerate()
            .map(|(part, range)| {
                let range = range[0]..range[1];
                scope.spawn(move || {
                    let mut out = output(part);
                    for i in range {
                        out.put(run.key(i), run.value(i))?;
                    }
                    out.finish()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    Ok(Files::join(
        written.into_iter().collect::<Result<Vec<_>>>()?,
    ))
}

/// Writes merged rows into storage files, checking their keys.
struct Output<'a> {
    storage: &'a dyn Storage,
    staging: &'a Path,
    /// Which part of the rows this writes (its files' names start with it).
    part: usize,
    table: &'a Table,
    at: u64,
    file: Option<Box<dyn crate::engine::storage::SortedFile + 'a>>,
    paths: Vec<PathBuf>,
    /// The entry before the one being put, not written yet: a later one
    /// with its key may replace it.
    pending: Option<(Vec<u8>, Vec<u8>)>,
    on_duplicate: OnDuplicate,
    /// Rows written.
    rows: u64,
    keys: Vec<u64>,
    collect_keys: bool,
    existing: bool,
    shared: &'a crate::engine::database::Shared,
}

impl Output<'_> {
    /// Takes the next entry in key order (equal keys in the order the
    /// rows came).
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some((last, last_value)) = &mut self.pending {
            if last.as_slice() == key {
                return match self.on_duplicate {
                    OnDuplicate::Error => Err(self.duplicate(value)),
                    OnDuplicate::Skip => Ok(()),
                    OnDuplicate::Update => {
                        last_value.clear();
                        last_value.extend_from_slice(value);
                        Ok(())
                    }
                };
            }
        }
        let next = match self.pending.take() {
            Some((mut k, mut v)) => {
                self.write(&k, &v)?;
                k.clear();
                k.extend_from_slice(key);
                v.clear();
                v.extend_from_slice(value);
                (k, v)
            }
            None => (key.to_vec(), value.to_vec()),
        };
        self.pending = Some(next);
        Ok(())
    }

    /// Writes an entry whose key no other entry of the load has.
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.existing && self.shared.mvcc.read_latest(key)?.is_some() {
            match self.on_duplicate {
                OnDuplicate::Error => return Err(self.duplicate(value)),
                OnDuplicate::Skip => return Ok(()),
                OnDuplicate::Update => {}
            }
        }
        if self.collect_keys {
            if let Some(k) = self.shared.directories.key_number(self.table.id, key) {
                self.keys.push(k);
            }
        }
        if self.file.as_ref().is_none_or(|f| f.size() >= FILE_BYTES) {
            self.close()?;
            let name = format!("{:02}-{:04}.sst", self.part, self.paths.len());
            let path = self.staging.join(name);
            self.file = Some(self.storage.sorted_file(Cf::Rows, &path)?);
            self.paths.push(path);
        }
        let file = self.file.as_mut().expect("opened above");
        file.put(&versioned_key(key, self.at), value)?;
        self.rows += 1;
        Ok(())
    }

    /// 23505 for the row stored as `value`, whose key is taken.
    fn duplicate(&self, value: &[u8]) -> Error {
        let row = value
            .split_first()
            .map_or(Ok(Vec::new()), |(_, row)| self.table.decode_row(row));
        match row {
            Ok(row) => crate::engine::secondary::unique_violation(
                self.table,
                &self.table.primary_key_name(),
                &self.table.primary_key_indices(),
                &row,
                false,
            ),
            Err(e) => e,
        }
    }

    fn close(&mut self) -> Result<()> {
        match self.file.take() {
            Some(file) => file.finish(),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> Result<Files> {
        if let Some((key, value)) = self.pending.take() {
            self.write(&key, &value)?;
        }
        self.close()?;
        Ok(Files {
            paths: std::mem::take(&mut self.paths),
            keys: self.collect_keys.then(|| std::mem::take(&mut self.keys)),
            rows: self.rows,
        })
    }
}

/// Reads a run file back, entry by entry.
struct RunReader {
    input: BufReader<std::fs::File>,
    path: PathBuf,
}

impl RunReader {
    fn open(path: &Path) -> Result<RunReader> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(RunReader {
            input: BufReader::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
        })
    }

    fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
        let key = self.bytes(u32::from_le_bytes(len) as usize)?;
        self.input
            .read_exact(&mut len)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        let value = self.bytes(u32::from_le_bytes(len) as usize)?;
        Ok(Some((key, value)))
    }

    fn bytes(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        self.input
            .read_exact(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        Ok(bytes)
    }
}

fn pending_key(at: u64) -> Vec<u8> {
    let mut key = PENDING_PREFIX.to_vec();
    key.extend_from_slice(&at.to_be_bytes());
    key
}

/// The names of a load's files (in its directory under the staging
/// directory, named after its timestamp), one per line. Names, not paths:
/// a copy of the database (a backup) must never reach for the original's.
fn pending_value(files: &[PathBuf]) -> Vec<u8> {
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.join("\n").into_bytes()
}

/// Finishes loads that committed before a crash and removes what loads
/// that never committed left in `staging` (the staging directory of the
/// database). Runs while the database opens, before anything reads rows.
pub(crate) fn recover(storage: &dyn Storage, staging: &Path) -> Result<()> {
    let pending: Vec<(Vec<u8>, Vec<u8>)> = storage
        .scan(Cf::Meta, PENDING_PREFIX, Some(b"bulk.pending/"))
        .collect::<Result<_>>()?;
    for (key, value) in pending {
        let at = key
            .strip_prefix(PENDING_PREFIX)
            .and_then(|at| at.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| Error::Corruption("a pending bulk load's key is malformed".into()))?;
        let dir = staging.join(at.to_string());
        let text = String::from_utf8_lossy(&value).into_owned();
        let files: Vec<PathBuf> = text
            .lines()
            .map(|name| dir.join(name))
            .filter(|f| f.exists())
            .collect();
        storage.ingest(Cf::Rows, &files)?;
        let mut done = WriteBatch::new();
        done.delete(Cf::Meta, key);
        storage.write(done, SyncMode::Durable)?;
    }
    if staging.exists() {
        std::fs::remove_dir_all(staging)
            .map_err(|e| Error::io(format!("removing {}", staging.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::storage::{RocksDb, RocksOptions};

    /// A load whose commit is on disk but whose files were not ingested
    /// (a crash in between) is finished by `recover`; the files of a load
    /// that never committed are removed; a record whose files are already
    /// ingested is only cleared.
    #[test]
    fn recovery_ingests_committed_loads_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RocksDb::open(&dir.path().join("db"), RocksOptions::default(), None).unwrap();
        let staging = dir.path().join("db").join("bulk");
        let (committed, abandoned) = (staging.join("5"), staging.join("9"));
        std::fs::create_dir_all(&committed).unwrap();
        std::fs::create_dir_all(&abandoned).unwrap();
        let file = committed.join("0000.sst");
        let mut writer = storage.sorted_file(Cf::Rows, &file).unwrap();
        writer.put(b"key-1", b"one").unwrap();
        writer.put(b"key-2", b"two").unwrap();
        writer.finish().unwrap();
        std::fs::write(abandoned.join("run-0"), b"partial").unwrap();
        let mut record = WriteBatch::new();
        record.put(
            Cf::Meta,
            pending_key(5),
            pending_value(std::slice::from_ref(&file)),
        );
        storage.write(record, SyncMode::Durable).unwrap();

        recover(&storage, &staging).unwrap();
        assert_eq!(
            storage.get(Cf::Rows, b"key-2").unwrap(),
            Some(b"two".to_vec())
        );
        assert_eq!(storage.get(Cf::Meta, &pending_key(5)).unwrap(), None);
        assert!(!staging.exists());

        let mut record = WriteBatch::new();
        record.put(Cf::Meta, pending_key(7), pending_value(&[file]));
        storage.write(record, SyncMode::Durable).unwrap();
        recover(&storage, &staging).unwrap();
        assert_eq!(storage.get(Cf::Meta, &pending_key(7)).unwrap(), None);
        assert_eq!(
            storage.get(Cf::Rows, b"key-1").unwrap(),
            Some(b"one".to_vec())
        );
    }
}
