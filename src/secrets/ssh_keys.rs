//! SSH private keys in the keyring, and the list of every key the user has: the keyring's,
//! the public halves in `~/.ssh/*.pub`, and an ssh-agent's (`SSH_AUTH_SOCK`).
//!
//! An imported encrypted key is decrypted once, with its passphrase, and the keyring keeps the
//! decrypted key. Why not the passphrase: the keyring is itself encrypted at rest and unlocked
//! with the session, so the decrypted key is as safe there as a passphrase would be; keeping
//! the passphrase would still need the encrypted key file on disk at build time (and fail when
//! it moves or changes); and a build would have to decrypt on every run.

use std::path::{Path, PathBuf};

use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;

use super::config::{self, Config, KeyConfig};
use super::error::{SecretsError, check_name};
use super::vault::{Kind, Vault};
use crate::base::redact::Redactor;
use crate::base::secret::Secret;
use crate::ssh::{KeyPair, SshError, keys};

/// Where a listed key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// kiln's keyring entry of this name.
    Keyring(String),
    /// A public key file.
    File(PathBuf),
    /// The ssh-agent at `SSH_AUTH_SOCK`.
    Agent,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Keyring(name) => write!(f, "keyring:{name}"),
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Agent => write!(f, "ssh-agent"),
        }
    }
}

/// One listed key: public parts only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListing {
    /// Where it is.
    pub source: KeySource,
    /// The algorithm (`ssh-ed25519`, `ssh-rsa`, …).
    pub algorithm: String,
    /// `SHA256:…`.
    pub fingerprint: String,
    /// The key's comment.
    pub comment: String,
    /// The public key as an `authorized_keys` line (not a secret), when kiln has it.
    pub public_line: Option<String>,
}

/// What to do when a key of the name is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse ([`SecretsError::KeyExists`]): nothing is lost by accident.
    Refuse,
    /// Replace it (the user said so, knowing its private half is lost).
    Replace,
}

/// What importing a key needs when the key is encrypted.
pub enum Passphrase<'a> {
    /// Ask for it (called at most once, only when the key is encrypted).
    Ask(&'a mut dyn FnMut() -> Result<Secret, SecretsError>),
    /// The key must not be encrypted.
    None,
}

/// The SSH keys of one keyring and one config file.
#[derive(Debug, Clone)]
pub struct SshKeys {
    vault: Vault,
    config_path: PathBuf,
}

impl SshKeys {
    /// Keys in `vault`, named in the config file at `config_path`.
    pub fn new(vault: Vault, config_path: PathBuf) -> Self {
        Self { vault, config_path }
    }

    /// The platform keyring and the default config file.
    pub fn platform() -> Result<Self, SecretsError> {
        Ok(Self::new(Vault::platform()?, config::default_path()))
    }

    /// Imports a private key (OpenSSH, PKCS#1, PKCS#8 text) under `name`. An encrypted key
    /// asks `passphrase` once and is stored decrypted (see the module docs for why). A key
    /// already under `name` is an error unless `existing` says to replace it.
    pub fn import(
        &self,
        name: &str,
        text: &Secret,
        passphrase: Passphrase<'_>,
        existing: Existing,
    ) -> Result<KeyConfig, SecretsError> {
        check_name(name)?;
        self.check_free(name, existing)?;
        let pair = match KeyPair::from_private_key_text(text) {
            Ok(pair) => pair,
            Err(SshError::KeyFileEncrypted { .. }) => match passphrase {
                Passphrase::Ask(ask) => KeyPair::from_encrypted_private_key_text(text, &ask()?)?,
                Passphrase::None => {
                    return Err(SecretsError::Input {
                        what: "passphrase".into(),
                        reason: "the key is encrypted and no passphrase can be asked".into(),
                    });
                }
            },
            Err(e) => return Err(e.into()),
        };
        self.store(name, &pair)
    }

    /// Generates a new Ed25519 key (comment `comment`) into the keyring under `name`. A key
    /// already under `name` is an error unless `existing` says to replace it.
    pub fn generate(
        &self,
        name: &str,
        comment: &str,
        existing: Existing,
    ) -> Result<KeyConfig, SecretsError> {
        check_name(name)?;
        self.check_free(name, existing)?;
        let pair = KeyPair::generate_with_comment(comment)?;
        self.store(name, &pair)
    }

