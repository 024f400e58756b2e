//! `omen repl`: the interactive SQL shell, and the same shell for scripts
//! (`-c`, `-f`, standard input).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use omen::{Database, Options};

use crate::repl::{Format, OnError, Shell};

/// Arguments of `omen repl`.
#[derive(clap::Args)]
pub struct Args {
    /// The data directory (created when missing).
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The data directory, as a flag (default: omen-data; a DIR argument wins).
    #[arg(long, env = "OMEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Run these SQL statements and exit (repeatable; runs before -f).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,
    /// Run the SQL statements in FILE and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// How to print rows.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Go on after a failed statement (the exit status is still non-zero).
    #[arg(long)]
    continue_on_error: bool,
    /// Print how long each statement took, on standard error.
    #[arg(long)]
    timing: bool,
    /// Memory one statement (its sorts, joins and result) or one
    /// transaction's writes may take (`512MB`, `4GB`); past it the statement
    /// fails with 53200. Default: a quarter of the machine's memory.
    #[arg(long, env = "OMEN_MEMORY_LIMIT", value_name = "SIZE", value_parser = memory_size)]
    memory_limit: Option<usize>,
    /// Partitions (threads) a query uses; sessions may SET omen.parallelism.
    /// Default: one per core.
    #[arg(long, env = "OMEN_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Archive every commit into this backup repository (point-in-time
    /// recovery; see `omen serve --archive`).
    #[arg(long, env = "OMEN_ARCHIVE", value_name = "REPO")]
    archive: Option<PathBuf>,
}

/// Opens the database and runs the shell; exits with 1 when a statement
/// failed (its error is printed already).
pub fn run(args: Args) -> Result<ExitCode> {
    let dir = args
        .dir
        .or(args.data_dir)
        .unwrap_or_else(|| PathBuf::from("omen-data"));
    let options = Options {
        memory_limit: args.memory_limit,
        parallelism: args.threads.map(usize::from),
        archive: args.archive,
        ..Options::default()
    };
    let db = Database::open(&dir, options)
        .with_context(|| format!("opening the database in {}", dir.display()))?;
    let on_error = if args.continue_on_error {
        OnError::Continue
    } else {
        OnError::Stop
    };
    let mut shell = Shell::new(db, args.format, args.timing, on_error);
    let scripted = !args.commands.is_empty() || args.file.is_some();
    let mut go_on = true;
    for command in &args.commands {
        if !go_on {
            break;
        }
        go_on = shell.run_script(command)?;
    }
    if let (Some(file), true) = (&args.file, go_on) {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        shell.run_script(&text)?;
    }
    if !scripted {
        if std::io::stdin().is_terminal() {
            shell.interactive(Some(dir.join("repl_history")))?;
        } else {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading SQL from standard input")?;
            shell.run_script(&text)?;
        }
    }
    Ok(if shell.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A `--memory-limit` value.
pub fn memory_size(text: &str) -> Result<usize, String> {
    omen::engine::memory::parse_size(text)
        .ok_or_else(|| format!("\"{text}\" is not a size such as 512MB or 4GB"))
}
