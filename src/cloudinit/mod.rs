//! cloud-init NoCloud seed images, written in pure Rust: what `cloud-localds` makes with
//! `genisoimage` (ISO 9660 with Rock Ridge and Joliet, volume label `cidata`) or with
//! `mkfs.vfat` + `mcopy` (FAT12/FAT16 with long file names, volume label `CIDATA`).
//!
//! ```no_run
//! use kiln::cloudinit::{SeedFiles, SeedFormat};
//!
//! let seed = SeedFiles::new("#cloud-config\nhostname: box\n")
//!     .hostname("box")
//!     .network_config("version: 2\n");
//! let size = kiln::cloudinit::write_to_path(&seed, SeedFormat::Iso, "seed.img".as_ref())?;
//! # Ok::<(), kiln::cloudinit::SeedError>(())
//! ```
//!
//! The writers stream: only the metadata (descriptors, directories, FATs) is held in memory,
//! file contents given as [`FileData::Path`] are copied straight from disk. Output is
//! deterministic: the same files and timestamp give the same bytes.

pub mod cdrom;
pub mod fat;
pub mod floppy;
pub mod http;
pub mod iso9660;
mod tree;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The instance id `cloud-localds` writes when it is given no meta-data.
pub const DEFAULT_INSTANCE_ID: &str = "iid-local01";

/// The ISO 9660 volume label cloud-init's NoCloud data source looks for.
pub const ISO_LABEL: &str = "cidata";

/// The FAT volume label cloud-init's NoCloud data source looks for (FAT labels are upper case).
pub const FAT_LABEL: &str = "CIDATA";

/// Everything that can go wrong while making a seed image.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A path inside the image is not usable.
    #[error("`{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Two files (or a file and a directory) have the same path in the image.
    #[error("`{path}` is given twice; each path in the image must be unique")]
    Duplicate {
        /// The path given twice.
        path: String,
    },
    /// A file or the whole image is too large for the chosen file system.
    #[error("{what} is too large for {format}: {size} bytes, at most {limit}; {hint}")]
    TooLarge {
        /// What is too large (a file's path, or "the image").
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The largest size the format supports.
        limit: u64,
        /// "ISO 9660" or "FAT16".
        format: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// A source file changed size while it was being copied into the image.
    #[error("{path}: file changed size while it was being written into the image; try again")]
    FileChanged {
        /// The source file.
        path: PathBuf,
    },
    /// A source file is not a regular file.
    #[error("{path}: not a regular file; give a file (or `-` for standard input)")]
    NotAFile {
        /// The source path.
        path: PathBuf,
    },
    /// Explicit meta-data together with options that generate meta-data.
    #[error(
        "meta-data was given, so {option} cannot be used; put it into the meta-data file instead"
    )]
    MetaDataConflict {
        /// The option that conflicts ("an instance id", "a hostname", "a dsmode").
        option: &'static str,
    },
    /// A value that goes into the generated meta-data is not usable.
    #[error("{field} `{value}`: {reason}")]
    InvalidValue {
        /// Which field ("instance-id", "local-hostname", "volume label", …).
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// Reading a source or writing the image failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SeedError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> SeedError {
        let context = context.into();
        move |source| SeedError::Io { context, source }
    }
}

/// The contents of one file in a seed image.
#[derive(Clone, PartialEq, Eq)]
pub enum FileData {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// A file on disk, read while the image is written (it must not change meanwhile).
    Path(PathBuf),
}

impl fmt::Debug for FileData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            FileData::Path(p) => f.debug_tuple("Path").field(p).finish(),
        }
    }
}

impl From<Vec<u8>> for FileData {
    fn from(v: Vec<u8>) -> Self {
        FileData::Bytes(v)
    }
}

impl From<&[u8]> for FileData {
    fn from(v: &[u8]) -> Self {
        FileData::Bytes(v.to_vec())
    }
}

impl From<&str> for FileData {
    fn from(v: &str) -> Self {
        FileData::Bytes(v.as_bytes().to_vec())
    }
}

impl From<String> for FileData {
    fn from(v: String) -> Self {
        FileData::Bytes(v.into_bytes())
    }
}

impl From<PathBuf> for FileData {
    fn from(v: PathBuf) -> Self {
        FileData::Path(v)
    }
}

impl From<&Path> for FileData {
    fn from(v: &Path) -> Self {
        FileData::Path(v.to_path_buf())
    }
}

impl FileData {
    /// The size in bytes (for a path: its current size, checked to be a regular file).
    pub fn len(&self) -> Result<u64, SeedError> {
        match self {
            FileData::Bytes(b) => Ok(b.len() as u64),
            FileData::Path(p) => {
                let meta = std::fs::metadata(p).map_err(SeedError::io(p.display().to_string()))?;
                if !meta.is_file() {
                    return Err(SeedError::NotAFile { path: p.clone() });
                }
                Ok(meta.len())
            }
        }
    }

