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

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::error::SshError;
use super::session::{ExitStatus, Session};

/// Size of the pieces files are read and written in (and progress reported at).
const CHUNK: usize = 256 * 1024;

/// How deep a local directory tree may go (guards against symlink loops).
const MAX_DEPTH: usize = 64;

/// Seconds SFTP waits for the guest to answer one request (a slow guest under TCG can
/// take a while to write a large chunk).
const SFTP_REQUEST_TIMEOUT_SECS: u64 = 120;

/// How transfers reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMethod {
    /// The `sftp` subsystem.
    Sftp,
    /// Shell commands over exec (`cat > path`), when the guest has no SFTP subsystem.
    Exec,
}

type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

enum Backend {
    Sftp(SftpSession),
    Exec,
}

impl Session {
    /// Which method transfers on this connection use (probes the `sftp` subsystem once).
    pub async fn transfer_method(
        &self,
        cancel: &CancellationToken,
    ) -> Result<TransferMethod, SshError> {
        Ok(match self.backend(cancel).await? {
            Backend::Sftp(sftp) => {
                let _ = sftp.close().await;
                TransferMethod::Sftp
            }
            Backend::Exec => TransferMethod::Exec,
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
        let work = self.put(
            &backend,
            &mut reader,
            total,
            remote,
            mode,
            cancel,
            &mut tally,
        );
        finish(&backend, cancel, work).await
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
        let work = self.put_local(&backend, local, total, remote, mode, cancel, &mut tally);
        finish(&backend, cancel, work).await
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
        let work = self.put_tree(&backend, local, &entries, remote, cancel, &mut tally);
        finish(&backend, cancel, work).await
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
        let into_dir =
            remote.ends_with('/') || self.remote_is_dir(&backend, remote, cancel).await?;
        let dest = if into_dir {
            join_remote(remote, &local_basename(local)?)
        } else {
            remote.to_string()
        };
        let total = meta.len();
        let mut tally = Tally::new(total, &mut progress);
        let work = self.put_local(
            &backend,
            local,
            total,
            &dest,
            unix_mode(&meta),
            cancel,
            &mut tally,
        );
        finish(&backend, cancel, work).await?;
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
            let size = self.remote_size(&backend, remote, cancel).await?;
            let mut tally = Tally::new(size.unwrap_or(0), &mut progress);
            self.get(&backend, remote, local, cancel, &mut tally).await
        };
        finish(&backend, cancel, work).await
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
            if self.remote_is_dir(&backend, remote, cancel).await? {
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
                let files = self.walk_remote(sftp, remote).await?;
                let total = files.iter().map(|e| e.size).sum();
                let mut tally = Tally::new(total, &mut progress);
                create_local_dir(&dest).await?;
                for entry in &files {
                    let from = join_remote(remote, &entry.rel);
                    let to = dest.join(&entry.rel);
                    if entry.is_dir {
                        create_local_dir(&to).await?;
                    } else {
                        self.get(&backend, &from, &to, cancel, &mut tally).await?;
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
                let size = self.remote_size(&backend, remote, cancel).await?;
                let mut tally = Tally::new(size.unwrap_or(0), &mut progress);
                self.get(&backend, remote, &dest, cancel, &mut tally)
                    .await?;
                Ok(dest)
            }
        };
        finish(&backend, cancel, work).await
    }

    // ---- backends ------------------------------------------------------------------------

    /// An SFTP session, or `Exec` when the guest refuses the subsystem.
    async fn backend(&self, cancel: &CancellationToken) -> Result<Backend, SshError> {
        if self.sftp_refused.load(Ordering::Relaxed) {
            return Ok(Backend::Exec);
        }
        let open = async {
            let doing = "opening an SFTP session";
            let mut channel = self.open_channel(doing).await?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|_| self.lost(doing))?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) => {
                        let _ = channel.close().await;
                        self.sftp_refused.store(true, Ordering::Relaxed);
                        tracing::info!(
                            "{}: no SFTP subsystem; transfers use `cat` over exec",
                            self.addr()
                        );
                        return Ok(Backend::Exec);
                    }
                    None => return Err(self.lost(doing)),
                    Some(_) => {}
                }
            }
            let config = russh_sftp::client::Config {
                request_timeout_secs: SFTP_REQUEST_TIMEOUT_SECS,
                ..Default::default()
            };
            let sftp = SftpSession::new_with_config(channel.into_stream(), config)
                .await
                .map_err(|e| self.sftp_error("start SFTP on", "the guest", e))?;
            Ok(Backend::Sftp(sftp))
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(SshError::Cancelled),
            r = open => r,
        }
    }

    fn sftp_error(
        &self,
        what: &'static str,
        path: &str,
        e: russh_sftp::client::error::Error,
    ) -> SshError {
        if self.is_closed() {
            return self.lost(&format!("transferring `{path}`"));
        }
        SshError::Remote {
            what,
            path: path.to_string(),
            reason: sftp_reason(&e),
        }
    }

    /// Runs a helper command of the exec fallback; a non-zero exit is an error naming
    /// `what` and `path`, with the command's stderr.
    async fn exec_helper(
        &self,
        command: &str,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        what: &'static str,
        path: &str,
        cancel: &CancellationToken,
        mut on_stdout: impl FnMut(&[u8]),
    ) -> Result<(), SshError> {
        let mut stderr = Vec::new();
        let status = self
            .run(command, false, stdin, cancel, |stream, data| match stream {
                crate::build::event::Stream::Stderr => {
                    if stderr.len() < 4096 {
                        stderr.extend_from_slice(data);
                    }
                }
                _ => on_stdout(data),
            })
            .await?;
        match status {
            ExitStatus::Code(0) => Ok(()),
            ExitStatus::ConnectionLost => Err(self.lost(&format!("transferring `{path}`"))),
            other => {
                let text = String::from_utf8_lossy(&stderr).trim().to_string();
                Err(SshError::Remote {
                    what,
                    path: path.to_string(),
                    reason: if text.is_empty() {
                        other.to_string()
                    } else {
                        format!("{text} ({other})")
                    },
                })
            }
        }
    }

    async fn remote_is_dir(
        &self,
        backend: &Backend,
        remote: &str,
        cancel: &CancellationToken,
    ) -> Result<bool, SshError> {
        match backend {
            Backend::Sftp(sftp) => Ok(sftp.metadata(remote).await.is_ok_and(|m| m.is_dir())),
            Backend::Exec => {
                let out = self
                    .exec_capture(&format!("test -d {}", sh_quote(remote)), None, cancel)
                    .await?;
                match out.status {
                    ExitStatus::ConnectionLost => Err(self.lost(&format!("looking at `{remote}`"))),
                    status => Ok(status.success()),
                }
            }
        }
    }

    async fn remote_size(
        &self,
        backend: &Backend,
        remote: &str,
        _cancel: &CancellationToken,
    ) -> Result<Option<u64>, SshError> {
        match backend {
            Backend::Sftp(sftp) => {
                let meta = sftp
                    .metadata(remote)
                    .await
                    .map_err(|e| self.sftp_error("read", remote, e))?;
                Ok(meta.size)
            }
            Backend::Exec => Ok(None),
        }
    }

    /// `mkdir -p remote`, then `chmod mode` on the last component if given.
    async fn mkdir_p(
        &self,
        backend: &Backend,
        remote: &str,
        mode: Option<u32>,
        cancel: &CancellationToken,
    ) -> Result<(), SshError> {
        match backend {
            Backend::Sftp(sftp) => {
                let mut path = String::new();
                if remote.starts_with('/') {
                    path.push('/');
                }
                for part in remote.split('/').filter(|p| !p.is_empty() && *p != ".") {
                    if !path.is_empty() && !path.ends_with('/') {
                        path.push('/');
                    }
                    path.push_str(part);
                    match sftp.metadata(path.as_str()).await {
                        Ok(m) if m.is_dir() => continue,
                        Ok(_) => {
                            return Err(SshError::Remote {
                                what: "create the directory",
                                path: path.clone(),
                                reason: "a file of that name is in the way".into(),
                            });
                        }
                        Err(_) => {}
                    }
                    if let Err(e) = sftp.create_dir(path.as_str()).await {
                        // Someone else may have made it in the meantime.
                        if !sftp.metadata(path.as_str()).await.is_ok_and(|m| m.is_dir()) {
                            return Err(self.sftp_error("create the directory", &path, e));
                        }
                    }
                }
                if let Some(mode) = mode {
                    let attrs = FileAttributes {
                        permissions: Some(mode & 0o7777),
                        ..FileAttributes::empty()
                    };
                    sftp.set_metadata(remote, attrs)
                        .await
                        .map_err(|e| self.sftp_error("set the mode of", remote, e))?;
                }
                Ok(())
            }
            Backend::Exec => {
                let mut command = format!("mkdir -p -- {}", sh_quote(remote));
                if let Some(mode) = mode {
                    command += &format!(" && chmod {:o} -- {}", mode & 0o7777, sh_quote(remote));
                }
                self.exec_helper(
                    &command,
                    None,
                    "create the directory",
                    remote,
                    cancel,
                    |_| {},
                )
                .await
            }
        }
    }

    /// Writes what `reader` yields (`size` bytes) to `remote` with `mode`.
    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        backend: &Backend,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size: u64,
        remote: &str,
        mode: u32,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let mode = mode & 0o7777;
        match backend {
            Backend::Sftp(sftp) => {
                let attrs = FileAttributes {
                    permissions: Some(mode),
                    ..FileAttributes::empty()
                };
                let mut file = sftp
                    .open_with_flags_and_attributes(
                        remote,
                        OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                        attrs.clone(),
                    )
                    .await
                    .map_err(|e| self.sftp_error("create", remote, e))?;
                let mut buf = vec![0u8; CHUNK];
                let mut sent = 0u64;
                loop {
                    let n = reader.read(&mut buf).await.map_err(|e| SshError::Remote {
                        what: "upload",
                        path: remote.to_string(),
                        reason: format!("reading the source failed: {e}"),
                    })?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n])
                        .await
                        .map_err(|e| self.io_error("write", remote, e))?;
                    sent += n as u64;
                    tally.add(n as u64);
                }
                file.shutdown()
                    .await
                    .map_err(|e| self.io_error("write", remote, e))?;
                if sent != size {
                    tracing::debug!("{remote}: expected {size} bytes, sent {sent}");
                }
                // The mode given at creation is subject to the server's umask, and an
                // existing file keeps its old mode: set it explicitly.
                sftp.set_metadata(remote, attrs)
                    .await
                    .map_err(|e| self.sftp_error("set the mode of", remote, e))
            }
            Backend::Exec => {
                let q = sh_quote(remote);
                let command = format!("umask 077 && cat > {q} && chmod {mode:o} -- {q}");
                let mut counting = Counting {
                    inner: reader,
                    tally,
                };
                self.exec_helper(
                    &command,
                    Some(&mut counting),
                    "write",
                    remote,
                    cancel,
                    |_| {},
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_local(
        &self,
        backend: &Backend,
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
        self.put(backend, &mut file, size, remote, mode, cancel, tally)
            .await
    }

    async fn put_tree(
        &self,
        backend: &Backend,
        local: &Path,
        entries: &[LocalEntry],
        remote: &str,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        self.mkdir_p(backend, remote, None, cancel).await?;
        // Directories first (parents before children), files after, modes last so that a
        // read-only directory does not stop its own files.
        for entry in entries.iter().filter(|e| e.is_dir) {
            self.mkdir_p(backend, &join_remote(remote, &entry.rel), None, cancel)
                .await?;
        }
        for entry in entries.iter().filter(|e| !e.is_dir) {
            if cancel.is_cancelled() {
                return Err(SshError::Cancelled);
            }
            let to = join_remote(remote, &entry.rel);
            self.put_local(
                backend,
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
            self.mkdir_p(backend, &to, Some(entry.mode), cancel).await?;
        }
        Ok(())
    }

    /// Copies the remote file `remote` to the local file `local`.
    async fn get(
        &self,
        backend: &Backend,
        remote: &str,
        local: &Path,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let local_err = |source| SshError::Local {
            what: "could not write",
            path: local.to_path_buf(),
            source,
        };
        match backend {
            Backend::Sftp(sftp) => {
                let meta = sftp
                    .metadata(remote)
                    .await
                    .map_err(|e| self.sftp_error("read", remote, e))?;
                let mut from = sftp
                    .open_with_flags(remote, OpenFlags::READ)
                    .await
                    .map_err(|e| self.sftp_error("read", remote, e))?;
                let mut to = tokio::fs::File::create(local).await.map_err(local_err)?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = from
                        .read(&mut buf)
                        .await
                        .map_err(|e| self.io_error("read", remote, e))?;
                    if n == 0 {
                        break;
                    }
                    to.write_all(&buf[..n]).await.map_err(local_err)?;
                    tally.add(n as u64);
                }
                to.flush().await.map_err(local_err)?;
                let _ = from.shutdown().await;
                if let Some(mode) = meta.permissions {
                    set_local_mode(local, mode & 0o7777).await?;
                }
                Ok(())
            }
            Backend::Exec => {
                let mut to = std::fs::File::create(local).map_err(local_err)?;
                let mut write_error = None;
                let command = format!("cat -- {}", sh_quote(remote));
                self.exec_helper(&command, None, "read", remote, cancel, |data| {
                    use std::io::Write;
                    if write_error.is_none() {
                        match to.write_all(data) {
                            Ok(()) => tally.add(data.len() as u64),
                            Err(e) => write_error = Some(e),
                        }
                    }
                })
                .await?;
                match write_error {
                    Some(e) => Err(local_err(e)),
                    None => Ok(()),
                }
            }
        }
    }

    fn io_error(&self, what: &'static str, path: &str, e: io::Error) -> SshError {
        if self.is_closed() {
            return self.lost(&format!("transferring `{path}`"));
        }
        SshError::Remote {
            what,
            path: path.to_string(),
            reason: e.to_string(),
        }
    }

    /// Every entry under the remote directory `root` (directories before their contents),
    /// symbolic links followed.
    async fn walk_remote(
        &self,
        sftp: &SftpSession,
        root: &str,
    ) -> Result<Vec<RemoteEntry>, SshError> {
        let mut out = Vec::new();
        let mut pending = vec![(String::new(), 0usize)];
        while let Some((rel, depth)) = pending.pop() {
            if depth > MAX_DEPTH {
                return Err(SshError::Remote {
                    what: "download",
                    path: root.to_string(),
                    reason: format!(
                        "it is more than {MAX_DEPTH} directories deep (a symlink loop?)"
                    ),
                });
            }
            let dir = if rel.is_empty() {
                root.to_string()
            } else {
                join_remote(root, &rel)
            };
            let listing = sftp
                .read_dir(dir.as_str())
                .await
                .map_err(|e| self.sftp_error("list", &dir, e))?;
            let mut entries: Vec<_> = listing.collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let child = if rel.is_empty() {
                    entry.file_name()
                } else {
                    format!("{rel}/{}", entry.file_name())
                };
                let mut meta = entry.metadata();
                if meta.is_symlink() {
                    match sftp.metadata(join_remote(root, &child)).await {
                        Ok(target) => meta = target,
                        Err(_) => continue, // a dangling link: nothing to copy
                    }
                }
                if meta.is_dir() {
                    out.push(RemoteEntry {
                        rel: child.clone(),
                        is_dir: true,
                        size: 0,
                    });
                    pending.push((child, depth + 1));
                } else if meta.is_regular() {
                    out.push(RemoteEntry {
                        rel: child,
                        is_dir: false,
                        size: meta.size.unwrap_or(0),
                    });
                }
            }
        }
        // Parents before children for the local mkdirs.
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }
}

