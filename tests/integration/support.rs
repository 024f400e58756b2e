//! Helpers shared by the integration tests.

use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Value};
use omen::{Database, Durability, Options, Session};
use tempfile::TempDir;

/// A database in a fresh temporary directory (removed when dropped).
pub struct TestDb {
    pub db: Database,
    pub dir: TempDir,
}

impl TestDb {
    /// A durable database in a new temporary directory.
    pub fn new() -> TestDb {
        Self::with(Options::default())
    }

    /// A database whose commits skip fsync: for tests about concurrency, not durability.
    pub fn buffered() -> TestDb {
        Self::with(Options {
            durability: Durability::Buffered,
            ..Options::default()
        })
    }

    pub fn with(options: Options) -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = Database::open(dir.path(), options).expect("open database");
        TestDb { db, dir }
    }

    /// Closes and reopens the database in the same directory.
    pub fn reopen(self) -> TestDb {
        let TestDb { db, dir } = self;
        drop(db);
        let db = Database::open(dir.path(), Options::default()).expect("reopen database");
        TestDb { db, dir }
    }

    pub fn session(&self) -> Session {
        self.db.session()
    }
}

/// `test (id int primary key, value int)` holding (1, 10) and (2, 20), as in
/// the Hermitage isolation tests.
pub fn hermitage() -> TestDb {
    let t = TestDb::buffered();
    let mut s = t.session();
    s.create_table(
        "test",
        vec![
            ColumnDef::new("id", DataType::Int32),
            ColumnDef::new("value", DataType::Int32),
        ],
        &["id".to_string()],
        false,
    )
    .unwrap();
    s.insert("test", row(1, 10)).unwrap();
    s.insert("test", row(2, 20)).unwrap();
    t
}

pub fn row(id: i32, value: i32) -> Vec<Value> {
    vec![Value::Int32(id), Value::Int32(value)]
}

/// The value column of row `id`, as `s` sees it.
pub fn value(s: &mut Session, id: i32) -> Option<i32> {
    s.get("test", &[Value::Int32(id)])
        .unwrap()
        .map(|r| match r[1] {
            Value::Int32(v) => v,
            ref other => panic!("unexpected value {other:?}"),
        })
}

/// Sets the value column of row `id`.
pub fn set(s: &mut Session, id: i32, v: i32) -> omen::Result<bool> {
    s.update("test", row(id, v))
}

/// All (id, value) pairs `s` sees, in key order.
pub fn all(s: &mut Session) -> Vec<(i32, i32)> {
    s.scan_all("test")
        .unwrap()
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Int32(a), Value::Int32(b)) => (*a, *b),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

/// Asserts that `result` failed with SQLSTATE `code`.
#[track_caller]
pub fn assert_sqlstate<T: std::fmt::Debug>(result: omen::Result<T>, code: &str) {
    match result {
        Err(e) => assert_eq!(e.sqlstate().code(), code, "wrong SQLSTATE for: {e}"),
        Ok(v) => panic!("expected SQLSTATE {code}, got Ok({v:?})"),
    }
}

/// Runs SQL that must succeed.
pub fn run(s: &mut Session, sql: &str) -> Vec<omen::Output> {
    s.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The first column of a query's rows, as integers, in the order returned.
pub fn ints(s: &mut Session, sql: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for output in run(s, sql) {
        let omen::Output::Rows(rows) = output else {
            panic!("{sql} returned no rows");
        };
        for batch in &rows.batches {
            for r in 0..batch.num_rows() {
                let value = omen::engine::sql::format::text(batch.column(0).as_ref(), r);
                out.push(value.expect("not NULL").parse().expect("an integer"));
            }
        }
    }
    out
}

/// A statement running in another thread that must wait for a lock; see [`blocked`].
pub struct Blocked<T> {
    handle: std::thread::JoinHandle<(Session, T)>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Blocked<T> {
    /// Whether it is still waiting.
    pub fn waiting(&self) -> bool {
        !self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits for it to finish: the session back, and what `f` returned.
    pub fn join(self) -> (Session, T) {
        self.handle.join().expect("the blocked statement panicked")
    }
}

/// Runs `f` on `s` in another thread and checks that it is still waiting
/// (for a lock another session holds) after a while.
pub fn blocked<T: Send + 'static>(
    mut s: Session,
    f: impl FnOnce(&mut Session) -> T + Send + 'static,
) -> Blocked<T> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let handle = std::thread::spawn(move || {
        let value = f(&mut s);
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        (s, value)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let blocked = Blocked { handle, done };
    assert!(blocked.waiting(), "the statement did not wait for the lock");
    blocked
}

/// The text of every row of a one-column query (NULL as empty).
pub fn texts(s: &mut Session, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for output in run(s, sql) {
        if let omen::Output::Rows(rows) = output {
            for batch in &rows.batches {
                for r in 0..batch.num_rows() {
                    out.push(
                        omen::engine::sql::format::text(batch.column(0).as_ref(), r)
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }
    out
}

/// Runs the omen binary with `args`, `stdin` piped in, and waits for it.
pub fn run_omen(args: &[&std::ffi::OsStr], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_omen"))
        .args(args)
        .env_remove("OMEN_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("omen starts");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("omen finishes")
}
