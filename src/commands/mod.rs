//! One module per subcommand: parse its arguments, open the database, call the
//! engine, print. No SQL semantics or storage logic lives here.

pub mod backup;
pub mod bench;
pub mod export;
pub mod import;
pub mod repl;
pub mod restore;
pub mod serve;
pub mod transfer;
