//! A throwaway OpenSSH server on loopback for the `ssh` module's tests.
//!
//! Each [`Sshd`] runs `/usr/sbin/sshd -D -e` on its own free port of 127.0.0.1 with a
//! generated config, an Ed25519 host key made by kiln's own key generator, and an
//! `authorized_keys` file holding kiln's generated client key. It logs to a file in its
//! temporary directory (shown when a test fails) and is killed on drop.
//!
//! Needs the Debian package `openssh-server` (sshd and sftp-server) and, for a few tests,
//! `openssh-client` (ssh-keygen, ssh-agent, ssh-add; pulled in by openssh-server).

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln::ssh::{Auth, HostKeyPolicy, KeyPair, Target};

/// Where Debian puts the server.
pub const SSHD: &str = "/usr/sbin/sshd";
/// Where Debian puts the SFTP server.
pub const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// Fails the test with the install command when OpenSSH's server is missing.
pub fn require_sshd() {
    for path in [SSHD, SFTP_SERVER] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install openssh-server (apt-get install -y openssh-server); \
             the ssh tests run a real sshd on loopback"
        );
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The user the tests run as (sshd only lets this one in).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_string()
}

/// The keys of one server: its host key and the client key it accepts.
#[derive(Clone, Debug)]
pub struct SshdKeys {
    /// The server's host key (what kiln pins).
    pub host: KeyPair,
    /// The key in `authorized_keys`.
    pub client: KeyPair,
}

impl SshdKeys {
    /// Fresh keys.
    pub fn generate() -> Self {
        Self {
            host: KeyPair::generate_with_comment("kiln-test-host").unwrap(),
            client: KeyPair::generate().unwrap(),
        }
    }
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct SshdOptions {
    /// The port, or a free one.
    pub port: Option<u16>,
    /// Whether to offer the `sftp` subsystem.
    pub sftp: bool,
    /// The keys, or fresh ones.
    pub keys: Option<SshdKeys>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        Self {
            port: None,
            sftp: true,
            keys: None,
        }
    }
}

/// A running sshd, killed on drop.
pub struct Sshd {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its keys.
    pub keys: SshdKeys,
    /// The user it lets in.
    pub user: String,
    /// Its temporary directory (config, keys, log); tests may put files there too.
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Sshd {
    /// Starts a server with SFTP on a free port and waits until it listens.
    pub fn start() -> Self {
        let mut sshd = Self::spawn(SshdOptions::default());
        sshd.wait_listening();
        sshd
    }

    /// Starts a server with `options` and waits until it listens.
    pub fn start_with(options: SshdOptions) -> Self {
        let mut sshd = Self::spawn(options);
        sshd.wait_listening();
        sshd
    }

    /// Starts a server without waiting for it.
    pub fn spawn(options: SshdOptions) -> Self {
        require_sshd();
        // sshd refuses to start as root without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().expect("temporary directory");
        let keys = options.keys.unwrap_or_else(SshdKeys::generate);
        let port = options.port.unwrap_or_else(free_port);
        let user = current_user();

        let host_key = dir.path().join("ssh_host_ed25519_key");
        write_private(
            &host_key,
            keys.host.private_key_openssh().unwrap().expose().as_bytes(),
        );
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(
            &authorized,
            format!("{}\n", keys.client.public_key_openssh()),
        )
        .expect("write authorized_keys");

        let mut config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowUsers {user}\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             LogLevel VERBOSE\n",
            host_key = host_key.display(),
            authorized = authorized.display(),
        );
        if options.sftp {
            config += &format!("Subsystem sftp {SFTP_SERVER}\n");
        }
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config).expect("write sshd_config");

        let log = dir.path().join("sshd.log");
        let log_file = std::fs::File::create(&log).expect("create the sshd log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-p", &port.to_string(), "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start sshd");
        Self {
            child,
            port,
            keys,
            user,
            dir,
            log,
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A target for this server: its user, its client key, its host key pinned.
    pub fn target(&self) -> Target {
        Target::new(
            self.addr(),
            self.user.clone(),
            Auth::Key(self.keys.client.clone()),
            HostKeyPolicy::pinned(self.keys.host.public_key().clone()),
        )
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Blocks until the server accepts TCP connections; fails the test with the server's
    /// log if it exits or does not listen within 30 s.
    pub fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sshd exited ({status}) before listening:\n{}", self.log());
            }
            if started.elapsed() > Duration::from_secs(30) {
                panic!(
                    "sshd did not listen on {} within 30 s:\n{}",
                    self.addr(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sshd log ({}) ---\n{}", self.addr(), self.log());
        }
    }
}

/// Writes `bytes` to a new file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create a private file");
    f.write_all(bytes).expect("write a private file");
}

/// An ssh-agent on a socket in a temporary directory, killed on drop.
pub struct Agent {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `ssh-agent -D -a SOCKET` and waits for its socket.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent (Debian package openssh-client)");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    /// Adds `key` with `ssh-add`.
    pub fn add(&self, key: &KeyPair) {
        let file = self._dir.path().join("key");
        write_private(
            &file,
            key.private_key_openssh().unwrap().expose().as_bytes(),
        );
        let out = Command::new("ssh-add")
            .arg(&file)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .expect("run ssh-add");
        assert!(out.status.success(), "ssh-add failed: {out:?}");
        let _ = std::fs::remove_file(&file);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
