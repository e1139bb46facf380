//! Base images and disk images: fetching the base image into a verified cache ([`fetch`]),
//! `qemu-img` (info, overlays, conversion, resizing, compaction: [`qemu_img`]), streaming
//! checksums ([`digest`]) and checksum lists ([`sums`]).

pub mod cache_state;
pub mod compact;
pub mod digest;
pub mod fetch;
pub mod merge;
pub mod qcow2;
pub mod qemu_img;
pub mod sums;

pub use digest::Hasher;
pub use fetch::{
    CachedImage, FetchError, Origin, SourceError, SourceFailure, VerifiedDigest, default_cache_dir,
    fetch_base_image,
};
pub use qemu_img::{ImageFormat, ImageInfo, QemuImg, QemuImgError};
