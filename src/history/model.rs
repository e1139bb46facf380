//! What the history holds about one build, as plain values (no SQL here).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::process::ProcessStamp;

/// Which front end ran the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The window.
    Gui,
    /// `kiln build`.
    Cli,
}

impl Origin {
    /// The word stored in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Gui => "gui",
            Origin::Cli => "cli",
        }
    }

    /// Reads a stored word; anything unknown reads as `Cli`.
    pub fn parse(text: &str) -> Self {
        if text == "gui" {
            Origin::Gui
        } else {
            Origin::Cli
        }
    }
}

/// How a recorded build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Not recorded as ended, and its kiln is still running (or, for a build recorded by an
    /// older kiln that did not note its process, kiln cannot tell).
    Unfinished,
    /// Not recorded as ended, and the kiln that ran it is gone (killed, crashed, or the
    /// machine restarted): it will never end. Worked out when the history is read.
    Interrupted,
    /// Built.
    Done,
    /// Failed, with the (redacted) message.
    Failed(String),
    /// Cancelled by the user.
    Cancelled,
}

impl RunOutcome {
    /// The word stored in the file.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunOutcome::Unfinished => "unfinished",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Done => "done",
            RunOutcome::Failed(_) => "failed",
            RunOutcome::Cancelled => "cancelled",
        }
    }

    /// From the stored word and message; anything unknown reads as `Unfinished`.
    pub fn parse(text: &str, message: Option<String>) -> Self {
        match text {
            "done" => RunOutcome::Done,
            "failed" => RunOutcome::Failed(message.unwrap_or_default()),
            "cancelled" => RunOutcome::Cancelled,
            "interrupted" => RunOutcome::Interrupted,
            _ => RunOutcome::Unfinished,
        }
    }

    /// The failure message, if it failed.
    pub fn message(&self) -> Option<&str> {
        match self {
            RunOutcome::Failed(m) => Some(m),
            _ => None,
        }
    }
}

/// How a recorded step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    /// It never started.
    NotRun,
    /// It was running when the build's end was recorded (or kiln stopped).
    Interrupted,
    /// It did its job.
    Done,
    /// It was not needed.
    Skipped,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl StepEnd {
    /// The word stored in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            StepEnd::NotRun => "not-run",
            StepEnd::Interrupted => "interrupted",
            StepEnd::Done => "done",
            StepEnd::Skipped => "skipped",
            StepEnd::Failed => "failed",
            StepEnd::Cancelled => "cancelled",
        }
    }

    /// From the stored word; anything unknown reads as `Interrupted`.
    pub fn parse(text: &str) -> Self {
        match text {
            "not-run" => StepEnd::NotRun,
            "done" => StepEnd::Done,
            "skipped" => StepEnd::Skipped,
            "failed" => StepEnd::Failed,
            "cancelled" => StepEnd::Cancelled,
            _ => StepEnd::Interrupted,
        }
    }
}

/// One step of a recorded build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// How it ended.
    pub end: StepEnd,
    /// Why it was skipped or failed (redacted).
    pub detail: Option<String>,
    /// How long it took, when it ran.
    pub duration: Option<Duration>,
}

/// Where a recorded variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarOrigin {
    /// The recipe's default.
    Default,
    /// The recipe's default read from the environment (the value is not stored: a rebuild
    /// reads the environment again).
    Environment,
    /// A `-var-file`.
    VarFile,
    /// `-var` on the command line or the window's form.
    Given,
}

impl VarOrigin {
    /// The word stored in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            VarOrigin::Default => "default",
            VarOrigin::Environment => "environment",
            VarOrigin::VarFile => "var-file",
            VarOrigin::Given => "given",
        }
    }

    /// From the stored word; anything unknown reads as `Default` (not refilled on rebuild).
    pub fn parse(text: &str) -> Self {
        match text {
            "environment" => VarOrigin::Environment,
            "var-file" => VarOrigin::VarFile,
            "given" => VarOrigin::Given,
            _ => VarOrigin::Default,
        }
    }
}

