//! `kiln build` end to end on a real VM (TCG here; KVM when it works — nested KVM fails on
//! these machines and kiln falls back): the fixture recipe in tests/build/, then the
//! artifact itself is checked — qcow2, 10 GiB virtual, and the provisioners' markers read
//! back from its ext4 file system.

#[path = "support/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The VM builds of this file run one at a time.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads `path` from the first partition's ext4 file system of a qcow2 image, through a
/// raw copy, a read-only loop device at the partition's offset, and debugfs.
fn read_from_image(image: &Path, scratch: &Path, files: &[&str]) -> Vec<String> {
    let raw = scratch.join("artifact.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw));
    let mbr = std::fs::read(&raw).map(|b| b[..512].to_vec()).unwrap();
    let start = u32::from_le_bytes(mbr[454..458].try_into().unwrap()) as u64;
    assert!(start > 0, "the image has an MBR partition table");
    let device = run(Command::new("losetup")
        .args(["-f", "--show", "-r", "-o", &(start * 512).to_string()])
        .arg(&raw));
    let device = device.trim().to_string();
    let contents = files
        .iter()
        .map(|f| {
            let out = Command::new("debugfs")
                .args(["-R", &format!("cat {f}"), &device])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    let _ = Command::new("losetup").args(["-d", &device]).status();
    let _ = std::fs::remove_file(&raw);
    contents
}

#[test]
fn builds_the_fixture_recipe_into_a_verified_artifact() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = fixture::debian_image();
    let work = tempfile::tempdir().unwrap();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build/fixture.json");
    let state = work.path().join("state");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(work.path())
        .env("XDG_STATE_HOME", &state)
        .env("XDG_DATA_HOME", work.path().join("data"))
        .args(["build", "-var"])
        .arg(format!("base_image={}", base.display()))
        .arg(&recipe)
        .output()
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("marker written: kiln-script"),
        "script output is streamed"
    );
    assert!(
        stdout.contains("provisioning as debian"),
        "inline output is streamed"
    );
    assert!(stdout.contains("==> build finished"), "{stdout}");
    // shell-local ran on this machine with Packer's variables, its streams apart.
    assert!(stdout.contains("    | host side: fixture qemu"), "{stdout}");
    assert!(stdout.contains("    ! to-stderr"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("shell-local-marker")).unwrap(),
        "fixture\n"
    );
    assert!(
        stdout.contains("breakpoint disabled (\"disable\": true); continuing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("==> Post-processor 1/3: checksum")
            && stdout.contains("==> Post-processor 2/3: manifest")
            && stdout.contains("==> Post-processor 3/3: kiln-test"),
        "{stdout}"
    );
    // The image test booted the artifact and every check passed: the built-in ones (the
    // build's key and host keys were taken out before shutdown) and the recipe's own.
    for check in [
        "disk: qcow2, virtual size 10 GiB",
        "cloud_init: cloud-init finished",
        "system_running: systemd: running",
        "build_keys: no authorized_keys shipped",
        "host_keys: no SSH host keys baked",
        "sudo grep -qx kiln-inline /root/inline-marker: exit 0",
        "systemctl is-active ssh: exit 0",
        "image-check.sh: exit 0",
    ] {
        assert!(
            stdout.contains(&format!("check PASS: {check}")),
            "missing `check PASS: {check}` in:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("image-check.sh: marker: kiln-script"),
        "{stdout}"
    );
    assert!(stdout.contains("all 8 image checks passed"), "{stdout}");
    assert!(
        stdout.contains("removed from the image: the build's SSH key and the SSH host keys"),
        "{stdout}"
    );

    let artifact = work.path().join("output-fixture/fixture.qcow2");
    let info: serde_json::Value = serde_json::from_str(&run(Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&artifact)))
    .unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 10u64 << 30);
    let mut leftovers: Vec<_> = std::fs::read_dir(work.path().join("output-fixture"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    leftovers.sort();
    assert_eq!(
        leftovers,
        ["fixture.qcow2", "fixture.sha256"],
        "only the artifact and its checksum are in the output directory"
    );

    // The checksum post-processor's file, in Packer's format, agrees with sha256sum — taken
    // before kiln-test booted the image, so the test VM did not write to the artifact.
    let sha256 = run(Command::new("sha256sum").arg(&artifact));
    assert_eq!(
        std::fs::read_to_string(work.path().join("output-fixture/fixture.sha256")).unwrap(),
        format!(
            "{}\tfixture.qcow2\n",
            sha256.split_whitespace().next().unwrap()
        )
    );
    // The manifest records the image as Packer does.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("manifest.json")).unwrap())
            .unwrap();
    let entry = &manifest["builds"][0];
    assert_eq!(entry["name"], "fixture");
    assert_eq!(entry["builder_type"], "qemu");
    assert_eq!(entry["artifact_id"], "VM");
    assert_eq!(entry["files"][0]["name"], "output-fixture/fixture.qcow2");
    assert_eq!(
        entry["files"][0]["size"].as_u64().unwrap(),
        std::fs::metadata(&artifact).unwrap().len()
    );
    assert_eq!(entry["custom_data"]["recipe"], "fixture");
    assert_eq!(entry["packer_run_uuid"], manifest["last_run_uuid"]);

    let contents = read_from_image(
        &artifact,
        work.path(),
        &[
            "/root/marker",
            "/root/inline-marker",
            "/root/uploaded.txt",
            "/home/debian/.ssh/authorized_keys",
            "/root/.ssh/authorized_keys",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_ed25519_key.pub",
        ],
    );
    assert_eq!(contents[0].trim(), "kiln-script");
    assert_eq!(contents[1].trim(), "kiln-inline");
    assert_eq!(contents[2].trim(), "uploaded by kiln's file provisioner");
    // Neither the build's key nor the host key kiln's seed installed ships in the image.
    for (file, content) in [
        "debian's authorized_keys",
        "root's authorized_keys",
        "host key",
        "host public key",
    ]
    .iter()
    .zip(&contents[3..])
    {
        assert!(
            !content.contains("ssh-") && !content.contains("PRIVATE KEY"),
            "{file} ships in the image: {content}"
        );
    }

    // The build's logs exist, and the console was captured.
    let logs: Vec<PathBuf> = std::fs::read_dir(state.join("kiln/builds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1);
    let build_log = std::fs::read_to_string(logs[0].join("build.log")).unwrap();
    assert!(build_log.contains("==> Compact"), "{build_log}");
    let serial = std::fs::read_to_string(logs[0].join("serial.log")).unwrap();
    assert!(
        serial.contains("login:") || serial.contains("cloud-init"),
        "the serial console is in serial.log"
    );

    // Nothing of the build is left running or lying around.
    let qemu_left = Command::new("pgrep")
        .args(["-f", "fixture.qcow2.kiln-partial"])
        .output()
        .unwrap();
    assert!(
        !qemu_left.status.success(),
        "a qemu of this build is still running"
    );
}

#[test]
fn builds_the_seed_article_form_with_its_own_seed_and_old_checksum_keys() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = fixture::debian_image();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // The article's preparation: a key pair, a user-data with its public key, and
    // `cloud-localds seed.img user-data` — here `kiln seed`.
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("id_ed25519")));
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    std::fs::write(
        dir.join("user-data"),
        format!("#cloud-config\nssh_authorized_keys:\n  - {}", public.trim()),
    )
    .unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .args(["seed", "user-data", "-o", "seed.img"]));
    // A checksum list for the old iso_checksum_url/iso_checksum_type keys.
    let digest = run(Command::new("sha256sum").arg(&base));
    let name = base.file_name().unwrap().to_string_lossy().to_string();
    std::fs::write(
        dir.join("SHA256SUMS"),
        format!("{}  {name}\n", digest.split_whitespace().next().unwrap()),
    )
    .unwrap();

    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build/seed-article.json");
    // With the step cache: the second build below resumes the VM the first one saved.
    let article_build = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(dir)
            .env("XDG_STATE_HOME", dir.join("state"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("PACKER_PRIVATE_KEY", dir.join("id_ed25519"))
            .args(["build", "--cache"])
            .args(extra)
            .arg("-var")
            .arg(format!("base_image={}", base.display()))
            .arg("-var")
            .arg(format!(
                "checksum_list=file://{}",
                dir.join("SHA256SUMS").display()
            ))
            .arg(&recipe)
            .output()
            .expect("kiln runs")
    };
    let out = article_build(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "kiln build failed:\n{stderr}");
    assert!(
        stderr.contains("`iso_checksum_url` is deprecated"),
        "{stderr}"
    );
    assert!(
        stdout.contains("(local file, sha256 ok)"),
        "the old checksum keys verified the base: {stdout}"
    );
    assert!(
        stdout.contains("kiln cannot pin the guest's host key"),
        "{stdout}"
    );
    let artifact = dir.join("output-qemu/debian-buster.qcow2");
    let contents = read_from_image(&artifact, dir, &["/root/marker"]);
    assert_eq!(contents[0].trim(), "article-form");

    // The step cache with the recipe's own drives: the rebuild resumes after the provisioner
    // on a layer in the cache (the recipe's `-drive file=output-qemu/…` pointed there), with
    // the host key the guest showed the first time pinned, and writes the same artifact.
    assert!(
        stdout.contains("step cache: saved the VM after Provision 1/1: shell"),
        "{stdout}"
    );
    let again = article_build(&["--force"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    eprintln!("{stdout}");
    assert_eq!(
        again.status.code(),
        Some(0),
        "the cached rebuild failed:\n{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        stdout.contains("step cache: resumes after Provision 1/1: shell"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("trusts the first key"),
        "the host key is pinned from the cache: {stdout}"
    );
    let contents = read_from_image(&artifact, dir, &["/root/marker"]);
    assert_eq!(contents[0].trim(), "article-form");
}

/// `kiln build --cache` with the recipe in tests/build/cached.json, its inputs in `work`.
fn cached_build(work: &Path, base: &Path, extra: &[&str]) -> (String, String) {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build/cached.json");
    let not_before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(work)
        .env("XDG_STATE_HOME", work.join("state"))
        .env("XDG_DATA_HOME", work.join("data"))
        .env("XDG_CACHE_HOME", work.join("cache"))
        .args(["build", "--cache", "--force"])
        .args(extra)
        .arg("-var")
        .arg(format!("base_image={}", base.display()))
        .arg("-var")
        .arg(format!("work={}", work.display()))
        .arg("-var")
        .arg(format!("not_before={not_before}"))
        .arg(&recipe)
        .output()
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "kiln build --cache failed");
    (stdout, stderr)
}

fn last_script(work: &Path, tag: &str) {
    std::fs::write(
        work.join("last.sh"),
        format!(
            "#!/bin/sh\nset -eu\nnow=$(date +%s)\n[ \"$now\" -ge \"$NOT_BEFORE\" ] || {{ echo \"the guest's clock is behind: $now < $NOT_BEFORE\"; exit 1; }}\necho {tag} > /root/last\ncp /tmp/upload.txt /root/upload.txt\necho last provisioner ran: {tag}\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_rebuild_resumes_from_the_step_cache_and_runs_only_what_changed() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = fixture::debian_image();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::write(work.join("upload.txt"), "upload v1\n").unwrap();
    last_script(work, "last-v1");
    let artifact = work.join("output-cached/cached.qcow2");
    let files = [
        "/root/one",
        "/root/upload.txt",
        "/root/last",
        "/home/debian/.ssh/authorized_keys",
        "/etc/ssh/ssh_host_ed25519_key",
    ];

    // 1. Cold: boots the base image, saves the VM after Connect and each provisioner.
    let (cold, _) = cached_build(work, &base, &[]);
    assert!(
        cold.contains("step cache: nothing cached for this build yet"),
        "{cold}"
    );
    for step in [
        "Connect",
        "Provision 1/3: shell",
        "Provision 2/3: file",
        "Provision 3/3: shell",
    ] {
        assert!(
            cold.contains(&format!("step cache: saved the VM after {step} (entry")),
            "no snapshot after {step}"
        );
    }
    assert!(cold.contains("last provisioner ran: last-v1"), "{cold}");

    // 2. The last script changed: resumes after provisioner 2, runs only provisioner 3; the
    //    guest's clock was set (the script fails on a clock behind the build's start).
    last_script(work, "last-v2");
    let (second, _) = cached_build(work, &base, &[]);
    assert!(
        second.contains("step cache: resumes after Provision 2/3: file"),
        "{second}"
    );
    assert!(
        second.contains("resumed from the step cache with TCG"),
        "{second}"
    );
    assert!(second.contains("set the guest's clock to now"), "{second}");
    assert!(
        !second.contains("first provisioner ran"),
        "provisioner 1 was cached"
    );
    assert!(second.contains("cached, from "), "{second}");
    assert!(second.contains("last provisioner ran: last-v2"), "{second}");
    let contents = read_from_image(&artifact, work, &files);
    assert_eq!(
        contents[0].trim(),
        "one",
        "provisioner 1's effect is in the image"
    );
    assert_eq!(contents[1].trim(), "upload v1");
    assert_eq!(contents[2].trim(), "last-v2");
    for (file, content) in files[3..].iter().zip(&contents[3..]) {
        assert!(
            !content.contains("ssh-") && !content.contains("PRIVATE KEY"),
            "{file} ships in the image of a resumed build: {content}"
        );
    }

    // 3. The uploaded file changed: provisioner 2 and 3 run again, 1 stays cached.
    std::fs::write(work.join("upload.txt"), "upload v2\n").unwrap();
    let (third, _) = cached_build(work, &base, &[]);
    assert!(
        third.contains("step cache: resumes after Provision 1/3: shell"),
        "{third}"
    );
    assert!(!third.contains("first provisioner ran"), "{third}");
    let contents = read_from_image(&artifact, work, &files);
    assert_eq!(contents[0].trim(), "one");
    assert_eq!(contents[1].trim(), "upload v2");

    // 4. A damaged entry is found by its checksum, removed with a warning, and the build
    //    resumes from the one before it; --from 1 reruns every provisioner.
    let list = run(Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("XDG_CACHE_HOME", work.join("cache"))
        .args(["cache", "list", "--json"]));
    let entries: serde_json::Value = serde_json::from_str(&list).unwrap();
    let p1 = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "Provision 1/3: shell")
        .expect("an entry after provisioner 1");
    let p1_dir = work
        .join("cache/kiln/steps")
        .join(p1["key"].as_str().unwrap());
    let state_file = std::fs::read_dir(&p1_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.")
        })
        .unwrap();
    let len = std::fs::metadata(&state_file).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&state_file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (fourth, stderr) = cached_build(work, &base, &[]);
    let both = format!("{fourth}{stderr}");
    assert!(
        both.contains("is damaged") && both.contains("removed it"),
        "{both}"
    );
    assert!(
        fourth.contains("step cache: resumes after Connect"),
        "{fourth}"
    );
    assert!(fourth.contains("first provisioner ran"), "{fourth}");
    let (fifth, _) = cached_build(work, &base, &["--from", "1"]);
    assert!(
        fifth.contains("step cache: resumes after Connect"),
        "{fifth}"
    );
    assert!(fifth.contains("first provisioner ran"), "{fifth}");

    let cleared = run(Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("XDG_CACHE_HOME", work.join("cache"))
        .args(["cache", "clear"]));
    assert!(cleared.starts_with("removed 4 entries"), "{cleared}");
}
