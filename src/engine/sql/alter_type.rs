//! ALTER TABLE changes that rewrite every row under a new schema version,
//! in one change under the exclusive table lock: ALTER COLUMN c [SET DATA]
//! TYPE t [USING expr] (the column's value converted, or the USING
//! expression evaluated over the row as it was), and ADD COLUMN with a
//! volatile default (evaluated for each row).
//!
//! Without USING, only the conversions PostgreSQL makes by assignment are
//! taken (numbers among themselves, anything to text, text lengths, times
//! among themselves); text to a number, a date or a boolean needs USING, as
//! in PostgreSQL (42804). A value that does not fit fails the statement
//! with its own error (22003, 22001, 22P02) and changes nothing. Columns in
//! the primary key or a foreign key, identity columns and columns with a
//! default are refused (0A000).

use datafusion::sql::sqlparser::ast;

use super::execute::{assign, ident, quote, stored_key, Output};
use super::provider::KEY_COLUMN;
use crate::engine::catalog::{ColumnDef, Table};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::locks::Mode;
use crate::engine::secondary::{lock_table, write_row, Change};
use crate::engine::session::stage_definition;
use crate::engine::types::DataType;
use crate::engine::Session;

impl Session {
    /// ALTER TABLE `name` ALTER COLUMN `column` TYPE `data_type` [USING `using`].
    pub(super) fn alter_column_type(
        &mut self,
        name: &str,
        column: &ast::Ident,
        data_type: &ast::DataType,
        using: Option<&ast::Expr>,
    ) -> Result<Output> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let table = self.table(name)?;
        let column = ident(column);
        let position = table.column_index(&column)?;
        let new_type = super::ddl::data_type(data_type)?;
        let old = &table.columns[position];
        refuse(&shared.catalog, &table, position)?;
        if using.is_none() && !assignable(old.data_type, new_type) {
            return Err(Error::invalid(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "column \"{column}\" cannot be cast automatically to type {new_type} \
                     (specify a USING expression to perform the conversion)"
                ),
            ));
        }
        let altered = table.with_column_type(&column, new_type)?;
        let value = using.map_or_else(|| quote(&column), ToString::to_string);
        self.rewrite_rows(&table, altered, position, &value)?;
        Ok(Output::command("ALTER TABLE"))
    }

    /// ALTER TABLE `name` ADD COLUMN `column` whose default is volatile
    /// (`random()`, `nextval(...)`): each row there gets its own value, as
    /// in PostgreSQL.
    pub(super) fn add_column_filled(&mut self, name: &str, column: ColumnDef) -> Result<Output> {
        let shared = self.shared.clone();
        let _ddl = shared.ddl.lock();
        let table = self.table(name)?;
        let expr = column
            .default_expr
            .clone()
            .expect("the caller checked the column has a volatile default");
        let altered = table.with_column(column)?;
        let position = altered.columns.len() - 1;
        self.rewrite_rows(&table, altered, position, &expr)?;
        Ok(Output::command("ALTER TABLE"))
    }

    /// Rewrites every row of `table` as `altered` (a new definition of it),
    /// column `position` of `altered` set to `value` (SQL over the row as
    /// `table` has it, evaluated for each row), and saves `altered`: one
    /// change under the exclusive table lock, inside a transaction block too.
    fn rewrite_rows(
        &mut self,
        table: &Table,
        altered: Table,
        position: usize,
        value: &str,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let column = altered.columns[position].clone();
        let query = super::execute::parse(&format!(
            "SELECT {}, {value} FROM {}",
            quote(KEY_COLUMN),
            quote(&table.name)
        ))?
        .remove(0);
        let planner = self.planner()?;
        let explicit = self.in_transaction();
        let unchanged = shared.catalog.unchanged_check(&[table.id]);
        self.statement(|open| {
            // Writers of the table have ended and none starts until this
            // change ends; the rows are read as they are now.
            lock_table(open, table.id, Mode::Update)?;
            open.txn.lock().refresh_snapshot();
            let rows = shared
                .runtime
                .block_on(planner.query_keyed(&open.txn, query, table.id))?;
            for batch in &rows.batches {
                let values = assign(batch.column(1), column.data_type, &column.name)?;
                for r in 0..batch.num_rows() {
                    let key = stored_key(batch.column(0), r)?;
                    let Some(bytes) = open.txn.lock().get(&key)? else {
                        continue;
                    };
                    let mut row = altered.decode_row(&bytes)?;
                    row[position] = super::convert::value_at(values.as_ref(), r)?;
                    let row = shared.checks.row(&altered, row)?;
                    write_row(&shared, open, &altered, &key, Change::Update(&row))?;
                }
            }
            stage_definition(&shared, open, altered, explicit, unchanged)
        })
    }
}

/// 0A000 for a column whose type omen cannot change: in the primary key or
/// a foreign key (either side), an identity column, or one with a default.
fn refuse(catalog: &crate::engine::catalog::Catalog, table: &Table, position: usize) -> Result<()> {
    let column = &table.columns[position];
    let id = column.id;
    let in_key = table.primary_key.contains(&id);
    let in_foreign_key = table.foreign_keys.iter().any(|f| f.columns.contains(&id))
        || catalog.referencing(table.id).iter().any(|child| {
            child
                .foreign_keys
                .iter()
                .any(|f| f.parent == table.id && f.parent_columns.contains(&id))
        });
    let what = if in_key {
        "in the primary key"
    } else if in_foreign_key {
        "in a foreign key"
    } else if column.identity.is_some() {
        "that is an identity column"
    } else if column.default.is_some() || column.default_expr.is_some() || !column.fill.is_null() {
        "that has a default (drop the default first)"
    } else {
        return Ok(());
    };
    Err(Error::Unsupported(format!(
        "changing the type of column \"{}\" {what}",
        column.name
    )))
}

/// Whether PostgreSQL converts `from` to `to` by assignment, without USING.
fn assignable(from: DataType, to: DataType) -> bool {
    use DataType::*;
    let number = |t: DataType| {
        matches!(
            t,
            Int16 | Int32 | Int64 | Float32 | Float64 | Decimal { .. }
        )
    };
    let text = |t: DataType| matches!(t, Text | Varchar(_) | Char(_));
    let time = |t: DataType| matches!(t, Date | Timestamp | TimestampTz);
    from == to
        || text(to)
        || number(from) && number(to)
        || time(from) && time(to)
        || from == Time && to == Interval
}
