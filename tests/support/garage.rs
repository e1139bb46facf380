//! A real S3 server for the object store tests: a single-node Garage on free ports of
//! 127.0.0.1, in a temp dir, started once per test binary.
//!
//! The binary is `$KILN_GARAGE`, else `~/.cache/kiln-tests/garage-2.5/bin/garage` (installed by
//! `tests/run.sh`). Garage accepts the API test server's key and secret
//! ([`crate::exoscale_api::TEST_KEY`]), so one pair serves S3 and the API, as on Exoscale.
//!
//! Garage runs under a small `sh` guardian that holds a pipe from the test process: when the
//! test binary exits (or dies), the pipe closes, and the guardian stops Garage and removes
//! its directory, so nothing is left behind.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::exoscale_api::{TEST_KEY, TEST_SECRET};

/// The zone Garage serves (its `s3_region`), as SOS does for its zone.
pub const ZONE: &str = "ch-gva-2";

/// A running Garage.
pub struct Garage {
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The S3 port.
    pub s3_port: u16,
    dir: PathBuf,
    binary: PathBuf,
    /// Kept open for as long as the test binary lives: closing it stops Garage.
    _guardian: Mutex<(Child, ChildStdin)>,
}

static GARAGE: OnceLock<Garage> = OnceLock::new();

/// The binary: `$KILN_GARAGE` or the cached install.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KILN_GARAGE") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/kiln-tests/garage-2.5/bin/garage")
}

/// How long a test binary using Garage may run before the watchdog ends it.
pub const WATCHDOG: Duration = Duration::from_secs(600);

/// The shared Garage, started on first use. A watchdog ends the test binary, with Garage's
/// log, when it runs longer than [`WATCHDOG`]: a stalled request fails the run instead of
/// hanging CI.
pub fn garage() -> &'static Garage {
    GARAGE.get_or_init(|| {
        let garage = Garage::start();
        let log = garage.dir.join("garage.log");
        std::thread::spawn(move || {
            std::thread::sleep(WATCHDOG);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!(
                "watchdog: the tests using Garage ran longer than {WATCHDOG:?}; the end of Garage's log:"
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            std::process::exit(101);
        });
        garage
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl Garage {
    fn start() -> Garage {
        let binary = binary();
        assert!(
            binary.is_file(),
            "Garage is not installed at {}: run tests/run.sh once, or `cargo install garage --locked --version '^2.5' --root ~/.cache/kiln-tests/garage-2.5`",
            binary.display()
        );
        // Not a tempfile::TempDir: the guardian removes it after the test binary exits.
        let dir = tempfile::Builder::new()
            .prefix("kiln-garage-")
            .tempdir()
            .expect("a temp dir for Garage")
            .keep();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let config = format!(
            r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{ZONE}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
"#,
            dir = dir.display(),
            rpc_secret = hex::encode(fastrand::u128(..).to_be_bytes()).repeat(2),
            admin_token = hex::encode(fastrand::u128(..).to_be_bytes()),
        );
        std::fs::write(dir.join("config.toml"), config).expect("write Garage's config");

        let script = r#"
            "$0" -c "$1/config.toml" server >"$1/garage.log" 2>&1 &
            pid=$!
            cat >/dev/null
            kill $pid 2>/dev/null
            wait $pid 2>/dev/null
            rm -rf "$1"
        "#;
        let mut guardian = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&binary)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Garage");
        let stdin = guardian.stdin.take().expect("the guardian's stdin");
        let garage = Garage {
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            s3_port,
            dir,
            binary,
            _guardian: Mutex::new((guardian, stdin)),
        };
        garage.set_up();
        garage
    }

    /// `garage -c <config> <args>`, which must succeed; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.join("config.toml"))
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .expect("run garage");
        assert!(
            out.status.success(),
            "garage {args:?} failed:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn set_up(&self) {
        let config = self.dir.join("config.toml");
        let mut up = false;
        for _ in 0..120 {
            let status = Command::new(&self.binary)
                .arg("-c")
                .arg(&config)
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run garage status");
            if status.success() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(
            up,
            "Garage did not start in 30 s; its log:\n{}",
            std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default()
        );
        let node = self.cli(&["node", "id", "-q"]);
        let node = node
            .trim()
            .split('@')
            .next()
            .expect("a node id")
            .to_string();
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        self.cli(&["layout", "apply", "--version", "1"]);
        self.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "kiln-tests",
            TEST_KEY,
            TEST_SECRET,
        ]);
        self.cli(&["key", "allow", "--create-bucket", TEST_KEY]);
        // Writes are refused until the layout is live everywhere; one node is quick.
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Creates `bucket`, usable by the test key.
    pub fn create_bucket(&self, bucket: &str) {
        self.cli(&["bucket", "create", bucket]);
        self.allow(bucket);
    }

    /// Lets the test key read, write and own `bucket` (made through S3 or the CLI).
    pub fn allow(&self, bucket: &str) {
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", TEST_KEY,
        ]);
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default()
    }

    /// Garage's directory (removed when the test binary exits).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes `len` bytes of a reproducible pseudo-random pattern to `path`; their MD5.
pub fn write_pattern(path: &Path, len: u64, seed: u64) -> String {
    use md5::Digest as _;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create file"));
    let mut md5 = md5::Md5::new();
    let mut left = len;
    let mut chunk = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill(&mut chunk[..n]);
        md5.update(&chunk[..n]);
        file.write_all(&chunk[..n]).expect("write file");
        left -= n as u64;
    }
    file.flush().expect("flush file");
    hex::encode(md5.finalize())
}
