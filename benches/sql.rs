//! SQL statements through omen beside SQLite, in one run: single-row INSERTs
//! inside one transaction, primary-key point SELECTs, single-row INSERTs
//! each committed durably, and 1,000-row batches.
//!
//! Both are durable in the same way: omen syncs its WAL at commit (the
//! default), SQLite runs in WAL mode with `synchronous = FULL`. SQLite uses
//! prepared statements, and so does `omen_prepared` ([`Session::prepare`]);
//! `omen` takes SQL text per statement (its fast path), `omen_planner` SQL
//! text through the general DataFusion path with the fast path off.
//!
//! `OMEN_BENCH_ROWS` sets the rows loaded for point SELECTs (default 100000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use omen::engine::types::Value;
use omen::{Database, Options, PreparedStatement, Session};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rusqlite::Connection;

const SCHEMA: &str = "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT, name TEXT)";

fn omen_session(dir: &std::path::Path, fast_path: bool) -> Session {
    let db = Database::open(dir, Options::default()).expect("open omen");
    let mut session = db.session();
    session.set_fast_path(fast_path);
    session
}

fn sqlite(dir: &std::path::Path) -> Connection {
    let conn = Connection::open(dir.join("bench.sqlite")).expect("open sqlite");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("WAL");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous");
    conn
}

/// A session on a new table `t`.
fn omen_table(fast_path: bool) -> (tempfile::TempDir, Session) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = omen_session(dir.path(), fast_path);
    s.execute(SCHEMA).expect("schema");
    (dir, s)
}

/// A session on a new table `t` and its prepared single-row INSERT.
fn omen_prepared_insert() -> (tempfile::TempDir, Session, PreparedStatement) {
    let (dir, mut s) = omen_table(true);
    let insert = s
        .prepare("INSERT INTO t VALUES ($1, $2, $3)")
        .expect("prepare");
    (dir, s, insert)
}

/// SQLite on a new table `t`.
fn sqlite_table() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = sqlite(dir.path());
    conn.execute(SCHEMA, []).expect("schema");
    (dir, conn)
}

/// The parameters of row `n` of `t`, as omen's prepared INSERT takes them.
fn row(n: i64) -> [Value; 3] {
    [
        Value::Int64(n),
        Value::Int64(n * 7),
        Value::Text(format!("row {n}")),
    ]
}

fn inserts(c: &mut Criterion) {
    eprintln!(
        "omen {} beside SQLite {} bundled by rusqlite, built in the same profile",
        omen::VERSION,
        rusqlite::version()
    );
    let mut group = c.benchmark_group("insert_in_one_transaction");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for fast_path in [true, false] {
        let name = if fast_path { "omen" } else { "omen_planner" };
        group.bench_function(name, |b| {
            let (_dir, mut s) = omen_table(fast_path);
            let mut next = 0i64;
            b.iter_custom(|iters| {
                let started = Instant::now();
                s.execute("BEGIN").expect("begin");
                for _ in 0..iters {
                    next += 1;
                    let sql = format!("INSERT INTO t VALUES ({next}, {}, 'row {next}')", next * 7);
                    black_box(s.execute(&sql).expect("insert"));
                }
                s.execute("COMMIT").expect("commit");
                started.elapsed()
            });
        });
    }
    group.bench_function("omen_prepared", |b| {
        let (_dir, mut s, insert) = omen_prepared_insert();
        let mut next = 0i64;
        b.iter_custom(|iters| {
            let started = Instant::now();
            s.execute("BEGIN").expect("begin");
            for _ in 0..iters {
                next += 1;
                let params = row(next);
                black_box(s.execute_prepared(&insert, &params).expect("insert"));
            }
            s.execute("COMMIT").expect("commit");
            started.elapsed()
        });
    });
    group.bench_function("sqlite", |b| {
        let (_dir, conn) = sqlite_table();
        let mut next = 0i64;
        b.iter_custom(|iters| {
            let started = Instant::now();
            conn.execute("BEGIN", []).expect("begin");
            {
                let mut insert = conn
                    .prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3)")
                    .expect("prepare");
                for _ in 0..iters {
                    next += 1;
                    black_box(
                        insert
                            .execute(rusqlite::params![next, next * 7, format!("row {next}")])
                            .expect("insert"),
                    );
                }
            }
            conn.execute("COMMIT", []).expect("commit");
            started.elapsed()
        });
    });
    group.finish();
}

