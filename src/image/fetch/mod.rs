//! Fetching the base image (`iso_url` / `iso_urls`) into a local cache, verified while it
//! streams in.
//!
//! # Sources
//! `http://` and `https://` URLs are downloaded; `file://` URLs and plain paths (relative ones
//! from the working directory) are used where they are. The URLs are tried in order, like
//! Packer's `iso_urls`; when all fail, the error lists each URL's failure.
//!
//! # Cache layout
//! Everything lives flat in the cache directory ([`default_cache_dir`]):
//! - `<algo>-<hex><ext>`: a verified download, named by its digest (`sha512-…​.qcow2`), so
//!   every recipe that names the same image shares it, whatever the mirror;
//! - `url-<sha256 of the URL, 32 digits><ext>`: an unverified download (`iso_checksum: none`);
//! - `<name>.json`: the marker written next to each entry once it is complete (digest or
//!   validators, size, modification time);
//! - `<name>.part`: a download under way or interrupted, resumed by the next fetch;
//! - `local/<sha256 of the path>.json`: markers of local files verified in place.
//!
//! # Decisions
//! - **Cache hits are checked cheaply.** A verified entry is reused when its marker exists and
//!   the file still has the size and modification time recorded when it was verified; no
//!   re-hash (a 600 MB image takes seconds to hash on every build) and no network access.
//!   The entry only ever comes into being by an atomic rename after the digest matched, and
//!   kiln never writes to it (builds boot an overlay or a copy), so size + mtime catch what can
//!   realistically happen to it: truncation, or a tool writing to it in place. Without a marker
//!   (or when it disagrees) the file is re-hashed, and deleted if the digest is wrong.
//! - **Local files are verified in place, not copied.** Packer copies them into its cache;
//!   that costs the time and the disk space of a second copy of a large file for nothing, as
//!   the build never writes to the base image. The result points at the original file. The
//!   verification is remembered (size + mtime, as for cache entries) under `local/`, so the
//!   next build does not hash it again.
//! - **Unverified downloads** (`none`) are re-validated with a conditional request: the entry
//!   is reused when the server answers `304 Not Modified`, or when every validator it sends
//!   (ETag, Last-Modified, size) matches the stored one. A server that gives none of them gets
//!   the file downloaded again.
//! - **A checksum list** (`file:<url>`) is fetched on every call, since lists such as Debian's
//!   `latest/SHA512SUMS` change when the image does; when the digest it gives is cached, the
//!   image itself is not downloaded.
//! - **Resuming.** A download goes to `<name>.part`. When the connection breaks after data
//!   arrived, the fetch resumes it with a `Range` request (guarded by `If-Range` with the
//!   first response's validator), up to three times in a row without new data. A leftover
//!   `.part` of a verified download is resumed by the next call (the digest check catches an
//!   inconsistent one, which is then downloaded once more from scratch); a `.part` of an
//!   unverified download is only resumed within the same call. A server that ignores `Range`
//!   (`200` instead of `206`) gets the file written again from the start.
//! - **Cancellation** returns [`FetchError::Cancelled`] promptly and leaves the `.part` for
//!   the next call; no file is ever under the final name unless it was verified.
//! - **Concurrency.** Two kiln processes fetching the same image take turns: the `.part` file
//!   is locked (`flock`) while it is written, and the second one finds the cache entry when the
//!   first is done.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED,
    RANGE,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::digest::{self, HashFileError, Hasher};
use super::sums;
use crate::recipe::checksum::{Checksum, HashAlgorithm};

/// Progress is reported at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Resume attempts in a row that bring no new data before a URL is given up.
const MAX_RETRIES: u32 = 3;
/// The first pause before a resume; doubled on each attempt without new data.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Checksum lists larger than this are not lists.
const MAX_LIST_BYTES: usize = 16 << 20;
/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a download may stall before it counts as broken (and is resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The base image, ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// Where the image is: an entry of the cache, or the original local file (absolute).
    pub path: PathBuf,
    /// The URL or path of `urls` it came from.
    pub source: String,
    /// Its size in bytes.
    pub size: u64,
    /// The digest it was verified against; `None` for `iso_checksum: none`.
    pub digest: Option<VerifiedDigest>,
    /// How it was obtained.
    pub origin: Origin,
}

/// A digest an image was verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDigest {
    /// The algorithm.
    pub algorithm: HashAlgorithm,
    /// Lowercase hex.
    pub hex: String,
}

/// How [`fetch_base_image`] obtained the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Downloaded now (perhaps resuming an earlier partial download).
    Downloaded,
    /// Found in the cache; nothing was downloaded.
    Cached,
    /// A local file (`file://` or a path), used in place.
    Local,
}

