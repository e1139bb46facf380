//! An authenticated SSH connection to the guest, and running commands on it with their
//! output streamed line by line.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig, client};
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use super::connect::ClientHandler;
use super::error::SshError;
use super::keys::fingerprint;
use crate::base::event::Stream;

/// A line longer than this is passed on in pieces of this size (a binary stream without
/// newlines must not grow a buffer without bound).
pub const MAX_LINE: usize = 64 * 1024;

/// How long kiln waits for the server to take a channel request (close, signal) when
/// cancelling, before it gives up on a polite close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u32),
    /// It was killed by a signal (`KILL`, `TERM`, … without the `SIG` prefix).
    Signal {
        /// The signal's name.
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
        /// The server's message, often empty.
        message: String,
    },
    /// The connection (or the channel) closed before the server said how the command
    /// ended: the guest rebooted, shut down, or sshd died. Provisioners with
    /// `expect_disconnect` treat this as success.
    ConnectionLost,
}

impl ExitStatus {
    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code, if the command exited.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }

    /// Whether the connection was lost before the command's end was known.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, ExitStatus::ConnectionLost)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal {
                name,
                core_dumped,
                message,
            } => {
                write!(f, "killed by signal {name}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ExitStatus::ConnectionLost => {
                f.write_str("the connection was lost before the command finished")
            }
        }
    }
}

/// Options of [`Session::exec_with`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ExecOptions {
    /// Request a pseudo-terminal (`ssh_pty`). Output then comes as one stream (stdout),
    /// and closing the channel on cancel hangs up the command.
    pub pty: bool,
}

impl ExecOptions {
    /// Options with a pseudo-terminal requested or not.
    pub fn with_pty(pty: bool) -> Self {
        Self { pty }
    }
}

/// The captured result of [`Session::exec_capture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// An authenticated SSH connection to the guest. Commands and transfers each use their own
/// channel, so several may run at once. Dropping it closes the connection once no channel
/// is left.
pub struct Session {
    handle: client::Handle<ClientHandler>,
    addr: String,
    user: String,
    host_key: PublicKey,
    /// Set once the guest refused the `sftp` subsystem: transfers then go over exec.
    pub(crate) sftp_refused: AtomicBool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("host_key", &fingerprint(&self.host_key))
            .field("closed", &self.handle.is_closed())
            .finish()
    }
}

impl Session {
    pub(crate) fn new(
        handle: client::Handle<ClientHandler>,
        addr: String,
        user: String,
        host_key: PublicKey,
    ) -> Self {
        Self {
            handle,
            addr,
            user,
            host_key,
            sftp_refused: AtomicBool::new(false),
        }
    }

