//! Bulk loads (`Session::bulk_begin` / `bulk_rows` / `bulk_commit`, which
//! `omen import` uses): rows written as sorted files and ingested at one
//! commit, in bounded memory, all or nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use omen::{OnDuplicate, Session};

use crate::support::{assert_sqlstate, ints, run, texts, TestDb};

type Rows = Vec<Vec<Option<String>>>;

fn rows(ids: impl IntoIterator<Item = i64>) -> Rows {
    ids.into_iter()
        .map(|i| {
            vec![
                Some(i.to_string()),
                Some(format!("v{i} {}", "x".repeat(30))),
            ]
        })
        .collect()
}

/// Loads `batches` into columns (id, v) of `table` in one bulk load.
fn load(s: &mut Session, table: &str, batches: &[Rows]) -> omen::Result<u64> {
    load_with(s, table, batches, OnDuplicate::Error)
}

fn load_with(
    s: &mut Session,
    table: &str,
    batches: &[Rows],
    on_duplicate: OnDuplicate,
) -> omen::Result<u64> {
    let columns = ["id".to_string(), "v".to_string()];
    assert_eq!(s.bulk_begin(table, &columns, on_duplicate)?, Some(2));
    for batch in batches {
        s.bulk_rows(batch).map_err(|e| e.error)?;
    }
    s.bulk_commit()
}

fn count(s: &mut Session, table: &str) -> i64 {
    ints(s, &format!("SELECT count(*) FROM {table}"))[0]
}

/// What loads leave in the data directory's staging area.
fn staged(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("bulk")).map_or(0, |d| d.count())
}

