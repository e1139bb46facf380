//! Boot and Connect: start qemu (KVM when a VM runs with it here, else TCG) with the serial
//! console captured, then wait for SSH — starting again with TCG when KVM makes qemu exit
//! while it starts or pauses the guest while it boots (`accelerator: auto`).

use std::path::{Path, PathBuf};

use super::ssh_wait::{SshWait, ssh_or_vm_end};
use crate::build::event::Event;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::qemu::accel::{self, AccelChoice, after_runtime_failure, may_fall_back};
use crate::qemu::cmdline::{Accel, Launch, build_args, requested_cpu_model, user_supplies_drives};
use crate::qemu::kvm_probe::{KvmHost, is_kvm_start_failure, qemu_words};
use crate::qemu::ports::{free_local_port, is_port_clash};
use crate::qemu::serial::SerialConsole;
use crate::qemu::snapshot::{finish_incoming, incoming_uri};
use crate::qemu::vm::{Vm, VmEnd, VmError, VmSockets};
use crate::recipe::qemu::{Accelerator, Communicator};
use crate::ssh::{Auth, Target};

/// How many console lines an error shows.
const CONSOLE_LINES: usize = 30;

/// The qemu binary the build starts: the build's override, else the recipe's `qemu_binary`.
pub(super) fn qemu_binary(state: &BuildState) -> PathBuf {
    if state.qemu_binary.as_os_str().is_empty() {
        Path::new(&state.config.qemu_binary).to_path_buf()
    } else {
        state.qemu_binary.clone()
    }
}

/// Where KVM is checked for this build (verdicts kept beside the base-image cache).
fn kvm_host(state: &BuildState) -> KvmHost {
    KvmHost::new(qemu_binary(state), Some(&state.dirs.cache))
}

/// What the error of a KVM failure says when the recipe insists on KVM.
const AUTO_WOULD_FALL_BACK: &str =
    "accelerator \"auto\" would have fallen back to TCG (software emulation); set it, or \"tcg\"";

/// Starts qemu once with `choice`; the VM's own error is returned apart from the build's.
async fn try_start_vm(
    ctx: &StepContext,
    state: &mut BuildState,
    choice: &AccelChoice,
) -> Result<Result<(), VmError>, StepError> {
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
        accel: choice.accel,
        cpu_model: choice.cpu_model.clone(),
        disk: state
            .disk
            .clone()
            .ok_or_else(|| StepError("no disk".into()))?,
        iso: (!config.disk_image)
            .then(|| state.base_image.clone())
            .flatten(),
        seed: state.seed.clone(),
        cdroms: state.cdrom.iter().cloned().collect(),
        floppy: state.floppy.clone(),
        ssh_host_port: state.ssh_port,
        vnc_display,
        qmp_socket: sockets.qmp.clone(),
        serial_socket: sockets.serial.clone(),
        http: state.http.clone(),
        output_dir: state.dirs.output.clone(),
        incoming: state
            .cache
            .as_ref()
            .and_then(|c| c.incoming())
            .map(|(file, compressor)| incoming_uri(&file, compressor)),
        // With the step cache the VM writes a layer in the cache, not the output file the
        // recipe's own drive names.
        recipe_disk: (state.cache.is_some() && user_supplies_drives(config))
            .then(|| state.dirs.output.join(&config.vm_name)),
    };
    let args = build_args(config, &launch).map_err(super::fail)?;
    let vm = match Vm::start(
        &qemu_binary(state),
        &args,
        &sockets.qmp,
        ctx.events().clone(),
    )
    .await
    {
        Ok(vm) => vm,
        Err(e) => return Ok(Err(e)),
    };
    *state.vm.lock().await = Some(vm);
    state.accel = Some(choice.clone());
    Ok(Ok(()))
}

/// How many times Boot picks other ports when another process took one qemu was given.
const PORT_RETRIES: u32 = 3;

