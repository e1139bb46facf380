//! The `image` module against a local HTTP server (tests/support/image_server.rs) and the real
//! `qemu-img` (Debian package `qemu-utils`). Without qemu-img the qemu-img tests are skipped
//! with a reason, unless KILN_REQUIRE_TOOLS=1, which makes them fail (for CI).

#[path = "support/image_server.rs"]
mod image_server;

#[path = "support/processes.rs"]
mod processes;
use processes::processes_mentioning;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_server::ImageServer;
use kiln::image::digest::hex_digest;
use kiln::image::fetch::{FetchError, Origin, SourceError, fetch_base_image};
use kiln::image::qemu_img::{ImageFormat, QemuImg, QemuImgError, Resized};
use kiln::recipe::checksum::{Checksum, HashAlgorithm};
use tokio_util::sync::CancellationToken;

/// Deterministic, not-quite-random data: compressible, but not trivially.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half the 64-bit words are random, half are a short repeating text.
        if x.is_multiple_of(2) {
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(b"kiln-img");
        }
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> Checksum {
    Checksum::Digest {
        algorithm: HashAlgorithm::Sha256,
        hex: hex_digest(HashAlgorithm::Sha256, data),
    }
}

/// Files in `dir`, sorted by name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn fetch(
    urls: &[String],
    checksum: &Checksum,
    cache: &Path,
) -> Result<kiln::image::CachedImage, FetchError> {
    fetch_base_image(urls, checksum, cache, |_, _| {}, &CancellationToken::new()).await
}

const IMAGE: &str = "/images/debian-12-genericcloud-amd64.qcow2";

