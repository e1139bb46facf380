//! The object store against a real S3 server (a single-node Garage on 127.0.0.1): a multipart
//! upload of a few hundred MiB checked by downloading it back, cancel and failure leave no
//! multipart upload behind, a dropped part is retried, bucket creation, presigned URLs that
//! work without credentials and expire, and objects that are not public without them.

#[path = "support/exoscale_api.rs"]
mod exoscale_api;
#[path = "support/garage.rs"]
mod garage;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exoscale_api::{TEST_KEY, TEST_SECRET};
use garage::{ZONE, garage, write_pattern};
use kiln::exoscale::Credentials;
use kiln::objectstore::{ObjectStore, StoreConfig, StoreError, UploadOptions, UploadProgress};
use kiln::recipe::secret::Secret;
use md5::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;

fn store_at(endpoint: &str, bucket: &str, secret: &str) -> ObjectStore {
    ObjectStore::new(&StoreConfig {
        endpoint: endpoint.to_string(),
        zone: ZONE.to_string(),
        bucket: bucket.to_string(),
        credentials: Credentials::new(TEST_KEY, Secret::new(secret)).expect("credentials"),
    })
    .expect("a store")
}

/// A store on a new bucket of the shared Garage.
fn new_bucket(name: &str) -> ObjectStore {
    let g = garage();
    g.create_bucket(name);
    store_at(&g.endpoint, name, TEST_SECRET)
}

fn fast_retries(part_size: u64, concurrency: usize) -> UploadOptions {
    UploadOptions {
        part_size,
        concurrency,
        attempts: 3,
        retry_delay: Duration::from_millis(50),
        ..UploadOptions::default()
    }
}

async fn download_md5(url: &str) -> (u16, String, u64) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    (
        status,
        hex::encode(md5::Md5::digest(&body)),
        body.len() as u64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_upload_in_parallel_parts_downloads_back_identical() {
    let store = new_bucket("large-upload");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    let size = 300 * MIB + 12_345;
    let expected_md5 = write_pattern(&path, size, 1);

    let seen: Mutex<Vec<UploadProgress>> = Mutex::new(Vec::new());
    let record = |p: UploadProgress| seen.lock().unwrap().push(p);
    let receipt = store
        .upload_file(
            &path,
            "images/disk.qcow2",
            &fast_retries(16 * MIB, 4),
            &record,
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("upload failed: {e}\n{}", garage().log()));

    assert_eq!(receipt.size, size);
    assert_eq!(receipt.md5, expected_md5, "the one-pass MD5 is the file's");
    assert_eq!(receipt.parts, 19, "300 MiB in 16 MiB parts");

    let progress = seen.into_inner().unwrap();
    assert_eq!(progress.len(), 19, "one progress event per part");
    assert!(progress.windows(2).all(|w| w[0].done < w[1].done));
    let last = progress.last().unwrap();
    assert_eq!((last.done, last.total), (size, size));
    assert!(last.bytes_per_second > 0.0);
    assert_eq!(last.eta, Some(Duration::ZERO));

    let url = store
        .presigned_get("images/disk.qcow2", Duration::from_secs(600))
        .await
        .unwrap();
    let (status, md5, len) = download_md5(&url).await;
    assert_eq!((status, len), (200, size));
    assert_eq!(md5, expected_md5, "the object downloads back identical");
    assert!(store.pending_uploads().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_mid_upload_aborts_the_multipart_upload() {
    let store = new_bucket("cancelled-upload");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    write_pattern(&path, 120 * MIB, 2);

    let cancel = CancellationToken::new();
    let parts_done = AtomicU32::new(0);
    let on_progress = |_: UploadProgress| {
        if parts_done.fetch_add(1, Ordering::SeqCst) + 1 == 3 {
            cancel.cancel();
        }
    };
    let result = store
        .upload_file(
            &path,
            "cancelled.qcow2",
            &fast_retries(5 * MIB, 2),
            &on_progress,
            &cancel,
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::Cancelled)),
        "expected a cancel, got {result:?}"
    );
    assert!(
        parts_done.load(Ordering::SeqCst) < 24,
        "the upload stopped before the end"
    );
    assert_eq!(
        store.pending_uploads().await.unwrap(),
        Vec::<String>::new(),
        "no multipart upload is left in the bucket"
    );
    assert!(!store.exists("cancelled.qcow2").await.unwrap());
}

/// A TCP proxy on 127.0.0.1 in front of Garage's port `upstream`; `pass` sees each chunk
/// the client sends and says whether to pass it on (`false` cuts the connection there).
/// Returns the proxy's endpoint.
async fn proxy(upstream: u16, pass: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let pass = Arc::new(pass);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let pass = pass.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let upward = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = client_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<(), std::io::Error>(());
                        }
                        if !pass(&buf[..n]) {
                            return Err(std::io::Error::other("cut"));
                        }
                        server_write.write_all(&buf[..n]).await?;
                    }
                };
                let downward = tokio::io::copy(&mut server_read, &mut client_write);
                tokio::select! {
                    _ = upward => {}
                    _ = downward => {}
                }
            });
        }
    });
    endpoint
}

