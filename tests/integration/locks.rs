//! Advisory locks, as migration tools and job runners take them. Each test
//! opens with the behaviour it pins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use omen::{Output, Session};

use crate::support::{assert_sqlstate, blocked, run, texts, TestDb};

/// The text of the first value of a one-row query.
fn value(s: &mut Session, sql: &str) -> String {
    let outputs = run(s, sql);
    let Some(Output::Rows(rows)) = outputs.last() else {
        panic!("{sql} returned no rows");
    };
    let batch = rows
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("a row");
    omen::engine::sql::format::text(batch.column(0).as_ref(), 0).unwrap_or_default()
}

pub fn advisory_locks_exclude_and_wait() {
    // Bug: pg_advisory_lock and its family did not exist, so migration tools
    // that serialise on them could not run.
    let t = TestDb::buffered();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(&mut s1, "SELECT pg_advisory_lock(42)");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(42)"), "f");
    // The same session takes it again, and must unlock twice.
    assert_eq!(value(&mut s1, "SELECT pg_try_advisory_lock(42)"), "t");
    let done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let done = done.clone();
        std::thread::spawn(move || {
            run(&mut s2, "SELECT pg_advisory_lock(42)");
            done.store(true, Ordering::SeqCst);
            s2
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !done.load(Ordering::SeqCst),
        "the second session did not wait"
    );
    assert_eq!(value(&mut s1, "SELECT pg_advisory_unlock(42)"), "t");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !done.load(Ordering::SeqCst),
        "released after one unlock of two"
    );
    assert_eq!(value(&mut s1, "SELECT pg_advisory_unlock(42)"), "t");
    let mut s2 = waiter.join().expect("waiter");
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(value(&mut s1, "SELECT pg_advisory_unlock(42)"), "f");
    // Shared locks admit each other, not an exclusive one; two-integer keys
    // are their own space.
    run(&mut s1, "SELECT pg_advisory_lock_shared(7)");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock_shared(7)"), "t");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(7)"), "f");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(0, 7)"), "t");
    // A session's locks end with it.
    drop(s1);
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(7)"), "t");
    let mut s3 = t.session();
    assert_eq!(value(&mut s3, "SELECT pg_try_advisory_lock(42)"), "f");
    run(&mut s2, "SELECT pg_advisory_unlock_all()");
    assert_eq!(value(&mut s3, "SELECT pg_try_advisory_lock(7)"), "t");
    assert_eq!(value(&mut s3, "SELECT pg_try_advisory_lock(42)"), "t");
}

pub fn transaction_locks_end_with_their_transaction() {
    // pg_advisory_xact_lock holds until COMMIT or ROLLBACK, or to the end of
    // the statement outside a transaction block.
    let t = TestDb::buffered();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(&mut s1, "BEGIN");
    run(&mut s1, "SELECT pg_advisory_xact_lock(5)");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(5)"), "f");
    run(&mut s1, "COMMIT");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(5)"), "t");
    run(&mut s2, "SELECT pg_advisory_unlock(5)");
    run(&mut s1, "SELECT pg_advisory_xact_lock(6)");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_xact_lock(6)"), "t");
    run(&mut s1, "BEGIN");
    assert_eq!(value(&mut s1, "SELECT pg_try_advisory_xact_lock(8)"), "t");
    run(&mut s1, "ROLLBACK");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(8)"), "t");
    // EXPLAIN plans the call without taking the lock.
    run(&mut s1, "EXPLAIN SELECT pg_advisory_lock(99)");
    assert_eq!(value(&mut s2, "SELECT pg_try_advisory_lock(99)"), "t");
}

