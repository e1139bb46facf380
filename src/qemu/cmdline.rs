//! The qemu command line: Packer's defaults, then `qemuargs` with Packer's override rules,
//! then kiln's own plumbing (QMP socket, serial console).
//!
//! Override rules (as Packer's qemu builder applies them): each `qemuargs` row is a switch
//! and its value (the row's other elements joined without a separator); a switch given in
//! `qemuargs` replaces *all* of kiln's default values for that switch — so one `-drive`
//! entry replaces every default drive, one `-device` every default device (the NIC is
//! added back when no `-device` mentions `net_device`). Unlike Packer, the order is
//! deterministic: default switches first in a fixed order, then new switches in the order
//! the recipe gives them.

use std::path::{Path, PathBuf};

use crate::recipe::interp;
use crate::recipe::qemu::{DiskFormat, QemuConfig};

/// The accelerator actually used for one start of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// The name qemu uses.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Facts known only when the VM starts.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The accelerator for this start.
    pub accel: Accel,
    /// A CPU model that replaces the recipe's (`cpu_model`, or a `-cpu` in `qemuargs`) and
    /// kiln's default for this start: the one the accelerator choice found to work.
    pub cpu_model: Option<String>,
    /// The disk image the build writes (`output_directory/vm_name`).
    pub disk: PathBuf,
    /// The installer ISO, when the base is not a disk image.
    pub iso: Option<PathBuf>,
    /// kiln's cloud-init seed, attached as a read-only virtio disk (no CD-ROM driver
    /// needed in the guest).
    pub seed: Option<PathBuf>,
    /// CD images to attach (`cd_files`/`cd_content`), as IDE CD-ROMs like Packer does
    /// (Debian's cloud kernel has `ata_piix` and `sr_mod`: the guest sees /dev/sr0).
    pub cdroms: Vec<PathBuf>,
    /// The floppy image (`floppy_files`/`floppy_dirs`/`floppy_content`), attached with
    /// `-fda` as Packer does.
    pub floppy: Option<PathBuf>,
    /// The host port forwarded to the guest's SSH port (None without a communicator).
    pub ssh_host_port: Option<u16>,
    /// The VNC display number (port − 5900), None when VNC is disabled.
    pub vnc_display: Option<u16>,
    /// kiln's QMP socket.
    pub qmp_socket: PathBuf,
    /// kiln's serial-console socket (qemu connects to it).
    pub serial_socket: PathBuf,
    /// The built-in HTTP server's address as the guest sees it and its port.
    pub http: Option<(String, u16)>,
    /// The output directory (`{{ .OutputDir }}`).
    pub output_dir: PathBuf,
    /// Where the VM's saved state comes from (`-incoming`), when it resumes from the step
    /// cache instead of booting.
    pub incoming: Option<String>,
    /// The file the recipe's own `-drive` names for the output disk, when the VM writes
    /// another one (`disk`: the step cache's layer): that drive's `file=` becomes `disk`.
    pub recipe_disk: Option<PathBuf>,
}

/// A `qemuargs` value could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("qemuargs[{row}][{col}]: {message}")]
pub struct ArgsError {
    /// Row of `qemuargs`.
    pub row: usize,
    /// Element of that row.
    pub col: usize,
    /// What went wrong.
    pub message: String,
}

/// The switches kiln sets by default, in the order they appear on the command line.
const DEFAULT_ORDER: &[&str] = &[
    "-name", "-machine", "-cpu", "-m", "-smp", "-boot", "-netdev", "-device", "-drive", "-fda",
    "-vnc", "-display", "-bios",
];

