//! `kiln-resize`: grows the artifact's virtual disk to `disk_size` in place. A smaller size
//! is refused before the file is touched (hashicorp/packer#5969: shrinking cuts off the file
//! system).

use super::{BuildFacts, PostProcess, Processed};
use crate::build::artifact::Artifact;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::image::qemu_img::{QemuImg, Resized};
use crate::recipe::postprocessor::ResizeConfig;
use crate::recipe::units::format_bytes;

/// The `kiln-resize` post-processor.
pub struct Resize(pub ResizeConfig);

impl PostProcess for Resize {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        _facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let image = input
                .main_file()
                .ok_or_else(|| StepError("the input artifact has no file to resize".into()))?;
            let qemu_img = QemuImg::locate().map_err(super::super::steps::fail)?;
            let resized = qemu_img
                .resize(image, self.0.disk_size, ctx.cancel())
                .await
                .map_err(|e| {
                    StepError(format!(
                        "{e} (kiln-resize `disk_size`; the image was not changed)"
                    ))
                })?;
            ctx.log(match resized {
                Resized::Unchanged => format!(
                    "{} is already {}",
                    image.display(),
                    format_bytes(self.0.disk_size)
                ),
                Resized::Grown { from, to } => format!(
                    "{} grown from {} to {}",
                    image.display(),
                    format_bytes(from),
                    format_bytes(to)
                ),
            });
            Ok(Processed {
                artifact: input.clone(),
                keep_input_by_default: true,
                must_keep_input: true,
            })
        })
    }
}
