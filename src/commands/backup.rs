//! `omen backup`: an online, incremental backup into a repository, its
//! retention rules, and `--list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use omen::engine::backup::{self, BackupRequest, BackupSummary, Failure, FailureKind, Retention};
use omen::engine::DirectoryKind;
use omen::{Database, Options, SqlState};

use super::transfer::Progress;

/// Arguments of `omen backup`.
#[derive(clap::Args)]
pub struct Args {
    /// The data directory to back up (default: omen-data). When a server or
    /// shell holds it, that process takes the backup (through DIR/omen.sock).
    #[arg(long, env = "OMEN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The backup repository (created when missing). Backups in one
    /// repository share the files that did not change.
    #[arg(long, value_name = "REPO", required_unless_present = "list")]
    to: Option<PathBuf>,
    /// List the backups in REPO and exit.
    #[arg(long, value_name = "REPO", conflicts_with_all = ["to", "verify", "keep", "keep_within"])]
    list: Option<PathBuf>,
    /// After the backup, delete all but the newest N (with --keep-within:
    /// keep those either rule keeps). The newest valid backup always stays.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
    /// After the backup, delete those older than this (`7d`, `12h`, `30min`).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Restore the new backup into a scratch directory and check every
    /// file's checksum, the catalog and every table's row count.
    #[arg(long)]
    verify: bool,
    /// No progress bar and no summary (errors are still printed).
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Runs `omen backup`; the exit status tells what failed (see [`exit`]).
pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(repository) = &args.list {
        return Ok(exit(list(repository, args.json)));
    }
    let keep_within = match &args.keep_within {
        Some(text) => {
            match omen::engine::sql::parse_timeout(text).filter(|d| !d.is_zero()) {
                Some(d) => Some(d),
                None => {
                    eprintln!("omen: --keep-within: \"{text}\" is not a duration such as 7d, 12h or 30min");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        None => None,
    };
    let repository = args.to.clone().expect("clap requires --to without --list");
    let request = BackupRequest {
        repository: std::path::absolute(&repository).unwrap_or(repository),
        retention: Retention {
            keep: args.keep.map(|n| n as usize),
            keep_within,
        },
        verify: args.verify,
    };
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("omen-data"));
    let outcome = take(&dir, &request, args.quiet).map(|summary| {
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&summary).expect("a summary serialises")
            );
        } else if !args.quiet {
            eprintln!("{}", describe(&summary, &request.repository));
        }
    });
    Ok(exit(outcome))
}

/// The exit status of a backup or restore: 0 on success, else the
/// failure's documented code, after printing it.
pub fn exit(outcome: Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("omen: {e}");
            ExitCode::from(e.kind.exit_code())
        }
    }
}

fn take(dir: &Path, request: &BackupRequest, quiet: bool) -> Result<BackupSummary, Failure> {
    if !dir.join("CURRENT").exists() {
        return Err(Failure::new(
            FailureKind::Failed,
            format!("{} holds no omen database", dir.display()),
        ));
    }
    // Reads go to storage: a backup does not need the key directory.
    let options = Options {
        key_directory: DirectoryKind::None,
        ..Options::default()
    };
    match Database::open(dir, options) {
        Ok(db) => {
            let progress = Progress::new(Some(0), quiet);
            let result = db.backup(request, &|done, total| progress.bytes(done, total));
            progress.finish();
            result
        }
        Err(e) if e.sqlstate() == SqlState::OBJECT_IN_USE => {
            backup::control::request_backup(dir, request)
        }
        Err(e) => Err(Failure::new(
            FailureKind::Failed,
            format!("opening the database in {}: {e}", dir.display()),
        )),
    }
}

fn describe(s: &BackupSummary, repository: &Path) -> String {
    let mut line = format!(
        "backup {} in {}: commit {}, {} bytes, {} files copied ({} bytes), {} reused, {} tables, {} rows, {:.2} s",
        s.id,
        repository.display(),
        backup::rfc3339(s.commit_ts),
        s.bytes,
        s.files_copied,
        s.bytes_copied,
        s.files_reused,
        s.tables,
        s.rows,
        s.seconds
    );
    if s.verified {
        line.push_str(", verified");
    }
    if s.pruned > 0 {
        line.push_str(&format!(", {} old backups removed", s.pruned));
    }
    line
}

fn list(repository: &Path, json: bool) -> Result<(), Failure> {
    let repo = backup::Repository::open(repository)?;
    let _lock = repo.lock(false)?;
    let listed = repo.list()?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&listed).expect("a listing serialises")
        );
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_FULL_CONDENSED);
    table.set_header([
        "id",
        "taken",
        "commit",
        "bytes",
        "new bytes",
        "tables",
        "rows",
        "status",
    ]);
    for item in &listed {
        let status = item.problem.clone().unwrap_or_else(|| "ok".into());
        match &item.manifest {
            Some(m) => table.add_row([
                m.id.to_string(),
                m.created.clone(),
                backup::rfc3339(m.commit_ts),
                m.files.iter().map(|f| f.size).sum::<u64>().to_string(),
                m.bytes_copied.to_string(),
                m.tables.len().to_string(),
                m.tables.iter().map(|t| t.rows).sum::<u64>().to_string(),
                status,
            ]),
            None => table.add_row([
                item.id.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                status,
            ]),
        };
    }
    println!("{table}");
    Ok(())
}
