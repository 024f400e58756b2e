//! `omen serve`: the engine over the PostgreSQL wire protocol.
//!
//! ```text
//!   TcpListener --accept--> [TLS negotiation] --> startup (trust or SCRAM)
//!        |                                          |
//!   connection limit                          Connection (one Session)
//!        |                                          |
//!   SIGTERM / SIGINT: stop accepting, let running statements finish,
//!   roll back open transactions, close the database
//! ```
//!
//! Authentication: when the catalog has a role with a password, every login
//! is SCRAM-SHA-256 (and SCRAM-SHA-256-PLUS over TLS). A database without
//! roles accepts loopback connections without a password and refuses to
//! listen anywhere else.

mod auth;
mod connection;
pub mod copy;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ErrorHandler, PgWireServerHandlers};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use connection::Connection;
use omen::engine::catalog::Role;
use omen::engine::scram::Verifier;
use omen::engine::Canceller;
use omen::{Database, Error, Options, SqlState};

/// Prints a line to the server log (standard error), PostgreSQL style.
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!(
            "{} LOG:  {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            format_args!($($arg)*)
        )
    };
}
pub(crate) use log;

/// How `omen serve` runs.
#[derive(Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Tls,
    pub max_connections: usize,
    /// Of those, the ones only superusers may take.
    pub superuser_reserved_connections: usize,
    /// How long a client may take to log in before the server hangs up.
    pub authentication_timeout: Duration,
    /// Bytes one statement or transaction may take (None: the default).
    pub memory_limit: Option<usize>,
    /// Partitions a query uses (None: one per core).
    pub threads: Option<usize>,
    /// The superuser to create on a database without roles.
    pub superuser: Option<(String, String)>,
    /// Session settings every connection starts with, before its own.
    pub session_settings: Vec<(String, String)>,
    /// The backup repository that archives every commit (point-in-time recovery).
    pub archive: Option<PathBuf>,
}

/// Where the TLS certificate comes from.
#[derive(Debug)]
pub enum Tls {
    None,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let options = Options {
        memory_limit: config.memory_limit,
        archive: config.archive.clone(),
        parallelism: config.threads,
        ..Options::default()
    };
    let db = Database::open(&config.data_dir, options)
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
    bootstrap(&db, config.superuser.as_ref())?;
    let authenticate = db.catalog().roles().iter().any(|r| r.verifier.is_some());
    if !authenticate && !config.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without authentication: the database has no role with a \
             password. Create one (set OMEN_SUPERUSER and OMEN_PASSWORD, or --superuser and \
             --password), or listen on a loopback address.",
            config.listen
        );
    }
    for (name, value) in &config.session_settings {
        db.session()
            .set_setting(name, value)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let tls = load_tls(&config.tls)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("omen-serve")
        .build()
        .context("cannot start the network runtime")?;
    let server = Arc::new(Server {
        authenticate,
        certificate: tls.as_ref().map(|(_, pem)| pem.clone()),
        cancels: parking_lot::Mutex::new(HashMap::new()),
        session_settings: config.session_settings,
        secret: db.secret().context("cannot read the database's secret")?,
        pids: Arc::new(auth::Pids::new()),
        sessions: Arc::new(Semaphore::new(config.max_connections)),
        reserved: config
            .superuser_reserved_connections
            .min(config.max_connections - 1),
        authenticating: Arc::new(Semaphore::new(
            4 * config.max_connections + AUTHENTICATING_HEADROOM,
        )),
        authentication_timeout: config.authentication_timeout,
        db,
    });
    let listener = runtime
        .block_on(TcpListener::bind(config.listen))
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    log!(
        "omen {} listening on {} ({}, {})",
        env!("CARGO_PKG_VERSION"),
        listener.local_addr()?,
        if tls.is_some() {
            "TLS available"
        } else {
            "no TLS"
        },
        if authenticate {
            "SCRAM-SHA-256 authentication"
        } else {
            "no authentication: loopback only"
        }
    );
    let acceptor = tls.map(|(acceptor, _)| acceptor);
    runtime.block_on(accept(listener, acceptor, server.clone()));
    log!("shutting down: waiting for running statements");
    // Dropping the runtime cancels every connection's task; statements already
    // on the blocking pool run to completion first, and dropping each session
    // rolls its transaction back.
    runtime.shutdown_timeout(Duration::from_secs(60));
    drop(server);
    log!("database closed");
    Ok(())
}

/// State every connection shares.
pub struct Server {
    db: Database,
    /// Whether logins need a password.
    authenticate: bool,
    /// The certificate (PEM) for SCRAM channel binding.
    certificate: Option<Vec<u8>>,
    /// Each logged-in connection's cancel key, the canceller of its session
    /// and its role, by process id.
    cancels: parking_lot::Mutex<HashMap<i32, Backend>>,
    /// Settings each session starts with.
    session_settings: Vec<(String, String)>,
    /// The database's secret, for the mock verifiers of names that cannot log in.
    secret: Vec<u8>,
    /// Process ids and cancel keys of new connections.
    pids: Arc<auth::Pids>,
    /// One permit per logged-in session (--max-connections).
    sessions: Arc<Semaphore>,
    /// Session permits only superusers may take (the last ones free).
    reserved: usize,
    /// One permit per connection that has not logged in yet: a client that
    /// opens sockets and never logs in fills these, not the sessions, and
    /// each is closed after the authentication timeout.
    authenticating: Arc<Semaphore>,
    authentication_timeout: Duration,
}

/// Connections still logging in, beyond four per session slot.
const AUTHENTICATING_HEADROOM: usize = 64;

