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

/// Bounds the password checks running at once: each costs Argon2id's 19 MiB and a core
/// for tens of milliseconds, so a flood of failed logins must queue here instead of
/// multiplying memory (issue 7, point 2). The checks run on `permits` threads of their
/// own, so that only their allocator arenas ever hold Argon2's memory (on the blocking
/// pool every thread kept its own 19 MiB: 377 MiB after one flood). A check waits for its
/// turn at most [`PasswordChecks::MAX_WAIT`], behind at most
/// [`PasswordChecks::WAITING_PER_PERMIT`] others per thread, and is otherwise refused as
/// [`Busy`] (the user API answers 503 with `Retry-After`).
#[derive(Debug)]
pub struct PasswordChecks {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// A password check for the checking threads, and where its outcome goes.
struct Job {
    password: crate::scripts::SecretString,
    stored: String,
    reply: tokio::sync::oneshot::Sender<Result<bool, PasswordError>>,
}

impl core::fmt::Debug for Job {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Job")
    }
}

/// Too many password checks are running or waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins at once")]
pub struct Busy;

impl PasswordChecks {
    /// The longest a check waits for its turn.
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    /// Checks allowed to wait per checking thread.
    pub const WAITING_PER_PERMIT: usize = 16;

    /// `permits` checking threads (0: one per core). The threads end when this is dropped.
    pub fn new(permits: usize) -> Self {
        let permits = if permits == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            permits
        };
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(parking_lot::Mutex::new(queue));
        for index in 0..permits {
            let queue = std::sync::Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{index}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let queue = queue.lock();
                            queue.recv()
                        };
                        let Ok(job) = job else { return };
                        let outcome = verify_password(job.password.expose(), &job.stored);
                        let _ = job.reply.send(outcome);
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password-checking thread");
            }
        }
        Self {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(permits)),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting: permits.saturating_mul(Self::WAITING_PER_PERMIT),
            jobs,
        }
    }

    /// Runs [`verify_password`] on a checking thread when its turn comes.
    pub async fn verify(
        &self,
        password: crate::scripts::SecretString,
        stored: String,
    ) -> Result<Result<bool, PasswordError>, Busy> {
        use std::sync::atomic::Ordering;
        let _permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(Busy);
                }
                let waited =
                    tokio::time::timeout(Self::MAX_WAIT, self.permits.clone().acquire_owned())
                        .await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(Busy),
                }
            }
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job = Job {
            password,
            stored,
            reply,
        };
        let sent = self.jobs.send(job);
        if sent.is_err() {
            return Ok(Err(PasswordError::Hashing(
                "no password-checking thread".into(),
            )));
        }
        // The permit is held until the outcome is in: at most `permits` checks run.
        Ok(outcome.await.unwrap_or_else(|_| {
            Err(PasswordError::Hashing(
                "the password-checking thread stopped".into(),
            ))
        }))
    }
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

    #[tokio::test]
    async fn checks_beyond_the_permits_and_the_queue_are_busy() {
        let mut checks = PasswordChecks::new(1);
        checks.permits = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        checks.max_waiting = 0;
        let secret = crate::scripts::SecretString::from("x".to_owned());
        assert_eq!(
            checks
                .verify(secret, decoy_hash().to_owned())
                .await
                .unwrap_err(),
            Busy
        );
        let checks = PasswordChecks::new(1);
        let secret = crate::scripts::SecretString::from("x".to_owned());
        assert!(
            !checks
                .verify(secret, decoy_hash().to_owned())
                .await
                .unwrap()
                .unwrap()
        );
    }

    #[test]
    fn reads_one_line() {
        let mut input = std::io::Cursor::new("s3cret\r\nnext\n");
        assert_eq!(read_password(&mut input).unwrap().as_str(), "s3cret");
    }
}
