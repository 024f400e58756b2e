//! Login: the database name check, SCRAM-SHA-256 against the roles of the
//! catalog (or no password on a database without roles), and the parameters
//! the server reports to a new client.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ErrorHandler, PgWireConnectionState, PidSecretKeyGenerator, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::ProtocolVersion;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{log, Server};
use omen::engine::scram::{Verifier, ITERATIONS};
use omen::Database;

/// The one database a server has.
pub const DATABASE: &str = "omen";

/// How a connection logs in, and the session slot it takes when it has.
pub struct Startup {
    method: Method,
    slot: Arc<Slot>,
    server: Arc<Server>,
}

enum Method {
    /// No password: a database without roles, on loopback only.
    Trust {
        parameters: Parameters,
        pids: Arc<Pids>,
    },
    /// SCRAM-SHA-256; over TLS also SCRAM-SHA-256-PLUS (offered only to TLS
    /// connections: libpq refuses a server that offers it without TLS).
    Scram {
        plain: SASLAuthStartupHandler<Parameters>,
        plus: Option<SASLAuthStartupHandler<Parameters>>,
    },
}

impl Startup {
    pub fn new(server: &Arc<Server>, slot: Arc<Slot>) -> Startup {
        Startup {
            method: Method::new(server),
            slot,
            server: server.clone(),
        }
    }
}

impl Method {
    fn new(server: &Server) -> Method {
        if !server.authenticate {
            return Method::Trust {
                parameters: Parameters::new(),
                pids: server.pids.clone(),
            };
        }
        let roles: Arc<dyn AuthSource> = Arc::new(Roles {
            db: server.db.clone(),
            secret: server.secret.clone(),
        });
        let handler = |scram: ScramAuth| {
            SASLAuthStartupHandler::new(Arc::new(Parameters::new()))
                .with_scram(scram)
                .with_pid_secret_key_generator(server.pids.clone())
        };
        let mut plain = ScramAuth::new(roles.clone());
        plain.set_iterations(ITERATIONS as usize);
        let plus = server.certificate.as_ref().and_then(|pem| {
            let mut plus = plain.clone();
            match plus.configure_certificate(pem) {
                Ok(()) => Some(handler(plus)),
                Err(e) => {
                    log!("SCRAM channel binding is off: {e}");
                    None
                }
            }
        });
        Method::Scram {
            plain: handler(plain),
            plus,
        }
    }
}

/// A connection's claim on the server's connection slots: one among those
/// still logging in until it has logged in, then one session slot.
pub struct Slot {
    login: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
    session: parking_lot::Mutex<Option<OwnedSemaphorePermit>>,
}

impl Slot {
    pub fn new(login: OwnedSemaphorePermit) -> Slot {
        Slot {
            login: parking_lot::Mutex::new(Some(login)),
            session: parking_lot::Mutex::new(None),
        }
    }

    /// Whether the connection has logged in (and holds a session slot).
    pub fn logged_in(&self) -> bool {
        self.session.lock().is_some()
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            // libpq's default database is the user name.
            let database = startup
                .parameters
                .get("database")
                .or_else(|| startup.parameters.get("user"))
                .map(String::as_str)
                .unwrap_or_default();
            if database != DATABASE {
                return Err(fatal(
                    "3D000",
                    format!("database \"{database}\" does not exist (an omen server has one database, \"{DATABASE}\")"),
                ));
            }
        }
        if self.slot.logged_in() {
            return self.method.on_startup(client, message).await;
        }
        // A session slot is taken before the message that may complete the
        // login, so that a full server refuses before AuthenticationOk, and
        // given back unless the login completed with it.
        let user = match &message {
            PgWireFrontendMessage::Startup(startup) => startup.parameters.get("user").cloned(),
            _ => client.metadata().get(METADATA_USER).cloned(),
        };
        let permit = self.session_permit(user.as_deref().unwrap_or_default())?;
        self.method.on_startup(client, message).await?;
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            *self.slot.session.lock() = Some(permit);
            self.slot.login.lock().take();
        }
        Ok(())
    }
}

