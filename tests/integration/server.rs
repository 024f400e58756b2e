//! `omen serve` as clients use it: the real binary on a free loopback port,
//! driven by tokio-postgres (simple and extended protocol, binary results,
//! SCRAM, concurrent transactions), by psql (TLS, scripts) and by raw bytes
//! (malformed messages).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A running `omen serve`, stopped (SIGTERM) when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    log: std::path::PathBuf,
}

impl Server {
    /// A server on a fresh data directory, without roles (no passwords).
    pub fn start() -> Server {
        Server::start_with(&[], &[])
    }

    /// A server with extra flags and environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Server::start_in(dir, args, env)
    }

    fn start_in(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = dir.path().join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_omen"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env_remove("OMEN_SUPERUSER")
            .env_remove("OMEN_PASSWORD")
            .env_remove("OMEN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("omen serve starts");
        let server = Server {
            child: Some(child),
            port,
            dir,
            log,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "omen serve did not listen; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A libpq connection string for `user` (and `password`).
    pub fn conninfo(&self, user: &str, password: Option<&str>) -> String {
        let mut s = format!("host=127.0.0.1 port={} user={user} dbname=omen", self.port);
        if let Some(p) = password {
            s.push_str(&format!(" password={p}"));
        }
        s
    }

    /// Sends SIGTERM and waits; true when the server exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on the pid of a child this process owns.
        unsafe { libc_kill(child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and starts another on the same data directory.
    pub fn restart(mut self, args: &[&str], env: &[(&str, &str)]) -> Server {
        assert!(self.stop(), "clean shutdown; log:\n{}", self.log());
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        Server::start_in(dir, args, env)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// A current-thread runtime for one test's clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Connects with tokio-postgres, spawning the connection on the runtime.
pub async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The rows of a simple query as text (NULL as None).
pub async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Creates `table (id bigint primary key, pad text)` and fills it with ids
/// 0..300,000, `pad` being `pad_sql` of `value`, in ten statements (each
/// small enough for a 32 MB memory limit).
pub async fn fill_padded(client: &Client, table: &str, pad_sql: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, pad TEXT)"
        ))
        .await
        .expect("create");
    for batch in 0..10 {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} SELECT value, {pad_sql} \
                 FROM generate_series({}, {}) AS value",
                batch * 30_000,
                batch * 30_000 + 29_999
            ))
            .await
            .expect("load");
    }
}

pub fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

pub fn simple_protocol_and_transaction_status() {
    let server = Server::start();
    runtime().block_on(async {
        let conninfo = format!("{} application_name=omen-tests", server.conninfo("alice", None));
        let client = connect(&conninfo).await.expect("connect");
        let messages = client
            .simple_query(
                "CREATE TABLE t (id INT PRIMARY KEY, name TEXT); \
                 INSERT INTO t VALUES (1, 'one'), (2, NULL); SELECT * FROM t ORDER BY id",
            )
            .await
            .expect("multi-statement query");
        let tags: Vec<u64> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(tags, vec![0, 2, 2]);
        assert_eq!(
            simple_rows(&client, "SELECT id, name FROM t ORDER BY id").await,
            vec![
                vec![Some("1".into()), Some("one".into())],
                vec![Some("2".into()), None]
            ]
        );
        let session = simple_rows(
            &client,
            "SELECT current_user, current_database(), current_schema(), version() LIKE 'PostgreSQL 15%'",
        )
        .await;
        assert_eq!(
            session,
            vec![vec![
                Some("alice".into()),
                Some("omen".into()),
                Some("public".into()),
                Some("t".into())
            ]]
        );
        // Settings sent at startup (tokio-postgres sends client_encoding;
        // application_name comes from the connection string).
        assert_eq!(
            simple_rows(&client, "SHOW application_name").await,
            vec![vec![Some("omen-tests".into())]]
        );
        // An empty query is answered, not an error.
        client.simple_query("").await.expect("empty query");
        client.simple_query(";").await.expect("only a semicolon");

        // A failed statement inside a transaction fails the transaction
        // until ROLLBACK; outside one, the next statement runs.
        client.batch_execute("BEGIN").await.expect("begin");
        let e = client.batch_execute("SELECT nope FROM t").await.unwrap_err();
        assert_eq!(code(&e), "42703");
        let e = client.batch_execute("SELECT 1").await.unwrap_err();
        assert_eq!(code(&e), "25P02");
        client.batch_execute("ROLLBACK").await.expect("rollback");
        assert_eq!(simple_rows(&client, "SELECT 1").await, vec![vec![Some("1".into())]]);
        let e = client.batch_execute("SELEC 1").await.unwrap_err();
        assert_eq!(code(&e), "42601");
        assert_eq!(simple_rows(&client, "SELECT 2").await, vec![vec![Some("2".into())]]);

        // Several statements in one query outside a transaction block are
        // one implicit transaction: a failing one stops the query and undoes
        // the earlier ones, as in PostgreSQL.
        let e = client
            .batch_execute("INSERT INTO t VALUES (3, 'three'); INSERT INTO t VALUES (1, 'dup'); INSERT INTO t VALUES (4, 'four')")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "23505");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM t").await,
            vec![vec![Some("2".into())]]
        );
        client
            .batch_execute("INSERT INTO t VALUES (3, 'three'); UPDATE t SET name = 'two' WHERE id = 2")
            .await
            .expect("both statements");
        assert_eq!(
            simple_rows(&client, "SELECT count(*), max(name) FROM t").await,
            vec![vec![Some("3".into()), Some("two".into())]]
        );
        // Inside a transaction block, the block decides.
        client
            .batch_execute("BEGIN; INSERT INTO t VALUES (5, 'five')")
            .await
            .expect("begin and insert");
        let e = client
            .batch_execute("INSERT INTO t VALUES (6, 'six'); INSERT INTO t VALUES (5, 'dup')")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "23505");
        client.batch_execute("ROLLBACK").await.expect("rollback");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM t").await,
            vec![vec![Some("3".into())]]
        );
    });
}

