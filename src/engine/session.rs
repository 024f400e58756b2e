//! [`Session`]: one client's view of the database and its transaction.
//!
//! Every data call is one statement. Outside an explicit transaction it runs
//! in its own transaction and commits (autocommit). Inside one, a failed
//! statement leaves the transaction aborted, as in PostgreSQL: every later
//! call fails with 25P02 until [`Session::rollback`]. Statements are atomic:
//! a failing call buffers no write.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use super::catalog::{Catalog, ColumnDef, Table, TableChange};
use super::database::Shared;
use super::error::{Error, Result, SqlState};
use super::mvcc::{CommitApply, IsolationLevel, RowLock, Transaction};
use super::secondary::{begin_write, unique_violation, write_row, Change};
use super::storage::{Cf, WriteBatch};
use super::types::Value;

/// One end of a primary key range: a full key or a prefix of its leading columns.
pub type KeyBound = Bound<Vec<Value>>;

/// A client's connection to a [`Database`](super::Database).
pub struct Session {
    pub(super) shared: Arc<Shared>,
    default_isolation: IsolationLevel,
    pub(super) txn: Option<Open>,
    /// The SQL planner, made on the first SQL statement.
    pub(super) sql: Option<Arc<super::sql::Planner>>,
    /// Settings changed with SET, by lower-case name.
    pub(super) settings: std::collections::HashMap<String, String>,
    /// The settings as the session started, which RESET goes back to.
    pub(super) initial_settings: std::collections::HashMap<String, String>,
    /// Warnings for the client (PostgreSQL's notices), oldest first.
    notices: Vec<String>,
    /// Whether single-row statements skip the planner.
    pub(super) fast_path_enabled: bool,
    /// Statements the fast path ran.
    pub(super) fast_path_taken: u64,
    /// The role a server connection logged in as; None in the local shell.
    pub(super) user: Option<String>,
    /// Cancels the running statement from another thread.
    pub(super) canceller: super::Canceller,
    /// The server's other sessions, for pg_cancel_backend.
    pub(super) backends: Option<Arc<dyn super::Backends>>,
    /// The COPY FROM whose rows are arriving, if one is.
    pub(super) copy: Option<CopyIn>,
    /// The bulk load whose rows are arriving, if one is.
    pub(super) bulk: Option<Box<super::sql::BulkIn>>,
    /// Bytes one statement or transaction may take (`SET omen.memory_limit`).
    pub(super) memory_limit: usize,
    /// This session's id, as locks name their holders.
    pub(super) id: super::locks::SessionId,
    /// `lock_timeout` in milliseconds (0: none), read by lock waits.
    pub(super) lock_timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// `deadlock_timeout` in milliseconds, read by lock waits.
    pub(super) deadlock_timeout_ms: Arc<std::sync::atomic::AtomicU64>,
    /// What the session is doing, as pg_stat_activity shows it.
    pub(super) activity: Arc<parking_lot::Mutex<super::activity::Backend>>,
    /// The values this session's nextval calls returned (currval, lastval).
    pub(super) sequences_seen: Arc<parking_lot::Mutex<super::sql::Seen>>,
    /// Statements named by PREPARE.
    pub(super) prepared: super::sql::PreparedStatements,
    /// Statements of text run before, kept parsed ([`Session::execute`]).
    pub(super) statement_cache: super::sql::StatementCache,
    /// Cursors declared WITH HOLD by transactions that committed.
    pub(super) held_cursors: super::sql::Cursors,
    /// Query results being read ([`Session::streaming`]).
    pub(super) streams: super::sql::Streams,
    /// How the session's transactions take row locks.
    pub(super) locker: Arc<crate::engine::mvcc::RowLocker>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The open transaction ends first (its locks with it), then the
        // session-level advisory locks.
        self.copy = None;
        self.close_streams();
        self.txn = None;
        self.shared.locks.release(self.id, None);
        self.shared.activity.remove(self.id);
    }
}

/// A COPY FROM in progress (see [`Session::copy_begin`]).
pub(super) struct CopyIn {
    pub table: Arc<Table>,
    /// The column each field fills.
    pub targets: Vec<usize>,
    /// The COPY's own transaction, outside a transaction block.
    pub implicit: Option<Open>,
    /// Rows written so far.
    pub rows: u64,
}

/// A transaction shared with the query plans of the statement that reads it.
/// Plans live no longer than their statement (the tasks of a plan's
/// partitions end moments after it), so at commit the session holds the
/// only reference.
pub(super) type SharedTxn = Arc<parking_lot::Mutex<Transaction>>;

/// An open transaction, explicit or for one statement.
pub(super) struct Open {
    pub txn: SharedTxn,
    /// Tables written, checked at commit to still exist.
    pub tables: BTreeSet<u32>,
    pub aborted: bool,
    /// Statements run in the transaction so far.
    pub statements: u32,
    /// Savepoints, oldest first: name and the changes when it was set.
    pub savepoints: Vec<(
        String,
        crate::engine::mvcc::Mark,
        super::catalog::OverlaySnapshot,
    )>,
    /// Cursors the transaction declared; they end with it.
    pub cursors: super::sql::Cursors,
    /// Foreign key checks owed at the end of the statement or at COMMIT.
    pub constraints: super::foreign_keys::Pending,
    /// Table definitions its DDL changed, visible to it alone until COMMIT.
    pub overlay: super::catalog::Overlay,
}

impl Open {
    pub(super) fn new(txn: Transaction) -> Open {
        Open {
            txn: Arc::new(parking_lot::Mutex::new(txn)),
            tables: BTreeSet::new(),
            aborted: false,
            statements: 0,
            savepoints: Vec::new(),
            cursors: Default::default(),
            constraints: Default::default(),
            overlay: Default::default(),
        }
    }

    /// Starts a statement in the transaction; 25P02 once it has failed.
    pub(super) fn begin_statement(&mut self) -> Result<()> {
        if self.aborted {
            return Err(aborted());
        }
        self.txn.lock().begin_statement();
        self.statements += 1;
        Ok(())
    }

