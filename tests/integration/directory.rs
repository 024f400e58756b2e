//! The in-memory key directory: the same answers with ALEX, a BTreeMap or no
//! directory, kept in step with commits, and rebuilt when the database opens.

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