pub fn extended_protocol_parameters_and_binary_results() {
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("alice", None)).await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE v (id BIGINT PRIMARY KEY, s SMALLINT, i INT, r REAL, d DOUBLE PRECISION, \
                 b BOOLEAN, t TEXT, vc VARCHAR(10), by BYTEA, dt DATE, ts TIMESTAMP, tz TIMESTAMPTZ, n NUMERIC(10,2))",
            )
            .await
            .expect("create");
        let typed = client
            .prepare("INSERT INTO v VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
            .await
            .expect("prepare insert");
        let types: Vec<String> = typed.params().iter().map(|t| t.name().to_string()).collect();
        assert_eq!(
            types,
            [
                "int8", "int2", "int4", "float4", "float8", "bool", "text", "text", "bytea",
                "date", "timestamp", "timestamptz", "numeric"
            ]
        );
        let date = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let ts = date.and_hms_micro_opt(12, 34, 56, 789_012).unwrap();
        let tz = chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(ts, chrono::Utc);
        let insert = client
            .prepare("INSERT INTO v VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::numeric)")
            .await
            .expect("prepare insert with a text numeric");
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
            &1i64, &-2i16, &3i32, &1.5f32, &-2.25f64, &true, &"it's", &"short",
            &vec![0u8, 255, 10], &date, &ts, &tz, &"123.45",
        ];
        assert_eq!(client.execute(&insert, &params).await.expect("insert"), 1);
        let nulls: [&(dyn tokio_postgres::types::ToSql + Sync); 13] = [
            &2i64, &None::<i16>, &None::<i32>, &None::<f32>, &None::<f64>, &None::<bool>,
            &None::<&str>, &None::<&str>, &None::<Vec<u8>>, &None::<chrono::NaiveDate>,
            &None::<chrono::NaiveDateTime>, &None::<chrono::DateTime<chrono::Utc>>, &None::<&str>,
        ];
        assert_eq!(client.execute(&insert, &nulls).await.expect("insert nulls"), 1);

        // tokio-postgres asks for binary results.
        let select = client
            .prepare("SELECT id, s, i, r, d, b, t, vc, by, dt, ts, tz, n::text AS n FROM v WHERE id = $1")
            .await
            .expect("prepare select");
        assert_eq!(select.params()[0].name(), "int8");
        let row = client.query_one(&select, &[&1i64]).await.expect("row 1");
        assert_eq!(row.get::<_, i64>(0), 1);
        assert_eq!(row.get::<_, i16>(1), -2);
        assert_eq!(row.get::<_, i32>(2), 3);
        assert_eq!(row.get::<_, f32>(3), 1.5);
        assert_eq!(row.get::<_, f64>(4), -2.25);
        assert!(row.get::<_, bool>(5));
        assert_eq!(row.get::<_, &str>(6), "it's");
        assert_eq!(row.get::<_, &str>(7), "short");
        assert_eq!(row.get::<_, Vec<u8>>(8), vec![0u8, 255, 10]);
        assert_eq!(row.get::<_, chrono::NaiveDate>(9), date);
        assert_eq!(row.get::<_, chrono::NaiveDateTime>(10), ts);
        assert_eq!(row.get::<_, chrono::DateTime<chrono::Utc>>(11), tz);
        assert_eq!(row.get::<_, &str>(12), "123.45");
        let row = client.query_one(&select, &[&2i64]).await.expect("row 2");
        assert_eq!(row.get::<_, Option<&str>>(6), None);
        assert_eq!(row.get::<_, Option<Vec<u8>>>(8), None);
        assert_eq!(row.get::<_, Option<i32>>(2), None);
        assert_eq!(row.get::<_, Option<chrono::NaiveDate>>(9), None);

        // Parameters typed by their context in WHERE, SET and arithmetic.
        let update = client
            .prepare("UPDATE v SET i = i + $1, t = $2 WHERE id = $3")
            .await
            .expect("prepare update");
        let types: Vec<&str> = update.params().iter().map(|t| t.name()).collect();
        assert_eq!(types, ["int4", "text", "int8"]);
        assert_eq!(client.execute(&update, &[&10i32, &"ten", &1i64]).await.expect("update"), 1);
        let row = client
            .query_one("SELECT i, t FROM v WHERE id = $1", &[&1i64])
            .await
            .expect("unnamed statement");
        assert_eq!((row.get::<_, i32>(0), row.get::<_, &str>(1)), (13, "ten"));

        // An error in the extended protocol: the statement fails, the
        // connection goes on.
        let e = client.query("SELECT * FROM missing WHERE id = $1", &[&1i64]).await.unwrap_err();
        assert_eq!(code(&e), "42P01");
        let e = client.prepare("SELECT 1; SELECT 2").await.unwrap_err();
        assert_eq!(code(&e), "42601");
        assert_eq!(
            client.query_one("SELECT $1::int", &[&42i32]).await.expect("cast").get::<_, i32>(0),
            42
        );

        // After ALTER TABLE a prepared statement runs against the new
        // definition; one whose result columns would change fails with
        // 0A000, as in PostgreSQL, and preparing it again mends it.
        let star = client.prepare("SELECT * FROM v WHERE id = $1").await.expect("prepare *");
        let one = client.prepare("SELECT i FROM v WHERE id = $1").await.expect("prepare i");
        client.batch_execute("ALTER TABLE v ADD COLUMN extra INT").await.expect("alter");
        let e = client.query(&star, &[&1i64]).await.unwrap_err();
        assert_eq!(code(&e), "0A000");
        let row = client.query_one(&one, &[&1i64]).await.expect("unchanged columns");
        assert_eq!(row.get::<_, i32>(0), 13);
        let star = client.prepare("SELECT * FROM v WHERE id = $1").await.expect("prepare again");
        assert_eq!(client.query_one(&star, &[&1i64]).await.expect("new columns").len(), 14);

        // PREPARE and EXECUTE in SQL, described over the extended protocol.
        client
            .batch_execute("PREPARE pick (bigint) AS SELECT t FROM v WHERE id = $1")
            .await
            .expect("PREPARE");
        let row = client.query_one("EXECUTE pick(1)", &[]).await.expect("EXECUTE");
        assert_eq!(row.get::<_, &str>(0), "ten");
    });
}

