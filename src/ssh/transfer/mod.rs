//! File transfer to and from the guest: single files with a mode, bytes (scripts made from
//! `inline`), directories with Packer's `file` provisioner semantics, and downloads.
//!
//! Transfers go over SFTP (the `sftp` subsystem every Debian and most cloud images have).
//! When the guest refuses that subsystem, kiln falls back to plain commands over exec:
//! uploads become `cat > path` fed from the channel, `mkdir -p` and `chmod`; single-file
//! downloads become `cat path`. Downloading a directory needs SFTP. The fallback needs a
//! POSIX shell with `cat`, `mkdir`, `chmod` and `test` on the guest.
//!
//! Progress goes to a callback as `(bytes done, bytes total)`, counting every file of a
//! directory transfer.
//!
//! The two ways implement one `Transport` trait, in `sftp.rs` and `exec.rs`; this module picks
//! one per transfer and builds files, trees and Packer's path rules on top of it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use super::error::SshError;
use super::session::Session;
use exec::Exec;
use sftp::Sftp;

mod exec;
mod sftp;

/// How deep a local directory tree may go (guards against symlink loops).
const MAX_DEPTH: usize = 64;

/// How transfers reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMethod {
    /// The `sftp` subsystem.
    Sftp,
    /// Shell commands over exec (`cat > path`), when the guest has no SFTP subsystem.
    Exec,
}

type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

impl Session {
    /// Which method transfers on this connection use (probes the `sftp` subsystem once).
    pub async fn transfer_method(
        &self,
        cancel: &CancellationToken,
    ) -> Result<TransferMethod, SshError> {
        Ok(match self.backend(cancel).await? {
            Backend::Sftp(sftp) => {
                sftp.close().await;
                TransferMethod::Sftp
            }
            Backend::Exec(_) => TransferMethod::Exec,
        })
    }