    /// The transaction alone, once no query plan holds it. A statement whose
    /// plan ran in several partitions may end (a LIMIT was reached) while
    /// the runtime is still dropping the partitions' aborted tasks; they let
    /// go of the transaction within moments.
    pub(super) fn into_transaction(self) -> Transaction {
        let mut txn = self.txn;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match Arc::try_unwrap(txn) {
                Ok(txn) => return txn.into_inner(),
                Err(shared) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "a query plan outlived its statement by 30 s"
                    );
                    txn = shared;
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
        }
    }
}

impl Session {
    pub(super) fn new(shared: Arc<Shared>) -> Session {
        let mut settings = super::sql::default_settings();
        settings.insert("omen.parallelism".into(), shared.parallelism.to_string());
        let memory_limit = shared.memory_limit;
        settings.insert(
            "omen.memory_limit".into(),
            format!("{}MB", memory_limit >> 20),
        );
        let id = shared
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let activity = shared.activity.register(id);
        let canceller = super::Canceller::default();
        let lock_timeout_ms: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let deadlock_timeout_ms = Arc::new(std::sync::atomic::AtomicU64::new(
            super::locks::DEADLOCK_TIMEOUT.as_millis() as u64,
        ));
        let names = shared.activity.clone();
        let locker = Arc::new(crate::engine::mvcc::RowLocker {
            locks: shared.locks.clone(),
            session: id,
            canceller: canceller.clone(),
            lock_timeout_ms: lock_timeout_ms.clone(),
            deadlock_timeout_ms: deadlock_timeout_ms.clone(),
            holds: Arc::default(),
            describe: Arc::new(move |id| names.describe(id)),
        });
        Session {
            shared,
            default_isolation: IsolationLevel::default(),
            txn: None,
            sql: None,
            initial_settings: settings.clone(),
            settings,
            notices: Vec::new(),
            fast_path_enabled: true,
            fast_path_taken: 0,
            user: None,
            canceller,
            backends: None,
            copy: None,
            bulk: None,
            memory_limit,
            id,
            lock_timeout_ms,
            deadlock_timeout_ms,
            activity,
            sequences_seen: Arc::default(),
            prepared: Default::default(),
            statement_cache: Default::default(),
            held_cursors: Default::default(),
            streams: Default::default(),
            locker,
        }
    }

    /// Records the text of the statement about to run, for pg_stat_activity
    /// (the server and the shell pass what the client sent).
    pub fn set_query_text(&mut self, text: &str) {
        let mut backend = self.activity.lock();
        backend.query.clear();
        backend.query.push_str(text);
    }

    /// Names the client, for pg_stat_activity.
    pub fn set_client(&mut self, user: &str, application_name: &str) {
        let mut backend = self.activity.lock();
        backend.user = user.to_string();
        backend.application_name = application_name.to_string();
    }

    /// Marks a statement begun or ended in pg_stat_activity.
    pub(super) fn report_state(&self, active: bool) {
        let now = std::time::SystemTime::now();
        let mut backend = self.activity.lock();
        backend.state = match (&self.txn, active) {
            (_, true) => "active",
            (None, false) => "idle",
            (Some(open), false) if open.aborted => "idle in transaction (aborted)",
            (Some(_), false) => "idle in transaction",
        };
        backend.state_change = now;
        if active {
            backend.query_start = Some(now);
            if backend.xact_start.is_none() {
                backend.xact_start = Some(now);
            }
        } else if self.txn.is_none() {
            backend.xact_start = None;
        }
    }

    /// A handle that cancels this session's running statement from another
    /// thread (the statement fails with 57014).
    pub fn canceller(&self) -> super::Canceller {
        self.canceller.clone()
    }

    /// Gives the session its server's other sessions (pg_backend_pid,
    /// pg_cancel_backend).
    pub fn set_backends(&mut self, backends: Arc<dyn super::Backends>) {
        self.activity.lock().pid = backends.pid();
        self.backends = Some(backends);
        self.sql = None;
    }

    /// The isolation level of transactions begun without naming one.
    pub fn set_default_isolation(&mut self, level: IsolationLevel) {
        self.default_isolation = level;
    }

    /// The isolation level of transactions begun without naming one.
    pub fn default_isolation(&self) -> IsolationLevel {
        self.default_isolation
    }

    /// Whether an explicit transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The isolation level of the open transaction.
    pub fn txn_isolation(&self) -> Option<IsolationLevel> {
        self.txn.as_ref().map(|t| t.txn.lock().isolation())
    }

    /// Takes the warnings raised since the last call (a COMMIT with no
    /// transaction open, ...).
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    pub(super) fn notice(&mut self, message: impl Into<String>) {
        self.notices.push(message.into());
    }

    /// Replaces the open transaction, which must not have run a statement yet,
    /// by one at `isolation` (SET TRANSACTION ISOLATION LEVEL).
    pub(super) fn restart_transaction(&mut self, isolation: IsolationLevel) -> Result<()> {
        let Some(open) = &self.txn else {
            return Err(no_transaction());
        };
        if open.statements > 0 {
            return Err(Error::TransactionState {
                code: SqlState::ACTIVE_SQL_TRANSACTION,
                message: "SET TRANSACTION ISOLATION LEVEL must be called before any query".into(),
            });
        }
        self.close_block_streams();
        let old = self.txn.take().expect("checked above");
        old.into_transaction().rollback();
        self.begin_with(isolation)
    }

    /// Marks an open transaction failed, as a failing statement does (for
    /// failures outside the engine, such as a parameter that does not
    /// decode). Outside a transaction it does nothing.
    pub fn fail_transaction(&mut self) {
        if let Some(open) = &mut self.txn {
            open.aborted = true;
        }
    }

    /// Recovers from a statement that panicked (a bug): its writes are undone,
    /// an explicit transaction is aborted (25P02 until it ends), and the
    /// session goes on serving.
    pub fn recover_from_panic(&mut self) {
        self.abort_statement();
    }

    /// Undoes the running statement of the open transaction (it failed) and
    /// aborts the transaction: 25P02 until it ends.
    pub(super) fn abort_statement(&mut self) {
        if let Some(open) = &mut self.txn {
            open.txn.lock().rollback_statement();
            open.constraints.forget_immediate();
            open.aborted = true;
        }
    }

