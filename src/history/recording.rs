//! A build being recorded, as the window and `kiln build` both use it: written as
//! unfinished when it starts (so a build kiln never saw end is still listed), completed when
//! its report comes. A history that cannot be opened or written gives a warning for the
//! build's output; the build itself goes on.

use std::path::{Path, PathBuf};

use super::HistoryError;
use super::model::BuildRecord;
use super::record::Recorder;
use super::store::{DEFAULT_KEEP, History};
use crate::build::event::Event;
use crate::build::plan::BuildReport;

/// One build on its way into the history.
#[derive(Debug)]
pub struct Recording {
    recorder: Recorder,
    history: Option<History>,
    path: PathBuf,
}

/// The warning a front end shows when the history cannot be written.
pub fn warning(e: &HistoryError) -> String {
    format!("this build is not recorded in the history: {e} (the build itself is not affected)")
}

/// The warning a front end shows when the history could not be trimmed.
fn prune_warning(e: &HistoryError) -> String {
    format!(
        "this build is recorded, but older builds could not be removed from the history to keep it at {DEFAULT_KEEP}: {e} (kiln tries again after the next build)"
    )
}

/// Opens the history at `path` and writes `record` (a build that starts) as unfinished:
/// the first half of [`Recording::start`], for a front end that runs it on another thread
/// while the build's events flow.
pub fn begin(path: &Path, record: &BuildRecord) -> Result<(History, i64), HistoryError> {
    let mut history = History::open(path)?;
    let mut record = record.clone();
    let id = history.save(&mut record)?;
    Ok((history, id))
}

impl Recording {
    /// Opens the history at `path` and writes the build as unfinished. The warning says why
    /// the build will not be recorded, when it will not.
    pub fn start(path: &Path, recorder: Recorder) -> (Self, Option<String>) {
        let begun = begin(path, &recorder.snapshot());
        Self::resume(path, recorder, begun)
    }

    /// The recording of a build whose [`begin`] ran elsewhere, with what it gave; `recorder`
    /// may have observed events meanwhile.
    pub fn resume(
        path: &Path,
        mut recorder: Recorder,
        begun: Result<(History, i64), HistoryError>,
    ) -> (Self, Option<String>) {
        let (history, warn) = match begun {
            Ok((history, id)) => {
                recorder.set_id(id);
                (Some(history), None)
            }
            Err(e) => (None, Some(warning(&e))),
        };
        let recording = Self {
            recorder,
            history,
            path: path.to_path_buf(),
        };
        (recording, warn)
    }

    /// The history file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes in one event of the build.
    pub fn observe(&mut self, event: &Event) {
        self.recorder.observe(event);
    }

