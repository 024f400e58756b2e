//! The engine with its key directory as ALEX, as a BTreeMap and with none:
//! single-row inserts, point reads of present keys and of absent keys, range
//! reads of 100 keys (fresh rows, and rows updated three times so each key
//! has older versions to step over), through `Session`, on uniform random
//! and time-series bigint keys.
//!
//! Commits use `Durability::Buffered` so the numbers show the read and write
//! path, not the disk's fsync rate (`omen bench commit` measures that).
//!
//! `OMEN_BENCH_ROWS` sets the rows loaded first (default 200000).
//! `OMEN_BENCH_REOPEN_ROWS`, when set, also times rebuilding the directory of
//! that many rows when the database opens, for each kind, and prints it.

use std::hint::black_box;
use std::ops::Bound;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Value};
use omen::engine::DirectoryKind;
use omen::{Database, Durability, Options};
use rand::{rngs::StdRng, Rng, SeedableRng};

const KINDS: [DirectoryKind; 3] = [
    DirectoryKind::Alex,
    DirectoryKind::BTree,
    DirectoryKind::None,
];

fn options(kind: DirectoryKind) -> Options {
    Options {
        key_directory: kind,
        durability: Durability::Buffered,
        ..Options::default()
    }
}

fn keys(time_series: bool, n: usize, seed: u64) -> Vec<i64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = 1_767_225_600_000_000i64;
    let mut keys: Vec<i64> = if time_series {
        (0..n as i64)
            .map(|i| start + i * 1000 + rng.random_range(0..5000))
            .collect()
    } else {
        (0..n)
            .map(|_| rng.random_range(0..i64::MAX / 4) * 2)
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert(*k));
    keys
}

fn load(db: &Database, keys: &[i64]) {
    let mut s = db.session();
    s.create_table(
        "t",
        vec![
            ColumnDef::new("id", DataType::Int64),
            ColumnDef::new("v", DataType::Int64),
        ],
        &["id".to_string()],
        false,
    )
    .expect("create");
    for chunk in keys.chunks(10_000) {
        s.begin().expect("begin");
        for k in chunk {
            s.insert("t", vec![Value::Int64(*k), Value::Int64(*k / 3)])
                .expect("insert");
        }
        s.commit().expect("commit");
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn reopen_times() {
    let Some(rows) = std::env::var("OMEN_BENCH_REOPEN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(true, rows, 5);
    let started = Instant::now();
    let db = Database::open(dir.path(), options(DirectoryKind::Alex)).expect("open");
    load(&db, &keys);
    drop(db);
    eprintln!(
        "loaded {} rows in {:.1}s",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    // Two rounds: the first open after loading also replays the write-ahead
    // log and warms the page cache, which would favour whichever kind came later.
    for round in 1..=2 {
        for kind in KINDS {
            let started = Instant::now();
            let db = Database::open(dir.path(), options(kind)).expect("reopen");
            eprintln!(
                "round {round}: open with directory {kind:?}: {:.2}s for {} rows (directory holds {:?})",
                started.elapsed().as_secs_f64(),
                keys.len(),
                db.directory_len("t").expect("table")
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    eprintln!("omen {}", omen::VERSION);
    reopen_times();
    let rows = env_usize("OMEN_BENCH_ROWS", 200_000);
    for time_series in [false, true] {
        let shape = if time_series {
            "time_series"
        } else {
            "uniform"
        };
        let loaded = keys(time_series, rows, 1);
        let mut rng = StdRng::seed_from_u64(3);
        let present: Vec<i64> = (0..10_000)
            .map(|_| loaded[rng.random_range(0..loaded.len())])
            .collect();
        let absent: Vec<i64> = (0..10_000)
            .map(|i| if time_series { i64::MAX - i } else { -1 - i })
            .collect();
        let mut group = c.benchmark_group(format!("engine/{shape}/{rows}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for kind in KINDS {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Database::open(dir.path(), options(kind)).expect("open");
            load(&db, &loaded);
            let name = format!("{kind:?}");
            let mut s = db.session();
            group.throughput(Throughput::Elements(present.len() as u64));
            group.bench_function(BenchmarkId::new("get_present", &name), |b| {
                b.iter(|| {
                    for k in &present {
                        black_box(s.get("t", &[Value::Int64(*k)]).expect("get"));
                    }
                })
            });
            group.bench_function(BenchmarkId::new("get_absent", &name), |b| {
                b.iter(|| {
                    for k in &absent {
                        black_box(s.get("t", &[Value::Int64(*k)]).expect("get"));
                    }
                })
            });
            let mut sorted = loaded.clone();
            sorted.sort_unstable();
            let starts: Vec<usize> = (0..1000)
                .map(|_| rng.random_range(0..sorted.len() - 101))
                .collect();
            let scan = |s: &mut omen::Session, starts: &[usize]| {
                for &i in starts {
                    let rows = s
                        .scan(
                            "t",
                            Bound::Included(vec![Value::Int64(sorted[i])]),
                            Bound::Excluded(vec![Value::Int64(sorted[i + 100])]),
                        )
                        .expect("scan");
                    assert_eq!(rows.len(), 100);
                    black_box(rows);
                }
            };
            group.throughput(Throughput::Elements(100 * starts.len() as u64));
            group.bench_function(BenchmarkId::new("range100", &name), |b| {
                b.iter(|| scan(&mut s, &starts))
            });
            // Ranges between two adjacent keys: no rows.
            group.throughput(Throughput::Elements(starts.len() as u64));
            group.bench_function(BenchmarkId::new("range_empty", &name), |b| {
                b.iter(|| {
                    for &i in &starts {
                        let rows = s
                            .scan(
                                "t",
                                Bound::Excluded(vec![Value::Int64(sorted[i])]),
                                Bound::Excluded(vec![Value::Int64(sorted[i + 1])]),
                            )
                            .expect("scan");
                        assert!(rows.is_empty());
                    }
                })
            });
            group.throughput(Throughput::Elements(100 * starts.len() as u64));
            // The first 20000 keys updated three times: scans there step over
            // two older versions of each key unless the directory names the
            // newest.
            for round in 0..3 {
                for k in &sorted[..20_000] {
                    s.update("t", vec![Value::Int64(*k), Value::Int64(round)])
                        .expect("update");
                }
            }
            let updated: Vec<usize> = starts.iter().map(|i| i % (20_000 - 101)).collect();
            group.bench_function(BenchmarkId::new("range100_updated", &name), |b| {
                b.iter(|| scan(&mut s, &updated))
            });
            // New keys each iteration: above the loaded ones for time series, fresh randoms otherwise.
            let mut next = if time_series {
                *loaded.iter().max().expect("rows") + 1
            } else {
                0
            };
            let mut fresh = StdRng::seed_from_u64(11);
            group.throughput(Throughput::Elements(1000));
            group.bench_function(BenchmarkId::new("insert", &name), |b| {
                b.iter(|| {
                    for _ in 0..1000 {
                        let k = if time_series {
                            next += 1000;
                            next
                        } else {
                            // Odd keys never collide with the even ones below.
                            fresh.random_range(0..i64::MAX / 4) * 2 + 1
                        };
                        let _ = s.insert("t", vec![Value::Int64(k), Value::Int64(0)]);
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
