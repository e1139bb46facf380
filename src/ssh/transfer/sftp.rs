//! Transfers over the guest's `sftp` subsystem: the way kiln uses whenever the guest offers
//! it, and the only one that can list (and so download) a remote directory.

use std::io;
use std::path::Path;

use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{MAX_DEPTH, Tally, Transport, join_remote, set_local_mode, write_error};
use crate::ssh::error::SshError;
use crate::ssh::session::Session;

/// Size of the pieces files are read and written in (and progress reported at).
const CHUNK: usize = 256 * 1024;

/// Seconds SFTP waits for the guest to answer one request (a slow guest under TCG can
/// take a while to write a large chunk).
const SFTP_REQUEST_TIMEOUT_SECS: u64 = 120;

/// An SFTP session on a connection.
pub(super) struct Sftp<'s> {
    session: &'s Session,
    sftp: SftpSession,
}

/// An entry of a remote directory tree.
pub(super) struct RemoteEntry {
    pub(super) rel: String,
    pub(super) is_dir: bool,
    pub(super) size: u64,
}

impl<'s> Sftp<'s> {
    /// Opens an SFTP session, or `None` when the guest refuses the subsystem.
    pub(super) async fn open(session: &'s Session) -> Result<Option<Self>, SshError> {
        let doing = "opening an SFTP session";
        let mut channel = session.open_channel(doing).await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|_| session.lost(doing))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) => {
                    let _ = channel.close().await;
                    return Ok(None);
                }
                None => return Err(session.lost(doing)),
                Some(_) => {}
            }
        }
        let config = russh_sftp::client::Config {
            request_timeout_secs: SFTP_REQUEST_TIMEOUT_SECS,
            ..Default::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| sftp_error(session, "start SFTP on", "the guest", e))?;
        Ok(Some(Self { session, sftp }))
    }

    /// Ends the SFTP session.
    pub(super) async fn close(self) {
        let _ = self.sftp.close().await;
    }

    fn sftp_error(
        &self,
        what: &'static str,
        path: &str,
        e: russh_sftp::client::error::Error,
    ) -> SshError {
        sftp_error(self.session, what, path, e)
    }

    fn io_error(&self, what: &'static str, path: &str, e: io::Error) -> SshError {
        if self.session.is_closed() {
            return self.session.lost(&format!("transferring `{path}`"));
        }
        SshError::Remote {
            what,
            path: path.to_string(),
            reason: e.to_string(),
        }
    }

    /// Every entry under the remote directory `root` (directories before their contents),
    /// symbolic links followed.
    pub(super) async fn walk_remote(&self, root: &str) -> Result<Vec<RemoteEntry>, SshError> {
        let sftp = &self.sftp;
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

impl Transport for Sftp<'_> {
    async fn is_dir(&self, remote: &str, _cancel: &CancellationToken) -> Result<bool, SshError> {
        Ok(self.sftp.metadata(remote).await.is_ok_and(|m| m.is_dir()))
    }

    async fn size(&self, remote: &str) -> Result<Option<u64>, SshError> {
        let meta = self
            .sftp
            .metadata(remote)
            .await
            .map_err(|e| self.sftp_error("read", remote, e))?;
        Ok(meta.size)
    }

    async fn mkdir_p(
        &self,
        remote: &str,
        mode: Option<u32>,
        _cancel: &CancellationToken,
    ) -> Result<(), SshError> {
        let sftp = &self.sftp;
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

    async fn put(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        size: u64,
        remote: &str,
        mode: u32,
        _cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let mode = mode & 0o7777;
        let sftp = &self.sftp;
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

    async fn get(
        &self,
        remote: &str,
        local: &Path,
        _cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let local_err = |source| write_error(local, source);
        let sftp = &self.sftp;
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

    /// The whole transfer stops at cancel (dropping SFTP requests is safe).
    async fn finish<T>(
        &self,
        cancel: &CancellationToken,
        work: impl Future<Output = Result<T, SshError>>,
    ) -> Result<T, SshError> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(SshError::Cancelled),
            r = work => r,
        }
    }
}

fn sftp_error(
    session: &Session,
    what: &'static str,
    path: &str,
    e: russh_sftp::client::error::Error,
) -> SshError {
    if session.is_closed() {
        return session.lost(&format!("transferring `{path}`"));
    }
    SshError::Remote {
        what,
        path: path.to_string(),
        reason: sftp_reason(&e),
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
