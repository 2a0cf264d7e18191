//! Passwords of protected names: argon2id hashes with a random salt, computed off the
//! async runtime and never more at once than there are cores, so that a flood of
//! `hello`s costs the flooders time, not everyone else's latency or the server's memory
//! (each hash takes about 19 MiB).

pub mod backoff;

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

use crate::protocol::Password;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing was cancelled")]
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher {
            slots: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl Hasher {
    /// The PHC string (algorithm, parameters, salt, hash) to keep for `password`.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let password = password.0.clone();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| AuthError::Hash(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches the stored PHC string.
    pub async fn verify(&self, password: &Password, stored: &str) -> Result<bool, AuthError> {
        let (password, stored) = (password.0.clone(), stored.to_owned());
        self.blocking(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| AuthError::Hash(e.to_string()))?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| AuthError::Cancelled)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| AuthError::Cancelled)?
    }
}
