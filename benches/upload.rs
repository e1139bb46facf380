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
//! ≤ 1.05).
//!
//! On these 2-core machines Garage runs beside the client and hashes every byte itself, so
//! the local upload is bound by the CPU, and the MD5 thread competes with the server for it.
//! A real upload to SOS is bound by the network instead. So the MD5 pair also runs through a
//! local TCP proxy that paces the upload to `KILN_BENCH_LINK_MBIT` (default 1000, a 1 Gbit/s
//! link): there the MD5 should cost nothing, because it overlaps the wait for the network. Run: `cargo bench --bench upload` (needs Garage, see tests/run.sh, and rclone).
//! Under `cargo test --all-targets` it only does a 32 MiB smoke run of kiln's uploads.

#[path = "../tests/support/exoscale_api.rs"]
mod exoscale_api;
#[path = "../tests/support/garage.rs"]
mod garage;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A shared link: every byte sent upstream, over all connections, waits its turn at `rate`
/// bytes a second.
struct Link {
    rate: f64,
    next: Mutex<Instant>,
}

impl Link {
    async fn pace(&self, bytes: usize) {
        let until = {
            let mut next = self.next.lock().unwrap();
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate);
            *next
        };
        tokio::time::sleep_until(until.into()).await;
    }
}

/// Starts a TCP proxy to `upstream` (`host:port`) whose client-to-server direction is paced
/// by a shared link of `mbit` Mbit/s; returns its `http://` endpoint.
async fn paced_proxy(upstream: String, mbit: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let link = Arc::new(Link {
        rate: mbit as f64 * 1e6 / 8.0,
        next: Mutex::new(Instant::now()),
    });
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let link = link.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        link.pace(n).await;
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("http://{addr}")
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
    let link_mbit = env_number("KILN_BENCH_LINK_MBIT", 1000).max(1);
    let upstream = g.endpoint.trim_start_matches("http://").to_string();
    let paced_endpoint = runtime.block_on(paced_proxy(upstream, link_mbit));
    let paced = ObjectStore::new(&StoreConfig {
        endpoint: paced_endpoint,
        zone: garage::ZONE.to_string(),
        bucket: bucket.to_string(),
        credentials: Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap(),
    })
    .expect("a store behind the paced link");
    let (mut paced_md5, mut paced_alone) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let order: [bool; 2] = if run % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for md5 in order {
            let took = kiln_upload(&runtime, &paced, &file, &format!("paced{run}-{md5}"), md5);
            let secs = took.as_secs_f64();
            let label = if md5 {
                "kiln, MD5 in the same read"
            } else {
                "kiln, upload alone"
            };
            println!(
                "run {run} over a {link_mbit} Mbit/s link: {label:28} {secs:7.2} s  {:7.1} MiB/s",
                size_mib as f64 / secs
            );
            if md5 {
                paced_md5.push(secs);
            } else {
                paced_alone.push(secs);
            }
        }
    }
    if smoke {
        println!("smoke run done (cargo test); `cargo bench --bench upload` measures");
        return;
    }
    let (p_md5, p_alone) = (median(paced_md5), median(paced_alone));
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
        "ratio time MD5+upload / upload alone, local Garage (CPU-bound, server on the same 2 cores): {:.3} (target <= 1.05)",
        m_md5 / m_alone
    );
    println!(
        "ratio time MD5+upload / upload alone, over a {link_mbit} Mbit/s link: {:.3} (target <= 1.05) — medians {p_md5:.2} s and {p_alone:.2} s",
        p_md5 / p_alone
    );
}
