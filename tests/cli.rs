//! The `kiln` binary as a user runs it: exit codes, Packer-style flags, JSON output, masking.

#[path = "support/file_bytes.rs"]
mod file_bytes;
#[path = "support/kvm_standin.rs"]
mod kvm_standin;
use file_bytes::{bytes_of, holds};
use kvm_standin::{Kvm, StandIn, Start, always, cpu, every};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("EXOSCALE_API_KEY")
        .env_remove("EXOSCALE_API_SECRET")
        .output()
        .expect("kiln runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_temp(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    path
}

#[test]
fn validate_exit_codes_are_0_valid_1_invalid_2_usage() {
    let ok = kiln(&[
        "validate",
        "-var",
        "bucket=my-images",
        "recipes/debian-12.json",
    ]);
    assert_eq!(ok.status.code(), Some(0), "stderr: {}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("recipes/debian-12.json: valid"));

    let invalid = kiln(&["validate", "recipes/debian-12.json"]);
    assert_eq!(invalid.status.code(), Some(1));
    let stderr = text(&invalid.stderr);
    assert!(
        stderr.contains(
            "recipes/debian-12.json:14:5: variables.bucket: required variable `bucket` is not set"
        ),
        "{stderr}"
    );

    let usage = kiln(&["validate", "--no-such-flag", "recipes/debian-12.json"]);
    assert_eq!(usage.status.code(), Some(2));
    let usage = kiln(&["validate", "-var", "novalue", "recipes/debian-12.json"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(text(&usage.stderr).contains("expected NAME=VALUE"));
}

#[test]
fn double_dash_and_var_files_work_like_packer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = write_temp(
        dir.path(),
        "a.json",
        r#"{"bucket": "from-a", "zone": "de-fra-1"}"#,
    );
    let second = write_temp(dir.path(), "b.json", r#"{"bucket": "from-b"}"#);
    let out = kiln(&[
        "inspect",
        "--var-file",
        first.to_str().unwrap(),
        "-var-file",
        second.to_str().unwrap(),
        "--json",
        "recipes/debian-12.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let var = |name: &str| {
        report["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(var("bucket")["value"], "from-b");
    assert_eq!(var("zone")["value"], "de-fra-1");
    assert!(var("bucket")["source"].as_str().unwrap().contains("b.json"));

    let out = kiln(&[
        "inspect",
        "-var-file",
        first.to_str().unwrap(),
        "-var",
        "bucket=cli",
        "--json",
        "recipes/debian-12.json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let bucket = report["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "bucket")
        .unwrap();
    assert_eq!(bucket["value"], "cli");
}

#[test]
fn validate_json_lists_diagnostics_with_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recipe = write_temp(
        dir.path(),
        "bad.json",
        "{\n  \"builders\": [{\"type\": \"qemu\", \"iso_url\": \"x.qcow2\", \"iso_checksum\": \"none\",\n    \"ssh_username\": \"debian\", \"ssh_timeout\": \"twenty\"}]\n}\n",
    );
    let out = kiln(&["validate", "-json", recipe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 1);
    assert_eq!(
        report["warnings"], 1,
        "iso_checksum none is worth a warning"
    );
    let d = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .expect("an error");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 3);
    assert_eq!(d["col"], 46);
    assert_eq!(d["path"], "builders[0].ssh_timeout");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("expected a duration like \"20m\", got \"twenty\"")
    );
}

#[test]
fn inspect_masks_sensitive_values() {
    let out = kiln(&[
        "inspect",
        "-var",
        "bucket=b",
        "-var",
        "exoscale_api_secret=SENTINEL-SECRET-123",
        "recipes/debian-12.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!all.contains("SENTINEL-SECRET-123"), "{all}");
    assert!(all.contains("exoscale_api_secret = \"********\""), "{all}");

    let out = kiln(&[
        "inspect",
        "--json",
        "-var",
        "bucket=b",
        "-var",
        "exoscale_api_secret=SENTINEL-SECRET-123",
        "recipes/debian-12.json",
    ]);
    assert!(!text(&out.stdout).contains("SENTINEL-SECRET-123"));
}

#[test]
fn inspect_shows_builder_provisioners_and_chains() {
    let out = kiln(&["inspect", "recipes/debian-10-seed-article.json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Build `qemu`:"), "{stdout}");
    assert!(
        stdout.contains("output-qemu/debian-buster.qcow2"),
        "{stdout}"
    );
    assert!(stdout.contains("1. shell: 3 inline command(s)"), "{stdout}");
    assert!(
        stdout.contains(
            "shell-local (1 inline command(s)) → exoscale-import (bucket mcorbin.fr.images"
        ),
        "{stdout}"
    );
    // What this machine adds: where the base image comes from, which accelerator.
    assert!(
        stdout.contains("  base image: its digest comes from https://"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  accelerator: kvm: KVM if this machine runs a VM with it, else the build fails"
        ),
        "{stdout}"
    );
    // Its problems are listed after it (kiln inspect shows a recipe with what is wrong).
    let problems = stdout.split("\nProblems:\n").nth(1).unwrap_or_default();
    assert!(
        problems.contains("`iso_checksum_url` is deprecated"),
        "{stdout}"
    );
}

#[test]
fn version_and_help() {
    let out = kiln(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("kiln {}", env!("CARGO_PKG_VERSION"))
    );
    let out = kiln(&["help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("validate") && help.contains("inspect"),
        "{help}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = kiln(&["validate", "no/such/recipe.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no/such/recipe.json: cannot read the file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn no_arguments_without_a_display_says_what_to_do() {
    // Without arguments kiln opens its window (tests/gui_window.rs runs it under Xvfb);
    // with no display it must fail clearly instead.
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WAYLAND_SOCKET")
        .output()
        .expect("run kiln");
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot open the window (is DISPLAY set?)")
            && stderr.contains("kiln build RECIPE"),
        "{stderr}"
    );
}

#[test]
fn doctor_finds_the_tools_and_says_how_to_fix_a_missing_one() {
    let out = kiln(&["doctor"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok   qemu-system-x86_64: QEMU emulator version"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   qemu-img: qemu-img version"),
        "{stdout}"
    );
    assert!(stdout.contains("KVM: "), "{stdout}");

    let empty_path = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("doctor")
        .env("PATH", empty_path.path())
        .output()
        .expect("kiln runs");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL qemu-img: not found on PATH"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: apt-get install -y --allow-downgrades qemu-system-x86"),
        "{stdout}"
    );
}

#[test]
fn a_breakpoint_without_a_terminal_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_temp(
        dir.path(),
        "pause.json",
        r#"{
  "builders": [{
    "type": "qemu",
    "iso_url": "does-not-exist.qcow2",
    "iso_checksum": "none",
    "disk_image": true,
    "output_directory": "out",
    "ssh_username": "debian"
  }],
  "provisioners": [
    {"type": "shell", "inline": ["true"]},
    {"type": "breakpoint", "note": "look around"}
  ]
}"#,
    );
    for ci in [None, Some("true")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.args(["build"])
            .arg(&recipe)
            .current_dir(dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"));
        match ci {
            Some(v) => cmd.env("CI", v),
            None => cmd.env_remove("CI"),
        };
        // `output()` gives the child no terminal on stdin.
        let out = cmd.output().expect("kiln runs");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("provisioners[1] is a breakpoint, which waits for the user to continue, but nobody can"),
            "{stderr}"
        );
        assert!(
            stderr.contains("Set \"disable\": true on it, or remove it; nothing was started"),
            "{stderr}"
        );
        assert!(!dir.path().join("out").exists(), "nothing was started");
    }
}

/// A recipe whose base image is missing, so `kiln build` fails at its first step without a
/// VM; the secret is part of the image's path, so the failure message carries it.
const HISTORY_RECIPE: &str = r#"{
  "description": "History CLI test",
  "variables": {"bucket": null, "api_secret": null, "memory": "1024"},
  "sensitive-variables": ["api_secret"],
  "builders": [{
    "type": "qemu",
    "name": "hist-vm",
    "iso_url": "missing-{{user `api_secret`}}.qcow2",
    "iso_checksum": "none",
    "disk_image": true,
    "output_directory": "out",
    "ssh_username": "debian",
    "memory": "{{user `memory`}}"
  }]
}"#;

/// `kiln` in `dir` with its own data, state and cache folders, no Exoscale credentials from
/// the environment, and `CI=true`.
fn kiln_command_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .current_dir(dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("EXOSCALE_API_KEY")
        .env_remove("EXOSCALE_API_SECRET")
        .env("CI", "true");
    cmd
}

/// `kiln` in `dir` (see [`kiln_command_in`]), run to its end.
fn kiln_in(dir: &Path, args: &[&str]) -> Output {
    kiln_command_in(dir, args).output().expect("kiln runs")
}

#[test]
fn kiln_build_lands_in_the_history_without_its_secret_and_kiln_history_lists_it() {
    const SENTINEL: &str = "SENTINEL-cli-9d3e-not-for-disk";
    let dir = tempfile::tempdir().unwrap();
    write_temp(dir.path(), "hist.json", HISTORY_RECIPE);
    let empty = kiln_in(dir.path(), &["history"]);
    assert_eq!(empty.status.code(), Some(0), "{}", text(&empty.stderr));
    assert!(text(&empty.stdout).contains("No build recorded yet"));
    assert!(
        !dir.path().join("data/kiln").exists(),
        "listing creates nothing"
    );

    let build = kiln_in(
        dir.path(),
        &[
            "build",
            "-var",
            "bucket=my-bucket",
            "-var",
            &format!("api_secret={SENTINEL}"),
            "hist.json",
        ],
    );
    let stderr = text(&build.stderr);
    assert_eq!(build.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("warning: this build is not recorded"),
        "{stderr}"
    );
    assert!(
        text(&build.stdout).contains("history: build #1"),
        "{}",
        text(&build.stdout)
    );

    let db_dir = dir.path().join("data/kiln");
    assert!(db_dir.join("history.sqlite").is_file());
    let bytes = bytes_of(&db_dir);
    assert!(
        holds(&bytes, "my-bucket"),
        "the values are there to be found"
    );
    assert!(!holds(&bytes, SENTINEL), "the secret reached the history");

    let list = kiln_in(dir.path(), &["history"]);
    let stdout = text(&list.stdout);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("hist.json / hist-vm"), "{stdout}");
    assert!(stdout.contains("Base image:"), "{stdout}");
    assert!(!stdout.contains("Base image: Base image:"), "{stdout}");
    assert!(!stdout.contains(SENTINEL), "{stdout}");

    let json = kiln_in(dir.path(), &["history", "--json"]);
    let builds: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let b = &builds[0];
    assert_eq!(b["outcome"], "failed");
    assert_eq!(b["origin"], "cli");
    assert_eq!(b["build"], "hist-vm");
    assert_eq!(b["stopped_at"], "Base image");
    assert!(
        b["message"].as_str().unwrap().contains("********"),
        "{}",
        b["message"]
    );
    assert_eq!(b["steps"][0]["outcome"], "failed");
    assert!(b["steps"][0]["duration_s"].is_number());
    let vars = b["variables"].as_array().unwrap();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).unwrap().clone();
    assert_eq!(var("bucket")["value"], "my-bucket");
    assert_eq!(var("api_secret")["sensitive"], true);
    assert!(var("api_secret")["value"].is_null());
    assert_eq!(var("memory")["origin"], "default");
}

#[test]
fn a_damaged_history_warns_the_build_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    write_temp(dir.path(), "hist.json", HISTORY_RECIPE);
    let db = dir.path().join("data/kiln/history.sqlite");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let garbage = b"not sqlite at all\n".repeat(300);
    std::fs::write(&db, &garbage).unwrap();

    let build = kiln_in(
        dir.path(),
        &[
            "build",
            "-var",
            "bucket=b",
            "-var",
            "api_secret=x1234",
            "hist.json",
        ],
    );
    let stderr = text(&build.stderr);
    // The build ran (and failed for its own reason: the missing image), with a warning.
    assert_eq!(build.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Base image"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "kiln: warning: this build is not recorded in the history: {} is not a kiln build history",
            db.display()
        )),
        "{stderr}"
    );

    let list = kiln_in(dir.path(), &["history"]);
    assert_eq!(list.status.code(), Some(1));
    let stderr = text(&list.stderr);
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("move it away"), "{stderr}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is untouched"
    );
}

