//! FOREIGN KEY constraints: checking that a child row has its parent, and
//! what deleting or re-keying a parent row does to the rows that reference it.
//!
//! Every row change goes through [`on_write`] (called by
//! `secondary::write_row`), which sees the row before and after:
//!
//! ```text
//!   child row inserted, or its referencing columns changed (none NULL)
//!       -> Pending::Parent: at the end of the statement (at COMMIT when
//!          deferred) the parent key is locked FOR KEY SHARE and must exist
//!   parent row deleted, or its referenced columns changed
//!       NO ACTION   -> Pending::Children: at the end of the statement (or at
//!                      COMMIT) no row may reference the old values, unless a
//!                      parent row holds them again
//!       RESTRICT    -> no row may reference them, now
//!       CASCADE, SET NULL, SET DEFAULT
//!                   -> the referencing rows are locked and deleted or
//!                      changed now, through write_row (so cascades nest)
//! ```
//!
//! Concurrency is by locks, as in PostgreSQL: a child's check locks the
//! parent key FOR KEY SHARE (the primary key, or the unique index entry the
//! constraint references), and deleting a parent row or changing its key
//! locks it FOR UPDATE, which conflicts. So a child inserted while its
//! parent is deleted by another transaction waits for that transaction and
//! then sees the parent gone (23503), and a parent delete waits for the
//! transactions inserting children of it and then finds those children. Both
//! sides read the newest commit, not the statement's snapshot; at
//! REPEATABLE READ and above, a row that changed after the snapshot fails
//! with 40001 where acting on it would break the snapshot.
//!
//! Referencing rows are found through the child's primary key when the
//! referencing columns lead it, and otherwise through a hidden index the
//! constraint owns: no check scans a table.

use std::collections::HashMap;

use super::catalog::{Action, Catalog, ForeignKey, ForeignKeyDef, Index, Table};
use super::database::Shared;
use super::encoding::keycode;
use super::error::{Error, Result, SqlState};
use super::locks::Mode;
use super::mvcc::{IsolationLevel, RowLock};
use super::secondary::{for_each_stored, write_row, Change};
use super::session::{concurrent_update, insert_row, lock_row, successor, Open, Session};
use super::types::{DataType, Value};

/// A check that a statement's writes leave for the end of the statement or
/// for COMMIT. It names rows and values, not outcomes, so that a check whose
/// rows changed again (or were rolled back to a savepoint) is judged on
/// what is there when it runs.
#[derive(Clone, Debug)]
enum Check {
    /// Row `key` of table `table` needs a parent through its foreign key
    /// number `fk`.
    Parent { table: u32, fk: usize, key: Vec<u8> },
    /// No row of table `table` may reference `values` through its foreign
    /// key number `fk`, unless a parent row holds them again.
    Children {
        table: u32,
        fk: usize,
        values: Vec<Value>,
    },
}

impl Check {
    fn constraint(&self) -> (u32, usize) {
        match self {
            Check::Parent { table, fk, .. } | Check::Children { table, fk, .. } => (*table, *fk),
        }
    }
}

/// The foreign key checks a transaction owes, and its SET CONSTRAINTS.
#[derive(Default)]
pub(super) struct Pending {
    immediate: Vec<Check>,
    deferred: Vec<Check>,
    /// SET CONSTRAINTS ALL: Some(true) deferred, Some(false) immediate.
    all: Option<bool>,
    /// SET CONSTRAINTS name: whether deferred, by constraint name.
    named: HashMap<String, bool>,
    /// TRUNCATE deletes rows without foreign key actions (it checked that
    /// every referencing table goes with it).
    pub suspended: bool,
}

impl Pending {
    fn is_deferred(&self, fk: &ForeignKey) -> bool {
        if !fk.deferrable {
            return false;
        }
        self.named
            .get(&fk.name)
            .copied()
            .or(self.all)
            .unwrap_or(fk.initially_deferred)
    }

    fn push(&mut self, fk: &ForeignKey, check: Check) {
        if self.is_deferred(fk) {
            self.deferred.push(check);
        } else {
            self.immediate.push(check);
        }
    }