/// 20,000 rows in a scrambled order, under a memory limit that makes the
/// load write many sorted runs and merge them, appear at one commit: not
/// to snapshots older than the commit (also one taken after the load
/// began), to all after it; defaults are filled, the key directory knows
/// every key, and the rows survive reopening.
pub fn bulk_loads_spill_merge_and_appear_at_one_commit() {
    let t = TestDb::new();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE m (id bigint PRIMARY KEY, v text, d double precision DEFAULT 1.5)",
    );
    run(&mut s, "INSERT INTO m VALUES (-1, 'old', 0)");
    run(&mut s, "SET omen.memory_limit = '1MB'");
    let mut before = t.session();
    run(&mut before, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    assert_eq!(count(&mut before, "m"), 1);

    let columns = ["id".to_string(), "v".to_string()];
    assert_eq!(
        s.bulk_begin("m", &columns, OnDuplicate::Error).unwrap(),
        Some(2)
    );
    let mut during = t.session();
    run(&mut during, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    assert_eq!(count(&mut during, "m"), 1);
    // 7919 is prime: i * 7919 % 20000 visits every id once, out of order.
    let ids: Vec<i64> = (0..20_000).map(|i| i * 7919 % 20_000).collect();
    for chunk in ids.chunks(1000) {
        s.bulk_rows(&rows(chunk.iter().copied())).unwrap();
    }
    let mut other = t.session();
    assert_eq!(count(&mut other, "m"), 1, "rows visible before the commit");
    assert_eq!(s.bulk_commit().unwrap(), 20_000);

    assert_eq!(count(&mut other, "m"), 20_001);
    assert_eq!(count(&mut before, "m"), 1);
    assert_eq!(
        count(&mut during, "m"),
        1,
        "a snapshot taken during the load"
    );
    run(&mut during, "COMMIT");
    assert_eq!(count(&mut during, "m"), 20_001);
    assert_eq!(
        ints(&mut other, "SELECT id FROM m ORDER BY id LIMIT 3"),
        vec![-1, 0, 1]
    );
    assert_eq!(
        ints(&mut other, "SELECT sum(id) FROM m"),
        vec![(0..20_000).sum::<i64>() - 1]
    );
    assert_eq!(
        ints(&mut other, "SELECT count(*) FROM m WHERE d = 1.5"),
        vec![20_000]
    );
    assert_eq!(
        texts(&mut other, "SELECT v FROM m WHERE id = 12345"),
        vec![format!("v12345 {}", "x".repeat(30))]
    );
    assert_sqlstate(
        other.execute("INSERT INTO m VALUES (777, 'again')"),
        "23505",
    );
    run(&mut other, "INSERT INTO m VALUES (20000, 'new')");
    assert_eq!(staged(t.dir.path()), 0, "staging files left behind");
    drop((s, other, before, during));

    let t = t.reopen();
    let mut s = t.session();
    assert_eq!(count(&mut s, "m"), 20_002);
    assert_sqlstate(s.execute("INSERT INTO m VALUES (19999, 'again')"), "23505");
}

/// Rows that arrive in key order make runs whose ranges do not overlap,
/// written without merging; duplicates inside one run still count.
pub fn runs_in_key_order_are_written_without_a_merge() {
    let t = TestDb::new();
    let mut s = t.session();
    run(&mut s, "CREATE TABLE m (id bigint PRIMARY KEY, v text)");
    run(&mut s, "SET omen.memory_limit = '1MB'");
    let batches: Vec<Rows> = (0..20).map(|b| rows(b * 1000..(b + 1) * 1000)).collect();
    assert_eq!(load(&mut s, "m", &batches).unwrap(), 20_000);
    assert_eq!(
        ints(&mut s, "SELECT count(*), min(id), max(id) FROM m"),
        vec![20_000]
    );
    assert_eq!(
        ints(
            &mut s,
            "SELECT id FROM m WHERE id > 12_997 ORDER BY id LIMIT 3"
        ),
        vec![12_998, 12_999, 13_000]
    );
    let mut twice: Vec<Rows> = (20..25).map(|b| rows(b * 1000..(b + 1) * 1000)).collect();
    twice[3].push(rows(23_500..23_501).remove(0));
    let error = load(&mut s, "m", &twice).unwrap_err();
    assert!(error.to_string().contains("Key (id)=(23500)"), "{error}");
    assert_eq!(count(&mut s, "m"), 20_000);
}

/// A duplicate key (within the load, across its runs, or against the
/// table), a value that does not convert and a constraint violation each
/// fail the load, naming the row where they can, and write nothing.
pub fn a_bulk_load_with_a_duplicate_or_bad_row_writes_nothing() {
    let t = TestDb::new();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE m (id bigint PRIMARY KEY, v text NOT NULL CHECK (v <> 'no'))",
    );
    run(&mut s, "INSERT INTO m VALUES (100000, 'old')");
    run(&mut s, "SET omen.memory_limit = '1MB'");
    let within = vec![rows(0..5000), rows(2500..2501)];
    let error = load(&mut s, "m", &within).unwrap_err();
    assert_eq!(error.sqlstate().code(), "23505");
    assert!(error.to_string().contains("Key (id)=(2500)"), "{error}");
    assert_sqlstate(load(&mut s, "m", &[rows(99_990..100_010)]), "23505");
    assert_eq!(count(&mut s, "m"), 1);
    // Enough rows to be written in parts on two threads, the duplicate
    // pair on both sides of the cut between them.
    run(&mut s, "SET omen.memory_limit = '1GB'");
    let across = vec![rows(0..99_999), rows(49_999..50_000)];
    let error = load(&mut s, "m", &across).unwrap_err();
    assert!(error.to_string().contains("Key (id)=(49999)"), "{error}");
    run(&mut s, "SET omen.memory_limit = '1MB'");

    let columns = ["id".to_string(), "v".to_string()];
    let mut bad = rows(0..10);
    bad[7][0] = Some("seven".into());
    s.bulk_begin("m", &columns, OnDuplicate::Error).unwrap();
    let error = s.bulk_rows(&bad).unwrap_err();
    assert_eq!(
        (error.row, error.error.sqlstate().code()),
        (Some(7), "22P02")
    );
    let mut null = rows(0..10);
    null[3][1] = None;
    s.bulk_begin("m", &columns, OnDuplicate::Error).unwrap();
    let error = s.bulk_rows(&null).unwrap_err();
    assert_eq!(
        (error.row, error.error.sqlstate().code()),
        (Some(3), "23502")
    );
    let mut no = rows(0..10);
    no[4][1] = Some("no".into());
    s.bulk_begin("m", &columns, OnDuplicate::Error).unwrap();
    let error = s.bulk_rows(&no).unwrap_err();
    assert_eq!(
        (error.row, error.error.sqlstate().code()),
        (Some(4), "23514")
    );
    assert_eq!(count(&mut s, "m"), 1);
    assert_eq!(staged(t.dir.path()), 0, "staging files left behind");
    // The table was not left locked.
    run(&mut s, "INSERT INTO m VALUES (1, 'one')");
}

