//! Is KVM usable, and with which CPU model? The device node existing is not enough: it must
//! open read-write and answer the API version ioctl, and then a VM must run with it
//! ([`super::kvm_probe`]: nested KVM can abort qemu or pause the guest). A VM that fails
//! under KVM all the same is detected at run time ([`super::vm`]) and restarted with TCG when
//! the recipe says `auto`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::cmdline::Accel;
use super::kvm_probe::{KvmHost, ModelVerdict};
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
    /// The device answers, but no VM runs with KVM here (nested virtualisation that fails).
    #[error("{device} is present but unusable here: {tried}")]
    Unusable {
        /// The device path.
        device: String,
        /// What happened with each CPU model tried.
        tried: String,
    },
    /// KVM failed a VM the probe had let through.
    #[error("KVM failed the VM: {0}")]
    FailedVm(String),
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

/// The accelerator a VM starts with, the CPU model it needs instead of the recipe's, and why
/// it is not KVM (or not KVM with the recipe's model) when `auto` stepped down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// What the VM starts with.
    pub accel: Accel,
    /// The CPU model to start with instead of the recipe's (`cpu_model` or a `-cpu` in
    /// `qemuargs`) or kiln's default: a plainer model KVM runs here, or `max` for `host`
    /// under TCG, which cannot run `host`. `None` keeps the recipe's.
    pub cpu_model: Option<String>,
    /// The model KVM runs with, when the VM uses KVM (to remember a later failure).
    pub kvm_model: Option<String>,
    /// Set when `auto` chose TCG: why KVM is not used.
    pub fell_back: Option<KvmUnavailable>,
    /// CPU models KVM failed with before the one used: (model, what happened).
    pub failed_models: Vec<(String, String)>,
}

impl AccelChoice {
    /// TCG, with the model TCG can run in place of `requested`.
    pub fn tcg(requested: Option<&str>, fell_back: Option<KvmUnavailable>) -> Self {
        Self {
            accel: Accel::Tcg,
            cpu_model: tcg_model(requested),
            kvm_model: None,
            fell_back,
            failed_models: Vec::new(),
        }
    }

    /// The one line a build logs about this choice.
    pub fn describe(&self) -> String {
        match (self.accel, &self.fell_back) {
            (Accel::Tcg, Some(why)) => format!("KVM unavailable ({why}); using TCG"),
            (Accel::Tcg, None) => "using TCG".into(),
            (Accel::Kvm, _) if self.failed_models.is_empty() => "using KVM".into(),
            (Accel::Kvm, _) => format!(
                "using KVM with CPU model {} ({})",
                self.kvm_model.as_deref().unwrap_or("?"),
                tried(&self.failed_models)
            ),
        }
    }
}

/// Whether `model` means "the best the host has" (`host`, `max`, with or without flags),
/// which may step down to a plainer model.
fn is_best_available(model: &str) -> bool {
    let name = model.split(',').next().unwrap_or("");
    name == "host" || name == "max"
}

/// The plain model tried under KVM when the best one fails: qemu's default, which TCG uses
/// too.
pub const PLAIN_MODEL: &str = "qemu64";

/// The CPU models worth trying under KVM, best first, for a recipe asking for `requested`
/// (`None`: kiln's default, `host`). A specific model is kept: the guest may need it.
pub fn kvm_models(requested: Option<&str>) -> Vec<String> {
    match requested {
        None => vec!["host".into(), PLAIN_MODEL.into()],
        Some(model) if is_best_available(model) => vec![model.into(), PLAIN_MODEL.into()],
        Some(model) => vec![model.into()],
    }
}

/// The model TCG runs in place of `requested` when it cannot run it: `host` needs KVM, so
/// it becomes `max` (with the same flags).
pub fn tcg_model(requested: Option<&str>) -> Option<String> {
    let model = requested?;
    let (name, flags) = model.split_once(',').unwrap_or((model, ""));
    (name == "host").then(|| {
        if flags.is_empty() {
            "max".to_string()
        } else {
            format!("max,{flags}")
        }
    })
}

/// The machine type the probe starts: the recipe's when it is a PC (`pc…`, `q35…`), else
/// `pc` (the canary needs an ISA bus for its debug ports).
pub fn probe_machine(machine_type: &str) -> &str {
    if machine_type.starts_with("pc") || machine_type.starts_with("q35") {
        machine_type
    } else {
        "pc"
    }
}

