//! Post-processors on real files with real tools: each one on a small qcow2 made with
//! `qemu-img`, results checked with `sha256sum`, `tar`, `gzip -t`, `xz -t`, `lz4 -t`,
//! `bgzip`, `unzip` and `qemu-img info`; Packer's chain and `keep_input_artifact` rules; a
//! refused shrink that leaves the file untouched; a cancelled compression that leaves no
//! partial file; `shell-local`'s environment, streams and exit codes. No VM is booted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::build::artifact::Artifact;
use kiln::build::event::{Event, EventSink, Outcome, Stream};
use kiln::build::postprocess::{BuildFacts, PostOutcome, run_chains};
use kiln::build::redact::Redactor;
use kiln::recipe::postprocessor::PostProcessor;
use kiln::recipe::template::{LoadOptions, load_file};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Runs `program args` and returns its stdout; fails the test on a non-zero exit.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A qcow2 image with `data_mib` MiB of random data in it, 64 MiB virtual.
fn image(dir: &Path, name: &str, data_mib: usize) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    let mut data = vec![0u8; data_mib << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&raw, &data).unwrap();
    run("qemu-img", &["resize", "-q", "-f", "raw", s(&raw), "64M"]);
    let qcow2 = dir.join(name);
    run(
        "qemu-img",
        &[
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&raw),
            s(&qcow2),
        ],
    );
    std::fs::remove_file(&raw).unwrap();
    qcow2
}

/// The post-processor chains of a recipe whose `post-processors` section is `section`.
/// The facts of a build named `build_name` with a minimal qemu builder.
fn facts(build_name: &str, run_uuid: &str, scratch: &Path) -> BuildFacts {
    let builder = loaded(scratch, json!([])).builds[0].builder.clone();
    BuildFacts {
        build_name: build_name.into(),
        builder_type: "qemu".into(),
        run_uuid: run_uuid.into(),
        scratch: scratch.to_path_buf(),
        logs: scratch.to_path_buf(),
        builder: std::sync::Arc::new(builder),
        qemu_binary: PathBuf::new(),
        accel: None,
    }
}

fn chains(dir: &Path, section: Value) -> Vec<Vec<PostProcessor>> {
    loaded(dir, section).builds[0].post_processors.clone()
}

fn loaded(dir: &Path, section: Value) -> kiln::recipe::template::Recipe {
    let recipe = json!({
        "builders": [{
            "type": "qemu",
            "name": "debian",
            "iso_url": "https://example.com/debian.qcow2",
            "iso_checksum": "none",
            "disk_image": true,
            "ssh_username": "debian"
        }],
        "post-processors": section
    });
    let path = dir.join("recipe.json");
    std::fs::write(&path, serde_json::to_string_pretty(&recipe).unwrap()).unwrap();
    let options = LoadOptions {
        pwd: Some(dir.to_path_buf()),
        ..LoadOptions::default()
    };
    match load_file(&path, &options) {
        Ok(r) => r,
        Err(diags) => panic!("the test recipe is invalid:\n{diags}"),
    }
}

struct Ran {
    result: PostOutcome,
    events: Vec<Event>,
}

impl Ran {
    fn failure(&self) -> &str {
        match &self.result.outcome {
            Outcome::Failed(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        self.result
            .artifacts
            .iter()
            .flat_map(|a| a.files.clone())
            .collect()
    }

    fn lines(&self, stream: Stream) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log {
                    stream: s, line, ..
                } if *s == stream => Some(line.clone()),
                _ => None,
            })
            .collect()
    }
}

