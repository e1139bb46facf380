//! What the Build panel shows, updated from the engine's events. No drawing here, so the
//! model is tested without a window.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::build::event::{Event, Outcome, Unit};
use crate::build::plan::BuildReport;

use super::log_buffer::LogBuffer;

/// Console lines kept in memory (the whole console is in the build's `serial.log`).
const CONSOLE_CAP: usize = 5_000;

/// Where one step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Not started.
    Pending,
    /// Running now.
    Running,
    /// Finished fine.
    Done,
    /// Not needed, with the reason.
    Skipped(String),
    /// Failed, with the message.
    Failed(String),
    /// Stopped by the user.
    Cancelled,
}

/// One line of the step list.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// The step's name.
    pub name: String,
    /// Where it stands.
    pub state: StepState,
    /// How long it took, once finished.
    pub duration: Option<Duration>,
    /// When it started, while running.
    pub started: Option<Instant>,
}

/// Progress of the running step, with a smoothed rate for the ETA.
#[derive(Debug, Clone)]
pub struct StepProgress {
    /// The step it belongs to.
    pub index: usize,
    /// Done so far.
    pub done: u64,
    /// Total, when known.
    pub total: Option<u64>,
    /// What is counted.
    pub unit: Unit,
    /// Units per second, smoothed; `None` until two samples arrived.
    pub rate: Option<f64>,
    last: (Instant, u64),
}

impl StepProgress {
    /// The fraction done, when the total is known.
    pub fn fraction(&self) -> Option<f32> {
        self.total
            .filter(|t| *t > 0)
            .map(|t| (self.done as f64 / t as f64).clamp(0.0, 1.0) as f32)
    }

    /// Time left at the current rate, when total and rate are known.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let left = self.total?.saturating_sub(self.done) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }
}

/// Everything about one build the panel shows.
#[derive(Debug)]
pub struct BuildState {
    /// The build's name.
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<StepRow>,
    /// Progress of the running step.
    pub progress: Option<StepProgress>,
    /// Provisioner and kiln output.
    pub output: LogBuffer,
    /// The VM's serial console (newest lines).
    pub console: LogBuffer,
    /// Warnings that did not stop the build.
    pub warnings: Vec<String>,
    /// What the cleanups removed or stopped.
    pub cleanups: Vec<String>,
    /// Image test (`kiln-test`) checks, in the order they ended.
    pub checks: Vec<CheckRow>,
    /// How the build ended, once it did.
    pub outcome: Option<Outcome>,
    /// Total time, once ended.
    pub duration: Option<Duration>,
    /// The engine's report (artifact, log folder), once the build task returned.
    pub report: Option<BuildReport>,
    /// Cancel was pressed; cleanups are running.
    pub cancelling: bool,
    /// Paused at a `breakpoint` provisioner, with its note: the VM runs and waits for
    /// Continue.
    pub paused: Option<Paused>,
    /// When the panel started the build.
    pub started: Instant,
}

/// A build waiting at a breakpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// The breakpoint's step.
    pub index: usize,
    /// The recipe's `note` for it.
    pub note: Option<String>,
    /// Continue was pressed; the engine has not moved on yet.
    pub continuing: bool,
}

/// One image-test check as the panel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it found.
    pub detail: String,
}

impl BuildState {
    /// A build that was just asked for.
    pub fn new(name: impl Into<String>, now: Instant) -> Self {
        Self {
            name: name.into(),
            steps: Vec::new(),
            progress: None,
            output: LogBuffer::new(),
            console: LogBuffer::with_cap(CONSOLE_CAP),
            warnings: Vec::new(),
            cleanups: Vec::new(),
            checks: Vec::new(),
            outcome: None,
            duration: None,
            report: None,
            cancelling: false,
            paused: None,
            started: now,
        }
    }

    /// Whether the build task is still running (its report has not come back).
    pub fn is_running(&self) -> bool {
        self.report.is_none()
    }

    /// The artifact of a successful build.
    pub fn artifact(&self) -> Option<&PathBuf> {
        self.report.as_ref().and_then(|r| r.artifact.as_ref())
    }

    /// The final outcome: the report's, else the last `BuildFinished`.
    pub fn final_outcome(&self) -> Option<&Outcome> {
        self.report
            .as_ref()
            .map(|r| &r.outcome)
            .or(self.outcome.as_ref())
    }

