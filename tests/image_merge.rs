//! Merge compaction (`kiln::image::compact`) against the real qemu-img and qemu-io: a
//! compressed base, an overlay changed in every way a build changes a disk (new data over
//! compressed clusters, zero writes, discards, writes past the base's end after a resize),
//! then the merged artifact must read exactly like the overlay (`qemu-img compare`), pass
//! `qemu-img check`, stand alone, and be no bigger than a full `qemu-img convert -c`.

#[path = "support/processes.rs"]
mod processes;
use processes::processes_mentioning;

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::image::compact::{self, CompactError};
use kiln::image::qcow2::Image;
use kiln::image::qemu_img::QemuImg;
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;

fn tools_present(test: &str) -> bool {
    let ok = ["qemu-img", "qemu-io"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        let msg =
            format!("{test}: SKIPPED: qemu-img or qemu-io missing (apt-get install qemu-utils)");
        if std::env::var_os("KILN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("{msg}, and KILN_REQUIRE_TOOLS=1");
        }
        eprintln!("{msg}");
    }
    ok
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Compressible text, incompressible noise and zeros, like a real root file system.
fn base_contents(len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, chunk) in out.chunks_mut(4096).enumerate() {
        match i % 8 {
            0..=3 => {
                let line = format!("block {i} of the base image: kiln merge test text\n");
                for (j, b) in chunk.iter_mut().enumerate() {
                    *b = line.as_bytes()[j % line.len()];
                }
            }
            4 => {
                for b in chunk.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            _ => {} // zeros
        }
    }
    out
}

struct Images {
    _dir: tempfile::TempDir,
    base: PathBuf,
    overlay: PathBuf,
    scratch: PathBuf,
}

/// A compressed 48 MiB base and an overlay grown to 1 GiB with changes of every kind.
fn images() -> Images {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("base.raw");
    std::fs::write(&raw, base_contents(48 * MIB)).unwrap();
    let base = dir.path().join("base.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&raw),
            s(&base),
        ],
    );
    std::fs::remove_file(&raw).unwrap();
    let overlay = dir.path().join("disk.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            s(&base),
            "-F",
            "qcow2",
            s(&overlay),
            "1G",
        ],
    );
    run(
        "qemu-io",
        &[
            "-c",
            "write -P 0x5a 1M 3M", // new data over compressed clusters
            "-c",
            "write -P 0x00 6M 256k", // explicit zeros
            "-c",
            "write -z 8M 1M", // zero writes
            "-c",
            "discard 12M 2M", // a trim
            "-c",
            "write -P 0xc3 40M 100k", // a partial cluster
            "-c",
            "write -P 0x11 700M 1M", // past the base's end
            s(&overlay),
        ],
    );
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Images {
        base,
        overlay,
        scratch,
        _dir: dir,
    }
}

#[tokio::test]
async fn merged_image_reads_like_the_overlay_and_stands_alone() {
    if !tools_present("merged_image_reads_like_the_overlay_and_stands_alone") {
        return;
    }
    let im = images();
    let qemu_img = QemuImg::locate().unwrap();
    let base = compact::merge_base(&im.base).expect("a compressed base is mergeable");
    let out = im.overlay.with_file_name("artifact.qcow2");
    let mut phases = Vec::new();
    let stats = compact::compact_overlay(
        &qemu_img,
        &im.overlay,
        &base,
        &out,
        &im.scratch,
        |phase, _, _| {
            if phases.last() != Some(&phase) {
                phases.push(phase);
            }
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        phases,
        ["compressing the changes", "merging with the base image"]
    );
    assert!(stats.from_base > 0 && stats.from_delta > 0, "{stats:?}");

    // Reads exactly as the overlay does, over the whole virtual disk.
    run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            s(&im.overlay),
            s(&out),
        ],
    );
    // Clean metadata: no leaks, no corruption.
    let check = run("qemu-img", &["check", "--output=json", s(&out)]);
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(check["check-errors"], 0, "{check}");
    assert!(check.get("leaks").is_none(), "{check}");
    // Stands alone, 1 GiB virtual, compressed.
    let info: serde_json::Value =
        serde_json::from_str(&run("qemu-img", &["info", "--output=json", s(&out)])).unwrap();
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(info["virtual-size"], 1024 * MIB);
    let image = Image::open(&out).unwrap();
    let (compressed, data) = image.counts();
    assert!(
        compressed > 0,
        "compressed clusters: {compressed}, data: {data}"
    );
    // The scratch delta is gone, and no temporary file is left beside the artifact.
    assert_eq!(std::fs::read_dir(&im.scratch).unwrap().count(), 0);
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("kiln"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // No bigger than qemu-img's own full compression of the same disk.
    let full = im.overlay.with_file_name("full.qcow2");
    run(
        "qemu-img",
        &["convert", "-c", "-O", "qcow2", s(&im.overlay), s(&full)],
    );
    let merged_len = std::fs::metadata(&out).unwrap().len();
    let full_len = std::fs::metadata(&full).unwrap().len();
    println!("merged {merged_len} bytes, qemu-img convert -c {full_len} bytes");
    assert!(
        merged_len <= full_len + 2 * 65536,
        "merged {merged_len} > full {full_len}"
    );
}