    /// Completes the record with the build's report and writes it, then trims the history
    /// to its newest [`DEFAULT_KEEP`] builds. Returns the record and a warning when it could
    /// not be written or trimmed (none when the start already warned).
    pub fn finish(self, report: &BuildReport) -> (BuildRecord, Option<String>) {
        let mut record = self.recorder.finish(report);
        let Some(mut history) = self.history else {
            return (record, None);
        };
        if let Err(e) = history.save(&mut record) {
            return (record, Some(warning(&e)));
        }
        match history.prune(DEFAULT_KEEP) {
            Ok(_) => (record, None),
            Err(e) => (record, Some(prune_warning(&e))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::build::event::Outcome;
    use crate::history::model::{Origin, RunOutcome, StepEnd};
    use crate::history::record::tests::{recipe, report};
    use crate::history::schema;
    use std::time::Duration;

    const SENTINEL: &str = "SENTINEL-6f1c2a-secret";

    pub(crate) fn recording(path: &Path) -> (Recording, Option<String>) {
        let recipe = recipe(SENTINEL);
        let recorder = Recorder::new(
            Path::new("/r/recipe.json"),
            &recipe,
            &recipe.builds[0],
            Origin::Cli,
        );
        Recording::start(path, recorder)
    }

    /// Every byte of the history's files (the database, its WAL and shared memory).
    fn all_bytes(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.extend(std::fs::read(path).unwrap());
            }
        }
        out
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn a_build_is_listed_unfinished_then_complete_and_no_secret_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln/history.sqlite");
        let (mut rec, warn) = recording(&path);
        assert_eq!(warn, None);
        let listed = History::open(&path).unwrap().recent(10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].outcome, RunOutcome::Unfinished);

        rec.observe(&Event::BuildStarted {
            build: "vm".into(),
            steps: vec!["Base image".into(), "Disk".into()],
        });
        rec.observe(&Event::StepStarted {
            index: 0,
            name: "Base image".into(),
        });
        rec.observe(&Event::StepFinished {
            index: 0,
            outcome: Outcome::Failed(format!("cannot read /x/{SENTINEL}.qcow2")),
            duration: Duration::from_millis(42),
        });
        let (record, warn) = rec.finish(&report(Outcome::Failed(format!(
            "Base image: cannot read /x/{SENTINEL}.qcow2"
        ))));
        assert_eq!(warn, None);
        let history = History::open(&path).unwrap();
        let listed = history.recent(10).unwrap();
        assert_eq!(
            listed.len(),
            1,
            "the start's row was completed, not doubled"
        );
        assert_eq!(listed[0], record);
        assert_eq!(listed[0].steps[0].end, StepEnd::Failed);
        assert_eq!(listed[0].steps[0].duration, Some(Duration::from_millis(42)));
        assert_eq!(listed[0].stopped_at.as_deref(), Some("Base image"));
        let secret = listed[0]
            .variables
            .iter()
            .find(|v| v.name == "api_secret")
            .unwrap();
        assert!(secret.sensitive && secret.value.is_none());
        drop(history);

        let bytes = all_bytes(path.parent().unwrap());
        assert!(contains(&bytes, "my-bucket"), "the test can see values");
        assert!(
            !contains(&bytes, SENTINEL),
            "the secret reached the history"
        );
    }

    #[test]
    fn newest_builds_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        for _ in 0..3 {
            let (rec, _) = recording(&path);
            rec.finish(&report(Outcome::Done));
        }
        let listed = History::open(&path).unwrap().recent(2).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[0].id > listed[1].id);
        assert!(listed[0].started >= listed[1].started);
    }

    #[test]
    fn a_damaged_file_is_a_warning_naming_it_and_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        let garbage = b"this is not a database, it is a shopping list\n".repeat(200);
        std::fs::write(&path, &garbage).unwrap();
        let (rec, warn) = recording(&path);
        let warn = warn.expect("a warning");
        assert!(warn.contains(&path.display().to_string()), "{warn}");
        assert!(warn.contains("not a kiln build history"), "{warn}");
        assert!(warn.contains("move it away"), "{warn}");
        let (_, again) = rec.finish(&report(Outcome::Done));
        assert_eq!(again, None, "one warning per build");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
        assert!(matches!(
            History::open(&path),
            Err(HistoryError::NotADatabase { .. })
        ));
    }

    #[test]
    fn a_newer_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        History::open(&path).unwrap();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", schema::latest() + 1)
                .unwrap();
        }
        let err = History::open(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, HistoryError::Newer { found, .. } if found == schema::latest() + 1));
        assert!(text.contains(&path.display().to_string()) && text.contains("newer kiln"));
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), schema::latest() + 1);
    }

    #[test]
    fn an_unwritable_folder_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let (_, warn) = recording(&blocker.join("kiln/history.sqlite"));
        let warn = warn.expect("a warning");
        assert!(warn.contains("cannot create the folder"), "{warn}");
        assert!(warn.contains("XDG_DATA_HOME"), "{warn}");
    }

    #[test]
    fn reading_a_missing_history_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln/history.sqlite");
        assert!(History::open_existing(&path).unwrap().is_none());
        assert!(!dir.path().join("kiln").exists());
    }

    #[test]
    fn the_file_uses_wal_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln/history.sqlite");
        let (rec, _) = recording(&path);
        rec.finish(&report(Outcome::Done));
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }
}
