//! Packer's `cd_files` / `cd_content` / `cd_label`: one ISO 9660 image (Rock Ridge and
//! Joliet, kiln's own writer) made from files, directories, globs and inline content.
//!
//! Packer's rules for `cd_files`, which kiln follows:
//! - a file lands in the root of the CD under its own name;
//! - a directory `a/b/dir` lands as `dir/…` with its whole tree; written with a trailing
//!   slash (`a/b/dir/`) its *contents* land in the root;
//! - a pattern with `*`, `?` or `[…]` (Go's `filepath.Match` syntax, in any component)
//!   stands for every path it matches, each handled as above;
//! - symbolic links are followed (the CD holds the target's contents);
//! - `cd_content` (path on the CD → text) wins over a `cd_files` entry of the same path;
//! - the label defaults to `packer`.
//!
//! Stricter than Packer: a pattern that matches nothing, and two `cd_files` entries that land
//! on the same path, are errors (Packer silently adds nothing, or lets the last one win).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::tree::MAX_DEPTH;
use super::{Entry, FileData, SeedError, iso9660};

/// Packer's label when `cd_label` is not set.
pub const DEFAULT_LABEL: &str = "packer";

/// Why the CD cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CdError {
    /// A `cd_files` entry names nothing.
    #[error("cd_files[{index}] `{pattern}`: {reason}")]
    Source {
        /// Position in `cd_files`.
        index: usize,
        /// The entry as written.
        pattern: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Two entries land on one path.
    #[error(
        "cd_files: `{path}` on the CD comes from both {first} and {second}; rename one or drop it"
    )]
    Clash {
        /// The path on the CD.
        path: String,
        /// Where the first came from.
        first: String,
        /// Where the second came from.
        second: String,
    },
    /// The image could not be written.
    #[error("the cd_files image: {0}")]
    Image(#[from] SeedError),
}

/// The files of the CD: path on the CD → (contents, mode, where it came from).
#[derive(Debug, Default)]
pub struct CdTree {
    files: BTreeMap<String, (FileData, u32, String)>,
}

impl CdTree {
    /// Collects `cd_files` (relative paths are taken from `base`, as Packer takes them from
    /// its working directory) and then `cd_content`.
    pub fn collect(
        cd_files: &[String],
        cd_content: &BTreeMap<String, String>,
        base: &Path,
    ) -> Result<CdTree, CdError> {
        let mut tree = CdTree::default();
        for (index, pattern) in cd_files.iter().enumerate() {
            let err = |reason: String| CdError::Source {
                index,
                pattern: pattern.clone(),
                reason,
            };
            let absolute = base.join(pattern);
            let trailing_slash = pattern.ends_with('/');
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
                tree.add_source(&source, trailing_slash, &err)?;
            }
        }
        for (path, text) in cd_content {
            let clean = path.trim_start_matches('/').to_string();
            tree.files.insert(
                clean,
                (
                    FileData::Bytes(text.as_bytes().to_vec()),
                    0o644,
                    format!("cd_content `{path}`"),
                ),
            );
        }
        Ok(tree)
    }

    fn add_source(
        &mut self,
        source: &Path,
        contents_only: bool,
        err: &dyn Fn(String) -> CdError,
    ) -> Result<(), CdError> {
        let meta =
            std::fs::metadata(source).map_err(|e| err(format!("{}: {e}", source.display())))?;
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if meta.is_file() {
            return self.add_file(name, source, meta.permissions().mode());
        }
        if !meta.is_dir() {
            return Err(err(format!(
                "{}: neither a file nor a directory",
                source.display()
            )));
        }
        let prefix = if contents_only || name.is_empty() {
            String::new()
        } else {
            format!("{name}/")
        };
        self.add_dir(source, &prefix, 0, err)
    }

    fn add_dir(
        &mut self,
        dir: &Path,
        prefix: &str,
        depth: usize,
        err: &dyn Fn(String) -> CdError,
    ) -> Result<(), CdError> {
        if depth >= MAX_DEPTH {
            return Err(err(format!(
                "{}: nested deeper than ISO 9660 allows (8 levels); is there a symbolic link loop?",
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
                self.add_dir(&path, &format!("{prefix}{name}/"), depth + 1, err)?;
            } else if meta.is_file() {
                self.add_file(format!("{prefix}{name}"), &path, meta.permissions().mode())?;
            }
        }
        Ok(())
    }

    fn add_file(&mut self, cd_path: String, source: &Path, mode: u32) -> Result<(), CdError> {
        let from = source.display().to_string();
        if let Some((_, _, first)) = self.files.get(&cd_path) {
            return Err(CdError::Clash {
                path: cd_path,
                first: first.clone(),
                second: from,
            });
        }
        self.files.insert(
            cd_path,
            (FileData::Path(source.to_path_buf()), mode & 0o777, from),
        );
        Ok(())
    }

    /// True when there is nothing to put on a CD.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The paths on the CD, sorted.
    pub fn paths(&self) -> Vec<&str> {
        self.files.keys().map(String::as_str).collect()
    }

    /// Writes the image labelled `label` to `path` (atomically: a temporary file renamed
    /// into place, removed on failure); returns its size in bytes.
    pub fn write(&self, label: &str, path: &Path) -> Result<u64, CdError> {
        let entries: Vec<Entry> = self
            .files
            .iter()
            .map(|(p, (data, mode, _))| Entry {
                path: p.clone(),
                data: data.clone(),
                mode: *mode,
            })
            .collect();
        let options = iso9660::IsoOptions {
            volume_id: label.to_string(),
            ..iso9660::IsoOptions::default()
        };
        Ok(super::write_atomically(path, |out| {
            iso9660::write(out, &options, &entries)
        })?)
    }
}

/// Whether `pattern` uses glob syntax.
pub(crate) fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Every existing path matching `pattern` (glob syntax in any component), sorted.
pub(crate) fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if !has_meta(&part) {
            found = found.into_iter().map(|p| p.join(&*part)).collect();
            continue;
        }
        let mut next = Vec::new();
        for dir in found {
            let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &dir
            }) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if glob_match(&part, &name)? {
                    next.push(dir.join(name));
                }
            }
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found.sort();
    Ok(found)
}

