//! A private D-Bus bus for tests: `dbus-daemon` with a session-like configuration but **no
//! service directories**, so nothing is ever auto-started on it.
//!
//! This matters more than it looks: on the stock session configuration, the first call to
//! `org.freedesktop.secrets` made before the test's own `gnome-keyring-daemon --unlock` has
//! claimed the name makes dbus-daemon start a second, password-less gnome-keyring (Debian's
//! `org.freedesktop.secrets.service`); that one wins the name, never makes the login keyring,
//! and the test's daemon gives up with "another secret service is running". Likewise, no
//! portal or notification daemon appears unless the test runs one.
//!
//! Needs the Debian package `dbus`. The daemon is killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The bus daemon, its address and its directory.
pub struct PrivateBus {
    daemon: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl PrivateBus {
    /// Starts the bus; its socket lives in a fresh private directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().display()
            ),
        )
        .expect("the bus configuration is written");
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus) starts");
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().expect("its stdout"))
            .read_line(&mut address)
            .expect("dbus-daemon prints its address");
        let address = address.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed no address: {address:?}"
        );
        Self {
            daemon,
            address,
            dir,
        }
    }

    /// The address for `DBUS_SESSION_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