fn point_selects(c: &mut Criterion) {
    let rows: i64 = std::env::var("OMEN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut group = c.benchmark_group("point_select");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = omen_session(&dir.path().join("omen"), true);
    s.execute(SCHEMA).expect("schema");
    s.execute(&format!(
        "INSERT INTO t SELECT x, x * 7, 'row ' || x FROM generate_series(1, {rows}) AS g(x)"
    ))
    .expect("load omen");
    let conn = sqlite(dir.path());
    conn.execute(SCHEMA, []).expect("schema");
    conn.execute_batch(&format!(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {rows}) \
         INSERT INTO t SELECT x, x * 7, 'row ' || x FROM g"
    ))
    .expect("load sqlite");
    for fast_path in [true, false] {
        let name = if fast_path { "omen" } else { "omen_planner" };
        s.set_fast_path(fast_path);
        let mut rng = StdRng::seed_from_u64(7);
        group.bench_function(name, |b| {
            b.iter(|| {
                let id = rng.random_range(1..=rows);
                black_box(
                    s.execute(&format!("SELECT * FROM t WHERE id = {id}"))
                        .expect("select"),
                )
            })
        });
    }
    s.set_fast_path(true);
    let select = s
        .prepare("SELECT id, v, name FROM t WHERE id = $1")
        .expect("prepare");
    let mut rng = StdRng::seed_from_u64(7);
    group.bench_function("omen_prepared", |b| {
        b.iter(|| {
            let id = rng.random_range(1..=rows);
            black_box(
                s.execute_prepared(&select, &[Value::Int64(id)])
                    .expect("select"),
            )
        })
    });
    let mut rng = StdRng::seed_from_u64(7);
    group.bench_function("sqlite", |b| {
        let mut select = conn
            .prepare_cached("SELECT id, v, name FROM t WHERE id = ?1")
            .expect("prepare");
        b.iter(|| {
            let id = rng.random_range(1..=rows);
            let row: (i64, i64, String) = select
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("select");
            black_box(row)
        })
    });
    group.finish();
}

/// One durable commit per row: each INSERT is a transaction of its own.
fn autocommit_inserts(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_autocommit");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("omen_prepared", |b| {
        let (_dir, mut s, insert) = omen_prepared_insert();
        let mut next = 0i64;
        b.iter(|| {
            next += 1;
            let params = row(next);
            black_box(s.execute_prepared(&insert, &params).expect("insert"))
        });
    });
    group.bench_function("sqlite", |b| {
        let (_dir, conn) = sqlite_table();
        let mut insert = conn
            .prepare("INSERT INTO t VALUES (?1, ?2, ?3)")
            .expect("prepare");
        let mut next = 0i64;
        b.iter(|| {
            next += 1;
            black_box(
                insert
                    .execute(rusqlite::params![next, next * 7, format!("row {next}")])
                    .expect("insert"),
            )
        });
    });
    group.finish();
}

/// 1,000 rows in one transaction: a prepared INSERT run 1,000 times, and
/// for omen also one INSERT of 1,000 rows of VALUES.
fn batch_inserts(c: &mut Criterion) {
    const BATCH: i64 = 1000;
    let mut group = c.benchmark_group("insert_batch_1000");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("omen_prepared", |b| {
        let (_dir, mut s, insert) = omen_prepared_insert();
        let mut next = 0i64;
        b.iter(|| {
            s.execute("BEGIN").expect("begin");
            for _ in 0..BATCH {
                next += 1;
                let params = row(next);
                s.execute_prepared(&insert, &params).expect("insert");
            }
            s.execute("COMMIT").expect("commit")
        });
    });
    group.bench_function("omen_values", |b| {
        let (_dir, mut s) = omen_table(true);
        let mut next = 0i64;
        b.iter(|| {
            let rows: Vec<String> = (0..BATCH)
                .map(|_| {
                    next += 1;
                    format!("({next}, {}, 'row {next}')", next * 7)
                })
                .collect();
            s.execute(&format!("INSERT INTO t VALUES {}", rows.join(", ")))
                .expect("insert")
        });
    });
    group.bench_function("sqlite", |b| {
        let (_dir, conn) = sqlite_table();
        let mut next = 0i64;
        b.iter(|| {
            conn.execute("BEGIN", []).expect("begin");
            {
                let mut insert = conn
                    .prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3)")
                    .expect("prepare");
                for _ in 0..BATCH {
                    next += 1;
                    insert
                        .execute(rusqlite::params![next, next * 7, format!("row {next}")])
                        .expect("insert");
                }
            }
            conn.execute("COMMIT", []).expect("commit")
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    inserts,
    point_selects,
    autocommit_inserts,
    batch_inserts
);
criterion_main!(benches);
