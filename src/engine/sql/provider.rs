//! Tables as DataFusion sees them: a [`TableProvider`] per table that reads
//! through the statement's transaction, and a [`SchemaProvider`] that finds
//! tables in the engine's catalog.
//!
//! A scan streams its rows (see [`super::scan`]). Filters on primary key
//! columns become key lookups and key range reads and are reported to
//! DataFusion as exact, so it does not filter those rows again:
//!
//! ```text
//!   WHERE a = 1 AND b IN (2, 3) AND c > 10      primary key (a, b, c)
//!     -> [1,2,10] .. [1,2,+inf]  and  [1,3,10] .. [1,3,+inf]   (c > 10 excludes 10)
//! ```
//!
//! Equalities and IN lists fix leading key columns; one range (<, <=, >, >=,
//! BETWEEN) may follow on the next column. Filters on later key columns, or
//! with literals of another type than the column's, stay with DataFusion.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session as PlannerSession, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;
use std::sync::atomic::AtomicU64;

use super::scan::{ScanExec, ScanParts};

use super::convert;
use super::stats::Stats;
use crate::engine::catalog::{Catalog, Index, Table};
use crate::engine::directory::Directories;
use crate::engine::encoding::keycode;
use crate::engine::error::{Error, Result};
use crate::engine::session::{successor, SharedTxn};
use crate::engine::types::{DataType, Value};

/// The column an UPDATE or DELETE reads its target rows' storage keys from.
pub const KEY_COLUMN: &str = "__omen_key";

/// The relation a RETURNING clause reads: the rows the statement wrote.
pub const RETURNING_TABLE: &str = "__omen_returning";

/// A full scan of a table whose key directory holds fewer keys reads in one
/// partition: splitting it would cost more than it saves.
const PARALLEL_MIN_ROWS: usize = 256 * 1024;
/// Past this many point prefixes (IN lists multiplied out), a filter is left
/// to DataFusion rather than turned into lookups.
const MAX_POINTS: usize = 1024;

/// The tables of the `public` schema, read through the transaction of the
/// statement being planned.
pub struct Tables {
    catalog: Arc<Catalog>,
    directories: Arc<Directories>,
    stats: Arc<Stats>,
    /// The transaction of the statement being planned, set by the session.
    pub txn: Mutex<Option<SharedTxn>>,
    /// The table whose scans add [`KEY_COLUMN`] in this statement.
    pub keyed: Mutex<Option<u32>>,
    /// The only rows the keyed table's scans read, by storage key, when a
    /// statement re-reads rows that changed while it waited to lock them.
    pub restrict: Mutex<Option<Arc<Vec<Vec<u8>>>>>,
    /// Rows the scans of this session have read.
    pub scanned: Arc<AtomicU64>,
    /// The rows an INSERT, UPDATE or DELETE wrote, while its RETURNING
    /// clause is evaluated over them (as [`RETURNING_TABLE`]).
    pub returning: Mutex<Option<datafusion::arrow::record_batch::RecordBatch>>,
}

impl Tables {
    pub fn new(catalog: Arc<Catalog>, directories: Arc<Directories>, stats: Arc<Stats>) -> Tables {
        Tables {
            catalog,
            directories,
            stats,
            txn: Mutex::new(None),
            keyed: Mutex::new(None),
            restrict: Mutex::new(None),
            returning: Mutex::new(None),
            scanned: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tables")
    }
}

#[async_trait]
impl SchemaProvider for Tables {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .tables()
            .iter()
            .map(|t| t.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if name == RETURNING_TABLE {
            let Some(batch) = self.returning.lock().clone() else {
                return Ok(None);
            };
            let table =
                datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])?;
            return Ok(Some(Arc::new(table)));
        }
        let Ok(table) = self.catalog.table(name) else {
            return Ok(None);
        };
        let Some(txn) = self.txn.lock().clone() else {
            return Err(DataFusionError::Internal(
                "a table was read outside a statement".into(),
            ));
        };
        let with_keys = *self.keyed.lock() == Some(table.id);
        let restrict = if with_keys {
            self.restrict.lock().clone()
        } else {
            None
        };
        Ok(Some(Arc::new(TableScan {
            schema: table_schema(&table, with_keys),
            restrict,
            table,
            txn,
            with_keys,
            scanned: self.scanned.clone(),
            directories: self.directories.clone(),
            stats: self.stats.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.table(name).is_ok()
    }
}

/// One table, read through one transaction.
pub struct TableScan {
    table: Arc<Table>,
    schema: SchemaRef,
    txn: SharedTxn,
    /// Whether rows end with their storage key, as [`KEY_COLUMN`].
    with_keys: bool,
    /// The only storage keys to read (see [`Tables::restrict`]).
    restrict: Option<Arc<Vec<Vec<u8>>>>,
    scanned: Arc<AtomicU64>,
    directories: Arc<Directories>,
    stats: Arc<Stats>,
}

/// The columns a scan of `table` offers: the table's, and with `with_keys`
/// its storage key last, as [`KEY_COLUMN`].
fn table_schema(table: &Table, with_keys: bool) -> SchemaRef {
    let schema = convert::table_schema(table);
    if !with_keys {
        return schema;
    }
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
        KEY_COLUMN,
        datafusion::arrow::datatypes::DataType::Binary,
        false,
    )));
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}

