//! SCRAM-SHA-256 verifiers: what omen stores for a role's password.
//!
//! A verifier lets the server check a client's SCRAM proof without knowing
//! the password (RFC 5802, RFC 7677). omen keeps them in PostgreSQL's text
//! form, so a verifier computed by a client (psql's `\password` sends one)
//! is stored as it comes:
//!
//! ```text
//!   SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>   (base64 parts)
//! ```

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 rounds for new verifiers, PostgreSQL's default.
pub const ITERATIONS: u32 = 4096;

const PREFIX: &str = "SCRAM-SHA-256$";

/// A role's SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 rounds the client must run.
    pub iterations: u32,
    /// The salt the client hashes its password with.
    pub salt: Vec<u8>,
    /// SHA-256 of the client key: checks the client's proof.
    pub stored_key: Vec<u8>,
    /// HMAC key for the server's signature, which proves the server knew
    /// the verifier.
    pub server_key: Vec<u8>,
}

impl Verifier {
    /// A verifier for `password` with a fresh random salt.
    pub fn new(password: &str) -> Verifier {
        let mut salt = vec![0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the operating system's random source works");
        Verifier::with_salt(password, salt, ITERATIONS)
    }

    /// The verifier for `password` with a given salt and iteration count.
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).expect("at least one round"),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let server_key = hmac::sign(&key, b"Server Key");
        Verifier {
            iterations,
            salt,
            stored_key: stored_key.as_ref().to_vec(),
            server_key: server_key.as_ref().to_vec(),
        }
    }

    /// The verifier shown for `name` when it cannot log in (no such role,
    /// NOLOGIN, no password): no password matches it, and it is the same at
    /// every attempt and as cheap to make as a stored one is to read, so an
    /// exchange tells a client nothing about whether the role exists.
    pub fn mock(secret: &[u8], name: &str) -> Verifier {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |purpose: &str| {
            let mut input = purpose.as_bytes().to_vec();
            input.push(0);
            input.extend_from_slice(name.as_bytes());
            hmac::sign(&key, &input).as_ref().to_vec()
        };
        Verifier {
            iterations: ITERATIONS,
            salt: derive("salt")[..16].to_vec(),
            stored_key: derive("stored key"),
            server_key: derive("server key"),
        }
    }

    /// Reads PostgreSQL's text form; None when `text` is not one.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix(PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let verifier = Verifier {
            iterations: iterations.parse().ok().filter(|&n| n > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored_key).ok()?,
            server_key: STANDARD.decode(server_key).ok()?,
        };
        (verifier.stored_key.len() == 32 && verifier.server_key.len() == 32).then_some(verifier)
    }

    /// Whether `password` is the one this verifier was made from.
    pub fn matches(&self, password: &str) -> bool {
        let other = Verifier::with_salt(password, self.salt.clone(), self.iterations);
        other.stored_key == self.stored_key
    }
}

impl std::fmt::Display for Verifier {
    /// PostgreSQL's text form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

impl std::fmt::Debug for Verifier {
    /// Shows neither key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_checks_passwords() {
        let verifier = Verifier::new("pencil");
        let text = verifier.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        let parsed = Verifier::parse(&text).expect("own text form parses");
        assert_eq!(parsed, verifier);
        assert!(parsed.matches("pencil"));
        assert!(!parsed.matches("pencil "));
        assert!(Verifier::parse("pencil").is_none());
        assert!(Verifier::parse("SCRAM-SHA-256$0:AAAA$AAAA:AAAA").is_none());
    }

    #[test]
    fn matches_postgresql() {
        // Made by PostgreSQL 15 for the password "pencil".
        let text = "SCRAM-SHA-256$4096:8FoxfdIk5iKFOJN3xXvs9g==$UlccM3NjYXWFZ1ELZMqkGmjjWVARVQ2hORBIuq166Dg=:D29Oyr9evIAtJi4mJTOogJJtyQ2JnDUUkL00/glJQPM=";
        let verifier = Verifier::parse(text).expect("PostgreSQL's verifier parses");
        assert!(verifier.matches("pencil"));
        assert!(!verifier.matches("Pencil"));
        let own = Verifier::with_salt("pencil", verifier.salt.clone(), 4096);
        assert_eq!(own.to_string(), text);
    }
}