/// A recipe on a small local base image whose VM cannot start (`qemu_binary` is
/// `/bin/false`): the build gets through the Disk step, then fails at Boot.
fn force_recipe(dir: &Path) -> PathBuf {
    let base = dir.join("base.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&base)
        .arg("64M")
        .status()
        .expect("qemu-img runs");
    assert!(made.success());
    write_temp(
        dir,
        "force.json",
        &format!(
            r#"{{"builders": [{{"type": "qemu", "name": "force-vm", "disk_image": true,
  "iso_url": "{}", "iso_checksum": "none", "output_directory": "out",
  "qemu_binary": "/bin/false", "ssh_username": "debian", "headless": true}}]}}"#,
            base.display()
        ),
    )
}

#[test]
fn force_empties_the_output_directory_but_never_one_a_running_build_holds() {
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    force_recipe(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("old.qcow2"), b"an earlier build").unwrap();

    // Another build holds the directory (what the Disk step of a running build does).
    let held = std::fs::File::open(&out).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let busy = kiln_in(dir.path(), &["build", "-force", "force.json"]);
    let said = format!("{}{}", text(&busy.stdout), text(&busy.stderr));
    assert_eq!(busy.status.code(), Some(1), "{said}");
    assert!(said.contains("is in use by another build"), "{said}");
    assert!(said.contains("`output_directory`"), "{said}");
    assert_eq!(
        std::fs::read(out.join("old.qcow2")).unwrap(),
        b"an earlier build",
        "--force must not empty a directory another build holds"
    );

    // Released: --force empties it (the directory itself stays), then Boot fails.
    drop(held);
    let forced = kiln_in(dir.path(), &["build", "-force", "force.json"]);
    let said = format!("{}{}", text(&forced.stdout), text(&forced.stderr));
    assert_eq!(forced.status.code(), Some(1), "{said}");
    assert!(said.contains("emptied the old"), "{said}");
    assert!(!said.contains("in use by another build"), "{said}");
    assert!(!out.join("old.qcow2").exists(), "{said}");
    assert!(out.is_dir());
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "the failed build left nothing behind: {said}"
    );

    // Without --force a non-empty directory is refused as before.
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let refused = kiln_in(dir.path(), &["build", "force.json"]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(said.contains("exists and is not empty"), "{said}");
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
}

