//! Packer's `floppy_files` / `floppy_dirs` / `floppy_content` / `floppy_label`: a 1.44 MB
//! FAT12 floppy (kiln's own FAT writer), attached with `-fda` as Packer does. Installers read
//! their answer files from it (preseed, kickstart, `Autounattend.xml`), and a floppy labelled
//! `cidata` is a cloud-init NoCloud seed.
//!
//! Packer's rules, which kiln follows:
//! - `floppy_files`: a file lands in the root under its own name; a directory adds every file
//!   under it, each in the root under its own name (no subdirectories); patterns with `*`,
//!   `?`, `[…]` stand for every path they match;
//! - `floppy_dirs`: a directory `a/dir` lands as `dir/…` with its whole tree (with a trailing
//!   slash, its contents land in the root); patterns as above;
//! - `floppy_content` (path on the floppy → text) wins over a file of the same path;
//! - the label defaults to `packer`.
//!
//! Stricter than Packer: a pattern that matches nothing and two entries that land on the same
//! path are errors, and so is content that does not fit on the floppy.

use std::collections::BTreeMap;
use std::path::Path;

use super::cdrom::{glob, has_meta};
use super::tree::MAX_DEPTH;
use super::{Entry, FileData, SeedError, fat};

/// Packer's label when `floppy_label` is not set.
pub const DEFAULT_LABEL: &str = "packer";

/// Why the floppy cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum FloppyError {
    /// An entry names nothing usable.
    #[error("{option}[{index}] `{pattern}`: {reason}")]
    Source {
        /// `floppy_files` or `floppy_dirs`.
        option: &'static str,
        /// Position in the list.
        index: usize,
        /// The entry as written.
        pattern: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Two entries land on one path.
    #[error(
        "`{path}` on the floppy comes from both {first} and {second} (floppy_files puts every file in the root); rename one or drop it"
    )]
    Clash {
        /// The path on the floppy.
        path: String,
        /// Where the first came from.
        first: String,
        /// Where the second came from.
        second: String,
    },
    /// The image could not be written (or the files do not fit).
    #[error("the floppy image: {0}")]
    Image(#[from] SeedError),
}

/// The files of the floppy: path on it → (contents, where it came from).
#[derive(Debug, Default)]
pub struct FloppyTree {
    files: BTreeMap<String, (FileData, String)>,
}

impl FloppyTree {
    /// Collects `floppy_files`, `floppy_dirs` (relative paths are taken from `base`, as
    /// Packer takes them from its working directory) and then `floppy_content`.
    pub fn collect(
        floppy_files: &[String],
        floppy_dirs: &[String],
        floppy_content: &BTreeMap<String, String>,
        base: &Path,
    ) -> Result<FloppyTree, FloppyError> {
        let mut tree = FloppyTree::default();
        for (option, list, flatten) in [
            ("floppy_files", floppy_files, true),
            ("floppy_dirs", floppy_dirs, false),
        ] {
            for (index, pattern) in list.iter().enumerate() {
                let err = |reason: String| FloppyError::Source {
                    option,
                    index,
                    pattern: pattern.clone(),
                    reason,
                };
                let absolute = base.join(pattern);
                let sources = if has_meta(pattern) {
                    let found = glob(&absolute).map_err(err)?;
                    if found.is_empty() {
                        return Err(err(
                            "matches nothing; check the path (relative paths start in the directory kiln runs in)".into(),
                        ));
                    }
                    found
                } else {
                    vec![absolute]
                };
                for source in sources {
                    let meta = std::fs::metadata(&source)
                        .map_err(|e| err(format!("{}: {e}", source.display())))?;
                    let name = source
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if meta.is_file() {
                        tree.add_file(name, &source)?;
                    } else if meta.is_dir() {
                        let prefix = if flatten || pattern.ends_with('/') || name.is_empty() {
                            String::new()
                        } else {
                            format!("{name}/")
                        };
                        tree.add_dir(&source, &prefix, flatten, 0, &err)?;
                    } else {
                        return Err(err(format!(
                            "{}: neither a file nor a directory",
                            source.display()
                        )));
                    }
                }
            }
        }
        for (path, text) in floppy_content {
            tree.files.insert(
                path.trim_start_matches('/').to_string(),
                (
                    FileData::Bytes(text.as_bytes().to_vec()),
                    format!("floppy_content `{path}`"),
                ),
            );
        }
        Ok(tree)
    }

    fn add_dir(
        &mut self,
        dir: &Path,
        prefix: &str,
        flatten: bool,
        depth: usize,
        err: &dyn Fn(String) -> FloppyError,
    ) -> Result<(), FloppyError> {
        if depth >= MAX_DEPTH {
            return Err(err(format!(
                "{}: nested too deep; is there a symbolic link loop?",
                dir.display()
            )));
        }
        let mut children: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| err(format!("{}: {e}", dir.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("{}: {e}", dir.display())))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let path = child.path();
            let name = child.file_name().to_string_lossy().into_owned();
            let meta =
                std::fs::metadata(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            if meta.is_dir() {
                let inner = if flatten {
                    String::new()
                } else {
                    format!("{prefix}{name}/")
                };
                self.add_dir(&path, &inner, flatten, depth + 1, err)?;
            } else if meta.is_file() {
                self.add_file(format!("{prefix}{name}"), &path)?;
            }
        }
        Ok(())
    }

