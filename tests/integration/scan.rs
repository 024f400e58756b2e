//! Streaming scans: nothing is read while planning, LIMIT and ORDER BY key
//! stop a scan early, batches resume correctly across the transaction's own
//! writes and concurrent commits, and a scan's memory does not grow with the
//! table. Each test opens with the bug it pins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use omen::{IsolationLevel, Output, Session};

use crate::server::{connect, fill_padded, runtime, simple_rows, Server};
use crate::support::{ints, run, texts, TestDb};

/// The text of an EXPLAIN.
fn plan(s: &mut Session, sql: &str) -> String {
    let mut text = String::new();
    for output in run(s, &format!("EXPLAIN {sql}")) {
        let Output::Rows(rows) = output else {
            continue;
        };
        for batch in &rows.batches {
            for r in 0..batch.num_rows() {
                for c in batch.columns() {
                    let cell = omen::engine::sql::format::text(c.as_ref(), r);
                    text.push_str(&cell.unwrap_or_default());
                    text.push('\n');
                }
            }
        }
    }
    text
}

/// `t (id bigint primary key, v int)` with ids 0..rows.
fn table(rows: i64) -> TestDb {
    let t = TestDb::buffered();
    let mut s = t.session();
    run(&mut s, "CREATE TABLE t (id BIGINT PRIMARY KEY, v INT)");
    run(
        &mut s,
        &format!(
            "INSERT INTO t SELECT value, value % 10 FROM generate_series(0, {}) AS value",
            rows - 1
        ),
    );
    t
}

pub fn planning_and_explain_read_no_rows() {
    // Bug: the table scan read every row it might need while the plan was
    // built, so EXPLAIN of a query over a large table read the whole table.
    let t = table(50_000);
    let mut s = t.session();
    let before = s.rows_scanned();
    let text = plan(&mut s, "SELECT * FROM t WHERE v > 5");
    assert!(text.contains("OmenScan: table=t"), "{text}");
    assert_eq!(s.rows_scanned(), before, "EXPLAIN read rows");
    assert_eq!(
        ints(&mut s, "SELECT count(*) FROM t WHERE v > 5"),
        vec![20_000]
    );
    assert_eq!(s.rows_scanned() - before, 50_000);
}

pub fn limit_and_key_order_stop_scans_early() {
    // Bug: LIMIT with a filter not on the key, and ORDER BY key LIMIT n, read
    // the whole table before the first row came out.
    let t = table(100_000);
    let mut s = t.session();
    let before = s.rows_scanned();
    assert_eq!(
        ints(&mut s, "SELECT id FROM t WHERE v = 3 LIMIT 5").len(),
        5
    );
    let read = s.rows_scanned() - before;
    assert!(read <= 8192, "LIMIT 5 read {read} rows");

    let before = s.rows_scanned();
    assert_eq!(
        ints(&mut s, "SELECT id FROM t ORDER BY id LIMIT 3"),
        vec![0, 1, 2]
    );
    assert!(
        s.rows_scanned() - before <= 3,
        "read {}",
        s.rows_scanned() - before
    );
    let text = plan(&mut s, "SELECT id, v FROM t ORDER BY id LIMIT 3");
    assert!(
        !text.contains("SortExec"),
        "the key order should need no sort:\n{text}"
    );
    // A key range, ordered, limited.
    let before = s.rows_scanned();
    assert_eq!(
        ints(
            &mut s,
            "SELECT id FROM t WHERE id >= 500 ORDER BY id LIMIT 2"
        ),
        vec![500, 501]
    );
    assert!(s.rows_scanned() - before <= 2);
    // Other orders still sort, and give the right rows.
    assert_eq!(
        ints(&mut s, "SELECT id FROM t ORDER BY id DESC LIMIT 2"),
        vec![99_999, 99_998]
    );
    assert_eq!(
        ints(&mut s, "SELECT id FROM t ORDER BY v DESC, id LIMIT 2"),
        vec![9, 19]
    );
}

