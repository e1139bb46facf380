//! Base image: download (or find in the cache, or use in place) and verify.

use crate::build::event::Unit;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::image::fetch::{Origin, fetch_base_image};
use crate::recipe::checksum::Checksum;

/// Fetches and verifies `iso_url`/`iso_urls`.
pub struct BaseImage;

impl Step<BuildState> for BaseImage {
    fn name(&self) -> String {
        "Base image".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let config = &state.config;
            if config.iso_checksum == Checksum::None {
                ctx.events().send(crate::build::event::Event::Warning(
                    "iso_checksum is \"none\": the base image is not verified".into(),
                ));
            }
            let cancel = ctx.cancel().clone();
            let image = fetch_base_image(
                &config.iso_urls,
                &config.iso_checksum,
                &state.dirs.cache,
                |done, total| ctx.progress(done, total, Unit::Bytes),
                &cancel,
            )
            .await
            .map_err(super::fail)?;
            let how = match image.origin {
                Origin::Downloaded => "downloaded",
                Origin::Cached => "cached",
                Origin::Local => "local file",
            };
            let verified = match &image.digest {
                Some(d) => format!("{} ok", d.algorithm.name()),
                None => "not verified".into(),
            };
            ctx.log(format!(
                "{} ({how}, {verified}): {}",
                image.source,
                image.path.display()
            ));
            state.base_image = Some(image.path);
            Ok(StepDone::Done)
        })
    }
}
