//! Argon2id password hashing. Hashing is deliberately slow: callers run it on the blocking
//! thread pool (`tokio::task::spawn_blocking`), never on an async worker.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

/// A password hashing failure (never contains the password).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a valid PHC string.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// Argon2 refused the input (for example an empty password).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$…`) with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Hashing("the password is empty".into()));
    }
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hashing(error.to_string()))
}

/// Checks a password against a stored PHC string, in time independent of where they differ.
pub fn verify_password(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|_| PasswordError::MalformedHash)?;
    Ok(hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A hash of a password nobody knows, verified against when a user does not exist so that
/// a login for an unknown user costs as long as one with a wrong password.
pub fn decoy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$cG9ydGN1bGxpcy1kZWNveQ$e1c1MSt8v0xQZ7m6Kf8u5Tq6eG2k8yR5x3pW2b1aN4o"
}

/// Reads a password from a reader (stdin for the admin CLI): the first line, without its
/// line ending, in a buffer zeroized on drop.
pub fn read_password(reader: &mut impl std::io::BufRead) -> std::io::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    reader.read_line(&mut line)?;
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse", &hash).unwrap());
        assert!(!verify_password("wrong horse", &hash).unwrap());
    }

    #[test]
    fn malformed_and_empty() {
        assert!(matches!(
            verify_password("x", "nonsense"),
            Err(PasswordError::MalformedHash)
        ));
        assert!(hash_password("").is_err());
        assert!(!verify_password("anything", decoy_hash()).unwrap());
    }

    #[test]
    fn reads_one_line() {
        let mut input = std::io::Cursor::new("s3cret\r\nnext\n");
        assert_eq!(read_password(&mut input).unwrap().as_str(), "s3cret");
    }
}