async fn process(
    chains: &[Vec<PostProcessor>],
    image: &Path,
    scratch: &Path,
    cancel: CancellationToken,
) -> Ran {
    let (sink, mut rx) = EventSink::channel(Redactor::new());
    let facts = facts("debian", "0b7a9c5e-1111-4c3a-9d7e-2f7e8a6b5c4d", scratch);
    let result = run_chains(chains, Artifact::builder(image), facts, sink, cancel)
        .await
        .expect("every post-processor is supported");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    Ran { result, events }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn checksum_writes_packer_lines_for_every_type_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 2);
    let out = dir
        .path()
        .join("sums/{{.BuildName}}_{{.BuilderType}}.{{.ChecksumType}}");
    let c = chains(
        dir.path(),
        json!([{"type": "checksum", "checksum_types": ["sha256", "md5", "sha224", "sha512", "sha1", "sha384"], "output": s(&out)}]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    for (t, tool) in [
        ("sha256", "sha256sum"),
        ("md5", "md5sum"),
        ("sha224", "sha224sum"),
        ("sha512", "sha512sum"),
        ("sha1", "sha1sum"),
        ("sha384", "sha384sum"),
    ] {
        let file = dir.path().join(format!("sums/debian_qemu.{t}"));
        let expected = run(tool, &[s(&img)]);
        let hash = expected.split_whitespace().next().unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{hash}\tdisk.qcow2\n"),
            "{t}"
        );
    }
    // Two artifacts: the image (kept by the checksum) and the checksum's (the image and the
    // six checksum files).
    assert!(img.is_file());
    let artifacts = &ran.result.artifacts;
    assert_eq!(artifacts.len(), 2, "{artifacts:?}");
    assert_eq!(artifacts[0], Artifact::builder(&img));
    assert_eq!(artifacts[1].files.len(), 7, "{artifacts:?}");
    assert_eq!(artifacts[1].files[0], img);

    // Packer appends to an existing checksum file.
    let again = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(again.result.outcome, Outcome::Done);
    let text = std::fs::read_to_string(dir.path().join("sums/debian_qemu.sha256")).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert_eq!(text.lines().next(), text.lines().nth(1));
}

#[tokio::test]
async fn manifest_is_packers_format_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let manifest = dir.path().join("packer-manifest.json");
    let c = chains(
        dir.path(),
        json!([{"type": "manifest", "output": s(&manifest), "custom_data": {"zone": "ch-gva-2"}}]),
    );
    let before = chrono::Utc::now().timestamp();
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["builds", "last_run_uuid"]);
    let b = &m["builds"][0];
    let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "name",
            "builder_type",
            "build_time",
            "files",
            "artifact_id",
            "packer_run_uuid",
            "custom_data"
        ]
    );
    assert_eq!(b["name"], "debian");
    assert_eq!(b["builder_type"], "qemu");
    assert!(b["build_time"].as_i64().unwrap() >= before);
    assert_eq!(b["files"][0]["name"], s(&img));
    assert_eq!(
        b["files"][0]["size"].as_u64().unwrap(),
        std::fs::metadata(&img).unwrap().len()
    );
    assert_eq!(b["artifact_id"], "VM");
    assert_eq!(b["packer_run_uuid"], "0b7a9c5e-1111-4c3a-9d7e-2f7e8a6b5c4d");
    assert_eq!(b["custom_data"], json!({"zone": "ch-gva-2"}));
    assert_eq!(m["last_run_uuid"], "0b7a9c5e-1111-4c3a-9d7e-2f7e8a6b5c4d");
    // The manifest passes the image through and keeps it.
    assert_eq!(ran.files(), vec![img.clone()]);
    assert!(img.is_file());

    // A second run appends, with strip_path and strip_time; an earlier entry's unknown
    // fields survive.
    let mut edited = m.clone();
    edited["builds"][0]["extra"] = json!("kept");
    std::fs::write(&manifest, serde_json::to_string(&edited).unwrap()).unwrap();
    let c2 = chains(
        dir.path(),
        json!([{"type": "manifest", "output": s(&manifest), "strip_path": true, "strip_time": true}]),
    );
    let ran = process(&c2, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let builds = m["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2);
    assert_eq!(builds[0]["extra"], "kept");
    assert_eq!(builds[1]["files"][0]["name"], "disk.qcow2");
    assert!(builds[1].get("build_time").is_none());
    assert_eq!(builds[1]["custom_data"], Value::Null);
    // Written through a temporary file: nothing else is left in the directory.
    assert_eq!(
        names(dir.path()),
        ["disk.qcow2", "packer-manifest.json", "recipe.json"]
    );
}

#[tokio::test]
async fn manifest_refuses_a_file_that_is_not_a_manifest_and_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let manifest = dir.path().join("notes.json");
    std::fs::write(&manifest, "[1, 2]").unwrap();
    let c = chains(
        dir.path(),
        json!([{"type": "manifest", "output": s(&manifest)}]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    let why = ran.failure();
    assert!(why.starts_with("Post-processor 1/1: manifest: "), "{why}");
    assert!(
        why.contains("is not a Packer manifest (it is not a JSON object)"),
        "{why}"
    );
    assert!(why.contains("set `output` to another file"), "{why}");
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "[1, 2]");
    assert!(img.is_file(), "a failed post-processor removes nothing");
}

/// Compresses a fresh image to `name` and returns (image, archive, directory).
async fn compress(name: &str, extra: Value) -> (PathBuf, PathBuf, tempfile::TempDir, Ran) {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 2);
    let archive = dir.path().join(name);
    let mut pp = json!({"type": "compress", "output": s(&archive), "keep_input_artifact": true});
    for (k, v) in extra.as_object().unwrap() {
        pp[k] = v.clone();
    }
    let c = chains(dir.path(), json!([pp]));
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    assert!(archive.is_file());
    assert_eq!(ran.result.artifacts.len(), 2, "image kept, archive made");
    (img, archive, dir, ran)
}