    /// Whether the open transaction failed and awaits ROLLBACK.
    pub fn is_aborted(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.aborted)
    }

    /// A new transaction at `isolation`, under the session's memory limit.
    pub(super) fn begin_transaction(&self, isolation: IsolationLevel) -> Transaction {
        let mut txn = self.shared.mvcc.begin(isolation);
        txn.set_memory_limit(self.memory_limit);
        txn.set_locker(self.locker.clone());
        txn
    }

    /// Begins an explicit transaction at the default isolation level.
    pub fn begin(&mut self) -> Result<()> {
        self.begin_with(self.default_isolation)
    }

    /// Begins an explicit transaction at `isolation`.
    pub fn begin_with(&mut self, isolation: IsolationLevel) -> Result<()> {
        if self.txn.is_some() {
            return Err(Error::TransactionState {
                code: SqlState::ACTIVE_SQL_TRANSACTION,
                message: "there is already a transaction in progress".into(),
            });
        }
        self.txn = Some(Open::new(self.begin_transaction(isolation)));
        self.activity.lock().xact_start = Some(std::time::SystemTime::now());
        Ok(())
    }

    /// Commits the open transaction. An aborted transaction is rolled back
    /// instead, and the call fails with 25P02.
    pub fn commit(&mut self) -> Result<()> {
        self.close_block_streams();
        let Some(mut open) = self.txn.take() else {
            return Err(no_transaction());
        };
        if open.aborted {
            open.into_transaction().rollback();
            return Err(Error::TransactionState {
                code: SqlState::IN_FAILED_SQL_TRANSACTION,
                message: "the transaction was aborted by an earlier error and has been rolled back"
                    .into(),
            });
        }
        // Cursors declared WITH HOLD outlive a commit, with all their rows.
        if let Err(e) = self.read_held_cursors(&mut open) {
            open.into_transaction().rollback();
            return Err(e);
        }
        let held: Vec<_> = std::mem::take(&mut open.cursors)
            .into_iter()
            .filter(|(_, cursor)| cursor.is_held())
            .collect();
        commit(&self.shared, open)?;
        self.held_cursors.extend(held);
        Ok(())
    }

    /// Discards the open transaction.
    pub fn rollback(&mut self) -> Result<()> {
        self.close_block_streams();
        let open = self.txn.take().ok_or_else(no_transaction)?;
        open.into_transaction().rollback();
        Ok(())
    }

    /// Runs one statement in the open transaction, or in a transaction of its own.
    pub(super) fn statement<T>(&mut self, f: impl FnOnce(&mut Open) -> Result<T>) -> Result<T> {
        // A statement ends a COPY whose client stopped sending without saying so.
        self.copy_abort();
        self.bulk_abort();
        self.settle_streams();
        match &mut self.txn {
            Some(open) => {
                open.begin_statement()?;
                let mut result = f(open);
                if result.is_ok() && open.constraints.has_immediate() {
                    if let Err(e) = super::foreign_keys::verify(&self.shared, open, false) {
                        result = Err(e);
                    }
                }
                if result.is_err() {
                    // A failed statement leaves nothing behind, and the
                    // transaction refuses everything until it ends.
                    self.abort_statement();
                } else {
                    open.txn.lock().end_statement();
                }
                result
            }
            None => {
                let mut open = Open::new(self.begin_transaction(self.default_isolation));
                let value = f(&mut open)?;
                commit(&self.shared, open)?;
                Ok(value)
            }
        }
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Result<Arc<Table>> {
        let _scope = self.catalog_scope();
        self.shared.catalog.table(name)
    }

    /// Inserts a full row; fails with 23505 if its primary key exists.
    pub fn insert(&mut self, table: &str, row: Vec<Value>) -> Result<()> {
        let table = self.table(table)?;
        let shared = self.shared.clone();
        self.statement(|open| insert_row(&shared, open, &table, row).map(drop))
    }

    /// The row with primary key `key`, if any.
    pub fn get(&mut self, table: &str, key: &[Value]) -> Result<Option<Vec<Value>>> {
        let table = self.table(table)?;
        self.statement(|open| {
            let key = table.key(key)?;
            open.txn
                .lock()
                .get(&key)?
                .map(|bytes| table.decode_row(&bytes))
                .transpose()
        })
    }

    /// Rows whose primary key lies between `lower` and `upper`, in key order.
    /// A bound may name only the leading key columns.
    pub fn scan(
        &mut self,
        table: &str,
        lower: KeyBound,
        upper: KeyBound,
    ) -> Result<Vec<Vec<Value>>> {
        let table = self.table(table)?;
        self.statement(|open| {
            let from = match &lower {
                Bound::Unbounded => table.key_prefix(),
                Bound::Included(k) => table.key_prefix_of(k)?,
                Bound::Excluded(k) => successor(table.key_prefix_of(k)?),
            };
            let to = match &upper {
                Bound::Unbounded => table.key_end(),
                Bound::Included(k) => successor(table.key_prefix_of(k)?),
                Bound::Excluded(k) => table.key_prefix_of(k)?,
            };
            open.txn
                .lock()
                .scan(&from, Some(&to))
                .map(|entry| entry.and_then(|(_, bytes)| table.decode_row(&bytes)))
                .collect()
        })
    }

    /// Whether `table` holds no row, read from its first key alone.
    fn is_empty(&mut self, table: &Table) -> Result<bool> {
        let (from, to) = (table.key_prefix(), table.key_end());
        self.statement(|open| {
            let first = open.txn.lock().scan(&from, Some(&to)).next().transpose()?;
            Ok(first.is_none())
        })
    }

    /// Every row of `table`, in key order.
    pub fn scan_all(&mut self, table: &str) -> Result<Vec<Vec<Value>>> {
        self.scan(table, Bound::Unbounded, Bound::Unbounded)
    }

    /// Replaces the row with the same primary key; false when there is none.
    pub fn update(&mut self, table: &str, row: Vec<Value>) -> Result<bool> {
        let table = self.table(table)?;
        let shared = self.shared.clone();
        self.statement(|open| {
            let row = shared.checks.row(&table, row)?;
            let key = table.row_key(&row)?;
            if locked_row(open, &key, super::locks::Mode::NoKeyUpdate)?.is_none() {
                return Ok(false);
            }
            write_row(&shared, open, &table, &key, Change::Update(&row))?;
            Ok(true)
        })
    }

    /// Deletes the row with primary key `key`; false when there is none.
    pub fn delete(&mut self, table: &str, key: &[Value]) -> Result<bool> {
        let table = self.table(table)?;
        let shared = self.shared.clone();
        self.statement(|open| {
            let key = table.key(key)?;
            if locked_row(open, &key, super::locks::Mode::Update)?.is_none() {
                return Ok(false);
            }
            write_row(&shared, open, &table, &key, Change::Delete)?;
            Ok(true)
        })
    }

    /// Creates a table; with `if_not_exists`, an existing one is left alone
    /// and false returned.
    pub fn create_table(
        &mut self,
        name: &str,
        columns: Vec<ColumnDef>,
        primary_key: &[String],
        if_not_exists: bool,
    ) -> Result<bool> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        match self.refuse_taken(name) {
            Err(_) if if_not_exists => return Ok(false),
            result => result?,
        }
        let table = Table::new(
            self.shared.catalog.next_table_id(),
            name,
            columns,
            primary_key,
        )?;
        self.save_table(table)?;
        Ok(true)
    }

    /// Creates a table whose SERIAL columns own new sequences, `serials`:
    /// (sequence name, column, type). The table and its sequences are one
    /// change.
    pub(super) fn create_table_with_sequences(
        &mut self,
        def: super::sql::TableDef,
        if_not_exists: bool,
    ) -> Result<bool> {
        let super::sql::TableDef {
            name,
            columns,
            primary_key,
            serials,
            checks,
            uniques,
            foreign_keys,
            key_name,
        } = def;
        if serials.is_empty()
            && checks.is_empty()
            && uniques.is_empty()
            && foreign_keys.is_empty()
            && key_name.is_none()
        {
            return self.create_table(&name, columns, &primary_key, if_not_exists);
        }
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        match self.refuse_taken(&name) {
            Err(_) if if_not_exists => return Ok(false),
            result => result?,
        }
        let mut table = Table::new(shared.catalog.next_table_id(), &name, columns, &primary_key)?
            .with_key_name(key_name)?;
        for def in &checks {
            // Each is named with the ones before it in place.
            let check = shared.checks.define(&table, def)?;
            table.push_check(check)?;
        }
        for def in &uniques {
            let index_name = match &def.name {
                Some(n) => {
                    self.refuse_taken(n)?;
                    n.clone()
                }
                None => table.index_name(&def.columns, "key", |n| self.refuse_taken(n).is_err()),
            };
            let id = table.id + 1 + table.indexes.len() as u32;
            let index = table.define_index(def, id, index_name)?;
            table.push_index(index)?;
        }
        for def in &foreign_keys {
            let id = table.id + 1 + table.indexes.len() as u32;
            let (fk, index) = self.define_foreign_key(&table, def, id)?;
            table.push_foreign_key(fk, index)?;
        }
        if serials.is_empty() {
            self.save_table(table)?;
            return Ok(true);
        }
        let mut defs = Vec::new();
        for (sequence, column, data_type) in serials {
            self.refuse_taken(&sequence)?;
            let mut def = super::sequences::SequenceDef::new(&sequence, 0, data_type);
            def.owned_by = Some((name.to_string(), column));
            defs.push(def);
        }
        self.create_relations(Some(table), defs)?;
        Ok(true)
    }

    /// Drops a table and its rows; with `if_exists`, a missing one returns false.
    pub fn drop_table(&mut self, name: &str, if_exists: bool) -> Result<bool> {
        Ok(self.drop_tables(&[name.to_string()], if_exists, false)? == 1)
    }

    /// Drops tables and their rows in one change: all of them or, when one is
    /// missing (and not `if_exists`), none. A table that foreign keys of
    /// other tables reference is refused (2BP01) unless `cascade`, which
    /// drops those constraints. Returns how many were dropped.
    pub fn drop_tables(
        &mut self,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<usize> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let mut ids = Vec::new();
        let mut owned = Vec::new();
        let mut batch = WriteBatch::new();
        for name in names {
            let table = match self.shared.catalog.table(name) {
                Ok(table) => table,
                Err(_) if if_exists => {
                    self.notice(format!("table \"{name}\" does not exist, skipping"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if ids.contains(&table.id) {
                continue;
            }
            ids.push(table.id);
            batch.delete(Cf::Catalog, Catalog::table_key(table.id));
            batch.delete_range(Cf::Rows, table.key_prefix(), table.key_end());
            for index in &table.indexes {
                batch.delete_range(Cf::Rows, index.key_prefix(), index.key_end());
            }
            // A SERIAL column's sequence goes with its table.
            for sequence in self.shared.sequences.owned_by(&table.name) {
                batch.extend(super::sequences::Sequences::drop_entries(&sequence.def));
                owned.push(sequence.def.name.clone());
            }
        }
        if ids.is_empty() {
            return Ok(0);
        }
        // Foreign keys of other tables that reference the dropped ones.
        let mut children: Vec<Table> = Vec::new();
        for id in &ids {
            let Some(table) = shared.catalog.table_by_id(*id) else {
                continue;
            };
            if !cascade {
                super::foreign_keys::refuse_dependents(&shared.catalog, &table, None, &ids)?;
                continue;
            }
            for child in shared.catalog.referencing(*id) {
                if ids.contains(&child.id) {
                    continue;
                }
                let position = children.iter().position(|c| c.id == child.id);
                let mut altered = match position {
                    Some(p) => children.remove(p),
                    None => (*child).clone(),
                };
                for fk in child.foreign_keys.iter().filter(|f| f.parent == *id) {
                    self.notice(format!(
                        "drop cascades to constraint {} on table {}",
                        fk.name, child.name
                    ));
                    altered = altered
                        .without_constraint(&fk.name, true)?
                        .expect("the constraint is there");
                }
                children.push(altered);
            }
        }
        for child in &children {
            batch.extend(shared.catalog.put_entries(child)?);
        }
        let (catalog, directories) = (self.shared.catalog.clone(), self.shared.directories.clone());
        let sequences = self.shared.sequences.clone();
        let count = ids.len();
        let tables = ids
            .iter()
            .map(|id| (*id, None))
            .chain(children.iter().map(|c| (c.id, Some(c.clone()))))
            .collect();
        let apply = move |_| {
            for child in children {
                catalog.install(child);
            }
            for id in ids {
                catalog.uninstall(id);
                directories.remove_table(id);
            }
            for name in owned {
                sequences.uninstall(&name);
            }
        };
        self.commit_catalog(batch, tables, Box::new(apply), Undo::none())?;
        Ok(count)
    }

    /// Adds a column to `table`. Existing rows read its default (or NULL); a
    /// NOT NULL column without a default can only be added to an empty table.
    pub fn add_column(&mut self, table: &str, column: ColumnDef) -> Result<()> {
        self.alter_table(table, vec![TableChange::AddColumn(column)])
    }

    /// Removes a column from `table`; old rows keep their bytes but no longer show it.
    pub fn drop_column(&mut self, table: &str, column: &str) -> Result<()> {
        self.alter_table(table, vec![TableChange::DropColumn(column.to_string())])
    }

    /// Makes every change of one ALTER TABLE, committed together or not at all.
    pub fn alter_table(&mut self, table: &str, changes: Vec<TableChange>) -> Result<()> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let mut altered = (*self.table(table)?).clone();
        let mut empty = None;
        let mut renamed = None;
        let mut columns_renamed = Vec::new();
        let mut built = Vec::new();
        let mut keys = Vec::new();
        if let [TableChange::AddPrimaryKey { name, columns }] = changes.as_slice() {
            let (name, columns) = (name.clone(), columns.clone());
            return self.add_primary_key(altered, name, &columns);
        }
        for change in changes {
            altered = match change {
                TableChange::AddPrimaryKey { .. } => {
                    return Err(Error::Unsupported(
                        "ADD PRIMARY KEY beside other actions in one ALTER TABLE".into(),
                    ))
                }
                TableChange::AddForeignKey { def, validate } => {
                    let id = shared.catalog.next_table_id() + built.len() as u32;
                    let (mut fk, index) = self.define_foreign_key(&altered, &def, id)?;
                    fk.validated = validate;
                    built.extend(index.clone());
                    altered.push_foreign_key(fk.clone(), index)?;
                    if validate {
                        keys.push(fk);
                    }
                    altered
                }
                TableChange::AddUnique(def) => {
                    let name = match &def.name {
                        Some(n) => {
                            self.refuse_taken(n)?;
                            n.clone()
                        }
                        None => altered
                            .index_name(&def.columns, "key", |n| self.refuse_taken(n).is_err()),
                    };
                    let id = shared.catalog.next_table_id() + built.len() as u32;
                    let index = altered.define_index(&def, id, name)?;
                    altered.push_index(index.clone())?;
                    built.push(index);
                    altered
                }
                TableChange::AddColumn(column) => {
                    let volatile = column
                        .default_expr
                        .as_deref()
                        .is_some_and(super::sql::is_volatile_default);
                    if volatile || !column.nullable && column.default.is_none() {
                        let empty = match empty {
                            Some(empty) => empty,
                            None => *empty.insert(self.is_empty(&altered)?),
                        };
                        if !empty && volatile {
                            return Err(Error::Unsupported(format!(
                                "adding column \"{}\" with a volatile default to a table \
                                 that has rows (PostgreSQL gives each row its own value; \
                                 add the column, then UPDATE it)",
                                column.name
                            )));
                        }
                        if !empty && !column.nullable && column.default.is_none() {
                            return Err(Error::ConstraintViolation {
                                code: SqlState::NOT_NULL_VIOLATION,
                                message: format!(
                                    "column \"{}\" of relation \"{table}\" contains null values",
                                    column.name
                                ),
                            });
                        }
                    }
                    altered.with_column(column)?
                }
                TableChange::DropColumn(column) => altered.without_column(&column)?,
                TableChange::AddCheck { check, validate } => {
                    let mut check = shared.checks.define(&altered, &check)?;
                    check.validated = validate;
                    if validate {
                        self.validate_check(&altered, &check)?;
                    }
                    altered.with_check(check)?
                }
                TableChange::RenameTable(name) => {
                    self.refuse_taken(&name)?;
                    renamed = Some(name.clone());
                    altered.renamed(&name)
                }
                TableChange::RenameColumn { from, to } => {
                    let with = altered.with_column_renamed(&from, &to)?;
                    columns_renamed.push((from.clone(), to.clone()));
                    shared.checks.rename_column(with, &from, &to)?
                }
                TableChange::SetDefault {
                    column,
                    default,
                    default_expr,
                } => altered.with_default(&column, default, default_expr)?,
                TableChange::SetNotNull { column, not_null } => {
                    let with = altered.with_not_null(&column, not_null)?;
                    if not_null {
                        self.validate_not_null(&with, &column)?;
                    }
                    with
                }
                TableChange::ValidateConstraint(name) => {
                    let mut table = altered;
                    let check = table.checks.iter().position(|c| c.name == name);
                    let key = table.foreign_keys.iter().position(|f| f.name == name);
                    match (check, key) {
                        (Some(i), _) => {
                            if !table.checks[i].validated {
                                let check = table.checks[i].clone();
                                self.validate_check(&table, &check)?;
                                table.checks[i].validated = true;
                            }
                        }
                        (None, Some(i)) => {
                            // Checked with the table and its parent locked, below.
                            if !table.foreign_keys[i].validated {
                                table.foreign_keys[i].validated = true;
                                keys.push(table.foreign_keys[i].clone());
                            }
                        }
                        (None, None) if table.constraint_named(&name) => {
                            return Err(Error::invalid(
                                SqlState::WRONG_OBJECT_TYPE,
                                format!(
                                    "constraint \"{name}\" of relation \"{}\" is not a foreign key or check constraint",
                                    table.name
                                ),
                            ));
                        }
                        (None, None) => {
                            return Err(Error::NotFound {
                                code: SqlState::UNDEFINED_OBJECT,
                                message: format!(
                                    "constraint \"{name}\" of relation \"{}\" does not exist",
                                    table.name
                                ),
                            });
                        }
                    }
                    table
                }
                TableChange::DropConstraint { name, if_exists } => {
                    match altered.without_constraint(&name, if_exists)? {
                        Some(without) => without,
                        None => {
                            self.notice(format!(
                                "constraint \"{name}\" of relation \"{table}\" does not exist, skipping"
                            ));
                            altered
                        }
                    }
                }
            };
        }
        let original = self.table(table)?;
        super::foreign_keys::refuse_dependents(&shared.catalog, &original, Some(&altered), &[])?;
        let indexes_dropped = original
            .indexes
            .iter()
            .any(|i| !altered.indexes.iter().any(|a| a.id == i.id));
        if !built.is_empty() || indexes_dropped || !keys.is_empty() {
            if renamed.is_some() || !columns_renamed.is_empty() {
                return Err(Error::Unsupported(
                    "renaming and adding or dropping an index or foreign key in one ALTER TABLE"
                        .into(),
                ));
            }
            return self.save_with_indexes(altered, built, keys);
        }
        if renamed.is_none() && columns_renamed.is_empty() {
            return self.save_table(altered);
        }
        self.save_renamed_table(altered, table, &columns_renamed)
    }

    /// 23502 if a row of `table` has NULL in `column`.
    fn validate_not_null(&mut self, table: &Table, column: &str) -> Result<()> {
        let index = table.column_index(column)?;
        let found = self.with_rows(table, |rows| {
            for row in rows {
                if row?[index].is_null() {
                    return Ok(true);
                }
            }
            Ok(false)
        })?;
        if found {
            return Err(Error::ConstraintViolation {
                code: SqlState::NOT_NULL_VIOLATION,
                message: format!(
                    "column \"{column}\" of relation \"{}\" contains null values",
                    table.name
                ),
            });
        }
        Ok(())
    }

    /// 23514 unless every row of `table` passes `check`. Rows are read as
    /// `table` (the definition being made) sees them, so a column added by
    /// the same ALTER TABLE reads its default.
    fn validate_check(&mut self, table: &Table, check: &super::catalog::Check) -> Result<()> {
        let shared = self.shared.clone();
        let violated = self.with_rows(table, |rows| shared.checks.any_fails(table, check, rows))?;
        if violated {
            return Err(Error::ConstraintViolation {
                code: SqlState::CHECK_VIOLATION,
                message: format!(
                    "check constraint \"{}\" of relation \"{}\" is violated by some row",
                    check.name, table.name
                ),
            });
        }
        Ok(())
    }

    /// Runs `f` over the rows stored in `table`'s key range, read as `table`
    /// (a definition being made) decodes them, streamed in key order.
    fn with_rows<T>(
        &mut self,
        table: &Table,
        f: impl FnOnce(&mut dyn Iterator<Item = Result<Vec<Value>>>) -> Result<T>,
    ) -> Result<T> {
        let (from, to) = (table.key_prefix(), table.key_end());
        self.statement(|open| {
            let mut txn = open.txn.lock();
            let mut rows = txn
                .scan(&from, Some(&to))
                .map(|entry| entry.and_then(|(_, bytes)| table.decode_row(&bytes)));
            f(&mut rows)
        })
    }

    fn save_table(&mut self, table: Table) -> Result<()> {
        let batch = self.shared.catalog.put_entries(&table)?;
        let undo = match self.shared.catalog.table_by_id(table.id) {
            None => self.add_directory(&table),
            Some(_) => Undo::none(),
        };
        let catalog = self.shared.catalog.clone();
        let installed = table.clone();
        let apply = move |_| catalog.install(installed);
        self.commit_catalog(batch, vec![(table.id, Some(table))], Box::new(apply), undo)
    }

    /// Starts the key directory of new table `table` now, so that the
    /// commit that creates it (which may write its first rows too) fills
    /// it; undone if that commit never comes.
    pub(super) fn add_directory(&self, table: &Table) -> Undo {
        let directories = self.shared.directories.clone();
        directories.add_table(table);
        let id = table.id;
        Undo::new(move || directories.remove_table(id))
    }

    /// Moves the table id counter past `highest` (and past ids taken in
    /// memory, such as a new table's sequences'), durably at once: DDL in a
    /// transaction block installs its definitions only at COMMIT, and until
    /// then the ids it used must not be handed out again, nor after a
    /// rollback (a sequence's reserved values stay under its id).
    pub(super) fn reserve_ids(&self, highest: Option<u32>) -> Result<()> {
        let catalog = &self.shared.catalog;
        let next = highest
            .map(|h| h.saturating_add(1))
            .unwrap_or(0)
            .max(catalog.next_table_id());
        self.shared
            .mvcc
            .commit_unversioned(Catalog::counter_entry(next), None, None)?;
        catalog.advance_next_id(next);
        Ok(())
    }

    /// Reads the catalog as the open transaction sees it (with the table
    /// definitions its DDL changed) on this thread until the guard drops.
    pub(super) fn catalog_scope(&self) -> Option<super::catalog::OverlayScope> {
        self.txn.as_ref().map(|open| open.overlay.enter())
    }

    /// Commits a catalog change: `batch`, and `apply` to install it in
    /// memory once durable. Outside a transaction block it commits at once.
    /// Inside one it commits with the transaction (transactional DDL):
    /// `tables` (id, new definition or None when dropped) are what the
    /// transaction's statements see until then; tables that exist are
    /// locked against writers and other DDL until it ends; a new table's
    /// name that another transaction committed first fails the COMMIT
    /// (42P07). `undo` reverts what was done in memory ahead of the commit
    /// if it never comes (a rollback).
    pub(super) fn commit_catalog(
        &mut self,
        batch: WriteBatch,
        tables: Vec<(u32, Option<Table>)>,
        apply: CommitApply,
        undo: Undo,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let apply: CommitApply = Box::new(move |ts| {
            undo.disarm();
            apply(ts)
        });
        // Two changes of one table's definition never both commit (taken
        // before this waits for the tables' locks).
        let ids: Vec<u32> = tables.iter().map(|(id, _)| *id).collect();
        let unchanged = shared.catalog.unchanged_check(&ids);
        if self.txn.is_none() {
            return shared
                .mvcc
                .commit_unversioned(batch, Some(unchanged), Some(apply))
                .map(|_| ());
        }
        // Ids used now are reserved durably, so a rolled-back one is never
        // handed out again (a sequence's reserved values stay with its id).
        let highest = tables
            .iter()
            .flat_map(|(id, t)| {
                let indexes = t.iter().flat_map(|t| t.indexes.iter().map(|i| i.id));
                std::iter::once(*id).chain(indexes)
            })
            .max();
        self.reserve_ids(highest)?;
        let catalog = shared.catalog.clone();
        let names: Vec<(u32, String)> = tables
            .iter()
            .filter_map(|(id, t)| t.as_ref().map(|t| (*id, t.name.clone())))
            .collect();
        let overlay = self.txn.as_ref().map(|open| open.overlay.clone());
        // At COMMIT: a name another table holds, unless this transaction
        // dropped that table.
        let check: super::mvcc::CommitCheck = Box::new(move || {
            let defined = overlay.map(|o| o.snapshot()).unwrap_or_default();
            let taken = |(id, name): &&(u32, String)| {
                catalog
                    .committed_id(name)
                    .is_some_and(|other| other != *id && !matches!(defined.get(&other), Some(None)))
            };
            match names.iter().find(taken) {
                Some((_, name)) => Err(Error::AlreadyExists {
                    code: SqlState::DUPLICATE_TABLE,
                    message: format!("relation \"{name}\" already exists"),
                }),
                None => unchanged(),
            }
        });
        self.statement(|open| {
            for (id, _) in &tables {
                if shared.catalog.contains_id(*id) {
                    super::secondary::lock_table(open, *id, super::locks::Mode::Update)?;
                }
            }
            open.txn
                .lock()
                .add_unversioned(batch, Some(check), Some(apply));
            for (id, table) in tables {
                open.overlay.put(id, table);
            }
            Ok(())
        })?;
        shared.catalog.bump();
        Ok(())
    }

    pub(super) fn refuse_in_transaction(&self, what: &str) -> Result<()> {
        if self.txn.is_some() {
            return Err(Error::TransactionState {
                code: SqlState::ACTIVE_SQL_TRANSACTION,
                message: format!("{what} cannot run inside a transaction block"),
            });
        }
        Ok(())
    }
}

/// Inserts a row after checking it; 23505 when its primary key holds a row
/// already. A table without a primary key gives the row a new hidden row id.
pub(super) fn insert_row(
    shared: &Shared,
    open: &mut Open,
    table: &Table,
    row: Vec<Value>,
) -> Result<Vec<Value>> {
    match try_insert_row(shared, open, table, row)? {
        (row, Inserted::Row { .. }) => Ok(row),
        (row, Inserted::Conflict { visible, .. }) => {
            let duplicate = unique_violation(
                table,
                &table.primary_key_name(),
                &table.primary_key_indices(),
                &row,
                false,
            );
            Err(taken(open, visible, duplicate))
        }
    }
}

/// What [`try_insert_row`] did.
pub(super) enum Inserted {
    /// The row is written, under this key (None for a table of row ids).
    Row { key: Option<Vec<u8>> },
    /// A row with the same primary key exists; nothing is written. The key
    /// is locked for update. `visible`: the statement's snapshot sees that
    /// row; `newer`: it changed after the snapshot.
    Conflict {
        key: Vec<u8>,
        visible: bool,
        newer: bool,
    },
}

/// Writes `row` unless its primary key is taken; returns the row as checked
/// against the table's types and constraints.
pub(super) fn try_insert_row(
    shared: &Shared,
    open: &mut Open,
    table: &Table,
    row: Vec<Value>,
) -> Result<(Vec<Value>, Inserted)> {
    shared.check_fault(&table.name);
    // The table lock before any row lock: a build of an index waits for
    // this transaction, never the other way round.
    begin_write(&shared.catalog, open, table)?;
    let row = shared.checks.row(table, row)?;
    let key = (!table.has_row_ids())
        .then(|| table.row_key(&row))
        .transpose()?;
    let stored = match &key {
        None => {
            let id = shared
                .row_ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            table.row_id_key(id)
        }
        Some(key) => {
            if let Some((visible, newer)) = lock_for_insert(open, key)? {
                let conflict = Inserted::Conflict {
                    key: key.clone(),
                    visible,
                    newer,
                };
                return Ok((row, conflict));
            }
            key.clone()
        }
    };
    write_row(shared, open, table, &stored, Change::Insert(&row))?;
    Ok((row, Inserted::Row { key }))
}

/// Locks `key` for an insert and says whether a row holds it: None when
/// none does, else whether the statement's snapshot sees it and whether it
/// changed after the snapshot. An insert of the same key by a transaction
/// still open is waited for, then decides; a row committed after the
/// snapshot counts as it is now (PostgreSQL's unique check reads the newest
/// version, at every level). Primary keys and unique index entries alike.
pub(super) fn lock_for_insert(open: &Open, key: &[u8]) -> Result<Option<(bool, bool)>> {
    let state = lock_row(open, key, super::locks::Mode::Update, true)?;
    let visible = open.txn.lock().get(key)?.is_some();
    Ok(match state {
        RowLock::Changed { exists } => exists.then_some((visible, true)),
        RowLock::Fresh | RowLock::Busy => visible.then_some((visible, false)),
    })
}

/// What an insert of values another row holds fails with: `duplicate`
/// (23505), or, at SERIALIZABLE when the snapshot does not see that row, a
/// serialization failure, as in PostgreSQL.
pub(super) fn taken(open: &Open, visible: bool, duplicate: Error) -> Error {
    if !visible && open.txn.lock().isolation() == IsolationLevel::Serializable {
        return Error::SerializationConflict {
            reason: "a concurrent insert of the same key".into(),
        };
    }
    duplicate
}

/// Row `key` as it is now, for a READ COMMITTED statement that holds its
/// lock and met a version committed after its snapshot: the statement's
/// reads and writes move on to the newest commit, as an UPDATE's re-check does.
pub(super) fn newest_row(open: &Open, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut txn = open.txn.lock();
    txn.refresh_snapshot();
    txn.get(key)
}

/// The row with storage key `key`, locked in `mode` for a statement that
/// changes it. A row that another transaction changed while this one waited
/// is read as it is now at READ COMMITTED (None when it was deleted), and
/// fails with 40001 above.
pub(super) fn locked_row(
    open: &Open,
    key: &[u8],
    mode: super::locks::Mode,
) -> Result<Option<Vec<u8>>> {
    if open.txn.lock().get(key)?.is_none() {
        return Ok(None);
    }
    if lock_for_change(open, key, mode, true)? {
        let mut txn = open.txn.lock();
        txn.refresh_snapshot();
        return txn.get(key);
    }
    open.txn.lock().get(key)
}

/// Locks row `key` for a statement that changes it, waiting for the
/// transactions that hold it. True when the row changed after the
/// statement's snapshot and the statement must read it again (READ
/// COMMITTED, once: `recheck` is given); 40001 when it cannot (REPEATABLE
/// READ and SERIALIZABLE, or a row that changed again).
pub(super) fn lock_for_change(
    open: &Open,
    key: &[u8],
    mode: super::locks::Mode,
    recheck: bool,
) -> Result<bool> {
    match lock_row(open, key, mode, true)? {
        RowLock::Fresh => Ok(false),
        RowLock::Changed { .. }
            if recheck && open.txn.lock().isolation() == IsolationLevel::ReadCommitted =>
        {
            Ok(true)
        }
        RowLock::Changed { .. } | RowLock::Busy => Err(concurrent_update()),
    }
}

/// Locks row `key` in `mode` for the transaction of `open` (waiting, unless
/// `block` is off, without holding the transaction: the query plans of the
/// statement may need it meanwhile), then says whether the row changed
/// after the snapshot.
pub(super) fn lock_row(
    open: &Open,
    key: &[u8],
    mode: super::locks::Mode,
    block: bool,
) -> Result<RowLock> {
    let locker = open.txn.lock().locker();
    if let Some(locker) = locker {
        if !locker.lock(key, mode, block)? {
            return Ok(RowLock::Busy);
        }
    }
    open.txn.lock().row_state(key)
}

/// 40001 for a row that a concurrent transaction changed.
pub(crate) fn concurrent_update() -> Error {
    Error::SerializationConflict {
        reason: "a concurrent update".into(),
    }
}

/// Commits a transaction after running the foreign key checks it owes and
/// checking, in commit order, that the tables it wrote still exist. A
/// failed check rolls it back.
pub(super) fn commit(shared: &Shared, mut open: Open) -> Result<()> {
    super::foreign_keys::verify(shared, &mut open, true)?;
    let catalog = &shared.catalog;
    let mut tables = std::mem::take(&mut open.tables);
    // Tables the transaction created itself are committed with it.
    let defined = open.overlay.snapshot();
    tables.retain(|id| !matches!(defined.get(id), Some(Some(_))) || catalog.contains_id(*id));
    let mut txn = open.into_transaction();
    if !tables.is_empty() {
        let catalog = catalog.clone();
        txn.add_commit_check(Box::new(move || {
            match tables.iter().find(|id| !catalog.contains_id(**id)) {
                Some(_) => Err(Error::NotFound {
                    code: SqlState::UNDEFINED_TABLE,
                    message:
                        "a table this transaction wrote was dropped by a concurrent transaction"
                            .into(),
                }),
                None => Ok(()),
            }
        }));
    }
    txn.commit().map(|_| ())
}

/// 25P02: the transaction failed and refuses statements until it ends.
pub(super) fn aborted() -> Error {
    Error::TransactionState {
        code: SqlState::IN_FAILED_SQL_TRANSACTION,
        message: "current transaction is aborted, commands ignored until end of transaction block"
            .into(),
    }
}

fn no_transaction() -> Error {
    Error::TransactionState {
        code: SqlState::NO_ACTIVE_SQL_TRANSACTION,
        message: "there is no transaction in progress".into(),
    }
}

/// The smallest byte string greater than every string starting with `key`.
pub(super) fn successor(mut key: Vec<u8>) -> Vec<u8> {
    while let Some(last) = key.last_mut() {
        if *last < 0xff {
            *last += 1;
            return key;
        }
        key.pop();
    }
    // Only reachable for a key of all 0xff bytes: nothing sorts after it.
    vec![0xff; 9]
}

/// Writes `table`'s new definition into the running statement's
/// transaction, to be installed at its commit; a transaction block's own
/// statements (`explicit`) see it at once.
/// `unchanged` (from [`Catalog::unchanged_check`], taken before the
/// caller waited for the table) fails the commit if another definition was
/// installed meanwhile.
pub(super) fn stage_definition(
    shared: &Shared,
    open: &mut Open,
    table: Table,
    explicit: bool,
    unchanged: super::mvcc::CommitCheck,
) -> Result<()> {
    let batch = shared.catalog.put_entries(&table)?;
    if explicit {
        open.overlay.put(table.id, Some(table.clone()));
    }
    let catalog = shared.catalog.clone();
    open.txn.lock().add_unversioned(
        batch,
        Some(unchanged),
        Some(Box::new(move |_| catalog.install(table))),
    );
    if explicit {
        // The transaction's own prepared statements plan again.
        shared.catalog.bump();
    }
    Ok(())
}

/// What a transaction block's DDL did in memory ahead of its commit (a new
/// table's key directory, new sequences), undone when dropped unless
/// disarmed: it rides inside the commit's apply, which disarms it, so a
/// rollback (which drops the apply unrun) undoes it.
pub(super) struct Undo(Option<Box<dyn FnOnce() + Send>>);

impl Undo {
    pub(super) fn new(undo: impl FnOnce() + Send + 'static) -> Undo {
        Undo(Some(Box::new(undo)))
    }

    pub(super) fn none() -> Undo {
        Undo(None)
    }

    /// Both undone together.
    pub(super) fn and(mut self, mut other: Undo) -> Undo {
        match (self.0.take(), other.0.take()) {
            (Some(a), Some(b)) => Undo::new(move || {
                a();
                b()
            }),
            (a, b) => Undo(a.or(b)),
        }
    }

    /// The commit came: nothing to undo.
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(undo) = self.0.take() {
            undo();
        }
    }
}