impl Startup {
    /// A session slot for `user`; 53300 when none is free, or when only
    /// those reserved for superusers are and `user` is not one.
    fn session_permit(&self, user: &str) -> PgWireResult<OwnedSemaphorePermit> {
        let server = &self.server;
        let superuser =
            !server.authenticate || server.db.catalog().role(user).is_some_and(|r| r.superuser);
        if !superuser && server.sessions.available_permits() <= server.reserved {
            return Err(fatal(
                "53300",
                "remaining connection slots are reserved for roles with the SUPERUSER attribute"
                    .into(),
            ));
        }
        server
            .sessions
            .clone()
            .try_acquire_owned()
            .map_err(|_| fatal("53300", "sorry, too many clients already".into()))
    }
}

impl Method {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Method::Scram { plain, plus } => match plus {
                Some(plus) if client.is_secure() => plus.on_startup(client, message).await,
                _ => plain.on_startup(client, message).await,
            },
            Method::Trust { parameters, pids } => {
                if let PgWireFrontendMessage::Startup(startup) = &message {
                    protocol_negotiation(client, startup).await?;
                    save_startup_parameters_to_metadata(client, startup);
                    let (pid, key) = pids.generate(&*client);
                    client.set_pid_and_secret_key(pid, key);
                    finish_authentication(client, parameters).await?;
                }
                Ok(())
            }
        }
    }
}

/// Process ids and cancel keys for new connections: ids count up from 1000,
/// so no two connections of a server share one, and each key is random, as
/// PostgreSQL's are.
pub struct Pids {
    next: AtomicI32,
}

impl Pids {
    pub fn new() -> Pids {
        Pids {
            next: AtomicI32::new(1000),
        }
    }
}

impl PidSecretKeyGenerator for Pids {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, SecretKey) {
        let pid = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.checked_add(1).unwrap_or(1000))
            })
            .expect("the update always succeeds");
        let random = SystemRandom::new();
        let key = match client.protocol_version() {
            ProtocolVersion::PROTOCOL3_0 => {
                let mut bytes = [0u8; 4];
                random
                    .fill(&mut bytes)
                    .expect("the operating system's random source works");
                SecretKey::I32(i32::from_be_bytes(bytes))
            }
            _ => {
                let mut bytes = vec![0u8; 32];
                random
                    .fill(&mut bytes)
                    .expect("the operating system's random source works");
                SecretKey::Bytes(bytes.into())
            }
        };
        (pid, key)
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

/// The roles of the catalog, as SCRAM verifiers.
struct Roles {
    db: Database,
    /// The database's secret, for mock verifiers.
    secret: Vec<u8>,
}

impl Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Roles")
    }
}

#[async_trait]
impl AuthSource for Roles {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_string(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        let verifier = self
            .db
            .catalog()
            .role(user)
            .filter(|role| role.login)
            .and_then(|role| role.verifier.as_deref().and_then(Verifier::parse));
        // An unknown role, one that may not log in or one without a password
        // gets a verifier no password matches, the same one at each attempt,
        // so the exchange fails as with a wrong password and tells nothing of
        // which it was.
        let verifier = verifier.unwrap_or_else(|| Verifier::mock(&self.secret, user));
        Ok((
            ScramSecret::Verifier {
                salt: verifier.salt,
                iterations: verifier.iterations as usize,
                stored_key: verifier.stored_key,
                server_key: verifier.server_key,
            },
            None,
        ))
    }
}

/// Failed logins: logged, and reported as PostgreSQL reports them.
pub struct Errors;

impl ErrorHandler for Errors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(_) = error {
            let user = client
                .metadata()
                .get(METADATA_USER)
                .cloned()
                .unwrap_or_default();
            log!(
                "password authentication failed for user \"{user}\" from {}",
                client.socket_addr()
            );
            *error = fatal(
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            );
        }
    }
}

/// The parameters reported to every client after login.
pub struct Parameters {
    inner: DefaultServerParameterProvider,
}

impl Parameters {
    fn new() -> Parameters {
        let mut inner = DefaultServerParameterProvider::default();
        // Clients choose their catalog queries by this version.
        inner.server_version = format!("15.0 (omen {})", env!("CARGO_PKG_VERSION"));
        inner.time_zone = "UTC".into();
        inner.date_style = "ISO, MDY".into();
        Parameters { inner }
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        self.inner.server_parameters(client)
    }
}

/// Tells a client over the connection limit so, and closes its connection.
pub async fn refuse_too_many(mut socket: tokio::net::TcpStream) {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    message.extend_from_slice(&body);
    let _ = socket.write_all(&message).await;
    let _ = socket.shutdown().await;
}
