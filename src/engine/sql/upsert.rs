//! INSERT ... ON CONFLICT: what to do with a proposed row whose primary key
//! is taken.
//!
//! ```text
//!   ON CONFLICT [(unique columns) | ON CONSTRAINT name] DO NOTHING
//!   ON CONFLICT (unique columns) DO UPDATE SET c = excluded.c + t.c [WHERE ...]
//! ```
//!
//! The conflict target is the primary key or a unique index (named by its
//! columns, or as a constraint); without one, DO NOTHING skips a conflict
//! on any of them. A target that names neither fails with PostgreSQL's
//! 42P10. A unique index's entry for the proposed values is locked before
//! it is looked up, so two upserts of the same values run one after the
//! other. A conflicting row is locked for update (waiting for a transaction that holds it). At
//! READ COMMITTED the update applies to the newest version of the row, even
//! one committed after the statement's snapshot; at REPEATABLE READ and
//! SERIALIZABLE such a row fails the statement with 40001, as in PostgreSQL.
//! The SET and WHERE expressions are evaluated by DataFusion over the
//! existing row (named by the table or its alias) and the proposed one
//! (named `excluded`), both handed to the query typed, as a RETURNING
//! clause's rows are; a column name both have is ambiguous (42702), as in
//! PostgreSQL. One statement may not change a row twice (21000).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    ConflictTarget, Expr, OnConflictAction, OnInsert, Statement,
};

use super::convert::{self, arrow_type, rows_to_batch};
use super::execute::{assign, assignments, ident, parse, quote};
use super::planner::Planner;
use super::provider::RETURNING_TABLE;
use crate::engine::catalog::Table;
use crate::engine::database::Shared;
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::mvcc::IsolationLevel;
use crate::engine::secondary::{unique_form, write_row, Change};
use crate::engine::session::{
    concurrent_update, insert_row, lock_for_insert, newest_row, try_insert_row, Inserted, Open,
};
use crate::engine::types::Value;

/// An INSERT's ON CONFLICT clause, checked against its table.
pub(super) struct OnConflict {
    /// None for DO NOTHING; for DO UPDATE, the new value of each column
    /// (None: unchanged) and the condition.
    update: Option<Update>,
    /// Keys this statement inserted or updated (DO UPDATE may not touch one again).
    touched: HashSet<Vec<u8>>,
    /// The ids of the unique indexes whose conflicts the clause handles,
    /// beside the primary key's (`key`).
    indexes: Vec<u32>,
    key: bool,
}

struct Update {
    values: Vec<Option<Expr>>,
    selection: Option<Expr>,
}

/// What became of one proposed row.
pub(super) enum Outcome {
    /// Written (inserted, or the existing row updated): the row as it now is.
    Written(Vec<Value>),
    /// Left alone (DO NOTHING, or DO UPDATE whose WHERE was not true).
    Skipped,
}

