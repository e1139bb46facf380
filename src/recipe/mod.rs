//! Recipes: Packer legacy-JSON templates and HCL2 (`.pkr.hcl`) templates — parsing with
//! positions, interpolation, variables, typed configuration of builders, provisioners and
//! post-processors, and diagnostics.

pub mod ansible;
pub mod checksum;
pub(crate) mod decode;
pub mod diag;
pub mod hcl;
pub mod image_test;
pub mod interp;
pub mod isotime;
pub mod json;
pub mod postprocessor;
pub mod provisioner;
pub mod qemu;
pub use crate::base::secret;
pub mod select;
pub mod shell_local;
pub mod template;
pub use crate::base::units;
pub mod vagrant;
pub mod vars;
