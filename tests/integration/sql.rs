//! SQL through `Session::execute`: the fast path against the general path,
//! key filters pushed down to key reads, multi-statement text.

use omen::engine::sql::format;
use omen::engine::types::{DataType, Value};
use omen::{Database, Options, Output, Session};

/// An output as comparable text: the command tag, column names and rows.
fn render(result: &omen::Result<Vec<Output>>) -> String {
    match result {
        Err(e) => format!("ERROR {} {e}", e.sqlstate()),
        Ok(outputs) => outputs
            .iter()
            .map(|output| match output {
                Output::Rows(rows) => {
                    let mut text = format!("{output}\n");
                    for field in rows.schema.fields() {
                        text.push_str(&format!("{}:{} ", field.name(), field.data_type()));
                    }
                    for batch in &rows.batches {
                        for r in 0..batch.num_rows() {
                            text.push('\n');
                            for c in batch.columns() {
                                let value = format::text(c.as_ref(), r);
                                text.push_str(&format!("{} ", value.as_deref().unwrap_or("NULL")));
                            }
                        }
                    }
                    text
                }
                command => command.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn session() -> Session {
    Database::open_in_memory(Options::default())
        .expect("in-memory database")
        .session()
}

/// Statements that qualify for the fast path, and near misses that do not,
/// with the errors both paths must report alike.
const CORPUS: &[&str] = &[
    "CREATE TABLE t (id INT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION, \
     n NUMERIC(8,2) DEFAULT 1.5, d DATE, small SMALLINT)",
    "CREATE TABLE c (a BIGINT, b TEXT, v INT, PRIMARY KEY (a, b))",
    "INSERT INTO t VALUES (1, 'one', 1.5, 2.25, '2024-01-01', 1)",
    "INSERT INTO t (id, name) VALUES (2, 'two')",
    "INSERT INTO t (name, id, score) VALUES ('three', 3, -7)",
    "INSERT INTO t VALUES (4, 'four', 4, 4.999, '2024-02-30', 4)",
    "INSERT INTO t VALUES (4, 'four', 4, 4.5, '2024-02-28', 4)",
    "INSERT INTO t VALUES (5, NULL, 1, 1, NULL, 1)",
    "INSERT INTO t VALUES (6, 'six', 'x', 1, NULL, 1)",
    "INSERT INTO t VALUES (7, 'seven', 1, 1, NULL, 70000)",
    "INSERT INTO t VALUES (8, 'eight', 1, 1, NULL, 2.5)",
    "INSERT INTO t VALUES (9, 'nine', 1, 1, NULL, true)",
    "INSERT INTO t VALUES (10, 'ten')",
    "INSERT INTO t (id, nope) VALUES (11, 1)",
    "INSERT INTO t VALUES (12, 'twelve', 1e3, -0.5, '2024-03-01', -3)",
    "INSERT INTO missing VALUES (1)",
    "INSERT INTO c VALUES (1, 'x', 10)",
    "INSERT INTO c VALUES (1, 'y', 20)",
    "INSERT INTO c VALUES (1, 'x', 30)",
    "SELECT * FROM t WHERE id = 1",
    "SELECT name, id FROM t WHERE id = 2",
    "SELECT * FROM t WHERE id = 99",
    "SELECT * FROM t WHERE 3 = id",
    "SELECT * FROM t WHERE id = 100000000000",
    "SELECT score FROM t WHERE id = 4",
    "SELECT * FROM t WHERE id = 1 AND name = 'one'",
    "SELECT nope FROM t WHERE id = 1",
    "SELECT * FROM c WHERE a = 1 AND b = 'y'",
    "SELECT v FROM c WHERE b = 'x' AND a = 1",
    "SELECT * FROM c WHERE a = 1",
    "UPDATE t SET score = 9.5 WHERE id = 1",
    "UPDATE t SET name = 'TWO', n = 3 WHERE id = 2",
    "UPDATE t SET name = NULL WHERE id = 3",
    "UPDATE t SET small = 99999 WHERE id = 3",
    "UPDATE t SET score = 1 WHERE id = 98",
    "UPDATE t SET nope = 1 WHERE id = 1",
    "UPDATE c SET v = 11 WHERE a = 1 AND b = 'x'",
    "UPDATE c SET v = v + 5 WHERE a = 1 AND b = 'x'",
    "UPDATE t SET small = small - 10, n = 2 WHERE id = 1",
    "UPDATE t SET small = small + 40000 WHERE id = 1",
    "UPDATE t SET small = id + 1 WHERE id = 12",
    "UPDATE t SET small = small + 1 WHERE id = 2",
    "UPDATE t SET small = small + 9223372036854775807 WHERE id = 12",
    "UPDATE t SET small = small * 2 WHERE id = 12",
    "SELECT * FROM t WHERE id IN (1, 2, 12)",
    // Rows of VALUES: alike columns on the fast path, mixed ones not.
    "INSERT INTO t (id, name, score) VALUES (30, 'a', 1.5), (31, 'b', NULL), (32, 'c', -2.5)",
    "INSERT INTO t (id, name, small) VALUES (33, 'd', 1), (34, 'e', 2.5)",
    "INSERT INTO t (id, name, small) VALUES (35, 'f', 1), (36, 'g', 70000)",
    "INSERT INTO t (id, name) VALUES (37, 'h'), (37, 'dup')",
    "INSERT INTO t (id, name) VALUES (38, 'i'), (39, NULL)",
    "INSERT INTO t (id, name, d) VALUES (40, 'j', '2024-01-01'), (41, 'k', 'not a date')",
    "INSERT INTO t (id, name, small) VALUES (42, 'l', 'x'), (43, NULL, 1)",
    "INSERT INTO t VALUES (44, 'm', 1, 1, NULL, 1), (45, 'n')",
    "INSERT INTO c VALUES (2, 'x', 1), (2, 'y', 2), (3, 'x', 3)",
    "SELECT * FROM t WHERE id >= 30",
    "SELECT * FROM c WHERE a > 1",
    "DELETE FROM t WHERE id = 4",
    "DELETE FROM t WHERE id = 4",
    "DELETE FROM c WHERE a = 1 AND b = 'y'",
    "SELECT * FROM t",
    "SELECT * FROM c",
    "BEGIN",
    "INSERT INTO t VALUES (20, 'twenty', 0, 0, NULL, 0)",
    "SELECT * FROM t WHERE id = 20",
    "INSERT INTO t VALUES (20, 'again', 0, 0, NULL, 0)",
    "SELECT * FROM t WHERE id = 20",
    "ROLLBACK",
    "SELECT * FROM t WHERE id = 20",
    // The statement's time, on the fast path for time columns only.
    "CREATE TABLE h (id INT PRIMARY KEY, at TIMESTAMP, tz TIMESTAMPTZ, label TEXT)",
    "INSERT INTO h VALUES (1, now(), CURRENT_TIMESTAMP, 'a')",
    "INSERT INTO h (id, at) VALUES (2, CURRENT_TIMESTAMP)",
    "INSERT INTO h (id, at) VALUES (4, LOCALTIMESTAMP)",
    "INSERT INTO h (id, label) VALUES (3, now())",
    "INSERT INTO h VALUES (1, now(), now(), 'again')",
    "SELECT id, at > '2020-01-01' AND at <= now(), tz > '2020-01-01' AND tz <= now(), \
     length(label) > 10 FROM h ORDER BY id",
];

pub fn fast_path_gives_the_general_paths_results_and_errors() {
    let mut fast = session();
    let mut general = session();
    general.set_fast_path(false);
    for sql in CORPUS {
        let a = render(&fast.execute(sql));
        let b = render(&general.execute(sql));
        assert_eq!(a, b, "the two paths differ on: {sql}");
    }
    assert!(
        fast.fast_path_statements() >= 20,
        "the corpus must exercise the fast path, took it {} times",
        fast.fast_path_statements()
    );
    assert_eq!(general.fast_path_statements(), 0);
}

/// A parameter value as a client gives it; the test turns it into a value
/// of the parameter's type, as the server does with what a driver sends.
#[derive(Clone, Copy)]
enum P {
    Int(i64),
    Float(f64),
    Text(&'static str),
    Null,
}

/// `p` as the value of a parameter of type `t`: numbers as numbers where
/// the type holds them, anything else as text to be read as `t`.
fn param(p: P, t: DataType) -> Value {
    match (p, t) {
        (P::Null, _) => Value::Null,
        (P::Int(v), DataType::Int16) if i16::try_from(v).is_ok() => Value::Int16(v as i16),
        (P::Int(v), DataType::Int32) if i32::try_from(v).is_ok() => Value::Int32(v as i32),
        (P::Int(v), DataType::Int64) => Value::Int64(v),
        (P::Float(v), DataType::Float64) => Value::Float64(v),
        (P::Int(v), _) => Value::Text(v.to_string()),
        (P::Float(v), _) => Value::Text(v.to_string()),
        (P::Text(v), _) => Value::Text(v.to_string()),
    }
}

/// Parameterised statements that qualify for the fast path, near misses
/// and errors; each runs as a prepared statement with these values.
const PREPARED_CORPUS: &[(&str, &[P])] = &[
    (
        "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            P::Int(1),
            P::Text("one"),
            P::Float(1.5),
            P::Text("2.25"),
            P::Text("2024-01-01"),
            P::Int(1),
        ],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, $2, $3)",
        &[P::Int(2), P::Text("two"), P::Float(2.5)],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, $2, $3)",
        &[P::Int(2), P::Text("dup"), P::Null],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, $2, $3)",
        &[P::Int(3), P::Null, P::Null],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, $2, $3)",
        &[P::Text("3"), P::Text("three"), P::Text("-7")],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, $2, $3)",
        &[P::Text("x"), P::Text("x"), P::Null],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, $2, $3)",
        &[P::Int(5_000_000_000), P::Text("big"), P::Null],
    ),
    (
        "INSERT INTO t (id, name, small) VALUES ($1, $2, $3)",
        &[P::Int(6), P::Text("six"), P::Int(70000)],
    ),
    (
        "INSERT INTO t (id, name, small) VALUES ($1, $2, $3)",
        &[P::Int(7), P::Text("seven"), P::Int(-7)],
    ),
    (
        "INSERT INTO t (id, name, d) VALUES ($1, $2, $3)",
        &[P::Int(8), P::Text("eight"), P::Text("2024-02-30")],
    ),
    (
        "INSERT INTO t (id, name) VALUES ($1::int, $2::text)",
        &[P::Int(9), P::Text("nine")],
    ),
    (
        "INSERT INTO t (id, name) VALUES ($1, $2::varchar(2))",
        &[P::Int(10), P::Text("truncated")],
    ),
    (
        "INSERT INTO t (id, name, score) VALUES ($1, 'lit', $2)",
        &[P::Int(11), P::Float(-0.0)],
    ),
    (
        "INSERT INTO c VALUES ($1, $2, $3)",
        &[P::Int(1), P::Text("x"), P::Int(10)],
    ),
    (
        "INSERT INTO c VALUES ($1, $2, $3)",
        &[P::Int(1), P::Text("y"), P::Int(20)],
    ),
    (
        "INSERT INTO c VALUES ($1, $2, $3)",
        &[P::Int(1), P::Text("x"), P::Int(30)],
    ),
    ("SELECT * FROM t WHERE id = $1", &[P::Int(1)]),
    ("SELECT * FROM t WHERE id = $1", &[P::Int(99)]),
    ("SELECT * FROM t WHERE id = $1", &[P::Null]),
    ("SELECT * FROM t WHERE id = $1", &[P::Text("2")]),
    ("SELECT * FROM t WHERE id = $1", &[P::Text("two")]),
    ("SELECT * FROM t WHERE id = $1", &[P::Int(100_000_000_000)]),
    ("SELECT name, id FROM t WHERE $1 = id", &[P::Int(2)]),
    ("SELECT name FROM t WHERE id = $1::bigint", &[P::Int(2)]),
    ("SELECT name FROM t WHERE id = $1::text", &[P::Text("2")]),
    (
        "SELECT * FROM c WHERE a = $1 AND b = $2",
        &[P::Int(1), P::Text("y")],
    ),
    (
        "SELECT v FROM c WHERE b = $2 AND a = $1",
        &[P::Int(1), P::Text("x")],
    ),
    ("SELECT * FROM c WHERE a = $1", &[P::Int(1)]),
    (
        "UPDATE t SET score = $1 WHERE id = $2",
        &[P::Float(9.5), P::Int(1)],
    ),
    (
        "UPDATE t SET score = $1 WHERE id = $2",
        &[P::Null, P::Int(2)],
    ),
    (
        "UPDATE t SET score = $1 WHERE id = $2",
        &[P::Float(1.0), P::Int(98)],
    ),
    (
        "UPDATE t SET name = $1, small = $2 WHERE id = $3",
        &[P::Text("TWO"), P::Int(3), P::Int(2)],
    ),
    (
        "UPDATE t SET name = $1 WHERE id = $2",
        &[P::Null, P::Int(2)],
    ),
    (
        "UPDATE t SET small = $1 WHERE id = $2",
        &[P::Int(99999), P::Int(1)],
    ),
    (
        "UPDATE t SET small = $1::bigint WHERE id = $2",
        &[P::Int(99999), P::Int(1)],
    ),
    (
        "UPDATE t SET small = $1::bigint WHERE id = $2",
        &[P::Int(-9), P::Int(1)],
    ),
    (
        "INSERT INTO t (id, name, small) VALUES ($1::bigint, $2, $3::int)",
        &[P::Int(1 << 40), P::Text("wide"), P::Int(1)],
    ),
    (
        "UPDATE t SET small = small + $1 WHERE id = $2",
        &[P::Int(5), P::Int(1)],
    ),
    (
        "UPDATE t SET small = small - $1 WHERE id = $2",
        &[P::Int(40000), P::Int(1)],
    ),
    (
        "UPDATE t SET small = small + $1 WHERE id = $2",
        &[P::Null, P::Int(7)],
    ),
    (
        "UPDATE t SET small = small + $1 WHERE id = $2",
        &[P::Int(1), P::Int(2)],
    ),
    (
        "UPDATE c SET v = v + $1 WHERE a = $2 AND b = $3",
        &[P::Int(5), P::Int(1), P::Text("x")],
    ),
    (
        "UPDATE c SET v = v - $1 WHERE a = $2 AND b = $3",
        &[P::Int(i64::MIN + 1), P::Int(1), P::Text("x")],
    ),
    (
        "SELECT * FROM t WHERE id IN ($1, $2)",
        &[P::Int(1), P::Int(2)],
    ),
    ("DELETE FROM t WHERE id = $1", &[P::Int(7)]),
    ("DELETE FROM t WHERE id = $1", &[P::Int(7)]),
    (
        "DELETE FROM c WHERE a = $1 AND b = $2",
        &[P::Int(1), P::Text("y")],
    ),
    ("SELECT * FROM t WHERE id > $1", &[P::Int(0)]),
    ("SELECT * FROM c WHERE a > $1", &[P::Int(0)]),
];

