//! The host check (`kiln doctor`, the window's Host check place): every tool the engine calls
//! is located and its version read; KVM is probed by starting a VM with it; for each problem
//! the exact command that fixes it is given.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::qemu::accel::{KvmUnavailable, kvm_with_best_model, probe_kvm_device};
use crate::qemu::kvm_probe::{KvmHost, kvm_device};

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

/// The first line `binary ARG` prints (its version, with `--version`).
pub fn first_line_of(binary: &Path, arg: &str) -> Option<String> {
    let out = Command::new(binary)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
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

/// Bytes available to this user on the file system of `dir` (`statvfs`).
pub fn free_bytes(dir: &Path) -> Result<u64, String> {
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| "unusable path".to_string())?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(format!("cannot tell: {}", std::io::Error::last_os_error()));
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn free_space(dir: &Path) -> Check {
    let name = format!("free space in {}", dir.display());
    let bytes = match free_bytes(dir) {
        Ok(bytes) => bytes,
        Err(detail) => {
            return Check {
                name,
                status: Status::Warn,
                detail,
                fix: None,
            };
        }
    };
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

/// Whether the KVM check starts a VM again or may use this boot's remembered verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmProbe {
    /// Start the probe VM now (`kiln doctor`, the window's "Check again").
    Fresh,
    /// Use the verdict remembered for this boot when there is one (the window at start).
    Remembered,
}

/// Runs every check. The KVM check starts qemu with KVM for up to a few seconds per CPU
/// model (see [`crate::qemu::kvm_probe`]); call it off any thread that must stay responsive.
pub fn checks(kvm: KvmProbe) -> Vec<Check> {
    let mut out = vec![
        tool("qemu-system-x86_64", QEMU_FIX),
        tool("qemu-img", QEMU_FIX),
    ];
    out.push(kvm_check(kvm));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    out.push(free_space(&cwd));
    out.push(step_cache());
    out.push(keyring());
    out.extend(super::publishing::checks());
    out
}

/// The step cache (`kiln build --cache`): how many entries, how big, where, and its cap.
pub fn step_cache() -> Check {
    use crate::base::units::format_bytes;
    use crate::build::stepcache::store::{Store, default_cap};
    let name = "step cache".to_string();
    match crate::image::fetch::default_cache_dir() {
        Ok(dir) => {
            let store = Store::in_cache(&dir);
            let count = store.list().len();
            let detail = if count == 0 {
                format!("empty ({})", store.root().display())
            } else {
                format!(
                    "{count} entr{}, {} in {} (cap {})",
                    if count == 1 { "y" } else { "ies" },
                    format_bytes(store.size()),
                    store.root().display(),
                    format_bytes(default_cap(store.root()))
                )
            };
            Check {
                name,
                status: Status::Ok,
                detail,
                fix: None,
            }
        }
        Err(e) => Check {
            name,
            status: Status::Warn,
            detail: e.to_string(),
            fix: None,
        },
    }
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

/// The KVM line: the device, then a VM started with it (the best CPU model first).
fn kvm_check(probe: KvmProbe) -> Check {
    let check = |status, detail: String| Check {
        name: "KVM".into(),
        status,
        detail,
        fix: None,
    };
    let device = kvm_device();
    if let Err(why) = probe_kvm_device(&device) {
        return check(
            Status::Warn,
            format!("{why}; builds run with TCG (software emulation), several times slower"),
        );
    }
    let Some(qemu) = find_in_path("qemu-system-x86_64") else {
        return check(
            Status::Warn,
            format!(
                "{} answers, but without qemu-system-x86_64 no VM can be started to see whether KVM runs one",
                device.display()
            ),
        );
    };
    let cache = crate::image::fetch::default_cache_dir().ok();
    let mut host = KvmHost::new(qemu, cache.as_deref());
    host.device = device.clone();
    let verdict = block_on(async {
        if probe == KvmProbe::Fresh {
            host.forget().await;
        }
        kvm_with_best_model(&host, "pc", None).await
    });
    match verdict {
        Some(Ok(choice)) if choice.failed_models.is_empty() => check(
            Status::Ok,
            format!(
                "a VM runs with KVM here (-cpu {}; {} answers)",
                choice.kvm_model.as_deref().unwrap_or("host"),
                device.display()
            ),
        ),
        Some(Ok(choice)) => check(
            Status::Warn,
            format!(
                "KVM runs a VM here only with the plain CPU model {} ({}); builds use KVM with it, and a recipe that asks for a specific cpu_model runs with TCG",
                choice.kvm_model.as_deref().unwrap_or("qemu64"),
                choice
                    .failed_models
                    .iter()
                    .map(|(model, why)| format!("-cpu {model}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        Some(Err(failed)) => {
            let why = KvmUnavailable::Unusable {
                device: device.display().to_string(),
                tried: failed
                    .iter()
                    .map(|(model, why)| format!("-cpu {model}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            check(
                Status::Warn,
                format!("{why}; builds use TCG (software emulation), several times slower"),
            )
        }
        None => check(
            Status::Warn,
            "the KVM probe could not run (no async runtime could be started)".into(),
        ),
    }
}

/// Runs `future` to its end from synchronous code: on the current tokio runtime when this
/// thread belongs to one's blocking pool, else on a small runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> Option<F::Output> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Some(handle.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
            .map(|rt| rt.block_on(future)),
    }
}
