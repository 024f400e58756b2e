//! DDL inside transaction blocks: invisible to other sessions until COMMIT,
//! gone after ROLLBACK, and ordered with other sessions' writes by locks.

use crate::support::{assert_sqlstate, blocked, ints, run, texts, TestDb};

pub fn uncommitted_ddl_is_invisible_to_other_sessions() {
    let t = TestDb::buffered();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(
        &mut s1,
        "CREATE TABLE old (id int PRIMARY KEY, v int); INSERT INTO old VALUES (1, 1)",
    );
    run(
        &mut s1,
        "BEGIN; CREATE TABLE fresh (id int PRIMARY KEY); INSERT INTO fresh VALUES (7); \
         ALTER TABLE old ADD COLUMN w int DEFAULT 5",
    );
    assert_sqlstate(s2.execute("SELECT * FROM fresh"), "42P01");
    assert_eq!(
        texts(
            &mut s2,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'old' ORDER BY ordinal_position"
        ),
        ["id", "v"],
        "another session sees the committed definition"
    );
    assert_eq!(ints(&mut s2, "SELECT v FROM old"), [1]);
    run(&mut s1, "COMMIT");
    assert_eq!(ints(&mut s2, "SELECT id FROM fresh"), [7]);
    assert_eq!(ints(&mut s2, "SELECT w FROM old"), [5]);
}

pub fn writers_wait_for_a_transaction_that_altered_their_table() {
    // ALTER TABLE in a transaction block holds the table until it ends, as
    // PostgreSQL's ACCESS EXCLUSIVE lock does for writers.
    let t = TestDb::buffered();
    let (mut s1, s2) = (t.session(), t.session());
    run(&mut s1, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    run(&mut s1, "BEGIN; CREATE INDEX t_v ON t (v)");
    let wait = blocked(s2, |s| s.execute("INSERT INTO t VALUES (1, 10)"));
    run(&mut s1, "ROLLBACK");
    let (mut s2, result) = wait.join();
    result.expect("the insert goes on once the DDL rolled back");
    assert_eq!(ints(&mut s2, "SELECT v FROM t WHERE v = 10"), [10]);
    assert_eq!(
        ints(
            &mut s2,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 't_v'"
        ),
        [0]
    );
}

pub fn two_transactions_creating_one_name_commit_once() {
    let t = TestDb::buffered();
    let (mut s1, mut s2) = (t.session(), t.session());
    run(
        &mut s1,
        "BEGIN; CREATE TABLE same (id int PRIMARY KEY); INSERT INTO same VALUES (1)",
    );
    run(
        &mut s2,
        "BEGIN; CREATE TABLE same (id int PRIMARY KEY); INSERT INTO same VALUES (2)",
    );
    run(&mut s1, "COMMIT");
    assert_sqlstate(s2.execute("COMMIT"), "42P07");
    assert_eq!(ints(&mut s2, "SELECT id FROM same"), [1]);
}

pub fn committed_ddl_survives_a_restart() {
    // A table created and filled in one transaction block is whole after
    // reopening: its rows, its sequence and its index.
    let t = TestDb::new();
    let mut s = t.session();
    run(
        &mut s,
        "BEGIN; CREATE TABLE t (id serial PRIMARY KEY, v text); CREATE INDEX t_v ON t (v); \
         INSERT INTO t (v) VALUES ('a'), ('b'); COMMIT",
    );
    drop(s);
    let t = t.reopen();
    let mut s = t.session();
    run(&mut s, "INSERT INTO t (v) VALUES ('c')");
    assert_eq!(ints(&mut s, "SELECT id FROM t ORDER BY id"), [1, 2, 3]);
    assert_eq!(ints(&mut s, "SELECT id FROM t WHERE v = 'b'"), [2]);
}
