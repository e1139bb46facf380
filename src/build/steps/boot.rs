//! Boot and Connect: start qemu (KVM when it works, else TCG) with the serial console
//! captured, then wait for SSH — falling back to TCG once if nested KVM fails while the
//! guest boots.

use std::path::Path;

use super::ssh_wait::{SshWait, ssh_or_vm_end};
use crate::build::event::Event;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::qemu::accel::{self, may_fall_back};
use crate::qemu::cmdline::{Accel, Launch, build_args};
use crate::qemu::ports::free_local_port;
use crate::qemu::serial::SerialConsole;
use crate::qemu::vm::{Vm, VmEnd, VmSockets};
use crate::recipe::qemu::Communicator;
use crate::ssh::{Auth, Target};

/// How many console lines an error shows.
const CONSOLE_LINES: usize = 30;

/// Starts qemu with `accel` and stores it in the state.
async fn start_vm(
    ctx: &StepContext,
    state: &mut BuildState,
    accel: Accel,
) -> Result<(), StepError> {
    let config = &state.config;
    let sockets = VmSockets::in_dir(&state.dirs.work);
    if state.console.is_none() {
        let console = SerialConsole::listen(
            &sockets.serial,
            &state.dirs.logs.join("serial.log"),
            ctx.events().clone(),
        )
        .map_err(|e| StepError(format!("cannot listen for the serial console: {e}")))?;
        state.console = Some(console);
    }
    let vnc_display = if config.disable_vnc {
        None
    } else {
        free_local_port(config.vnc_port_min, config.vnc_port_max).map(|p| p.saturating_sub(5900))
    };
    let launch = Launch {
        accel,
        disk: state
            .disk
            .clone()
            .ok_or_else(|| StepError("no disk".into()))?,
        iso: (!config.disk_image)
            .then(|| state.base_image.clone())
            .flatten(),
        seed: state.seed.clone(),
        cdroms: state.cdrom.iter().cloned().collect(),
        ssh_host_port: state.ssh_port,
        vnc_display,
        qmp_socket: sockets.qmp.clone(),
        serial_socket: sockets.serial.clone(),
        http: state.http.clone(),
        output_dir: state.dirs.output.clone(),
    };
    let args = build_args(config, &launch).map_err(super::fail)?;
    let binary = if state.qemu_binary.as_os_str().is_empty() {
        Path::new(&config.qemu_binary).to_path_buf()
    } else {
        state.qemu_binary.clone()
    };
    let vm = Vm::start(&binary, &args, &sockets.qmp, ctx.events().clone())
        .await
        .map_err(super::fail)?;
    *state.vm.lock().await = Some(vm);
    state.accel = Some(accel);
    Ok(())
}

/// Starts the VM.
pub struct Boot;

impl Step<BuildState> for Boot {
    fn name(&self) -> String {
        "Boot".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let config = &state.config;
            if config.communicator == Communicator::Ssh {
                let port = free_local_port(config.host_port_min, config.host_port_max).ok_or_else(|| {
                    StepError(format!(
                        "no free port between host_port_min {} and host_port_max {} on 127.0.0.1: widen the range",
                        config.host_port_min, config.host_port_max
                    ))
                })?;
                state.ssh_port = Some(port);
            }
            let choice = accel::choose(config.accelerator, Path::new("/dev/kvm")).map_err(|e| {
                StepError(format!(
                    "accelerator \"kvm\": {e}; or set accelerator to \"auto\" or \"tcg\""
                ))
            })?;
            if let Some(why) = &choice.fell_back {
                ctx.log(format!("KVM unavailable ({why}); using TCG"));
            }
            let accel = choice.accel;
            let vm_slot = state.vm.clone();
            ctx.defer("the VM", move || async move {
                if let Some(mut vm) = vm_slot.lock().await.take() {
                    vm.kill().await;
                }
                Ok(())
            });
            start_vm(ctx, state, accel).await?;
            ctx.log(format!(
                "{} with {}",
                state.config.vm_name,
                accel.name().to_uppercase()
            ));
            // With a boot command, boot_wait is waited before typing it (Boot command step).
            if !state.config.boot_wait.is_zero()
                && state.config.communicator == Communicator::None
                && state.config.boot_command.is_empty()
            {
                tokio::time::sleep(state.config.boot_wait).await;
            }
            Ok(StepDone::Done)
        })
    }
}

