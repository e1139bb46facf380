//! SSH to the guest: everything kiln needs to provision a VM over its forwarded SSH port.
//!
//! - [`keys`]: ephemeral Ed25519 key pairs (client key for `ssh_authorized_keys`, host key
//!   injected through cloud-init), fingerprints, loading `ssh_private_key_file`.
//! - [`hostkey`]: host-key pinning ([`HostKeyPolicy::Pinned`]) or trust on first use.
//! - [`connect`]: [`wait_for_ssh`], which polls the guest until SSH answers and accepts the
//!   credentials, bounded by a timeout and cancellable.
//! - [`session`]: [`Session::exec`], which streams a command's output line by line and
//!   tells an exit code from a signal from a lost connection.
//! - [`transfer`]: uploads and downloads (files, bytes, directories) over SFTP, with a
//!   `cat`-over-exec fallback for uploads when the guest has no SFTP subsystem.
//!
//! Secrets (private keys, passwords) never appear in `Debug` output, logs or error messages.

pub mod connect;
mod error;
pub mod hostkey;
pub mod keys;
pub mod session;
pub mod transfer;

pub use connect::{Auth, Target, wait_for_ssh};
pub use error::{AuthMethod, SshError};
pub use hostkey::{HostKeyPolicy, TrustOnFirstUse};
pub use keys::KeyPair;
pub use session::{ExecOptions, ExitStatus, Output, Session};
pub use transfer::TransferMethod;

/// A public key as russh (and `ssh-key`) model it.
pub use russh::keys::PublicKey;

/// Compile-time check that the futures steps hold are `Send` (steps return `Send` futures).
#[cfg(test)]
#[allow(dead_code)]
mod send_check {
    use std::path::Path;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;

    fn send<T: Send>(_: T) {}

    fn futures_are_send(s: &Session, t: &Target, c: &CancellationToken) {
        send(wait_for_ssh(t, Duration::ZERO, 1, c, |_, _| {}));
        send(connect::connect(t));
        send(s.exec("true", |_, _| {}));
        send(s.exec_with("true", &ExecOptions::default(), c, |_, _| {}));
        send(s.exec_capture("true", Some(b"in"), c));
        send(s.upload_bytes(b"x", "/tmp/x", 0o644, c, |_, _| {}));
        send(s.upload_file(Path::new("x"), "/tmp/x", None, c, |_, _| {}));
        send(s.upload_dir(Path::new("x"), "/tmp/x", c, |_, _| {}));
        send(s.upload(Path::new("x"), "/tmp/x", c, |_, _| {}));
        send(s.download_file("/tmp/x", Path::new("x"), c, |_, _| {}));
        send(s.download("/tmp/x", Path::new("x"), c, |_, _| {}));
        send(s.transfer_method(c));
    }
}