pub fn prepared_fast_path_gives_the_general_paths_results_and_errors() {
    let mut fast = session();
    let mut general = session();
    general.set_fast_path(false);
    let schema = "CREATE TABLE t (id INT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION, \
                  n NUMERIC(8,2) DEFAULT 1.5, d DATE, small SMALLINT); \
                  CREATE TABLE c (a BIGINT, b TEXT, v INT, PRIMARY KEY (a, b))";
    for s in [&mut fast, &mut general] {
        s.execute(schema).expect("schema");
    }
    for (sql, values) in PREPARED_CORPUS {
        let [a, b] = [&mut fast, &mut general].map(|s| {
            let run = s.prepare(sql).and_then(|p| {
                let params: Vec<Value> = values
                    .iter()
                    .zip(p.parameter_types())
                    .map(|(&v, &t)| param(v, t))
                    .collect();
                s.execute_prepared(&p, &params).map(|o| vec![o])
            });
            render(&run)
        });
        assert_eq!(a, b, "the two paths differ on: {sql}");
    }
    assert!(
        fast.fast_path_statements() >= 25,
        "the corpus must exercise the fast path, took it {} times",
        fast.fast_path_statements()
    );
    assert_eq!(general.fast_path_statements(), 0);
    assert_eq!(
        render(&fast.execute("SHOW omen.fast_path")),
        render(
            &general
                .execute("SET omen.fast_path = on; SHOW omen.fast_path")
                .map(|mut o| o.split_off(1))
        )
    );
}

