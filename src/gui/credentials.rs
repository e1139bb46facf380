//! The Credentials place's background side: opening the keyring, and running each action
//! (save, check, make default, remove, generate, import) off the UI thread. Every action
//! ends with a fresh [`Snapshot`] in the window's inbox. Secrets pass through here in memory
//! only; nothing of them is kept once an action is done.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::engine::{Inbox, Message};
use crate::exoscale::Credentials;
use crate::recipe::secret::Secret;
use crate::secrets::SecretsError;
use crate::secrets::profiles::{self, CheckOutcome, ProfileSummary, Profiles};
use crate::secrets::ssh_keys::{self, Existing, KeyListing, Passphrase, SshKeys};

/// Where the panel's profiles and keys live (the platform keyring, or a test's mock store).
pub trait SecretsSource: Send + Sync {
    /// Opens the profiles and the keys.
    fn open(&self) -> Result<(Profiles, SshKeys), SecretsError>;
    /// The API endpoint checks go to (`None`: `EXOSCALE_API_ENDPOINT`, else the zone's own).
    fn api_endpoint(&self) -> Option<String> {
        crate::exoscale::zone::endpoint_override(None)
    }
    /// The folder whose `*.pub` files are listed (`None`: none).
    fn public_key_dir(&self) -> Option<PathBuf> {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh"))
    }
    /// The ssh-agent whose keys are listed (`None`: none; by default `SSH_AUTH_SOCK`).
    fn agent_socket(&self) -> Option<PathBuf> {
        std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    }
}

/// The OS keyring and `~/.config/kiln/config.toml`.
#[derive(Debug, Default)]
pub struct PlatformSecrets;

impl SecretsSource for PlatformSecrets {
    fn open(&self) -> Result<(Profiles, SshKeys), SecretsError> {
        Ok((Profiles::platform()?, SshKeys::platform()?))
    }
}

/// What the panel shows, as last read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The profiles, or why they cannot be read (no keyring: the advice).
    pub profiles: Result<Vec<ProfileSummary>, String>,
    /// The keyring's keys, then `~/.ssh/*.pub`.
    pub keys: Vec<KeyListing>,
    /// The outcome of the action that produced this snapshot: `Ok` says what was done,
    /// `Err` what went wrong and what to do.
    pub status: Option<Result<String, String>>,
    /// The last check against the API of each profile checked in this session (the build
    /// form's credentials picker shows it), by profile name.
    pub checks: std::collections::BTreeMap<String, ProfileCheck>,
}

/// How a profile's last check against the API came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileCheck {
    /// Whether the API accepted its key and secret.
    pub valid: bool,
    /// When it was checked.
    pub at: chrono::DateTime<chrono::Local>,
}

impl ProfileCheck {
    /// " — valid, checked 14:02", for a label.
    pub fn describe(&self) -> String {
        let at = self.at.format("%H:%M");
        if self.valid {
            format!(" — valid, checked {at}")
        } else {
            format!(" — refused by the API at {at} (see Credentials)")
        }
    }
}

/// An action of the Credentials place.
#[derive(Debug)]
pub enum Action {
    /// Read everything again.
    Refresh,
    /// Check a new profile against the API (unless `check` is off), then store it.
    SaveProfile {
        /// Its name.
        name: String,
        /// Its default zone.
        zone: String,
        /// The API key.
        key: String,
        /// The API secret.
        secret: Secret,
        /// Make it the default.
        make_default: bool,
        /// Ask the API first.
        check: bool,
    },
    /// Check a stored profile against the API.
    CheckProfile(String),
    /// Make a profile the default.
    MakeDefault(String),
    /// Remove a profile.
    RemoveProfile(String),
    /// Generate an Ed25519 key into the keyring (replacing a key of that name only when the
    /// user said so).
    GenerateKey {
        /// The name.
        name: String,
        /// Replace a key already stored under it.
        replace: bool,
    },
    /// Import a private key file (with its passphrase when it is encrypted).
    ImportKey {
        /// Replace a key already stored under the name.
        replace: bool,
        /// The name to store it under.
        name: String,
        /// The private key file.
        path: PathBuf,
        /// Its passphrase (empty: none).
        passphrase: Secret,
    },
    /// Remove a keyring key.
    RemoveKey(String),
}

/// Runs `action` on `runtime`; a [`Snapshot`] arrives in `inbox` when it is done.
pub fn run(runtime: &Handle, source: Arc<dyn SecretsSource>, action: Action, inbox: Inbox) {
    let handle = runtime.clone();
    runtime.spawn_blocking(move || {
        let checked = match &action {
            Action::CheckProfile(name) => Some(name.clone()),
            Action::SaveProfile {
                name, check: true, ..
            } => Some(name.clone()),
            _ => None,
        };
        let status = match action {
            Action::Refresh => None,
            other => Some(perform(&handle, source.as_ref(), other)),
        };
        let mut snapshot = read(&handle, source.as_ref());
        if let (Some(name), Some(status)) = (checked, &status) {
            let check = ProfileCheck {
                valid: status.is_ok(),
                at: chrono::Local::now(),
            };
            snapshot.checks.insert(name, check);
        }
        snapshot.status = status;
        inbox.send(Message::Credentials(snapshot));
    });
}