/// A logged-in connection, as cancel requests and pg_cancel_backend find it.
pub struct Backend {
    key: SecretKey,
    canceller: Canceller,
    user: String,
}

/// One session's view of the server's other sessions.
pub struct ServerBackends {
    server: Arc<Server>,
    pid: i32,
}

impl ServerBackends {
    /// Registers a logged-in connection; the returned view is its session's.
    pub fn register(
        server: &Arc<Server>,
        pid: i32,
        key: SecretKey,
        canceller: Canceller,
        user: &str,
    ) -> ServerBackends {
        server.cancels.lock().insert(
            pid,
            Backend {
                key,
                canceller,
                user: user.to_string(),
            },
        );
        ServerBackends {
            server: server.clone(),
            pid,
        }
    }
}

impl omen::engine::Backends for ServerBackends {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn cancel(&self, pid: i32, user: &str) -> Result<bool, Error> {
        let cancels = self.server.cancels.lock();
        let Some(backend) = cancels.get(&pid) else {
            return Ok(false);
        };
        let catalog = self.server.db.catalog();
        let allowed = backend.user == user
            || catalog.roles().is_empty()
            || catalog.role(user).is_some_and(|r| r.superuser);
        if !allowed {
            return Err(Error::InvalidInput {
                code: SqlState::INSUFFICIENT_PRIVILEGE,
                message: format!(
                    "permission denied to cancel query of process {pid}: only superusers and \
                     role \"{}\" may",
                    backend.user
                ),
            });
        }
        log!(
            "process {} cancels the statement of process {pid}",
            self.pid
        );
        backend.canceller.cancel();
        Ok(true)
    }
}

/// A cancel key as bytes: a request may carry as bytes the key the server
/// sent as a 4-byte integer.
fn key_bytes(key: &SecretKey) -> Vec<u8> {
    match key {
        SecretKey::I32(k) => k.to_be_bytes().to_vec(),
        SecretKey::Bytes(bytes) => bytes.to_vec(),
    }
}

/// Cancel requests: a new connection names a process id and its key.
struct Cancels(Arc<Server>);

#[async_trait::async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let cancels = self.0.cancels.lock();
        match cancels.get(&request.pid) {
            Some(backend) if key_bytes(&backend.key) == key_bytes(&request.secret_key) => {
                log!("cancel request for process {}", request.pid);
                backend.canceller.cancel();
            }
            _ => log!("cancel request with a wrong process id or key ignored"),
        }
    }
}

async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, server: Arc<Server>) {
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    log!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let Ok(login) = server.authenticating.clone().try_acquire_owned() else {
            log!("connection from {peer} refused: too many connections logging in");
            tokio::spawn(auth::refuse_too_many(socket));
            continue;
        };
        let slot = Arc::new(auth::Slot::new(login));
        let handlers = Arc::new(Handlers {
            connection: Arc::new(Connection::new(server.db.session(), server.clone())),
            startup: Arc::new(auth::Startup::new(&server, slot.clone())),
            cancels: Arc::new(Cancels(server.clone())),
        });
        let tls = tls.clone();
        let timeout = server.authentication_timeout;
        tokio::spawn(async move {
            let work = pgwire::tokio::process_socket(socket, tls, handlers);
            tokio::pin!(work);
            let result = tokio::select! {
                result = &mut work => result,
                _ = tokio::time::sleep(timeout) => {
                    if !slot.logged_in() {
                        // Dropping the connection's work closes its socket.
                        log!("connection from {peer} closed: authentication timeout");
                        return;
                    }
                    work.await
                }
            };
            if let Err(e) = result {
                log!("connection from {peer} ended: {e}");
            }
        });
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => log!("received SIGTERM"),
        _ = int.recv() => log!("received SIGINT"),
    }
}

/// Creates the first superuser on a database without roles.
fn bootstrap(db: &Database, superuser: Option<&(String, String)>) -> anyhow::Result<()> {
    let Some((name, password)) = superuser else {
        return Ok(());
    };
    if !db.catalog().roles().is_empty() {
        return Ok(());
    }
    if password.is_empty() {
        bail!("the superuser's password is empty");
    }
    db.session().create_role(Role {
        name: name.clone(),
        superuser: true,
        login: true,
        verifier: Some(Verifier::new(password).to_string()),
    })?;
    log!("created superuser \"{name}\"");
    Ok(())
}

/// The TLS acceptor and the certificate's PEM, when TLS is configured.
fn load_tls(tls: &Tls) -> anyhow::Result<Option<(TlsAcceptor, Vec<u8>)>> {
    let (cert_pem, key_pem) = match tls {
        Tls::None => return Ok(None),
        Tls::Files { cert, key } => (
            std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?,
            std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
        ),
        Tls::SelfSigned => {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let generated = rcgen::generate_simple_self_signed(names)
                .context("cannot generate a self-signed certificate")?;
            log!("using a self-signed certificate for localhost (development only)");
            (
                generated.cert.pem().into_bytes(),
                generated.signing_key.serialize_pem().into_bytes(),
            )
        }
    };
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    if certs.is_empty() {
        bail!("the certificate file holds no certificate");
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).context("the key file holds no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS configuration")?;
    // PostgreSQL 17's direct TLS negotiation requires this ALPN protocol.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some((TlsAcceptor::from(Arc::new(config)), cert_pem)))
}

/// The handlers of one connection.
struct Handlers {
    connection: Arc<Connection>,
    startup: Arc<auth::Startup>,
    cancels: Arc<Cancels>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.connection.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.connection.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.connection.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(auth::Errors)
    }
}
