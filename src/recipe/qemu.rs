//! The `qemu` builder's typed configuration, decoded with Packer's defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use super::checksum::{Checksum, HashAlgorithm};
use super::decode::Fields;
use super::json::Value;
use super::secret::Secret;
use super::units;

/// Context fields available in `qemuargs` and `boot_command`; filled in at build time.
pub const QEMU_FIELDS: &[(&str, Option<String>)] = &[
    ("HTTPIP", None),
    ("HTTPPort", None),
    ("HTTPDir", None),
    ("OutputDir", None),
    ("Name", None),
    ("SSHHostPort", None),
];

/// Context fields available in `boot_command`: those of `qemuargs` and kiln's SSH public
/// key (as Packer offers it).
pub const BOOT_COMMAND_FIELDS: &[(&str, Option<String>)] = &[
    ("HTTPIP", None),
    ("HTTPPort", None),
    ("HTTPDir", None),
    ("OutputDir", None),
    ("Name", None),
    ("SSHHostPort", None),
    ("SSHPublicKey", None),
];

/// Context fields available in `http_content` and `cd_content` (a kiln addition: the
/// recipe's own cloud-init data can authorise kiln's ephemeral key).
pub const CONTENT_FIELDS: &[(&str, Option<String>)] = &[
    ("HTTPIP", None),
    ("HTTPPort", None),
    ("HTTPDir", None),
    ("OutputDir", None),
    ("Name", None),
    ("SSHPublicKey", None),
];

/// Which virtualisation accelerator qemu uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// KVM when `/dev/kvm` works, else TCG (kiln's default; Packer picks kvm when present).
    Auto,
    /// Hardware virtualisation; the build fails if KVM does not work.
    Kvm,
    /// Software emulation (also what Packer's `none` means).
    Tcg,
}

/// The image format of the artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// qcow2 (the default).
    Qcow2,
    /// Raw.
    Raw,
}

