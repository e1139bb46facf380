//! `qemu-img`: image information, overlays, conversion, resizing and compaction.
//!
//! Every command runs with `kill_on_drop`, stops when the cancellation token fires (the
//! process is killed and reaped, its temporary output removed), and a failure carries the
//! command line and qemu-img's standard error. Outputs that take a while (conversion,
//! compaction) are written to a temporary file beside the destination and renamed into place
//! at the end, so the destination never holds half an image.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::base::units::format_bytes;

/// The command that installs qemu-img on Debian and Ubuntu.
pub const INSTALL_HINT: &str = "sudo apt-get install qemu-utils";

/// Parallel requests (`-m`) for conversions with out-of-order writes.
const PARALLEL_REQUESTS: &str = "16";
/// Progress is reported at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How much of qemu-img's standard error is kept for an error message.
const MAX_STDERR: usize = 16 * 1024;

/// A disk image format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// qcow2: sparse, compressible, supports backing files.
    Qcow2,
    /// A raw disk.
    Raw,
    /// Any other format qemu-img knows (`vmdk`, `vdi`, `vhdx`, …).
    Other(String),
}

impl ImageFormat {
    /// The name qemu-img uses.
    pub fn name(&self) -> &str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
            ImageFormat::Other(name) => name,
        }
    }

    /// The format called `name` (case-insensitive).
    pub fn from_name(name: &str) -> ImageFormat {
        match name.to_ascii_lowercase().as_str() {
            "qcow2" => ImageFormat::Qcow2,
            "raw" => ImageFormat::Raw,
            other => ImageFormat::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format.
    pub format: ImageFormat,
    /// The size of the disk the guest sees, in bytes.
    pub virtual_size: u64,
    /// The space the file takes on the host, in bytes, when qemu-img knows it.
    pub actual_size: Option<u64>,
    /// The backing file of an overlay, as qemu-img resolves it.
    pub backing_file: Option<PathBuf>,
    /// The backing file's format, when recorded in the overlay.
    pub backing_format: Option<ImageFormat>,
    /// Whether the image was not closed cleanly (qcow2 with lazy refcounts).
    pub dirty: bool,
}

/// What [`QemuImg::resize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resized {
    /// The image already had the requested size.
    Unchanged,
    /// The image grew.
    Grown {
        /// The previous virtual size.
        from: u64,
        /// The new virtual size.
        to: u64,
    },
}

/// A qemu-img operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuImgError {
    /// qemu-img is not on `PATH`.
    #[error(
        "qemu-img was not found on PATH; install it with `{INSTALL_HINT}` (Debian/Ubuntu) and try again"
    )]
    NotFound,
    /// qemu-img could not be started.
    #[error("cannot run `{command}`: {source}; check that {program} is an executable qemu-img (reinstall with `{INSTALL_HINT}`)", program = .program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The command line.
        command: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// qemu-img exited with an error.
    #[error("`{command}` failed ({status}): {}", stderr_text(.stderr))]
    Failed {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// qemu-img's output was not what kiln expects.
    #[error(
        "`{command}` printed something kiln cannot read ({reason}); is it a qemu-img of version 2.10 or newer?"
    )]
    Output {
        /// The command line.
        command: String,
        /// What is wrong.
        reason: String,
    },
    /// The requested size is smaller than the image.
    #[error(
        "the image {path} is {}; resizing it to {} would cut the file system — qemu-img resize --shrink is never used by kiln; raise disk_size to at least {}",
        sizes(*.current, *.requested).0,
        sizes(*.current, *.requested).1,
        sizes(*.current, *.requested).0,
        path = .path.display()
    )]
    WouldShrink {
        /// The image.
        path: PathBuf,
        /// Its virtual size.
        current: u64,
        /// The requested size.
        requested: u64,
    },
    /// The options do not fit together.
    #[error("{0}")]
    InvalidOptions(String),
    /// A file could not be renamed or removed.
    #[error("cannot {what} {path}: {source}", path = .path.display())]
    Io {
        /// What kiln tried ("move the converted image to").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The cancellation token fired; the process was killed.
    #[error("qemu-img was cancelled")]
    Cancelled,
}

impl QemuImgError {
    /// Whether the operation was cancelled (rather than failed).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, QemuImgError::Cancelled)
    }
}

fn stderr_text(stderr: &str) -> &str {
    if stderr.is_empty() {
        "it printed no error message"
    } else {
        stderr
    }
}

