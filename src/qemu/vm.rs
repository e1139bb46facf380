//! A running VM: the qemu process (dies with kiln), its output as events, QMP, and the
//! detection of the nested-KVM failure that leaves qemu paused instead of exiting.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cmdline::display_command;
use super::kvm_probe::is_kvm_failure_line;
use super::qmp::{Qmp, QmpError};
use crate::base::event::{Event, EventSink, Stream};

/// How many lines of qemu's own output are kept for error messages.
const OUTPUT_TAIL: usize = 50;

/// How long qemu's last words may take to be read once it exited.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// Waits (briefly) until the output readers read everything qemu printed before it exited,
/// so the error shows its last words.
async fn drain(readers: &mut Vec<JoinHandle<()>>) {
    for reader in readers.drain(..) {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, reader).await;
    }
}

/// Why the VM could not start or stopped being useful.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// The binary could not be started.
    #[error(
        "cannot start {binary}: {reason} (install it with: apt-get install qemu-system-x86, or set `qemu_binary`)"
    )]
    Spawn {
        /// The qemu binary.
        binary: String,
        /// The OS error.
        reason: String,
    },
    /// qemu exited before or while starting.
    #[error("qemu exited ({status}) while starting.\ncommand: {command}\nqemu said:\n{output}")]
    EarlyExit {
        /// Its exit status.
        status: String,
        /// The command line.
        command: String,
        /// Its last output lines.
        output: String,
    },
    /// KVM failed inside the guest (nested virtualisation) and qemu paused.
    #[error("KVM failed while the guest ran (qemu reported: {line}); the VM was stopped")]
    KvmFailure {
        /// The line qemu printed, or the run state it reported.
        line: String,
    },
    /// The control socket failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
}

/// How a watched VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEnd {
    /// The qemu process exited.
    Exited(String),
    /// KVM failed and qemu paused (the process still runs until killed).
    KvmFailure(String),
}

/// A running qemu. Dropping it kills qemu.
pub struct Vm {
    child: Child,
    qmp: Qmp,
    command: String,
    output: Arc<Mutex<VecDeque<String>>>,
    kvm_failure: watch::Receiver<Option<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

fn spawn_line_reader<R>(
    reader: R,
    stream: Stream,
    events: EventSink,
    tail: Arc<Mutex<VecDeque<String>>>,
    kvm: watch::Sender<Option<String>>,
) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = events.redactor().redact(&line);
            if is_kvm_failure_line(&line) {
                kvm.send_if_modified(|seen| {
                    if seen.is_none() {
                        *seen = Some(line.clone());
                        true
                    } else {
                        false
                    }
                });
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == OUTPUT_TAIL {
                    t.pop_front();
                }
                t.push_back(line.clone());
            }
            events.send(Event::Log {
                index: None,
                stream,
                line,
            });
        }
    })
}

impl Vm {
    /// Starts `binary` with `args` and connects to its QMP socket. qemu is killed when the
    /// `Vm` is dropped and, through `PR_SET_PDEATHSIG`, when kiln itself dies.
    pub async fn start(
        binary: &Path,
        args: &[String],
        qmp_socket: &Path,
        events: EventSink,
    ) -> Result<Vm, VmError> {
        let command = display_command(binary, args);
        events.log(None, format!("starting: {command}"));
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
        // the parent; it only asks the kernel to SIGKILL the child when kiln exits.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| VmError::Spawn {
            binary: binary.display().to_string(),
            reason: e.to_string(),
        })?;
        let output: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (kvm_tx, kvm_failure) = watch::channel(None);
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(spawn_line_reader(
                stdout,
                Stream::Stdout,
                events.clone(),
                output.clone(),
                kvm_tx.clone(),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(spawn_line_reader(
                stderr,
                Stream::Stderr,
                events.clone(),
                output.clone(),
                kvm_tx.clone(),
            ));
        }
        let connect = Qmp::connect(qmp_socket, Duration::from_secs(30));
        let qmp = tokio::select! {
            qmp = connect => qmp,
            status = child.wait() => {
                drain(&mut readers).await;
                return Err(VmError::EarlyExit {
                    status: status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    command,
                    output: Self::joined(&output),
                });
            }
        };
        let qmp = match qmp {
            Ok(q) => q,
            Err(e) => {
                // qemu may have died after opening its control socket (an abort while it
                // sets up the vCPU, as nested KVM makes it do): that is an early exit, with
                // its words, not a control-socket problem.
                if let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_millis(500), child.wait()).await
                {
                    drain(&mut readers).await;
                    return Err(VmError::EarlyExit {
                        status: status.to_string(),
                        command,
                        output: Self::joined(&output),
                    });
                }
                let _ = child.start_kill();
                return Err(e.into());
            }
        };
        // Keep the sender alive as long as the readers may use it.
        drop(kvm_tx);
        Ok(Vm {
            child,
            qmp,
            command,
            output,
            kvm_failure,
            readers,
        })
    }

    fn joined(output: &Mutex<VecDeque<String>>) -> String {
        output
            .lock()
            .map(|o| o.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// The command line as logged.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// qemu's last output lines.
    pub fn output_tail(&self) -> String {
        Self::joined(&self.output)
    }

    /// Whether KVM failed this VM and qemu paused it: the line qemu printed, or the run
    /// state it reports (`internal-error`), when it did.
    pub async fn kvm_failure(&mut self) -> Option<String> {
        if let Some(line) = self.kvm_failure.borrow().clone() {
            return Some(line);
        }
        match self.qmp.status().await {
            Ok(status) if status == "internal-error" => Some(format!("run state {status}")),
            _ => None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The QMP session.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }

    /// Waits until qemu exits or KVM fails. A KVM failure is seen either on qemu's output
    /// or as a `STOP` event whose run state is `internal-error`; it is event driven, no
    /// polling.
    pub async fn watch(&mut self) -> VmEnd {
        let mut events = self.qmp.events();
        let mut kvm = self.kvm_failure.clone();
        loop {
            if let Some(line) = kvm.borrow().clone() {
                return VmEnd::KvmFailure(line);
            }
            tokio::select! {
                status = self.child.wait() => {
                    drain(&mut self.readers).await;
                    return VmEnd::Exited(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
                }
                changed = kvm.changed() => {
                    if changed.is_err() {
                        // Readers ended (qemu closed its output): only the exit is left.
                        let status = self.child.wait().await;
                        return VmEnd::Exited(status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()));
                    }
                }
                event = events.recv() => {
                    if let Ok(event) = event
                        && event.name == "STOP"
                        && let Ok(status) = self.qmp.status().await
                        && status == "internal-error"
                    {
                        return VmEnd::KvmFailure(format!("run state {status}"));
                    }
                }
            }
        }
    }

    /// Waits for qemu to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Stops qemu now (QMP `quit`, then SIGKILL if it lingers) and waits for it.
    pub async fn kill(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.qmp.quit()).await;
        if self.wait_exit(Duration::from_secs(3)).await.is_none() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// Paths of kiln's per-VM sockets inside a private runtime directory.
#[derive(Debug, Clone)]
pub struct VmSockets {
    /// The QMP socket.
    pub qmp: PathBuf,
    /// The serial console socket.
    pub serial: PathBuf,
}

impl VmSockets {
    /// Sockets inside `dir` (which should be private to the build, mode 0700).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            qmp: dir.join("qmp.sock"),
            serial: dir.join("serial.sock"),
        }
    }
}
