//! The fast path: statements that touch one row by its full primary key, with
//! literal values or `$n` parameters, run without DataFusion planning.
//!
//! ```text
//!   INSERT INTO t [(cols)] VALUES (literals, $n, now()) [, (...)]
//!   SELECT * | cols FROM t WHERE pk = literal|$n [AND pk2 = ...]
//!   UPDATE t SET col = literal|$n|col ± n|col ± $n, ... WHERE <the same>
//!                                                    (key columns unchanged)
//!   DELETE FROM t WHERE <the same>
//! ```
//!
//! A statement is read once into a [`FastPlan`] (a prepared statement keeps
//! it) and run with values for its parameters. Anything else, a literal
//! whose type would need DataFusion's coercion rules, or a parameter whose
//! value the column does not take unchanged, returns None and takes the
//! general path. Literals become values the way the general path's do: as
//! the Arrow scalar DataFusion would give the literal, cast by
//! [`super::execute::assign`]. Tests run every statement both ways and
//! compare results and errors.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
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
    /// turn it off to compare the two paths). `SET omen.fast_path` in SQL.
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.fast_path_enabled = enabled;
        let value = if enabled { "on" } else { "off" };
        self.settings
            .insert(super::execute::FAST_PATH.to_string(), value.to_string());
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
        match self.fast_plan(statement) {
            Some(plan) => self.run_fast(&plan, &[]),
            None => Ok(None),
        }
    }

    /// The fast path's form of `statement`, when it has one. `$n`
    /// placeholders stand for values given when it runs.
    pub(super) fn fast_plan(&self, statement: &Statement) -> Option<FastPlan> {
        match statement {
            Statement::Insert(insert) => self.fast_insert(insert),
            Statement::Query(query) => self.fast_select(query),
            Statement::Update(update) => self.fast_update(update),
            Statement::Delete(delete) => self.fast_delete(delete),
            _ => None,
        }
    }

    /// Runs `plan` with `params` for its placeholders; None when a value
    /// needs the general path (a conversion it makes, or an error it reports).
    pub(super) fn run_fast(&mut self, plan: &FastPlan, params: &[Value]) -> Result<Option<Output>> {
        let output = match plan {
            FastPlan::Insert {
                table,
                targets,
                rows,
            } => self.run_insert(table, targets, rows, params),
            FastPlan::Select {
                table,
                key,
                columns,
                schema,
            } => self.run_select(table, key, columns, schema, params),
            FastPlan::Update {
                table,
                key,
                assignments,
            } => self.run_update(table, key, assignments, params),
            FastPlan::Delete { table, key } => self.run_delete(table, key, params),
        };
        if !matches!(output, Ok(None)) {
            self.fast_path_taken += 1;
        }
        output
    }

    fn fast_insert(&self, insert: &ast::Insert) -> Option<FastPlan> {
        if insert.on.is_some() || insert.returning.is_some() {
            return None;
        }
        let (ast::TableObject::TableName(name), Some(source)) = (&insert.table, &insert.source)
        else {
            return None;
        };
        if !plain_query(source) {
            return None;
        }
        let SetExpr::Values(values) = source.body.as_ref() else {
            return None;
        };
        let rows = values
            .rows
            .iter()
            .map(|row| row.iter().map(source_of).collect::<Option<Vec<_>>>())
            .collect::<Option<Vec<_>>>()?;
        let width = rows.first()?.len();
        // Rows of VALUES take one type per column in the general path: the
        // fast path takes only columns whose values are alike already.
        for c in 0..width {
            let mut kinds = rows
                .iter()
                .filter_map(|row| row.get(c))
                .filter_map(Source::kind);
            if let Some(first) = kinds.next() {
                if kinds.any(|kind| kind != first) {
                    return None;
                }
            }
        }
        let table = self.table(&table_name(name).ok()?).ok()?;
        let mut targets = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            let index = column_name(column)
                .ok()
                .and_then(|n| column_of(&table, &n))?;
            if targets.contains(&index) {
                return None;
            }
            targets.push(index);
        }
        if targets.is_empty() {
            targets = (0..table.columns.len()).collect();
        }
        // A GENERATED ALWAYS column refuses a value: the general path says so.
        if rows.iter().any(|row| row.len() != targets.len())
            || targets
                .iter()
                .any(|&c| table.columns[c].identity == Some(Identity::Always))
        {
            return None;
        }
        // The time goes only into time columns here; into anything else the
        // general path converts it.
        if rows[0].iter().zip(&targets).any(|(v, &c)| {
            matches!(v, Source::Now)
                && !matches!(
                    table.columns[c].data_type,
                    DataType::Timestamp | DataType::TimestampTz
                )
        }) {
            return None;
        }
        // An omitted column whose default is an expression is evaluated by
        // the general path.
        if table
            .expression_defaults()
            .any(|(c, _)| !targets.contains(&c))
        {
            return None;
        }
        Some(FastPlan::Insert {
            table,
            targets,
            rows,
        })
    }

    fn run_insert(
        &mut self,
        table: &Arc<Table>,
        targets: &[usize],
        sources: &[Vec<Source>],
        params: &[Value],
    ) -> Result<Option<Output>> {
        // The statement's time for now() and CURRENT_TIMESTAMP, as the
        // general path gives it (pgbench's history INSERT uses it).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut rows = vec![table.default_row(); sources.len()];
        // Column by column, as the general path converts them.
        for (i, &c) in targets.iter().enumerate() {
            for (row, source) in rows.iter_mut().zip(sources) {
                match source[i].value(table, c, params, now)? {
                    Some(value) => row[c] = value,
                    None => return Ok(None),
                }
            }
        }
        let count = rows.len() as u64;
        let shared = self.shared.clone();
        self.statement(|open| {
            rows.into_iter()
                .try_for_each(|row| insert_row(&shared, open, table, row).map(drop))
        })?;
        Ok(Some(Output::Command {
            tag: "INSERT",
            rows: Some(count),
        }))
    }

    fn fast_select(&self, query: &ast::Query) -> Option<FastPlan> {
        if !plain_query(query) {
            return None;
        }
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
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
            return None;
        };
        let (Some(table), Some(selection)) = (self.plain_table(from), &select.selection) else {
            return None;
        };
        if !simple {
            return None;
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
                    columns.push(column_of(&table, &ident(id))?)
                }
                _ => return None,
            }
        }
        let key = key_of(&table, selection)?;
        let schema = convert::table_schema(&table);
        Some(FastPlan::Select {
            table,
            key,
            columns,
            schema,
        })
    }

    fn run_select(
        &mut self,
        table: &Arc<Table>,
        key: &[KeyPart],
        columns: &[usize],
        schema: &SchemaRef,
        params: &[Value],
    ) -> Result<Option<Output>> {
        let Some(key) = key_bytes(table, key, params) else {
            return Ok(None);
        };
        let row = self.statement(|open| {
            open.txn
                .lock()
                .get(&key)?
                .map(|bytes| table.decode_row(&bytes))
                .transpose()
        })?;
        let rows: Vec<Vec<Value>> = row.into_iter().collect();
        let batch = convert::rows_to_batch(schema, &rows, Some(columns))?;
        let batch = convert::pad_chars(batch)?;
        Ok(Some(Output::Rows(Rows {
            schema: batch.schema(),
            batches: vec![batch],
            command: None,
        })))
    }

    fn fast_update(&self, update: &ast::Update) -> Option<FastPlan> {
        if update.from.is_some() || update.returning.is_some() || update.limit.is_some() {
            return None;
        }
        let (Some(table), Some(selection)) = (self.plain_table(&update.table), &update.selection)
        else {
            return None;
        };
        let key_columns = table.primary_key_indices();
        let mut assignments = Vec::with_capacity(update.assignments.len());
        for assignment in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &assignment.target else {
                return None;
            };
            let c = column_name(name).ok().and_then(|n| column_of(&table, &n))?;
            let assigned = assigned(&table, c, &assignment.value)?;
            if key_columns.contains(&c)
                || assignments.iter().any(|(a, _)| *a == c)
                || table.columns[c].identity == Some(Identity::Always)
            {
                return None;
            }
            assignments.push((c, assigned));
        }
        let key = key_of(&table, selection)?;
        Some(FastPlan::Update {
            table,
            key,
            assignments,
        })
    }

    fn run_update(
        &mut self,
        table: &Arc<Table>,
        key: &[KeyPart],
        assignments: &[(usize, Assigned)],
        params: &[Value],
    ) -> Result<Option<Output>> {
        let Some(key) = key_bytes(table, key, params) else {
            return Ok(None);
        };
        let shared = self.shared.clone();
        let count = self.statement(|open| {
            let Some(bytes) = locked_row(open, &key, Mode::NoKeyUpdate)? else {
                return Ok(Some(0));
            };
            let old = table.decode_row(&bytes)?;
            let mut row = old.clone();
            for (c, assigned) in assignments {
                let value = match assigned {
                    Assigned::Value(source) => source.value(table, *c, params, 0)?,
                    Assigned::Add { from, delta } => delta
                        .delta(params)
                        .and_then(|delta| added(&old[*from], delta, table, *c)),
                };
                match value {
                    Some(value) => row[*c] = value,
                    // A conversion or an error (out of range) of the general path.
                    None => return Ok(None),
                }
            }
            let row = shared.checks.row(table, row)?;
            write_row(&shared, open, table, &key, Change::Update(&row))?;
            Ok(Some(1))
        })?;
        Ok(count.map(|count| Output::Command {
            tag: "UPDATE",
            rows: Some(count),
        }))
    }

    fn fast_delete(&self, delete: &ast::Delete) -> Option<FastPlan> {
        if delete.using.is_some() || delete.returning.is_some() || delete.limit.is_some() {
            return None;
        }
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        let ([target], Some(selection)) = (from.as_slice(), &delete.selection) else {
            return None;
        };
        let table = self.plain_table(target)?;
        let key = key_of(&table, selection)?;
        Some(FastPlan::Delete { table, key })
    }

    fn run_delete(
        &mut self,
        table: &Arc<Table>,
        key: &[KeyPart],
        params: &[Value],
    ) -> Result<Option<Output>> {
        let Some(key) = key_bytes(table, key, params) else {
            return Ok(None);
        };
        let shared = self.shared.clone();
        let count = self.statement(|open| {
            if locked_row(open, &key, Mode::Update)?.is_none() {
                return Ok(0);
            }
            write_row(&shared, open, table, &key, Change::Delete)?;
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

/// A statement in the fast path's form: its table, and where each value
/// comes from.
pub(crate) enum FastPlan {
    /// INSERT of rows of VALUES: `rows[r][i]` goes into column `targets[i]`.
    Insert {
        table: Arc<Table>,
        targets: Vec<usize>,
        rows: Vec<Vec<Source>>,
    },
    /// SELECT of `columns` of the row with the primary key `key`.
    Select {
        table: Arc<Table>,
        key: Vec<KeyPart>,
        columns: Vec<usize>,
        schema: SchemaRef,
    },
    /// UPDATE of the row with the primary key `key`.
    Update {
        table: Arc<Table>,
        key: Vec<KeyPart>,
        assignments: Vec<(usize, Assigned)>,
    },
    /// DELETE of the row with the primary key `key`.
    Delete {
        table: Arc<Table>,
        key: Vec<KeyPart>,
    },
}

/// Where a value of a fast statement comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A literal, as DataFusion reads it.
    Literal(ScalarValue),
    /// A parameter's value.
    Param(Param),
    /// The statement's time: now(), CURRENT_TIMESTAMP.
    Now,
}

/// The sort of value a [`Source`] gives, for rows of VALUES that must agree.
#[derive(PartialEq)]
enum Kind {
    Literal(datafusion::arrow::datatypes::DataType),
    Param,
    Now,
}

/// Placeholder `$n` (`index` n - 1), perhaps cast: `$n::type`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Param {
    index: usize,
    cast: Option<DataType>,
}

impl Param {
    /// The placeholder `expr` is, with a cast to one of the types whose
    /// values the fast path takes unchanged; None for any other expression.
    fn of(expr: &Expr) -> Option<Param> {
        let (placeholder, cast) = match expr {
            Expr::Cast {
                expr,
                data_type,
                array: false,
                format: None,
                ..
            } => {
                let cast = super::ddl::data_type(data_type).ok()?;
                let plain = matches!(
                    cast,
                    DataType::Bool
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::Float64
                        | DataType::Text
                );
                if !plain {
                    return None;
                }
                (expr.as_ref(), Some(cast))
            }
            expr => (expr, None),
        };
        let Expr::Value(v) = placeholder else {
            return None;
        };
        let ast::Value::Placeholder(name) = &v.value else {
            return None;
        };
        let n: usize = name.strip_prefix('$')?.parse().ok()?;
        Some(Param {
            index: n.checked_sub(1)?,
            cast,
        })
    }

    /// The parameter's value, when it has the type the placeholder's cast
    /// names (None: the general path casts it).
    fn value<'a>(&self, params: &'a [Value]) -> Option<&'a Value> {
        let value = params.get(self.index)?;
        match self.cast {
            Some(t) if !matches!(value, Value::Null) && plain_type(value) != Some(t) => None,
            _ => Some(value),
        }
    }
}