impl Accelerator {
    /// The name used in recipes.
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Auto => "auto",
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

impl DiskFormat {
    /// The name qemu uses.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// How the builder talks to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Communicator {
    /// SSH (the default).
    Ssh,
    /// No connection: provisioners that need one are refused.
    None,
    /// WinRM (Windows guests): read so that a Windows template gets one clear refusal, not
    /// a cascade of SSH errors; a recipe with it never validates.
    WinRm,
}

/// The SSH settings of the builder.
#[derive(Debug, Clone, PartialEq)]
pub struct SshConfig {
    /// `ssh_username` (required with the SSH communicator).
    pub username: String,
    /// `ssh_password`.
    pub password: Option<Secret>,
    /// `ssh_private_key_file`; when absent kiln makes an ephemeral key.
    pub private_key_file: Option<String>,
    /// `ssh_private_key_keyring` (a kiln addition): the name of an SSH key in the OS keyring
    /// (`kiln keys`), used instead of a key file.
    pub private_key_keyring: Option<String>,
    /// `ssh_port` in the guest (22).
    pub port: u16,
    /// `ssh_timeout` (5m).
    pub timeout: Duration,
    /// `ssh_handshake_attempts` (10).
    pub handshake_attempts: u32,
    /// `ssh_clear_authorized_keys`.
    pub clear_authorized_keys: bool,
    /// `ssh_pty`.
    pub pty: bool,
    /// `ssh_agent_auth`: log in with the keys of the ssh-agent at `SSH_AUTH_SOCK` (no
    /// temporary key; `ssh_private_key_file` and `ssh_password` are then ignored, as in
    /// Packer).
    pub agent_auth: bool,
    /// The one agent key to use (`SHA256:…`), chosen on the build form or with
    /// `kiln build --ssh-key agent:SHA256:…`; not a recipe option. `None`: every key the
    /// agent holds.
    pub agent_key: Option<String>,
    /// `ssh_keep_alive_interval` (5s).
    pub keep_alive_interval: Duration,
    /// `ssh_read_write_timeout` (0 = none).
    pub read_write_timeout: Duration,
    /// `ssh_file_transfer_method` (`scp` or `sftp`).
    pub file_transfer_method: String,
    /// `temporary_key_pair_type` (`ed25519` by default in kiln; Packer uses rsa).
    pub temporary_key_pair_type: String,
    /// `pause_before_connecting`.
    pub pause_before_connecting: Duration,
}

/// Everything the qemu builder needs, with Packer's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuConfig {
    /// The builder's name (`name`, default the type `qemu`).
    pub name: String,
    /// `accelerator`.
    pub accelerator: Accelerator,
    /// `disk_image`: the base is a disk image to boot, not an installer ISO.
    pub disk_image: bool,
    /// `iso_url`/`iso_urls`: where the base comes from, tried in order.
    pub iso_urls: Vec<String>,
    /// `iso_checksum` (or the pre-1.6 keys).
    pub iso_checksum: Checksum,
    /// `output_directory` (`output-<name>`).
    pub output_directory: String,
    /// `vm_name` (`packer-<name>`): the artifact's file name.
    pub vm_name: String,
    /// `format`.
    pub format: DiskFormat,
    /// `disk_size` in bytes; `None` with `disk_image` keeps the base image's size.
    pub disk_size: Option<u64>,
    /// `disk_compression`.
    pub disk_compression: bool,
    /// `skip_compaction`.
    pub skip_compaction: bool,
    /// `skip_resize_disk`.
    pub skip_resize_disk: bool,
    /// `use_backing_file`.
    pub use_backing_file: bool,
    /// `disk_interface` (`virtio`).
    pub disk_interface: String,
    /// `disk_cache` (`writeback`).
    pub disk_cache: String,
    /// `disk_discard` (`ignore`).
    pub disk_discard: String,
    /// `disk_detect_zeroes` (`off`).
    pub disk_detect_zeroes: String,
    /// `net_device` (`virtio-net`).
    pub net_device: String,
    /// `cpus` (1).
    pub cpus: u32,
    /// `sockets`, `cores`, `threads` (0 = let qemu decide).
    pub sockets: u32,
    /// See `sockets`.
    pub cores: u32,
    /// See `sockets`.
    pub threads: u32,
    /// `memory` in MiB (512).
    pub memory: u64,
    /// `headless`.
    pub headless: bool,
    /// `use_default_display`.
    pub use_default_display: bool,
    /// `display`.
    pub display: Option<String>,
    /// `vnc_port_min` (5900).
    pub vnc_port_min: u16,
    /// `vnc_port_max` (6000).
    pub vnc_port_max: u16,
    /// `vnc_bind_address` (127.0.0.1).
    pub vnc_bind_address: String,
    /// `disable_vnc`.
    pub disable_vnc: bool,
    /// `qemuargs`, with `{{ .Field }}` actions left for build time.
    pub qemuargs: Vec<Vec<String>>,
    /// `qemu_binary` (`qemu-system-x86_64`).
    pub qemu_binary: String,
    /// `machine_type` (`pc`).
    pub machine_type: String,
    /// `cpu_model` (`host` with KVM; kiln picks a TCG-safe model otherwise).
    pub cpu_model: Option<String>,
    /// `firmware`: a BIOS/firmware file for `-bios`.
    pub firmware: Option<String>,
    /// `efi_boot`.
    pub efi_boot: bool,
    /// `efi_firmware_code`.
    pub efi_firmware_code: Option<String>,
    /// `efi_firmware_vars`.
    pub efi_firmware_vars: Option<String>,
    /// `efi_drop_efivars`.
    pub efi_drop_efivars: bool,
    /// `boot_wait` (10s).
    pub boot_wait: Duration,
    /// `boot_command`, with `{{ .Field }}` actions left for build time.
    pub boot_command: Vec<String>,
    /// `boot_key_interval`.
    pub boot_key_interval: Option<Duration>,
    /// `http_directory`.
    pub http_directory: Option<String>,
    /// `http_content`: path → content served by the built-in HTTP server.
    pub http_content: BTreeMap<String, String>,
    /// `http_port_min` (8000).
    pub http_port_min: u16,
    /// `http_port_max` (9000).
    pub http_port_max: u16,
    /// `http_bind_address` (127.0.0.1 in kiln; Packer binds 0.0.0.0).
    pub http_bind_address: String,
    /// `cd_files`.
    pub cd_files: Vec<String>,
    /// `cd_content`: path on the CD → content.
    pub cd_content: BTreeMap<String, String>,
    /// `cd_label`.
    pub cd_label: Option<String>,
    /// `floppy_files`: files (and directories, whose files) go to the floppy's root.
    pub floppy_files: Vec<String>,
    /// `floppy_dirs`: directories copied to the floppy with their tree.
    pub floppy_dirs: Vec<String>,
    /// `floppy_content`: path on the floppy → content.
    pub floppy_content: BTreeMap<String, String>,
    /// `floppy_label` (Packer's default `packer`; `cidata` makes the floppy a NoCloud seed).
    pub floppy_label: Option<String>,
    /// `communicator`.
    pub communicator: Communicator,
    /// SSH settings (meaningful with the SSH communicator).
    pub ssh: SshConfig,
    /// `host_port_min` (2222).
    pub host_port_min: u16,
    /// `host_port_max` (4444).
    pub host_port_max: u16,
    /// `shutdown_command`; empty = kiln asks qemu to power off through ACPI.
    pub shutdown_command: Option<String>,
    /// `shutdown_timeout` (5m).
    pub shutdown_timeout: Duration,
}