/// Go's `filepath.Match` for one component: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\` escapes.
fn glob_match(pattern: &str, name: &str) -> Result<bool, String> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> Result<bool, String> {
    let Some((&first, rest)) = p.split_first() else {
        return Ok(n.is_empty());
    };
    match first {
        '*' => {
            for skip in 0..=n.len() {
                if match_from(rest, &n[skip..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        '?' => Ok(!n.is_empty() && match_from(rest, &n[1..])?),
        '[' => {
            let close = rest
                .iter()
                .position(|&c| c == ']')
                .filter(|&i| i > 0 || rest.get(1) == Some(&']'))
                .ok_or_else(|| "unclosed `[` in the pattern".to_string())?;
            let class = &rest[..close];
            let (negate, class) = match class.first() {
                Some('^') => (true, &class[1..]),
                _ => (false, class),
            };
            let Some(&c) = n.first() else {
                return Ok(false);
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            Ok(hit != negate && match_from(&rest[close + 1..], &n[1..])?)
        }
        '\\' => match rest.split_first() {
            Some((&lit, rest)) => Ok(n.first() == Some(&lit) && match_from(rest, &n[1..])?),
            None => Err("the pattern ends with `\\`".into()),
        },
        c => Ok(n.first() == Some(&c) && match_from(rest, &n[1..])?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_go_filepath_match() {
        let m = |p: &str, n: &str| glob_match(p, n).unwrap();
        assert!(m("*.cfg", "a.cfg"));
        assert!(!m("*.cfg", "a.cfgx"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("*", ""));
        assert!(glob_match("[ab", "a").is_err());
    }

    #[test]
    fn packer_directory_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("seed/sub")).unwrap();
        std::fs::write(d.join("seed/user-data"), "u").unwrap();
        std::fs::write(d.join("seed/sub/x.sh"), "x").unwrap();
        std::fs::write(d.join("one.txt"), "1").unwrap();
        std::fs::write(d.join("two.cfg"), "2").unwrap();
        std::fs::write(d.join("three.cfg"), "3").unwrap();
        let none = BTreeMap::new();
        let t = CdTree::collect(&["seed".into(), "one.txt".into()], &none, d).unwrap();
        assert_eq!(t.paths(), ["one.txt", "seed/sub/x.sh", "seed/user-data"]);
        let t = CdTree::collect(&["seed/".into()], &none, d).unwrap();
        assert_eq!(t.paths(), ["sub/x.sh", "user-data"]);
        let t = CdTree::collect(&["*.cfg".into()], &none, d).unwrap();
        assert_eq!(t.paths(), ["three.cfg", "two.cfg"]);
        let content = BTreeMap::from([("/user-data".to_string(), "over".to_string())]);
        let t = CdTree::collect(&["seed/".into()], &content, d).unwrap();
        assert_eq!(t.files["user-data"].0, FileData::Bytes(b"over".to_vec()));
        let e = CdTree::collect(&["*.nope".into()], &none, d).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cd_files[0] `*.nope`: matches nothing"),
            "{e}"
        );
        let e = CdTree::collect(&["missing".into()], &none, d).unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
        let e = CdTree::collect(&["seed/".into(), "seed/user-data".into()], &none, d).unwrap_err();
        assert!(
            e.to_string()
                .contains("`user-data` on the CD comes from both"),
            "{e}"
        );
    }
}
