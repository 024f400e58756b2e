//! The general path: a query planned and run by DataFusion over the tables of
//! the catalog, read through one transaction.
//!
//! Each session has one [`Planner`] (a DataFusion context whose `omen.public`
//! schema is the catalog). Before a statement is planned, the planner is given
//! the statement's transaction; the table providers it creates capture it, read
//! their rows while the plan is built, and are dropped with the plan, so no
//! reference to the transaction outlives the statement.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::common::ScalarValue;
use datafusion::common::{DataFusionError, SchemaError};
use datafusion::execution::context::SessionContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use futures::StreamExt;

use super::convert::CHAR_LENGTH;
use super::pg_catalog::{Live, System, SystemSchema};
use super::provider::Tables;
use super::{compat, pg_functions};
use crate::engine::catalog::{did_you_mean, Catalog};
use crate::engine::error::{Error, Result, SqlState};
use crate::engine::session::SharedTxn;
use crate::engine::{memory, Backends, Canceller};

/// The rows a query returned.
#[derive(Clone, Debug)]
pub struct Rows {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows, in batches.
    pub batches: Vec<RecordBatch>,
    /// The command that returned them when it is not a query: INSERT,
    /// UPDATE or DELETE with RETURNING (its tag counts the rows).
    pub command: Option<&'static str>,
}