    /// Whether anything waits for the end of the statement.
    pub fn has_immediate(&self) -> bool {
        !self.immediate.is_empty()
    }

    /// Drops the checks of a statement that failed (its writes are undone).
    pub fn forget_immediate(&mut self) {
        self.immediate.clear();
    }
}

/// Deepest nesting of cascades (a chain of ON DELETE CASCADE through
/// tables, or a self-referencing one through rows).
const MAX_CASCADE_DEPTH: usize = 256;

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Foreign key work for one row change of `table`: `old` is the row before
/// (None for an insert), `new` after (None for a delete); `moved`: a
/// delete that is the old key of an UPDATE whose row is `new` (the new row
/// is inserted after it, and checked then).
pub(super) struct RowChange<'a> {
    pub key: &'a [u8],
    pub old: Option<&'a [Value]>,
    pub new: Option<&'a [Value]>,
    pub moved: bool,
}

/// Whether a change of `table` has foreign key work: it has foreign keys,
/// or some table's reference it.
pub(super) fn involved(catalog: &Catalog, table: &Table) -> bool {
    !table.foreign_keys.is_empty() || !catalog.referencing(table.id).is_empty()
}

/// Queues the checks and runs the actions of the foreign keys a row change
/// of `table` touches (see the module doc).
pub(super) fn on_write(
    shared: &Shared,
    open: &mut Open,
    table: &Table,
    change: RowChange<'_>,
) -> Result<()> {
    if open.constraints.suspended {
        return Ok(());
    }
    // A child row with new referencing values needs its parent.
    if let (Some(new), false) = (change.new, change.moved) {
        for (i, fk) in table.foreign_keys.iter().enumerate() {
            let values = pick(table, &fk.columns, new);
            if values.iter().any(Value::is_null) {
                continue;
            }
            if change
                .old
                .is_some_and(|old| pick(table, &fk.columns, old) == values)
            {
                continue;
            }
            let check = Check::Parent {
                table: table.id,
                fk: i,
                key: change.key.to_vec(),
            };
            open.constraints.push(fk, check);
        }
    }
    // A parent row that loses its referenced values acts on its children.
    let Some(old) = change.old else {
        return Ok(());
    };
    for child in shared.catalog.referencing(table.id) {
        for (i, fk) in child.foreign_keys.iter().enumerate() {
            if fk.parent != table.id {
                continue;
            }
            let values = pick(table, &fk.parent_columns, old);
            if values.iter().any(Value::is_null) {
                continue;
            }
            let new = change.new.map(|new| pick(table, &fk.parent_columns, new));
            if new.as_ref() == Some(&values) {
                continue;
            }
            let action = if new.is_some() {
                fk.on_update
            } else {
                fk.on_delete
            };
            match action {
                Action::NoAction => {
                    let check = Check::Children {
                        table: child.id,
                        fk: i,
                        values,
                    };
                    open.constraints.push(fk, check);
                }
                Action::Restrict => {
                    if referenced(open, &child, fk, &values)? {
                        return Err(still_referenced(table, &child, fk, &values));
                    }
                }
                _ => {
                    let depth = DEPTH.with(|d| d.get());
                    if depth >= MAX_CASCADE_DEPTH {
                        return Err(Error::LimitExceeded {
                            code: SqlState::STATEMENT_TOO_COMPLEX,
                            message: format!(
                                "foreign key actions nest more than {MAX_CASCADE_DEPTH} deep"
                            ),
                        });
                    }
                    DEPTH.with(|d| d.set(depth + 1));
                    let acted = act(shared, open, &child, fk, action, &values, new.as_deref());
                    DEPTH.with(|d| d.set(depth));
                    acted?;
                    if action == Action::SetDefault {
                        // The default may be the very values going away.
                        let check = Check::Children {
                            table: child.id,
                            fk: i,
                            values,
                        };
                        open.constraints.push(fk, check);
                    }
                }
            }
        }
    }
    Ok(())
}

