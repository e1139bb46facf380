//! API credentials: a key and a secret that is never printed.

use std::fmt;

use super::error::ApiError;
use crate::base::redact::Redactor;
use crate::base::secret::Secret;

/// The environment variable holding the API key.
pub const KEY_ENV: &str = "EXOSCALE_API_KEY";
/// The environment variable holding the API secret.
pub const SECRET_ENV: &str = "EXOSCALE_API_SECRET";

/// An Exoscale API key and its secret. `Debug` shows the key and masks the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    key: String,
    secret: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &self.key)
            .field("secret", &self.secret)
            .finish()
    }
}

impl Credentials {
    /// Credentials from a key and a secret; both must be non-empty.
    pub fn new(key: impl Into<String>, secret: Secret) -> Result<Self, ApiError> {
        let key = key.into();
        if key.trim().is_empty() || secret.is_empty() {
            return Err(ApiError::MissingCredentials);
        }
        Ok(Self { key, secret })
    }

    /// Credentials from `EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET`.
    pub fn from_env() -> Result<Self, ApiError> {
        let key = std::env::var(KEY_ENV).unwrap_or_default();
        let secret = Secret::new(std::env::var(SECRET_ENV).unwrap_or_default());
        Self::new(key, secret)
    }

    /// The API key (not secret: it appears in every request).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The secret, for signing.
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Registers the secret with `redactor`, so it is masked in every log line.
    pub fn register_secret(&self, redactor: &Redactor) {
        redactor.register(self.secret.expose());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_never_printed() {
        let c = Credentials::new("EXOkey", Secret::new("very-secret-value")).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("EXOkey"), "{shown}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        let redactor = Redactor::new();
        c.register_secret(&redactor);
        assert_eq!(redactor.redact("x very-secret-value y"), "x ******** y");
    }

    #[test]
    fn empty_parts_are_refused() {
        assert!(Credentials::new("", Secret::new("s")).is_err());
        assert!(Credentials::new("k", Secret::new("")).is_err());
    }
}