/// A proxy in front of Garage that cuts the connection of the first `cuts` attempts at
/// sending part `part` (mid-request), and counts the attempts.
struct PartCutter {
    endpoint: String,
    attempts: Arc<AtomicU32>,
}

async fn part_cutter(upstream: u16, part: u32, cuts: u32) -> PartCutter {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let needle = format!("partNumber={part}");
    let endpoint = proxy(upstream, move |chunk| {
        !(is_part_request(chunk, &needle) && counter.fetch_add(1, Ordering::SeqCst) < cuts)
    })
    .await;
    PartCutter { endpoint, attempts }
}

/// Whether `chunk` starts an UploadPart request for the part `needle` names.
fn is_part_request(chunk: &[u8], needle: &str) -> bool {
    let head = &chunk[..chunk.len().min(2048)];
    let Some(line_end) = head.iter().position(|&b| b == b'\r') else {
        return false;
    };
    let line = String::from_utf8_lossy(&head[..line_end]);
    line.starts_with("PUT ") && line.split(['?', '&', ' ']).any(|param| param == needle)
}

/// A proxy in front of Garage that records every byte the client sends (the uploads here
/// are small), so a test can read the requests as they went on the wire.
async fn recording_proxy(upstream: u16) -> (String, Arc<Mutex<Vec<u8>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = sent.clone();
    let endpoint = proxy(upstream, move |chunk| {
        record.lock().unwrap().extend_from_slice(chunk);
        true
    })
    .await;
    (endpoint, sent)
}

