//! `omen import` and `omen export`: formats, round trips, inference, and
//! failures that change nothing.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

/// Runs `omen <args>` on the data directory `dir`, with `stdin` piped in.
fn omen(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend([OsStr::new("--data-dir"), dir.as_os_str()]);
    crate::support::run_omen(&all, stdin)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A new data directory (in a temporary directory) where `sql` has run.
fn database_with(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = tmp.path().join("db");
    ok(omen(&db, &["repl", "-c", sql], b""));
    (tmp, db)
}

/// The rows of `sql` as CSV, through `omen export`.
fn csv(dir: &Path, sql: &str) -> String {
    ok(omen(dir, &["export", "--query", sql, "--quiet"], b""))
}

pub fn import_creates_a_typed_table_and_export_gives_it_back() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (db, file) = (tmp.path().join("db"), tmp.path().join("events.csv"));
    // A BOM, CRLF line ends, quoted delimiters and newlines, NULL (an
    // unquoted empty field) apart from the empty string, unicode.
    std::fs::write(
        &file,
        "\u{feff}Id,Name,Score,Day,At,Ok\r\n\
         1,\"a, b\",1.5,2024-01-02,2024-01-02 10:00:00+02,true\r\n\
         2,\"two\nlines\",,2024-02-29,2024-02-29T23:59:59Z,false\r\n\
         3,\"\",-0.25,1999-12-31,2000-01-01 00:00:00+00,\r\n\
         4,\"ünï \"\"quoted\"\"\",1e300,2024-03-01,2024-03-01 00:00:00+00,true\r\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");
    let out = omen(&db, &["import", file, "--primary-key", "id"], b"");
    let schema = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    for column in [
        "\"id\" bigint",
        "\"name\" text",
        "\"score\" double precision",
        "\"day\" date",
        "\"at\" timestamp with time zone",
        "\"ok\" boolean",
        "PRIMARY KEY (\"id\")",
    ] {
        assert!(schema.contains(column), "{column} in {schema}");
    }
    assert!(schema.contains("imported 4 rows"), "{schema}");
    assert_eq!(
        csv(
            &db,
            "SELECT id, name IS NULL AS a, name = '' AS b, score IS NULL AS c, ok IS NULL AS d \
             FROM events ORDER BY id"
        ),
        "id,a,b,c,d\n1,f,f,f,f\n2,f,f,t,f\n3,f,t,f,t\n4,f,f,f,f\n"
    );
    // Export, import into a second table, and compare: the same rows.
    for format in ["csv", "tsv", "txt", "ndjson", "json"] {
        let path = tmp.path().join(format!("out.{format}"));
        let path = path.to_str().expect("utf-8 path");
        ok(omen(
            &db,
            &["export", "--table", "events", "-o", path, "--quiet"],
            b"",
        ));
        let copy = format!("copy_{format}");
        ok(omen(
            &db,
            &["import", path, "--table", &copy, "--quiet"],
            b"",
        ));
        let diff = format!(
            "SELECT count(*) FROM (SELECT id, name, score::text, day::text, at::text, ok FROM events \
             EXCEPT SELECT id, name, score::text, day::text, at::text, ok FROM {copy}) d"
        );
        assert_eq!(csv(&db, &diff), "count\n0\n", "{format}");
        assert_eq!(
            csv(&db, &format!("SELECT count(*) FROM {copy}")),
            "count\n4\n",
            "{format}"
        );
    }
}