pub fn lock_waits_end_on_timeouts_and_deadlocks() {
    // lock_timeout (55P03) and statement_timeout (57014) end a wait, and two
    // sessions waiting on each other's locks get 40P01 for exactly one.
    let t = TestDb::buffered();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(&mut s1, "SELECT pg_advisory_lock(11)");
    run(&mut s2, "SET lock_timeout = '100ms'");
    assert_sqlstate(s2.execute("SELECT pg_advisory_lock(11)"), "55P03");
    run(&mut s2, "SET lock_timeout = 0");
    run(&mut s2, "SET statement_timeout = '100ms'");
    assert_sqlstate(s2.execute("SELECT pg_advisory_lock(11)"), "57014");
    run(&mut s2, "SET statement_timeout = 0");
    drop(s1);

    let outcomes = crossed_waits(&t, |n| format!("SELECT pg_advisory_xact_lock({n})"));
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|(code, _)| code.as_ref())
        .collect();
    assert_eq!(failed, vec!["40P01"], "{outcomes:?}");
}

/// Two sessions each run `take(mine)` in a transaction, then `take(theirs)`
/// (1 and 2 crossed): each waits for the other. Returns each one's SQLSTATE
/// and message, None for the one that committed.
fn crossed_waits(t: &TestDb, take: fn(i32) -> String) -> Vec<(Option<String>, Option<String>)> {
    let barrier = Arc::new(Barrier::new(2));
    let sessions: Vec<_> = [(1, 2), (2, 1)]
        .into_iter()
        .map(|(mine, theirs)| {
            let mut s = t.session();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                run(&mut s, "BEGIN");
                run(&mut s, &take(mine));
                barrier.wait();
                let result = s.execute(&take(theirs));
                let message = result.as_ref().err().map(|e| e.to_string());
                let code = result.err().map(|e| e.sqlstate().code().to_string());
                run(&mut s, if code.is_some() { "ROLLBACK" } else { "COMMIT" });
                (code, message)
            })
        })
        .collect();
    sessions
        .into_iter()
        .map(|h| h.join().expect("session thread"))
        .collect()
}