    /// Takes in the build task's report.
    pub fn finish(&mut self, report: BuildReport, now: Instant) {
        if self.duration.is_none() {
            self.duration = Some(now - self.started);
        }
        for step in &mut self.steps {
            if step.state == StepState::Running {
                step.state = match &report.outcome {
                    Outcome::Cancelled => StepState::Cancelled,
                    Outcome::Failed(m) => StepState::Failed(m.clone()),
                    _ => StepState::Done,
                };
                step.duration = step.started.map(|s| now - s);
            }
        }
        self.progress = None;
        self.cancelling = false;
        self.paused = None;
        self.report = Some(report);
    }

    /// Applies one event.
    pub fn apply(&mut self, event: Event, now: Instant) {
        match event {
            Event::BuildStarted { build, steps } => {
                self.name = build;
                self.steps = steps
                    .into_iter()
                    .map(|name| StepRow {
                        name,
                        state: StepState::Pending,
                        duration: None,
                        started: None,
                    })
                    .collect();
            }
            Event::StepStarted { index, name } => {
                if let Some(step) = self.step_mut(index, &name) {
                    step.state = StepState::Running;
                    step.started = Some(now);
                }
            }
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => {
                if let (Outcome::Failed(why), Some(step)) = (&outcome, self.steps.get(index)) {
                    self.output
                        .push(&format!("error: {} failed: {why}", step.name));
                }
                if let Some(step) = self.steps.get_mut(index) {
                    step.state = match outcome {
                        Outcome::Done => StepState::Done,
                        Outcome::Skipped(why) => StepState::Skipped(why),
                        Outcome::Failed(why) => StepState::Failed(why),
                        Outcome::Cancelled => StepState::Cancelled,
                    };
                    step.duration = Some(duration);
                    step.started = None;
                }
                if self.progress.as_ref().is_some_and(|p| p.index == index) {
                    self.progress = None;
                }
                if self.paused.as_ref().is_some_and(|p| p.index == index) {
                    self.paused = None;
                }
            }
            Event::Progress {
                index,
                done,
                total,
                unit,
            } => self.progress(index, done, total, unit, now),
            Event::Log { line, .. } => self.output.push(&line),
            Event::Console(line) => self.console.push(&line),
            Event::Warning(message) => {
                self.output.push(&format!("warning: {message}"));
                self.warnings.push(message);
            }
            Event::CleanedUp(message) => self.cleanups.push(message),
            Event::Check {
                name,
                passed,
                detail,
            } => self.checks.push(CheckRow {
                name,
                passed,
                detail,
            }),
            Event::Paused { index, note } => {
                self.output.push(&format!(
                    "paused at a breakpoint{}: press Continue to go on",
                    note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                ));
                self.paused = Some(Paused {
                    index,
                    note,
                    continuing: false,
                });
            }
            Event::BuildFinished { outcome, duration } => {
                let step_failed = self
                    .steps
                    .iter()
                    .any(|s| matches!(s.state, StepState::Failed(_)));
                if let (Outcome::Failed(why), false) = (&outcome, step_failed) {
                    self.output.push(&format!("error: {why}"));
                }
                self.paused = None;
                self.outcome = Some(outcome);
                self.duration = Some(duration);
            }
        }
    }

