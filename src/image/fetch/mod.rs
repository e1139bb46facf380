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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::digest::HashFileError;
use crate::recipe::checksum::{Checksum, HashAlgorithm};

mod cache;
mod http;
mod verify;

pub use cache::default_cache_dir;
pub(super) use cache::with_suffix;

/// Progress is reported at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

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

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io { what, path, source }
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
