//! Disk: the output directory and the disk the VM writes (a copy, a conversion or an
//! overlay of the base image, or a blank disk for installers), resized to `disk_size`.

use std::path::{Path, PathBuf};

use crate::build::event::Unit;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::build::stepcache::Layering;
use crate::image::compact::merge_base;
use crate::image::qemu_img::{ImageFormat, QemuImg, Resized};
use crate::qemu::cmdline::user_supplies_drives;
use crate::recipe::qemu::{DiskFormat, QemuConfig};
use crate::recipe::units::format_bytes;

/// Prepares the output directory and the working disk.
pub struct Disk {
    /// Replace a non-empty output directory (`--force`).
    pub force: bool,
}

/// The hidden name the disk has until the build succeeds.
pub fn partial_path(output: &Path, vm_name: &str) -> PathBuf {
    output.join(format!(".{vm_name}.kiln-partial"))
}

/// Locks the output directory for this build (`flock` on the directory itself, released when
/// the returned file is dropped or kiln exits); fails at once when another build holds it.
pub fn lock_output_dir(dir: &Path) -> Result<std::fs::File, StepError> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).map_err(|e| {
        StepError(format!(
            "cannot open the output directory {}: {e}",
            dir.display()
        ))
    })?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(handle);
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::WouldBlock {
        Err(StepError(format!(
            "the output directory {} is in use by another build that is still running: wait for it to end, or give this build another `output_directory`",
            dir.display()
        )))
    } else {
        Err(StepError(format!(
            "cannot lock the output directory {}: {err}",
            dir.display()
        )))
    }
}

/// Removes everything inside `dir`, keeping the directory (and the lock on it).
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Whether the build can run on an overlay of the base image and merge its changes back at
/// compaction: a compressed qcow2 artifact that stands alone (no `use_backing_file`).
fn wants_merge_compaction(config: &QemuConfig, format: &ImageFormat) -> bool {
    config.disk_image
        && *format == ImageFormat::Qcow2
        && config.disk_compression
        && !config.skip_compaction
        && !config.use_backing_file
}