/// A prepared statement made before a table changed runs against the table
/// as it is now (its fast-path form made anew), refuses to change the
/// columns it returns (0A000), and fails clearly once the table is gone.
pub fn prepared_statements_follow_table_changes() {
    let mut s = session();
    s.execute("CREATE TABLE p (id INT PRIMARY KEY, name TEXT)")
        .expect("create");
    let insert = s
        .prepare("INSERT INTO p (id, name) VALUES ($1, $2)")
        .expect("prepare insert");
    let star = s
        .prepare("SELECT * FROM p WHERE id = $1")
        .expect("prepare *");
    let name = s
        .prepare("SELECT name FROM p WHERE id = $1")
        .expect("prepare name");
    let run = |s: &mut Session, p: &omen::PreparedStatement, values: &[Value]| {
        render(&s.execute_prepared(p, values).map(|o| vec![o]))
    };
    let one = [Value::Int32(1)];
    assert_eq!(
        run(&mut s, &insert, &[Value::Int32(1), Value::Text("a".into())]),
        "INSERT 0 1"
    );
    assert_eq!(
        run(&mut s, &star, &one),
        "SELECT 1\nid:Int32 name:Utf8 \n1 a "
    );
    let taken = s.fast_path_statements();
    assert_eq!(taken, 2, "both took the fast path");

    s.execute("ALTER TABLE p ADD COLUMN extra INT DEFAULT 7")
        .expect("alter");
    assert_eq!(
        run(&mut s, &insert, &[Value::Int32(2), Value::Text("b".into())]),
        "INSERT 0 1"
    );
    assert_eq!(
        render(&s.execute("SELECT id, extra FROM p ORDER BY id")),
        "SELECT 2\nid:Int32 extra:Int32 \n1 7 \n2 7 "
    );
    assert!(
        run(&mut s, &star, &one).starts_with("ERROR 0A000 cached plan must not change result type")
    );
    assert_eq!(
        run(&mut s, &name, &[Value::Int32(2)]),
        "SELECT 1\nname:Utf8 \nb "
    );
    assert!(
        s.fast_path_statements() >= taken + 2,
        "made anew, still fast"
    );

    // A definition changed inside a transaction is what its statements see.
    s.execute("BEGIN; ALTER TABLE p ALTER COLUMN name SET NOT NULL")
        .expect("alter in a transaction");
    assert!(run(&mut s, &insert, &[Value::Int32(3), Value::Null]).starts_with("ERROR 23502"));
    s.execute("ROLLBACK").expect("rollback");
    assert_eq!(
        run(&mut s, &insert, &[Value::Int32(3), Value::Null]),
        "INSERT 0 1"
    );

    s.execute("DROP TABLE p").expect("drop");
    assert!(
        run(&mut s, &name, &one).starts_with("ERROR 42P01"),
        "{}",
        run(&mut s, &name, &one)
    );
    assert!(run(&mut s, &insert, &one).starts_with("ERROR 08P01"));
    s.execute("CREATE TABLE p (id INT PRIMARY KEY, name TEXT); INSERT INTO p VALUES (1, 'new')")
        .expect("again");
    assert_eq!(run(&mut s, &name, &one), "SELECT 1\nname:Utf8 \nnew ");

    // PREPARE and EXECUTE in SQL keep the fast-path form too.
    s.execute("PREPARE q (int) AS SELECT name FROM p WHERE id = $1; PREPARE u AS UPDATE p SET name = $2 WHERE id = $1")
        .expect("prepare in SQL");
    let before = s.fast_path_statements();
    assert_eq!(render(&s.execute("EXECUTE u(1, 'newer')")), "UPDATE 1");
    assert_eq!(
        render(&s.execute("EXECUTE q(1)")),
        "SELECT 1\nname:Utf8 \nnewer "
    );
    assert_eq!(s.fast_path_statements(), before + 2);
    assert!(render(&s.execute("EXECUTE q(99999999999)")).starts_with("ERROR 22"));
    assert_eq!(
        render(&s.execute("EXECUTE q('1')")),
        "SELECT 1\nname:Utf8 \nnewer "
    );
}

