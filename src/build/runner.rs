//! The step runner: Packer's multistep idea with Rust ownership. Steps run in order under one
//! cancellation token; each may push cleanups, which are unwound in reverse on success,
//! failure and cancel alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::event::{Event, EventSink, Outcome, Unit};

/// A boxed future, as steps and cleanups return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A step failed: the message says what happened, where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

/// How a step that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDone {
    /// It did its job.
    Done,
    /// It had nothing to do, and why.
    Skipped(String),
}

/// One step of a build. `S` is the build's typed state (what earlier steps produced: the
/// base image, the disk, the keys, the VM, the SSH session…), which replaces Packer's
/// untyped state bag.
pub trait Step<S>: Send {
    /// The name shown in the step list ("Base image", "Boot", …).
    fn name(&self) -> String;

    /// Runs the step. The future may be dropped at any await point when the build is
    /// cancelled, so anything it starts must stop on drop (e.g. `kill_on_drop` children)
    /// or be registered as a cleanup with [`StepContext::defer`].
    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut S,
    ) -> BoxFuture<'a, Result<StepDone, StepError>>;
}

type CleanupFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

struct Cleanup {
    what: String,
    run: CleanupFn,
    /// Removes files a failed build may be debugged with: skipped under [`OnError::Abort`].
    removes_files: bool,
    /// Set while the step ran when what the cleanup removes must stay after all.
    keep: Option<KeepReason>,
}

/// Why what a deferred cleanup would remove must stay, decided while the step runs (an
/// object Exoscale may still download, say). Clones share the reason.
#[derive(Debug, Clone, Default)]
pub struct KeepReason(Arc<Mutex<Option<String>>>);

impl KeepReason {
    /// Keeps it, for this reason (reported as a warning instead of running the cleanup).
    pub fn set(&self, why: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.into());
    }

    /// The reason, when one was set.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What happens to a failed build's files (`kiln build --on-error`, as Packer's flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// Remove everything the build made (the default).
    #[default]
    Cleanup,
    /// Keep the disk, the scratch files and the logs for debugging; the VM is still stopped.
    Abort,
}

/// What a running step can use: events, the cancellation token, and the cleanup stack.
pub struct StepContext {
    index: usize,
    events: EventSink,
    cancel: CancellationToken,
    cleanups: Vec<Cleanup>,
}

impl StepContext {
    /// A context for step `index` outside a runner (tests, tools that run one step); its
    /// cleanups are dropped without running.
    pub fn detached(index: usize, events: EventSink, cancel: CancellationToken) -> Self {
        Self {
            index,
            events,
            cancel,
            cleanups: Vec::new(),
        }
    }

    /// The step's position in the build.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The event sink (lines sent through it are redacted).
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// The build's cancellation token.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Logs a line of kiln's own for this step.
    pub fn log(&self, line: impl Into<String>) {
        self.events.log(Some(self.index), line);
    }

    /// Reports progress of this step.
    pub fn progress(&self, done: u64, total: Option<u64>, unit: Unit) {
        self.events.send(Event::Progress {
            index: self.index,
            done,
            total,
            unit,
        });
    }

    /// Registers a cleanup, run after the last step in reverse order of registration,
    /// whatever the outcome. `what` says what it removes or stops ("the VM", "the temporary
    /// disk /tmp/…") and is reported when it ran.
    pub fn defer<F, Fut>(&mut self, what: impl Into<String>, cleanup: F)
    where
        F: FnOnce() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.push_cleanup(
            what.into(),
            Box::new(move || Box::pin(cleanup())),
            false,
            None,
        );
    }

    /// Like [`StepContext::defer`], for a cleanup that is skipped when `keep` holds a reason
    /// by then: the build warns "kept WHAT: REASON" instead.
    pub fn defer_unless_kept<F, Fut>(
        &mut self,
        what: impl Into<String>,
        keep: KeepReason,
        cleanup: F,
    ) where
        F: FnOnce() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.push_cleanup(
            what.into(),
            Box::new(move || Box::pin(cleanup())),
            false,
            Some(keep),
        );
    }

    /// Like [`StepContext::defer`], for a cleanup that removes files: after a failure with
    /// [`OnError::Abort`] it is skipped and the build says what it kept.
    pub fn defer_removal<F, Fut>(&mut self, what: impl Into<String>, cleanup: F)
    where
        F: FnOnce() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.push_cleanup(
            what.into(),
            Box::new(move || Box::pin(cleanup())),
            true,
            None,
        );
    }

    fn push_cleanup(
        &mut self,
        what: String,
        run: CleanupFn,
        removes_files: bool,
        keep: Option<KeepReason>,
    ) {
        self.cleanups.push(Cleanup {
            what,
            run,
            removes_files,
            keep,
        });
    }
}

