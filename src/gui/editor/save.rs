//! Reading a recipe for editing and writing it back atomically: a temporary file in the same
//! folder, flushed to disk, given the file's permissions, then renamed over it, so a crash or
//! a full disk leaves either the old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::recipe::units::format_bytes;

/// The largest file the editor opens (the recipe checker's own limit).
const MAX_EDIT_SIZE: u64 = 16 * 1024 * 1024;

/// Reads `path` as UTF-8 text; the error names the file and says what to do.
pub fn read(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!(
            "{} is a folder; open a .json recipe file",
            path.display()
        ));
    }
    if meta.len() > MAX_EDIT_SIZE {
        return Err(format!(
            "{} is {}; the editor opens recipes up to {}",
            path.display(),
            format_bytes(meta.len()),
            format_bytes(MAX_EDIT_SIZE)
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 text (bad byte at offset {}); kiln edits only UTF-8 JSON, so it \
             leaves this file alone",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The file a write to `path` must replace: the target of a symbolic link (so the link stays
/// a link), else `path` itself.
fn real_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// Writes `text` to `path` atomically, keeping the permissions of the file it replaces.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let target = real_target(path);
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |what: &str, e: std::io::Error| {
        format!(
            "cannot save {}: {what}: {e}; check that the folder {} exists and you may write \
             to it, or use Save as…",
            path.display(),
            dir.display()
        )
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recipe".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".kiln-save")
        .tempfile_in(dir)
        .map_err(|e| fail("creating a temporary file", e))?;
    tmp.write_all(text.as_bytes())
        .map_err(|e| fail("writing", e))?;
    if let Ok(meta) = std::fs::metadata(&target) {
        std::fs::set_permissions(tmp.path(), meta.permissions())
            .map_err(|e| fail("copying the permissions", e))?;
    } else {
        // A new file: what a plain create would give (0666 less the umask), not the
        // temporary file's private 0600.
        set_default_mode(tmp.path());
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| fail("flushing to disk", e))?;
    tmp.persist(&target)
        .map_err(|e| fail("replacing the file", e.error))?;
    // Make the rename itself durable; not fatal if the folder cannot be opened.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn set_default_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // The process's umask, read without changing it (Linux shows it in /proc).
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    let mode = 0o666 & !mask;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_default_mode(_path: &Path) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_keeping_its_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the recipe is left");
    }

    #[test]
    fn a_symlink_stays_a_link_and_its_target_changes() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, "new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn errors_name_the_file_and_what_to_do() {
        let err = write_atomic(Path::new("/nonexistent-dir/r.json"), "x").unwrap_err();
        assert!(err.contains("/nonexistent-dir/r.json"), "{err}");
        assert!(err.contains("Save as"), "{err}");
        let err = read(Path::new("/nonexistent-dir/r.json")).unwrap_err();
        assert!(err.contains("cannot read /nonexistent-dir/r.json"), "{err}");
    }
}
