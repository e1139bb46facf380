//! How the window reaches the build engine: an `Engine` runs one build and reports through an
//! event sink; `start` runs it on the tokio runtime and forwards its events to the window,
//! waking it for each one, and records the build in the history on the way. Tests put an
//! engine double behind the same trait.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::build::breakpoint::Resume;
use crate::build::event::{Event, EventSink};
use crate::build::plan::{BuildOptions, BuildReport, run_build};
use crate::build::publish::{PublishOptions, run_publish};
use crate::build::redact::Redactor;
use crate::history::recording as history;
use crate::history::{BuildRecord, History, HistoryError, Origin, Recorder, Recording};
use crate::host::Check;
use crate::recipe::template::{Build, Recipe};

/// A build in progress, as a future the runtime polls.
pub type BuildFuture = Pin<Box<dyn Future<Output = BuildReport> + Send>>;

/// Which of the window's builds a message is about (several can run at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BuildId(pub u64);

/// What the window holds to steer a running build.
#[derive(Debug, Clone, Default)]
pub struct BuildControls {
    /// Fires to cancel the build (its cleanups still run).
    pub cancel: CancellationToken,
    /// Continues the build when it is paused at a `breakpoint` provisioner.
    pub resume: Resume,
    /// Whether the build uses the step cache.
    pub step_cache: StepCacheUse,
}

/// Whether a build uses the step cache (the form's "Resume from the step cache"), and the
/// provisioner it runs again from ("Rebuild from here").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepCacheUse {
    /// Resume from the last unchanged step and save the VM after each.
    pub on: bool,
    /// Run provisioner N and after again even when cached.
    pub rerun_from: Option<usize>,
}

/// Runs builds. The window never builds anything itself.
pub trait Engine: Send + Sync {
    /// Runs `build` of `recipe`, sending its events to `events`; it stops when
    /// `controls.cancel` fires and continues from a breakpoint when `controls.resume` does.
    fn build(
        &self,
        recipe: Recipe,
        build: Build,
        events: EventSink,
        controls: BuildControls,
    ) -> BuildFuture;

    /// Publishes the image of `recipe` (made by [`PublishRequest::recipe`], choices applied)
    /// as `kiln publish` does, sending its events to `events`; it stops when
    /// `controls.cancel` fires.
    ///
    /// [`PublishRequest::recipe`]: crate::build::publish::PublishRequest::recipe
    fn publish(&self, recipe: Recipe, events: EventSink, controls: BuildControls) -> BuildFuture {
        Box::pin(async move {
            run_publish(&recipe, &PublishOptions::default(), events, controls.cancel).await
        })
    }
}

/// What a build tab runs: a build of a recipe, or a publication (whose recipe is made by
/// [`crate::build::publish::PublishRequest::recipe`]).
#[derive(Debug, Clone)]
pub struct Job {
    /// The recipe.
    pub recipe: Recipe,
    /// Its build that runs.
    pub build: Build,
    /// Which it is.
    pub kind: JobKind,
    /// Whether it uses the step cache.
    pub step_cache: StepCacheUse,
}

/// Whether a build tab builds or publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JobKind {
    /// A recipe's build.
    #[default]
    Build,
    /// Publishing an existing image ("Publish an image…" in the Templates place).
    Publish,
}

/// The real engine: `kiln::build::plan::run_build`, as `kiln build` uses it.
#[derive(Debug, Clone, Default)]
pub struct RealEngine {
    /// Options beyond the recipe (cache, state and output directories).
    pub options: BuildOptions,
}

impl Engine for RealEngine {
    fn build(
        &self,
        recipe: Recipe,
        build: Build,
        events: EventSink,
        controls: BuildControls,
    ) -> BuildFuture {
        // The window's Continue button is the one who continues a breakpoint.
        let options = BuildOptions {
            resume: Some(controls.resume),
            step_cache: controls.step_cache.on,
            rerun_from: controls.step_cache.rerun_from,
            ..self.options.clone()
        };
        Box::pin(async move { run_build(&recipe, &build, &options, events, controls.cancel).await })
    }

