//! The VM supervisor against a real qemu (TCG, no guest disk: only the firmware runs, so no
//! test here boots an operating system).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::build::event::{Event, EventSink, Stream};
use kiln::build::redact::Redactor;
use kiln::qemu::serial::SerialConsole;
use kiln::qemu::vm::{Vm, VmEnd, VmError, VmSockets};

fn qemu() -> PathBuf {
    let path = PathBuf::from("/usr/bin/qemu-system-x86_64");
    assert!(
        path.exists(),
        "qemu-system-x86_64 is missing: apt-get install -y --allow-downgrades qemu-system-x86 qemu-utils/bookworm qemu-block-extra/bookworm (tests/run.sh does this)"
    );
    path
}

fn firmware_only_args(sockets: &VmSockets, accel: &str) -> Vec<String> {
    [
        "-machine",
        &format!("type=pc,accel={accel}"),
        "-m",
        "64M",
        "-display",
        "none",
        "-nodefaults",
        "-qmp",
        &format!("unix:{},server=on,wait=off", sockets.qmp.display()),
        "-chardev",
        &format!("socket,id=kiln-serial,path={}", sockets.serial.display()),
        "-serial",
        "chardev:kiln-serial",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test]
async fn starts_reports_status_and_is_killed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = VmSockets::in_dir(dir.path());
    let (events, _rx) = EventSink::channel(Redactor::new());
    let _console = SerialConsole::listen(
        &sockets.serial,
        &dir.path().join("serial.log"),
        events.clone(),
    )
    .unwrap();
    let mut vm = Vm::start(
        &qemu(),
        &firmware_only_args(&sockets, "tcg"),
        &sockets.qmp,
        events,
    )
    .await
    .expect("qemu starts");
    assert_eq!(vm.qmp().status().await.unwrap(), "running");
    let pid = vm.pid().expect("a pid");
    assert!(pid_alive(pid));
    drop(vm);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pid_alive(pid), "qemu {pid} outlived its Vm");
}

#[tokio::test]
async fn quit_ends_the_watch_with_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = VmSockets::in_dir(dir.path());
    let (events, _rx) = EventSink::channel(Redactor::new());
    let _console = SerialConsole::listen(
        &sockets.serial,
        &dir.path().join("serial.log"),
        events.clone(),
    )
    .unwrap();
    let mut vm = Vm::start(
        &qemu(),
        &firmware_only_args(&sockets, "tcg"),
        &sockets.qmp,
        events,
    )
    .await
    .unwrap();
    vm.qmp().quit().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), vm.watch())
        .await
        .expect("watch ends");
    assert!(matches!(end, VmEnd::Exited(_)), "{end:?}");
}

#[tokio::test]
async fn an_early_exit_shows_qemus_words_and_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = VmSockets::in_dir(dir.path());
    let (events, _rx) = EventSink::channel(Redactor::new());
    let mut args = firmware_only_args(&sockets, "tcg");
    args.push("-no-such-switch".into());
    let err = Vm::start(&qemu(), &args, &sockets.qmp, events)
        .await
        .unwrap_err();
    let VmError::EarlyExit {
        command, output, ..
    } = &err
    else {
        panic!("expected an early exit, got {err:?}");
    };
    assert!(command.contains("-no-such-switch"), "{command}");
    assert!(
        output.contains("-no-such-switch"),
        "qemu's complaint is shown: {output}"
    );
}

#[tokio::test]
async fn a_missing_binary_says_how_to_install_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = VmSockets::in_dir(dir.path());
    let (events, _rx) = EventSink::channel(Redactor::new());
    let err = Vm::start(Path::new("/nonexistent/qemu"), &[], &sockets.qmp, events)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("apt-get install qemu-system-x86"),
        "{err}"
    );
}

/// A stand-in for qemu that behaves like nested KVM failing here: it prints the internal
/// error and stays paused (it is the real qemu started with -S) instead of exiting.
fn paused_kvm_failure_standin(dir: &Path) -> PathBuf {
    let script = dir.join("qemu-kvm-fails");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$*\" in *accel=kvm*) ;; *) exec {qemu} \"$@\";; esac\n\
             n=$#; i=0\n\
             while [ $i -lt $n ]; do a=$1; shift; case \"$a\" in *accel=kvm*) a=$(printf %s \"$a\" | sed s/accel=kvm/accel=tcg/);; esac; set -- \"$@\" \"$a\"; i=$((i+1)); done\n\
             (sleep 1; echo 'KVM internal error. Suberror: 1' >&2; echo 'emulation failure' >&2) &\n\
             exec {qemu} -S \"$@\"\n",
            qemu = qemu().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test]
async fn nested_kvm_failure_is_detected_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = VmSockets::in_dir(dir.path());
    let (events, mut rx) = EventSink::channel(Redactor::new());
    let _console = SerialConsole::listen(
        &sockets.serial,
        &dir.path().join("serial.log"),
        events.clone(),
    )
    .unwrap();
    let standin = paused_kvm_failure_standin(dir.path());
    let started = Instant::now();
    let args = firmware_only_args(&sockets, "kvm");
    let mut vm = match Vm::start(&standin, &args, &sockets.qmp, events).await {
        Ok(vm) => vm,
        Err(e) => panic!("stand-in did not start: {e}"),
    };
    let end = tokio::time::timeout(Duration::from_secs(15), vm.watch())
        .await
        .expect("the failure is noticed, not waited out");
    assert!(
        matches!(&end, VmEnd::KvmFailure(line) if line.contains("KVM internal error")),
        "{end:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    vm.kill().await;
    let mut saw_stderr = false;
    while let Ok(e) = rx.try_recv() {
        if matches!(&e, Event::Log { stream: Stream::Stderr | Stream::Stdout, line, .. } if line.contains("KVM internal error"))
        {
            saw_stderr = true;
        }
    }
    assert!(saw_stderr, "qemu's output reaches the events");
}
