//! `omen backup` and `omen restore`: online backups, verification, retention,
//! point-in-time recovery, and the exit statuses cron jobs read.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use omen::engine::backup::{BackupRequest, Repository, Retention};
use omen::{Database, Options};

use crate::support::{assert_sqlstate, ints, run, run_omen, texts, TestDb};

fn omen(args: &[&OsStr]) -> std::process::Output {
    run_omen(args, b"")
}

fn os(path: &Path) -> &OsStr {
    path.as_os_str()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn backup_of(db: &Database, repo: &Path) -> omen::engine::backup::BackupSummary {
    let request = BackupRequest {
        repository: repo.to_path_buf(),
        ..Default::default()
    };
    db.backup(&request, &|_, _| {}).expect("backup")
}

fn restore(repo: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&OsStr> = vec![
        "restore".as_ref(),
        "--from".as_ref(),
        os(repo),
        "--data-dir".as_ref(),
        os(dir),
        "--quiet".as_ref(),
    ];
    args.extend(extra.iter().map(|a| OsStr::new(*a)));
    omen(&args)
}

/// The largest file a backup stored: an SST with the table's rows.
fn largest_file(repo: &Path) -> PathBuf {
    std::fs::read_dir(repo.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a stored file")
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0x40]).unwrap();
}

pub fn online_backup_from_another_process_restores_one_consistent_commit() {
    // A server or shell holds the data directory (here: this process); cron
    // runs `omen backup` beside it while transfers and inserts go on.
    let db = TestDb::new();
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
    );
    run(
        &mut s,
        "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g",
    );
    run(&mut s, "CREATE TABLE log (n int PRIMARY KEY)");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let mut s = db.session();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if w == 0 {
                        // Inserted in order: a restore must hold a prefix.
                        run(&mut s, &format!("INSERT INTO log VALUES ({n})"));
                    } else {
                        let (from, to) = (n % 10 + 1, (n * 7) % 10 + 1);
                        let moved = s.execute(&format!(
                            "BEGIN; UPDATE accounts SET balance = balance - 3 WHERE id = {from}; \
                             UPDATE accounts SET balance = balance + 3 WHERE id = {to}; COMMIT"
                        ));
                        if moved.is_err() {
                            let _ = s.execute("ROLLBACK");
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let repo = tempfile::tempdir().unwrap();
    let out = omen(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        os(db.dir.path()),
        "--to".as_ref(),
        os(repo.path()),
        "--json".as_ref(),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(summary["id"], 1);
    let commit_ts = summary["commit_ts"].as_u64().unwrap();

    let target = tempfile::tempdir().unwrap();
    let restored_dir = target.path().join("restored");
    let out = restore(repo.path(), &restored_dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = Database::open(&restored_dir, Options::default()).unwrap();
    let mut r = restored.session();
    assert_eq!(
        ints(&mut r, "SELECT sum(balance) FROM accounts"),
        vec![1000]
    );
    let logged = ints(&mut r, "SELECT n FROM log ORDER BY n");
    assert!(!logged.is_empty());
    assert_eq!(
        logged,
        (1..=logged.len() as i64).collect::<Vec<_>>(),
        "a prefix of the inserts"
    );
    let listed: serde_json::Value = serde_json::from_slice(
        &omen(&[
            "backup".as_ref(),
            "--list".as_ref(),
            os(repo.path()),
            "--json".as_ref(),
        ])
        .stdout,
    )
    .unwrap();
    let tables = &listed[0]["manifest"]["tables"];
    let log_rows = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "log")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(log_rows, logged.len() as u64);
    // The restored database takes writes, at timestamps after the backup's.
    assert_eq!(restored.visible_ts(), commit_ts);
    run(&mut r, "INSERT INTO log VALUES (-1)");
    assert!(restored.visible_ts() > commit_ts);
}

pub fn incremental_backups_share_unchanged_files() {
    let db = TestDb::new();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    run(
        &mut s,
        "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
    );
    let repo = tempfile::tempdir().unwrap();
    let first = backup_of(&db.db, repo.path());
    run(&mut s, "INSERT INTO t VALUES (-1, 'one more')");
    let second = backup_of(&db.db, repo.path());
    assert_eq!((first.id, second.id), (1, 2));
    assert!(second.files_reused >= 1, "{second:?}");
    assert!(
        second.bytes_copied * 10 < first.bytes_copied,
        "the second copied {} bytes, the first {}",
        second.bytes_copied,
        first.bytes_copied
    );
    assert_eq!(second.rows, first.rows + 1);
    // Both restore, each to its own commit.
    let target = tempfile::tempdir().unwrap();
    for (id, rows) in [("1", 20000), ("2", 20001)] {
        let dir = target.path().join(id);
        let out = restore(repo.path(), &dir, &["--backup", id]);
        assert!(out.status.success(), "{}", stderr(&out));
        let restored = Database::open(&dir, Options::default()).unwrap();
        assert_eq!(
            ints(&mut restored.session(), "SELECT count(*) FROM t"),
            vec![rows]
        );
    }
}

pub fn a_flipped_byte_fails_verification_and_restore_naming_the_file() {
    let db = TestDb::new();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    run(
        &mut s,
        "INSERT INTO t SELECT g, 'value ' || g FROM generate_series(1, 5000) g",
    );
    let repo = tempfile::tempdir().unwrap();
    backup_of(&db.db, repo.path());
    let verify = [
        "restore".as_ref(),
        "--from".as_ref(),
        os(repo.path()),
        "--verify-only".as_ref(),
    ];
    let out = omen(&verify);
    assert!(out.status.success(), "{}", stderr(&out));

    let damaged = largest_file(repo.path());
    flip_byte(&damaged, std::fs::metadata(&damaged).unwrap().len() / 2);
    let name = damaged.file_name().unwrap().to_string_lossy().into_owned();
    let out = omen(&verify);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(&name), "{}", stderr(&out));
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("restored");
    let out = restore(repo.path(), &dir, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(&name), "{}", stderr(&out));
    assert!(!dir.exists(), "a refused restore leaves nothing behind");
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);

    // A damaged manifest is refused as well.
    flip_byte(&damaged, std::fs::metadata(&damaged).unwrap().len() / 2);
    let manifest = repo.path().join("backups").join("000001.json");
    flip_byte(&manifest, 20);
    let out = omen(&verify);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("000001.json"), "{}", stderr(&out));
}