/// One variable of a recorded build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableRecord {
    /// Its name.
    pub name: String,
    /// Its value; `None` for a sensitive variable (never stored) or one read from the
    /// environment.
    pub value: Option<String>,
    /// Listed in `sensitive-variables`, or its value holds a secret of the recipe.
    pub sensitive: bool,
    /// Where the value came from.
    pub origin: VarOrigin,
}

impl VariableRecord {
    /// The value a rebuild puts in the form: only values someone gave (form, `-var`,
    /// var file), never a sensitive one, never a default.
    pub fn refill_value(&self) -> Option<&str> {
        match self.origin {
            VarOrigin::Given | VarOrigin::VarFile if !self.sensitive => self.value.as_deref(),
            _ => None,
        }
    }
}

/// One file an artifact of the build lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Who made it (`qemu`, a post-processor's type).
    pub producer: String,
    /// The file.
    pub path: PathBuf,
}

/// One image-test (`kiln-test`) check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Its one-line summary (redacted).
    pub detail: String,
}

/// Everything the history keeps about one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRecord {
    /// Its row id, once stored.
    pub id: Option<i64>,
    /// The recipe file (absolute when it could be made so).
    pub recipe: PathBuf,
    /// The recipe's description.
    pub title: Option<String>,
    /// The build's name.
    pub build_name: String,
    /// Which front end ran it.
    pub origin: Origin,
    /// When it started (UTC).
    pub started: DateTime<Utc>,
    /// When it ended (UTC), once it did.
    pub ended: Option<DateTime<Utc>>,
    /// How long it ran, once it ended.
    pub duration: Option<Duration>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The step that failed or was cancelled.
    pub stopped_at: Option<String>,
    /// The folder with `build.log` and `serial.log`.
    pub log_dir: Option<PathBuf>,
    /// The steps, in order.
    pub steps: Vec<StepRecord>,
    /// The variables, in the recipe's order.
    pub variables: Vec<VariableRecord>,
    /// The artifacts' files.
    pub artifacts: Vec<ArtifactFile>,
    /// (zone, template id) registered by `exoscale-import`.
    pub templates: Vec<(String, String)>,
    /// The name those templates were registered under (the `template_name` of the build's
    /// `exoscale-import`, as interpolated; none when it publishes under several names or
    /// nothing, and for builds recorded before kiln noted it).
    pub template_name: Option<String>,
    /// Image-test checks.
    pub checks: Vec<CheckRecord>,
    /// How many warnings the build gave.
    pub warnings: u32,
    /// The kiln process that recorded it (`None` where `/proc` could not be read, and for
    /// builds recorded before kiln noted it).
    pub process: Option<ProcessStamp>,
}

impl BuildRecord {
    /// The outcome as it stands now: an unfinished build whose kiln is gone is
    /// [`RunOutcome::Interrupted`].
    pub fn settle(&mut self) {
        if self.outcome == RunOutcome::Unfinished
            && self.process.as_ref().is_some_and(ProcessStamp::is_gone)
        {
            self.outcome = RunOutcome::Interrupted;
        }
    }

    /// The recipe's file name, for tables.
    pub fn recipe_name(&self) -> String {
        self.recipe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.recipe.display().to_string())
    }

    /// The step that was running when the record was last written, if one was.
    pub fn running_step(&self) -> Option<&str> {
        self.steps
            .iter()
            .find(|s| s.end == StepEnd::Interrupted)
            .map(|s| s.name.as_str())
    }

    /// The first artifact file, if any.
    pub fn main_artifact(&self) -> Option<&ArtifactFile> {
        self.artifacts.first()
    }

    /// The templates as `zone:id`, comma separated.
    pub fn templates_text(&self) -> String {
        self.templates
            .iter()
            .map(|(zone, id)| format!("{zone}:{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