pub fn batches_resume_across_own_writes() {
    // Bug guard: a scan that resumes after its last key must merge the
    // transaction's own inserts and deletes on both sides of batch edges.
    let t = table(30_000);
    let mut s = t.session();
    run(&mut s, "BEGIN");
    run(&mut s, "DELETE FROM t WHERE id % 7 = 0");
    run(
        &mut s,
        "INSERT INTO t SELECT value * 2 + 100000, 1 FROM generate_series(0, 9999) AS value",
    );
    run(&mut s, "UPDATE t SET v = 42 WHERE id BETWEEN 8000 AND 8400");
    let expected: i64 = 30_000 - (30_000 + 6) / 7 + 10_000;
    assert_eq!(ints(&mut s, "SELECT count(*) FROM t"), vec![expected]);
    let ids = ints(&mut s, "SELECT id FROM t");
    assert_eq!(ids.len() as i64, expected);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "rows out of key order");
    assert!(ids.iter().all(|id| id % 7 != 0 || *id >= 100_000));
    assert_eq!(
        ints(&mut s, "SELECT count(*) FROM t WHERE v = 42"),
        vec![401 - (401 + 8000 % 7) / 7]
    );
    run(&mut s, "ROLLBACK");
    assert_eq!(ints(&mut s, "SELECT count(*) FROM t"), vec![30_000]);
}

pub fn a_snapshot_scan_ignores_commits_between_its_batches() {
    // Bug guard: batches are read at different moments; each must read the
    // statement's snapshot, whatever commits in between.
    let t = table(60_000);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let db = t.db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = db.session();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let sql = format!(
                    "INSERT INTO t VALUES ({}, 1); DELETE FROM t WHERE id = {}",
                    1_000_000 + n,
                    n * 3
                );
                s.execute(&sql).expect("writer");
                n += 1;
            }
            n
        })
    };
    let mut s = t.session();
    s.begin_with(IsolationLevel::RepeatableRead).unwrap();
    let first = ints(&mut s, "SELECT count(*), 0 FROM t");
    for _ in 0..5 {
        assert_eq!(ints(&mut s, "SELECT count(*), 0 FROM t"), first);
        assert_eq!(ints(&mut s, "SELECT id FROM t").len() as i64, first[0]);
    }
    s.commit().unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer thread");
    assert!(writes > 0);
}

/// The peak resident memory of process `pid`, in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

pub fn scan_memory_does_not_grow_with_the_table() {
    // Bug: a full scan decoded the whole table into memory, then copied it into
    // Arrow batches, before the query saw its first row.
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE big (id BIGINT PRIMARY KEY, pad TEXT); \
                 INSERT INTO big SELECT value, repeat('p', 400) FROM generate_series(1, 500000) AS value",
            )
            .await
            .expect("load");
    });
    // The first restart replays the load from the write-ahead log (and peaks
    // doing so); the second starts from flushed tables.
    let server = server.restart(&[], &[]).restart(&[], &[]);
    let baseline = peak_memory(server.pid());
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        assert_eq!(
            simple_rows(&client, "SELECT count(*), sum(length(pad)) FROM big").await,
            vec![vec![Some("500000".into()), Some("200000000".into())]]
        );
    });
    let grown = peak_memory(server.pid()).saturating_sub(baseline);
    // The table holds 200 MB of text. The scan holds a few batches of it, and
    // RocksDB's block cache (64 MB) fills; reading it all at once took 550 MB.
    assert!(
        grown < 200 << 20,
        "a full scan grew the server by {} MB",
        grown >> 20
    );
}

pub fn large_scans_run_in_partitions() {
    // Bug: every scan was one partition, so a query used one core however
    // large the table.
    let t = table(300_000);
    let mut s = t.session();
    run(&mut s, "SET omen.parallelism = 4");
    let text = plan(&mut s, "SELECT count(*) FROM t WHERE v = 3");
    assert!(text.contains("partitions=4"), "{text}");
    assert_eq!(
        ints(&mut s, "SELECT count(*) FROM t WHERE v = 3"),
        vec![30_000]
    );
    assert_eq!(ints(&mut s, "SELECT sum(id) FROM t"), vec![44_999_850_000]);
    // Across partitions the key order still holds where it is asked for.
    let ids = ints(&mut s, "SELECT id FROM t WHERE v = 7 ORDER BY id");
    assert_eq!(ids.len(), 30_000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        ints(&mut s, "SELECT id FROM t ORDER BY id LIMIT 2"),
        vec![0, 1]
    );
    assert_eq!(
        ints(&mut s, "SELECT v FROM t GROUP BY v ORDER BY v"),
        (0..10).collect::<Vec<_>>()
    );
    // Own writes are seen by every partition.
    run(&mut s, "BEGIN");
    run(&mut s, "DELETE FROM t WHERE id < 1000 OR id >= 299000");
    run(&mut s, "INSERT INTO t VALUES (150000000, 3)");
    assert_eq!(ints(&mut s, "SELECT count(*) FROM t"), vec![298_001]);
    run(&mut s, "ROLLBACK");
    run(&mut s, "SET omen.parallelism = 1");
    assert!(!plan(&mut s, "SELECT count(*) FROM t").contains("partitions="));
    assert!(s.execute("SET omen.parallelism = 0").is_err());
    let shown = run(&mut s, "SHOW omen.parallelism");
    assert!(matches!(&shown[0], Output::Rows(_)));
}