#[tokio::test]
async fn downloads_verifies_and_then_hits_the_cache_without_network() {
    let server = ImageServer::start().await;
    let body = data(3 << 20, 1);
    server.add(IMAGE, body.clone());
    let cache = tempfile::tempdir().unwrap();
    let checksum = sha256(&body);

    let mut calls = Vec::new();
    let started = Instant::now();
    let image = fetch_base_image(
        &[server.url(IMAGE)],
        &checksum,
        cache.path(),
        |done, total| calls.push((done, total)),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(image.origin, Origin::Downloaded);
    assert_eq!(image.size, body.len() as u64);
    assert_eq!(std::fs::read(&image.path).unwrap(), body);
    let hex = hex_digest(HashAlgorithm::Sha256, &body);
    assert_eq!(image.path, cache.path().join(format!("sha256-{hex}.qcow2")));
    assert_eq!(image.digest.as_ref().unwrap().hex, hex);
    assert_eq!(server.request_count(), 1);
    // Progress ends complete, and comes at most ~10 times a second.
    assert_eq!(
        calls.last(),
        Some(&(body.len() as u64, Some(body.len() as u64)))
    );
    assert!(
        calls.len() as f64 <= 3.0 + elapsed.as_secs_f64() * 10.0,
        "{} progress calls in {elapsed:?}",
        calls.len()
    );
    assert!(
        !files_in(cache.path()).iter().any(|f| f.ends_with(".part")),
        "{:?}",
        files_in(cache.path())
    );

    // The second fetch uses the cache: zero requests, even when the server is gone.
    let url = server.url(IMAGE);
    drop(server);
    let again = fetch(&[url], &checksum, cache.path()).await.unwrap();
    assert_eq!(again.origin, Origin::Cached);
    assert_eq!(again.path, image.path);
}

#[tokio::test]
async fn a_cache_entry_without_marker_is_rehashed_and_a_corrupt_one_replaced() {
    let server = ImageServer::start().await;
    let body = data(1 << 20, 2);
    server.add(IMAGE, body.clone());
    let cache = tempfile::tempdir().unwrap();
    let checksum = sha256(&body);
    let image = fetch(&[server.url(IMAGE)], &checksum, cache.path())
        .await
        .unwrap();
    let marker = PathBuf::from(format!("{}.json", image.path.display()));
    assert!(marker.is_file());

    // No marker: re-hashed, found good, no request.
    std::fs::remove_file(&marker).unwrap();
    let hit = fetch(&[server.url(IMAGE)], &checksum, cache.path())
        .await
        .unwrap();
    assert_eq!(hit.origin, Origin::Cached);
    assert_eq!(server.request_count(), 1);
    assert!(marker.is_file(), "the marker is written again");

    // Changed in place (size kept, mtime changes): re-hashed, found bad, downloaded again.
    let mut bad = body.clone();
    bad[1000] ^= 0xff;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&image.path, &bad).unwrap();
    let fresh = fetch(&[server.url(IMAGE)], &checksum, cache.path())
        .await
        .unwrap();
    assert_eq!(fresh.origin, Origin::Downloaded);
    assert_eq!(std::fs::read(&fresh.path).unwrap(), body);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn checksum_lists_in_gnu_and_bsd_format() {
    let server = ImageServer::start().await;
    let body = data(2 << 20, 3);
    server.add(IMAGE, body.clone());
    let sha512 = hex_digest(HashAlgorithm::Sha512, &body);
    let other = hex_digest(HashAlgorithm::Sha512, b"other");
    // Debian's SHA512SUMS, binary-mode `*name` on the line that matters.
    server.add(
        "/images/SHA512SUMS",
        format!(
            "{other}  debian-12-generic-amd64.qcow2\n{sha512} *debian-12-genericcloud-amd64.qcow2\n{other}  debian-12-genericcloud-amd64.raw\n"
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let list = Checksum::File {
        url: server.url("/images/SHA512SUMS"),
        algorithm: None,
    };
    let image = fetch(&[server.url(IMAGE)], &list, cache.path())
        .await
        .unwrap();
    let digest = image.digest.unwrap();
    assert_eq!(digest.algorithm, HashAlgorithm::Sha512);
    assert_eq!(digest.hex, sha512);
    assert_eq!(image.origin, Origin::Downloaded);
    assert_eq!(server.request_count(), 2);

    // Next time only the (small) list is fetched.
    let again = fetch(&[server.url(IMAGE)], &list, cache.path())
        .await
        .unwrap();
    assert_eq!(again.origin, Origin::Cached);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/images/SHA512SUMS", IMAGE, "/images/SHA512SUMS"]);

    // A BSD-style list on disk, with the algorithm stated.
    let sha256 = hex_digest(HashAlgorithm::Sha256, &body);
    let list_file = cache.path().join("SHA256SUMS");
    std::fs::write(
        &list_file,
        format!("SHA256 (debian-12-genericcloud-amd64.qcow2) = {sha256}\n"),
    )
    .unwrap();
    let bsd = Checksum::File {
        url: list_file.display().to_string(),
        algorithm: Some(HashAlgorithm::Sha256),
    };
    let image = fetch(&[server.url(IMAGE)], &bsd, cache.path())
        .await
        .unwrap();
    assert_eq!(image.digest.unwrap().hex, sha256);

    // A list without the image's line: the error names the list and the file.
    server.add(
        "/images/EMPTYSUMS",
        format!("{other}  something-else.img\n"),
    );
    let missing = Checksum::File {
        url: server.url("/images/EMPTYSUMS"),
        algorithm: None,
    };
    let e = fetch(&[server.url(IMAGE)], &missing, cache.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("EMPTYSUMS") && e.contains("no line for `debian-12-genericcloud-amd64.qcow2`"),
        "{e}"
    );
}

#[tokio::test]
async fn a_mismatch_names_both_digests_and_leaves_nothing() {
    let server = ImageServer::start().await;
    let body = data(1 << 20, 4);
    server.add(IMAGE, body.clone());
    let cache = tempfile::tempdir().unwrap();
    let wrong = hex_digest(HashAlgorithm::Sha256, b"not the image");
    let checksum = Checksum::Digest {
        algorithm: HashAlgorithm::Sha256,
        hex: wrong.clone(),
    };
    let err = fetch(&[server.url(IMAGE)], &checksum, cache.path())
        .await
        .unwrap_err();
    let FetchError::AllFailed(failures) = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(failures[0].error, SourceError::Mismatch { .. }));
    let text = err.to_string();
    let actual = hex_digest(HashAlgorithm::Sha256, &body);
    assert!(text.contains(&wrong), "{text}");
    assert!(text.contains(&actual), "{text}");
    assert!(text.contains(&server.url(IMAGE)), "{text}");
    assert!(text.contains("deleted"), "{text}");
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );
}

#[tokio::test]
async fn a_broken_connection_is_resumed_with_range() {
    let server = ImageServer::start().await;
    let body = data(4 << 20, 5);
    server.add(IMAGE, body.clone());
    server.configure(|b| {
        b.cut_after = Some(2 << 20);
        b.cuts_left = 1;
        b.etag = Some("\"v1\"".into());
    });
    let cache = tempfile::tempdir().unwrap();
    let image = fetch(&[server.url(IMAGE)], &sha256(&body), cache.path())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&image.path).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].header("range"), None);
    let range = requests[1]
        .header("range")
        .expect("the second request resumes");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .unwrap()
        .parse()
        .unwrap();
    assert!(from > 0 && from <= 2 << 20, "{range}");
    assert_eq!(requests[1].header("if-range"), Some("\"v1\""));
}

