//! The one error type of the `ssh` module.

use std::path::PathBuf;
use std::time::Duration;

/// Something went wrong talking to the guest over SSH. Every message says what happened
/// and, where there is something to do, what to do. No message ever contains a private key
/// or a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// Generating or encoding a key failed (a bug or a broken random source, not user error).
    #[error("could not {what}: {reason}")]
    Key {
        /// What kiln was doing ("generate an Ed25519 key", …).
        what: &'static str,
        /// Why it failed.
        reason: String,
    },

    /// The private key file could not be read.
    #[error(
        "could not read the SSH private key {}: {source} (check ssh_private_key_file)",
        path.display()
    )]
    KeyFileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The private key file is protected by a passphrase, which kiln cannot prompt for.
    #[error(
        "the SSH private key {} is encrypted with a passphrase, which kiln cannot ask for: \
         use an unencrypted key (e.g. a copy made with `ssh-keygen -p -N '' -f COPY`) or load \
         the key into ssh-agent and use agent authentication (ssh_agent_auth)",
        path.display()
    )]
    KeyFileEncrypted {
        /// The file.
        path: PathBuf,
    },

    /// The passphrase does not decrypt the private key.
    #[error("the passphrase does not decrypt this private key: try again")]
    KeyPassphrase,

    /// The private key file is not a private key kiln understands.
    #[error(
        "{} is not a usable SSH private key ({reason}): ssh_private_key_file must be an \
         OpenSSH, PKCS#1 or PKCS#8 private key (Ed25519, ECDSA or RSA), not a public key",
        path.display()
    )]
    KeyFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },

    /// A public key line could not be parsed.
    #[error("`{line}` is not an OpenSSH public key line ({reason})")]
    PublicKeyInvalid {
        /// The offending line (public keys are not secret).
        line: String,
        /// Why.
        reason: String,
    },

    /// The pinned host key did not match the one the server offered.
    #[error(
        "the guest's host key is not the one kiln injected ({expected} expected, {offered} \
         offered): something else answered on the forwarded port"
    )]
    HostKeyMismatch {
        /// Fingerprint of the expected key (`SHA256:…`).
        expected: String,
        /// Fingerprint of the offered key.
        offered: String,
    },

    /// Under trust on first use, a later connection offered another host key than the first.
    #[error(
        "the guest's host key changed ({first} seen first, {offered} offered now): something \
         else answered on the forwarded port"
    )]
    HostKeyChanged {
        /// Fingerprint of the key recorded on first use.
        first: String,
        /// Fingerprint of the offered key.
        offered: String,
    },

    /// The server refused the credentials.
    #[error("{}", auth_rejected_message(user, *method, *attempts))]
    AuthRejected {
        /// The user kiln logged in as.
        user: String,
        /// What was refused.
        method: AuthMethod,
        /// How many times in a row it was refused.
        attempts: u32,
    },

    /// ssh-agent could not be used.
    #[error("cannot authenticate with ssh-agent: {0}")]
    Agent(String),

    /// SSH did not become ready in time.
    #[error(
        "SSH on {addr} was not ready after {} ({attempts} attempts); last error: {last_error}. \
         Is the guest still booting (watch its serial console), is sshd enabled in the image, \
         and is ssh_timeout long enough?",
        format_duration(*waited)
    )]
    Timeout {
        /// Where kiln tried to connect.
        addr: String,
        /// How long it waited.
        waited: Duration,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last error seen, or "no attempt finished".
        last_error: String,
    },

    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,

    /// One connection attempt failed (as reported to `on_attempt` and in [`Self::Timeout`]).
    #[error("{0}")]
    Connect(String),

    /// The SSH connection broke or was closed while kiln was using it.
    #[error(
        "the SSH connection to {addr} was lost while {doing}: did the guest reboot or shut \
         down? (provisioners that reboot the guest need expect_disconnect)"
    )]
    ConnectionLost {
        /// The server address.
        addr: String,
        /// What kiln was doing.
        doing: String,
    },

    /// A channel request (open, exec, pty, subsystem) failed.
    #[error("the guest refused to {what}: {reason}")]
    Channel {
        /// What kiln asked for.
        what: String,
        /// Why it failed.
        reason: String,
    },

    /// A local file or directory could not be read or written.
    #[error("{} {}: {source}", what, path.display())]
    Local {
        /// What kiln was doing ("could not read", …).
        what: &'static str,
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A remote file operation failed.
    #[error("could not {what} `{path}` on the guest: {reason}")]
    Remote {
        /// What kiln was doing ("create", "write", "read", …).
        what: &'static str,
        /// The remote path.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// Which credentials the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A private key kiln holds (generated or `ssh_private_key_file`).
    Key,
    /// A password.
    Password,
    /// Every key ssh-agent holds.
    Agent,
}

fn auth_rejected_message(user: &str, method: AuthMethod, attempts: u32) -> String {
    let tries = if attempts > 1 {
        format!(" ({attempts} attempts)")
    } else {
        String::new()
    };
    match method {
        AuthMethod::Key => format!(
            "the guest refused the key for user `{user}`{tries}: is the public key in the \
             seed's ssh_authorized_keys, and is the user right (ssh_username)?"
        ),
        AuthMethod::Password => format!(
            "the guest refused the password for user `{user}`{tries}: check ssh_password and \
             ssh_username, and that the guest allows password logins (PasswordAuthentication)"
        ),
        AuthMethod::Agent => format!(
            "the guest refused every key in ssh-agent for user `{user}`{tries}: is one of \
             them in the seed's ssh_authorized_keys (`ssh-add -L` lists them), and is the user \
             right (ssh_username)?"
        ),
    }
}

/// "2m 5s", "45s", "1.5s".
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else if secs >= 10 {
        format!("{secs}s")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl SshError {
    /// Whether this is [`SshError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, SshError::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let e = SshError::AuthRejected {
            user: "debian".into(),
            method: AuthMethod::Key,
            attempts: 1,
        };
        assert_eq!(
            e.to_string(),
            "the guest refused the key for user `debian`: is the public key in the seed's \
             ssh_authorized_keys, and is the user right (ssh_username)?"
        );
        let e = SshError::Timeout {
            addr: "127.0.0.1:2222".into(),
            waited: Duration::from_secs(125),
            attempts: 40,
            last_error: "connection refused".into(),
        };
        let m = e.to_string();
        assert!(m.contains("after 2m 5s (40 attempts)"), "{m}");
        assert!(m.contains("last error: connection refused"), "{m}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m 0s");
    }
}