    /// The server address (`host:port`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The user kiln is logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host key the server proved it holds.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// Whether the connection is gone (the guest went away, or it was closed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            self.handle
                .disconnect(russh::Disconnect::ByApplication, "", "en"),
        )
        .await;
    }

    /// Runs `command` (through the login shell, as `ssh host command` does) and streams its
    /// output to `sink` line by line, stdout and stderr apart, in the order they arrive.
    /// Lines lose their `\n` (and a `\r` before it); invalid UTF-8 is replaced; a last line
    /// without a newline is passed on at the end. Returns how the command ended;
    /// a connection lost midway is [`ExitStatus::ConnectionLost`], not an error.
    pub async fn exec(
        &self,
        command: &str,
        sink: impl FnMut(Stream, &str),
    ) -> Result<ExitStatus, SshError> {
        self.exec_with(
            command,
            &ExecOptions::default(),
            &CancellationToken::new(),
            sink,
        )
        .await
    }

    /// [`Session::exec`] with options and a cancellation token. On cancel, kiln asks sshd
    /// to send `TERM` to the command, closes the channel and returns
    /// [`SshError::Cancelled`] promptly. Closing the channel hangs up a command that has a
    /// pty; without one, only the `TERM` stops it, which OpenSSH delivers to non-root
    /// users only (for root it refuses signal requests): such a command may run on until
    /// it writes or the guest goes away.
    pub async fn exec_with(
        &self,
        command: &str,
        options: &ExecOptions,
        cancel: &CancellationToken,
        mut sink: impl FnMut(Stream, &str),
    ) -> Result<ExitStatus, SshError> {
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        let status = self
            .run(
                command,
                options.pty,
                None,
                cancel,
                |stream, data| match stream {
                    Stream::Stderr => err.push(data, |l| sink(Stream::Stderr, l)),
                    _ => out.push(data, |l| sink(Stream::Stdout, l)),
                },
            )
            .await?;
        out.finish(|l| sink(Stream::Stdout, l));
        err.finish(|l| sink(Stream::Stderr, l));
        Ok(status)
    }

    /// Runs `command`, feeding it `stdin` (then end of file), and returns its output as
    /// bytes. For small outputs (checksums, listings); use [`Session::exec`] for logs.
    pub async fn exec_capture(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cancel: &CancellationToken,
    ) -> Result<Output, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut input = stdin;
        let reader = input
            .as_mut()
            .map(|b| b as &mut (dyn AsyncRead + Unpin + Send));
        let status = self
            .run(
                command,
                false,
                reader,
                cancel,
                |stream, data| match stream {
                    Stream::Stderr => stderr.extend_from_slice(data),
                    _ => stdout.extend_from_slice(data),
                },
            )
            .await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Opens a session channel, mapping a dead connection to [`SshError::ConnectionLost`].
    pub(crate) async fn open_channel(
        &self,
        doing: &str,
    ) -> Result<russh::Channel<client::Msg>, SshError> {
        self.handle.channel_open_session().await.map_err(|e| {
            if self.handle.is_closed() {
                self.lost(doing)
            } else {
                SshError::Channel {
                    what: format!("open a channel for {doing}"),
                    reason: e.to_string(),
                }
            }
        })
    }

    pub(crate) fn lost(&self, doing: &str) -> SshError {
        SshError::ConnectionLost {
            addr: self.addr.clone(),
            doing: doing.to_string(),
        }
    }

    /// The engine under `exec*`: raw chunks to `on_data`, `stdin` copied in concurrently.
    pub(crate) async fn run(
        &self,
        command: &str,
        pty: bool,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
        cancel: &CancellationToken,
        mut on_data: impl FnMut(Stream, &[u8]),
    ) -> Result<ExitStatus, SshError> {
        let doing = "starting a command";
        let channel = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(SshError::Cancelled),
            c = self.open_channel(doing) => c?,
        };
        let (mut rd, wr) = channel.split();
        let started = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(SshError::Cancelled),
            r = self.start(&mut rd, &wr, command, pty) => r,
        };
        if let Err(e) = started {
            close_channel(&wr, false).await;
            return Err(e);
        }
        let feed = async {
            if let Some(input) = stdin {
                // A command that exits without reading all of it closes the channel; its
                // exit status says how it ended, so a failed write is not an error here.
                let _ = wr.data(input).await;
            }
            // End of input, as `ssh host cmd </dev/null` sends: a script that reads stdin
            // by mistake (a prompt) gets end of file instead of hanging the build.
            let _ = wr.eof().await;
        };
        let read = read_until_closed(&mut rd, &mut on_data);
        let finished = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            (_, status) = async { tokio::join!(feed, read) } => Some(status),
        };
        match finished {
            Some(status) => Ok(status),
            None => {
                close_channel(&wr, true).await;
                Err(SshError::Cancelled)
            }
        }
    }

    /// Requests the pty (if asked) and the command, and waits for the server's answers.
    async fn start(
        &self,
        rd: &mut ChannelReadHalf,
        wr: &ChannelWriteHalf<client::Msg>,
        command: &str,
        pty: bool,
    ) -> Result<(), SshError> {
        let doing = "starting a command";
        if pty {
            wr.request_pty(true, "vt100", 80, 24, 0, 0, &[])
                .await
                .map_err(|_| self.lost(doing))?;
            self.reply(rd, "allocate a pseudo-terminal (ssh_pty)")
                .await?;
        }
        wr.exec(true, command).await.map_err(|_| self.lost(doing))?;
        self.reply(rd, "run the command").await
    }

    /// Waits for the answer to a request sent with `want_reply`.
    pub(crate) async fn reply(&self, rd: &mut ChannelReadHalf, what: &str) -> Result<(), SshError> {
        loop {
            match rd.wait().await {
                Some(ChannelMsg::Success) => return Ok(()),
                Some(ChannelMsg::Failure) => {
                    return Err(SshError::Channel {
                        what: what.to_string(),
                        reason: "the request was refused".into(),
                    });
                }
                Some(ChannelMsg::Close) | None => {
                    return Err(if self.handle.is_closed() {
                        self.lost(what)
                    } else {
                        SshError::Channel {
                            what: what.to_string(),
                            reason: "the channel was closed".into(),
                        }
                    });
                }
                Some(_) => {}
            }
        }
    }
}

