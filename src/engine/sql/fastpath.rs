//! The fast path: statements that touch one row by its full primary key, with
//! literal values, run without DataFusion planning.
//!
//! ```text
//!   INSERT INTO t [(cols)] VALUES (literals)         one row
//!   SELECT * | cols FROM t WHERE pk = literal [AND pk2 = literal ...]
//!   UPDATE t SET col = literal, ... WHERE <the same>   (key columns unchanged)
//!   DELETE FROM t WHERE <the same>
//! ```
//!
//! Anything else, or a literal whose type would need DataFusion's coercion
//! rules, returns None and takes the general path. Literals become values the
//! way the general path's do: as the Arrow scalar DataFusion would give the
//! literal, cast by [`super::execute::assign`]. Tests run every statement both
//! ways and compare results and errors.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, BinaryOperator, Expr, FromTable, GroupByExpr, SelectItem, SetExpr,
    Statement, TableFactor, UnaryOperator,
};

use super::convert;
use super::execute::{assign, column_name, ident, table_name, Output};
use super::planner::Rows;
use crate::engine::catalog::{Identity, Table};
use crate::engine::error::Result;
use crate::engine::locks::Mode;
use crate::engine::secondary::{write_row, Change};
use crate::engine::session::{insert_row, locked_row, Session};
use crate::engine::types::{DataType, Value};