fn tried(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(model, why)| format!("-cpu {model}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The best CPU model KVM runs a VM with on `host` for a recipe asking for `requested`
/// (see [`kvm_models`]), or what happened with each model tried. The device is not checked
/// here ([`choose`] does that first).
pub async fn kvm_with_best_model(
    host: &KvmHost,
    machine_type: &str,
    requested: Option<&str>,
) -> Result<AccelChoice, Vec<(String, String)>> {
    let machine = probe_machine(machine_type);
    let mut failed = Vec::new();
    for (i, model) in kvm_models(requested).into_iter().enumerate() {
        match host.verdict(machine, &model).await {
            ModelVerdict::Runs => {
                return Ok(AccelChoice {
                    accel: Accel::Kvm,
                    cpu_model: (i > 0).then(|| model.clone()),
                    kvm_model: Some(model),
                    fell_back: None,
                    failed_models: failed,
                });
            }
            ModelVerdict::Fails(why) => failed.push((model, why)),
        }
    }
    Err(failed)
}

/// Chooses the accelerator for `wanted` on `host` for a VM of `machine_type` whose recipe
/// asks for CPU `requested`: `tcg` is TCG; `kvm` is KVM (with the best model that runs) or
/// the reason it cannot be; `auto` is KVM when a VM runs with it, else TCG.
pub async fn choose(
    wanted: Accelerator,
    host: &KvmHost,
    machine_type: &str,
    requested: Option<&str>,
) -> Result<AccelChoice, KvmUnavailable> {
    if wanted == Accelerator::Tcg {
        return Ok(AccelChoice::tcg(requested, None));
    }
    let unusable = match probe_kvm_device(&host.device) {
        Err(why) => why,
        Ok(()) => match kvm_with_best_model(host, machine_type, requested).await {
            Ok(choice) => return Ok(choice),
            Err(failed) => KvmUnavailable::Unusable {
                device: host.device.display().to_string(),
                tried: tried(&failed),
            },
        },
    };
    match wanted {
        Accelerator::Auto => Ok(AccelChoice::tcg(requested, Some(unusable))),
        _ => Err(unusable),
    }
}

/// Whether a VM that hit a KVM failure while running with `current` may be restarted with
/// TCG: only when the recipe said `auto` and the VM ran with KVM.
pub fn may_fall_back(wanted: Accelerator, current: Accel) -> bool {
    wanted == Accelerator::Auto && current == Accel::Kvm
}

/// The choice after KVM failed a VM that the probe let through (qemu exited while starting
/// with KVM's words, or paused on an internal error): TCG for this VM, and the model
/// remembered as failing so later builds of this boot skip it.
pub async fn after_runtime_failure(
    host: &KvmHost,
    machine_type: &str,
    requested: Option<&str>,
    failed: &AccelChoice,
    why: &str,
) -> AccelChoice {
    if let Some(model) = &failed.kvm_model {
        host.remember_failure(probe_machine(machine_type), model, why)
            .await;
    }
    AccelChoice::tcg(requested, Some(KvmUnavailable::FailedVm(why.to_string())))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn missing_and_non_kvm_devices_are_explained() {
        let missing = probe_kvm_device(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(missing.to_string().contains("modprobe"), "{missing}");
        let not_kvm = probe_kvm_device(Path::new("/dev/null")).unwrap_err();
        assert_eq!(not_kvm, KvmUnavailable::Broken("/dev/null".into()));
    }

    fn host(device: &str) -> KvmHost {
        KvmHost {
            device: PathBuf::from(device),
            // Never started: the device check fails first.
            qemu: PathBuf::from("/nonexistent/qemu"),
            cache_file: None,
        }
    }

    #[tokio::test]
    async fn tcg_is_never_probed_kvm_is_required_and_auto_falls_back() {
        let missing = host("/nonexistent/kvm");
        let tcg = choose(Accelerator::Tcg, &missing, "pc", None)
            .await
            .unwrap();
        assert_eq!((tcg.accel, tcg.fell_back), (Accel::Tcg, None));
        assert!(matches!(
            choose(Accelerator::Kvm, &missing, "pc", None).await,
            Err(KvmUnavailable::Missing(_))
        ));
        let auto = choose(Accelerator::Auto, &missing, "pc", None)
            .await
            .unwrap();
        assert_eq!(auto.accel, Accel::Tcg);
        assert!(matches!(auto.fell_back, Some(KvmUnavailable::Missing(_))));
        assert!(
            auto.describe().starts_with("KVM unavailable ("),
            "{}",
            auto.describe()
        );
        // /dev/null exists and opens, but is not KVM.
        let auto = choose(Accelerator::Auto, &host("/dev/null"), "pc", None)
            .await
            .unwrap();
        assert!(matches!(auto.fell_back, Some(KvmUnavailable::Broken(_))));
        assert!(may_fall_back(Accelerator::Auto, Accel::Kvm));
        assert!(!may_fall_back(Accelerator::Auto, Accel::Tcg));
        assert!(!may_fall_back(Accelerator::Kvm, Accel::Kvm));
    }

    #[tokio::test]
    async fn tcg_runs_max_where_the_recipe_asks_for_host() {
        let missing = host("/nonexistent/kvm");
        for (requested, expected) in [
            (None, None),
            (Some("host"), Some("max")),
            (Some("host,+x2apic"), Some("max,+x2apic")),
            (Some("max"), None),
            (Some("Skylake-Server"), None),
        ] {
            let choice = choose(Accelerator::Auto, &missing, "pc", requested)
                .await
                .unwrap();
            assert_eq!(choice.cpu_model.as_deref(), expected, "{requested:?}");
        }
    }

    #[test]
    fn only_the_best_available_model_steps_down() {
        assert_eq!(kvm_models(None), ["host", "qemu64"]);
        assert_eq!(
            kvm_models(Some("host,+pdpe1gb")),
            ["host,+pdpe1gb", "qemu64"]
        );
        assert_eq!(kvm_models(Some("max")), ["max", "qemu64"]);
        assert_eq!(kvm_models(Some("EPYC-Rome")), ["EPYC-Rome"]);
        assert_eq!(probe_machine("q35"), "q35");
        assert_eq!(probe_machine("pc-i440fx-7.2"), "pc-i440fx-7.2");
        assert_eq!(probe_machine("microvm"), "pc");
    }
}