/// A table `t (id int primary key, v int)` with rows (1, 10), (2, 20), (3, 30).
fn three_rows() -> TestDb {
    let t = TestDb::buffered();
    let mut s = t.session();
    run(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    run(&mut s, "INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)");
    t
}

pub fn select_for_update_blocks_writers_until_commit() {
    // Bug: SELECT ... FOR UPDATE was refused, so read-modify-write code
    // written for PostgreSQL could not run.
    let t = three_rows();
    let (mut s1, s2) = (t.session(), t.session());
    run(&mut s1, "BEGIN");
    assert_eq!(
        texts(&mut s1, "SELECT v FROM t WHERE id = 1 FOR UPDATE"),
        ["10"]
    );
    let wait = blocked(s2, |s| s.execute("UPDATE t SET v = v + 1 WHERE id = 1"));
    run(&mut s1, "UPDATE t SET v = 100 WHERE id = 1");
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    result.unwrap();
    // The waiting UPDATE applied itself to the row s1 committed.
    assert_eq!(texts(&mut s2, "SELECT v FROM t WHERE id = 1"), ["101"]);

    // FOR SHARE admits FOR SHARE and blocks UPDATE; FOR KEY SHARE lets an
    // UPDATE of a non-key column through but blocks DELETE.
    let (mut a, mut b) = (t.session(), t.session());
    run(&mut a, "BEGIN");
    run(&mut a, "SELECT * FROM t WHERE id = 2 FOR SHARE");
    run(&mut b, "BEGIN");
    run(&mut b, "SELECT * FROM t WHERE id = 2 FOR SHARE NOWAIT");
    assert_sqlstate(
        b.execute("SELECT * FROM t WHERE id = 2 FOR UPDATE NOWAIT"),
        "55P03",
    );
    run(&mut b, "ROLLBACK");
    run(&mut a, "ROLLBACK");
    run(&mut a, "BEGIN");
    run(&mut a, "SELECT * FROM t WHERE id = 3 FOR KEY SHARE");
    run(&mut b, "UPDATE t SET v = 31 WHERE id = 3");
    let wait = blocked(b, |s| s.execute("DELETE FROM t WHERE id = 3"));
    run(&mut a, "COMMIT");
    let (mut b, result) = wait.join();
    result.unwrap();
    assert!(texts(&mut b, "SELECT v FROM t WHERE id = 3").is_empty());
}

pub fn nowait_fails_and_skip_locked_skips() {
    let t = three_rows();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(&mut s1, "BEGIN");
    run(&mut s1, "SELECT id FROM t WHERE id = 1 FOR UPDATE");
    let err = s2
        .execute("SELECT id FROM t WHERE id = 1 FOR UPDATE NOWAIT")
        .unwrap_err();
    assert_eq!(err.sqlstate().code(), "55P03");
    assert!(err.to_string().contains("relation \"t\""), "{err}");
    assert_eq!(
        texts(
            &mut s2,
            "SELECT id FROM t ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
        ["2"]
    );
    assert_eq!(
        texts(
            &mut s2,
            "SELECT id FROM t ORDER BY id FOR NO KEY UPDATE SKIP LOCKED"
        ),
        ["2", "3"]
    );
    run(&mut s1, "COMMIT");
    assert_eq!(
        texts(
            &mut s2,
            "SELECT id FROM t ORDER BY id LIMIT 2 OFFSET 1 FOR UPDATE OF t"
        ),
        ["2", "3"]
    );
    assert_sqlstate(s2.execute("SELECT count(*) FROM t FOR UPDATE"), "0A000");
    assert_sqlstate(s2.execute("SELECT id FROM t FOR UPDATE OF u"), "42P01");
}

pub fn skip_locked_job_queue_hands_out_each_job_once() {
    // N workers pop jobs with FOR UPDATE SKIP LOCKED: every job is done
    // exactly once, none twice (the primary key of `done` would refuse a
    // second), none left.
    let t = TestDb::buffered();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE jobs (id int PRIMARY KEY, taken boolean)",
    );
    run(&mut s, "CREATE TABLE done (id int PRIMARY KEY, worker int)");
    let values: Vec<String> = (1..=200).map(|i| format!("({i}, false)")).collect();
    run(
        &mut s,
        &format!("INSERT INTO jobs VALUES {}", values.join(", ")),
    );
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let mut s = t.session();
            std::thread::spawn(move || {
                let mut mine = 0;
                loop {
                    run(&mut s, "BEGIN");
                    let job = texts(
                        &mut s,
                        "SELECT id FROM jobs WHERE NOT taken ORDER BY id LIMIT 1 \
                         FOR UPDATE SKIP LOCKED",
                    );
                    let Some(id) = job.first() else {
                        run(&mut s, "COMMIT");
                        break mine;
                    };
                    run(
                        &mut s,
                        &format!("UPDATE jobs SET taken = true WHERE id = {id}"),
                    );
                    run(&mut s, &format!("INSERT INTO done VALUES ({id}, {w})"));
                    run(&mut s, "COMMIT");
                    mine += 1;
                }
            })
        })
        .collect();
    let counts: Vec<i32> = workers.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(counts.iter().sum::<i32>(), 200, "{counts:?}");
    assert_eq!(
        crate::support::ints(&mut s, "SELECT count(*) FROM done"),
        [200]
    );
    assert_eq!(
        crate::support::ints(&mut s, "SELECT count(*) FROM jobs WHERE NOT taken"),
        [0]
    );
}