#[tokio::test]
async fn a_server_without_range_support_gets_a_clean_restart() {
    let server = ImageServer::start().await;
    let body = data(4 << 20, 6);
    server.add(IMAGE, body.clone());
    server.configure(|b| {
        b.ranges = false;
        b.cut_after = Some(1 << 20);
        b.cuts_left = 1;
    });
    let cache = tempfile::tempdir().unwrap();
    let image = fetch(&[server.url(IMAGE)], &sha256(&body), cache.path())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&image.path).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[1].header("range").is_some());
}

#[tokio::test]
async fn cancel_stops_promptly_and_keeps_a_resumable_part() {
    let server = ImageServer::start().await;
    let body = data(4 << 20, 7);
    server.add(IMAGE, body.clone());
    server.configure(|b| {
        b.chunk = 16 * 1024;
        b.delay = Some(Duration::from_millis(10));
    });
    let cache = tempfile::tempdir().unwrap();
    let checksum = sha256(&body);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let mut cancelled_at = None;
    let result = fetch_base_image(
        &[server.url(IMAGE)],
        &checksum,
        cache.path(),
        |done, _| {
            if done >= 256 * 1024 && cancelled_at.is_none() {
                cancelled_at = Some(Instant::now());
                trigger.cancel();
            }
        },
        &cancel,
    )
    .await;
    let took = cancelled_at.expect("progress was reported").elapsed();
    assert!(matches!(result, Err(FetchError::Cancelled)), "{result:?}");
    assert!(took < Duration::from_millis(500), "cancel took {took:?}");
    let hex = hex_digest(HashAlgorithm::Sha256, &body);
    let part = format!("sha256-{hex}.qcow2.part");
    assert_eq!(files_in(cache.path()), std::slice::from_ref(&part));
    let kept = std::fs::metadata(cache.path().join(&part)).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64, "{kept}");

    // The next fetch resumes it.
    server.configure(|b| b.delay = None);
    let image = fetch(&[server.url(IMAGE)], &checksum, cache.path())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&image.path).unwrap(), body);
    let last = server.requests().pop().unwrap();
    assert_eq!(
        last.header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_of_one_image_download_it_once() {
    let server = ImageServer::start().await;
    let body = data(2 << 20, 15);
    server.add(IMAGE, body.clone());
    server.configure(|b| {
        b.chunk = 256 * 1024;
        b.delay = Some(Duration::from_millis(20));
    });
    let cache = tempfile::tempdir().unwrap();
    let checksum = sha256(&body);
    let urls = [server.url(IMAGE)];
    let (a, b) = tokio::join!(
        fetch(&urls, &checksum, cache.path()),
        fetch(&urls, &checksum, cache.path())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.path, b.path);
    let mut origins = [a.origin, b.origin];
    origins.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(origins, [Origin::Cached, Origin::Downloaded]);
    assert_eq!(server.request_count(), 1);
    assert_eq!(std::fs::read(&a.path).unwrap(), body);
    let hex = hex_digest(HashAlgorithm::Sha256, &body);
    assert_eq!(
        files_in(cache.path()),
        [
            format!("sha256-{hex}.qcow2"),
            format!("sha256-{hex}.qcow2.json")
        ]
    );
}

#[tokio::test]
async fn a_leftover_part_that_does_not_belong_is_downloaded_again() {
    let server = ImageServer::start().await;
    let body = data(1 << 20, 8);
    server.add(IMAGE, body.clone());
    let cache = tempfile::tempdir().unwrap();
    let hex = hex_digest(HashAlgorithm::Sha256, &body);
    std::fs::write(
        cache.path().join(format!("sha256-{hex}.qcow2.part")),
        vec![0xaa; 1000],
    )
    .unwrap();
    let image = fetch(&[server.url(IMAGE)], &sha256(&body), cache.path())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&image.path).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("range"), Some("bytes=1000-"));
    assert_eq!(requests[1].header("range"), None);
}

