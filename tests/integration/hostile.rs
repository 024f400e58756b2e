//! `omen serve` against hostile clients: sockets that never log in, probes
//! for which roles exist, oversized requests. Each test opens with the bug it
//! pins.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::server::{code, connect, fill_padded, runtime, simple_rows, Server};

const ADMIN: [(&str, &str); 2] = [("OMEN_SUPERUSER", "admin"), ("OMEN_PASSWORD", "s3cret")];

pub fn half_open_connections_do_not_lock_out_clients() {
    // Bug: a connection slot was taken at accept, before authentication, and held
    // for up to 60 s, so a few idle sockets locked every client out.
    let server = Server::start_with(
        &["--max-connections", "3", "--authentication-timeout", "2s"],
        &[],
    );
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("raw connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    runtime().block_on(async {
        let client = connect(&server.conninfo("real", None))
            .await
            .expect("a real client gets in past the idle sockets");
        assert_eq!(
            simple_rows(&client, "SELECT 1").await,
            vec![vec![Some("1".into())]]
        );
    });
    // The server closes each idle socket once the authentication timeout passes.
    let started = Instant::now();
    for mut socket in idle {
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        let read = socket.read(&mut buf);
        assert!(
            matches!(read, Ok(0)) || read.is_err() && started.elapsed() < Duration::from_secs(20),
            "idle socket still open: {read:?}"
        );
    }
    assert!(
        server.log().contains("authentication timeout"),
        "{}",
        server.log()
    );
}

pub fn superusers_keep_reserved_connections() {
    // Bug: ordinary roles could take every connection slot, leaving none for an
    // administrator.
    let server = Server::start_with(
        &[
            "--max-connections",
            "5",
            "--superuser-reserved-connections",
            "2",
        ],
        &ADMIN,
    );
    runtime().block_on(async {
        let admin = connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .expect("admin");
        admin
            .batch_execute("CREATE USER bob WITH PASSWORD 'pw'")
            .await
            .expect("create bob");
        let bob = server.conninfo("bob", Some("pw"));
        let _b1 = connect(&bob).await.expect("bob 1");
        let _b2 = connect(&bob).await.expect("bob 2");
        let e = connect(&bob).await.unwrap_err();
        assert_eq!(code(&e), "53300");
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(message.contains("reserved"), "{message}");
        let _a2 = connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .expect("admin takes a reserved slot");
        let _a3 = connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .expect("admin takes the last slot");
        let e = connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .unwrap_err();
        assert_eq!(code(&e), "53300");
        // A closed connection gives its slot back (here: the last, reserved one).
        drop(_b1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .expect("admin gets the freed slot");
        assert_eq!(code(&connect(&bob).await.unwrap_err()), "53300");
    });
}

pub fn each_connection_has_its_own_process_id() {
    // Bug: every password login got process id 100000, so cancel requests and
    // pg_cancel_backend reached whichever connection registered last.
    let server = Server::start_with(&[], &ADMIN);
    runtime().block_on(async {
        let mut pids = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..4 {
            let client = connect(&server.conninfo("admin", Some("s3cret")))
                .await
                .expect("login");
            let pid = simple_rows(&client, "SELECT pg_backend_pid()").await;
            pids.push(pid[0][0].clone().expect("a pid"));
            clients.push(client);
        }
        let mut unique = pids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), pids.len(), "{pids:?}");
    });
}

/// The salt and iteration count the server's first SCRAM message gives `user`.
fn scram_salt(port: u16, user: &str) -> (String, String) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut body = 196608i32.to_be_bytes().to_vec();
    for part in ["user", user, "database", "omen"] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut startup = (body.len() as i32 + 4).to_be_bytes().to_vec();
    startup.extend_from_slice(&body);
    socket.write_all(&startup).expect("startup");
    let read_message = |socket: &mut TcpStream| {
        let mut head = [0u8; 5];
        socket.read_exact(&mut head).expect("message header");
        let len = i32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; len - 4];
        socket.read_exact(&mut rest).expect("message body");
        (head[0], rest)
    };
    let (kind, sasl) = read_message(&mut socket);
    assert_eq!((kind, &sasl[..4]), (b'R', &10i32.to_be_bytes()[..]));
    let first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    let mut message = vec![b'p'];
    message.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    message.extend_from_slice(&body);
    socket.write_all(&message).expect("client-first");
    let (kind, reply) = read_message(&mut socket);
    assert_eq!((kind, &reply[..4]), (b'R', &11i32.to_be_bytes()[..]));
    let text = String::from_utf8(reply[4..].to_vec()).expect("server-first is text");
    let field = |name: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    (field("s="), field("i="))
}

