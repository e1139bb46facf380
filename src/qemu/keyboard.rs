//! Types parsed boot-command actions into the VM through QMP, with Packer's pacing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::bootcmd::KeyAction;
use super::qmp::{Qmp, QmpError};

/// Packer's default pause between two keys (`boot_key_interval`).
pub const DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

/// Why typing stopped.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// The build was cancelled.
    #[error("cancelled while typing the boot command")]
    Cancelled,
    /// qemu refused a key or went away.
    #[error("typing the boot command: {0}")]
    Qmp(#[from] QmpError),
}

/// Types `actions` in order, pausing `interval` after each key (waits are taken as given);
/// stops at once when `cancel` fires. A key held with `…On` is released by a later `…Off`
/// as the recipe says; kiln releases nothing on its own.
pub async fn type_actions(
    qmp: &mut Qmp,
    actions: &[KeyAction],
    interval: Duration,
    cancel: &CancellationToken,
) -> Result<(), TypeError> {
    for action in actions {
        if cancel.is_cancelled() {
            return Err(TypeError::Cancelled);
        }
        let pause = match action {
            KeyAction::Tap { key, modifiers } => {
                let mut events: Vec<(&str, bool)> = modifiers.iter().map(|m| (*m, true)).collect();
                events.push((key, true));
                events.push((key, false));
                events.extend(modifiers.iter().rev().map(|m| (*m, false)));
                qmp.key_events(&events).await?;
                interval
            }
            KeyAction::Down(key) => {
                qmp.key_events(&[(key, true)]).await?;
                interval
            }
            KeyAction::Up(key) => {
                qmp.key_events(&[(key, false)]).await?;
                interval
            }
            KeyAction::Wait(d) => *d,
        };
        tokio::select! {
            _ = cancel.cancelled() => return Err(TypeError::Cancelled),
            _ = tokio::time::sleep(pause) => {}
        }
    }
    Ok(())
}