/// Two sizes in binary units; with the exact byte counts when the rounding hides the
/// difference.
fn sizes(a: u64, b: u64) -> (String, String) {
    let (fa, fb) = (format_bytes(a), format_bytes(b));
    let same = |x: &str, y: &str| x.replace(".0 ", " ") == y.replace(".0 ", " ");
    if same(&fa, &fb) {
        (format!("{fa} ({a} bytes)"), format!("{fb} ({b} bytes)"))
    } else {
        (fa, fb)
    }
}

/// The qemu-img program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuImg {
    program: PathBuf,
}

static LOCATED: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Finds an executable called `name` in the directories of a `PATH`-style list.
pub fn find_in_path(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl QemuImg {
    /// Finds `qemu-img` on `PATH`; the search runs once per process.
    pub fn locate() -> Result<QemuImg, QemuImgError> {
        LOCATED
            .get_or_init(|| find_in_path("qemu-img", &std::env::var_os("PATH").unwrap_or_default()))
            .clone()
            .map(QemuImg::with_program)
            .ok_or(QemuImgError::NotFound)
    }

    /// Finds `qemu-img` in the directories of `path_var` (not cached).
    pub fn locate_in(path_var: &OsStr) -> Result<QemuImg, QemuImgError> {
        find_in_path("qemu-img", path_var)
            .map(QemuImg::with_program)
            .ok_or(QemuImgError::NotFound)
    }

    /// Uses the given program as qemu-img.
    pub fn with_program(program: impl Into<PathBuf>) -> QemuImg {
        QemuImg {
            program: program.into(),
        }
    }

    /// The program's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The first line of `qemu-img --version` (`qemu-img version 7.2.22 (…)`).
    pub async fn version(&self, cancel: &CancellationToken) -> Result<String, QemuImgError> {
        let out = self
            .run(&[OsString::from("--version")], cancel, |_| {})
            .await?;
        Ok(out.lines().next().unwrap_or_default().trim().to_string())
    }

    /// `qemu-img info --output=json`. The image may be in use by a running VM (`-U`).
    pub async fn info(
        &self,
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<ImageInfo, QemuImgError> {
        let args = vec![
            OsString::from("info"),
            "--output=json".into(),
            "-U".into(),
            arg_path(path),
        ];
        let out = self.run(&args, cancel, |_| {}).await?;
        parse_info(&out).map_err(|reason| QemuImgError::Output {
            command: self.command_line(&args),
            reason,
        })
    }

    /// Creates an empty image of `size` bytes (`qemu-img create -f <format>`).
    pub async fn create(
        &self,
        path: &Path,
        format: &ImageFormat,
        size: u64,
        cancel: &CancellationToken,
    ) -> Result<(), QemuImgError> {
        let args = vec![
            OsString::from("create"),
            "-q".into(),
            "-f".into(),
            format.name().into(),
            arg_path(path),
            size.to_string().into(),
        ];
        self.run(&args, cancel, |_| {}).await.map(drop)
    }

    /// Creates a qcow2 overlay at `path` on top of `backing`, which is never written to. The
    /// backing file is recorded with its absolute path and its format (`-b … -F …`), so the
    /// overlay works from any directory and qemu never probes the backing file's format.
    pub async fn create_overlay(
        &self,
        backing: &Path,
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), QemuImgError> {
        let backing = std::path::absolute(backing).map_err(|source| QemuImgError::Io {
            what: "resolve the path of",
            path: backing.to_path_buf(),
            source,
        })?;
        let info = self.info(&backing, cancel).await?;
        let args = vec![
            OsString::from("create"),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-b".into(),
            backing.into_os_string(),
            "-F".into(),
            info.format.name().into(),
            arg_path(path),
        ];
        self.run(&args, cancel, |_| {}).await.map(drop)
    }

    /// Makes the qcow2 overlay `path` sit directly on `backing` (`qemu-img rebase`, safe
    /// mode): every cluster where its current backing chain differs from `backing` is
    /// copied into it first, so its content does not change.
    pub async fn rebase(
        &self,
        path: &Path,
        backing: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), QemuImgError> {
        let info = self.info(backing, cancel).await?;
        let args = vec![
            OsString::from("rebase"),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-b".into(),
            arg_path(backing),
            "-F".into(),
            info.format.name().into(),
            arg_path(path),
        ];
        self.run(&args, cancel, |_| {}).await.map(drop)
    }

    /// Copies `src` to `dst` in `format` (`qemu-img convert`), flattening any backing chain;
    /// `compress` (qcow2 only) compresses every cluster. `progress(done, total)` follows
    /// qemu-img's `-p` output, in bytes of the virtual disk, at most ten times a second.
    /// The output is written beside `dst` and renamed into place when complete; `src` and
    /// `dst` may be the same file.
    pub async fn copy_or_convert(
        &self,
        src: &Path,
        dst: &Path,
        format: &ImageFormat,
        compress: bool,
        mut progress: impl FnMut(u64, Option<u64>),
        cancel: &CancellationToken,
    ) -> Result<(), QemuImgError> {
        if compress && *format != ImageFormat::Qcow2 {
            return Err(QemuImgError::InvalidOptions(format!(
                "compression needs the qcow2 format, not {format}; set format to qcow2 or turn disk_compression off"
            )));
        }
        let info = self.info(src, cancel).await?;
        let total = info.virtual_size;
        let temp = TempFile(temp_path_for(dst));
        let mut args = vec![
            OsString::from("convert"),
            "-p".into(),
            "-f".into(),
            info.format.name().into(),
            "-O".into(),
            format.name().into(),
        ];
        if compress {
            args.push("-c".into());
        }
        if *format == ImageFormat::Raw || compress {
            // Out-of-order writes with several coroutines: compression then runs on every
            // core (about twice as fast on two), and a raw file does not care about order.
            args.extend(["-W".into(), "-m".into(), PARALLEL_REQUESTS.into()]);
        }
        args.push(arg_path(src));
        args.push(arg_path(&temp.0));
        let mut last: Option<Instant> = None;
        progress(0, Some(total));
        self.run(&args, cancel, |piece| {
            if let Some(pct) = parse_progress(piece)
                && last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
            {
                last = Some(Instant::now());
                progress((pct / 100.0 * total as f64) as u64, Some(total));
            }
        })
        .await?;
        std::fs::rename(&temp.0, dst).map_err(|source| QemuImgError::Io {
            what: "move the converted image to",
            path: dst.to_path_buf(),
            source,
        })?;
        temp.keep();
        progress(total, Some(total));
        Ok(())
    }

    /// Grows the virtual disk to `bytes` (rounded up to whole 512-byte sectors, as qemu-img
    /// requires). A size smaller than the image is refused before anything is touched:
    /// shrinking a disk cuts off the file system on it, so kiln never passes `--shrink`.
    pub async fn resize(
        &self,
        path: &Path,
        bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<Resized, QemuImgError> {
        let info = self.info(path, cancel).await?;
        let target = bytes.div_ceil(512) * 512;
        if target < info.virtual_size {
            return Err(QemuImgError::WouldShrink {
                path: path.to_path_buf(),
                current: info.virtual_size,
                requested: bytes,
            });
        }
        if target == info.virtual_size {
            return Ok(Resized::Unchanged);
        }
        let args = vec![
            OsString::from("resize"),
            "-q".into(),
            "-f".into(),
            info.format.name().into(),
            arg_path(path),
            target.to_string().into(),
        ];
        self.run(&args, cancel, |_| {}).await?;
        Ok(Resized::Grown {
            from: info.virtual_size,
            to: target,
        })
    }

    /// Rewrites `src` into `dst` in the same format without its unused and zeroed clusters
    /// (and without a backing chain), through a temporary file renamed into place;
    /// `compress` (qcow2 only) also compresses it. `dst` may be `src`.
    pub async fn compact(
        &self,
        src: &Path,
        dst: &Path,
        compress: bool,
        progress: impl FnMut(u64, Option<u64>),
        cancel: &CancellationToken,
    ) -> Result<(), QemuImgError> {
        let format = self.info(src, cancel).await?.format;
        self.copy_or_convert(src, dst, &format, compress, progress, cancel)
            .await
    }

    /// Writes to `delta` what `overlay` holds above its backing file `base`, compressed
    /// (`qemu-img convert -c -B`): clusters the overlay never wrote are left out, so only the
    /// change is compressed. The delta has `base` as its backing file and `cluster_size`
    /// bytes per cluster.
    pub async fn convert_delta(
        &self,
        overlay: &Path,
        base: &Path,
        delta: &Path,
        cluster_size: u64,
        mut progress: impl FnMut(u64, Option<u64>),
        cancel: &CancellationToken,
    ) -> Result<(), QemuImgError> {
        let info = self.info(overlay, cancel).await?;
        let total = info.virtual_size;
        let args = vec![
            OsString::from("convert"),
            "-p".into(),
            "-c".into(),
            "-W".into(),
            "-m".into(),
            PARALLEL_REQUESTS.into(),
            "-f".into(),
            "qcow2".into(),
            "-O".into(),
            "qcow2".into(),
            "-B".into(),
            arg_path(base),
            "-F".into(),
            "qcow2".into(),
            "-o".into(),
            format!("cluster_size={cluster_size}").into(),
            arg_path(overlay),
            arg_path(delta),
        ];
        let mut last: Option<Instant> = None;
        self.run(&args, cancel, |piece| {
            if let Some(pct) = parse_progress(piece)
                && last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
            {
                last = Some(Instant::now());
                progress((pct / 100.0 * total as f64) as u64, Some(total));
            }
        })
        .await
        .map(drop)
    }

    /// Checks an image's metadata (`qemu-img check`): an error when qemu-img finds
    /// corruption or leaked clusters.
    pub async fn check(&self, path: &Path, cancel: &CancellationToken) -> Result<(), QemuImgError> {
        let args = vec![OsString::from("check"), "-q".into(), arg_path(path)];
        self.run(&args, cancel, |_| {}).await.map(drop)
    }

    fn command_line(&self, args: &[OsString]) -> String {
        let mut line = shell_quote(self.program.as_os_str());
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        line
    }

    /// Runs qemu-img with `args`; returns its standard output. Each `\r`- or `\n`-separated
    /// piece of standard output is also passed to `on_output` as it arrives.
    async fn run(
        &self,
        args: &[OsString],
        cancel: &CancellationToken,
        mut on_output: impl FnMut(&str),
    ) -> Result<String, QemuImgError> {
        if cancel.is_cancelled() {
            return Err(QemuImgError::Cancelled);
        }
        let mut child = tokio::process::Command::new(&self.program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    QemuImgError::NotFound
                } else {
                    QemuImgError::Spawn {
                        program: self.program.clone(),
                        command: self.command_line(args),
                        source,
                    }
                }
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let finished = {
            let work = async {
                let (out, err) =
                    tokio::join!(read_pieces(stdout, &mut on_output), read_capped(stderr));
                let status = child.wait().await;
                (out, err, status)
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                done = work => Some(done),
            }
        };
        let Some((out, err, status)) = finished else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(QemuImgError::Cancelled);
        };
        let status = status.map_err(|source| QemuImgError::Spawn {
            program: self.program.clone(),
            command: self.command_line(args),
            source,
        })?;
        if !status.success() {
            return Err(QemuImgError::Failed {
                command: self.command_line(args),
                status,
                stderr: String::from_utf8_lossy(&err).trim().to_string(),
            });
        }
        Ok(out)
    }
}

/// Reads a child's output, handing each `\r`/`\n`-separated piece to `on_piece`.
async fn read_pieces(
    stream: Option<impl AsyncRead + Unpin>,
    on_piece: &mut impl FnMut(&str),
) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut all = Vec::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        all.extend_from_slice(&buf[..n]);
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                if !pending.is_empty() {
                    on_piece(&String::from_utf8_lossy(&pending));
                    pending.clear();
                }
            } else {
                pending.push(b);
            }
        }
    }
    if !pending.is_empty() {
        on_piece(&String::from_utf8_lossy(&pending));
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// Reads a child's standard error, keeping the last [`MAX_STDERR`] bytes.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => kept.extend_from_slice(&buf[..n]),
        }
        if kept.len() > 2 * MAX_STDERR {
            kept.drain(..kept.len() - MAX_STDERR);
        }
    }
    if kept.len() > MAX_STDERR {
        kept.drain(..kept.len() - MAX_STDERR);
    }
    kept
}