impl Source {
    /// What sort of value it gives: the type of a literal (None for NULL,
    /// which any column takes), a parameter, the time.
    fn kind(&self) -> Option<Kind> {
        match self {
            Source::Literal(ScalarValue::Null) => None,
            Source::Literal(scalar) => Some(Kind::Literal(scalar.data_type())),
            Source::Param(_) => Some(Kind::Param),
            Source::Now => Some(Kind::Now),
        }
    }

    /// The value column `c` of `table` stores; Ok(None) when the general
    /// path must convert it.
    fn value(&self, table: &Table, c: usize, params: &[Value], now: i64) -> Result<Option<Value>> {
        match self {
            Source::Literal(scalar) => value_for(table, c, scalar).map(Some),
            Source::Now => value_for(table, c, &now_scalar(now)).map(Some),
            Source::Param(param) => Ok(param
                .value(params)
                .and_then(|v| stored(table.columns[c].data_type, v))),
        }
    }
}

/// The value a parameter stores into a column of type `column` with no
/// conversion beyond a range check (integers into narrower integers); None
/// for any other, which the general path converts or refuses.
fn stored(column: DataType, value: &Value) -> Option<Value> {
    let integer = match value {
        Value::Null => return Some(Value::Null),
        Value::Int16(v) => i64::from(*v),
        Value::Int32(v) => i64::from(*v),
        Value::Int64(v) => *v,
        Value::Float64(_) if column == DataType::Float64 => return Some(value.clone()),
        Value::Text(_) if column == DataType::Text => return Some(value.clone()),
        Value::Bool(_) if column == DataType::Bool => return Some(value.clone()),
        _ => return None,
    };
    match column {
        DataType::Int16 => i16::try_from(integer).ok().map(Value::Int16),
        DataType::Int32 => i32::try_from(integer).ok().map(Value::Int32),
        DataType::Int64 => Some(Value::Int64(integer)),
        _ => None,
    }
}