impl Rows {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// One row of one text column.
    pub fn single_text(name: &str, value: &str) -> Rows {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
        let column = Arc::new(StringArray::from(vec![value.to_string()]));
        let batch = RecordBatch::try_new(schema.clone(), vec![column])
            .expect("one text column matches its schema");
        Rows {
            schema,
            batches: vec![batch],
            command: None,
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's DataFusion context.
pub struct Planner {
    ctx: SessionContext,
    tables: Arc<Tables>,
    catalog: Arc<Catalog>,
    /// Stops a running query when the session's statement is cancelled.
    canceller: Canceller,
    /// Bytes a statement's result may take.
    memory_limit: usize,
    /// Partitions a statement's plan uses (`SET omen.parallelism`).
    parallelism: std::sync::atomic::AtomicUsize,
}

impl Planner {
    /// A planner over the tables of `catalog`, for a session acting as
    /// `user`.
    /// Sets how many partitions the plans of later statements use.
    pub fn set_parallelism(&self, partitions: usize) {
        self.parallelism
            .store(partitions.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Rows the scans of this planner's statements have read.
    pub fn rows_scanned(&self) -> u64 {
        self.tables
            .scanned
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn new(
        catalog: Arc<Catalog>,
        user: &str,
        canceller: Canceller,
        backends: Option<Arc<dyn Backends>>,
        context: &PlannerContext,
    ) -> Result<Planner> {
        let memory_limit = context.memory;
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema("omen", "public")
            .with_create_default_catalog_and_schema(false);
        let options = config.options_mut();
        options.sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        // One partition per core; each statement takes the session's setting.
        // Only scans large enough to be cut into partitions (and what joins
        // and aggregations repartition) run in parallel: spreading a small
        // scan's batches round-robin would read ahead past a LIMIT.
        options.execution.target_partitions = default_parallelism();
        options.optimizer.enable_round_robin_repartition = false;
        // Sorts, joins and aggregations spill to disk past the limit, or fail with 53200.
        // Each sort keeps a reserve for merging its spill files; a fixed 10 MB
        // (DataFusion's default) per partition would leave a small limit
        // nothing to sort with.
        options.execution.sort_spill_reservation_bytes = (memory_limit / 32).min(10 << 20);
        let mut runtime = RuntimeEnvBuilder::new().with_memory_limit(memory_limit, 1.0);
        if let Some(dir) = &context.spill_dir {
            let disk = DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.clone()]));
            runtime = runtime.with_disk_manager_builder(disk);
        }
        let runtime = runtime.build_arc().map_err(|e| map_error(e, &catalog))?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.add_analyzer_rule(Arc::new(super::arithmetic::CheckedArithmetic::new()));
        let tables = Arc::new(Tables::new(
            catalog.clone(),
            context.directories.clone(),
            context.stats.clone(),
        ));
        let schemas = MemoryCatalogProvider::new();
        schemas
            .register_schema("public", tables.clone())
            .map_err(|e| map_error(e, &catalog))?;
        for (name, system) in [
            ("pg_catalog", System::PgCatalog),
            ("information_schema", System::InformationSchema),
        ] {
            let live = context.advisory.as_ref().map(|a| Live {
                locks: a.locks.clone(),
                activity: a.activity.clone(),
                sequences: context.sequences.as_ref().map(|s| s.sequences.clone()),
                stats: context.stats.clone(),
            });
            let schema = SystemSchema::new(system, catalog.clone(), user, live);
            schemas
                .register_schema(name, Arc::new(schema))
                .map_err(|e| map_error(e, &catalog))?;
        }
        for function in pg_functions::backend_functions(backends, user) {
            ctx.register_udf(function);
        }
        if let Some(advisory) = &context.advisory {
            for function in pg_functions::advisory_functions(advisory) {
                ctx.register_udf(function);
            }
        }
        if let Some(sequences) = &context.sequences {
            for function in sequences.functions() {
                ctx.register_udf(function);
            }
        }
        if let Some(backup) = &context.backup {
            ctx.register_udf(pg_functions::backup_function(backup.clone()));
        }
        for function in pg_functions::functions(
            catalog.clone(),
            user,
            context.sequences.as_ref().map(|s| s.sequences.clone()),
        ) {
            ctx.register_udf(function);
        }
        ctx.register_catalog("omen", Arc::new(schemas));
        // The session functions clients ask PostgreSQL for.
        let version = format!(
            "PostgreSQL 15.0 (omen {}) on {}-linux",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        for (name, value) in [
            ("version", version.as_str()),
            ("current_user", user),
            ("session_user", user),
            ("current_role", user),
            ("user", user),
            ("current_database", "omen"),
            ("current_catalog", "omen"),
            ("current_schema", "public"),
        ] {
            ctx.register_udf(constant_function(name, value));
        }
        Ok(Planner {
            ctx,
            tables,
            catalog,
            canceller,
            memory_limit,
            parallelism: std::sync::atomic::AtomicUsize::new(context.parallelism),
        })
    }

    /// Plans and runs a query, reading tables through `txn`.
    pub async fn query(&self, txn: Option<&SharedTxn>, query: ast::Statement) -> Result<Rows> {
        self.run(txn, query, None, None).await
    }

    /// Plans and runs a query in which table `keyed` has one more column,
    /// [`KEY_COLUMN`](super::provider::KEY_COLUMN): each row's storage key, for
    /// the UPDATE or DELETE that reads those rows.
    pub async fn query_keyed(
        &self,
        txn: &SharedTxn,
        query: ast::Statement,
        keyed: u32,
    ) -> Result<Rows> {
        self.run(Some(txn), query, Some(keyed), None).await
    }

    /// Plans a statement without running it: the types its placeholders take
    /// from their context (`$1` at index 0, None where nothing fixes one) and
    /// its result columns.
    pub async fn describe(
        &self,
        txn: &SharedTxn,
        mut query: ast::Statement,
        keyed: Option<u32>,
    ) -> Result<(Vec<Option<DataType>>, SchemaRef)> {
        compat::rewrite(&mut query, &self.catalog);
        let _lend = Lend::new(&self.tables, Some(txn), keyed, None);
        let state = self.ctx.state();
        let describe = async {
            let plan = state
                .statement_to_plan(DfStatement::Statement(Box::new(query)))
                .await?;
            let mut params = Vec::new();
            for (name, data_type) in plan.get_parameter_types()? {
                let Some(n) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) else {
                    continue;
                };
                if n == 0 {
                    continue;
                }
                if params.len() < n {
                    params.resize(n, None);
                }
                params[n - 1] = data_type;
            }
            Ok::<_, DataFusionError>((params, plan.schema().inner().clone()))
        };
        describe.await.map_err(|e| map_error(e, &self.catalog))
    }

    /// Plans and runs a query to the end, under the memory limit; the
    /// arguments are [`start`](Planner::start)'s.
    async fn run(
        &self,
        txn: Option<&SharedTxn>,
        query: ast::Statement,
        keyed: Option<u32>,
        restrict: Option<Vec<Vec<u8>>>,
    ) -> Result<Rows> {
        let run = async {
            let (schema, mut stream) = self.start(txn, query, keyed, restrict).await?;
            let (mut batches, mut bytes) = (Vec::new(), 0usize);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                bytes += batch.get_array_memory_size();
                if bytes > self.memory_limit {
                    return Err(DataFusionError::External(Box::new(memory::exceeded(
                        "the statement's result",
                        self.memory_limit,
                    ))));
                }
                batches.push(batch);
            }
            Ok::<_, DataFusionError>(Rows {
                schema,
                batches,
                command: None,
            })
        };
        self.canceller
            .guard(async { run.await.map_err(|e| map_error(e, &self.catalog)) })
            .await
    }

    /// Plans a query and starts it: its batches arrive as the stream is
    /// polled. Table `keyed` has [`KEY_COLUMN`](super::provider::KEY_COLUMN),
    /// and reads only the storage keys in `restrict` when it is given.
    async fn start(
        &self,
        txn: Option<&SharedTxn>,
        mut query: ast::Statement,
        keyed: Option<u32>,
        restrict: Option<Vec<Vec<u8>>>,
    ) -> std::result::Result<(SchemaRef, SendableRecordBatchStream), DataFusionError> {
        compat::rewrite(&mut query, &self.catalog);
        let _lend = Lend::new(&self.tables, txn, keyed, restrict);
        // One copy of the session state per statement (it also fixes now()
        // for the statement), used to plan and to run.
        let mut state = self.ctx.state();
        state.config_mut().options_mut().execution.target_partitions =
            self.parallelism.load(std::sync::atomic::Ordering::Relaxed);
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(query)))
            .await?;
        let physical = state.create_physical_plan(&plan).await?;
        let schema = physical.schema();
        let stream = execute_stream(physical, state.task_ctx())?;
        // CHAR(n) columns leave the query blank-padded, as stored.
        if !schema
            .fields()
            .iter()
            .any(|f| f.metadata().contains_key(CHAR_LENGTH))
        {
            return Ok((schema, stream));
        }
        let padded = stream.map(|batch| {
            batch.and_then(|b| super::convert::pad_chars(b).map_err(DataFusionError::from))
        });
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema.clone(), padded));
        Ok((schema, stream))
    }

    /// Plans and starts a query; the caller pulls its batches one at a time
    /// with [`next_batch`](Planner::next_batch). Table `keyed`, when given,
    /// has [`KEY_COLUMN`](super::provider::KEY_COLUMN) (SELECT ... FOR
    /// UPDATE locks each row as it arrives).
    pub async fn stream(
        &self,
        txn: &SharedTxn,
        query: ast::Statement,
        keyed: Option<u32>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let start = async {
            self.start(Some(txn), query, keyed, None)
                .await
                .map_err(|e| map_error(e, &self.catalog))
        };
        self.canceller.guard(start).await
    }

    /// The next batch of a stream from [`stream`](Planner::stream).
    pub async fn next_batch(
        &self,
        stream: &mut SendableRecordBatchStream,
    ) -> Result<Option<RecordBatch>> {
        let next = async {
            stream
                .next()
                .await
                .transpose()
                .map_err(|e| map_error(e, &self.catalog))
        };
        self.canceller.guard(next).await
    }

    /// Evaluates a RETURNING clause, `items`, over `rows`, the rows a
    /// statement wrote into `table` (named as the table, or `alias`).
    pub async fn returning(
        &self,
        txn: &SharedTxn,
        table: &crate::engine::catalog::Table,
        alias: &str,
        rows: &[Vec<crate::engine::types::Value>],
        items: &[ast::SelectItem],
        tag: &'static str,
    ) -> Result<Rows> {
        let schema = super::convert::table_schema(table);
        let batch = super::convert::rows_to_batch(&schema, rows, None)?;
        let list: Vec<String> = items.iter().map(ToString::to_string).collect();
        let sql = format!(
            "SELECT {} FROM \"{}\" AS {}",
            list.join(", "),
            super::provider::RETURNING_TABLE,
            super::pg_catalog::quote_ident(alias)
        );
        let query = super::parse(&sql)?.remove(0);
        let mut rows = self.query_over(txn, batch, query).await?;
        rows.command = Some(tag);
        Ok(rows)
    }

    /// Runs `query`, in which the table [`RETURNING_TABLE`] holds `batch`:
    /// expressions evaluated over rows the engine has in hand.
    ///
    /// [`RETURNING_TABLE`]: super::provider::RETURNING_TABLE
    pub async fn query_over(
        &self,
        txn: &SharedTxn,
        batch: RecordBatch,
        query: ast::Statement,
    ) -> Result<Rows> {
        *self.tables.returning.lock() = Some(batch);
        let result = self.run(Some(txn), query, None, None).await;
        *self.tables.returning.lock() = None;
        result
    }

    /// Runs a keyed query (as [`query_keyed`](Planner::query_keyed) does)
    /// over only the rows with storage keys `keys`: a statement re-reads
    /// the rows that changed while it waited to lock them.
    pub async fn query_rechecked(
        &self,
        txn: &SharedTxn,
        query: ast::Statement,
        keyed: u32,
        keys: Vec<Vec<u8>>,
    ) -> Result<Rows> {
        self.run(Some(txn), query, Some(keyed), Some(keys)).await
    }
}

