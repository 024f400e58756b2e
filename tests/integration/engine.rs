//! Engine behaviour through the public API: persistence, constraints, scans,
//! schema changes and garbage collection.

use std::ops::Bound;
use std::time::Duration;

use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Decimal, Interval, Value};
use omen::{IsolationLevel, Options};

use crate::support::{all, assert_sqlstate, hermitage, row, set, value, TestDb};

fn every_type_table(s: &mut omen::Session) {
    let columns = vec![
        ColumnDef::new("id", DataType::Int64),
        ColumnDef::new("b", DataType::Bool),
        ColumnDef::new("i2", DataType::Int16),
        ColumnDef::new("i4", DataType::Int32),
        ColumnDef::new("f4", DataType::Float32),
        ColumnDef::new("f8", DataType::Float64),
        ColumnDef::new(
            "n",
            DataType::Decimal {
                precision: 10,
                scale: 2,
            },
        ),
        ColumnDef::new("t", DataType::Text),
        ColumnDef::new("v", DataType::Varchar(8)),
        ColumnDef::new("c", DataType::Char(3)),
        ColumnDef::new("by", DataType::Bytes),
        ColumnDef::new("d", DataType::Date),
        ColumnDef::new("tm", DataType::Time),
        ColumnDef::new("ts", DataType::Timestamp),
        ColumnDef::new("tz", DataType::TimestampTz),
        ColumnDef::new("iv", DataType::Interval),
    ];
    s.create_table("every", columns, &["id".to_string()], false)
        .unwrap();
}

fn every_type_row(id: i64) -> Vec<Value> {
    vec![
        Value::Int64(id),
        Value::Bool(true),
        Value::Int16(-7),
        Value::Int32(1 << 20),
        Value::Float32(1.5),
        Value::Float64(-2.25),
        Value::Decimal(Decimal::new(12345, 2).unwrap()),
        Value::Text("héllo".into()),
        Value::Text("short".into()),
        Value::Text("ab ".into()),
        Value::Bytes(vec![0, 1, 255]),
        Value::Date(19_000),
        Value::Time(3_600_000_000),
        Value::Timestamp(1_700_000_000_000_000),
        Value::TimestampTz(-5),
        Value::Interval(Interval {
            months: 1,
            days: 2,
            micros: 3,
        }),
    ]
}

pub fn rows_and_tables_survive_reopen() {
    let t = TestDb::new();
    let mut s = t.session();
    every_type_table(&mut s);
    for id in 0..50 {
        s.insert("every", every_type_row(id)).unwrap();
    }
    s.insert("every", {
        let mut r = every_type_row(99);
        r[1..].iter_mut().for_each(|v| *v = Value::Null);
        r
    })
    .unwrap();
    drop(s);
    let t = t.reopen();
    let mut s = t.session();
    let rows = s.scan_all("every").unwrap();
    assert_eq!(rows.len(), 51);
    assert_eq!(rows[3], every_type_row(3));
    assert!(rows[50][1..].iter().all(Value::is_null));
    assert_eq!(t.db.catalog().tables().len(), 1);
}

pub fn timestamps_keep_rising_across_restarts() {
    let t = hermitage();
    let before = t.db.catalog().tables().len();
    let TestDb { db, dir } = t;
    let visible = db_visible(&db);
    drop(db);
    let t = TestDb {
        db: omen::Database::open(dir.path(), Options::default()).unwrap(),
        dir,
    };
    assert_eq!(t.db.catalog().tables().len(), before);
    assert_eq!(
        db_visible(&t.db),
        visible,
        "the oracle resumes where it stopped"
    );
    set(&mut t.session(), 1, 5).unwrap();
    assert!(db_visible(&t.db) > visible);
}

fn db_visible(db: &omen::Database) -> u64 {
    db.visible_ts()
}