    /// Refuses `name` when a key is stored under it (in the config or the keyring) and
    /// `existing` is [`Existing::Refuse`]: storing over it would lose its private half.
    fn check_free(&self, name: &str, existing: Existing) -> Result<(), SecretsError> {
        if existing == Existing::Replace {
            return Ok(());
        }
        let config = Config::load(&self.config_path)?;
        let fingerprint = match config.keys.get(name) {
            Some(k) => Some(k.fingerprint.clone()),
            None => self
                .vault
                .get(Kind::SshKey, name)?
                .map(|_| "fingerprint unknown: not in kiln's config".to_string()),
        };
        match fingerprint {
            Some(fingerprint) => Err(SecretsError::KeyExists {
                name: name.to_string(),
                fingerprint,
            }),
            None => Ok(()),
        }
    }

    fn store(&self, name: &str, pair: &KeyPair) -> Result<KeyConfig, SecretsError> {
        let mut config = Config::load(&self.config_path)?;
        self.vault
            .set(Kind::SshKey, name, &pair.private_key_openssh()?)?;
        let entry = KeyConfig {
            fingerprint: pair.fingerprint(),
            public_key: pair.public_key_openssh(),
        };
        config.keys.insert(name.to_string(), entry.clone());
        config.save(&self.config_path)?;
        Ok(entry)
    }

    /// Deletes a key from the keyring and the config; `false` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, SecretsError> {
        let mut config = Config::load(&self.config_path)?;
        let had = self.vault.delete(Kind::SshKey, name)?;
        let listed = config.keys.remove(name).is_some();
        if listed {
            config.save(&self.config_path)?;
        }
        Ok(had || listed)
    }

    /// Loads a keyring key and registers its private text with `redactor` at once.
    pub fn load(&self, name: &str, redactor: &Redactor) -> Result<KeyPair, SecretsError> {
        let config = Config::load(&self.config_path)?;
        let text = self
            .vault
            .get(Kind::SshKey, name)?
            .ok_or_else(|| SecretsError::UnknownKey {
                name: name.to_string(),
                known: config.key_names(),
            })?;
        // Register the raw text before parsing, so not even a parse error path can leak it.
        redactor.register(text.expose());
        let pair = KeyPair::from_private_key_text(&text).map_err(|e| SecretsError::Damaged {
            name: format!("ssh-key:{name}"),
            reason: e.to_string(),
        })?;
        pair.register_with(redactor)?;
        Ok(pair)
    }

    /// The keyring's keys, from the config (public parts only; the keyring is not opened).
    pub fn list_keyring(&self) -> Result<Vec<KeyListing>, SecretsError> {
        let config = Config::load(&self.config_path)?;
        Ok(config
            .keys
            .iter()
            .map(|(name, k)| listing_from_config(name, k))
            .collect())
    }
}

/// The listing of keyring key `name` from its config entry (no keyring access).
pub fn listing_from_config(name: &str, key: &KeyConfig) -> KeyListing {
    let (algorithm, comment) = split_public_line(&key.public_key);
    KeyListing {
        source: KeySource::Keyring(name.to_string()),
        algorithm,
        fingerprint: key.fingerprint.clone(),
        comment,
        public_line: Some(key.public_key.clone()),
    }
}

/// The public keys in `dir/*.pub` (unreadable or unparsable files are skipped).
pub fn list_public_key_files(dir: &Path) -> Vec<KeyListing> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let line = std::fs::read_to_string(&path).ok()?;
            let key = keys::parse_public_key(line.lines().next()?).ok()?;
            Some(KeyListing {
                source: KeySource::File(path),
                algorithm: key.algorithm().as_str().to_string(),
                fingerprint: keys::fingerprint(&key),
                comment: key.comment().to_string(),
                public_line: Some(keys::public_key_openssh(&key)),
            })
        })
        .collect()
}

