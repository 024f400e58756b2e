//! Transaction anomalies, one test each, after the Hermitage suite
//! (github.com/ept/hermitage) and PostgreSQL's documented guarantees.
//!
//! A write of a row another open transaction wrote waits for it, as in
//! PostgreSQL: such steps run in another thread, are checked to be waiting,
//! and finish once the other transaction ends. Outcomes are PostgreSQL's.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use omen::engine::types::Value;
use omen::IsolationLevel::{self, ReadCommitted, RepeatableRead, Serializable};

use crate::support::{all, assert_sqlstate, blocked, hermitage, row, set, value};

const ALL: [IsolationLevel; 3] = [ReadCommitted, RepeatableRead, Serializable];

/// G0: two writers of the same rows; the result is entirely one of them.
/// The second writer waits for the first, then writes over its rows.
pub fn dirty_write_read_committed() {
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(ReadCommitted).unwrap();
    t2.begin_with(ReadCommitted).unwrap();
    set(&mut t1, 1, 11).unwrap();
    let wait = blocked(t2, |s| set(s, 1, 12));
    set(&mut t1, 2, 21).unwrap();
    t1.commit().unwrap();
    let (mut t2, first) = wait.join();
    assert!(first.unwrap());
    set(&mut t2, 2, 22).unwrap();
    t2.commit().unwrap();
    assert_eq!(all(&mut t.session()), vec![(1, 12), (2, 22)]);
}

/// G0 at REPEATABLE READ and SERIALIZABLE: the second writer waits, then
/// fails with 40001 once the first commits.
pub fn dirty_write_repeatable_read() {
    for level in [RepeatableRead, Serializable] {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        set(&mut t1, 1, 11).unwrap();
        let wait = blocked(t2, |s| set(s, 1, 12));
        set(&mut t1, 2, 21).unwrap();
        t1.commit().unwrap();
        let (mut t2, first) = wait.join();
        assert_sqlstate(first, "40001");
        t2.rollback().unwrap();
        assert_eq!(all(&mut t.session()), vec![(1, 11), (2, 21)], "{level:?}");
    }
}

/// A waiting writer whose blocker rolls back goes on, at every level.
pub fn writer_proceeds_when_the_blocker_rolls_back() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        set(&mut t1, 1, 11).unwrap();
        let wait = blocked(t2, |s| set(s, 1, 12));
        t1.rollback().unwrap();
        let (mut t2, result) = wait.join();
        assert!(result.unwrap(), "{level:?}");
        t2.commit().unwrap();
        assert_eq!(all(&mut t.session()), vec![(1, 12), (2, 20)], "{level:?}");
    }
}

/// G1a: nobody reads a write that is rolled back.
pub fn aborted_read() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        set(&mut t1, 1, 101).unwrap();
        assert_eq!(all(&mut t2), vec![(1, 10), (2, 20)]);
        t1.rollback().unwrap();
        assert_eq!(all(&mut t2), vec![(1, 10), (2, 20)]);
        t2.commit().unwrap();
    }
}

/// G1b: nobody reads a value that a transaction later overwrote itself.
pub fn intermediate_read() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        set(&mut t1, 1, 101).unwrap();
        assert_eq!(value(&mut t2, 1), Some(10));
        set(&mut t1, 1, 11).unwrap();
        t1.commit().unwrap();
        let expected = if level == ReadCommitted { 11 } else { 10 };
        assert_eq!(value(&mut t2, 1), Some(expected), "{level:?}");
        t2.commit().unwrap();
    }
}

/// Non-repeatable read: a row read twice changes in between only at READ COMMITTED.
pub fn non_repeatable_read() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        assert_eq!(value(&mut t1, 1), Some(10));
        set(&mut t2, 1, 11).unwrap();
        let expected = if level == ReadCommitted { 11 } else { 10 };
        assert_eq!(value(&mut t1, 1), Some(expected), "{level:?}");
        t1.commit().unwrap();
    }
}

