//! Cancelling a build during `exoscale-import` leaves nothing in the bucket: the runner drops
//! the step at once, and the cleanup the step registered aborts an unfinished multipart upload
//! and removes the object. Against a real S3 server (Garage) and the strict API test server,
//! with the post-processor run by the build's runner (no VM needed). A registration whose
//! outcome is unknown (kiln stopped waiting) keeps the object Exoscale may still download.

#[path = "support/exoscale_api.rs"]
mod exoscale_api;
#[path = "support/garage.rs"]
mod garage;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exoscale_api::{ApiServer, OperationOutcome, TEST_KEY, TEST_SECRET};
use kiln::build::artifact::Artifact;
use kiln::build::event::{Event, EventSink, Outcome, Stream};
use kiln::build::postprocess::{BuildFacts, run_chains};
use kiln::build::redact::Redactor;
use kiln::exoscale::Credentials;
use kiln::objectstore::{ObjectStore, StoreConfig};
use kiln::recipe::secret::Secret;
use kiln::recipe::template::{LoadOptions, Recipe, load_file};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const RUN: &str = "7d1e0b52-0000-4000-8000-cancelled000";

/// An empty qcow2 image `name` of `size` (virtual) in `dir`.
fn empty_image(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size)
        .status()
        .unwrap();
    assert!(ok.success(), "qemu-img (qemu-utils) makes the image");
    path
}

/// A qcow2 image Exoscale would take (10 GiB virtual) holding `mib` MiB of data.
fn image(dir: &Path, mib: u32) -> PathBuf {
    let path = empty_image(dir, "image.qcow2", "10G");
    let ok = Command::new("qemu-io")
        .args(["-c", &format!("write -P 0x5a 0 {mib}M")])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "qemu-io (qemu-utils) writes the data");
    path
}

fn recipe(dir: &Path, api: &ApiServer, s3: &str, bucket: &str) -> Recipe {
    recipe_waiting(dir, api, s3, bucket, "10m")
}

/// [`recipe`] with this `api_timeout`.
fn recipe_waiting(
    dir: &Path,
    api: &ApiServer,
    s3: &str,
    bucket: &str,
    api_timeout: &str,
) -> Recipe {
    let text = json!({
        "builders": [{"type": "qemu", "name": "debian", "iso_url": "https://example.com/d.qcow2",
                      "iso_checksum": "none", "disk_image": true, "ssh_username": "debian"}],
        "post-processors": [{
            "type": "exoscale-import",
            "api_key": TEST_KEY,
            "api_secret": TEST_SECRET,
            "api_endpoint": api.endpoint(),
            "sos_endpoint": s3,
            "image_bucket": bucket,
            "image_zone": garage::ZONE,
            "template_zones": [garage::ZONE],
            "template_name": "cancelled",
            "api_timeout": api_timeout
        }]
    });
    let path = dir.join("recipe.json");
    std::fs::write(&path, serde_json::to_string_pretty(&text).unwrap()).unwrap();
    load_file(&path, &LoadOptions::default()).unwrap_or_else(|d| panic!("{d}"))
}

fn store(endpoint: &str, bucket: &str) -> ObjectStore {
    ObjectStore::new(&StoreConfig {
        endpoint: endpoint.to_string(),
        zone: garage::ZONE.to_string(),
        bucket: bucket.to_string(),
        credentials: Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap(),
    })
    .unwrap()
}

/// Runs the recipe's post-processors on `image` and cancels when `cancel_when` says so.
async fn cancelled_import(
    recipe: &Recipe,
    image: &Path,
    scratch: &Path,
    cancel_when: impl Fn(&Event) -> bool,
) -> (Outcome, Vec<Event>) {
    cancelled_import_with(
        recipe,
        image,
        scratch,
        CancellationToken::new(),
        cancel_when,
    )
    .await
}

