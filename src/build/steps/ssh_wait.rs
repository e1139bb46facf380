//! Waiting for SSH on a VM that may end first: the build's VM (Connect) and `kiln-test`'s
//! test VM both race the SSH wait against qemu's exit or a KVM failure, so neither waits
//! out `ssh_timeout` for a guest that is gone.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::qemu::vm::{Vm, VmEnd};
use crate::ssh::{Session, SshError, Target, wait_for_ssh};

/// How waiting for SSH on a running VM ended.
pub(crate) enum SshWait {
    /// SSH answered with the pinned host key and the credentials worked.
    Connected(Box<Session>),
    /// SSH never worked within the timeout (or the wait was cancelled).
    Failed(SshError),
    /// The VM ended first (qemu exited, or KVM failed and qemu paused).
    VmEnded(VmEnd),
}

/// Waits for `target` to answer SSH while watching `vm`.
pub(crate) async fn ssh_or_vm_end(
    vm: &mut Vm,
    target: &Target,
    timeout: Duration,
    handshake_attempts: u32,
    cancel: &CancellationToken,
) -> SshWait {
    tokio::select! {
        session = wait_for_ssh(target, timeout, handshake_attempts, cancel, |_, _| {}) => match session {
            Ok(session) => SshWait::Connected(Box::new(session)),
            Err(e) => SshWait::Failed(e),
        },
        end = vm.watch() => SshWait::VmEnded(end),
    }
}
