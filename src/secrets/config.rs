//! `~/.config/kiln/config.toml`: profile names, their default zones, the default profile and
//! the names of keyring SSH keys — never a secret.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::SecretsError;

/// Overrides the config directory (tests, portable setups).
pub const CONFIG_DIR_ENV: &str = "KILN_CONFIG_DIR";

/// A profile's non-secret fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// The zone used when a command names none.
    pub zone: String,
}

/// A keyring SSH key's non-secret fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConfig {
    /// `SHA256:…` of the public key.
    pub fingerprint: String,
    /// The public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Keyring SSH keys by name.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyConfig>,
}

/// The config file's path: `$KILN_CONFIG_DIR/config.toml`, else
/// `$XDG_CONFIG_HOME/kiln/config.toml`, else `~/.config/kiln/config.toml`.
pub fn default_path() -> PathBuf {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.toml");
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    base.join("kiln").join("config.toml")
}

impl Config {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(config_error(path, "cannot read it", e.to_string())),
        };
        toml::from_str(&text).map_err(|e| {
            config_error(
                path,
                "cannot parse it (fix or delete the file; secrets are not in it)",
                e.to_string(),
            )
        })
    }

    /// Writes to `path` atomically (a temporary file in the same directory, then a rename),
    /// so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), SecretsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| config_error(path, "cannot create its directory", e.to_string()))?;
        let text = toml::to_string_pretty(self)
            .map_err(|e| config_error(path, "cannot serialise it", e.to_string()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| config_error(path, "cannot write a temporary file", e.to_string()))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| config_error(path, "cannot write it", e.to_string()))?;
        tmp.persist(path)
            .map_err(|e| config_error(path, "cannot replace it", e.error.to_string()))?;
        Ok(())
    }

    /// The profile names, comma-separated (for error messages).
    pub fn profile_names(&self) -> String {
        names(self.profiles.keys())
    }

    /// The key names, comma-separated (for error messages).
    pub fn key_names(&self) -> String {
        names(self.keys.keys())
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn config_error(path: &Path, action: &'static str, reason: String) -> SecretsError {
    SecretsError::Config {
        path: path.to_path_buf(),
        action,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        let mut c = Config {
            default_profile: Some("work".into()),
            ..Default::default()
        };
        c.profiles.insert(
            "work".into(),
            ProfileConfig {
                zone: "ch-gva-2".into(),
            },
        );
        c.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), c);
        // Only the file itself is left: no temporary file behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "profiles = 3\n").unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("config.toml"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }
}