/// Fetching the base image failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `urls` was empty.
    #[error("no base image URL given; set iso_url or iso_urls in the recipe")]
    NoUrls,
    /// The cancellation token fired. A partial download is kept and resumed next time.
    #[error("the base image download was cancelled")]
    Cancelled,
    /// Neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error(
        "no cache directory: neither XDG_CACHE_HOME nor HOME is set; set one of them (kiln caches base images in $XDG_CACHE_HOME/kiln or ~/.cache/kiln)"
    )]
    NoCacheDir,
    /// The cache directory cannot be created or written.
    #[error(
        "cannot use the cache directory {path}: {source}; check its permissions and free space, or point XDG_CACHE_HOME elsewhere"
    )]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Every URL failed; each failure is listed in order.
    #[error("{}", render_failures(.0))]
    AllFailed(Vec<SourceFailure>),
}

impl FetchError {
    /// Whether the fetch was cancelled (rather than failed).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, FetchError::Cancelled)
    }
}

/// Why one URL of `iso_urls` did not give the image.
#[derive(Debug)]
pub struct SourceFailure {
    /// The URL or path as the recipe gives it.
    pub url: String,
    /// What went wrong.
    pub error: SourceError,
}

/// What went wrong with one URL.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not `http`, `https`, `file` or a path.
    #[error(
        "the URL scheme `{0}` is not supported; kiln downloads http:// and https:// URLs and reads file:// URLs and local paths"
    )]
    UnsupportedScheme(String),
    /// The URL does not parse.
    #[error("`{url}` is not a valid URL: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// The parser's word.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("the server answered {status}{}", status_hint(*status))]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// Connecting or reading failed.
    #[error("{0}; check the URL and the network connection")]
    Network(String),
    /// The body ended before the announced length, and resuming did not help.
    #[error(
        "the download broke off after {got} of {expected} bytes and could not be resumed; try again later or use another mirror"
    )]
    Incomplete {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A local file or a cache file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What kiln tried ("cannot read", "cannot write").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The digest does not match.
    #[error(
        "checksum mismatch: expected {} {expected}, got {actual}; {}",
        .algorithm.name(),
        mismatch_hint(*.deleted)
    )]
    Mismatch {
        /// The algorithm.
        algorithm: HashAlgorithm,
        /// The digest the recipe (or the list) gives.
        expected: String,
        /// The digest of what arrived.
        actual: String,
        /// Whether the bad file was deleted (downloads) or left alone (local files).
        deleted: bool,
    },
    /// The checksum list could not be fetched or has no usable line for the image.
    #[error("the checksum list {list}: {reason}")]
    ChecksumList {
        /// The list's URL.
        list: String,
        /// What is wrong.
        reason: String,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        404 | 410 => {
            " (not found); check the URL: cloud images are often removed when a newer one is published"
        }
        401 | 403 => " (access denied); check the URL and whether it needs credentials",
        500..=599 => " (a server error); try again later or use another mirror",
        _ => "",
    }
}

fn mismatch_hint(deleted: bool) -> &'static str {
    if deleted {
        "the download was deleted. The file on the server changed or the recipe's iso_checksum is out of date: check it against the image's published checksums"
    } else {
        "the file was left in place. It is not the image the recipe expects, or iso_checksum is out of date"
    }
}

fn render_failures(failures: &[SourceFailure]) -> String {
    match failures {
        [one] => format!("cannot get the base image from {}: {}", one.url, one.error),
        many => {
            let mut s = format!(
                "cannot get the base image from any of the {} URLs:",
                many.len()
            );
            for f in many {
                let _ = write!(s, "\n  - {}: {}", f.url, f.error);
            }
            s
        }
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn default_cache_dir() -> Result<PathBuf, FetchError> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

fn cache_dir_from(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, FetchError> {
    // The XDG spec says relative values are to be ignored.
    if let Some(xdg) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("kiln"));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("kiln")),
        None => Err(FetchError::NoCacheDir),
    }
}

/// Fetches the base image from the first of `urls` that works, verifies it against
/// `checksum`, and returns where it is. Verified downloads are cached in `cache_dir` by
/// digest and reused without network access; see the module documentation for the cache,
/// resuming and local files.
///
/// `progress(done, total)` is called with bytes (downloaded, or hashed when a file is
/// verified), at most about ten times a second, and once at the end. With
/// [`Checksum::None`] nothing is verified; the caller warns about it.
pub async fn fetch_base_image(
    urls: &[String],
    checksum: &Checksum,
    cache_dir: &Path,
    progress: impl FnMut(u64, Option<u64>),
    cancel: &CancellationToken,
) -> Result<CachedImage, FetchError> {
    if urls.is_empty() {
        return Err(FetchError::NoUrls);
    }
    let mut fetch = Fetch {
        cache_dir,
        cancel,
        progress: Throttle {
            report: progress,
            last: None,
        },
        client: None,
        lists: HashMap::new(),
    };
    let mut failures = Vec::new();
    for url in urls {
        if cancel.is_cancelled() {
            return Err(FetchError::Cancelled);
        }
        match fetch.one(url, checksum).await {
            Ok(image) => return Ok(image),
            Err(Failure::Cancelled) => return Err(FetchError::Cancelled),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Source(error)) => failures.push(SourceFailure {
                url: url.clone(),
                error,
            }),
        }
    }
    Err(FetchError::AllFailed(failures))
}

