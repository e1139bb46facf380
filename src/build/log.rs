//! Events as plain text lines: the build's `build.log` and the command line's non-TTY output.

use crate::build::event::{Event, Outcome, Stream, Unit};
use crate::recipe::units::format_bytes;

/// Remembers step names so that lines can name the step.
#[derive(Debug, Default, Clone)]
pub struct LineFormatter {
    steps: Vec<String>,
    last_percent: Option<(usize, u64)>,
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl LineFormatter {
    /// A formatter that has seen no event yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn step(&self, index: usize) -> &str {
        self.steps.get(index).map(String::as_str).unwrap_or("?")
    }

    /// The line for `event`, or `None` when it is not worth a line (e.g. progress that
    /// moved less than 10 %). Console lines are included; callers that show them elsewhere
    /// can skip [`Event::Console`].
    pub fn line(&mut self, event: &Event) -> Option<String> {
        match event {
            Event::BuildStarted { build, steps } => {
                self.steps = steps.clone();
                Some(format!("==> build `{build}`: {}", steps.join(" · ")))
            }
            Event::StepStarted { name, .. } => Some(format!("==> {name}")),
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => Some(match outcome {
                Outcome::Done => {
                    format!("    {} done in {}", self.step(*index), seconds(*duration))
                }
                Outcome::Skipped(why) => format!("    {} skipped: {why}", self.step(*index)),
                Outcome::Failed(why) => format!(
                    "!!! {} failed after {}: {why}",
                    self.step(*index),
                    seconds(*duration)
                ),
                Outcome::Cancelled => format!("!!! {} cancelled", self.step(*index)),
            }),
            Event::Progress {
                index,
                done,
                total,
                unit,
            } => {
                let total = (*total)?;
                if total == 0 {
                    return None;
                }
                let percent = done.saturating_mul(100) / total;
                let bucket = percent / 10 * 10;
                if self.last_percent == Some((*index, bucket)) {
                    return None;
                }
                self.last_percent = Some((*index, bucket));
                let shown = match unit {
                    Unit::Bytes => format!("{} of {}", format_bytes(*done), format_bytes(total)),
                    Unit::Items => format!("{done} of {total}"),
                };
                Some(format!("    {}: {bucket}% ({shown})", self.step(*index)))
            }
            Event::Log { stream, line, .. } => Some(match stream {
                Stream::Stdout => format!("    | {line}"),
                Stream::Stderr => format!("    ! {line}"),
                Stream::Kiln => format!("    {line}"),
            }),
            Event::Console(line) => Some(format!("    console: {line}")),
            Event::Paused { index, note } => Some(match note {
                Some(note) => format!("    {} paused: {note}", self.step(*index)),
                None => format!("    {} paused", self.step(*index)),
            }),
            Event::Warning(w) => Some(format!("warning: {w}")),
            Event::CleanedUp(what) => Some(format!("    cleaned up {what}")),
            Event::Check {
                name,
                passed,
                detail,
            } => Some(format!(
                "    check {}: {name}: {detail}",
                if *passed { "PASS" } else { "FAIL" }
            )),
            Event::BuildFinished { outcome, duration } => Some(match outcome {
                Outcome::Done => format!("==> build finished in {}", seconds(*duration)),
                Outcome::Skipped(why) => format!("==> build skipped: {why}"),
                Outcome::Failed(why) => {
                    format!("==> build FAILED after {}: {why}", seconds(*duration))
                }
                Outcome::Cancelled => format!("==> build cancelled after {}", seconds(*duration)),
            }),
        }
    }
}
