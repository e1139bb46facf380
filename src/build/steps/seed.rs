//! Seed: the keys of this build and the cloud-init NoCloud seed that carries them. kiln makes
//! a fresh client key and a fresh host key per build, injects both, and later accepts only
//! that host key. A recipe that brings its own cloud-init data — its own drives (the seed
//! article's `seed.img`), a nocloud-net SMBIOS serial, a CD labelled `cidata` — gets no seed
//! from kiln (cloud-init would read kiln's instead of the recipe's): its key file, or kiln's
//! fresh key offered as `{{ .SSHPublicKey }}`, is used and the host key is trusted on first
//! use.

use crate::build::event::Event;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::{AgentLogin, BuildState};
use crate::cloudinit::{SeedFiles, SeedFormat, write_to_path};
use crate::qemu::cmdline::{recipe_seed, user_supplies_drives};
use crate::recipe::qemu::Communicator;
use crate::secrets::ssh_keys::{SshKeys, list_agent_keys};
use crate::ssh::{HostKeyPolicy, KeyPair, PublicKey, TrustOnFirstUse};

/// Makes the keys and the seed.
pub struct Seed;

/// cloud-config that authorises `client_public` (an `authorized_keys` line, or several
/// separated by newlines: an ssh-agent's keys) for the default user and installs `host` as
/// the guest's only SSH host key.
pub fn user_data(client_public: &str, host: &KeyPair) -> Result<String, StepError> {
    let authorised: String = client_public
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("  - {l}\n"))
        .collect();
    let private = host.private_key_openssh().map_err(super::fail)?;
    let indented: String = private
        .expose()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    Ok(format!(
        "#cloud-config\n\
         ssh_authorized_keys:\n{authorised}\
         ssh_deletekeys: true\n\
         ssh_genkeytypes: []\n\
         ssh_keys:\n  ed25519_private: |\n{indented}  ed25519_public: {}\n",
        host.public_key_openssh()
    ))
}

/// The ssh-agent keys a build logs in with: the one whose fingerprint is `wanted`, else
/// every key the agent at `SSH_AUTH_SOCK` holds. An error says what to do (no agent, no
/// keys, not that key).
pub async fn agent_login(wanted: Option<&str>) -> Result<AgentLogin, StepError> {
    let socket = crate::ssh::connect::agent_socket(None)
        .map_err(|e| StepError(format!("ssh_agent_auth: {e}")))?;
    let listed = list_agent_keys(&socket)
        .await
        .map_err(|e| StepError(format!("ssh_agent_auth: {e}; is ssh-agent running?")))?;
    let keys: Vec<PublicKey> = listed
        .iter()
        .filter(|k| wanted.is_none_or(|w| k.fingerprint == w))
        .filter_map(|k| k.public_line.as_deref())
        .filter_map(|line| crate::ssh::keys::parse_public_key(line).ok())
        .collect();
    if keys.is_empty() {
        let held: Vec<String> = listed
            .iter()
            .map(|k| format!("{} {}", k.fingerprint, k.comment))
            .collect();
        return Err(StepError(match wanted {
            Some(w) if !listed.is_empty() => format!(
                "ssh_agent_auth: the ssh-agent at {} does not hold the chosen key {w} (it holds: {}); add it with `ssh-add`, or choose another key",
                socket.display(),
                held.join(", ")
            ),
            _ => format!(
                "ssh_agent_auth: the ssh-agent at {} holds no keys: add one with `ssh-add`",
                socket.display()
            ),
        }));
    }
    Ok(AgentLogin { socket, keys })
}