impl fmt::Debug for TableScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableScan({})", self.table.name)
    }
}

#[async_trait]
impl TableProvider for TableScan {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        // Filters the primary key enforces are exact. Those an index serves
        // are inexact (DataFusion filters the rows again): which index a
        // scan reads depends on all of its filters, and DataFusion may ask
        // about them a few at a time.
        let read_ts = self.txn.lock().read_ts();
        let primary = KeyRanges::plan(&self.table, filters).used;
        let indexed = match self.restrict {
            Some(_) => vec![false; filters.len()],
            None => KeyRanges::indexed(&self.table, filters, read_ts),
        };
        Ok(primary
            .into_iter()
            .zip(indexed)
            .map(|(primary, indexed)| match (primary, indexed) {
                (true, _) => TableProviderFilterPushDown::Exact,
                (false, true) => TableProviderFilterPushDown::Inexact,
                (false, false) => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn PlannerSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let filters: Vec<&Expr> = filters.iter().collect();
        let read_ts = self.txn.lock().read_ts();
        let (ranges, index) = self.access(&filters, read_ts);
        let mut ranges = ranges.ranges;
        if let Some(keys) = &self.restrict {
            ranges = keys
                .iter()
                .filter(|k| ranges.iter().any(|r| r.contains(k)))
                .map(|k| Read::Get(k.clone()))
                .collect();
        }
        let parts = state.config_options().execution.target_partitions;
        let whole = matches!(ranges.as_slice(),
            [Read::Scan(from, to)] if *from == self.table.key_prefix() && *to == self.table.key_end());
        let points = match (whole, limit) {
            (true, None) if self.directories.len(self.table.id).is_some() => self
                .directories
                .split_points(self.table.id, parts, PARALLEL_MIN_ROWS),
            // Without a directory, the table's files tell where to cut.
            (true, None) => self
                .stats
                .cuts(&self.table, parts, PARALLEL_MIN_ROWS as u64),
            _ => Vec::new(),
        };
        let partitions = if points.is_empty() {
            vec![ranges]
        } else {
            let mut edges = vec![self.table.key_prefix()];
            edges.extend(points);
            edges.push(self.table.key_end());
            edges
                .windows(2)
                .map(|w| vec![Read::Scan(w[0].clone(), w[1].clone())])
                .collect()
        };
        let reads: Vec<&Read> = partitions.iter().flatten().collect();
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let statistics = self.stats.scan(&self.table, &reads, &projected);
        Ok(Arc::new(ScanExec::new(ScanParts {
            statistics,
            table: self.table.clone(),
            schema: self.schema.clone(),
            projection: projection.cloned(),
            partitions,
            limit,
            txn: self.txn.clone(),
            with_keys: self.with_keys,
            scanned: self.scanned.clone(),
            index: index.map(|i| i.name.clone()),
        })?))
    }
}

impl TableScan {
    /// How the scan reads the table for `filters`: the primary key when
    /// it only re-reads given rows (see [`Tables::restrict`]), else the
    /// best access [`KeyRanges::choose`] finds.
    fn access(&self, filters: &[&Expr], read_ts: u64) -> (KeyRanges, Option<&Index>) {
        if self.restrict.is_some() {
            return (KeyRanges::plan(&self.table, filters), None);
        }
        KeyRanges::choose(&self.table, filters, read_ts)
    }
}

/// What the key filters of a scan allow: the byte ranges to read, and which
/// filters those ranges enforce exactly.
pub struct KeyRanges {
    /// Half-open ranges of storage keys, or single keys to get.
    ranges: Vec<Read>,
    /// For each filter, whether the ranges enforce it.
    pub used: Vec<bool>,
}

/// One read of a scan: a key to get, or a half-open range of keys.
pub enum Read {
    Get(Vec<u8>),
    Scan(Vec<u8>, Vec<u8>),
    /// A half-open range of a secondary index's entries, read with the rows
    /// they name.
    Index(Vec<u8>, Vec<u8>),
}

impl Read {
    fn contains(&self, key: &[u8]) -> bool {
        match self {
            Read::Get(k) => k == key,
            Read::Scan(from, to) | Read::Index(from, to) => {
                from.as_slice() <= key && key < to.as_slice()
            }
        }
    }
}

/// The keys a scan's filters are matched against: the primary key, or the
/// columns of a secondary index.
struct Layout<'a> {
    table: &'a Table,
    /// Positions of the key's columns in the table.
    columns: Vec<usize>,
    index: Option<&'a Index>,
}

impl Layout<'_> {
    /// The first key of entries whose leading columns equal `values`.
    fn encode(&self, values: &[Value]) -> Result<Vec<u8>> {
        let Some(index) = self.index else {
            return self.table.key_prefix_of(values);
        };
        let mut out = index.key_prefix();
        for value in values {
            keycode::encode_value(value, &mut out)?;
        }
        Ok(out)
    }