#[tokio::test]
async fn iso_urls_fall_back_to_the_next_url() {
    let server = ImageServer::start().await;
    let body = data(1 << 20, 9);
    server.add(IMAGE, body.clone());
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}{IMAGE}", l.local_addr().unwrap())
    };
    let cache = tempfile::tempdir().unwrap();
    let urls = [
        dead.clone(),
        server.url("/gone/debian-12-genericcloud-amd64.qcow2"),
        server.url(IMAGE),
    ];
    let image = fetch(&urls, &sha256(&body), cache.path()).await.unwrap();
    assert_eq!(image.source, urls[2]);
    assert_eq!(std::fs::read(&image.path).unwrap(), body);

    let other = tempfile::tempdir().unwrap();
    let err = fetch(&urls[..2], &sha256(&body), other.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("any of the 2 URLs"), "{err}");
    assert!(err.contains(&format!("  - {dead}: ")), "{err}");
    assert!(err.contains("404 (not found)"), "{err}");
}

#[tokio::test]
async fn local_files_are_verified_in_place() {
    // A directory under the working directory (the package root) so that a relative path
    // works too.
    std::fs::create_dir_all("target").unwrap();
    let dir = tempfile::tempdir_in("target").unwrap();
    let body = data(1 << 20, 10);
    let file = dir.path().join("local disk.img");
    std::fs::write(&file, &body).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let absolute = std::path::absolute(&file).unwrap();
    let url = format!(
        "file://{}",
        absolute.display().to_string().replace(' ', "%20")
    );

    let image = fetch(&[url], &sha256(&body), cache.path()).await.unwrap();
    assert_eq!(image.origin, Origin::Local);
    assert_eq!(image.path, absolute);
    assert!(
        !files_in(cache.path()).iter().any(|f| f.ends_with(".img")),
        "not copied"
    );

    let relative = file
        .strip_prefix(std::env::current_dir().unwrap())
        .unwrap_or(&file);
    assert!(relative.is_relative(), "{}", relative.display());
    let image = fetch(
        &[relative.display().to_string()],
        &sha256(&body),
        cache.path(),
    )
    .await
    .unwrap();
    assert_eq!(image.path, absolute);

    // Unverified: used as is.
    let image = fetch(
        &[relative.display().to_string()],
        &Checksum::None,
        cache.path(),
    )
    .await
    .unwrap();
    assert_eq!(image.digest, None);

    // A mismatch leaves the user's file alone.
    let wrong = sha256(b"something else");
    let err = fetch(&[file.display().to_string()], &wrong, cache.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("left in place"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), body);

    let missing = fetch(
        &[dir.path().join("nope.img").display().to_string()],
        &Checksum::None,
        cache.path(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("nope.img") && missing.contains("cannot read"),
        "{missing}"
    );
}

#[tokio::test]
async fn unverified_downloads_are_revalidated() {
    let server = ImageServer::start().await;
    let body = data(1 << 20, 11);
    server.add(IMAGE, body.clone());
    server.configure(|b| b.etag = Some("\"one\"".into()));
    let cache = tempfile::tempdir().unwrap();
    let first = fetch(&[server.url(IMAGE)], &Checksum::None, cache.path())
        .await
        .unwrap();
    assert_eq!(first.origin, Origin::Downloaded);
    assert_eq!(first.digest, None);

    let second = fetch(&[server.url(IMAGE)], &Checksum::None, cache.path())
        .await
        .unwrap();
    assert_eq!(second.origin, Origin::Cached);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("if-none-match"), Some("\"one\""));

    // The file changes on the server: downloaded again.
    let newer = data(1 << 20, 12);
    server.add(IMAGE, newer.clone());
    server.configure(|b| b.etag = Some("\"two\"".into()));
    let third = fetch(&[server.url(IMAGE)], &Checksum::None, cache.path())
        .await
        .unwrap();
    assert_eq!(third.origin, Origin::Downloaded);
    assert_eq!(third.path, first.path);
    assert_eq!(std::fs::read(&third.path).unwrap(), newer);
}