pub fn unknown_roles_cannot_be_told_from_known_ones() {
    // Bug: a role that does not exist got a fresh random salt at each attempt, so
    // two login attempts told whether a role exists.
    let server = Server::start_with(&[], &ADMIN);
    runtime().block_on(async {
        let admin = connect(&server.conninfo("admin", Some("s3cret")))
            .await
            .expect("admin");
        admin
            .batch_execute("CREATE ROLE locked NOLOGIN PASSWORD 'x'")
            .await
            .expect("create role");
    });
    let admin = scram_salt(server.port, "admin");
    assert_eq!(admin, scram_salt(server.port, "admin"));
    assert_eq!(admin.1, "4096");
    for name in ["nobody", "locked"] {
        let first = scram_salt(server.port, name);
        assert_eq!(first, scram_salt(server.port, name), "{name}");
        assert_eq!(first.1, admin.1);
        assert_ne!(first.0, admin.0);
    }
    assert_ne!(
        scram_salt(server.port, "nobody"),
        scram_salt(server.port, "somebody")
    );
    // Stable across a restart too, as a stored role's salt is.
    let nobody = scram_salt(server.port, "nobody");
    let server = server.restart(&[], &[]);
    assert_eq!(scram_salt(server.port, "nobody"), nobody);
}

pub fn huge_parameter_numbers_are_refused() {
    // Bug: Parse of `SELECT $2000000000` allocated two billion parameter slots and
    // aborted the server.
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        let e = client.prepare("SELECT $2000000000").await.unwrap_err();
        assert_eq!(code(&e), "42P02");
        let e = client.prepare("SELECT $65536").await.unwrap_err();
        assert_eq!(code(&e), "42P02");
        assert_eq!(
            simple_rows(&client, "SELECT 1").await,
            vec![vec![Some("1".into())]]
        );
        let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        let e = client.simple_query(&nested).await.unwrap_err();
        assert_eq!(code(&e), "54001");
        let other = connect(&server.conninfo("b", None))
            .await
            .expect("server still up");
        assert_eq!(
            simple_rows(&other, "SELECT 2").await,
            vec![vec![Some("2".into())]]
        );
    });
}

pub fn copy_from_stdin_streams_and_stays_atomic() {
    // Bug: COPY FROM STDIN gathered the whole stream in memory (then held six to
    // eight copies of it) before writing a row.
    use futures::SinkExt;
    let server = Server::start();
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute("CREATE TABLE c (id INT PRIMARY KEY, note TEXT)")
            .await
            .expect("create");
        let rows = 200_000;
        let mut data = Vec::new();
        for i in 0..rows {
            data.extend_from_slice(format!("{i}\tnote number {i}\n").as_bytes());
        }
        // Many messages, cut anywhere (inside records too), across several batches.
        let send = |data: Vec<u8>, sql: &'static str| {
            let client = &client;
            async move {
                let sink = client.copy_in::<_, std::io::Cursor<Vec<u8>>>(sql).await?;
                let mut sink = std::pin::pin!(sink);
                for piece in data.chunks(7919) {
                    sink.send(std::io::Cursor::new(piece.to_vec())).await?;
                }
                sink.as_mut().finish().await
            }
        };
        let copied = send(data.clone(), "COPY c FROM STDIN").await.expect("copy");
        assert_eq!(copied, rows);
        assert_eq!(
            simple_rows(&client, "SELECT count(*), max(id) FROM c").await,
            vec![vec![Some(rows.to_string()), Some((rows - 1).to_string())]]
        );
        // A bad row after several batches were written leaves the table as it was.
        let mut bad = Vec::new();
        for i in rows..rows * 2 {
            bad.extend_from_slice(format!("{i}\tmore\n").as_bytes());
        }
        bad.extend_from_slice(b"oops\tnot a number\n");
        let e = send(bad, "COPY c FROM STDIN").await.unwrap_err();
        assert_eq!(code(&e), "22P02", "{e}");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM c").await,
            vec![vec![Some(rows.to_string())]]
        );
        // Inside a transaction block the failed COPY aborts the transaction.
        client
            .batch_execute("BEGIN; INSERT INTO c VALUES (-1, 'x')")
            .await
            .expect("begin");
        let e = send(b"-2\ty\n-3\n".to_vec(), "COPY c FROM STDIN")
            .await
            .unwrap_err();
        assert_eq!(code(&e), "22P04", "{e}");
        let e = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(code(&e), "25P02");
        client.batch_execute("ROLLBACK").await.expect("rollback");
        // CSV with quoted newlines split across messages.
        let mut csv = Vec::new();
        for i in 0..50_000 {
            csv.extend_from_slice(format!("{},\"line one\nline {i}\"\n", -10 - i).as_bytes());
        }
        let copied = send(csv, "COPY c FROM STDIN WITH (FORMAT csv)")
            .await
            .expect("csv copy");
        assert_eq!(copied, 50_000);
        // COPY TO STDOUT gives every row back, a header first when asked.
        let out = |sql: &'static str| {
            let client = &client;
            async move {
                let stream = client.copy_out(sql).await.expect("copy out");
                let mut stream = std::pin::pin!(stream);
                let mut data = Vec::new();
                while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                    data.extend_from_slice(&chunk.expect("copy data"));
                }
                String::from_utf8(data).expect("utf-8")
            }
        };
        let text = out("COPY (SELECT id, note FROM c WHERE id >= 0 ORDER BY id) TO STDOUT").await;
        assert_eq!(text.lines().count(), rows as usize);
        assert!(
            text.starts_with("0\tnote number 0\n1\tnote number 1\n"),
            "{}",
            &text[..40]
        );
        let csv =
            out("COPY (SELECT id, note FROM c WHERE id = -10) TO STDOUT WITH (FORMAT csv, HEADER)")
                .await;
        assert_eq!(csv, "id,note\n-10,\"line one\nline 0\"\n");
        assert_eq!(
            simple_rows(&client, "SELECT note FROM c WHERE id = -10").await,
            vec![vec![Some("line one\nline 0".into())]]
        );
    });
}