/// [`cancelled_import`] with this token, which the caller may also cancel.
async fn cancelled_import_with(
    recipe: &Recipe,
    image: &Path,
    scratch: &Path,
    cancel: CancellationToken,
    cancel_when: impl Fn(&Event) -> bool,
) -> (Outcome, Vec<Event>) {
    let (sink, mut rx) = EventSink::channel(Redactor::new());
    let facts = BuildFacts {
        build_name: "debian".into(),
        builder_type: "qemu".into(),
        run_uuid: RUN.into(),
        scratch: scratch.to_path_buf(),
        logs: scratch.to_path_buf(),
        builder: Arc::new(recipe.builds[0].builder.clone()),
        qemu_binary: PathBuf::new(),
        accel: None,
    };
    let chains = recipe.builds[0].post_processors.clone();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        let artifact = Artifact::builder(image);
        async move { run_chains(&chains, artifact, facts, sink, cancel).await }
    });
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        if !cancel.is_cancelled() && cancel_when(&event) {
            cancel.cancel();
        }
        events.push(event);
    }
    let outcome = run.await.unwrap().expect("exoscale-import runs");
    (outcome.outcome, events)
}

fn assert_cleanup_ran(events: &[Event], key: &str) {
    let cleaned: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::CleanedUp(what) => Some(what.clone()),
            _ => None,
        })
        .collect();
    assert!(
        cleaned.iter().any(|c| c.contains(key)),
        "the upload's cleanup ran: {cleaned:?}"
    );
}