/// A literal argument of EXECUTE as a value of its parameter's type `t`,
/// when that takes it unchanged (an integer that fits, a string for text,
/// a float for double precision, a boolean, NULL); None otherwise.
pub(super) fn argument_value(expr: &Expr, t: DataType) -> Option<Value> {
    let value = match literal(expr)? {
        ScalarValue::Null => Value::Null,
        ScalarValue::Int64(Some(v)) => Value::Int64(v),
        ScalarValue::Float64(Some(v)) => Value::Float64(v),
        ScalarValue::Utf8(Some(v)) => Value::Text(v),
        ScalarValue::Boolean(Some(v)) => Value::Bool(v),
        _ => return None,
    };
    stored(t, &value)
}

/// The type of a value of the types a placeholder's cast may name.
fn plain_type(value: &Value) -> Option<DataType> {
    match value {
        Value::Bool(_) => Some(DataType::Bool),
        Value::Int16(_) => Some(DataType::Int16),
        Value::Int32(_) => Some(DataType::Int32),
        Value::Int64(_) => Some(DataType::Int64),
        Value::Float64(_) => Some(DataType::Float64),
        Value::Text(_) => Some(DataType::Text),
        _ => None,
    }
}

/// One column of a primary key a WHERE clause fixes.
#[derive(Clone, Debug)]
pub(crate) enum KeyPart {
    /// A literal, as the key column's value.
    Fixed(Value),
    /// A parameter.
    Param(Param),
}

