//! Publishing end to end, with credentials only in the OS keyring: a real VM build
//! (tests/build/publish.json) whose SSH key is a keyring key and whose `exoscale-import` uses
//! a keyring profile; the image goes to a real S3 server (Garage) and is registered with the
//! strict Exoscale API test server, which downloads it from the presigned URL and checks its
//! MD5 and virtual size. Every socket kiln or qemu listens on during the build is on
//! 127.0.0.1 (`ss -ltnp`). Then the leak check: the sentinel secrets (the profile's secret, a
//! sensitive variable, the private key) appear in no process's command line during the build
//! and in no file kiln wrote — config, state, logs, cache, data, temp.

#[path = "support/file_bytes.rs"]
mod file_bytes;
use file_bytes::{holds, holds_bytes};

#[path = "support/ssh_secret.rs"]
mod ssh_secret;

#[path = "support/exoscale_api.rs"]
mod exoscale_api;
#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/garage.rs"]
mod garage;
#[path = "support/secret_service.rs"]
mod secret_service;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use exoscale_api::{ApiServer, TEST_KEY, TEST_SECRET};
use kiln::exoscale::Credentials;
use kiln::objectstore::{ObjectStore, StoreConfig};
use kiln::recipe::secret::Secret;
use secret_service::SecretService;

