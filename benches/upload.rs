//! Upload throughput to a local Garage (a real S3 server), side by side in one run:
//!
//! - kiln's upload with the MD5 computed in the same read (what `exoscale-import` does);
//! - kiln's upload alone (no MD5), to show what hashing in the same pass costs;
//! - `rclone copyto` (Debian's rclone) with the same part size and concurrency, without its
//!   MD5 pre-pass (`--s3-disable-checksum`), i.e. the upload alone, like `aws s3 cp`.
//!
//! The three run alternately, `KILN_BENCH_RUNS` times (default 3), on a
//! `KILN_BENCH_SIZE_MIB` file (default 2048). Prints each time, the medians and the ratios:
//! kiln's throughput over rclone's (target ≥ 1.0) and MD5+upload over upload alone (target
//! ≤ 1.05). Run: `cargo bench --bench upload` (needs Garage, see tests/run.sh, and rclone).
//! Under `cargo test --all-targets` it only does a 32 MiB smoke run of kiln's uploads.

#[path = "../tests/support/exoscale_api.rs"]
mod exoscale_api;
#[path = "../tests/support/garage.rs"]
mod garage;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use exoscale_api::{TEST_KEY, TEST_SECRET};
use kiln::exoscale::Credentials;
use kiln::objectstore::{ObjectStore, StoreConfig, UploadOptions};
use kiln::recipe::secret::Secret;
use tokio_util::sync::CancellationToken;

const PART_SIZE: u64 = 16 << 20;
const CONCURRENCY: usize = 4;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn kiln_upload(
    runtime: &tokio::runtime::Runtime,
    store: &ObjectStore,
    file: &Path,
    key: &str,
    md5: bool,
) -> Duration {
    let options = UploadOptions {
        part_size: PART_SIZE,
        concurrency: CONCURRENCY,
        compute_md5: md5,
        ..UploadOptions::default()
    };
    let started = Instant::now();
    let receipt = runtime
        .block_on(store.upload_file(file, key, &options, &|_| {}, &CancellationToken::new()))
        .expect("kiln upload");
    let took = started.elapsed();
    assert_eq!(receipt.md5.is_empty(), !md5);
    runtime.block_on(store.delete(key)).expect("delete");
    took
}

/// `rclone` with a remote `garage:` at `endpoint` (configured through its environment).
fn rclone(endpoint: &str) -> Command {
    let mut command = Command::new("rclone");
    command
        // The host's CA bundle variable makes rclone's S3 client refuse plain HTTP.
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_GARAGE_TYPE", "s3")
        .env("RCLONE_CONFIG_GARAGE_PROVIDER", "Other")
        .env("RCLONE_CONFIG_GARAGE_ENDPOINT", endpoint)
        .env("RCLONE_CONFIG_GARAGE_REGION", garage::ZONE)
        .env("RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE", "true")
        .env("RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID", TEST_KEY)
        .env("RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY", TEST_SECRET);
    command
}

fn rclone_upload(endpoint: &str, bucket: &str, file: &Path, key: &str) -> Duration {
    let started = Instant::now();
    let status = rclone(endpoint)
        .args(["copyto", "--s3-disable-checksum", "--s3-chunk-size", "16M"])
        .args(["--s3-upload-concurrency", &CONCURRENCY.to_string()])
        .arg(file)
        .arg(format!("garage:{bucket}/{key}"))
        .status()
        .expect("rclone (apt-get install -y rclone)");
    let took = started.elapsed();
    assert!(status.success(), "rclone failed");
    let _ = rclone(endpoint)
        .arg("deletefile")
        .arg(format!("garage:{bucket}/{key}"))
        .status();
    took
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` (the test command) does not:
    // then a 32 MiB smoke run of kiln's two uploads checks the bench still works, without
    // rclone.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let size_mib = if smoke {
        32
    } else {
        env_number("KILN_BENCH_SIZE_MIB", 2048)
    };
    let runs = if smoke {
        1
    } else {
        env_number("KILN_BENCH_RUNS", 3).max(1)
    };
    let g = garage::garage();
    let bucket = "kiln-bench";
    g.create_bucket(bucket);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("image.bin");
    garage::write_pattern(&file, size_mib << 20, 7);
    let store = ObjectStore::new(&StoreConfig {
        endpoint: g.endpoint.clone(),
        zone: garage::ZONE.to_string(),
        bucket: bucket.to_string(),
        credentials: Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap(),
    })
    .expect("a store");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "upload of {size_mib} MiB to Garage at {}: parts of 16 MiB, 4 at once, {runs} runs",
        g.endpoint
    );
    let (mut with_md5, mut alone, mut rclone) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        // Alternate the order so neither side always goes first.
        let order: [u8; 3] = if run % 2 == 1 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order.into_iter().filter(|w| !smoke || *w != 2) {
            let key = format!("run{run}-{which}");
            let (label, took) = match which {
                0 => (
                    "kiln, MD5 in the same read",
                    kiln_upload(&runtime, &store, &file, &key, true),
                ),
                1 => (
                    "kiln, upload alone",
                    kiln_upload(&runtime, &store, &file, &key, false),
                ),
                _ => (
                    "rclone copyto",
                    rclone_upload(&g.endpoint, bucket, &file, &key),
                ),
            };
            let secs = took.as_secs_f64();
            println!(
                "run {run}: {label:28} {secs:7.2} s  {:7.1} MiB/s",
                size_mib as f64 / secs
            );
            match which {
                0 => with_md5.push(secs),
                1 => alone.push(secs),
                _ => rclone.push(secs),
            }
        }
    }
    if smoke {
        println!("smoke run done (cargo test); `cargo bench --bench upload` measures");
        return;
    }
    let (m_md5, m_alone, m_rclone) = (median(with_md5), median(alone), median(rclone));
    println!(
        "median: kiln MD5+upload {m_md5:.2} s ({:.1} MiB/s), kiln upload alone {m_alone:.2} s, rclone {m_rclone:.2} s ({:.1} MiB/s)",
        size_mib as f64 / m_md5,
        size_mib as f64 / m_rclone
    );
    println!(
        "ratio throughput kiln (MD5+upload) / rclone (upload alone): {:.2} (target >= 1.0)",
        m_rclone / m_md5
    );
    println!(
        "ratio time MD5+upload / upload alone: {:.3} (target <= 1.05)",
        m_md5 / m_alone
    );
}