const ACCELERATORS: &[&str] = &["auto", "kvm", "tcg", "none", "xen", "hax", "hvf", "whpx"];
const DISK_INTERFACES: &[&str] = &["virtio", "virtio-scsi", "ide", "sata", "scsi"];
const DISK_CACHES: &[&str] = &["writeback", "writethrough", "none", "unsafe", "directsync"];
const DISK_DISCARDS: &[&str] = &["ignore", "unmap"];
const DETECT_ZEROES: &[&str] = &["off", "on", "unmap"];
const NET_DEVICES: &[&str] = &[
    "virtio-net",
    "virtio-net-pci",
    "virtio",
    "e1000",
    "rtl8139",
    "ne2k_pci",
    "pcnet",
    "i82551",
    "i82557b",
    "i82559er",
    "i82550",
    "i82562",
    "i82557a",
    "i82557c",
    "i82801",
    "vmxnet3",
    "i82558a",
    "i82558b",
    "i82559a",
    "i82559b",
    "i82559c",
    "usb-net",
];

fn port(f: &mut Fields<'_, '_>, key: &'static str, default: u16) -> u16 {
    let Some(value) = f.uint(key) else {
        return default;
    };
    match u16::try_from(value) {
        Ok(p) if p > 0 => p,
        _ => {
            let member = f.take(key).expect("just read");
            f.error_at(member, format!("{value} is not a TCP port (1–65535)"));
            default
        }
    }
}

/// A port option that Packer renamed; the old name still works, with a warning.
fn renamed_port(f: &mut Fields<'_, '_>, key: &'static str, old: &'static str, default: u16) -> u16 {
    let current = port(f, key, default);
    if !f.has(old) {
        return current;
    }
    let value = port(f, old, default);
    let m = f.take(old).expect("present");
    f.warn_at(m, format!("`{old}` is the old name of `{key}`"));
    if f.has(key) { current } else { value }
}

fn small(f: &mut Fields<'_, '_>, key: &'static str, default: u32) -> u32 {
    let Some(value) = f.uint(key) else {
        return default;
    };
    u32::try_from(value).unwrap_or_else(|_| {
        let member = f.take(key).expect("just read");
        f.error_at(member, format!("{value} is too large"));
        default
    })
}

fn check_range(
    f: &mut Fields<'_, '_>,
    min_key: &'static str,
    max_key: &'static str,
    min: u16,
    max: u16,
) {
    if min > max {
        let member = f.take(max_key).or_else(|| f.take(min_key));
        if let Some(m) = member {
            f.error_at(
                m,
                format!("`{min_key}` ({min}) is greater than `{max_key}` ({max})"),
            );
        }
    }
}