    fn start(&self) -> Vec<u8> {
        self.index
            .map_or_else(|| self.table.key_prefix(), Index::key_prefix)
    }

    fn end(&self) -> Vec<u8> {
        self.index
            .map_or_else(|| self.table.key_end(), Index::key_end)
    }
}

/// What the filters say about one key column.
#[derive(Default)]
struct ColumnFilter {
    /// Values it must equal one of (None: any).
    points: Option<Vec<Value>>,
    lower: Option<Bound<Value>>,
    upper: Option<Bound<Value>>,
    filters: Vec<usize>,
}

impl KeyRanges {
    /// The ranges for `filters` over `table`'s primary key.
    pub fn plan(table: &Table, filters: &[&Expr]) -> KeyRanges {
        let layout = Layout {
            table,
            columns: table.primary_key_indices(),
            index: None,
        };
        KeyRanges::plan_layout(&layout, filters)
    }

    /// The ranges for `filters` over the entries of `index` of `table`.
    fn plan_index(table: &Table, index: &Index, filters: &[&Expr]) -> KeyRanges {
        let layout = Layout {
            table,
            columns: table.index_columns(index),
            index: Some(index),
        };
        let mut ranges = KeyRanges::plan_layout(&layout, filters);
        for read in &mut ranges.ranges {
            if let Read::Scan(from, to) = read {
                *read = Read::Index(std::mem::take(from), std::mem::take(to));
            }
        }
        ranges
    }

    /// For each filter, whether an index `read_ts` may read serves it.
    fn indexed(table: &Table, filters: &[&Expr], read_ts: u64) -> Vec<bool> {
        let mut indexed = vec![false; filters.len()];
        for index in table.indexes.iter().filter(|i| i.visible_from <= read_ts) {
            let used = KeyRanges::plan_index(table, index, filters).used;
            for (any, used) in indexed.iter_mut().zip(used) {
                *any |= used;
            }
        }
        indexed
    }