    /// True when there is no content.
    pub fn is_empty(&self) -> Result<bool, SeedError> {
        Ok(self.len()? == 0)
    }

    /// Copies exactly `size` bytes (the size planned earlier) to `out`.
    fn copy_to(&self, size: u64, out: &mut dyn Write, target: &str) -> Result<(), SeedError> {
        match self {
            FileData::Bytes(b) => {
                debug_assert_eq!(b.len() as u64, size);
                out.write_all(b).map_err(SeedError::io(target))
            }
            FileData::Path(p) => {
                let file = File::open(p).map_err(SeedError::io(p.display().to_string()))?;
                let mut limited = file.take(size);
                let copied = copy(&mut limited, out, p, target)?;
                let mut file = limited.into_inner();
                let mut probe = [0u8; 1];
                let more = file
                    .read(&mut probe)
                    .map_err(SeedError::io(p.display().to_string()))?;
                if copied != size || more != 0 {
                    return Err(SeedError::FileChanged { path: p.clone() });
                }
                Ok(())
            }
        }
    }
}

/// `io::copy` with errors that say which side failed.
fn copy(
    from: &mut dyn Read,
    to: &mut dyn Write,
    src: &Path,
    target: &str,
) -> Result<u64, SeedError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SeedError::io(src.display().to_string())(e)),
        };
        to.write_all(&buf[..n]).map_err(SeedError::io(target))?;
        total += n as u64;
    }
}

/// One file of an image: its path inside the image (`/`-separated, e.g. `user-data` or
/// `scripts/setup.sh`), its contents and its POSIX permission bits (Rock Ridge only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path inside the image.
    pub path: String,
    /// The contents.
    pub data: FileData,
    /// Permission bits such as `0o644` (used by Rock Ridge; FAT has none).
    pub mode: u32,
}

impl Entry {
    /// A file with mode `0o644`.
    pub fn new(path: impl Into<String>, data: impl Into<FileData>) -> Self {
        Entry {
            path: path.into(),
            data: data.into(),
            mode: 0o644,
        }
    }
}

/// The file system of a seed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedFormat {
    /// ISO 9660 with Rock Ridge and Joliet, label `cidata` (`cloud-localds`'s default).
    #[default]
    Iso,
    /// FAT12/FAT16 with long file names, label `CIDATA`.
    Fat,
}

impl SeedFormat {
    /// The name `cloud-localds --filesystem` uses: `iso9660` or `vfat`.
    pub fn name(self) -> &'static str {
        match self {
            SeedFormat::Iso => "iso9660",
            SeedFormat::Fat => "vfat",
        }
    }
}

impl fmt::Display for SeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SeedFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "iso9660" | "iso" => Ok(SeedFormat::Iso),
            "vfat" | "fat" | "fat12" | "fat16" => Ok(SeedFormat::Fat),
            _ => Err(format!(
                "unknown filesystem `{s}`; use iso9660 (or iso) or vfat"
            )),
        }
    }
}

/// The files of a NoCloud seed: `user-data`, `meta-data` and the optional `network-config`,
/// `vendor-data` and extra files, plus the timestamp written into the image.
///
/// Without explicit meta-data, the meta-data is generated like `cloud-localds` does:
/// `instance-id: iid-local01` (or [`SeedFiles::instance_id`]), plus `local-hostname` and
/// `dsmode` when set.
#[derive(Debug, Clone)]
pub struct SeedFiles {
    user_data: FileData,
    meta_data: Option<FileData>,
    instance_id: Option<String>,
    hostname: Option<String>,
    dsmode: Option<String>,
    network_config: Option<FileData>,
    vendor_data: Option<FileData>,
    extra: Vec<Entry>,
    timestamp: i64,
}

impl SeedFiles {
    /// A seed with this user-data and everything else defaulted (timestamp: the Unix epoch).
    pub fn new(user_data: impl Into<FileData>) -> Self {
        SeedFiles {
            user_data: user_data.into(),
            meta_data: None,
            instance_id: None,
            hostname: None,
            dsmode: None,
            network_config: None,
            vendor_data: None,
            extra: Vec::new(),
            timestamp: 0,
        }
    }

    /// Explicit meta-data (excludes [`instance_id`](Self::instance_id),
    /// [`hostname`](Self::hostname) and [`dsmode`](Self::dsmode)).
    pub fn meta_data(mut self, data: impl Into<FileData>) -> Self {
        self.meta_data = Some(data.into());
        self
    }

