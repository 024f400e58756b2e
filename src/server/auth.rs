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
use pgwire::api::{ClientInfo, ErrorHandler, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::AsyncWriteExt;

use super::{log, Server};
use omen::engine::scram::{Verifier, ITERATIONS};
use omen::Database;

/// The one database a server has.
pub const DATABASE: &str = "omen";

/// How a connection logs in.
pub enum Startup {
    /// No password: a database without roles, on loopback only.
    Trust(Parameters),
    /// SCRAM-SHA-256; over TLS also SCRAM-SHA-256-PLUS (offered only to TLS
    /// connections: libpq refuses a server that offers it without TLS).
    Scram {
        plain: SASLAuthStartupHandler<Parameters>,
        plus: Option<SASLAuthStartupHandler<Parameters>>,
    },
}

impl Startup {
    pub fn new(server: &Server) -> Startup {
        if !server.authenticate {
            return Startup::Trust(Parameters::new());
        }
        let roles: Arc<dyn AuthSource> = Arc::new(Roles {
            db: server.db.clone(),
        });
        let handler = |scram: ScramAuth| {
            SASLAuthStartupHandler::new(Arc::new(Parameters::new())).with_scram(scram)
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
        Startup::Scram {
            plain: handler(plain),
            plus,
        }
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
        match self {
            Startup::Scram { plain, plus } => match plus {
                Some(plus) if client.is_secure() => plus.on_startup(client, message).await,
                _ => plain.on_startup(client, message).await,
            },
            Startup::Trust(parameters) => {
                if let PgWireFrontendMessage::Startup(startup) = &message {
                    protocol_negotiation(client, startup).await?;
                    save_startup_parameters_to_metadata(client, startup);
                    client.set_pid_and_secret_key(random_pid(), SecretKey::I32(random_pid()));
                    finish_authentication(client, parameters).await?;
                }
                Ok(())
            }
        }
    }
}

fn random_pid() -> i32 {
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source works");
    (u32::from_be_bytes(bytes) >> 1) as i32
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
        let verifier = login
            .user()
            .and_then(|user| self.db.catalog().role(user))
            .filter(|role| role.login)
            .and_then(|role| role.verifier.as_deref().and_then(Verifier::parse));
        // An unknown role, one that may not log in or one without a password
        // gets a verifier no password matches, so the exchange fails the same
        // way as with a wrong password and tells nothing of which it was.
        let verifier = verifier.unwrap_or_else(|| {
            let mut password = [0u8; 32];
            SystemRandom::new()
                .fill(&mut password)
                .expect("the operating system's random source works");
            Verifier::new(&hex(&password))
        });
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
