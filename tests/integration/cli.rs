//! The `omen repl` binary's contract: -c, -f, standard input, exit codes,
//! stdout for rows and stderr for errors, output formats, persistence across
//! processes.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

fn omen(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut all = vec![OsStr::new("repl"), dir.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    crate::support::run_omen(&all, stdin.unwrap_or("").as_bytes())
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

const SETUP: &str = "CREATE TABLE t (id INT PRIMARY KEY, name TEXT, score DOUBLE PRECISION); \
                     INSERT INTO t VALUES (1, 'ann', 1.5), (2, NULL, -2);";

pub fn commands_run_in_order_and_rows_go_to_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = omen(
        dir.path(),
        &["-c", SETUP, "-c", "SELECT id, name FROM t ORDER BY id"],
        None,
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("CREATE TABLE"), "{text}");
    assert!(text.contains("INSERT 0 2"), "{text}");
    assert!(text.contains("|  1 | ann  |"), "{text}");
    assert!(text.contains("|  2 | NULL |"), "{text}");
    assert!(text.contains("(2 rows)"), "{text}");
    assert_eq!(stderr(&out), "");
}

pub fn file_and_stdin_scripts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("setup.sql");
    std::fs::write(
        &script,
        format!("-- a comment; with a semicolon\n{SETUP}\n"),
    )
    .expect("write");
    let data = dir.path().join("data");
    let data = data.as_path();
    let out = omen(data, &["-f", script.to_str().expect("utf-8 path")], None);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let out = omen(
        data,
        &["--format", "csv"],
        Some("SELECT id, name\n  FROM t\n  ORDER BY id;\n"),
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "id,name\n1,ann\n2,\n");
}

