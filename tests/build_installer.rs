//! Installer-style builds on a real VM (TCG): kiln's HTTP server as a nocloud-net seed
//! with the boot command typed through QMP; and the shape of real multi-builder templates
//! (tests/build/realworld/template.json): a builder kiln does not run, cloud-init's seed on a
//! `cd_label: cidata` CD made from `cd_content` and `cd_files`, a floppy, Ansible from the
//! host and in the guest, a Vagrant box checked with Vagrant itself (one boot for all of it).
//! The guest reports what it got in a provisioner's output.

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/kvm_standin.rs"]
mod kvm_standin;

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
    kiln_build_with(dir, recipe, vars, &[])
}

fn kiln_build_with(dir: &Path, recipe: &str, vars: &[String], flags: &[&str]) -> Output {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/build")
        .join(recipe);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .arg("build")
        .args(flags);
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
    // KVM as nested KVM fails on some hosts: `-cpu host` aborts, the plainer model starts and
    // then pauses the guest on an internal error once the boot command was typed. kiln must
    // step down to qemu64, notice the pause, start again with TCG and type the boot command
    // again (the guest's command line below proves it was).
    let mut vars = vec![format!("base_image={}", base.display())];
    let standin = kvm_standin::kvm_device().map(|_| {
        use kvm_standin::{Kvm, StandIn, Start, cpu, every};
        StandIn::new(
            &work.path().join("qemu"),
            &[
                cpu("host", Kvm::Aborts),
                every(Start::Probe, Kvm::Runs),
                every(Start::Vm, Kvm::Pauses),
            ],
        )
    });
    if let Some(standin) = &standin {
        vars.push("accelerator=auto".into());
        vars.push(format!("qemu_binary={}", standin.qemu.display()));
    }
    let out = kiln_build(work.path(), "nocloud-net.json", &vars);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "kiln build failed");
    if let Some(standin) = &standin {
        assert_eq!(
            standin.starts(),
            [
                "kvm probe host",
                "kvm probe qemu64",
                "kvm vm qemu64",
                "tcg vm"
            ]
        );
        assert!(
            stdout.contains("using KVM with CPU model qemu64 (-cpu host: qemu aborted: error: failed to set MSR 0x10a to 0x69)"),
            "{stdout}"
        );
        let said = format!("{stdout}{stderr}");
        assert!(
            said.contains("KVM failed inside the guest (KVM internal error. Suberror: 1) and qemu paused; restarting the VM with TCG (software emulation)"),
            "{said}"
        );
    }

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

/// Whether `tool` is on PATH; without it a check that needs it fails under `tests/run.sh`
/// (`KILN_REQUIRE_TOOLS`) and is skipped, loudly, elsewhere.
fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("KILN_REQUIRE_TOOLS").is_none(),
            "{tool} is missing: apt-get install -y --no-install-recommends {package} (tests/run.sh does)"
        );
        eprintln!("skipped: {tool} is not installed ({package})");
    }
    found
}

