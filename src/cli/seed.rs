//! `kiln seed`: a cloud-init NoCloud seed image, like `cloud-localds` (pure Rust, no
//! `genisoimage`, `mkfs.vfat` or `mcopy` needed).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cloudinit::{self, FileData, SeedFiles, SeedFormat};

/// Arguments of `kiln seed`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    kiln seed user-data.yaml -o seed.img\n  \
    kiln seed user-data.yaml meta-data.yaml -o seed.img --network-config net.yaml\n  \
    kiln seed - -o seed.img --filesystem vfat < user-data.yaml\n\n\
    The image is labelled `cidata` (ISO 9660, Rock Ridge and Joliet) or `CIDATA` (vfat). \
    Timestamps come from --timestamp, else SOURCE_DATE_EPOCH, else 1970-01-01, so the same \
    inputs give the same bytes.")]
pub struct SeedArgs {
    /// The user-data file (`-` reads standard input).
    #[arg(value_name = "USER-DATA")]
    pub user_data: PathBuf,
    /// The meta-data file. Without it kiln writes `instance-id: iid-local01` (as
    /// cloud-localds does), plus --hostname and --dsmode.
    #[arg(value_name = "META-DATA")]
    pub meta_data: Option<PathBuf>,
    /// The image to write (replaced atomically); `-` writes it to standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// A network-config file (network configuration version 1 or 2).
    #[arg(short = 'N', long, value_name = "FILE")]
    pub network_config: Option<PathBuf>,
    /// A vendor-data file.
    #[arg(short = 'V', long, value_name = "FILE")]
    pub vendor_data: Option<PathBuf>,
    /// The file system: iso9660 (or iso) or vfat.
    #[arg(short, long, value_name = "FS", default_value = "iso9660")]
    pub filesystem: SeedFormat,
    /// The disk format; only raw is written (convert with `qemu-img convert` for others).
    #[arg(short, long, value_name = "FORMAT", default_value = "raw", value_parser = parse_disk_format)]
    pub disk_format: String,
    /// `local-hostname` in the generated meta-data.
    #[arg(short = 'H', long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// `instance-id` in the generated meta-data (default iid-local01).
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// `dsmode` in the generated meta-data: local or net.
    #[arg(short = 'm', long, value_name = "MODE", value_parser = ["local", "net"])]
    pub dsmode: Option<String>,
    /// Add another file: `--file scripts/setup.sh=./setup.sh` (path in the image = source).
    /// Repeatable.
    #[arg(long = "file", value_name = "NAME=FILE", value_parser = super::args::parse_var)]
    pub files: Vec<(String, String)>,
    /// Time of every file and of the volume, in seconds since 1970-01-01 UTC.
    #[arg(long, value_name = "UNIX-SECONDS", allow_hyphen_values = true)]
    pub timestamp: Option<i64>,
}

fn parse_disk_format(text: &str) -> Result<String, String> {
    if text == "raw" {
        Ok(text.to_string())
    } else {
        Err(format!(
            "kiln seed writes raw images only; write raw and convert it, e.g. \
             `qemu-img convert -f raw -O {text} seed.img seed.{text}`"
        ))
    }
}

/// How user-data may start for cloud-init to act on it.
const USER_DATA_STARTS: &[&[u8]] = &[
    b"#cloud-config",
    b"#!",
    b"#include",
    b"#cloud-boothook",
    b"#part-handler",
    b"#upstart-job",
    b"#cloud-config-archive",
    b"#cloud-config-jsonp",
    b"## template: jinja",
    b"Content-Type:",
    b"MIME-Version:",
    b"\x1f\x8b", // gzip
];

/// Runs `kiln seed`; returns the exit code (0 written, 1 failed). With `-o -` the image goes
/// to `out` and the summary to `err`.
pub fn run(args: &SeedArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    match build(args, err) {
        Ok(seed) => write(args, &seed, out, err),
        Err(message) => {
            writeln!(err, "kiln seed: {message}")?;
            Ok(1)
        }
    }
}

/// Checks that an input file can be read; the message names it and its role.
fn input(role: &str, path: &Path) -> Result<FileData, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => match std::fs::File::open(path) {
            Ok(_) => Ok(FileData::Path(path.to_path_buf())),
            Err(e) => Err(format!(
                "{role} {}: {e}; check the file's permissions",
                path.display()
            )),
        },
        Ok(_) => Err(format!(
            "{role} {}: not a regular file; give a file",
            path.display()
        )),
        Err(e) => Err(format!("{role} {}: {e}; check the path", path.display())),
    }
}

