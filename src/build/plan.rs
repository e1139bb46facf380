//! From a recipe's build to a running build: what `kiln build` supports today, the
//! directories, the steps, and the logs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::event::{EventSink, Outcome};
use super::log::LineFormatter;
use super::runner::{self, Step};
use super::state::{BuildDirs, BuildState};
use super::steps::{
    BaseImage, Boot, BootCommand, CdFiles, Compact, Connect, Disk, Http, Provision, Seed, Shutdown,
};
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
}

/// How a build ended and where its results are.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The outcome.
    pub outcome: Outcome,
    /// The artifact, when the build succeeded.
    pub artifact: Option<PathBuf>,
    /// The directory with `build.log` and `serial.log`.
    pub log_dir: PathBuf,
}

/// What `kiln build` cannot run yet, so a recipe that needs it is refused before anything
/// starts (never half-run).
pub fn unsupported(build: &Build) -> Vec<String> {
    let mut out = Vec::new();
    let q = &build.builder;
    if q.efi_boot {
        out.push("efi_boot".into());
    }
    for p in &build.provisioners {
        if !matches!(p.kind, ProvisionerKind::Shell(_) | ProvisionerKind::File(_)) {
            out.push(format!("the `{}` provisioner", p.kind.type_name()));
        }
    }
    if build.error_cleanup.is_some() {
        out.push("error-cleanup-provisioner".into());
    }
    for chain in &build.post_processors {
        for pp in chain {
            out.push(format!("the `{}` post-processor", pp.kind.type_name()));
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

fn private_dir(path: &Path) -> std::io::Result<()> {
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
    let id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        &uuid::Uuid::new_v4().to_string()[..8]
    );
    let log_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(default_state_dir)
        .join(&id);
    let failed = |why: String| BuildReport {
        outcome: Outcome::Failed(why),
        artifact: None,
        log_dir: log_dir.clone(),
    };
    let missing = unsupported(build);
    if !missing.is_empty() {
        return failed(format!(
            "{}: `kiln build` does not run {} yet; nothing was started",
            recipe.file,
            missing.join(", ")
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
    // Every event is written to build.log, then passed on.
    let (inner, mut rx) = EventSink::channel(redactor.clone());
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

    let dirs = BuildDirs {
        output: PathBuf::from(&build.builder.output_directory),
        work: work.clone(),
        logs: log_dir.clone(),
        cache,
    };
    let mut state = BuildState::new(
        build.builder.clone(),
        dirs,
        redactor,
        options.qemu_binary.clone().unwrap_or_default(),
    );
    let count = build.provisioners.len();
    let mut steps: Vec<Box<dyn Step<BuildState>>> = vec![
        Box::new(BaseImage),
        Box::new(Disk {
            force: options.force,
        }),
        Box::new(Seed),
        Box::new(Http),
        Box::new(CdFiles),
        Box::new(Boot),
        Box::new(BootCommand),
        Box::new(Connect),
    ];
    for (i, p) in build.provisioners.iter().enumerate() {
        steps.push(Box::new(Provision {
            number: (i + 1, count),
            provisioner: p.clone(),
            build_name: build.name.clone(),
        }));
    }
    steps.push(Box::new(Shutdown));
    steps.push(Box::new(Compact));
    let started = Instant::now();
    let outcome = runner::run(&build.name, steps, &mut state, inner.clone(), cancel).await;
    let artifact = if outcome == Outcome::Done {
        state.artifact.clone()
    } else {
        None
    };
    drop(state);
    let _ = std::fs::remove_dir_all(&work);
    tracing::debug!(elapsed_s = started.elapsed().as_secs_f64(), "build ended");
    drop(inner);
    let _ = forward.await;
    BuildReport {
        outcome,
        artifact,
        log_dir,
    }
}