/// What an SFTP error means, in words a user can act on.
fn sftp_reason(e: &russh_sftp::client::error::Error) -> String {
    use russh_sftp::client::error::Error;
    match e {
        Error::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => {
                "no such file or directory (does its directory exist on the guest?)".into()
            }
            StatusCode::PermissionDenied => "permission denied (can the SSH user reach it? \
                                             upload to /tmp and move it with sudo in a shell \
                                             provisioner)"
                .into(),
            code if status.error_message.is_empty() => code.to_string(),
            _ => status.error_message.clone(),
        },
        Error::Timeout => format!("the guest did not answer within {SFTP_REQUEST_TIMEOUT_SECS} s"),
        other => other.to_string(),
    }
}

/// Runs a transfer: over SFTP the whole thing stops at cancel (dropping SFTP requests is
/// safe); over exec the commands themselves watch `cancel` and close their channels.
async fn finish<T>(
    backend: &Backend,
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T, SshError>>,
) -> Result<T, SshError> {
    match backend {
        Backend::Sftp(_) => tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(SshError::Cancelled),
            r = work => r,
        },
        Backend::Exec => work.await,
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

/// Counts what passes through to the progress tally.
struct Counting<'r, 't, 'p> {
    inner: &'r mut (dyn AsyncRead + Unpin + Send),
    tally: &'t mut Tally<'p>,
}

impl AsyncRead for Counting<'_, '_, '_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let n = buf.filled().len() - before;
            if n > 0 {
                this.tally.add(n as u64);
            }
        }
        poll
    }
}

struct LocalEntry {
    /// Path relative to the root, with `/` separators.
    rel: String,
    is_dir: bool,
    size: u64,
    mode: u32,
}

struct RemoteEntry {
    rel: String,
    is_dir: bool,
    size: u64,
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

/// `s` quoted for a POSIX shell.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
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
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("/tmp/a b"), "'/tmp/a b'");
    }

    #[test]
    fn trailing_slash_is_seen() {
        assert!(has_trailing_slash(Path::new("dir/")));
        assert!(!has_trailing_slash(Path::new("dir")));
        assert_eq!(local_basename(Path::new("some/dir/")).unwrap(), "dir");
    }
}