pub fn statements_are_atomic_and_errors_abort_the_transaction() {
    let t = hermitage();
    let mut s = t.session();
    s.begin().unwrap();
    set(&mut s, 1, 11).unwrap();
    assert_sqlstate(s.insert("test", row(2, 0)), "23505");
    assert!(s.is_aborted());
    assert_sqlstate(s.get("test", &[Value::Int32(1)]), "25P02");
    assert_sqlstate(s.commit(), "25P02");
    assert!(!s.in_transaction());
    assert_eq!(
        value(&mut s, 1),
        Some(10),
        "the aborted transaction changed nothing"
    );
    // Autocommit: a failed statement leaves no transaction behind.
    assert_sqlstate(s.insert("test", row(1, 0)), "23505");
    assert!(!s.in_transaction());
    assert_sqlstate(s.commit(), "25P01");
    s.begin().unwrap();
    assert_sqlstate(s.begin(), "25001");
    s.rollback().unwrap();
}

pub fn duplicate_and_not_null_are_enforced() {
    let t = TestDb::buffered();
    let mut s = t.session();
    s.create_table(
        "kv",
        vec![
            ColumnDef::new("a", DataType::Text),
            ColumnDef::new("b", DataType::Int32),
            ColumnDef::new("v", DataType::Text).not_null(),
        ],
        &["a".to_string(), "b".to_string()],
        false,
    )
    .unwrap();
    let r = |a: &str, b: i32, v: Option<&str>| {
        vec![
            Value::Text(a.into()),
            Value::Int32(b),
            v.map_or(Value::Null, |v| Value::Text(v.into())),
        ]
    };
    s.insert("kv", r("x", 1, Some("one"))).unwrap();
    s.insert("kv", r("x", 2, Some("two"))).unwrap();
    let err = s.insert("kv", r("x", 1, Some("again"))).unwrap_err();
    assert_eq!(err.sqlstate().code(), "23505");
    assert!(
        err.to_string().contains("Key (a, b)=(x, 1) already exists"),
        "{err}"
    );
    assert_sqlstate(s.insert("kv", r("y", 1, None)), "23502");
    assert_sqlstate(
        s.insert(
            "kv",
            vec![Value::Null, Value::Int32(1), Value::Text("v".into())],
        ),
        "23502",
    );
    assert_sqlstate(
        s.insert(
            "kv",
            vec![Value::Int32(1), Value::Int32(1), Value::Text("v".into())],
        ),
        "42804",
    );
    assert_eq!(s.scan_all("kv").unwrap().len(), 2);
    // Deleting and inserting the same key in one transaction is fine.
    s.begin().unwrap();
    assert!(s
        .delete("kv", &[Value::Text("x".into()), Value::Int32(1)])
        .unwrap());
    s.insert("kv", r("x", 1, Some("new"))).unwrap();
    s.commit().unwrap();
    assert_eq!(
        s.get("kv", &[Value::Text("x".into()), Value::Int32(1)])
            .unwrap()
            .unwrap()[2],
        Value::Text("new".into())
    );
}

pub fn range_scans_follow_key_order() {
    let t = TestDb::buffered();
    let mut s = t.session();
    s.create_table(
        "series",
        vec![
            ColumnDef::new("host", DataType::Text),
            ColumnDef::new("at", DataType::Timestamp),
            ColumnDef::new("v", DataType::Float64),
        ],
        &["host".to_string(), "at".to_string()],
        false,
    )
    .unwrap();
    s.begin().unwrap();
    for host in ["b", "a", "c"] {
        for at in [5i64, -3, 0, 12, 7] {
            s.insert(
                "series",
                vec![
                    Value::Text(host.into()),
                    Value::Timestamp(at),
                    Value::Float64(at as f64),
                ],
            )
            .unwrap();
        }
    }
    s.commit().unwrap();
    let key = |rows: Vec<Vec<Value>>| -> Vec<(String, i64)> {
        rows.into_iter()
            .map(|r| match (&r[0], &r[1]) {
                (Value::Text(h), Value::Timestamp(t)) => (h.clone(), *t),
                _ => unreachable!(),
            })
            .collect()
    };
    let b = key(s
        .scan(
            "series",
            Bound::Included(vec![Value::Text("b".into())]),
            Bound::Included(vec![Value::Text("b".into())]),
        )
        .unwrap());
    assert_eq!(b, [-3, 0, 5, 7, 12].map(|t| ("b".to_string(), t)).to_vec());
    let window = key(s
        .scan(
            "series",
            Bound::Excluded(vec![Value::Text("a".into()), Value::Timestamp(5)]),
            Bound::Excluded(vec![Value::Text("b".into()), Value::Timestamp(5)]),
        )
        .unwrap());
    assert_eq!(
        window,
        vec![
            ("a".into(), 7),
            ("a".into(), 12),
            ("b".into(), -3),
            ("b".into(), 0)
        ]
    );
    assert_eq!(s.scan_all("series").unwrap().len(), 15);
}