fn drive_args(config: &QemuConfig, launch: &Launch, devices: &mut Vec<String>) -> Vec<String> {
    let mut drives = Vec::new();
    let format = match config.format {
        DiskFormat::Qcow2 => "qcow2",
        DiskFormat::Raw => "raw",
    };
    let mut tail = format!(
        "cache={},discard={},format={format}",
        config.disk_cache, config.disk_discard
    );
    if config.disk_detect_zeroes != "off" {
        tail.push_str(&format!(",detect-zeroes={}", config.disk_detect_zeroes));
    }
    let disk = launch.disk.display();
    if config.disk_interface == "virtio-scsi" {
        devices.push("virtio-scsi-pci,id=scsi0".into());
        devices.push("scsi-hd,bus=scsi0.0,drive=drive0".into());
        drives.push(format!("if=none,file={disk},id=drive0,{tail}"));
    } else {
        drives.push(format!("file={disk},if={},{tail}", config.disk_interface));
    }
    if let Some(seed) = &launch.seed {
        drives.push(format!(
            "file={},if=virtio,format=raw,readonly=on",
            seed.display()
        ));
    }
    let cds = launch.iso.iter().chain(launch.cdroms.iter());
    for (i, cd) in cds.enumerate() {
        drives.push(format!(
            "file={},media=cdrom,readonly=on,index={}",
            cd.display(),
            i + 2
        ));
    }
    drives
}

/// kiln's default value(s) for each switch, before `qemuargs`.
fn defaults(config: &QemuConfig, launch: &Launch) -> Vec<(&'static str, Vec<String>)> {
    let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
    out.push(("-name", vec![config.vm_name.clone()]));
    out.push((
        "-machine",
        vec![format!(
            "type={},accel={}",
            config.machine_type,
            launch.accel.name()
        )],
    ));
    let cpu = match (
        launch.cpu_model.as_ref().or(config.cpu_model.as_ref()),
        launch.accel,
    ) {
        (Some(model), _) => model.clone(),
        (None, Accel::Kvm) => "host".into(),
        // qemu's own default model (Packer's too). Under TCG it boots the Debian test guest
        // to its login prompt about a quarter faster than `max`, whose extra features
        // (AVX, 5-level paging, …) are slow to emulate. Guests that need x86-64-v2 or more
        // set `cpu_model`.
        (None, Accel::Tcg) => "qemu64".into(),
    };
    out.push(("-cpu", vec![cpu]));
    out.push(("-m", vec![format!("{}M", config.memory)]));
    if config.cpus > 1 || config.sockets > 0 || config.cores > 0 || config.threads > 0 {
        let mut smp = format!("cpus={}", config.cpus);
        for (name, value) in [
            ("sockets", config.sockets),
            ("cores", config.cores),
            ("threads", config.threads),
        ] {
            if value > 0 {
                smp.push_str(&format!(",{name}={value}"));
            }
        }
        out.push(("-smp", vec![smp]));
    }
    out.push((
        "-boot",
        vec![if config.disk_image {
            "c".into()
        } else {
            "once=d".into()
        }],
    ));
    let netdev = match launch.ssh_host_port {
        Some(port) => format!(
            "user,id=user.0,hostfwd=tcp:127.0.0.1:{port}-:{}",
            config.ssh.port
        ),
        None => "user,id=user.0".into(),
    };
    out.push(("-netdev", vec![netdev]));
    let mut devices = Vec::new();
    let drives = drive_args(config, launch, &mut devices);
    devices.push(format!("{},netdev=user.0", config.net_device));
    out.push(("-device", devices));
    out.push(("-drive", drives));
    if let Some(floppy) = &launch.floppy {
        out.push(("-fda", vec![floppy.display().to_string()]));
    }
    if let Some(display) = launch.vnc_display {
        out.push((
            "-vnc",
            vec![format!("{}:{display}", config.vnc_bind_address)],
        ));
    }
    if !config.headless {
        if let Some(display) = &config.display {
            out.push(("-display", vec![display.clone()]));
        } else if !config.use_default_display {
            out.push(("-display", vec!["gtk".into()]));
        }
    } else if launch.vnc_display.is_none() {
        out.push(("-display", vec!["none".into()]));
    }
    if let Some(firmware) = &config.firmware {
        out.push(("-bios", vec![firmware.clone()]));
    }
    debug_assert!(out.iter().all(|(k, _)| DEFAULT_ORDER.contains(k)));
    out
}