/// The headers (lower-cased names) of the first request in `wire` whose request line starts
/// with `start` (`POST /bucket/key?uploads`).
fn request_headers(wire: &[u8], start: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(wire);
    let at = text
        .find(start)
        .unwrap_or_else(|| panic!("no `{start}` request was sent"));
    let head = &text[at..];
    let head = &head[..head.find("\r\n\r\n").expect("a complete request head")];
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_ask_for_no_acl_unless_public_read_is_chosen_as_seen_on_the_wire() {
    // Garage has no object ACLs, so only the requests themselves can show what kiln asks for.
    new_bucket("acl-on-the-wire");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.qcow2");
    write_pattern(&path, 2 * MIB, 9);
    for (key, public_read) in [("private.qcow2", false), ("public.qcow2", true)] {
        let (endpoint, wire) = recording_proxy(garage().s3_port).await;
        let store = store_at(&endpoint, "acl-on-the-wire", TEST_SECRET);
        let options = UploadOptions {
            public_read,
            ..fast_retries(5 * MIB, 1)
        };
        store
            .upload_file(&path, key, &options, &|_| {}, &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("upload failed: {e}\n{}", garage().log()));
        let wire = wire.lock().unwrap().clone();
        let create = request_headers(&wire, &format!("POST /acl-on-the-wire/{key}?uploads"));
        let acl: Vec<&str> = create
            .iter()
            .filter(|(name, _)| name == "x-amz-acl")
            .map(|(_, value)| value.as_str())
            .collect();
        if public_read {
            assert_eq!(acl, ["public-read"], "{create:?}");
        } else {
            assert!(acl.is_empty(), "a private upload asked for {acl:?}");
            assert!(
                !String::from_utf8_lossy(&wire)
                    .to_ascii_lowercase()
                    .contains("x-amz-acl"),
                "no request of a private upload carries an ACL"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_cut_off_is_retried_and_the_upload_completes() {
    new_bucket("retried-part");
    let proxy = part_cutter(garage().s3_port, 2, 1).await;
    let store = store_at(&proxy.endpoint, "retried-part", TEST_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    let expected_md5 = write_pattern(&path, 22 * MIB, 3);

    let receipt = store
        .upload_file(
            &path,
            "retried.qcow2",
            &fast_retries(5 * MIB, 3),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("upload failed: {e}\n{}", garage().log()));
    assert_eq!(receipt.parts, 5);
    assert_eq!(
        proxy.attempts.load(Ordering::SeqCst),
        2,
        "part 2 was cut once and sent again"
    );
    let url = store
        .presigned_get("retried.qcow2", Duration::from_secs(60))
        .await
        .unwrap();
    let (status, md5, _) = download_md5(&url).await;
    assert_eq!((status, md5), (200, expected_md5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_part_that_keeps_failing_aborts_the_upload() {
    new_bucket("failing-part");
    let proxy = part_cutter(garage().s3_port, 1, u32::MAX).await;
    let store = store_at(&proxy.endpoint, "failing-part", TEST_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    write_pattern(&path, 12 * MIB, 4);

    let err = store
        .upload_file(
            &path,
            "failing.qcow2",
            &fast_retries(5 * MIB, 2),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .expect_err("part 1 never gets through");
    let message = err.to_string();
    assert!(
        message.contains("UploadPart 1 of 3 (after 3 attempts)"),
        "{message}"
    );
    assert_eq!(
        proxy.attempts.load(Ordering::SeqCst),
        3,
        "three attempts at part 1"
    );
    assert!(store.pending_uploads().await.unwrap().is_empty());
    assert!(!store.exists("failing.qcow2").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_unless_bucket_create() {
    let g = garage();
    let store = store_at(&g.endpoint, "made-by-kiln", TEST_SECRET);
    assert!(!store.bucket_exists().await.unwrap());
    let err = store.ensure_bucket(false).await.expect_err("no bucket");
    let message = err.to_string();
    assert!(
        message.contains("bucket `made-by-kiln` does not exist")
            && message.contains("\"bucket_create\": true"),
        "{message}"
    );
    assert!(store.ensure_bucket(true).await.unwrap(), "created");
    assert!(store.bucket_exists().await.unwrap());
    assert!(!store.ensure_bucket(true).await.unwrap(), "already there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_before_any_upload() {
    new_bucket("wrong-secret");
    let store = store_at(
        &garage().endpoint,
        "wrong-secret",
        "not-the-secret-0123456789",
    );
    let err = store.ensure_bucket(false).await.expect_err("bad secret");
    let message = err.to_string();
    assert!(
        message.contains("HeadBucket wrong-secret failed"),
        "{message}"
    );
    assert!(!message.contains(TEST_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work_without_credentials_then_expire_and_objects_are_private() {
    let store = new_bucket("presigned");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.qcow2");
    let expected_md5 = write_pattern(&path, 3 * MIB, 5);
    store
        .upload_file(
            &path,
            "small.qcow2",
            &UploadOptions::default(),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap();

    let plain = format!("{}/presigned/small.qcow2", garage().endpoint);
    let (status, _, _) = download_md5(&plain).await;
    assert_eq!(
        status, 403,
        "the object is not readable without a signature"
    );

    let url = store
        .presigned_get("small.qcow2", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(url.contains("X-Amz-Expires=2"), "{url}");
    assert!(!url.contains(TEST_SECRET));
    let (status, md5, _) = download_md5(&url).await;
    assert_eq!((status, md5), (200, expected_md5));

    tokio::time::sleep(Duration::from_secs(3)).await;
    // AWS answers an expired presigned URL with 403, Garage with 400: either is a refusal.
    let (status, _, _) = download_md5(&url).await;
    assert!(
        status == 403 || status == 400,
        "the presigned URL expired, yet the answer was {status}"
    );

    store.delete("small.qcow2").await.unwrap();
    assert!(!store.exists("small.qcow2").await.unwrap());
    store.delete("small.qcow2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_zone_is_what_the_store_says() {
    let store = new_bucket("kiln-zone-read");
    assert_eq!(store.bucket_zone().await.as_deref(), Some(ZONE));
    let g = garage();
    let missing = store_at(&g.endpoint, "kiln-zone-missing", TEST_SECRET);
    assert_eq!(missing.bucket_zone().await, None, "no bucket, no zone");
}

/// An object store that says every bucket exists and lives in `zone`, as SOS answers
/// GetBucketLocation for a bucket of another zone (Garage serves one region only): a HEAD
/// is 200, `?location` gives S3's LocationConstraint document. Anything else is 501.
async fn store_in_zone(zone: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{zone}</LocationConstraint>"
                );
                let answer = if line.starts_with("HEAD ") {
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string()
                } else if line.starts_with("GET ") && line.contains("location") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\n\r\n".to_string()
                };
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_in_another_zone_is_refused_before_the_build_with_the_zone_to_use() {
    let endpoint = store_in_zone("de-fra-1").await;
    let store = store_at(&endpoint, "images", TEST_SECRET);
    assert_eq!(store.bucket_zone().await.as_deref(), Some("de-fra-1"));
    let recipe = kiln::recipe::template::load_str(
        "r.json",
        &serde_json::json!({
            "builders": [{"type": "qemu", "iso_url": "x.qcow2", "iso_checksum": "none",
                          "disk_image": true, "ssh_username": "debian"}],
            "post-processors": [{
                "type": "exoscale-import", "api_key": TEST_KEY, "api_secret": TEST_SECRET,
                "api_endpoint": "http://127.0.0.1:9/{zone}/v2", "sos_endpoint": endpoint,
                "image_bucket": "images", "image_zone": "ch-gva-2", "template_name": "t"
            }]
        })
        .to_string(),
        std::path::Path::new("/tmp"),
        &Default::default(),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let kiln::recipe::postprocessor::PostProcessorKind::ExoscaleImport(config) =
        &recipe.builds[0].post_processors[0][0].kind
    else {
        panic!("not an exoscale-import");
    };
    let redactor = kiln::build::redact::Redactor::new();
    let err = kiln::build::postprocess::exoscale_import::preflight(config, &redactor)
        .await
        .expect_err("a bucket of another zone");
    assert!(
        err.0
            .contains("bucket images is in zone de-fra-1, not in ch-gva-2")
            && err.0.contains("set image_zone to de-fra-1"),
        "{err}"
    );
}