    fn publish(&self, recipe: Recipe, events: EventSink, controls: BuildControls) -> BuildFuture {
        let options = PublishOptions {
            state_dir: self.options.state_dir.clone(),
        };
        Box::pin(async move { run_publish(&recipe, &options, events, controls.cancel).await })
    }
}

/// What background work tells the window.
#[derive(Debug)]
pub enum Message {
    /// An event of a running build, with when it arrived from the engine (rates are computed
    /// from these times, not from when the window got round to drawing).
    Event(BuildId, Event, std::time::Instant),
    /// A build task returned.
    Finished(BuildId, BuildReport),
    /// The host check is done.
    HostChecked(Vec<Check>),
    /// A credentials action is done (or the first read): what the keyring holds now.
    Credentials(super::credentials::Snapshot),
    /// A templates listing (after an action, when there was one).
    Templates(super::templates::Listing),
    /// The history as read (newest first), or why it could not be read.
    History(Result<Vec<BuildRecord>, String>),
}

/// Where a build started from the window is recorded.
#[derive(Debug, Clone)]
pub struct HistoryTarget {
    /// The history file.
    pub db: PathBuf,
    /// The recipe file the build comes from.
    pub recipe_path: PathBuf,
}

/// The sending end of the window's inbox: every message wakes the window.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Message>,
    ctx: egui::Context,
}

impl Inbox {
    /// An inbox that wakes `ctx`, and the receiver the window drains each frame.
    pub fn new(ctx: egui::Context) -> (Self, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel();
        (Self { tx, ctx }, rx)
    }

    /// Delivers `message` and asks for a repaint. A closed window is not an error.
    pub fn send(&self, message: Message) {
        if self.tx.send(message).is_ok() {
            self.ctx.request_repaint();
        }
    }
}

/// Starts `job` (a build or a publication) on `runtime` as build `id`; its events and then its report arrive in
/// `inbox`, tagged with `id`. With a `history`, the build is recorded there (off the window's
/// thread); a history that cannot be written arrives as a warning of the build. Returns the
/// controls that cancel or continue it.
pub fn start(
    runtime: &Handle,
    engine: &dyn Engine,
    id: BuildId,
    job: Job,
    inbox: Inbox,
    history: Option<HistoryTarget>,
) -> BuildControls {
    let Job {
        recipe,
        build,
        kind,
        step_cache,
    } = job;
    let controls = BuildControls {
        step_cache,
        ..BuildControls::default()
    };
    let recorder = history.map(|h| {
        let recorder = Recorder::new(&h.recipe_path, &recipe, &build, Origin::Gui);
        (h.db, recorder)
    });
    let (events, mut rx) = EventSink::channel(Redactor::new());
    let task = runtime.spawn(match kind {
        JobKind::Build => engine.build(recipe, build, events, controls.clone()),
        JobKind::Publish => engine.publish(recipe, events, controls.clone()),
    });
    runtime.spawn(async move {
        // The history is opened on a blocking thread while the events flow (opening it must
        // not hold them back); the recorder itself only keeps them in memory.
        let (mut recorder, mut begun) = match recorder {
            Some((db, recorder)) => {
                let snapshot = recorder.snapshot();
                let path = db.clone();
                let task = tokio::task::spawn_blocking(move || history::begin(&path, &snapshot));
                (Some((db, recorder)), Begin::Running(task))
            }
            None => (None, Begin::Off),
        };
        let mut pass_on = |event: Event| {
            if let Some((_, recorder)) = &mut recorder {
                recorder.observe(&event);
            }
            inbox.send(Message::Event(id, event, std::time::Instant::now()));
        };
        let mut task = task;
        let report = loop {
            tokio::select! {
                Some(event) = rx.recv() => pass_on(event),
                opened = begun.wait(), if begun.is_running() => {
                    begun = begun_to(opened, id, &inbox);
                }
                joined = &mut task => break joined,
            }
        };
        while let Ok(event) = rx.try_recv() {
            pass_on(event);
        }
        if begun.is_running() {
            let opened = begun.wait().await;
            begun = begun_to(opened, id, &inbox);
        }
        let report = report.unwrap_or_else(|e| {
            BuildReport::nothing(
                crate::build::event::Outcome::Failed(format!(
                    "the build task stopped unexpectedly: {e}"
                )),
                crate::build::plan::default_state_dir(),
            )
        });
        // Recorded before the window hears of the end, so a History read after it sees it.
        if let (Some((db, recorder)), Begin::Done(opened)) = (recorder, begun) {
            let for_history = report.clone();
            let written = tokio::task::spawn_blocking(move || {
                let (recording, _) = Recording::resume(&db, recorder, Ok(opened));
                recording.finish(&for_history).1
            })
            .await;
            if let Ok(Some(warn)) = written {
                inbox.send(Message::Event(
                    id,
                    Event::Warning(warn),
                    std::time::Instant::now(),
                ));
            }
        }
        inbox.send(Message::Finished(id, report));
    });
    controls
}

