//! From a recipe's build to a running build: what `kiln build` supports today, the
//! directories, the steps, and the logs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::artifact::Artifact;
use super::breakpoint::{self, Resume};
use super::event::{EventSink, Outcome};
use super::log::LineFormatter;
use super::planned::{Plan, PlanOptions};
use super::postprocess::{self, BuildFacts};
use super::runner::{self, OnError};
use super::state::{BuildDirs, BuildState};
use super::stepcache::{CacheInputs, CacheRun, Store};
use crate::recipe::provisioner::ProvisionerKind;
use crate::recipe::template::{Build, Recipe};

/// Options of `kiln build` beyond the recipe.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Replace a non-empty output directory.
    pub force: bool,
    /// Base-image cache (default `$XDG_CACHE_HOME/kiln`).
    pub cache_dir: Option<PathBuf>,
    /// Where build logs go (default `$XDG_STATE_HOME/kiln/builds`).
    pub state_dir: Option<PathBuf>,
    /// A qemu binary that overrides the recipe's `qemu_binary`.
    pub qemu_binary: Option<PathBuf>,
    /// What happens to a failed build's files.
    pub on_error: OnError,
    /// How the front end continues a paused `breakpoint`. `None` means nobody can (no
    /// terminal, CI): a recipe with an enabled breakpoint is then refused before it starts.
    pub resume: Option<Resume>,
    /// The run's id (`PACKER_RUN_UUID`, manifests' `packer_run_uuid`); a fresh one when
    /// `None`. Give every build of one run the same.
    pub run_uuid: Option<String>,
    /// Use the step cache (`--cache`): resume from the last unchanged step and save the VM
    /// after Connect and each provisioner.
    pub step_cache: bool,
    /// `--from N`: run provisioner N and the later ones again even when they are cached.
    pub rerun_from: Option<usize>,
}

/// How a build ended and where its results are.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The outcome.
    pub outcome: Outcome,
    /// The main file of the build's first artifact, when the build succeeded.
    pub artifact: Option<PathBuf>,
    /// Every artifact the build left (the image, or what the post-processors made of it).
    pub artifacts: Vec<Artifact>,
    /// The directory with `build.log` and `serial.log`.
    pub log_dir: PathBuf,
    /// (zone, template id) of the templates `exoscale-import` registered, also when a later
    /// step failed (they exist on Exoscale all the same).
    pub templates: Vec<(String, String)>,
}

impl BuildReport {
    /// A run that ended with `outcome` before it made anything: no artifact, no template.
    pub fn nothing(outcome: Outcome, log_dir: PathBuf) -> Self {
        Self {
            outcome,
            artifact: None,
            artifacts: Vec::new(),
            log_dir,
            templates: Vec::new(),
        }
    }
}

/// The `ansible` provisioner's program, when it is not on this machine (Packer checks with
/// `ansible-playbook --version` when it validates; kiln before the build starts, unless
/// `skip_version_check`).
fn missing_ansible(build: &Build) -> Option<String> {
    build.provisioners.iter().enumerate().find_map(|(i, p)| match &p.kind {
        ProvisionerKind::Ansible(a) if !a.skip_version_check => {
            let found = if a.command.contains('/') {
                Path::new(&a.command).is_file()
            } else {
                crate::host::check::find_in_path(&a.command).is_some()
            };
            (!found).then(|| {
                format!(
                    "provisioners[{i}] (ansible) runs `{}`, which is not on this machine: apt-get install ansible-core (or set skip_version_check when an earlier step installs it)",
                    a.command
                )
            })
        }
        _ => None,
    })
}

/// What `kiln build` cannot run yet, so a recipe that needs it is refused before anything
/// starts (never half-run).
pub fn unsupported(build: &Build) -> Vec<String> {
    let mut out = Vec::new();
    let q = &build.builder;
    if q.efi_boot {
        out.push("efi_boot".into());
    }
    if build.error_cleanup.is_some() {
        out.push("error-cleanup-provisioner".into());
    }
    for chain in &build.post_processors {
        for pp in chain {
            if postprocess::implementation(&pp.kind).is_none() {
                let name = pp.name.as_deref().unwrap_or(pp.kind.type_name());
                out.push(format!(
                    "the `{}` post-processor (-except={name} skips it)",
                    pp.kind.type_name()
                ));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `$XDG_STATE_HOME/kiln/builds` or `~/.local/state/kiln/builds`.
pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("kiln/builds"),
        _ => home().join(".local/state/kiln/builds"),
    }
}

/// A new run's id: its start time and a random suffix (`20261207-142301-1a2b3c4d`), the
/// name of its log directory.
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        &uuid::Uuid::new_v4().to_string()[..8]
    )
}

