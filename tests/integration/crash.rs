//! Crash safety: a child process commits multi-row transactions and reports
//! each acknowledged commit; the test kills it with SIGKILL at random moments
//! (during startup, recovery and commits), reopens the database and checks
//! that every acknowledged commit is there and no transaction is partly there.
//!
//! The child is this test binary itself, started with `OMEN_CRASH_CHILD` set.
//! `OMEN_CRASH_KILLS` raises the number of kills (default 50).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Value};
use omen::{Database, Options};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// Names the data directory of a crash child.
pub const CHILD_ENV: &str = "OMEN_CRASH_CHILD";
const RUN_ENV: &str = "OMEN_CRASH_RUN";
const WRITERS: i64 = 3;

/// The child: commit transactions from several threads until killed.
pub fn child(dir: &Path) {
    let run: i64 = std::env::var(RUN_ENV)
        .expect("run number")
        .parse()
        .expect("a number");
    let db = Database::open(dir, Options::default()).expect("open");
    let mut s = db.session();
    s.create_table(
        "crash",
        vec![
            ColumnDef::new("txn", DataType::Int64),
            ColumnDef::new("part", DataType::Int32),
            ColumnDef::new("payload", DataType::Text),
        ],
        &["txn".to_string(), "part".to_string()],
        true,
    )
    .expect("create table");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64((run * 16 + w) as u64);
                let mut s = db.session();
                for i in 0.. {
                    let txn = run * 1_000_000 + w * 100_000 + i;
                    let parts = rng.random_range(20..200);
                    s.begin().expect("begin");
                    s.insert(
                        "crash",
                        vec![
                            Value::Int64(txn),
                            Value::Int32(-1),
                            Value::Text(parts.to_string()),
                        ],
                    )
                    .expect("insert header");
                    for part in 0..parts {
                        let payload =
                            format!("{txn}:{part}:{}", "x".repeat(rng.random_range(10..300)));
                        s.insert(
                            "crash",
                            vec![Value::Int64(txn), Value::Int32(part), Value::Text(payload)],
                        )
                        .expect("insert");
                    }
                    s.commit().expect("commit");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {txn}").expect("stdout");
                    out.flush().expect("stdout");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
}

/// Checks the database: every transaction is complete; returns the ids present.
fn verify(dir: &Path) -> BTreeMap<i64, usize> {
    let db = Database::open(dir, Options::default()).expect("reopen after kill");
    let mut s = db.session();
    let mut parts: BTreeMap<i64, (Option<usize>, usize)> = BTreeMap::new();
    let rows = match s.scan_all("crash") {
        Ok(rows) => rows,
        // Killed before the table was created.
        Err(e) if e.sqlstate().code() == "42P01" => return BTreeMap::new(),
        Err(e) => panic!("scan failed: {e}"),
    };
    for row in rows {
        let (Value::Int64(txn), Value::Int32(part), Value::Text(payload)) =
            (&row[0], &row[1], &row[2])
        else {
            panic!("bad row {row:?}");
        };
        let entry = parts.entry(*txn).or_default();
        if *part == -1 {
            entry.0 = Some(payload.parse().expect("count"));
        } else {
            assert!(
                payload.starts_with(&format!("{txn}:{part}:")),
                "row of txn {txn} has a foreign payload"
            );
            entry.1 += 1;
        }
    }
    parts
        .into_iter()
        .map(|(txn, (expected, found))| {
            let expected = expected.unwrap_or_else(|| panic!("txn {txn}: rows without its header"));
            assert_eq!(found, expected, "txn {txn} is partly visible");
            (txn, found)
        })
        .collect()
}

pub fn acknowledged_commits_survive_sigkill() {
    let kills: u32 = std::env::var("OMEN_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(0x0e11);
    let mut acked_total = 0usize;
    for run in 0..kills {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .env(RUN_ENV, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    line.strip_prefix("ack ")
                        .and_then(|t| t.parse::<i64>().ok())
                })
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(5..400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let acked = reader.join().expect("reader");
        let present = verify(dir.path());
        for txn in &acked {
            assert!(
                present.contains_key(txn),
                "run {run}: acknowledged txn {txn} was lost"
            );
        }
        acked_total += acked.len();
    }
    assert!(
        acked_total > kills as usize,
        "children acknowledged too few commits ({acked_total}) to test anything"
    );
}