/// CASCADE, SET NULL or SET DEFAULT on the rows of `child` that reference
/// `values`, whose parent row was deleted (`new` None) or now holds `new`.
fn act(
    shared: &Shared,
    open: &mut Open,
    child: &Table,
    fk: &ForeignKey,
    action: Action,
    values: &[Value],
    new: Option<&[Value]>,
) -> Result<()> {
    let delete = action == Action::Cascade && new.is_none();
    let rekey = fk.columns.iter().any(|c| child.primary_key.contains(c));
    let mode = if delete || rekey {
        Mode::Update
    } else {
        Mode::NoKeyUpdate
    };
    let positions = child.positions(&fk.columns);
    for (key, row) in referencing_rows(open, child, fk, values, mode)? {
        if delete {
            write_row(shared, open, child, &key, Change::Delete)?;
            continue;
        }
        let mut changed = row.clone();
        for (j, &position) in positions.iter().enumerate() {
            let column = &child.columns[position];
            changed[position] = match (action, new) {
                // A parent's bigint key may not fit a child's integer column.
                (Action::Cascade, Some(new)) => {
                    convert(&new[j], column.data_type).ok_or_else(|| {
                        Error::invalid(
                            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                            format!("{} out of range", column.data_type),
                        )
                    })?
                }
                (Action::SetDefault, _) => column.default.clone().unwrap_or(Value::Null),
                _ => Value::Null,
            };
        }
        let changed = shared.checks.row(child, changed)?;
        let new_key = if child.has_row_ids() {
            key.clone()
        } else {
            child.row_key(&changed)?
        };
        if new_key == key {
            write_row(shared, open, child, &key, Change::Update(&changed))?;
        } else {
            // The referencing columns are in the child's primary key.
            write_row(shared, open, child, &key, Change::MoveOut(&changed))?;
            insert_row(shared, open, child, changed)?;
        }
    }
    Ok(())
}

/// Runs the checks that wait for the end of the statement (all of them,
/// deferred ones too, with `commit`), and forgets them.
pub(super) fn verify(shared: &Shared, open: &mut Open, commit: bool) -> Result<()> {
    let mut checks = std::mem::take(&mut open.constraints.immediate);
    if commit {
        checks.append(&mut open.constraints.deferred);
    }
    run(shared, open, checks)
}

/// Runs `checks`; the first that fails is the error.
fn run(shared: &Shared, open: &mut Open, checks: Vec<Check>) -> Result<()> {
    // Parent keys found and locked in this run: they stay until the
    // transaction ends, and nothing is written while checks run, so a bulk
    // load of children of a few parents looks each parent up once.
    let mut found = std::collections::HashSet::new();
    for check in checks {
        let (id, i) = check.constraint();
        let Some(child) = shared.catalog.table_by_id(id) else {
            continue;
        };
        let Some(fk) = child.foreign_keys.get(i) else {
            continue;
        };
        let parent = match shared.catalog.table_by_id(fk.parent) {
            Some(parent) => parent,
            None => continue,
        };
        match check {
            Check::Parent { key, .. } => {
                let Some(bytes) = open.txn.lock().get(&key)? else {
                    continue;
                };
                let row = child.decode_row(&bytes)?;
                let values = pick(&child, &fk.columns, &row);
                if values.iter().any(Value::is_null) {
                    continue;
                }
                let Some(key) = parent_key(&parent, fk, &values)? else {
                    return Err(missing_parent(&child, &parent, fk, &values));
                };
                if found.contains(&key) {
                    continue;
                }
                if !parent_exists(open, &key)? {
                    return Err(missing_parent(&child, &parent, fk, &values));
                }
                found.insert(key);
            }
            Check::Children { values, .. } => {
                let key = parent_key(&parent, fk, &values)?;
                if key.map(|key| parent_exists(open, &key)).transpose()? == Some(true) {
                    continue;
                }
                if referenced(open, &child, fk, &values)? {
                    return Err(still_referenced(&parent, &child, fk, &values));
                }
            }
        }
    }
    Ok(())
}

/// Whether the parent row (or unique index entry) `key` exists, as of the
/// newest commit and this transaction's writes. It is locked FOR KEY SHARE
/// first, so it cannot go away until this transaction ends.
fn parent_exists(open: &Open, key: &[u8]) -> Result<bool> {
    match lock_row(open, key, Mode::KeyShare, true)? {
        RowLock::Fresh | RowLock::Busy => Ok(open.txn.lock().get(key)?.is_some()),
        RowLock::Changed { exists: true } => Ok(true),
        RowLock::Changed { exists: false } => {
            if open.txn.lock().isolation() == IsolationLevel::ReadCommitted {
                Ok(false)
            } else {
                Err(concurrent_update())
            }
        }
    }
}