/// How one URL failed.
enum Failure {
    Cancelled,
    /// Not the URL's fault; stop trying.
    Fatal(FetchError),
    /// Try the next URL.
    Source(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Source(e)
    }
}

impl From<HashFileError> for Failure {
    fn from(e: HashFileError) -> Self {
        match e {
            HashFileError::Cancelled => Failure::Cancelled,
            HashFileError::Io { path, source } => Failure::Source(SourceError::Io {
                what: "cannot read",
                path,
                source,
            }),
        }
    }
}

/// Calls the progress callback at most every [`PROGRESS_EVERY`].
struct Throttle<F> {
    report: F,
    last: Option<Instant>,
}

impl<F: FnMut(u64, Option<u64>)> Throttle<F> {
    fn tick(&mut self, done: u64, total: Option<u64>) {
        if self.last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
            self.now(done, total);
        }
    }

    fn now(&mut self, done: u64, total: Option<u64>) {
        (self.report)(done, total);
        self.last = Some(Instant::now());
    }
}

/// Where one entry of `urls` points.
pub(super) enum Source {
    Http(reqwest::Url),
    Local(PathBuf),
}

pub(super) fn classify(url: &str) -> Result<Source, SourceError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(Source::Local(PathBuf::from(url)));
    };
    let invalid = |reason: String| SourceError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => reqwest::Url::parse(url)
            .map(Source::Http)
            .map_err(|e| invalid(e.to_string())),
        "file" if rest.starts_with('/') => {
            let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
            parsed
                .to_file_path()
                .map(Source::Local)
                .map_err(|()| invalid("it names a file on another host".into()))
        }
        // `file://relative/path`: not a proper URL, but Packer users write it.
        "file" => Ok(Source::Local(PathBuf::from(percent_decode(rest)))),
        other => Err(SourceError::UnsupportedScheme(other.to_string())),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file name of a URL: its last path segment, decoded.
pub(super) fn url_file_name(url: &reqwest::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    percent_decode(last)
}

/// The extension kept on cache entries: `.qcow2`, `.img`, `.raw.xz`; empty when there is
/// none that looks like one.
pub(super) fn cache_extension(file_name: &str) -> String {
    let plausible =
        |e: &str| !e.is_empty() && e.len() <= 8 && e.bytes().all(|b| b.is_ascii_alphanumeric());
    let mut parts = file_name.rsplit('.');
    let (Some(last), Some(_)) = (parts.next(), parts.clone().next()) else {
        return String::new();
    };
    if !plausible(last) {
        return String::new();
    }
    const COMPRESSED: [&str; 6] = ["gz", "xz", "bz2", "zst", "lz4", "zip"];
    if COMPRESSED.contains(&last.to_ascii_lowercase().as_str())
        && let (Some(inner), Some(_)) = (parts.next(), parts.next())
        && plausible(inner)
    {
        return format!(".{inner}.{last}");
    }
    format!(".{last}")
}

/// A marker written next to a complete cache entry (and for local files verified in place).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Marker {
    /// Where it came from.
    url: String,
    size: u64,
    mtime_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_marker(path: &Path) -> Option<Marker> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes a marker atomically; failure to write one only costs a re-hash next time.
fn write_marker(path: &Path, marker: &Marker) {
    let tmp = with_suffix(path, ".tmp");
    let ok = serde_json::to_vec_pretty(marker)
        .ok()
        .and_then(|json| std::fs::write(&tmp, json).ok())
        .and_then(|()| std::fs::rename(&tmp, path).ok());
    if ok.is_none() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Whether `file` still has the size and mtime its marker recorded.
fn marker_matches(file: &Path, marker: &Marker) -> bool {
    std::fs::metadata(file)
        .is_ok_and(|m| m.is_file() && m.len() == marker.size && mtime_ns(&m) == marker.mtime_ns)
}

fn marker_for(file: &Path, url: &str) -> Option<Marker> {
    let meta = std::fs::metadata(file).ok()?;
    Some(Marker {
        url: url.to_string(),
        size: meta.len(),
        mtime_ns: mtime_ns(&meta),
        algorithm: None,
        digest: None,
        etag: None,
        last_modified: None,
    })
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io { what, path, source }
}

fn network_error(e: reqwest::Error) -> SourceError {
    // reqwest's own message is terse ("error sending request"); the causes say why. The URL
    // is left out: the failure list names it.
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            let _ = write!(message, ": {text}");
        }
        source = cause.source();
    }
    SourceError::Network(message)
}