impl Session {
    /// Whether single-row statements skip the planner (on by default; tests
    /// turn it off to compare the two paths).
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.fast_path_enabled = enabled;
    }

    /// How many statements took the fast path so far.
    pub fn fast_path_statements(&self) -> u64 {
        self.fast_path_taken
    }

    /// Rows the general path's scans have read in this session (the fast
    /// path's key reads are not counted).
    pub fn rows_scanned(&self) -> u64 {
        self.sql
            .as_ref()
            .map_or(0, |planner| planner.rows_scanned())
    }

    /// Runs `statement` on the fast path if it qualifies.
    pub(super) fn fast_path(&mut self, statement: &Statement) -> Result<Option<Output>> {
        if !self.fast_path_enabled {
            return Ok(None);
        }
        let output = match statement {
            Statement::Insert(insert) => self.fast_insert(insert),
            Statement::Query(query) => self.fast_select(query),
            Statement::Update(update) => self.fast_update(update),
            Statement::Delete(delete) => self.fast_delete(delete),
            _ => Ok(None),
        };
        if !matches!(output, Ok(None)) {
            self.fast_path_taken += 1;
        }
        output
    }

    fn fast_insert(&mut self, insert: &ast::Insert) -> Result<Option<Output>> {
        if insert.on.is_some() || insert.returning.is_some() {
            return Ok(None);
        }
        let (ast::TableObject::TableName(name), Some(source)) = (&insert.table, &insert.source)
        else {
            return Ok(None);
        };
        if !plain_query(source) {
            return Ok(None);
        }
        let SetExpr::Values(values) = source.body.as_ref() else {
            return Ok(None);
        };
        let [row] = values.rows.as_slice() else {
            return Ok(None);
        };
        // The statement's time for now() and CURRENT_TIMESTAMP, as the
        // general path gives it (pgbench's history INSERT uses it).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let Some(scalars) = row
            .iter()
            .map(|e| literal(e).or_else(|| is_now(e).then(|| now_scalar(now))))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let Ok(table) = self.table(&table_name(name)?) else {
            return Ok(None);
        };
        let mut targets = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            let Some(index) = column_name(column).ok().and_then(|n| column_of(&table, &n)) else {
                return Ok(None);
            };
            if targets.contains(&index) {
                return Ok(None);
            }
            targets.push(index);
        }
        if targets.is_empty() {
            targets = (0..table.columns.len()).collect();
        }
        // A GENERATED ALWAYS column refuses a value: the general path says so.
        if targets.len() != scalars.len()
            || targets
                .iter()
                .any(|&c| table.columns[c].identity == Some(Identity::Always))
        {
            return Ok(None);
        }
        // The time goes only into time columns here; into anything else the
        // general path converts it.
        if row.iter().zip(&targets).any(|(e, &c)| {
            is_now(e)
                && !matches!(
                    table.columns[c].data_type,
                    DataType::Timestamp | DataType::TimestampTz
                )
        }) {
            return Ok(None);
        }
        // An omitted column whose default is an expression is evaluated by
        // the general path.
        if table
            .expression_defaults()
            .any(|(c, _)| !targets.contains(&c))
        {
            return Ok(None);
        }
        let shared = self.shared.clone();
        self.statement(|open| {
            let mut row = table.default_row();
            for (scalar, &c) in scalars.iter().zip(&targets) {
                row[c] = value_for(&table, c, scalar)?;
            }
            insert_row(&shared, open, &table, row).map(drop)
        })?;
        Ok(Some(Output::Command {
            tag: "INSERT",
            rows: Some(1),
        }))
    }

    fn fast_select(&mut self, query: &ast::Query) -> Result<Option<Output>> {
        if !plain_query(query) {
            return Ok(None);
        }
        let SetExpr::Select(select) = query.body.as_ref() else {
            return Ok(None);
        };
        let simple = select.distinct.is_none()
            && select.top.is_none()
            && select.into.is_none()
            && select.exclude.is_none()
            && select.lateral_views.is_empty()
            && select.prewhere.is_none()
            && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
            && select.cluster_by.is_empty()
            && select.distribute_by.is_empty()
            && select.sort_by.is_empty()
            && select.having.is_none()
            && select.named_window.is_empty()
            && select.qualify.is_none()
            && select.connect_by.is_empty();
        let [from] = select.from.as_slice() else {
            return Ok(None);
        };
        let (Some(table), Some(selection)) = (self.plain_table(from), &select.selection) else {
            return Ok(None);
        };
        if !simple {
            return Ok(None);
        }
        let mut columns = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(options)
                    if options.opt_exclude.is_none()
                        && options.opt_except.is_none()
                        && options.opt_replace.is_none()
                        && options.opt_rename.is_none()
                        && options.opt_ilike.is_none() =>
                {
                    columns.extend(0..table.columns.len())
                }
                SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                    match column_of(&table, &ident(id)) {
                        Some(c) => columns.push(c),
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
        }
        let Some(key) = key_of(&table, selection) else {
            return Ok(None);
        };
        let Ok(key) = table.key(&key) else {
            return Ok(None);
        };
        let row = self.statement(|open| {
            open.txn
                .lock()
                .get(&key)?
                .map(|bytes| table.decode_row(&bytes))
                .transpose()
        })?;
        let schema = convert::table_schema(&table);
        let rows: Vec<Vec<Value>> = row.into_iter().collect();
        let batch = convert::rows_to_batch(&schema, &rows, Some(&columns))?;
        Ok(Some(Output::Rows(Rows {
            schema: batch.schema(),
            batches: vec![batch],
            command: None,
        })))
    }

    fn fast_update(&mut self, update: &ast::Update) -> Result<Option<Output>> {
        if update.from.is_some() || update.returning.is_some() || update.limit.is_some() {
            return Ok(None);
        }
        let (Some(table), Some(selection)) = (self.plain_table(&update.table), &update.selection)
        else {
            return Ok(None);
        };
        let key_columns = table.primary_key_indices();
        let mut assignments = Vec::with_capacity(update.assignments.len());
        for assignment in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &assignment.target else {
                return Ok(None);
            };
            let Some(c) = column_name(name).ok().and_then(|n| column_of(&table, &n)) else {
                return Ok(None);
            };
            let Some(assigned) = assigned(&table, c, &assignment.value) else {
                return Ok(None);
            };
            if key_columns.contains(&c)
                || assignments.iter().any(|(a, _)| *a == c)
                || table.columns[c].identity == Some(Identity::Always)
            {
                return Ok(None);
            }
            assignments.push((c, assigned));
        }
        let Some(key) = key_of(&table, selection).and_then(|k| table.key(&k).ok()) else {
            return Ok(None);
        };
        let shared = self.shared.clone();
        let count = self.statement(|open| {
            let Some(bytes) = locked_row(open, &key, Mode::NoKeyUpdate)? else {
                return Ok(Some(0));
            };
            let old = table.decode_row(&bytes)?;
            let mut row = old.clone();
            for (c, assigned) in &assignments {
                row[*c] = match assigned {
                    Assigned::Literal(scalar) => value_for(&table, *c, scalar)?,
                    Assigned::Add { from, delta } => match added(&old[*from], *delta, &table, *c) {
                        Some(value) => value,
                        // Out of range: the general path reports it.
                        None => return Ok(None),
                    },
                };
            }
            let row = shared.checks.row(&table, row)?;
            write_row(&shared, open, &table, &key, Change::Update(&row))?;
            Ok(Some(1))
        })?;
        Ok(count.map(|count| Output::Command {
            tag: "UPDATE",
            rows: Some(count),
        }))
    }

    fn fast_delete(&mut self, delete: &ast::Delete) -> Result<Option<Output>> {
        if delete.using.is_some() || delete.returning.is_some() || delete.limit.is_some() {
            return Ok(None);
        }
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        let ([target], Some(selection)) = (from.as_slice(), &delete.selection) else {
            return Ok(None);
        };
        let Some(table) = self.plain_table(target) else {
            return Ok(None);
        };
        let Some(key) = key_of(&table, selection).and_then(|k| table.key(&k).ok()) else {
            return Ok(None);
        };
        let shared = self.shared.clone();
        let count = self.statement(|open| {
            if locked_row(open, &key, Mode::Update)?.is_none() {
                return Ok(0);
            }
            write_row(&shared, open, &table, &key, Change::Delete)?;
            Ok(1)
        })?;
        Ok(Some(Output::Command {
            tag: "DELETE",
            rows: Some(count),
        }))
    }

    /// The table of a FROM item that names one existing table without alias or join.
    fn plain_table(&self, from: &ast::TableWithJoins) -> Option<Arc<Table>> {
        if !from.joins.is_empty() {
            return None;
        }
        let TableFactor::Table {
            name,
            alias: None,
            args: None,
            with_hints,
            version: None,
            partitions,
            ..
        } = &from.relation
        else {
            return None;
        };
        if !with_hints.is_empty() || !partitions.is_empty() {
            return None;
        }
        self.table(&table_name(name).ok()?).ok()
    }
}