/// `    (42.17/100%)` → 42.17
fn parse_progress(piece: &str) -> Option<f64> {
    let inner = piece.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (done, of) = inner.split_once('/')?;
    if of.trim() != "100%" {
        return None;
    }
    done.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
}

fn parse_info(json: &str) -> Result<ImageInfo, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
    let format = v
        .get("format")
        .and_then(|f| f.as_str())
        .ok_or("no `format`")?;
    let virtual_size = v
        .get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or("no `virtual-size`")?;
    let text = |key: &str| v.get(key).and_then(|s| s.as_str()).map(str::to_string);
    Ok(ImageInfo {
        format: ImageFormat::from_name(format),
        virtual_size,
        actual_size: v.get("actual-size").and_then(|s| s.as_u64()),
        backing_file: text("full-backing-filename")
            .or_else(|| text("backing-filename"))
            .map(PathBuf::from),
        backing_format: text("backing-filename-format").map(|f| ImageFormat::from_name(&f)),
        dirty: v
            .get("dirty-flag")
            .and_then(|d| d.as_bool())
            .unwrap_or(false),
    })
}

/// A path as a qemu-img argument: relative paths get a `./` so that a leading `-` is not an
/// option and a `:` is not read as a protocol prefix (`nbd:…`).
fn arg_path(path: &Path) -> OsString {
    if path.is_absolute() || path.starts_with(".") {
        path.as_os_str().to_owned()
    } else {
        Path::new(".").join(path).into_os_string()
    }
}