/// Runs `sql` with its rows left to be read.
fn start(s: &mut Session, sql: &str) -> omen::RowStream {
    match s.streaming(|s| s.execute(sql)).expect(sql).pop() {
        Some(Output::Stream(stream)) => stream,
        other => panic!("{sql} gave {other:?}"),
    }
}

/// The first column (bigint) of the rows of `stream` still to come.
fn rest(s: &mut Session, stream: &omen::RowStream) -> omen::Result<Vec<i64>> {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    let mut values = Vec::new();
    while let Some(batch) = s.next_batch(stream)? {
        let column: &Int64Array = batch.column(0).as_primitive::<Int64Type>();
        values.extend(column.values().iter().copied());
    }
    Ok(values)
}

pub fn results_are_read_as_the_client_takes_them() {
    // Bug: a query's whole result was collected before its first row went
    // to the client, so every result sat in memory at once and one larger
    // than the memory limit failed with 53200.
    let t = table(50_000);
    let mut s = t.session();
    let stream = start(&mut s, "SELECT id, v FROM t");
    let before = s.rows_scanned();
    let first = rest_of_one(&mut s, &stream);
    assert!(
        s.rows_scanned() - before < 10_000,
        "the first batch read {} rows",
        s.rows_scanned() - before
    );
    let mut ids = first;
    ids.extend(rest(&mut s, &stream).expect("rows"));
    assert_eq!(ids, (0..50_000).collect::<Vec<i64>>());

    // Outside a transaction block a result keeps its snapshot while others
    // commit, and the session runs other statements meanwhile.
    let stream = start(&mut s, "SELECT id FROM t");
    let mut ids = rest_of_one(&mut s, &stream);
    let mut other = t.session();
    run(&mut other, "DELETE FROM t WHERE id >= 40000");
    run(&mut other, "INSERT INTO t VALUES (70000, 0)");
    assert_eq!(ints(&mut s, "SELECT count(*) FROM t"), vec![40_001]);
    ids.extend(rest(&mut s, &stream).expect("rows"));
    assert_eq!(ids, (0..50_000).collect::<Vec<i64>>());

    // Inside a block, a later statement of the same transaction does not
    // change the rows an earlier query returns.
    run(&mut s, "BEGIN");
    let stream = start(&mut s, "SELECT v::bigint FROM t");
    let mut values = rest_of_one(&mut s, &stream);
    run(&mut s, "UPDATE t SET v = -1");
    values.extend(rest(&mut s, &stream).expect("rows"));
    assert_eq!(values.len(), 40_001);
    assert!(
        values.iter().all(|&v| v >= 0),
        "a later UPDATE showed through"
    );
    // COMMIT closes the block's results, as it closes PostgreSQL's portals.
    let stream = start(&mut s, "SELECT id FROM t");
    run(&mut s, "COMMIT");
    crate::support::assert_sqlstate(s.next_batch(&stream), "34000");
    assert_eq!(ints(&mut s, "SELECT min(v) FROM t"), vec![-1]);

    // An error met while reading fails the block, as any failing statement.
    run(&mut s, "BEGIN");
    let stream = start(&mut s, "SELECT 100 / (id - 39000) FROM t");
    crate::support::assert_sqlstate(rest(&mut s, &stream), "22012");
    crate::support::assert_sqlstate(s.execute("SELECT 1"), "25P02");
    run(&mut s, "ROLLBACK");
    // Dropping an unread result ends its transaction at the next call.
    let stream = start(&mut s, "SELECT id FROM t");
    drop(stream);
    assert_eq!(ints(&mut s, "SELECT count(*) FROM t"), vec![40_001]);
}

/// The first batch of `stream` (which has one), first column.
fn rest_of_one(s: &mut Session, stream: &omen::RowStream) -> Vec<i64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let batch = s.next_batch(stream).expect("a batch").expect("rows");
    batch
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

