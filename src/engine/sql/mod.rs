//! SQL: statements parsed with the sqlparser DataFusion re-exports (PostgreSQL
//! dialect), queries planned and run by DataFusion over the engine's tables,
//! writes, DDL and transaction control run by the engine itself.
//!
//! ```text
//!   Session::execute(sql)
//!     -> parse (execute.rs)
//!     -> fast path: one row by full primary key, no planner (fastpath.rs)
//!     -> transaction control, DDL (execute.rs, ddl.rs)
//!     -> INSERT / UPDATE / DELETE: rows chosen by a query, written by the engine
//!     -> queries: DataFusion over TableProviders that read through the
//!        statement's transaction, key filters pushed down (planner.rs, provider.rs)
//! ```

mod alter_type;
mod arithmetic;
mod bulk;
mod checks;
mod compat;
mod convert;
mod cursors;
mod ddl;
mod describe;
mod execute;
mod fastpath;
pub mod format;
mod load;
mod pg_catalog;
mod pg_functions;
mod planner;
mod prepared;
mod provider;
mod results;
mod roles;
mod row_locks;
mod scan;
mod script;
mod sequence_sql;
mod settings;
mod stats;
mod upsert;

pub(crate) use checks::Checks;
pub use convert::{arrow_type, float_text, pg_type_name};
pub(crate) use cursors::Cursors;
pub(in crate::engine) use ddl::is_volatile_default;
pub use ddl::TableDef;
pub use describe::{placeholder, placeholder_count, Description, MAX_PARAMETERS};
pub(super) use execute::default_settings;
pub use execute::{ident, parse, parse_timeout, table_name, Output};
pub(crate) use load::{recover as recover_bulk_loads, BulkIn};
pub use load::{BulkEncoder, Encoded, OnDuplicate, RowError};
pub use planner::{default_parallelism, Planner, PlannerContext, Rows};
pub(crate) use prepared::PreparedStatements;
pub use prepared::{
    bind_parameters, Parsed, PreparedStatement, StatementCache, STATEMENT_CACHE_ENTRIES,
};
pub(crate) use results::Streams;
pub use results::{Batches, RowStream};
pub use script::{is_complete, split_statements};
pub(crate) use sequence_sql::Seen;
pub(crate) use stats::Stats;