/// Duplicate keys can be skipped (the row there, or the first, stays) or
/// replace (the last row wins), also over rows of the table; a snapshot
/// taken during the load still reads the replaced rows after it commits,
/// garbage collection notwithstanding. Rows that do not convert can be
/// left out and listed.
pub fn duplicates_can_be_skipped_or_replaced_and_bad_rows_left_out() {
    let t = TestDb::new();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE m (id bigint PRIMARY KEY, v text); \
         INSERT INTO m VALUES (1, 'old1'), (2, 'old2')",
    );
    let one = |id: i64, v: &str| vec![Some(id.to_string()), Some(v.to_string())];
    let skip = vec![vec![one(2, "new2"), one(3, "a")], vec![one(3, "b")]];
    assert_eq!(load_with(&mut s, "m", &skip, OnDuplicate::Skip).unwrap(), 1);
    assert_eq!(
        texts(&mut s, "SELECT v FROM m ORDER BY id"),
        vec!["old1", "old2", "a"]
    );

    let columns = ["id".to_string(), "v".to_string()];
    s.bulk_begin("m", &columns, OnDuplicate::Update).unwrap();
    let mut during = t.session();
    run(&mut during, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    assert_eq!(
        texts(&mut during, "SELECT v FROM m WHERE id = 1"),
        vec!["old1"]
    );
    s.bulk_rows(&[one(1, "new1"), one(4, "x")]).unwrap();
    s.bulk_rows(&[one(4, "y")]).unwrap();
    assert_eq!(s.bulk_commit().unwrap(), 2);
    t.db.gc().unwrap();
    assert_eq!(
        texts(&mut during, "SELECT v FROM m WHERE id = 1"),
        vec!["old1"]
    );
    assert_eq!(count(&mut during, "m"), 3);
    run(&mut during, "COMMIT");
    assert_eq!(
        texts(&mut s, "SELECT v FROM m ORDER BY id"),
        vec!["new1", "old2", "a", "y"]
    );

    s.bulk_begin("m", &columns, OnDuplicate::Error).unwrap();
    let encoder = s.bulk_encoder().unwrap();
    let batch = vec![
        one(10, "ten"),
        vec![Some("x".into()), None],
        one(11, "eleven"),
    ];
    let encoded = encoder.encode_skipping(&batch).unwrap();
    assert_eq!(encoded.rows(), 2);
    let rejected: Vec<_> = encoded
        .rejected()
        .iter()
        .map(|(i, e)| (*i, e.sqlstate().code()))
        .collect();
    assert_eq!(rejected, vec![(1, "22P02")]);
    s.bulk_add(encoded).unwrap();
    assert_eq!(s.bulk_commit().unwrap(), 2);
    assert_eq!(count(&mut s, "m"), 6);
}