/// Text run again is kept parsed, with its fast-path form: it still sees
/// tables as they are now, and the cache stays bounded.
pub fn repeated_text_is_kept_parsed_and_follows_table_changes() {
    let mut s = session();
    s.execute("CREATE TABLE r (id INT PRIMARY KEY, v TEXT); INSERT INTO r VALUES (1, 'a')")
        .expect("setup");
    let select = "SELECT * FROM r WHERE id = 1";
    assert_eq!(
        render(&s.execute(select)),
        "SELECT 1\nid:Int32 v:Utf8 \n1 a "
    );
    assert_eq!(s.cached_statements(), 0, "a text seen once is not kept");
    let fast = s.fast_path_statements();
    assert_eq!(
        render(&s.execute(select)),
        "SELECT 1\nid:Int32 v:Utf8 \n1 a "
    );
    assert_eq!(s.cached_statements(), 1);
    assert_eq!(
        render(&s.execute(select)),
        "SELECT 1\nid:Int32 v:Utf8 \n1 a "
    );
    assert_eq!(
        s.fast_path_statements(),
        fast + 2,
        "kept with its fast-path form"
    );
    s.execute("ALTER TABLE r ADD COLUMN w INT DEFAULT 5")
        .expect("alter");
    assert_eq!(
        render(&s.execute(select)),
        "SELECT 1\nid:Int32 v:Utf8 w:Int32 \n1 a 5 "
    );
    // A text that failed runs against the table once it exists.
    let missing = "SELECT count(*) FROM later";
    for _ in 0..2 {
        assert!(render(&s.execute(missing)).starts_with("ERROR 42P01"));
    }
    s.execute("CREATE TABLE later (x INT)").expect("create");
    assert_eq!(render(&s.execute(missing)), "SELECT 1\ncount:Int64 \n0 ");
    // Inside a transaction, and through several statements in one text.
    let update = "UPDATE r SET w = w + 1 WHERE id = 1";
    s.execute("BEGIN").expect("begin");
    for _ in 0..3 {
        s.execute(update).expect("update");
    }
    s.execute("ROLLBACK").expect("rollback");
    assert_eq!(
        render(&s.execute("SELECT w FROM r")),
        "SELECT 1\nw:Int32 \n5 "
    );
    // Bounded: many texts, each run twice.
    for i in 0..(omen::engine::sql::STATEMENT_CACHE_ENTRIES + 50) {
        let text = format!("SELECT v FROM r WHERE id = {i}");
        s.execute(&text).expect("select");
        s.execute(&text).expect("select");
    }
    assert_eq!(
        s.cached_statements(),
        omen::engine::sql::STATEMENT_CACHE_ENTRIES
    );
}