pub fn restore_refuses_a_directory_with_files_or_one_in_use() {
    let db = TestDb::new();
    run(&mut db.session(), "CREATE TABLE t (id int PRIMARY KEY)");
    run(&mut db.session(), "INSERT INTO t VALUES (1), (2)");
    let repo = tempfile::tempdir().unwrap();
    backup_of(&db.db, repo.path());

    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("notes.txt"), "mine").unwrap();
    let out = restore(repo.path(), target.path(), &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(target.path().join("notes.txt")).unwrap(),
        b"mine"
    );
    // The database itself is open in this process: never replaced, even with --force.
    let out = restore(repo.path(), db.dir.path(), &["--force"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(ints(&mut db.session(), "SELECT count(*) FROM t"), vec![2]);
    // --force replaces a directory nobody has open.
    let out = restore(repo.path(), target.path(), &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!target.path().join("notes.txt").exists());
    let restored = Database::open(target.path(), Options::default()).unwrap();
    assert_eq!(
        ints(&mut restored.session(), "SELECT count(*) FROM t"),
        vec![2]
    );
}

pub fn retention_keeps_the_newest_and_removes_unused_files() {
    let db = TestDb::new();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let repo = tempfile::tempdir().unwrap();
    for round in 0..3 {
        run(
            &mut s,
            &format!(
                "INSERT INTO t SELECT g, 'r{round}' FROM generate_series({0}, {0} + 999) g",
                round * 1000
            ),
        );
        let out = omen(&[
            "backup".as_ref(),
            "--data-dir".as_ref(),
            os(db.dir.path()),
            "--to".as_ref(),
            os(repo.path()),
            "--keep".as_ref(),
            "2".as_ref(),
            "--quiet".as_ref(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let repository = Repository::open(repo.path()).unwrap();
    let listed = repository.list().unwrap();
    assert_eq!(listed.iter().map(|l| l.id).collect::<Vec<_>>(), vec![2, 3]);
    let needed: std::collections::HashSet<String> = listed
        .iter()
        .flat_map(|l| {
            l.manifest
                .as_ref()
                .unwrap()
                .files
                .iter()
                .map(|f| f.blake3.clone())
        })
        .collect();
    let stored: std::collections::HashSet<String> = std::fs::read_dir(repo.path().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stored, needed, "only the files kept backups use stay");
    // --keep-within of a moment keeps only the newest: never none.
    let summary = repository
        .prune(&Retention {
            keep: None,
            keep_within: Some(std::time::Duration::from_millis(1)),
        })
        .unwrap();
    assert_eq!(summary.removed, 1);
    assert_eq!(repository.list().unwrap().len(), 1);
    assert_eq!(repository.list().unwrap()[0].id, 3);
}

pub fn point_in_time_recovery_restores_each_moment_of_a_history() {
    let repo = tempfile::tempdir().unwrap();
    let db = TestDb::with(Options {
        archive: Some(repo.path().to_path_buf()),
        ..Options::default()
    });
    let mut s = db.session();
    run(
        &mut s,
        "CREATE TABLE items (id serial PRIMARY KEY, name text)",
    );
    run(&mut s, "INSERT INTO items (name) VALUES ('a'), ('b')");
    backup_of(&db.db, repo.path());
    let moment = |s: &mut omen::Session, sql: &str| {
        run(s, sql);
        let ts = db.db.visible_ts();
        std::thread::sleep(std::time::Duration::from_millis(2));
        ts
    };
    let first = moment(&mut s, "INSERT INTO items (name) VALUES ('c')");
    let second = moment(
        &mut s,
        "BEGIN; UPDATE items SET name = 'B' WHERE id = 2; DELETE FROM items WHERE id = 1; COMMIT",
    );
    let third = moment(&mut s, "INSERT INTO items (name) VALUES ('d'), ('e')");
    // The mistake to undo.
    run(&mut s, "DROP TABLE items");

    let target = tempfile::tempdir().unwrap();
    let expected = [
        (first, vec!["a", "b", "c"]),
        (second, vec!["B", "c"]),
        (third, vec!["B", "c", "d", "e"]),
    ];
    for (n, (ts, names)) in expected.iter().enumerate() {
        let dir = target.path().join(format!("at{n}"));
        let out = restore(repo.path(), &dir, &["--to-timestamp", &ts.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let restored = Database::open(&dir, Options::default()).unwrap();
        let mut r = restored.session();
        assert_eq!(texts(&mut r, "SELECT name FROM items ORDER BY id"), *names);
        assert_eq!(restored.visible_ts(), *ts);
        // The sequence goes on past every id the moment had handed out.
        let max = ints(&mut r, "SELECT max(id) FROM items")[0];
        let id = ints(
            &mut r,
            "INSERT INTO items (name) VALUES ('new') RETURNING id",
        )[0];
        assert!(id > max, "id {id} after moment {n}, whose newest was {max}");
    }
    // --to-time takes the same moment as a time of day.
    let when = omen::engine::backup::rfc3339(second);
    let dir = target.path().join("by-time");
    let out = restore(repo.path(), &dir, &["--to-time", &when]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = Database::open(&dir, Options::default()).unwrap();
    assert_eq!(
        texts(
            &mut restored.session(),
            "SELECT name FROM items ORDER BY id"
        ),
        vec!["B", "c"]
    );
    drop(restored);
    // The whole archive replays the DROP TABLE too.
    let dir = target.path().join("latest");
    let out = restore(repo.path(), &dir, &["--to-latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = Database::open(&dir, Options::default()).unwrap();
    assert_sqlstate(restored.session().execute("SELECT * FROM items"), "42P01");
}

pub fn point_in_time_recovery_reports_a_gap_in_the_archive() {
    let repo = tempfile::tempdir().unwrap();
    let db = TestDb::new();
    run(&mut db.session(), "CREATE TABLE t (id int PRIMARY KEY)");
    backup_of(&db.db, repo.path());
    // Commits while the database did not archive: a restore past them must refuse.
    run(&mut db.session(), "INSERT INTO t VALUES (1)");
    let TestDb { db: handle, dir } = db;
    drop(handle);
    let db = Database::open(
        dir.path(),
        Options {
            archive: Some(repo.path().to_path_buf()),
            ..Options::default()
        },
    )
    .unwrap();
    run(&mut db.session(), "INSERT INTO t VALUES (2)");
    let target = tempfile::tempdir().unwrap();
    let out = restore(repo.path(), &target.path().join("r"), &["--to-latest"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lacks the commits"),
        "{}",
        stderr(&out)
    );
    assert!(!target.path().join("r").exists());
}

pub fn kill_during_backup_or_restore_leaves_the_next_run_working() {
    let db = TestDb::new();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    run(
        &mut s,
        "INSERT INTO t SELECT g, repeat('y', 500) FROM generate_series(1, 60000) g",
    );
    let TestDb { db: handle, dir } = db;
    drop((s, handle));
    let repo = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let restored = target.path().join("r");
    let spawn = |args: &[&OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_omen"))
            .args(args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let backup_args = [
        "backup".as_ref(),
        "--data-dir".as_ref(),
        os(dir.path()),
        "--to".as_ref(),
        os(repo.path()),
        "--quiet".as_ref(),
    ];
    for delay in [30, 150] {
        let mut child = spawn(&backup_args);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = omen(&backup_args);
    assert!(out.status.success(), "{}", stderr(&out));
    for delay in [30, 150] {
        let mut child = spawn(&[
            "restore".as_ref(),
            "--from".as_ref(),
            os(repo.path()),
            "--data-dir".as_ref(),
            os(&restored),
            "--quiet".as_ref(),
        ]);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        if restored.exists() {
            // It finished before the kill: a complete database.
            let db = Database::open(&restored, Options::default()).unwrap();
            assert_eq!(
                ints(&mut db.session(), "SELECT count(*) FROM t"),
                vec![60000]
            );
            drop(db);
            std::fs::remove_dir_all(&restored).unwrap();
        }
    }
    let out = restore(repo.path(), &restored, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = Database::open(&restored, Options::default()).unwrap();
    assert_eq!(
        ints(&mut db.session(), "SELECT count(*) FROM t"),
        vec![60000]
    );
    let verify = omen(&[
        "restore".as_ref(),
        "--from".as_ref(),
        os(repo.path()),
        "--verify-only".as_ref(),
    ]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    // Nothing of the killed runs is left beside the target.
    let left: Vec<_> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![OsStr::new("r").to_owned()]);
}

pub fn busy_and_unreachable_have_their_own_exit_statuses() {
    let db = TestDb::new();
    run(&mut db.session(), "CREATE TABLE t (id int PRIMARY KEY)");
    let repo = tempfile::tempdir().unwrap();
    backup_of(&db.db, repo.path());
    let args = [
        "backup".as_ref(),
        "--data-dir".as_ref(),
        os(db.dir.path()),
        "--to".as_ref(),
        os(repo.path()),
    ];
    let repository = Repository::open(repo.path()).unwrap();
    let lock = repository.lock(true).unwrap();
    let out = omen(&args);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    drop(lock);
    // The holder's socket gone: the database cannot be reached.
    std::fs::remove_file(db.dir.path().join("omen.sock")).unwrap();
    let out = omen(&args);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    // A directory with no database is not backed up (and not created).
    let none = tempfile::tempdir().unwrap();
    let out = omen(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        os(&none.path().join("missing")),
        "--to".as_ref(),
        os(repo.path()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!none.path().join("missing").exists());
}

pub fn omen_backup_in_sql_is_for_superusers() {
    let db = TestDb::new();
    let mut s = db.session();
    run(&mut s, "CREATE TABLE t (id int PRIMARY KEY)");
    run(&mut s, "INSERT INTO t VALUES (1)");
    let repo = tempfile::tempdir().unwrap();
    let path = repo.path().join("repo").display().to_string();
    let summary = texts(&mut s, &format!("SELECT omen_backup('{path}')"));
    let summary: serde_json::Value = serde_json::from_str(&summary[0]).unwrap();
    assert_eq!(summary["id"], 1);
    assert_eq!(summary["rows"], 1);
    run(&mut s, "CREATE ROLE admin SUPERUSER LOGIN PASSWORD 'a'");
    run(&mut s, "CREATE ROLE app LOGIN PASSWORD 'b'");
    let mut app = db.session();
    app.set_user(Some("app".into()));
    assert_sqlstate(
        app.execute(&format!("SELECT omen_backup('{path}')")),
        "42501",
    );
    assert_eq!(
        Repository::open(&repo.path().join("repo"))
            .unwrap()
            .list()
            .unwrap()
            .len(),
        1
    );
}