/// Tables whose rows need more than their own keys checked or indexed go
/// through COPY: bulk_begin says None.
pub fn tables_with_indexes_or_foreign_keys_are_not_bulk_loaded() {
    let t = TestDb::buffered();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE p (id int PRIMARY KEY, v text); \
         CREATE TABLE c (id int PRIMARY KEY, v int REFERENCES p); \
         CREATE TABLE u (id int PRIMARY KEY, v text UNIQUE); \
         CREATE TABLE i (id int PRIMARY KEY, v text); CREATE INDEX ON i (v)",
    );
    let columns = ["id".to_string(), "v".to_string()];
    for table in ["p", "c", "u", "i"] {
        assert_eq!(
            s.bulk_begin(table, &columns, OnDuplicate::Error).unwrap(),
            None,
            "{table}"
        );
    }
    // After a refusal the session works as before.
    run(&mut s, "INSERT INTO i VALUES (1, 'a')");
}

/// In a transaction block the load commits the block: a table created in
/// it appears with its rows, and a failed load leaves no table.
pub fn a_bulk_load_in_a_block_commits_the_new_table_with_its_rows() {
    let t = TestDb::new();
    let mut s = t.session();
    let mut other = t.session();
    run(&mut s, "BEGIN");
    run(&mut s, "CREATE TABLE n (id int, v text)");
    let batches = vec![rows(0..3000), rows(0..3000)];
    let columns = ["id".to_string(), "v".to_string()];
    assert_eq!(
        s.bulk_begin("n", &columns, OnDuplicate::Error).unwrap(),
        Some(2)
    );
    for batch in &batches {
        s.bulk_rows(batch).unwrap();
    }
    assert_sqlstate(other.execute("SELECT * FROM n"), "42P01");
    assert_eq!(s.bulk_commit().unwrap(), 6000);
    assert!(!s.in_transaction());
    assert_eq!(
        count(&mut other, "n"),
        6000,
        "rows without a key are all kept"
    );

    run(&mut s, "BEGIN");
    run(&mut s, "CREATE TABLE n2 (id int PRIMARY KEY, v text)");
    s.bulk_begin("n2", &columns, OnDuplicate::Error).unwrap();
    let mut bad = rows(0..5);
    bad[2][0] = Some("two".into());
    assert!(s.bulk_rows(&bad).is_err());
    assert_sqlstate(s.execute("SELECT 1"), "25P02");
    run(&mut s, "ROLLBACK");
    assert_sqlstate(other.execute("SELECT * FROM n2"), "42P01");
}

/// `omen import` killed at moments spread over its run leaves the new
/// table either absent or whole, and the next open removes its files.
pub fn killing_an_import_leaves_nothing_or_everything() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = tmp.path().join("db");
    let csv = tmp.path().join("k.csv");
    let total = 60_000;
    let mut text = String::from("id,v\n");
    for i in 0..total {
        text.push_str(&format!("{},{}\n", (i * 7919) % total, "y".repeat(40)));
    }
    std::fs::write(&csv, &text).expect("write");
    let import = |table: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_omen"));
        command
            .args(["import", "--quiet", "--primary-key", "id", "--table", table])
            .arg(&csv)
            .arg("--data-dir")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    // One whole run, to learn how long an import takes here.
    let started = std::time::Instant::now();
    assert!(import("whole").status().expect("run").success());
    let full = started.elapsed();
    for attempt in 0..6u32 {
        let mut child = import(&format!("k{attempt}")).spawn().expect("spawn");
        std::thread::sleep(full * (attempt + 1) / 6);
        let _ = child.kill();
        let _ = child.wait();
    }
    let database = omen::Database::open(&db, omen::Options::default()).expect("open");
    assert_eq!(staged(&db), 0, "the open did not clear the staging area");
    let mut s = database.session();
    assert_eq!(count(&mut s, "whole"), total);
    for attempt in 0..6 {
        match s.execute(&format!("SELECT count(*) FROM k{attempt}")) {
            Ok(_) => assert_eq!(count(&mut s, &format!("k{attempt}")), total),
            Err(e) => assert_eq!(e.sqlstate().code(), "42P01", "{e}"),
        }
    }
}
