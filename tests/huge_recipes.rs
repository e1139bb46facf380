//! Huge input: a file over the size limit is refused before it is read, and the largest
//! recipe kiln accepts (tens of thousands of variables) is checked in bounded time and memory.
//! Memory is the children's peak RSS (getrusage), so this file holds one test and spawns
//! `kiln` only.

use std::process::Command;

use kiln::recipe::template::MAX_FILE_SIZE;

/// The peak resident set of every child waited for so far, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage writes only into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}

fn validate(path: &std::path::Path) -> (Option<i32>, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("validate")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        started.elapsed(),
    )
}

#[test]
fn huge_recipes_are_refused_or_checked_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();

    // Over the limit: refused from its size alone (a sparse file: nothing to read anyway).
    let over = dir.path().join("over.json");
    std::fs::File::create(&over)
        .unwrap()
        .set_len(MAX_FILE_SIZE + 1)
        .unwrap();
    let (code, text, took) = validate(&over);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("kiln reads recipes up to 16 MiB"),
        "the error names the limit: {text}"
    );
    let refused_peak = children_peak_rss();
    eprintln!(
        "over the limit: refused in {took:?}, peak RSS {} MiB",
        refused_peak >> 20
    );
    assert!(refused_peak < 96 << 20, "peak RSS {refused_peak} bytes");

    // Just under the limit: a recipe of ~140,000 variables. It loads, every problem is
    // reported, and memory stays within a small multiple of the file.
    let mut text = String::from("{\"variables\": {");
    let mut i = 0;
    while (text.len() as u64) < MAX_FILE_SIZE - 1024 {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("\"v{i}\": \"{}\"", "x".repeat(100)));
        i += 1;
    }
    text.push_str("}, \"builders\": []}");
    let big = dir.path().join("big.json");
    std::fs::write(&big, &text).unwrap();
    let (code, out, took) = validate(&big);
    let peak = children_peak_rss();
    eprintln!(
        "{} MiB recipe of {i} variables: checked in {took:?}, peak RSS {} MiB",
        text.len() >> 20,
        peak >> 20
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("\"builders\" is empty"), "{out}");
    assert!(
        peak < 32 * MAX_FILE_SIZE,
        "peak RSS {} MiB for a {} MiB file",
        peak >> 20,
        text.len() >> 20
    );
}
