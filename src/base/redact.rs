//! Secret redaction: every registered secret value is replaced by a mask in every line that
//! leaves the engine (logs, events, files).

use std::sync::{Arc, RwLock};

use super::secret::MASK;

/// Secrets shorter than this are not redacted: masking every "a" or "1" would make logs
/// unreadable while protecting nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// A shared, growing set of secret values. Cloning shares the set.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        write!(f, "Redactor({n} secrets)")
    }
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value (ignored when shorter than [`MIN_SECRET_LEN`]).
    pub fn register(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        if let Ok(mut secrets) = self.secrets.write()
            && !secrets.iter().any(|s| s == secret)
        {
            secrets.push(secret.to_string());
            // Longest first, so a secret containing another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `line` with every registered secret replaced by the mask.
    pub fn redact(&self, line: &str) -> String {
        let Ok(secrets) = self.secrets.read() else {
            return line.to_string();
        };
        let mut out = line.to_string();
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.register("hunter2");
        r.register("hunter2-extended");
        r.register("ab");
        assert_eq!(
            r.redact("a hunter2 b hunter2-extended ab"),
            "a ******** b ******** ab"
        );
    }

    #[test]
    fn clones_share_secrets() {
        let r = Redactor::new();
        let other = r.clone();
        other.register("s3cr3t-value");
        assert_eq!(r.redact("x=s3cr3t-value"), "x=********");
    }
}
