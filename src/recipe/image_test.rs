//! `kiln-test`, kiln's own post-processor: boot the finished image on a throw-away overlay
//! with a fresh seed and key, and check it before it is published — built-in checks (cloud-init
//! finished, systemd running, no build key or SSH host key shipped, a disk the import takes)
//! and the recipe's own commands and scripts with their expected exit codes.

use std::time::Duration;

use super::decode::Fields;
use super::shell_local::{
    Item, decode_exit_codes, error_count, existing_local_path, list_items, report,
};

/// The built-in checks, by the name `skip_checks` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinCheck {
    /// `cloud-init status --wait` ends with `status: done`.
    CloudInit,
    /// `systemctl is-system-running --wait` says `running` (or `degraded` with
    /// `allow_degraded`).
    SystemRunning,
    /// No `authorized_keys` line was in the image before this boot's seed added its own.
    BuildKeys,
    /// No SSH host key was in the image before this boot generated its own.
    HostKeys,
    /// The image file is consistent (`qemu-img check`), and qcow2 within Exoscale's size
    /// limits when an `exoscale-import` follows in the chain.
    Disk,
}

impl BuiltinCheck {
    /// Every built-in check, in the order they run.
    pub const ALL: [BuiltinCheck; 5] = [
        Self::Disk,
        Self::CloudInit,
        Self::SystemRunning,
        Self::BuildKeys,
        Self::HostKeys,
    ];

    /// The name in `skip_checks` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::CloudInit => "cloud_init",
            Self::SystemRunning => "system_running",
            Self::BuildKeys => "build_keys",
            Self::HostKeys => "host_keys",
            Self::Disk => "disk",
        }
    }

    /// The check named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The default `ssh_timeout` of `kiln-test`.
pub const DEFAULT_TEST_SSH_TIMEOUT: Duration = Duration::from_secs(600);

/// A check of the recipe's own: a command or a local script run in the test VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCheck {
    /// An `inline` command, run by the guest's shell.
    Command(String),
    /// A local script (absolute path), copied into the guest and run there.
    Script(String),
}

/// Configuration of `kiln-test`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTestConfig {
    /// `inline`: commands, each one check.
    pub inline: Vec<String>,
    /// `scripts` (or `script`): local scripts, each one check.
    pub scripts: Vec<String>,
    /// `valid_exit_codes`: the exit codes a user check may end with (default `[0]`).
    pub valid_exit_codes: Vec<i32>,
    /// `ssh_timeout`: how long to wait for the test VM's SSH (default 10 minutes).
    pub ssh_timeout: Duration,
    /// `allow_degraded`: a `degraded` system (some unit failed) passes, its failed units
    /// listed. Default false.
    pub allow_degraded: bool,
    /// `skip_checks`: built-in checks not to run.
    pub skip_checks: Vec<BuiltinCheck>,
}

impl ImageTestConfig {
    /// The user checks, inline commands first, then scripts.
    pub fn user_checks(&self) -> Vec<UserCheck> {
        self.inline
            .iter()
            .cloned()
            .map(UserCheck::Command)
            .chain(self.scripts.iter().cloned().map(UserCheck::Script))
            .collect()
    }

    /// The built-in checks that run.
    pub fn builtin_checks(&self) -> Vec<BuiltinCheck> {
        BuiltinCheck::ALL
            .into_iter()
            .filter(|c| !self.skip_checks.contains(c))
            .collect()
    }
}

/// Decodes `kiln-test`'s options (`type`, `name`, `keep_input_artifact`, `only` and `except`
/// were consumed by the caller).
pub(crate) fn decode(f: &mut Fields<'_, '_>) -> Option<ImageTestConfig> {
    let before = error_count(f);
    let inline = f.string_list("inline").unwrap_or_default();
    let mut script_items: Vec<Item> = list_items(f, "script").unwrap_or_default();
    script_items.extend(list_items(f, "scripts").unwrap_or_default());
    let scripts = script_items
        .iter()
        .filter(|i| !i.value.is_empty())
        .filter_map(|i| existing_local_path(f, i, "script file", false))
        .collect();
    let valid_exit_codes = decode_exit_codes(f);
    let ssh_timeout = f
        .duration("ssh_timeout")
        .unwrap_or(DEFAULT_TEST_SSH_TIMEOUT);
    let allow_degraded = f.bool("allow_degraded").unwrap_or(false);
    let mut skip_checks = Vec::new();
    for item in list_items(f, "skip_checks").unwrap_or_default() {
        match BuiltinCheck::from_name(&item.value) {
            Some(check) if !skip_checks.contains(&check) => skip_checks.push(check),
            Some(_) => {}
            None => {
                let names: Vec<&str> = BuiltinCheck::ALL.iter().map(|c| c.name()).collect();
                report(
                    f,
                    item.pos,
                    &item.path,
                    format!(
                        "unknown check \"{}\"; the built-in checks are: {}",
                        item.value,
                        names.join(", ")
                    ),
                );
            }
        }
    }
    (error_count(f) == before).then_some(ImageTestConfig {
        inline,
        scripts,
        valid_exit_codes,
        ssh_timeout,
        allow_degraded,
        skip_checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_check_round_trips_its_name() {
        for check in BuiltinCheck::ALL {
            assert_eq!(BuiltinCheck::from_name(check.name()), Some(check));
        }
        assert_eq!(BuiltinCheck::from_name("hostkeys"), None);
    }

    #[test]
    fn skipped_checks_do_not_run_and_user_checks_keep_their_order() {
        let config = ImageTestConfig {
            inline: vec!["true".into()],
            scripts: vec!["/s.sh".into()],
            valid_exit_codes: vec![0],
            ssh_timeout: DEFAULT_TEST_SSH_TIMEOUT,
            allow_degraded: false,
            skip_checks: vec![BuiltinCheck::HostKeys],
        };
        assert!(!config.builtin_checks().contains(&BuiltinCheck::HostKeys));
        assert_eq!(config.builtin_checks().len(), 4);
        assert_eq!(
            config.user_checks(),
            vec![
                UserCheck::Command("true".into()),
                UserCheck::Script("/s.sh".into())
            ]
        );
    }
}