pub fn a_bad_row_stops_the_import_and_changes_nothing() {
    let (tmp, db) =
        database_with("CREATE TABLE m (id int PRIMARY KEY, v int); INSERT INTO m VALUES (1, 1)");
    let bad = tmp.path().join("bad.csv");
    let mut text = String::from("id,v\n");
    for i in 2..20_000 {
        text.push_str(&format!("{i},{i}\n"));
    }
    text.push_str("20000,oops\n");
    std::fs::write(&bad, &text).expect("write");
    let out = omen(
        &db,
        &["import", bad.to_str().expect("utf-8"), "--table", "m"],
        b"",
    );
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("bad.csv: line 20000:"), "{error}");
    assert!(error.contains("22P02"), "{error}");
    // Far into a file of many chunks, which other threads parse; CRLF
    // line ends.
    let mut text = String::from("id,v\r\n");
    for i in 2..150_000 {
        text.push_str(&format!("{i},{i}\r\n"));
    }
    text = text.replace("\r\n123456,123456\r\n", "\r\n123456,x\r\n");
    std::fs::write(&bad, &text).expect("write");
    let out = omen(
        &db,
        &["import", bad.to_str().expect("utf-8"), "--table", "m"],
        b"",
    );
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("bad.csv: line 123456:"), "{error}");
    assert_eq!(csv(&db, "SELECT count(*) FROM m"), "count\n1\n");
    // A duplicate key, and a new table that is not left behind.
    let dup = tmp.path().join("dup.csv");
    std::fs::write(&dup, "id,v\n5,5\n1,1\n").expect("write");
    let out = omen(
        &db,
        &["import", dup.to_str().expect("utf-8"), "--table", "m"],
        b"",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("23505"));
    assert_eq!(csv(&db, "SELECT count(*) FROM m"), "count\n1\n");
    let fresh = tmp.path().join("fresh.ndjson");
    std::fs::write(&fresh, "{\"a\": 1}\n{\"a\": 2, \"b\": 3}\n").expect("write");
    let out = omen(&db, &["import", fresh.to_str().expect("utf-8")], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let out = omen(&db, &["repl", "-c", "SELECT * FROM fresh"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("42P01"));
}

pub fn import_from_stdin_into_named_columns_and_dry_run() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = tmp.path().join("db");
    ok(omen(
        &db,
        &[
            "repl",
            "-c",
            "CREATE TABLE p (id serial PRIMARY KEY, name text NOT NULL, n int DEFAULT 7)",
        ],
        b"",
    ));
    // The header picks columns; the others take their defaults.
    ok(omen(
        &db,
        &["import", "-", "--table", "p", "--format", "csv", "--quiet"],
        b"name\nann\nbob\n",
    ));
    assert_eq!(
        csv(&db, "SELECT * FROM p ORDER BY id"),
        "id,name,n\n1,ann,7\n2,bob,7\n"
    );
    let out = ok(omen(
        &db,
        &[
            "import",
            "-",
            "--table",
            "q",
            "--format",
            "tsv",
            "--dry-run",
        ],
        b"x\ty\tz\tw\n1\t2024-01-01\t2024-01-01 10:00:00\t1\n2\t2024-01-02\t2024-01-02T11:00:00.25\tx\n",
    ));
    assert!(out.contains("\"x\" bigint"), "{out}");
    assert!(out.contains("\"y\" date"), "{out}");
    assert!(out.contains("\"z\" timestamp,"), "{out}");
    assert!(out.contains("\"w\" text"), "{out}");
    let out = omen(&db, &["repl", "-c", "SELECT * FROM q"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("42P01"));
    let json = ok(omen(
        &db,
        &[
            "import", "-", "--table", "p", "--format", "ndjson", "--json",
        ],
        b"{\"name\": \"cy\", \"n\": null}\n",
    ));
    assert!(json.contains("\"rows\":1"), "{json}");
    assert_eq!(
        csv(&db, "SELECT name, n IS NULL FROM p WHERE name = 'cy'"),
        "name,?column?\ncy,t\n"
    );
}

/// `.gz` files: export compresses, import decompresses (the format and
/// the table's name come from the name without `.gz`), and the table
/// comes back whole.
pub fn gzip_files_export_and_import() {
    let (tmp, db) = database_with(
        "CREATE TABLE g (id int PRIMARY KEY, t text); \
         INSERT INTO g SELECT x, 'row ' || x FROM generate_series(1, 5000) AS s(x)",
    );
    let file = tmp.path().join("copy.csv.gz");
    let path = file.to_str().expect("utf-8");
    ok(omen(
        &db,
        &["export", "--table", "g", "-o", path, "--quiet"],
        b"",
    ));
    let bytes = std::fs::read(&file).expect("read");
    assert_eq!(&bytes[..2], b"\x1f\x8b", "not gzip");
    assert!(
        bytes.len() < 30_000,
        "not compressed: {} bytes",
        bytes.len()
    );
    ok(omen(&db, &["import", path, "--quiet"], b""));
    assert_eq!(
        csv(&db, "SELECT count(*), sum(id), max(t) FROM copy"),
        "count,sum,max\n5000,12502500,row 999\n"
    );
    // A damaged file fails and loads nothing.
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("write");
    let out = omen(&db, &["import", path, "--table", "g2"], b"");
    assert!(!out.status.success());
    let out = omen(&db, &["repl", "-c", "SELECT * FROM g2"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("42P01"));
}

/// `--skip-errors N` leaves out up to N rows that fail (listed with their
/// line in `--rejects`); one more fails the import. `--on-conflict skip`
/// keeps the table's row or the file's first, `update` the file's last.
pub fn import_leaves_out_bad_rows_and_resolves_duplicate_keys() {
    let (tmp, db) = database_with(
        "CREATE TABLE k (id int PRIMARY KEY, v text NOT NULL); INSERT INTO k VALUES (1, 'one')",
    );
    let file = tmp.path().join("k.csv");
    std::fs::write(&file, "id,v\n1,uno\n2,two\nx,bad\n3,\n2,dos\n").expect("write");
    let path = file.to_str().expect("utf-8");
    let rejects = tmp.path().join("rejects.csv");
    let out = omen(&db, &["import", path, "--skip-errors", "1"], b"");
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("line 5:") && error.contains("23502"),
        "{error}"
    );
    let out = omen(&db, &["import", path, "--skip-errors", "2"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("23505"));
    assert_eq!(csv(&db, "SELECT * FROM k ORDER BY id"), "id,v\n1,one\n");

    let summary = ok(omen(
        &db,
        &[
            "import",
            path,
            "--skip-errors",
            "2",
            "--rejects",
            rejects.to_str().expect("utf-8"),
            "--on-conflict",
            "skip",
            "--json",
        ],
        b"",
    ));
    assert!(summary.contains("\"rows\":1"), "{summary}");
    assert!(summary.contains("\"rows_left_out\":2"), "{summary}");
    assert!(summary.contains("\"duplicate_keys\":2"), "{summary}");
    assert_eq!(
        csv(&db, "SELECT * FROM k ORDER BY id"),
        "id,v\n1,one\n2,two\n"
    );
    let listed = std::fs::read_to_string(&rejects).expect("rejects file");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].contains(",4,22P02,") && lines[0].ends_with(",x,bad"),
        "{listed}"
    );
    assert!(lines[1].contains(",5,23502,"), "{listed}");

    ok(omen(
        &db,
        &[
            "import",
            path,
            "--skip-errors",
            "2",
            "--on-conflict",
            "update",
            "--quiet",
        ],
        b"",
    ));
    assert_eq!(
        csv(&db, "SELECT * FROM k ORDER BY id"),
        "id,v\n1,uno\n2,dos\n"
    );
    // Over many batches, encoded on several threads, the file's order decides.
    let mut text = String::from("id,v\n");
    for round in ["first", "second"] {
        for id in 100..20_100 {
            text.push_str(&format!("{id},{round}\n"));
        }
    }
    std::fs::write(&file, text).expect("write");
    for (conflict, kept) in [("skip", "first"), ("update", "second")] {
        let table = format!("k_{conflict}");
        let args = [
            "import",
            path,
            "--table",
            &table,
            "--primary-key",
            "id",
            "--on-conflict",
            conflict,
        ];
        ok(omen(&db, &args, b""));
        let sql = format!("SELECT v, count(*) FROM {table} GROUP BY v");
        assert_eq!(csv(&db, &sql), format!("v,count\n{kept},20000\n"));
    }
}

