//! Exoscale profiles: a name, a default zone (in `config.toml`) and an API key and secret (in
//! the keyring, together, as one entry). Several side by side; one may be the default.

use std::path::PathBuf;

use super::config::{self, Config, ProfileConfig};
use super::error::{SecretsError, check_name};
use super::vault::{Kind, Vault};
use crate::base::redact::Redactor;
use crate::base::secret::Secret;
use crate::exoscale::credentials::Credentials;
use crate::exoscale::error::ApiError;
use crate::exoscale::model::{TemplateFilter, Visibility};
use crate::exoscale::{Client, ClientOptions, zone};

/// The Exoscale credentials a profile holds.
pub type ExoscaleCredentials = Credentials;

/// A profile as listed: no secret in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSummary {
    /// The name.
    pub name: String,
    /// Its default zone.
    pub zone: String,
    /// Whether it is the default profile.
    pub is_default: bool,
    /// Whether the keyring holds its key and secret.
    pub has_secret: bool,
}

/// What the API said about a profile's key and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// An authenticated list call succeeded.
    Valid,
    /// The API refused the signature (wrong key or secret, or a key without the rights).
    Rejected(String),
    /// The API could not be reached.
    Unreachable(String),
    /// Another failure (a server error, a bad zone).
    Failed(String),
}

impl std::fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckOutcome::Valid => write!(f, "valid"),
            CheckOutcome::Rejected(m) => write!(f, "wrong key or secret: {m}"),
            CheckOutcome::Unreachable(m) => write!(f, "no network: {m}"),
            CheckOutcome::Failed(m) => write!(f, "check failed: {m}"),
        }
    }
}

/// The profiles of one keyring and one config file.
#[derive(Debug, Clone)]
pub struct Profiles {
    vault: Vault,
    config_path: PathBuf,
}

impl Profiles {
    /// Profiles in `vault`, named in the config file at `config_path`.
    pub fn new(vault: Vault, config_path: PathBuf) -> Self {
        Self { vault, config_path }
    }

    /// The platform keyring and the default config file.
    pub fn platform() -> Result<Self, SecretsError> {
        Ok(Self::new(Vault::platform()?, config::default_path()))
    }

    fn config(&self) -> Result<Config, SecretsError> {
        Config::load(&self.config_path)
    }

    /// Every profile, by name.
    pub fn list(&self) -> Result<Vec<ProfileSummary>, SecretsError> {
        let config = self.config()?;
        let mut out = Vec::new();
        for (name, p) in &config.profiles {
            out.push(ProfileSummary {
                name: name.clone(),
                zone: p.zone.clone(),
                is_default: config.default_profile.as_deref() == Some(name),
                has_secret: self.vault.get(Kind::Profile, name)?.is_some(),
            });
        }
        Ok(out)
    }

    /// Stores a profile: the key and secret in the keyring first, then the name and zone in
    /// the config (so a failed keyring write leaves the config as it was). The first profile
    /// becomes the default, as does any saved with `make_default`.
    pub fn save(
        &self,
        name: &str,
        zone: &str,
        credentials: &Credentials,
        make_default: bool,
    ) -> Result<(), SecretsError> {
        check_name(name)?;
        let mut config = self.config()?;
        self.vault.set(Kind::Profile, name, &encode(credentials))?;
        config.profiles.insert(
            name.to_string(),
            ProfileConfig {
                zone: zone.to_string(),
            },
        );
        if make_default || config.default_profile.is_none() {
            config.default_profile = Some(name.to_string());
        }
        config.save(&self.config_path)
    }

    /// Removes a profile from the keyring and the config; `false` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, SecretsError> {
        let mut config = self.config()?;
        let had_secret = self.vault.delete(Kind::Profile, name)?;
        let listed = config.profiles.remove(name).is_some();
        if config.default_profile.as_deref() == Some(name) {
            config.default_profile = None;
        }
        if listed {
            config.save(&self.config_path)?;
        }
        Ok(had_secret || listed)
    }

    /// Makes `name` the default profile.
    pub fn set_default(&self, name: &str) -> Result<(), SecretsError> {
        let mut config = self.config()?;
        if !config.profiles.contains_key(name) {
            return Err(SecretsError::UnknownProfile {
                name: name.to_string(),
                known: config.profile_names(),
            });
        }
        config.default_profile = Some(name.to_string());
        config.save(&self.config_path)
    }

    /// The name of `name` or, when `None`, of the default profile.
    pub fn resolve_name(&self, name: Option<&str>) -> Result<String, SecretsError> {
        match name {
            Some(n) => Ok(n.to_string()),
            None => self
                .config()?
                .default_profile
                .ok_or(SecretsError::NoDefaultProfile),
        }
    }

    /// The profile's zone.
    pub fn zone(&self, name: &str) -> Result<String, SecretsError> {
        let config = self.config()?;
        match config.profiles.get(name) {
            Some(p) => Ok(p.zone.clone()),
            None => Err(SecretsError::UnknownProfile {
                name: name.to_string(),
                known: config.profile_names(),
            }),
        }
    }

    /// Loads a profile's credentials and registers the secret with `redactor` at once.
    pub fn load(&self, name: &str, redactor: &Redactor) -> Result<Credentials, SecretsError> {
        let config = self.config()?;
        if !config.profiles.contains_key(name) {
            return Err(SecretsError::UnknownProfile {
                name: name.to_string(),
                known: config.profile_names(),
            });
        }
        let stored =
            self.vault
                .get(Kind::Profile, name)?
                .ok_or_else(|| SecretsError::MissingSecret {
                    name: name.to_string(),
                })?;
        let credentials = decode(name, &stored)?;
        credentials.register_secret(redactor);
        Ok(credentials)
    }
}

