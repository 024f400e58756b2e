//! CHECK constraints: defined with CREATE TABLE or ALTER TABLE ADD
//! CONSTRAINT, checked on every row written, on every path (the fast path,
//! the general path, COPY, ON CONFLICT DO UPDATE).
//!
//! A constraint is kept as SQL text. Each table version's constraints are
//! compiled once into DataFusion physical expressions over the table's
//! columns and evaluated on the row about to be written; a row passes when
//! every condition is true or NULL, as in PostgreSQL, and otherwise the
//! statement fails with 23514 and changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::DataType as ArrowType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{self, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use parking_lot::Mutex;

use super::convert::{pg_type_name, rows_to_batch, table_schema};
use super::execute::ident;
use crate::engine::catalog::{Check, CheckDef, Table};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::types::Value;

/// The compiled CHECK constraints of every table version written to.
#[derive(Default)]
pub(crate) struct Checks {
    /// Made when the first condition is compiled: opening a database that
    /// has none costs nothing.
    ctx: std::sync::OnceLock<SessionContext>,
    compiled: Mutex<HashMap<TableVersion, Arc<[Compiled]>>>,
}

/// A table id and schema version.
type TableVersion = (u32, u32);

struct Compiled {
    name: String,
    condition: Arc<dyn PhysicalExpr>,
}

/// Table versions whose compiled constraints are kept, at most.
const CACHED: usize = 1024;

impl Checks {
    /// `row` checked against `table`'s columns (types, NOT NULL, lengths)
    /// and CHECK constraints, as it is to be stored.
    pub(crate) fn row(&self, table: &Table, row: Vec<Value>) -> Result<Vec<Value>> {
        let row = table.check_row(row)?;
        if let Some(name) = self.violated(table, &row)? {
            return Err(Error::ConstraintViolation {
                code: SqlState::CHECK_VIOLATION,
                message: format!(
                    "new row for relation \"{}\" violates check constraint \"{name}\": failing row contains ({})",
                    table.name,
                    row.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(row)
    }

    /// The first constraint of `table` that `row` (a checked row) fails.
    fn violated(&self, table: &Table, row: &[Value]) -> Result<Option<String>> {
        if table.checks.is_empty() {
            return Ok(None);
        }
        let compiled = self.compiled(table)?;
        let batch = rows_to_batch(&table_schema(table), &[row.to_vec()], None)?;
        for check in compiled.iter() {
            if fails(&check.condition, &batch)? {
                return Ok(Some(check.name.clone()));
            }
        }
        Ok(None)
    }

    /// Whether some row of `rows` (rows of `table`) fails `check`.
    pub(crate) fn any_fails(
        &self,
        table: &Table,
        check: &Check,
        mut rows: impl Iterator<Item = Result<Vec<Value>>>,
    ) -> Result<bool> {
        let condition = self.compile(table, &check.expr)?;
        let schema = table_schema(table);
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        loop {
            chunk.clear();
            for row in rows.by_ref().take(CHUNK_ROWS) {
                chunk.push(row?);
            }
            if chunk.is_empty() {
                return Ok(false);
            }
            if fails(&condition, &rows_to_batch(&schema, &chunk, None)?)? {
                return Ok(true);
            }
        }
    }

    fn compiled(&self, table: &Table) -> Result<Arc<[Compiled]>> {
        let version = (table.id, table.schema_version);
        if let Some(compiled) = self.compiled.lock().get(&version) {
            return Ok(compiled.clone());
        }
        let compiled: Arc<[Compiled]> = table
            .checks
            .iter()
            .map(|check| {
                Ok(Compiled {
                    name: check.name.clone(),
                    condition: self.compile(table, &check.expr)?,
                })
            })
            .collect::<Result<Vec<_>>>()?
            .into();
        let mut cache = self.compiled.lock();
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(version, compiled.clone());
        Ok(compiled)
    }

    fn ctx(&self) -> &SessionContext {
        self.ctx.get_or_init(|| {
            let mut config = SessionConfig::new();
            config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
            SessionContext::new_with_config(config)
        })
    }

    fn compile(&self, table: &Table, expr: &str) -> Result<Arc<dyn PhysicalExpr>> {
        let schema = table_schema(table);
        let df_schema = DFSchema::try_from_qualified_schema(table.name.as_str(), &schema)
            .map_err(|e| Error::Internal(format!("a table schema: {e}")))?;
        let failed = |e: datafusion::error::DataFusionError| {
            Error::invalid(
                SqlState::INVALID_TABLE_DEFINITION,
                format!("the check constraint ({expr}) cannot be evaluated: {e}"),
            )
        };
        let logical = self
            .ctx()
            .parse_sql_expr(expr, &df_schema)
            .map_err(failed)?;
        let condition = self
            .ctx()
            .create_physical_expr(logical, &df_schema)
            .map_err(failed)?;
        let data_type = condition.data_type(&schema).map_err(failed)?;
        if !matches!(data_type, ArrowType::Boolean | ArrowType::Null) {
            return Err(Error::invalid(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "argument of CHECK must be type boolean, not type {}",
                    pg_type_name(&data_type)
                ),
            ));
        }
        Ok(condition)
    }

    /// `table` (whose column `from` is now `to`) with its conditions
    /// rewritten to name the column by its new name.
    pub(crate) fn rename_column(&self, mut table: Table, from: &str, to: &str) -> Result<Table> {
        for check in &mut table.checks {
            let mut expr = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&check.expr)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| Error::Corruption(format!("a check condition does not parse: {e}")))?;
            let _ = ast::VisitMut::visit(&mut expr, &mut Rename { from, to });
            check.expr = expr.to_string();
        }
        Ok(table)
    }

    /// The constraint `def` declares on `table`: its columns resolved, its
    /// name chosen (PostgreSQL's, from the one column it reads, if one),
    /// and its condition compiled to prove it can be evaluated.
    pub(crate) fn define(&self, table: &Table, def: &CheckDef) -> Result<Check> {
        let expr = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&def.expr)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| Error::invalid(SqlState::SYNTAX_ERROR, format!("syntax error: {e}")))?;
        let mut names = Names {
            table: &table.name,
            columns: Vec::new(),
        };
        if let std::ops::ControlFlow::Break(e) = expr.visit(&mut names) {
            return Err(e);
        }
        let mut columns = Vec::new();
        for name in &names.columns {
            let id = table.columns[table.column_index(name)?].id;
            if !columns.contains(&id) {
                columns.push(id);
            }
        }
        self.compile(table, &def.expr)?;
        let only = match columns.as_slice() {
            [one] => table
                .columns
                .iter()
                .find(|c| c.id == *one)
                .map(|c| c.name.as_str()),
            _ => None,
        };
        let name = def.name.clone().unwrap_or_else(|| table.check_name(only));
        Ok(Check {
            name,
            expr: def.expr.clone(),
            columns,
            validated: true,
        })
    }
}