/// Renders `qemuargs` with the launch's context fields.
fn render_qemuargs(config: &QemuConfig, launch: &Launch) -> Result<Vec<Vec<String>>, ArgsError> {
    let fields: Vec<(&str, Option<String>)> = vec![
        (
            "HTTPIP",
            Some(
                launch
                    .http
                    .as_ref()
                    .map(|(ip, _)| ip.clone())
                    .unwrap_or_default(),
            ),
        ),
        (
            "HTTPPort",
            Some(
                launch
                    .http
                    .as_ref()
                    .map(|(_, p)| p.to_string())
                    .unwrap_or_else(|| "0".into()),
            ),
        ),
        (
            "HTTPDir",
            Some(config.http_directory.clone().unwrap_or_default()),
        ),
        ("OutputDir", Some(launch.output_dir.display().to_string())),
        ("Name", Some(config.vm_name.clone())),
        (
            "SSHHostPort",
            Some(launch.ssh_host_port.unwrap_or(0).to_string()),
        ),
    ];
    let mut out = Vec::with_capacity(config.qemuargs.len());
    for (row, args) in config.qemuargs.iter().enumerate() {
        let mut rendered = Vec::with_capacity(args.len());
        for (col, arg) in args.iter().enumerate() {
            let value = interp::render_fields(arg, &fields).map_err(|e| ArgsError {
                row,
                col,
                message: e.to_string(),
            })?;
            rendered.push(value);
        }
        out.push(rendered);
    }
    Ok(out)
}

/// A recipe's `-drive` value for the output disk (`file=` names `disk`) with
/// `discard=unmap,detect-zeroes=unmap` added when it sets neither; `None` for another drive
/// or one that says how to treat discards.
fn with_discard_for_output(drive: &str, disk: &Path) -> Option<String> {
    let options: Vec<(&str, &str)> = drive
        .split(',')
        .map(|o| o.split_once('=').unwrap_or((o, "")))
        .collect();
    let file = options
        .iter()
        .find(|(k, _)| *k == "file")
        .map(|(_, v)| *v)?;
    if !same_path(Path::new(file), disk) {
        return None;
    }
    if options
        .iter()
        .any(|(k, _)| *k == "discard" || *k == "detect-zeroes")
    {
        return None;
    }
    Some(format!("{drive},discard=unmap,detect-zeroes=unmap"))
}

/// A recipe's `-drive` value with `file=` naming `from` pointed at `to` instead; `None` for
/// another drive.
fn with_file_moved(drive: &str, from: &Path, to: &Path) -> Option<String> {
    let mut moved = false;
    let options: Vec<String> = drive
        .split(',')
        .map(|o| match o.strip_prefix("file=") {
            Some(file) if same_path(Path::new(file), from) => {
                moved = true;
                format!("file={}", to.display())
            }
            _ => o.to_string(),
        })
        .collect();
    moved.then(|| options.join(","))
}

