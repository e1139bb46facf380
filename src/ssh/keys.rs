//! SSH keys: fresh Ed25519 key pairs made in memory for each build, fingerprints, and loading
//! a user's `ssh_private_key_file`.
//!
//! A build uses two generated pairs: the client key (its public line goes into cloud-init's
//! `ssh_authorized_keys`) and the guest's host key (both halves go into cloud-init's
//! `ssh_keys: {ed25519_private, ed25519_public}`, and kiln then pins it, so nothing else can
//! answer on the forwarded port unnoticed).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

use super::error::SshError;
use crate::base::redact::Redactor;
use crate::base::secret::Secret;

/// A private key file larger than this is not a key (an RSA 16384 key is about 13 KiB).
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// The comment kiln puts on keys it generates.
pub const DEFAULT_COMMENT: &str = "kiln-build";

/// A private key and its public half. Cheap to clone (the key is shared). Its `Debug` shows
/// the algorithm and fingerprint, never the private key.
#[derive(Clone)]
pub struct KeyPair {
    key: Arc<PrivateKey>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.key.algorithm().as_str())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh Ed25519 key pair with the comment `kiln-build`.
    pub fn generate() -> Result<Self, SshError> {
        Self::generate_with_comment(DEFAULT_COMMENT)
    }

    /// A fresh Ed25519 key pair with the given comment (shown at the end of the public line).
    pub fn generate_with_comment(comment: &str) -> Result<Self, SshError> {
        let mut rng = russh::keys::key::safe_rng();
        let mut key =
            PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(|e| SshError::Key {
                what: "generate an Ed25519 key",
                reason: e.to_string(),
            })?;
        key.set_comment(comment);
        Ok(Self { key: Arc::new(key) })
    }

    /// Loads `ssh_private_key_file`: an unencrypted OpenSSH, PKCS#1 (RSA) or PKCS#8 private
    /// key. An encrypted key is refused with a message saying to use an unencrypted key or
    /// ssh-agent (kiln never prompts).
    pub fn from_file(path: &Path) -> Result<Self, SshError> {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > MAX_KEY_FILE
        {
            return Err(SshError::KeyFileInvalid {
                path: path.to_path_buf(),
                reason: format!("{} bytes is far too large for a key", meta.len()),
            });
        }
        let text = std::fs::read(path).map_err(|source| SshError::KeyFileRead {
            path: path.to_path_buf(),
            source,
        })?;
        // The bytes are a secret: wrap them at once so that no error path prints them.
        let text = Secret::new(String::from_utf8_lossy(&text).into_owned());
        Self::from_pem(&text).map_err(|e| match e {
            PemError::Encrypted => SshError::KeyFileEncrypted {
                path: path.to_path_buf(),
            },
            PemError::Invalid(reason) => SshError::KeyFileInvalid {
                path: path.to_path_buf(),
                reason,
            },
        })
    }

    /// Parses a private key held in memory (same formats as [`KeyPair::from_file`]).
    pub fn from_private_key_text(text: &Secret) -> Result<Self, SshError> {
        Self::from_pem(text).map_err(|e| match e {
            PemError::Encrypted => SshError::KeyFileEncrypted {
                path: "(private key given in memory)".into(),
            },
            PemError::Invalid(reason) => SshError::KeyFileInvalid {
                path: "(private key given in memory)".into(),
                reason,
            },
        })
    }

    /// Decrypts an encrypted private key held in memory with `passphrase` (an OpenSSH key,
    /// or a PKCS#8 / legacy PEM one). A wrong passphrase is [`SshError::KeyPassphrase`].
    pub fn from_encrypted_private_key_text(
        text: &Secret,
        passphrase: &Secret,
    ) -> Result<Self, SshError> {
        let pem = text.expose();
        if let Ok(key) = PrivateKey::from_openssh(pem.as_bytes())
            && key.is_encrypted()
        {
            return key
                .decrypt(passphrase.expose().as_bytes())
                .map(|key| Self { key: Arc::new(key) })
                .map_err(|_| SshError::KeyPassphrase);
        }
        match russh::keys::decode_secret_key(pem, Some(passphrase.expose())) {
            Ok(key) if !key.is_encrypted() => Ok(Self { key: Arc::new(key) }),
            _ => Err(SshError::KeyPassphrase),
        }
    }

    fn from_pem(text: &Secret) -> Result<Self, PemError> {
        let pem = text.expose();
        let trimmed = pem.trim_start();
        if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-") {
            return Err(PemError::Invalid(
                "this is a public key line; point at the private half".into(),
            ));
        }
        if !trimmed.starts_with("-----BEGIN ") && !trimmed.starts_with("PuTTY-User-Key-File-") {
            return Err(PemError::Invalid(
                "it does not start with a `-----BEGIN … PRIVATE KEY-----` line".into(),
            ));
        }
        // An OpenSSH key parses without its passphrase; tell "encrypted" apart first.
        if let Ok(key) = PrivateKey::from_openssh(pem.as_bytes())
            && key.is_encrypted()
        {
            return Err(PemError::Encrypted);
        }
        match russh::keys::decode_secret_key(pem, None) {
            Ok(key) if key.is_encrypted() => Err(PemError::Encrypted),
            Ok(key) => Ok(Self { key: Arc::new(key) }),
            Err(russh::keys::Error::KeyIsEncrypted) => Err(PemError::Encrypted),
            Err(_)
                if pem.contains("Proc-Type: 4,ENCRYPTED")
                    || pem.contains("BEGIN ENCRYPTED PRIVATE KEY") =>
            {
                Err(PemError::Encrypted)
            }
            // russh's key errors describe the problem, never the key material.
            Err(e) => Err(PemError::Invalid(e.to_string())),
        }
    }

    /// The private key, for authentication.
    pub fn private_key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The public key as one OpenSSH line, `ssh-ed25519 AAAA… kiln-build`, as cloud-init's
    /// `ssh_authorized_keys` and `ssh_keys.ed25519_public` take it.
    pub fn public_key_openssh(&self) -> String {
        public_key_openssh(self.public_key())
    }

    /// The SHA256 fingerprint, `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.public_key())
    }

    /// The private key in OpenSSH PEM format (`-----BEGIN OPENSSH PRIVATE KEY-----`, LF line
    /// endings, trailing newline), as cloud-init's `ssh_keys.ed25519_private` takes it. It
    /// comes wrapped in a [`Secret`]; see also [`KeyPair::register_with`].
    pub fn private_key_openssh(&self) -> Result<Secret, SshError> {
        let pem = self
            .key
            .to_openssh(LineEnding::LF)
            .map_err(|e| SshError::Key {
                what: "encode the private key in OpenSSH format",
                reason: e.to_string(),
            })?;
        Ok(Secret::new(pem.as_str()))
    }

    /// Registers the private key's text with `redactor`: the whole PEM and each of its
    /// base64 lines (logs are redacted line by line, so a key printed by a script would
    /// otherwise slip through one line at a time).
    pub fn register_with(&self, redactor: &Redactor) -> Result<(), SshError> {
        let pem = self.private_key_openssh()?;
        redactor.register(pem.expose());
        for line in pem.expose().lines() {
            if !line.starts_with("-----") {
                redactor.register(line);
            }
        }
        Ok(())
    }
}

