//! The `ansible` and `ansible-local` provisioners' configuration, with Packer's options.
//!
//! `ansible` runs the host's `ansible-playbook` against the VM. Packer by default puts an SSH
//! proxy of its own between Ansible and the VM (`use_proxy`); kiln always connects Ansible
//! straight to the VM's forwarded SSH port, as `use_proxy: false` does, with the build's key
//! in a private ssh-agent (never in a file) and the VM's host key pinned. The proxy's own
//! options are read and ignored with a warning.
//!
//! `ansible-local` uploads the playbook (and its directories) to the guest and runs
//! `ansible-playbook` there, against `127.0.0.1` with the local connection.

use super::decode::Fields;
use super::shell_local::{Item, error_count, existing_local_path, item, list_items, report};

/// The default `command` of `ansible`.
pub const DEFAULT_ANSIBLE_COMMAND: &str = "ansible-playbook";
/// The default `command` of `ansible-local` (Packer's).
pub const DEFAULT_ANSIBLE_LOCAL_COMMAND: &str =
    "ANSIBLE_FORCE_COLOR=1 PYTHONUNBUFFERED=1 ansible-playbook";
/// The default `galaxy_command`.
pub const DEFAULT_GALAXY_COMMAND: &str = "ansible-galaxy";
/// Where `ansible-local` stages its files by default (a fresh subdirectory per run).
pub const DEFAULT_STAGING_DIR: &str = "/tmp/packer-provisioner-ansible-local";

/// Options of Packer's SSH proxy between Ansible and the VM, which kiln does not use.
const PROXY_OPTIONS: &[&str] = &[
    "local_port",
    "ssh_host_key_file",
    "ssh_authorized_key_file",
    "sftp_command",
    "use_sftp",
];

/// Configuration of the `ansible` provisioner.
#[derive(Debug, Clone, PartialEq)]
pub struct AnsibleConfig {
    /// `playbook_file` (required; absolute).
    pub playbook_file: String,
    /// `command`: the program run (default `ansible-playbook`); not run through a shell.
    pub command: String,
    /// `extra_arguments`: appended as they are (no shell).
    pub extra_arguments: Vec<String>,
    /// `ansible_env_vars`: `NAME=value` pairs for Ansible's environment.
    pub ansible_env_vars: Vec<(String, String)>,
    /// `ansible_ssh_extra_args`: more options for `ssh` (joined, as Packer joins them).
    pub ansible_ssh_extra_args: Vec<String>,
    /// `groups`: inventory groups the host is in.
    pub groups: Vec<String>,
    /// `empty_groups`: inventory groups with no host.
    pub empty_groups: Vec<String>,
    /// `host_alias` (default `default`).
    pub host_alias: String,
    /// `user`: `ansible_user`; by default the build's `ssh_username`.
    pub user: Option<String>,
    /// `inventory_file`: the user's inventory instead of a generated one (absolute).
    pub inventory_file: Option<String>,
    /// `inventory_directory`: where the generated inventory goes (absolute).
    pub inventory_directory: Option<String>,
    /// `keep_inventory_file`: leave the generated inventory behind.
    pub keep_inventory_file: bool,
    /// `galaxy_file`: roles and collections installed first (absolute).
    pub galaxy_file: Option<String>,
    /// `galaxy_command` (default `ansible-galaxy`).
    pub galaxy_command: String,
    /// `galaxy_force_install`.
    pub galaxy_force_install: bool,
    /// `roles_path` for `ansible-galaxy`.
    pub roles_path: Option<String>,
    /// `collections_path` for `ansible-galaxy`.
    pub collections_path: Option<String>,
    /// `skip_version_check`: do not check for `ansible-playbook` before the build starts.
    pub skip_version_check: bool,
}

