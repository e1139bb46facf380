//! The keyring itself: one store, chosen once at start-up, holding kiln's entries under the
//! service name `kiln`.

use std::sync::{Arc, OnceLock};

use keyring_core::{CredentialStore, Entry, Error as KeyringError};

use super::error::SecretsError;
use crate::base::secret::Secret;

/// The keyring service name every kiln entry is filed under.
pub const SERVICE: &str = "kiln";

/// What kind of secret an entry holds; part of the entry's user name (`profile:NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An Exoscale profile's API key and secret.
    Profile,
    /// An SSH private key (OpenSSH text, decrypted).
    SshKey,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Profile => "profile",
            Kind::SshKey => "ssh-key",
        }
    }
}

/// A handle on a credential store. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    store: Arc<CredentialStore>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store.vendor())
            .finish()
    }
}

static PLATFORM: OnceLock<Vault> = OnceLock::new();

impl Vault {
    /// A vault on `store` (the mock store in tests).
    pub fn with_store(store: Arc<CredentialStore>) -> Self {
        Self { store }
    }

    /// The platform's keyring (the Secret Service on Linux), opened once per process and
    /// made keyring-core's default store. Fails with advice when none answers; kiln never
    /// falls back to a file. A failure is not remembered: once the user starts a Secret
    /// Service, the next call (the window's Refresh, Check again) finds it.
    pub fn platform() -> Result<Self, SecretsError> {
        if let Some(vault) = PLATFORM.get() {
            return Ok(vault.clone());
        }
        let store =
            open_platform_store().map_err(|reason| SecretsError::KeyringUnavailable { reason })?;
        let vault = PLATFORM.get_or_init(|| {
            keyring_core::set_default_store(store.clone());
            Vault { store }
        });
        Ok(vault.clone())
    }

    fn entry(&self, kind: Kind, name: &str) -> Result<Entry, SecretsError> {
        let user = format!("{}:{name}", kind.prefix());
        Entry::new_in_store(&self.store, SERVICE, &user).map_err(|e| map_error(e, "open", name))
    }

    /// Stores `secret` under `name`, replacing what was there.
    pub fn set(&self, kind: Kind, name: &str, secret: &Secret) -> Result<(), SecretsError> {
        self.entry(kind, name)?
            .set_password(secret.expose())
            .map_err(|e| map_error(e, "store", name))
    }

    /// The secret stored under `name`, or `None`.
    pub fn get(&self, kind: Kind, name: &str) -> Result<Option<Secret>, SecretsError> {
        match self.entry(kind, name)?.get_password() {
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(map_error(e, "read", name)),
        }
    }

    /// Deletes the entry; `false` when there was none.
    pub fn delete(&self, kind: Kind, name: &str) -> Result<bool, SecretsError> {
        match self.entry(kind, name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(e) => Err(map_error(e, "delete", name)),
        }
    }
}

#[cfg(target_os = "linux")]
fn open_platform_store() -> Result<Arc<CredentialStore>, String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|v| v.is_empty())
        && !session_bus_socket_exists()
    {
        return Err("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set".into());
    }
    let store = zbus_secret_service_keyring_store::Store::new()
        .map_err(|e| format!("no Secret Service answers on the session bus: {e}"))?;
    Ok(store)
}

/// Whether the default session bus socket (`$XDG_RUNTIME_DIR/bus`) is there.
#[cfg(target_os = "linux")]
fn session_bus_socket_exists() -> bool {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| std::path::Path::new(&d).join("bus").exists())
        .unwrap_or(false)
}

#[cfg(not(target_os = "linux"))]
fn open_platform_store() -> Result<Arc<CredentialStore>, String> {
    Err("kiln's keyring support is built for Linux (Secret Service) only so far".into())
}

fn map_error(e: KeyringError, action: &'static str, name: &str) -> SecretsError {
    match e {
        KeyringError::NoStorageAccess(inner) => SecretsError::KeyringUnavailable {
            reason: inner.to_string(),
        },
        KeyringError::NoDefaultStore => SecretsError::KeyringUnavailable {
            reason: "no keyring store is set".into(),
        },
        // BadEncoding and BadDataFormat carry the stored bytes: never show them.
        KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => SecretsError::Damaged {
            name: name.to_string(),
            reason: "it is not UTF-8 text".into(),
        },
        other => SecretsError::Keyring {
            action,
            name: name.to_string(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> Vault {
        Vault::with_store(keyring_core::mock::Store::new().unwrap())
    }

    #[test]
    fn set_get_delete_round_trip() {
        let v = mock();
        assert!(v.get(Kind::Profile, "a").unwrap().is_none());
        v.set(Kind::Profile, "a", &Secret::new("s3cr3t")).unwrap();
        assert_eq!(
            v.get(Kind::Profile, "a").unwrap().unwrap().expose(),
            "s3cr3t"
        );
        // Kinds are separate name spaces.
        assert!(v.get(Kind::SshKey, "a").unwrap().is_none());
        assert!(v.delete(Kind::Profile, "a").unwrap());
        assert!(!v.delete(Kind::Profile, "a").unwrap());
        assert!(v.get(Kind::Profile, "a").unwrap().is_none());
    }

    #[test]
    fn no_session_bus_gives_the_advice() {
        let e = SecretsError::KeyringUnavailable {
            reason: "no D-Bus session bus".into(),
        };
        let text = e.to_string();
        assert!(text.contains("desktop session"), "{text}");
        assert!(text.contains("EXOSCALE_API_KEY"), "{text}");
    }
}
