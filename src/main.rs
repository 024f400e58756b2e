//! The `omen` command: parses arguments and dispatches to `commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod repl;
mod server;

/// omen: a SQL database in one binary.
#[derive(Parser)]
#[command(name = "omen", version = omen::VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An SQL shell: interactive on a terminal, or running -c, -f or standard input.
    Repl(commands::repl::Args),
    /// Serve the database over the PostgreSQL wire protocol (psql, drivers, pgbench).
    Serve(commands::serve::Args),
    /// Load CSV, TSV, COPY text, JSON or Parquet files into a table, all or nothing.
    Import(commands::import::Args),
    /// Write a table or a query's result as CSV, TSV, COPY text, JSON or Parquet.
    Export(commands::export::Args),
    /// Back up a database into a repository, online and incremental; --list shows the backups.
    Backup(commands::backup::Args),
    /// Restore a backup into a new data directory, to a moment with --to-time.
    Restore(commands::restore::Args),
    /// Measure the engine: durable commit throughput beside the disk's fsync rate.
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("serve") {
        if let Err(e) = commands::serve::load_config_file(&argv) {
            eprintln!("omen: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Repl(args) => commands::repl::run(args),
        Command::Serve(args) => commands::serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Import(args) => commands::import::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Backup(args) => commands::backup::run(args),
        Command::Restore(args) => commands::restore::run(args),
        Command::Bench(args) => commands::bench::run(args).map(|()| ExitCode::SUCCESS),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("omen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
