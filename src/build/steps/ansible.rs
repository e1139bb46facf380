//! The `ansible` provisioner (the host's `ansible-playbook` against the VM) and
//! `ansible-local` (`ansible-playbook` in the guest).
//!
//! `ansible` reaches the VM the way Packer's `use_proxy: false` does — straight to the
//! forwarded SSH port on 127.0.0.1 as the build's user — but the build's key never touches
//! a file: it is loaded into a private `ssh-agent` that lives as long as the run, Ansible's
//! `ssh` is pointed at it through its public half (`IdentitiesOnly`), and the VM's host key
//! is pinned in a `known_hosts` of the run's own (host key checking stays on).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::build::local_shell::{RunError, run_program};
use crate::build::runner::{StepContext, StepError};
use crate::build::state::BuildState;
use crate::recipe::ansible::{AnsibleConfig, AnsibleLocalConfig, DEFAULT_STAGING_DIR};
use crate::ssh::Session;

/// How long `ssh-agent` may take to open its socket.
const AGENT_START: Duration = Duration::from_secs(5);

/// A private `ssh-agent` holding the build's key; killed when dropped.
struct Agent {
    _child: tokio::process::Child,
    socket: PathBuf,
}

impl Agent {
    /// Starts an agent on a socket in `dir` and loads `key` (an OpenSSH private key) into
    /// it through `ssh-add`'s standard input.
    async fn start(dir: &Path, key: &str) -> Result<Agent, StepError> {
        let socket = dir.join("agent.sock");
        let child = tokio::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                StepError(format!(
                    "cannot start ssh-agent for Ansible: {e} (apt-get install openssh-client)"
                ))
            })?;
        let deadline = tokio::time::Instant::now() + AGENT_START;
        while !socket.exists() {
            if tokio::time::Instant::now() > deadline {
                return Err(StepError("ssh-agent did not open its socket".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut add = tokio::process::Command::new("ssh-add")
            .arg("-q")
            .arg("-")
            .env("SSH_AUTH_SOCK", &socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| StepError(format!("cannot start ssh-add: {e}")))?;
        if let Some(mut stdin) = add.stdin.take() {
            stdin
                .write_all(key.as_bytes())
                .await
                .map_err(|e| StepError(format!("cannot hand the key to ssh-add: {e}")))?;
        }
        let out = add
            .wait_with_output()
            .await
            .map_err(|e| StepError(format!("ssh-add failed: {e}")))?;
        if !out.status.success() {
            return Err(StepError(format!(
                "ssh-add could not load the build's key: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Agent {
            _child: child,
            socket,
        })
    }
}

/// Writes `text` to `path` with mode 0600.
fn write_private(path: &Path, text: &str) -> Result<(), StepError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StepError(format!("cannot write {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| StepError(format!("cannot write {}: {e}", path.display())))
}

/// The generated inventory: the host line, then each group with the host, then the empty
/// groups (Packer's layout).
pub fn inventory(config: &AnsibleConfig, host: &str, port: u16, user: &str) -> String {
    let line = format!(
        "{} ansible_host={host} ansible_user={user} ansible_port={port}\n",
        config.host_alias
    );
    let mut out = line.clone();
    for group in &config.groups {
        out.push_str(&format!("[{group}]\n{line}"));
    }
    for group in &config.empty_groups {
        out.push_str(&format!("[{group}]\n"));
    }
    out
}

/// Runs `program args` and fails with `what` unless it exits 0.
async fn run_checked(
    ctx: &StepContext,
    program: &str,
    args: &[String],
    env: &[(String, String)],
    what: &str,
) -> Result<(), StepError> {
    let status = run_program(ctx, program, args, env, what)
        .await
        .map_err(|e| match e {
            RunError::Start(e) => StepError(format!(
                "cannot start `{program}` for {what}: {e} (install Ansible on this machine: apt-get install ansible-core, or set `command`)"
            )),
            RunError::Other(e) => e,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(StepError(format!(
            "{what} failed ({status}); its output is above and in build.log"
        )))
    }
}

/// `ansible-galaxy` for `galaxy_file`: roles when the file lists roles (or no collections),
/// collections when it lists collections (Packer's rule).
async fn galaxy(
    ctx: &StepContext,
    config: &AnsibleConfig,
    env: &[(String, String)],
) -> Result<(), StepError> {
    let Some(file) = &config.galaxy_file else {
        return Ok(());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| StepError(format!("cannot read galaxy_file {file}: {e}")))?;
    let has = |key: &str| text.lines().any(|l| l.starts_with(key));
    let (roles, collections) = (has("roles:"), has("collections:"));
    let force = config.galaxy_force_install.then(|| "-f".to_string());
    if roles || !collections {
        let mut args = vec!["install".to_string(), "-r".into(), file.clone()];
        args.extend(force.clone());
        if let Some(path) = &config.roles_path {
            args.extend(["-p".to_string(), path.clone()]);
        }
        run_checked(
            ctx,
            &config.galaxy_command,
            &args,
            env,
            "ansible-galaxy (roles)",
        )
        .await?;
    }
    if collections {
        let mut args = vec![
            "collection".to_string(),
            "install".into(),
            "-r".into(),
            file.clone(),
        ];
        args.extend(force);
        if let Some(path) = &config.collections_path {
            args.extend(["-p".to_string(), path.clone()]);
        }
        run_checked(
            ctx,
            &config.galaxy_command,
            &args,
            env,
            "ansible-galaxy (collections)",
        )
        .await?;
    }
    Ok(())
}

/// Runs the `ansible` provisioner against the build's VM.
pub async fn run_ansible(
    ctx: &StepContext,
    state: &BuildState,
    config: &AnsibleConfig,
    build_name: &str,
) -> Result<(), StepError> {
    let session = state
        .session
        .as_ref()
        .ok_or_else(|| StepError("no SSH session (communicator \"none\")".into()))?;
    let no_key = || {
        StepError(
            "the ansible provisioner connects with the build's SSH key, and this build logs in with a password (ssh_password); give ssh_private_key_file or let kiln make a key".into(),
        )
    };
    if state.client_key.is_none() && state.agent.is_none() {
        return Err(no_key());
    }
    let port = state
        .ssh_port
        .ok_or_else(|| StepError("no forwarded SSH port".into()))?;
    let user = config
        .user
        .clone()
        .unwrap_or_else(|| state.config.ssh.username.clone());
    let dir = tempfile::Builder::new()
        .prefix("ansible-")
        .tempdir_in(&state.dirs.work)
        .map_err(|e| StepError(format!("cannot make Ansible's scratch directory: {e}")))?;
    let known_hosts = dir.path().join("known_hosts");
    write_private(
        &known_hosts,
        &format!(
            "[127.0.0.1]:{port} {}\n",
            crate::ssh::keys::public_key_openssh(session.host_key())
        ),
    )?;
    let identity = dir.path().join("identity.pub");
    write_private(
        &identity,
        &format!(
            "{}\n",
            state
                .client_public_lines()
                .first()
                .cloned()
                .unwrap_or_default()
        ),
    )?;
    // The build key goes into a private ssh-agent; with `ssh_agent_auth` the user's agent
    // signs, as it does for kiln.
    let (agent, agent_socket) = match (&state.client_key, &state.agent) {
        (Some(key), _) => {
            let pem = key.private_key_openssh().map_err(super::fail)?;
            let agent = Agent::start(dir.path(), pem.expose()).await?;
            let socket = agent.socket.clone();
            (Some(agent), socket)
        }
        (None, Some(login)) => (None, login.socket.clone()),
        (None, None) => return Err(no_key()),
    };

    let (inventory, generated) = match &config.inventory_file {
        Some(file) => (PathBuf::from(file), None),
        None => {
            let place = config
                .inventory_directory
                .as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.path().to_path_buf());
            let file = tempfile::Builder::new()
                .prefix("packer-provisioner-ansible")
                .tempfile_in(&place)
                .map_err(|e| {
                    StepError(format!(
                        "cannot write the inventory in {}: {e}",
                        place.display()
                    ))
                })?;
            std::fs::write(file.path(), inventory(config, "127.0.0.1", port, &user))
                .map_err(|e| StepError(format!("cannot write the inventory: {e}")))?;
            let path = file.path().to_path_buf();
            if config.keep_inventory_file {
                let _ = file.keep();
                ctx.log(format!("inventory kept at {}", path.display()));
                (path, None)
            } else {
                (path, Some(file))
            }
        }
    };

    let mut env: Vec<(String, String)> = vec![
        ("ANSIBLE_SCP_IF_SSH".into(), "True".into()),
        ("SSH_AUTH_SOCK".into(), agent_socket.display().to_string()),
    ];
    env.extend(config.ansible_env_vars.iter().cloned());
    galaxy(ctx, config, &env).await?;

    let mut ssh_args = format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o IdentityFile={}",
        known_hosts.display(),
        identity.display()
    );
    if !config.ansible_ssh_extra_args.is_empty() {
        ssh_args.push(' ');
        ssh_args.push_str(&config.ansible_ssh_extra_args.concat());
    }
    let mut args = vec![
        "-e".to_string(),
        format!("packer_build_name={build_name:?}"),
        "-e".into(),
        "packer_builder_type=qemu".into(),
    ];
    if let Some((ip, http_port)) = &state.http {
        args.extend([
            "-e".to_string(),
            format!("packer_http_addr={ip}:{http_port}"),
        ]);
    }
    args.extend(["--ssh-extra-args".to_string(), ssh_args]);
    args.extend(config.extra_arguments.iter().cloned());
    args.extend([
        "-i".to_string(),
        inventory.display().to_string(),
        config.playbook_file.clone(),
    ]);
    ctx.log(format!(
        "running Ansible as {user} on 127.0.0.1:{port} (key in a private ssh-agent, host key pinned): {} {}",
        config.command,
        args.join(" ")
    ));
    let result = run_checked(ctx, &config.command, &args, &env, "ansible-playbook").await;
    drop(generated);
    drop(agent);
    result
}

/// Quotes `text` for the guest's POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\"'\"'"))
}

/// Runs `command` in the guest, failing with `what` unless it exits 0.
async fn remote(
    ctx: &StepContext,
    session: &Session,
    command: &str,
    what: &str,
) -> Result<(), StepError> {
    let index = ctx.index();
    let events = ctx.events().clone();
    let status = session
        .exec_with(
            command,
            &crate::ssh::ExecOptions::default(),
            ctx.cancel(),
            |stream, line| {
                events.send(crate::build::event::Event::Log {
                    index: Some(index),
                    stream,
                    line: line.to_string(),
                })
            },
        )
        .await
        .map_err(super::fail)?;
    match status.code() {
        Some(0) => Ok(()),
        Some(127) => Err(StepError(format!(
            "{what}: command not found in the guest; install Ansible there first (e.g. a shell provisioner running `apt-get install -y ansible-core`)"
        ))),
        _ => Err(StepError(format!(
            "{what} failed ({status}); its output is above and in build.log"
        ))),
    }
}

/// Uploads the local directory `src`'s contents to `dst` in the guest.
async fn upload_dir(
    ctx: &StepContext,
    session: &Session,
    src: &str,
    dst: &str,
) -> Result<(), StepError> {
    remote(ctx, session, &format!("mkdir -p {}", quoted(dst)), "mkdir").await?;
    let src = format!("{}/", src.trim_end_matches('/'));
    session
        .upload(Path::new(&src), dst, ctx.cancel(), |_, _| {})
        .await
        .map_err(super::fail)?;
    Ok(())
}

/// Runs the `ansible-local` provisioner in the guest.
pub async fn run_ansible_local(
    ctx: &StepContext,
    session: &Session,
    state: &BuildState,
    config: &AnsibleLocalConfig,
    build_name: &str,
) -> Result<(), StepError> {
    let staging = config
        .staging_directory
        .clone()
        .unwrap_or_else(|| format!("{DEFAULT_STAGING_DIR}/{}", uuid::Uuid::new_v4().as_simple()));
    match &config.playbook_dir {
        Some(dir) => upload_dir(ctx, session, dir, &staging).await?,
        None => {
            remote(
                ctx,
                session,
                &format!("mkdir -p {}", quoted(&staging)),
                "mkdir",
            )
            .await?
        }
    }
    let cancel = ctx.cancel().clone();
    let mut remote_playbooks = Vec::new();
    for playbook in &config.playbook_files {
        let name = Path::new(playbook)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let remote_path = format!("{staging}/{name}");
        session
            .upload(Path::new(playbook), &remote_path, &cancel, |_, _| {})
            .await
            .map_err(super::fail)?;
        remote_playbooks.push(remote_path);
    }
    let inventory_text = match &config.inventory_file {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| StepError(format!("cannot read inventory_file {file}: {e}")))?,
        None if config.inventory_groups.is_empty() => "127.0.0.1".to_string(),
        None => config
            .inventory_groups
            .iter()
            .map(|g| format!("[{g}]\n127.0.0.1\n"))
            .collect(),
    };
    let inventory = format!("{staging}/packer-provisioner-ansible-local-inventory");
    session
        .upload_bytes(
            inventory_text.as_bytes(),
            &inventory,
            0o644,
            &cancel,
            |_, _| {},
        )
        .await
        .map_err(super::fail)?;
    for (dir, under) in [
        (&config.group_vars, "group_vars"),
        (&config.host_vars, "host_vars"),
    ] {
        if let Some(dir) = dir {
            upload_dir(ctx, session, dir, &format!("{staging}/{under}")).await?;
        }
    }
    for (dirs, under) in [
        (&config.role_paths, "roles"),
        (&config.playbook_paths, "playbooks"),
    ] {
        for dir in dirs {
            let name = Path::new(dir)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            upload_dir(ctx, session, dir, &format!("{staging}/{under}/{name}")).await?;
        }
    }
    if let Some(galaxy) = &config.galaxy_file {
        let name = Path::new(galaxy)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let remote_galaxy = format!("{staging}/{name}");
        session
            .upload(Path::new(galaxy), &remote_galaxy, &cancel, |_, _| {})
            .await
            .map_err(super::fail)?;
        let command = format!(
            "cd {} && {} install -r {} -p {}",
            quoted(&staging),
            config.galaxy_command,
            quoted(&remote_galaxy),
            quoted(&format!("{staging}/roles"))
        );
        remote(ctx, session, &command, "ansible-galaxy").await?;
    }
    let http_addr = state
        .http
        .as_ref()
        .map(|(ip, port)| format!("{ip}:{port}"))
        .unwrap_or_default();
    let mut extra = format!(
        " --extra-vars \"packer_build_name={build_name} packer_builder_type=qemu packer_http_addr={http_addr}\" "
    );
    extra.push_str(&config.extra_arguments.join(" "));
    for playbook in &remote_playbooks {
        let command = format!(
            "cd {} && {} {}{extra} -c local -i {}",
            quoted(&staging),
            config.command,
            quoted(playbook),
            quoted(&inventory)
        );
        ctx.log(format!("running in the guest: {command}"));
        remote(ctx, session, &command, "ansible-playbook (in the guest)").await?;
    }
    if config.clean_staging_directory {
        remote(ctx, session, &format!("rm -rf {}", quoted(&staging)), "rm").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inventory_is_packers() {
        let mut config = crate::recipe::ansible::AnsibleConfig {
            playbook_file: "/p.yml".into(),
            command: "ansible-playbook".into(),
            extra_arguments: vec![],
            ansible_env_vars: vec![],
            ansible_ssh_extra_args: vec![],
            groups: vec!["web".into()],
            empty_groups: vec!["db".into()],
            host_alias: "default".into(),
            user: None,
            inventory_file: None,
            inventory_directory: None,
            keep_inventory_file: false,
            galaxy_file: None,
            galaxy_command: "ansible-galaxy".into(),
            galaxy_force_install: false,
            roles_path: None,
            collections_path: None,
            skip_version_check: false,
        };
        assert_eq!(
            inventory(&config, "127.0.0.1", 2222, "debian"),
            "default ansible_host=127.0.0.1 ansible_user=debian ansible_port=2222\n\
             [web]\ndefault ansible_host=127.0.0.1 ansible_user=debian ansible_port=2222\n\
             [db]\n"
        );
        config.groups.clear();
        config.empty_groups.clear();
        assert_eq!(
            inventory(&config, "127.0.0.1", 2222, "debian"),
            "default ansible_host=127.0.0.1 ansible_user=debian ansible_port=2222\n"
        );
        assert_eq!(quoted("it's"), "'it'\"'\"'s'");
    }
}
