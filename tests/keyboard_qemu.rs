//! Boot-command typing against a real qemu's QMP (firmware only, no guest): qemu checks
//! every key name kiln sends (it refuses unknown `QKeyCode`s), and typing stops at once
//! when the build is cancelled. That the keys reach a guest is shown by
//! tests/build_installer.rs, where they pick the kernel command line at extlinux's prompt.

use std::path::Path;
use std::time::{Duration, Instant};

use kiln::qemu::bootcmd::{self, KeyAction};
use kiln::qemu::keyboard::{TypeError, type_actions};
use kiln::qemu::qmp::{Qmp, QmpError};
use tokio_util::sync::CancellationToken;

async fn qemu(dir: &Path) -> (tokio::process::Child, Qmp) {
    let socket = dir.join("qmp.sock");
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "type=pc,accel=tcg",
            "-m",
            "64M",
            "-display",
            "none",
            "-nodefaults",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-system-x86_64 runs (apt-get install qemu-system-x86)");
    let qmp = Qmp::connect(&socket, Duration::from_secs(20))
        .await
        .expect("QMP answers");
    (child, qmp)
}

#[tokio::test]
async fn qemu_accepts_every_key_kiln_types() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, mut qmp) = qemu(dir.path()).await;
    let printable: String = (' '..='~').collect();
    let specials = "<bs><del><enter><return><esc><tab><spacebar><insert><home><end><pageUp>\
                    <pageDown><up><down><left><right><menu><f1><f2><f3><f4><f5><f6><f7><f8>\
                    <f9><f10><f11><f12><leftAltOn><leftAltOff><leftCtrlOn><leftCtrlOff>\
                    <leftShiftOn><leftShiftOff><leftSuperOn><leftSuperOff><rightAltOn>\
                    <rightAltOff><rightCtrlOn><rightCtrlOff><rightShiftOn><rightShiftOff>\
                    <rightSuperOn><rightSuperOff><aOn><aOff>\n\t";
    let actions = bootcmd::parse_all(&[printable, specials.to_string()]).unwrap();
    assert_eq!(actions.len(), 95 + 49);
    let cancel = CancellationToken::new();
    type_actions(&mut qmp, &actions, Duration::ZERO, &cancel)
        .await
        .expect("qemu takes every key");
    // The check above can fail: qemu refuses a key name it does not know.
    let refused = qmp.key_events(&[("no_such_key", true)]).await.unwrap_err();
    assert!(
        matches!(refused, QmpError::Command { ref command, .. } if command == "input-send-event"),
        "{refused}"
    );
    assert_eq!(qmp.status().await.unwrap(), "running");
}

#[tokio::test]
async fn typing_stops_at_once_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, mut qmp) = qemu(dir.path()).await;
    let mut actions = bootcmd::parse("abc").unwrap();
    actions.push(KeyAction::Wait(Duration::from_secs(60)));
    actions.extend(bootcmd::parse("never typed<enter>").unwrap());
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let result = type_actions(&mut qmp, &actions, Duration::from_millis(10), &cancel).await;
    assert!(matches!(result, Err(TypeError::Cancelled)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped during the 60 s wait, after {:?}",
        started.elapsed()
    );
}
