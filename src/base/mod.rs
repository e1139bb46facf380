//! The bottom layer: what every other layer shares and that imports none of them — a
//! build's events and their sink, secrets and their redaction, and units (sizes, durations).
//! The integrations (`qemu`, `ssh`, `secrets`, `exoscale`, `objectstore`, `image`,
//! `cloudinit`), `build` and both front ends import it; `build::{event, redact}` and
//! `recipe::{secret, units}` are the same modules under the names the rest of the code
//! grew up with.

pub mod event;
pub mod redact;
pub mod secret;
pub mod units;