/// The stored key `parts` name; None when a parameter needs the general
/// path (NULL, a conversion, a value out of the column's range).
fn key_bytes(table: &Table, parts: &[KeyPart], params: &[Value]) -> Option<Vec<u8>> {
    let key_columns = table.primary_key_indices();
    let values = parts
        .iter()
        .zip(&key_columns)
        .map(|(part, &c)| match part {
            KeyPart::Fixed(value) => Some(value.clone()),
            KeyPart::Param(param) => {
                let value = param.value(params)?;
                if matches!(value, Value::Null) {
                    return None;
                }
                stored(table.columns[c].data_type, value)
            }
        })
        .collect::<Option<Vec<_>>>()?;
    table.key(&values).ok()
}

/// What a statement gives for a value: a literal, a parameter, the time.
fn source_of(expr: &Expr) -> Option<Source> {
    if let Some(param) = Param::of(expr) {
        return Some(Source::Param(param));
    }
    literal(expr)
        .map(Source::Literal)
        .or_else(|| is_now(expr).then_some(Source::Now))
}

/// What an UPDATE's SET stores in a column.
pub(crate) enum Assigned {
    /// A literal or a parameter.
    Value(Source),
    /// `column + n` or `column - n` of integer columns (pgbench's
    /// `abalance = abalance + :delta`), from the row before the UPDATE.
    Add { from: usize, delta: Delta },
}

