//! Recipes: Packer legacy-JSON templates — parsing with positions, interpolation, variables,
//! typed configuration of builders, provisioners and post-processors, and diagnostics.

pub mod interp;
pub mod json;
