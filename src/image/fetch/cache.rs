//! The cache directory: where it is, the markers written next to complete entries, the lock
//! on `.part` files, and finding a verified entry that is already there.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CachedImage, Failure, Fetch, FetchError, Origin, VerifiedDigest, io_err};
use crate::image::digest;

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

/// A marker written next to a complete cache entry (and for local files verified in place).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Marker {
    /// Where it came from.
    url: String,
    pub(super) size: u64,
    mtime_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) last_modified: Option<String>,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(in crate::image) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub(super) fn read_marker(path: &Path) -> Option<Marker> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes a marker atomically; failure to write one only costs a re-hash next time.
pub(super) fn write_marker(path: &Path, marker: &Marker) {
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
pub(super) fn marker_matches(file: &Path, marker: &Marker) -> bool {
    std::fs::metadata(file)
        .is_ok_and(|m| m.is_file() && m.len() == marker.size && mtime_ns(&m) == marker.mtime_ns)
}

pub(super) fn marker_for(file: &Path, url: &str) -> Option<Marker> {
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

impl<P: FnMut(u64, Option<u64>)> Fetch<'_, P> {
    /// The cache entry of a verified download, if it is there and sound. With `rehash`, an
    /// entry without a (matching) marker is hashed, and deleted when it is wrong.
    pub(super) async fn verified_hit(
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
}

/// Opens (creating it) and locks the `.part` file, waiting while another kiln holds it.
pub(super) async fn lock_part(
    path: &Path,
    cancel: &CancellationToken,
) -> Result<std::fs::File, Failure> {
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
pub(super) fn drop_empty_part(path: &Path, part: &std::fs::File) {
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
}
