//! What one build leaves in the history, gathered from its events and its report. No I/O
//! here: [`super::recording`] writes what this gathers.
//!
//! Secrets: a sensitive variable keeps its name only; a variable whose value holds one of the
//! recipe's secrets counts as sensitive; a value read from the environment is not kept (a
//! rebuild reads it again); every text passes through a redactor holding the recipe's
//! secrets, on top of the redaction the events already had.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};

use super::model::{
    ArtifactFile, BuildRecord, CheckRecord, Origin, RunOutcome, StepEnd, StepRecord, VarOrigin,
    VariableRecord,
};
use super::process::ProcessStamp;
use crate::build::event::{Event, Outcome};
use crate::build::plan::BuildReport;
use crate::build::postprocess::exoscale_import;
use crate::build::redact::{MIN_SECRET_LEN, Redactor};
use crate::recipe::template::{Build, Recipe};
use crate::recipe::vars::{VarSource, Variable};

/// Gathers one build's record from what the build tells its front end.
#[derive(Debug)]
pub struct Recorder {
    record: BuildRecord,
    redactor: Redactor,
    running_since: Vec<Option<Instant>>,
    clock: Instant,
}

/// Now, to the millisecond the history keeps.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// `d` to the millisecond the history keeps.
fn to_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn variable(v: &Variable, secrets: &[String]) -> VariableRecord {
    let holds_secret = secrets
        .iter()
        .any(|s| s.len() >= MIN_SECRET_LEN && v.value.contains(s.as_str()));
    let sensitive = v.sensitive || holds_secret;
    let origin = match &v.source {
        VarSource::Default if !v.env_names.is_empty() => VarOrigin::Environment,
        VarSource::Default => VarOrigin::Default,
        VarSource::VarFile(_) => VarOrigin::VarFile,
        VarSource::CommandLine => VarOrigin::Given,
    };
    let value = (!sensitive && origin != VarOrigin::Environment).then(|| v.value.clone());
    VariableRecord {
        name: v.name.clone(),
        value,
        sensitive,
        origin,
    }
}

/// The one name the build's `exoscale-import`s register templates under, if they share one.
fn template_name(build: &Build) -> Option<String> {
    let mut names = build
        .post_processors
        .iter()
        .flatten()
        .filter_map(|pp| match &pp.kind {
            crate::recipe::postprocessor::PostProcessorKind::ExoscaleImport(c) => {
                Some(c.template_name.clone())
            }
            _ => None,
        });
    let first = names.next()?;
    names.all(|n| n == first).then_some(first)
}

impl Recorder {
    /// Starts the record of `build` of `recipe` (read from `recipe_path`), run by `origin`,
    /// now.
    pub fn new(recipe_path: &Path, recipe: &Recipe, build: &Build, origin: Origin) -> Self {
        let secrets = recipe.secrets();
        let redactor = Redactor::new();
        for secret in &secrets {
            redactor.register(secret);
        }
        let recipe_file =
            std::path::absolute(recipe_path).unwrap_or_else(|_| recipe_path.to_path_buf());
        let record = BuildRecord {
            id: None,
            recipe: PathBuf::from(redactor.redact(&recipe_file.to_string_lossy())),
            title: recipe
                .description
                .as_deref()
                .map(|d| redactor.redact(d.trim())),
            build_name: redactor.redact(&build.name),
            origin,
            started: now(),
            ended: None,
            duration: None,
            outcome: RunOutcome::Unfinished,
            stopped_at: None,
            log_dir: None,
            steps: Vec::new(),
            variables: recipe
                .variables
                .iter()
                .map(|v| variable(v, &secrets))
                .collect(),
            artifacts: Vec::new(),
            templates: Vec::new(),
            template_name: template_name(build).map(|n| redactor.redact(&n)),
            checks: Vec::new(),
            warnings: 0,
            process: ProcessStamp::current(),
        };
        Self {
            record,
            redactor,
            running_since: Vec::new(),
            clock: Instant::now(),
        }
    }

    /// The record as it stands (an unfinished build until [`Recorder::finish`]).
    pub fn snapshot(&self) -> BuildRecord {
        self.record.clone()
    }

    /// Sets the record's row id once it was stored.
    pub fn set_id(&mut self, id: i64) {
        self.record.id = Some(id);
    }

    fn step(&mut self, index: usize, name: &str) -> &mut StepRecord {
        while self.record.steps.len() <= index {
            self.record.steps.push(StepRecord {
                name: self.redactor.redact(name),
                end: StepEnd::NotRun,
                detail: None,
                duration: None,
            });
        }
        &mut self.record.steps[index]
    }