    /// One-line status for a tab or the sidebar: running, paused, finished, failed…
    pub fn status_word(&self) -> &'static str {
        if self.is_running() {
            return if self.cancelling {
                "cancelling"
            } else if self.paused.is_some() {
                "paused"
            } else {
                "running"
            };
        }
        match self.final_outcome() {
            Some(Outcome::Done | Outcome::Skipped(_)) => "finished",
            Some(Outcome::Failed(_)) => "failed",
            Some(Outcome::Cancelled) => "cancelled",
            None => "ended",
        }
    }

    /// The step at `index`, growing the list if the engine names a step it did not announce.
    fn step_mut(&mut self, index: usize, name: &str) -> Option<&mut StepRow> {
        while self.steps.len() <= index {
            self.steps.push(StepRow {
                name: name.to_string(),
                state: StepState::Pending,
                duration: None,
                started: None,
            });
        }
        self.steps.get_mut(index)
    }

    fn progress(&mut self, index: usize, done: u64, total: Option<u64>, unit: Unit, now: Instant) {
        match &mut self.progress {
            Some(p) if p.index == index => {
                let (then, before) = p.last;
                let dt = (now - then).as_secs_f64();
                if dt >= 0.05 && done >= before {
                    let sample = (done - before) as f64 / dt;
                    p.rate = Some(match p.rate {
                        Some(r) => r * 0.7 + sample * 0.3,
                        None => sample,
                    });
                    p.last = (now, done);
                }
                p.done = done;
                p.total = total;
                p.unit = unit;
            }
            _ => {
                self.progress = Some(StepProgress {
                    index,
                    done,
                    total,
                    unit,
                    rate: None,
                    last: (now, done),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(steps: &[&str]) -> BuildState {
        let now = Instant::now();
        let mut state = BuildState::new("b", now);
        state.apply(
            Event::BuildStarted {
                build: "qemu".into(),
                steps: steps.iter().map(|s| s.to_string()).collect(),
            },
            now,
        );
        state
    }

    #[test]
    fn steps_advance_and_keep_their_durations() {
        let t0 = Instant::now();
        let mut s = started(&["Base image", "Disk"]);
        s.apply(
            Event::StepStarted {
                index: 0,
                name: "Base image".into(),
            },
            t0,
        );
        assert_eq!(s.steps[0].state, StepState::Running);
        assert_eq!(s.steps[1].state, StepState::Pending);
        s.apply(
            Event::StepFinished {
                index: 0,
                outcome: Outcome::Skipped("cached".into()),
                duration: Duration::from_millis(200),
            },
            t0,
        );
        assert_eq!(s.steps[0].state, StepState::Skipped("cached".into()));
        assert_eq!(s.steps[0].duration, Some(Duration::from_millis(200)));
        assert_eq!(s.name, "qemu");
    }

    #[test]
    fn the_rate_and_eta_follow_progress() {
        let t0 = Instant::now();
        let mut s = started(&["Download"]);
        let p = |done| Event::Progress {
            index: 0,
            done,
            total: Some(1000),
            unit: Unit::Bytes,
        };
        s.apply(p(0), t0);
        assert!(s.progress.as_ref().unwrap().eta().is_none());
        s.apply(p(100), t0 + Duration::from_secs(1));
        let progress = s.progress.as_ref().unwrap();
        assert_eq!(progress.rate, Some(100.0));
        assert_eq!(progress.eta(), Some(Duration::from_secs(9)));
        assert_eq!(progress.fraction(), Some(0.1));
    }

    #[test]
    fn a_breakpoint_pauses_until_its_step_ends() {
        let t0 = Instant::now();
        let mut s = started(&["Connect", "Provision 1/1: breakpoint"]);
        s.apply(
            Event::Paused {
                index: 1,
                note: Some("look at /etc".into()),
            },
            t0,
        );
        assert_eq!(s.status_word(), "paused");
        assert_eq!(
            s.paused.as_ref().unwrap().note.as_deref(),
            Some("look at /etc")
        );
        assert!(s.output.line(0).unwrap().contains("(look at /etc)"));
        s.apply(
            Event::StepFinished {
                index: 0,
                outcome: Outcome::Done,
                duration: Duration::from_secs(1),
            },
            t0,
        );
        assert!(
            s.paused.is_some(),
            "another step's end does not end the pause"
        );
        s.apply(
            Event::StepFinished {
                index: 1,
                outcome: Outcome::Done,
                duration: Duration::from_secs(9),
            },
            t0,
        );
        assert_eq!(s.paused, None);
        assert_eq!(s.status_word(), "running");
    }

    #[test]
    fn a_failure_is_in_the_output_whether_a_step_or_the_build_failed() {
        let t0 = Instant::now();
        let mut s = started(&["Boot"]);
        s.apply(
            Event::StepFinished {
                index: 0,
                outcome: Outcome::Failed("qemu exited".into()),
                duration: Duration::from_secs(1),
            },
            t0,
        );
        s.apply(
            Event::BuildFinished {
                outcome: Outcome::Failed("qemu exited".into()),
                duration: Duration::from_secs(1),
            },
            t0,
        );
        assert_eq!(s.output.len(), 1, "the step's failure once, not twice");
        assert_eq!(s.output.line(0).unwrap(), "error: Boot failed: qemu exited");

        let mut s = started(&["Boot"]);
        s.apply(
            Event::BuildFinished {
                outcome: Outcome::Failed("no credentials".into()),
                duration: Duration::from_secs(0),
            },
            t0,
        );
        assert_eq!(s.output.line(0).unwrap(), "error: no credentials");
    }

    #[test]
    fn a_report_closes_a_running_step() {
        let t0 = Instant::now();
        let mut s = started(&["Boot"]);
        s.apply(
            Event::StepStarted {
                index: 0,
                name: "Boot".into(),
            },
            t0,
        );
        assert!(s.is_running());
        s.finish(
            BuildReport {
                outcome: Outcome::Cancelled,
                artifact: None,
                artifacts: Vec::new(),
                log_dir: "/tmp/x".into(),
                templates: Vec::new(),
            },
            t0 + Duration::from_secs(2),
        );
        assert!(!s.is_running());
        assert_eq!(s.steps[0].state, StepState::Cancelled);
        assert_eq!(s.steps[0].duration, Some(Duration::from_secs(2)));
    }
}