/// Partitions a plan uses unless the session says otherwise: one per core.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a planner works with beside its catalog: the key directory (which
/// cuts large scans into partitions), the memory a statement may use, and
/// where sorts, joins and aggregations spill past it.
pub struct PlannerContext {
    /// The in-memory key directories of the database's tables.
    pub directories: Arc<crate::engine::directory::Directories>,
    /// Row counts and column statistics of the tables.
    pub stats: Arc<super::Stats>,
    /// Bytes a statement's result and its operators may take.
    pub memory: usize,
    /// Partitions a statement's plan uses unless the session says otherwise.
    pub parallelism: usize,
    /// The directory spill files go to (the OS's temporary directory when None).
    pub spill_dir: Option<std::path::PathBuf>,
    /// The session's advisory locks, for pg_advisory_lock and its family.
    pub advisory: Option<super::pg_functions::Advisory>,
    /// The session's view of the sequences, for nextval and its family.
    pub sequences: Option<super::sequence_sql::SessionSequences>,
    /// Backups, for omen_backup().
    pub backup: Option<super::pg_functions::BackupFn>,
}

/// A function of no arguments that returns `value`.
fn constant_function(name: &str, value: &str) -> ScalarUDF {
    let value = ScalarValue::Utf8(Some(value.to_string()));
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// Gives the table providers a transaction for the length of one statement.
struct Lend<'a> {
    tables: &'a Tables,
}

