//! Advisory locks, as migration tools and job runners take them. Each test
//! opens with the behaviour it pins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use omen::{Output, Session};

use crate::support::{assert_sqlstate, run, TestDb};

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

    let barrier = Arc::new(Barrier::new(2));
    let outcomes: Vec<_> = [(1, 2), (2, 1)]
        .into_iter()
        .map(|(mine, theirs)| {
            let mut s = t.session();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                run(&mut s, "BEGIN");
                run(&mut s, &format!("SELECT pg_advisory_xact_lock({mine})"));
                barrier.wait();
                let result = s.execute(&format!("SELECT pg_advisory_xact_lock({theirs})"));
                let code = result
                    .as_ref()
                    .err()
                    .map(|e| e.sqlstate().code().to_string());
                run(&mut s, if code.is_some() { "ROLLBACK" } else { "COMMIT" });
                code
            })
        })
        .collect();
    let codes: Vec<Option<String>> = outcomes
        .into_iter()
        .map(|h| h.join().expect("session thread"))
        .collect();
    let failed: Vec<_> = codes.iter().flatten().collect();
    assert_eq!(failed, vec!["40P01"], "{codes:?}");
}