fn build(args: &SeedArgs, err: &mut dyn Write) -> Result<SeedFiles, String> {
    let user_data = if args.user_data.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading user-data from standard input: {e}"))?;
        FileData::Bytes(bytes)
    } else {
        input("user-data", &args.user_data)?
    };
    warn_about_user_data(&user_data, &args.user_data, err);
    let mut seed = SeedFiles::new(user_data);
    if let Some(meta) = &args.meta_data {
        for (set, flag) in [
            (args.hostname.is_some(), "--hostname"),
            (args.instance_id.is_some(), "--instance-id"),
            (args.dsmode.is_some(), "--dsmode"),
        ] {
            if set {
                return Err(format!(
                    "{flag} only applies to generated meta-data, and meta-data {} was given; \
                     put the value into that file or leave the file out",
                    meta.display()
                ));
            }
        }
        seed = seed.meta_data(input("meta-data", meta)?);
    }
    if let Some(id) = &args.instance_id {
        seed = seed.instance_id(id);
    }
    if let Some(h) = &args.hostname {
        seed = seed.hostname(h);
    }
    if let Some(m) = &args.dsmode {
        seed = seed.dsmode(m);
    }
    if let Some(n) = &args.network_config {
        seed = seed.network_config(input("network-config", n)?);
    }
    if let Some(v) = &args.vendor_data {
        seed = seed.vendor_data(input("vendor-data", v)?);
    }
    for (name, source) in &args.files {
        let data = input(&format!("--file {name}"), Path::new(source))?;
        seed = seed.file(name.as_str(), data);
    }
    let timestamp = match args.timestamp {
        Some(t) => t,
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v.trim().parse().map_err(|_| {
                format!("SOURCE_DATE_EPOCH `{v}` is not a number of seconds; fix or unset it")
            })?,
            Err(_) => 0,
        },
    };
    Ok(seed.timestamp(timestamp))
}

/// Warns (without failing) when cloud-init would ignore the user-data.
fn warn_about_user_data(data: &FileData, path: &Path, err: &mut dyn Write) {
    let head = match data {
        FileData::Bytes(b) => b[..b.len().min(64)].to_vec(),
        FileData::Path(p) => {
            let mut buf = Vec::new();
            if let Ok(f) = std::fs::File::open(p) {
                let _ = f.take(64).read_to_end(&mut buf);
            }
            buf
        }
    };
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head);
    if !USER_DATA_STARTS.iter().any(|s| head.starts_with(s)) {
        let what = if path.as_os_str() == "-" {
            "standard input".to_string()
        } else {
            path.display().to_string()
        };
        let _ = writeln!(
            err,
            "kiln seed: warning: user-data {what} does not start with `#cloud-config`, `#!` or \
             another header cloud-init knows; cloud-init may ignore it"
        );
    }
}

fn write(
    args: &SeedArgs,
    seed: &SeedFiles,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let names = match seed.entries() {
        Ok(entries) => entries.into_iter().map(|e| e.path).collect::<Vec<_>>(),
        Err(e) => {
            writeln!(err, "kiln seed: {e}")?;
            return Ok(1);
        }
    };
    let result = if args.output.as_os_str() == "-" {
        cloudinit::write(seed, args.filesystem, &mut *out)
    } else {
        cloudinit::write_to_path(seed, args.filesystem, &args.output)
    };
    match result {
        Ok(size) => {
            let summary = format!(
                "{}: {size} bytes, {} labelled {} ({})",
                if args.output.as_os_str() == "-" {
                    "standard output".to_string()
                } else {
                    args.output.display().to_string()
                },
                args.filesystem,
                match args.filesystem {
                    SeedFormat::Iso => cloudinit::ISO_LABEL,
                    SeedFormat::Fat => cloudinit::FAT_LABEL,
                },
                names.join(", ")
            );
            if args.output.as_os_str() == "-" {
                writeln!(err, "{summary}")?;
            } else {
                writeln!(out, "{summary}")?;
            }
            Ok(0)
        }
        Err(e) => {
            writeln!(err, "kiln seed: {e}")?;
            Ok(1)
        }
    }
}
