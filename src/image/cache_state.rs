//! Whether a build's base image is already at hand, found without the network and without
//! hashing: the plan says "cached" or "downloaded" before the build starts. The fetch itself
//! ([`super::fetch`]) decides for good; this only reads the cache's names and markers.

use std::path::{Path, PathBuf};

use super::digest::hex_digest;
use super::fetch::{Source, cache_extension, classify, url_file_name, with_suffix};
use crate::recipe::checksum::{Checksum, HashAlgorithm};

/// Where the base image will come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImageState {
    /// A local file, used where it is (verified in place).
    Local {
        /// The file.
        path: PathBuf,
        /// Whether it is there now.
        exists: bool,
    },
    /// A complete entry of the cache (verified by its digest, or with `iso_checksum: none`
    /// revalidated with the server before use).
    Cached(PathBuf),
    /// Not in the cache: downloaded from the first URL that answers.
    Download,
    /// The digest comes from a checksum list fetched when the build starts; the image is
    /// downloaded unless the cache holds that digest.
    FromList(String),
}

impl BaseImageState {
    /// The plan's line for it.
    pub fn describe(&self) -> String {
        match self {
            Self::Local { path, exists: true } => {
                format!("base image: the local file {}", path.display())
            }
            Self::Local {
                path,
                exists: false,
            } => format!(
                "base image: the local file {} is missing — the build will stop at Download",
                path.display()
            ),
            Self::Cached(path) => format!("base image: cached ({})", path.display()),
            Self::Download => "base image: not cached, downloaded when the build starts".into(),
            Self::FromList(list) => format!(
                "base image: its digest comes from {list} when the build starts; downloaded unless the cache holds it"
            ),
        }
    }
}

/// Where the base image of `urls` (tried in order) will come from, given `cache_dir`.
pub fn base_image_state(urls: &[String], checksum: &Checksum, cache_dir: &Path) -> BaseImageState {
    let Some(first) = urls.first() else {
        return BaseImageState::Download;
    };
    if let Ok(Source::Local(path)) = classify(first) {
        let exists = path.is_file();
        return BaseImageState::Local { path, exists };
    }
    for url in urls {
        let Ok(Source::Http(parsed)) = classify(url) else {
            continue;
        };
        let ext = cache_extension(&url_file_name(&parsed));
        let entry = match checksum {
            Checksum::Digest { algorithm, hex } => {
                cache_dir.join(format!("{}-{hex}{ext}", algorithm.name()))
            }
            Checksum::None => {
                let key = &hex_digest(HashAlgorithm::Sha256, url.as_bytes())[..32];
                cache_dir.join(format!("url-{key}{ext}"))
            }
            Checksum::File { url: list, .. } => return BaseImageState::FromList(list.clone()),
        };
        if entry.is_file() && with_suffix(&entry, ".json").is_file() {
            return BaseImageState::Cached(entry);
        }
    }
    BaseImageState::Download
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_digest_a_download_a_local_file_and_a_list_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "ab".repeat(32);
        let digest = Checksum::Digest {
            algorithm: HashAlgorithm::Sha256,
            hex: hex.clone(),
        };
        let urls = vec!["https://example.org/images/debian-12.qcow2".to_string()];
        assert_eq!(
            base_image_state(&urls, &digest, dir.path()),
            BaseImageState::Download
        );
        // An entry without its marker is not complete (the fetch re-hashes it).
        let entry = dir.path().join(format!("sha256-{hex}.qcow2"));
        std::fs::write(&entry, b"image").unwrap();
        assert_eq!(
            base_image_state(&urls, &digest, dir.path()),
            BaseImageState::Download
        );
        std::fs::write(dir.path().join(format!("sha256-{hex}.qcow2.json")), b"{}").unwrap();
        assert_eq!(
            base_image_state(&urls, &digest, dir.path()),
            BaseImageState::Cached(entry.clone())
        );
        assert!(
            base_image_state(&urls, &digest, dir.path())
                .describe()
                .starts_with("base image: cached (")
        );

        let local = dir.path().join("base.qcow2");
        let local_urls = vec![format!("file://{}", local.display())];
        assert_eq!(
            base_image_state(&local_urls, &digest, dir.path()),
            BaseImageState::Local {
                path: local.clone(),
                exists: false
            }
        );

        let list = Checksum::File {
            url: "https://example.org/images/SHA512SUMS".into(),
            algorithm: None,
        };
        assert!(matches!(
            base_image_state(&urls, &list, dir.path()),
            BaseImageState::FromList(_)
        ));
    }
}
