//! Does KVM run a guest here, and with which CPU model? `/dev/kvm` answering is not enough:
//! nested KVM can abort qemu while it sets up the vCPU ("failed to set MSR", AMD hosts with
//! `-cpu host`), or pause it on "KVM internal error" once the guest switches modes. The
//! probe starts qemu with KVM, the CPU model and the [`canary`] firmware for at most
//! [`PROBE_TIMEOUT`] and sees whether the canary runs to its end.
//!
//! Verdicts are kept in memory for the process and on disk for the machine's boot
//! (`kvm-probe.json` in kiln's cache directory), keyed by the boot id, the qemu binary (path,
//! size and modification time), the machine type and the CPU model. A KVM failure seen later
//! by a real VM is recorded the same way ([`KvmHost::remember_failure`]), so the next build
//! goes straight to what works.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::canary;

/// How long the canary may take before KVM is declared stalled. Under KVM it takes
/// milliseconds and under TCG about 0.1 s; the margin is for a loaded machine.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the probe looks at what the canary printed.
const PROGRESS_POLL: Duration = Duration::from_millis(50);

/// How long the canary may go without finishing once it printed its first letter.
const STALL_AFTER_PROGRESS: Duration = Duration::from_secs(1);

/// The environment variable that points kiln at another KVM device than `/dev/kvm` (for
/// tests, and hosts that put it elsewhere).
pub const KVM_DEVICE_ENV: &str = "KILN_KVM_DEVICE";

/// The KVM device kiln checks: `$KILN_KVM_DEVICE`, else `/dev/kvm`.
pub fn kvm_device() -> PathBuf {
    std::env::var_os(KVM_DEVICE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/kvm"))
}

/// Whether a VM runs under KVM with one CPU model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelVerdict {
    /// The canary ran to its end.
    Runs,
    /// It did not: what happened, in qemu's words where it said something.
    Fails(String),
}

/// Whether a line qemu printed says that KVM failed (at start or while the guest ran).
pub fn is_kvm_failure_line(line: &str) -> bool {
    line.contains("KVM internal error") || line.contains("emulation failure")
}

/// Whether qemu's output, when it exited while starting, blames KVM: the vCPU set-up
/// failing (`failed to set MSR`, `kvm_…` assertions), the module or device missing, or the
/// internal error.
pub fn is_kvm_start_failure(output: &str) -> bool {
    let lower = output.to_ascii_lowercase();
    lower.contains("kvm") || output.contains("MSR") || is_kvm_failure_line(output)
}

/// Whether `line` is part of the register dump qemu prints after a KVM internal error
/// (`EAX=…`, `ES =0028 …`, `Code=…`).
fn is_register_dump(line: &str) -> bool {
    line.split_once('=').is_some_and(|(head, _)| {
        let head = head.trim();
        head == "Code"
            || (!head.is_empty()
                && head.len() <= 6
                && head
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
    })
}

/// What qemu said that matters: its lines without the feature warnings, the signal notice
/// and the register dump, the program name stripped, at most two, joined with "; ".
pub fn qemu_words(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once(": ")
                .filter(|(program, _)| {
                    program.starts_with("qemu-system") || program.ends_with("qemu")
                })
                .map_or(l, |(_, rest)| rest)
        })
        .filter(|l| !l.starts_with("warning:") && !l.starts_with("terminating on signal"))
        // The source position of a failed assertion, after qemu's own message.
        .filter(|l| !l.starts_with("../"))
        .filter(|l| !l.starts_with("extra data[") && !is_register_dump(l))
        .take(2)
        .collect();
    lines.join("; ")
}

