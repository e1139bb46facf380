//! What the built-in checks run in the test VM and how their output is judged. Pure
//! functions: the commands are strings, the verdicts come from the commands' output.

use crate::recipe::image_test::BuiltinCheck;

/// Where the seed's `bootcmd` records what the image held before this boot's cloud-init
/// added its own key and host key.
const RECORD_DIR: &str = "/run/kiln-test";

/// cloud-config appended to the test seed: `bootcmd` runs as root early in cloud-init's init
/// stage, before the `ssh` module deletes the host keys and authorises this boot's key, so
/// it sees exactly what the image shipped with.
pub fn record_bootcmd() -> String {
    format!(
        "bootcmd:\n  - [sh, -c, \"mkdir -p {RECORD_DIR} && \
         (cat /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys 2>/dev/null || true) > {RECORD_DIR}/authorized_keys && \
         (ls /etc/ssh/ssh_host_*key* 2>/dev/null || true) > {RECORD_DIR}/host_keys\"]\n"
    )
}

/// The guest command of a built-in check that runs in the VM (`Disk` runs on the host).
pub fn command(check: BuiltinCheck) -> Option<String> {
    match check {
        BuiltinCheck::CloudInit => Some("cloud-init status --wait --long".into()),
        // `--wait` returns once the boot is over; a unit that never settles would hold it,
        // so it is bounded.
        BuiltinCheck::SystemRunning => Some(
            "timeout 300 systemctl is-system-running --wait; \
             systemctl --failed --no-legend --plain --no-pager"
                .into(),
        ),
        BuiltinCheck::BuildKeys => Some(format!("cat {RECORD_DIR}/authorized_keys")),
        BuiltinCheck::HostKeys => Some(format!("cat {RECORD_DIR}/host_keys")),
        BuiltinCheck::Disk => None,
    }
}

/// A check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the check passed.
    pub passed: bool,
    /// One line saying what was found (and, on failure, what to do).
    pub detail: String,
}

impl Verdict {
    fn pass(detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            detail: detail.into(),
        }
    }

    fn fail(detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            detail: detail.into(),
        }
    }
}

/// Judges a guest check from its exit code (None: no exit status) and output.
pub fn judge(
    check: BuiltinCheck,
    code: Option<u32>,
    stdout: &str,
    allow_degraded: bool,
) -> Verdict {
    match check {
        BuiltinCheck::CloudInit => cloud_init(stdout),
        BuiltinCheck::SystemRunning => system_running(stdout, allow_degraded),
        BuiltinCheck::BuildKeys => recorded(code, stdout, "authorized_keys", keys_found),
        BuiltinCheck::HostKeys => recorded(code, stdout, "host keys", host_keys_found),
        BuiltinCheck::Disk => Verdict::fail("the disk check runs on the host"),
    }
}

fn cloud_init(stdout: &str) -> Verdict {
    let status = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("status:"))
        .map(str::trim);
    match status {
        Some("done") => Verdict::pass("cloud-init finished: status done"),
        Some(other) => {
            let detail = stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("detail:"))
                .map(|d| format!(" ({})", d.trim()))
                .unwrap_or_default();
            Verdict::fail(format!(
                "cloud-init status is \"{other}\"{detail}: see /var/log/cloud-init.log in the image (the serial console shows the boot)"
            ))
        }
        None => Verdict::fail(
            "`cloud-init status` printed no status: is cloud-init installed in the image?",
        ),
    }
}

fn system_running(stdout: &str, allow_degraded: bool) -> Verdict {
    let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    let state = lines.next().unwrap_or("");
    let failed: Vec<&str> = lines
        .filter_map(|l| l.split_whitespace().next())
        .filter(|unit| unit.contains('.'))
        .collect();
    match state {
        "running" => Verdict::pass("systemd: running"),
        "degraded" if allow_degraded => Verdict::pass(format!(
            "systemd: degraded (allowed); failed units: {}",
            failed.join(", ")
        )),
        "degraded" => Verdict::fail(format!(
            "systemd: degraded; failed units: {} — fix them (`journalctl -u UNIT` in the image) or set \"allow_degraded\": true",
            if failed.is_empty() {
                "(none listed)".to_string()
            } else {
                failed.join(", ")
            }
        )),
        "" => {
            Verdict::fail("`systemctl is-system-running` printed nothing (timed out after 300 s?)")
        }
        other => Verdict::fail(format!(
            "systemd: {other} (not running after boot; `systemctl list-jobs` in the image shows what waits)"
        )),
    }
}

/// The check of a file the seed's bootcmd wrote: missing means the record was not made.
fn recorded(code: Option<u32>, stdout: &str, what: &str, found: fn(&str) -> Verdict) -> Verdict {
    if code != Some(0) {
        return Verdict::fail(format!(
            "could not tell which {what} the image shipped: the seed's bootcmd did not record them (is cloud-init's bootcmd module enabled in the image?)"
        ));
    }
    found(stdout)
}