/// The file at `path` in the first partition of the qcow2 `image` (ext4, read with debugfs).
fn file_in_image(image: &Path, dir: &Path, path: &str) -> String {
    let raw = dir.join("read-back.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw));
    let mbr = std::fs::read(&raw).map(|b| b[..512].to_vec()).unwrap();
    let start = u64::from(u32::from_le_bytes(mbr[454..458].try_into().unwrap())) * 512;
    let text = run(Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(format!("{}?offset={start}", raw.display())));
    std::fs::remove_file(&raw).unwrap();
    text
}

#[test]
fn a_real_world_template_with_a_cd_seed_a_floppy_ansible_and_a_vagrant_box() {
    let _one = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        have("ansible-playbook", "ansible-core"),
        "the ansible provisioner runs the host's ansible-playbook"
    );
    let work = tempfile::tempdir().unwrap();
    // No -only: kiln runs the qemu build and says it skips the VirtualBox one; the
    // post-processor it does not run is skipped as Packer users skip it, with -except.
    let out = kiln_build_with(
        work.path(),
        "realworld/template.json",
        &[format!("base_image={}", fixture::debian_image().display())],
        &["-except=vagrant-cloud"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "kiln build failed");
    assert!(
        stdout.contains("==> kiln runs 1 build: qemu; skips virtualbox-iso (type `virtualbox-iso`: kiln runs `qemu` builders)"),
        "{stdout}"
    );
    // The floppy was made and attached as Packer attaches it (Debian's cloud kernel has no
    // floppy driver, so this guest cannot read it; tests/cd_files.rs reads the image back).
    assert!(
        stdout.contains("floppy labelled `kilnfd` (1.44 MB): hello.txt"),
        "{stdout}"
    );
    assert!(stdout.contains(" -fda "), "qemu got the floppy: {stdout}");
    // cloud-init read its seed from the recipe's CD (Packer's cd_label cidata), and the
    // directory cd_files put there.
    let datasource = reported(&stdout, "datasource");
    assert!(
        datasource.contains("DataSourceNoCloud") && datasource.contains("/dev/sr0"),
        "cloud-init read the CD: {datasource}"
    );
    assert_eq!(reported(&stdout, "label"), "cidata");
    assert_eq!(reported(&stdout, "extra"), "from cd_files");
    assert!(stdout.contains("kiln adds no seed"), "{stdout}");
    // Ansible from the host reached the VM as the build's user, with the build's values.
    assert!(
        stdout.contains("running Ansible as debian on 127.0.0.1:"),
        "{stdout}"
    );
    assert_eq!(
        reported(&stdout, "ansible"),
        "qemu qemu realworld.qcow2 default",
        "packer_build_name, packer_builder_type, {{{{ build `ID` }}}} and the host alias"
    );
    // ansible-local staged its playbook and inventory and ran Packer's command line.
    let local = reported(&stdout, "ansible-local");
    assert!(local.contains("local.yml --extra-vars"), "{local}");
    assert!(
        local.contains("packer_build_name=qemu packer_builder_type=qemu packer_http_addr="),
        "{local}"
    );
    assert!(
        local.contains(" --become -c local -i /tmp/packer-provisioner-ansible-local/"),
        "{local}"
    );
    assert!(!stdout.contains("this is for VirtualBox only"), "{stdout}");

    // The image holds what the playbook wrote.
    let image = work.path().join("output-qemu/realworld.qcow2");
    assert_eq!(
        file_in_image(&image, work.path(), "/etc/kiln-ansible").trim(),
        "qemu qemu realworld.qcow2 default"
    );

    // The box: Packer's layout, the image as box.img, read back with tar.
    let boxfile = work.path().join("box/qemu-libvirt.box");
    let listing = run(Command::new("tar").arg("tzf").arg(&boxfile));
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["Vagrantfile", "box.img", "info.json", "metadata.json"]
    );
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("xzf")
        .arg(&boxfile)
        .arg("-C")
        .arg(&unpacked));
    assert_eq!(
        std::fs::read(unpacked.join("box.img")).unwrap(),
        std::fs::read(&image).unwrap(),
        "box.img is the image"
    );
    let metadata = std::fs::read_to_string(unpacked.join("metadata.json")).unwrap();
    assert!(
        metadata.starts_with("{\"format\":\"qcow2\",\"provider\":\"libvirt\",\"virtual_size\":"),
        "{metadata}"
    );
    let vagrantfile = std::fs::read_to_string(unpacked.join("Vagrantfile")).unwrap();
    assert!(
        vagrantfile.contains("libvirt.driver = \"qemu\""),
        "built with TCG: {vagrantfile}"
    );
    assert!(
        vagrantfile.contains("# qemu as a libvirt box"),
        "{vagrantfile}"
    );
    assert!(vagrantfile.contains("synced_folder"), "{vagrantfile}");

    // Vagrant itself takes the box.
    if have("vagrant", "vagrant vagrant-libvirt") {
        let home = work.path().join("vagrant-home");
        let added = Command::new("vagrant")
            .args(["box", "add", "--name", "kiln/realworld"])
            .arg(&boxfile)
            .env("VAGRANT_HOME", &home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .output()
            .expect("vagrant runs");
        assert!(
            added.status.success(),
            "vagrant box add: {}{}",
            String::from_utf8_lossy(&added.stdout),
            String::from_utf8_lossy(&added.stderr)
        );
        let list = Command::new("vagrant")
            .args(["box", "list"])
            .env("VAGRANT_HOME", &home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .output()
            .expect("vagrant runs");
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("kiln/realworld (libvirt, 0"), "{list}");
    }
}
