//! Streaming checksums over MD5, SHA-1, SHA-256 and SHA-512: one pass over bytes as they
//! arrive (downloads), or over a file read in a blocking thread (cache checks, the checksum
//! post-processor, the MD5 an Exoscale template registration asks for).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use md5::Digest as _;
use tokio_util::sync::CancellationToken;

use crate::recipe::checksum::HashAlgorithm;

/// How often [`hash_file`] reports progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// A running hash: feed it bytes with [`Hasher::update`], read the digest with
/// [`Hasher::finalize_hex`].
#[derive(Clone)]
pub struct Hasher {
    state: State,
    bytes: u64,
}

#[derive(Clone)]
enum State {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Hasher {
    /// A new hash of nothing yet.
    pub fn new(algorithm: HashAlgorithm) -> Hasher {
        let state = match algorithm {
            HashAlgorithm::Md5 => State::Md5(md5::Md5::new()),
            HashAlgorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            HashAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
        };
        Hasher { state, bytes: 0 }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        match self.state {
            State::Md5(_) => HashAlgorithm::Md5,
            State::Sha1(_) => HashAlgorithm::Sha1,
            State::Sha256(_) => HashAlgorithm::Sha256,
            State::Sha512(_) => HashAlgorithm::Sha512,
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        match &mut self.state {
            State::Md5(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
    }

    /// How many bytes were hashed so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The raw digest.
    pub fn finalize(self) -> Vec<u8> {
        match self.state {
            State::Md5(h) => h.finalize().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
        }
    }

    /// The digest as lowercase hex, as checksum lists and recipes write it.
    pub fn finalize_hex(self) -> String {
        hex::encode(self.finalize())
    }
}

/// The digest of `data` as lowercase hex.
pub fn hex_digest(algorithm: HashAlgorithm, data: &[u8]) -> String {
    let mut h = Hasher::new(algorithm);
    h.update(data);
    h.finalize_hex()
}

/// Hashing a file failed.
#[derive(Debug, thiserror::Error)]
pub enum HashFileError {
    /// The file could not be read.
    #[error(
        "could not read {path} to compute its checksum: {source}; check that it exists and is readable"
    )]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The cancellation token fired.
    #[error("cancelled while computing the checksum")]
    Cancelled,
}

/// Hashes a whole file in a blocking thread (so the async runtime keeps running), reporting
/// `progress(bytes_done)` at most ten times a second and once at the end. Stops promptly when
/// `cancel` fires.
pub async fn hash_file(
    path: &Path,
    algorithm: HashAlgorithm,
    cancel: &CancellationToken,
    progress: impl FnMut(u64),
) -> Result<String, HashFileError> {
    continue_hash_file(path, Hasher::new(algorithm), None, cancel, progress)
        .await
        .map(Hasher::finalize_hex)
}

/// Feeds the first `limit` bytes of `path` (the whole file when `None`) into `hasher` and
/// returns it, in a blocking thread; progress and cancellation as in [`hash_file`]. Used to
/// pick a resumed download's hash up where the partial file ends.
pub async fn continue_hash_file(
    path: &Path,
    hasher: Hasher,
    limit: Option<u64>,
    cancel: &CancellationToken,
    mut progress: impl FnMut(u64),
) -> Result<Hasher, HashFileError> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let owned = path.to_path_buf();
    let (done2, stop2) = (done.clone(), stop.clone());
    let mut task =
        tokio::task::spawn_blocking(move || hash_blocking(&owned, hasher, limit, &done2, &stop2));
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    let result = loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                stop.store(true, Ordering::Relaxed);
                let _ = task.await;
                return Err(HashFileError::Cancelled);
            }
            r = &mut task => break r,
            _ = tick.tick() => progress(done.load(Ordering::Relaxed)),
        }
    };
    let hasher = match result {
        Ok(Ok(h)) => h,
        Ok(Err(source)) => {
            return Err(HashFileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    if stop.load(Ordering::Relaxed) {
        return Err(HashFileError::Cancelled);
    }
    progress(done.load(Ordering::Relaxed));
    Ok(hasher)
}

fn hash_blocking(
    path: &Path,
    mut hasher: Hasher,
    limit: Option<u64>,
    done: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<Hasher> {
    let file = std::fs::File::open(path)?;
    let mut reader = file.take(limit.unwrap_or(u64::MAX));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(hasher);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        done.fetch_add(n as u64, Ordering::Relaxed);
    }
    if let Some(limit) = limit
        && hasher.len() < limit
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file has {} bytes, {limit} were expected", hasher.len()),
        ));
    }
    Ok(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let cases = [
            (HashAlgorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (
                HashAlgorithm::Sha1,
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ),
            (
                HashAlgorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                HashAlgorithm::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (algorithm, expected) in cases {
            assert_eq!(hex_digest(algorithm, b"abc"), expected);
            assert_eq!(expected.len(), algorithm.hex_len());
            let mut split = Hasher::new(algorithm);
            split.update(b"a");
            split.update(b"");
            split.update(b"bc");
            assert_eq!(split.len(), 3);
            assert_eq!(split.finalize_hex(), expected, "{algorithm:?} in pieces");
        }
    }

    #[tokio::test]
    async fn hashes_a_file_and_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let cancel = CancellationToken::new();
        let mut last = 0;
        let whole = hash_file(&path, HashAlgorithm::Sha256, &cancel, |d| last = d)
            .await
            .unwrap();
        assert_eq!(whole, hex_digest(HashAlgorithm::Sha256, &data));
        assert_eq!(last, data.len() as u64);

        let prefix = continue_hash_file(
            &path,
            Hasher::new(HashAlgorithm::Md5),
            Some(1000),
            &cancel,
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            prefix.finalize_hex(),
            hex_digest(HashAlgorithm::Md5, &data[..1000])
        );

        let too_long = continue_hash_file(
            &path,
            Hasher::new(HashAlgorithm::Md5),
            Some(data.len() as u64 + 1),
            &cancel,
            |_| {},
        )
        .await;
        assert!(matches!(too_long, Err(HashFileError::Io { .. })));

        cancel.cancel();
        assert!(matches!(
            hash_file(&path, HashAlgorithm::Sha1, &cancel, |_| {}).await,
            Err(HashFileError::Cancelled)
        ));
    }
}