/// Waits until SSH answers with the pinned host key and the build's credentials.
pub struct Connect;

impl Step<BuildState> for Connect {
    fn name(&self) -> String {
        "Connect".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            if state.config.communicator == Communicator::None {
                return Ok(StepDone::Skipped("communicator \"none\"".into()));
            }
            let auth = match (&state.config.ssh.password, &state.client_key) {
                (_, Some(key)) => Auth::Key(key.clone()),
                (Some(password), None) => Auth::Password(password.clone()),
                (None, None) => return Err(StepError("no SSH credentials".into())),
            };
            let host_key = state
                .host_key
                .clone()
                .ok_or_else(|| StepError("no host-key policy".into()))?;
            let port = state
                .ssh_port
                .ok_or_else(|| StepError("no SSH port".into()))?;
            let target = Target::new(
                format!("127.0.0.1:{port}"),
                state.config.ssh.username.clone(),
                auth,
                host_key,
            );
            if !state.config.ssh.pause_before_connecting.is_zero() {
                tokio::time::sleep(state.config.ssh.pause_before_connecting).await;
            }
            let cancel = ctx.cancel().clone();
            let timeout = state.config.ssh.timeout;
            let attempts = state.config.ssh.handshake_attempts;
            let mut fell_back = false;
            loop {
                let vm_slot = state.vm.clone();
                let mut guard = vm_slot.lock().await;
                let vm = guard
                    .as_mut()
                    .ok_or_else(|| StepError("the VM is not running".into()))?;
                let outcome = ssh_or_vm_end(vm, &target, timeout, attempts, &cancel).await;
                drop(guard);
                match outcome {
                    SshWait::Connected(session) => {
                        ctx.log(format!(
                            "connected as {} (host key {})",
                            state.config.ssh.username,
                            crate::ssh::keys::fingerprint(session.host_key())
                        ));
                        state.session = Some(*session);
                        return Ok(StepDone::Done);
                    }
                    SshWait::Failed(e) => {
                        return Err(StepError(format!(
                            "{e}\nlast console lines:\n{}",
                            state.console_tail(CONSOLE_LINES)
                        )));
                    }
                    SshWait::VmEnded(VmEnd::KvmFailure(line))
                        if !fell_back
                            && state
                                .accel
                                .is_some_and(|a| may_fall_back(state.config.accelerator, a)) =>
                    {
                        ctx.events().send(Event::Warning(format!(
                            "KVM failed inside the guest ({line}); restarting the VM with TCG (software emulation)"
                        )));
                        if let Some(mut vm) = state.vm.lock().await.take() {
                            vm.kill().await;
                        }
                        fell_back = true;
                        start_vm(ctx, state, Accel::Tcg).await?;
                        if !state.config.boot_command.is_empty() {
                            super::typing::type_boot_command(ctx, state).await?;
                        }
                    }
                    SshWait::VmEnded(VmEnd::KvmFailure(line)) => {
                        return Err(StepError(format!(
                            "KVM failed inside the guest ({line}) and qemu paused: set accelerator to \"auto\" (falls back to TCG) or \"tcg\"\nlast console lines:\n{}",
                            state.console_tail(CONSOLE_LINES)
                        )));
                    }
                    SshWait::VmEnded(VmEnd::Exited(status)) => {
                        let output = match state.vm.lock().await.as_ref() {
                            Some(vm) => vm.output_tail(),
                            None => String::new(),
                        };
                        return Err(StepError(format!(
                            "qemu exited ({status}) before SSH answered\nqemu said:\n{output}\nlast console lines:\n{}",
                            state.console_tail(CONSOLE_LINES)
                        )));
                    }
                }
            }
        })
    }
}
