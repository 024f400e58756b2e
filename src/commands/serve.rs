//! `omen serve`: the PostgreSQL wire protocol server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::server::{self, Config, Tls};

/// Arguments of `omen serve`. Every flag can also come from the environment
/// (OMEN_*) or from a config file of `name = value` lines (--config); flags
/// win over the environment, which wins over the file.
#[derive(clap::Args)]
pub struct Args {
    /// A file of `name = value` lines naming the flags below (`listen =
    /// 127.0.0.1:5433`, `data_dir = /var/lib/omen`); `#` starts a comment.
    #[arg(long, env = "OMEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory (created when missing).
    #[arg(long, env = "OMEN_DATA_DIR", default_value = "omen-data")]
    data_dir: PathBuf,
    /// The address and port to listen on.
    #[arg(long, env = "OMEN_LISTEN", default_value = "127.0.0.1:5432")]
    listen: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "OMEN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "OMEN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a freshly generated self-signed certificate (development).
    #[arg(long, env = "OMEN_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// The most client connections served at once.
    #[arg(long, env = "OMEN_MAX_CONNECTIONS", default_value_t = 100)]
    max_connections: usize,
    /// Of --max-connections, how many only superusers may take, so an
    /// administrator still gets in when applications have used the rest.
    #[arg(long, env = "OMEN_SUPERUSER_RESERVED_CONNECTIONS", default_value_t = 3)]
    superuser_reserved_connections: usize,
    /// How long a client may take to log in (TLS and password) before the
    /// server closes its connection (`30s`, `1min`). Connections still
    /// logging in do not count against --max-connections.
    #[arg(
        long,
        env = "OMEN_AUTHENTICATION_TIMEOUT",
        default_value = "1min",
        value_name = "DURATION"
    )]
    authentication_timeout: String,
    /// Memory one statement (its sorts, joins and result) or one
    /// transaction's writes may take (`512MB`, `4GB`); past it the statement
    /// fails with 53200. Default: a quarter of the machine's memory.
    #[arg(long, env = "OMEN_MEMORY_LIMIT", value_name = "SIZE", value_parser = super::repl::memory_size)]
    memory_limit: Option<usize>,
    /// Partitions (threads) a query uses; sessions may SET omen.parallelism.
    /// Default: one per core.
    #[arg(long, env = "OMEN_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// On a database without roles: create this superuser (needs --password).
    #[arg(long, env = "OMEN_SUPERUSER", requires = "password")]
    superuser: Option<String>,
    /// The first superuser's password.
    #[arg(long, env = "OMEN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Roll back the transaction of, and then disconnect, a client idle
    /// inside a transaction this long (`30s`, `10min`; 0 for never), so it
    /// cannot hold back garbage collection. Sessions may SET
    /// idle_in_transaction_session_timeout themselves.
    #[arg(
        long,
        env = "OMEN_IDLE_IN_TRANSACTION_TIMEOUT",
        default_value = "0",
        value_name = "DURATION"
    )]
    idle_in_transaction_timeout: String,
    /// Archive every commit into this backup repository, so `omen restore
    /// --to-time` can rebuild the database as it was at any moment after a
    /// backup taken there. Commits wait for the archive's fsync too.
    #[arg(long, env = "OMEN_ARCHIVE", value_name = "REPO")]
    archive: Option<PathBuf>,
}

/// Reads the config file named by `--config FILE` (or OMEN_CONFIG) in the
/// command line, setting an OMEN_* variable for each setting the environment
/// does not set already, so clap reads it like any other default. Runs
/// before the arguments are parsed, while the process has one thread.
pub fn load_config_file(argv: &[String]) -> Result<()> {
    let named = argv
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| PathBuf::from(&w[1]))
        .or_else(|| {
            argv.iter()
                .find_map(|a| a.strip_prefix("--config=").map(PathBuf::from))
        })
        .or_else(|| std::env::var_os("OMEN_CONFIG").map(PathBuf::from));
    let Some(path) = named else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    const NAMES: &[&str] = &[
        "data_dir",
        "listen",
        "tls_cert",
        "tls_key",
        "tls_self_signed",
        "max_connections",
        "superuser_reserved_connections",
        "authentication_timeout",
        "memory_limit",
        "threads",
        "superuser",
        "password",
        "idle_in_transaction_timeout",
        "archive",
    ];
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            bail!("{}:{}: expected `name = value`", path.display(), n + 1);
        };
        let name = name.trim().replace('-', "_").to_lowercase();
        if !NAMES.contains(&name.as_str()) {
            bail!(
                "{}:{}: unknown setting \"{name}\" (known: {})",
                path.display(),
                n + 1,
                NAMES.join(", ")
            );
        }
        let value = value.trim().trim_matches('"');
        let var = format!("OMEN_{}", name.to_uppercase());
        if std::env::var_os(&var).is_none() {
            std::env::set_var(var, value);
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let tls = match (args.tls_cert, args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), false) => Tls::Files { cert, key },
        (None, None, true) => Tls::SelfSigned,
        (None, None, false) => Tls::None,
        _ => bail!("give --tls-cert with --tls-key, or --tls-self-signed"),
    };
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let authentication_timeout = omen::engine::sql::parse_timeout(&args.authentication_timeout)
        .filter(|t| !t.is_zero())
        .with_context(|| {
            format!(
                "--authentication-timeout: \"{}\" is not a duration such as 30s or 1min",
                args.authentication_timeout
            )
        })?;
    server::run(Config {
        data_dir: args.data_dir,
        listen: args.listen,
        tls,
        max_connections: args.max_connections,
        superuser_reserved_connections: args.superuser_reserved_connections,
        authentication_timeout,
        memory_limit: args.memory_limit,
        threads: args.threads.map(usize::from),
        superuser: args.superuser.zip(args.password),
        session_settings: vec![(
            "idle_in_transaction_session_timeout".into(),
            args.idle_in_transaction_timeout,
        )],
        archive: args.archive,
    })
}
