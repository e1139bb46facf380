//! Transfers over plain commands on exec channels, for guests without an SFTP subsystem:
//! uploads are `cat > path` fed from the channel, `mkdir -p` and `chmod`; downloads are
//! `cat path`. Needs a POSIX shell with `cat`, `mkdir`, `chmod` and `test` on the guest.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::{Tally, Transport, write_error};
use crate::ssh::error::SshError;
use crate::ssh::session::{ExitStatus, Session};

/// Shell commands on a connection.
pub(super) struct Exec<'s> {
    session: &'s Session,
}

impl<'s> Exec<'s> {
    pub(super) fn new(session: &'s Session) -> Self {
        Self { session }
    }

    /// Runs a helper command; a non-zero exit is an error naming `what` and `path`, with
    /// the command's stderr.
    async fn helper(
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
            .session
            .run(command, false, stdin, cancel, |stream, data| match stream {
                crate::base::event::Stream::Stderr => {
                    if stderr.len() < 4096 {
                        stderr.extend_from_slice(data);
                    }
                }
                _ => on_stdout(data),
            })
            .await?;
        match status {
            ExitStatus::Code(0) => Ok(()),
            ExitStatus::ConnectionLost => Err(self.session.lost(&format!("transferring `{path}`"))),
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
}

impl Transport for Exec<'_> {
    async fn is_dir(&self, remote: &str, cancel: &CancellationToken) -> Result<bool, SshError> {
        let out = self
            .session
            .exec_capture(&format!("test -d {}", sh_quote(remote)), None, cancel)
            .await?;
        match out.status {
            ExitStatus::ConnectionLost => Err(self.session.lost(&format!("looking at `{remote}`"))),
            status => Ok(status.success()),
        }
    }

    /// Unknown: `cat` tells nothing in advance.
    async fn size(&self, _remote: &str) -> Result<Option<u64>, SshError> {
        Ok(None)
    }

    async fn mkdir_p(
        &self,
        remote: &str,
        mode: Option<u32>,
        cancel: &CancellationToken,
    ) -> Result<(), SshError> {
        let mut command = format!("mkdir -p -- {}", sh_quote(remote));
        if let Some(mode) = mode {
            command += &format!(" && chmod {:o} -- {}", mode & 0o7777, sh_quote(remote));
        }
        self.helper(
            &command,
            None,
            "create the directory",
            remote,
            cancel,
            |_| {},
        )
        .await
    }

    async fn put(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
        _size: u64,
        remote: &str,
        mode: u32,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let mode = mode & 0o7777;
        let q = sh_quote(remote);
        let command = format!("umask 077 && cat > {q} && chmod {mode:o} -- {q}");
        let mut counting = Counting {
            inner: reader,
            tally,
        };
        self.helper(
            &command,
            Some(&mut counting),
            "write",
            remote,
            cancel,
            |_| {},
        )
        .await
    }

    async fn get(
        &self,
        remote: &str,
        local: &Path,
        cancel: &CancellationToken,
        tally: &mut Tally<'_>,
    ) -> Result<(), SshError> {
        let local_err = |source| write_error(local, source);
        let mut to = std::fs::File::create(local).map_err(local_err)?;
        let mut write_error = None;
        let command = format!("cat -- {}", sh_quote(remote));
        self.helper(&command, None, "read", remote, cancel, |data| {
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

    /// The commands themselves watch `cancel` and close their channels.
    async fn finish<T>(
        &self,
        _cancel: &CancellationToken,
        work: impl Future<Output = Result<T, SshError>>,
    ) -> Result<T, SshError> {
        work.await
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

/// `s` quoted for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("/tmp/a b"), "'/tmp/a b'");
    }
}