    /// How `table` is best read for `filters`: through its primary key when
    /// a filter constrains it or no index helps, else through the index
    /// whose leading columns the most filters constrain (a unique one when
    /// that ties). Indexes built after the snapshot `read_ts` are passed
    /// over: they lack the rows it sees.
    pub fn choose<'a>(
        table: &'a Table,
        filters: &[&Expr],
        read_ts: u64,
    ) -> (KeyRanges, Option<&'a Index>) {
        let primary = KeyRanges::plan(table, filters);
        if primary.used.iter().any(|u| *u) {
            return (primary, None);
        }
        let mut best: Option<(KeyRanges, &Index, (usize, bool))> = None;
        for index in table.indexes.iter().filter(|i| i.visible_from <= read_ts) {
            let ranges = KeyRanges::plan_index(table, index, filters);
            let used = ranges.used.iter().filter(|u| **u).count();
            if used == 0 {
                continue;
            }
            let score = (used, index.unique);
            if best.as_ref().is_none_or(|(_, _, s)| score > *s) {
                best = Some((ranges, index, score));
            }
        }
        match best {
            Some((ranges, index, _)) => (ranges, Some(index)),
            None => (primary, None),
        }
    }

    fn plan_layout(layout: &Layout<'_>, filters: &[&Expr]) -> KeyRanges {
        let table = layout.table;
        let key = layout.columns.clone();
        let mut columns: Vec<ColumnFilter> = key.iter().map(|_| ColumnFilter::default()).collect();
        for (i, filter) in filters.iter().enumerate() {
            if let Some((position, constraint)) = key_constraint(table, &key, filter) {
                columns[position].add(constraint, i);
            }
        }
        let mut used = vec![false; filters.len()];
        let mut prefixes: Vec<Vec<Value>> = vec![Vec::new()];
        let mut range = None;
        for column in columns {
            if let Some(points) = column.points {
                let points: Vec<Value> = points
                    .into_iter()
                    .filter(|p| column_admits(&column.lower, &column.upper, p))
                    .collect();
                if prefixes.len() * points.len().max(1) > MAX_POINTS {
                    break;
                }
                prefixes = prefixes
                    .iter()
                    .flat_map(|prefix| {
                        points.iter().map(move |p| {
                            let mut next = prefix.clone();
                            next.push(p.clone());
                            next
                        })
                    })
                    .collect();
                column.filters.iter().for_each(|&f| used[f] = true);
                continue;
            }
            if column.lower.is_some() || column.upper.is_some() {
                range = Some((column.lower, column.upper));
                column.filters.iter().for_each(|&f| used[f] = true);
            }
            break;
        }
        let full_key = layout.index.is_none()
            && !key.is_empty()
            && prefixes.first().is_some_and(|p| p.len() == key.len());
        let mut ranges = Vec::with_capacity(prefixes.len());
        for prefix in prefixes {
            let Ok(start) = layout.encode(&prefix) else {
                // A value the key encoding refuses: leave every filter to DataFusion.
                return KeyRanges::everything(layout, filters.len());
            };
            if full_key {
                ranges.push(Read::Get(start));
                continue;
            }
            let end = if prefix.is_empty() {
                layout.end()
            } else {
                successor(start.clone())
            };
            let Some((lower, upper)) = &range else {
                ranges.push(Read::Scan(start, end));
                continue;
            };
            let encode = |v: &Value| {
                let mut k = prefix.clone();
                k.push(v.clone());
                layout.encode(&k)
            };
            let from = match lower {
                Some(Bound::Included(v)) => encode(v),
                Some(Bound::Excluded(v)) => encode(v).map(successor),
                _ => Ok(start),
            };
            let to = match upper {
                Some(Bound::Included(v)) => encode(v).map(successor),
                Some(Bound::Excluded(v)) => encode(v),
                // An index holds NULLs, which sort last and no range admits.
                _ if layout.index.is_some() => encode(&Value::Null),
                _ => Ok(end),
            };
            match (from, to) {
                (Ok(from), Ok(to)) if from < to => ranges.push(Read::Scan(from, to)),
                (Ok(_), Ok(_)) => {}
                _ => return KeyRanges::everything(layout, filters.len()),
            }
        }
        KeyRanges { ranges, used }
    }

    fn everything(layout: &Layout<'_>, filters: usize) -> KeyRanges {
        KeyRanges {
            ranges: vec![Read::Scan(layout.start(), layout.end())],
            used: vec![false; filters],
        }
    }
}

enum Constraint {
    Points(Vec<Value>),
    Lower(Bound<Value>),
    Upper(Bound<Value>),
    Between(Value, Value),
}

impl ColumnFilter {
    fn add(&mut self, constraint: Constraint, filter: usize) {
        self.filters.push(filter);
        match constraint {
            Constraint::Points(mut values) => {
                if let Some(existing) = &self.points {
                    values.retain(|v| existing.contains(v));
                }
                values.sort_by(|a, b| a.sql_cmp(b).unwrap_or(Ordering::Equal));
                values.dedup();
                self.points = Some(values);
            }
            Constraint::Lower(b) => {
                self.lower = Some(tighter(self.lower.take(), b, Ordering::Greater))
            }
            Constraint::Upper(b) => {
                self.upper = Some(tighter(self.upper.take(), b, Ordering::Less))
            }
            Constraint::Between(low, high) => {
                self.add(Constraint::Lower(Bound::Included(low)), filter);
                self.add(Constraint::Upper(Bound::Included(high)), filter);
                self.filters.pop();
                self.filters.pop();
            }
        }
    }
}

