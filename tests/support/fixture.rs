//! The bootable Debian test image (tests/fixtures/debian-image.sh): built once, cached by
//! the script's hash, shared by every test that boots a VM.

use std::path::PathBuf;
use std::process::Command;

/// The path of the cached image, building it first when needed (needs root).
pub fn debian_image() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run the fixture script");
    assert!(
        out.status.success(),
        "building the Debian test image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    );
    assert!(path.is_file(), "the fixture script printed no image path");
    path
}