/// Reads the profiles and keys (on a blocking thread: asking the agent waits on `runtime`).
fn read(runtime: &Handle, source: &dyn SecretsSource) -> Snapshot {
    let mut files = source
        .public_key_dir()
        .map(|d| ssh_keys::list_public_key_files(&d))
        .unwrap_or_default();
    // An agent that does not answer is left out of the list: the keyring's and the files'
    // keys are still worth showing.
    if let Some(socket) = source.agent_socket() {
        let asked = runtime.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                ssh_keys::list_agent_keys(&socket),
            )
            .await
        });
        if let Ok(Ok(agent)) = asked {
            files.extend(agent);
        }
    }
    match source.open() {
        Ok((profiles, keys)) => {
            let mut listed = keys.list_keyring().unwrap_or_default();
            listed.extend(files);
            Snapshot {
                profiles: profiles.list().map_err(|e| e.to_string()),
                keys: listed,
                status: None,
                checks: Default::default(),
            }
        }
        Err(e) => Snapshot {
            profiles: Err(e.to_string()),
            keys: files,
            status: None,
            checks: Default::default(),
        },
    }
}

fn perform(runtime: &Handle, source: &dyn SecretsSource, action: Action) -> Result<String, String> {
    let (profiles, keys) = source.open().map_err(|e| e.to_string())?;
    let endpoint = source.api_endpoint();
    let check = |zone: &str, credentials: &Credentials| {
        runtime.block_on(profiles::check_at(zone, endpoint.as_deref(), credentials))
    };
    let text = |e: SecretsError| e.to_string();
    match action {
        Action::Refresh => Ok(String::new()),
        Action::SaveProfile {
            name,
            zone,
            key,
            secret,
            make_default,
            check: ask_api,
        } => {
            crate::secrets::error::check_name(&name).map_err(text)?;
            let credentials = Credentials::new(key.trim(), secret)
                .map_err(|_| "the API key and the API secret must not be empty".to_string())?;
            let mut note = String::new();
            if ask_api {
                match check(&zone, &credentials) {
                    CheckOutcome::Valid => note = " (checked: valid)".into(),
                    CheckOutcome::Unreachable(why) => {
                        note = format!(" unchecked: the API could not be reached ({why})")
                    }
                    outcome => {
                        return Err(format!(
                            "profile `{name}` not stored: {outcome} (untick \"Check against the API\" to store it anyway)"
                        ));
                    }
                }
            }
            profiles
                .save(&name, &zone, &credentials, make_default)
                .map_err(text)?;
            Ok(format!("stored profile `{name}` (zone {zone}){note}"))
        }
        Action::CheckProfile(name) => {
            let credentials = profiles
                .load(&name, &crate::build::redact::Redactor::new())
                .map_err(text)?;
            let zone = profiles.zone(&name).map_err(text)?;
            match check(&zone, &credentials) {
                CheckOutcome::Valid => Ok(format!("profile `{name}` ({zone}): valid")),
                outcome => Err(format!("profile `{name}` ({zone}): {outcome}")),
            }
        }
        Action::MakeDefault(name) => {
            profiles.set_default(&name).map_err(text)?;
            Ok(format!("`{name}` is the default profile"))
        }
        Action::RemoveProfile(name) => match profiles.remove(&name).map_err(text)? {
            true => Ok(format!("removed profile `{name}`")),
            false => Err(format!("there is no profile `{name}`")),
        },
        Action::GenerateKey { name, replace } => {
            let made = keys
                .generate(&name, &format!("kiln-{name}"), existing(replace))
                .map_err(text)?;
            Ok(format!("generated `{name}` ({})", made.fingerprint))
        }
        Action::ImportKey {
            replace,
            name,
            path,
            passphrase,
        } => {
            let body = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut ask = || {
                if passphrase.is_empty() {
                    Err(SecretsError::Input {
                        what: "passphrase".into(),
                        reason: "the key is encrypted: type its passphrase and import again".into(),
                    })
                } else {
                    Ok(passphrase.clone())
                }
            };
            let stored = keys
                .import(
                    &name,
                    &Secret::new(body),
                    Passphrase::Ask(&mut ask),
                    existing(replace),
                )
                .map_err(text)?;
            Ok(format!("imported `{name}` ({})", stored.fingerprint))
        }
        Action::RemoveKey(name) => match keys.remove(&name).map_err(text)? {
            true => Ok(format!("removed `{name}` from the keyring")),
            false => Err(format!("there is no key `{name}` in the keyring")),
        },
    }
}

/// The keyring's rule for a key already under the name.
fn existing(replace: bool) -> Existing {
    if replace {
        Existing::Replace
    } else {
        Existing::Refuse
    }
}