    fn add_file(&mut self, floppy_path: String, source: &Path) -> Result<(), FloppyError> {
        let from = source.display().to_string();
        if let Some((_, first)) = self.files.get(&floppy_path) {
            return Err(FloppyError::Clash {
                path: floppy_path,
                first: first.clone(),
                second: from,
            });
        }
        self.files
            .insert(floppy_path, (FileData::Path(source.to_path_buf()), from));
        Ok(())
    }

    /// True when there is nothing to put on a floppy.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The paths on the floppy, sorted.
    pub fn paths(&self) -> Vec<&str> {
        self.files.keys().map(String::as_str).collect()
    }

    /// Writes the 1.44 MB image labelled `label` to `path` (atomically: a temporary file
    /// renamed into place, removed on failure); returns its size in bytes.
    pub fn write(&self, label: &str, path: &Path) -> Result<u64, FloppyError> {
        let entries: Vec<Entry> = self
            .files
            .iter()
            .map(|(p, (data, _))| Entry::new(p.clone(), data.clone()))
            .collect();
        let options = fat::FatOptions {
            label: label.to_string(),
            serial: None,
            timestamp: chrono::Utc::now().timestamp(),
            floppy: true,
        };
        Ok(super::write_atomically(path, |out| {
            fat::write(out, &options, &entries)
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_in(dir: &Path, files: &[&str], dirs: &[&str]) -> Result<FloppyTree, FloppyError> {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FloppyTree::collect(&list(files), &list(dirs), &BTreeMap::new(), dir)
    }

    #[test]
    fn files_land_in_the_root_and_dirs_keep_their_tree() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("answers/sub")).unwrap();
        std::fs::write(d.join("preseed.cfg"), "d-i x").unwrap();
        std::fs::write(d.join("answers/ks.cfg"), "ks").unwrap();
        std::fs::write(d.join("answers/sub/deep.txt"), "deep").unwrap();
        std::fs::create_dir_all(d.join("scripts")).unwrap();
        std::fs::write(d.join("scripts/a.ps1"), "a").unwrap();
        std::fs::write(d.join("scripts/b.ps1"), "b").unwrap();

        let flat = tree_in(d, &["preseed.cfg", "answers", "scripts/*.ps1"], &[]).unwrap();
        assert_eq!(
            flat.paths(),
            ["a.ps1", "b.ps1", "deep.txt", "ks.cfg", "preseed.cfg"]
        );
        let kept = tree_in(d, &[], &["answers", "scripts/"]).unwrap();
        assert_eq!(
            kept.paths(),
            ["a.ps1", "answers/ks.cfg", "answers/sub/deep.txt", "b.ps1"]
        );
    }

    #[test]
    fn clashes_and_empty_patterns_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("x")).unwrap();
        std::fs::write(d.join("x/ks.cfg"), "1").unwrap();
        std::fs::write(d.join("ks.cfg"), "2").unwrap();
        let clash = tree_in(d, &["ks.cfg", "x"], &[]).unwrap_err();
        assert!(
            clash
                .to_string()
                .contains("`ks.cfg` on the floppy comes from both"),
            "{clash}"
        );
        let none = tree_in(d, &["*.iso"], &[]).unwrap_err();
        assert!(
            none.to_string()
                .starts_with("floppy_files[0] `*.iso`: matches nothing"),
            "{none}"
        );
    }

    #[test]
    fn the_image_is_a_144_mb_floppy_and_too_much_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("user-data"), "#cloud-config\n").unwrap();
        let tree = tree_in(d, &["user-data"], &[]).unwrap();
        let image = d.join("floppy.img");
        assert_eq!(tree.write("cidata", &image).unwrap(), 1_474_560);
        let bytes = std::fs::read(&image).unwrap();
        assert_eq!(bytes.len(), 1_474_560);
        assert_eq!(bytes[21], 0xF0, "media descriptor of a 1.44 MB floppy");
        assert_eq!(u16::from_le_bytes([bytes[17], bytes[18]]), 224);
        assert_eq!(u16::from_le_bytes([bytes[24], bytes[25]]), 18);
        assert_eq!(&bytes[43..54], b"CIDATA     ");

        std::fs::write(d.join("big.bin"), vec![7u8; 1_500_000]).unwrap();
        let big = tree_in(d, &["big.bin"], &[]).unwrap();
        let err = big.write("packer", &d.join("big.img")).unwrap_err();
        assert!(err.to_string().contains("a 1.44 MB floppy"), "{err}");
        assert!(!d.join("big.img").exists(), "nothing half-written is left");
    }
}
