//! The recipe editor: the open recipe's text, checked as it changes, shown as cards (the
//! Recipe tab) and as highlighted JSON (the JSON tab); saved atomically, and never over a
//! file that changed on disk without asking. A change on disk while the recipe is open is
//! noticed ([`watch`]): taken in when there are no unsaved edits, asked about when there are.

pub mod cards;
pub mod document;
pub mod highlight;
pub mod raw;
pub mod save;
pub mod view;
pub mod watch;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

use crate::recipe::diag::{Diagnostic, Diagnostics};
use crate::recipe::template::{self, LoadOptions};

use document::EditError;
use watch::{DiskChange, DiskWatch};

/// The tabs of the open recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RecipeTab {
    /// The variables form.
    #[default]
    Variables,
    /// Builder, provisioners and post-processors as cards.
    Recipe,
    /// The JSON source.
    Json,
}

/// The text as parsed for the cards: the document, or why it does not parse.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// The document (key order kept).
    Valid(Value),
    /// The JSON syntax error, with its 1-based line and column.
    Invalid {
        /// What is wrong.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
    },
}

/// What the last save or reload did, shown beside the Save button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// It worked; the text says what happened.
    Done(String),
    /// It did not; the text says why and what to do.
    Failed(String),
}

/// The file changed on disk since it was opened or saved (found at save time or while it
/// was open): the user chooses what wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What is on disk now (`None`: the file is gone).
    pub disk: Option<String>,
}

/// One recipe's editing state.
#[derive(Debug)]
pub struct Editor {
    path: PathBuf,
    /// The text being edited (the JSON tab edits it directly).
    pub text: String,
    /// The text as read from or last written to disk (`None` if it could not be read).
    baseline: Option<String>,
    /// Why the file could not be read (then nothing can be edited or saved).
    load_error: Option<String>,
    parsed: Parsed,
    problems: Diagnostics,
    /// The hash of the text the last check saw.
    checked: Option<u64>,
    /// A conflict found by the last save.
    pub conflict: Option<Conflict>,
    /// What the last save or reload did.
    pub notice: Option<Notice>,
    /// Text typed into card fields, by field, while it means the same as the document.
    fields: std::collections::HashMap<String, String>,
    /// A problem's place to show in the JSON tab on the next frame (1-based line, column).
    pub jump: Option<(u32, u32)>,
    highlight: raw::HighlightCache,
    watch: DiskWatch,
}