/// The base image checksum; `None` when a problem was reported (the caller then neither
/// warns that the image is unverified nor reports the checksum as missing).
fn checksum(f: &mut Fields<'_, '_>) -> Option<Checksum> {
    let old_type = f.string("iso_checksum_type");
    let old_url = f.string("iso_checksum_url");
    let value = f.string("iso_checksum");
    // Templates that offer both options leave one empty (a variable with an empty default):
    // an empty `iso_checksum_url` is unset, and so is an empty `iso_checksum` beside a URL.
    let old_url_given = old_url.is_some();
    let value_given = value.is_some();
    let old_url = old_url.filter(|u| !u.is_empty());
    let value = value.filter(|v| !v.is_empty() || old_url.is_none());
    // A value that failed to interpolate was reported already.
    let mut failed = ["iso_checksum_type", "iso_checksum_url", "iso_checksum"]
        .iter()
        .zip([old_type.is_none(), !old_url_given, !value_given])
        .any(|(key, missing)| missing && f.has(key));
    for key in ["iso_checksum_type", "iso_checksum_url"] {
        if let Some(m) = f.take(key) {
            f.warn_at(
                m,
                format!(
                    "`{key}` is deprecated (Packer 1.6 removed it; kiln still reads it): \
                     write \"iso_checksum\": \"file:<url>\" or \"<type>:<digest>\" instead"
                ),
            );
        }
    }
    let old_algorithm = match old_type.as_deref() {
        None | Some("") => None,
        Some(t) if t.eq_ignore_ascii_case("none") => return (!failed).then_some(Checksum::None),
        Some(t) => match HashAlgorithm::from_name(t) {
            Some(a) => Some(a),
            None => {
                let m = f.take("iso_checksum_type").expect("just read");
                f.error_at(
                    m,
                    format!("unknown checksum type \"{t}\"; use md5, sha1, sha256, sha512 or none"),
                );
                failed = true;
                None
            }
        },
    };
    let value = match (value, old_url.is_some()) {
        (Some(text), true) => {
            // Pre-1.6 templates gave both; the digest is the more precise of the two.
            let m = f.take("iso_checksum_url").expect("just read");
            f.warn_at(
                m,
                "both `iso_checksum` and `iso_checksum_url` are given: kiln checks the image against the `iso_checksum` digest and does not download the list",
            );
            Some(text)
        }
        (value, _) => value,
    };
    let old_url = if value.is_some() { None } else { old_url };
    let checksum = match (value, old_url) {
        (Some(text), _) => {
            let parsed = match old_algorithm {
                Some(a) if !text.contains(':') => Checksum::digest(&text, Some(a)),
                _ => Checksum::parse(&text),
            };
            match parsed {
                Ok(c) => Some(c),
                Err(why) => {
                    let m = f.take("iso_checksum").expect("just read");
                    f.error_at(m, why);
                    None
                }
            }
        }
        (None, Some(url)) => Some(Checksum::File {
            url,
            algorithm: old_algorithm,
        }),
        (None, None) if failed => None,
        (None, None) => {
            f.error_here(
                "`iso_checksum` is required: give \"sha256:<digest>\", \"file:<url of SHA256SUMS>\", \
                 or \"none\" to skip verification",
            );
            None
        }
    };
    checksum.filter(|_| !failed)
}

/// `memory` in MiB. A size with a unit (`"2G"`, as `disk_size` takes) gets a message that
/// says the number to write instead.
fn memory_mib(f: &mut Fields<'_, '_>) -> Option<u64> {
    let m = f.take("memory")?;
    let with_unit = matches!(&m.value.value, Value::String(s)
        if s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) && !s.contains("{{"));
    if with_unit {
        let text = f.string("memory")?;
        if let Ok(bytes) = units::parse_disk_size(&text)
            && bytes >= 1024 * 1024
        {
            f.error_at(
                m,
                format!(
                    "`memory` is a number of MiB without a unit: write \"{}\" for \"{text}\"",
                    bytes / (1024 * 1024)
                ),
            );
            return None;
        }
    }
    f.uint("memory")
}

/// A list of local paths (`floppy_files`, `floppy_dirs`); a single string is split at
/// commas, as Packer's decoder splits it (`"floppy_files": "a.cfg,b.ps1"`). Paths without
/// patterns must exist (relative ones in the working directory), so that a typo shows now
/// rather than when the installer cannot find its answer file.
fn path_list(f: &mut Fields<'_, '_>, key: &'static str) -> Vec<String> {
    let single = f.is_string(key);
    let mut items = super::shell_local::list_items(f, key).unwrap_or_default();
    if single && items.len() == 1 && items[0].value.contains(',') {
        let whole = items.remove(0);
        items = whole
            .value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| super::shell_local::Item {
                value: p.to_string(),
                pos: whole.pos,
                path: whole.path.clone(),
            })
            .collect();
    }
    items.retain(|i| !i.value.is_empty());
    for item in &items {
        if !item.value.contains(['*', '?', '[']) {
            super::shell_local::existing_local_path(f, item, key, true);
        }
    }
    items.into_iter().map(|i| i.value).collect()
}