impl Step<BuildState> for Seed {
    fn name(&self) -> String {
        "Seed".into()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let config = &state.config;
            if config.communicator == Communicator::None {
                return Ok(StepDone::Skipped("communicator \"none\"".into()));
            }
            let restored = state.cache.as_ref().and_then(|c| {
                Some((
                    c.restored_seed()?,
                    c.restored.as_ref()?.meta.host_key.clone(),
                ))
            });
            let stored_key = restored.as_ref().and_then(|((_, key), _)| key.clone());
            let client = if config.ssh.agent_auth {
                let login = agent_login(config.ssh.agent_key.as_deref()).await?;
                ctx.log(format!(
                    "ssh-agent at {} signs for key {}",
                    login.socket.display(),
                    login.fingerprints().join(", ")
                ));
                state.agent = Some(login);
                None
            } else {
                let key = match (
                    &config.ssh.private_key_file,
                    &config.ssh.private_key_keyring,
                ) {
                    (Some(file), _) => {
                        KeyPair::from_file(std::path::Path::new(file)).map_err(super::fail)?
                    }
                    // Loading registers the key with the redactor before anything else sees it.
                    (None, Some(name)) => SshKeys::platform()
                        .and_then(|keys| keys.load(name, &state.redactor))
                        .map_err(|e| StepError(format!("ssh_private_key_keyring: {e}")))?,
                    (None, None) => match &stored_key {
                        Some(file) => KeyPair::from_file(file).map_err(|e| {
                            StepError(format!(
                                "the step cache's build key {}: {e}; run `kiln cache clear`",
                                file.display()
                            ))
                        })?,
                        None => KeyPair::generate().map_err(super::fail)?,
                    },
                };
                key.register_with(&state.redactor).map_err(super::fail)?;
                Some(key)
            };
            let user_key = config.ssh.agent_auth
                || config.ssh.private_key_file.is_some()
                || config.ssh.private_key_keyring.is_some();
            let generated = stored_key.is_none()
                && !config.ssh.agent_auth
                && config.ssh.private_key_file.is_none()
                && config.ssh.private_key_keyring.is_none();
            if let Some(why) = recipe_seed(config) {
                let has_password = config.ssh.password.is_some();
                if user_supplies_drives(config) && !user_key && !has_password {
                    return Err(StepError(
                        "the recipe attaches its own drives in qemuargs (a seed.img made beforehand), so kiln cannot put a key into the guest: set ssh_private_key_file to the key whose public half is in that seed".into(),
                    ));
                }
                let offers_key = config
                    .http_content
                    .values()
                    .chain(config.cd_content.values())
                    .any(|v| v.contains("SSHPublicKey"));
                if !user_supplies_drives(config) && !user_key && !has_password && !offers_key {
                    ctx.events().send(Event::Warning(
                        "the recipe's cloud-init data does not use {{ .SSHPublicKey }} and sets neither ssh_private_key_file nor ssh_password: kiln's key will not be authorised in the guest (put `ssh_authorized_keys: [\"{{ .SSHPublicKey }}\"]` into its user-data)".into(),
                    ));
                }
                match &restored {
                    // The host key the guest showed the first time, kept with the cache.
                    Some((_, host_key)) => {
                        let host = crate::ssh::keys::parse_public_key(host_key).map_err(|e| {
                            StepError(format!(
                                "the step cache's host key: {e}; run `kiln cache clear`"
                            ))
                        })?;
                        state.host_key = Some(HostKeyPolicy::pinned(host));
                    }
                    None => {
                        let events = ctx.events().clone();
                        state.host_key =
                            Some(HostKeyPolicy::TrustOnFirstUse(TrustOnFirstUse::with_log(
                                move |line| events.send(Event::Warning(line.to_string())),
                            )));
                        ctx.events().send(Event::Warning(format!(
                            "{why}: kiln adds no seed of its own, so kiln cannot pin the guest's host key; it trusts the first key it sees and holds the rest of the build to it"
                        )));
                    }
                }
                if let Some(client) = &client {
                    ctx.log(format!("client key {}", client.fingerprint()));
                }
                state.client_key = client;
                state.recipe_seed = Some(why);
                if restored.is_none()
                    && let Some(run) = state.cache.as_mut()
                {
                    let key = state.client_key.as_ref().filter(|_| generated);
                    if let Err(e) = run.keep_seed(None, key) {
                        ctx.events().send(Event::Warning(format!(
                            "step cache: cannot keep the build key with the cache ({e}); the build goes on without the cache"
                        )));
                        run.stop();
                    }
                }
                return Ok(StepDone::Skipped("the recipe brings its own seed".into()));
            }
            if let Some(((seed, _), host_key)) = restored {
                let seed = seed.ok_or_else(|| {
                    StepError("the step cache's entry has no seed: run `kiln cache clear`".into())
                })?;
                let host = crate::ssh::keys::parse_public_key(&host_key).map_err(|e| {
                    StepError(format!(
                        "the step cache's host key: {e}; run `kiln cache clear`"
                    ))
                })?;
                state.client_key = client;
                state.host_key = Some(HostKeyPolicy::pinned(host));
                state.seed = Some(seed);
                let note = state
                    .cache
                    .as_ref()
                    .map(|c| c.cached_note())
                    .unwrap_or_default();
                return Ok(StepDone::Skipped(format!(
                    "{note}: the guest's keys and seed from the step cache"
                )));
            }
            let host = KeyPair::generate_with_comment("kiln-host").map_err(super::fail)?;
            host.register_with(&state.redactor).map_err(super::fail)?;
            let seed_path = state.dirs.work.join("seed.iso");
            state.client_key = client;
            let authorised = state.client_public_lines();
            let files = SeedFiles::new(user_data(&authorised.join("\n"), &host)?)
                .instance_id(format!("kiln-{}", uuid::Uuid::new_v4()));
            write_to_path(&files, SeedFormat::Iso, &seed_path).map_err(super::fail)?;
            ctx.log(format!(
                "cidata seed with client key {} and host key {}",
                state.client_fingerprints().join(", "),
                host.fingerprint()
            ));
            state.host_key = Some(HostKeyPolicy::pinned(host.public_key().clone()));
            if let Some(run) = state.cache.as_mut() {
                let key = state.client_key.as_ref().filter(|_| generated);
                if let Err(e) = run.keep_seed(Some(&seed_path), key) {
                    ctx.events().send(Event::Warning(format!(
                        "step cache: cannot keep the seed with the cache ({e}); the build goes on without the cache"
                    )));
                    run.stop();
                }
            }
            state.seed = Some(seed_path);
            Ok(StepDone::Done)
        })
    }
}