#[tokio::test]
async fn compress_writes_every_format_real_tools_read() {
    let extract = |dir: &Path| dir.join("out");
    // Archives: the image inside under its base name, byte for byte.
    for (name, list) in [
        ("a.tar.gz", vec!["tar", "-xzf"]),
        ("a.tgz", vec!["tar", "-xzf"]),
        ("a.tar", vec!["tar", "-xf"]),
        ("a.tar.xz", vec!["tar", "-xJf"]),
        ("a.tar.lz4", vec!["tar", "-I", "lz4", "-xf"]),
        ("a.tar.bgzf", vec!["tar", "-xzf"]),
        ("a.zip", vec!["unzip", "-q"]),
    ] {
        let (img, archive, dir, _) = compress(name, json!({"compression_level": 1})).await;
        let out = extract(dir.path());
        std::fs::create_dir(&out).unwrap();
        let mut args: Vec<&str> = list[1..].to_vec();
        args.push(s(&archive));
        let mut cmd = Command::new(list[0]);
        cmd.args(&args).current_dir(&out);
        let status = cmd.status().unwrap();
        assert!(status.success(), "{name}: {list:?} failed");
        assert_eq!(names(&out), ["disk.qcow2"], "{name}");
        assert_eq!(
            std::fs::read(out.join("disk.qcow2")).unwrap(),
            std::fs::read(&img).unwrap(),
            "{name}"
        );
    }
    // Single-file formats, checked by each tool's own test mode and decompressed.
    for (name, test, cat) in [
        ("a.gz", vec!["gzip", "-t"], vec!["gzip", "-dc"]),
        ("a.xz", vec!["xz", "-t"], vec!["xz", "-dc"]),
        ("a.lz4", vec!["lz4", "-t"], vec!["lz4", "-dc"]),
        ("a.bgzf", vec!["gzip", "-t"], vec!["bgzip", "-dc"]),
    ] {
        let (img, archive, _dir, _) = compress(name, json!({})).await;
        let mut args = test[1..].to_vec();
        args.push(s(&archive));
        run(test[0], &args);
        let mut args = cat[1..].to_vec();
        args.push(s(&archive));
        let out = Command::new(cat[0]).args(&args).output().unwrap();
        assert!(out.status.success(), "{name}");
        assert_eq!(out.stdout, std::fs::read(&img).unwrap(), "{name}");
    }
    // bgzip itself recognises the blocked format (it reads the BC field).
    let (_img, archive, _dir, _) = compress("b.bgzf", json!({})).await;
    let out = Command::new("bgzip")
        .args(["-t", s(&archive)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bgzip -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn compression_level_changes_the_size() {
    let (_, fast, _d1, _) = compress("fast.tar.gz", json!({"compression_level": 1})).await;
    let (_, small, _d2, _) = compress("small.tar.gz", json!({"compression_level": 9})).await;
    let (fast, small) = (
        std::fs::metadata(fast).unwrap().len(),
        std::fs::metadata(small).unwrap().len(),
    );
    // The image is random data plus qcow2 metadata: level 9 must not be bigger.
    assert!(small <= fast, "level 9 {small} > level 1 {fast}");
}

#[tokio::test]
async fn compress_removes_its_input_unless_kept() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let archive = dir.path().join("disk.tar.gz");
    let c = chains(
        dir.path(),
        json!([{"type": "compress", "output": s(&archive)}]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done);
    assert!(!img.exists(), "compress does not keep its input by default");
    assert_eq!(ran.files(), vec![archive.clone()]);
    assert!(
        ran.lines(Stream::Kiln)
            .iter()
            .any(|l| l.contains("removed") && l.contains("keep_input_artifact")),
        "{:?}",
        ran.events
    );
    run("gzip", &["-t", s(&archive)]);
}

#[tokio::test]
async fn one_file_formats_refuse_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let sums = dir.path().join("SUMS");
    let c = chains(
        dir.path(),
        json!([[{"type": "checksum", "checksum_types": ["sha256"], "output": s(&sums)},
                {"type": "compress", "output": s(&dir.path().join("disk.gz"))}]]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    let why = ran.failure();
    assert!(
        why.contains("`.gz` compresses one file, but the input artifact has 2"),
        "{why}"
    );
    assert!(why.contains("end `output` with .tar.gz"), "{why}");
    assert!(img.is_file() && sums.is_file());
    assert!(!dir.path().join("disk.gz").exists());
    assert!(!dir.path().join(".disk.gz.kiln-partial").exists());
}

#[tokio::test]
async fn chains_start_from_the_image_and_keep_what_packer_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let d = dir.path();
    // Chain 1: checksum (keeps its input) then compress (drops the checksum artifact: the
    // image and the sums file; the image stays because the checksum kept it as the build's
    // artifact). Chain 2: compress alone, starting again from the image.
    let c = chains(
        d,
        json!([
            [
                {"type": "checksum", "checksum_types": ["sha256"], "output": s(&d.join("SUMS"))},
                {"type": "compress", "output": s(&d.join("both.tar"))}
            ],
            {"type": "compress", "output": s(&d.join("image.gz"))}
        ]),
    );
    let ran = process(&c, &img, d, CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    // The tar holds what chain 1's compress got: image and sums.
    let listing = run("tar", &["-tf", s(&d.join("both.tar"))]);
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["disk.qcow2", "SUMS"]);
    // Chain 2 started from the image, not from chain 1's tar.
    let unpacked = Command::new("gzip")
        .args(["-dc", s(&d.join("image.gz"))])
        .output()
        .unwrap();
    assert_eq!(unpacked.stdout, std::fs::read(&img).unwrap());
    // The builder's artifact is kept (the first post-processor of chain 1 keeps it); the
    // sums file was an intermediate artifact and is gone.
    assert_eq!(
        names(d),
        ["both.tar", "disk.qcow2", "image.gz", "recipe.json"]
    );
    assert_eq!(
        ran.files(),
        [img.clone(), d.join("both.tar"), d.join("image.gz")]
    );
    let steps: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "Post-processor 1/3: checksum",
            "Post-processor 2/3: compress",
            "Post-processor 3/3: compress"
        ]
    );
}

#[tokio::test]
async fn keep_input_artifact_keeps_intermediates_and_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let d = dir.path();
    let c = chains(
        d,
        json!([[
            {"type": "compress", "output": s(&d.join("disk.tar")), "keep_input_artifact": true},
            {"type": "compress", "output": s(&d.join("disk.tar.xz")), "keep_input_artifact": true}
        ]]),
    );
    let ran = process(&c, &img, d, CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    assert_eq!(
        names(d),
        ["disk.qcow2", "disk.tar", "disk.tar.xz", "recipe.json"]
    );
    // Without keep_input_artifact only the last archive stays.
    let img = image(d, "disk2.qcow2", 1);
    let c = chains(
        d,
        json!([[
            {"type": "compress", "output": s(&d.join("disk2.tar"))},
            {"type": "compress", "output": s(&d.join("disk2.tar.xz"))}
        ]]),
    );
    let ran = process(&c, &img, d, CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done);
    assert!(!img.exists() && !d.join("disk2.tar").exists());
    assert_eq!(ran.files(), [d.join("disk2.tar.xz")]);
    run("xz", &["-t", s(&d.join("disk2.tar.xz"))]);
}

#[tokio::test]
async fn checksum_input_cannot_be_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let c = chains(
        dir.path(),
        json!([{"type": "checksum", "keep_input_artifact": false, "output": s(&dir.path().join("x.{{.ChecksumType}}"))}]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done);
    assert!(
        img.is_file(),
        "a checksum of a deleted file would be useless"
    );
    assert!(
        ran.lines(Stream::Kiln)
            .iter()
            .any(|l| l.contains("`keep_input_artifact: false` is ignored"))
    );
    assert!(
        dir.path().join("x.md5").is_file(),
        "md5 is the default type"
    );
}

fn virtual_size(img: &Path) -> u64 {
    let info: Value =
        serde_json::from_str(&run("qemu-img", &["info", "--output=json", s(img)])).unwrap();
    info["virtual-size"].as_u64().unwrap()
}

#[tokio::test]
async fn resize_grows_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let c = chains(
        dir.path(),
        json!([{"type": "kiln-resize", "disk_size": "2G"}]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    assert_eq!(virtual_size(&img), 2 << 30);
    assert_eq!(ran.files(), vec![img.clone()]);
    run("qemu-img", &["check", "-q", s(&img)]);
}

#[tokio::test]
async fn resize_refuses_to_shrink_before_touching_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let bytes = std::fs::read(&img).unwrap();
    let mtime = std::fs::metadata(&img).unwrap().modified().unwrap();
    let c = chains(
        dir.path(),
        json!([{"type": "kiln-resize", "disk_size": "32M"}]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    let why = ran.failure();
    assert!(
        why.starts_with("Post-processor 1/1: kiln-resize: "),
        "{why}"
    );
    assert!(
        why.contains("is 64 MiB; resizing it to 32 MiB would cut the file system"),
        "{why}"
    );
    assert!(why.contains("the image was not changed"), "{why}");
    assert_eq!(std::fs::read(&img).unwrap(), bytes);
    assert_eq!(std::fs::metadata(&img).unwrap().modified().unwrap(), mtime);
    assert_eq!(virtual_size(&img), 64 << 20);
}

#[tokio::test]
async fn cancelling_a_long_compression_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 48);
    let archive = dir.path().join("disk.tar.xz");
    let c = chains(
        dir.path(),
        json!([{"type": "compress", "output": s(&archive), "compression_level": 9}]),
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let partial = dir.path().join(".disk.tar.xz.kiln-partial");
    let watched = partial.clone();
    let cancelled_at = tokio::spawn(async move {
        // Cancel once the compression is under way (its partial file exists).
        while !watched.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
        Instant::now()
    });
    let ran = process(&c, &img, dir.path(), cancel).await;
    let returned = Instant::now();
    let cancelled_at = cancelled_at.await.unwrap();
    assert_eq!(ran.result.outcome, Outcome::Cancelled);
    // Uninterrupted, xz at level 9 of 48 MiB of noise takes about 35 s of one core here.
    assert!(
        returned.duration_since(cancelled_at) < Duration::from_secs(10),
        "xz at level 9 of 48 MiB was not interrupted: it ended {:?} after the cancel",
        returned.duration_since(cancelled_at)
    );
    assert!(!partial.exists() && !archive.exists());
    // The worker thread stops too: nothing appears afterwards, and the input is intact.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(names(dir.path()), ["disk.qcow2", "recipe.json"]);
    run("qemu-img", &["check", "-q", s(&img)]);
    assert!(ran.events.iter().any(|e| matches!(
        e,
        Event::Progress { done, total: Some(t), .. } if *done > 0 && done < t
    )));
}

#[tokio::test]
async fn shell_local_gets_the_artifact_and_streams_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let script = dir.path().join("after.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"script sees $KILN_ARTIFACT size $(stat -c %s \"$KILN_ARTIFACT\")\"\necho warn >&2\nexit 3\n",
    )
    .unwrap();
    run("chmod", &["+x", s(&script)]);
    let c = chains(
        dir.path(),
        json!([{
            "type": "shell-local",
            "environment_vars": ["GREETING=it's here"],
            "inline": [
                "echo \"$PACKER_BUILD_NAME/$PACKER_BUILDER_TYPE: $GREETING\"",
                "echo \"files: $KILN_ARTIFACT_FILES\"",
                "echo oops >&2"
            ]
        }, {
            "type": "shell-local",
            "script": s(&script),
            "valid_exit_codes": [0, 3]
        }]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    assert_eq!(ran.result.outcome, Outcome::Done, "{:?}", ran.events);
    let size = std::fs::metadata(&img).unwrap().len();
    assert_eq!(
        ran.lines(Stream::Stdout),
        [
            "debian/qemu: it's here".to_string(),
            format!("files: {}", img.display()),
            format!("script sees {} size {size}", img.display()),
        ]
    );
    assert_eq!(ran.lines(Stream::Stderr), ["oops", "warn"]);
    assert_eq!(
        ran.files(),
        vec![img.clone()],
        "shell-local passes the artifact on"
    );
    // The inline script was a temporary file in the scratch directory, removed after.
    assert!(
        !names(dir.path())
            .iter()
            .any(|n| n.starts_with("shell-local-"))
    );
}

#[tokio::test]
async fn shell_local_fails_on_an_invalid_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    let c = chains(
        dir.path(),
        json!([
            {"type": "shell-local", "inline": ["echo before", "exit 4"]},
            {"type": "checksum", "output": s(&dir.path().join("never"))}
        ]),
    );
    let ran = process(&c, &img, dir.path(), CancellationToken::new()).await;
    let why = ran.failure();
    assert!(
        why.starts_with("Post-processor 1/2: shell-local: 2 inline command(s) failed (exit code 4); valid exit codes: [0]"),
        "{why}"
    );
    assert_eq!(ran.lines(Stream::Stdout), ["before"]);
    assert!(
        !dir.path().join("never").exists(),
        "the build stopped there"
    );
    assert!(img.is_file());
}

#[tokio::test]
async fn shell_local_keeps_secrets_out_of_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk.qcow2", 1);
    // The execute_command prints its own arguments: the secret must not be among them, yet
    // the script sees it in its environment.
    let c = chains(
        dir.path(),
        json!([{
            "type": "shell-local",
            "environment_vars": ["TOKEN=hunter2-very-secret", "PLAIN=visible"],
            "execute_command": ["/bin/sh", "-c", "echo \"args: $0 $*\"; {{.Vars}} {{.Script}}", "{{.Vars}}"],
            "inline": ["test \"$TOKEN\" = hunter2-very-secret && echo token-ok"]
        }]),
    );
    let (sink, mut rx) = EventSink::channel(Redactor::new());
    sink.redactor().register("hunter2-very-secret");
    let facts = facts("debian", "u", dir.path());
    let result = run_chains(
        &c,
        Artifact::builder(&img),
        facts,
        sink,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut lines = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Log { line, .. } = e {
            lines.push(line);
        }
    }
    assert_eq!(result.outcome, Outcome::Done, "{lines:?}");
    let args = lines.iter().find(|l| l.starts_with("args: ")).unwrap();
    assert!(args.contains("PLAIN='visible'"), "{args}");
    assert!(!args.contains("TOKEN"), "{args}");
    assert!(lines.iter().any(|l| l == "token-ok"), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("TOKEN hold(s) a secret")));
}