/// Where opening the history for a build stands.
enum Begin {
    /// No history.
    Off,
    /// Opening it, writing the build as unfinished.
    Running(tokio::task::JoinHandle<Result<(History, i64), HistoryError>>),
    /// Opened; the build's row id.
    Done((History, i64)),
    /// It could not be opened (the window was warned).
    Failed,
}

impl Begin {
    fn is_running(&self) -> bool {
        matches!(self, Begin::Running(_))
    }

    /// Waits for the opening (only called while it runs).
    async fn wait(&mut self) -> Result<(History, i64), String> {
        match self {
            Begin::Running(task) => match task.await {
                Ok(Ok(opened)) => Ok(opened),
                Ok(Err(e)) => Err(crate::history::recording::warning(&e)),
                Err(e) => Err(format!("this build is not recorded in the history: {e}")),
            },
            _ => Err("the history was not being opened".into()),
        }
    }
}

/// What the opening gave: the history, or a warning for the window and no history.
fn begun_to(opened: Result<(History, i64), String>, id: BuildId, inbox: &Inbox) -> Begin {
    match opened {
        Ok(opened) => Begin::Done(opened),
        Err(warn) => {
            inbox.send(Message::Event(
                id,
                Event::Warning(warn),
                std::time::Instant::now(),
            ));
            Begin::Failed
        }
    }
}

/// Reads the `limit` newest builds of the history at `db` off the window's thread.
pub fn read_history(runtime: &Handle, db: PathBuf, limit: usize, inbox: Inbox) {
    runtime.spawn_blocking(move || {
        let read = crate::history::History::open_existing(&db)
            .and_then(|h| match h {
                Some(h) => h.recent(limit),
                None => Ok(Vec::new()),
            })
            .map_err(|e| e.to_string());
        inbox.send(Message::History(read));
    });
}

/// Runs the host check (`kiln doctor`'s checks) off the window's thread; `kvm` says whether
/// KVM is probed again or this boot's remembered verdict is enough.
pub fn check_host(runtime: &Handle, inbox: Inbox, kvm: crate::host::KvmProbe) {
    runtime.spawn_blocking(move || inbox.send(Message::HostChecked(crate::host::checks(kvm))));
}

/// Removes every entry of the step cache off the UI thread, then checks the host again (the
/// KVM verdict remembered).
pub fn clear_step_cache(runtime: &Handle, inbox: Inbox) {
    runtime.spawn_blocking(move || {
        if let Ok(dir) = crate::image::fetch::default_cache_dir() {
            crate::build::stepcache::Store::in_cache(&dir).clear();
        }
        inbox.send(Message::HostChecked(crate::host::checks(
            crate::host::KvmProbe::Remembered,
        )));
    });
}