/// Configuration of the `ansible-local` provisioner.
#[derive(Debug, Clone, PartialEq)]
pub struct AnsibleLocalConfig {
    /// `playbook_file` or `playbook_files` (absolute, at least one).
    pub playbook_files: Vec<String>,
    /// Whether the playbooks came from `playbook_files` (uploaded with their paths) rather than
    /// `playbook_file` (uploaded by name).
    pub several: bool,
    /// `command`, run in the guest through its shell.
    pub command: String,
    /// `extra_arguments`, joined with spaces into the command line (as Packer does).
    pub extra_arguments: Vec<String>,
    /// `playbook_dir`: uploaded as the staging directory itself.
    pub playbook_dir: Option<String>,
    /// `playbook_paths`: directories uploaded under `playbooks/`.
    pub playbook_paths: Vec<String>,
    /// `role_paths`: directories uploaded under `roles/`.
    pub role_paths: Vec<String>,
    /// `group_vars` and `host_vars` directories.
    pub group_vars: Option<String>,
    /// See `group_vars`.
    pub host_vars: Option<String>,
    /// `inventory_file` (else `127.0.0.1`, in `inventory_groups`).
    pub inventory_file: Option<String>,
    /// `inventory_groups`.
    pub inventory_groups: Vec<String>,
    /// `staging_directory` (default a fresh one under [`DEFAULT_STAGING_DIR`]).
    pub staging_directory: Option<String>,
    /// `clean_staging_directory`.
    pub clean_staging_directory: bool,
    /// `galaxy_file` (absolute), run in the guest with `galaxy_command`.
    pub galaxy_file: Option<String>,
    /// `galaxy_command`.
    pub galaxy_command: String,
}

fn local_file(f: &mut Fields<'_, '_>, key: &'static str) -> Option<String> {
    let i = item(f, key).filter(|i| !i.value.is_empty())?;
    existing_local_path(f, &i, key, false)
}

fn local_dir(f: &mut Fields<'_, '_>, i: &Item, key: &str) -> Option<String> {
    let path = existing_local_path(f, i, key, true)?;
    if !std::path::Path::new(&path).is_dir() {
        report(
            f,
            i.pos,
            &i.path,
            format!("{key} `{}` is not a directory", i.value),
        );
        return None;
    }
    Some(path)
}

fn strings(f: &mut Fields<'_, '_>, key: &'static str) -> Vec<String> {
    list_items(f, key)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.value)
        .collect()
}

/// `NAME=value` pairs; an element without `=` is reported.
fn env_pairs(f: &mut Fields<'_, '_>, key: &'static str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in list_items(f, key).unwrap_or_default() {
        match i.value.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                out.push((name.trim().to_string(), value.to_string()))
            }
            _ => report(
                f,
                i.pos,
                &i.path,
                format!(
                    "expected NAME=VALUE, got {:?}; write e.g. \"ANSIBLE_NOCOLOR=True\"",
                    i.value
                ),
            ),
        }
    }
    out
}

/// Decodes `ansible`.
pub(crate) fn decode_ansible(f: &mut Fields<'_, '_>) -> Option<AnsibleConfig> {
    let before = error_count(f);
    let playbook_file = local_file(f, "playbook_file");
    if playbook_file.is_none() && !f.has("playbook_file") {
        f.error_here("`playbook_file` is required: the playbook Ansible runs against the VM");
    }
    let command = f
        .string("command")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_ANSIBLE_COMMAND.to_string());
    let extra_arguments = strings(f, "extra_arguments");
    let ansible_env_vars = env_pairs(f, "ansible_env_vars");
    let ansible_ssh_extra_args = strings(f, "ansible_ssh_extra_args");
    let groups = strings(f, "groups");
    let empty_groups = strings(f, "empty_groups");
    let host_alias = f
        .string("host_alias")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let user = f.string("user").filter(|u| !u.is_empty());
    let inventory_file = local_file(f, "inventory_file");
    let inventory_directory = match item(f, "inventory_directory").filter(|i| !i.value.is_empty()) {
        Some(i) => local_dir(f, &i, "inventory_directory"),
        None => None,
    };
    let keep_inventory_file = f.bool("keep_inventory_file").unwrap_or(false);
    let galaxy_file = local_file(f, "galaxy_file");
    let galaxy_command = f
        .string("galaxy_command")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_GALAXY_COMMAND.to_string());
    let galaxy_force_install = f.bool("galaxy_force_install").unwrap_or(false);
    let roles_path = f.string("roles_path").filter(|p| !p.is_empty());
    let collections_path = f.string("collections_path").filter(|p| !p.is_empty());
    let skip_version_check = f.bool("skip_version_check").unwrap_or(false);
    // kiln always connects Ansible straight to the VM (`use_proxy: false`).
    f.take("use_proxy");
    for key in PROXY_OPTIONS {
        f.ignore(
            key,
            "kiln connects Ansible straight to the VM's forwarded SSH port (as use_proxy: false does), without Packer's SSH proxy",
        );
    }
    f.refuse(
        "inventory_file_template",
        "kiln writes the inventory line itself (host, port, user of the build); use inventory_file for your own",
    );
    let playbook_file = playbook_file?;
    (error_count(f) == before).then_some(AnsibleConfig {
        playbook_file,
        command,
        extra_arguments,
        ansible_env_vars,
        ansible_ssh_extra_args,
        groups,
        empty_groups,
        host_alias,
        user,
        inventory_file,
        inventory_directory,
        keep_inventory_file,
        galaxy_file,
        galaxy_command,
        galaxy_force_install,
        roles_path,
        collections_path,
        skip_version_check,
    })
}

