//! One module per subcommand: parse its arguments, open the database, call the
//! engine, print. No SQL semantics or storage logic lives here.

pub mod bench;
pub mod export;
pub mod import;
pub mod repl;
pub mod serve;
pub mod transfer;
