//! Connecting to the guest: one attempt ([`connect`]) or polling until SSH is ready
//! ([`wait_for_ssh`]).
//!
//! While the guest boots, the forwarded port refuses or drops connections (qemu's user
//! network accepts on the host side and closes as soon as the guest refuses), so those
//! failures mean "not ready yet" and are retried quickly until the timeout. A host key that
//! is not the expected one ends the wait at once. A refused key or password is retried a
//! few times (`handshake_attempts`, as in Packer) and then ends the wait with a message that
//! says what to check, long before the timeout.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tokio_util::sync::CancellationToken;

use super::error::{AuthMethod, SshError, format_duration};
use super::hostkey::HostKeyPolicy;
use super::keys::KeyPair;
use super::session::Session;
use crate::base::secret::Secret;

/// Pause between two attempts while the port refuses or drops connections.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Pause after the server refused the credentials, before trying again.
pub const AUTH_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// The longest one attempt (TCP connect, handshake, authentication) may take before it
/// counts as "not ready" and the next one starts.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Interval of SSH keepalives on an established connection; after three unanswered ones
/// the connection counts as lost.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// How kiln proves who it is. `Debug` never shows the key or password.
#[derive(Clone)]
pub enum Auth {
    /// A private key held in memory (generated for the build, or `ssh_private_key_file`).
    Key(KeyPair),
    /// A password (`ssh_password`).
    Password(Secret),
    /// The keys of an ssh-agent (`ssh_agent_auth`): the one at this socket, or at
    /// `SSH_AUTH_SOCK` when `None`.
    Agent(Option<PathBuf>),
    /// Only these keys of an ssh-agent (the one at `socket`, or at `SSH_AUTH_SOCK` when
    /// `None`): the build's chosen agent key, so an agent holding many keys does not use up
    /// the server's `MaxAuthTries` on keys the guest does not know.
    AgentKeys {
        /// The agent's socket.
        socket: Option<PathBuf>,
        /// The public keys to offer, in this order.
        keys: Vec<PublicKey>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Key(k) => write!(f, "Key({})", k.fingerprint()),
            Auth::Password(p) => write!(f, "Password({p:?})"),
            Auth::Agent(None) => f.write_str("Agent(SSH_AUTH_SOCK)"),
            Auth::Agent(Some(socket)) => write!(f, "Agent({})", socket.display()),
            Auth::AgentKeys { socket, keys } => {
                let fingerprints: Vec<String> = keys.iter().map(super::keys::fingerprint).collect();
                match socket {
                    Some(socket) => write!(f, "AgentKeys({}, {fingerprints:?})", socket.display()),
                    None => write!(f, "AgentKeys(SSH_AUTH_SOCK, {fingerprints:?})"),
                }
            }
        }
    }
}

impl Auth {
    /// The ssh-agent at `SSH_AUTH_SOCK`.
    pub fn agent() -> Self {
        Auth::Agent(None)
    }

