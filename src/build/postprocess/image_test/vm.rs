//! The test VM: the artifact under a throw-away qcow2 overlay (the artifact is only ever
//! read), a fresh cloud-init seed with a fresh client key and a pinned host key, the
//! builder's machine (memory, CPUs, accelerator, disk interface, NIC, firmware), and the
//! serial console captured like the build's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::record_bootcmd;
use crate::build::event::Event;
use crate::build::runner::{StepContext, StepError};
use crate::build::steps::ssh_wait::{SshWait, ssh_or_vm_end};
use crate::build::steps::user_data;
use crate::cloudinit::{SeedFiles, SeedFormat, write_to_path};
use crate::image::qemu_img::QemuImg;
use crate::qemu::accel::{self, may_fall_back};
use crate::qemu::cmdline::{Accel, Launch, build_args};
use crate::qemu::ports::free_local_port;
use crate::qemu::serial::SerialConsole;
use crate::qemu::vm::{Vm, VmEnd, VmSockets};
use crate::recipe::qemu::{Accelerator, DiskFormat, QemuConfig};
use crate::ssh::{Auth, HostKeyPolicy, KeyPair, Session, Target};

/// How many console lines an error shows.
const CONSOLE_LINES: usize = 30;

/// `qemuargs` switches the test VM leaves out: they attach the build's own drives or seed
/// (the seed article's `seed.img`, a nocloud-net serial), which would replace the overlay
/// and the test seed.
const BUILD_ONLY_SWITCHES: &[&str] = &["-drive", "-cdrom", "-hda", "-fda", "-smbios"];

/// A running test VM and what it needs to be checked.
pub struct TestVm {
    vm: Vm,
    console: SerialConsole,
    /// The SSH session as the builder's `ssh_username`, with this boot's key.
    pub session: Session,
}

impl TestVm {
    /// The last console lines, for error messages.
    pub fn console_tail(&self) -> String {
        self.console.tail(CONSOLE_LINES).join("\n")
    }

    /// Stops the VM (the overlay is thrown away, so there is nothing to shut down cleanly).
    pub async fn stop(mut self) {
        self.session.close().await;
        self.vm.kill().await;
    }
}

/// The builder's configuration as the test VM uses it: the overlay is qcow2, no VNC, no
/// installer, and none of the build's own drives.
pub fn test_config(builder: &QemuConfig) -> QemuConfig {
    let mut config = builder.clone();
    config.format = DiskFormat::Qcow2;
    config.disk_image = true;
    config.disable_vnc = true;
    config.headless = true;
    config.vm_name = format!("{}-test", builder.vm_name);
    config.qemuargs.retain(|row| {
        let switch = row.first().map(String::as_str).unwrap_or("");
        let refers_to_a_drive =
            switch == "-device" && row[1..].iter().any(|v| v.contains("drive="));
        !BUILD_ONLY_SWITCHES.contains(&switch) && !refers_to_a_drive
    });
    config
}

/// What [`boot`] needs.
pub struct BootRequest<'a> {
    /// The artifact's image (read only).
    pub image: &'a Path,
    /// The builder's configuration.
    pub builder: &'a QemuConfig,
    /// The qemu binary (empty: the builder's `qemu_binary`).
    pub qemu_binary: &'a Path,
    /// The accelerator the build's VM last ran with, when it booted one.
    pub build_accel: Option<Accel>,
    /// A private directory for the overlay, the seed and the sockets; the caller removes it.
    pub dir: &'a Path,
    /// Where the test VM's serial console is logged.
    pub serial_log: PathBuf,
    /// How long to wait for SSH.
    pub ssh_timeout: Duration,
}