fn plan(session: &mut Session, sql: &str) -> String {
    render(&session.execute(&format!("EXPLAIN {sql}")))
}

pub fn key_filters_are_pushed_down_exactly() {
    let mut s = session();
    s.execute(
        "CREATE TABLE k (a INT, b INT, v INT, PRIMARY KEY (a, b)); \
         INSERT INTO k SELECT x / 10, x % 10, x FROM generate_series(0, 99) AS g(x)",
    )
    .expect("setup");
    for (sql, pushed) in [
        ("SELECT v FROM k WHERE a = 3", true),
        (
            "SELECT v FROM k WHERE a IN (1, 3) AND b BETWEEN 2 AND 4",
            true,
        ),
        ("SELECT v FROM k WHERE a > 7", true),
        ("SELECT v FROM k WHERE a = 2 AND b < 3", true),
        ("SELECT v FROM k WHERE b = 3", false),
        ("SELECT v FROM k WHERE v = 3", false),
    ] {
        let plan = plan(&mut s, sql);
        assert_eq!(!plan.contains("FilterExec"), pushed, "{sql}:\n{plan}");
    }
    let rows = |s: &mut Session, sql: &str| render(&s.execute(sql));
    assert_eq!(
        rows(&mut s, "SELECT v FROM k WHERE a IN (1, 3) AND b BETWEEN 2 AND 4 ORDER BY v"),
        rows(&mut s, "SELECT v FROM k WHERE (v / 10 = 1 OR v / 10 = 3) AND v % 10 >= 2 AND v % 10 <= 4 ORDER BY v")
    );
    assert_eq!(
        rows(
            &mut s,
            "SELECT count(*) FROM k WHERE a > 7 AND a <= 8 AND b >= 5"
        ),
        "SELECT 1\ncount:Int64 \n5 "
    );
}