pub fn data_written_by_one_process_is_read_by_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = omen(dir.path(), &["-c", SETUP], None);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let out = omen(
        dir.path(),
        &[
            "-c",
            "UPDATE t SET name = 'bo' WHERE id = 2; DELETE FROM t WHERE id = 1",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let out = omen(
        dir.path(),
        &["--format", "ndjson", "-c", "SELECT * FROM t"],
        None,
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "{\"id\":2,\"name\":\"bo\",\"score\":-2.0}\n");
}

pub fn errors_stop_the_script_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = omen(
        dir.path(),
        &[],
        Some(&format!(
            "{SETUP}\nINSERT INTO t VALUES (1, 'dup', 0);\nINSERT INTO t VALUES (3, 'c', 0);\n"
        )),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("duplicate key value"), "{err}");
    assert!(err.contains("SQLSTATE: 23505"), "{err}");
    assert!(!stdout(&out).contains("ERROR"));
    let count = omen(
        dir.path(),
        &["--format", "csv", "-c", "SELECT count(*) AS n FROM t"],
        None,
    );
    assert_eq!(
        stdout(&count),
        "n\n2\n",
        "the statement after the error must not run"
    );

    let out = omen(
        dir.path(),
        &[
            "--continue-on-error",
            "-c",
            "SELECT * FROM nope; INSERT INTO t VALUES (3, 'c', 0)",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SQLSTATE: 42P01"));
    let count = omen(
        dir.path(),
        &["--format", "csv", "-c", "SELECT count(*) AS n FROM t"],
        None,
    );
    assert_eq!(
        stdout(&count),
        "n\n3\n",
        "--continue-on-error runs the rest"
    );

    let out = omen(dir.path(), &["-c", "SELECT 'unterminated"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SQLSTATE: 42601"), "{}", stderr(&out));
}

pub fn output_formats() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(omen(dir.path(), &["-c", SETUP], None).status.success());
    let query = "SELECT id, name, score FROM t ORDER BY id";
    let run = |format: &str| {
        let out = omen(dir.path(), &["--format", format, "-c", query], None);
        assert!(out.status.success(), "stderr: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(run("csv"), "id,name,score\n1,ann,1.5\n2,,-2\n");
    assert_eq!(
        run("ndjson"),
        "{\"id\":1,\"name\":\"ann\",\"score\":1.5}\n{\"id\":2,\"name\":null,\"score\":-2.0}\n"
    );
    let json: serde_json::Value = serde_json::from_str(&run("json")).expect("valid JSON");
    assert_eq!(json[0]["name"], "ann");
    assert_eq!(json[1]["name"], serde_json::Value::Null);
    assert_eq!(
        run("markdown"),
        "| id | name | score |\n|----|------|-------|\n|  1 | ann  |   1.5 |\n|  2 | NULL |    -2 |\n"
    );
    let table = run("table");
    assert!(table.contains("| id | name | score |"), "{table}");
    assert!(table.ends_with("(2 rows)\n"), "{table}");
}

pub fn data_dir_flag_and_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("via-env");
    let out = Command::new(env!("CARGO_BIN_EXE_omen"))
        .args(["repl", "-c", "CREATE TABLE x (id INT PRIMARY KEY)"])
        .env("OMEN_DATA_DIR", &data)
        .output()
        .expect("omen runs");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_omen"))
        .args([
            "repl",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM x",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("OMEN_DATA_DIR")
        .output()
        .expect("omen runs");
    assert_eq!(stdout(&out), "n\n0\n", "stderr: {}", stderr(&out));
    // A DIR argument wins over OMEN_DATA_DIR.
    let other = dir.path().join("positional");
    let out = Command::new(env!("CARGO_BIN_EXE_omen"))
        .args(["repl", "-c", "CREATE TABLE y (id INT PRIMARY KEY)"])
        .arg(&other)
        .env("OMEN_DATA_DIR", &data)
        .output()
        .expect("omen runs");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(other.join("CURRENT").exists(), "the database is in DIR");
}

/// `omen --version` says how the binary was compiled, so a benchmark figure or
/// a bug report shows whether it came from an optimised build.
pub fn version_names_the_build() {
    let out = Command::new(env!("CARGO_BIN_EXE_omen"))
        .arg("--version")
        .output()
        .expect("omen runs");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let expected = format!("omen {} ({})\n", env!("CARGO_PKG_VERSION"), omen::BUILD);
    assert_eq!(stdout(&out), expected);
    assert!(omen::BUILD.starts_with("opt-level "), "{}", omen::BUILD);
}

pub fn threads_and_memory_limit_flags() {
    // `--threads` sets the sessions' omen.parallelism; bad values of either
    // flag stop the shell before it opens the database.
    let dir = tempfile::tempdir().expect("temp dir");
    let show = "SHOW omen.parallelism";
    let out = omen(
        dir.path(),
        &["--threads", "3", "--format", "csv", "-c", show],
        None,
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "omen.parallelism\n3\n");
    for bad in [["--threads", "0"], ["--memory-limit", "lots"]] {
        let out = omen(dir.path(), &[bad[0], bad[1], "-c", "SELECT 1"], None);
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
    let out = omen(
        dir.path(),
        &["--memory-limit", "64MB", "-c", "SELECT 1"],
        None,
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
}

pub fn backslash_copy_reads_and_writes_files() {
    // `\copy` as in psql, from a script: a CSV file into a table (bare or
    // quoted file names, COPY's options), a query out to a file, and a
    // missing file stops the script with status 1.
    let dir = tempfile::tempdir().expect("temp dir");
    let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.txt"));
    std::fs::write(&input, "id,name\r\n1,a\r\n2,\"b,c\"\r\n3,\r\n").expect("write");
    let script = format!(
        "CREATE TABLE t (id int PRIMARY KEY, name text);\n\
         \\copy t FROM {} WITH (FORMAT csv, HEADER true)\n\
         SELECT count(*), count(name) FROM t;\n\
         \\copy (SELECT * FROM t WHERE id > 1 ORDER BY id) TO '{}'\n\
         COPY t TO '{}.csv' WITH (FORMAT csv);\n\
         \\copy t FROM {}/missing.csv\n\
         SELECT 'not reached';\n",
        input.display(),
        output.display(),
        output.display(),
        dir.path().display()
    );
    let out = omen(&dir.path().join("db"), &["--format", "csv"], Some(&script));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("COPY 3"), "{text}");
    assert!(text.contains("3,2"), "{text}");
    assert!(!text.contains("not reached"), "{text}");
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));
    // COPY's text format by default: tabs, \N for NULL.
    assert_eq!(
        std::fs::read_to_string(&output).expect("written"),
        "2\tb,c\n3\t\\N\n"
    );
    // COPY with a file as SQL in the shell is the same as \copy.
    let csv = format!("{}.csv", output.display());
    assert_eq!(
        std::fs::read_to_string(csv).expect("written"),
        "1,a\n2,\"b,c\"\n3,\n"
    );
}
