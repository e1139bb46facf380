//! Searching files' bytes for secrets (leak checks): every byte of a folder's files, and
//! whether a byte string holds a needle.

#![allow(dead_code)]

use std::path::Path;

/// Every byte of the files directly in `dir` (e.g. the history, its WAL and shared memory).
pub fn bytes_of(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

/// Whether `haystack` holds `needle`'s bytes.
pub fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Whether `haystack` holds the bytes `needle`.
pub fn holds_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