const VARIABLE_SENTINEL: &str = "SENTINEL-variable-5f0c2e9a";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kiln_on(keyring: &SecretService, args: &[&str], stdin: &str) -> String {
    let out = keyring.run(Command::new(env!("CARGO_BIN_EXE_kiln")).args(args), stdin);
    assert!(out.status.success(), "kiln {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `kiln templates …` with the keyring's default profile, against `api`.
fn kiln_templates(keyring: &SecretService, api: &ApiServer, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    keyring
        .apply(&mut command)
        .args(args)
        .env("EXOSCALE_API_ENDPOINT", api.endpoint());
    let out = command.output().unwrap();
    assert!(out.status.success(), "kiln {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The parent of process `pid`, from /proc (None once it is gone).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: the fields after it are fixed.
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// Whether `pid` is a descendant of `ancestor` (processes of other test runs on the same
/// machine are not this build's).
fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        match parent_of(current) {
            Some(parent) if parent == ancestor => return true,
            Some(parent) if parent > 1 => current = parent,
            _ => return false,
        }
    }
    false
}

/// Samples the command line of every process this test started (kiln, qemu and what they
/// run) until `stop`, recording any that holds a sentinel.
fn watch_command_lines(
    sentinels: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>, bool)> {
    std::thread::spawn(move || {
        let mut samples = 0;
        let mut hits = Vec::new();
        let mut saw_qemu = false;
        while !stop.load(Ordering::Relaxed) {
            samples += 1;
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                if !descends_from(pid, std::process::id()) {
                    continue;
                }
                let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                saw_qemu |= holds(&cmdline, "qemu-system");
                for s in &sentinels {
                    if holds_bytes(&cmdline, s) {
                        hits.push(text(&cmdline).replace('\0', " "));
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        (samples, hits, saw_qemu)
    })
}

/// Samples `ss -ltnp` until `stop`: every listening TCP socket of a kiln or qemu process, as
/// (local address, process).
fn watch_listening_sockets(
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<std::collections::BTreeSet<(String, String)>> {
    std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new("ss")
                .args(["-ltnpH"])
                .output()
                .expect("ss (iproute2)");
            for line in text(&out.stdout).lines() {
                let Some(process) = ["\"kiln\"", "\"qemu-system-x86\""]
                    .into_iter()
                    .find(|p| line.contains(p))
                else {
                    continue;
                };
                let local = line.split_whitespace().nth(3).unwrap_or_default();
                seen.insert((local.to_string(), process.trim_matches('"').to_string()));
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        seen
    })
}

#[test]
fn a_build_with_keyring_credentials_publishes_to_exoscale_and_leaks_nothing() {
    let base = fixture::debian_image();
    let keyring = SecretService::start();
    let api = ApiServer::start();
    let s3 = garage::garage();
    let work = tempfile::tempdir().unwrap();

    // The user's set-up: a key imported into the keyring (its file then deleted), a profile
    // checked against the API and stored.
    let key_file = work.path().join("deploy-key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "deploy", "-f"])
        .arg(&key_file)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    // The key's own secret (its seed, raw, hex and base64), not its PEM's first line, which
    // every unencrypted OpenSSH key shares.
    let key_seed = ssh_secret::key_seed(&key_file, "");
    kiln_on(
        &keyring,
        &["keys", "import", "deploy", key_file.to_str().unwrap()],
        "",
    );
    std::fs::remove_file(&key_file).unwrap();
    std::fs::remove_file(key_file.with_extension("pub")).unwrap();
    let fingerprint = {
        let listed: serde_json::Value =
            serde_json::from_str(&kiln_on(&keyring, &["keys", "list", "--json"], "")).unwrap();
        listed[0]["fingerprint"].as_str().unwrap().to_string()
    };
    let mut check = Command::new(env!("CARGO_BIN_EXE_kiln"));
    keyring
        .apply(&mut check)
        .args(["credentials", "set", "work", "--stdin"])
        .env("EXOSCALE_API_ENDPOINT", api.endpoint())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = check.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{TEST_KEY}\n{TEST_SECRET}").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let bucket = format!("kiln-e2e-{}", std::process::id());
    let dirs = ["state", "cache", "data", "tmp"].map(|d| {
        let p = work.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    });
    let mut sentinels = vec![
        TEST_SECRET.as_bytes().to_vec(),
        VARIABLE_SENTINEL.as_bytes().to_vec(),
    ];
    sentinels.extend(ssh_secret::secret_forms(&key_seed));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_command_lines(sentinels.clone(), stop.clone());
    let sockets = watch_listening_sockets(stop.clone());

    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build/publish.json");
    let mut build = Command::new(env!("CARGO_BIN_EXE_kiln"));
    keyring
        .apply(&mut build)
        .current_dir(work.path())
        .env("XDG_STATE_HOME", &dirs[0])
        .env("XDG_CACHE_HOME", &dirs[1])
        .env("XDG_DATA_HOME", &dirs[2])
        .env("TMPDIR", &dirs[3])
        .env("EXOSCALE_API_ENDPOINT", api.endpoint())
        .env("EXOSCALE_SOS_ENDPOINT", &s3.endpoint)
        .env("KILN_TEST_SENTINEL", VARIABLE_SENTINEL)
        .args(["build", "-var"])
        .arg(format!("base_image={}", base.display()))
        .args(["-var", &format!("bucket={bucket}")])
        .arg(&recipe);
    let out = build.output().expect("kiln runs");
    stop.store(true, Ordering::Relaxed);
    let (samples, cmdline_hits, saw_qemu) = watcher.join().unwrap();
    assert!(
        saw_qemu,
        "the command-line watcher saw the build's qemu among this test's processes"
    );
    let sockets = sockets.join().unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "kiln build failed:\n{stderr}");

    // The keyring key was the build's key, and the sensitive variable was masked.
    let logs = files_under(&dirs[0].join("kiln/builds"));
    let build_log = logs
        .iter()
        .find(|p| p.ends_with("build.log"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("a build.log");
    assert!(
        build_log.contains(&format!("client key {fingerprint}")),
        "the keyring key {fingerprint} is the build's key:\n{build_log}"
    );
    assert!(
        stdout.contains("the sentinel is ********"),
        "the sensitive variable is masked in the provisioner's output:\n{stdout}"
    );

    // Registered in the first zone from a presigned URL, copied to the second.
    let name = format!("kiln e2e {}", chrono::Utc::now().format("%Y-%m-%d"));
    for zone in ["ch-gva-2", "de-fra-1"] {
        let templates = api.templates(zone);
        assert!(
            templates.iter().any(|t| t["name"] == name.as_str()),
            "{zone}: {templates:?}"
        );
    }
    assert!(
        stdout.contains(&format!("template \"{name}\" registered: ch-gva-2=")),
        "{stdout}"
    );
    let downloads = api.downloads();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert!(
        downloads[0].contains("X-Amz-Signature=") && downloads[0].contains("X-Amz-Expires="),
        "registered from a presigned URL, not a public object: {}",
        downloads[0]
    );

    // `kiln templates` sees it through the same profile (its zone: ch-gva-2), then deletes it.
    let listed: serde_json::Value = serde_json::from_str(&kiln_templates(
        &keyring,
        &api,
        &["templates", "list", "--json"],
    ))
    .unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not listed: {listed}"))
        .clone();
    assert_eq!(mine["zone"], "ch-gva-2");
    assert_eq!(mine["size"], 10u64 << 30, "{mine}");
    assert_eq!(mine["stale"], false);
    assert_eq!(mine["age-days"], 0);
    assert_eq!(mine["default-user"], "debian", "{mine}");
    let id = mine["id"].as_str().unwrap();
    kiln_templates(&keyring, &api, &["templates", "delete", id, "--yes"]);
    assert!(
        !api.templates("ch-gva-2")
            .iter()
            .any(|t| t["name"] == name.as_str()),
        "deleted"
    );

    // The uploaded object was removed after registration, and no multipart upload is left.
    let key = downloads[0]
        .split('?')
        .next()
        .unwrap()
        .split(&format!("/{bucket}/"))
        .nth(1)
        .unwrap()
        .to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = ObjectStore::new(&StoreConfig {
        endpoint: s3.endpoint.clone(),
        zone: garage::ZONE.to_string(),
        bucket: bucket.clone(),
        credentials: Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap(),
    })
    .unwrap();
    assert!(!runtime.block_on(store.exists(&key)).unwrap(), "{key}");
    assert!(
        runtime
            .block_on(store.pending_uploads())
            .unwrap()
            .is_empty()
    );

    // Every socket kiln or qemu listened on was on the loopback interface: the SSH forward,
    // the VNC display and kiln's HTTP server were all seen. The guest reached the HTTP server
    // at PACKER_HTTP_ADDR, as Packer's shell provisioner gives it.
    assert!(
        stdout.contains("served by kiln's HTTP server"),
        "the guest fetched /motd from PACKER_HTTP_ADDR: {stdout}"
    );
    let port = |local: &str| {
        local
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(0)
    };
    assert!(
        sockets
            .iter()
            .any(|(l, p)| p.starts_with("qemu") && !(5990..=5999).contains(&port(l))),
        "qemu's SSH forward was never seen listening: {sockets:?}"
    );
    assert!(
        sockets
            .iter()
            .any(|(l, p)| p.starts_with("qemu") && (5990..=5999).contains(&port(l))),
        "qemu's VNC display (5990-5999) was never seen listening: {sockets:?}"
    );
    assert!(
        sockets.iter().any(|(_, p)| p == "kiln"),
        "kiln's HTTP server was never seen listening: {sockets:?}"
    );
    for (local, process) in &sockets {
        assert!(
            local.starts_with("127.0.0.1:"),
            "{process} listened on {local}, not on 127.0.0.1: {sockets:?}"
        );
    }

    // The leak check.
    assert!(
        samples > 10,
        "the command-line watcher ran ({samples} samples)"
    );
    assert!(
        cmdline_hits.is_empty(),
        "a sentinel was on a command line: {cmdline_hits:?}"
    );
    for s in &sentinels {
        assert!(!holds_bytes(stdout.as_bytes(), s) && !holds_bytes(stderr.as_bytes(), s));
    }
    // The history (under XDG_DATA_HOME) recorded the build, and is scanned with the rest.
    assert!(
        dirs[2].join("kiln/history.sqlite").is_file(),
        "the build is in the history"
    );
    let mut scanned = 0;
    for dir in dirs.iter().chain([&keyring.config_dir()]) {
        for file in files_under(dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            scanned += 1;
            for s in &sentinels {
                assert!(
                    !holds_bytes(&bytes, s),
                    "a sentinel is in {}",
                    file.display()
                );
            }
            assert!(
                !ssh_secret::holds_key(&bytes, &key_seed),
                "the private key is in {}",
                file.display()
            );
        }
    }
    assert!(
        scanned >= 3,
        "the leak check read the build's files ({scanned})"
    );
    let leftovers = files_under(&dirs[3]);
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}