pub fn concurrent_transactions_are_isolated() {
    let server = Server::start();
    runtime().block_on(async {
        let a = connect(&server.conninfo("a", None))
            .await
            .expect("connect a");
        let b = connect(&server.conninfo("b", None))
            .await
            .expect("connect b");
        a.batch_execute(
            "CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call BOOLEAN); \
             INSERT INTO doctors VALUES ('alice', true), ('bob', true)",
        )
        .await
        .expect("setup");
        // Write skew: both read two on call, each takes one off.
        a.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .expect("begin a");
        b.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .expect("begin b");
        let count = "SELECT count(*) FROM doctors WHERE on_call";
        assert_eq!(simple_rows(&a, count).await, vec![vec![Some("2".into())]]);
        assert_eq!(simple_rows(&b, count).await, vec![vec![Some("2".into())]]);
        a.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'alice'")
            .await
            .expect("a writes");
        b.batch_execute("UPDATE doctors SET on_call = false WHERE name = 'bob'")
            .await
            .expect("b writes");
        // b's uncommitted write is invisible to a, a's to b.
        assert_eq!(simple_rows(&a, count).await, vec![vec![Some("1".into())]]);
        a.batch_execute("COMMIT").await.expect("a commits");
        let e = b.batch_execute("COMMIT").await.unwrap_err();
        assert_eq!(code(&e), "40001");
        assert_eq!(simple_rows(&b, count).await, vec![vec![Some("1".into())]]);

        // Per-connection isolation settings.
        b.batch_execute("SET default_transaction_isolation = 'repeatable read'")
            .await
            .expect("set");
        assert_eq!(
            simple_rows(&b, "SHOW transaction_isolation").await,
            vec![vec![Some("repeatable read".into())]]
        );
        assert_eq!(
            simple_rows(&a, "SHOW transaction_isolation").await,
            vec![vec![Some("read committed".into())]]
        );
    });
}

pub fn scram_authentication_and_roles() {
    let env = [("OMEN_SUPERUSER", "admin"), ("OMEN_PASSWORD", "s3cret")];
    let server = Server::start_with(&[], &env);
    runtime().block_on(async {
        let admin = connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .expect("admin logs in");
        let e = connect(&server.conninfo("admin", Some("wrong")))
            .await
            .unwrap_err();
        assert_eq!(code(&e), "28P01");
        let unknown = connect(&server.conninfo("nobody", Some("s3cret")))
            .await
            .unwrap_err();
        assert_eq!(code(&unknown), "28P01");
        // The same message whether or not the role exists, apart from the name.
        assert_eq!(
            e.to_string().replace("admin", "X"),
            unknown.to_string().replace("nobody", "X")
        );
        assert!(server
            .log()
            .contains("password authentication failed for user \"nobody\""));

        admin
            .batch_execute(
                "CREATE USER bob WITH PASSWORD 'hunter2'; CREATE ROLE carol PASSWORD 'x'",
            )
            .await
            .expect("create roles");
        let bob = connect(&server.conninfo("bob", Some("hunter2")))
            .await
            .expect("bob logs in");
        // CREATE ROLE without LOGIN cannot log in.
        let e = connect(&server.conninfo("carol", Some("x")))
            .await
            .unwrap_err();
        assert_eq!(code(&e), "28P01");
        let e = bob
            .batch_execute("CREATE ROLE eve PASSWORD 'x'")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "42501");
        bob.batch_execute("ALTER USER bob PASSWORD 'hunter3'")
            .await
            .expect("own password");
        connect(&server.conninfo("bob", Some("hunter3")))
            .await
            .expect("new password works");
        connect(&server.conninfo("bob", Some("hunter2")))
            .await
            .unwrap_err();
        admin
            .batch_execute("DROP ROLE carol")
            .await
            .expect("drop role");
        let e = admin.batch_execute("DROP ROLE carol").await.unwrap_err();
        assert_eq!(code(&e), "42704");

        // Only database omen exists.
        let e = connect(&format!(
            "host=127.0.0.1 port={} user=admin password=s3cret dbname=postgres",
            server.port
        ))
        .await
        .unwrap_err();
        assert_eq!(code(&e), "3D000");
    });
    // Passwords are stored as verifiers only.
    let server = server.restart(&[], &[]);
    let data = std::fs::read_dir(server.dir.path().join("data")).expect("data dir");
    for entry in data.flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("hunter3") && !text.contains("s3cret"),
            "{:?}",
            entry.path()
        );
    }
    runtime().block_on(async {
        connect(&server.conninfo("bob", Some("hunter3")))
            .await
            .expect("roles survive a restart");
    });
}

