//! The in-memory key directory: the same answers with ALEX, a BTreeMap or no
//! directory, kept in step with commits, and rebuilt in the background after
//! the database opens, which reads no rows.

use std::ops::Bound;

use omen::engine::catalog::ColumnDef;
use omen::engine::types::{DataType, Value};
use omen::engine::DirectoryKind;
use omen::{Database, IsolationLevel, Options};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::support::assert_sqlstate;

const KINDS: [DirectoryKind; 3] = [
    DirectoryKind::Alex,
    DirectoryKind::BTree,
    DirectoryKind::None,
];

fn open(dir: &std::path::Path, kind: DirectoryKind) -> Database {
    Database::open(
        dir,
        Options {
            key_directory: kind,
            durability: omen::Durability::Buffered,
            ..Options::default()
        },
    )
    .unwrap()
}

fn create(db: &Database) {
    db.session()
        .create_table(
            "ts",
            vec![
                ColumnDef::new("at", DataType::Timestamp),
                ColumnDef::new("v", DataType::Int64),
            ],
            &["at".to_string()],
            false,
        )
        .unwrap();
}

/// Runs one seeded random workload and returns everything it observed.
fn workload(db: &Database) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(99);
    let mut s = db.session();
    let mut seen = Vec::new();
    let key = |rng: &mut StdRng| {
        Value::Timestamp(1_700_000_000_000_000 + rng.random_range(-500i64..500) * 1000)
    };
    for step in 0..3000 {
        let k = key(&mut rng);
        let outcome = match rng.random_range(0..6) {
            0 | 1 => format!(
                "{:?}",
                s.insert("ts", vec![k.clone(), Value::Int64(step)])
                    .map_err(|e| e.sqlstate())
            ),
            2 => format!(
                "{:?}",
                s.update("ts", vec![k.clone(), Value::Int64(-step)])
                    .map_err(|e| e.sqlstate())
            ),
            3 => format!(
                "{:?}",
                s.delete("ts", std::slice::from_ref(&k))
                    .map_err(|e| e.sqlstate())
            ),
            4 => format!("{:?}", s.get("ts", std::slice::from_ref(&k)).unwrap()),
            _ => {
                let end = key(&mut rng);
                // The rows themselves, so that ranges the directories answer
                // without storage are checked against storage's answer.
                format!(
                    "{:?}",
                    s.scan(
                        "ts",
                        Bound::Included(vec![k.clone()]),
                        Bound::Excluded(vec![end])
                    )
                    .unwrap()
                )
            }
        };
        seen.push(outcome);
    }
    seen
}

pub fn every_directory_gives_the_same_answers() {
    let mut results = Vec::new();
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), kind);
        create(&db);
        let observed = workload(&db);
        let rows = db.session().scan_all("ts").unwrap();
        results.push((kind, observed, rows));
    }
    let (_, first_observed, first_rows) = &results[0];
    for (kind, observed, rows) in &results[1..] {
        assert_eq!(
            observed, first_observed,
            "{kind:?} answered differently from ALEX"
        );
        assert_eq!(rows, first_rows, "{kind:?} ended with different rows");
    }
}

