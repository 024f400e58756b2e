//! The engine: everything below the shell, the server and the tools.
//!
//! Layers, each importing only those below it: [`Session`] (one per shell or
//! connection) over [`catalog`] over [`mvcc`] over [`storage`]; [`encoding`]
//! and [`types`] are shared by all of them.

pub mod activity;
pub mod backup;
mod cancel;
pub mod catalog;
mod database;
mod directory;
pub mod encoding;
mod error;
mod foreign_keys;
pub mod index;
pub mod locks;
pub mod memory;
pub mod mvcc;
mod primary_key;
pub mod scram;
mod secondary;
pub mod sequences;
mod session;
pub mod sql;
pub mod storage;
pub mod types;

pub use cancel::{Backends, Canceller};
pub use database::{Database, Options};
pub use directory::DirectoryKind;
pub use error::{panic_message, Error, Result, SqlState};
pub use mvcc::{Durability, IsolationLevel};
pub use session::{KeyBound, Session};