/// Whether two paths name one file (`./out/x` and `/abs/out/x`), judged by the canonical
/// parent directory and the file name; equal text otherwise.
fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    let canonical = |p: &Path| {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some((parent.canonicalize().ok()?, p.file_name()?.to_owned()))
    };
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// The full argument list (without the binary) for one start of the VM.
pub fn build_args(config: &QemuConfig, launch: &Launch) -> Result<Vec<String>, ArgsError> {
    let mut switches: Vec<(String, Vec<String>)> = defaults(config, launch)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let user = render_qemuargs(config, launch)?;
    let mut overridden: Vec<String> = Vec::new();
    for row in user.iter().filter(|r| !r.is_empty()) {
        let key = row[0].clone();
        let value = row[1..].concat();
        if !overridden.contains(&key) {
            overridden.push(key.clone());
            match switches.iter_mut().find(|(k, _)| *k == key) {
                Some((_, values)) => values.clear(),
                None => switches.push((key.clone(), Vec::new())),
            }
        }
        if !value.is_empty()
            && let Some((_, values)) = switches.iter_mut().find(|(k, _)| *k == key)
        {
            values.push(value);
        }
    }
    // The recipe's own drive for the output disk says nothing of discard: the guest's
    // fstrim would reach no one and what a provisioner wrote and deleted would stay in the
    // image. kiln lets the discards (and written zeroes) through, as it does for its own.
    if let Some((_, drives)) = switches.iter_mut().find(|(k, _)| k == "-drive") {
        for drive in drives.iter_mut() {
            if let Some(from) = &launch.recipe_disk
                && let Some(moved) = with_file_moved(drive, from, &launch.disk)
            {
                *drive = moved;
            }
            if let Some(with_discard) = with_discard_for_output(drive, &launch.disk) {
                *drive = with_discard;
            }
        }
    }
    // The accelerator choice's model wins over a `-cpu` of the recipe's.
    if let Some(model) = &launch.cpu_model
        && let Some((_, values)) = switches.iter_mut().find(|(k, _)| k == "-cpu")
    {
        *values = vec![model.clone()];
    }
    // Packer #6804: a user's -device list without the NIC gets it back.
    if overridden.iter().any(|k| k == "-device")
        && let Some((_, devices)) = switches.iter_mut().find(|(k, _)| k == "-device")
        && !devices.iter().any(|d| d.contains(&config.net_device))
    {
        devices.push(format!("{},netdev=user.0", config.net_device));
    }
    let mut args = Vec::new();
    for (key, values) in &switches {
        if values.is_empty() {
            args.push(key.clone());
        }
        for value in values {
            args.push(key.clone());
            args.push(value.clone());
        }
    }
    // kiln's own plumbing, never overridden: QMP for status and shutdown, the serial console
    // on a socket kiln listens on (unless the recipe routes the serial port itself).
    args.push("-qmp".into());
    args.push(format!(
        "unix:{},server=on,wait=off",
        launch.qmp_socket.display()
    ));
    if !overridden
        .iter()
        .any(|k| k == "-serial" || k == "-nographic")
    {
        args.push("-chardev".into());
        args.push(format!(
            "socket,id=kiln-serial,path={}",
            launch.serial_socket.display()
        ));
        args.push("-serial".into());
        args.push("chardev:kiln-serial".into());
    }
    if let Some(incoming) = &launch.incoming {
        args.push("-incoming".into());
        args.push(incoming.clone());
    }
    Ok(args)
}

/// The CPU model the recipe asks for: the last `-cpu` of `qemuargs` (which wins on the
/// command line), else `cpu_model`; `None` leaves it to kiln.
pub fn requested_cpu_model(config: &QemuConfig) -> Option<String> {
    config
        .qemuargs
        .iter()
        .rev()
        .find(|row| row.first().is_some_and(|k| k == "-cpu"))
        .map(|row| row[1..].concat())
        .filter(|model| !model.is_empty())
        .or_else(|| config.cpu_model.clone())
}

/// Whether the recipe's `qemuargs` replace kiln's drives (the seed article's way: it
/// attaches its own disk and `seed.img`), in which case kiln cannot inject its own seed.
pub fn user_supplies_drives(config: &QemuConfig) -> bool {
    config
        .qemuargs
        .iter()
        .any(|row| row.first().is_some_and(|k| k == "-drive"))
}

/// Whether `qemuargs` point cloud-init at a NoCloud seed through the SMBIOS serial
/// (`-smbios type=1,serial=ds=nocloud-net;s=http://…`, Packer's nocloud-net idiom).
pub fn smbios_nocloud(config: &QemuConfig) -> bool {
    config.qemuargs.iter().any(|row| {
        row.first().is_some_and(|k| k == "-smbios") && row[1..].concat().contains("ds=nocloud")
    })
}