    /// Takes in one event of the build.
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::BuildStarted { build, steps } => {
                self.record.build_name = self.redactor.redact(build);
                self.record.steps = steps
                    .iter()
                    .map(|name| StepRecord {
                        name: self.redactor.redact(name),
                        end: StepEnd::NotRun,
                        detail: None,
                        duration: None,
                    })
                    .collect();
            }
            Event::StepStarted { index, name } => {
                self.step(*index, name).end = StepEnd::Interrupted;
                if self.running_since.len() <= *index {
                    self.running_since.resize(*index + 1, None);
                }
                self.running_since[*index] = Some(Instant::now());
            }
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => {
                let (end, detail) = match outcome {
                    Outcome::Done => (StepEnd::Done, None),
                    Outcome::Skipped(why) => (StepEnd::Skipped, Some(self.redactor.redact(why))),
                    Outcome::Failed(why) => (StepEnd::Failed, Some(self.redactor.redact(why))),
                    Outcome::Cancelled => (StepEnd::Cancelled, None),
                };
                let step = self.step(*index, "");
                step.end = end;
                step.detail = detail;
                step.duration = Some(to_ms(*duration));
                let name = step.name.clone();
                if matches!(end, StepEnd::Failed | StepEnd::Cancelled)
                    && self.record.stopped_at.is_none()
                {
                    self.record.stopped_at = Some(name);
                }
                if let Some(since) = self.running_since.get_mut(*index) {
                    *since = None;
                }
            }
            Event::Check {
                name,
                passed,
                detail,
            } => self.record.checks.push(CheckRecord {
                name: self.redactor.redact(name),
                passed: *passed,
                detail: self.redactor.redact(detail),
            }),
            Event::Warning(_) => self.record.warnings = self.record.warnings.saturating_add(1),
            Event::BuildFinished { duration, .. } => self.record.duration = Some(to_ms(*duration)),
            Event::Progress { .. }
            | Event::Log { .. }
            | Event::Paused { .. }
            | Event::Console(_)
            | Event::CleanedUp(_) => {}
        }
    }

    /// The finished record, with what the build's report says.
    pub fn finish(mut self, report: &BuildReport) -> BuildRecord {
        let redact = |text: &str| self.redactor.redact(text);
        let record = &mut self.record;
        record.ended = Some(now());
        if record.duration.is_none() {
            record.duration = Some(to_ms(self.clock.elapsed()));
        }
        record.outcome = match &report.outcome {
            Outcome::Done | Outcome::Skipped(_) => RunOutcome::Done,
            Outcome::Failed(why) => RunOutcome::Failed(redact(why)),
            Outcome::Cancelled => RunOutcome::Cancelled,
        };
        // Steps still running when the report came: they ended with the build.
        for (index, step) in record.steps.iter_mut().enumerate() {
            if step.end != StepEnd::Interrupted {
                continue;
            }
            step.end = match &record.outcome {
                RunOutcome::Cancelled => StepEnd::Cancelled,
                RunOutcome::Failed(_) => StepEnd::Failed,
                _ => StepEnd::Done,
            };
            step.duration = self
                .running_since
                .get(index)
                .copied()
                .flatten()
                .map(|since| to_ms(since.elapsed()));
            if step.end != StepEnd::Done && record.stopped_at.is_none() {
                record.stopped_at = Some(step.name.clone());
            }
        }
        record.log_dir = Some(PathBuf::from(redact(&report.log_dir.to_string_lossy())));
        let mut files = Vec::new();
        for artifact in &report.artifacts {
            for file in &artifact.files {
                let path = PathBuf::from(redact(&file.to_string_lossy()));
                if !files.iter().any(|f: &ArtifactFile| f.path == path) {
                    files.push(ArtifactFile {
                        producer: artifact.producer.clone(),
                        path,
                    });
                }
            }
        }
        if files.is_empty()
            && let Some(path) = &report.artifact
        {
            files.push(ArtifactFile {
                producer: String::new(),
                path: PathBuf::from(redact(&path.to_string_lossy())),
            });
        }
        record.artifacts = files;
        let mut templates: Vec<(String, String)> = Vec::new();
        let from_artifacts = report
            .artifacts
            .iter()
            .flat_map(exoscale_import::template_ids);
        for pair in report.templates.iter().cloned().chain(from_artifacts) {
            if !templates.contains(&pair) {
                templates.push(pair);
            }
        }
        record.templates = templates;
        self.record
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::build::artifact::Artifact;
    use crate::recipe::template::{LoadOptions, load_str};
    use std::time::Duration;

    const RECIPE: &str = r#"{
      "description": "History test",
      "variables": {
        "bucket": null,
        "api_secret": "",
        "home": "{{env `HOME`}}",
        "url": "https://example.invalid/{{user `api_secret`}}/x",
        "memory": "1024"
      },
      "sensitive-variables": ["api_secret"],
      "builders": [{
        "type": "qemu",
        "name": "vm",
        "disk_image": true,
        "iso_url": "file:///nonexistent/base.qcow2",
        "iso_checksum": "none",
        "ssh_username": "debian"
      }]
    }"#;

    pub(crate) fn recipe(secret: &str) -> Recipe {
        load_str(
            "recipe.json",
            RECIPE,
            Path::new("/r"),
            &LoadOptions {
                vars: vec![
                    ("bucket".into(), "my-bucket".into()),
                    ("api_secret".into(), secret.into()),
                ],
                ..LoadOptions::default()
            },
        )
        .unwrap()
    }

    pub(crate) fn report(outcome: Outcome) -> BuildReport {
        BuildReport {
            outcome,
            artifact: None,
            artifacts: Vec::new(),
            log_dir: "/tmp/logs".into(),
            templates: Vec::new(),
        }
    }

    fn started(recorder: &mut Recorder) {
        recorder.observe(&Event::BuildStarted {
            build: "vm".into(),
            steps: vec!["Base image".into(), "Disk".into(), "Publish".into()],
        });
    }

    #[test]
    fn variables_keep_given_values_and_never_a_secret() {
        let recipe = recipe("TOPSECRET-1");
        let r = Recorder::new(
            Path::new("/r/recipe.json"),
            &recipe,
            &recipe.builds[0],
            Origin::Cli,
        );
        let vars = r.snapshot().variables;
        let get = |n: &str| vars.iter().find(|v| v.name == n).unwrap().clone();
        assert_eq!(get("bucket").value.as_deref(), Some("my-bucket"));
        assert_eq!(get("bucket").origin, VarOrigin::Given);
        assert_eq!(get("bucket").refill_value(), Some("my-bucket"));
        let secret = get("api_secret");
        assert!(secret.sensitive && secret.value.is_none() && secret.refill_value().is_none());
        // Not declared sensitive, but its value holds the secret.
        let url = get("url");
        assert!(url.sensitive && url.value.is_none());
        // Read from the environment: not kept.
        assert_eq!(get("home").origin, VarOrigin::Environment);
        assert!(get("home").value.is_none());
        assert_eq!(get("memory").value.as_deref(), Some("1024"));
        assert_eq!(get("memory").origin, VarOrigin::Default);
        assert!(get("memory").refill_value().is_none());
        assert!(!format!("{:?}", r.snapshot()).contains("TOPSECRET-1"));
    }

    #[test]
    fn the_record_names_the_template_its_import_registers() {
        let with_import = |post_processors: &str| {
            let text = RECIPE.replace(
                r#""ssh_username": "debian"
      }]"#,
                &format!(
                    r#""ssh_username": "debian"
      }}],
      "post-processors": {post_processors}"#
                ),
            );
            let recipe = load_str(
                "recipe.json",
                &text,
                Path::new("/r"),
                &LoadOptions {
                    vars: vec![("bucket".into(), "my-bucket".into())],
                    ..LoadOptions::default()
                },
            )
            .unwrap();
            let build = recipe.builds[0].clone();
            Recorder::new(Path::new("/r/recipe.json"), &recipe, &build, Origin::Cli)
                .snapshot()
                .template_name
        };
        let import = |name: &str| {
            format!(
                r#"{{"type": "exoscale-import", "api_key": "k", "api_secret": "s", "image_bucket": "b", "image_zone": "ch-gva-2", "template_name": "{name}"}}"#
            )
        };
        assert_eq!(
            with_import(&format!("[{}]", import("Debian {{user `bucket`}}"))).as_deref(),
            Some("Debian my-bucket"),
            "as interpolated"
        );
        assert_eq!(
            with_import(&format!("[{}, {}]", import("One"), import("Two"))),
            None,
            "two names: none is the name"
        );
        assert_eq!(with_import("[]"), None);
    }

    #[test]
    fn a_scripted_build_becomes_a_record() {
        let recipe = recipe("TOPSECRET-2");
        let mut r = Recorder::new(
            Path::new("/r/recipe.json"),
            &recipe,
            &recipe.builds[0],
            Origin::Gui,
        );
        started(&mut r);
        r.observe(&Event::StepStarted {
            index: 0,
            name: "Base image".into(),
        });
        r.observe(&Event::StepFinished {
            index: 0,
            outcome: Outcome::Skipped("cached".into()),
            duration: Duration::from_millis(200),
        });
        r.observe(&Event::StepStarted {
            index: 1,
            name: "Disk".into(),
        });
        r.observe(&Event::StepFinished {
            index: 1,
            outcome: Outcome::Done,
            duration: Duration::from_millis(1100),
        });
        r.observe(&Event::Check {
            name: "cloud_init".into(),
            passed: true,
            detail: "status: done".into(),
        });
        r.observe(&Event::Warning("w".into()));
        r.observe(&Event::StepStarted {
            index: 2,
            name: "Publish".into(),
        });
        r.observe(&Event::StepFinished {
            index: 2,
            outcome: Outcome::Done,
            duration: Duration::from_millis(30),
        });
        r.observe(&Event::BuildFinished {
            outcome: Outcome::Done,
            duration: Duration::from_millis(1400),
        });
        let mut done = report(Outcome::Done);
        done.artifacts = vec![
            Artifact::builder("/out/vm.qcow2"),
            Artifact {
                producer: "exoscale-import".into(),
                id: "ch-gva-2:aaa,de-fra-1:bbb".into(),
                files: Vec::new(),
            },
        ];
        done.templates = vec![("ch-gva-2".into(), "aaa".into())];
        let rec = r.finish(&done);
        assert_eq!(rec.outcome, RunOutcome::Done);
        assert_eq!(rec.origin, Origin::Gui);
        assert_eq!(rec.duration, Some(Duration::from_millis(1400)));
        assert_eq!(rec.title.as_deref(), Some("History test"));
        let steps: Vec<_> = rec
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.end, s.duration))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    "Base image",
                    StepEnd::Skipped,
                    Some(Duration::from_millis(200))
                ),
                ("Disk", StepEnd::Done, Some(Duration::from_millis(1100))),
                ("Publish", StepEnd::Done, Some(Duration::from_millis(30))),
            ]
        );
        assert_eq!(rec.steps[0].detail.as_deref(), Some("cached"));
        assert_eq!(rec.artifacts.len(), 1);
        assert_eq!(rec.artifacts[0].path, PathBuf::from("/out/vm.qcow2"));
        assert_eq!(rec.artifacts[0].producer, "qemu");
        assert_eq!(
            rec.templates,
            [
                ("ch-gva-2".to_string(), "aaa".to_string()),
                ("de-fra-1".to_string(), "bbb".to_string())
            ]
        );
        assert_eq!(rec.checks.len(), 1);
        assert_eq!(rec.warnings, 1);
        assert_eq!(rec.stopped_at, None);
    }

    #[test]
    fn a_failure_names_its_step_and_is_redacted() {
        let recipe = recipe("TOPSECRET-3");
        let mut r = Recorder::new(
            Path::new("/r/recipe.json"),
            &recipe,
            &recipe.builds[0],
            Origin::Cli,
        );
        started(&mut r);
        r.observe(&Event::StepStarted {
            index: 0,
            name: "Base image".into(),
        });
        r.observe(&Event::StepFinished {
            index: 0,
            outcome: Outcome::Failed("cannot fetch /x/TOPSECRET-3/base".into()),
            duration: Duration::from_millis(5),
        });
        let rec = r.finish(&report(Outcome::Failed(
            "Base image: cannot fetch /x/TOPSECRET-3/base".into(),
        )));
        assert_eq!(rec.stopped_at.as_deref(), Some("Base image"));
        assert!(matches!(&rec.outcome, RunOutcome::Failed(m) if m.contains("********")));
        assert_eq!(rec.steps[1].end, StepEnd::NotRun);
        assert!(!format!("{rec:?}").contains("TOPSECRET-3"));
    }

    #[test]
    fn a_cancelled_build_closes_its_running_step() {
        let recipe = recipe("TOPSECRET-4");
        let mut r = Recorder::new(
            Path::new("/r/recipe.json"),
            &recipe,
            &recipe.builds[0],
            Origin::Cli,
        );
        started(&mut r);
        r.observe(&Event::StepStarted {
            index: 0,
            name: "Base image".into(),
        });
        let rec = r.finish(&report(Outcome::Cancelled));
        assert_eq!(rec.outcome, RunOutcome::Cancelled);
        assert_eq!(rec.steps[0].end, StepEnd::Cancelled);
        assert!(rec.steps[0].duration.is_some());
        assert_eq!(rec.stopped_at.as_deref(), Some("Base image"));
    }
}
