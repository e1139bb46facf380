//! A real Secret Service for tests: a private D-Bus bus without service activation (see
//! [`private_bus`]) and `gnome-keyring-daemon` on it, its login keyring created and unlocked with a throwaway
//! password, in fresh temporary `XDG_DATA_HOME`/`XDG_RUNTIME_DIR` directories (mode 0700).
//!
//! Each [`SecretService`] is independent, so tests can run in parallel; kiln is run as a child
//! process with [`SecretService::apply`]'s environment, so no D-Bus connection is shared
//! between threads of the test process. Both daemons are killed on drop.
//!
//! Needs the Debian packages `dbus` and `gnome-keyring` (`tests/run.sh` installs them).

#![allow(dead_code)]

#[path = "private_bus.rs"]
mod private_bus;

use private_bus::PrivateBus;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemons and their directories.
pub struct SecretService {
    keyring: Child,
    bus: PrivateBus,
    dir: tempfile::TempDir,
}

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is missing: install {package} (apt-get install -y --no-install-recommends {package}); the keyring tests run a real Secret Service"
    );
}

/// How long one gnome-keyring daemon gets to make its login keyring.
const KEYRING_WAIT: Duration = Duration::from_secs(20);
/// How many daemons are tried before the test fails.
const KEYRING_ATTEMPTS: u32 = 3;

/// Where the current gnome-keyring daemon's messages go (shown if it never gets ready).
fn keyring_log(dir: &Path) -> Stdio {
    std::fs::File::create(dir.join("keyring.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Starts gnome-keyring on the bus at `address`, its files in `dir`, with the login keyring's
/// password on its standard input.
fn spawn_keyring(address: &str, dir: &Path) -> Child {
    let mut keyring = Command::new("gnome-keyring-daemon")
        .args(["--foreground", "--unlock", "--components=secrets"])
        .env("DBUS_SESSION_BUS_ADDRESS", address)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("HOME", dir.join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(keyring_log(dir))
        .spawn()
        .expect("start gnome-keyring-daemon");
    let mut stdin = keyring.stdin.take().unwrap();
    stdin.write_all(b"test-keyring-password").unwrap();
    drop(stdin);
    keyring
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

impl SecretService {
    /// Starts a bus and an unlocked gnome-keyring on it; waits until the Secret Service
    /// answers.
    pub fn start() -> Self {
        require("dbus-daemon", "dbus");
        require("gnome-keyring-daemon", "gnome-keyring");
        let dir = tempfile::tempdir().unwrap();
        for sub in ["data", "run", "config", "home"] {
            private_dir(&dir.path().join(sub));
        }
        let bus = PrivateBus::start();
        let address = bus.address().to_string();
        let keyring = spawn_keyring(&address, dir.path());
        let mut service = Self { keyring, bus, dir };
        // A daemon that never makes its login keyring is replaced by a fresh one (with fresh
        // files); since the bus no longer auto-starts a rival daemon this is a last resort.
        let mut attempt = 1;
        while let Err(last) = service.wait_until_answering() {
            assert!(
                attempt < KEYRING_ATTEMPTS,
                "gnome-keyring's login keyring was not ready on the private bus after {KEYRING_ATTEMPTS} daemons of {} s each: {last}; the last daemon said: {}",
                KEYRING_WAIT.as_secs(),
                std::fs::read_to_string(service.dir.path().join("keyring.log")).unwrap_or_default()
            );
            attempt += 1;
            let _ = service.keyring.kill();
            let _ = service.keyring.wait();
            let data = service.dir.path().join("data");
            let _ = std::fs::remove_dir_all(&data);
            private_dir(&data);
            service.keyring = spawn_keyring(&address, service.dir.path());
        }
        service
    }

    /// Waits until the Secret Service answers *and* its default collection (the login
    /// keyring, made from the password on stdin) exists and is unlocked: the service answers
    /// a ping before that, and a store in between fails ("result not returned from SS API").
    fn wait_until_answering(&self) -> Result<(), String> {
        let deadline = Instant::now() + KEYRING_WAIT;
        let mut last = String::new();
        loop {
            if let Some(collection) = self.default_collection(&mut last)
                && self.unlocked(&collection, &mut last)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dbus_call(
        &self,
        path: &str,
        method: &str,
        args: &[&str],
        last: &mut String,
    ) -> Option<String> {
        let out = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                path,
                method,
            ])
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus.address())
            .output()
            .expect("run dbus-send");
        if out.status.success() {
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            *last = String::from_utf8_lossy(&out.stderr).into_owned();
            None
        }
    }

    /// The default collection's object path, once there is one.
    fn default_collection(&self, last: &mut String) -> Option<String> {
        let reply = self.dbus_call(
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            &["string:default"],
            last,
        )?;
        let path = reply.split('"').nth(1)?.to_string();
        if path == "/" {
            *last = "no default collection yet".into();
            return None;
        }
        Some(path)
    }

    fn unlocked(&self, collection: &str, last: &mut String) -> bool {
        let reply = self.dbus_call(
            collection,
            "org.freedesktop.DBus.Properties.Get",
            &["string:org.freedesktop.Secret.Collection", "string:Locked"],
            last,
        );
        match reply {
            Some(r) if r.contains("boolean false") => true,
            Some(r) => {
                *last = format!("{collection} is locked: {r}");
                false
            }
            None => false,
        }
    }

    /// The kiln config directory of this test (`KILN_CONFIG_DIR`).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Where gnome-keyring keeps its files (to check that no secret is there in clear).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The home directory kiln sees (empty: no `~/.ssh` keys unless a test puts some).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Points `command` at this keyring and config (and nothing of the host's).
    pub fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus.address())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("KILN_CONFIG_DIR", self.config_dir())
            .env("HOME", self.home())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("EXOSCALE_API_KEY")
            .env_remove("EXOSCALE_API_SECRET")
    }
}

impl SecretService {
    /// Runs `command` on this keyring with `stdin` on its standard input; its output.
    pub fn run(&self, command: &mut Command, stdin: &str) -> std::process::Output {
        let mut child = self
            .apply(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the command");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .expect("write its standard input");
        child.wait_with_output().expect("wait for the command")
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
    }
}