fn logged(events: &[Event], text: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Log { stream: Stream::Kiln, line, .. } if line.contains(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_the_registration_is_polled_removes_the_object() {
    let s3 = garage::garage();
    let bucket = "kiln-cancel-register";
    s3.create_bucket(bucket);
    let api = Arc::new(ApiServer::start());
    api.set_outcome(OperationOutcome::Never);
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 8);
    let recipe = recipe(dir.path(), &api, &s3.endpoint, bucket);
    // Cancel once kiln has polled the registration operation (not on the log line before the
    // registration is even asked for).
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn({
        let (api, cancel) = (api.clone(), cancel.clone());
        async move {
            loop {
                let seen = api.seen();
                let registered = seen
                    .iter()
                    .any(|s| s.method == "POST" && s.path.ends_with("/template"));
                let polled = seen
                    .iter()
                    .any(|s| s.method == "GET" && s.path.contains("/operation/"));
                if registered && polled {
                    cancel.cancel();
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let (outcome, events) =
        cancelled_import_with(&recipe, &image, dir.path(), cancel.clone(), |_| false).await;
    let returned = Instant::now();
    if !cancel.is_cancelled() {
        watcher.abort();
        panic!("the registration was never polled: {outcome:?} {events:?}");
    }
    let cancelled_at = watcher.await.unwrap();
    assert_eq!(outcome, Outcome::Cancelled);
    assert!(
        returned.duration_since(cancelled_at) < Duration::from_secs(20),
        "returned {:?} after the cancel",
        returned.duration_since(cancelled_at)
    );
    assert!(logged(&events, "uploaded "), "the upload had finished");
    let key = format!("kiln/{RUN}/image.qcow2");
    let store = store(&s3.endpoint, bucket);
    assert!(!store.exists(&key).await.unwrap(), "the object is left");
    assert!(store.pending_uploads().await.unwrap().is_empty());
    assert_cleanup_ran(&events, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mid_upload_leaves_no_multipart_upload() {
    let s3 = garage::garage();
    let bucket = "kiln-cancel-upload";
    s3.create_bucket(bucket);
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 160);
    let recipe = recipe(dir.path(), &api, &s3.endpoint, bucket);
    let (outcome, events) = cancelled_import(&recipe, &image, dir.path(), |e| {
        matches!(e, Event::Progress { done, total: Some(total), .. } if *done > 0 && done < total)
    })
    .await;
    assert_eq!(outcome, Outcome::Cancelled);
    assert!(!logged(&events, "uploaded "), "the upload had not finished");
    let key = format!("kiln/{RUN}/image.qcow2");
    let store = store(&s3.endpoint, bucket);
    assert!(
        store.pending_uploads().await.unwrap().is_empty(),
        "a multipart upload is left in the bucket"
    );
    assert!(!store.exists(&key).await.unwrap());
    assert_cleanup_ran(&events, &key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_the_import_before_any_upload() {
    let s3 = garage::garage();
    let bucket = "kiln-wrong-secret";
    s3.create_bucket(bucket);
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 8);
    recipe(dir.path(), &api, &s3.endpoint, bucket);
    let wrong = "wrong-secret-value-5151";
    let path = dir.path().join("recipe.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(TEST_SECRET, wrong)).unwrap();
    let recipe = load_file(&path, &LoadOptions::default()).unwrap_or_else(|d| panic!("{d}"));
    let (outcome, events) = cancelled_import(&recipe, &image, dir.path(), |_| false).await;
    let Outcome::Failed(error) = outcome else {
        panic!("the import fails: {outcome:?}");
    };
    assert!(
        error.contains(&format!("HeadBucket {bucket} failed")),
        "{error}"
    );
    assert!(
        error.contains("403") || error.contains("Forbidden"),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
    assert!(
        !logged(&events, "uploading "),
        "an upload was started: {events:?}"
    );
    let store = store(&s3.endpoint, bucket);
    assert!(store.pending_uploads().await.unwrap().is_empty());
    assert!(
        !store
            .exists(&format!("kiln/{RUN}/image.qcow2"))
            .await
            .unwrap()
    );
    assert!(api.seen().is_empty(), "the API was asked: {:?}", api.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_whose_outcome_is_unknown_keeps_the_object_it_downloads() {
    let s3 = garage::garage();
    let bucket = "kiln-outcome-unknown";
    s3.create_bucket(bucket);
    let api = ApiServer::start();
    // Exoscale neither finishes nor fails the registration before kiln stops waiting.
    api.set_outcome(OperationOutcome::Never);
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 8);
    let recipe = recipe_waiting(dir.path(), &api, &s3.endpoint, bucket, "2s");
    let (outcome, events) = cancelled_import(&recipe, &image, dir.path(), |_| false).await;
    let Outcome::Failed(error) = outcome else {
        panic!("the import fails: {outcome:?}");
    };
    let key = format!("kiln/{RUN}/image.qcow2");
    assert!(error.contains("still pending after"), "{error}");
    assert!(
        error.contains(&format!("The image stays in bucket {bucket} as {key}")),
        "{error}"
    );
    let store = store(&s3.endpoint, bucket);
    assert!(
        store.exists(&key).await.unwrap(),
        "the object a registration may still download was removed"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning(w)
            if w.starts_with(&format!("kept {key} in bucket {bucket}: the registration may still finish"))
                && w.contains("kiln templates list --zone")
                && w.contains("\"cancelled\""))),
        "the build says what it kept and when to delete it"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::CleanedUp(what) if what.contains(&key))),
        "the object's cleanup reported as done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_over_100_gib_is_published_with_a_warning_that_says_why() {
    let s3 = garage::garage();
    let bucket = "kiln-large-image";
    s3.create_bucket(bucket);
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let image = empty_image(dir.path(), "large.qcow2", "101G");
    let recipe = recipe(dir.path(), &api, &s3.endpoint, bucket);
    let (outcome, events) = cancelled_import(&recipe, &image, dir.path(), |_| false).await;
    assert_eq!(outcome, Outcome::Done, "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning(w)
            if w.contains("virtual size is 101 GiB") && w.contains("100 GB as the largest template"))),
        "no size warning: {events:?}"
    );
    assert_eq!(api.templates(garage::ZONE).len(), 1);
}

/// The recipe's exoscale-import configuration.
fn import_config(recipe: &Recipe) -> kiln::recipe::postprocessor::ExoscaleImportConfig {
    match &recipe.builds[0].post_processors[0][0].kind {
        kiln::recipe::postprocessor::PostProcessorKind::ExoscaleImport(c) => c.clone(),
        other => panic!("not an exoscale-import: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_before_a_build_find_a_missing_bucket_and_refused_credentials_and_change_nothing()
 {
    use kiln::build::postprocess::exoscale_import::preflight;
    let s3 = garage::garage();
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redactor = Redactor::new();

    // A bucket that is not there, and bucket_create off: said now, with the fix.
    let missing = "kiln-preflight-missing";
    let config = import_config(&recipe(dir.path(), &api, &s3.endpoint, missing));
    let e = preflight(&config, &redactor).await.unwrap_err().0;
    assert!(e.contains(missing) && e.contains("does not exist"), "{e}");
    // With bucket_create it would be made by the build; the check makes nothing.
    let creating = kiln::recipe::postprocessor::ExoscaleImportConfig {
        bucket_create: true,
        ..config.clone()
    };
    let found = preflight(&creating, &redactor).await.unwrap();
    assert!(found.contains("will be created (bucket_create)"), "{found}");
    assert!(!store(&s3.endpoint, missing).bucket_exists().await.unwrap());

    // A bucket that is there, and the API answering: fine, and the API only read.
    let bucket = "kiln-preflight";
    s3.create_bucket(bucket);
    let config = import_config(&recipe(dir.path(), &api, &s3.endpoint, bucket));
    let found = preflight(&config, &redactor).await.unwrap();
    assert!(
        found.contains(&format!("bucket {bucket} is there")),
        "{found}"
    );
    let seen = api.seen();
    assert!(!seen.is_empty(), "the API was asked");
    assert!(seen.iter().all(|s| s.method == "GET"), "{seen:?}");

    // The API refusing the key (the zone answers 403): said before the build starts.
    api.fail_zone(garage::ZONE, 403);
    let e = preflight(&config, &redactor).await.unwrap_err().0;
    assert!(e.contains("checking the API credentials"), "{e}");
}

/// `kiln` with a private home (config, state, history) and credentials in the environment
/// only: no keyring is reachable.
fn kiln_publish(home: &Path, api: &ApiServer, s3: &str, args: &[&str]) -> std::process::Output {
    kiln_publish_at(home, &api.endpoint(), s3, args)
}

/// [`kiln_publish`] with `EXOSCALE_API_ENDPOINT` set to `api_endpoint`.
fn kiln_publish_at(
    home: &Path,
    api_endpoint: &str,
    s3: &str,
    args: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("publish")
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("EXOSCALE_API_KEY", TEST_KEY)
        .env("EXOSCALE_API_SECRET", TEST_SECRET)
        .env("EXOSCALE_API_ENDPOINT", api_endpoint)
        .env("EXOSCALE_SOS_ENDPOINT", s3)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn kiln_publish_registers_an_image_it_did_not_build_copies_it_and_keeps_the_image() {
    let s3 = garage::garage();
    let bucket = "kiln-publish-cli";
    s3.create_bucket(bucket);
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 4);
    let before = std::fs::read(&image).unwrap();
    let out = kiln_publish(
        dir.path(),
        &api,
        &s3.endpoint,
        &[
            image.to_str().unwrap(),
            "--bucket",
            bucket,
            "--zone",
            garage::ZONE,
            "--template-zones",
            "ch-gva-2,de-fra-1",
            "--name",
            "Vendor image {{isotime \"2006-01-02\"}}",
            "--description",
            "from elsewhere",
            "--username",
            "debian",
            "--boot-mode",
            "uefi",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let name = format!("Vendor image {today}");
    // Registered in the bucket's zone from the object, then copied to the second zone.
    let registered = api.templates("ch-gva-2");
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["name"], name.as_str());
    assert_eq!(registered[0]["description"], "from elsewhere");
    assert_eq!(registered[0]["default-user"], "debian");
    assert_eq!(registered[0]["boot-mode"], "uefi");
    let copied = api.templates("de-fra-1");
    assert_eq!(copied.len(), 1, "{copied:?}");
    assert_eq!(copied[0]["name"], name.as_str());
    assert_eq!(api.downloads().len(), 1, "Exoscale fetched the object once");
    for zone in ["ch-gva-2", "de-fra-1"] {
        assert!(
            stdout.contains(&format!("  template: {zone} ")),
            "the summary names the template in {zone}: {stdout}"
        );
    }
    // The uploaded object is gone; the user's image is untouched.
    let removed = stdout
        .lines()
        .find_map(|l| l.split("removed ").nth(1))
        .and_then(|rest| rest.split(" from bucket").next())
        .unwrap_or_else(|| panic!("no removal in the output: {stdout}"));
    let store = store(&s3.endpoint, bucket);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    assert!(
        !runtime.block_on(store.exists(removed)).unwrap(),
        "{removed} left"
    );
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "the image was changed"
    );
    // History: one publication that succeeded, with its templates and build.log.
    let history = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["history", "--json"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .output()
        .unwrap();
    let records: serde_json::Value = serde_json::from_slice(&history.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&history.stdout)));
    let record = &records.as_array().expect("a list")[0];
    assert_eq!(record["build"], "publish", "{record}");
    assert_eq!(record["outcome"], "done", "{record}");
    assert_eq!(record["templates"].as_array().unwrap().len(), 2, "{record}");
    let log = std::path::PathBuf::from(record["log_dir"].as_str().unwrap()).join("build.log");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("registering template"), "{log}");
    assert!(!log.contains(TEST_SECRET) && !stdout.contains(TEST_SECRET));
}

#[test]
fn kiln_publish_refuses_a_small_image_before_contacting_anything() {
    let api = ApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let image = empty_image(dir.path(), "small.qcow2", "2G");
    let out = kiln_publish(
        dir.path(),
        &api,
        "http://127.0.0.1:9",
        &[image.to_str().unwrap(), "--bucket", "b", "--name", "n"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("qemu-img resize {} 10G", image.display()))
            && stderr.contains("nothing was published"),
        "{stderr}"
    );
    assert!(
        api.seen().is_empty(),
        "the API was called: {:?}",
        api.seen()
    );
}

#[test]
fn kiln_publish_follows_exos_endpoint_retries_failed_polls_and_a_busy_copy_and_escapes_the_file_name()
 {
    let s3 = garage::garage();
    let bucket = "kiln-publish-faults";
    s3.create_bucket(bucket);
    let api = ApiServer::start();
    // As a CI job sets it for `exo`: one endpoint, zones found with GET /zone.
    api.advertise_own_endpoints();
    // Three poll requests of the registration fail (Exoscale goes on registering
    // meanwhile); the client's own retries carry the poll through them. Polls that fail
    // after those retries are tests/exoscale_api.rs's (with short backoffs).
    api.fail_polls(3, 503);
    // The second zone's copy first ends busy, as Exoscale answers a copy in progress.
    api.fail_next_copies(1, "busy");
    let dir = tempfile::tempdir().unwrap();
    let plain = image(dir.path(), 2);
    // A name a URL must escape: the presigned URL Exoscale fetches names this object.
    let image = dir.path().join("vendor image #1+b.qcow2");
    std::fs::rename(&plain, &image).unwrap();
    let out = kiln_publish_at(
        dir.path(),
        &api.base("de-fra-1"),
        &s3.endpoint,
        &[
            image.to_str().unwrap(),
            "--bucket",
            bucket,
            "--zone",
            garage::ZONE,
            "--template-zones",
            "ch-gva-2,at-vie-1",
            "--name",
            "escaped",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(api.templates("ch-gva-2").len(), 1);
    assert_eq!(api.templates("at-vie-1").len(), 1);
    assert!(
        api.templates("de-fra-1").is_empty(),
        "nothing in the endpoint's own zone"
    );
    let downloads = api.downloads();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert!(
        downloads[0].contains("vendor%20image%20%231%2Bb.qcow2"),
        "the object key is escaped in the URL: {downloads:?}"
    );
    let seen = api.seen();
    // The registration and the copy (asked of the source zone) went to ch-gva-2's own
    // endpoint, found with GET /zone at the endpoint given.
    assert!(
        seen.iter()
            .any(|s| s.method == "POST" && s.path == "/ch-gva-2/v2/template"),
        "ch-gva-2 was not asked at its own endpoint: {seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.path == "/de-fra-1/v2/zone"),
        "the zones were not found at the endpoint given: {seen:?}"
    );
    let polls_of_failed = seen
        .iter()
        .filter(|s| s.path.contains("/operation/") && s.status == 503)
        .count();
    assert_eq!(
        polls_of_failed, 3,
        "the failed poll requests were sent and survived"
    );
}