pub fn read_committed_rechecks_a_changed_row() {
    // PostgreSQL's EvalPlanQual: a DELETE that waited for an UPDATE checks
    // its WHERE against the row the UPDATE left (hermitage's PMP-write).
    let t = three_rows();
    let (mut s1, s2) = (t.session(), t.session());
    run(&mut s1, "BEGIN");
    run(&mut s1, "UPDATE t SET v = v + 10");
    let wait = blocked(s2, |s| s.execute("DELETE FROM t WHERE v = 20"));
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    let Some(Output::Command { rows, .. }) = result.unwrap().pop() else {
        panic!("DELETE returned no count");
    };
    assert_eq!(rows, Some(0));
    assert_eq!(
        texts(&mut s2, "SELECT v FROM t ORDER BY id"),
        ["20", "30", "40"]
    );
    // A locking read returns the row as it is once the writer commits, and
    // drops a row that no longer matches.
    let mut s1 = t.session();
    run(&mut s1, "BEGIN");
    run(&mut s1, "UPDATE t SET v = v + 1 WHERE id IN (1, 2)");
    run(&mut s1, "DELETE FROM t WHERE id = 3");
    let wait = blocked(s2, |s| {
        texts(
            s,
            "SELECT v FROM t WHERE v >= 20 AND v < 40 ORDER BY id FOR UPDATE",
        )
    });
    run(&mut s1, "COMMIT");
    let (_, rows) = wait.join();
    assert_eq!(rows, ["21", "31"]);
}

pub fn row_lock_deadlock_fails_one_and_timeouts_end_waits() {
    let t = three_rows();
    let results = crossed_waits(&t, |n| format!("UPDATE t SET v = v + 1 WHERE id = {n}"));
    let failed: Vec<_> = results
        .iter()
        .filter_map(|(c, e)| c.as_ref().zip(e.as_ref()))
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert_eq!(failed[0].0, "40P01");
    assert!(failed[0].1.contains("process"), "{}", failed[0].1);
    let mut s = t.session();
    // The survivor added one to both rows.
    assert_eq!(
        texts(&mut s, "SELECT v FROM t WHERE id < 3 ORDER BY id"),
        ["11", "21"]
    );

    let (mut s1, mut s2) = (t.session(), t.session());
    run(&mut s1, "BEGIN");
    run(&mut s1, "DELETE FROM t WHERE id = 3");
    run(&mut s2, "SET lock_timeout = '100ms'");
    assert_sqlstate(s2.execute("UPDATE t SET v = 0 WHERE id = 3"), "55P03");
    assert_sqlstate(s2.execute("INSERT INTO t VALUES (3, 0)"), "55P03");
    run(&mut s2, "SET lock_timeout = 0");
    let canceller = s2.canceller();
    let wait = blocked(s2, |s| s.execute("UPDATE t SET v = 0 WHERE id = 3"));
    canceller.cancel();
    let (mut s2, result) = wait.join();
    assert_sqlstate(result, "57014");
    // Nothing was left locked by the waits that ended.
    run(&mut s1, "ROLLBACK");
    run(&mut s2, "UPDATE t SET v = 0 WHERE id = 3");
}

pub fn lock_views_show_who_waits_for_whom() {
    let t = three_rows();
    let (mut s1, s2, mut s3) = (t.session(), t.session(), t.session());
    run(&mut s1, "BEGIN");
    run(&mut s1, "UPDATE t SET v = 0 WHERE id = 1");
    let wait = blocked(s2, |s| s.execute("UPDATE t SET v = 1 WHERE id = 1"));
    let holder = crate::support::ints(
        &mut s3,
        "SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction'",
    );
    let waiter = crate::support::ints(
        &mut s3,
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND state = 'active'",
    );
    assert_eq!(
        (holder.len(), waiter.len()),
        (1, 1),
        "{holder:?} {waiter:?}"
    );
    assert_eq!(
        texts(&mut s3, &format!("SELECT pg_blocking_pids({})", waiter[0])),
        [format!("{{{}}}", holder[0])]
    );
    assert_eq!(
        crate::support::ints(
            &mut s3,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' AND NOT granted"
        ),
        [1]
    );
    assert_eq!(
        texts(
            &mut s3,
            "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ),
        ["UPDATE t SET v = 1 WHERE id = 1"]
    );
    run(&mut s1, "COMMIT");
    let (_, result) = wait.join();
    result.unwrap();
    assert_eq!(
        crate::support::ints(
            &mut s3,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'tuple'"
        ),
        [0]
    );
}

pub fn concurrent_increments_are_never_lost() {
    // Many threads increment shared counters at READ COMMITTED, with no
    // retries, on the fast path and the general one: no increment is lost
    // and none fails.
    let t = TestDb::buffered();
    let mut s = t.session();
    run(&mut s, "CREATE TABLE c (id int PRIMARY KEY, n bigint)");
    run(&mut s, "INSERT INTO c VALUES (1, 0), (2, 0), (3, 0)");
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let mut s = t.session();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let id = (w + i) % 3 + 1;
                    let sql = if w % 2 == 0 {
                        format!("UPDATE c SET n = n + 1 WHERE id = {id}")
                    } else {
                        format!("UPDATE c SET n = n + 1 WHERE id = {id} AND n >= 0")
                    };
                    run(&mut s, &sql);
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("no increment fails");
    }
    assert_eq!(crate::support::ints(&mut s, "SELECT sum(n) FROM c"), [800]);
}