// --- qemu-img -------------------------------------------------------------------------------

/// qemu-img, or `None` after printing why the test is skipped (a panic when
/// KILN_REQUIRE_TOOLS=1).
fn qemu_img(test: &str) -> Option<QemuImg> {
    match QemuImg::locate() {
        Ok(q) => Some(q),
        Err(e) => {
            let msg = format!("{test}: SKIPPED: {e}");
            if std::env::var_os("KILN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
                panic!("{msg}, and KILN_REQUIRE_TOOLS=1");
            }
            eprintln!("{msg}");
            None
        }
    }
}

#[tokio::test]
async fn qemu_img_info_and_overlay() {
    let Some(q) = qemu_img("qemu_img_info_and_overlay") else {
        return;
    };
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    q.create(&base, &ImageFormat::Qcow2, 64 << 20, &cancel)
        .await
        .unwrap();
    let info = q.info(&base, &cancel).await.unwrap();
    assert_eq!(info.format, ImageFormat::Qcow2);
    assert_eq!(info.virtual_size, 64 << 20);
    assert!(info.actual_size.is_some_and(|a| a < 1 << 20), "{info:?}");
    assert_eq!(info.backing_file, None);

    let overlay = dir.path().join("sub").join("overlay.qcow2");
    std::fs::create_dir(overlay.parent().unwrap()).unwrap();
    q.create_overlay(&base, &overlay, &cancel).await.unwrap();
    let info = q.info(&overlay, &cancel).await.unwrap();
    assert_eq!(info.format, ImageFormat::Qcow2);
    assert_eq!(info.virtual_size, 64 << 20);
    assert_eq!(info.backing_file, Some(base.clone()));
    assert_eq!(info.backing_format, Some(ImageFormat::Qcow2));

    let err = q
        .info(&dir.path().join("missing.qcow2"), &cancel)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, QemuImgError::Failed { .. }), "{err:?}");
    assert!(
        text.contains("qemu-img info --output=json -U") && text.contains("missing.qcow2"),
        "{text}"
    );
    assert!(text.contains("No such file"), "{text}");
}

#[tokio::test]
async fn qemu_img_converts_with_compression_and_back() {
    let Some(q) = qemu_img("qemu_img_converts_with_compression_and_back") else {
        return;
    };
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let body = data(16 << 20, 13);
    std::fs::write(&raw, &body).unwrap();
    let qcow = dir.path().join("disk.qcow2");
    let mut last = None;
    q.copy_or_convert(
        &raw,
        &qcow,
        &ImageFormat::Qcow2,
        true,
        |done, total| last = Some((done, total)),
        &cancel,
    )
    .await
    .unwrap();
    assert_eq!(last, Some((16 << 20, Some(16 << 20))));
    let info = q.info(&qcow, &cancel).await.unwrap();
    assert_eq!(info.format, ImageFormat::Qcow2);
    assert_eq!(info.virtual_size, 16 << 20);
    let compressed = std::fs::metadata(&qcow).unwrap().len();
    assert!(compressed < (16 << 20) * 3 / 4, "{compressed} bytes");

    // Back to raw: the same bytes.
    let back = dir.path().join("back.raw");
    q.copy_or_convert(&qcow, &back, &ImageFormat::Raw, false, |_, _| {}, &cancel)
        .await
        .unwrap();
    assert!(
        std::fs::read(&back).unwrap() == body,
        "round trip changed the data"
    );

    // Compaction in place keeps the data.
    q.compact(&qcow, &qcow, true, |_, _| {}, &cancel)
        .await
        .unwrap();
    assert_eq!(q.info(&qcow, &cancel).await.unwrap().virtual_size, 16 << 20);
    assert_eq!(files_in(dir.path()), ["back.raw", "disk.qcow2", "disk.raw"]);

    let err = q
        .copy_or_convert(&raw, &back, &ImageFormat::Raw, true, |_, _| {}, &cancel)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("compression needs the qcow2 format"),
        "{err}"
    );
}