/// What a finished download tells about itself.
struct Downloaded {
    hasher: Option<Hasher>,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Whether any part of it came from an earlier attempt (a resume).
    resumed: bool,
}

/// The state of one [`fetch_base_image`] call.
struct Fetch<'a, P> {
    cache_dir: &'a Path,
    cancel: &'a CancellationToken,
    progress: Throttle<P>,
    client: Option<reqwest::Client>,
    /// Checksum lists fetched so far, by URL (a failure is remembered too).
    lists: HashMap<String, Result<String, String>>,
}

impl<P: FnMut(u64, Option<u64>)> Fetch<'_, P> {
    async fn one(&mut self, url: &str, checksum: &Checksum) -> Result<CachedImage, Failure> {
        match classify(url)? {
            Source::Local(path) => self.local(url, &path, checksum).await,
            Source::Http(parsed) => {
                let name = url_file_name(&parsed);
                let expect = self.expected(checksum, &name).await?;
                std::fs::create_dir_all(self.cache_dir).map_err(|source| {
                    Failure::Fatal(FetchError::CacheDir {
                        path: self.cache_dir.to_path_buf(),
                        source,
                    })
                })?;
                let ext = cache_extension(&name);
                match expect {
                    Some(digest) => self.verified_http(url, &parsed, &ext, digest).await,
                    None => self.unverified_http(url, &parsed, &ext).await,
                }
            }
        }
    }

    fn client(&mut self) -> Result<reqwest::Client, SourceError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(network_error)?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// The digest `file_name` must have, or `None` for `iso_checksum: none`.
    async fn expected(
        &mut self,
        checksum: &Checksum,
        file_name: &str,
    ) -> Result<Option<VerifiedDigest>, Failure> {
        match checksum {
            Checksum::None => Ok(None),
            Checksum::Digest { algorithm, hex } => Ok(Some(VerifiedDigest {
                algorithm: *algorithm,
                hex: hex.to_ascii_lowercase(),
            })),
            Checksum::File { url, algorithm } => {
                let text = match self.lists.get(url) {
                    Some(cached) => cached.clone(),
                    None => {
                        let got = match self.fetch_list(url).await {
                            Err(Failure::Source(e)) => Err(e.to_string()),
                            Err(other) => return Err(other),
                            Ok(text) => Ok(text),
                        };
                        self.lists.insert(url.clone(), got.clone());
                        got
                    }
                };
                let list_error = |reason: String| {
                    Failure::Source(SourceError::ChecksumList {
                        list: url.clone(),
                        reason,
                    })
                };
                let text = text.map_err(|e| list_error(format!("cannot be fetched: {e}")))?;
                let (algorithm, hex) =
                    sums::lookup(&text, file_name, *algorithm).map_err(list_error)?;
                Ok(Some(VerifiedDigest { algorithm, hex }))
            }
        }
    }

    async fn fetch_list(&mut self, url: &str) -> Result<String, Failure> {
        let bytes = match classify(url)? {
            Source::Local(path) => tokio::fs::read(&path)
                .await
                .map_err(io_err("cannot read", &path))?,
            Source::Http(parsed) => {
                let client = self.client()?;
                let mut response = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(Failure::Cancelled),
                    r = client.get(parsed).send() => r.map_err(network_error)?,
                };
                if !response.status().is_success() {
                    return Err(SourceError::Status {
                        status: response.status().as_u16(),
                    }
                    .into());
                }
                let mut body = Vec::new();
                loop {
                    let chunk = tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return Err(Failure::Cancelled),
                        c = response.chunk() => c.map_err(network_error)?,
                    };
                    let Some(chunk) = chunk else { break };
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_LIST_BYTES {
                        return Err(SourceError::Network(format!(
                            "it is larger than {} MiB, which is no checksum list",
                            MAX_LIST_BYTES >> 20
                        ))
                        .into());
                    }
                }
                body
            }
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A local file: verified in place (remembered under `local/`), never copied.
    async fn local(
        &mut self,
        url: &str,
        path: &Path,
        checksum: &Checksum,
    ) -> Result<CachedImage, Failure> {
        let path = std::path::absolute(path).map_err(io_err("cannot resolve", path))?;
        let meta = std::fs::metadata(&path).map_err(io_err("cannot read", &path))?;
        if !meta.is_file() {
            return Err(SourceError::Io {
                what: "cannot use",
                path,
                source: std::io::Error::other("it is not a regular file"),
            }
            .into());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = meta.len();
        let image = |digest| CachedImage {
            path: path.clone(),
            source: url.to_string(),
            size,
            digest,
            origin: Origin::Local,
        };
        let Some(want) = self.expected(checksum, &name).await? else {
            self.progress.now(size, Some(size));
            return Ok(image(None));
        };
        let marker_path = self.cache_dir.join("local").join(format!(
            "{}.json",
            &digest::hex_digest(HashAlgorithm::Sha256, path.as_os_str().as_encoded_bytes())[..32]
        ));
        if let Some(m) = read_marker(&marker_path)
            && m.algorithm.as_deref() == Some(want.algorithm.name())
            && m.digest.as_deref() == Some(&want.hex)
            && marker_matches(&path, &m)
        {
            self.progress.now(size, Some(size));
            return Ok(image(Some(want)));
        }
        let progress = &mut self.progress;
        let actual = digest::hash_file(&path, want.algorithm, self.cancel, |d| {
            progress.tick(d, Some(size))
        })
        .await?;
        if actual != want.hex {
            return Err(SourceError::Mismatch {
                algorithm: want.algorithm,
                expected: want.hex,
                actual,
                deleted: false,
            }
            .into());
        }
        if std::fs::create_dir_all(marker_path.parent().unwrap_or(self.cache_dir)).is_ok()
            && let Some(mut m) = marker_for(&path, url)
        {
            m.algorithm = Some(want.algorithm.name().into());
            m.digest = Some(want.hex.clone());
            write_marker(&marker_path, &m);
        }
        self.progress.now(size, Some(size));
        Ok(image(Some(want)))
    }

    /// The cache entry of a verified download, if it is there and sound. With `rehash`, an
    /// entry without a (matching) marker is hashed, and deleted when it is wrong.
    async fn verified_hit(
        &mut self,
        url: &str,
        entry: &Path,
        want: &VerifiedDigest,
        rehash: bool,
    ) -> Result<Option<CachedImage>, Failure> {
        let Ok(meta) = std::fs::metadata(entry) else {
            return Ok(None);
        };
        let size = meta.len();
        let hit = |digest| CachedImage {
            path: entry.to_path_buf(),
            source: url.to_string(),
            size,
            digest: Some(digest),
            origin: Origin::Cached,
        };
        let marker_path = with_suffix(entry, ".json");
        if let Some(m) = read_marker(&marker_path)
            && m.digest.as_deref() == Some(&want.hex)
            && marker_matches(entry, &m)
        {
            self.progress.now(size, Some(size));
            return Ok(Some(hit(want.clone())));
        }
        if !rehash {
            return Ok(None);
        }
        let progress = &mut self.progress;
        let actual = digest::hash_file(entry, want.algorithm, self.cancel, |d| {
            progress.tick(d, Some(size))
        })
        .await?;
        if actual != want.hex {
            let _ = std::fs::remove_file(entry);
            let _ = std::fs::remove_file(&marker_path);
            return Ok(None);
        }
        if let Some(mut m) = marker_for(entry, url) {
            m.algorithm = Some(want.algorithm.name().into());
            m.digest = Some(want.hex.clone());
            write_marker(&marker_path, &m);
        }
        self.progress.now(size, Some(size));
        Ok(Some(hit(want.clone())))
    }

    async fn verified_http(
        &mut self,
        url: &str,
        parsed: &reqwest::Url,
        ext: &str,
        want: VerifiedDigest,
    ) -> Result<CachedImage, Failure> {
        let entry = self
            .cache_dir
            .join(format!("{}-{}{ext}", want.algorithm.name(), want.hex));
        if let Some(hit) = self.verified_hit(url, &entry, &want, false).await? {
            return Ok(hit);
        }
        let part_path = with_suffix(&entry, ".part");
        let part = lock_part(&part_path, self.cancel).await?;
        if let Some(hit) = self.verified_hit(url, &entry, &want, true).await? {
            drop_empty_part(&part_path, &part);
            return Ok(hit);
        }
        let mut resume = true;
        loop {
            let done = self
                .download(
                    parsed,
                    &part_path,
                    &part,
                    Some(want.algorithm),
                    resume,
                    None,
                )
                .await?;
            let actual = done.hasher.map(Hasher::finalize_hex).unwrap_or_default();
            if actual != want.hex {
                part.set_len(0)
                    .map_err(io_err("cannot write", &part_path))?;
                if done.resumed && resume {
                    // The earlier part may not belong to this file: once more from scratch.
                    resume = false;
                    continue;
                }
                let _ = std::fs::remove_file(&part_path);
                return Err(SourceError::Mismatch {
                    algorithm: want.algorithm,
                    expected: want.hex,
                    actual,
                    deleted: true,
                }
                .into());
            }
            std::fs::rename(&part_path, &entry).map_err(io_err("cannot write", &entry))?;
            if let Some(mut m) = marker_for(&entry, url) {
                m.algorithm = Some(want.algorithm.name().into());
                m.digest = Some(want.hex.clone());
                m.etag = done.etag;
                m.last_modified = done.last_modified;
                write_marker(&with_suffix(&entry, ".json"), &m);
            }
            self.progress.now(done.size, Some(done.size));
            return Ok(CachedImage {
                path: entry,
                source: url.to_string(),
                size: done.size,
                digest: Some(want),
                origin: Origin::Downloaded,
            });
        }
    }

    async fn unverified_http(
        &mut self,
        url: &str,
        parsed: &reqwest::Url,
        ext: &str,
    ) -> Result<CachedImage, Failure> {
        let key = &digest::hex_digest(HashAlgorithm::Sha256, url.as_bytes())[..32];
        let entry = self.cache_dir.join(format!("url-{key}{ext}"));
        let marker_path = with_suffix(&entry, ".json");
        let part_path = with_suffix(&entry, ".part");
        let part = lock_part(&part_path, self.cancel).await?;
        let client = self.client()?;
        let mut first = None;
        if let Some(m) = read_marker(&marker_path).filter(|m| marker_matches(&entry, m)) {
            let mut request = client.get(parsed.clone());
            if let Some(etag) = &m.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &m.last_modified {
                request = request.header(IF_MODIFIED_SINCE, lm);
            }
            let response = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Failure::Cancelled),
                r = request.send() => r.map_err(network_error)?,
            };
            if response.status() == StatusCode::NOT_MODIFIED
                || (response.status() == StatusCode::OK && unchanged(&m, &response))
            {
                drop_empty_part(&part_path, &part);
                self.progress.now(m.size, Some(m.size));
                return Ok(CachedImage {
                    path: entry,
                    source: url.to_string(),
                    size: m.size,
                    digest: None,
                    origin: Origin::Cached,
                });
            }
            first = Some(response);
        }
        let done = self
            .download(parsed, &part_path, &part, None, false, first)
            .await?;
        std::fs::rename(&part_path, &entry).map_err(io_err("cannot write", &entry))?;
        if let Some(mut m) = marker_for(&entry, url) {
            m.etag = done.etag;
            m.last_modified = done.last_modified;
            write_marker(&marker_path, &m);
        }
        self.progress.now(done.size, Some(done.size));
        Ok(CachedImage {
            path: entry,
            source: url.to_string(),
            size: done.size,
            digest: None,
            origin: Origin::Downloaded,
        })
    }

    /// Downloads `url` into the locked `part` file, hashing with `algorithm` as bytes arrive.
    /// With `resume`, the bytes already in the file are kept (and hashed first) and the rest
    /// asked for with `Range`. `first` is a response already received for a plain GET.
    async fn download(
        &mut self,
        url: &reqwest::Url,
        part_path: &Path,
        part: &std::fs::File,
        algorithm: Option<HashAlgorithm>,
        resume: bool,
        mut first: Option<reqwest::Response>,
    ) -> Result<Downloaded, Failure> {
        let client = self.client()?;
        let mut offset = if resume && first.is_none() {
            part.metadata()
                .map_err(io_err("cannot read", part_path))?
                .len()
        } else {
            part.set_len(0).map_err(io_err("cannot write", part_path))?;
            0
        };
        let mut hasher = algorithm.map(Hasher::new);
        let mut resumed = false;
        if offset > 0
            && let Some(h) = hasher.take()
        {
            let progress = &mut self.progress;
            hasher = Some(
                digest::continue_hash_file(part_path, h, Some(offset), self.cancel, |d| {
                    progress.tick(d, None)
                })
                .await?,
            );
        }
        let mut file = tokio::fs::File::from_std(
            part.try_clone()
                .map_err(io_err("cannot write", part_path))?,
        );
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_err("cannot write", part_path))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
        // The first response's validator, so a resume gets the same file or all of it anew.
        let mut validator: Option<String> = None;
        let mut etag = None;
        let mut last_modified = None;
        let mut retries = 0u32;
        'attempts: loop {
            if retries > 0 {
                let pause = FIRST_BACKOFF * 2u32.pow(retries - 1);
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(Failure::Cancelled),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            let mut response = match first.take() {
                Some(r) => r,
                None => {
                    let mut request = client.get(url.clone());
                    if offset > 0 {
                        request = request.header(RANGE, format!("bytes={offset}-"));
                        if let Some(v) = &validator {
                            request = request.header(IF_RANGE, v);
                        }
                    }
                    let sent = tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return Err(Failure::Cancelled),
                        r = request.send() => r,
                    };
                    match sent {
                        Ok(r) => r,
                        // A server that sent data before is worth another try.
                        Err(_) if offset > 0 && retries < MAX_RETRIES => {
                            retries += 1;
                            continue 'attempts;
                        }
                        Err(e) => return Err(network_error(e).into()),
                    }
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let total: Option<u64>;
            match status {
                StatusCode::PARTIAL_CONTENT if offset > 0 => {
                    match parse_content_range(&headers) {
                        Some((start, len)) if start == offset => {
                            total = len;
                            resumed = true;
                        }
                        _ => {
                            // Not the range asked for: start over without Range.
                            offset =
                                restart(part, part_path, &mut out, &mut hasher, algorithm).await?;
                            retries += 1;
                            if retries > MAX_RETRIES {
                                return Err(SourceError::Network(
                                    "the server answers range requests with the wrong range".into(),
                                )
                                .into());
                            }
                            continue 'attempts;
                        }
                    }
                }
                StatusCode::OK => {
                    if offset > 0 {
                        // Range not supported (or the file changed): all of it again.
                        offset = restart(part, part_path, &mut out, &mut hasher, algorithm).await?;
                        resumed = false;
                    }
                    total = response.content_length();
                }
                StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                    let complete = headers
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes */"))
                        .and_then(|n| n.trim().parse::<u64>().ok());
                    if complete == Some(offset) {
                        // The part already holds the whole file.
                        resumed = true;
                        break 'attempts;
                    }
                    offset = restart(part, part_path, &mut out, &mut hasher, algorithm).await?;
                    continue 'attempts;
                }
                s => {
                    return Err(SourceError::Status { status: s.as_u16() }.into());
                }
            }
            // A full answer describes the file from now on; a partial one only fills gaps.
            if status == StatusCode::OK || validator.is_none() {
                etag = header_string(&headers, ETAG);
                last_modified = header_string(&headers, LAST_MODIFIED);
                validator = etag
                    .clone()
                    .filter(|e| !e.starts_with("W/"))
                    .or_else(|| last_modified.clone());
            }
            if let Some(t) = total {
                self.progress.tick(offset, Some(t));
            }
            let mut progressed = false;
            loop {
                let chunk = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => {
                        let _ = out.flush().await;
                        return Err(Failure::Cancelled);
                    }
                    c = response.chunk() => c,
                };
                match chunk {
                    Ok(Some(bytes)) => {
                        out.write_all(&bytes)
                            .await
                            .map_err(io_err("cannot write", part_path))?;
                        if let Some(h) = &mut hasher {
                            h.update(&bytes);
                        }
                        offset += bytes.len() as u64;
                        progressed = true;
                        self.progress.tick(offset, total);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.flush()
                            .await
                            .map_err(io_err("cannot write", part_path))?;
                        if progressed {
                            retries = 0;
                        }
                        if retries < MAX_RETRIES {
                            retries += 1;
                            if !can_resume(algorithm, &validator) {
                                offset = restart(part, part_path, &mut out, &mut hasher, algorithm)
                                    .await?;
                            }
                            continue 'attempts;
                        }
                        return Err(match total {
                            Some(expected) => SourceError::Incomplete {
                                got: offset,
                                expected,
                            },
                            None => network_error(e),
                        }
                        .into());
                    }
                }
            }
            match total {
                Some(expected) if offset < expected => {
                    // The body ended early without an error: resume.
                    out.flush()
                        .await
                        .map_err(io_err("cannot write", part_path))?;
                    if progressed {
                        retries = 0;
                    }
                    if retries < MAX_RETRIES {
                        retries += 1;
                        if !can_resume(algorithm, &validator) {
                            offset =
                                restart(part, part_path, &mut out, &mut hasher, algorithm).await?;
                        }
                        continue 'attempts;
                    }
                    return Err(SourceError::Incomplete {
                        got: offset,
                        expected,
                    }
                    .into());
                }
                _ => break 'attempts,
            }
        }
        out.flush()
            .await
            .map_err(io_err("cannot write", part_path))?;
        drop(out);
        file.sync_all()
            .await
            .map_err(io_err("cannot write", part_path))?;
        Ok(Downloaded {
            hasher,
            size: offset,
            etag,
            last_modified,
            resumed,
        })
    }
}