/// A sink whose every event is written as a line to `log_dir/build.log`, then passed on to
/// `events`. Await the task after the last clone of the sink is dropped: it flushes the file.
pub fn log_to_file(log_dir: &Path, events: EventSink) -> (EventSink, tokio::task::JoinHandle<()>) {
    let (inner, mut rx) = EventSink::channel(events.redactor().clone());
    let log_path = log_dir.join("build.log");
    let forward = tokio::spawn(async move {
        let mut file = tokio::fs::File::create(&log_path).await.ok();
        let mut formatter = LineFormatter::new();
        while let Some(event) = rx.recv().await {
            if let (Some(f), Some(line)) = (file.as_mut(), formatter.line(&event)) {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
            events.send(event);
        }
        if let Some(f) = file.as_mut() {
            let _ = f.flush().await;
        }
    });
    (inner, forward)
}

/// Creates `path` (and its parents) readable by this user only.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Runs one build of `recipe`. Every event goes to `events` and, as text, to `build.log`.
pub async fn run_build(
    recipe: &Recipe,
    build: &Build,
    options: &BuildOptions,
    events: EventSink,
    cancel: CancellationToken,
) -> BuildReport {
    let id = new_run_id();
    let log_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(default_state_dir)
        .join(&id);
    let failed = |why: String| BuildReport::nothing(Outcome::Failed(why), log_dir.clone());
    let missing = unsupported(build);
    if !missing.is_empty() {
        return failed(format!(
            "{}: `kiln build` does not run {} yet; nothing was started",
            recipe.file,
            missing.join(", ")
        ));
    }
    if let Some(missing) = missing_ansible(build) {
        return failed(format!("{}: {missing}; nothing was started", recipe.file));
    }
    // The ssh-agent is asked now whether it holds the key, not at Seed after the download.
    if build.builder.ssh.agent_auth
        && build.builder.communicator == crate::recipe::qemu::Communicator::Ssh
        && let Err(e) = super::steps::agent_login(build.builder.ssh.agent_key.as_deref()).await
    {
        return failed(format!("{}: {}; nothing was started", recipe.file, e.0));
    }
    // Publishing is checked now, in seconds, not after the download, boot and provisioning.
    for config in build.exoscale_imports() {
        let redactor = events.redactor().clone();
        tokio::select! {
            checked = postprocess::exoscale_import::preflight(config, &redactor) => match checked {
                Ok(found) => events.log(None, found),
                Err(e) => return failed(format!("{}: {e}; nothing was started", recipe.file)),
            },
            () = cancel.cancelled() => {
                return BuildReport::nothing(Outcome::Cancelled, log_dir.clone());
            }
        }
    }
    if options.resume.is_none()
        && let Some(n) = build
            .provisioners
            .iter()
            .position(|p| matches!(&p.kind, ProvisionerKind::Breakpoint(b) if !b.disable))
    {
        return failed(format!(
            "{}: {}; nothing was started",
            recipe.file,
            breakpoint::cannot_wait(&format!("provisioners[{n}]"))
        ));
    }
    let cache = match options.cache_dir.clone() {
        Some(dir) => dir,
        None => match crate::image::fetch::default_cache_dir() {
            Ok(dir) => dir,
            Err(e) => return failed(e.to_string()),
        },
    };
    if let Err(e) = private_dir(&log_dir) {
        return failed(format!(
            "cannot create the log directory {}: {e}",
            log_dir.display()
        ));
    }
    let work = std::env::temp_dir().join(format!("kiln-{id}"));
    if let Err(e) = private_dir(&work) {
        return failed(format!(
            "cannot create the scratch directory {}: {e}",
            work.display()
        ));
    }
    let redactor = events.redactor().clone();
    for secret in recipe.secrets() {
        redactor.register(&secret);
    }
    let (inner, forward) = log_to_file(&log_dir, events);

    let dirs = BuildDirs {
        output: PathBuf::from(&build.builder.output_directory),
        work: work.clone(),
        logs: log_dir.clone(),
        cache,
    };
    let facts = BuildFacts {
        build_name: build.name.clone(),
        builder_type: "qemu".into(),
        run_uuid: options
            .run_uuid
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        scratch: work.clone(),
        logs: log_dir.clone(),
        builder: std::sync::Arc::new(build.builder.clone()),
        qemu_binary: options.qemu_binary.clone().unwrap_or_default(),
        accel: None,
    };
    let plan = match Plan::new(
        build,
        &PlanOptions {
            force: options.force,
            resume: options.resume.clone(),
        },
    ) {
        Ok(plan) => plan,
        Err(missing) => {
            return failed(format!(
                "{}: `kiln build` does not run {} yet; nothing was started",
                recipe.file,
                missing.join(", ")
            ));
        }
    };
    let mut state = BuildState::new(
        build.builder.clone(),
        dirs,
        redactor,
        options.qemu_binary.clone().unwrap_or_default(),
        facts,
    );
    if options.step_cache {
        match CacheInputs::of(build) {
            Ok(inputs) => {
                state.cache = Some(CacheRun::new(
                    Store::in_cache(&state.dirs.cache),
                    inputs,
                    options.rerun_from,
                    &recipe.file,
                    build,
                ));
            }
            Err(why) => inner.log(None, format!("step cache: not used: {why}")),
        }
    }
    let started = Instant::now();
    let outcome = runner::run(
        &build.name,
        plan.steps,
        &mut state,
        inner.clone(),
        cancel,
        options.on_error,
    )
    .await;
    // The report's message is printed and shown as it is: mask the recipe's secrets in it
    // as in every event (a path built from a sensitive variable names it).
    let outcome = match outcome {
        Outcome::Failed(why) => Outcome::Failed(inner.redactor().redact(&why)),
        other => other,
    };
    let artifacts = if outcome == Outcome::Done {
        state.artifacts()
    } else {
        Vec::new()
    };
    let artifact = artifacts
        .first()
        .and_then(|a| a.main_file())
        .map(Path::to_path_buf);
    let templates = state.post.published.clone();
    drop(state);
    if options.on_error == OnError::Abort && matches!(outcome, Outcome::Failed(_)) {
        inner.send(super::event::Event::Warning(format!(
            "kept the scratch directory {} (seed, qemu sockets) for debugging (--on-error=abort); remove it when done",
            work.display()
        )));
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    tracing::debug!(elapsed_s = started.elapsed().as_secs_f64(), "build ended");
    drop(inner);
    let _ = forward.await;
    BuildReport {
        outcome,
        artifact,
        artifacts,
        log_dir,
        templates,
    }
}