#[tokio::test]
async fn the_overlay_itself_can_be_the_destination() {
    if !tools_present("the_overlay_itself_can_be_the_destination") {
        return;
    }
    let im = images();
    let reference = im.overlay.with_file_name("reference.qcow2");
    run(
        "qemu-img",
        &["convert", "-O", "qcow2", s(&im.overlay), s(&reference)],
    );
    let qemu_img = QemuImg::locate().unwrap();
    let base = compact::merge_base(&im.base).unwrap();
    compact::compact_overlay(
        &qemu_img,
        &im.overlay,
        &base,
        &im.overlay,
        &im.scratch,
        |_, _, _| {},
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    run("qemu-img", &["compare", s(&reference), s(&im.overlay)]);
}

#[tokio::test]
async fn an_uncompressed_base_is_not_a_merge_base() {
    if !tools_present("an_uncompressed_base_is_not_a_merge_base") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("b.raw");
    std::fs::write(&raw, base_contents(8 * MIB)).unwrap();
    let plain = dir.path().join("plain.qcow2");
    run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&plain)],
    );
    let why = compact::merge_base(&plain).unwrap_err();
    assert!(why.contains("not compressed"), "{why}");
    let why = compact::merge_base(&raw).unwrap_err();
    assert!(why.contains("not a qcow2 image"), "{why}");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_leaves_the_destination_and_no_scratch() {
    if !tools_present("cancel_leaves_the_destination_and_no_scratch") {
        return;
    }
    let im = images();
    // 256 MiB of noise in the overlay: compressing the change takes seconds, long enough to
    // cancel while qemu-img runs.
    let noise = im.scratch.with_file_name("noise.bin");
    let mut urandom = std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 256 * MIB);
    std::io::copy(&mut urandom, &mut std::fs::File::create(&noise).unwrap()).unwrap();
    run(
        "qemu-io",
        &[
            "-c",
            &format!("write -s {} 100M 256M", s(&noise)),
            s(&im.overlay),
        ],
    );
    std::fs::remove_file(&noise).unwrap();
    let qemu_img = QemuImg::locate().unwrap();
    let base = compact::merge_base(&im.base).unwrap();
    let before = std::fs::read(&im.overlay).unwrap();
    let dir = im.overlay.parent().unwrap().to_path_buf();
    let files_before = names_in(&dir);
    // Once in each phase, after it has demonstrably started: qemu-img running with its
    // delta in the scratch directory, then the merge writing its temporary file.
    for phase in ["compressing the changes", "merging with the base image"] {
        let cancel = CancellationToken::new();
        let mut cancelled_at: Option<std::time::Instant> = None;
        let mut seen_running = Vec::new();
        let e = compact::compact_overlay(
            &qemu_img,
            &im.overlay,
            &base,
            &im.overlay,
            &im.scratch,
            |p, done, _| {
                if p != phase || done == 0 || cancelled_at.is_some() {
                    return;
                }
                seen_running = if phase == "compressing the changes" {
                    let mut running = processes_mentioning(s(&im.scratch));
                    running.extend(names_in(&im.scratch));
                    running
                } else {
                    names_in(&dir)
                        .into_iter()
                        .filter(|n| n.contains("kiln-merge"))
                        .collect()
                };
                cancelled_at = Some(std::time::Instant::now());
                cancel.cancel();
            },
            &cancel,
        )
        .await
        .unwrap_err();
        let took = cancelled_at
            .unwrap_or_else(|| panic!("{phase}: no progress before the end ({e})"))
            .elapsed();
        assert!(
            match &e {
                // The cancel stopped qemu-img itself, not the merge after it.
                CompactError::QemuImg(q) => q.is_cancelled() && phase == "compressing the changes",
                CompactError::Cancelled => phase == "merging with the base image",
                _ => false,
            },
            "{phase}: {e}"
        );
        assert!(
            took < std::time::Duration::from_secs(20),
            "{phase}: returned {took:?} after the cancel"
        );
        if phase == "compressing the changes" {
            assert!(
                seen_running.iter().any(|p| p.contains("qemu-img"))
                    && seen_running.iter().any(|n| n.starts_with("delta-")),
                "{phase}: qemu-img and its delta were there when cancelled: {seen_running:?}"
            );
        } else {
            assert!(
                !seen_running.is_empty(),
                "{phase}: the merge's temporary file was there when cancelled"
            );
        }
        assert_eq!(
            processes_mentioning(s(&im.scratch)),
            Vec::<String>::new(),
            "{phase}: qemu-img still runs"
        );
        assert_eq!(names_in(&im.scratch), Vec::<String>::new(), "{phase}");
        assert_eq!(
            names_in(&dir),
            files_before,
            "{phase}: a temporary file is left"
        );
        assert!(
            std::fs::read(&im.overlay).unwrap() == before,
            "{phase}: the destination changed"
        );
    }
}