/// Whether a broken download may continue where it stopped: the digest check catches an
/// inconsistent result, else the server's validator (`If-Range`) must guard the resume.
fn can_resume(algorithm: Option<HashAlgorithm>, validator: &Option<String>) -> bool {
    algorithm.is_some() || validator.is_some()
}

/// Empties the part file and the hash, for a download from the start.
async fn restart(
    part: &std::fs::File,
    part_path: &Path,
    out: &mut tokio::io::BufWriter<&mut tokio::fs::File>,
    hasher: &mut Option<Hasher>,
    algorithm: Option<HashAlgorithm>,
) -> Result<u64, Failure> {
    out.flush()
        .await
        .map_err(io_err("cannot write", part_path))?;
    part.set_len(0).map_err(io_err("cannot write", part_path))?;
    out.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(io_err("cannot write", part_path))?;
    *hasher = algorithm.map(Hasher::new);
    Ok(0)
}

/// `Content-Range: bytes <start>-<end>/<total or *>` → (start, total).
fn parse_content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn header_string(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether a `200` answer to a conditional request still describes the cached file: every
/// validator the server sends must match, and it must send at least one.
fn unchanged(marker: &Marker, response: &reqwest::Response) -> bool {
    let headers = response.headers();
    let mut compared = false;
    if let Some(etag) = header_string(headers, ETAG) {
        if marker.etag.as_deref() != Some(etag.as_str()) {
            return false;
        }
        compared = true;
    }
    if let Some(lm) = header_string(headers, LAST_MODIFIED) {
        if marker.last_modified.as_deref() != Some(lm.as_str()) {
            return false;
        }
        compared = true;
    }
    if let Some(len) = response.content_length() {
        if len != marker.size {
            return false;
        }
        compared = true;
    }
    compared
}

/// Opens (creating it) and locks the `.part` file, waiting while another kiln holds it.
async fn lock_part(path: &Path, cancel: &CancellationToken) -> Result<std::fs::File, Failure> {
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("cannot write", path))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io_err("cannot lock", path)(err).into());
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Failure::Cancelled),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        // The holder may have renamed the file into place meanwhile: then lock the new one.
        let ours = file.metadata().map_err(io_err("cannot read", path))?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => return Ok(file),
            _ => continue,
        }
    }
}