enum PemError {
    Encrypted,
    Invalid(String),
}

/// `key` as one OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
pub fn public_key_openssh(key: &PublicKey) -> String {
    match key.to_openssh() {
        Ok(line) => line,
        // Encoding an in-memory public key cannot fail for the algorithms russh supports;
        // fall back to the bare fingerprint rather than panic.
        Err(_) => fingerprint(key),
    }
}

/// The SHA256 fingerprint of `key`, `SHA256:…`, as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`), e.g. a host key a
/// user pins by hand.
pub fn parse_public_key(line: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| SshError::PublicKeyInvalid {
        // Never echo what may be a private key pasted in the wrong place.
        line: if line.contains("PRIVATE") {
            "(a private key)".into()
        } else {
            line.trim().chars().take(120).collect()
        },
        reason: e.to_string(),
    })
}

/// Whether two public keys are the same key (comments are ignored).
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_ed25519_with_a_public_line_and_fingerprint() {
        let k = KeyPair::generate().unwrap();
        let line = k.public_key_openssh();
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(line.ends_with(" kiln-build"), "{line}");
        let fp = k.fingerprint();
        assert!(fp.starts_with("SHA256:"), "{fp}");
        assert_eq!(fp.len(), "SHA256:".len() + 43, "{fp}");
        let other = KeyPair::generate().unwrap();
        assert_ne!(k.fingerprint(), other.fingerprint());
        let parsed = parse_public_key(&line).unwrap();
        assert!(same_key(&parsed, k.public_key()));
        assert!(!same_key(&parsed, other.public_key()));
    }

    #[test]
    fn private_key_round_trips_through_openssh_pem() {
        let k = KeyPair::generate().unwrap();
        let pem = k.private_key_openssh().unwrap();
        assert!(
            pem.expose()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(
            pem.expose()
                .ends_with("-----END OPENSSH PRIVATE KEY-----\n")
        );
        let back = KeyPair::from_private_key_text(&pem).unwrap();
        assert_eq!(back.fingerprint(), k.fingerprint());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let k = KeyPair::generate().unwrap();
        let pem = k.private_key_openssh().unwrap();
        let debug = format!("{k:?} {pem:?}");
        assert!(debug.contains(&k.fingerprint()), "{debug}");
        for line in pem.expose().lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "{debug}");
        }
    }

    #[test]
    fn register_with_masks_each_line_of_the_key() {
        let k = KeyPair::generate().unwrap();
        let redactor = Redactor::new();
        k.register_with(&redactor).unwrap();
        let pem = k.private_key_openssh().unwrap();
        for line in pem.expose().lines().filter(|l| !l.starts_with("-----")) {
            assert!(!redactor.redact(&format!("cat: {line}")).contains(line));
        }
    }

    #[test]
    fn public_key_text_is_refused_as_a_private_key() {
        let k = KeyPair::generate().unwrap();
        let e = KeyPair::from_private_key_text(&Secret::new(k.public_key_openssh())).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
    }
}