impl OnConflict {
    /// The clause of `INSERT INTO table ... on`, or None without one.
    pub(super) fn new(table: &Table, on: Option<&OnInsert>) -> Result<Option<OnConflict>> {
        let Some(on) = on else {
            return Ok(None);
        };
        let OnInsert::OnConflict(on) = on else {
            return Err(Error::Unsupported("ON DUPLICATE KEY UPDATE".into()));
        };
        let unique = |i: &&crate::engine::catalog::Index| i.unique;
        let (key, indexes) = match &on.conflict_target {
            None => {
                if matches!(on.action, OnConflictAction::DoUpdate(_)) {
                    return Err(Error::invalid(
                        SqlState::SYNTAX_ERROR,
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                    ));
                }
                // DO NOTHING on any unique constraint.
                let all = table.indexes.iter().filter(unique).map(|i| i.id).collect();
                (true, all)
            }
            Some(ConflictTarget::Columns(columns)) => {
                let mut named: Vec<usize> = columns
                    .iter()
                    .map(|c| table.column_index(&ident(c)))
                    .collect::<Result<_>>()?;
                named.sort_unstable();
                named.dedup();
                let sorted = |mut columns: Vec<usize>| {
                    columns.sort_unstable();
                    columns
                };
                let index = table
                    .indexes
                    .iter()
                    .filter(unique)
                    .find(|i| sorted(table.index_columns(i)) == named);
                match index {
                    _ if !table.has_row_ids() && sorted(table.primary_key_indices()) == named => {
                        (true, Vec::new())
                    }
                    Some(index) => (false, vec![index.id]),
                    None => {
                        return Err(Error::invalid(
                            SqlState::INVALID_COLUMN_REFERENCE,
                            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                        ))
                    }
                }
            }
            Some(ConflictTarget::OnConstraint(name)) => {
                let name = name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(ident)
                    .unwrap_or_default();
                let index = table
                    .indexes
                    .iter()
                    .find(|i| i.constraint && i.name == name);
                match index {
                    _ if !table.has_row_ids() && name == table.primary_key_name() => {
                        (true, Vec::new())
                    }
                    Some(index) => (false, vec![index.id]),
                    None => {
                        return Err(Error::NotFound {
                            code: SqlState::UNDEFINED_OBJECT,
                            message: format!(
                                "constraint \"{name}\" for table \"{}\" does not exist",
                                table.name
                            ),
                        })
                    }
                }
            }
        };
        let update = match &on.action {
            OnConflictAction::DoNothing => None,
            OnConflictAction::DoUpdate(update) => {
                let values = assignments(table, &update.assignments)?;
                let selection = update.selection.clone();
                Some(Update { values, selection })
            }
        };
        Ok(Some(OnConflict {
            update,
            touched: HashSet::new(),
            indexes,
            key,
        }))
    }

    /// Inserts `row`, or on a conflict does what the clause says.
    /// `alias` names the existing row in DO UPDATE's expressions.
    pub(super) fn insert(
        &mut self,
        shared: &Shared,
        planner: &Planner,
        open: &mut Open,
        table: &Table,
        alias: &str,
        row: Vec<Value>,
    ) -> Result<Outcome> {
        let (proposed, inserted) = match self.index_conflict(shared, open, table, &row)? {
            Some(conflict) => conflict,
            // A primary key the clause does not name fails as without it.
            None if !self.key => {
                let row = insert_row(shared, open, table, row)?;
                let key = (!table.has_row_ids())
                    .then(|| table.row_key(&row))
                    .transpose()?;
                (row, Inserted::Row { key })
            }
            None => try_insert_row(shared, open, table, row)?,
        };
        let (key, visible, newer) = match inserted {
            Inserted::Row { key } => {
                self.touched.extend(key);
                return Ok(Outcome::Written(proposed));
            }
            Inserted::Conflict {
                key,
                visible,
                newer,
            } => (key, visible, newer),
        };
        let read_committed = open.txn.lock().isolation() == IsolationLevel::ReadCommitted;
        if (newer || !visible) && !read_committed {
            return Err(concurrent_update());
        }
        let Some(update) = &self.update else {
            return Ok(Outcome::Skipped);
        };
        if !self.touched.insert(key.clone()) {
            return Err(Error::invalid(
                SqlState::CARDINALITY_VIOLATION,
                "ON CONFLICT DO UPDATE command cannot affect row a second time: ensure that no rows proposed for insertion within the same command have duplicate constrained values",
            ));
        }
        let bytes = if newer || !visible {
            newest_row(open, &key)?
        } else {
            open.txn.lock().get(&key)?
        };
        let existing = bytes
            .map(|b| table.decode_row(&b))
            .transpose()?
            .ok_or_else(|| Error::Internal("a conflicting row that is not there".into()))?;
        let (batch, query) = update.query(table, alias, existing, proposed)?;
        let rows = shared
            .runtime
            .block_on(planner.query_over(&open.txn, batch, query))?;
        let Some(batch) = rows.batches.iter().find(|b| b.num_rows() > 0) else {
            return Err(Error::Internal(
                "ON CONFLICT DO UPDATE without a row".into(),
            ));
        };
        let n = table.columns.len();
        if convert::value_at(batch.column(n).as_ref(), 0)? != Value::Bool(true) {
            return Ok(Outcome::Skipped);
        }
        let new = table
            .columns
            .iter()
            .enumerate()
            .map(|(c, column)| {
                let array = assign(batch.column(c), column.data_type, &column.name)?;
                convert::value_at(array.as_ref(), 0)
            })
            .collect::<Result<Vec<_>>>()?;
        let new = shared.checks.row(table, new)?;
        let new_key = if table.has_row_ids() {
            key.clone()
        } else {
            table.row_key(&new)?
        };
        if new_key != key {
            write_row(shared, open, table, &key, Change::MoveOut(&new))?;
            self.touched.insert(new_key);
            return Ok(Outcome::Written(insert_row(shared, open, table, new)?));
        }
        write_row(shared, open, table, &key, Change::Update(&new))?;
        Ok(Outcome::Written(new))
    }
}

