//! Fuzzes recipe parsing, interpolation and validation: any bytes must end in a recipe or in
//! diagnostics, never in a panic, a hang or unbounded memory.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use kiln::recipe::template::{LoadOptions, load_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let options = LoadOptions {
        env: Arc::new(|_| None),
        pwd: Some(Path::new("/tmp").to_path_buf()),
        ..LoadOptions::default()
    };
    if let Err(diags) = load_str("fuzz.json", &text, Path::new("/tmp"), &options) {
        assert!(diags.has_errors());
    }
});