/// Removes a `.part` that this call created only to lock it.
fn drop_empty_part(path: &Path, part: &std::fs::File) {
    if part.metadata().is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_follows_xdg() {
        assert_eq!(
            cache_dir_from(Some("/x/cache".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/x/cache/kiln")
        );
        assert_eq!(
            cache_dir_from(Some("relative".into()), Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.cache/kiln")
        );
        assert_eq!(
            cache_dir_from(None, Some("/home/u".into())).unwrap(),
            PathBuf::from("/home/u/.cache/kiln")
        );
        let e = cache_dir_from(None, None).unwrap_err();
        assert!(e.to_string().contains("XDG_CACHE_HOME"), "{e}");
    }

    #[test]
    fn classifies_sources() {
        assert!(matches!(classify("https://a/b.img"), Ok(Source::Http(_))));
        assert!(matches!(classify("HTTP://a/b.img"), Ok(Source::Http(_))));
        assert!(
            matches!(classify("file:///srv/a%20b.img"), Ok(Source::Local(p)) if p == Path::new("/srv/a b.img"))
        );
        assert!(
            matches!(classify("file://rel/a.img"), Ok(Source::Local(p)) if p == Path::new("rel/a.img"))
        );
        assert!(matches!(classify("./a.img"), Ok(Source::Local(p)) if p == Path::new("./a.img")));
        assert!(
            matches!(classify("ftp://a/b"), Err(SourceError::UnsupportedScheme(s)) if s == "ftp")
        );
        assert!(matches!(
            classify("http://[bad/"),
            Err(SourceError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn file_names_and_extensions() {
        let u = reqwest::Url::parse("https://h/x/debian%2012.qcow2?x=1").unwrap();
        assert_eq!(url_file_name(&u), "debian 12.qcow2");
        assert_eq!(
            cache_extension("debian-12-genericcloud-amd64.qcow2"),
            ".qcow2"
        );
        assert_eq!(cache_extension("disk.raw.xz"), ".raw.xz");
        assert_eq!(cache_extension("noext"), "");
        assert_eq!(cache_extension("debian-12.0.0-amd64"), "");
        assert_eq!(cache_extension("x.tar.gz"), ".tar.gz");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn content_range() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(parse_content_range(&h), Some((100, Some(200))));
        h.insert(CONTENT_RANGE, "bytes 100-199/*".parse().unwrap());
        assert_eq!(parse_content_range(&h), Some((100, None)));
    }

    #[test]
    fn failures_are_listed() {
        let e = FetchError::AllFailed(vec![
            SourceFailure {
                url: "http://a/x.img".into(),
                error: SourceError::Status { status: 404 },
            },
            SourceFailure {
                url: "/b/x.img".into(),
                error: SourceError::UnsupportedScheme("ftp".into()),
            },
        ]);
        let text = e.to_string();
        assert!(text.contains("any of the 2 URLs"), "{text}");
        assert!(
            text.contains("\n  - http://a/x.img: the server answered 404 (not found)"),
            "{text}"
        );
        let one = FetchError::AllFailed(vec![SourceFailure {
            url: "http://a/x.img".into(),
            error: SourceError::Mismatch {
                algorithm: HashAlgorithm::Md5,
                expected: "aa".into(),
                actual: "bb".into(),
                deleted: true,
            },
        }]);
        let text = one.to_string();
        assert!(
            text.starts_with("cannot get the base image from http://a/x.img: checksum mismatch: expected md5 aa, got bb; the download was deleted"),
            "{text}"
        );
    }
}
