//! Secondary index entries: written with the rows they point to, in the
//! same transaction, so they are versioned, locked, checked at commit and
//! garbage-collected exactly as rows are (see [`Index`] for their keys).
//!
//! Every change of a row goes through [`write_row`], which also writes the
//! entries that change: an UPDATE that leaves the indexed columns alone
//! writes none, one that changes them deletes the old entry and inserts the
//! new one. A unique entry is inserted as a primary key is: its key is
//! locked (a concurrent insert of the same values is waited for, then
//! decides), and one that holds a row already is a unique violation.
//!
//! Writers and index builds meet on a table lock: the first write of a
//! transaction to a table takes it shared, and CREATE INDEX takes it
//! exclusively, so a build waits for the transactions writing the table and
//! none starts meanwhile; a writer that planned against the definition
//! before the build fails with 40001 rather than write rows the new index
//! would miss.

use super::catalog::{Catalog, ForeignKey, Index, IndexDef, Table};
use super::database::Shared;
use super::error::{Error, Result, SqlState};
use super::foreign_keys::{self, RowChange};
use super::locks::{Mode, Target};
use super::mvcc::WriteKind;
use super::session::{lock_for_insert, taken, Open, Session};
use super::storage::WriteBatch;
use super::types::Value;

/// What [`write_row`] does to a row.
pub(super) enum Change<'a> {
    /// Writes a new row, whose key holds none (checked by the caller).
    Insert(&'a [Value]),
    /// Replaces the row with these values.
    Update(&'a [Value]),
    /// Deletes the row.
    Delete,
    /// Deletes the row, the old key of an UPDATE that gives it a new one:
    /// these are its values after (inserted under the new key next).
    MoveOut(&'a [Value]),
}

/// Writes row `key` of `table` and the index entries that change with it,
/// and does what its foreign keys and those referencing it ask (see
/// `foreign_keys`).
pub(super) fn write_row(
    shared: &Shared,
    open: &mut Open,
    table: &Table,
    key: &[u8],
    change: Change<'_>,
) -> Result<()> {
    let catalog = &shared.catalog;
    begin_write(catalog, open, table)?;
    let keys = foreign_keys::involved(catalog, table);
    let old = match (&change, table.indexes.is_empty() && !keys) {
        (Change::Insert(_), _) | (_, true) => None,
        _ => {
            let bytes = open.txn.lock().get(key)?;
            bytes.map(|b| table.decode_row(&b)).transpose()?
        }
    };
    let (new, kind, moved) = match change {
        Change::Insert(row) => (Some(row), WriteKind::Insert, None),
        Change::Update(row) => (Some(row), WriteKind::Update, None),
        Change::Delete => (None, WriteKind::Update, None),
        Change::MoveOut(row) => (None, WriteKind::Update, Some(row)),
    };
    write_entries(open, table, key, old.as_deref(), new, kind)?;
    if keys {
        let change = RowChange {
            key,
            old: old.as_deref(),
            new: new.or(moved),
            moved: moved.is_some(),
        };
        foreign_keys::on_write(shared, open, table, change)?;
    }
    Ok(())
}

/// Writes row `key` (`new`, or a delete) and the index entries that change
/// from `old` to it.
fn write_entries(
    open: &mut Open,
    table: &Table,
    key: &[u8],
    old: Option<&[Value]>,
    new: Option<&[Value]>,
    kind: WriteKind,
) -> Result<()> {
    let value = new.map(|row| table.encode_row(row)).transpose()?;
    for index in &table.indexes {
        let before = old
            .map(|row| table.index_entry(index, row, key))
            .transpose()?;
        let after = new
            .map(|row| table.index_entry(index, row, key))
            .transpose()?;
        if before == after {
            continue;
        }
        match (before, after) {
            (Some((old_key, _)), Some((new_key, target))) if old_key == new_key => {
                open.txn.lock().put(&new_key, target, WriteKind::Update)?;
            }
            (before, after) => {
                if let Some((old_key, _)) = before {
                    open.txn.lock().delete(&old_key)?;
                }
                if let (Some((entry, target)), Some(row)) = (after, new) {
                    insert_entry(open, table, index, row, &entry, target)?;
                }
            }
        }
    }
    let mut txn = open.txn.lock();
    match value {
        Some(bytes) => txn.put(key, bytes, kind),
        None => txn.delete(key),
    }
}

/// Takes the table lock for the first write of the transaction to `table`,
/// and refuses a statement planned against a definition whose indexes
/// changed since (an index was built while it waited for the lock).
pub(super) fn begin_write(catalog: &Catalog, open: &mut Open, table: &Table) -> Result<()> {
    if open.tables.contains(&table.id) {
        return Ok(());
    }
    if lock_table(open, table.id, Mode::KeyShare)? {
        let current = catalog.table_by_id(table.id);
        let same = current.is_some_and(|current| {
            current
                .indexes
                .iter()
                .map(|i| i.id)
                .eq(table.indexes.iter().map(|i| i.id))
                && current.foreign_keys == table.foreign_keys
        });
        if !same {
            return Err(Error::SerializationConflict {
                reason: format!(
                    "the indexes or foreign keys of table \"{}\" changed while the statement ran",
                    table.name
                ),
            });
        }
    }
    open.tables.insert(table.id);
    Ok(())
}

/// Locks table `id` in `mode` until the transaction of `open` ends,
/// waiting for conflicting holders; false for a transaction that takes no
/// locks (outside a session).
pub(super) fn lock_table(open: &Open, id: u32, mode: Mode) -> Result<bool> {
    let locker = open.txn.lock().locker();
    match locker {
        Some(locker) => locker
            .lock_target(&Target::Table(id), mode, true)
            .map(|_| true),
        None => Ok(false),
    }
}

/// Inserts the entry `entry` of `row` into `index`; for a unique entry,
/// 23505 when another row holds its values.
fn insert_entry(
    open: &mut Open,
    table: &Table,
    index: &Index,
    row: &[Value],
    entry: &[u8],
    target: Vec<u8>,
) -> Result<()> {
    // Only a unique entry keyed by its values alone can meet another row's.
    if !index.unique || !unique_form(table, index, row) {
        return open.txn.lock().put(entry, target, WriteKind::Insert);
    }
    if let Some((visible, _)) = lock_for_insert(open, entry)? {
        let columns = table.index_columns(index);
        let duplicate = unique_violation(table, &index.name, &columns, row, false);
        return Err(taken(open, visible, duplicate));
    }
    open.txn.lock().put(entry, target, WriteKind::Insert)
}

/// Whether `row`'s entry in unique `index` is keyed by its values alone.
pub(super) fn unique_form(table: &Table, index: &Index, row: &[Value]) -> bool {
    index.nulls_not_distinct
        || table
            .index_columns(index)
            .into_iter()
            .all(|c| !row[c].is_null())
}

/// 23505 for `row`'s values in the unique constraint or index `name` on
/// `columns`: a write that meets another row's, or (`building`) a unique
/// index built over rows with equal values.
pub(super) fn unique_violation(
    table: &Table,
    name: &str,
    columns: &[usize],
    row: &[Value],
    building: bool,
) -> Error {
    let names: Vec<_> = columns
        .iter()
        .map(|c| table.columns[*c].name.as_str())
        .collect();
    let values: Vec<_> = columns
        .iter()
        .map(|c| match &row[*c] {
            Value::Null => "null".to_string(),
            v => v.to_string(),
        })
        .collect();
    let (head, what) = if building {
        (
            format!("could not create unique index \"{name}\""),
            "is duplicated",
        )
    } else {
        (
            format!("duplicate key value violates unique constraint \"{name}\""),
            "already exists",
        )
    };
    Error::ConstraintViolation {
        code: SqlState::UNIQUE_VIOLATION,
        message: format!(
            "{head}: Key ({})=({}) {what}",
            names.join(", "),
            values.join(", ")
        ),
    }
}

/// Writes the entries of every row of `table` (the definition that has
/// `index`) into the transaction of `open`: the build of a new index,
/// under the exclusive table lock. 23505 when a unique index meets two
/// rows with equal values. Returns the rows indexed.
fn build(open: &mut Open, table: &Table, index: &Index) -> Result<u64> {
    let mut rows = 0;
    for_each_stored(open, table, |open, key, bytes| {
        let row = table.decode_row(&bytes)?;
        let (entry, target) = table.index_entry(index, &row, &key)?;
        let mut txn = open.txn.lock();
        if index.unique && unique_form(table, index, &row) && txn.get(&entry)?.is_some() {
            let columns = table.index_columns(index);
            return Err(unique_violation(table, &index.name, &columns, &row, true));
        }
        txn.put(&entry, target, WriteKind::Insert)?;
        rows += 1;
        Ok(())
    })?;
    Ok(rows)
}

/// Runs `f` over the stored rows of `table` (key and bytes) as the
/// transaction of `open` sees them, in key order. The rows are read in
/// chunks, so the scan never borrows the transaction while `f` writes into it.
pub(super) fn for_each_stored(
    open: &mut Open,
    table: &Table,
    mut f: impl FnMut(&mut Open, Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let (mut resume, to) = (table.key_prefix(), table.key_end());
    loop {
        let chunk: Vec<(Vec<u8>, Vec<u8>)> = {
            let mut txn = open.txn.lock();
            txn.scan(&resume, Some(&to))
                .take(1024)
                .collect::<Result<_>>()?
        };
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        resume = super::session::successor(last.clone());
        for (key, bytes) in chunk {
            f(open, key, bytes)?;
        }
    }
}

impl Session {
    /// CREATE INDEX: defines `def` on `table` and builds its entries for
    /// the rows there; with `if_not_exists`, a relation of its name is left
    /// alone and false returned.
    pub fn create_index(
        &mut self,
        table: &str,
        def: IndexDef,
        if_not_exists: bool,
    ) -> Result<bool> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let table = self.table(table)?;
        let name = match &def.name {
            Some(name) => {
                if let Err(e) = self.refuse_taken(name) {
                    if if_not_exists {
                        self.notice(format!("relation \"{name}\" already exists, skipping"));
                        return Ok(false);
                    }
                    return Err(e);
                }
                name.clone()
            }
            None => {
                let suffix = if def.constraint { "key" } else { "idx" };
                table.index_name(&def.columns, suffix, |n| self.refuse_taken(n).is_err())
            }
        };
        let index = table.define_index(&def, shared.catalog.next_table_id(), name)?;
        let mut altered = (*table).clone();
        altered.push_index(index.clone())?;
        self.save_with_indexes(altered, vec![index], Vec::new())?;
        Ok(true)
    }

    /// Saves `table`, whose definition adds `built` (indexes new to it,
    /// with their entries for the rows there) or drops indexes, and adds
    /// foreign keys `keys` that its rows must satisfy, in one commit under
    /// the exclusive locks of the table and of the keys' parents.
    pub(super) fn save_with_indexes(
        &mut self,
        table: Table,
        built: Vec<Index>,
        keys: Vec<ForeignKey>,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let explicit = self.in_transaction();
        if explicit {
            self.reserve_ids(built.iter().map(|i| i.id).max())?;
        }
        // Taken before waiting for the table: a definition installed while
        // this waited is one this change was not made from.
        let unchanged = shared.catalog.unchanged_check(&[table.id]);
        self.statement(|open| {
            lock_table(open, table.id, Mode::Update)?;
            for fk in &keys {
                lock_table(open, fk.parent, Mode::Update)?;
            }
            // Every writer that held the table lock has ended: read what they wrote.
            open.txn.lock().refresh_snapshot();
            for index in &built {
                build(open, &table, index)?;
            }
            for fk in &keys {
                let parent = match fk.parent == table.id {
                    true => None,
                    false => shared.catalog.table_by_id(fk.parent),
                };
                let parent = parent.as_deref().unwrap_or(&table);
                foreign_keys::validate(open, &table, parent, fk)?;
            }
            let batch = shared.catalog.put_entries(&table)?;
            if explicit {
                // The transaction's own statements see the new definition
                // now (with indexes they may read: they see its entries).
                open.overlay.put(table.id, Some(table.clone()));
            }
            let catalog = shared.catalog.clone();
            let ids: Vec<u32> = built.iter().map(|i| i.id).collect();
            let apply = move |ts| {
                let mut table = table;
                for index in &mut table.indexes {
                    if ids.contains(&index.id) {
                        index.visible_from = ts;
                    }
                }
                catalog.install(table);
            };
            open.txn
                .lock()
                .add_unversioned(batch, Some(unchanged), Some(Box::new(apply)));
            Ok(())
        })?;
        if explicit {
            shared.catalog.bump();
        }
        Ok(())
    }

    /// DROP INDEX: every index named, in one change, or none when one is
    /// missing (42704, unless `if_exists`) or backs a constraint (2BP01).
    pub fn drop_indexes(&mut self, names: &[String], if_exists: bool) -> Result<()> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let mut altered: Vec<Table> = Vec::new();
        for name in names {
            let owner = altered
                .iter()
                .position(|t| t.index(name).is_some())
                .map(|i| altered.remove(i))
                .or_else(|| shared.catalog.index_owner(name).map(|t| (*t).clone()));
            let Some(mut table) = owner else {
                if if_exists {
                    self.notice(format!("index \"{name}\" does not exist, skipping"));
                    continue;
                }
                return Err(Error::NotFound {
                    code: SqlState::UNDEFINED_OBJECT,
                    message: format!("index \"{name}\" does not exist"),
                });
            };
            let position = table.indexes.iter().position(|i| &i.name == name);
            let index = table.indexes.remove(position.expect("the owner has it"));
            if index.constraint {
                return Err(Error::ConstraintViolation {
                    code: SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                    message: format!(
                        "cannot drop index {name} because constraint {name} on table {} requires it \
                         (drop the constraint with ALTER TABLE {} DROP CONSTRAINT {name})",
                        table.name, table.name
                    ),
                });
            }
            if let Some(original) = shared.catalog.table_by_id(table.id) {
                foreign_keys::refuse_dependents(&shared.catalog, &original, Some(&table), &[])?;
            }
            altered.push(table);
        }
        if altered.is_empty() {
            return Ok(());
        }
        let explicit = self.in_transaction();
        let ids: Vec<u32> = altered.iter().map(|t| t.id).collect();
        let unchanged = shared.catalog.unchanged_check(&ids);
        self.statement(|open| {
            let mut batch = WriteBatch::new();
            for table in &altered {
                // Writers planned against the old definition would write
                // entries of the dropped index: wait for them to end.
                lock_table(open, table.id, Mode::Update)?;
                batch.extend(shared.catalog.put_entries(table)?);
                if explicit {
                    open.overlay.put(table.id, Some(table.clone()));
                }
            }
            let catalog = shared.catalog.clone();
            let apply = move |_| altered.into_iter().for_each(|t| catalog.install(t));
            open.txn
                .lock()
                .add_unversioned(batch, Some(unchanged), Some(Box::new(apply)));
            Ok(())
        })
    }
}