pub fn own_writes_are_visible_and_merged_in_scans() {
    let t = hermitage();
    let mut s = t.session();
    s.begin_with(IsolationLevel::RepeatableRead).unwrap();
    s.insert("test", row(0, 0)).unwrap();
    s.insert("test", row(3, 30)).unwrap();
    set(&mut s, 2, 22).unwrap();
    assert!(s.delete("test", &[Value::Int32(1)]).unwrap());
    assert!(!s.delete("test", &[Value::Int32(1)]).unwrap());
    assert_eq!(all(&mut s), vec![(0, 0), (2, 22), (3, 30)]);
    assert_eq!(
        all(&mut t.session()),
        vec![(1, 10), (2, 20)],
        "others see nothing yet"
    );
    s.commit().unwrap();
    assert_eq!(all(&mut t.session()), vec![(0, 0), (2, 22), (3, 30)]);
}

pub fn alter_table_keeps_old_rows_readable() {
    let t = hermitage();
    let mut s = t.session();
    s.add_column(
        "test",
        ColumnDef::new("note", DataType::Text).default(Value::Text("old".into())),
    )
    .unwrap();
    s.insert(
        "test",
        vec![Value::Int32(3), Value::Int32(30), Value::Text("new".into())],
    )
    .unwrap();
    assert_sqlstate(
        s.add_column("test", ColumnDef::new("strict", DataType::Int32).not_null()),
        "23502",
    );
    s.drop_column("test", "value").unwrap();
    assert_sqlstate(s.drop_column("test", "id"), "0A000");
    assert_sqlstate(s.drop_column("test", "nope"), "42703");
    drop(s);
    let t = t.reopen();
    let rows = t.session().scan_all("test").unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Value::Int32(1), Value::Text("old".into())],
            vec![Value::Int32(2), Value::Text("old".into())],
            vec![Value::Int32(3), Value::Text("new".into())],
        ]
    );
}

pub fn ddl_errors() {
    let t = hermitage();
    let mut s = t.session();
    let cols = || vec![ColumnDef::new("id", DataType::Int32)];
    assert_sqlstate(
        s.create_table("test", cols(), &["id".to_string()], false),
        "42P07",
    );
    assert!(!s
        .create_table("test", cols(), &["id".to_string()], true)
        .unwrap());
    // A table without a primary key keys rows by hidden row ids: equal rows
    // are allowed, and there is no key to address a row by.
    assert!(s.create_table("nokey", cols(), &[], false).unwrap());
    s.insert("nokey", vec![Value::Int32(1)]).unwrap();
    s.insert("nokey", vec![Value::Int32(1)]).unwrap();
    assert_eq!(s.scan_all("nokey").unwrap().len(), 2);
    assert_sqlstate(s.get("nokey", &[]), "22023");
    assert_sqlstate(
        s.create_table("badkey", cols(), &["nope".to_string()], false),
        "42703",
    );
    assert_sqlstate(
        s.create_table(
            "dup",
            vec![
                ColumnDef::new("a", DataType::Int32),
                ColumnDef::new("a", DataType::Int32),
            ],
            &["a".to_string()],
            false,
        ),
        "42701",
    );
    assert_sqlstate(
        s.create_table(
            "iv",
            vec![ColumnDef::new("a", DataType::Interval)],
            &["a".to_string()],
            false,
        ),
        "0A000",
    );
    let err = s.get("tset", &[Value::Int32(1)]).unwrap_err();
    assert_eq!(err.sqlstate().code(), "42P01");
    assert!(err.to_string().contains("did you mean \"test\""), "{err}");
    assert_sqlstate(s.drop_table("nope", false), "42P01");
    assert!(!s.drop_table("nope", true).unwrap());
    // DROP TABLE is transactional: a rollback brings the table back.
    s.begin().unwrap();
    assert!(s.drop_table("test", false).unwrap());
    assert_sqlstate(s.get("test", &[Value::Int32(1)]), "42P01");
    s.rollback().unwrap();
    assert!(s.get("test", &[Value::Int32(1)]).unwrap().is_some());
    assert!(s.drop_table("test", false).unwrap());
    assert_sqlstate(s.get("test", &[Value::Int32(1)]), "42P01");
    // A new table of the same name starts empty: dropped rows are gone.
    s.create_table("test", cols(), &["id".to_string()], false)
        .unwrap();
    assert!(s.scan_all("test").unwrap().is_empty());
}

