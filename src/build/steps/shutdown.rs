//! Shut down: remove the build's SSH key and host keys from the image ([`super::scrub`]),
//! trim the guest's free space (so compaction can shrink the image), then
//! `shutdown_command` over SSH or the ACPI power button, and wait for qemu to exit — on
//! qemu's own exit, not a polling loop.

use super::scrub::Scrub;
use crate::build::event::Event;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::qemu::vm::VmEnd;
use crate::recipe::units::format_duration;

/// Stops the guest cleanly.
pub struct Shutdown;

/// What a scrub removes, for the log.
fn describe(scrub: &Scrub) -> &'static str {
    match (!scrub.key_blobs.is_empty(), scrub.host_keys) {
        (true, true) => "the build's SSH key and the SSH host keys",
        (true, false) => "the build's SSH key",
        _ => "the SSH host keys",
    }
}

/// `sync` first: ext4 only returns a deleted file's blocks to its free-space bitmap when the
/// journal commits (every 5 s by default), and fstrim trims only what the bitmap says is
/// free — a provisioner's last `rm` would otherwise stay in the image.
const TRIM: &str = "sync; if [ \"$(id -u)\" = 0 ]; then fstrim -av; else sudo -n fstrim -av; fi";

impl Step<BuildState> for Shutdown {
    fn name(&self) -> String {
        "Shut down".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let cancel = ctx.cancel().clone();
            if let Some(session) = state.session.take() {
                let scrub = Scrub::after_build(
                    &state.client_public_lines(),
                    state.seed.is_some(),
                    state.config.ssh.clear_authorized_keys,
                );
                if let Some(command) = scrub.command() {
                    match session.exec_capture(&command, None, &cancel).await {
                        Ok(out) if out.status.success() => {
                            ctx.log(format!("removed from the image: {}", describe(&scrub)))
                        }
                        Ok(out) => ctx.events().send(Event::Warning(format!(
                            "could not remove {} from the image ({}): {}; they will ship in it",
                            describe(&scrub),
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ))),
                        Err(e) => ctx.events().send(Event::Warning(format!(
                            "could not remove {} from the image: {e}; they will ship in it",
                            describe(&scrub)
                        ))),
                    }
                }
                if !state.config.skip_compaction {
                    match session.exec_capture(TRIM, None, &cancel).await {
                        Ok(out) if out.status.success() => {
                            for line in String::from_utf8_lossy(&out.stdout).lines() {
                                ctx.log(line.to_string());
                            }
                        }
                        Ok(out) => ctx.events().send(Event::Warning(format!(
                            "fstrim failed ({}): the image may compact less; {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ))),
                        Err(e) => ctx
                            .events()
                            .send(Event::Warning(format!("fstrim could not run: {e}"))),
                    }
                }
                if let Some(command) = &state.config.shutdown_command {
                    ctx.log(format!("running the shutdown command: {command}"));
                    // The connection usually drops while the command runs.
                    let _ = session.exec_capture(command, None, &cancel).await;
                }
                session.close().await;
            }
            let vm_slot = state.vm.clone();
            let mut guard = vm_slot.lock().await;
            let vm = guard
                .as_mut()
                .ok_or_else(|| StepError("the VM is not running".into()))?;
            if state.config.shutdown_command.is_none() {
                ctx.log("pressing the ACPI power button");
                vm.qmp().powerdown().await.map_err(super::fail)?;
            }
            let limit = state.config.shutdown_timeout;
            match tokio::time::timeout(limit, vm.watch()).await {
                Ok(VmEnd::Exited(status)) => {
                    ctx.log(format!("qemu exited ({status})"));
                    guard.take();
                    Ok(StepDone::Done)
                }
                Ok(VmEnd::KvmFailure(line)) => {
                    Err(StepError(format!("KVM failed during shutdown: {line}")))
                }
                Err(_) => Err(StepError(format!(
                    "the guest did not power off within {} (shutdown_timeout): check shutdown_command (e.g. \"sudo shutdown -P now\")\nlast console lines:\n{}",
                    format_duration(limit),
                    state.console_tail(30)
                ))),
            }
        })
    }
}
