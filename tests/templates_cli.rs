//! `kiln templates` as a user runs it: the real binary against the strict API test server,
//! with credentials in the environment and `EXOSCALE_API_ENDPOINT` pointing at 127.0.0.1.

#[path = "support/exoscale_api.rs"]
mod exoscale_api;
#[path = "support/image_server.rs"]
mod image_server;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use exoscale_api::{ApiServer, Fault, TEST_KEY, TEST_SECRET};
use serde_json::{Value, json};

fn kiln_with(server: &ApiServer, secret: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("EXOSCALE_API_KEY", TEST_KEY)
        .env("EXOSCALE_API_SECRET", secret)
        .env("EXOSCALE_API_ENDPOINT", server.endpoint())
        .env_remove("KILN_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("kiln runs")
}

fn kiln(server: &ApiServer, args: &[&str]) -> Output {
    kiln_with(server, TEST_SECRET, args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days) - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn template(name: &str, days: i64) -> Value {
    json!({
        "name": name,
        "size": 10737418240u64,
        "boot-mode": "legacy",
        "visibility": "private",
        "created-at": days_ago(days),
        "ssh-key-enabled": true,
        "password-enabled": false,
        "default-user": "debian",
    })
}

#[test]
fn list_shows_every_zone_with_age_and_stale_flag() {
    let server = ApiServer::start();
    let old = server.add_template("de-fra-1", template("Debian 12 2026-10-01", 45));
    let fresh = server.add_template("at-vie-1", template("Debian 12 2026-11-24", 2));
    let mut public = template("Linux Debian 12 (Bookworm) 64-bit", 100);
    public["visibility"] = json!("public");
    public["family"] = json!("debian");
    server.add_template("de-fra-1", public);

    let out = kiln(&server, &["templates", "list", "--all-zones"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("NAME") && lines[0].contains("BOOT MODE"),
        "{stdout}"
    );
    let old_line = lines.iter().find(|l| l.contains(&old)).expect(&stdout);
    for part in [
        "Debian 12 2026-10-01",
        "de-fra-1",
        "10 GiB",
        "legacy",
        "45 days",
        "STALE",
    ] {
        assert!(old_line.contains(part), "{part}: {old_line}");
    }
    let fresh_line = lines.iter().find(|l| l.contains(&fresh)).expect(&stdout);
    assert!(
        fresh_line.contains("at-vie-1") && fresh_line.contains("2 days"),
        "{fresh_line}"
    );
    assert!(!fresh_line.contains("STALE"), "{fresh_line}");
    assert!(
        !stdout.contains("Bookworm"),
        "public templates are not listed by default"
    );
    assert!(
        stdout.contains("1 stale template(s): older than 30 days"),
        "{stdout}"
    );
    // Every zone was asked.
    let zones_asked: std::collections::HashSet<String> = server
        .seen()
        .iter()
        .map(|s| s.path.split('/').nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(zones_asked.len(), 8, "{zones_asked:?}");

    // A longer threshold: nothing stale.
    let out = kiln(
        &server,
        &[
            "templates",
            "list",
            "--zone",
            "de-fra-1",
            "--stale-after",
            "60",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&old) && !stdout.contains(&fresh),
        "{stdout}"
    );
    assert!(!stdout.contains("STALE"), "{stdout}");

    // JSON, public templates of a family.
    let out = kiln(
        &server,
        &[
            "templates",
            "list",
            "--zone",
            "de-fra-1",
            "--visibility",
            "public",
            "--family",
            "debian",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let items: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["name"], "Linux Debian 12 (Bookworm) 64-bit");
    assert_eq!(items[0]["zone"], "de-fra-1");
    assert_eq!(items[0]["family"], "debian");
    assert_eq!(items[0]["age-days"], 100);
    assert_eq!(items[0]["stale"], true);
    assert_eq!(items[0]["size"], 10737418240u64);
}

#[test]
fn a_registered_template_is_listed_with_the_right_fields() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("12G")
        .status()
        .expect("qemu-img runs");
    assert!(made.success());
    let image = std::fs::read(&path).unwrap();
    let files = runtime.block_on(image_server::ImageServer::start());
    files.add("/debian.qcow2", image.clone());

    let server = ApiServer::start();
    let credentials =
        kiln::exoscale::Credentials::new(TEST_KEY, kiln::recipe::secret::Secret::new(TEST_SECRET))
            .unwrap();
    let mut options = kiln::exoscale::ClientOptions::default();
    options.poll.first_delay = Duration::from_millis(20);
    let client =
        kiln::exoscale::Client::new("ch-gva-2", Some(&server.endpoint()), credentials, options)
            .unwrap();
    use md5::Digest;
    let registered = runtime
        .block_on(client.register_template(&kiln::exoscale::RegisterTemplate {
            name: "Debian 12 from kiln".into(),
            url: files.url("/debian.qcow2"),
            checksum: hex::encode(md5::Md5::digest(&image)),
            ssh_key_enabled: true,
            password_enabled: true,
            description: None,
            default_user: Some("debian".into()),
            boot_mode: Some("uefi"),
            build: None,
            version: None,
            maintainer: None,
        }))
        .unwrap();

    let out = kiln(&server, &["templates", "list"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(&registered.id))
        .expect(&stdout);
    for part in [
        "Debian 12 from kiln",
        "ch-gva-2",
        "12 GiB",
        "uefi",
        "just now",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }

    let out = kiln(&server, &["templates", "show", &registered.id]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let shown = text(&out.stdout);
    for part in [
        "name            Debian 12 from kiln",
        "zone            ch-gva-2",
        "size            12 GiB",
        "boot mode       uefi",
        "default user    debian",
        "password        yes",
        "visibility      private",
    ] {
        assert!(shown.contains(part), "{part}:\n{shown}");
    }
    let out = kiln(&server, &["templates", "show", "--json", &registered.id]);
    let value: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(value["id"], registered.id.as_str());
    assert_eq!(value["boot-mode"], "uefi");
}

#[test]
fn an_endpoint_set_for_exo_lists_each_zone_at_its_own_endpoint() {
    let server = ApiServer::start();
    server.advertise_own_endpoints();
    server.add_template("de-fra-1", template("Debian 12 in Frankfurt", 1));
    server.add_template("ch-gva-2", template("Debian 12 in Geneva", 1));
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["templates", "list", "--zone", "de-fra-1"])
        .env("EXOSCALE_API_KEY", TEST_KEY)
        .env("EXOSCALE_API_SECRET", TEST_SECRET)
        // As a CI job sets it for `exo`: one zone's endpoint, no `{zone}`.
        .env("EXOSCALE_API_ENDPOINT", server.base("ch-gva-2"))
        .env_remove("KILN_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("kiln runs");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Debian 12 in Frankfurt"), "{stdout}");
    assert!(!stdout.contains("Debian 12 in Geneva"), "{stdout}");
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.path == "/de-fra-1/v2/template"),
        "the zone's own endpoint was not used"
    );
}

#[test]
fn show_of_a_missing_template_says_not_found() {
    let server = ApiServer::start();
    let id = uuid::Uuid::new_v4().to_string();
    let out = kiln(&server, &["templates", "show", "--zone", "de-muc-1", &id]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not found (404"), "{stderr}");
    assert!(stderr.contains(&id), "{stderr}");
}

#[test]
fn delete_needs_yes_without_a_terminal() {
    let server = ApiServer::start();
    let id = server.add_template("ch-gva-2", template("old image", 90));
    let out = kiln(&server, &["templates", "delete", &id]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("not deleting template \"old image\"") && stderr.contains("pass --yes"),
        "{stderr}"
    );
    assert_eq!(server.templates("ch-gva-2").len(), 1, "nothing was deleted");
    assert!(
        server.seen().iter().all(|s| s.method == "GET"),
        "only reads before the refusal"
    );

    let out = kiln(&server, &["templates", "delete", "--yes", &id]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "deleted template \"old image\" ({id}) in ch-gva-2"
        )),
        "{}",
        text(&out.stdout)
    );
    assert!(server.templates("ch-gva-2").is_empty());
    // Deleting it again: not found.
    let out = kiln(&server, &["templates", "delete", "--yes", &id]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn rename_and_copy() {
    let server = ApiServer::start();
    server.set_pending_polls(0);
    let id = server.add_template("de-fra-1", template("first name", 1));
    let out = kiln(
        &server,
        &[
            "templates",
            "rename",
            "--zone",
            "de-fra-1",
            &id,
            "second name",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"first name\" → \"second name\""));
    assert_eq!(server.templates("de-fra-1")[0]["name"], "second name");

    let out = kiln(
        &server,
        &["templates", "rename", "--zone", "de-fra-1", &id, " "],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("1 to 255 characters"));

    let out = kiln(
        &server,
        &[
            "templates",
            "copy",
            "--zone",
            "de-fra-1",
            &id,
            "--to-zone",
            "bg-sof-1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let copies = server.templates("bg-sof-1");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0]["name"], "second name");
    let copy_id = copies[0]["id"].as_str().unwrap();
    assert!(
        text(&out.stdout).contains(&format!("from de-fra-1 to bg-sof-1: {copy_id}")),
        "{}",
        text(&out.stdout)
    );

    let out = kiln(
        &server,
        &[
            "templates",
            "copy",
            "--zone",
            "de-fra-1",
            &id,
            "--to-zone",
            "de-fra-1",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already in de-fra-1"));
}

#[test]
fn a_wrong_secret_is_explained_and_never_shown() {
    let server = ApiServer::start();
    let secret = "wrong-secret-value-4242";
    let out = kiln_with(&server, secret, &["templates", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("access denied (403: Invalid request signature)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the API key or secret is wrong, or the key lacks the rights — check the profile in Credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret) && !text(&out.stdout).contains(secret));
    // Debug logs do not show it either (the signature is derived from it, not it).
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["templates", "list"])
        .env("EXOSCALE_API_KEY", TEST_KEY)
        .env("EXOSCALE_API_SECRET", secret)
        .env("EXOSCALE_API_ENDPOINT", server.endpoint())
        .env("KILN_LOG", "trace")
        .output()
        .unwrap();
    assert!(!text(&out.stderr).contains(secret));
}

#[test]
fn a_server_error_is_retried_by_the_cli() {
    let server = ApiServer::start();
    server.add_template("ch-gva-2", template("kept", 3));
    server.inject(&[Fault::Status(500), Fault::Drop]);
    let out = kiln(&server, &["templates", "list"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("kept"));
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![500, 0, 200]);
}

#[test]
fn profiles_without_a_keyring_and_missing_credentials_are_explained() {
    let server = ApiServer::start();
    // No session bus and an empty runtime directory: no keyring can answer.
    let runtime = tempfile::tempdir().unwrap();
    let no_keyring = |args: &[&str], with_env_credentials: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .args(args)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("KILN_CONFIG_DIR", runtime.path().join("config"))
            .env("EXOSCALE_API_ENDPOINT", server.endpoint());
        if with_env_credentials {
            command
                .env("EXOSCALE_API_KEY", TEST_KEY)
                .env("EXOSCALE_API_SECRET", TEST_SECRET);
        } else {
            command
                .env_remove("EXOSCALE_API_KEY")
                .env_remove("EXOSCALE_API_SECRET");
        }
        command.output().unwrap()
    };
    // A named profile wins over the environment, so it needs the keyring.
    let out = no_keyring(&["templates", "list", "--profile", "work"], true);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the OS keyring is not reachable (no D-Bus session bus")
            && stderr.contains("desktop session")
            && stderr.contains("EXOSCALE_API_KEY"),
        "{stderr}"
    );
    let out = no_keyring(&["templates", "list"], false);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no Exoscale credentials: set EXOSCALE_API_KEY")
            && stderr.contains("kiln credentials set NAME"),
        "{stderr}"
    );
    assert!(
        server.seen().is_empty(),
        "nothing is sent without credentials"
    );
    let usage = kiln(
        &server,
        &["templates", "list", "--zone", "de-fra-1", "--all-zones"],
    );
    assert_eq!(usage.status.code(), Some(2));
    let usage = kiln(&server, &["templates", "list", "--visibility", "secret"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// Runs `kiln ARGS` on a pseudo-terminal (util-linux `script`), typing `input`.
fn kiln_on_a_terminal(server: &ApiServer, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let command = std::iter::once(env!("CARGO_BIN_EXE_kiln"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("EXOSCALE_API_KEY", TEST_KEY)
        .env("EXOSCALE_API_SECRET", TEST_SECRET)
        .env("EXOSCALE_API_ENDPOINT", server.endpoint())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs (apt-get install util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn delete_asks_on_a_terminal() {
    let server = ApiServer::start();
    let id = server.add_template("ch-gva-2", template("asked about", 40));
    let args = ["templates", "delete", &id];

    let declined = kiln_on_a_terminal(&server, &args, "n\n");
    let screen = text(&declined.stdout);
    assert!(
        screen.contains(&format!(
            "Delete template \"asked about\" ({id}) in ch-gva-2? This cannot be undone. [y/N]"
        )),
        "{screen}"
    );
    assert!(screen.contains("kept template"), "{screen}");
    assert_eq!(declined.status.code(), Some(1), "{screen}");
    assert_eq!(server.templates("ch-gva-2").len(), 1);

    let accepted = kiln_on_a_terminal(&server, &args, "y\n");
    let screen = text(&accepted.stdout);
    assert_eq!(accepted.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("deleted template \"asked about\""),
        "{screen}"
    );
    assert!(server.templates("ch-gva-2").is_empty());
}

#[test]
fn a_failing_zone_is_reported_and_the_others_are_still_listed() {
    let server = ApiServer::start();
    let id = server.add_template("hr-zag-1", template("in zagreb", 5));
    server.fail_zone("at-vie-2", 403);
    let out = kiln(&server, &["templates", "list", "--all-zones"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("kiln: zone at-vie-2: GET "), "{stderr}");
    assert!(stderr.contains("access denied (403"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
