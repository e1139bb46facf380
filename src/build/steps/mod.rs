//! The steps of a qemu build, in Packer's order: base image, disk, seed, boot, connect,
//! provisioners, shutdown, compaction.

mod base_image;
mod boot;
mod compact;
mod disk;
mod provision;
mod seed;
mod shutdown;

pub use base_image::BaseImage;
pub use boot::{Boot, Connect};
pub use compact::Compact;
pub use disk::Disk;
pub use provision::Provision;
pub(crate) use provision::format_var;
pub use seed::Seed;
pub use shutdown::Shutdown;

use super::runner::StepError;

/// Turns any displayable error into a step error.
pub(crate) fn fail(e: impl std::fmt::Display) -> StepError {
    StepError(e.to_string())
}