    /// Writes `data` to the file `remote` (created or truncated) with permissions `mode`
    /// (e.g. `0o755` for a script). The parent directory must exist.
    pub async fn upload_bytes(
        &self,
        data: &[u8],
        remote: &str,
        mode: u32,
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<(), SshError> {
        let backend = self.backend(cancel).await?;
        let total = data.len() as u64;
        let mut reader = data;
        let mut tally = Tally::new(total, &mut progress);
        let work = backend.put(&mut reader, total, remote, mode, cancel, &mut tally);
        backend.finish(cancel, work).await
    }

    /// Uploads the local file `local` to exactly the path `remote` (created or truncated),
    /// with permissions `mode`, or the local file's own when `None`. The parent directory
    /// must exist.
    pub async fn upload_file(
        &self,
        local: &Path,
        remote: &str,
        mode: Option<u32>,
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<(), SshError> {
        let meta = local_metadata(local).await?;
        let mode = mode.unwrap_or_else(|| unix_mode(&meta));
        let backend = self.backend(cancel).await?;
        let total = meta.len();
        let mut tally = Tally::new(total, &mut progress);
        let work = backend.put_local(local, total, remote, mode, cancel, &mut tally);
        backend.finish(cancel, work).await
    }

    /// Uploads the contents of the local directory `local` into the remote directory
    /// `remote` (created with its parents when missing), recursively, keeping file and
    /// directory modes. Symbolic links are followed.
    pub async fn upload_dir(
        &self,
        local: &Path,
        remote: &str,
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<(), SshError> {
        let entries = walk_local(local).await?;
        let total = entries.iter().map(|e| e.size).sum();
        let backend = self.backend(cancel).await?;
        let mut tally = Tally::new(total, &mut progress);
        let work = backend.put_tree(local, &entries, remote, cancel, &mut tally);
        backend.finish(cancel, work).await
    }

    /// Uploads a file or directory the way Packer's `file` provisioner does, and returns
    /// the remote path it was written to:
    ///
    /// - a file goes to `remote`, or into it when `remote` ends with `/` or is an existing
    ///   directory;
    /// - a directory `src/` (trailing slash) has its contents put into `remote`; `src`
    ///   (no trailing slash) is put into `remote` as `remote/src`. A trailing slash on
    ///   `remote` does not matter; missing remote directories are created.
    pub async fn upload(
        &self,
        local: &Path,
        remote: &str,
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<String, SshError> {
        let meta = local_metadata(local).await?;
        if meta.is_dir() {
            let dest = if has_trailing_slash(local) {
                remote.to_string()
            } else {
                join_remote(remote, &local_basename(local)?)
            };
            self.upload_dir(local, &dest, cancel, progress).await?;
            return Ok(dest);
        }
        let backend = self.backend(cancel).await?;
        let into_dir = remote.ends_with('/') || backend.is_dir(remote, cancel).await?;
        let dest = if into_dir {
            join_remote(remote, &local_basename(local)?)
        } else {
            remote.to_string()
        };
        let total = meta.len();
        let mut tally = Tally::new(total, &mut progress);
        let work = backend.put_local(local, total, &dest, unix_mode(&meta), cancel, &mut tally);
        backend.finish(cancel, work).await?;
        Ok(dest)
    }

    /// Downloads the remote file `remote` to exactly the local path `local`, with the
    /// remote file's permissions.
    pub async fn download_file(
        &self,
        remote: &str,
        local: &Path,
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<(), SshError> {
        let backend = self.backend(cancel).await?;
        let work = async {
            let size = backend.size(remote).await?;
            let mut tally = Tally::new(size.unwrap_or(0), &mut progress);
            backend.get(remote, local, cancel, &mut tally).await
        };
        backend.finish(cancel, work).await
    }

    /// Downloads a file or directory with the same rules as [`Session::upload`], mirrored,
    /// and returns the local path it was written to:
    ///
    /// - a file goes to `local`, or into it when `local` ends with `/` or is an existing
    ///   directory;
    /// - a directory `dir/` has its contents put into `local`; `dir` is put into `local`
    ///   as `local/dir`. Missing local directories are created. Needs SFTP.
    pub async fn download(
        &self,
        remote: &str,
        local: &Path,
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<PathBuf, SshError> {
        let backend = self.backend(cancel).await?;
        let work = async {
            if backend.is_dir(remote, cancel).await? {
                let dest = if remote.ends_with('/') {
                    local.to_path_buf()
                } else {
                    local.join(remote_basename(remote))
                };
                let Backend::Sftp(sftp) = &backend else {
                    return Err(SshError::Remote {
                        what: "download the directory",
                        path: remote.to_string(),
                        reason: "downloading a directory needs the guest's SFTP subsystem \
                                 (Subsystem sftp in sshd_config); download its files one by \
                                 one or archive it with tar first"
                            .into(),
                    });
                };
                let files = sftp.walk_remote(remote).await?;
                let total = files.iter().map(|e| e.size).sum();
                let mut tally = Tally::new(total, &mut progress);
                create_local_dir(&dest).await?;
                for entry in &files {
                    let from = join_remote(remote, &entry.rel);
                    let to = dest.join(&entry.rel);
                    if entry.is_dir {
                        create_local_dir(&to).await?;
                    } else {
                        backend.get(&from, &to, cancel, &mut tally).await?;
                    }
                }
                Ok(dest)
            } else {
                let dest = if has_trailing_slash(local) || local.is_dir() {
                    local.join(remote_basename(remote))
                } else {
                    local.to_path_buf()
                };
                if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                    create_local_dir(parent).await?;
                }
                let size = backend.size(remote).await?;
                let mut tally = Tally::new(size.unwrap_or(0), &mut progress);
                backend.get(remote, &dest, cancel, &mut tally).await?;
                Ok(dest)
            }
        };
        backend.finish(cancel, work).await
    }

    /// An SFTP session, or exec when the guest refuses the subsystem (remembered for the
    /// rest of the connection).
    async fn backend(&self, cancel: &CancellationToken) -> Result<Backend<'_>, SshError> {
        if self.sftp_refused.load(Ordering::Relaxed) {
            return Ok(Backend::Exec(Exec::new(self)));
        }
        let open = async {
            match Sftp::open(self).await? {
                Some(sftp) => Ok(Backend::Sftp(sftp)),
                None => {
                    self.sftp_refused.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "{}: no SFTP subsystem; transfers use `cat` over exec",
                        self.addr()
                    );
                    Ok(Backend::Exec(Exec::new(self)))
                }
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(SshError::Cancelled),
            r = open => r,
        }
    }
}

/// One way of moving files to and from the guest.
trait Transport {
    /// Whether `remote` is a directory.
    async fn is_dir(&self, remote: &str, cancel: &CancellationToken) -> Result<bool, SshError>;

    /// The size of the remote file `remote`, when known in advance.
    async fn size(&self, remote: &str) -> Result<Option<u64>, SshError>;

    /// `mkdir -p remote`, then `chmod mode` on the last component if given.
    async fn mkdir_p(
        &self,
        remote: &str,
        mode: Option<u32>,
        cancel: &CancellationToken,
    ) -> Result<(), SshError>;

    /// Writes what `reader` yields (`size` bytes) to `remote` with `mode`.
    async fn put(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size: u64,
        remote: &str,
        mode: u32,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError>;

    /// Copies the remote file `remote` to the local file `local`.
    async fn get(
        &self,
        remote: &str,
        local: &Path,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError>;

    /// Runs a transfer, stopping it at cancel the way this transport can.
    async fn finish<T>(
        &self,
        cancel: &CancellationToken,
        work: impl Future<Output = Result<T, SshError>>,
    ) -> Result<T, SshError>;
}

/// The transport of a connection: SFTP, or exec when the guest refuses SFTP.
enum Backend<'s> {
    Sftp(Sftp<'s>),
    Exec(Exec<'s>),
}

impl Transport for Backend<'_> {
    async fn is_dir(&self, remote: &str, cancel: &CancellationToken) -> Result<bool, SshError> {
        match self {
            Backend::Sftp(t) => t.is_dir(remote, cancel).await,
            Backend::Exec(t) => t.is_dir(remote, cancel).await,
        }
    }

    async fn size(&self, remote: &str) -> Result<Option<u64>, SshError> {
        match self {
            Backend::Sftp(t) => t.size(remote).await,
            Backend::Exec(t) => t.size(remote).await,
        }
    }

    async fn mkdir_p(
        &self,
        remote: &str,
        mode: Option<u32>,
        cancel: &CancellationToken,
    ) -> Result<(), SshError> {
        match self {
            Backend::Sftp(t) => t.mkdir_p(remote, mode, cancel).await,
            Backend::Exec(t) => t.mkdir_p(remote, mode, cancel).await,
        }
    }

    async fn put(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size: u64,
        remote: &str,
        mode: u32,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        match self {
            Backend::Sftp(t) => t.put(reader, size, remote, mode, cancel, tally).await,
            Backend::Exec(t) => t.put(reader, size, remote, mode, cancel, tally).await,
        }
    }

    async fn get(
        &self,
        remote: &str,
        local: &Path,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        match self {
            Backend::Sftp(t) => t.get(remote, local, cancel, tally).await,
            Backend::Exec(t) => t.get(remote, local, cancel, tally).await,
        }
    }

    async fn finish<T>(
        &self,
        cancel: &CancellationToken,
        work: impl Future<Output = Result<T, SshError>>,
    ) -> Result<T, SshError> {
        match self {
            Backend::Sftp(t) => t.finish(cancel, work).await,
            Backend::Exec(t) => t.finish(cancel, work).await,
        }
    }
}

impl Backend<'_> {
    /// Uploads the local file `local` (`size` bytes) to `remote` with `mode`.
    async fn put_local(
        &self,
        local: &Path,
        size: u64,
        remote: &str,
        mode: u32,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(|source| SshError::Local {
                what: "could not read",
                path: local.to_path_buf(),
                source,
            })?;
        self.put(&mut file, size, remote, mode, cancel, tally).await
    }

    /// Uploads the tree `entries` of the local directory `local` into `remote`.
    async fn put_tree(
        &self,
        local: &Path,
        entries: &[LocalEntry],
        remote: &str,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        self.mkdir_p(remote, None, cancel).await?;
        // Directories first (parents before children), files after, modes last so that a
        // read-only directory does not stop its own files.
        for entry in entries.iter().filter(|e| e.is_dir) {
            self.mkdir_p(&join_remote(remote, &entry.rel), None, cancel)
                .await?;
        }
        for entry in entries.iter().filter(|e| !e.is_dir) {
            if cancel.is_cancelled() {
                return Err(SshError::Cancelled);
            }
            let to = join_remote(remote, &entry.rel);
            self.put_local(
                &local.join(&entry.rel),
                entry.size,
                &to,
                entry.mode,
                cancel,
                tally,
            )
            .await?;
        }
        for entry in entries.iter().filter(|e| e.is_dir).rev() {
            let to = join_remote(remote, &entry.rel);
            self.mkdir_p(&to, Some(entry.mode), cancel).await?;
        }
        Ok(())
    }
}

/// Progress across the files of one transfer.
struct Tally<'a> {
    done: u64,
    total: u64,
    report: Progress<'a>,
}

impl<'a> Tally<'a> {
    fn new(total: u64, report: Progress<'a>) -> Self {
        report(0, total);
        Self {
            done: 0,
            total,
            report,
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        // A file that grew since it was measured must not report more than 100 %.
        self.total = self.total.max(self.done);
        (self.report)(self.done, self.total);
    }
}

struct LocalEntry {
    /// Path relative to the root, with `/` separators.
    rel: String,
    is_dir: bool,
    size: u64,
    mode: u32,
}

/// Every entry under the local directory `root` (symbolic links followed), directories
/// before their contents, sorted by path.
async fn walk_local(root: &Path) -> Result<Vec<LocalEntry>, SshError> {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || walk_local_blocking(&root))
        .await
        .map_err(|e| SshError::Local {
            what: "could not list",
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })?
}

fn walk_local_blocking(root: &Path) -> Result<Vec<LocalEntry>, SshError> {
    let err = |path: &Path, source| SshError::Local {
        what: "could not read",
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(err(
                &dir,
                io::Error::other(format!(
                    "more than {MAX_DEPTH} directories deep (a symlink loop?)"
                )),
            ));
        }
        let listing = std::fs::read_dir(&dir).map_err(|e| err(&dir, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| err(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(err(
                    &path,
                    io::Error::other("the file name is not UTF-8, which SFTP cannot carry"),
                ));
            };
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // A dangling symbolic link: nothing to copy.
                Err(_) if entry.file_type().is_ok_and(|t| t.is_symlink()) => continue,
                Err(e) => return Err(err(&path, e)),
            };
            if meta.is_dir() {
                out.push(LocalEntry {
                    rel: child.clone(),
                    is_dir: true,
                    size: 0,
                    mode: unix_mode(&meta),
                });
                pending.push((path, child, depth + 1));
            } else if meta.is_file() {
                out.push(LocalEntry {
                    rel: child,
                    is_dir: false,
                    size: meta.len(),
                    mode: unix_mode(&meta),
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

async fn local_metadata(local: &Path) -> Result<std::fs::Metadata, SshError> {
    tokio::fs::metadata(local)
        .await
        .map_err(|source| SshError::Local {
            what: "could not read",
            path: local.to_path_buf(),
            source,
        })
}

async fn create_local_dir(dir: &Path) -> Result<(), SshError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| SshError::Local {
            what: "could not create the directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// The error for a local file a download could not write.
fn write_error(local: &Path, source: io::Error) -> SshError {
    SshError::Local {
        what: "could not write",
        path: local.to_path_buf(),
        source,
    }
}

async fn set_local_mode(path: &Path, mode: u32) -> Result<(), SshError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|source| SshError::Local {
            what: "could not set the mode of",
            path: path.to_path_buf(),
            source,
        })
}

fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

fn has_trailing_slash(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().ends_with(b"/")
}

/// The last component of a local path (`.` and `..` resolved).
fn local_basename(local: &Path) -> Result<String, SshError> {
    let name = match local.file_name() {
        Some(n) => n.to_os_string(),
        None => std::fs::canonicalize(local)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .ok_or_else(|| SshError::Local {
                what: "could not name",
                path: local.to_path_buf(),
                source: io::Error::other("the path has no last component"),
            })?,
    };
    name.into_string().map_err(|_| SshError::Local {
        what: "could not upload",
        path: local.to_path_buf(),
        source: io::Error::other("the file name is not UTF-8, which SFTP cannot carry"),
    })
}

/// The last component of a remote path (`/a/b/` → `b`).
fn remote_basename(remote: &str) -> String {
    remote
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("download")
        .to_string()
}

/// `dir/name`, without doubled slashes.
fn join_remote(dir: &str, name: &str) -> String {
    let name = name.trim_start_matches('/');
    if dir.is_empty() {
        return name.to_string();
    }
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_join_and_name() {
        assert_eq!(join_remote("/tmp", "a"), "/tmp/a");
        assert_eq!(join_remote("/tmp/", "a/b"), "/tmp/a/b");
        assert_eq!(join_remote("/", "a"), "/a");
        assert_eq!(join_remote("", "a"), "a");
        assert_eq!(remote_basename("/var/log/"), "log");
        assert_eq!(remote_basename("file"), "file");
    }

    #[test]
    fn trailing_slash_is_seen() {
        assert!(has_trailing_slash(Path::new("dir/")));
        assert!(!has_trailing_slash(Path::new("dir")));
        assert_eq!(local_basename(Path::new("some/dir/")).unwrap(), "dir");
    }
}