pub fn several_statements_in_one_text() {
    let mut s = session();
    let outputs = s
        .execute("CREATE TABLE m (id INT PRIMARY KEY); INSERT INTO m VALUES (1), (2); SELECT count(*) FROM m;")
        .expect("runs");
    let tags: Vec<String> = outputs.iter().map(|o| o.to_string()).collect();
    assert_eq!(tags, ["CREATE TABLE", "INSERT 0 2", "SELECT 1"]);
    // A failing statement stops the text; those before it keep their effect.
    let err = s
        .execute("INSERT INTO m VALUES (3); INSERT INTO m VALUES (1); INSERT INTO m VALUES (4)")
        .expect_err("duplicate key");
    assert_eq!(err.sqlstate().code(), "23505");
    let count = render(&s.execute("SELECT count(*) AS n FROM m"));
    assert!(count.ends_with("\n3 "), "{count}");
}

fn assert_code(result: omen::Result<Vec<Output>>, code: &str) {
    match result {
        Err(e) => assert_eq!(e.sqlstate().code(), code, "{e}"),
        Ok(outputs) => panic!("expected SQLSTATE {code}, got {}", render(&Ok(outputs))),
    }
}

/// Two sessions through SQL: a write-write conflict at REPEATABLE READ and a
/// write skew at SERIALIZABLE each fail one transaction with 40001.
pub fn concurrent_sql_transactions_conflict_with_40001() {
    let db = Database::open_in_memory(Options::default()).expect("in-memory database");
    let (mut a, mut b) = (db.session(), db.session());
    a.execute(
        "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call BOOLEAN); \
               INSERT INTO doctors VALUES ('alice', true), ('bob', true)",
    )
    .expect("setup");

    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .expect("begin");
    b.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .expect("begin");
    a.execute("UPDATE doctors SET on_call = false WHERE name = 'alice'")
        .expect("a writes");
    a.execute("COMMIT").expect("a commits");
    assert_code(
        b.execute("UPDATE doctors SET on_call = false WHERE name = 'alice'"),
        "40001",
    );
    b.execute("ROLLBACK").expect("rollback");
    a.execute("UPDATE doctors SET on_call = true")
        .expect("reset");

    // Write skew: each checks that someone else is on call, then leaves.
    for s in [&mut a, &mut b] {
        s.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .expect("begin");
        let count = render(&s.execute("SELECT count(*) FROM doctors WHERE on_call"));
        assert!(count.ends_with("\n2 "), "{count}");
    }
    a.execute("UPDATE doctors SET on_call = false WHERE name = 'alice'")
        .expect("a writes");
    b.execute("UPDATE doctors SET on_call = false WHERE name = 'bob'")
        .expect("b writes");
    a.execute("COMMIT").expect("the first to commit wins");
    assert_code(b.execute("COMMIT"), "40001");
    let on_call = render(&a.execute("SELECT count(*) FROM doctors WHERE on_call"));
    assert!(
        on_call.ends_with("\n1 "),
        "someone stays on call: {on_call}"
    );
}