/// Picks the forwarded SSH port on 127.0.0.1 (a random free one in the recipe's range).
fn pick_ssh_port(state: &mut BuildState) -> Result<(), StepError> {
    let config = &state.config;
    if config.communicator != Communicator::Ssh {
        return Ok(());
    }
    let port = free_local_port(config.host_port_min, config.host_port_max).ok_or_else(|| {
        StepError(format!(
            "no free port between host_port_min {} and host_port_max {} on 127.0.0.1: widen the range",
            config.host_port_min, config.host_port_max
        ))
    })?;
    state.ssh_port = Some(port);
    Ok(())
}

/// Starts qemu with `choice` and stores it in the state. When another process took a port
/// between kiln's check and qemu's start, other ports are tried. When KVM makes qemu exit
/// while it starts (the vCPU set-up failing, as nested KVM does on some hosts), `auto` says
/// so in one line and starts it again with TCG; `kvm` fails with what happened.
async fn start_vm(
    ctx: &StepContext,
    state: &mut BuildState,
    choice: &AccelChoice,
) -> Result<(), StepError> {
    let mut choice = choice.clone();
    let mut clashes = 0;
    loop {
        let output = match try_start_vm(ctx, state, &choice).await? {
            Ok(()) => return Ok(()),
            Err(VmError::EarlyExit { output, .. })
                if is_port_clash(&output) && clashes < PORT_RETRIES =>
            {
                clashes += 1;
                ctx.log(format!(
                    "another process took a port qemu was given ({}); trying another",
                    qemu_words(&output)
                ));
                pick_ssh_port(state)?;
                continue;
            }
            Err(VmError::EarlyExit { output, .. })
                if choice.accel == Accel::Kvm && is_kvm_start_failure(&output) =>
            {
                output
            }
            Err(e) => return Err(super::fail(e)),
        };
        let words = qemu_words(&output);
        if !may_fall_back(state.config.accelerator, choice.accel) {
            return Err(StepError(format!(
                "KVM made qemu exit while starting ({words}); {AUTO_WOULD_FALL_BACK}\nqemu said:\n{output}"
            )));
        }
        ctx.events().send(Event::Warning(format!(
            "KVM made qemu exit while starting ({words}); starting it again with TCG (software emulation)"
        )));
        choice = after_runtime_failure(
            &kvm_host(state),
            &state.config.machine_type,
            requested_cpu_model(&state.config).as_deref(),
            &choice,
            &words,
        )
        .await;
    }
}

