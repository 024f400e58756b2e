//! Secondary indexes and UNIQUE constraints: concurrency, builds beside
//! writers, old snapshots, restarts, and answers equal to a full scan.

use crate::support::{assert_sqlstate, blocked, ints, run, texts, TestDb};

pub fn concurrent_inserts_of_one_unique_value_wait_then_decide() {
    // An insert of a value another open transaction inserted waits for it:
    // after its commit 23505, after its rollback the insert goes in.
    let t = TestDb::buffered();
    let (mut s1, s2) = (t.session(), t.session());
    run(
        &mut s1,
        "CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE)",
    );
    run(&mut s1, "BEGIN; INSERT INTO u VALUES (1, 'a@x')");
    let wait = blocked(s2, |s| s.execute("INSERT INTO u VALUES (2, 'a@x')"));
    run(&mut s1, "COMMIT");
    let (s2, result) = wait.join();
    assert_sqlstate(result, "23505");

    run(&mut s1, "BEGIN; INSERT INTO u VALUES (3, 'b@x')");
    let wait = blocked(s2, |s| s.execute("INSERT INTO u VALUES (4, 'b@x')"));
    run(&mut s1, "ROLLBACK");
    let (mut s2, result) = wait.join();
    result.expect("the insert goes in after the rollback");
    assert_eq!(
        ints(&mut s2, "SELECT id FROM u ORDER BY id"),
        [1, 4],
        "one row per value"
    );

    // An UPDATE that frees a value lets a waiting insert of it through.
    run(&mut s1, "BEGIN; UPDATE u SET email = 'c@x' WHERE id = 1");
    let wait = blocked(s2, |s| s.execute("INSERT INTO u VALUES (5, 'a@x')"));
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    result.expect("the value was freed");
    assert_eq!(
        texts(&mut s2, "SELECT email FROM u ORDER BY id"),
        ["c@x", "b@x", "a@x"]
    );

    // Many threads inserting the same values: each value once.
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let mut s = t.session();
            std::thread::spawn(move || {
                let mut inserted = 0;
                for v in 0..50 {
                    let sql = format!("INSERT INTO u VALUES ({}, 'v{v}')", 100 + n * 100 + v);
                    match s.execute(&sql) {
                        Ok(_) => inserted += 1,
                        Err(e) => assert!(matches!(e.sqlstate().code(), "23505" | "40001"), "{e}"),
                    }
                }
                inserted
            })
        })
        .collect();
    let inserted: i64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(inserted, 50);
    assert_eq!(
        ints(
            &mut s2,
            "SELECT count(DISTINCT email) FROM u WHERE email LIKE 'v%'"
        ),
        [50]
    );
}

