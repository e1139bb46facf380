//! The build history: every build the window or `kiln build` ran, in a SQLite file
//! (`$XDG_DATA_HOME/kiln/history.sqlite`, else `~/.local/share/kiln/history.sqlite`).
//!
//! - [`schema`]: the migrations (`PRAGMA user_version`), applied in one transaction.
//! - [`store`]: opening the file (WAL, a busy timeout), writing and reading builds.
//! - [`record`]: what one build leaves — fed with the build's events and its report.
//! - [`process`]: which kiln process recorded a build, so a killed one's build reads as
//!   interrupted.
//! - [`recording`]: a build being recorded, as both front ends use it; a history that cannot
//!   be written becomes a warning, never a failed build.
//!
//! Secrets never reach the file: sensitive variables are stored by name only, and every text
//! (messages, paths, details) passes through the build's redactor first.

pub mod model;
pub mod process;
pub mod record;
pub mod recording;
pub mod schema;
pub mod store;

use std::path::{Path, PathBuf};

pub use model::{BuildRecord, Origin, RunOutcome, StepEnd, StepRecord, VarOrigin, VariableRecord};
pub use process::ProcessStamp;
pub use record::Recorder;
pub use recording::Recording;
pub use store::History;

/// The history file's name inside kiln's data folder.
pub const FILE_NAME: &str = "history.sqlite";

/// What went wrong with the history file. Every message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The folder for the file could not be made.
    #[error(
        "cannot create the folder {} for the build history: {source}; check its permissions or set XDG_DATA_HOME to a writable folder",
        path.display()
    )]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a SQLite database, or a damaged one. kiln leaves it alone.
    #[error(
        "{} is not a kiln build history (the file is damaged or is something else): {source}; kiln left it untouched — move it away (for example `mv {0} {0}.bad`) and kiln starts a new history",
        path.display()
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by a newer kiln: this one does not know its layout.
    #[error(
        "{} was written by a newer kiln (history version {found}, this kiln knows up to {known}); kiln left it untouched — use the newer kiln, or move the file away to start a new history",
        path.display()
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this kiln knows.
        known: i64,
    },
    /// Any other SQLite error (locked for too long, disk full, read-only file, …).
    #[error(
        "the build history {}: {source}; check that the disk has room and the file is writable",
        path.display()
    )]
    Sql {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

impl HistoryError {
    /// The error for a SQLite failure on the file at `path`: a damaged file is told apart.
    pub(crate) fn sql(path: &Path, source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let damaged = matches!(
            source.sqlite_error_code(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
        );
        if damaged {
            HistoryError::NotADatabase {
                path: path.to_path_buf(),
                source,
            }
        } else {
            HistoryError::Sql {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `$XDG_DATA_HOME/kiln/history.sqlite`, else `~/.local/share/kiln/history.sqlite` (a
/// relative `XDG_DATA_HOME` is ignored, as the XDG spec says).
pub fn default_path() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("kiln").join(FILE_NAME),
        _ => home().join(".local/share/kiln").join(FILE_NAME),
    }
}