/// G1c: two transactions never each see the other's writes. At SERIALIZABLE
/// each read what the other wrote, a cycle, so the second to commit fails.
pub fn circular_information_flow() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        set(&mut t1, 1, 11).unwrap();
        set(&mut t2, 2, 22).unwrap();
        assert_eq!(value(&mut t1, 2), Some(20));
        assert_eq!(value(&mut t2, 1), Some(10));
        t1.commit().unwrap();
        if level == Serializable {
            assert_sqlstate(t2.commit(), "40001");
        } else {
            t2.commit().unwrap();
        }
    }
}

/// OTV: once a reader sees one of a transaction's writes, it sees all of them.
pub fn observed_transaction_vanishes() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, t2, mut t3) = (t.session(), t.session(), t.session());
        let mut t2 = t2;
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        t3.begin_with(level).unwrap();
        set(&mut t1, 1, 11).unwrap();
        set(&mut t1, 2, 19).unwrap();
        let wait = blocked(t2, |s| set(s, 1, 12));
        t1.commit().unwrap();
        let (returned, first) = wait.join();
        t2 = returned;
        assert_eq!(
            value(&mut t3, 1),
            Some(if level == ReadCommitted { 11 } else { 10 })
        );
        if level == ReadCommitted {
            first.unwrap();
            set(&mut t2, 2, 18).unwrap();
            assert_eq!(value(&mut t3, 2), Some(19));
            t2.commit().unwrap();
            assert_eq!(all(&mut t3), vec![(1, 12), (2, 18)]);
        } else {
            assert_sqlstate(first, "40001");
            t2.rollback().unwrap();
            assert_eq!(all(&mut t3), vec![(1, 10), (2, 20)]);
        }
        t3.commit().unwrap();
    }
}

fn rows_with_value(s: &mut omen::Session, v: i32) -> Vec<(i32, i32)> {
    all(s)
        .into_iter()
        .filter(|(_, value)| *value == v)
        .collect()
}

/// PMP: a predicate read is repeatable at REPEATABLE READ and SERIALIZABLE.
pub fn predicate_many_preceders() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        assert!(rows_with_value(&mut t1, 30).is_empty());
        t2.insert("test", row(3, 30)).unwrap();
        t2.commit().unwrap();
        let expected = if level == ReadCommitted {
            vec![(3, 30)]
        } else {
            vec![]
        };
        assert_eq!(rows_with_value(&mut t1, 30), expected, "{level:?}");
        t1.commit().unwrap();
    }
}

/// P4 with a read-modify-write done by the client: both increments commit at
/// READ COMMITTED, so one is lost (PostgreSQL allows this too).
pub fn lost_update_at_read_committed() {
    // PostgreSQL lets the second writer overwrite the first after waiting:
    // the lost update that READ COMMITTED allows.
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(ReadCommitted).unwrap();
    t2.begin_with(ReadCommitted).unwrap();
    let a = value(&mut t1, 1).unwrap();
    let b = value(&mut t2, 1).unwrap();
    set(&mut t1, 1, a + 1).unwrap();
    let wait = blocked(t2, move |s| set(s, 1, b + 1));
    t1.commit().unwrap();
    let (mut t2, second) = wait.join();
    assert!(second.unwrap());
    t2.commit().unwrap();
    assert_eq!(value(&mut t.session(), 1), Some(11));
}

fn lost_update_prevented(level: IsolationLevel) {
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(level).unwrap();
    t2.begin_with(level).unwrap();
    let a = value(&mut t1, 1).unwrap();
    let b = value(&mut t2, 1).unwrap();
    set(&mut t1, 1, a + 1).unwrap();
    let wait = blocked(t2, move |s| set(s, 1, b + 1));
    t1.commit().unwrap();
    let (mut t2, second) = wait.join();
    let err = second.unwrap_err();
    assert_eq!(err.sqlstate().code(), "40001");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("retry"), "{err}");
    t2.rollback().unwrap();
    assert_eq!(value(&mut t.session(), 1), Some(11));
}