    /// The instance id of the generated meta-data (default `iid-local01`).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// `local-hostname` in the generated meta-data.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostname = Some(name.into());
        self
    }

    /// `dsmode` (`local` or `net`) in the generated meta-data.
    pub fn dsmode(mut self, mode: impl Into<String>) -> Self {
        self.dsmode = Some(mode.into());
        self
    }

    /// A `network-config` file (network configuration version 1 or 2).
    pub fn network_config(mut self, data: impl Into<FileData>) -> Self {
        self.network_config = Some(data.into());
        self
    }

    /// A `vendor-data` file.
    pub fn vendor_data(mut self, data: impl Into<FileData>) -> Self {
        self.vendor_data = Some(data.into());
        self
    }

    /// Another file, at `path` inside the image (may contain `/` for subdirectories).
    pub fn file(mut self, path: impl Into<String>, data: impl Into<FileData>) -> Self {
        self.extra.push(Entry::new(path, data));
        self
    }

    /// Another file with its permission bits.
    pub fn entry(mut self, entry: Entry) -> Self {
        self.extra.push(entry);
        self
    }

    /// The modification time of every file and of the volume, in seconds since the Unix epoch
    /// (default 0; FAT cannot go before 1980 and clamps).
    pub fn timestamp(mut self, unix_seconds: i64) -> Self {
        self.timestamp = unix_seconds;
        self
    }

    /// The meta-data generated when none is given.
    pub fn generated_meta_data(&self) -> Result<String, SeedError> {
        let id = self.instance_id.as_deref().unwrap_or(DEFAULT_INSTANCE_ID);
        let mut out = String::new();
        for (key, value) in [
            ("instance-id", Some(id)),
            ("local-hostname", self.hostname.as_deref()),
            ("dsmode", self.dsmode.as_deref()),
        ] {
            let Some(value) = value else { continue };
            if value.trim().is_empty() || value.contains(['\n', '\r']) {
                return Err(SeedError::InvalidValue {
                    field: key,
                    value: value.to_string(),
                    reason: "must be one non-empty line",
                });
            }
            out.push_str(key);
            out.push_str(": ");
            out.push_str(&yaml_scalar(value));
            out.push('\n');
        }
        Ok(out)
    }

    /// The files of the image, in the order `user-data`, `meta-data`, `network-config`,
    /// `vendor-data`, extra files. Fails if meta-data and generated fields are both given.
    pub fn entries(&self) -> Result<Vec<Entry>, SeedError> {
        let meta = match &self.meta_data {
            Some(meta) => {
                for (set, option) in [
                    (self.instance_id.is_some(), "an instance id"),
                    (self.hostname.is_some(), "a hostname"),
                    (self.dsmode.is_some(), "a dsmode"),
                ] {
                    if set {
                        return Err(SeedError::MetaDataConflict { option });
                    }
                }
                meta.clone()
            }
            None => FileData::Bytes(self.generated_meta_data()?.into_bytes()),
        };
        let mut out = vec![
            Entry::new("user-data", self.user_data.clone()),
            Entry::new("meta-data", meta),
        ];
        if let Some(n) = &self.network_config {
            out.push(Entry::new("network-config", n.clone()));
        }
        if let Some(v) = &self.vendor_data {
            out.push(Entry::new("vendor-data", v.clone()));
        }
        out.extend(self.extra.iter().cloned());
        Ok(out)
    }
}

/// `value` as a YAML scalar: plain when that is unambiguous, else a double-quoted
/// (JSON-compatible) string.
fn yaml_scalar(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
        && value.parse::<f64>().is_err();
    if plain {
        value.to_string()
    } else {
        serde_json::Value::String(value.to_string()).to_string()
    }
}

/// Writes `files` as an ISO 9660 image labelled `cidata` (Rock Ridge and Joliet) to `out`;
/// returns the number of bytes written.
pub fn write_iso<W: Write>(files: &SeedFiles, out: W) -> Result<u64, SeedError> {
    let options = iso9660::IsoOptions {
        timestamp: files.timestamp,
        ..iso9660::IsoOptions::default()
    };
    iso9660::write(out, &options, &files.entries()?)
}

/// Writes `files` as a FAT12/FAT16 image labelled `CIDATA` (long file names) to `out`;
/// returns the number of bytes written.
pub fn write_fat<W: Write>(files: &SeedFiles, out: W) -> Result<u64, SeedError> {
    let options = fat::FatOptions {
        timestamp: files.timestamp,
        ..fat::FatOptions::default()
    };
    fat::write(out, &options, &files.entries()?)
}

/// Writes `files` in `format` to `out`; returns the number of bytes written.
pub fn write<W: Write>(files: &SeedFiles, format: SeedFormat, out: W) -> Result<u64, SeedError> {
    match format {
        SeedFormat::Iso => write_iso(files, out),
        SeedFormat::Fat => write_fat(files, out),
    }
}