pub fn statements_past_the_memory_limit_fail_with_53200() {
    // Bug: a statement's result, and a transaction's buffered writes, grew
    // without bound: generate_series or repeat() could exhaust the server's memory.
    let server = Server::start_with(&["--memory-limit", "32MB"], &[]);
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        client
            .batch_execute("CREATE TABLE big (id BIGINT PRIMARY KEY, pad TEXT)")
            .await
            .expect("create");
        // (A result of many rows streams to the client whatever its size:
        // scan::results_past_the_memory_limit_stream_to_clients.)
        for sql in [
            "SELECT repeat('x', 100000000)",
            "INSERT INTO big SELECT value, repeat('p', 100) FROM generate_series(1, 1000000) AS value",
        ] {
            let e = client.simple_query(sql).await.unwrap_err();
            assert_eq!(code(&e), "53200", "{sql}: {e:?}");
            let message = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default();
            assert!(message.contains("--memory-limit"), "{message}");
        }
        // Rows written in batches small enough for the result limit still
        // fill a transaction past the limit: it fails whole.
        client.batch_execute("BEGIN").await.expect("begin");
        let mut failed = None;
        for batch in 0..40 {
            let sql = format!(
                "INSERT INTO big SELECT value, repeat('p', 1000) FROM generate_series({}, {}) AS value",
                batch * 10_000,
                batch * 10_000 + 9_999
            );
            if let Err(e) = client.simple_query(&sql).await {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the transaction reached the limit");
        assert_eq!(code(&e), "53200", "{e:?}");
        client.batch_execute("ROLLBACK").await.expect("rollback");
        assert_eq!(
            simple_rows(&client, "SELECT count(*) FROM big").await,
            vec![vec![Some("0".into())]]
        );
        client
            .batch_execute("INSERT INTO big SELECT value, 'p' FROM generate_series(1, 1000) AS value")
            .await
            .expect("a small statement still runs");
        assert_eq!(
            simple_rows(&client, "SELECT count(*), sum(id) FROM big").await,
            vec![vec![Some("1000".into()), Some("500500".into())]]
        );
    });
}

pub fn sorts_past_the_memory_limit_spill_under_the_data_directory() {
    // A sort over more data than the memory limit finishes by spilling to
    // the data directory's spill folder, instead of failing or growing.
    let server = Server::start_with(&["--memory-limit", "32MB"], &[]);
    runtime().block_on(async {
        let client = connect(&server.conninfo("a", None)).await.expect("connect");
        fill_padded(&client, "s", "md5(value::text) || repeat('s', 100)").await;
        // One partition: with a limit this small, sorts of several partitions
        // each need more room than they get, and fail with 53200 instead.
        client
            .batch_execute("SET omen.parallelism = 1")
            .await
            .expect("set");
        let rows = simple_rows(
            &client,
            "SELECT max(n), count(*) FROM \
             (SELECT row_number() OVER (ORDER BY pad DESC) AS n FROM s) AS ranked",
        )
        .await;
        assert_eq!(
            rows,
            vec![vec![Some("300000".into()), Some("300000".into())]]
        );
    });
    assert!(server.dir.path().join("data").join("spill").is_dir());
}