impl OnConflict {
    /// The row that holds `row`'s values in one of the clause's unique
    /// indexes, as a conflict (its entry locked, so no other transaction
    /// can take the values until this one ends); None when there is none.
    fn index_conflict(
        &self,
        shared: &Shared,
        open: &mut Open,
        table: &Table,
        row: &[Value],
    ) -> Result<Option<(Vec<Value>, Inserted)>> {
        if self.indexes.is_empty() {
            return Ok(None);
        }
        let checked = shared.checks.row(table, row.to_vec())?;
        for index in table
            .indexes
            .iter()
            .filter(|i| self.indexes.contains(&i.id))
        {
            if !unique_form(table, index, &checked) {
                continue;
            }
            let (entry, _) = table.index_entry(index, &checked, &table.key_prefix())?;
            let Some((visible, newer)) = lock_for_insert(open, &entry)? else {
                continue;
            };
            let target = if newer {
                newest_row(open, &entry)?
            } else {
                open.txn.lock().get(&entry)?
            };
            if let Some(key) = target {
                let conflict = Inserted::Conflict {
                    key,
                    visible,
                    newer,
                };
                return Ok(Some((checked, conflict)));
            }
        }
        Ok(None)
    }
}

impl Update {
    /// The existing and the proposed row side by side in one batch
    /// (`e0`, `e1`, ... then `p0`, `p1`, ...), and `SELECT <each column's
    /// new value>, <condition>` over them named as the table (or `alias`)
    /// and `excluded`.
    fn query(
        &self,
        table: &Table,
        alias: &str,
        existing: Vec<Value>,
        proposed: Vec<Value>,
    ) -> Result<(RecordBatch, Statement)> {
        let fields: Vec<Field> = ["e", "p"]
            .iter()
            .flat_map(|side| {
                table.columns.iter().enumerate().map(move |(c, column)| {
                    Field::new(format!("{side}{c}"), arrow_type(column.data_type), true)
                })
            })
            .collect();
        let row: Vec<Value> = existing.into_iter().chain(proposed).collect();
        let batch = rows_to_batch(&Arc::new(Schema::new(fields)), &[row], None)?;
        let side = |prefix: &str, name: &str| {
            let columns: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(c, column)| format!("\"{prefix}{c}\" AS {}", quote(&column.name)))
                .collect();
            format!(
                "(SELECT {} FROM \"{RETURNING_TABLE}\") AS {name}",
                columns.join(", ")
            )
        };
        let items: Vec<String> = self
            .values
            .iter()
            .zip(&table.columns)
            .enumerate()
            .map(|(n, (value, column))| match value {
                Some(value) => format!("{value} AS \"new {n}\""),
                None => format!("{}.{} AS \"new {n}\"", quote(alias), quote(&column.name)),
            })
            .chain(std::iter::once(match &self.selection {
                Some(selection) => format!("({selection}) IS TRUE"),
                None => "true".into(),
            }))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} CROSS JOIN {}",
            items.join(", "),
            side("e", &quote(alias)),
            side("p", "excluded"),
        );
        Ok((batch, parse(&sql)?.remove(0)))
    }
}