/// Loads profile `name` from the platform keyring (the last step of "recipe → environment →
/// keyring profile"), registering its secret with `redactor`.
pub fn load(name: &str, redactor: &Redactor) -> Result<ExoscaleCredentials, SecretsError> {
    Profiles::platform()?.load(name, redactor)
}

/// Checks `credentials` against the API of `zone` with an authenticated list call (the
/// organisation's private templates). The endpoint is `EXOSCALE_API_ENDPOINT` when set.
pub async fn check(zone: &str, credentials: &Credentials) -> CheckOutcome {
    check_at(zone, zone::endpoint_override(None).as_deref(), credentials).await
}

/// [`check`] against `endpoint` (`{zone}` replaced), or the zone's standard endpoint.
pub async fn check_at(
    zone: &str,
    endpoint: Option<&str>,
    credentials: &Credentials,
) -> CheckOutcome {
    let endpoint = endpoint.map(str::to_string);
    // A check answers a person waiting: one retry, a short timeout.
    let mut options = ClientOptions::default();
    options.retry.max_attempts = 2;
    options.request_timeout = std::time::Duration::from_secs(20);
    let client = match Client::with_endpoint_setting(
        zone,
        endpoint.as_deref(),
        credentials.clone(),
        options,
    ) {
        Ok(c) => c,
        Err(e) => return CheckOutcome::Failed(e.to_string()),
    };
    let filter = TemplateFilter {
        visibility: Some(Visibility::Private),
        family: None,
    };
    match client.list_templates(&filter).await {
        Ok(_) => CheckOutcome::Valid,
        Err(e @ ApiError::Forbidden { .. }) => CheckOutcome::Rejected(e.to_string()),
        Err(e) if e.status() == Some(401) => CheckOutcome::Rejected(e.to_string()),
        Err(e @ ApiError::Transport { .. }) => CheckOutcome::Unreachable(e.to_string()),
        Err(e) => CheckOutcome::Failed(e.to_string()),
    }
}

/// The keyring value: `key\nsecret` (the key has no newline; the secret is the rest).
fn encode(credentials: &Credentials) -> Secret {
    Secret::new(format!(
        "{}\n{}",
        credentials.key(),
        credentials.secret().expose()
    ))
}

fn decode(name: &str, stored: &Secret) -> Result<Credentials, SecretsError> {
    let damaged = |reason: &str| SecretsError::Damaged {
        name: format!("profile:{name}"),
        reason: reason.to_string(),
    };
    let (key, secret) = stored
        .expose()
        .split_once('\n')
        .ok_or_else(|| damaged("no key/secret separator"))?;
    Credentials::new(key, Secret::new(secret)).map_err(|_| damaged("an empty key or secret"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(dir: &tempfile::TempDir) -> Profiles {
        let vault = Vault::with_store(keyring_core::mock::Store::new().unwrap());
        Profiles::new(vault, dir.path().join("config.toml"))
    }

    fn creds(key: &str, secret: &str) -> Credentials {
        Credentials::new(key, Secret::new(secret)).unwrap()
    }

    #[test]
    fn save_list_load_remove_keep_secrets_out_of_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = profiles(&dir);
        p.save(
            "work",
            "ch-gva-2",
            &creds("EXOwork", "SENTINEL-work"),
            false,
        )
        .unwrap();
        p.save(
            "perso",
            "de-fra-1",
            &creds("EXOperso", "SENTINEL-perso"),
            false,
        )
        .unwrap();
        let list = p.list().unwrap();
        assert_eq!(list.len(), 2);
        let work = list.iter().find(|s| s.name == "work").unwrap();
        assert!(work.is_default && work.has_secret && work.zone == "ch-gva-2");
        assert!(!list.iter().find(|s| s.name == "perso").unwrap().is_default);

        let redactor = Redactor::new();
        let loaded = p.load("perso", &redactor).unwrap();
        assert_eq!(loaded.key(), "EXOperso");
        assert_eq!(loaded.secret().expose(), "SENTINEL-perso");
        assert_eq!(redactor.redact("x SENTINEL-perso"), "x ********");

        let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
        assert!(config.contains("[profiles.work]"), "{config}");
        assert!(
            !config.contains("SENTINEL") && !config.contains("EXO"),
            "{config}"
        );

        p.save("perso", "de-fra-1", &creds("EXOperso", "x"), true)
            .unwrap();
        assert_eq!(p.resolve_name(None).unwrap(), "perso");
        assert!(p.remove("perso").unwrap());
        assert!(!p.remove("perso").unwrap());
        assert!(matches!(
            p.resolve_name(None),
            Err(SecretsError::NoDefaultProfile)
        ));
        let e = p.load("perso", &redactor).unwrap_err().to_string();
        assert!(
            e.contains("no credentials profile `perso` (known: work)"),
            "{e}"
        );
    }

    #[test]
    fn a_profile_whose_secret_vanished_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = profiles(&dir);
        p.save("work", "ch-gva-2", &creds("EXOk", "s"), false)
            .unwrap();
        p.vault.delete(Kind::Profile, "work").unwrap();
        let e = p.load("work", &Redactor::new()).unwrap_err().to_string();
        assert!(e.contains("kiln credentials set work"), "{e}");
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let p = profiles(&dir);
        let e = p
            .save("a b", "ch-gva-2", &creds("k", "s"), false)
            .unwrap_err();
        assert!(matches!(e, SecretsError::InvalidName { .. }));
        assert!(!dir.path().join("config.toml").exists());
    }
}