/// Runs `steps` in order and unwinds their cleanups; returns how the build ended. Every
/// step start and end, every cleanup and the end of the build are sent to `events`. After a
/// failure, `on_error` decides whether cleanups that remove files run.
pub async fn run<S: Send>(
    build: &str,
    steps: Vec<Box<dyn Step<S>>>,
    state: &mut S,
    events: EventSink,
    cancel: CancellationToken,
    on_error: OnError,
) -> Outcome {
    let started = Instant::now();
    events.send(Event::BuildStarted {
        build: build.to_string(),
        steps: steps.iter().map(|s| s.name()).collect(),
    });
    let mut ctx = StepContext {
        index: 0,
        events: events.clone(),
        cancel: cancel.clone(),
        cleanups: Vec::new(),
    };
    let mut outcome = Outcome::Done;
    for (index, mut step) in steps.into_iter().enumerate() {
        if cancel.is_cancelled() {
            outcome = Outcome::Cancelled;
            break;
        }
        ctx.index = index;
        events.send(Event::StepStarted {
            index,
            name: step.name(),
        });
        let step_started = Instant::now();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            r = step.run(&mut ctx, state) => Some(r),
        };
        let step_outcome = match result {
            None => Outcome::Cancelled,
            Some(Ok(StepDone::Done)) => Outcome::Done,
            Some(Ok(StepDone::Skipped(why))) => Outcome::Skipped(why),
            Some(Err(StepError(message))) => Outcome::Failed(failure(&step.name(), &message)),
        };
        events.send(Event::StepFinished {
            index,
            outcome: step_outcome.clone(),
            duration: step_started.elapsed(),
        });
        if matches!(step_outcome, Outcome::Failed(_) | Outcome::Cancelled) {
            outcome = step_outcome;
            break;
        }
    }
    let keep_files = on_error == OnError::Abort && matches!(outcome, Outcome::Failed(_));
    while let Some(cleanup) = ctx.cleanups.pop() {
        if keep_files && cleanup.removes_files {
            events.send(Event::Warning(format!(
                "kept {} for debugging (--on-error=abort)",
                cleanup.what
            )));
            continue;
        }
        if let Some(why) = cleanup.keep.as_ref().and_then(KeepReason::reason) {
            events.send(Event::Warning(format!("kept {}: {why}", cleanup.what)));
            continue;
        }
        match (cleanup.run)().await {
            Ok(()) => events.send(Event::CleanedUp(cleanup.what)),
            Err(e) => events.send(Event::Warning(format!(
                "cleanup of {} failed: {e}",
                cleanup.what
            ))),
        }
    }
    events.send(Event::BuildFinished {
        outcome: outcome.clone(),
        duration: started.elapsed(),
    });
    outcome
}