pub fn refuses_to_listen_beyond_loopback_without_authentication() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_omen"))
        .args([
            "serve",
            "--listen",
            &format!("0.0.0.0:{}", free_port()),
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("OMEN_SUPERUSER")
        .env_remove("OMEN_PASSWORD")
        .output()
        .expect("omen serve runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
}

fn psql(conninfo: &str, args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut command = Command::new("psql");
    command
        .arg(conninfo)
        .args(["-X", "-q", "-A", "-t"])
        .args(args);
    if let Some(p) = password {
        command.env("PGPASSWORD", p);
    }
    command
        .env_remove("PGSSLMODE")
        .output()
        .expect("psql runs (scripts/setup installs it)")
}

pub fn psql_over_tls_with_scram() {
    let env = [("OMEN_SUPERUSER", "admin"), ("OMEN_PASSWORD", "pw")];
    let server = Server::start_with(&["--tls-self-signed"], &env);
    let base = format!("host=127.0.0.1 port={} user=admin dbname=omen", server.port);
    let out = psql(
        &format!("{base} sslmode=require"),
        &[
            "-c",
            "CREATE TABLE x (a INT PRIMARY KEY)",
            "-c",
            "INSERT INTO x VALUES (1), (2)",
            "-c",
            "SELECT sum(a) FROM x",
            "-c",
            "\\conninfo",
        ],
        Some("pw"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3\n"), "{stdout}");
    assert!(stdout.contains("SSL connection"), "{stdout}");
    // Without TLS the same login works too; with a wrong password it fails.
    let out = psql(
        &format!("{base} sslmode=disable"),
        &["-c", "SELECT 1"],
        Some("nope"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));
}

/// A certificate and key from files: psql verifies it (verify-full), and a
/// client that starts TLS at once with ALPN "postgresql" (PostgreSQL 17's
/// sslnegotiation=direct) logs in too.
pub fn tls_certificate_files_and_direct_negotiation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, generated.cert.pem()).expect("write certificate");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let server = Server::start_with(&["--tls-cert", cert, "--tls-key", key], &[]);
    let out = psql(
        &format!(
            "host=localhost port={} user=u dbname=omen sslmode=verify-full sslrootcert={cert}",
            server.port
        ),
        &["-c", "SELECT 1", "-c", "\\conninfo"],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains("SSL connection"), "{stdout}");

    // Direct TLS: no SSLRequest, the TLS handshake first.
    use pgwire::tokio::tokio_rustls::{rustls, TlsConnector};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    runtime().block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(generated.cert.der().clone())
            .expect("trust the certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake at once");
        // StartupMessage: length, protocol 3.0, user and database.
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0u\0database\0omen\0\0");
        let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        tls.write_all(&message).await.expect("send startup");
        // AuthenticationOk: 'R', length 8, code 0.
        let mut reply = [0u8; 9];
        tls.read_exact(&mut reply)
            .await
            .expect("authentication reply");
        assert_eq!(reply, [b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
    });
}

pub fn psql_script_stops_on_error() {
    let server = Server::start();
    let script = server.dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE s (id INT PRIMARY KEY);\nINSERT INTO s VALUES (1);\nINSERT INTO s VALUES (1);\nINSERT INTO s VALUES (2);\n",
    )
    .expect("write script");
    let conninfo = server.conninfo("someone", None);
    let out = psql(
        &conninfo,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            script.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("duplicate key"));
    let out = psql(&conninfo, &["-c", "SELECT count(*) FROM s"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // With FETCH_COUNT psql reads a result through a cursor, a page at a time.
    let out = psql(
        &conninfo,
        &[
            "-v",
            "FETCH_COUNT=2",
            "-c",
            "INSERT INTO s VALUES (3), (4), (5)",
            "-c",
            "SELECT id FROM s ORDER BY id",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids, ["1", "3", "4", "5"]);
}

/// psql's describing commands read the emulated system catalogs.
pub fn psql_describes_tables_and_roles() {
    let env = [("OMEN_SUPERUSER", "admin"), ("OMEN_PASSWORD", "pw")];
    let server = Server::start_with(&[], &env);
    let conninfo = format!("host=127.0.0.1 port={} user=admin dbname=omen", server.port);
    let run = |args: &[&str]| {
        let out = psql(&conninfo, args, Some("pw"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    run(&[
        "-c",
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL DEFAULT 'x', price NUMERIC(10,2))",
        "-c",
        "CREATE TABLE loose (v DOUBLE PRECISION)",
        "-c",
        "CREATE ROLE reader LOGIN PASSWORD 'r'",
    ]);
    // -A -t: unaligned rows without headers or footers, fields separated by |.
    let tables = run(&["-c", "\\dt"]);
    assert_eq!(
        tables, "public|items|table|admin\npublic|loose|table|admin\n",
        "{tables}"
    );
    let relations = run(&["-c", "\\d"]);
    assert!(
        relations.contains("public|items|table|admin"),
        "{relations}"
    );
    let items = run(&["-c", "\\d items"]);
    assert_eq!(
        items, "id|integer||not null|\nname|text||not null|'x'::text\nprice|numeric(10,2)|||\n",
        "{items}"
    );
    let loose = run(&["-c", "\\d loose"]);
    assert_eq!(loose, "v|double precision|||\n", "{loose}");
    let index = run(&["-c", "\\d items_pkey"]);
    assert!(index.starts_with("id|integer|yes|id\n"), "{index}");
    let databases = run(&["-c", "\\l"]);
    assert!(databases.starts_with("omen|admin|UTF8|"), "{databases}");
    let roles = run(&["-c", "\\du"]);
    assert!(roles.contains("admin|Superuser"), "{roles}");
    assert!(roles.contains("reader|"), "{roles}");
    // COPY with a file on the server: a superuser may, another role may not.
    let file = server.dir.path().join("items.csv");
    std::fs::write(&file, "7,seven,1.50\n8,eight,\n").expect("write");
    run(&[
        "-c",
        &format!("COPY items FROM '{}' WITH (FORMAT csv)", file.display()),
    ]);
    assert_eq!(run(&["-c", "SELECT count(*) FROM items"]).trim(), "2");
    run(&[
        "-c",
        &format!(
            "COPY (SELECT id FROM items ORDER BY id) TO '{}'",
            file.display()
        ),
    ]);
    assert_eq!(std::fs::read_to_string(&file).expect("written"), "7\n8\n");
    let reader = format!(
        "host=127.0.0.1 port={} user=reader dbname=omen",
        server.port
    );
    let out = psql(
        &reader,
        &["-c", &format!("COPY items FROM '{}'", file.display())],
        Some("r"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    // A table that does not exist: no rows found, so psql exits non-zero.
    let out = psql(&conninfo, &["-c", "\\d nothing"], Some("pw"));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

pub fn bad_clients_do_not_disturb_others() {
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE k (id INT PRIMARY KEY, v INT); INSERT INTO k VALUES (1, 0)",
            )
            .await
            .expect("setup");

        // Garbage instead of a startup message, and an oversized length.
        for bytes in [
            &b"hello, is this a database?\n"[..],
            &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0][..],
        ] {
            let mut raw = TcpStream::connect(("127.0.0.1", server.port)).expect("raw connect");
            raw.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            raw.write_all(bytes).expect("write garbage");
            let mut buf = Vec::new();
            let _ = raw.read_to_end(&mut buf); // the server closes the connection
        }
        // A client that opens a transaction, writes and vanishes.
        {
            let gone = connect(&server.conninfo("b", None)).await.expect("connect");
            gone.batch_execute("BEGIN; UPDATE k SET v = 99 WHERE id = 1")
                .await
                .expect("write");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Its write was rolled back, and does not block or conflict with others.
        assert_eq!(
            simple_rows(&client, "SELECT v FROM k").await,
            vec![vec![Some("0".into())]]
        );
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; UPDATE k SET v = 1 WHERE id = 1; COMMIT",
            )
            .await
            .expect("update after the vanished client");
        assert_eq!(
            simple_rows(&client, "SELECT v FROM k").await,
            vec![vec![Some("1".into())]]
        );
    });
}

pub fn shutdown_is_clean_and_data_survives() {
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute("CREATE TABLE d (id INT PRIMARY KEY); INSERT INTO d VALUES (1), (2)")
            .await
            .expect("write");
        client
            .batch_execute("BEGIN; INSERT INTO d VALUES (3)")
            .await
            .expect("open transaction");
    });
    let server = server.restart(&[], &[]);
    assert!(server.log().contains("listening"));
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None))
            .await
            .expect("reconnect");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM d").await,
            vec![vec![Some("2".into())]]
        );
    });
}