/// Rows checked at once when a constraint is added to a table with rows.
const CHUNK_ROWS: usize = 1024;

/// Whether the condition is false for some row of `batch`.
fn fails(condition: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<bool> {
    let value = condition
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| Error::invalid(SqlState::DATA_EXCEPTION, e.to_string()))?;
    let Some(value) = value.as_any().downcast_ref::<BooleanArray>() else {
        // NULL for every row.
        return Ok(false);
    };
    Ok((0..value.len()).any(|i| value.is_valid(i) && !value.value(i)))
}

/// The column names a condition reads; subqueries are refused, as in PostgreSQL.
struct Names<'a> {
    table: &'a str,
    columns: Vec<String>,
}

impl Visitor for Names<'_> {
    type Break = Error;

    fn pre_visit_expr(&mut self, expr: &ast::Expr) -> std::ops::ControlFlow<Error> {
        match expr {
            ast::Expr::Identifier(id) => self.columns.push(ident(id)),
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [t, c] if ident(t) == self.table => self.columns.push(ident(c)),
                _ => {
                    return std::ops::ControlFlow::Break(Error::NotFound {
                        code: SqlState::UNDEFINED_COLUMN,
                        message: format!(
                            "missing FROM-clause entry for {}",
                            parts
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(".")
                        ),
                    })
                }
            },
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
                return std::ops::ControlFlow::Break(Error::Unsupported(
                    "a subquery in a check constraint (PostgreSQL refuses it too)".into(),
                ))
            }
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// Renames a column wherever a condition names it.
struct Rename<'a> {
    from: &'a str,
    to: &'a str,
}

impl ast::VisitorMut for Rename<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> std::ops::ControlFlow<()> {
        let name = match expr {
            ast::Expr::Identifier(id) => Some(id),
            ast::Expr::CompoundIdentifier(parts) => parts.last_mut(),
            _ => None,
        };
        if let Some(id) = name {
            if ident(id) == self.from {
                *id = ast::Ident::with_quote('"', self.to);
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}