/// Reads a channel until it closes; returns how the command ended.
async fn read_until_closed(
    rd: &mut ChannelReadHalf,
    on_data: &mut impl FnMut(Stream, &[u8]),
) -> ExitStatus {
    let mut status = None;
    while let Some(msg) = rd.wait().await {
        match msg {
            ChannelMsg::Data { data } => on_data(Stream::Stdout, &data),
            ChannelMsg::ExtendedData { data, ext: 1 } => on_data(Stream::Stderr, &data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(ExitStatus::Code(exit_status)),
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                ..
            } => {
                status = Some(ExitStatus::Signal {
                    name: signal_name_of(&signal_name),
                    core_dumped,
                    message: error_message,
                });
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    status.unwrap_or(ExitStatus::ConnectionLost)
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// Closes a channel without waiting long: `TERM` first when the command may still run.
async fn close_channel(wr: &ChannelWriteHalf<client::Msg>, terminate: bool) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if terminate {
            let _ = wr.signal(Sig::TERM).await;
        }
        let _ = wr.eof().await;
        let _ = wr.close().await;
    })
    .await;
}

/// Cuts a byte stream into lines, across chunk boundaries.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds `data`; passes every completed line to `emit`.
    pub(crate) fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&str)) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..end]);
            emit_line(&self.pending, &mut emit);
            self.pending.clear();
            data = &data[end + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() > MAX_LINE {
            // Cut at a character boundary when the text is UTF-8.
            let mut cut = MAX_LINE;
            while cut > MAX_LINE - 4 && (self.pending[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            emit_line(&self.pending[..cut], &mut emit);
            self.pending.drain(..cut);
        }
    }

    /// Passes on what is left (a last line without a newline).
    pub(crate) fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            emit_line(&self.pending, &mut emit);
            self.pending.clear();
        }
    }
}

fn emit_line(line: &[u8], emit: &mut impl FnMut(&str)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    emit(&String::from_utf8_lossy(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for c in chunks {
            s.push(c, |l| lines.push(l.to_string()));
        }
        s.finish(|l| lines.push(l.to_string()));
        lines
    }

    #[test]
    fn lines_across_chunks_crlf_and_last_partial_line() {
        assert_eq!(
            split(&[b"one\ntw", b"o\r\n", b"\nthree"]),
            ["one", "two", "", "three"]
        );
        assert_eq!(split(&[b"a\n"]), ["a"]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn utf8_split_across_chunks_and_invalid_bytes() {
        let e_acute = "é".as_bytes();
        assert_eq!(
            split(&[
                &[b'c', b'a', b'f', e_acute[0]][..],
                &[e_acute[1], b'\n'][..]
            ]),
            ["café"]
        );
        assert_eq!(split(&[b"bad \xff byte\n"]), ["bad \u{fffd} byte"]);
    }

    #[test]
    fn very_long_lines_come_in_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let lines = split(&[&long]);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[2].len(), 10);
        assert_eq!(split(&[&long[..MAX_LINE]]).len(), 1);
        assert_eq!(split(&[&long[..MAX_LINE], b"\n"]).len(), 1);
        // A cut never splits a UTF-8 character.
        let mut utf8 = vec![b'x'; MAX_LINE - 1];
        utf8.extend_from_slice("é and more".as_bytes());
        let lines = split(&[&utf8]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE - 1);
        assert_eq!(lines[1], "é and more");
    }

    #[test]
    fn exit_status_reads_well() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert!(ExitStatus::Code(0).success());
        let s = ExitStatus::Signal {
            name: "KILL".into(),
            core_dumped: false,
            message: String::new(),
        };
        assert_eq!(s.to_string(), "killed by signal KILL");
        assert!(ExitStatus::ConnectionLost.is_connection_lost());
    }
}