/// Writes `files` in `format` to the file `path`, atomically: into a temporary file in the
/// same directory that is renamed over `path` once complete (and removed on failure).
/// Returns the image size in bytes.
pub fn write_to_path(files: &SeedFiles, format: SeedFormat, path: &Path) -> Result<u64, SeedError> {
    // Check the inputs before creating anything.
    let entries = files.entries()?;
    for e in &entries {
        e.data.len()?;
    }
    write_atomically(path, |out| write(files, format, out))
}

/// Runs `write` on a buffered temporary file next to `path` and renames it to `path` once
/// complete and synced; on failure the temporary file is removed. Returns what `write`
/// returned (the image size).
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, SeedError>,
) -> Result<u64, SeedError> {
    let target = path.display().to_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| SeedError::InvalidPath {
            path: target.clone(),
            reason: "the output must name a file".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(
        ".{name}.kiln-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(SeedError::io(format!(
                "{}: cannot create a temporary file there (does the directory exist and is it writable?)",
                dir.display()
            )))?;
        let mut buf = io::BufWriter::with_capacity(256 * 1024, file);
        let size = write(&mut buf)?;
        let file = buf
            .into_inner()
            .map_err(|e| SeedError::io(target.clone())(e.into_error()))?;
        file.sync_all().map_err(SeedError::io(target.clone()))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(SeedError::io(target.clone()))?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Civil date and time (UTC) of a Unix timestamp, clamped to years `min_year..=max_year`:
/// (year, month 1–12, day 1–31, hour, minute, second).
pub(crate) fn civil(unix: i64, min_year: i32, max_year: i32) -> (i32, u8, u8, u8, u8, u8) {
    use chrono::{Datelike, Timelike};
    let lo = chrono::NaiveDate::from_ymd_opt(min_year, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0);
    let hi = chrono::NaiveDate::from_ymd_opt(max_year, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0);
    let t = unix.clamp(lo, hi);
    let dt = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
    (
        dt.year(),
        dt.month() as u8,
        dt.day() as u8,
        dt.hour() as u8,
        dt.minute() as u8,
        dt.second() as u8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_meta_data_matches_cloud_localds() {
        let seed = SeedFiles::new("#cloud-config\n");
        assert_eq!(
            seed.generated_meta_data().unwrap(),
            "instance-id: iid-local01\n"
        );
        let seed = seed.instance_id("i-123").hostname("web-1").dsmode("local");
        assert_eq!(
            seed.generated_meta_data().unwrap(),
            "instance-id: i-123\nlocal-hostname: web-1\ndsmode: local\n"
        );
    }

    #[test]
    fn odd_values_are_quoted() {
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("12"), "\"12\"");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("host.example"), "host.example");
        let bad = SeedFiles::new("").hostname("a\nb");
        assert!(matches!(
            bad.generated_meta_data(),
            Err(SeedError::InvalidValue {
                field: "local-hostname",
                ..
            })
        ));
    }

    #[test]
    fn entries_are_in_cloud_init_order() {
        let seed = SeedFiles::new("u")
            .vendor_data("v")
            .network_config("n")
            .file("scripts/a.sh", "a");
        let names: Vec<_> = seed
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            names,
            [
                "user-data",
                "meta-data",
                "network-config",
                "vendor-data",
                "scripts/a.sh"
            ]
        );
    }

    #[test]
    fn meta_data_conflicts_with_generated_fields() {
        let seed = SeedFiles::new("u")
            .meta_data("instance-id: x\n")
            .hostname("h");
        let err = seed.entries().unwrap_err();
        assert!(err.to_string().contains("hostname"), "{err}");
    }

    #[test]
    fn formats_parse_like_cloud_localds() {
        assert_eq!("iso".parse::<SeedFormat>(), Ok(SeedFormat::Iso));
        assert_eq!("iso9660".parse::<SeedFormat>(), Ok(SeedFormat::Iso));
        assert_eq!("vfat".parse::<SeedFormat>(), Ok(SeedFormat::Fat));
        assert!("ext4".parse::<SeedFormat>().unwrap_err().contains("vfat"));
    }

    #[test]
    fn civil_dates_clamp() {
        assert_eq!(civil(0, 1900, 2155), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(0, 1980, 2107), (1980, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000, 1900, 2155), (2023, 11, 14, 22, 13, 20));
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seed.img");
        let seed = SeedFiles::new(FileData::Path(dir.path().join("missing")));
        let err = write_to_path(&seed, SeedFormat::Iso, &out).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let seed = SeedFiles::new("#cloud-config\n");
        let size = write_to_path(&seed, SeedFormat::Iso, &out).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