fn hash_text(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

impl Editor {
    /// Reads `path` for editing. A file that cannot be read as UTF-8 text is not editable
    /// (saving it could lose what kiln cannot show); the reason is kept for the panel.
    pub fn open(path: &Path) -> Self {
        let watch = DiskWatch::new(path, Instant::now());
        let (text, baseline, load_error) = match save::read(path) {
            Ok(text) => (text.clone(), Some(text), None),
            Err(why) => (String::new(), None, Some(why)),
        };
        let mut editor = Self {
            path: path.to_path_buf(),
            text,
            baseline,
            load_error,
            parsed: Parsed::Valid(Value::Null),
            problems: Diagnostics::new(),
            checked: None,
            conflict: None,
            notice: None,
            fields: Default::default(),
            jump: None,
            highlight: Default::default(),
            watch,
        };
        editor.recheck();
        editor
    }

    /// The file being edited.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the file could not be read, if it could not.
    pub fn load_error(&self) -> Option<&str> {
        self.load_error.as_deref()
    }

    /// Whether the text differs from what is on disk (as last read or written).
    pub fn is_dirty(&self) -> bool {
        self.baseline.as_ref().is_some_and(|b| *b != self.text)
    }

    /// The document as the cards see it.
    pub fn parsed(&self) -> &Parsed {
        &self.parsed
    }

    /// The problems kiln's recipe checker finds in the text being edited.
    pub fn problems(&self) -> &Diagnostics {
        &self.problems
    }

    /// Re-parses and re-checks the text if it changed since the last check.
    pub fn recheck(&mut self) {
        let h = hash_text(&self.text);
        if self.checked == Some(h) {
            return;
        }
        self.checked = Some(h);
        self.parsed = match document::parse(&self.text) {
            Ok(v) => Parsed::Valid(v),
            Err(e) => Parsed::Invalid {
                message: e.to_string(),
                line: e.line(),
                col: e.column(),
            },
        };
        if self.load_error.is_some() {
            self.problems = Diagnostics::new();
            return;
        }
        let display = self.path.display().to_string();
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let options = LoadOptions {
            required_is_warning: true,
            ..LoadOptions::default()
        };
        self.problems = match template::load_str(&display, &self.text, &dir, &options) {
            Ok(recipe) => recipe.warnings,
            Err(diags) => diags,
        };
    }

    /// Sets (or, with `None`, removes) the value at `path`, changing only its bytes.
    pub fn set(&mut self, path: &[document::Seg], value: Option<&Value>) -> Result<(), EditError> {
        if self.load_error.is_some() {
            return Err(EditError::Invalid("the file could not be read".into()));
        }
        self.text = document::set(&self.text, path, value)?;
        self.recheck();
        Ok(())
    }

    /// Why Save would be refused now, if it would.
    pub fn save_blocker(&self) -> Option<String> {
        if let Some(why) = &self.load_error {
            return Some(format!("cannot save: {why}"));
        }
        if let Parsed::Invalid { message, .. } = &self.parsed {
            return Some(format!(
                "not saved: the JSON does not parse ({message}); fix it first or Revert"
            ));
        }
        None
    }

    /// Saves the text if it changed. Refuses text that is not JSON; stops at a conflict
    /// (the file changed on disk) unless `overwrite`. Returns whether the file was written.
    pub fn save(&mut self, overwrite: bool) -> bool {
        if !self.is_dirty() && self.conflict.is_none() {
            return false;
        }
        if let Some(why) = self.save_blocker() {
            self.notice = Some(Notice::Failed(why));
            return false;
        }
        if !overwrite {
            let disk = save::read(&self.path).ok();
            if disk.as_ref() != self.baseline.as_ref() {
                self.conflict = Some(Conflict { disk });
                self.notice = None;
                return false;
            }
        }
        match save::write_atomic(&self.path, &self.text) {
            Ok(()) => {
                self.baseline = Some(self.text.clone());
                self.conflict = None;
                let errors = self.problems.errors().count();
                self.notice = Some(Notice::Done(if errors == 0 {
                    "Saved.".to_string()
                } else {
                    format!(
                        "Saved, with {errors} error{} left: a build will refuse it until fixed.",
                        if errors == 1 { "" } else { "s" }
                    )
                }));
                true
            }
            Err(why) => {
                self.notice = Some(Notice::Failed(why));
                false
            }
        }
    }

    /// Drops the edits and reads the file again.
    pub fn reload(&mut self) {
        let jump = self.jump.take();
        *self = Self::open(&self.path.clone());
        self.jump = jump;
        if self.load_error.is_none() {
            self.notice = Some(Notice::Done("Reloaded from disk.".into()));
        }
    }

    /// Looks whether the file changed on disk, when it is time to ([`DiskWatch::due`]: on
    /// focus gain, else every couple of seconds). Without unsaved edits a changed file is
    /// read again and a notice says so; with unsaved edits, or when the file is gone or
    /// cannot be read, the conflict card asks what wins. Returns whether the text was
    /// reloaded (so what depends on the file is worked out again).
    pub fn check_disk(&mut self, now: Instant, focus_gained: bool) -> bool {
        if !self.watch.due(now, focus_gained) {
            return false;
        }
        match self.watch.look(&self.path, self.baseline.as_deref(), now) {
            DiskChange::Unchanged => false,
            DiskChange::Changed(_) if !self.is_dirty() => {
                self.reload();
                if self.load_error.is_none() {
                    let name = self
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| self.path.display().to_string());
                    self.notice = Some(Notice::Done(format!(
                        "{name} changed on disk: reloaded (you had no unsaved changes)."
                    )));
                }
                true
            }
            DiskChange::Changed(disk) => {
                self.conflict = Some(Conflict { disk: Some(disk) });
                self.notice = None;
                false
            }
            DiskChange::Unreadable(_) => {
                self.conflict = Some(Conflict { disk: None });
                self.notice = None;
                false
            }
        }
    }

    /// Writes the text to `path` (Save as…) and edits that file from now on.
    pub fn save_as(&mut self, path: &Path) -> bool {
        if let Some(why) = self.save_blocker() {
            self.notice = Some(Notice::Failed(why));
            return false;
        }
        match save::write_atomic(path, &self.text) {
            Ok(()) => {
                self.path = path.to_path_buf();
                self.baseline = Some(self.text.clone());
                self.conflict = None;
                self.checked = None;
                self.recheck();
                self.notice = Some(Notice::Done(format!("Saved as {}.", path.display())));
                true
            }
            Err(why) => {
                self.notice = Some(Notice::Failed(why));
                false
            }
        }
    }

    /// Shows `diagnostic`'s place in the JSON tab (on the next frame).
    pub fn jump_to(&mut self, diagnostic: &Diagnostic) {
        self.jump = Some((diagnostic.line.unwrap_or(1), diagnostic.col.unwrap_or(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_marks_dirty_and_saving_writes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let text = "{\"_comment\": \"c\", \"builders\": [{\"type\": \"qemu\", \"cpus\": 1}]}";
        std::fs::write(&path, text).unwrap();
        let mut e = Editor::open(&path);
        assert!(!e.is_dirty());
        assert!(!e.save(false), "nothing to save");
        e.set(
            &document::doc_path!["builders", 0, "cpus"],
            Some(&serde_json::json!(2)),
        )
        .unwrap();
        assert!(e.is_dirty());
        assert!(e.save(false));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text.replace("\"cpus\": 1", "\"cpus\": 2")
        );
        assert!(!e.is_dirty());
    }

    #[test]
    fn a_file_changed_on_disk_is_a_conflict_not_an_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let mut e = Editor::open(&path);
        e.set(&document::doc_path!["a"], Some(&serde_json::json!(2)))
            .unwrap();
        std::fs::write(&path, "{\"a\": 3}").unwrap();
        assert!(!e.save(false));
        assert_eq!(
            e.conflict,
            Some(Conflict {
                disk: Some("{\"a\": 3}".into())
            })
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 3}");
        assert!(e.save(true));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 2}");
        assert!(e.conflict.is_none());
    }

    /// A moment well after the editor's last look, so the next check looks.
    fn later() -> Instant {
        Instant::now() + watch::CHECK_EVERY
    }

    #[test]
    fn an_outside_change_reloads_a_clean_document_with_a_notice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let mut e = Editor::open(&path);
        assert!(!e.check_disk(later(), false), "nothing changed");
        std::fs::write(&path, "{\"a\": 22}").unwrap();
        assert!(!e.check_disk(Instant::now(), false), "not yet time to look");
        assert!(e.check_disk(Instant::now(), true), "focus gained: look");
        assert_eq!(e.text, "{\"a\": 22}");
        assert!(!e.is_dirty());
        assert!(e.conflict.is_none());
        assert!(
            matches!(&e.notice, Some(Notice::Done(m)) if m.contains("r.json changed on disk: reloaded")),
            "{:?}",
            e.notice
        );
    }

    #[test]
    fn an_outside_change_under_unsaved_edits_asks_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let mut e = Editor::open(&path);
        e.set(&document::doc_path!["a"], Some(&serde_json::json!(2)))
            .unwrap();
        std::fs::write(&path, "{\"a\": 3}").unwrap();
        assert!(!e.check_disk(later(), false));
        assert_eq!(e.text, "{\"a\": 2}", "the edits stay");
        assert_eq!(
            e.conflict,
            Some(Conflict {
                disk: Some("{\"a\": 3}".into())
            })
        );
        // Keep editing: not asked again for the same change; Save still refuses it.
        e.conflict = None;
        e.check_disk(later(), true);
        assert!(e.conflict.is_none());
        assert!(!e.save(false));
        assert!(e.conflict.is_some());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 3}");
    }

    #[test]
    fn a_deleted_file_is_a_conflict_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let mut e = Editor::open(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(!e.check_disk(later(), false));
        assert_eq!(e.conflict, Some(Conflict { disk: None }));
        assert_eq!(e.text, "{\"a\": 1}", "the text is kept to save again");
        assert!(e.save(true), "Overwrite writes it back");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 1}");
        assert!(!e.check_disk(later(), false), "its own save is no change");
        assert!(e.conflict.is_none());
    }

    #[test]
    fn invalid_json_is_not_saved_and_unreadable_files_are_not_editable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let mut e = Editor::open(&path);
        e.text = "{\"a\": ".into();
        e.recheck();
        assert!(matches!(e.parsed(), Parsed::Invalid { line: 1, .. }));
        assert!(e.problems().has_errors());
        assert!(!e.save(false));
        assert!(matches!(&e.notice, Some(Notice::Failed(m)) if m.contains("does not parse")));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 1}");

        let binary = dir.path().join("b.json");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        let mut e = Editor::open(&binary);
        assert!(e.load_error().is_some());
        assert!(
            e.set(&document::doc_path!["a"], Some(&serde_json::json!(1)))
                .is_err()
        );
        e.text = "{}".into();
        assert!(!e.save(true));
        assert_eq!(std::fs::read(&binary).unwrap(), [0xff, 0xfe, 0x00]);
    }
}
