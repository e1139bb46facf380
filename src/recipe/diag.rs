//! Diagnostics: errors and warnings that name the place (`file:line:col`, key path) and say
//! what to do.

use std::fmt;

use serde::Serialize;

use super::json::Pos;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The recipe cannot run.
    Error,
    /// The recipe runs, but something deserves attention (deprecations, ignored options).
    Warning,
    /// For information: what kiln does differently with this recipe than it might seem
    /// (builders of other types that it does not run).
    Note,
}

/// One problem found in a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in, as the user named it (empty when not tied to a file).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub col: Option<u32>,
    /// The key path, e.g. `builders[0].ssh_timeout` (empty for the document itself).
    pub path: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Diagnostic {
    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}:", self.file)?;
            if let (Some(line), Some(col)) = (self.line, self.col) {
                write!(f, "{line}:{col}:")?;
            }
            f.write_str(" ")?;
        }
        match self.severity {
            Severity::Error => {}
            Severity::Warning => f.write_str("warning: ")?,
            Severity::Note => f.write_str("note: ")?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All diagnostics of one recipe, errors and warnings together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a diagnostic unless the very same one is already there (several builds of one
    /// template check the same provisioners).
    pub fn push(&mut self, diagnostic: Diagnostic) {
        if !self.items.contains(&diagnostic) {
            self.items.push(diagnostic);
        }
    }

    /// Adds an error at `pos` (if any) for `path`.
    pub fn error(&mut self, file: &str, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        self.add(Severity::Error, file, pos, path, message.into());
    }

    /// Adds a warning at `pos` (if any) for `path`.
    pub fn warning(
        &mut self,
        file: &str,
        pos: Option<Pos>,
        path: &str,
        message: impl Into<String>,
    ) {
        self.add(Severity::Warning, file, pos, path, message.into());
    }

    /// Adds a note at `pos` (if any) for `path`.
    pub fn note(&mut self, file: &str, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        self.add(Severity::Note, file, pos, path, message.into());
    }

    fn add(
        &mut self,
        severity: Severity,
        file: &str,
        pos: Option<Pos>,
        path: &str,
        message: String,
    ) {
        self.push(Diagnostic {
            severity,
            file: file.to_string(),
            line: pos.map(|p| p.line),
            col: pos.map(|p| p.col),
            path: path.to_string(),
            message,
        });
    }

    /// Whether any error (not warning) was reported.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// The errors, in source order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    /// The warnings, in source order.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// The notes, in source order.
    pub fn notes(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Note)
    }

    /// Every diagnostic, in source order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorts by file, then position (diagnostics without a position first), keeping the
    /// order of discovery for ties.
    pub fn sort(&mut self) {
        self.items
            .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    }

    /// Keeps only the diagnostics for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Diagnostic) -> bool) {
        self.items.retain(keep);
    }

    /// Moves every diagnostic of `other` into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        for d in other.items {
            self.push(d);
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_position_and_path() {
        let mut d = Diagnostics::new();
        d.error(
            "debian.json",
            Some(Pos { line: 12, col: 7 }),
            "builders[0].ssh_timeout",
            "expected a duration like \"20m\", got \"twenty\"",
        );
        assert_eq!(
            d.to_string(),
            "debian.json:12:7: builders[0].ssh_timeout: expected a duration like \"20m\", got \"twenty\"\n"
        );
    }

    #[test]
    fn warnings_are_marked_and_separate() {
        let mut d = Diagnostics::new();
        d.warning("a.json", Some(Pos { line: 2, col: 3 }), "x", "old");
        d.error("a.json", None, "", "bad");
        assert!(d.has_errors());
        assert_eq!(d.errors().count(), 1);
        assert_eq!(
            d.warnings().next().unwrap().to_string(),
            "a.json:2:3: warning: x: old"
        );
        d.sort();
        assert_eq!(d.iter().next().unwrap().to_string(), "a.json: bad");
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut d = Diagnostics::new();
        d.error("a", None, "p", "m");
        d.error("a", None, "p", "m");
        assert_eq!(d.len(), 1);
    }
}