/// Why the recipe brings its own cloud-init data, if it does — then kiln attaches no seed of
/// its own, which cloud-init would otherwise prefer: drives of its own in `qemuargs` (the
/// seed article's `seed.img`), a NoCloud SMBIOS serial (`-smbios
/// type=1,serial=ds=nocloud-net;s=http://…`, the HTTP seed), or a CD labelled `cidata`
/// (`cd_label`).
pub fn recipe_seed(config: &QemuConfig) -> Option<&'static str> {
    if user_supplies_drives(config) {
        return Some("the recipe attaches its own drives in qemuargs");
    }
    if smbios_nocloud(config) {
        return Some("the recipe points cloud-init at its own seed (-smbios serial=ds=nocloud…)");
    }
    if config
        .cd_label
        .as_deref()
        .is_some_and(|l| l.eq_ignore_ascii_case("cidata"))
    {
        return Some("the recipe's CD is a cloud-init seed (cd_label \"cidata\")");
    }
    if config
        .floppy_label
        .as_deref()
        .is_some_and(|l| l.eq_ignore_ascii_case("cidata"))
    {
        return Some("the recipe's floppy is a cloud-init seed (floppy_label \"cidata\")");
    }
    None
}

/// A shell-quoted rendering of a command line, for logs.
pub fn display_command(binary: &Path, args: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/@+%".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    std::iter::once(binary.display().to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::recipe::template::{LoadOptions, load_str};

    fn config(builder_extra: &str) -> QemuConfig {
        let text = format!(
            r#"{{"builders": [{{"type": "qemu", "disk_image": true, "iso_url": "base.qcow2",
                "iso_checksum": "none", "ssh_username": "debian", "vm_name": "img.qcow2",
                "output_directory": "out", "headless": true {builder_extra}}}]}}"#
        );
        let recipe = load_str("t.json", &text, Path::new("/tmp"), &LoadOptions::default())
            .unwrap_or_else(|d| panic!("{d}"));
        recipe.builds[0].builder.clone()
    }

    fn launch(accel: Accel) -> Launch {
        Launch {
            accel,
            cpu_model: None,
            disk: "out/img.qcow2".into(),
            iso: None,
            seed: Some("/run/kiln/seed.iso".into()),
            cdroms: vec!["/run/kiln/files.iso".into()],
            floppy: None,
            ssh_host_port: Some(2345),
            vnc_display: Some(7),
            qmp_socket: "/run/kiln/qmp.sock".into(),
            serial_socket: "/run/kiln/serial.sock".into(),
            http: Some(("10.0.2.2".into(), 8123)),
            output_dir: "out".into(),
            incoming: None,
            recipe_disk: None,
        }
    }

    fn values<'a>(args: &'a [String], switch: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == switch)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn defaults_follow_packer_with_kiln_plumbing() {
        let args = build_args(&config(""), &launch(Accel::Tcg)).unwrap();
        assert_eq!(values(&args, "-machine"), ["type=pc,accel=tcg"]);
        assert_eq!(values(&args, "-cpu"), ["qemu64"]);
        assert_eq!(values(&args, "-m"), ["512M"]);
        assert_eq!(values(&args, "-boot"), ["c"]);
        assert_eq!(
            values(&args, "-netdev"),
            ["user,id=user.0,hostfwd=tcp:127.0.0.1:2345-:22"]
        );
        assert_eq!(values(&args, "-device"), ["virtio-net,netdev=user.0"]);
        assert_eq!(
            values(&args, "-drive"),
            [
                "file=out/img.qcow2,if=virtio,cache=writeback,discard=ignore,format=qcow2",
                "file=/run/kiln/seed.iso,if=virtio,format=raw,readonly=on",
                "file=/run/kiln/files.iso,media=cdrom,readonly=on,index=2"
            ]
        );
        assert_eq!(values(&args, "-vnc"), ["127.0.0.1:7"]);
        assert_eq!(
            values(&args, "-qmp"),
            ["unix:/run/kiln/qmp.sock,server=on,wait=off"]
        );
        assert_eq!(values(&args, "-serial"), ["chardev:kiln-serial"]);
        assert!(
            !args.contains(&"-display".to_string()),
            "VNC is the display"
        );
        assert!(!args.contains(&"-smp".to_string()), "one CPU needs no -smp");
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_smp_when_asked() {
        let args = build_args(
            &config(r#", "cpus": 2, "memory": 2048"#),
            &launch(Accel::Kvm),
        )
        .unwrap();
        assert_eq!(values(&args, "-machine"), ["type=pc,accel=kvm"]);
        assert_eq!(values(&args, "-cpu"), ["host"]);
        assert_eq!(values(&args, "-smp"), ["cpus=2"]);
        assert_eq!(values(&args, "-m"), ["2048M"]);
    }

    #[test]
    fn the_accelerator_choices_cpu_model_wins_over_the_recipes() {
        let own = config(r#", "qemuargs": [["-cpu", "host"], ["-cpu", "host,+x2apic"]]"#);
        assert_eq!(requested_cpu_model(&own).as_deref(), Some("host,+x2apic"));
        let mut plain = launch(Accel::Kvm);
        plain.cpu_model = Some("qemu64".into());
        assert_eq!(
            values(&build_args(&own, &plain).unwrap(), "-cpu"),
            ["qemu64"]
        );
        let field = config(r#", "cpu_model": "host""#);
        assert_eq!(requested_cpu_model(&field).as_deref(), Some("host"));
        let mut tcg = launch(Accel::Tcg);
        tcg.cpu_model = Some("max".into());
        assert_eq!(values(&build_args(&field, &tcg).unwrap(), "-cpu"), ["max"]);
        assert_eq!(requested_cpu_model(&config("")), None);
    }

    #[test]
    fn seed_article_qemuargs_replace_switches_and_all_drives() {
        let c = config(
            r#", "qemuargs": [
                ["-cpu", "qemu64,rdrand=on"],
                ["-drive", "file=output-qemu/debian-buster.qcow2,format=qcow2,if=virtio"],
                ["-drive", "file=seed.img,format=raw,if=virtio"]
            ]"#,
        );
        assert!(user_supplies_drives(&c));
        let args = build_args(&c, &launch(Accel::Tcg)).unwrap();
        assert_eq!(values(&args, "-cpu"), ["qemu64,rdrand=on"]);
        assert_eq!(
            values(&args, "-drive"),
            [
                "file=output-qemu/debian-buster.qcow2,format=qcow2,if=virtio",
                "file=seed.img,format=raw,if=virtio"
            ]
        );
        assert_eq!(
            values(&args, "-device"),
            ["virtio-net,netdev=user.0"],
            "devices untouched"
        );
        assert_eq!(args.iter().filter(|a| *a == "-cpu").count(), 1);
    }

    #[test]
    fn the_recipes_drive_for_the_output_disk_can_be_pointed_at_the_step_caches_layer() {
        let c = config(
            r#", "qemuargs": [["-drive", "file=out/test.qcow2,format=qcow2,if=virtio"], ["-drive", "file=seed.img,format=raw,if=virtio"]]"#,
        );
        let mut at = launch(Accel::Tcg);
        at.recipe_disk = Some("out/test.qcow2".into());
        at.disk = "/cache/steps/k/disk.qcow2".into();
        let args = build_args(&c, &at).unwrap();
        let drives = values(&args, "-drive");
        assert_eq!(
            drives[0],
            "file=/cache/steps/k/disk.qcow2,format=qcow2,if=virtio,discard=unmap,detect-zeroes=unmap"
        );
        assert_eq!(drives[1], "file=seed.img,format=raw,if=virtio");
    }

    #[test]
    fn the_recipes_drive_for_the_output_disk_lets_discards_through_unless_it_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output-qemu");
        std::fs::create_dir(&out).unwrap();
        let mut at = launch(Accel::Tcg);
        at.disk = out.join("debian.qcow2");
        let drives = |own: &str| {
            let c = config(&format!(
                r#", "qemuargs": [["-drive", "{own}"], ["-drive", "file=seed.img,format=raw,if=virtio"]]"#
            ));
            values(&build_args(&c, &at).unwrap(), "-drive")
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        // The same file by another spelling (relative with `..`) is recognised.
        let spelled = format!("{}/../output-qemu/debian.qcow2", out.display());
        assert_eq!(
            drives(&format!("file={spelled},format=qcow2,if=virtio")),
            [
                format!("file={spelled},format=qcow2,if=virtio,discard=unmap,detect-zeroes=unmap"),
                "file=seed.img,format=raw,if=virtio".to_string(),
            ],
            "the seed drive is left alone"
        );
        let ignoring = format!("file={},if=virtio,discard=ignore", at.disk.display());
        assert_eq!(drives(&ignoring)[0], ignoring, "the recipe's own say wins");
        let zeroes = format!("file={},if=virtio,detect-zeroes=on", at.disk.display());
        assert_eq!(drives(&zeroes)[0], zeroes);
    }

    #[test]
    fn device_override_keeps_the_nic_and_fields_are_rendered() {
        let c = config(
            r#", "qemuargs": [
                ["-device", "virtio-rng-pci"],
                ["-netdev", "user,id=user.0,hostfwd=tcp::", "{{ .SSHHostPort }}", "-:22"],
                ["-smbios", "type=1,serial=ds=nocloud;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"],
                ["-nographic"]
            ]"#,
        );
        let args = build_args(&c, &launch(Accel::Tcg)).unwrap();
        assert_eq!(
            values(&args, "-device"),
            ["virtio-rng-pci", "virtio-net,netdev=user.0"]
        );
        assert_eq!(
            values(&args, "-netdev"),
            ["user,id=user.0,hostfwd=tcp::2345-:22"]
        );
        assert_eq!(
            values(&args, "-smbios"),
            ["type=1,serial=ds=nocloud;s=http://10.0.2.2:8123/"]
        );
        assert!(args.contains(&"-nographic".to_string()));
        assert!(
            !args.contains(&"-serial".to_string()),
            "-nographic owns the serial port"
        );
    }

    #[test]
    fn recipes_that_bring_their_own_seed() {
        assert_eq!(recipe_seed(&config("")), None);
        let nocloud_net = config(
            r#", "qemuargs": [["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"]]"#,
        );
        assert!(recipe_seed(&nocloud_net).unwrap().contains("-smbios"));
        assert!(!user_supplies_drives(&nocloud_net));
        let other_smbios = config(r#", "qemuargs": [["-smbios", "type=1,serial=1234"]]"#);
        assert_eq!(recipe_seed(&other_smbios), None);
        let cd = config(r#", "cd_label": "CIDATA", "cd_content": {"user-data": "x"}"#);
        assert!(recipe_seed(&cd).unwrap().contains("cidata"));
        let other_cd = config(r#", "cd_label": "scripts", "cd_content": {"a": "x"}"#);
        assert_eq!(recipe_seed(&other_cd), None);
        let drives = config(r#", "qemuargs": [["-drive", "file=seed.img,if=virtio"]]"#);
        assert!(recipe_seed(&drives).unwrap().contains("drives"));
    }

    #[test]
    fn virtio_scsi_and_detect_zeroes() {
        let c = config(
            r#", "disk_interface": "virtio-scsi", "disk_detect_zeroes": "unmap", "disk_discard": "unmap""#,
        );
        let args = build_args(&c, &launch(Accel::Tcg)).unwrap();
        assert_eq!(
            values(&args, "-device"),
            [
                "virtio-scsi-pci,id=scsi0",
                "scsi-hd,bus=scsi0.0,drive=drive0",
                "virtio-net,netdev=user.0"
            ]
        );
        assert_eq!(
            values(&args, "-drive")[0],
            "if=none,file=out/img.qcow2,id=drive0,cache=writeback,discard=unmap,format=qcow2,detect-zeroes=unmap"
        );
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let shown = display_command(
            Path::new("/usr/bin/qemu-system-x86_64"),
            &["-name".into(), "my vm".into(), "-m".into(), "1024M".into()],
        );
        assert_eq!(shown, "/usr/bin/qemu-system-x86_64 -name 'my vm' -m 1024M");
    }
}
