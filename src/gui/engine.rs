//! How the window reaches the build engine: an `Engine` runs one build and reports through an
//! event sink; `start` runs it on the tokio runtime and forwards its events to the window,
//! waking it for each one. Tests put an engine double behind the same trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::build::event::{Event, EventSink};
use crate::build::plan::{BuildOptions, BuildReport, run_build};
use crate::build::redact::Redactor;
use crate::cli::doctor::Check;
use crate::recipe::template::{Build, Recipe};

/// A build in progress, as a future the runtime polls.
pub type BuildFuture = Pin<Box<dyn Future<Output = BuildReport> + Send>>;

/// Runs builds. The window never builds anything itself.
pub trait Engine: Send + Sync {
    /// Runs `build` of `recipe`, sending its events to `events`, stopping when `cancel` fires.
    fn build(
        &self,
        recipe: Recipe,
        build: Build,
        events: EventSink,
        cancel: CancellationToken,
    ) -> BuildFuture;
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
        cancel: CancellationToken,
    ) -> BuildFuture {
        let options = self.options.clone();
        Box::pin(async move { run_build(&recipe, &build, &options, events, cancel).await })
    }
}

/// What background work tells the window.
#[derive(Debug)]
pub enum Message {
    /// An event of the running build.
    Event(Event),
    /// The build task returned.
    Finished(BuildReport),
    /// The host check is done.
    HostChecked(Vec<Check>),
    /// A credentials action is done (or the first read): what the keyring holds now.
    Credentials(super::credentials::Snapshot),
    /// A templates listing (after an action, when there was one).
    Templates(super::templates::Listing),
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

/// Starts `build` on `runtime`; its events and then its report arrive in `inbox`.
/// Returns the token that cancels it.
pub fn start(
    runtime: &Handle,
    engine: &dyn Engine,
    recipe: Recipe,
    build: Build,
    inbox: Inbox,
) -> CancellationToken {
    let cancel = CancellationToken::new();
    let (events, mut rx) = EventSink::channel(Redactor::new());
    let task = runtime.spawn(engine.build(recipe, build, events, cancel.clone()));
    runtime.spawn(async move {
        let mut task = task;
        let report = loop {
            tokio::select! {
                Some(event) = rx.recv() => inbox.send(Message::Event(event)),
                joined = &mut task => break joined,
            }
        };
        while let Ok(event) = rx.try_recv() {
            inbox.send(Message::Event(event));
        }
        let report = report.unwrap_or_else(|e| BuildReport {
            outcome: crate::build::event::Outcome::Failed(format!(
                "the build task stopped unexpectedly: {e}"
            )),
            artifact: None,
            artifacts: Vec::new(),
            log_dir: crate::build::plan::default_state_dir(),
            templates: Vec::new(),
        });
        inbox.send(Message::Finished(report));
    });
    cancel
}

/// Runs the host check (`kiln doctor`'s checks) off the window's thread.
pub fn check_host(runtime: &Handle, inbox: Inbox) {
    runtime.spawn_blocking(move || inbox.send(Message::HostChecked(crate::cli::doctor::checks())));
}
