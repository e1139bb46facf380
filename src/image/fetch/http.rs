//! Downloads over HTTP(S) into the cache: verified and unverified entries, conditional
//! requests, and resuming a broken download with `Range`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED,
    RANGE,
};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::cache::{
    Marker, drop_empty_part, lock_part, marker_for, marker_matches, read_marker, with_suffix,
    write_marker,
};
use super::{CachedImage, Failure, Fetch, Origin, SourceError, VerifiedDigest, io_err};
use crate::image::digest::{self, Hasher};
use crate::recipe::checksum::HashAlgorithm;

/// Resume attempts in a row that bring no new data before a URL is given up.
const MAX_RETRIES: u32 = 3;

/// The first pause before a resume; doubled on each attempt without new data.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a download may stall before it counts as broken (and is resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn network_error(e: reqwest::Error) -> SourceError {
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

impl<P: FnMut(u64, Option<u64>)> Fetch<'_, P> {
    pub(super) fn client(&mut self) -> Result<reqwest::Client, SourceError> {
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

    pub(super) async fn verified_http(
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

    pub(super) async fn unverified_http(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(parse_content_range(&h), Some((100, Some(200))));
        h.insert(CONTENT_RANGE, "bytes 100-199/*".parse().unwrap());
        assert_eq!(parse_content_range(&h), Some((100, None)));
    }
}