/// The key of the parent row (or unique index entry) holding `values`;
/// None when a value cannot be one of the parent column's.
fn parent_key(parent: &Table, fk: &ForeignKey, values: &[Value]) -> Result<Option<Vec<u8>>> {
    let (mut key, order) = match fk.parent_index {
        None => (parent.key_prefix(), parent.primary_key.clone()),
        Some(id) => {
            let index = parent
                .indexes
                .iter()
                .find(|i| i.id == id)
                .expect("a foreign key's unique index stays while it does");
            (index.key_prefix(), index.columns.clone())
        }
    };
    for column in order {
        let j = fk
            .parent_columns
            .iter()
            .position(|c| *c == column)
            .expect("the referenced columns are the key's");
        let data_type = parent.columns[parent.positions(&[column])[0]].data_type;
        let Some(value) = convert(&values[j], data_type) else {
            return Ok(None);
        };
        keycode::encode_value(&value, &mut key)?;
    }
    Ok(Some(key))
}

/// The range of keys under which `child`'s rows (or hidden index entries)
/// referencing `values` lie; None when no child value can equal them.
fn child_range(child: &Table, fk: &ForeignKey, values: &[Value]) -> Result<Option<Vec<u8>>> {
    let mut prefix = match fk.index {
        None => child.key_prefix(),
        Some(id) => id.to_be_bytes().to_vec(),
    };
    for (value, column) in values.iter().zip(child.positions(&fk.columns)) {
        let Some(value) = convert(value, child.columns[column].data_type) else {
            return Ok(None);
        };
        keycode::encode_value(&value, &mut prefix)?;
    }
    Ok(Some(prefix))
}

/// The storage keys of `child`'s rows that reference `values`, as of the
/// newest commit and this transaction's writes.
fn referencing_keys(
    open: &Open,
    child: &Table,
    fk: &ForeignKey,
    values: &[Value],
) -> Result<Vec<Vec<u8>>> {
    let Some(from) = child_range(child, fk, values)? else {
        return Ok(Vec::new());
    };
    let to = successor(from.clone());
    let mut txn = open.txn.lock();
    let snapshot = txn.refresh_snapshot();
    let keys = txn
        .scan(&from, Some(&to))
        .map(|entry| entry.map(|(key, target)| if fk.index.is_some() { target } else { key }))
        .collect::<Result<Vec<_>>>();
    txn.restore_snapshot(snapshot);
    keys
}

/// Whether a row of `child` references `values`.
fn referenced(open: &Open, child: &Table, fk: &ForeignKey, values: &[Value]) -> Result<bool> {
    Ok(!referencing_keys(open, child, fk, values)?.is_empty())
}

/// The rows of `child` that reference `values`, each locked in `mode` and
/// read as it is now: at READ COMMITTED the newest version, above it 40001
/// for a row that changed after the snapshot.
fn referencing_rows(
    open: &Open,
    child: &Table,
    fk: &ForeignKey,
    values: &[Value],
    mode: Mode,
) -> Result<Vec<(Vec<u8>, Vec<Value>)>> {
    let positions = child.positions(&fk.columns);
    let mut rows = Vec::new();
    for key in referencing_keys(open, child, fk, values)? {
        let bytes = match lock_row(open, &key, mode, true)? {
            RowLock::Fresh | RowLock::Busy => open.txn.lock().get(&key)?,
            RowLock::Changed { .. } => {
                if open.txn.lock().isolation() != IsolationLevel::ReadCommitted {
                    return Err(concurrent_update());
                }
                let mut txn = open.txn.lock();
                let snapshot = txn.refresh_snapshot();
                let bytes = txn.get(&key);
                txn.restore_snapshot(snapshot);
                bytes?
            }
        };
        let Some(bytes) = bytes else {
            continue;
        };
        let row = child.decode_row(&bytes)?;
        let still = positions
            .iter()
            .zip(values)
            .all(|(&p, v)| convert(v, child.columns[p].data_type).is_some_and(|v| v == row[p]));
        if still {
            rows.push((key, row));
        }
    }
    Ok(rows)
}