/// The `n` of `column + n`: an integer literal, or a parameter (negated
/// for `column - $1`).
pub(crate) enum Delta {
    Fixed(i64),
    Param { param: Param, negate: bool },
}

impl Delta {
    /// The integer added; None when the general path must work it out.
    fn delta(&self, params: &[Value]) -> Option<i64> {
        match self {
            Delta::Fixed(n) => Some(*n),
            Delta::Param { param, negate } => {
                let n = match param.value(params)? {
                    Value::Int16(v) => i64::from(*v),
                    Value::Int32(v) => i64::from(*v),
                    Value::Int64(v) => *v,
                    _ => return None,
                };
                if *negate {
                    n.checked_neg()
                } else {
                    Some(n)
                }
            }
        }
    }
}

/// The fast path's reading of `SET column c = expr`, when it has one.
fn assigned(table: &Table, c: usize, expr: &Expr) -> Option<Assigned> {
    if let Some(source) = source_of(expr).filter(|s| !matches!(s, Source::Now)) {
        return Some(Assigned::Value(source));
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
    let negate = match op {
        ast::BinaryOperator::Plus => false,
        ast::BinaryOperator::Minus => true,
        _ => return None,
    };
    let delta = match Param::of(right) {
        Some(param) => Delta::Param { param, negate },
        None => {
            let ScalarValue::Int64(Some(n)) = literal(right)? else {
                return None;
            };
            Delta::Fixed(if negate { n.checked_neg()? } else { n })
        }
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

/// The full primary key a WHERE clause fixes with `key = literal` or
/// `key = $n` terms joined by AND, each key column exactly once and
/// nothing else; None otherwise.
fn key_of(table: &Table, selection: &Expr) -> Option<Vec<KeyPart>> {
    let key_columns = table.primary_key_indices();
    let mut key: Vec<Option<KeyPart>> = vec![None; key_columns.len()];
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
                let part = match Param::of(value) {
                    Some(param) => KeyPart::Param(param),
                    None => {
                        KeyPart::Fixed(key_literal(table.columns[c].data_type, &literal(value)?)?)
                    }
                };
                if key[position].replace(part).is_some() {
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
