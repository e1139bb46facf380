//! What can go wrong with the keyring and the credentials config, each with what to do.

use std::path::PathBuf;

/// How to get on when no keyring answers.
pub const NO_KEYRING_ADVICE: &str = "run kiln inside a desktop session (GNOME, KDE: they start a Secret Service), \
or start one (`gnome-keyring-daemon --unlock --components=secrets` under `dbus-run-session`); \
for CI, set EXOSCALE_API_KEY and EXOSCALE_API_SECRET and use ssh_private_key_file instead of a keyring key";

/// An error of the `secrets` module.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No keyring service answers (no session bus, no Secret Service).
    #[error("the OS keyring is not reachable ({reason}): {NO_KEYRING_ADVICE}")]
    KeyringUnavailable {
        /// What the keyring library said.
        reason: String,
    },
    /// The keyring answered but refused or failed.
    #[error("the OS keyring failed to {action} `{name}`: {reason}")]
    Keyring {
        /// What kiln was doing.
        action: &'static str,
        /// The entry's name.
        name: String,
        /// What the keyring library said.
        reason: String,
    },
    /// A profile that `config.toml` does not list.
    #[error(
        "no credentials profile `{name}` (known: {known}): add it with `kiln credentials set {name}`"
    )]
    UnknownProfile {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// A profile is listed but its secret is missing from the keyring.
    #[error(
        "profile `{name}` has no secret in the OS keyring (removed outside kiln?): store it again with `kiln credentials set {name}`"
    )]
    MissingSecret {
        /// The profile.
        name: String,
    },
    /// An SSH key name the keyring does not hold.
    #[error(
        "no SSH key `{name}` in the OS keyring (known: {known}): add it with `kiln keys import {name} FILE` or `kiln keys generate {name}`"
    )]
    UnknownKey {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// A key of that name is already in the keyring: storing another would lose it.
    #[error(
        "the OS keyring already holds an SSH key `{name}` ({fingerprint}); storing another under that name would lose its private half for good: choose another name, or replace it on purpose (--replace)"
    )]
    KeyExists {
        /// The name.
        name: String,
        /// The existing key's fingerprint.
        fingerprint: String,
    },
    /// No credentials anywhere: not in the recipe, not in the environment, no default profile.
    #[error(
        "no Exoscale credentials: set EXOSCALE_API_KEY and EXOSCALE_API_SECRET, or store a profile with `kiln credentials set NAME` (the first one becomes the default) and pass --profile NAME"
    )]
    NoCredentials,
    /// No profile named and no default set.
    #[error(
        "no credentials profile given and none is the default: pass --profile NAME or make one the default with `kiln credentials set NAME --default`"
    )]
    NoDefaultProfile,
    /// A name that cannot be used.
    #[error("`{name}` is not a usable name: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The config file cannot be read or written.
    #[error("{}: {action}: {reason}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What kiln was doing.
        action: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A stored secret is not in the form kiln wrote.
    #[error("the keyring entry `{name}` is damaged ({reason}): remove it and store it again")]
    Damaged {
        /// The entry's name.
        name: String,
        /// What is wrong (never the value).
        reason: String,
    },
    /// An SSH key problem (parse, passphrase, generate).
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    /// A secret could not be read from the terminal or standard input.
    #[error("cannot read the {what}: {reason}")]
    Input {
        /// What was being read.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Checks a profile or key name: 1–64 characters of letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), SecretsError> {
    let bad = |reason| {
        Err(SecretsError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("use 1 to 64 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("use letters, digits, `-`, `_` and `.` only");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("start with a letter or digit");
    }
    Ok(())
}
