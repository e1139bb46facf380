//! CD and floppy. CD: the `cd_files` / `cd_content` image, labelled `cd_label` (Packer's default `packer`),
//! written by kiln's ISO 9660 writer into the build's scratch directory and attached as an
//! IDE CD-ROM as Packer does (Debian's cloud kernel has `ata_piix` and `sr_mod`, so the
//! guest sees it as /dev/sr0).

use std::collections::BTreeMap;

use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::cloudinit::cdrom::{CdTree, DEFAULT_LABEL};
use crate::cloudinit::floppy::{DEFAULT_LABEL as FLOPPY_LABEL, FloppyTree};
use crate::recipe::interp;

/// Makes the CD image when the recipe has `cd_files` or `cd_content`.
pub struct CdFiles;

impl Step<BuildState> for CdFiles {
    fn name(&self) -> String {
        "CD".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let config = &state.config;
            if config.cd_files.is_empty() && config.cd_content.is_empty() {
                return Ok(StepDone::Skipped("no cd_files or cd_content".into()));
            }
            let fields = state.context_fields();
            let mut content = BTreeMap::new();
            for (path, template) in &config.cd_content {
                let text = interp::render_fields(template, &fields)
                    .map_err(|e| StepError(format!("cd_content.{path}: {e}")))?;
                content.insert(path.clone(), text);
            }
            let base = std::env::current_dir().map_err(super::fail)?;
            let tree = CdTree::collect(&config.cd_files, &content, &base).map_err(super::fail)?;
            let label = config.cd_label.as_deref().unwrap_or(DEFAULT_LABEL);
            let path = state.dirs.work.join("cd.iso");
            let size = tree.write(label, &path).map_err(super::fail)?;
            ctx.log(format!(
                "CD labelled `{label}` ({size} bytes): {}",
                tree.paths().join(", ")
            ));
            state.cdrom = Some(path);
            Ok(StepDone::Done)
        })
    }
}

/// Makes the floppy image when the recipe has `floppy_files`, `floppy_dirs` or
/// `floppy_content` (a 1.44 MB FAT12 image, labelled `floppy_label`, Packer's default
/// `packer`), attached with `-fda` as Packer does.
pub struct Floppy;

impl Step<BuildState> for Floppy {
    fn name(&self) -> String {
        "Floppy".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let config = &state.config;
            if config.floppy_files.is_empty()
                && config.floppy_dirs.is_empty()
                && config.floppy_content.is_empty()
            {
                return Ok(StepDone::Skipped(
                    "no floppy_files, floppy_dirs or floppy_content".into(),
                ));
            }
            let fields = state.context_fields();
            let mut content = BTreeMap::new();
            for (path, template) in &config.floppy_content {
                let text = interp::render_fields(template, &fields)
                    .map_err(|e| StepError(format!("floppy_content.{path}: {e}")))?;
                content.insert(path.clone(), text);
            }
            let base = std::env::current_dir().map_err(super::fail)?;
            let tree =
                FloppyTree::collect(&config.floppy_files, &config.floppy_dirs, &content, &base)
                    .map_err(super::fail)?;
            let label = config.floppy_label.as_deref().unwrap_or(FLOPPY_LABEL);
            let path = state.dirs.work.join("floppy.img");
            tree.write(label, &path).map_err(super::fail)?;
            ctx.log(format!(
                "floppy labelled `{label}` (1.44 MB): {}",
                tree.paths().join(", ")
            ));
            state.floppy = Some(path);
            Ok(StepDone::Done)
        })
    }
}
