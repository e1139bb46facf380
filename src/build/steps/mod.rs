//! The steps of a qemu build, in Packer's order: base image, disk, seed, HTTP server, CD,
//! boot, boot command, connect, provisioners, shutdown, compaction.

mod ansible;
mod base_image;
mod boot;
mod cdrom;
mod compact;
mod disk;
mod http;
mod provision;
mod scrub;
mod seed;
mod shutdown;
pub(crate) mod ssh_wait;
mod typing;

pub use base_image::BaseImage;
pub use boot::{Boot, Connect};
pub use cdrom::{CdFiles, Floppy};
pub use compact::Compact;
pub use disk::Disk;
pub use http::{GUEST_HOST_IP, Http};
pub use provision::Provision;
pub(crate) use provision::format_var;
pub use seed::Seed;
pub(crate) use seed::{agent_login, user_data};
pub use shutdown::Shutdown;
pub use typing::BootCommand;

use super::runner::StepError;

/// Turns any displayable error into a step error.
pub(crate) fn fail(e: impl std::fmt::Display) -> StepError {
    StepError(e.to_string())
}