/// A query with no WITH, ORDER BY, LIMIT, FETCH or locking clause.
fn plain_query(query: &ast::Query) -> bool {
    query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty()
        && query.for_clause.is_none()
        && query.settings.is_none()
        && query.format_clause.is_none()
        && query.pipe_operators.is_empty()
}

/// What an UPDATE's SET stores in a column.
enum Assigned {
    /// A literal.
    Literal(ScalarValue),
    /// `column + n` or `column - n` of integer columns (pgbench's
    /// `abalance = abalance + :delta`), from the row before the UPDATE.
    Add { from: usize, delta: i64 },
}

/// The fast path's reading of `SET column c = expr`, when it has one.
fn assigned(table: &Table, c: usize, expr: &Expr) -> Option<Assigned> {
    if let Some(scalar) = literal(expr) {
        return Some(Assigned::Literal(scalar));
    }
    let Expr::BinaryOp { left, op, right } = expr else {
        return None;
    };
    let integer = |i: usize| {
        matches!(
            table.columns[i].data_type,
            DataType::Int16 | DataType::Int32 | DataType::Int64
        )
    };
    let from = match left.as_ref() {
        Expr::Identifier(ident) => column_of(table, &super::execute::ident(ident))?,
        _ => return None,
    };
    let ScalarValue::Int64(Some(n)) = literal(right)? else {
        return None;
    };
    let delta = match op {
        ast::BinaryOperator::Plus => n,
        ast::BinaryOperator::Minus => n.checked_neg()?,
        _ => return None,
    };
    (integer(from) && integer(c)).then_some(Assigned::Add { from, delta })
}

/// `old + delta` as column `c` stores it; None when it does not fit (or
/// `old` is not an integer), for the general path to report.
fn added(old: &Value, delta: i64, table: &Table, c: usize) -> Option<Value> {
    let old = match old {
        Value::Null => return Some(Value::Null),
        Value::Int16(v) => i64::from(*v),
        Value::Int32(v) => i64::from(*v),
        Value::Int64(v) => *v,
        _ => return None,
    };
    let sum = old.checked_add(delta)?;
    match table.columns[c].data_type {
        DataType::Int16 => i16::try_from(sum).ok().map(Value::Int16),
        DataType::Int32 => i32::try_from(sum).ok().map(Value::Int32),
        DataType::Int64 => Some(Value::Int64(sum)),
        _ => None,
    }
}

fn column_of(table: &Table, name: &str) -> Option<usize> {
    table.columns.iter().position(|c| c.name == name)
}