/// Parquet both ways: export writes a Parquet file, import reads it back
/// into a new table (types from the file's schema) or an existing one, and
/// the rows come back equal, NULLs and all.
pub fn parquet_files_export_and_import() {
    let (tmp, db) = database_with(
        "CREATE TABLE pq (id bigint PRIMARY KEY, name text, score double precision, \
         born date, at timestamptz, ok boolean, n numeric(10, 2), k int); \
         INSERT INTO pq VALUES \
         (1, 'ann', 1.5, '2000-01-02', '2026-01-01 10:00:00+00', true, 12.34, 7), \
         (2, 'bö \"q\", x', -1e300, NULL, NULL, false, -0.01, NULL), \
         (3, NULL, 'NaN', '1999-12-31', '2026-06-30 23:59:59.25+02', NULL, NULL, -2147483648)",
    );
    let file = tmp.path().join("out.parquet");
    let path = file.to_str().expect("utf-8");
    ok(omen(
        &db,
        &["export", "--table", "pq", "-o", path, "--quiet"],
        b"",
    ));
    let bytes = std::fs::read(&file).expect("read");
    assert_eq!(&bytes[..4], b"PAR1", "not Parquet");
    let dry = ok(omen(
        &db,
        &["import", path, "--table", "pq2", "--dry-run"],
        b"",
    ));
    assert!(dry.contains("\"at\" timestamptz"), "{dry}");
    assert!(dry.contains("\"k\" integer"), "{dry}");
    ok(omen(
        &db,
        &[
            "import",
            path,
            "--table",
            "pq2",
            "--primary-key",
            "id",
            "--quiet",
        ],
        b"",
    ));
    let all = |table: &str| csv(&db, &format!("SELECT * FROM {table} ORDER BY id"));
    assert_eq!(all("pq2"), all("pq"));
    // Into the existing table: its keys are taken.
    let out = omen(&db, &["import", path, "--table", "pq"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("23505"));
    ok(omen(
        &db,
        &[
            "import",
            path,
            "--table",
            "pq",
            "--on-conflict",
            "skip",
            "--quiet",
        ],
        b"",
    ));
    assert_eq!(all("pq2"), all("pq"));
}