    fn method(&self) -> AuthMethod {
        match self {
            Auth::Key(_) => AuthMethod::Key,
            Auth::Password(_) => AuthMethod::Password,
            Auth::Agent(_) | Auth::AgentKeys { .. } => AuthMethod::Agent,
        }
    }
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`, e.g. `127.0.0.1:2222` (qemu's forwarded port).
    pub addr: String,
    /// The user to log in as (`ssh_username`).
    pub user: String,
    /// The credentials.
    pub auth: Auth,
    /// Which host keys to accept.
    pub host_key: HostKeyPolicy,
}

impl Target {
    /// A target from its parts.
    pub fn new(
        addr: impl Into<String>,
        user: impl Into<String>,
        auth: Auth,
        host_key: HostKeyPolicy,
    ) -> Self {
        Self {
            addr: addr.into(),
            user: user.into(),
            auth,
            host_key,
        }
    }
}

/// Makes one connection attempt: TCP connect, handshake, host-key check, authentication.
/// Bounded by [`ATTEMPT_TIMEOUT`]; not cancellable by itself (wrap it in a `select!`, or use
/// [`wait_for_ssh`]).
pub async fn connect(target: &Target) -> Result<Session, SshError> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(target)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(e.into_error(target)),
        Err(_) => Err(SshError::Connect(no_answer(ATTEMPT_TIMEOUT))),
    }
}

/// Polls `target` until SSH answers and accepts the credentials, and returns the session.
///
/// - Refused, reset or dropped connections and handshakes cut short are "not ready yet":
///   retried every [`POLL_INTERVAL`] until `timeout` has passed, then
///   [`SshError::Timeout`] says how long kiln waited and the last error seen.
/// - A host key the policy refuses ends the wait at once.
/// - Refused credentials are retried every [`AUTH_RETRY_INTERVAL`] (cloud-init may still
///   be writing `authorized_keys`); after `handshake_attempts` failed handshakes (at least
///   one, as Packer's `ssh_handshake_attempts`) the wait ends with
///   [`SshError::AuthRejected`], long before the timeout. Other handshake failures (no
///   common algorithm, a broken key exchange) count towards the same limit.
/// - `cancel` ends the wait promptly at any point with [`SshError::Cancelled`].
///
/// `on_attempt(n, error)` is called after every failed attempt `n` (1-based), e.g. to log
/// progress at a low level.
pub async fn wait_for_ssh(
    target: &Target,
    timeout: Duration,
    handshake_attempts: u32,
    cancel: &CancellationToken,
    mut on_attempt: impl FnMut(u32, &SshError),
) -> Result<Session, SshError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let handshake_attempts = handshake_attempts.max(1);
    let mut attempts = 0u32;
    let mut failed_handshakes = 0u32;
    let mut last_error: Option<String> = None;
    loop {
        let now = Instant::now();
        if cancel.is_cancelled() {
            return Err(SshError::Cancelled);
        }
        if now >= deadline {
            return Err(SshError::Timeout {
                addr: target.addr.clone(),
                waited: started.elapsed(),
                attempts,
                last_error: last_error.unwrap_or_else(|| "no attempt finished".into()),
            });
        }
        attempts += 1;
        let budget = (deadline - now).min(ATTEMPT_TIMEOUT);
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(SshError::Cancelled),
            r = tokio::time::timeout(budget, attempt(target)) => r,
        };
        // An attempt cut short by the deadline says less than the attempts before it.
        let cut_short = budget < ATTEMPT_TIMEOUT && last_error.is_some();
        let (error, pause) = match result {
            Ok(Ok(session)) => return Ok(session),
            Err(_) => (SshError::Connect(no_answer(budget)), Duration::ZERO),
            Ok(Err(AttemptError::NotReady(why))) => (SshError::Connect(why), POLL_INTERVAL),
            Ok(Err(AttemptError::Handshake(why))) => {
                failed_handshakes += 1;
                (SshError::Connect(why), AUTH_RETRY_INTERVAL)
            }
            Ok(Err(AttemptError::Rejected)) => {
                failed_handshakes += 1;
                let e = SshError::AuthRejected {
                    user: target.user.clone(),
                    method: target.auth.method(),
                    attempts: failed_handshakes,
                };
                (e, AUTH_RETRY_INTERVAL)
            }
            Ok(Err(AttemptError::Fatal(e))) => {
                on_attempt(attempts, &e);
                return Err(e);
            }
        };
        on_attempt(attempts, &error);
        if failed_handshakes >= handshake_attempts {
            return Err(match error {
                e @ SshError::AuthRejected { .. } => e,
                other => SshError::Connect(format!(
                    "the SSH handshake with {} failed {failed_handshakes} times; last error: \
                     {other}",
                    target.addr
                )),
            });
        }
        if !(cut_short && Instant::now() >= deadline) {
            last_error = Some(error.to_string());
        }
        let wake = (Instant::now() + pause).min(deadline);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(SshError::Cancelled),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

fn no_answer(budget: Duration) -> String {
    format!(
        "no SSH answer within {} (the port accepted the connection but sshd did not \
         complete the handshake)",
        format_duration(budget)
    )
}

/// How one attempt failed.
enum AttemptError {
    /// Nothing answers yet, or the connection was dropped: try again soon.
    NotReady(String),
    /// The SSH handshake failed for another reason: counts towards `handshake_attempts`.
    Handshake(String),
    /// The server refused the credentials.
    Rejected,
    /// Trying again cannot help.
    Fatal(SshError),
}

impl AttemptError {
    fn into_error(self, target: &Target) -> SshError {
        match self {
            AttemptError::NotReady(why) | AttemptError::Handshake(why) => SshError::Connect(why),
            AttemptError::Rejected => SshError::AuthRejected {
                user: target.user.clone(),
                method: target.auth.method(),
                attempts: 1,
            },
            AttemptError::Fatal(e) => e,
        }
    }
}

/// russh's handler: checks the host key and remembers the key it accepted.
pub(crate) struct ClientHandler {
    policy: HostKeyPolicy,
    accepted: Arc<Mutex<Option<PublicKey>>>,
}

/// What the handler can fail with: russh's own errors, or kiln's verdict on the host key.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Russh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.policy
            .check_offered(server_public_key)
            .map_err(HandlerError::HostKey)?;
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        if let Ok(mut accepted) = self.accepted.lock() {
            *accepted = Some(key);
        }
        Ok(true)
    }
}

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    })
}

/// One attempt, classified.
async fn attempt(target: &Target) -> Result<Session, AttemptError> {
    let stream = tokio::net::TcpStream::connect(&target.addr)
        .await
        .map_err(|e| AttemptError::NotReady(format!("connecting to {}: {e}", target.addr)))?;
    let _ = stream.set_nodelay(true);
    let accepted = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        policy: target.host_key.clone(),
        accepted: accepted.clone(),
    };
    let mut handle = client::connect_stream(client_config(), stream, handler)
        .await
        .map_err(|e| match e {
            HandlerError::HostKey(e) => AttemptError::Fatal(e),
            HandlerError::Russh(e) => classify_handshake(&target.addr, e),
        })?;
    let authenticated = match &target.auth {
        Auth::Key(key) => authenticate_key(&mut handle, &target.user, key).await,
        Auth::Password(password) => handle
            .authenticate_password(target.user.as_str(), password.expose())
            .await
            .map(|r| r.success())
            .map_err(|e| classify_handshake(&target.addr, e)),
        Auth::Agent(socket) => {
            let socket = agent_socket(socket.as_deref()).map_err(AttemptError::Fatal)?;
            authenticate_agent(&mut handle, &target.user, &target.addr, &socket, None).await
        }
        Auth::AgentKeys { socket, keys } => {
            let socket = agent_socket(socket.as_deref()).map_err(AttemptError::Fatal)?;
            authenticate_agent(&mut handle, &target.user, &target.addr, &socket, Some(keys)).await
        }
    }?;
    if !authenticated {
        // russh reports a connection that dropped during authentication as a refusal with
        // no methods left; a closed handle tells the two apart.
        if handle.is_closed() {
            return Err(AttemptError::NotReady(dropped(&target.addr)));
        }
        return Err(AttemptError::Rejected);
    }
    let host_key = accepted
        .lock()
        .ok()
        .and_then(|k| k.clone())
        .ok_or_else(|| AttemptError::Handshake("the server never showed a host key".into()))?;
    Ok(Session::new(
        handle,
        target.addr.clone(),
        target.user.clone(),
        host_key,
    ))
}

async fn authenticate_key(
    handle: &mut client::Handle<ClientHandler>,
    user: &str,
    key: &KeyPair,
) -> Result<bool, AttemptError> {
    let hash = if key.private_key().algorithm().is_rsa() {
        handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten()
    } else {
        None
    };
    let key = PrivateKeyWithHashAlg::new(key.private_key().clone(), hash);
    handle
        .authenticate_publickey(user, key)
        .await
        .map(|r| r.success())
        .map_err(|e| AttemptError::NotReady(format!("authenticating: {e}")))
}

/// The ssh-agent's socket: `socket`, else `SSH_AUTH_SOCK`; an error says what to do when
/// neither is there.
pub fn agent_socket(socket: Option<&Path>) -> Result<PathBuf, SshError> {
    match socket {
        Some(s) => Ok(s.to_path_buf()),
        None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(s) if !s.is_empty() => Ok(PathBuf::from(s)),
            _ => Err(SshError::Agent(
                "SSH_AUTH_SOCK is not set: start ssh-agent and `ssh-add` your key, or use \
                 ssh_private_key_file"
                    .into(),
            )),
        },
    }
}

/// Authenticates with the keys of the agent at `socket`, or only with those of `only` it
/// holds.
async fn authenticate_agent(
    handle: &mut client::Handle<ClientHandler>,
    user: &str,
    addr: &str,
    socket: &Path,
    only: Option<&[PublicKey]>,
) -> Result<bool, AttemptError> {
    let mut agent = AgentClient::connect_uds(socket).await.map_err(|e| {
        AttemptError::Fatal(SshError::Agent(format!(
            "could not reach it at {} ({e}): is ssh-agent running?",
            socket.display()
        )))
    })?;
    if let Some(binding) = handle.agent_session_binding() {
        // Only needed for destination-constrained keys; agents without the extension refuse.
        let _ = agent.bind_session(binding, false).await;
    }
    let identities = agent.request_identities().await.map_err(|e| {
        AttemptError::Fatal(SshError::Agent(format!("could not list its keys: {e}")))
    })?;
    let held: Vec<PublicKey> = identities
        .into_iter()
        .filter_map(|id| match id {
            AgentIdentity::PublicKey { key, .. } => Some(key),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect();
    if held.is_empty() {
        return Err(AttemptError::Fatal(SshError::Agent(
            "ssh-agent holds no keys: add one with `ssh-add`".into(),
        )));
    }
    let keys: Vec<PublicKey> = match only {
        None => held,
        Some(wanted) => {
            let keys: Vec<PublicKey> = held
                .into_iter()
                .filter(|k| wanted.iter().any(|w| super::keys::same_key(k, w)))
                .collect();
            if keys.is_empty() {
                let names: Vec<String> = wanted.iter().map(super::keys::fingerprint).collect();
                return Err(AttemptError::Fatal(SshError::Agent(format!(
                    "ssh-agent no longer holds the build's key {}: add it again with `ssh-add`",
                    names.join(", ")
                ))));
            }
            keys
        }
    };
    for key in keys {
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten()
        } else {
            None
        };
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) if handle.is_closed() => return Err(AttemptError::NotReady(dropped(addr))),
            Ok(_) => {}
            Err(russh::AgentAuthError::Send(_)) => {
                return Err(AttemptError::NotReady(dropped(addr)));
            }
            Err(russh::AgentAuthError::Key(e)) => {
                return Err(AttemptError::Fatal(SshError::Agent(format!(
                    "it did not sign with its key: {e}"
                ))));
            }
        }
    }
    Ok(false)
}

fn dropped(addr: &str) -> String {
    format!("{addr} closed the connection during the SSH handshake (sshd not up yet?)")
}

/// Sorts a russh handshake error into "not ready yet" and "handshake failed".
fn classify_handshake(addr: &str, e: russh::Error) -> AttemptError {
    use std::io::ErrorKind;
    match &e {
        russh::Error::IO(io) => match io.kind() {
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionRefused
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
            | ErrorKind::TimedOut => AttemptError::NotReady(dropped(addr)),
            _ => AttemptError::NotReady(format!("talking to {addr}: {io}")),
        },
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::SendError
        | russh::Error::RecvError
        | russh::Error::ConnectionTimeout
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::Elapsed(_) => AttemptError::NotReady(dropped(addr)),
        _ => AttemptError::Handshake(format!("the SSH handshake with {addr} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_debug_hides_secrets() {
        let k = KeyPair::generate().unwrap();
        let pem = k.private_key_openssh().unwrap();
        let a = format!(
            "{:?} {:?} {:?}",
            Auth::Key(k.clone()),
            Auth::Password(Secret::new("hunter2-password")),
            Auth::agent()
        );
        assert!(!a.contains("hunter2"), "{a}");
        assert!(a.contains(&k.fingerprint()), "{a}");
        for line in pem.expose().lines().filter(|l| !l.starts_with("-----")) {
            assert!(!a.contains(line), "{a}");
        }
    }
}