/// The values of `row` (of `table`) in columns `ids`, in that order.
fn pick(table: &Table, ids: &[u32], row: &[Value]) -> Vec<Value> {
    table
        .positions(ids)
        .into_iter()
        .map(|p| row[p].clone())
        .collect()
}

/// Whether a foreign key can compare columns of types `a` and `b`: the
/// same type (any length or precision), or two integer types.
fn comparable(a: DataType, b: DataType) -> bool {
    use DataType::*;
    let kind = |t: DataType| match t {
        Int16 | Int32 | Int64 => 0,
        Text | Varchar(_) | Char(_) => 1,
        Decimal { .. } => 2,
        _ => 3,
    };
    match (kind(a), kind(b)) {
        (3, 3) => a == b,
        (x, y) => x == y,
    }
}

/// `value` as a value of type `to` (whose kind it shares); None when no
/// value of `to` equals it (an integer out of its range).
fn convert(value: &Value, to: DataType) -> Option<Value> {
    let integer = match value {
        Value::Int16(v) => i64::from(*v),
        Value::Int32(v) => i64::from(*v),
        Value::Int64(v) => *v,
        other => return Some(other.clone()),
    };
    match to {
        DataType::Int16 => i16::try_from(integer).ok().map(Value::Int16),
        DataType::Int32 => i32::try_from(integer).ok().map(Value::Int32),
        _ => Some(Value::Int64(integer)),
    }
}

/// "Key (a, b)=(1, 2)", as PostgreSQL's details show keys.
fn key_text(table: &Table, ids: &[u32], values: &[Value]) -> String {
    let names: Vec<_> = table
        .positions(ids)
        .into_iter()
        .map(|p| table.columns[p].name.as_str())
        .collect();
    let values: Vec<_> = values.iter().map(ToString::to_string).collect();
    format!("Key ({})=({})", names.join(", "), values.join(", "))
}

/// 23503: a child row whose parent is missing.
fn missing_parent(child: &Table, parent: &Table, fk: &ForeignKey, values: &[Value]) -> Error {
    Error::ConstraintViolation {
        code: SqlState::FOREIGN_KEY_VIOLATION,
        message: format!(
            "insert or update on table \"{}\" violates foreign key constraint \"{}\": {} is not present in table \"{}\".",
            child.name,
            fk.name,
            key_text(child, &fk.columns, values),
            parent.name
        ),
    }
}

/// 23503: a parent row that rows still reference.
fn still_referenced(parent: &Table, child: &Table, fk: &ForeignKey, values: &[Value]) -> Error {
    Error::ConstraintViolation {
        code: SqlState::FOREIGN_KEY_VIOLATION,
        message: format!(
            "update or delete on table \"{}\" violates foreign key constraint \"{}\" on table \"{}\": {} is still referenced from table \"{}\".",
            parent.name,
            fk.name,
            child.name,
            key_text(parent, &fk.parent_columns, values),
            child.name
        ),
    }
}