pub fn cancel_request_stops_a_running_query() {
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        let token = client.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token
                .cancel_query(NoTls)
                .await
                .expect("cancel request sent");
        });
        let started = Instant::now();
        let e = client
            .simple_query("SELECT count(*) FROM generate_series(1, 100000000000)")
            .await
            .expect_err(&format!("cancelled; server log:\n{}", server.log()));
        assert_eq!(code(&e), "57014");
        assert!(started.elapsed() < Duration::from_secs(30));
        canceller.await.expect("canceller");
        // The connection goes on.
        assert_eq!(
            simple_rows(&client, "SELECT 1").await,
            vec![vec![Some("1".into())]]
        );
        // pg_cancel_backend from another connection does the same.
        let pid = simple_rows(&client, "SELECT pg_backend_pid()").await[0][0]
            .clone()
            .expect("a pid");
        let other = connect(&server.conninfo("b", None)).await.expect("connect");
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rows = simple_rows(&other, &format!("SELECT pg_cancel_backend({pid})")).await;
            assert_eq!(rows, vec![vec![Some("t".into())]]);
            // No such session: false, as in PostgreSQL.
            let rows = simple_rows(&other, "SELECT pg_cancel_backend(1)").await;
            assert_eq!(rows, vec![vec![Some("f".into())]]);
        });
        let e = client
            .simple_query("SELECT count(*) FROM generate_series(1, 100000000000)")
            .await
            .expect_err("cancelled by pg_cancel_backend");
        assert_eq!(code(&e), "57014");
        canceller.await.expect("canceller");
    });
}