/// `kiln` in `dir` (as [`kiln_in`] sets it up) as a child that keeps running.
fn spawn_kiln_in(dir: &Path, args: &[&str]) -> std::process::Child {
    kiln_command_in(dir, args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kiln starts")
}

/// The builds `kiln history --json` lists in `dir`.
fn history_json(dir: &Path) -> Vec<serde_json::Value> {
    let out = kiln_in(dir, &["history", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    match serde_json::from_slice(&out.stdout).expect("JSON") {
        serde_json::Value::Array(builds) => builds,
        other => panic!("not a list: {other}"),
    }
}

#[test]
fn a_killed_kiln_build_is_listed_as_interrupted() {
    // A server that takes connections and never answers: the base image's download waits,
    // so the build stays busy until it is killed.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/debian-12-genericcloud-amd64.qcow2",
        silent.local_addr().unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    write_temp(
        dir.path(),
        "busy.json",
        &format!(
            r#"{{
  "builders": [{{
    "type": "qemu",
    "name": "busy-vm",
    "iso_url": "{url}",
    "iso_checksum": "none",
    "disk_image": true,
    "output_directory": "out",
    "ssh_username": "debian"
  }}]
}}"#
        ),
    );
    let mut kiln = spawn_kiln_in(dir.path(), &["build", "busy.json"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let running = loop {
        if let Some(b) = history_json(dir.path()).into_iter().next() {
            break b;
        }
        assert!(
            kiln.try_wait().unwrap().is_none(),
            "kiln ended before its build was recorded"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the build was not recorded within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(running["outcome"], "unfinished", "{running}");
    assert!(
        kiln.try_wait().unwrap().is_none(),
        "the build is still busy"
    );
    let list = kiln_in(dir.path(), &["history"]);
    assert!(
        text(&list.stdout).contains("unfinished"),
        "{}",
        text(&list.stdout)
    );

    kiln.kill().unwrap(); // SIGKILL: no cleanup, no last write to the history
    kiln.wait().unwrap();

    let builds = history_json(dir.path());
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0]["outcome"], "interrupted", "{}", builds[0]);
    assert_eq!(builds[0]["build"], "busy-vm");
    let list = kiln_in(dir.path(), &["history"]);
    let stdout = text(&list.stdout);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(
        stdout.contains("the kiln running it stopped (killed or crashed)"),
        "{stdout}"
    );
    assert!(!stdout.contains("unfinished"), "{stdout}");
}

/// A recipe whose VM starts but never answers SSH (an empty disk: the firmware finds nothing
/// to boot), with the stand-in `qemu` and a short `ssh_timeout`: each build gets through
/// Boot and fails at Connect within seconds, so what the accelerator choice did shows
/// without booting a guest.
fn kvm_recipe(dir: &Path, qemu: &Path, accelerator: &str) -> PathBuf {
    let base = dir.join("base.qcow2");
    if !base.exists() {
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&base)
            .arg("64M")
            .status()
            .expect("qemu-img runs");
        assert!(made.success());
    }
    let out = dir.join(format!("out-{}", uuid_like()));
    write_temp(
        dir,
        "kvm.json",
        &format!(
            r#"{{"builders": [{{"type": "qemu", "disk_image": true, "iso_url": "{}",
  "iso_checksum": "none", "output_directory": "{}", "qemu_binary": "{}",
  "accelerator": "{accelerator}", "ssh_username": "debian", "ssh_timeout": "4s",
  "headless": true, "disable_vnc": true}}]}}"#,
            base.display(),
            out.display(),
            qemu.display()
        ),
    )
}