fn keys_found(stdout: &str) -> Verdict {
    let keys: Vec<String> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(describe_key)
        .collect();
    if keys.is_empty() {
        Verdict::pass("no authorized_keys shipped in the image")
    } else {
        Verdict::fail(format!(
            "the image ships {} authorized key(s): {} — remove them before shutdown (kiln removes its own build key; a recipe with its own seed can set \"ssh_clear_authorized_keys\": true)",
            keys.len(),
            keys.join("; ")
        ))
    }
}

/// `type … comment` of an `authorized_keys` line, without the key material.
fn describe_key(line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-"))
    {
        Some(i) => {
            let comment = fields.get(i + 2..).map(|c| c.join(" ")).unwrap_or_default();
            if comment.is_empty() {
                fields[i].to_string()
            } else {
                format!("{} {comment}", fields[i])
            }
        }
        None => "an unreadable line".into(),
    }
}

fn host_keys_found(stdout: &str) -> Verdict {
    let files: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if files.is_empty() {
        Verdict::pass("no SSH host keys baked into the image: each VM makes its own")
    } else {
        Verdict::fail(format!(
            "the image ships SSH host keys ({}): every VM from it would share them — remove /etc/ssh/ssh_host_* before shutdown (kiln does when it seeded the build)",
            files.join(", ")
        ))
    }
}

/// Judges a user check from its exit code.
pub fn judge_user(code: Option<u32>, valid: &[i32]) -> Verdict {
    match code {
        Some(code) if valid.iter().any(|v| i64::from(*v) == i64::from(code)) => {
            Verdict::pass(format!("exit {code}"))
        }
        Some(code) => Verdict::fail(format!(
            "exit {code}, expected {}",
            valid
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        )),
        None => Verdict::fail("the connection closed before the command ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_init_passes_only_when_done() {
        assert!(cloud_init("\nstatus: done\nboot_status_code: enabled-by-generator\n").passed);
        let running = cloud_init("status: error\ndetail:\nDataSourceNoCloud\n");
        assert!(!running.passed);
        assert!(running.detail.contains("\"error\""), "{}", running.detail);
        assert!(!cloud_init("bash: cloud-init: command not found").passed);
    }

    #[test]
    fn systemd_degraded_lists_failed_units_and_may_be_allowed() {
        let out =
            "degraded\nfoo.service loaded failed failed Foo\nbar.mount loaded failed failed Bar\n";
        let strict = system_running(out, false);
        assert!(!strict.passed);
        assert!(
            strict.detail.contains("foo.service, bar.mount"),
            "{}",
            strict.detail
        );
        let lenient = system_running(out, true);
        assert!(lenient.passed);
        assert!(lenient.detail.contains("foo.service"));
        assert!(system_running("running\n", false).passed);
        assert!(!system_running("starting\n", true).passed);
        assert!(!system_running("", true).passed);
    }

    #[test]
    fn shipped_keys_fail_and_are_named_without_their_material() {
        let verdict = judge(
            BuiltinCheck::BuildKeys,
            Some(0),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc kiln\n\n# comment\n",
            false,
        );
        assert!(!verdict.passed);
        assert!(
            verdict.detail.contains("ssh-ed25519 kiln"),
            "{}",
            verdict.detail
        );
        assert!(!verdict.detail.contains("AAAA"), "{}", verdict.detail);
        assert!(judge(BuiltinCheck::BuildKeys, Some(0), "\n", false).passed);
        let unrecorded = judge(BuiltinCheck::BuildKeys, Some(1), "", false);
        assert!(!unrecorded.passed);
        assert!(unrecorded.detail.contains("bootcmd"));
    }

    #[test]
    fn baked_host_keys_fail() {
        let verdict = judge(
            BuiltinCheck::HostKeys,
            Some(0),
            "/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/ssh_host_ed25519_key.pub\n",
            false,
        );
        assert!(!verdict.passed);
        assert!(verdict.detail.contains("ssh_host_ed25519_key.pub"));
        assert!(judge(BuiltinCheck::HostKeys, Some(0), "", false).passed);
    }

    #[test]
    fn user_checks_pass_on_a_listed_exit_code() {
        assert!(judge_user(Some(0), &[0]).passed);
        assert!(judge_user(Some(3), &[0, 3]).passed);
        let wrong = judge_user(Some(3), &[0]);
        assert!(!wrong.passed);
        assert_eq!(wrong.detail, "exit 3, expected 0");
        assert!(!judge_user(None, &[0]).passed);
    }

    #[test]
    fn the_record_runs_before_cloud_init_touches_keys() {
        let bootcmd = record_bootcmd();
        assert!(bootcmd.starts_with("bootcmd:\n"));
        assert!(bootcmd.contains("/home/*/.ssh/authorized_keys"));
        assert!(bootcmd.contains("/etc/ssh/ssh_host_*key*"));
        for check in BuiltinCheck::ALL {
            assert_eq!(command(check).is_none(), check == BuiltinCheck::Disk);
        }
    }
}