/// Two READ COMMITTED transactions increment one row through SQL. Neither
/// increment may be lost: the second waits for the first, then increments
/// the row the first committed, as in PostgreSQL.
pub fn read_committed_updates_lose_no_increment() {
    let db = Database::open_in_memory(Options::default()).expect("in-memory database");
    let (mut a, mut b) = (db.session(), db.session());
    a.execute(
        "CREATE TABLE counter (id INT PRIMARY KEY, n INT); INSERT INTO counter VALUES (1, 0)",
    )
    .expect("setup");
    // Both general-path and fast-path UPDATEs (a literal key and SET expression).
    for update in [
        "UPDATE counter SET n = n + 1 WHERE id = 1",
        "UPDATE counter SET n = n + 1 WHERE id IN (1)",
    ] {
        a.execute("BEGIN").expect("begin a");
        b.execute("BEGIN").expect("begin b");
        a.execute(update).expect("a increments");
        let wait = crate::support::blocked(b, move |s| s.execute(update));
        a.execute("COMMIT").expect("a commits");
        let (returned, result) = wait.join();
        b = returned;
        result.expect("b increments a's row");
        b.execute("COMMIT").expect("b commits");
        // A statement that starts after a's commit reads a's row and may
        // increment it.
        b.execute("BEGIN").expect("begin b");
        a.execute("BEGIN").expect("begin a");
        a.execute(update).expect("a increments");
        a.execute("COMMIT").expect("a commits");
        b.execute(update).expect("b increments a's row");
        b.execute("COMMIT").expect("b commits");
    }
    let n = render(&a.execute("SELECT n FROM counter"));
    assert!(
        n.ends_with("\n8 "),
        "every committed increment counted: {n}"
    );
}