/// The keys an ssh-agent at `socket` holds; an error says why it cannot be asked.
pub async fn list_agent_keys(socket: &Path) -> Result<Vec<KeyListing>, String> {
    let mut agent = AgentClient::connect_uds(socket)
        .await
        .map_err(|e| format!("cannot reach ssh-agent at {}: {e}", socket.display()))?;
    let identities = agent
        .request_identities()
        .await
        .map_err(|e| format!("ssh-agent did not list its keys: {e}"))?;
    Ok(identities
        .into_iter()
        .filter_map(|id| match id {
            AgentIdentity::PublicKey { key, comment } => Some(KeyListing {
                source: KeySource::Agent,
                algorithm: key.algorithm().as_str().to_string(),
                fingerprint: keys::fingerprint(&key),
                public_line: Some(keys::public_key_openssh(&key)),
                comment,
            }),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect())
}

fn split_public_line(line: &str) -> (String, String) {
    let mut parts = line.splitn(3, ' ');
    let algorithm = parts.next().unwrap_or_default().to_string();
    let _blob = parts.next();
    (algorithm, parts.next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(dir: &tempfile::TempDir) -> SshKeys {
        let vault = Vault::with_store(keyring_core::mock::Store::new().unwrap());
        SshKeys::new(vault, dir.path().join("config.toml"))
    }

    #[test]
    fn generate_list_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let k = keyring(&dir);
        let made = k.generate("deploy", "me@laptop", Existing::Refuse).unwrap();
        let list = k.list_keyring().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].source, KeySource::Keyring("deploy".into()));
        assert_eq!(list[0].algorithm, "ssh-ed25519");
        assert_eq!(list[0].comment, "me@laptop");
        assert_eq!(list[0].fingerprint, made.fingerprint);

        let redactor = Redactor::new();
        let pair = k.load("deploy", &redactor).unwrap();
        assert_eq!(pair.fingerprint(), made.fingerprint);
        let pem = pair.private_key_openssh().unwrap();
        let line = pem.expose().lines().nth(1).unwrap().to_string();
        assert_eq!(redactor.redact(&line), "********");

        let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
        assert!(
            !config.contains("PRIVATE") && !config.contains(&line),
            "{config}"
        );

        assert!(k.remove("deploy").unwrap());
        let e = k.load("deploy", &redactor).unwrap_err().to_string();
        assert!(e.contains("kiln keys generate deploy"), "{e}");
    }

    #[test]
    fn a_second_key_under_a_name_is_refused_unless_replacing_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let k = keyring(&dir);
        let first = k.generate("deploy", "first", Existing::Refuse).unwrap();
        let refused = k
            .generate("deploy", "second", Existing::Refuse)
            .unwrap_err();
        assert!(
            matches!(&refused, SecretsError::KeyExists { fingerprint, .. } if *fingerprint == first.fingerprint),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("lose its private half"),
            "{refused}"
        );
        let other = KeyPair::generate().unwrap().private_key_openssh().unwrap();
        assert!(matches!(
            k.import("deploy", &other, Passphrase::None, Existing::Refuse),
            Err(SecretsError::KeyExists { .. })
        ));
        let redactor = Redactor::new();
        assert_eq!(
            k.load("deploy", &redactor).unwrap().fingerprint(),
            first.fingerprint,
            "the first key is still there"
        );
        let second = k.generate("deploy", "second", Existing::Replace).unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        assert_eq!(
            k.load("deploy", &redactor).unwrap().fingerprint(),
            second.fingerprint
        );
    }

    #[test]
    fn an_encrypted_key_asks_its_passphrase_once_and_is_stored_decrypted() {
        let dir = tempfile::tempdir().unwrap();
        let k = keyring(&dir);
        let plain = KeyPair::generate_with_comment("enc").unwrap();
        let mut rng = russh::keys::key::safe_rng();
        let encrypted = plain
            .private_key()
            .encrypt(&mut rng, "pass phrase")
            .unwrap()
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        let text = Secret::new(encrypted.as_str());

        let mut asked = 0;
        let mut wrong = || {
            asked += 1;
            Ok(Secret::new("wrong"))
        };
        let e = k
            .import("enc", &text, Passphrase::Ask(&mut wrong), Existing::Refuse)
            .unwrap_err();
        assert!(
            matches!(e, SecretsError::Ssh(SshError::KeyPassphrase)),
            "{e}"
        );
        assert_eq!(asked, 1);
        assert!(k.list_keyring().unwrap().is_empty());

        let mut right = || Ok(Secret::new("pass phrase"));
        let stored = k
            .import("enc", &text, Passphrase::Ask(&mut right), Existing::Refuse)
            .unwrap();
        assert_eq!(stored.fingerprint, plain.fingerprint());
        let stored_text = k.vault.get(Kind::SshKey, "enc").unwrap().unwrap();
        assert!(!stored_text.expose().is_empty());
        let loaded = KeyPair::from_private_key_text(&stored_text).unwrap();
        assert_eq!(loaded.fingerprint(), plain.fingerprint());
    }

    #[test]
    fn public_key_files_are_listed_and_junk_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let pair = KeyPair::generate_with_comment("file-key").unwrap();
        std::fs::write(dir.path().join("id_ed25519.pub"), pair.public_key_openssh()).unwrap();
        std::fs::write(dir.path().join("junk.pub"), "not a key").unwrap();
        std::fs::write(dir.path().join("id_ed25519"), "private").unwrap();
        let list = list_public_key_files(dir.path());
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].comment, "file-key");
        assert_eq!(list[0].fingerprint, pair.fingerprint());
    }
}