/// Boots the artifact under an overlay and waits for SSH.
pub async fn boot(ctx: &StepContext, request: BootRequest<'_>) -> Result<TestVm, StepError> {
    let config = test_config(request.builder);
    let qemu_img = QemuImg::locate().map_err(crate::build::steps::fail)?;
    let overlay = request.dir.join("test-overlay.qcow2");
    qemu_img
        .create_overlay(request.image, &overlay, ctx.cancel())
        .await
        .map_err(|e| StepError(format!("cannot make the test overlay: {e}")))?;

    let client = KeyPair::generate_with_comment("kiln-test").map_err(crate::build::steps::fail)?;
    let host =
        KeyPair::generate_with_comment("kiln-test-host").map_err(crate::build::steps::fail)?;
    let redactor = ctx.events().redactor();
    client
        .register_with(redactor)
        .map_err(crate::build::steps::fail)?;
    host.register_with(redactor)
        .map_err(crate::build::steps::fail)?;
    let seed = request.dir.join("test-seed.iso");
    let files = SeedFiles::new(format!(
        "{}{}",
        user_data(&client.public_key_openssh(), &host)?,
        record_bootcmd()
    ))
    .instance_id(format!("kiln-test-{}", uuid::Uuid::new_v4()));
    write_to_path(&files, SeedFormat::Iso, &seed).map_err(crate::build::steps::fail)?;

    let port = free_local_port(config.host_port_min, config.host_port_max).ok_or_else(|| {
        StepError(format!(
            "no free port between host_port_min {} and host_port_max {} on 127.0.0.1",
            config.host_port_min, config.host_port_max
        ))
    })?;
    let sockets = VmSockets::in_dir(request.dir);
    let console = SerialConsole::listen(&sockets.serial, &request.serial_log, ctx.events().clone())
        .map_err(|e| StepError(format!("cannot listen for the serial console: {e}")))?;
    let binary = if request.qemu_binary.as_os_str().is_empty() {
        PathBuf::from(&config.qemu_binary)
    } else {
        request.qemu_binary.to_path_buf()
    };
    let launch = |accel| Launch {
        accel,
        disk: overlay.clone(),
        iso: None,
        seed: Some(seed.clone()),
        cdroms: Vec::new(),
        ssh_host_port: Some(port),
        vnc_display: None,
        qmp_socket: sockets.qmp.clone(),
        serial_socket: sockets.serial.clone(),
        http: None,
        output_dir: request.dir.to_path_buf(),
    };
    let start = |accel| {
        let args = build_args(&config, &launch(accel));
        let binary = binary.clone();
        let events = ctx.events().clone();
        let qmp = sockets.qmp.clone();
        async move {
            let args = args.map_err(crate::build::steps::fail)?;
            Vm::start(&binary, &args, &qmp, events)
                .await
                .map_err(crate::build::steps::fail)
        }
    };
    let mut accel = test_accel(ctx, config.accelerator, request.build_accel)?;
    let mut vm = start(accel).await?;
    ctx.log(format!(
        "test VM {} with {}, SSH on 127.0.0.1:{port}",
        config.vm_name,
        accel.name().to_uppercase()
    ));
    let target = Target::new(
        format!("127.0.0.1:{port}"),
        config.ssh.username.clone(),
        Auth::Key(client),
        HostKeyPolicy::pinned(host.public_key().clone()),
    );
    let cancel = ctx.cancel().clone();
    loop {
        let outcome = ssh_or_vm_end(
            &mut vm,
            &target,
            request.ssh_timeout,
            config.ssh.handshake_attempts,
            &cancel,
        )
        .await;
        let tail = || console.tail(CONSOLE_LINES).join("\n");
        match outcome {
            SshWait::Connected(session) => {
                return Ok(TestVm {
                    vm,
                    console,
                    session: *session,
                });
            }
            SshWait::Failed(e) => {
                vm.kill().await;
                return Err(StepError(format!(
                    "the test VM: {e}\nlast console lines:\n{}",
                    tail()
                )));
            }
            SshWait::VmEnded(VmEnd::KvmFailure(line))
                if may_fall_back(config.accelerator, accel) =>
            {
                ctx.events().send(Event::Warning(format!(
                    "KVM failed inside the test VM ({line}); restarting it with TCG"
                )));
                vm.kill().await;
                accel = Accel::Tcg;
                vm = start(accel).await?;
            }
            SshWait::VmEnded(VmEnd::KvmFailure(line)) => {
                vm.kill().await;
                return Err(StepError(format!(
                    "KVM failed inside the test VM ({line}): set accelerator to \"auto\" or \"tcg\""
                )));
            }
            SshWait::VmEnded(VmEnd::Exited(status)) => {
                return Err(StepError(format!(
                    "the test VM's qemu exited ({status}) before SSH answered\nqemu said:\n{}\nlast console lines:\n{}",
                    vm.output_tail(),
                    tail()
                )));
            }
        }
    }
}

/// The test VM's accelerator: TCG straight away when the recipe says `auto` and the build
/// already fell back to TCG (KVM would only fail again), else the recipe's choice.
fn test_accel(
    ctx: &StepContext,
    wanted: Accelerator,
    build_accel: Option<Accel>,
) -> Result<Accel, StepError> {
    if wanted == Accelerator::Auto && build_accel == Some(Accel::Tcg) {
        ctx.log("the build ran with TCG, so the test VM does too");
        return Ok(Accel::Tcg);
    }
    let choice = accel::choose(wanted, Path::new("/dev/kvm"))
        .map_err(|why| StepError(format!("accelerator \"kvm\": {why}")))?;
    if let Some(why) = &choice.fell_back {
        ctx.log(format!("KVM unavailable ({why}); the test VM uses TCG"));
    }
    Ok(choice.accel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_vm_drops_the_builds_drives_and_keeps_the_rest() {
        let recipe = crate::recipe::template::load_str(
            "t.json",
            r#"{"builders": [{"type": "qemu", "disk_image": true, "iso_url": "base.qcow2",
                "iso_checksum": "none", "ssh_username": "debian", "vm_name": "img.raw",
                "output_directory": "out", "vnc_port_min": 5901, "vnc_port_max": 5902}]}"#,
            Path::new("/tmp"),
            &crate::recipe::template::LoadOptions::default(),
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let mut builder = recipe.builds[0].builder.clone();
        builder.format = DiskFormat::Raw;
        builder.qemuargs = vec![
            vec!["-drive".into(), "file=seed.img,format=raw".into()],
            vec!["-device".into(), "virtio-blk,drive=d0".into()],
            vec!["-device".into(), "virtio-rng-pci".into()],
            vec!["-cpu".into(), "max".into()],
            vec!["-smbios".into(), "type=1,serial=ds=nocloud-net".into()],
        ];
        let config = test_config(&builder);
        assert_eq!(config.format, DiskFormat::Qcow2);
        assert!(config.disable_vnc && config.disk_image);
        assert_eq!(
            config.qemuargs,
            vec![
                vec!["-device".to_string(), "virtio-rng-pci".into()],
                vec!["-cpu".to_string(), "max".into()],
            ]
        );
    }
}
