//! `kiln-test` on a real VM when the image is not fit to ship: a build whose provisioner
//! leaves a stray key in `authorized_keys`, tested with a check of the recipe's own that
//! fails. The build fails naming both checks, the post-processor after kiln-test in the
//! chain does not run, and no test VM or scratch file is left. (The passing case is part of
//! the end-to-end build in tests/build_e2e.rs.)

#[path = "support/fixture.rs"]
mod fixture;

use std::path::Path;
use std::process::Command;

const STRAY_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0cmF5c3RyYXlzdHJheXN0cmF5c3RyYXlzdHJheXN0 leftover@laptop";

fn recipe(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"{{
  "variables": {{"base_image": null}},
  "builders": [{{"type": "qemu", "name": "f", "disk_image": true, "iso_url": "{{{{user `base_image`}}}}",
    "iso_checksum": "none", "output_directory": "out", "vm_name": "f.qcow2", "memory": 1024, "cpus": 2,
    "headless": true, "disable_vnc": true, "ssh_username": "debian", "ssh_timeout": "10m",
    "skip_compaction": true, "shutdown_command": "sudo shutdown -P now"}}],
  "provisioners": [{{"type": "shell", "inline": ["echo '{STRAY_KEY}' >> ~/.ssh/authorized_keys"]}}],
  "post-processors": [[
    {{"type": "kiln-test", "inline": ["systemctl is-active kiln-no-such-unit", "true"]}},
    {{"type": "shell-local", "inline": ["touch after-the-test"]}}
  ]]
}}"#
    );
    let path = dir.join("recipe.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_failing_image_test_stops_the_chain_and_names_every_failed_check() {
    let base = fixture::debian_image();
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path());
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("TMPDIR", dir.path().join("tmp"))
        .args(["build", "-var"])
        .arg(format!("base_image={}", base.display()))
        .arg(&recipe)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("2 of 7 image checks failed"),
        "the summary counts the checks: {stderr}"
    );
    assert!(
        stderr.contains(
            "build_keys: the image ships 1 authorized key(s): ssh-ed25519 leftover@laptop"
        ),
        "the stray key is named (without its key material): {stderr}"
    );
    assert!(
        stderr.contains("systemctl is-active kiln-no-such-unit: exit 3, expected 0"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("AAAAC3NzaC1lZDI1NTE5AAAAIHN0cmF5"),
        "{stderr}"
    );
    for passed in ["cloud_init", "system_running", "host_keys", "true: exit 0"] {
        assert!(
            stdout.contains(&format!("check PASS: {passed}")),
            "{passed} passed: {stdout}"
        );
    }
    assert!(
        !dir.path().join("after-the-test").exists(),
        "the post-processor after kiln-test ran"
    );
    assert!(
        dir.path().join("out/f.qcow2").is_file(),
        "the artifact stays for inspection"
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(dir.path().join("out/f.qcow2"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        info.get("backing-filename").is_none(),
        "the artifact is not an overlay: {info}"
    );
    let procs = Command::new("pgrep")
        .args(["-f", &dir.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&procs.stdout).trim().is_empty(),
        "the test VM is still running"
    );
    let scratch: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(scratch.is_empty(), "scratch files left: {scratch:?}");
}
