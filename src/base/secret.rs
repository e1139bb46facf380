//! A string that must not be printed: its `Debug` and `Display` show a mask.

use std::fmt;

/// The text shown instead of a secret.
pub const MASK: &str = "********";

/// A secret value (API secret, password, sensitive variable). Formatting it prints
/// [`MASK`]; the value itself is reached only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it (a request signature, a prompt).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string (not set).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "******** ******** Some(********)"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
