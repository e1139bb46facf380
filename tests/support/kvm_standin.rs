//! Stand-ins for qemu that fail under KVM the ways nested KVM fails on real hosts, so every
//! fallback path runs on every machine whatever its CPU. A stand-in is a shell script in
//! front of the real `qemu-system-x86_64`: a start without `accel=kvm` goes straight to
//! qemu; a start with it is matched against the stand-in's rules by what is started (the
//! KVM probe's canary firmware or a real VM) and the CPU model, and then:
//!
//! - [`Kvm::Aborts`]: prints qemu's "failed to set MSR" lines and dies of SIGABRT, as qemu
//!   7.2 does with `-cpu host` on nested AMD hosts;
//! - [`Kvm::AbortsLater`]: the same two seconds after starting, once kiln has connected
//!   to it (real qemu's vCPU set-up races with its control socket);
//! - [`Kvm::Pauses`]: starts (really with TCG, stopped with `-S`) and prints "KVM internal
//!   error. Suberror: 1" / "emulation failure" after a second, as nested KVM does once the
//!   guest switches modes;
//! - [`Kvm::Stalls`]: starts stopped and prints nothing (the guest never gets anywhere);
//! - [`Kvm::Runs`]: a KVM that works (qemu runs with TCG in its place, and `-cpu max` for
//!   `-cpu host`).
//!
//! Every start is logged to `starts.log` beside the script (`kvm probe host`, `kvm vm
//! qemu64`, `tcg vm`), so a test can tell what was tried in which order.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The real qemu the stand-ins start.
pub const REAL_QEMU: &str = "/usr/bin/qemu-system-x86_64";

/// What a KVM start does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kvm {
    /// qemu aborts while setting up the vCPU ("failed to set MSR 0x10a to 0x69").
    Aborts,
    /// qemu starts (its control socket answers), then aborts the same way two seconds later.
    AbortsLater,
    /// qemu starts, then the guest pauses on "KVM internal error".
    Pauses,
    /// qemu starts and the guest never runs, silently.
    Stalls,
    /// KVM works.
    Runs,
}

/// What is being started under KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The KVM probe (`-bios …canary.bin`).
    Probe,
    /// A real VM (anything else).
    Vm,
}

/// One rule: for `start` (`None`: any) with CPU model `cpu` (`None`: any), KVM does `kvm`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Which start the rule is for.
    pub start: Option<Start>,
    /// Which `-cpu` value (exact) the rule is for.
    pub cpu: Option<&'static str>,
    /// What happens.
    pub kvm: Kvm,
}

/// A rule for any start with CPU `cpu`.
pub fn cpu(cpu: &'static str, kvm: Kvm) -> Rule {
    Rule {
        start: None,
        cpu: Some(cpu),
        kvm,
    }
}

/// A rule for every KVM start of `start`'s kind.
pub fn every(start: Start, kvm: Kvm) -> Rule {
    Rule {
        start: Some(start),
        cpu: None,
        kvm,
    }
}

/// A rule for every KVM start.
pub fn always(kvm: Kvm) -> Rule {
    Rule {
        start: None,
        cpu: None,
        kvm,
    }
}

/// A stand-in written into a directory of its own.
pub struct StandIn {
    /// The script (named `qemu-system-x86_64`, so a directory on `PATH` works too).
    pub qemu: PathBuf,
    /// Its directory.
    pub dir: PathBuf,
}

impl StandIn {
    /// Writes a stand-in into `dir` (created) applying the first matching rule; a KVM start no
    /// rule matches runs ([`Kvm::Runs`]).
    pub fn new(dir: &Path, rules: &[Rule]) -> StandIn {
        assert!(
            Path::new(REAL_QEMU).exists(),
            "{REAL_QEMU} is missing: apt-get install -y --allow-downgrades qemu-system-x86 qemu-utils/bookworm qemu-block-extra/bookworm (tests/run.sh does this)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("starts.log");
        let mut cases = String::new();
        for rule in rules {
            let start = match rule.start {
                None => "*",
                Some(Start::Probe) => "probe",
                Some(Start::Vm) => "vm",
            };
            let cpu = rule.cpu.unwrap_or("*");
            let action = match rule.kvm {
                Kvm::Aborts => "abort",
                Kvm::AbortsLater => "abort_later",
                Kvm::Pauses => "pause",
                Kvm::Stalls => "stall",
                Kvm::Runs => "run",
            };
            cases.push_str(&format!("  {start}:{cpu}) action={action};;\n"));
        }
        let script = format!(
            r#"#!/bin/sh
# A qemu stand-in for kiln's tests (tests/support/kvm_standin.rs).
real={REAL_QEMU}
log='{log}'
case " $* " in *accel=kvm*) ;; *) echo "tcg vm" >> "$log"; exec "$real" "$@";; esac
what=vm
case "$*" in *canary.bin*) what=probe;; esac
cpu=
prev=
for a in "$@"; do [ "$prev" = "-cpu" ] && cpu=$a; prev=$a; done
echo "kvm $what $cpu" >> "$log"
action=run
case "$what:$cpu" in
{cases}esac
msr() {{
  echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
  echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion \`ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
  kill -ABRT $$
  exit 134
}}
[ "$action" = abort ] && msr
# Really TCG from here on, which cannot run -cpu host: max stands in for it.
n=$#; i=0; prev=
while [ $i -lt $n ]; do
  a=$1; shift
  case "$a" in *accel=kvm*) a=$(printf %s "$a" | sed s/accel=kvm/accel=tcg/);; esac
  if [ "$prev" = "-cpu" ]; then case "$a" in host|host,*) a=max${{a#host}};; esac; fi
  set -- "$@" "$a"; i=$((i+1)); prev=$a
done
case "$action" in
  abort_later) "$real" "$@" & qemu=$!; sleep 2; kill -9 $qemu; msr;;
  run) exec "$real" "$@";;
  pause) (sleep 1; echo 'KVM internal error. Suberror: 1' >&2; echo 'emulation failure' >&2) &
         exec "$real" -S "$@";;
  stall) exec "$real" -S "$@";;
esac
"#,
            log = log.display(),
        );
        let qemu = dir.join("qemu-system-x86_64");
        std::fs::write(&qemu, script).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn {
            qemu,
            dir: dir.to_path_buf(),
        }
    }

    /// The starts so far, one line each (`kvm probe host`, `kvm vm qemu64`, `tcg vm`).
    pub fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("starts.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The KVM device the tests use: `/dev/kvm`. Without one (a machine with no KVM at all),
/// the KVM paths cannot be reached; under `tests/run.sh` (`KILN_REQUIRE_TOOLS`) that is a
/// failure, elsewhere the caller skips with a message.
pub fn kvm_device() -> Option<PathBuf> {
    let device = PathBuf::from("/dev/kvm");
    if kiln::qemu::accel::probe_kvm_device(&device).is_ok() {
        return Some(device);
    }
    assert!(
        std::env::var_os("KILN_REQUIRE_TOOLS").is_none(),
        "/dev/kvm does not answer: the KVM fallback tests need a KVM device (it may fail to run VMs; the stand-in decides that)"
    );
    eprintln!("skipped: /dev/kvm does not answer on this machine");
    None
}
