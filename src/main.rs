//! The `omen` command: parses arguments and dispatches to `commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// omen: a SQL database in one binary.
#[derive(Parser)]
#[command(name = "omen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure the engine: durable commit throughput beside the disk's fsync rate.
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Bench(args) => commands::bench::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("omen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