impl Step<BuildState> for Disk {
    fn name(&self) -> String {
        "Disk".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let output = state.dirs.output.clone();
            let created = !output.exists();
            std::fs::create_dir_all(&output).map_err(|e| {
                StepError(format!(
                    "cannot create the output directory {}: {e}",
                    output.display()
                ))
            })?;
            // Held until the build ends: a second build (another tab, another kiln) with the
            // same output directory stops here instead of writing over this one's disk, and
            // --force never empties a directory a running build writes to.
            state.output_lock = Some(lock_output_dir(&output)?);
            if !is_empty_dir(&output) {
                if !self.force {
                    return Err(StepError(format!(
                        "the output directory {} exists and is not empty: remove it, choose another `output_directory`, or run with --force to replace it",
                        output.display()
                    )));
                }
                empty_dir(&output).map_err(|e| {
                    StepError(format!("cannot empty {} (--force): {e}", output.display()))
                })?;
                ctx.log(format!("emptied the old {} (--force)", output.display()));
            }
            let config = &state.config;
            // A recipe whose qemuargs attach the disk themselves (the seed article's
            // `-drive file=output-qemu/NAME`) names the final path: the VM must write there.
            let partial = if user_supplies_drives(config) {
                output.join(&config.vm_name)
            } else {
                partial_path(&output, &config.vm_name)
            };
            {
                let partial = partial.clone();
                let output = output.clone();
                let complete = state.complete.clone();
                ctx.defer_removal(
                    format!("any unfinished disk at {}", partial.display()),
                    move || async move {
                        if partial.exists() && !complete.load(std::sync::atomic::Ordering::SeqCst) {
                            std::fs::remove_file(&partial).map_err(|e| e.to_string())?;
                        }
                        if created && is_empty_dir(&output) {
                            let _ = std::fs::remove_dir(&output);
                        }
                        Ok(())
                    },
                );
            }
            let qemu_img = QemuImg::locate().map_err(super::fail)?;
            let cancel = ctx.cancel().clone();
            let format = match config.format {
                DiskFormat::Qcow2 => ImageFormat::Qcow2,
                DiskFormat::Raw => ImageFormat::Raw,
            };
            if config.disk_image {
                let base = state
                    .base_image
                    .clone()
                    .ok_or_else(|| StepError("no base image".into()))?;
                let mut cache = state.cache.take();
                let qemu = super::boot::qemu_binary(state);
                let layering = cache.as_mut().and_then(|run| {
                    run.prepare(ctx, &state.config, &base, &qemu, &state.dirs.work)
                });
                if let Some(layering) = layering {
                    state.cache = cache;
                    return on_cache_layer(ctx, state, &qemu_img, &format, &base, layering).await;
                }
                let config = &state.config;
                let merge_base = if wants_merge_compaction(config, &format) {
                    match merge_base(&base) {
                        Ok(merge) => Some(merge),
                        Err(why) => {
                            ctx.log(format!(
                                "copying the whole base image: it cannot be merged back at compaction ({why})"
                            ));
                            None
                        }
                    }
                } else {
                    None
                };
                if config.use_backing_file {
                    qemu_img
                        .create_overlay(&base, &partial, &cancel)
                        .await
                        .map_err(super::fail)?;
                    ctx.log(format!("overlay on {}", base.display()));
                } else if let Some(merge) = merge_base {
                    qemu_img
                        .create_overlay(&merge.path, &partial, &cancel)
                        .await
                        .map_err(super::fail)?;
                    ctx.log(format!(
                        "overlay on the compressed base image {}; compaction compresses only the changes and merges them back",
                        merge.path.display()
                    ));
                    state.merge_base = Some(merge);
                } else {
                    qemu_img
                        .copy_or_convert(
                            &base,
                            &partial,
                            &format,
                            false,
                            |done, total| ctx.progress(done, total, Unit::Bytes),
                            &cancel,
                        )
                        .await
                        .map_err(super::fail)?;
                }
                if let (Some(size), false) = (config.disk_size, config.skip_resize_disk) {
                    match qemu_img
                        .resize(&partial, size, &cancel)
                        .await
                        .map_err(super::fail)?
                    {
                        Resized::Grown { from, to } => ctx.log(format!(
                            "resized from {} to {}",
                            format_bytes(from),
                            format_bytes(to)
                        )),
                        Resized::Unchanged => ctx.log(format!("already {}", format_bytes(size))),
                    }
                }
            } else {
                let size = config.disk_size.unwrap_or(40960 * 1024 * 1024);
                qemu_img
                    .create(&partial, &format, size, &cancel)
                    .await
                    .map_err(super::fail)?;
                ctx.log(format!(
                    "blank {} disk of {}",
                    format.name(),
                    format_bytes(size)
                ));
            }
            state.disk = Some(partial);
            Ok(StepDone::Done)
        })
    }
}

/// The disk of a build that uses the step cache: an overlay on the layer it resumes from,
/// or, the first time, on the base image (resized, and merged back at compaction when it
/// can be).
async fn on_cache_layer(
    ctx: &mut StepContext,
    state: &mut BuildState,
    qemu_img: &QemuImg,
    format: &ImageFormat,
    base: &Path,
    layering: Layering,
) -> Result<StepDone, StepError> {
    let cancel = ctx.cancel().clone();
    qemu_img
        .create_overlay(&layering.backing, &layering.active, &cancel)
        .await
        .map_err(super::fail)?;
    if layering.cold {
        let config = &state.config;
        if wants_merge_compaction(config, format)
            && let Ok(merge) = merge_base(base)
        {
            state.merge_base = Some(merge);
        }
        if let (Some(size), false) = (config.disk_size, config.skip_resize_disk)
            && let Resized::Grown { from, to } = qemu_img
                .resize(&layering.active, size, &cancel)
                .await
                .map_err(super::fail)?
        {
            ctx.log(format!(
                "resized from {} to {}",
                format_bytes(from),
                format_bytes(to)
            ));
        }
    } else if wants_merge_compaction(&state.config, format)
        && let Ok(merge) = merge_base(base)
    {
        state.merge_base = Some(merge);
    }
    state.disk = Some(layering.active);
    Ok(StepDone::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_build_cannot_take_a_locked_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_output_dir(dir.path()).expect("the first build locks it");
        let err = lock_output_dir(dir.path()).expect_err("the second build must not");
        assert!(err.0.contains("in use by another build"), "{err}");
        assert!(err.0.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.0.contains("`output_directory`"), "{err}");
        drop(first);
        lock_output_dir(dir.path()).expect("free again once the first build ended");
    }

    #[test]
    fn emptying_keeps_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.qcow2"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), b"y").unwrap();
        empty_dir(dir.path()).unwrap();
        assert!(dir.path().is_dir());
        assert!(is_empty_dir(dir.path()));
    }
}