/// After KVM failed the running VM (`what` for the user, `why` in qemu's words): with
/// `auto`, says so in one line, stops it, remembers the failure for this boot, starts it
/// again with TCG and types the boot command again; otherwise fails with what happened.
pub(super) async fn restart_with_tcg(
    ctx: &StepContext,
    state: &mut BuildState,
    what: &str,
    why: &str,
) -> Result<(), StepError> {
    let running = state
        .accel
        .clone()
        .unwrap_or_else(|| AccelChoice::tcg(None, None));
    if !may_fall_back(state.config.accelerator, running.accel) {
        return Err(StepError(format!(
            "{what}; {AUTO_WOULD_FALL_BACK}\nlast console lines:\n{}",
            state.console_tail(CONSOLE_LINES)
        )));
    }
    ctx.events().send(Event::Warning(format!(
        "{what}; restarting the VM with TCG (software emulation)"
    )));
    if let Some(mut vm) = state.vm.lock().await.take() {
        vm.kill().await;
    }
    let tcg = after_runtime_failure(
        &kvm_host(state),
        &state.config.machine_type,
        requested_cpu_model(&state.config).as_deref(),
        &running,
        why,
    )
    .await;
    start_vm(ctx, state, &tcg).await?;
    if !state.config.boot_command.is_empty() {
        super::typing::type_boot_command(ctx, state).await?;
    }
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
            pick_ssh_port(state)?;
            if let Some(choice) = state.cache.as_ref().and_then(|c| c.restored_accel()) {
                return resume(ctx, state, &choice).await;
            }
            let config = &state.config;
            let wanted = config.accelerator;
            let choice = accel::choose(
                wanted,
                &kvm_host(state),
                &config.machine_type,
                requested_cpu_model(config).as_deref(),
            )
            .await
            .map_err(|e| {
                let fallback = if wanted == Accelerator::Kvm {
                    format!("; {AUTO_WOULD_FALL_BACK}")
                } else {
                    String::new()
                };
                StepError(format!("accelerator \"kvm\": {e}{fallback}"))
            })?;
            ctx.log(choice.describe());
            let vm_slot = state.vm.clone();
            ctx.defer("the VM", move || async move {
                if let Some(mut vm) = vm_slot.lock().await.take() {
                    vm.kill().await;
                }
                Ok(())
            });
            start_vm(ctx, state, &choice).await?;
            let running = state.accel.as_ref().map_or(Accel::Tcg, |c| c.accel);
            ctx.log(format!(
                "{} with {}",
                state.config.vm_name,
                running.name().to_uppercase()
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

/// Starts the VM from the step cache's saved state, with the accelerator it was saved with.
async fn resume(
    ctx: &mut StepContext,
    state: &mut BuildState,
    choice: &AccelChoice,
) -> Result<StepDone, StepError> {
    let started = std::time::Instant::now();
    let vm_slot = state.vm.clone();
    ctx.defer("the VM", move || async move {
        if let Some(mut vm) = vm_slot.lock().await.take() {
            vm.kill().await;
        }
        Ok(())
    });
    match try_start_vm(ctx, state, choice).await? {
        Ok(()) => {}
        Err(e) => {
            return Err(StepError(format!(
                "cannot resume the VM from the step cache: {e}; build with --no-cache, or clear the cache (`kiln cache clear`)"
            )));
        }
    }
    let (file, _) = state
        .cache
        .as_ref()
        .and_then(|c| c.incoming())
        .ok_or_else(|| StepError("no saved state".into()))?;
    {
        let mut guard = state.vm.lock().await;
        let vm = guard
            .as_mut()
            .ok_or_else(|| StepError("the VM is not running".into()))?;
        finish_incoming(vm.qmp(), &file).await.map_err(|e| {
            StepError(format!(
                "cannot resume the VM from the step cache: {e}; build with --no-cache, or clear the cache (`kiln cache clear`)"
            ))
        })?;
    }
    ctx.log(format!(
        "{} resumed from the step cache with {} in {:.1} s",
        state.config.vm_name,
        choice.accel.name().to_uppercase(),
        started.elapsed().as_secs_f64()
    ));
    Ok(StepDone::Done)
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
            let auth = match (&state.config.ssh.password, &state.client_key, &state.agent) {
                (_, Some(key), _) => Auth::Key(key.clone()),
                (_, None, Some(agent)) => Auth::AgentKeys {
                    socket: Some(agent.socket.clone()),
                    keys: agent.keys.clone(),
                },
                (Some(password), None, None) => Auth::Password(password.clone()),
                (None, None, None) => return Err(StepError("no SSH credentials".into())),
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
                    SshWait::VmEnded(end) => {
                        let output = match state.vm.lock().await.as_ref() {
                            Some(vm) => vm.output_tail(),
                            None => String::new(),
                        };
                        let running = state
                            .accel
                            .clone()
                            .unwrap_or_else(|| AccelChoice::tcg(None, None));
                        let (what, why) = match &end {
                            VmEnd::KvmFailure(line) => (
                                format!("KVM failed inside the guest ({line}) and qemu paused"),
                                line.clone(),
                            ),
                            VmEnd::Exited(status)
                                if running.accel == Accel::Kvm && is_kvm_start_failure(&output) =>
                            {
                                let words = qemu_words(&output);
                                (format!("KVM made qemu exit ({status}: {words})"), words)
                            }
                            VmEnd::Exited(status) => {
                                return Err(StepError(format!(
                                    "qemu exited ({status}) before SSH answered\nqemu said:\n{output}\nlast console lines:\n{}",
                                    state.console_tail(CONSOLE_LINES)
                                )));
                            }
                        };
                        if fell_back {
                            return Err(StepError(format!(
                                "{what}\nlast console lines:\n{}",
                                state.console_tail(CONSOLE_LINES)
                            )));
                        }
                        fell_back = true;
                        restart_with_tcg(ctx, state, &what, &why).await?;
                    }
                }
            }
        })
    }
}