/// A client idle inside a transaction past idle_in_transaction_session_timeout
/// loses its transaction (and the snapshot it held) and then its connection.
pub fn idle_transactions_time_out() {
    let server = Server::start_with(&["--idle-in-transaction-timeout", "300ms"], &[]);
    runtime().block_on(async {
        let setup = connect(&server.conninfo("a", None)).await.expect("connect");
        setup
            .batch_execute("CREATE TABLE k (id INT PRIMARY KEY)")
            .await
            .expect("create");
        let idle = connect(&server.conninfo("b", None)).await.expect("connect");
        idle.batch_execute("BEGIN; INSERT INTO k VALUES (1)")
            .await
            .expect("begin and insert");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let e = idle.batch_execute("COMMIT").await.unwrap_err();
        assert_eq!(code(&e), "25P03", "{e}");
        assert!(idle.is_closed() || idle.batch_execute("SELECT 1").await.is_err());
        // The insert was rolled back; the row is free for others.
        setup
            .batch_execute("INSERT INTO k VALUES (1)")
            .await
            .expect("no conflict with the rolled-back insert");
        // Idle outside a transaction is fine; a busy transaction is fine.
        let busy = connect(&server.conninfo("c", None)).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(600)).await;
        busy.batch_execute("BEGIN").await.expect("begin");
        for i in 10..16 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            busy.batch_execute(&format!("INSERT INTO k VALUES ({i})"))
                .await
                .expect("insert");
        }
        busy.batch_execute("COMMIT").await.expect("commit");
        // A session may turn it off for itself.
        let own = connect(&server.conninfo("d", None)).await.expect("connect");
        own.batch_execute("SET idle_in_transaction_session_timeout = 0; BEGIN")
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(800)).await;
        own.batch_execute("COMMIT").await.expect("still open");
    });
    let out = Command::new(env!("CARGO_BIN_EXE_omen"))
        .args([
            "serve",
            "--idle-in-transaction-timeout",
            "banana",
            "--data-dir",
        ])
        .arg(server.dir.path().join("other"))
        .output()
        .expect("omen serve runs");
    assert!(!out.status.success());
}

pub fn psycopg_driver() {
    let server = Server::start();
    python_client(&server, "psycopg_client.py", server.conninfo("py", None));
}

pub fn sqlalchemy_and_alembic() {
    // An ORM application and a migration tool, unchanged: SQLAlchemy 2's
    // create_all, sessions, errors and reflection, and Alembic migrations
    // in transactions, one of which fails and must leave nothing behind.
    let server = Server::start();
    let url = format!("postgresql://app@127.0.0.1:{}/omen", server.port);
    python_client(&server, "sqlalchemy_app.py", url);
}