/// The foreign key `def` declares on `child` (a definition being made,
/// maybe the parent itself), named `name`, and the hidden index it needs,
/// with id `index_id`, when the child's primary key does not lead with the
/// referencing columns. `parent` is None for a self-reference.
fn define(
    child: &Table,
    parent: Option<&Table>,
    def: &ForeignKeyDef,
    name: String,
    index_id: u32,
) -> Result<(ForeignKey, Option<Index>)> {
    let parent = parent.unwrap_or(child);
    let column = |table: &Table, n: &str| -> Result<u32> {
        table
            .columns
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.id)
            .ok_or_else(|| Error::NotFound {
                code: SqlState::UNDEFINED_COLUMN,
                message: format!(
                    "column \"{n}\" referenced in foreign key constraint does not exist"
                ),
            })
    };
    let columns = def
        .columns
        .iter()
        .map(|n| column(child, n))
        .collect::<Result<Vec<_>>>()?;
    let parent_columns = if def.parent_columns.is_empty() {
        if parent.has_row_ids() {
            return Err(Error::invalid(
                SqlState::INVALID_FOREIGN_KEY,
                format!(
                    "there is no primary key for referenced table \"{}\"",
                    parent.name
                ),
            ));
        }
        parent.primary_key.clone()
    } else {
        def.parent_columns
            .iter()
            .map(|n| column(parent, n))
            .collect::<Result<Vec<_>>>()?
    };
    if columns.len() != parent_columns.len() {
        return Err(Error::invalid(
            SqlState::INVALID_FOREIGN_KEY,
            "number of referencing and referenced columns for foreign key disagree",
        ));
    }
    let same_set = |ids: &[u32]| {
        ids.len() == parent_columns.len() && ids.iter().all(|c| parent_columns.contains(c))
    };
    let parent_index = if !parent.has_row_ids() && same_set(&parent.primary_key) {
        None
    } else {
        match parent
            .visible_indexes()
            .find(|i| i.unique && same_set(&i.columns))
        {
            Some(index) => Some(index.id),
            None => {
                return Err(Error::invalid(
                    SqlState::INVALID_FOREIGN_KEY,
                    format!(
                    "there is no unique constraint matching given keys for referenced table \"{}\"",
                    parent.name
                ),
                ))
            }
        }
    };
    for (c, p) in columns.iter().zip(&parent_columns) {
        let c = &child.columns[child.positions(&[*c])[0]];
        let p = &parent.columns[parent.positions(&[*p])[0]];
        if !comparable(c.data_type, p.data_type) {
            return Err(Error::invalid(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "foreign key constraint \"{name}\" cannot be implemented: Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}.",
                    c.name, p.name, c.data_type, p.data_type
                ),
            ));
        }
        if !c.data_type.is_key_type() {
            return Err(Error::Unsupported(format!(
                "a foreign key on a {} column",
                c.data_type
            )));
        }
    }
    let positions = child.positions(&columns);
    // SET NULL on a NOT NULL column is accepted, as PostgreSQL does: the
    // action fails with 23502 when it runs.
    if def.on_delete == Action::SetDefault || def.on_update == Action::SetDefault {
        if let Some(p) = positions
            .iter()
            .find(|p| child.columns[**p].default_expr.is_some())
        {
            return Err(Error::Unsupported(format!(
                "SET DEFAULT on column \"{}\", whose default is an expression",
                child.columns[*p].name
            )));
        }
    }
    let led_by_key = child.primary_key.len() >= columns.len()
        && child.primary_key[..columns.len()] == columns[..];
    let index = (!led_by_key).then(|| Index {
        id: index_id,
        name: name.clone(),
        columns: columns.clone(),
        unique: false,
        nulls_not_distinct: false,
        constraint: false,
        hidden: true,
        visible_from: 0,
    });
    let fk = ForeignKey {
        name,
        columns,
        parent: parent.id,
        parent_columns,
        parent_index,
        on_delete: def.on_delete,
        on_update: def.on_update,
        deferrable: def.deferrable,
        initially_deferred: def.initially_deferred,
        validated: true,
        index: index.as_ref().map(|i| i.id),
    };
    Ok((fk, index))
}

/// 23503 unless every row of `child` (read as that definition decodes
/// them) has its parent through `fk`: ALTER TABLE ADD FOREIGN KEY, under
/// the exclusive locks of both tables.
pub(super) fn validate(
    open: &mut Open,
    child: &Table,
    parent: &Table,
    fk: &ForeignKey,
) -> Result<()> {
    for_each_stored(open, child, |open, _, bytes| {
        let row = child.decode_row(&bytes)?;
        let values = pick(child, &fk.columns, &row);
        if values.iter().any(Value::is_null) {
            return Ok(());
        }
        let found = match parent_key(parent, fk, &values)? {
            Some(key) => open.txn.lock().get(&key)?.is_some(),
            None => false,
        };
        match found {
            true => Ok(()),
            false => Err(missing_parent(child, parent, fk, &values)),
        }
    })
}