/// Runs the canary with `qemu` under `accel` (`kvm`, or `tcg` to check the canary itself)
/// on `machine` with CPU `model`, for at most `timeout`.
pub async fn run_canary(
    qemu: &Path,
    accel: &str,
    machine: &str,
    model: &str,
    timeout: Duration,
) -> ModelVerdict {
    let dir = match tempfile::Builder::new().prefix("kiln-kvm-probe-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return ModelVerdict::Fails(format!("cannot make a scratch directory: {e}")),
    };
    let firmware = dir.path().join("canary.bin");
    let printed = dir.path().join("canary.out");
    if let Err(e) = std::fs::write(&firmware, canary::firmware_image()) {
        return ModelVerdict::Fails(format!("cannot write the canary firmware: {e}"));
    }
    let mut cmd = Command::new(qemu);
    cmd.args(["-machine", &format!("type={machine},accel={accel}")])
        .args(["-cpu", model, "-m", "16M", "-smp", "1"])
        .args(["-display", "none", "-nodefaults", "-no-user-config"])
        .arg("-bios")
        .arg(&firmware)
        .arg("-chardev")
        .arg(format!("file,id=canary,path={}", printed.display()))
        .args([
            "-device",
            &format!(
                "isa-debugcon,iobase={:#x},chardev=canary",
                canary::DEBUG_PORT
            ),
        ])
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={:#x},iosize=1", canary::EXIT_PORT),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return ModelVerdict::Fails(format!("cannot start {}: {e}", qemu.display())),
    };
    let mut stderr_lines = child.stderr.take().map(|s| BufReader::new(s).lines());
    let mut said = String::new();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut poll = tokio::time::interval(PROGRESS_POLL);
    // When the canary first printed: from then on, each mode takes microseconds under KVM
    // (milliseconds under TCG), so no more progress within STALL_AFTER_PROGRESS is a stall.
    let mut first_progress: Option<std::time::Instant> = None;
    let mut stalled = false;
    let status = loop {
        tokio::select! {
            _ = poll.tick() => {
                let printed_now = std::fs::metadata(&printed).map_or(0, |m| m.len());
                if printed_now == 0 {
                    continue;
                }
                let since = *first_progress.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > STALL_AFTER_PROGRESS {
                    stalled = true;
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    break None;
                }
            }
            status = child.wait() => break status.ok(),
            line = async {
                match stderr_lines.as_mut() {
                    Some(lines) => lines.next_line().await,
                    None => std::future::pending().await,
                }
            } => match line {
                Ok(Some(line)) => {
                    let internal = is_kvm_failure_line(&line);
                    said.push_str(&line);
                    said.push('\n');
                    if internal {
                        // qemu pauses the guest and waits: nothing more will come.
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        break None;
                    }
                }
                _ => stderr_lines = None,
            },
            () = &mut deadline => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                break None;
            }
        }
    };
    // Whatever qemu printed after its exit began.
    if let Some(lines) = stderr_lines.as_mut() {
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
        {
            said.push_str(&line);
            said.push('\n');
        }
    }
    let reached = std::fs::read_to_string(&printed).unwrap_or_default();
    let words = qemu_words(&said);
    match status {
        Some(status) if status.code() == Some(canary::SUCCESS_STATUS) => {
            if reached.trim() == canary::ALL_STAGES {
                ModelVerdict::Runs
            } else {
                ModelVerdict::Fails(format!(
                    "the canary firmware exited without running every mode (printed {reached:?})"
                ))
            }
        }
        Some(status) => {
            let how = match std::os::unix::process::ExitStatusExt::signal(&status) {
                Some(6) => "qemu aborted".to_string(),
                Some(signal) => format!("qemu died of signal {signal}"),
                None => format!("qemu exited with status {}", status.code().unwrap_or(-1)),
            };
            if words.is_empty() {
                ModelVerdict::Fails(how)
            } else {
                ModelVerdict::Fails(format!("{how}: {words}"))
            }
        }
        None if is_kvm_failure_line(&said) => ModelVerdict::Fails(format!(
            "KVM internal error {} ({words})",
            canary::stage_reached(&reached)
        )),
        None if stalled => ModelVerdict::Fails(format!(
            "the guest stalled {} (no progress for {} s)",
            canary::stage_reached(&reached),
            STALL_AFTER_PROGRESS.as_secs()
        )),
        None => ModelVerdict::Fails(format!(
            "the guest stalled {} (no progress in {} s)",
            canary::stage_reached(&reached),
            timeout.as_secs()
        )),
    }
}

/// One remembered verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: String,
    verdict: ModelVerdict,
}

/// The on-disk cache: the verdicts of this boot.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    boot_id: String,
    entries: Vec<Entry>,
}

/// Verdicts seen by this process (key → verdict); a probe in progress holds the lock, so
/// two builds starting at once share one probe.
static MEMO: LazyLock<tokio::sync::Mutex<BTreeMap<String, ModelVerdict>>> =
    LazyLock::new(Default::default);

/// Serialises writes of the cache file within the process.
static FILE_LOCK: Mutex<()> = Mutex::new(());

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Writes `file` to `path` through a temporary file and a rename, so a reader never sees
/// half of it.
fn write_atomically(path: &Path, file: &CacheFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, file).map_err(std::io::Error::other)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Where KVM is checked: the device, the qemu binary, and the file verdicts are kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmHost {
    /// The KVM device (`/dev/kvm`, or `$KILN_KVM_DEVICE`).
    pub device: PathBuf,
    /// The qemu binary VMs start with.
    pub qemu: PathBuf,
    /// The file verdicts are kept in for the machine's boot; `None` keeps them in memory.
    pub cache_file: Option<PathBuf>,
}

impl KvmHost {
    /// The host as builds see it: [`kvm_device`], `qemu`, and verdicts kept in
    /// `cache_dir/kvm-probe.json`.
    pub fn new(qemu: impl Into<PathBuf>, cache_dir: Option<&Path>) -> Self {
        Self {
            device: kvm_device(),
            qemu: qemu.into(),
            cache_file: cache_dir.map(|d| d.join("kvm-probe.json")),
        }
    }

