//! omen: a SQL database in one binary.
//!
//! The library is the engine that the `omen` binary's shell, server and tools
//! share. Open a [`Database`], open a [`Session`] per client, and run
//! transactions through it:
//!
//! ```no_run
//! use omen::engine::catalog::ColumnDef;
//! use omen::engine::types::{DataType, Value};
//! use omen::{Database, Options};
//!
//! let db = Database::open("omen-data".as_ref(), Options::default())?;
//! let mut session = db.session();
//! session.create_table(
//!     "t",
//!     vec![ColumnDef::new("id", DataType::Int64), ColumnDef::new("v", DataType::Text)],
//!     &["id".to_string()],
//!     false,
//! )?;
//! session.insert("t", vec![Value::Int64(1), Value::Text("one".into())])?;
//! assert!(session.get("t", &[Value::Int64(1)])?.is_some());
//! # Ok::<(), omen::Error>(())
//! ```

pub mod engine;

/// How this omen was compiled, for example `opt-level 3, release profile`:
/// printed by `omen --version`, `omen bench` and the benchmarks, so a figure
/// says whether it measured an optimised build.
pub const BUILD: &str = env!("OMEN_BUILD");

/// omen's version and how it was compiled, as `omen --version` prints it:
/// `0.1.0 (opt-level 3, release profile)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("OMEN_BUILD"), ")");

pub use engine::sql::{
    BulkEncoder, Encoded, OnDuplicate, Output, PreparedStatement, RowError, RowStream, Rows,
};
pub use engine::{Database, Durability, Error, IsolationLevel, Options, Result, Session, SqlState};
