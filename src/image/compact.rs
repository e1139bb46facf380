//! Compaction of a build disk that is an overlay on a compressed base image: compress only
//! what the build changed, then merge it with the base's compressed clusters
//! ([`super::merge`]) into a standalone image, checked by `qemu-img check` before it
//! replaces the destination.
//!
//! Packer (and a plain `qemu-img convert -c`) decompresses and recompresses the whole disk at
//! the end of every build; most of it is the base image, unchanged and already compressed.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::merge::{self, MergeError, MergeStats};
use super::qcow2::{Image, Qcow2Error};
use super::qemu_img::{QemuImg, QemuImgError};

/// At most this share of a base image's allocated clusters may be uncompressed (qemu leaves
/// clusters that do not compress uncompressed); a base with more was not made with `-c`,
/// and merging would carry its uncompressed clusters into the artifact.
const MAX_UNCOMPRESSED_SHARE: f64 = 0.10;

/// Why a merge compaction did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// qemu-img failed.
    #[error(transparent)]
    QemuImg(#[from] QemuImgError),
    /// The merge failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The merged image did not pass `qemu-img check`.
    #[error("the merged image failed `qemu-img check`: {0}")]
    Check(QemuImgError),
    /// A file could not be moved.
    #[error("cannot move {from} to {to}: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A base image a build can run on as an overlay and be merged back with at the end.
#[derive(Debug)]
pub struct MergeBase {
    /// The base image file.
    pub path: PathBuf,
    /// Its cluster size, which the delta must share.
    pub cluster_size: u64,
}

/// Whether `base` suits merge compaction: a qcow2 (zlib, no backing file) whose allocated
/// clusters are (nearly) all compressed. `Err` says why not, for the log.
pub fn merge_base(base: &Path) -> Result<MergeBase, String> {
    let image = Image::open(base).map_err(|e| match e {
        Qcow2Error::Unsupported { what, .. } => what,
        other => other.to_string(),
    })?;
    if image.header.backing_file.is_some() {
        return Err("it has a backing file".into());
    }
    let (compressed, data) = image.counts();
    let allocated = compressed + data;
    if allocated == 0 || data as f64 > MAX_UNCOMPRESSED_SHARE * allocated as f64 {
        return Err(format!(
            "{} of its {allocated} allocated clusters are not compressed",
            data
        ));
    }
    Ok(MergeBase {
        path: std::path::absolute(base).map_err(|e| e.to_string())?,
        cluster_size: image.header.cluster_size(),
    })
}

/// Compacts `overlay` (whose backing file is `base.path`) into `dst`: the delta is written
/// in `scratch` and removed afterwards, the merged image goes to a temporary file beside
/// `dst`, is checked, and renamed over `dst` (which may be `overlay` itself).
/// `progress(done, total)` covers the compression of the delta, then the merge.
pub async fn compact_overlay(
    qemu_img: &QemuImg,
    overlay: &Path,
    base: &MergeBase,
    dst: &Path,
    scratch: &Path,
    mut progress: impl FnMut(&'static str, u64, u64) + Send,
    cancel: &CancellationToken,
) -> Result<MergeStats, CompactError> {
    let delta = Scratch(scratch.join(format!("delta-{}.qcow2", std::process::id())));
    qemu_img
        .convert_delta(
            overlay,
            &base.path,
            &delta.0,
            base.cluster_size,
            |done, total| progress("compressing the changes", done, total.unwrap_or(done)),
            cancel,
        )
        .await?;
    let merged = Scratch(dst.with_file_name(format!(
        ".{}.kiln-merge-{}.tmp",
        dst.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    )));
    let (base_path, delta_path, out) = (base.path.clone(), delta.0.clone(), merged.0.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel_merge = cancel.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<MergeStats, MergeError> {
        let base = Image::open(&base_path)?;
        let delta = Image::open(&delta_path)?;
        merge::merge(
            &base,
            &delta,
            &out,
            |done, total| {
                let _ = tx.send((done, total));
            },
            || cancel_merge.is_cancelled(),
        )
    });
    tokio::pin!(task);
    let stats = loop {
        tokio::select! {
            Some((done, total)) = rx.recv() => progress("merging with the base image", done, total),
            joined = &mut task => break joined,
        }
    };
    let stats = match stats {
        Ok(Ok(stats)) => stats,
        Ok(Err(MergeError::Cancelled)) => return Err(CompactError::Cancelled),
        Ok(Err(e)) => return Err(e.into()),
        Err(join) => {
            return Err(CompactError::Merge(MergeError::Write {
                path: merged.0.display().to_string(),
                source: std::io::Error::other(join.to_string()),
            }));
        }
    };
    if cancel.is_cancelled() {
        return Err(CompactError::Cancelled);
    }
    qemu_img
        .check(&merged.0, cancel)
        .await
        .map_err(CompactError::Check)?;
    std::fs::rename(&merged.0, dst).map_err(|source| CompactError::Rename {
        from: merged.0.clone(),
        to: dst.to_path_buf(),
        source,
    })?;
    merged.keep();
    Ok(stats)
}

/// A scratch file removed when dropped, unless kept.
struct Scratch(PathBuf);

impl Scratch {
    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