pub fn directory_is_rebuilt_on_open_and_serves_old_snapshots() {
    for kind in [DirectoryKind::Alex, DirectoryKind::BTree] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), kind);
        create(&db);
        let mut s = db.session();
        for i in 0..500i64 {
            s.insert("ts", vec![Value::Timestamp(i * 1000), Value::Int64(i)])
                .unwrap();
        }
        // A snapshot from before the update and delete below must still see the old rows.
        let mut old = db.session();
        old.begin_with(IsolationLevel::RepeatableRead).unwrap();
        assert!(old.get("ts", &[Value::Timestamp(7000)]).unwrap().is_some());
        s.update("ts", vec![Value::Timestamp(7000), Value::Int64(-7)])
            .unwrap();
        assert!(s.delete("ts", &[Value::Timestamp(8000)]).unwrap());
        assert_eq!(
            old.get("ts", &[Value::Timestamp(7000)]).unwrap().unwrap()[1],
            Value::Int64(7)
        );
        assert_eq!(
            old.get("ts", &[Value::Timestamp(8000)]).unwrap().unwrap()[1],
            Value::Int64(8)
        );
        // A range read at that snapshot: the old versions of the changed
        // keys, the deleted key still there.
        let range = old
            .scan(
                "ts",
                Bound::Included(vec![Value::Timestamp(6000)]),
                Bound::Excluded(vec![Value::Timestamp(10_000)]),
            )
            .unwrap();
        let values: Vec<_> = range.iter().map(|r| r[1].clone()).collect();
        assert_eq!(values, [6, 7, 8, 9].map(Value::Int64));
        // A range holding only the deleted key: empty now (the directory
        // answers), the row at the older snapshot (storage answers).
        let only_deleted = |s: &mut omen::Session| {
            s.scan(
                "ts",
                Bound::Included(vec![Value::Timestamp(8000)]),
                Bound::Excluded(vec![Value::Timestamp(9000)]),
            )
            .unwrap()
            .len()
        };
        assert_eq!(only_deleted(&mut old), 1);
        assert_eq!(only_deleted(&mut s), 0);
        let now = s
            .scan(
                "ts",
                Bound::Included(vec![Value::Timestamp(6000)]),
                Bound::Excluded(vec![Value::Timestamp(10_000)]),
            )
            .unwrap();
        let values: Vec<_> = now.iter().map(|r| r[1].clone()).collect();
        assert_eq!(values, [6, -7, 9].map(Value::Int64));
        old.commit().unwrap();
        assert_sqlstate(
            s.insert("ts", vec![Value::Timestamp(1000), Value::Int64(0)]),
            "23505",
        );
        s.insert("ts", vec![Value::Timestamp(8000), Value::Int64(88)])
            .unwrap();
        drop((s, old, db));

        let db = open(dir.path(), kind);
        db.wait_for_directories();
        assert_eq!(
            db.directory_len("ts").unwrap(),
            Some(500),
            "{kind:?}: rebuilt with every key"
        );
        let mut s = db.session();
        assert_eq!(
            s.get("ts", &[Value::Timestamp(7000)]).unwrap().unwrap()[1],
            Value::Int64(-7)
        );
        assert_eq!(
            s.get("ts", &[Value::Timestamp(8000)]).unwrap().unwrap()[1],
            Value::Int64(88)
        );
        assert!(s.get("ts", &[Value::Timestamp(500_000)]).unwrap().is_none());
        assert_sqlstate(
            s.insert("ts", vec![Value::Timestamp(2000), Value::Int64(0)]),
            "23505",
        );
        assert!(s.delete("ts", &[Value::Timestamp(9000)]).unwrap());
        assert!(s.get("ts", &[Value::Timestamp(9000)]).unwrap().is_none());
    }
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), DirectoryKind::None);
    create(&db);
    assert_eq!(db.directory_len("ts").unwrap(), None);
}