/// Runs `tests/python/<script>` against `server` with `target` as its one
/// argument, under Debian's Python (where scripts/setup installs psycopg 3,
/// SQLAlchemy and Alembic); fails with its output and the server's log.
fn python_client(server: &Server, script: &str, target: String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(target)
        .output()
        .expect("python3 runs (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

pub fn connection_limit() {
    let server = Server::start_with(&["--max-connections", "2"], &[]);
    runtime().block_on(async {
        let _a = connect(&server.conninfo("a", None)).await.expect("first");
        let _b = connect(&server.conninfo("b", None)).await.expect("second");
        let e = connect(&server.conninfo("c", None)).await.unwrap_err();
        assert_eq!(code(&e), "53300");
    });
}

/// The SQL corpus over the wire: one server per file, statements and queries
/// through the simple protocol, the same expected results as in-process.
pub struct WireDb {
    client: Client,
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for WireDb {
    type Error = tokio_postgres::Error;
    type ColumnType = sqllogictest::DefaultColumnType;

    async fn run(
        &mut self,
        sql: &str,
    ) -> Result<sqllogictest::DBOutput<Self::ColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut complete = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(desc) => columns = Some(desc.len()),
                SimpleQueryMessage::Row(row) => rows.push(
                    (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(s) => s.to_string(),
                        })
                        .collect::<Vec<_>>(),
                ),
                SimpleQueryMessage::CommandComplete(n) => complete = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => sqllogictest::DBOutput::Rows {
                types: vec![sqllogictest::DefaultColumnType::Any; n],
                rows,
            },
            None => sqllogictest::DBOutput::StatementComplete(complete),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "omen-wire"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await
    }

    fn error_sql_state(err: &Self::Error) -> Option<String> {
        err.code().map(|c| c.code().to_string())
    }
}

/// Runs one .slt file against a fresh server.
pub fn run_slt_over_wire(path: &Path) -> Result<(), libtest_mimic::Failed> {
    let server = Server::start();
    let conninfo = server.conninfo("slt", None);
    runtime().block_on(async move {
        let mut runner = sqllogictest::Runner::new(move || {
            let conninfo = conninfo.clone();
            async move {
                Ok(WireDb {
                    client: connect(&conninfo).await?,
                })
            }
        });
        runner
            .run_file_async(path)
            .await
            .map_err(|e| libtest_mimic::Failed::from(e.display(true).to_string()))
    })
}

pub fn row_locks_over_the_wire() {
    // A writer waits for the connection that holds the row, is seen waiting
    // in pg_stat_activity, and applies itself to the committed row; a
    // dropped connection's locks end with it.
    let server = Server::start();
    runtime().block_on(async {
        let a = connect(&server.conninfo("a", None)).await.expect("a");
        let b = connect(&server.conninfo("b", None)).await.expect("b");
        let c = connect(&server.conninfo("c", None)).await.expect("c");
        a.batch_execute(
            "CREATE TABLE test (id int PRIMARY KEY, value int); \
             INSERT INTO test VALUES (1, 10), (2, 20)",
        )
        .await
        .expect("setup");
        a.batch_execute("BEGIN; UPDATE test SET value = 11 WHERE id = 1")
            .await
            .expect("a writes");
        b.batch_execute("BEGIN").await.expect("b begins");
        let waiting = tokio::spawn(async move {
            let result = b
                .batch_execute("UPDATE test SET value = value + 1 WHERE id = 1")
                .await;
            (b, result)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "b did not wait for a");
        assert_eq!(
            simple_rows(
                &c,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            .await,
            vec![vec![Some("1".into())]]
        );
        a.batch_execute("COMMIT").await.expect("a commits");
        let (b, result) = waiting.await.expect("b's task");
        result.expect("b's update after a committed");
        b.batch_execute("COMMIT").await.expect("b commits");
        assert_eq!(
            simple_rows(&c, "SELECT value FROM test WHERE id = 1").await,
            vec![vec![Some("12".into())]]
        );
        let d = connect(&server.conninfo("d", None)).await.expect("d");
        d.batch_execute("BEGIN; SELECT * FROM test WHERE id = 2 FOR UPDATE")
            .await
            .expect("d locks");
        let e = c
            .batch_execute("SET lock_timeout = '100ms'; UPDATE test SET value = 0 WHERE id = 2")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "55P03");
        drop(d);
        c.batch_execute("SET lock_timeout = '10s'; UPDATE test SET value = 0 WHERE id = 2")
            .await
            .expect("the dropped connection's lock is gone");
    });
}

pub fn tpcb_clients_never_fail_at_read_committed() {
    // pgbench's TPC-B-like transaction from 8 and then 16 connections at
    // READ COMMITTED with no retries: every transaction commits (writers of
    // one branch row wait for each other instead of failing) and the
    // balances add up.
    let server = Server::start();
    runtime().block_on(async {
        let setup = connect(&server.conninfo("setup", None))
            .await
            .expect("connect");
        let accounts: Vec<String> = (1..=200).map(|a| format!("({a}, 1, 0)")).collect();
        let tellers: Vec<String> = (1..=10).map(|t| format!("({t}, 1, 0)")).collect();
        setup
            .batch_execute(&format!(
                "CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int); \
                 CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int); \
                 CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int); \
                 CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp); \
                 INSERT INTO pgbench_branches VALUES (1, 0); \
                 INSERT INTO pgbench_tellers VALUES {}; \
                 INSERT INTO pgbench_accounts VALUES {}",
                tellers.join(", "),
                accounts.join(", ")
            ))
            .await
            .expect("setup");
        let mut total = 0;
        for clients in [8u64, 16] {
            let mut tasks = Vec::new();
            for c in 0..clients {
                let client = connect(&server.conninfo("bench", None))
                    .await
                    .expect("connect");
                tasks.push(tokio::spawn(async move {
                    for i in 0..25u64 {
                        let n = c * 7919 + i * 104_729;
                        let (aid, tid, delta) = (n % 200 + 1, n % 10 + 1, n % 10_000) ;
                        let delta = delta as i64 - 5000;
                        let sql = format!(
                            "BEGIN; \
                             UPDATE pgbench_accounts SET abalance = abalance + {delta} WHERE aid = {aid}; \
                             SELECT abalance FROM pgbench_accounts WHERE aid = {aid}; \
                             UPDATE pgbench_tellers SET tbalance = tbalance + {delta} WHERE tid = {tid}; \
                             UPDATE pgbench_branches SET bbalance = bbalance + {delta} WHERE bid = 1; \
                             INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                             VALUES ({tid}, 1, {aid}, {delta}, CURRENT_TIMESTAMP); \
                             END"
                        );
                        // One statement at a time, as pgbench sends them.
                        for statement in sql.split("; ") {
                            if let Err(e) = client.batch_execute(statement).await {
                                panic!("client {c} failed at {statement}: {e} ({})", code(&e));
                            }
                        }
                    }
                }));
            }
            for task in tasks {
                task.await.expect("every transaction commits");
            }
            total += clients * 25;
        }
        let sums = simple_rows(
            &setup,
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts), \
             (SELECT sum(tbalance) FROM pgbench_tellers), \
             (SELECT sum(bbalance) FROM pgbench_branches), \
             (SELECT sum(delta) FROM pgbench_history), \
             (SELECT count(*) FROM pgbench_history)",
        )
        .await;
        let row = &sums[0];
        assert_eq!(row[0], row[1], "{row:?}");
        assert_eq!(row[1], row[2], "{row:?}");
        assert_eq!(row[2], row[3], "{row:?}");
        assert_eq!(row[4].as_deref(), Some(total.to_string().as_str()));
    });
}

pub fn foreign_keys_and_ddl_over_the_wire() {
    // A child inserted (with a prepared statement) while another connection
    // deletes its parent waits, then fails with 23503; a migration in a
    // transaction block rolls back whole.
    let server = Server::start();
    runtime().block_on(async {
        let a = connect(&server.conninfo("a", None)).await.expect("a");
        let b = connect(&server.conninfo("b", None)).await.expect("b");
        a.batch_execute(
            "CREATE TABLE p (id int PRIMARY KEY); \
             CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p); \
             INSERT INTO p VALUES (1)",
        )
        .await
        .expect("setup");
        a.batch_execute("BEGIN; DELETE FROM p WHERE id = 1")
            .await
            .expect("a deletes the parent");
        let insert = b
            .prepare("INSERT INTO c VALUES ($1, $2)")
            .await
            .expect("prepare");
        let waiting = tokio::spawn(async move {
            let result = b.execute(&insert, &[&1i32, &1i32]).await;
            (b, result)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the child did not wait for its parent"
        );
        a.batch_execute("COMMIT").await.expect("a commits");
        let (b, result) = waiting.await.expect("b's task");
        assert_eq!(code(&result.unwrap_err()), "23503");

        b.batch_execute(
            "BEGIN; CREATE TABLE m (id int PRIMARY KEY); ALTER TABLE c ADD COLUMN note text; \
             INSERT INTO m VALUES (1)",
        )
        .await
        .expect("the migration runs in a transaction block");
        let hidden = simple_rows(
            &a,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'm'",
        )
        .await;
        assert_eq!(
            hidden,
            vec![vec![Some("0".into())]],
            "another connection saw it"
        );
        b.batch_execute("ROLLBACK").await.expect("rollback");
        let columns = simple_rows(
            &a,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'c'",
        )
        .await;
        assert_eq!(columns, vec![vec![Some("2".into())]]);
    });
}

/// A row as text, whatever its column types (those the fast path returns).
fn row_text(row: &tokio_postgres::Row) -> String {
    use tokio_postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let value = match *row.columns()[i].type_() {
                Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
                Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
                Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| v.to_string()),
                _ => row.get::<_, Option<String>>(i),
            };
            value.unwrap_or_else(|| "NULL".into())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prepared statements with parameters over the wire (tokio-postgres sends
/// them in binary) give the same results and errors with the fast path on
/// and off (`SET omen.fast_path = off`).
pub fn prepared_parameters_over_the_wire_match_the_general_path() {
    let server = Server::start();
    runtime().block_on(async {
        let fast = connect(&server.conninfo("alice", None))
            .await
            .expect("connect");
        let general = connect(&server.conninfo("alice", None))
            .await
            .expect("connect");
        general
            .batch_execute("SET omen.fast_path = off")
            .await
            .expect("fast path off");
        for (schema, client) in [("f", &fast), ("g", &general)] {
            client
                .batch_execute(&format!(
                    "CREATE TABLE {schema} (id INT PRIMARY KEY, name TEXT NOT NULL, \
                     score DOUBLE PRECISION, small SMALLINT, ok BOOLEAN, big BIGINT, vc VARCHAR(3))"
                ))
                .await
                .expect("create");
        }
        type Params = Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>;
        let cases: Vec<(&str, Params)> = vec![
            (
                "INSERT INTO T VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    Box::new(1i32),
                    Box::new("one"),
                    Box::new(1.5f64),
                    Box::new(1i16),
                    Box::new(true),
                    Box::new(10i64),
                    Box::new("abc"),
                ],
            ),
            (
                "INSERT INTO T (id, name) VALUES ($1, $2)",
                vec![Box::new(1i32), Box::new("dup")],
            ),
            (
                "INSERT INTO T (id, name) VALUES ($1, $2)",
                vec![Box::new(2i32), Box::new(None::<&str>)],
            ),
            (
                "INSERT INTO T (id, name, vc) VALUES ($1, $2, $3)",
                vec![Box::new(3i32), Box::new("three"), Box::new("long")],
            ),
            (
                "INSERT INTO T (id, name, big) VALUES ($1::bigint, $2, $3)",
                vec![Box::new(1i64 << 40), Box::new("wide"), Box::new(1i64)],
            ),
            (
                "INSERT INTO T (id, name, big, ok) VALUES ($1, $2, $3, $4)",
                vec![
                    Box::new(4i32),
                    Box::new("four"),
                    Box::new(i64::MAX),
                    Box::new(false),
                ],
            ),
            ("SELECT * FROM T WHERE id = $1", vec![Box::new(1i32)]),
            ("SELECT * FROM T WHERE id = $1", vec![Box::new(None::<i32>)]),
            ("SELECT name, ok FROM T WHERE id = $1", vec![Box::new(4i32)]),
            (
                "SELECT name FROM T WHERE id = $1::bigint",
                vec![Box::new(4i64)],
            ),
            (
                "UPDATE T SET score = $1, ok = $2 WHERE id = $3",
                vec![Box::new(-2.25f64), Box::new(None::<bool>), Box::new(1i32)],
            ),
            (
                "UPDATE T SET small = small + $1 WHERE id = $2",
                vec![Box::new(32767i16), Box::new(1i32)],
            ),
            (
                "UPDATE T SET big = big + $1 WHERE id = $2",
                vec![Box::new(1i64), Box::new(4i32)],
            ),
            (
                "UPDATE T SET big = big - $1 WHERE id = $2",
                vec![Box::new(5i64), Box::new(4i32)],
            ),
            (
                "UPDATE T SET name = $1 WHERE id = $2",
                vec![Box::new("renamed"), Box::new(99i32)],
            ),
            ("DELETE FROM T WHERE id = $1", vec![Box::new(1i32)]),
            ("DELETE FROM T WHERE id = $1", vec![Box::new(1i32)]),
        ];
        for (sql, params) in &cases {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p.as_ref() as _).collect();
            let mut results = Vec::new();
            for (table, client) in [("f", &fast), ("g", &general)] {
                let sql = sql.replace(" T ", &format!(" {table} "));
                let result = match client.prepare(&sql).await {
                    Ok(statement) => match client.query(&statement, &refs).await {
                        Ok(rows) => rows.iter().map(row_text).collect::<Vec<_>>().join("\n"),
                        Err(e) => format!("ERROR {}", code(&e)),
                    },
                    Err(e) => format!("ERROR {}", code(&e)),
                };
                let rows: Vec<String> =
                    simple_rows(client, &format!("SELECT * FROM {table} ORDER BY id"))
                        .await
                        .into_iter()
                        .map(|row| {
                            let values: Vec<String> = row
                                .into_iter()
                                .map(|v| v.unwrap_or_else(|| "NULL".into()))
                                .collect();
                            values.join(" ")
                        })
                        .collect();
                results.push(format!("{result}\n--\n{}", rows.join("\n")));
            }
            assert_eq!(results[0], results[1], "the two paths differ on: {sql}");
        }
        let state = fast
            .query_one("SHOW omen.fast_path", &[])
            .await
            .expect("show");
        assert_eq!(state.get::<_, &str>(0), "on");
    });
}
