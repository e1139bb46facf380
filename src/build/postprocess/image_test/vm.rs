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
use crate::qemu::accel::{self, AccelChoice, after_runtime_failure, may_fall_back};
use crate::qemu::cmdline::{Accel, Launch, build_args, requested_cpu_model};
use crate::qemu::kvm_probe::{KvmHost, is_kvm_start_failure, qemu_words};
use crate::qemu::ports::free_local_port;
use crate::qemu::serial::SerialConsole;
use crate::qemu::vm::{Vm, VmEnd, VmError, VmSockets};
use crate::recipe::qemu::{DiskFormat, QemuConfig};
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
    /// The accelerator and CPU model the build's VM last ran with, when it booted one.
    pub build_accel: Option<AccelChoice>,
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
    let launch = |choice: &AccelChoice| Launch {
        accel: choice.accel,
        cpu_model: choice.cpu_model.clone(),
        disk: overlay.clone(),
        iso: None,
        seed: Some(seed.clone()),
        cdroms: Vec::new(),
        floppy: None,
        ssh_host_port: Some(port),
        vnc_display: None,
        qmp_socket: sockets.qmp.clone(),
        serial_socket: sockets.serial.clone(),
        http: None,
        output_dir: request.dir.to_path_buf(),
        incoming: None,
        recipe_disk: None,
    };
    let start = |choice: &AccelChoice| {
        let args = build_args(&config, &launch(choice));
        let binary = binary.clone();
        let events = ctx.events().clone();
        let qmp = sockets.qmp.clone();
        async move {
            let args = args.map_err(crate::build::steps::fail)?;
            Ok::<_, StepError>(Vm::start(&binary, &args, &qmp, events).await)
        }
    };
    let kvm_host = KvmHost::new(
        &binary,
        crate::image::fetch::default_cache_dir().ok().as_deref(),
    );
    let requested = requested_cpu_model(&config);
    let mut choice = match request.build_accel {
        // The test VM runs like the build's: no second try of a KVM the build fell back from.
        Some(choice) => choice,
        _ => accel::choose(
            config.accelerator,
            &kvm_host,
            &config.machine_type,
            requested.as_deref(),
        )
        .await
        .map_err(|why| StepError(format!("accelerator \"kvm\": {why}")))?,
    };
    if choice.fell_back.is_some() || !choice.failed_models.is_empty() {
        ctx.log(format!("the test VM: {}", choice.describe()));
    }
    let mut vm = match start(&choice).await? {
        Ok(vm) => vm,
        Err(VmError::EarlyExit { output, .. })
            if may_fall_back(config.accelerator, choice.accel) && is_kvm_start_failure(&output) =>
        {
            let words = qemu_words(&output);
            ctx.events().send(Event::Warning(format!(
                "KVM made the test VM's qemu exit while starting ({words}); starting it again with TCG"
            )));
            choice = after_runtime_failure(
                &kvm_host,
                &config.machine_type,
                requested.as_deref(),
                &choice,
                &words,
            )
            .await;
            start(&choice).await?.map_err(crate::build::steps::fail)?
        }
        Err(e) => return Err(crate::build::steps::fail(e)),
    };
    ctx.log(format!(
        "test VM {} with {}, SSH on 127.0.0.1:{port}",
        config.vm_name,
        choice.accel.name().to_uppercase()
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
            SshWait::VmEnded(end) => {
                let output = vm.output_tail();
                let (what, why) = match &end {
                    VmEnd::KvmFailure(line) => (
                        format!("KVM failed inside the test VM ({line})"),
                        line.clone(),
                    ),
                    VmEnd::Exited(status)
                        if choice.accel == Accel::Kvm && is_kvm_start_failure(&output) =>
                    {
                        let words = qemu_words(&output);
                        (
                            format!("KVM made the test VM's qemu exit ({status}: {words})"),
                            words,
                        )
                    }
                    VmEnd::Exited(status) => {
                        return Err(StepError(format!(
                            "the test VM's qemu exited ({status}) before SSH answered\nqemu said:\n{output}\nlast console lines:\n{}",
                            tail()
                        )));
                    }
                };
                vm.kill().await;
                if !may_fall_back(config.accelerator, choice.accel) {
                    return Err(StepError(format!(
                        "{what}: set accelerator to \"auto\" (falls back to TCG) or \"tcg\""
                    )));
                }
                ctx.events()
                    .send(Event::Warning(format!("{what}; restarting it with TCG")));
                choice = after_runtime_failure(
                    &kvm_host,
                    &config.machine_type,
                    requested.as_deref(),
                    &choice,
                    &why,
                )
                .await;
                vm = start(&choice).await?.map_err(crate::build::steps::fail)?;
            }
        }
    }
}