pub fn results_past_the_memory_limit_stream_to_clients() {
    // Bug: the server collected a result before sending it, so one larger
    // than --memory-limit failed with 53200 over every protocol.
    let server = Server::start_with(&["--memory-limit", "32MB"], &[]);
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        // 300,000 rows of 200 bytes: about twice the limit.
        fill_padded(&client, "big", "repeat('p', 200)").await;
        let rows = client
            .simple_query("SELECT id, pad FROM big")
            .await
            .expect("simple");
        let count = rows
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert_eq!(count, 300_000);
        let rows = client
            .query("SELECT id, pad FROM big WHERE id >= $1", &[&0i64])
            .await
            .expect("extended");
        assert_eq!(rows.len(), 300_000);
        let mut lines = 0;
        let copy = client.copy_out("COPY big TO STDOUT").await.expect("copy");
        futures::pin_mut!(copy);
        while let Some(data) = futures::StreamExt::next(&mut copy).await {
            lines += data
                .expect("copy data")
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        }
        assert_eq!(lines, 300_000);

        // Execute with a row limit: pages of that many rows, in order.
        let mut client = client;
        let txn = client.transaction().await.expect("begin");
        let statement = txn
            .prepare("SELECT id FROM big ORDER BY id")
            .await
            .expect("prepare");
        let portal = txn.bind(&statement, &[]).await.expect("bind");
        let mut pages = Vec::new();
        let mut next = 0i64;
        loop {
            let page = txn.query_portal(&portal, 100_000).await.expect("page");
            for row in &page {
                assert_eq!(row.get::<_, i64>(0), next);
                next += 1;
            }
            pages.push(page.len());
            if page.len() < 100_000 {
                break;
            }
        }
        assert_eq!(pages, vec![100_000, 100_000, 100_000, 0]);
        txn.commit().await.expect("commit");

        // An error partway through a result reaches the client, and the
        // connection goes on.
        let e = client
            .simple_query("SELECT 1000 / (id - 250000) FROM big")
            .await
            .unwrap_err();
        assert_eq!(crate::server::code(&e), "22012", "{e:?}");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM big").await,
            vec![vec![Some("300000".into())]]
        );
    });
}

pub fn statistics_choose_join_sides_and_split_scans() {
    // Bug: scans told DataFusion nothing of their size, so a hash join built
    // its table from whichever side came first, however large; a table
    // without a key directory (a composite key) scanned on one core; and
    // ANALYZE was a syntax error.
    let t = TestDb::buffered();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE pairs (a INT, b INT, pad TEXT, PRIMARY KEY (a, b))",
    );
    run(
        &mut s,
        "INSERT INTO pairs SELECT value % 1000, value, repeat('x', 100) \
         FROM generate_series(1, 300000) AS value",
    );
    run(
        &mut s,
        "CREATE TABLE small (id BIGINT PRIMARY KEY, name TEXT)",
    );
    run(
        &mut s,
        "INSERT INTO small SELECT value, 'n' || value FROM generate_series(0, 9) AS value",
    );
    drop(s);
    // Reopening writes the rows into table files, whose sizes tell.
    let t = t.reopen();
    t.db.wait_for_directories();
    let mut s = t.session();
    run(&mut s, "SET omen.parallelism = 2");
    let text = plan(&mut s, "SELECT count(*) FROM pairs WHERE pad <> ''");
    assert!(text.contains("partitions=2"), "{text}");
    assert_eq!(ints(&mut s, "SELECT count(*) FROM pairs"), vec![300_000]);
    assert_eq!(
        ints(&mut s, "SELECT sum(b) FROM pairs"),
        vec![45_000_150_000]
    );
    // The small table builds the hash table on whichever side it is written.
    for sql in [
        "SELECT count(*) FROM pairs JOIN small ON pairs.a = small.id",
        "SELECT count(*) FROM small JOIN pairs ON pairs.a = small.id",
    ] {
        let text = plan(&mut s, sql);
        assert!(text.contains("on=[(id@"), "{sql}: {text}");
        assert_eq!(ints(&mut s, sql), vec![3000]);
    }
    let tuples = ints(
        &mut s,
        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'pairs'",
    );
    assert!((250_000..350_000).contains(&tuples[0]), "{tuples:?}");
    assert_eq!(
        ints(
            &mut s,
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'small'"
        ),
        vec![10]
    );

    // ANALYZE records each column's NULLs, distinct values and bounds.
    crate::support::assert_sqlstate(s.execute("ANALYZE pairs (nope)"), "42703");
    assert!(texts(&mut s, "SELECT attname FROM pg_stats").is_empty());
    run(&mut s, "ANALYZE pairs");
    run(&mut s, "ANALYZE");
    let t = {
        drop(s);
        t.reopen()
    };
    let mut s = t.session();
    let distinct = ints(
        &mut s,
        "SELECT n_distinct::bigint FROM pg_stats WHERE tablename = 'pairs' ORDER BY attname",
    );
    assert!((950..1050).contains(&distinct[0]), "{distinct:?}");
    assert!((285_000..315_000).contains(&distinct[1]), "{distinct:?}");
    assert_eq!(distinct[2], 1);
    assert_eq!(
        texts(
            &mut s,
            "SELECT attname || ' ' || (null_frac = 0) || ' ' || histogram_bounds FROM pg_stats \
             WHERE tablename = 'pairs' AND attname <> 'pad' ORDER BY attname"
        ),
        vec!["a true {0,999}", "b true {1,300000}"]
    );
    assert_eq!(
        texts(
            &mut s,
            "SELECT histogram_bounds FROM pg_stats WHERE tablename = 'small' AND attname = 'name'"
        ),
        vec!["{n0,n9}"]
    );
}

