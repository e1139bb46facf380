//! `kiln credentials` and `kiln keys` against a real Secret Service: gnome-keyring on a
//! private D-Bus session bus (tests/support/secret_service.rs), with the strict Exoscale API
//! test server for the profile checks. kiln runs as the user runs it: the real binary, secrets
//! on standard input.

#[path = "support/exoscale_api.rs"]
mod exoscale_api;
#[path = "support/secret_service.rs"]
mod secret_service;
#[path = "support/ssh_secret.rs"]
mod ssh_secret;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use exoscale_api::{ApiServer, TEST_KEY, TEST_SECRET};
use secret_service::SecretService;
use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs kiln on `keyring`, the API at `server` (when given), `stdin` on standard input.
fn kiln(keyring: &SecretService, server: Option<&ApiServer>, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.args(args).env_remove("KILN_LOG");
    match server {
        Some(s) => command.env("EXOSCALE_API_ENDPOINT", s.endpoint()),
        None => command.env_remove("EXOSCALE_API_ENDPOINT"),
    };
    keyring.run(&mut command, stdin)
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every file under `dir`, read as bytes, must not contain `needle`.
fn assert_nowhere_under(dir: &Path, needle: &str) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn profiles_are_checked_stored_listed_used_and_removed() {
    let keyring = SecretService::start();
    let server = ApiServer::start();
    let creds = format!("{TEST_KEY}\n{TEST_SECRET}\n");

    // A wrong secret is checked and refused: nothing stored.
    let out = kiln(
        &keyring,
        Some(&server),
        &["credentials", "set", "work", "--stdin"],
        &format!("{TEST_KEY}\nnot-the-secret\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not stored: wrong key or secret") && stderr.contains("--no-check"),
        "{stderr}"
    );
    assert!(!keyring.config_dir().join("config.toml").exists());

    // The right one: checked (a signed list call), stored, the default.
    let out = ok(&kiln(
        &keyring,
        Some(&server),
        &[
            "credentials",
            "set",
            "work",
            "--zone",
            "de-fra-1",
            "--stdin",
        ],
        &creds,
    ));
    assert!(out.contains("valid"), "{out}");
    assert!(out.contains("stored profile `work` (zone de-fra-1), the default,"));
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.path.starts_with("/de-fra-1/") && s.status == 200),
        "the check asks the profile's zone: {:?}",
        server.seen()
    );
    // A second one, without a check (no network needed), not the default.
    ok(&kiln(
        &keyring,
        None,
        &["credentials", "set", "perso", "--stdin", "--no-check"],
        "EXOother\nSENTINEL-other-secret\n",
    ));

    let listed: Value = serde_json::from_str(&ok(&kiln(
        &keyring,
        None,
        &["credentials", "list", "--json"],
        "",
    )))
    .unwrap();
    assert_eq!(
        listed,
        json!([
            {"name": "perso", "zone": "ch-gva-2", "default": false, "in_keyring": true},
            {"name": "work", "zone": "de-fra-1", "default": true, "in_keyring": true},
        ])
    );

    // `check` signs with what the keyring holds.
    let out = ok(&kiln(
        &keyring,
        Some(&server),
        &["credentials", "check"],
        "",
    ));
    assert!(out.contains("profile `work` (de-fra-1): valid"), "{out}");
    let out = kiln(
        &keyring,
        Some(&server),
        &["credentials", "check", "--profile", "perso"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("wrong key or secret"));

    // `templates list` uses the default profile and its zone.
    server.add_template(
        "de-fra-1",
        json!({"name": "from-profile", "visibility": "private"}),
    );
    let out = ok(&kiln(&keyring, Some(&server), &["templates", "list"], ""));
    assert!(out.contains("from-profile"), "{out}");
    let out = ok(&kiln(
        &keyring,
        Some(&server),
        &[
            "templates",
            "list",
            "--profile",
            "work",
            "--zone",
            "ch-gva-2",
        ],
        "",
    ));
    assert!(!out.contains("from-profile"), "{out}");

    // No secret in the config or, in clear, in gnome-keyring's files.
    let config = std::fs::read_to_string(keyring.config_dir().join("config.toml")).unwrap();
    assert!(config.contains("[profiles.work]"), "{config}");
    for needle in [TEST_SECRET, "SENTINEL-other-secret", TEST_KEY] {
        assert_nowhere_under(&keyring.config_dir(), needle);
        assert_nowhere_under(&keyring.data_dir(), needle);
    }

    // Remove: gone from the keyring and the config; the default goes with it.
    let out = ok(&kiln(
        &keyring,
        None,
        &["credentials", "remove", "work"],
        "",
    ));
    assert!(out.contains("removed profile `work`"));
    let out = kiln(&keyring, None, &["credentials", "remove", "work"], "");
    assert_eq!(out.status.code(), Some(1));
    let out = kiln(&keyring, Some(&server), &["credentials", "check"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("none is the default"));
    let out = kiln(
        &keyring,
        Some(&server),
        &["templates", "list", "--profile", "work"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no credentials profile `work` (known: perso)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_input_to_credentials_set_is_refused_before_the_keyring_is_touched() {
    let keyring = SecretService::start();
    let out = kiln(
        &keyring,
        None,
        &["credentials", "set", "work", "--stdin", "--no-check"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read the API key: it is empty"),
        "{}",
        text(&out.stderr)
    );
    let out = kiln(
        &keyring,
        None,
        &["credentials", "set", "a b", "--stdin", "--no-check"],
        "k\ns\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`a b` is not a usable name"));
    let out = kiln(
        &keyring,
        None,
        &["credentials", "set", "w", "--zone", "mars-1", "--stdin"],
        "k\ns\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown Exoscale zone `mars-1`"));
    assert!(!keyring.config_dir().join("config.toml").exists());
}

fn ssh_keygen(path: &Path, passphrase: &str, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(status.success());
}

fn fingerprint(public_key_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key_file)
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn ssh_keys_are_generated_imported_listed_and_removed() {
    let keyring = SecretService::start();
    let work = tempfile::tempdir().unwrap();

    // Generate: the public half on stdout, the private half only in the keyring.
    let public = ok(&kiln(&keyring, None, &["keys", "generate", "deploy"], ""));
    assert!(public.starts_with("ssh-ed25519 ") && public.trim_end().ends_with(" kiln-deploy"));
    let shown = ok(&kiln(&keyring, None, &["keys", "show", "deploy"], ""));
    assert_eq!(shown, public);

    // A second key under the same name would lose the first one's private half: refused,
    // and the first key stays; --replace replaces it on purpose.
    let again = kiln(&keyring, None, &["keys", "generate", "deploy"], "");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already holds an SSH key `deploy`"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        ok(&kiln(&keyring, None, &["keys", "show", "deploy"], "")),
        public
    );
    let replaced = ok(&kiln(
        &keyring,
        None,
        &["keys", "generate", "deploy", "--replace"],
        "",
    ));
    assert_ne!(replaced, public, "a new key");
    assert_eq!(
        ok(&kiln(&keyring, None, &["keys", "show", "deploy"], "")),
        replaced
    );

    // Import an unencrypted key from a file, and an encrypted one from standard input with
    // its passphrase on the next line.
    let plain = work.path().join("plain");
    ssh_keygen(&plain, "", "plain-key");
    let out = ok(&kiln(
        &keyring,
        None,
        &["keys", "import", "plain", plain.to_str().unwrap()],
        "",
    ));
    assert!(
        out.contains(&fingerprint(&plain.with_extension("pub"))),
        "{out}"
    );
    let encrypted = work.path().join("encrypted");
    ssh_keygen(&encrypted, "correct horse", "encrypted-key");
    let wrong = kiln(
        &keyring,
        None,
        &[
            "keys",
            "import",
            "enc",
            encrypted.to_str().unwrap(),
            "--passphrase-stdin",
        ],
        "wrong\n",
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("passphrase"),
        "{}",
        text(&wrong.stderr)
    );
    ok(&kiln(
        &keyring,
        None,
        &[
            "keys",
            "import",
            "enc",
            encrypted.to_str().unwrap(),
            "--passphrase-stdin",
        ],
        "correct horse\n",
    ));
    // A key piped in (the default file is `-`).
    let piped = work.path().join("piped");
    ssh_keygen(&piped, "", "piped-key");
    ok(&kiln(
        &keyring,
        None,
        &["keys", "import", "piped"],
        &std::fs::read_to_string(&piped).unwrap(),
    ));

    // A public key file in ~/.ssh and an ssh-agent's key are listed too.
    let ssh_dir = keyring.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let file_key = ssh_dir.join("id_ed25519");
    ssh_keygen(&file_key, "", "file-key");
    let agent_dir = tempfile::tempdir().unwrap();
    let socket = agent_dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let agent_key = work.path().join("agent");
    ssh_keygen(&agent_key, "", "agent-key");
    let added = Command::new("ssh-add")
        .arg(&agent_key)
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success());

    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    keyring
        .apply(&mut command)
        .args(["keys", "list", "--json"])
        .env("SSH_AUTH_SOCK", &socket);
    let listed = command.output().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let listed: Value = serde_json::from_str(&ok(&listed)).unwrap();
    let rows: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["source"].as_str().unwrap().to_string(),
                k["comment"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let file_source = file_key.with_extension("pub").display().to_string();
    for expected in [
        ("keyring:deploy", "kiln-deploy"),
        ("keyring:enc", "encrypted-key"),
        ("keyring:piped", "piped-key"),
        ("keyring:plain", "plain-key"),
        (file_source.as_str(), "file-key"),
        ("ssh-agent", "agent-key"),
    ] {
        assert!(
            rows.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from {rows:?}"
        );
    }

    // No private key in the config or, in clear, in gnome-keyring's files: each key's own
    // secret (its seed raw, hex or base64, or a private key block of it in any encoding),
    // not its PEM's first line, which every unencrypted OpenSSH key shares. The encrypted
    // key is looked for as kiln stores it: decrypted.
    let seeds = [
        ssh_secret::key_seed(&plain, ""),
        ssh_secret::key_seed(&piped, ""),
        ssh_secret::key_seed(&encrypted, "correct horse"),
    ];
    // The check finds a key file of its own key, and not another key's.
    let plain_file = std::fs::read(&plain).unwrap();
    assert!(ssh_secret::holds_key(&plain_file, &seeds[0]));
    assert!(!ssh_secret::holds_key(&plain_file, &seeds[1]));
    for seed in &seeds {
        for dir in [keyring.config_dir(), keyring.data_dir()] {
            for file in walk(&dir) {
                let bytes = std::fs::read(&file).unwrap_or_default();
                assert!(
                    !ssh_secret::holds_key(&bytes, seed),
                    "a private key is in {}",
                    file.display()
                );
            }
        }
    }

    // Remove.
    ok(&kiln(&keyring, None, &["keys", "remove", "plain"], ""));
    let out = kiln(&keyring, None, &["keys", "show", "plain"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("no SSH key `plain` in the OS keyring (known: deploy, enc, piped)")
    );
}

#[test]
fn without_a_session_bus_the_error_says_how_to_get_on() {
    let runtime = tempfile::tempdir().unwrap();
    for args in [
        &["credentials", "list"][..],
        &["keys", "generate", "x"][..],
        &["credentials", "set", "x", "--stdin", "--no-check"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("KILN_CONFIG_DIR", runtime.path().join("config"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("the OS keyring is not reachable")
                && stderr.contains("desktop session")
                && stderr.contains("EXOSCALE_API_KEY"),
            "{args:?}: {stderr}"
        );
        assert!(
            !runtime.path().join("config").exists(),
            "nothing written without a keyring"
        );
    }
    // `kiln doctor` says so too, as a warning with the fix.
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["doctor", "--json"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap();
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keyring = doctor_check(&checks, "OS keyring");
    assert_eq!(keyring["status"], "warn", "{keyring}");
    assert!(keyring["fix"].as_str().unwrap().contains("gnome-keyring"));
}

fn doctor_check<'a>(checks: &'a Value, name: &str) -> &'a Value {
    let list = checks
        .as_array()
        .or_else(|| checks["checks"].as_array())
        .unwrap_or_else(|| panic!("doctor's JSON: {checks}"));
    list.iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks}"))
}

#[test]
fn doctor_sees_the_secret_service() {
    let keyring = SecretService::start();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    let out = keyring.run(command.args(["doctor", "--json"]), "");
    let checks: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doctor_check(&checks, "OS keyring")["status"],
        "ok",
        "{checks}"
    );
}

#[test]
fn a_build_takes_the_key_and_profile_chosen_on_the_command_line() {
    let keyring = SecretService::start();
    let work = tempfile::tempdir().unwrap();
    let deploy = ok(&kiln(&keyring, None, &["keys", "generate", "deploy"], ""));
    ok(&kiln(&keyring, None, &["keys", "generate", "other"], ""));
    ok(&kiln(
        &keyring,
        None,
        &["credentials", "set", "work", "--stdin", "--no-check"],
        "EXOabcdef0123456789abcdef01\nsecret-of-work\n",
    ));
    // A recipe with its own cloud-init data that authorises `deploy`'s public half.
    let recipe = work.path().join("own-seed.json");
    std::fs::write(
        &recipe,
        serde_json::json!({
            "builders": [{
                "type": "qemu", "disk_image": true, "iso_url": "base.qcow2", "iso_checksum": "none",
                "ssh_username": "debian", "cd_label": "cidata",
                "cd_content": {
                    "meta-data": "instance-id: own\n",
                    "user-data": format!("#cloud-config\nssh_authorized_keys:\n  - {}", deploy.trim())
                }
            }],
            "post-processors": [{
                "type": "exoscale-import", "image_bucket": "b", "template_name": "t"
            }]
        })
        .to_string(),
    )
    .unwrap();
    let recipe = recipe.to_str().unwrap();

    // Unknown names are refused before anything, naming the ones there are.
    let out = kiln(
        &keyring,
        None,
        &["validate", "--ssh-key", "deplyo", recipe],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(keys: deploy, other)"),
        "{}",
        text(&out.stderr)
    );
    let out = kiln(&keyring, None, &["build", "--profile", "wrok", recipe], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(profiles: work)"),
        "{}",
        text(&out.stderr)
    );

    // The key the recipe's seed authorises is fine; another one is a problem found now, not
    // an SSH timeout later; so is a temporary key.
    ok(&kiln(
        &keyring,
        None,
        &["validate", "--ssh-key", "deploy", recipe],
        "",
    ));
    for key in ["other", "temporary"] {
        let out = kiln(&keyring, None, &["validate", "--ssh-key", key, recipe], "");
        assert_eq!(out.status.code(), Some(1), "{key}");
        assert!(
            text(&out.stderr).contains("the recipe's own cloud-init data (cd_content user-data)"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = kiln(&keyring, None, &["build", "--ssh-key", "other", recipe], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nothing was built"),
        "{}",
        text(&out.stderr)
    );

    // inspect shows the build as chosen.
    let shown = ok(&kiln(
        &keyring,
        None,
        &[
            "inspect",
            "--ssh-key",
            "deploy",
            "--profile",
            "work",
            recipe,
        ],
        "",
    ));
    assert!(shown.contains("with keyring key `deploy`"), "{shown}");
    assert!(shown.contains("credentials of profile `work`"), "{shown}");
}
