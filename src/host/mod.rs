//! Services about the machine kiln runs on, shared by both front ends.

pub mod check;
pub mod publishing;

pub use check::{Check, KvmProbe, Status, checks};