pub fn concurrent_drop_fails_writer() {
    let t = hermitage();
    let (mut writer, mut ddl) = (t.session(), t.session());
    writer.begin().unwrap();
    set(&mut writer, 1, 99).unwrap();
    ddl.drop_table("test", false).unwrap();
    assert_sqlstate(writer.commit(), "42P01");
    assert_eq!(t.db.catalog().tables().len(), 0);
}

pub fn gc_removes_invisible_versions_only() {
    let t = hermitage();
    let mut s = t.session();
    for v in 0..100 {
        set(&mut s, 1, v).unwrap();
    }
    assert_eq!(t.db.stored_versions("test").unwrap(), 102);
    // A snapshot taken now must keep seeing 99 however much is collected.
    let mut reader = t.session();
    reader.begin_with(IsolationLevel::RepeatableRead).unwrap();
    assert_eq!(value(&mut reader, 1), Some(99));
    for v in 100..110 {
        set(&mut s, 1, v).unwrap();
    }
    assert!(s.delete("test", &[Value::Int32(2)]).unwrap());
    t.db.gc().unwrap();
    // Row 1: ten versions newer than the reader plus the one it sees; row 2:
    // its tombstone (newer than the reader) and the version the reader sees.
    assert_eq!(t.db.stored_versions("test").unwrap(), 11 + 2);
    assert_eq!(value(&mut reader, 1), Some(99));
    assert_eq!(value(&mut reader, 2), Some(20));
    reader.commit().unwrap();
    t.db.gc().unwrap();
    assert_eq!(
        t.db.stored_versions("test").unwrap(),
        1,
        "only row 1's newest version is left"
    );
    assert_eq!(all(&mut s), vec![(1, 109)]);
}

pub fn gc_respects_retention_window() {
    let t = TestDb::with(Options {
        gc_retention: Duration::from_secs(3600),
        ..Options::default()
    });
    let mut s = t.session();
    s.create_table(
        "k",
        vec![
            ColumnDef::new("id", DataType::Int32),
            ColumnDef::new("v", DataType::Int32),
        ],
        &["id".to_string()],
        false,
    )
    .unwrap();
    s.insert("k", vec![Value::Int32(1), Value::Int32(0)])
        .unwrap();
    for v in 1..20 {
        s.update("k", vec![Value::Int32(1), Value::Int32(v)])
            .unwrap();
    }
    t.db.gc().unwrap();
    assert_eq!(
        t.db.stored_versions("k").unwrap(),
        20,
        "versions within the retention window stay"
    );
}

/// Rows of a table without a primary key written before a restart are not
/// overwritten by rows written after it (their hidden row ids stay unique).
pub fn row_ids_stay_unique_across_reopen() {
    let t = TestDb::new();
    let mut s = t.db.session();
    s.execute("CREATE TABLE events (kind TEXT); INSERT INTO events VALUES ('a'), ('b')")
        .unwrap();
    drop(s);
    let t = t.reopen();
    let mut s = t.db.session();
    s.execute("INSERT INTO events VALUES ('c'), ('a')").unwrap();
    let rows = s.scan_all("events").unwrap();
    let mut kinds: Vec<String> = rows.iter().map(|r| r[0].to_string()).collect();
    kinds.sort();
    assert_eq!(kinds, ["a", "a", "b", "c"]);
}
