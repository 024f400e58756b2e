//! [`ScanExec`]: a table scan that streams, so a query's memory does not grow
//! with the table.
//!
//! Planning reads nothing (EXPLAIN reads no rows). When DataFusion pulls a
//! batch, the scan reads up to [`BATCH_ROWS`] rows of its key ranges through
//! the statement's transaction (its snapshot merged with its own writes),
//! remembers the last key, and the next pull resumes after it:
//!
//! ```text
//!   ranges [a..f) [m..q)      pull 1: a b c   (resume after c)
//!                             pull 2: d e     (range done) m n
//!                             pull 3: o p     (done)
//! ```
//!
//! No storage iterator lives between pulls: the snapshot's versions stay
//! readable because garbage collection keeps every version a running
//! snapshot can see. Rows come out in primary key order, which the scan
//! declares, so `ORDER BY key` needs no sort and `LIMIT n` reads about n rows.
//!
//! A full scan of a large table with a key directory is cut into one
//! partition per core (`SET omen.parallelism`), each a slice of the key
//! range, so the rows are decoded, filtered and aggregated in parallel.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::MutexGuard;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, Statistics};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};

use super::convert;
use super::provider::Read;
use crate::engine::catalog::Table;
use crate::engine::error::Result;
use crate::engine::session::{successor, SharedTxn};
use crate::engine::types::DataType;

/// Rows per batch handed to DataFusion, at most.
pub const BATCH_ROWS: usize = 8192;
/// Rows of a scan's first batch; each next one is four times larger.
const FIRST_BATCH_ROWS: usize = 64;

/// What one scan reads: a table's key ranges through a transaction.
pub struct ScanExec {
    table: Arc<Table>,
    /// Every column the table offers (its storage key last, when keyed).
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    /// The reads of each partition, in key order within and across them.
    partitions: Vec<Arc<Vec<Read>>>,
    limit: Option<usize>,
    txn: SharedTxn,
    with_keys: bool,
    /// Rows read by this session's scans.
    scanned: Arc<AtomicU64>,
    /// The index the reads go through, when they do (rows then come in the
    /// index's order, not the key's).
    index: Option<String>,
    statistics: Arc<Statistics>,
    properties: Arc<PlanProperties>,
}

/// What a [`ScanExec`] is made of.
pub struct ScanParts {
    /// The table read.
    pub table: Arc<Table>,
    /// Every column the scan offers (the storage key last, when keyed).
    pub schema: SchemaRef,
    /// The columns DataFusion asked for, by position in `schema`.
    pub projection: Option<Vec<usize>>,
    /// The reads of each partition.
    pub partitions: Vec<Vec<Read>>,
    /// Rows the whole scan returns at most.
    pub limit: Option<usize>,
    /// The statement's transaction.
    pub txn: SharedTxn,
    /// Whether rows end with their storage key.
    pub with_keys: bool,
    /// The session's count of rows read.
    pub scanned: Arc<AtomicU64>,
    /// The index `partitions` read through ([`Read::Index`]), by name.
    pub index: Option<String>,
    /// What the planner may assume of the rows (whole scan).
    pub statistics: Statistics,
}

impl ScanExec {
    /// A scan of `parts`, declaring the key order of its rows.
    pub fn new(parts: ScanParts) -> DfResult<ScanExec> {
        let projected = match &parts.projection {
            Some(p) => Arc::new(parts.schema.project(p)?),
            None => parts.schema.clone(),
        };
        let ordering = match parts.index {
            None => key_ordering(&parts.table, &projected),
            Some(_) => Vec::new(),
        };
        let eq = EquivalenceProperties::new_with_orderings(projected, ordering);
        // The stream yields to tokio's budget itself (make_cooperative), so
        // DataFusion needs no wrapper above it (one that would also hide the
        // scan from limit pushdown).
        let count = parts.partitions.len().max(1);
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(count),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        Ok(ScanExec {
            table: parts.table,
            schema: parts.schema,
            projection: parts.projection,
            partitions: parts.partitions.into_iter().map(Arc::new).collect(),
            limit: parts.limit,
            txn: parts.txn,
            with_keys: parts.with_keys,
            scanned: parts.scanned,
            index: parts.index,
            statistics: Arc::new(parts.statistics),
            properties: Arc::new(properties),
        })
    }

