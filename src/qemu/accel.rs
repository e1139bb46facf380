//! Is KVM usable? The device node existing is not enough: it must open read-write and answer
//! the API version ioctl. Even then nested KVM can fail once a guest runs ("KVM internal
//! error … emulation failure", qemu pauses), which [`super::process`] detects at run time.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::cmdline::Accel;
use crate::recipe::qemu::Accelerator;

/// `KVM_GET_API_VERSION` (`_IO(0xAE, 0x00)`).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
/// The only KVM API version there has ever been.
const KVM_API_VERSION: libc::c_int = 12;

/// Why KVM cannot be used, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvmUnavailable {
    /// No `/dev/kvm`.
    #[error(
        "{0} does not exist: enable virtualisation (VT-x/AMD-V) in the firmware, or nested virtualisation on the host, and load the kvm module (modprobe kvm_intel or kvm_amd)"
    )]
    Missing(String),
    /// `/dev/kvm` cannot be opened.
    #[error(
        "{path} cannot be opened ({reason}): add your user to the `kvm` group (sudo adduser $USER kvm, then log in again)"
    )]
    NoAccess {
        /// The device path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The device answered wrongly.
    #[error("{0} does not answer like KVM (API version ioctl failed)")]
    Broken(String),
}

/// Checks that `device` (normally `/dev/kvm`) is a usable KVM device.
pub fn probe_kvm_device(device: &Path) -> Result<(), KvmUnavailable> {
    let shown = device.display().to_string();
    if !device.exists() {
        return Err(KvmUnavailable::Missing(shown));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| KvmUnavailable::NoAccess {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int; the fd is
    // valid for the duration of the call.
    let version = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    if version == KVM_API_VERSION {
        Ok(())
    } else {
        Err(KvmUnavailable::Broken(shown))
    }
}

/// The accelerator a VM starts with, and why it is not KVM when `auto` fell back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// What the VM starts with.
    pub accel: Accel,
    /// Set when `auto` chose TCG because KVM is unusable: why (for the log).
    pub fell_back: Option<KvmUnavailable>,
}

/// Chooses the accelerator for `wanted`, probing `device` (normally `/dev/kvm`): `tcg` is
/// TCG; `kvm` is KVM or the reason it cannot be; `auto` is KVM when it works, else TCG.
pub fn choose(wanted: Accelerator, device: &Path) -> Result<AccelChoice, KvmUnavailable> {
    let kvm = || AccelChoice {
        accel: Accel::Kvm,
        fell_back: None,
    };
    match wanted {
        Accelerator::Tcg => Ok(AccelChoice {
            accel: Accel::Tcg,
            fell_back: None,
        }),
        Accelerator::Kvm => probe_kvm_device(device).map(|()| kvm()),
        Accelerator::Auto => Ok(match probe_kvm_device(device) {
            Ok(()) => kvm(),
            Err(why) => AccelChoice {
                accel: Accel::Tcg,
                fell_back: Some(why),
            },
        }),
    }
}

/// Whether a VM that hit a KVM failure while running with `current` may be restarted with
/// TCG: only when the recipe said `auto` and the VM ran with KVM.
pub fn may_fall_back(wanted: Accelerator, current: Accel) -> bool {
    wanted == Accelerator::Auto && current == Accel::Kvm
}

/// Whether a line qemu printed on standard error reports a KVM failure that leaves the
/// guest paused (seen with nested virtualisation).
pub fn is_kvm_failure_line(line: &str) -> bool {
    line.contains("KVM internal error") || line.contains("emulation failure")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_kvm_devices_are_explained() {
        let missing = probe_kvm_device(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(missing.to_string().contains("modprobe"), "{missing}");
        let not_kvm = probe_kvm_device(Path::new("/dev/null")).unwrap_err();
        assert_eq!(not_kvm, KvmUnavailable::Broken("/dev/null".into()));
    }

    #[test]
    fn tcg_is_never_probed_kvm_is_required_and_auto_falls_back() {
        let missing = Path::new("/nonexistent/kvm");
        let tcg = choose(Accelerator::Tcg, missing).unwrap();
        assert_eq!((tcg.accel, tcg.fell_back), (Accel::Tcg, None));
        assert!(matches!(
            choose(Accelerator::Kvm, missing),
            Err(KvmUnavailable::Missing(_))
        ));
        let auto = choose(Accelerator::Auto, missing).unwrap();
        assert_eq!(auto.accel, Accel::Tcg);
        assert!(matches!(auto.fell_back, Some(KvmUnavailable::Missing(_))));
        // /dev/null exists and opens, but is not KVM.
        let auto = choose(Accelerator::Auto, Path::new("/dev/null")).unwrap();
        assert!(matches!(auto.fell_back, Some(KvmUnavailable::Broken(_))));
        assert!(may_fall_back(Accelerator::Auto, Accel::Kvm));
        assert!(!may_fall_back(Accelerator::Auto, Accel::Tcg));
        assert!(!may_fall_back(Accelerator::Kvm, Accel::Kvm));
    }

    #[test]
    fn recognises_the_nested_kvm_failure() {
        assert!(is_kvm_failure_line("KVM internal error. Suberror: 1"));
        assert!(is_kvm_failure_line("emulation failure"));
        assert!(!is_kvm_failure_line(
            "qemu-system-x86_64: warning: host doesn't support requested feature"
        ));
    }
}
