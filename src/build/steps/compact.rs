//! Compact: convert the working disk into the artifact (compressed with `disk_compression`),
//! written to a temporary name and renamed, so the artifact only ever appears complete.

use crate::build::event::Unit;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use std::path::{Path, PathBuf};

use crate::image::compact::{self, CompactError, MergeBase};
use crate::image::qemu_img::QemuImg;
use crate::recipe::units::format_bytes;

/// Produces the artifact.
pub struct Compact;

impl Step<BuildState> for Compact {
    fn name(&self) -> String {
        "Compact".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let partial = state
                .disk
                .clone()
                .ok_or_else(|| StepError("no disk".into()))?;
            let artifact = state.dirs.output.join(&state.config.vm_name);
            let config = &state.config;
            // With the step cache the disk sits on a chain of cached layers: it is always
            // written out whole.
            let chained = state.cache.is_some();
            let outcome = if !chained
                && (config.use_backing_file || (config.skip_compaction && !config.disk_compression))
            {
                if partial != artifact {
                    std::fs::rename(&partial, &artifact).map_err(|e| {
                        StepError(format!(
                            "cannot move the disk to {}: {e}",
                            artifact.display()
                        ))
                    })?;
                }
                StepDone::Skipped(
                    if config.use_backing_file {
                        "overlay kept as is (use_backing_file)"
                    } else {
                        "skip_compaction"
                    }
                    .into(),
                )
            } else {
                let qemu_img = QemuImg::locate().map_err(super::fail)?;
                let cancel = ctx.cancel().clone();
                let merge_base = match state.merge_base.take() {
                    Some(base) if chained => {
                        // The merge takes the changes of one overlay on the base image.
                        match qemu_img.rebase(&partial, &base.path, &cancel).await {
                            Ok(()) => Some(base),
                            Err(e) => {
                                ctx.log(format!(
                                    "warning: cannot put the build's changes on the base image ({e}); compressing the whole disk instead"
                                ));
                                None
                            }
                        }
                    }
                    other => other,
                };
                if let Some(base) = merge_base {
                    match merge_into(ctx, &qemu_img, &partial, &base, &artifact, &state.dirs.work)
                        .await
                    {
                        Ok(()) => return Ok(finish(ctx, state, artifact, StepDone::Done)),
                        Err(CompactError::Cancelled) => {
                            return Err(StepError("cancelled".into()));
                        }
                        Err(e) => ctx.log(format!(
                            "warning: merge compaction failed ({e}); compressing the whole disk instead"
                        )),
                    }
                }
                qemu_img
                    .compact(
                        &partial,
                        &artifact,
                        config.disk_compression,
                        |done, total| ctx.progress(done, total, Unit::Bytes),
                        &cancel,
                    )
                    .await
                    .map_err(super::fail)?;
                if partial != artifact {
                    let _ = std::fs::remove_file(&partial);
                }
                StepDone::Done
            };
            Ok(finish(ctx, state, artifact, outcome))
        })
    }
}

/// Records the finished artifact.
fn finish(
    ctx: &mut StepContext,
    state: &mut BuildState,
    artifact: PathBuf,
    outcome: StepDone,
) -> StepDone {
    let size = std::fs::metadata(&artifact).map(|m| m.len()).unwrap_or(0);
    ctx.log(format!("{} ({})", artifact.display(), format_bytes(size)));
    state.artifact = Some(artifact);
    state
        .complete
        .store(true, std::sync::atomic::Ordering::SeqCst);
    outcome
}

/// Compresses the overlay's changes and merges them with the base image into `artifact`.
async fn merge_into(
    ctx: &mut StepContext,
    qemu_img: &QemuImg,
    overlay: &Path,
    base: &MergeBase,
    artifact: &Path,
    scratch: &Path,
) -> Result<(), CompactError> {
    let cancel = ctx.cancel().clone();
    let mut phase = "";
    let stats = compact::compact_overlay(
        qemu_img,
        overlay,
        base,
        artifact,
        scratch,
        |now, done, total| {
            if now != phase {
                phase = now;
                ctx.log(now.to_string());
            }
            ctx.progress(done, Some(total), Unit::Bytes);
        },
        &cancel,
    )
    .await?;
    ctx.log(format!(
        "merged {} changed clusters with {} clusters of the base image, none recompressed",
        stats.from_delta, stats.from_base
    ));
    if overlay != artifact {
        let _ = std::fs::remove_file(overlay);
    }
    Ok(())
}