/// The stricter of two bounds on one side; `stricter` is the ordering a
/// stricter bound's value has against the other's.
fn tighter(current: Option<Bound<Value>>, new: Bound<Value>, stricter: Ordering) -> Bound<Value> {
    let Some(current) = current else {
        return new;
    };
    let value = |b: &Bound<Value>| match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.clone()),
        Bound::Unbounded => None,
    };
    match (value(&current), value(&new)) {
        (Some(a), Some(b)) => match b.sql_cmp(&a) {
            Some(o) if o == stricter => new,
            Some(Ordering::Equal) if matches!(new, Bound::Excluded(_)) => new,
            _ => current,
        },
        (None, _) => new,
        (_, None) => current,
    }
}

fn column_admits(lower: &Option<Bound<Value>>, upper: &Option<Bound<Value>>, v: &Value) -> bool {
    let above = match lower {
        Some(Bound::Included(l)) => v.sql_cmp(l) != Some(Ordering::Less),
        Some(Bound::Excluded(l)) => v.sql_cmp(l) == Some(Ordering::Greater),
        _ => true,
    };
    let below = match upper {
        Some(Bound::Included(u)) => v.sql_cmp(u) != Some(Ordering::Greater),
        Some(Bound::Excluded(u)) => v.sql_cmp(u) == Some(Ordering::Less),
        _ => true,
    };
    above && below
}

/// The key column a filter constrains (its position in the key) and how,
/// when the filter is one omen can enforce by key ranges exactly.
fn key_constraint(table: &Table, key: &[usize], filter: &Expr) -> Option<(usize, Constraint)> {
    let column_position = |e: &Expr| -> Option<usize> {
        let Expr::Column(c) = e else { return None };
        let index = table.columns.iter().position(|col| col.name == c.name)?;
        key.iter().position(|k| *k == index)
    };
    let literal = |e: &Expr, position: usize| -> Option<Value> {
        let Expr::Literal(scalar, _) = e else {
            return None;
        };
        key_value(table, key[position], scalar)
    };
    match filter {
        // DataFusion turns short IN lists into ORs of equalities.
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (p, Constraint::Points(mut a)) = key_constraint(table, key, left)? else {
                return None;
            };
            let (q, Constraint::Points(b)) = key_constraint(table, key, right)? else {
                return None;
            };
            (p == q).then(|| {
                a.extend(b);
                (p, Constraint::Points(a))
            })
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (position, value, op) = match (column_position(left), column_position(right)) {
                (Some(p), None) => (p, literal(right, p)?, *op),
                (None, Some(p)) => (p, literal(left, p)?, op.swap()?),
                _ => return None,
            };
            let constraint = match op {
                Operator::Eq => Constraint::Points(vec![value]),
                Operator::Lt => Constraint::Upper(Bound::Excluded(value)),
                Operator::LtEq => Constraint::Upper(Bound::Included(value)),
                Operator::Gt => Constraint::Lower(Bound::Excluded(value)),
                Operator::GtEq => Constraint::Lower(Bound::Included(value)),
                _ => return None,
            };
            Some((position, constraint))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let position = column_position(expr)?;
            let (low, high) = (literal(low, position)?, literal(high, position)?);
            Some((position, Constraint::Between(low, high)))
        }
        Expr::InList(list) if !list.negated => {
            let position = column_position(&list.expr)?;
            let values = list
                .list
                .iter()
                .map(|e| literal(e, position))
                .collect::<Option<Vec<_>>>()?;
            Some((position, Constraint::Points(values)))
        }
        _ => None,
    }
}

/// A literal as a value of key column `index`, when it has exactly that
/// column's type and is not NULL (a NULL comparison matches nothing, which
/// DataFusion handles).
fn key_value(table: &Table, index: usize, scalar: &ScalarValue) -> Option<Value> {
    let column = &table.columns[index];
    if scalar.is_null() || scalar.data_type() != convert::arrow_type(column.data_type) {
        return None;
    }
    let array = scalar.to_array().ok()?;
    match (convert::value_at(array.as_ref(), 0).ok()?, column.data_type) {
        // Keys hold CHAR(n) values as stored: blank-padded.
        (Value::Text(text), DataType::Char(n)) => Some(Value::Text(convert::pad_char(
            text.trim_end_matches(' '),
            n as usize,
        ))),
        (value, _) => Some(value),
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> DataFusionError {
        DataFusionError::External(Box::new(e))
    }
}