    fn with_limit(&self, limit: Option<usize>) -> ScanExec {
        ScanExec {
            table: self.table.clone(),
            schema: self.schema.clone(),
            projection: self.projection.clone(),
            partitions: self.partitions.clone(),
            limit,
            txn: self.txn.clone(),
            with_keys: self.with_keys,
            scanned: self.scanned.clone(),
            index: self.index.clone(),
            statistics: self.statistics.clone(),
            properties: self.properties.clone(),
        }
    }
}

/// The primary key order the scan's rows come in, as far as the leading key
/// columns are in `projected`: none for tables without a key, or whose first
/// key column is a float (whose key order puts -0 and NaN where DataFusion's
/// sort does not).
fn key_ordering(table: &Table, projected: &SchemaRef) -> Vec<Vec<PhysicalSortExpr>> {
    let mut ordering = Vec::new();
    for index in table.primary_key_indices() {
        let column = &table.columns[index];
        if matches!(column.data_type, DataType::Float32 | DataType::Float64) {
            break;
        }
        let Ok(position) = projected.index_of(&column.name) else {
            break;
        };
        let options = SortOptions {
            descending: false,
            nulls_first: false,
        };
        let expr: Arc<dyn PhysicalExpr> = Arc::new(Column::new(&column.name, position));
        ordering.push(PhysicalSortExpr::new(expr, options));
    }
    if ordering.is_empty() {
        Vec::new()
    } else {
        vec![ordering]
    }
}

impl fmt::Debug for ScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScanExec({})", self.table.name)
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let reads = self.partitions.iter().flat_map(|p| p.iter());
        let (gets, scans) = reads.fold((0, 0), |(g, s), r| match r {
            Read::Get(_) => (g + 1, s),
            Read::Scan(..) | Read::Index(..) => (g, s + 1),
        });
        write!(f, "OmenScan: table={}", self.table.name)?;
        match &self.index {
            Some(index) => write!(f, ", index={index}, index_ranges={scans}")?,
            None => write!(f, ", key_lookups={gets}, key_ranges={scans}")?,
        }
        if self.partitions.len() > 1 {
            write!(f, ", partitions={}", self.partitions.len())?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &'static str {
        "OmenScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        // A limit applies to the whole scan; DataFusion keeps its own above
        // several partitions.
        if self.partitions.len() > 1 {
            return None;
        }
        let limit = match (limit, self.limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(Arc::new(self.with_limit(limit)))
    }

    fn fetch(&self) -> Option<usize> {
        self.limit
    }

    fn statistics_from_inputs(
        &self,
        _inputs: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let mut statistics = self.statistics.as_ref().clone();
        if let Some(limit) = self.limit {
            statistics.num_rows = statistics.num_rows.min(&Precision::Exact(limit));
        }
        if args.partition().is_some() {
            // Partitions are slices of about equal size.
            let parts = self.partitions.len().max(1);
            statistics.num_rows = statistics.num_rows.map(|rows| rows / parts).to_inexact();
        }
        Ok(Arc::new(statistics))
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let Some(ranges) = self.partitions.get(partition) else {
            return Err(DataFusionError::Internal(format!(
                "a scan of {} partitions asked for partition {partition}",
                self.partitions.len()
            )));
        };
        let chunks = Chunks {
            table: self.table.clone(),
            schema: self.schema.clone(),
            projection: self.projection.clone(),
            ranges: ranges.clone(),
            left: self.limit.unwrap_or(usize::MAX),
            txn: self.txn.clone(),
            with_keys: self.with_keys,
            scanned: self.scanned.clone(),
            index: self.index.clone(),
            range: 0,
            resume: None,
            batch_rows: FIRST_BATCH_ROWS,
        };
        let projected = self.properties.eq_properties.schema().clone();
        Ok(make_cooperative(Box::pin(RecordBatchStreamAdapter::new(
            projected,
            futures::stream::iter(chunks),
        ))))
    }
}