impl<'a> Lend<'a> {
    fn new(
        tables: &'a Tables,
        txn: Option<&SharedTxn>,
        keyed: Option<u32>,
        restrict: Option<Vec<Vec<u8>>>,
    ) -> Lend<'a> {
        *tables.txn.lock() = txn.cloned();
        *tables.keyed.lock() = keyed;
        *tables.restrict.lock() = restrict.map(Arc::new);
        Lend { tables }
    }
}

impl Drop for Lend<'_> {
    fn drop(&mut self) {
        *self.tables.txn.lock() = None;
        *self.tables.keyed.lock() = None;
        *self.tables.restrict.lock() = None;
    }
}

/// A DataFusion failure as the engine error a user can act on.
pub fn map_error(e: DataFusionError, catalog: &Catalog) -> Error {
    let e = match e {
        DataFusionError::Context(_, inner) => return map_error(*inner, catalog),
        DataFusionError::Diagnostic(_, inner) => return map_error(*inner, catalog),
        DataFusionError::Shared(shared) => match Arc::try_unwrap(shared) {
            Ok(inner) => return map_error(inner, catalog),
            Err(shared) => DataFusionError::Execution(shared.to_string()),
        },
        DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(engine) => return *engine,
            Err(other) => match other.downcast::<DataFusionError>() {
                Ok(df) => return map_error(*df, catalog),
                Err(other) => DataFusionError::External(other),
            },
        },
        DataFusionError::ArrowError(arrow, _) => return map_arrow(*arrow),
        e => e,
    };
    let message = e.message().to_string();
    match &e {
        DataFusionError::SQL(parse, _) => {
            Error::invalid(SqlState::SYNTAX_ERROR, format!("syntax error: {parse}"))
        }
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound {
                field,
                valid_fields,
            } => Error::NotFound {
                code: SqlState::UNDEFINED_COLUMN,
                message: format!(
                    "column \"{}\" does not exist{}",
                    field.name(),
                    did_you_mean(field.name(), valid_fields.iter().map(|c| c.name.as_str()))
                ),
            },
            SchemaError::AmbiguousReference { field } => Error::invalid(
                SqlState::AMBIGUOUS_COLUMN,
                format!("column reference \"{}\" is ambiguous", field.name()),
            ),
            _ => Error::invalid(SqlState::SYNTAX_ERROR_OR_ACCESS_RULE, message),
        },
        DataFusionError::Plan(_) => {
            if let Some(name) = missing_table(&message) {
                let names = catalog.tables();
                return Error::NotFound {
                    code: SqlState::UNDEFINED_TABLE,
                    message: format!(
                        "relation \"{name}\" does not exist{}",
                        did_you_mean(name, names.iter().map(|t| t.name.as_str()))
                    ),
                };
            }
            let code = if message.contains("oerc")
                || message.contains("No function matches")
                || message.contains("Cannot infer common")
                || message.contains("not supported for")
            {
                SqlState::UNDEFINED_FUNCTION
            } else if message.contains("GROUP BY") || message.contains("aggregate") {
                SqlState::GROUPING_ERROR
            } else {
                SqlState::SYNTAX_ERROR_OR_ACCESS_RULE
            };
            Error::invalid(code, message)
        }
        DataFusionError::NotImplemented(what) => Error::Unsupported(what.clone()),
        DataFusionError::Execution(_) if message.to_lowercase().contains("divide by zero") => {
            division_by_zero()
        }
        DataFusionError::Execution(_) => Error::invalid(SqlState::DATA_EXCEPTION, message),
        DataFusionError::ResourcesExhausted(_) => Error::LimitExceeded {
            code: SqlState::OUT_OF_MEMORY,
            message: format!("out of memory: {message}"),
        },
        _ => Error::Internal(e.to_string()),
    }
}

fn map_arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    use datafusion::arrow::error::ArrowError;
    match e {
        ArrowError::DivideByZero => division_by_zero(),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            Error::invalid(SqlState::INVALID_TEXT_REPRESENTATION, m)
        }
        ArrowError::ArithmeticOverflow(m) => {
            Error::invalid(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, m)
        }
        ArrowError::ComputeError(m) if m.contains("verflow") => {
            Error::invalid(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, m)
        }
        ArrowError::ExternalError(inner) => match inner.downcast::<Error>() {
            Ok(engine) => *engine,
            Err(other) => Error::invalid(SqlState::DATA_EXCEPTION, other.to_string()),
        },
        other => Error::invalid(SqlState::DATA_EXCEPTION, other.to_string()),
    }
}

fn division_by_zero() -> Error {
    Error::invalid(SqlState::DIVISION_BY_ZERO, "division by zero")
}

/// The table name of DataFusion's "table 'omen.public.x' not found".
fn missing_table(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("table '")?;
    let name = rest.strip_suffix("' not found")?;
    Some(name.rsplit('.').next().unwrap_or(name))
}
