//! One real boot, with kiln's own parts end to end: a Debian guest built from Debian packages
//! (tests/fixtures/debian-image.sh, cached), a qcow2 overlay, a NoCloud seed written by kiln
//! with a fresh client key and an injected host key, qemu under TCG with kiln's command
//! line, the serial console, SSH with the host key pinned, exec, upload, and an ACPI
//! power-off through QMP. This is the only test in this file: it boots one VM.

#[path = "support/fixture.rs"]
mod fixture;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln::build::event::EventSink;
use kiln::build::redact::Redactor;
use kiln::cloudinit::{SeedFiles, SeedFormat, write_to_path};
use kiln::image::QemuImg;
use kiln::qemu::cmdline::{Accel, Launch, build_args};
use kiln::qemu::serial::SerialConsole;
use kiln::qemu::vm::{Vm, VmEnd, VmSockets};
use kiln::recipe::template::{LoadOptions, load_str};
use kiln::ssh::{Auth, HostKeyPolicy, KeyPair, Target, wait_for_ssh};
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_the_fixture_with_a_kiln_seed_and_pinned_host_key() {
    let image = fixture::debian_image();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let qemu_img = QemuImg::locate().expect("qemu-img");
    let disk = dir.path().join("disk.qcow2");
    qemu_img
        .create_overlay(&image, &disk, &cancel)
        .await
        .expect("overlay");

    // Keys: the client's, and the guest's host key that kiln injects and then pins.
    let client = KeyPair::generate().unwrap();
    let host = KeyPair::generate_with_comment("kiln-host").unwrap();
    let redactor = Redactor::new();
    client.register_with(&redactor).unwrap();
    host.register_with(&redactor).unwrap();
    let host_private = host.private_key_openssh().unwrap();
    let user_data = format!(
        "#cloud-config\nssh_authorized_keys:\n  - {}\nssh_genkeytypes: []\nssh_keys:\n  ed25519_private: |\n{}  ed25519_public: {}\n",
        client.public_key_openssh(),
        indent(host_private.expose(), "    "),
        host.public_key_openssh()
    );
    let seed = dir.path().join("seed.iso");
    write_to_path(
        &SeedFiles::new(user_data).instance_id("kiln-vm-boot-test"),
        SeedFormat::Iso,
        &seed,
    )
    .expect("seed");

    let recipe = load_str(
        "vm.json",
        r#"{"builders": [{"type": "qemu", "disk_image": true, "iso_url": "unused.qcow2",
            "iso_checksum": "none", "ssh_username": "debian", "headless": true,
            "disable_vnc": true, "memory": 1024, "cpus": 2, "disk_discard": "unmap"}]}"#,
        dir.path(),
        &LoadOptions::default(),
    )
    .expect("recipe");
    let config = &recipe.builds[0].builder;
    let sockets = VmSockets::in_dir(dir.path());
    let ssh_port = free_port();
    let launch = Launch {
        accel: Accel::Tcg,
        cpu_model: None,
        disk: disk.clone(),
        iso: None,
        seed: Some(seed),
        cdroms: Vec::new(),
        floppy: None,
        ssh_host_port: Some(ssh_port),
        vnc_display: None,
        qmp_socket: sockets.qmp.clone(),
        serial_socket: sockets.serial.clone(),
        http: None,
        output_dir: dir.path().to_path_buf(),
        incoming: None,
        recipe_disk: None,
    };
    let args = build_args(config, &launch).expect("command line");
    let (events, _rx) = EventSink::channel(redactor);
    let serial_log = dir.path().join("serial.log");
    let console = SerialConsole::listen(&sockets.serial, &serial_log, events.clone()).unwrap();
    let started = Instant::now();
    let mut vm = Vm::start(
        &PathBuf::from("/usr/bin/qemu-system-x86_64"),
        &args,
        &sockets.qmp,
        events,
    )
    .await
    .expect("qemu starts");

    let target = Target::new(
        format!("127.0.0.1:{ssh_port}"),
        "debian",
        Auth::Key(client),
        HostKeyPolicy::pinned(host.public_key().clone()),
    );
    let session = tokio::select! {
        s = wait_for_ssh(&target, Duration::from_secs(400), 10, &cancel, |_, _| {}) => match s {
            Ok(s) => s,
            Err(e) => panic!("SSH never answered: {e}\nconsole:\n{}", console.tail(30).join("\n")),
        },
        end = vm.watch() => panic!("the VM ended before SSH answered: {end:?}\nconsole:\n{}", console.tail(30).join("\n")),
    };
    let boot_to_ssh = started.elapsed();
    eprintln!("boot to SSH under TCG: {:.1} s", boot_to_ssh.as_secs_f64());

    let status = session
        .exec_capture("cloud-init status --wait", None, &cancel)
        .await
        .expect("exec");
    let status_text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status_text.contains("status: done"),
        "cloud-init: {status_text}"
    );

    let payload = b"kiln was here\n";
    session
        .upload_bytes(payload, "/tmp/kiln-marker", 0o644, &cancel, |_, _| {})
        .await
        .expect("upload");
    let check = session
        .exec_capture(
            "sha256sum /tmp/kiln-marker && sudo -n true && echo sudo-ok",
            None,
            &cancel,
        )
        .await
        .expect("exec");
    let check_text = String::from_utf8_lossy(&check.stdout).to_string();
    let expected =
        kiln::image::digest::hex_digest(kiln::recipe::checksum::HashAlgorithm::Sha256, payload);
    assert!(check_text.contains(&expected), "{check_text}");
    assert!(
        check_text.contains("sudo-ok"),
        "passwordless sudo for debian: {check_text}"
    );

    // The host key the guest uses is the one kiln injected (the pin held).
    assert_eq!(
        kiln::ssh::keys::fingerprint(session.host_key()),
        host.fingerprint()
    );

    vm.qmp().powerdown().await.expect("ACPI power button");
    let end = tokio::time::timeout(Duration::from_secs(180), vm.watch())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the guest did not power off\nconsole:\n{}",
                console.tail(30).join("\n")
            )
        });
    assert!(matches!(end, VmEnd::Exited(_)), "{end:?}");

    let log = std::fs::read_to_string(&serial_log).unwrap();
    assert!(
        log.contains("login:") || log.contains("Cloud-init"),
        "the serial log has the boot: {}",
        &log[log.len().saturating_sub(2000)..]
    );
    assert!(
        !log.contains(host_private.expose()),
        "no key material in the serial log"
    );
}
