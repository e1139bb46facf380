//! Host-key checking: which server keys kiln accepts when it connects to the guest.
//!
//! kiln injects the guest's host key through cloud-init, so it knows the key before the
//! guest boots and pins it ([`HostKeyPolicy::Pinned`]): a mismatch means something else
//! answered on the forwarded port. When the recipe brings its own image or seed and the key
//! cannot be known, [`HostKeyPolicy::TrustOnFirstUse`] accepts the first key, logs its
//! fingerprint, and holds every later connection of the build (reconnects after a reboot)
//! to it.

use std::fmt;
use std::sync::{Arc, Mutex};

use russh::keys::{PublicKey, PublicKeyOrCertificate};

use super::error::SshError;
use super::keys::{fingerprint, same_key};

/// Which host keys a connection accepts. Cloning a `TrustOnFirstUse` policy shares what it
/// recorded.
#[derive(Clone)]
pub enum HostKeyPolicy {
    /// Accept only this key (the one kiln injected).
    Pinned(PublicKey),
    /// Accept the first key seen, then only that key.
    TrustOnFirstUse(TrustOnFirstUse),
}

impl fmt::Debug for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostKeyPolicy::Pinned(key) => write!(f, "Pinned({})", fingerprint(key)),
            HostKeyPolicy::TrustOnFirstUse(tofu) => tofu.fmt(f),
        }
    }
}

impl HostKeyPolicy {
    /// Accept only `key`.
    pub fn pinned(key: PublicKey) -> Self {
        HostKeyPolicy::Pinned(key)
    }

    /// Accept the first key seen, then only that key (no log callback).
    pub fn trust_on_first_use() -> Self {
        HostKeyPolicy::TrustOnFirstUse(TrustOnFirstUse::new())
    }

    /// Whether `offered` is acceptable under this policy; records it under trust on first use.
    pub fn check(&self, offered: &PublicKey) -> Result<(), SshError> {
        match self {
            HostKeyPolicy::Pinned(expected) => {
                if same_key(expected, offered) {
                    Ok(())
                } else {
                    Err(SshError::HostKeyMismatch {
                        expected: fingerprint(expected),
                        offered: fingerprint(offered),
                    })
                }
            }
            HostKeyPolicy::TrustOnFirstUse(tofu) => tofu.check(offered),
        }
    }

    /// Checks what russh hands to `check_server_key` (a certificate is judged by its key).
    pub(crate) fn check_offered(&self, offered: &PublicKeyOrCertificate) -> Result<(), SshError> {
        match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key),
            PublicKeyOrCertificate::Certificate(cert) => {
                self.check(&PublicKey::from(cert.public_key().clone()))
            }
        }
    }
}

type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// The state of a trust-on-first-use policy: the key recorded on first use, shared between
/// clones.
#[derive(Clone, Default)]
pub struct TrustOnFirstUse {
    recorded: Arc<Mutex<Option<PublicKey>>>,
    log: Option<LogFn>,
}

impl fmt::Debug for TrustOnFirstUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustOnFirstUse")
            .field("recorded", &self.recorded_fingerprint())
            .finish_non_exhaustive()
    }
}

impl TrustOnFirstUse {
    /// Nothing recorded yet; the first key is logged through `tracing` only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing recorded yet; the line announcing the first key also goes to `log` (e.g. a
    /// step's `StepContext::log`).
    pub fn with_log(log: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            recorded: Arc::default(),
            log: Some(Arc::new(log)),
        }
    }

    /// The key recorded on first use, if a connection got that far.
    pub fn recorded(&self) -> Option<PublicKey> {
        self.recorded.lock().ok().and_then(|k| k.clone())
    }

    /// The fingerprint of the recorded key.
    pub fn recorded_fingerprint(&self) -> Option<String> {
        self.recorded().map(|k| fingerprint(&k))
    }

    fn check(&self, offered: &PublicKey) -> Result<(), SshError> {
        let mut recorded = self
            .recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match recorded.as_ref() {
            Some(first) if same_key(first, offered) => Ok(()),
            Some(first) => Err(SshError::HostKeyChanged {
                first: fingerprint(first),
                offered: fingerprint(offered),
            }),
            None => {
                *recorded = Some(offered.clone());
                drop(recorded);
                let line = format!(
                    "trusting the guest's host key on first use: {} {}",
                    offered.algorithm().as_str(),
                    fingerprint(offered)
                );
                tracing::info!("{line}");
                if let Some(log) = &self.log {
                    log(&line);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;
    use crate::ssh::keys::KeyPair;

    #[test]
    fn pinned_accepts_only_its_key() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        let policy = HostKeyPolicy::pinned(a.public_key().clone());
        assert_eq!(
            format!("{policy:?}"),
            format!("Pinned({})", a.fingerprint())
        );
        policy.check(a.public_key()).unwrap();
        let e = policy.check(b.public_key()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the guest's host key is not the one kiln injected ({} expected, {} offered): \
                 something else answered on the forwarded port",
                a.fingerprint(),
                b.fingerprint()
            )
        );
    }

    #[test]
    fn tofu_records_logs_and_holds() {
        let lines = Arc::new(StdMutex::new(Vec::new()));
        let sink = lines.clone();
        let tofu = TrustOnFirstUse::with_log(move |l| sink.lock().unwrap().push(l.to_string()));
        let policy = HostKeyPolicy::TrustOnFirstUse(tofu.clone());
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        assert!(tofu.recorded().is_none());
        policy.clone().check(a.public_key()).unwrap();
        policy.check(a.public_key()).unwrap();
        assert_eq!(tofu.recorded_fingerprint(), Some(a.fingerprint()));
        let e = policy.check(b.public_key()).unwrap_err();
        assert!(matches!(e, SshError::HostKeyChanged { .. }), "{e}");
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(&a.fingerprint()), "{lines:?}");
    }
}