/// A name no earlier build in the test's directory used.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `kiln build` of [`kvm_recipe`] in `dir` (its own cache: verdicts are kept there):
/// everything it printed, and the starts the stand-in saw during this build.
fn kvm_build(dir: &Path, standin: &StandIn, accelerator: &str) -> (String, Vec<String>) {
    let before = standin.starts().len();
    kvm_recipe(dir, &standin.qemu, accelerator);
    let out = kiln_in(dir, &["build", "kvm.json"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    (said, standin.starts()[before..].to_vec())
}

#[test]
fn auto_never_starts_a_vm_with_a_kvm_the_probe_found_unusable() {
    let Some(_kvm) = kvm_standin::kvm_device() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::new(
        &dir.path().join("qemu"),
        &[cpu("host", Kvm::Aborts), cpu("qemu64", Kvm::Pauses)],
    );
    let (said, starts) = kvm_build(dir.path(), &standin, "auto");
    assert_eq!(
        starts,
        ["kvm probe host", "kvm probe qemu64", "tcg vm"],
        "{said}"
    );
    assert!(
        said.contains("KVM unavailable (/dev/kvm is present but unusable here: -cpu host: qemu aborted: error: failed to set MSR 0x10a to 0x69; -cpu qemu64: KVM internal error "),
        "{said}"
    );
    assert!(said.contains("using TCG"), "{said}");
    assert!(
        said.contains("kiln: build `qemu` failed: Connect: "),
        "the build got past Boot: {said}"
    );

    // The verdicts are kept for the machine's boot: the next build probes nothing.
    let (said, starts) = kvm_build(dir.path(), &standin, "auto");
    assert_eq!(starts, ["tcg vm"], "{said}");

    // `kvm` refuses before starting a VM, with qemu's words and what `auto` would do.
    let (said, starts) = kvm_build(dir.path(), &standin, "kvm");
    assert!(starts.is_empty(), "{starts:?}");
    assert!(
        said.contains("Boot: accelerator \"kvm\": /dev/kvm is present but unusable here: -cpu host: qemu aborted: error: failed to set MSR 0x10a to 0x69"),
        "{said}"
    );
    assert!(
        said.contains("accelerator \"auto\" would have fallen back to TCG"),
        "{said}"
    );
}

#[test]
fn auto_starts_again_with_tcg_when_kvm_makes_the_vm_exit() {
    let Some(_kvm) = kvm_standin::kvm_device() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The probe passes, but a real VM dies at once: qemu's vCPU set-up aborts.
    let standin = StandIn::new(
        &dir.path().join("qemu"),
        &[
            every(Start::Vm, Kvm::Aborts),
            every(Start::Probe, Kvm::Runs),
        ],
    );
    let (said, starts) = kvm_build(dir.path(), &standin, "auto");
    assert_eq!(
        starts,
        ["kvm probe host", "kvm vm host", "tcg vm"],
        "{said}"
    );
    assert!(
        said.contains("KVM made qemu exit while starting (error: failed to set MSR 0x10a to 0x69); starting it again with TCG (software emulation)"),
        "{said}"
    );
    assert!(said.contains("with TCG"), "{said}");

    // The failure is remembered for the machine's boot, in the cache another process reads:
    // the next build skips `host` and tries the plainer model, which dies the same way.
    let (said, starts) = kvm_build(dir.path(), &standin, "auto");
    assert_eq!(
        starts,
        ["kvm probe qemu64", "kvm vm qemu64", "tcg vm"],
        "{said}"
    );
    assert!(
        said.contains("using KVM with CPU model qemu64 (-cpu host: "),
        "{said}"
    );

    // `kvm` does not fall back: it says what failed and what `auto` would have done.
    let strict = StandIn::new(
        &dir.path().join("strict"),
        &[
            every(Start::Vm, Kvm::Aborts),
            every(Start::Probe, Kvm::Runs),
        ],
    );
    let (said, starts) = kvm_build(dir.path(), &strict, "kvm");
    assert_eq!(starts, ["kvm probe host", "kvm vm host"], "{said}");
    assert!(
        said.contains("Boot: KVM made qemu exit while starting (error: failed to set MSR 0x10a to 0x69); accelerator \"auto\" would have fallen back to TCG"),
        "{said}"
    );
}

#[test]
fn auto_starts_again_with_tcg_when_kvm_kills_the_vm_after_it_started() {
    let Some(_kvm) = kvm_standin::kvm_device() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::new(
        &dir.path().join("qemu"),
        &[
            every(Start::Vm, Kvm::AbortsLater),
            every(Start::Probe, Kvm::Runs),
        ],
    );
    let (said, starts) = kvm_build(dir.path(), &standin, "auto");
    assert_eq!(
        starts,
        ["kvm probe host", "kvm vm host", "tcg vm"],
        "{said}"
    );
    assert!(
        said.contains("KVM made qemu exit (signal: 6 (SIGABRT): error: failed to set MSR 0x10a to 0x69); restarting the VM with TCG"),
        "{said}"
    );
}

#[test]
fn doctor_tells_the_truth_about_kvm() {
    let Some(_kvm) = kvm_standin::kvm_device() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let doctor = |standin: &StandIn, device: Option<&str>| {
        let path = format!(
            "{}:{}",
            standin.dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = kiln_command_in(dir.path(), &["doctor"]);
        cmd.env("PATH", path);
        if let Some(device) = device {
            cmd.env("KILN_KVM_DEVICE", device);
        }
        let out = cmd.output().expect("kiln runs");
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        stdout
            .lines()
            .find(|l| l.contains(" KVM: "))
            .unwrap_or_else(|| panic!("no KVM line: {stdout}"))
            .to_string()
    };
    let broken = StandIn::new(
        &dir.path().join("broken"),
        &[cpu("host", Kvm::Aborts), cpu("qemu64", Kvm::Stalls)],
    );
    let line = doctor(&broken, None);
    assert!(
        line.starts_with("warn KVM: /dev/kvm is present but unusable here: -cpu host: qemu aborted: error: failed to set MSR 0x10a to 0x69; -cpu qemu64: the guest stalled in real mode"),
        "{line}"
    );
    assert!(
        line.ends_with("; builds use TCG (software emulation), several times slower"),
        "{line}"
    );

    let plain = StandIn::new(&dir.path().join("plain"), &[cpu("host", Kvm::Aborts)]);
    let line = doctor(&plain, None);
    assert!(
        line.starts_with("warn KVM: KVM runs a VM here only with the plain CPU model qemu64 (-cpu host: qemu aborted"),
        "{line}"
    );

    let works = StandIn::new(&dir.path().join("works"), &[always(Kvm::Runs)]);
    assert_eq!(
        doctor(&works, None),
        "ok   KVM: a VM runs with KVM here (-cpu host; /dev/kvm answers)"
    );
    // Doctor probes afresh: the same binary that worked is now found broken.
    let line = doctor(&works, Some("/nonexistent/kvm"));
    assert!(
        line.starts_with("warn KVM: /nonexistent/kvm does not exist"),
        "{line}"
    );
}

/// tests/build/realworld/template.json, with its base image set.
fn realworld(args: &[&str]) -> Output {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build/realworld/template.json");
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-var", "base_image=/nonexistent/base.qcow2"]);
    let recipe = recipe.display().to_string();
    all.push(&recipe);
    kiln_in(dir.path(), &all)
}

#[test]
fn several_builders_only_except_and_post_processors_kiln_does_not_run() {
    // -only=qemu: no note about the VirtualBox build; the vagrant-cloud warning stays.
    let out = realworld(&["validate", "-only=qemu"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("note:"), "{said}");
    assert!(said.contains("-except=vagrant-cloud"), "{said}");

    // Without -only the build says what it skips, and the post-processor kiln does not run
    // stops it before anything starts, naming the flag that skips it.
    let out = realworld(&["build"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("skips virtualbox-iso (type `virtualbox-iso`: kiln runs `qemu` builders)"),
        "{said}"
    );
    assert!(
        said.contains("does not run the `vagrant-cloud` post-processor (-except=vagrant-cloud skips it) yet; nothing was started"),
        "{said}"
    );

    // -only naming only a build kiln does not run leaves nothing to build.
    let out = realworld(&["build", "-only=virtualbox-iso"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("-only=virtualbox-iso selects no `qemu` build, and kiln runs `qemu` builders only; this template's qemu builds: qemu (e.g. -only=qemu)"),
        "{said}"
    );
    let out = realworld(&["validate", "-only=qemu*"]);
    assert!(
        text(&out.stderr).contains("no patterns"),
        "{}",
        text(&out.stderr)
    );

    // inspect lists the skipped build and the chain as kiln runs it.
    let out = realworld(&["inspect", "-except=vagrant-cloud"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(
            "Not run by kiln:\n  virtualbox-iso (type `virtualbox-iso`: kiln runs `qemu` builders)"
        ),
        "{shown}"
    );
    assert!(shown.contains("ansible: ansible-playbook "), "{shown}");
    assert!(
        shown.contains("vagrant (libvirt box box/{{.BuildName}}-{{.Provider}}.box, gzip level 1"),
        "{shown}"
    );
}

#[test]
fn a_publishing_build_without_credentials_stops_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = serde_json::json!({
        "builders": [{
            "type": "qemu", "disk_image": true, "iso_url": "base.qcow2", "iso_checksum": "none",
            "output_directory": "out", "ssh_username": "debian"
        }],
        "post-processors": [{
            "type": "exoscale-import", "image_bucket": "images", "template_name": "t",
            "image_zone": "ch-gva-2"
        }]
    });
    write_temp(dir.path(), "publish.json", &recipe.to_string());
    let started = std::time::Instant::now();
    let out = kiln_command_in(dir.path(), &["build", "publish.json"])
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .expect("kiln runs");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Said before the base image is even looked for (base.qcow2 does not exist either).
    assert!(
        stderr.contains("exoscale-import: no Exoscale credentials")
            && stderr.contains("nothing was started"),
        "{stderr}"
    );
    assert!(!stderr.contains("base.qcow2"), "{stderr}");
    assert!(!dir.path().join("out").exists(), "nothing was started");
    eprintln!("refused after {:?}", started.elapsed());
}
