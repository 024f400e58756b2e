//! FOREIGN KEY constraints under concurrency and across restarts: a child
//! and the deletion of its parent never both commit.

use crate::support::{assert_sqlstate, blocked, ints, run, TestDb};

const SCHEMA: &str = "CREATE TABLE p (id int PRIMARY KEY, v int); \
    CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p)";

pub fn a_child_insert_waits_for_a_parent_delete_then_decides() {
    // The child's check locks the parent key FOR KEY SHARE, which the
    // delete holds FOR UPDATE: after its commit 23503, after its rollback
    // the child goes in. At every isolation level.
    for level in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] {
        let t = TestDb::buffered();
        let (mut s1, s2) = (t.session(), t.session());
        run(&mut s1, SCHEMA);
        run(&mut s1, "INSERT INTO p VALUES (1, 0), (2, 0)");

        run(&mut s1, "BEGIN; DELETE FROM p WHERE id = 1");
        let sql = format!("BEGIN ISOLATION LEVEL {level}; INSERT INTO c VALUES (1, 1)");
        let wait = blocked(s2, move |s| s.execute(&sql));
        run(&mut s1, "COMMIT");
        let (mut s2, result) = wait.join();
        assert!(
            result.is_err(),
            "{level}: a child of a deleted parent went in"
        );
        let code = result.unwrap_err().sqlstate().code();
        assert!(matches!(code, "23503" | "40001"), "{level}: {code}");
        run(&mut s2, "ROLLBACK");

        run(&mut s1, "BEGIN; DELETE FROM p WHERE id = 2");
        let sql = format!("BEGIN ISOLATION LEVEL {level}; INSERT INTO c VALUES (2, 2)");
        let wait = blocked(s2, move |s| s.execute(&sql));
        run(&mut s1, "ROLLBACK");
        let (mut s2, result) = wait.join();
        result.unwrap_or_else(|e| panic!("{level}: the parent is back: {e}"));
        run(&mut s2, "COMMIT");
        assert_eq!(ints(&mut s2, "SELECT p_id FROM c"), [2], "{level}");
    }
}

pub fn a_parent_delete_waits_for_a_child_insert_then_decides() {
    // The delete waits for the transaction that inserted a child: after its
    // commit the parent is still referenced (23503), after its rollback the
    // delete goes through.
    let t = TestDb::buffered();
    let (mut s1, s2) = (t.session(), t.session());
    run(&mut s1, SCHEMA);
    run(&mut s1, "INSERT INTO p VALUES (1, 0), (2, 0)");

    run(&mut s1, "BEGIN; INSERT INTO c VALUES (1, 1)");
    let wait = blocked(s2, |s| s.execute("DELETE FROM p WHERE id = 1"));
    run(&mut s1, "COMMIT");
    let (s2, result) = wait.join();
    assert_sqlstate(result, "23503");

    run(&mut s1, "BEGIN; INSERT INTO c VALUES (2, 2)");
    let wait = blocked(s2, |s| s.execute("DELETE FROM p WHERE id = 2"));
    run(&mut s1, "ROLLBACK");
    let (mut s2, result) = wait.join();
    result.expect("no child is left");
    assert_eq!(ints(&mut s2, "SELECT id FROM p"), [1]);

    // A parent's other columns change beside a child insert: no wait.
    run(&mut s1, "BEGIN; INSERT INTO c VALUES (3, 1)");
    run(&mut s2, "UPDATE p SET v = 5 WHERE id = 1");
    run(&mut s1, "COMMIT");
}

pub fn concurrent_children_and_parent_deletes_keep_every_reference() {
    // Threads insert children of random parents while others delete and
    // re-insert parents, at every isolation level, with no retries: every
    // child left has its parent.
    for level in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] {
        let t = TestDb::buffered();
        let mut s = t.session();
        run(&mut s, SCHEMA);
        run(
            &mut s,
            "INSERT INTO p SELECT g, 0 FROM generate_series(1, 8) AS g",
        );
        let threads: Vec<_> = (0..4u64)
            .map(|n| {
                let mut s = t.session();
                let level = level.to_string();
                std::thread::spawn(move || {
                    let mut seed = n * 7919 + 1;
                    let mut next = move || {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (seed >> 33) as i64
                    };
                    for i in 0..60 {
                        let parent = next() % 8 + 1;
                        let sql = if n % 2 == 0 {
                            format!(
                                "BEGIN ISOLATION LEVEL {level}; INSERT INTO c VALUES ({}, {parent}); COMMIT",
                                n as i64 * 1000 + i
                            )
                        } else if i % 2 == 0 {
                            format!("BEGIN ISOLATION LEVEL {level}; DELETE FROM p WHERE id = {parent}; COMMIT")
                        } else {
                            format!("BEGIN ISOLATION LEVEL {level}; INSERT INTO p VALUES ({parent}, 0) ON CONFLICT DO NOTHING; COMMIT")
                        };
                        if let Err(e) = s.execute(&sql) {
                            let code = e.sqlstate().code();
                            assert!(matches!(code, "23503" | "40001"), "{level}: {e}");
                            let _ = s.execute("ROLLBACK");
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a writer panicked");
        }
        assert_eq!(
            ints(
                &mut s,
                "SELECT count(*) FROM c WHERE p_id NOT IN (SELECT id FROM p)"
            ),
            [0],
            "{level}: a child lost its parent"
        );
    }
}

pub fn foreign_keys_survive_a_restart() {
    // The constraint, its hidden index and the cascade work after reopening.
    let t = TestDb::new();
    let mut s = t.session();
    run(
        &mut s,
        "CREATE TABLE p (id int PRIMARY KEY); \
         CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE CASCADE); \
         INSERT INTO p VALUES (1), (2); \
         INSERT INTO c VALUES (10, 1), (11, 1), (12, 2)",
    );
    drop(s);
    let t = t.reopen();
    let mut s = t.session();
    assert_sqlstate(s.execute("INSERT INTO c VALUES (13, 3)"), "23503");
    run(&mut s, "DELETE FROM p WHERE id = 1");
    assert_eq!(ints(&mut s, "SELECT id FROM c ORDER BY id"), [12]);
    assert_eq!(
        ints(
            &mut s,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        ),
        [1]
    );
}
