//! Snapshots of a running VM for the step cache: the disk frozen as a read-only qcow2 layer
//! (an external overlay snapshot, `blockdev-snapshot-sync`) and the memory and device state
//! written by qemu's migration to a compressed file; and the way back (`-incoming`).
//!
//! The VM is paused while both are taken, so they agree: the layer holds the disk as it was
//! when the guest stopped, the state file the guest's memory at that instant (dirty page
//! cache included). Afterwards the guest continues on a fresh overlay of the frozen layer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::qmp::{Qmp, QmpError};

/// How long a migration to or from a file may take before kiln gives up.
const MIGRATION_LIMIT: Duration = Duration::from_secs(600);

/// How often the migration's status is asked.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Why a snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// qemu refused or the connection broke.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// No block device writes to the expected file.
    #[error("no drive of the VM writes to {0}")]
    NoDrive(PathBuf),
    /// The migration failed.
    #[error("qemu's migration {direction} {file} {status}: {error}")]
    Migration {
        /// "to" or "from".
        direction: &'static str,
        /// The state file.
        file: PathBuf,
        /// The migration's final status.
        status: String,
        /// qemu's error description.
        error: String,
    },
    /// qemu sent the state, but the compressor did not write it whole (a full disk, say).
    #[error(
        "the VM's state could not be written to {0}: the compressor failed (is the disk full?)"
    )]
    NotWritten(PathBuf),
    /// The migration did not end in time.
    #[error("qemu's migration {direction} {file} did not end within {limit:?}")]
    TooSlow {
        /// "to" or "from".
        direction: &'static str,
        /// The state file.
        file: PathBuf,
        /// The limit.
        limit: Duration,
    },
}

/// The compressor the state file is written with: zstd when this machine has it (about
/// eight times faster than gzip at the same size here), else gzip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// `zstd -1 -T0`.
    Zstd,
    /// `gzip -1`.
    Gzip,
}

impl Compressor {
    /// The best compressor on `PATH`.
    pub fn available() -> Compressor {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if crate::image::qemu_img::find_in_path("zstd", &path).is_some() {
            Compressor::Zstd
        } else {
            Compressor::Gzip
        }
    }

    /// The name recorded with a state file (and its extension).
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Zstd => "zstd",
            Compressor::Gzip => "gzip",
        }
    }

    /// The compressor named `name`.
    pub fn from_name(name: &str) -> Option<Compressor> {
        match name {
            "zstd" => Some(Compressor::Zstd),
            "gzip" => Some(Compressor::Gzip),
            _ => None,
        }
    }

    fn compress(self) -> &'static str {
        match self {
            Compressor::Zstd => "zstd -q -1 -T0",
            Compressor::Gzip => "gzip -1",
        }
    }

    fn decompress(self) -> &'static str {
        match self {
            Compressor::Zstd => "zstd -q -dc",
            Compressor::Gzip => "gzip -dc",
        }
    }
}

