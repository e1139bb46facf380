//! `kiln doctor`: the host check. Every tool the engine calls is located and its version
//! read; KVM is probed; for each problem the exact command that fixes it is printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::qemu::accel::probe_kvm_device;

/// Arguments of `kiln doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, with a limitation.
    Warn,
    /// kiln cannot build until this is fixed.
    Fail,
}

/// One line of the host check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// The command that fixes it, when there is a problem.
    pub fix: Option<String>,
}

/// Finds `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn first_line_of(binary: &Path, arg: &str) -> Option<String> {
    let out = Command::new(binary).arg(arg).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

const QEMU_FIX: &str = "apt-get install -y --allow-downgrades qemu-system-x86 qemu-utils/bookworm qemu-block-extra/bookworm";

fn tool(name: &str, fix: &str) -> Check {
    match find_in_path(name) {
        Some(path) => Check {
            name: name.to_string(),
            status: Status::Ok,
            detail: format!(
                "{} ({})",
                first_line_of(&path, "--version").unwrap_or_else(|| "version unknown".into()),
                path.display()
            ),
            fix: None,
        },
        None => Check {
            name: name.to_string(),
            status: Status::Fail,
            detail: "not found on PATH".into(),
            fix: Some(fix.to_string()),
        },
    }
}

fn free_space(dir: &Path) -> Check {
    let name = format!("free space in {}", dir.display());
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return Check {
            name,
            status: Status::Warn,
            detail: "unusable path".into(),
            fix: None,
        };
    };
    // SAFETY: statvfs fills the zeroed struct we own; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Check {
            name,
            status: Status::Warn,
            detail: format!("cannot tell: {}", std::io::Error::last_os_error()),
            fix: None,
        };
    }
    let bytes = stat.f_bavail as u64 * stat.f_frsize as u64;
    let gib = bytes as f64 / (1u64 << 30) as f64;
    // A 10 GiB image is sparse, but the base image, the work copy and the compacted
    // artifact together take a few GiB.
    let status = if gib < 5.0 { Status::Warn } else { Status::Ok };
    Check {
        name,
        status,
        detail: format!("{gib:.1} GiB available"),
        fix: (status == Status::Warn).then(|| {
            "free at least 5 GiB, or build with output_directory on a larger disk".to_string()
        }),
    }
}

/// Runs every check.
pub fn checks() -> Vec<Check> {
    let mut out = vec![
        tool("qemu-system-x86_64", QEMU_FIX),
        tool("qemu-img", QEMU_FIX),
    ];
    out.push(match probe_kvm_device(Path::new("/dev/kvm")) {
        Ok(()) => Check {
            name: "KVM".into(),
            status: Status::Ok,
            detail: "/dev/kvm answers; if nested KVM fails inside the guest, kiln notices within seconds and falls back to TCG (accelerator \"auto\")".into(),
            fix: None,
        },
        Err(why) => Check {
            name: "KVM".into(),
            status: Status::Warn,
            detail: format!("{why}; builds run with TCG (software emulation), several times slower"),
            fix: None,
        },
    });
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    out.push(free_space(&cwd));
    out.push(keyring());
    out
}

/// Whether a Secret Service answers (profiles and keyring keys need one; CI can do without).
fn keyring() -> Check {
    match crate::secrets::Vault::platform() {
        Ok(_) => Check {
            name: "OS keyring".into(),
            status: Status::Ok,
            detail: "a Secret Service answers on the session bus: profiles and SSH keys can be kept there".into(),
            fix: None,
        },
        Err(why) => Check {
            name: "OS keyring".into(),
            status: Status::Warn,
            detail: format!(
                "{why} — without it, only EXOSCALE_API_KEY/EXOSCALE_API_SECRET and ssh_private_key_file work"
            ),
            fix: Some("apt-get install -y gnome-keyring   # then log in to a desktop session".into()),
        },
    }
}

/// Runs `kiln doctor`; exit 0 when nothing failed, 1 otherwise.
pub fn run(args: &DoctorArgs, out: &mut dyn Write, _err: &mut dyn Write) -> std::io::Result<i32> {
    let checks = checks();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        )?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            writeln!(out, "{mark} {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "     fix: {fix}")?;
            }
        }
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        1
    } else {
        0
    })
}