pub fn cursors_read_as_they_fetch() {
    // Bug: DECLARE read the cursor's whole result into memory, so a cursor
    // over a large table took as long as reading it all and one larger than
    // the memory limit failed with 53200, however little was fetched.
    let t = table(50_000);
    let mut s = t.session();
    run(&mut s, "BEGIN");
    let before = s.rows_scanned();
    run(
        &mut s,
        "DECLARE c NO SCROLL CURSOR FOR SELECT id, v::bigint FROM t",
    );
    assert_eq!(s.rows_scanned(), before, "DECLARE read rows");
    assert_eq!(ints(&mut s, "FETCH 3 FROM c"), vec![0, 1, 2]);
    assert!(s.rows_scanned() - before < 10_000);
    // Later writes of the transaction, and commits of others, do not show.
    run(&mut s, "UPDATE t SET v = -1 WHERE id >= 10");
    let mut other = t.session();
    run(&mut other, "INSERT INTO t VALUES (90000, 5)");
    let rest = texts(&mut s, "FETCH ALL FROM c");
    assert_eq!(rest.len(), 49_997);
    assert!(
        rest.iter().all(|row| !row.contains("-1")),
        "{:?}",
        &rest[..3]
    );
    crate::support::assert_sqlstate(s.execute("FETCH PRIOR FROM c"), "55000");
    run(&mut s, "ROLLBACK");

    // A NO SCROLL cursor pages through more than the memory limit; a
    // SCROLL one keeps its rows and stops at the limit.
    run(&mut s, "SET omen.memory_limit = '32MB'");
    run(&mut s, "BEGIN");
    run(
        &mut s,
        "DECLARE big NO SCROLL CURSOR FOR SELECT id, repeat('p', 1000) FROM t",
    );
    let mut seen = 0;
    loop {
        let page = texts(&mut s, "FETCH 5000 FROM big");
        if page.is_empty() {
            break;
        }
        seen += page.len();
    }
    assert_eq!(seen, 50_001);
    run(
        &mut s,
        "DECLARE kept SCROLL CURSOR FOR SELECT id, repeat('p', 1000) FROM t",
    );
    crate::support::assert_sqlstate(s.execute("FETCH ALL FROM kept"), "53200");
    run(&mut s, "ROLLBACK");
    run(&mut s, "RESET omen.memory_limit");

    // WITH HOLD: the rest is read at COMMIT, and FETCH goes on after it.
    run(&mut s, "BEGIN");
    run(
        &mut s,
        "DECLARE h CURSOR WITH HOLD FOR SELECT id FROM t WHERE id < 5 ORDER BY id",
    );
    assert_eq!(ints(&mut s, "FETCH 2 FROM h"), vec![0, 1]);
    run(&mut s, "COMMIT");
    run(&mut other, "DELETE FROM t WHERE id < 5");
    assert_eq!(ints(&mut s, "FETCH ALL FROM h"), vec![2, 3, 4]);
    assert_eq!(ints(&mut s, "FETCH ABSOLUTE 1 FROM h"), vec![0]);
    run(&mut s, "CLOSE h");
}
