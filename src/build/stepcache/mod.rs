//! The step cache: a rebuild resumes the VM from the last step whose inputs did not change
//! instead of booting the base image and running every provisioner again.
//!
//! - [`key`]: the keys, one per point a build can resume from (after Connect, after each
//!   provisioner), chained so an edit invalidates from the edited step on.
//! - [`store`]: the entries on disk (frozen disk layer, VM state, checksums), the size cap
//!   and least-recently-used eviction.
//! - [`run`]: the cache in one build — where it resumes, saving the VM after each point.
//!
//! The VM itself is saved and restored by [`crate::qemu::snapshot`].

pub mod key;
pub mod point;
pub mod run;
pub mod store;

pub use key::CacheInputs;
pub use point::CachePoint;
pub use run::{CacheRun, Layering};
pub use store::{Entry, Store};
