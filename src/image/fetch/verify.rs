//! What an image must hash to (a digest, or a line of a checksum list), and local files,
//! verified in place.

use std::path::Path;

use super::cache::{marker_for, marker_matches, read_marker, write_marker};
use super::http::network_error;
use super::{
    CachedImage, Failure, Fetch, Origin, Source, SourceError, VerifiedDigest, classify, io_err,
};
use crate::image::{digest, sums};
use crate::recipe::checksum::{Checksum, HashAlgorithm};

/// Checksum lists larger than this are not lists.
const MAX_LIST_BYTES: usize = 16 << 20;

impl<P: FnMut(u64, Option<u64>)> Fetch<'_, P> {
    /// The digest `file_name` must have, or `None` for `iso_checksum: none`.
    pub(super) async fn expected(
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
    pub(super) async fn local(
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
}
