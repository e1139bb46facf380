//! kiln — bake virtual-machine images from Packer legacy-JSON recipes and publish them to
//! Exoscale.
//!
//! The crate is one library with a thin binary on top. Data flows one way:
//! `recipe` (parse, interpolate, validate) → build plan → runner → events → front ends.

pub mod base;
pub mod build;
pub mod cli;
pub mod cloudinit;
pub mod exoscale;
pub mod gui;
pub mod history;
pub mod host;
pub mod image;
pub mod objectstore;
pub mod qemu;
pub mod recipe;
pub mod recipes;
pub mod secrets;
pub mod ssh;
