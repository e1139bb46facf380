//! Installer-style builds on a real VM (TCG): kiln's HTTP server as a nocloud-net seed
//! with the boot command typed through QMP, and a `cd_label: cidata` CD made from
//! `cd_content` and `cd_files`. The guest reports what it got in a provisioner's output.

#[path = "support/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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

/// A copy of the test image whose extlinux waits at a `boot:` prompt for ever (PROMPT 1,
/// TIMEOUT 0) and has a second label `linux`, so what the boot command types decides how
/// the guest boots — and nothing boots without it.
fn prompting_image(base: &Path, dir: &Path) -> PathBuf {
    let raw = dir.join("prompting.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(base)
        .arg(&raw));
    let mbr = std::fs::read(&raw).map(|b| b[..512].to_vec()).unwrap();
    let start = u64::from(u32::from_le_bytes(mbr[454..458].try_into().unwrap())) * 512;
    let append =
        "root=LABEL=root ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0";
    let conf = dir.join("extlinux.conf");
    std::fs::write(
        &conf,
        format!(
            "SERIAL 0 115200\nDEFAULT debian\nPROMPT 1\nTIMEOUT 0\n\
             LABEL debian\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {append}\n\
             LABEL linux\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {append}\n"
        ),
    )
    .unwrap();
    let commands = dir.join("debugfs.cmd");
    std::fs::write(
        &commands,
        format!(
            "rm /boot/extlinux/extlinux.conf\nwrite {} /boot/extlinux/extlinux.conf\n",
            conf.display()
        ),
    )
    .unwrap();
    run(Command::new("debugfs")
        .args(["-w", "-f"])
        .arg(&commands)
        .arg(format!("{}?offset={start}", raw.display())));
    let check = run(Command::new("debugfs")
        .args(["-R", "cat /boot/extlinux/extlinux.conf"])
        .arg(format!("{}?offset={start}", raw.display())));
    assert!(check.contains("LABEL linux"), "{check}");
    let image = dir.join("prompting.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&image));
    std::fs::remove_file(&raw).unwrap();
    image
}

fn kiln_build(dir: &Path, recipe: &str, vars: &[String]) -> Output {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/build")
        .join(recipe);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .arg("build");
    for v in vars {
        cmd.arg("-var").arg(v);
    }
    cmd.arg(&recipe).output().expect("kiln runs")
}

/// The value the guest printed after `label: `.
fn reported<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.split_once(&format!("{label}: ")).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| panic!("the guest did not report `{label}`:\n{stdout}"))
}

#[test]
fn nocloud_net_seed_from_the_http_server_and_a_typed_boot_command() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let base = prompting_image(&fixture::debian_image(), work.path());
    let out = kiln_build(
        work.path(),
        "nocloud-net.json",
        &[format!("base_image={}", base.display())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "kiln build failed");

    // The typed line reached syslinux, which booted label `linux` with it appended.
    let cmdline = reported(&stdout, "cmdline");
    assert!(cmdline.starts_with("BOOT_IMAGE=/vmlinuz"), "{cmdline}");
    assert!(
        cmdline.ends_with("biosdevname=0 initrd=/initrd.img kiln.typed=Some_Mixed-Case.42"),
        "syslinux appends what was typed after the label: {cmdline}"
    );
    // cloud-init took its seed from kiln's HTTP server, not from a kiln cidata disk.
    let datasource = reported(&stdout, "datasource");
    assert!(
        datasource.contains("DataSourceNoCloudNet") && datasource.contains("http://10.0.2.2:"),
        "{datasource}"
    );
    assert_eq!(
        reported(&stdout, "hostname"),
        "kiln-http-seed",
        "the recipe's meta-data set the hostname"
    );
    // The server logged the guest's requests, and the recipe's meta-data was used.
    assert!(
        stdout.contains("GET /meta-data → 200") && stdout.contains("GET /user-data → 200"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GET /vendor-data → 200 (0 bytes)") && !stdout.contains("→ 404"),
        "kiln serves an empty vendor-data, so cloud-init does not retry: {stdout}"
    );
    assert!(stdout.contains("kiln adds no seed"), "{stdout}");
    let log_dir = std::fs::read_dir(work.path().join("state/kiln/builds"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let serial = std::fs::read_to_string(log_dir.join("serial.log")).unwrap();
    assert!(serial.contains("boot:"), "extlinux prompted on the console");
    assert!(
        work.path()
            .join("output-nocloud-net/nocloud-net.qcow2")
            .is_file(),
        "the artifact is there"
    );
}

#[test]
fn cd_label_cidata_seed_from_cd_content_and_cd_files() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let extra = work.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("hello.txt"), "from cd_files\n").unwrap();
    let out = kiln_build(
        work.path(),
        "cd-cidata.json",
        &[
            format!("base_image={}", fixture::debian_image().display()),
            format!("extra={}", extra.display()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "kiln build failed");
    let datasource = reported(&stdout, "datasource");
    assert!(
        datasource.contains("DataSourceNoCloud") && datasource.contains("/dev/sr0"),
        "cloud-init read the CD: {datasource}"
    );
    assert_eq!(reported(&stdout, "label"), "cidata");
    assert_eq!(reported(&stdout, "extra"), "from cd_files");
    assert!(stdout.contains("kiln adds no seed"), "{stdout}");
}
