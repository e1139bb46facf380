//! Boot command: after `boot_wait`, types the recipe's `boot_command` into the VM through
//! QMP, `boot_key_interval` (Packer's 100 ms by default) between keys; cancellable.

use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::qemu::bootcmd;
use crate::qemu::keyboard::{DEFAULT_KEY_INTERVAL, TypeError, type_actions};
use crate::recipe::interp;

/// Types the boot command.
pub struct BootCommand;

impl Step<BuildState> for BootCommand {
    fn name(&self) -> String {
        "Boot command".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            if state.config.boot_command.is_empty() {
                return Ok(StepDone::Skipped("no boot_command".into()));
            }
            if let Some(cache) = state.cache.as_ref().filter(|c| c.restored.is_some()) {
                return Ok(StepDone::Skipped(cache.cached_note()));
            }
            if let Err(e) = type_boot_command(ctx, state).await {
                // Nested KVM can pause the guest while the keys are typed (qemu then refuses
                // them: "VM not running"): that is KVM's failure, handled like at Connect.
                let failure = match state.vm.lock().await.as_mut() {
                    Some(vm) => vm.kvm_failure().await,
                    None => None,
                };
                let Some(line) = failure else {
                    return Err(e);
                };
                let what = format!("KVM failed inside the guest ({line}) and qemu paused");
                super::boot::restart_with_tcg(ctx, state, &what, &line).await?;
            }
            Ok(StepDone::Done)
        })
    }
}

/// Waits `boot_wait`, then types the rendered `boot_command` into the running VM. Also used
/// when the VM is started again with TCG after KVM failed, since the new VM needs the keys
/// too.
pub async fn type_boot_command(ctx: &StepContext, state: &BuildState) -> Result<(), StepError> {
    let fields = state.context_fields();
    let mut rendered = Vec::with_capacity(state.config.boot_command.len());
    for (i, command) in state.config.boot_command.iter().enumerate() {
        rendered.push(
            interp::render_fields(command, &fields)
                .map_err(|e| StepError(format!("boot_command[{i}]: {e}")))?,
        );
    }
    let actions = bootcmd::parse_all(&rendered).map_err(StepError)?;
    let wait = state.config.boot_wait;
    if !wait.is_zero() {
        ctx.log(format!("waiting boot_wait {wait:?} before typing"));
        tokio::select! {
            _ = ctx.cancel().cancelled() => return Err(StepError("cancelled during boot_wait".into())),
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let interval = state
        .config
        .boot_key_interval
        .unwrap_or(DEFAULT_KEY_INTERVAL);
    let keys = actions
        .iter()
        .filter(|a| !matches!(a, bootcmd::KeyAction::Wait(_)))
        .count();
    ctx.log(format!(
        "typing {keys} keys ({} strings), {interval:?} apart",
        rendered.len()
    ));
    let mut guard = state.vm.lock().await;
    let vm = guard
        .as_mut()
        .ok_or_else(|| StepError("the VM is not running".into()))?;
    match type_actions(vm.qmp(), &actions, interval, ctx.cancel()).await {
        Ok(()) => {}
        Err(TypeError::Cancelled) => {
            return Err(StepError("cancelled while typing the boot command".into()));
        }
        Err(e) => return Err(super::fail(e)),
    }
    ctx.log("boot command typed");
    Ok(())
}