#[tokio::test]
async fn qemu_img_resize_grows_and_refuses_to_shrink() {
    let Some(q) = qemu_img("qemu_img_resize_grows_and_refuses_to_shrink") else {
        return;
    };
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    q.create(&disk, &ImageFormat::Qcow2, 12 << 30, &cancel)
        .await
        .unwrap();

    assert_eq!(
        q.resize(&disk, 16 << 30, &cancel).await.unwrap(),
        Resized::Grown {
            from: 12 << 30,
            to: 16 << 30
        }
    );
    assert_eq!(q.info(&disk, &cancel).await.unwrap().virtual_size, 16 << 30);
    assert_eq!(
        q.resize(&disk, 16 << 30, &cancel).await.unwrap(),
        Resized::Unchanged
    );
    // Sizes that are not whole sectors are rounded up.
    assert_eq!(
        q.resize(&disk, (16 << 30) + 1, &cancel).await.unwrap(),
        Resized::Grown {
            from: 16 << 30,
            to: (16 << 30) + 512
        }
    );

    let before = std::fs::read(&disk).unwrap();
    let mtime = std::fs::metadata(&disk).unwrap().modified().unwrap();
    let err = q.resize(&disk, 10 << 30, &cancel).await.unwrap_err();
    assert!(matches!(err, QemuImgError::WouldShrink { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("resizing it to 10 GiB would cut the file system")
            && text.contains("--shrink is never used by kiln")
            && text.contains("raise disk_size"),
        "{text}"
    );
    assert_eq!(std::fs::read(&disk).unwrap(), before);
    assert_eq!(std::fs::metadata(&disk).unwrap().modified().unwrap(), mtime);
}

#[tokio::test]
async fn cancelling_a_convert_kills_qemu_img_and_removes_the_temp_file() {
    let Some(q) = qemu_img("cancelling_a_convert_kills_qemu_img_and_removes_the_temp_file") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    std::fs::write(&raw, data(200 << 20, 14)).unwrap();
    let out = dir.path().join("big.qcow2");
    let cancel = CancellationToken::new();
    let dir_name = dir.path().display().to_string();
    // Cancel once qemu-img has reported progress: it runs, and its temporary output exists.
    let mut cancelled_at = None;
    let mut seen = (Vec::new(), Vec::new());
    let mut progressed = 0;
    let result = q
        .copy_or_convert(
            &raw,
            &out,
            &ImageFormat::Qcow2,
            true,
            |done, _| {
                progressed = progressed.max(done);
                if done > 0 && done < 200 << 20 && cancelled_at.is_none() {
                    seen = (processes_mentioning(&dir_name), files_in(dir.path()));
                    cancelled_at = Some(Instant::now());
                    cancel.cancel();
                }
            },
            &cancel,
        )
        .await;
    let took = cancelled_at
        .unwrap_or_else(|| panic!("no progress before the end: {result:?}"))
        .elapsed();
    assert!(
        matches!(result, Err(QemuImgError::Cancelled)),
        "{result:?} {took:?} after the cancel"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        progressed < 200 << 20,
        "it finished before the cancel: {progressed}"
    );
    let (running, files) = seen;
    assert!(
        running
            .iter()
            .any(|p| p.contains("qemu-img") && p.contains("convert")),
        "qemu-img ran when cancelled: {running:?}"
    );
    assert!(
        files.len() == 2,
        "its temporary output existed when cancelled: {files:?}"
    );
    assert_eq!(files_in(dir.path()), ["big.raw"]);
    assert_eq!(processes_mentioning(&dir_name), Vec::<String>::new());
}
