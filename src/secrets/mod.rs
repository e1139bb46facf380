//! Credentials in the operating system's keyring: Exoscale API profiles and SSH private keys.
//!
//! Secrets live only in the keyring (the Secret Service on Linux) and in memory;
//! `~/.config/kiln/config.toml` holds names and non-secret fields only. Every secret loaded
//! from here is registered with the build's log [`Redactor`](crate::base::redact::Redactor)
//! by the function that loads it.

pub mod config;
pub mod error;
pub mod profiles;
pub mod prompt;
pub mod resolve;
pub mod ssh_keys;
pub mod vault;

pub use error::SecretsError;
pub use vault::Vault;