/// P4 at REPEATABLE READ: the second committer fails with 40001.
pub fn lost_update_prevented_at_repeatable_read() {
    lost_update_prevented(RepeatableRead);
}

/// P4 at SERIALIZABLE: the second committer fails with 40001.
pub fn lost_update_prevented_at_serializable() {
    lost_update_prevented(Serializable);
}

fn read_skew(level: IsolationLevel) -> i32 {
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(level).unwrap();
    t2.begin_with(level).unwrap();
    assert_eq!(value(&mut t1, 1), Some(10));
    assert_eq!(value(&mut t2, 1), Some(10));
    assert_eq!(value(&mut t2, 2), Some(20));
    set(&mut t2, 1, 12).unwrap();
    set(&mut t2, 2, 18).unwrap();
    t2.commit().unwrap();
    let seen = value(&mut t1, 2).unwrap();
    t1.commit().unwrap();
    seen
}

/// G-single: READ COMMITTED may see 10 + 18 (PostgreSQL allows it).
pub fn read_skew_allowed_at_read_committed() {
    assert_eq!(read_skew(ReadCommitted), 18);
}

/// G-single: one snapshot at REPEATABLE READ and above.
pub fn read_skew_prevented_at_repeatable_read() {
    assert_eq!(read_skew(RepeatableRead), 20);
    assert_eq!(read_skew(Serializable), 20);
}

/// Each transaction reads both rows and writes one: G2-item.
fn write_skew(level: IsolationLevel) -> omen::Result<()> {
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(level).unwrap();
    t2.begin_with(level).unwrap();
    assert_eq!((value(&mut t1, 1), value(&mut t1, 2)), (Some(10), Some(20)));
    assert_eq!((value(&mut t2, 1), value(&mut t2, 2)), (Some(10), Some(20)));
    set(&mut t1, 1, 11).unwrap();
    set(&mut t2, 2, 21).unwrap();
    t1.commit().unwrap();
    t2.commit()
}

/// G2-item: snapshot isolation lets both commit (PostgreSQL's REPEATABLE READ too).
pub fn write_skew_allowed_at_repeatable_read() {
    write_skew(RepeatableRead).unwrap();
}

/// G2-item: SERIALIZABLE aborts the second with 40001.
pub fn write_skew_prevented_at_serializable() {
    assert_sqlstate(write_skew(Serializable), "40001");
}

/// G2 over a predicate: each sums all rows, then inserts one.
pub fn predicate_write_skew_prevented_at_serializable() {
    for level in [RepeatableRead, Serializable] {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        let sum1: i32 = all(&mut t1).iter().map(|(_, v)| v).sum();
        let sum2: i32 = all(&mut t2).iter().map(|(_, v)| v).sum();
        t1.insert("test", row(3, sum1)).unwrap();
        t2.insert("test", row(4, sum2)).unwrap();
        t1.commit().unwrap();
        let result = t2.commit();
        if level == Serializable {
            assert_sqlstate(result, "40001");
        } else {
            result.unwrap();
        }
    }
}

/// Phantom: a range read twice returns the same rows at REPEATABLE READ and above.
pub fn phantom_prevented_at_repeatable_read_and_serializable() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        let range = |s: &mut omen::Session| {
            s.scan(
                "test",
                Bound::Included(vec![Value::Int32(1)]),
                Bound::Excluded(vec![Value::Int32(10)]),
            )
            .unwrap()
            .len()
        };
        assert_eq!(range(&mut t1), 2);
        t2.insert("test", row(5, 50)).unwrap();
        let expected = if level == ReadCommitted { 3 } else { 2 };
        assert_eq!(range(&mut t1), expected, "{level:?}");
        t1.commit().unwrap();
    }
}