/// `<dir>/.<name>.kiln-<pid>.tmp`, beside `dst` so the final rename is atomic.
fn temp_path_for(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    dst.with_file_name(format!(".{name}.kiln-{}.tmp", std::process::id()))
}

/// A temporary output, removed on drop unless kept.
struct TempFile(PathBuf);

impl TempFile {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+%@".contains(&b));
    if plain {
        return s.into_owned();
    }
    let mut quoted = String::from("'");
    for c in s.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            let _ = quoted.write_char(c);
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("    (42.17/100%)"), Some(42.17));
        assert_eq!(parse_progress("(100.00/100%)"), Some(100.0));
        assert_eq!(parse_progress("(1/2)"), None);
        assert_eq!(parse_progress("Formatting 'x'"), None);
    }

    #[test]
    fn info_json() {
        let json = r#"{"virtual-size": 1073741824, "filename": "o.qcow2", "format": "qcow2",
            "actual-size": 200704, "backing-filename": "base.img",
            "full-backing-filename": "/var/base.img", "backing-filename-format": "raw",
            "dirty-flag": false}"#;
        let info = parse_info(json).unwrap();
        assert_eq!(info.format, ImageFormat::Qcow2);
        assert_eq!(info.virtual_size, 1 << 30);
        assert_eq!(info.actual_size, Some(200704));
        assert_eq!(info.backing_file, Some(PathBuf::from("/var/base.img")));
        assert_eq!(info.backing_format, Some(ImageFormat::Raw));
        assert!(parse_info("{}").unwrap_err().contains("format"));
        assert!(parse_info("nope").unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn paths_and_quoting() {
        assert_eq!(arg_path(Path::new("a:b.img")), OsString::from("./a:b.img"));
        assert_eq!(arg_path(Path::new("-x.img")), OsString::from("./-x.img"));
        assert_eq!(arg_path(Path::new("/abs/x")), OsString::from("/abs/x"));
        assert_eq!(arg_path(Path::new("./x")), OsString::from("./x"));
        assert_eq!(shell_quote(OsStr::new("a b'c")), "'a b'\\''c'");
        assert_eq!(shell_quote(OsStr::new("--output=json")), "--output=json");
        assert_eq!(
            temp_path_for(Path::new("/o/disk.qcow2")),
            PathBuf::from(format!("/o/.disk.qcow2.kiln-{}.tmp", std::process::id()))
        );
    }

    #[test]
    fn missing_qemu_img_says_how_to_install() {
        let e = QemuImg::locate_in(OsStr::new("/nonexistent:")).unwrap_err();
        assert!(e.to_string().contains("apt-get install qemu-utils"), "{e}");
    }

    #[test]
    fn shrink_message() {
        let e = QemuImgError::WouldShrink {
            path: "/o/disk.qcow2".into(),
            current: 12 << 30,
            requested: 10 << 30,
        };
        assert_eq!(
            e.to_string(),
            "the image /o/disk.qcow2 is 12 GiB; resizing it to 10 GiB would cut the file system — qemu-img resize --shrink is never used by kiln; raise disk_size to at least 12 GiB"
        );
        let close = QemuImgError::WouldShrink {
            path: "d".into(),
            current: (10 << 30) + 512,
            requested: 10 << 30,
        };
        assert!(close.to_string().contains("(10737418752 bytes)"), "{close}");
    }
}