    /// The key of a verdict: boot, binary (with its size and time, so an upgrade probes
    /// again), machine type and CPU model.
    fn key(&self, machine: &str, model: &str) -> String {
        let qemu = std::fs::canonicalize(&self.qemu).unwrap_or_else(|_| self.qemu.clone());
        let (size, modified) = std::fs::metadata(&qemu)
            .map(|m| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                (m.len(), modified)
            })
            .unwrap_or_default();
        format!(
            "{}|{}|{size}|{modified}|{machine}|{model}",
            boot_id(),
            qemu.display()
        )
    }

    fn read_file(&self) -> CacheFile {
        let Some(path) = &self.cache_file else {
            return CacheFile::default();
        };
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|file| file.boot_id == boot_id())
            .unwrap_or_default()
    }

    fn write_file(&self, key: &str, verdict: &ModelVerdict) {
        let Some(path) = &self.cache_file else {
            return;
        };
        let _guard = FILE_LOCK.lock();
        let mut file = self.read_file();
        file.boot_id = boot_id();
        file.entries.retain(|e| e.key != key);
        file.entries.push(Entry {
            key: key.to_string(),
            verdict: verdict.clone(),
        });
        // Best effort: a verdict that cannot be kept is probed again next time.
        let _ = write_atomically(path, &file);
    }

    /// The verdict for `model` on `machine`: remembered from this process or this boot, else
    /// probed now (and remembered).
    pub async fn verdict(&self, machine: &str, model: &str) -> ModelVerdict {
        let key = self.key(machine, model);
        let mut memo = MEMO.lock().await;
        if let Some(verdict) = memo.get(&key) {
            return verdict.clone();
        }
        if let Some(entry) = self.read_file().entries.into_iter().find(|e| e.key == key) {
            memo.insert(key, entry.verdict.clone());
            return entry.verdict;
        }
        let verdict = run_canary(&self.qemu, "kvm", machine, model, PROBE_TIMEOUT).await;
        self.write_file(&key, &verdict);
        memo.insert(key, verdict.clone());
        verdict
    }

    /// Forgets what was remembered about this qemu binary (this process and this boot), so
    /// the next verdicts are probed again (`kiln doctor`, the window's "Check again").
    pub async fn forget(&self) {
        // "boot|qemu|size|time|" followed by the machine and the model.
        let key = self.key("", "");
        let prefix = key.strip_suffix('|').unwrap_or(&key);
        let mine = |key: &str| key.starts_with(prefix);
        MEMO.lock().await.retain(|key, _| !mine(key));
        let Some(path) = &self.cache_file else {
            return;
        };
        let _guard = FILE_LOCK.lock();
        let mut file = self.read_file();
        if file.entries.iter().any(|e| mine(&e.key)) {
            file.entries.retain(|e| !mine(&e.key));
            let _ = write_atomically(path, &file);
        }
    }

    /// Records that a real VM with `model` on `machine` failed under KVM although the
    /// probe passed, so later builds of this boot do not try it again.
    pub async fn remember_failure(&self, machine: &str, model: &str, why: &str) {
        let key = self.key(machine, model);
        let verdict = ModelVerdict::Fails(why.to_string());
        self.write_file(&key, &verdict);
        MEMO.lock().await.insert(key, verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemus_words_leave_out_warnings_and_register_dumps() {
        let said = "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n\
                    qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
                    qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        assert_eq!(qemu_words(said), "error: failed to set MSR 0x10a to 0x69");
        let paused = "KVM internal error. Suberror: 1\nextra data[0]: 0x1\nemulation failure\nEAX=001000cc EBX=3e896766\n";
        assert_eq!(
            qemu_words(paused),
            "KVM internal error. Suberror: 1; emulation failure"
        );
    }

    #[test]
    fn start_failures_that_blame_kvm_are_told_apart() {
        assert!(is_kvm_start_failure(
            "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"
        ));
        assert!(is_kvm_start_failure(
            "Could not access KVM kernel module: No such file or directory\nqemu-system-x86_64: failed to initialize kvm: No such file or directory"
        ));
        assert!(!is_kvm_start_failure(
            "qemu-system-x86_64: -no-such-switch: invalid option"
        ));
        assert!(is_kvm_failure_line("KVM internal error. Suberror: 1"));
        assert!(!is_kvm_failure_line(
            "qemu-system-x86_64: warning: host doesn't support requested feature"
        ));
    }

    #[test]
    fn the_device_can_be_pointed_elsewhere() {
        // Only read here; tests that set it run kiln as a child process.
        let device = kvm_device();
        match std::env::var_os(KVM_DEVICE_ENV) {
            Some(v) if !v.is_empty() => assert_eq!(device, PathBuf::from(v)),
            _ => assert_eq!(device, PathBuf::from("/dev/kvm")),
        }
    }
}