/// The batches of one scan, each read when DataFusion asks for it.
struct Chunks {
    table: Arc<Table>,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    ranges: Arc<Vec<Read>>,
    /// Rows the limit still allows.
    left: usize,
    txn: SharedTxn,
    with_keys: bool,
    scanned: Arc<AtomicU64>,
    /// The index the reads go through, for messages.
    index: Option<String>,
    /// The range being read.
    range: usize,
    /// Where the range being read goes on, when a batch ended inside it.
    resume: Option<Vec<u8>>,
    /// Rows the next batch reads at most.
    batch_rows: usize,
}

impl Chunks {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let want = self.batch_rows.min(self.left);
        // Batches start small and grow, so a LIMIT above reads little more
        // than it needs, and a long scan soon reads full batches.
        self.batch_rows = (self.batch_rows * 4).min(BATCH_ROWS);
        let mut batch = convert::RowBatch::new(
            &self.table,
            &self.schema,
            self.projection.as_deref(),
            self.with_keys,
            want,
        )?;
        let mut rows = 0;
        // Rows read through the transaction (its own writes merged in), added
        // to the batch in order with those read straight from storage.
        let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        {
            let mut txn = self.txn.lock();
            while rows + raw.len() < want && self.range < self.ranges.len() {
                match &self.ranges[self.range] {
                    Read::Get(key) => {
                        if let Some(bytes) = txn.get(key)? {
                            raw.push((key.clone(), bytes));
                        }
                        self.range += 1;
                    }
                    Read::Scan(from, to) => {
                        let start = self.resume.take().unwrap_or_else(|| from.clone());
                        let mut last: Option<Vec<u8>> = None;
                        match txn.snapshot_scan(&start, Some(to)) {
                            // Nothing of the transaction's own there: read
                            // straight from storage into the batch, without
                            // holding the transaction (beside the other
                            // partitions) or copying a row.
                            Some(snapshot) => {
                                for (key, bytes) in raw.drain(..) {
                                    batch.push(&self.table, &key, &bytes)?;
                                    rows += 1;
                                }
                                let table = &self.table;
                                MutexGuard::unlocked(&mut txn, || {
                                    snapshot.scan_each(&start, Some(to), |key, bytes| {
                                        batch.push(table, key, bytes)?;
                                        rows += 1;
                                        if rows < want {
                                            return Ok(true);
                                        }
                                        last = Some(key.to_vec());
                                        Ok(false)
                                    })
                                })?;
                            }
                            None => {
                                for entry in txn.scan(&start, Some(to)) {
                                    raw.push(entry?);
                                    if rows + raw.len() >= want {
                                        last = raw.last().map(|(key, _)| key.clone());
                                        break;
                                    }
                                }
                            }
                        }
                        match last {
                            Some(key) => self.resume = Some(successor(key)),
                            None => self.range += 1,
                        }
                    }
                    Read::Index(from, to) => {
                        // Entries first, then the rows they name, at the
                        // same snapshot (the scan borrows the transaction).
                        let start = self.resume.take().unwrap_or_else(|| from.clone());
                        let room = want - rows - raw.len();
                        let entries = txn
                            .scan(&start, Some(to))
                            .take(room)
                            .collect::<Result<Vec<_>>>()?;
                        match entries.last() {
                            Some((entry, _)) if entries.len() == room => {
                                self.resume = Some(successor(entry.clone()))
                            }
                            _ => self.range += 1,
                        }
                        for (_, key) in entries {
                            let Some(bytes) = txn.get(&key)? else {
                                return Err(crate::engine::error::Error::Corruption(format!(
                                    "an entry of index \"{}\" names a row that is not there",
                                    self.index.as_deref().unwrap_or_default()
                                )));
                            };
                            raw.push((key, bytes));
                        }
                    }
                }
            }
        }
        for (key, bytes) in &raw {
            batch.push(&self.table, key, bytes)?;
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        self.left -= rows;
        self.scanned.fetch_add(rows as u64, Ordering::Relaxed);
        batch.finish().map(Some)
    }
}

impl Iterator for Chunks {
    type Item = DfResult<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        match self.next_batch() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                self.left = 0;
                Some(Err(e.into()))
            }
        }
    }
}