/// Phantom: a SERIALIZABLE writer whose scanned range gained a row aborts.
pub fn phantom_insert_aborts_serializable_writer() {
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(Serializable).unwrap();
    let count = t1
        .scan(
            "test",
            Bound::Included(vec![Value::Int32(1)]),
            Bound::Excluded(vec![Value::Int32(10)]),
        )
        .unwrap()
        .len() as i32;
    t2.insert("test", row(7, 70)).unwrap();
    t1.insert("test", row(100, count)).unwrap();
    assert_sqlstate(t1.commit(), "40001");
    // A key outside the scanned range does not conflict.
    let mut t3 = t.session();
    t3.begin_with(Serializable).unwrap();
    t3.scan(
        "test",
        Bound::Included(vec![Value::Int32(1)]),
        Bound::Excluded(vec![Value::Int32(3)]),
    )
    .unwrap();
    t2.insert("test", row(8, 80)).unwrap();
    t3.insert("test", row(101, 0)).unwrap();
    t3.commit().unwrap();
}

/// Two transactions insert the same key: the second waits for the first,
/// then gets 23505 (40001 when SERIALIZABLE, whose snapshot does not see
/// the row), or goes on when the first rolls back.
pub fn concurrent_duplicate_insert() {
    for level in ALL {
        let t = hermitage();
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        t1.insert("test", row(9, 1)).unwrap();
        let wait = blocked(t2, |s| s.insert("test", row(9, 2)));
        t1.commit().unwrap();
        let code = if level == Serializable {
            "40001"
        } else {
            "23505"
        };
        let (mut t2, second) = wait.join();
        assert_sqlstate(second, code);
        t2.rollback().unwrap();
        assert_eq!(value(&mut t.session(), 9), Some(1));
        // A rolled-back insert lets the waiting one in.
        let (mut t1, mut t2) = (t.session(), t.session());
        t1.begin_with(level).unwrap();
        t2.begin_with(level).unwrap();
        t1.insert("test", row(10, 1)).unwrap();
        let wait = blocked(t2, |s| s.insert("test", row(10, 2)));
        t1.rollback().unwrap();
        let (mut t2, second) = wait.join();
        second.unwrap();
        t2.commit().unwrap();
        assert_eq!(value(&mut t.session(), 10), Some(2));
    }
}

/// A REPEATABLE READ reader summing all accounts always sees the same total
/// while writer threads move money between them.
pub fn read_only_snapshot_is_consistent_while_writers_commit() {
    let t = hermitage();
    let db = t.db.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = db.session();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 2000 {
                    i += 1;
                    s.begin_with(Serializable).unwrap();
                    let a = value(&mut s, 1).unwrap();
                    let b = value(&mut s, 2).unwrap();
                    let amount = (i % 7) + w;
                    if set(&mut s, 1, a - amount).is_err() || set(&mut s, 2, b + amount).is_err() {
                        s.rollback().unwrap();
                        continue;
                    }
                    if s.commit().is_err() {
                        continue;
                    }
                }
            })
        })
        .collect();
    let mut reader = db.session();
    for _ in 0..200 {
        reader.begin_with(RepeatableRead).unwrap();
        let first: i32 = all(&mut reader).iter().map(|(_, v)| v).sum();
        let a = value(&mut reader, 1).unwrap();
        std::thread::yield_now();
        let b = value(&mut reader, 2).unwrap();
        assert_eq!(first, 30);
        assert_eq!(a + b, 30);
        reader.commit().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(
        all(&mut db.session()).iter().map(|(_, v)| v).sum::<i32>(),
        30
    );
}

/// A SERIALIZABLE read-only transaction sees a consistent prefix of the commit
/// order and commits even when everything it read has changed.
pub fn serializable_read_only_never_aborts() {
    let t = hermitage();
    let (mut t1, mut t2) = (t.session(), t.session());
    t1.begin_with(Serializable).unwrap();
    assert_eq!(all(&mut t1), vec![(1, 10), (2, 20)]);
    set(&mut t2, 1, 0).unwrap();
    set(&mut t2, 2, 30).unwrap();
    assert_eq!(all(&mut t1), vec![(1, 10), (2, 20)]);
    t1.commit().unwrap();
}