/// `path` quoted for `sh -c` (qemu's `exec:` migration runs its command with `/bin/sh`).
fn sh_quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Where the state is written before it is complete.
fn partial(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// The `exec:` URI that writes the state compressed to `file`, readable by this user only.
/// It is written to `FILE.part` and renamed only when the compressor succeeded: qemu calls a
/// migration complete once the pipe took the last byte, whatever became of it after.
pub fn outgoing_uri(file: &Path, compressor: Compressor) -> String {
    let (part, file) = (sh_quoted(&partial(file)), sh_quoted(file));
    format!(
        "exec:umask 077; if {} > {part}; then mv -f {part} {file}; else rm -f {part}; fi",
        compressor.compress(),
    )
}

/// How long the compressor may take to finish after qemu sent the last byte.
const WRITE_LIMIT: Duration = Duration::from_secs(60);

/// Waits until the compressor has written `file` whole (see [`outgoing_uri`]).
async fn await_written(file: &Path) -> Result<(), SnapshotError> {
    let started = Instant::now();
    loop {
        if file.exists() {
            return Ok(());
        }
        // The compressor failed (its partial file was removed), or never ends.
        let part_open = partial(file).symlink_metadata().is_ok() && started.elapsed() < WRITE_LIMIT;
        if !part_open {
            let _ = std::fs::remove_file(partial(file));
            return Err(SnapshotError::NotWritten(file.to_path_buf()));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The value of `-incoming` that reads the state back from `file`.
pub fn incoming_uri(file: &Path, compressor: Compressor) -> String {
    format!("exec:{} < {}", compressor.decompress(), sh_quoted(file))
}

/// The block device (its QMP name) whose active image is `file`.
async fn device_writing(qmp: &mut Qmp, file: &Path) -> Result<String, SnapshotError> {
    let blocks = qmp.execute("query-block", None).await?;
    let wanted = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| {
            b.pointer("/inserted/file")
                .and_then(Value::as_str)
                .is_some_and(|f| Path::new(f) == wanted)
        })
        .and_then(|b| b.get("device").and_then(Value::as_str))
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .ok_or(SnapshotError::NoDrive(wanted))
}

/// Waits for the migration to end; `Ok` when it completed.
async fn await_migration(
    qmp: &mut Qmp,
    direction: &'static str,
    file: &Path,
) -> Result<(), SnapshotError> {
    let started = Instant::now();
    loop {
        let info = qmp.execute("query-migrate", None).await?;
        let status = info
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match status.as_str() {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(SnapshotError::Migration {
                    direction,
                    file: file.to_path_buf(),
                    status,
                    error: info
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no description")
                        .to_string(),
                });
            }
            _ => {}
        }
        if started.elapsed() > MIGRATION_LIMIT {
            let _ = qmp.execute("migrate_cancel", None).await;
            return Err(SnapshotError::TooSlow {
                direction,
                file: file.to_path_buf(),
                limit: MIGRATION_LIMIT,
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Pauses the VM, freezes its disk `active` (the image it writes now) and continues it on a
/// new overlay `next`, writes its memory and device state to `state_file`, and lets it run
/// again. After success `active` is never written again and, with `state_file`, restores
/// the VM as it was at the pause. The VM runs again also when a step fails after the pause.
pub async fn save(
    qmp: &mut Qmp,
    active: &Path,
    next: &Path,
    state_file: &Path,
    compressor: Compressor,
) -> Result<(), SnapshotError> {
    let device = device_writing(qmp, active).await?;
    qmp.execute("stop", None).await?;
    let taken = take(qmp, &device, next, state_file, compressor).await;
    let resumed = qmp.execute("cont", None).await;
    taken?;
    resumed?;
    Ok(())
}

async fn take(
    qmp: &mut Qmp,
    device: &str,
    next: &Path,
    state_file: &Path,
    compressor: Compressor,
) -> Result<(), SnapshotError> {
    qmp.execute(
        "blockdev-snapshot-sync",
        Some(json!({
            "device": device,
            "snapshot-file": next.display().to_string(),
            "format": "qcow2",
        })),
    )
    .await?;
    // Unlimited bandwidth: the guest is paused, nothing is gained by trickling.
    let _ = qmp
        .execute(
            "migrate-set-parameters",
            Some(json!({ "max-bandwidth": 0_u64 })),
        )
        .await;
    let _ = std::fs::remove_file(state_file);
    qmp.execute(
        "migrate",
        Some(json!({ "uri": outgoing_uri(state_file, compressor) })),
    )
    .await?;
    await_migration(qmp, "to", state_file).await?;
    await_written(state_file).await
}

/// Waits until a VM started with [`incoming_uri`] has read its state from `state_file`, and
/// lets it run (the state was saved paused, so it arrives paused).
pub async fn finish_incoming(qmp: &mut Qmp, state_file: &Path) -> Result<(), SnapshotError> {
    await_migration(qmp, "from", state_file).await?;
    qmp.execute("cont", None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_is_quoted_for_the_shell_and_kept_private() {
        let uri = outgoing_uri(Path::new("/c/it's here/state"), Compressor::Zstd);
        assert_eq!(
            uri,
            r"exec:umask 077; if zstd -q -1 -T0 > '/c/it'\''s here/state.part'; then mv -f '/c/it'\''s here/state.part' '/c/it'\''s here/state'; else rm -f '/c/it'\''s here/state.part'; fi"
        );
        assert_eq!(
            incoming_uri(Path::new("/c/s"), Compressor::Gzip),
            "exec:gzip -dc < '/c/s'"
        );
    }

    #[test]
    fn compressor_names_round_trip() {
        for c in [Compressor::Zstd, Compressor::Gzip] {
            assert_eq!(Compressor::from_name(c.name()), Some(c));
        }
        assert_eq!(Compressor::from_name("xz"), None);
    }
}