/// 2BP01 when a foreign key of another table (not in `dropping`) still
/// needs `table`, whose definition becomes `altered` (None: dropped): the
/// parent table itself, or the key or unique index it references.
pub(super) fn refuse_dependents(
    catalog: &Catalog,
    table: &Table,
    altered: Option<&Table>,
    dropping: &[u32],
) -> Result<()> {
    for child in catalog.referencing(table.id) {
        if dropping.contains(&child.id) && altered.is_none() {
            continue;
        }
        for fk in child.foreign_keys.iter().filter(|f| f.parent == table.id) {
            let kept = |t: &Table| {
                fk.parent_columns
                    .iter()
                    .all(|c| t.columns.iter().any(|col| col.id == *c))
                    && fk
                        .parent_index
                        .is_none_or(|id| t.indexes.iter().any(|i| i.id == id))
            };
            let what = match altered {
                None if child.id == table.id => continue,
                None => format!("table {}", table.name),
                Some(altered) if kept(altered) => continue,
                Some(_) => match fk
                    .parent_index
                    .and_then(|id| table.indexes.iter().find(|i| i.id == id))
                {
                    Some(index) => format!("index {}", index.name),
                    None => format!("a column of table {}", table.name),
                },
            };
            return Err(Error::ConstraintViolation {
                code: SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                message: format!(
                    "cannot drop {what} because other objects depend on it: constraint {} on table {} depends on it",
                    fk.name, child.name
                ),
            });
        }
    }
    Ok(())
}

impl Session {
    /// The foreign key `def` declares on `table` (a definition being
    /// made), named by the statement or as PostgreSQL names it, with the
    /// hidden index it needs (id `index_id`), if any.
    pub(super) fn define_foreign_key(
        &self,
        table: &Table,
        def: &ForeignKeyDef,
        index_id: u32,
    ) -> Result<(ForeignKey, Option<Index>)> {
        let parent = match def.parent == table.name {
            true => None,
            false => Some(self.shared.catalog.table(&def.parent)?),
        };
        let name = def
            .name
            .clone()
            .unwrap_or_else(|| table.index_name(&def.columns, "fkey", |_| false));
        define(table, parent.as_deref(), def, name, index_id)
    }

    /// SET CONSTRAINTS {ALL | names} {DEFERRED | IMMEDIATE}: outside a
    /// transaction block it does nothing (with PostgreSQL's warning);
    /// switching to IMMEDIATE runs the checks deferred so far.
    pub fn set_constraints(&mut self, names: Option<Vec<String>>, deferred: bool) -> Result<()> {
        let shared = self.shared.clone();
        if let Some(names) = &names {
            for name in names {
                let found: Vec<ForeignKey> = shared
                    .catalog
                    .tables()
                    .iter()
                    .flat_map(|t| t.foreign_keys.iter().filter(|f| &f.name == name).cloned())
                    .collect();
                if found.is_empty() {
                    return Err(Error::NotFound {
                        code: SqlState::UNDEFINED_OBJECT,
                        message: format!("constraint \"{name}\" does not exist"),
                    });
                }
                if found.iter().any(|f| !f.deferrable) {
                    return Err(Error::invalid(
                        SqlState::WRONG_OBJECT_TYPE,
                        format!("constraint \"{name}\" is not deferrable"),
                    ));
                }
            }
        }
        if !self.in_transaction() {
            self.notice("SET CONSTRAINTS can only be used in transaction blocks");
            return Ok(());
        }
        self.statement(|open| {
            match &names {
                None => {
                    open.constraints.all = Some(deferred);
                    open.constraints.named.clear();
                }
                Some(names) => {
                    for name in names {
                        open.constraints.named.insert(name.clone(), deferred);
                    }
                }
            }
            if deferred {
                return Ok(());
            }
            // The deferred checks of constraints now immediate run now.
            let catalog = shared.catalog.clone();
            let (now, later): (Vec<Check>, Vec<Check>) =
                std::mem::take(&mut open.constraints.deferred)
                    .into_iter()
                    .partition(|check| {
                        let (table, fk) = check.constraint();
                        catalog
                            .table_by_id(table)
                            .and_then(|t| t.foreign_keys.get(fk).cloned())
                            .is_none_or(|fk| !open.constraints.is_deferred(&fk))
                    });
            open.constraints.deferred = later;
            run(&shared, open, now)
        })
    }
}
