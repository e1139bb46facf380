//! Post-processors: what runs on the build's artifact after compaction, in Packer's chain
//! semantics (see [`chain`]). Each post-processor type implements [`PostProcess`]; the
//! engine finds the implementation with [`implementation`], the one place a new type (the
//! Exoscale import) plugs in.

mod blocking;
pub mod chain;
mod checksum;
mod compress;
pub mod exoscale_import;
mod image_test;
mod manifest;
mod resize;
mod shell_local;
mod vagrant;

use std::path::PathBuf;
use std::sync::Arc;

pub use chain::{PostOutcome, PostState, PostStep, run_chains};

use super::artifact::Artifact;
use super::runner::{BoxFuture, StepContext, StepError};
use crate::recipe::postprocessor::{PostProcessor, PostProcessorKind};
use crate::recipe::qemu::QemuConfig;

/// What every post-processor may need to know about the build it runs after.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildFacts {
    /// The build's name (`{{.BuildName}}`, `PACKER_BUILD_NAME`).
    pub build_name: String,
    /// The builder's type (`{{.BuilderType}}`, `PACKER_BUILDER_TYPE`): `qemu`.
    pub builder_type: String,
    /// The run's id (`packer_run_uuid` in manifests, `PACKER_RUN_UUID`).
    pub run_uuid: String,
    /// A private scratch directory (mode 0700) for temporary scripts; removed by the caller.
    pub scratch: PathBuf,
    /// The build's log directory (`kiln-test` logs its VM's serial console there).
    pub logs: PathBuf,
    /// The builder's configuration (`kiln-test` boots its VM like the builder's).
    pub builder: Arc<QemuConfig>,
    /// The qemu binary the build uses (empty: the builder's `qemu_binary`).
    pub qemu_binary: PathBuf,
    /// The accelerator and CPU model the build's VM last ran with (`None` before it
    /// booted). `kiln-test` starts its VM the same way, so it does not try a KVM the build
    /// had to fall back from.
    pub accel: Option<crate::qemu::accel::AccelChoice>,
}

/// What a post-processor returns: its artifact and how it wants its input treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The artifact the next post-processor of the chain gets.
    pub artifact: Artifact,
    /// Keep the input artifact when the recipe does not say (`keep_input_artifact` unset).
    pub keep_input_by_default: bool,
    /// Keep the input artifact even when the recipe says `keep_input_artifact: false`
    /// (the output still refers to it: a checksum of a deleted file is useless).
    pub must_keep_input: bool,
}

/// One post-processor type's behaviour.
pub trait PostProcess: Send + Sync {
    /// Processes `input` and returns the new artifact. The future may be dropped at any
    /// await point when the build is cancelled: nothing half-written may stay behind.
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>>;
}

/// The implementation of a post-processor configuration, or `None` when `kiln build` does
/// not run that type yet (then [`crate::build::plan::unsupported`] refuses the recipe).
pub fn implementation(kind: &PostProcessorKind) -> Option<Box<dyn PostProcess>> {
    match kind {
        PostProcessorKind::Checksum(c) => Some(Box::new(checksum::Checksum(c.clone()))),
        PostProcessorKind::Manifest(c) => Some(Box::new(manifest::Manifest(c.clone()))),
        PostProcessorKind::Compress(c) => Some(Box::new(compress::Compress(c.clone()))),
        PostProcessorKind::Resize(c) => Some(Box::new(resize::Resize(c.clone()))),
        PostProcessorKind::ShellLocal(c) => Some(Box::new(shell_local::ShellLocal(c.clone()))),
        PostProcessorKind::ExoscaleImport(c) => {
            Some(Box::new(exoscale_import::ExoscaleImport(c.clone())))
        }
        PostProcessorKind::ImageTest(c) => Some(Box::new(image_test::ImageTest {
            config: c.clone(),
            import_follows: false,
        })),
        PostProcessorKind::Vagrant(c) => Some(Box::new(vagrant::Vagrant(c.clone()))),
        PostProcessorKind::Artifice(c) => Some(Box::new(vagrant::Artifice(c.clone()))),
        PostProcessorKind::NotRun(_) => None,
    }
}

/// The implementation of a post-processor that is followed by `later` in its chain: like
/// [`implementation`], but `kiln-test` also checks what a later `exoscale-import` needs.
pub fn implementation_in_chain(
    kind: &PostProcessorKind,
    later: &[PostProcessor],
) -> Option<Box<dyn PostProcess>> {
    match kind {
        PostProcessorKind::ImageTest(c) => Some(Box::new(image_test::ImageTest {
            config: c.clone(),
            import_follows: later
                .iter()
                .any(|p| matches!(p.kind, PostProcessorKind::ExoscaleImport(_))),
        })),
        other => implementation(other),
    }
}

/// Renders an `output` template with context fields (`{{.BuildName}}`, …).
fn render_output(
    option: &str,
    template: &str,
    fields: &[(&str, Option<String>)],
) -> Result<PathBuf, StepError> {
    crate::recipe::interp::render_fields(template, fields)
        .map(PathBuf::from)
        .map_err(|e| StepError(format!("{option}: {e}")))
}