/// Decodes `ansible-local`.
pub(crate) fn decode_ansible_local(f: &mut Fields<'_, '_>) -> Option<AnsibleLocalConfig> {
    let before = error_count(f);
    let one = local_file(f, "playbook_file");
    let many_items = list_items(f, "playbook_files").unwrap_or_default();
    let mut many = Vec::new();
    for i in many_items.iter().filter(|i| !i.value.is_empty()) {
        if let Some(path) = existing_local_path(f, i, "playbook_files", false) {
            many.push(path);
        }
    }
    let several = !many_items.is_empty();
    if one.is_some() && several {
        f.error_here("give either `playbook_file` or `playbook_files`, not both");
    } else if one.is_none() && !several && !f.has("playbook_file") {
        f.error_here(
            "`playbook_file` (or `playbook_files`) is required: the playbook run in the guest",
        );
    }
    let dirs = |f: &mut Fields<'_, '_>, key: &'static str| -> Vec<String> {
        let mut out = Vec::new();
        for i in list_items(f, key).unwrap_or_default() {
            if let Some(path) = local_dir(f, &i, key) {
                out.push(path);
            }
        }
        out
    };
    let dir = |f: &mut Fields<'_, '_>, key: &'static str| -> Option<String> {
        let i = item(f, key).filter(|i| !i.value.is_empty())?;
        local_dir(f, &i, key)
    };
    let command = f
        .string("command")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_ANSIBLE_LOCAL_COMMAND.to_string());
    let extra_arguments = strings(f, "extra_arguments");
    let playbook_dir = dir(f, "playbook_dir");
    let playbook_paths = dirs(f, "playbook_paths");
    let role_paths = dirs(f, "role_paths");
    let group_vars = dir(f, "group_vars");
    let host_vars = dir(f, "host_vars");
    let inventory_file = local_file(f, "inventory_file");
    let inventory_groups = strings(f, "inventory_groups");
    let staging_directory = f.string("staging_directory").filter(|s| !s.is_empty());
    let clean_staging_directory = f.bool("clean_staging_directory").unwrap_or(false);
    let galaxy_file = local_file(f, "galaxy_file");
    let galaxy_command = f
        .string("galaxy_command")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_GALAXY_COMMAND.to_string());
    let playbook_files: Vec<String> = one.into_iter().chain(many).collect();
    (error_count(f) == before && !playbook_files.is_empty()).then_some(AnsibleLocalConfig {
        playbook_files,
        several,
        command,
        extra_arguments,
        playbook_dir,
        playbook_paths,
        role_paths,
        group_vars,
        host_vars,
        inventory_file,
        inventory_groups,
        staging_directory,
        clean_staging_directory,
        galaxy_file,
        galaxy_command,
    })
}