/// The WinRM communicator's options.
const WINRM_OPTIONS: [&str; 8] = [
    "winrm_username",
    "winrm_password",
    "winrm_host",
    "winrm_port",
    "winrm_timeout",
    "winrm_use_ssl",
    "winrm_insecure",
    "winrm_use_ntlm",
];

fn refuse_unsupported(f: &mut Fields<'_, '_>, communicator: Communicator) {
    for key in ["vtpm", "tpm_device_type"] {
        f.refuse(key, "no TPM emulation (swtpm) yet");
    }
    f.refuse(
        "net_bridge",
        "bridged networking needs root helpers; kiln uses user-mode networking",
    );
    // `false` is what kiln does anyway (the SSH port is always forwarded on 127.0.0.1).
    if f.has("skip_nat_mapping") && f.bool("skip_nat_mapping") == Some(true) {
        f.error_here("`skip_nat_mapping: true` is not supported by kiln: it always forwards the SSH port on 127.0.0.1; remove the option");
    }
    // kiln never forwards an SSH agent to the guest: either value is what it does.
    f.take("ssh_disable_agent_forwarding");
    f.refuse(
        "vnc_use_password",
        "VNC listens on 127.0.0.1 only; use an SSH tunnel to reach it",
    );
    f.refuse(
        "disk_additional_size",
        "additional disks are not supported yet",
    );
    f.refuse(
        "qemu_img_args",
        "kiln runs qemu-img itself; remove this option",
    );
    f.refuse(
        "use_pflash",
        "pflash firmware is not supported; use `efi_boot`",
    );
    f.refuse(
        "ssh_host",
        "kiln connects through the forwarded port on 127.0.0.1",
    );
    for key in [
        "ssh_bastion_host",
        "ssh_bastion_port",
        "ssh_bastion_username",
        "ssh_bastion_password",
        "ssh_bastion_private_key_file",
        "ssh_bastion_agent_auth",
        "ssh_bastion_interactive",
        "ssh_bastion_certificate_file",
        "ssh_proxy_host",
        "ssh_proxy_port",
        "ssh_proxy_username",
        "ssh_proxy_password",
        "ssh_local_tunnels",
        "ssh_remote_tunnels",
        "ssh_certificate_file",
        "ssh_keypair_name",
        "ssh_ciphers",
        "ssh_key_exchange_algorithms",
        "ssh_interface",
    ] {
        f.refuse(
            key,
            "the guest is reached directly on 127.0.0.1; remove this option",
        );
    }
    // With the WinRM communicator they were part of its refusal already.
    for key in WINRM_OPTIONS
        .iter()
        .filter(|_| communicator != Communicator::WinRm)
    {
        f.refuse(
            key,
            "kiln builds Linux images over SSH; WinRM is not available",
        );
    }
    f.ignore(
        "qmp_enable",
        "kiln always talks to qemu over a private QMP socket",
    );
    f.ignore(
        "qmp_socket",
        "kiln always talks to qemu over a private QMP socket",
    );
    f.ignore("iso_skip_cache", "kiln caches base images by checksum");
    f.ignore(
        "iso_target_path",
        "kiln caches base images by checksum under ~/.cache/kiln",
    );
    f.ignore(
        "iso_target_extension",
        "kiln caches base images by checksum under ~/.cache/kiln",
    );
    f.ignore(
        "boot_keygroup_interval",
        "kiln types boot commands over QMP",
    );
    f.ignore(
        "temporary_key_pair_bits",
        "kiln's temporary keys are Ed25519",
    );
}

