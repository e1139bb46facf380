//! The VM supervisor and the KVM probe against a real qemu (TCG, no guest disk: only
//! firmware runs, so no test here boots an operating system), and the ways KVM fails played
//! by stand-ins (tests/support/kvm_standin.rs).

#[path = "support/kvm_standin.rs"]
mod kvm_standin;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::build::event::{Event, EventSink, Stream};
use kiln::build::redact::Redactor;
use kiln::qemu::accel::{self, KvmUnavailable, kvm_with_best_model};
use kiln::qemu::kvm_probe::{KvmHost, ModelVerdict, run_canary};
use kiln::qemu::serial::SerialConsole;
use kiln::qemu::vm::{Vm, VmEnd, VmError, VmSockets};
use kiln::recipe::qemu::Accelerator;
use kvm_standin::{Kvm, StandIn, Start, always, cpu, every};

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
    let standin = StandIn::new(&dir.path().join("qemu"), &[always(Kvm::Pauses)]);
    let started = Instant::now();
    let args = firmware_only_args(&sockets, "kvm");
    let mut vm = match Vm::start(&standin.qemu, &args, &sockets.qmp, events).await {
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

#[tokio::test]
async fn the_canary_runs_every_mode_under_tcg() {
    for (machine, model) in [("pc", "qemu64"), ("q35", "qemu64"), ("pc", "max")] {
        let started = Instant::now();
        let verdict = run_canary(&qemu(), "tcg", machine, model, Duration::from_secs(10)).await;
        assert_eq!(verdict, ModelVerdict::Runs, "{machine} {model}");
        eprintln!(
            "canary under TCG on {machine} with {model}: {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

#[tokio::test]
async fn a_canary_that_stops_making_progress_is_a_stall_within_a_second_or_so() {
    // A CPU without long mode: the canary faults entering it, the machine resets and runs it
    // again, printing "RP" over and over but never finishing — as a KVM that gets stuck
    // after its first mode switch does.
    let started = Instant::now();
    let verdict = run_canary(&qemu(), "tcg", "pc", "pentium3", Duration::from_secs(20)).await;
    let ModelVerdict::Fails(why) = verdict else {
        panic!("a CPU without long mode cannot finish the canary");
    };
    assert!(why.starts_with("the guest stalled"), "{why}");
    assert!(why.ends_with("(no progress for 1 s)"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "declared stalled soon after its first progress, not at the 20 s timeout: {:?}",
        started.elapsed()
    );
}

fn host(standin: &StandIn, cache: Option<&Path>) -> KvmHost {
    KvmHost {
        device: PathBuf::from("/dev/kvm"),
        qemu: standin.qemu.clone(),
        cache_file: cache.map(|d| d.join("kvm-probe.json")),
    }
}

#[tokio::test]
async fn the_probe_tells_each_way_kvm_fails_in_qemus_words() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::new(
        dir.path(),
        &[
            cpu("host", Kvm::Aborts),
            cpu("max", Kvm::Pauses),
            cpu("EPYC", Kvm::Stalls),
            cpu("qemu64", Kvm::Runs),
        ],
    );
    let probe = |model: &'static str| {
        let qemu = standin.qemu.clone();
        async move { run_canary(&qemu, "kvm", "pc", model, Duration::from_secs(3)).await }
    };
    let ModelVerdict::Fails(aborted) = probe("host").await else {
        panic!("an abort is a failure");
    };
    assert!(
        aborted.starts_with("qemu aborted: error: failed to set MSR 0x10a to 0x69"),
        "{aborted}"
    );
    let started = Instant::now();
    let ModelVerdict::Fails(paused) = probe("max").await else {
        panic!("a pause is a failure");
    };
    assert!(paused.starts_with("KVM internal error "), "{paused}");
    assert!(paused.contains("emulation failure"), "{paused}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the internal error ends the probe at once, not at its timeout"
    );
    let ModelVerdict::Fails(stalled) = probe("EPYC").await else {
        panic!("a stall is a failure");
    };
    assert!(
        stalled.starts_with("the guest stalled in real mode"),
        "{stalled}"
    );
    assert_eq!(probe("qemu64").await, ModelVerdict::Runs);
    assert_eq!(
        standin.starts(),
        [
            "kvm probe host",
            "kvm probe max",
            "kvm probe EPYC",
            "kvm probe qemu64"
        ]
    );
}

#[tokio::test]
async fn kvm_steps_down_to_a_plainer_model_before_giving_up() {
    let dir = tempfile::tempdir().unwrap();
    let plain_works = StandIn::new(&dir.path().join("a"), &[cpu("host", Kvm::Aborts)]);
    let choice = kvm_with_best_model(&host(&plain_works, None), "pc", None)
        .await
        .expect("qemu64 runs");
    assert_eq!(choice.cpu_model.as_deref(), Some("qemu64"));
    assert_eq!(choice.kvm_model.as_deref(), Some("qemu64"));
    assert_eq!(choice.failed_models.len(), 1);
    assert!(
        choice.failed_models[0].1.contains("failed to set MSR"),
        "{:?}",
        choice.failed_models
    );
    assert!(
        choice
            .describe()
            .starts_with("using KVM with CPU model qemu64 (-cpu host: qemu aborted"),
        "{}",
        choice.describe()
    );

    // A recipe that asks for a specific model does not get another one.
    let specific = kvm_with_best_model(&host(&plain_works, None), "pc", Some("Skylake-Server"))
        .await
        .expect("the stand-in runs it");
    assert_eq!(specific.cpu_model, None);

    let none_works = StandIn::new(
        &dir.path().join("b"),
        &[cpu("host", Kvm::Aborts), cpu("qemu64", Kvm::Pauses)],
    );
    let failed = kvm_with_best_model(&host(&none_works, None), "pc", None)
        .await
        .expect_err("nothing runs");
    let models: Vec<&str> = failed.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(models, ["host", "qemu64"]);
    assert!(failed[1].1.contains("KVM internal error"), "{failed:?}");
}

#[tokio::test]
async fn auto_falls_back_and_kvm_refuses_with_qemus_words() {
    let Some(_device) = kvm_standin::kvm_device() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::new(dir.path(), &[always(Kvm::Aborts)]);
    let host = host(&standin, None);
    let auto = accel::choose(Accelerator::Auto, &host, "pc", Some("host"))
        .await
        .unwrap();
    assert_eq!(auto.accel.name(), "tcg");
    assert_eq!(
        auto.cpu_model.as_deref(),
        Some("max"),
        "TCG cannot run -cpu host"
    );
    let Some(KvmUnavailable::Unusable { tried, .. }) = &auto.fell_back else {
        panic!("{auto:?}");
    };
    assert!(tried.contains("-cpu host: qemu aborted"), "{tried}");
    assert!(tried.contains("-cpu qemu64: qemu aborted"), "{tried}");
    let refused = accel::choose(Accelerator::Kvm, &host, "pc", None)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("/dev/kvm is present but unusable here: -cpu host: qemu aborted: error: failed to set MSR"),
        "{refused}"
    );
}

#[tokio::test]
async fn verdicts_are_remembered_for_the_boot_and_a_failure_seen_later_too() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let standin = StandIn::new(&dir.path().join("qemu"), &[every(Start::Probe, Kvm::Runs)]);
    let kvm = host(&standin, Some(&cache));
    assert_eq!(kvm.verdict("pc", "host").await, ModelVerdict::Runs);
    assert_eq!(kvm.verdict("pc", "host").await, ModelVerdict::Runs);
    assert_eq!(standin.starts(), ["kvm probe host"], "probed once");
    let file = std::fs::read_to_string(cache.join("kvm-probe.json")).unwrap();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert!(file.contains(boot_id.trim()), "{file}");

    // A real VM that failed under KVM is remembered, so the next choice skips the model.
    kvm.remember_failure("pc", "host", "KVM internal error. Suberror: 1")
        .await;
    let choice = kvm_with_best_model(&kvm, "pc", None).await.unwrap();
    assert_eq!(choice.kvm_model.as_deref(), Some("qemu64"));
    assert_eq!(standin.starts(), ["kvm probe host", "kvm probe qemu64"]);

    // The failure is in the file for the other processes of this boot (tests/cli.rs runs
    // two builds to check they read it); forgetting (`kiln doctor`) drops it, and the
    // model is probed again.
    let file = std::fs::read_to_string(cache.join("kvm-probe.json")).unwrap();
    assert!(file.contains("KVM internal error"), "{file}");
    kvm.forget().await;
    let file = std::fs::read_to_string(cache.join("kvm-probe.json")).unwrap();
    assert!(!file.contains("KVM internal error"), "{file}");
    assert_eq!(kvm.verdict("pc", "host").await, ModelVerdict::Runs);
    assert_eq!(
        standin.starts(),
        ["kvm probe host", "kvm probe qemu64", "kvm probe host"],
        "probed again after forget"
    );
}

/// qemu (TCG, firmware only) with one qcow2 disk and kiln's serial console; `extra` args.
async fn vm_with_disk(
    dir: &Path,
    name: &str,
    disk: &Path,
    extra: &[String],
) -> (Vm, SerialConsole) {
    let sockets = VmSockets {
        qmp: dir.join(format!("{name}.qmp")),
        serial: dir.join(format!("{name}.serial")),
    };
    let (events, _rx) = EventSink::channel(Redactor::new());
    let console = SerialConsole::listen(
        &sockets.serial,
        &dir.join(format!("{name}.log")),
        events.clone(),
    )
    .unwrap();
    let mut args = firmware_only_args(&sockets, "tcg");
    args.extend([
        "-drive".to_string(),
        format!("file={},if=virtio,format=qcow2", disk.display()),
    ]);
    args.extend(extra.iter().cloned());
    let vm = Vm::start(&qemu(), &args, &sockets.qmp, events)
        .await
        .expect("qemu starts");
    (vm, console)
}

fn qemu_img(args: &[&str]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

/// A blank 64 MiB qcow2 disk `active.qcow2` in `dir`.
fn blank_disk(dir: &Path) -> PathBuf {
    let active = dir.join("active.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        active.to_str().unwrap(),
        "64M",
    ]);
    active
}

#[tokio::test]
async fn a_saved_vm_resumes_from_its_layer_and_state_file() {
    use kiln::qemu::snapshot::{self, Compressor};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let active = blank_disk(d);
    let (mut vm, _console) = vm_with_disk(d, "first", &active, &[]).await;
    let next = d.join("next.qcow2");
    let state = d.join("state");
    let compressor = Compressor::available();
    snapshot::save(vm.qmp(), &active, &next, &state, compressor)
        .await
        .expect("saved");
    assert_eq!(vm.qmp().status().await.unwrap(), "running", "it runs on");
    let info = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&next)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["backing-filename"].as_str().map(PathBuf::from),
        Some(active.clone()),
        "the VM continues on an overlay of the frozen layer"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the state file (guest memory) is private");
    }
    // The way back: a new overlay on the frozen layer, the state through -incoming — twice
    // at once, as two builds resuming from the same entry do, while the VM that saved it runs
    // on (the layer and the state file are only read).
    let overlay = |name: &str| {
        let path = d.join(name);
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            active.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        path
    };
    let (one, two) = (overlay("one.qcow2"), overlay("two.qcow2"));
    let incoming = snapshot::incoming_uri(&state, compressor);
    let (mut first, _c1) =
        vm_with_disk(d, "one", &one, &["-incoming".into(), incoming.clone()]).await;
    let (mut second, _c2) = vm_with_disk(d, "two", &two, &["-incoming".into(), incoming]).await;
    let (a, b) = tokio::join!(
        snapshot::finish_incoming(first.qmp(), &state),
        snapshot::finish_incoming(second.qmp(), &state)
    );
    a.expect("the first resumed");
    b.expect("the second resumed at the same time");
    assert_eq!(first.qmp().status().await.unwrap(), "running");
    assert_eq!(second.qmp().status().await.unwrap(), "running");
    first.kill().await;
    second.kill().await;
    vm.kill().await;
}

#[tokio::test]
async fn a_state_file_that_cannot_be_written_fails_the_save_and_the_vm_runs_on() {
    use kiln::qemu::snapshot::{self, Compressor, SnapshotError};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let active = blank_disk(d);
    let (mut vm, _console) = vm_with_disk(d, "full", &active, &[]).await;
    // The state goes to /dev/full, where every write fails with ENOSPC, as on a full disk.
    let state = d.join("state");
    std::os::unix::fs::symlink("/dev/full", d.join("state.part")).unwrap();
    let err = snapshot::save(
        vm.qmp(),
        &active,
        &d.join("next.qcow2"),
        &state,
        Compressor::available(),
    )
    .await
    .expect_err("a full disk fails the save");
    assert!(
        matches!(
            err,
            SnapshotError::NotWritten(_) | SnapshotError::Migration { .. }
        ),
        "the save failed: {err}"
    );
    assert!(!state.exists(), "no state file claims to be whole");
    assert_eq!(
        vm.qmp().status().await.unwrap(),
        "running",
        "the VM was let run again"
    );
    vm.kill().await;
}