/// The scalar DataFusion gives a literal: integers that fit as Int64, other
/// numbers as Float64, strings as Utf8, booleans, NULL.
fn literal(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => number(n, false),
            ast::Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            ast::Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            ast::Value::Null => Some(ScalarValue::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => number(n, true),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether `expr` is now() or CURRENT_TIMESTAMP without arguments: the
/// statement's time.
fn is_now(expr: &Expr) -> bool {
    let Expr::Function(f) = expr else {
        return false;
    };
    let empty = match &f.args {
        ast::FunctionArguments::None => true,
        ast::FunctionArguments::List(list) => list.args.is_empty(),
        ast::FunctionArguments::Subquery(_) => false,
    };
    let name = f.name.to_string().to_ascii_lowercase();
    empty
        && f.over.is_none()
        && f.filter.is_none()
        && matches!(
            name.as_str(),
            "now" | "current_timestamp" | "pg_catalog.now"
        )
}

/// The time `micros` (since the epoch, UTC) as a timestamptz literal.
fn now_scalar(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some(convert::UTC.into()))
}

fn number(text: &str, negative: bool) -> Option<ScalarValue> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if let Ok(i) = signed.parse::<i64>() {
        return Some(ScalarValue::Int64(Some(i)));
    }
    if text.contains(['.', 'e', 'E']) {
        return signed
            .parse::<f64>()
            .ok()
            .map(|f| ScalarValue::Float64(Some(f)));
    }
    None
}

/// A literal stored into column `c`, through the general path's assignment cast.
fn value_for(table: &Table, c: usize, scalar: &ScalarValue) -> Result<Value> {
    let column = &table.columns[c];
    // Literals that fit their column unchanged skip Arrow; the result is the
    // one the cast gives. Anything else, errors included, takes the cast.
    let direct = match (scalar, column.data_type) {
        (ScalarValue::Null, _) => Some(Value::Null),
        (ScalarValue::Int64(Some(v)), DataType::Int64) => Some(Value::Int64(*v)),
        (ScalarValue::Int64(Some(v)), DataType::Int32) => i32::try_from(*v).ok().map(Value::Int32),
        (ScalarValue::Int64(Some(v)), DataType::Int16) => i16::try_from(*v).ok().map(Value::Int16),
        (ScalarValue::Float64(Some(v)), DataType::Float64) => Some(Value::Float64(*v)),
        (ScalarValue::Utf8(Some(v)), DataType::Text) => Some(Value::Text(v.clone())),
        (ScalarValue::Boolean(Some(v)), DataType::Bool) => Some(Value::Bool(*v)),
        _ => None,
    };
    if let Some(value) = direct {
        return Ok(value);
    }
    let array = scalar
        .to_array()
        .map_err(|e| crate::engine::Error::Internal(e.to_string()))?;
    let array = assign(&array, column.data_type, &column.name)?;
    convert::value_at(array.as_ref(), 0)
}

/// The full primary key a WHERE clause fixes with `key = literal` terms joined
/// by AND, each key column exactly once and nothing else; None otherwise.
fn key_of(table: &Table, selection: &Expr) -> Option<Vec<Value>> {
    let key_columns = table.primary_key_indices();
    let mut key: Vec<Option<Value>> = vec![None; key_columns.len()];
    let mut terms = vec![selection];
    while let Some(term) = terms.pop() {
        match term {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                terms.push(left);
                terms.push(right);
            }
            Expr::Nested(inner) => terms.push(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let (id, value) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Identifier(id), value) | (value, Expr::Identifier(id)) => (id, value),
                    _ => return None,
                };
                let c = column_of(table, &ident(id))?;
                let position = key_columns.iter().position(|k| *k == c)?;
                let value = key_literal(table.columns[c].data_type, &literal(value)?)?;
                if key[position].replace(value).is_some() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    key.into_iter().collect()
}

/// A literal compared with a key column, when the comparison means plain
/// equality of the column's values: integers and floats against numeric
/// columns (when they fit), strings against text and time columns.
fn key_literal(data_type: DataType, scalar: &ScalarValue) -> Option<Value> {
    let fits = matches!(
        (scalar, data_type),
        (
            ScalarValue::Int64(_),
            DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float64,
        ) | (ScalarValue::Float64(_), DataType::Float64)
            | (
                ScalarValue::Utf8(_),
                DataType::Text
                    | DataType::Varchar(_)
                    | DataType::Date
                    | DataType::Timestamp
                    | DataType::TimestampTz,
            )
    );
    if !fits {
        return None;
    }
    let array = scalar.to_array().ok()?;
    let cast = convert::cast_to(&array, data_type).ok()?;
    convert::value_at(cast.as_ref(), 0).ok()
}