impl QemuConfig {
    /// Decodes a `qemu` builder object; problems go to `f`'s diagnostics.
    pub(crate) fn decode(name: &str, f: &mut Fields<'_, '_>) -> QemuConfig {
        f.take("name");
        let accelerator = match f.one_of("accelerator", ACCELERATORS).as_deref() {
            None | Some("auto") => Accelerator::Auto,
            Some("kvm") => Accelerator::Kvm,
            Some("tcg") | Some("none") => Accelerator::Tcg,
            Some(other) => {
                let m = f.take("accelerator").expect("just read");
                f.error_at(m, format!("accelerator \"{other}\" is not available on Linux hosts; use \"kvm\", \"tcg\" or \"auto\""));
                Accelerator::Auto
            }
        };
        let disk_image = f.bool("disk_image").unwrap_or(false);
        let iso_url = f.string("iso_url");
        let iso_urls = f.string_list("iso_urls");
        let iso_urls = match (iso_url, iso_urls) {
            (Some(_), Some(_)) => {
                let m = f.take("iso_urls").expect("just read");
                f.error_at(m, "give either `iso_url` or `iso_urls`, not both");
                Vec::new()
            }
            (Some(url), None) => vec![url],
            (None, Some(urls)) if !urls.is_empty() => urls,
            (None, Some(_)) => {
                let m = f.take("iso_urls").expect("just read");
                f.error_at(m, "`iso_urls` is empty: list at least one URL");
                Vec::new()
            }
            // A value that failed to interpolate was reported already.
            (None, None) if f.has("iso_url") || f.has("iso_urls") => Vec::new(),
            (None, None) => {
                f.error_here(
                    "`iso_url` is required: the URL or path of the base image (with `disk_image`: true for a cloud qcow2)",
                );
                Vec::new()
            }
        };
        let iso_checksum = checksum(f);
        if iso_checksum == Some(Checksum::None)
            && let Some(m) = f
                .take("iso_checksum")
                .or_else(|| f.take("iso_checksum_type"))
        {
            f.warn_at(
                m,
                "the base image will not be verified: give its digest (\"sha256:…\") or \"file:<url of SHA256SUMS>\"",
            );
        }
        let iso_checksum = iso_checksum.unwrap_or(Checksum::None);
        let format = match f.one_of("format", &["qcow2", "raw"]).as_deref() {
            Some("raw") => DiskFormat::Raw,
            _ => DiskFormat::Qcow2,
        };
        let disk_size = match f.take("disk_size") {
            None if disk_image => None,
            None => Some(40960 * 1024 * 1024),
            Some(m) => match f.string("disk_size") {
                // A value that failed to interpolate was reported already.
                None => None,
                Some(text) => match units::parse_disk_size(&text) {
                    Ok(bytes) => Some(bytes),
                    Err(why) => {
                        f.error_at(m, why);
                        None
                    }
                },
            },
        };
        let use_backing_file = f.bool("use_backing_file").unwrap_or(false);
        if use_backing_file && !(disk_image && format == DiskFormat::Qcow2) {
            let m = f.take("use_backing_file").expect("just read");
            f.error_at(
                m,
                "`use_backing_file` needs `disk_image`: true and `format`: \"qcow2\"",
            );
        }
        let communicator = match f
            .one_of("communicator", &["ssh", "none", "winrm"])
            .as_deref()
        {
            Some("none") => Communicator::None,
            Some("winrm") => {
                let m = f.take("communicator").expect("just read");
                f.error_at(
                    m,
                    "kiln reaches guests over SSH and does not build Windows images over WinRM (yet): build this one with Packer, or choose another build with -only; its WinRM options and Windows provisioners are not checked",
                );
                // The WinRM settings belong to this refusal: nothing more to say about them.
                for key in WINRM_OPTIONS {
                    f.take(key);
                }
                Communicator::WinRm
            }
            _ => Communicator::Ssh,
        };
        let ssh_timeout = match (f.duration("ssh_timeout"), f.duration("ssh_wait_timeout")) {
            (Some(t), _) => t,
            (None, Some(t)) => {
                let m = f.take("ssh_wait_timeout").expect("just read");
                f.warn_at(m, "`ssh_wait_timeout` is the old name of `ssh_timeout`");
                t
            }
            (None, None) => Duration::from_secs(300),
        };
        let username = f.string("ssh_username").unwrap_or_default();
        if communicator == Communicator::Ssh && username.is_empty() && !f.has("ssh_username") {
            f.error_here("`ssh_username` is required with the SSH communicator (e.g. \"debian\" for Debian cloud images)");
        }
        let ssh = SshConfig {
            username,
            password: f.string("ssh_password").map(Secret::new),
            private_key_file: f.string("ssh_private_key_file").filter(|s| !s.is_empty()),
            private_key_keyring: f
                .string("ssh_private_key_keyring")
                .filter(|s| !s.is_empty()),
            port: port(f, "ssh_port", 22),
            timeout: ssh_timeout,
            handshake_attempts: small(f, "ssh_handshake_attempts", 10),
            clear_authorized_keys: f.bool("ssh_clear_authorized_keys").unwrap_or(false),
            pty: f.bool("ssh_pty").unwrap_or(false),
            agent_auth: f.bool("ssh_agent_auth").unwrap_or(false),
            agent_key: None,
            keep_alive_interval: f
                .duration("ssh_keep_alive_interval")
                .unwrap_or(Duration::from_secs(5)),
            read_write_timeout: f
                .duration("ssh_read_write_timeout")
                .unwrap_or(Duration::ZERO),
            file_transfer_method: f
                .one_of("ssh_file_transfer_method", &["scp", "sftp"])
                .unwrap_or_else(|| "sftp".into()),
            temporary_key_pair_type: f
                .one_of("temporary_key_pair_type", &["ed25519", "rsa", "ecdsa"])
                .unwrap_or_else(|| "ed25519".into()),
            pause_before_connecting: f
                .duration("pause_before_connecting")
                .unwrap_or(Duration::ZERO),
        };
        if ssh.private_key_file.is_some()
            && ssh.private_key_keyring.is_some()
            && let Some(m) = f.take("ssh_private_key_keyring")
        {
            f.error_at(
                m,
                "`ssh_private_key_keyring` and `ssh_private_key_file` both name a key: keep one",
            );
        }
        let host_port_min = renamed_port(f, "host_port_min", "ssh_host_port_min", 2222);
        let host_port_max = renamed_port(f, "host_port_max", "ssh_host_port_max", 4444);
        check_range(
            f,
            "host_port_min",
            "host_port_max",
            host_port_min,
            host_port_max,
        );
        let vnc_port_min = port(f, "vnc_port_min", 5900);
        let vnc_port_max = port(f, "vnc_port_max", 6000);
        check_range(
            f,
            "vnc_port_min",
            "vnc_port_max",
            vnc_port_min,
            vnc_port_max,
        );
        let http_port_min = port(f, "http_port_min", 8000);
        let http_port_max = port(f, "http_port_max", 9000);
        check_range(
            f,
            "http_port_min",
            "http_port_max",
            http_port_min,
            http_port_max,
        );
        let memory = memory_mib(f).unwrap_or(512);
        let cpus = small(f, "cpus", 1);
        let config = QemuConfig {
            name: name.to_string(),
            accelerator,
            disk_image,
            iso_urls,
            iso_checksum,
            output_directory: f
                .string("output_directory")
                .unwrap_or_else(|| format!("output-{name}")),
            vm_name: f
                .string("vm_name")
                .unwrap_or_else(|| format!("packer-{name}")),
            format,
            disk_size,
            disk_compression: f.bool("disk_compression").unwrap_or(false),
            skip_compaction: f.bool("skip_compaction").unwrap_or(false),
            skip_resize_disk: f.bool("skip_resize_disk").unwrap_or(false),
            use_backing_file,
            disk_interface: f
                .one_of("disk_interface", DISK_INTERFACES)
                .unwrap_or_else(|| "virtio".into()),
            disk_cache: f
                .one_of("disk_cache", DISK_CACHES)
                .unwrap_or_else(|| "writeback".into()),
            disk_discard: f
                .one_of("disk_discard", DISK_DISCARDS)
                .unwrap_or_else(|| "ignore".into()),
            disk_detect_zeroes: f
                .one_of("disk_detect_zeroes", DETECT_ZEROES)
                .unwrap_or_else(|| "off".into()),
            net_device: f
                .one_of("net_device", NET_DEVICES)
                .unwrap_or_else(|| "virtio-net".into()),
            cpus,
            sockets: small(f, "sockets", 0),
            cores: small(f, "cores", 0),
            threads: small(f, "threads", 0),
            memory,
            headless: f.bool("headless").unwrap_or(false),
            use_default_display: f.bool("use_default_display").unwrap_or(false),
            display: f.string("display").filter(|s| !s.is_empty()),
            vnc_port_min,
            vnc_port_max,
            vnc_bind_address: f
                .string("vnc_bind_address")
                .unwrap_or_else(|| "127.0.0.1".into()),
            disable_vnc: f.bool("disable_vnc").unwrap_or(false),
            qemuargs: f
                .string_lists_with("qemuargs", QEMU_FIELDS)
                .unwrap_or_default(),
            qemu_binary: f
                .string("qemu_binary")
                .unwrap_or_else(|| "qemu-system-x86_64".into()),
            machine_type: f.string("machine_type").unwrap_or_else(|| "pc".into()),
            cpu_model: f.string("cpu_model").filter(|s| !s.is_empty()),
            firmware: f.string("firmware").filter(|s| !s.is_empty()),
            efi_boot: f.bool("efi_boot").unwrap_or(false),
            efi_firmware_code: f.string("efi_firmware_code").filter(|s| !s.is_empty()),
            efi_firmware_vars: f.string("efi_firmware_vars").filter(|s| !s.is_empty()),
            efi_drop_efivars: f.bool("efi_drop_efivars").unwrap_or(false),
            boot_wait: f.duration("boot_wait").unwrap_or(Duration::from_secs(10)),
            boot_command: f
                .string_list_with("boot_command", BOOT_COMMAND_FIELDS)
                .unwrap_or_default(),
            boot_key_interval: f.duration("boot_key_interval"),
            http_directory: f.string("http_directory").filter(|s| !s.is_empty()),
            http_content: f
                .string_map_with("http_content", CONTENT_FIELDS)
                .unwrap_or_default(),
            http_port_min,
            http_port_max,
            http_bind_address: f
                .string("http_bind_address")
                .unwrap_or_else(|| "127.0.0.1".into()),
            cd_files: f.string_list("cd_files").unwrap_or_default(),
            cd_content: f
                .string_map_with("cd_content", CONTENT_FIELDS)
                .unwrap_or_default(),
            cd_label: f.string("cd_label").filter(|s| !s.is_empty()),
            floppy_files: path_list(f, "floppy_files"),
            floppy_dirs: path_list(f, "floppy_dirs"),
            floppy_content: f
                .string_map_with("floppy_content", CONTENT_FIELDS)
                .unwrap_or_default(),
            floppy_label: f.string("floppy_label").filter(|s| !s.is_empty()),
            communicator,
            ssh,
            host_port_min,
            host_port_max,
            shutdown_command: f.string("shutdown_command").filter(|s| !s.is_empty()),
            shutdown_timeout: f
                .duration("shutdown_timeout")
                .unwrap_or(Duration::from_secs(300)),
        };
        check_boot_command(f, &config.boot_command);
        if config.http_directory.is_some() && !config.http_content.is_empty() {
            let m = f.take("http_content").expect("present");
            f.error_at(
                m,
                "give either `http_directory` or `http_content`, not both",
            );
        }
        if memory < 64
            && let Some(m) = f.take("memory")
        {
            f.error_at(
                m,
                format!(
                    "{memory} MiB is too little memory for a guest; memory is in MiB (e.g. 1024)"
                ),
            );
        }
        if cpus == 0
            && let Some(m) = f.take("cpus")
        {
            f.error_at(m, "`cpus` must be at least 1");
        }
        if config.efi_boot && config.firmware.is_some() {
            let m = f.take("firmware").expect("present");
            f.error_at(m, "give either `firmware` or `efi_boot`, not both");
        }
        refuse_unsupported(f, communicator);
        config
    }
}

/// Parses every `boot_command` string (with the build-time fields masked, so columns stay
/// those of the recipe) and reports the first problem of each at its place.
fn check_boot_command(f: &mut Fields, commands: &[String]) {
    let Some(m) = f.take("boot_command") else {
        return;
    };
    let path = f.key_path("boot_command");
    let nodes: Vec<&super::json::Node> = match &m.value.value {
        Value::Array(items) => items.iter().collect(),
        _ => vec![&m.value],
    };
    for (i, (command, node)) in commands.iter().zip(nodes).enumerate() {
        let masked = mask_actions(command);
        if let Err(e) = crate::qemu::bootcmd::parse(&masked) {
            let offset = command
                .char_indices()
                .nth(e.column - 1)
                .map_or(command.len(), |(o, _)| o);
            let pos = super::decode::pos_in_string(node.pos, command, offset);
            f.error_at_pos(pos, &format!("{path}[{i}]"), e.message);
        }
    }
}

/// `text` with every `{{ … }}` action replaced by as many `x` as it has characters.
fn mask_actions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find("}}").map_or(after.len(), |e| e + 2);
        out.extend(std::iter::repeat_n('x', after[..end].chars().count()));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