/// Opening reads no rows (the key directories are built afterwards), and
/// while a directory is not built yet, reads, uniqueness checks, updates
/// and deletes give the same answers; once built it holds every key, those
/// written meanwhile included.
pub fn opening_reads_no_rows_and_answers_stay_right_while_directories_build() {
    let dir = tempfile::tempdir().unwrap();
    let options = |defer| Options {
        durability: omen::Durability::Buffered,
        defer_directory_build: defer,
        ..Options::default()
    };
    {
        let db = Database::open(dir.path(), options(false)).unwrap();
        let mut s = db.session();
        s.execute(
            "CREATE TABLE big (id BIGINT PRIMARY KEY, v INT); \
             INSERT INTO big SELECT x, x % 7 FROM generate_series(1, 20000) AS g(x); \
             DELETE FROM big WHERE id % 1000 = 0; \
             CREATE TABLE other (k INT PRIMARY KEY); INSERT INTO other VALUES (1), (2)",
        )
        .unwrap();
    }
    // Opening scans nothing; the build, when it runs, reads every version.
    let db = Database::open(dir.path(), options(true)).unwrap();
    assert_eq!(db.entries_scanned(), 0, "opening read rows");
    assert!(!db.directories_ready());
    assert_eq!(db.directory_len("big").unwrap(), None);
    let mut s = db.session();
    let count = |s: &mut omen::Session, sql: &str| -> String {
        match s.execute(sql) {
            Ok(outputs) => outputs.last().map(|o| match o {
                omen::Output::Rows(rows) => {
                    omen::engine::sql::format::text(rows.batches[0].column(0).as_ref(), 0)
                        .unwrap_or_default()
                }
                other => other.to_string(),
            }),
            Err(e) => Some(e.sqlstate().code().to_string()),
        }
        .unwrap_or_default()
    };
    let checks = |s: &mut omen::Session| {
        assert_eq!(count(s, "SELECT v FROM big WHERE id = 500"), "3");
        assert_eq!(count(s, "SELECT count(*) FROM big WHERE id = 1000"), "0");
        assert_eq!(
            count(s, "SELECT count(*) FROM big WHERE id BETWEEN 995 AND 1005"),
            "10"
        );
        assert_eq!(count(s, "SELECT count(*) FROM big"), "19980");
    };
    checks(&mut s);
    // Writes while the directory is not built: a taken key, a freed key,
    // a new key, an update and a delete.
    assert_eq!(count(&mut s, "INSERT INTO big VALUES (500, 0)"), "23505");
    assert_eq!(
        count(&mut s, "INSERT INTO big VALUES (1000, 42)"),
        "INSERT 0 1"
    );
    assert_eq!(
        count(&mut s, "INSERT INTO big VALUES (30000, 1)"),
        "INSERT 0 1"
    );
    assert_eq!(
        count(&mut s, "UPDATE big SET v = 99 WHERE id = 7"),
        "UPDATE 1"
    );
    assert_eq!(count(&mut s, "DELETE FROM big WHERE id = 8"), "DELETE 1");
    let during = "SELECT count(*) FROM big";
    assert_eq!(count(&mut s, during), "19981");
    db.build_directories().unwrap();
    assert!(db.directories_ready());
    assert!(db.entries_scanned() >= 20_000, "the build read the rows");
    // 20,000 keys written, 20 of them deleted (and held as deleted), one new.
    assert_eq!(db.directory_len("big").unwrap(), Some(20_001));
    assert_eq!(count(&mut s, "SELECT v FROM big WHERE id = 1000"), "42");
    assert_eq!(count(&mut s, "SELECT v FROM big WHERE id = 7"), "99");
    assert_eq!(count(&mut s, "SELECT count(*) FROM big WHERE id = 8"), "0");
    assert_eq!(count(&mut s, "SELECT v FROM big WHERE id = 30000"), "1");
    assert_eq!(count(&mut s, "INSERT INTO big VALUES (1000, 0)"), "23505");
    assert_eq!(count(&mut s, "INSERT INTO big VALUES (8, 8)"), "INSERT 0 1");
    assert_eq!(count(&mut s, during), "19982");
    drop((s, db));

    // Without deferring, a thread builds them; closing while it runs is clean.
    let db = Database::open(dir.path(), options(false)).unwrap();
    drop(db);
    let db = Database::open(dir.path(), options(false)).unwrap();
    db.wait_for_directories();
    assert_eq!(db.directory_len("big").unwrap(), Some(20_001));
    let mut s = db.session();
    assert_eq!(count(&mut s, during), "19982");
    assert_eq!(count(&mut s, "SELECT v FROM big WHERE id = 1000"), "42");
    assert_eq!(count(&mut s, "INSERT INTO big VALUES (7, 0)"), "23505");
}