/// A failed step's message, prefixed with the step's name — once: a message that already
/// starts with what the name ends with (`Post-processor 1/1: exoscale-import` and
/// `exoscale-import: set both…`) is not prefixed twice.
fn failure(step_name: &str, message: &str) -> String {
    let kind = step_name.rsplit(": ").next().unwrap_or(step_name);
    let rest = message
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(message);
    format!("{step_name}: {rest}")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failure_names_its_step_once() {
        assert_eq!(
            failure(
                "Post-processor 1/1: exoscale-import",
                "exoscale-import: set both `api_key` and `api_secret`"
            ),
            "Post-processor 1/1: exoscale-import: set both `api_key` and `api_secret`"
        );
        assert_eq!(failure("Connect", "no SSH port"), "Connect: no SSH port");
        assert_eq!(
            failure("Provision 1/2: shell", "shellcheck: x"),
            "Provision 1/2: shell: shellcheck: x"
        );
    }
    use crate::build::redact::Redactor;

    /// A step that records its cleanup in `journal`, then does `action`.
    struct Scripted {
        name: &'static str,
        journal: Arc<Mutex<Vec<String>>>,
        action: &'static str,
    }

    impl Step<()> for Scripted {
        fn name(&self) -> String {
            self.name.to_string()
        }

        fn run<'a>(
            &'a mut self,
            ctx: &'a mut StepContext,
            _state: &'a mut (),
        ) -> BoxFuture<'a, Result<StepDone, StepError>> {
            Box::pin(async move {
                let journal = self.journal.clone();
                let name = self.name;
                self.journal.lock().unwrap().push(format!("run {name}"));
                let keep = KeepReason::default();
                if name.starts_with("upload") {
                    let journal = journal.clone();
                    ctx.defer_unless_kept(
                        format!("{name}'s object"),
                        keep.clone(),
                        move || async move {
                            journal.lock().unwrap().push(format!("delete {name}"));
                            Ok(())
                        },
                    );
                }
                if name.starts_with("disk") {
                    ctx.defer_removal(format!("{name}'s files"), move || async move {
                        journal.lock().unwrap().push(format!("remove {name}"));
                        Ok(())
                    });
                } else {
                    ctx.defer(format!("{name}'s mess"), move || async move {
                        journal.lock().unwrap().push(format!("clean {name}"));
                        Ok(())
                    });
                }
                match self.action {
                    "keep-and-fail" => {
                        keep.set("someone may still read it");
                        Err(StepError("outcome unknown".into()))
                    }
                    "fail" => Err(StepError("it broke; fix it".into())),
                    "skip" => Ok(StepDone::Skipped("cached".into())),
                    "hang" => {
                        ctx.cancel().cancel();
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(StepDone::Done)
                    }
                    _ => Ok(StepDone::Done),
                }
            })
        }
    }

    async fn run_script(
        actions: &[(&'static str, &'static str)],
    ) -> (Outcome, Vec<String>, Vec<Event>) {
        run_script_with(actions, OnError::Cleanup).await
    }

    async fn run_script_with(
        actions: &[(&'static str, &'static str)],
        on_error: OnError,
    ) -> (Outcome, Vec<String>, Vec<Event>) {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let steps: Vec<Box<dyn Step<()>>> = actions
            .iter()
            .map(|(name, action)| {
                Box::new(Scripted {
                    name,
                    journal: journal.clone(),
                    action,
                }) as Box<dyn Step<()>>
            })
            .collect();
        let (sink, mut rx) = EventSink::channel(Redactor::new());
        let outcome = run(
            "test",
            steps,
            &mut (),
            sink,
            CancellationToken::new(),
            on_error,
        )
        .await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        let journal = journal.lock().unwrap().clone();
        (outcome, journal, events)
    }

    #[tokio::test]
    async fn abort_keeps_files_after_a_failure_but_still_runs_other_cleanups() {
        let script = [("disk", "ok"), ("vm", "ok"), ("provision", "fail")];
        let (outcome, journal, events) = run_script_with(&script, OnError::Abort).await;
        assert!(matches!(outcome, Outcome::Failed(_)));
        assert_eq!(
            journal,
            [
                "run disk",
                "run vm",
                "run provision",
                "clean provision",
                "clean vm"
            ]
        );
        assert!(events.iter().any(|e| matches!(e,
            Event::Warning(w) if w == "kept disk's files for debugging (--on-error=abort)")));
        // The same build with the default policy removes the files.
        let (_, journal, _) = run_script_with(&script, OnError::Cleanup).await;
        assert!(journal.contains(&"remove disk".to_string()), "{journal:?}");
        // A successful build under Abort cleans up as usual.
        let (outcome, journal, _) =
            run_script_with(&[("disk", "ok"), ("vm", "ok")], OnError::Abort).await;
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(journal, ["run disk", "run vm", "clean vm", "remove disk"]);
    }

    #[tokio::test]
    async fn a_cleanup_whose_step_set_a_keep_reason_is_skipped_with_a_warning() {
        let (outcome, journal, events) = run_script(&[("upload", "keep-and-fail")]).await;
        assert!(matches!(outcome, Outcome::Failed(_)));
        assert_eq!(journal, ["run upload", "clean upload"]);
        assert!(events.iter().any(|e| matches!(e,
            Event::Warning(w) if w == "kept upload's object: someone may still read it")));
        assert!(!events.contains(&Event::CleanedUp("upload's object".into())));
        // Without a reason it runs, on failure as on success.
        let (_, journal, _) = run_script(&[("upload", "fail")]).await;
        assert_eq!(journal, ["run upload", "clean upload", "delete upload"]);
        let (_, journal, events) = run_script(&[("upload", "ok")]).await;
        assert_eq!(journal, ["run upload", "clean upload", "delete upload"]);
        assert!(events.contains(&Event::CleanedUp("upload's object".into())));
    }

    #[tokio::test]
    async fn success_unwinds_cleanups_in_reverse() {
        let (outcome, journal, events) =
            run_script(&[("a", "ok"), ("b", "skip"), ("c", "ok")]).await;
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(
            journal,
            ["run a", "run b", "run c", "clean c", "clean b", "clean a"]
        );
        assert!(events.contains(&Event::CleanedUp("a's mess".into())));
        assert!(matches!(
            events.last(),
            Some(Event::BuildFinished {
                outcome: Outcome::Done,
                ..
            })
        ));
        assert!(events.iter().any(|e| matches!(e, Event::StepFinished { index: 1, outcome: Outcome::Skipped(w), .. } if w == "cached")));
    }

    #[tokio::test]
    async fn failure_stops_and_names_the_step() {
        let (outcome, journal, _) = run_script(&[("a", "ok"), ("b", "fail"), ("c", "ok")]).await;
        assert_eq!(outcome, Outcome::Failed("b: it broke; fix it".into()));
        assert_eq!(journal, ["run a", "run b", "clean b", "clean a"]);
    }

    #[tokio::test]
    async fn cancel_drops_the_running_step_and_still_cleans_up() {
        let (outcome, journal, events) =
            run_script(&[("a", "ok"), ("b", "hang"), ("c", "ok")]).await;
        assert_eq!(outcome, Outcome::Cancelled);
        assert_eq!(journal, ["run a", "run b", "clean b", "clean a"]);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::StepFinished {
                index: 1,
                outcome: Outcome::Cancelled,
                ..
            }
        )));
    }
}