pub fn concurrent_upserts_neither_fail_nor_lose_counts() {
    // Threads upsert counters that may not exist yet, at READ COMMITTED with
    // no retries: a key inserted by another open transaction is waited for
    // and then updated, so every upsert lands once and none fails.
    let t = TestDb::buffered();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE hits (page text PRIMARY KEY, n bigint NOT NULL)",
    );
    let threads: Vec<_> = (0..6)
        .map(|w| {
            let mut s = t.session();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let page = (w + i) % 4;
                    run(&mut s, "BEGIN");
                    run(
                        &mut s,
                        &format!(
                            "INSERT INTO hits VALUES ('p{page}', 1) \
                             ON CONFLICT (page) DO UPDATE SET n = hits.n + excluded.n"
                        ),
                    );
                    run(&mut s, "COMMIT");
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("no upsert fails");
    }
    assert_eq!(
        crate::support::ints(&mut s, "SELECT sum(n) FROM hits"),
        [360]
    );
    assert_eq!(
        crate::support::ints(&mut s, "SELECT count(*) FROM hits"),
        [4]
    );
}

pub fn upsert_waits_for_a_concurrent_insert_of_its_key() {
    // An upsert meeting a key that an open transaction inserted waits for
    // it: after a commit it updates the new row (DO NOTHING skips it), after
    // a rollback it inserts. At REPEATABLE READ a row committed after the
    // snapshot fails it with 40001, as in PostgreSQL.
    let t = TestDb::buffered();
    let (mut s1, s2) = (t.session(), t.session());
    run(&mut s1, "CREATE TABLE kv (k int PRIMARY KEY, v text)");
    run(&mut s1, "BEGIN; INSERT INTO kv VALUES (1, 'first')");
    let wait = blocked(s2, |s| {
        s.execute("INSERT INTO kv VALUES (1, 'second') ON CONFLICT (k) DO UPDATE SET v = kv.v || '+' || excluded.v")
    });
    run(&mut s1, "COMMIT");
    let (mut s2, result) = wait.join();
    result.expect("the upsert updates the committed row");
    assert_eq!(texts(&mut s2, "SELECT v FROM kv"), ["first+second"]);

    run(&mut s1, "BEGIN; INSERT INTO kv VALUES (2, 'rolled back')");
    let wait = blocked(s2, |s| {
        s.execute("INSERT INTO kv VALUES (2, 'kept') ON CONFLICT DO NOTHING")
    });
    run(&mut s1, "ROLLBACK");
    let (mut s2, result) = wait.join();
    result.expect("the upsert inserts after the rollback");
    assert_eq!(texts(&mut s2, "SELECT v FROM kv WHERE k = 2"), ["kept"]);

    run(&mut s2, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1");
    run(&mut s1, "INSERT INTO kv VALUES (3, 'later')");
    assert_sqlstate(
        s2.execute("INSERT INTO kv VALUES (3, 'x') ON CONFLICT DO NOTHING"),
        "40001",
    );
    run(&mut s2, "ROLLBACK");
}
