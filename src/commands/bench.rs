//! `omen bench`: workloads that measure the engine on this machine.
//!
//! `omen bench commit` measures durable single-row commits per second with
//! several concurrent sessions, and in the same run the disk's own
//! fdatasync rate, so group commit shows as a multiple of the physical limit.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Value};
use omen::{Database, Durability, Options};

/// Arguments of `omen bench`.
#[derive(clap::Args)]
pub struct Args {
    /// The workload to run.
    #[arg(value_enum)]
    workload: Workload,
    /// Directory for the benchmark database (a fresh temporary one by default;
    /// an existing directory must be empty).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Numbers of concurrent sessions to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    sessions: Vec<usize>,
    /// Seconds to run each measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Workload {
    /// Durable single-row INSERT commits, beside the disk's fdatasync rate.
    Commit,
}

/// Runs the chosen workload and prints its results.
pub fn run(args: Args) -> Result<()> {
    if args.sessions.contains(&0) {
        bail!("--sessions takes positive numbers");
    }
    if args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let _temp;
    let dir = match &args.data_dir {
        Some(dir) => {
            if dir.exists()
                && dir
                    .read_dir()
                    .context("reading --data-dir")?
                    .next()
                    .is_some()
            {
                bail!(
                    "{} is not empty; the benchmark needs a fresh directory",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            _temp = tempfile::Builder::new()
                .prefix("omen-bench-")
                .tempdir_in(".")?;
            _temp.path().to_path_buf()
        }
    };
    match args.workload {
        Workload::Commit => commit(&dir, &args.sessions, Duration::from_secs_f64(args.seconds)),
    }
}

fn commit(dir: &Path, sessions: &[usize], duration: Duration) -> Result<()> {
    let fsyncs = fdatasync_rate(dir, duration)?;
    println!("omen {}", omen::VERSION);
    println!(
        "disk: {fsyncs:.0} fdatasync/s (4 KiB overwrites, {})",
        dir.display()
    );
    println!(
        "{:>8}  {:>12}  {:>10}  {:>14}",
        "sessions", "commits/s", "p50 ms", "x fdatasync/s"
    );
    let db = Database::open(
        &dir.join("db"),
        Options {
            durability: Durability::Full,
            ..Options::default()
        },
    )?;
    let mut s = db.session();
    s.create_table(
        "bench",
        vec![
            ColumnDef::new("id", DataType::Int64),
            ColumnDef::new("v", DataType::Int64),
        ],
        &["id".to_string()],
        false,
    )?;
    let next_id = Arc::new(AtomicU64::new(0));
    for &n in sessions {
        let (rate, p50) = run_sessions(&db, n, duration, &next_id)?;
        println!(
            "{n:>8}  {rate:>12.0}  {:>10.2}  {:>14.2}",
            p50.as_secs_f64() * 1e3,
            rate / fsyncs
        );
    }
    Ok(())
}

/// Commits single-row inserts from `n` threads for `duration`; returns commits
/// per second and the median commit latency.
fn run_sessions(
    db: &Database,
    n: usize,
    duration: Duration,
    ids: &Arc<AtomicU64>,
) -> Result<(f64, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (db, stop, ids) = (db.clone(), stop.clone(), ids.clone());
            std::thread::spawn(move || -> omen::Result<Vec<Duration>> {
                let mut s = db.session();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let id = ids.fetch_add(1, Ordering::Relaxed) as i64;
                    let t = Instant::now();
                    s.insert("bench", vec![Value::Int64(id), Value::Int64(id * 2)])?;
                    latencies.push(t.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??,
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    Ok((latencies.len() as f64 / elapsed, p50))
}

/// Overwrites 4 KiB blocks of a preallocated 16 MiB file, each followed by
/// fdatasync, as pg_test_fsync does; returns syncs per second. Preallocation
/// keeps file-size updates out of the measurement, as in a recycled WAL file.
fn fdatasync_rate(dir: &Path, duration: Duration) -> Result<f64> {
    const FILE: usize = 16 << 20;
    const BLOCK: usize = 4096;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&vec![0u8; FILE])?;
    file.sync_all()?;
    let block = [0x5au8; BLOCK];
    let start = Instant::now();
    let mut count = 0usize;
    while start.elapsed() < duration.min(Duration::from_secs(3)) {
        file.seek(SeekFrom::Start(((count * BLOCK) % FILE) as u64))?;
        file.write_all(&block)?;
        file.sync_data()?;
        count += 1;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(rate)
}
