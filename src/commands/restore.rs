//! `omen restore`: a backup into a new data directory, checked as it is
//! copied, optionally replayed to a moment from the archive; and
//! `--verify-only`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::TimeZone;
use omen::engine::backup::{self, Failure, FailureKind, RestoreRequest};

use super::backup::exit;
use super::transfer::Progress;

/// Arguments of `omen restore`.
#[derive(clap::Args)]
pub struct Args {
    /// The backup repository.
    #[arg(long, value_name = "REPO")]
    from: PathBuf,
    /// The data directory to restore into. It must not exist or be empty
    /// (see --force); the restore fills a scratch directory beside it and
    /// renames it into place at the end.
    #[arg(
        long,
        env = "OMEN_DATA_DIR",
        value_name = "DIR",
        default_value = "omen-data"
    )]
    data_dir: PathBuf,
    /// Which backup (see `omen backup --list`); default: the newest, or with
    /// a target time the newest taken before it.
    #[arg(long, value_name = "ID")]
    backup: Option<u64>,
    /// Rebuild the database as it was at this moment, from a backup and the
    /// archive (`2026-11-28 14:03:00` in local time, or with an offset such
    /// as `+01:00` or `Z`).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["to_timestamp", "to_latest"])]
    to_time: Option<String>,
    /// As --to-time, as a commit timestamp (microseconds since 1970).
    #[arg(long, value_name = "TS", conflicts_with = "to_latest")]
    to_timestamp: Option<u64>,
    /// Replay every archived commit after the backup.
    #[arg(long)]
    to_latest: bool,
    /// Replace a data directory that holds files (never one a process has open).
    #[arg(long)]
    force: bool,
    /// Check the backup (every checksum, the catalog, every table's row
    /// count) in a scratch directory and restore nothing.
    #[arg(long, conflicts_with_all = ["force", "to_time", "to_timestamp", "to_latest"])]
    verify_only: bool,
    /// No progress bar and no summary (errors are still printed).
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Runs `omen restore`; the exit status tells what failed (see `omen backup`).
pub fn run(args: Args) -> Result<ExitCode> {
    Ok(exit(restore(&args)))
}

fn restore(args: &Args) -> Result<(), Failure> {
    let repo = backup::Repository::open(&args.from)?;
    let bar = Progress::new(Some(0), args.quiet);
    let progress = |done, total| bar.bytes(done, total);
    let print = |json: serde_json::Value, line: String| {
        if args.json {
            println!("{json}");
        } else if !args.quiet {
            eprintln!("{line}");
        }
    };
    if args.verify_only {
        let result = repo.verify(args.backup, &progress);
        bar.finish();
        let s = result?;
        print(
            serde_json::to_value(&s).expect("a summary serialises"),
            format!(
                "backup {} is intact: {} files ({} bytes) match their checksums, {} tables hold {} rows as recorded, {:.2} s",
                s.backup, s.files, s.bytes, s.tables, s.rows, s.seconds
            ),
        );
        return Ok(());
    }
    let to_timestamp = match (&args.to_time, args.to_timestamp) {
        (Some(text), _) => Some(parse_time(text)?),
        (None, ts) => ts,
    };
    let request = RestoreRequest {
        data_dir: args.data_dir.clone(),
        backup: args.backup,
        to_timestamp,
        to_latest: args.to_latest,
        force: args.force,
    };
    let result = repo.restore(&request, &progress);
    bar.finish();
    let s = result?;
    let mut line = format!(
        "restored backup {} (commit {}) into {}: {} files, {} bytes",
        s.backup,
        backup::rfc3339(s.backup_ts),
        args.data_dir.display(),
        s.files,
        s.bytes
    );
    if to_timestamp.is_some() || args.to_latest {
        line.push_str(&format!(
            ", {} archived commits replayed to {}",
            s.commits_replayed,
            backup::rfc3339(s.commit_ts)
        ));
    }
    line.push_str(&format!(", {:.2} s", s.seconds));
    print(
        serde_json::to_value(&s).expect("a summary serialises"),
        line,
    );
    Ok(())
}

/// A moment as microseconds since 1970: RFC 3339, or `YYYY-MM-DD
/// HH:MM[:SS[.ffffff]]` with an optional offset, local time without one.
fn parse_time(text: &str) -> Result<u64, Failure> {
    let text = text.trim();
    let bad = || {
        Failure::new(
            FailureKind::Failed,
            format!("--to-time: \"{text}\" is not a time such as 2026-11-28 14:03:00 or 2026-11-28T14:03:00+01:00"),
        )
    };
    let micros = |t: chrono::DateTime<chrono::FixedOffset>| {
        u64::try_from(t.timestamp_micros()).map_err(|_| bad())
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return micros(t);
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(text, format) {
            return micros(t);
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            let local = chrono::Local
                .from_local_datetime(&naive)
                .earliest()
                .ok_or_else(bad)?;
            return micros(local.fixed_offset());
        }
    }
    Err(bad())
}