/// statement_timeout stops a long query with 57014; 0 turns it off.
pub fn statement_timeout_cancels_long_queries() {
    let db = Database::open_in_memory(Options::default()).expect("in-memory database");
    let mut s = db.session();
    assert_code(s.execute("SET statement_timeout = 'soon'"), "22023");
    s.execute("SET statement_timeout = '200ms'").expect("set");
    let started = std::time::Instant::now();
    let result = s.execute("SELECT count(*) FROM generate_series(1, 100000000000)");
    assert_code(result, "57014");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    s.execute("SET statement_timeout = 0").expect("reset");
    assert!(render(&s.execute("SELECT 1")).ends_with("\n1 "));
}

/// `generate_series` in FROM names its column as PostgreSQL does: after the
/// alias, after the alias's column list, or after the function itself.
pub fn set_returning_functions_name_their_column() {
    let mut s = session();
    for (sql, expected) in [
        (
            "SELECT g FROM generate_series(1, 3) g ORDER BY g",
            "g:Int64 \n1 \n2 \n3 ",
        ),
        (
            "SELECT s.g * 2 FROM generate_series(1, 2) AS s(g)",
            "?column?:Int64 \n2 \n4 ",
        ),
        (
            "SELECT generate_series FROM generate_series(5, 5)",
            "generate_series:Int64 \n5 ",
        ),
        (
            "SELECT count(x) FROM generate_series(1, 10) x",
            "count:Int64 \n10 ",
        ),
    ] {
        let text = render(&s.execute(sql));
        assert!(text.ends_with(expected), "{sql}: {text}");
    }
    assert!(
        render(&s.execute("SELECT value FROM generate_series(1, 2) g")).starts_with("ERROR 42703")
    );
}

pub fn definitions_omen_cannot_keep_are_refused() {
    // Bug: partitioning, storage parameters and ADD COLUMN ... SERIAL were
    // accepted and silently dropped; they fail with 0A000 and change nothing.
    let mut s = session();
    s.execute("CREATE TABLE t (id int PRIMARY KEY)")
        .expect("create");
    for sql in [
        "CREATE TABLE p (id int) PARTITION BY RANGE (id)",
        "CREATE TABLE w (id int PRIMARY KEY) WITH (fillfactor = 70)",
        "ALTER TABLE t ADD COLUMN n serial",
        "ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS IDENTITY",
        // A key column's type: its rows would need new keys.
        "ALTER TABLE t ALTER COLUMN id TYPE bigint",
    ] {
        let error = s.execute(sql).expect_err(sql);
        assert_eq!(error.sqlstate().code(), "0A000", "{sql}: {error}");
    }
    let columns = "SELECT count(*) FROM information_schema.columns WHERE table_name = 't'";
    assert_eq!(crate::support::ints(&mut s, columns), [1]);
    assert!(s.execute("SELECT * FROM p").is_err());
}