pub fn an_index_build_waits_for_writers_and_misses_no_row() {
    // CREATE INDEX waits for a transaction that wrote the table, and the
    // index then holds its rows.
    let t = TestDb::buffered();
    let (mut s1, s2) = (t.session(), t.session());
    run(&mut s1, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    run(
        &mut s1,
        "INSERT INTO t SELECT g, g % 10 FROM generate_series(1, 100) AS g",
    );
    run(&mut s1, "BEGIN; INSERT INTO t VALUES (1000, 7)");
    let wait = blocked(s2, |s| s.execute("CREATE INDEX t_v ON t (v)"));
    run(&mut s1, "INSERT INTO t VALUES (1001, 7)");
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    result.expect("the build ends after the writer");
    assert_eq!(ints(&mut s2, "SELECT count(*) FROM t WHERE v = 7"), [12]);
    let plan = plan_text(&mut s2, "EXPLAIN SELECT * FROM t WHERE v = 7");
    assert!(plan.contains("index=t_v"), "{plan}");

    // A unique index over rows with equal values is refused and leaves nothing.
    assert_sqlstate(s2.execute("CREATE UNIQUE INDEX t_v_key ON t (v)"), "23505");
    run(&mut s2, "INSERT INTO t VALUES (2000, 7)");
    assert_eq!(ints(&mut s2, "SELECT count(*) FROM t WHERE v = 7"), [13]);

    // Dropping an index waits for writers too (they would write its entries).
    run(&mut s1, "BEGIN; INSERT INTO t VALUES (3000, 8)");
    let wait = blocked(s2, |s| s.execute("DROP INDEX t_v"));
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    result.expect("the drop ends after the writer");
    run(
        &mut s2,
        "ALTER TABLE t ADD CONSTRAINT t_id_v UNIQUE (id, v)",
    );
    run(&mut s1, "BEGIN; INSERT INTO t VALUES (3001, 8)");
    let wait = blocked(s2, |s| s.execute("ALTER TABLE t DROP CONSTRAINT t_id_v"));
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    result.expect("the constraint goes after the writer");
    assert_eq!(ints(&mut s2, "SELECT count(*) FROM t WHERE v = 8"), [12]);
}

/// The plan column of an EXPLAIN, one line per row.
fn plan_text(s: &mut omen::Session, sql: &str) -> String {
    let mut out = String::new();
    for output in run(s, sql) {
        if let omen::Output::Rows(rows) = output {
            for batch in &rows.batches {
                for r in 0..batch.num_rows() {
                    let text = omen::engine::sql::format::text(batch.column(1).as_ref(), r);
                    out.push_str(&text.unwrap_or_default());
                    out.push('\n');
                }
            }
        }
    }
    out
}

pub fn old_snapshots_do_not_read_a_newer_index() {
    // A REPEATABLE READ transaction older than an index sees the rows of its
    // snapshot through a filter on the indexed column (the index lacks them).
    let t = TestDb::buffered();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(&mut s1, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    run(&mut s1, "INSERT INTO t VALUES (1, 5), (2, 6)");
    run(&mut s1, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    assert_eq!(ints(&mut s1, "SELECT count(*) FROM t"), [2]);
    run(&mut s2, "DELETE FROM t WHERE id = 2");
    run(&mut s2, "CREATE INDEX t_v ON t (v)");
    assert_eq!(ints(&mut s1, "SELECT id FROM t WHERE v = 6"), [2]);
    run(&mut s1, "COMMIT");
    assert!(ints(&mut s1, "SELECT id FROM t WHERE v = 6").is_empty());
    assert_eq!(ints(&mut s1, "SELECT id FROM t WHERE v = 5"), [1]);
}

pub fn indexes_survive_a_restart_and_ids_stay_apart() {
    let t = TestDb::new();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE a (id int PRIMARY KEY, email text UNIQUE, v int)",
    );
    run(&mut s, "CREATE INDEX a_v ON a (v)");
    run(&mut s, "INSERT INTO a VALUES (1, 'x', 10), (2, 'y', 20)");
    drop(s);
    let t = t.reopen();
    let mut s = t.session();
    // A table made after the restart takes an id no index has.
    run(&mut s, "CREATE TABLE b (id int PRIMARY KEY, w int)");
    run(&mut s, "INSERT INTO b VALUES (1, 1)");
    assert_eq!(ints(&mut s, "SELECT id FROM a WHERE v = 20"), [2]);
    assert_eq!(ints(&mut s, "SELECT id FROM a WHERE email = 'x'"), [1]);
    assert_sqlstate(s.execute("INSERT INTO a VALUES (3, 'x', 30)"), "23505");
    assert_eq!(ints(&mut s, "SELECT w FROM b"), [1]);
    run(&mut s, "DROP TABLE a");
    run(
        &mut s,
        "CREATE TABLE a (id int PRIMARY KEY, email text UNIQUE)",
    );
    run(&mut s, "INSERT INTO a VALUES (1, 'x')");
    assert_eq!(ints(&mut s, "SELECT id FROM a WHERE email = 'x'"), [1]);
}

pub fn index_reads_answer_as_full_scans_do() {
    // The same filters over a table with indexes and over a copy without
    // any give the same rows, through inserts, updates and deletes.
    let t = TestDb::buffered();
    let mut s = t.session();
    for table in ["plain", "indexed"] {
        run(
            &mut s,
            &format!("CREATE TABLE {table} (id int PRIMARY KEY, a int, b text, c bigint)"),
        );
    }
    run(&mut s, "CREATE INDEX ON indexed (a)");
    run(&mut s, "CREATE INDEX ON indexed (b, c)");
    run(&mut s, "CREATE UNIQUE INDEX ON indexed (c)");
    let mut seed: u64 = 7;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    for step in 0..300 {
        let id = next() % 60;
        let a = match next() % 5 {
            0 => "NULL".to_string(),
            n => (n * 3 + next() % 4).to_string(),
        };
        let b = match next() % 4 {
            0 => "NULL".to_string(),
            n => format!("'k{n}'"),
        };
        let c = if next() % 6 == 0 {
            "NULL".to_string()
        } else {
            (step * 1000 + id).to_string()
        };
        let sql = match next() % 4 {
            0 => format!("DELETE FROM {{t}} WHERE id = {id}"),
            1 => format!("UPDATE {{t}} SET a = {a}, b = {b} WHERE id = {id}"),
            _ => format!(
                "INSERT INTO {{t}} VALUES ({id}, {a}, {b}, {c}) ON CONFLICT (id) DO UPDATE SET a = excluded.a, c = excluded.c"
            ),
        };
        for table in ["plain", "indexed"] {
            run(&mut s, &sql.replace("{t}", table));
        }
    }
    let filters = [
        "a = 6",
        "a IN (3, 7, 12)",
        "a > 9",
        "a <= 4",
        "a BETWEEN 5 AND 10",
        "a IS NULL",
        "b = 'k2'",
        "b = 'k1' AND c > 100000",
        "b >= 'k2'",
        "c = 5005",
        "c < 20000",
        "a = 6 OR a = 9",
    ];
    for filter in filters {
        let rows = |s: &mut omen::Session, table: &str| {
            texts(
                s,
                &format!(
                    "SELECT id::text || ',' || coalesce(a::text, '-') || ',' || coalesce(b, '-') \
                     FROM {table} WHERE {filter} ORDER BY id"
                ),
            )
        };
        assert_eq!(rows(&mut s, "indexed"), rows(&mut s, "plain"), "{filter}");
    }
    let read = s.rows_scanned();
    let total = ints(&mut s, "SELECT count(*) FROM indexed WHERE c = 5005");
    assert!(total[0] <= 1);
    assert!(
        s.rows_scanned() - read <= 1,
        "a unique lookup read more than its row"
    );
}
