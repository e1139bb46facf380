//! The directory tree of an image, built from `/`-separated paths, shared by both writers.

use super::{Entry, SeedError};

/// The most path components: ISO 9660 allows 8 directory levels counting the root, so 7
/// directories below it and a file.
pub(crate) const MAX_DEPTH: usize = 8;

/// A directory: its name (empty for the root), subdirectories and files, each sorted by name.
#[derive(Debug, Default)]
pub(crate) struct Dir {
    pub name: String,
    pub dirs: Vec<Dir>,
    pub files: Vec<FileNode>,
}

/// A file: its name, the index of its [`Entry`] and its size.
#[derive(Debug)]
pub(crate) struct FileNode {
    pub name: String,
    pub entry: usize,
    pub size: u64,
}

/// Splits and checks `path`: no empty, `.` or `..` components, no NUL, at most 255 bytes a
/// name, at most [`MAX_DEPTH`] components. A leading `/` is allowed.
pub(crate) fn components(path: &str) -> Result<Vec<&str>, SeedError> {
    let bad = |reason: &str| SeedError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(bad("empty path; name a file such as `user-data`"));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err(bad("empty path component (`//` or a trailing `/`)")),
            "." | ".." => return Err(bad("`.` and `..` are not allowed in image paths")),
            p if p.contains('\0') => return Err(bad("NUL byte in the name")),
            p if p.len() > 255 => return Err(bad("a name is longer than 255 bytes")),
            _ => {}
        }
    }
    if parts.len() > MAX_DEPTH {
        return Err(bad(
            "nested more than 7 directories deep (ISO 9660's limit)",
        ));
    }
    Ok(parts)
}

/// Builds the tree of `entries` whose sizes are `sizes`.
pub(crate) fn build(entries: &[Entry], sizes: &[u64]) -> Result<Dir, SeedError> {
    let mut root = Dir::default();
    for (index, entry) in entries.iter().enumerate() {
        let parts = components(&entry.path)?;
        let (file, dirs) = parts.split_last().expect("at least one component");
        let mut dir = &mut root;
        for (depth, part) in dirs.iter().enumerate() {
            if dir.files.iter().any(|f| f.name == *part) {
                return Err(SeedError::Duplicate {
                    path: parts[..=depth].join("/"),
                });
            }
            let pos = match dir.dirs.iter().position(|d| d.name == *part) {
                Some(pos) => pos,
                None => {
                    dir.dirs.push(Dir {
                        name: part.to_string(),
                        ..Dir::default()
                    });
                    dir.dirs.len() - 1
                }
            };
            dir = &mut dir.dirs[pos];
        }
        if dir.files.iter().any(|f| f.name == *file) || dir.dirs.iter().any(|d| d.name == *file) {
            return Err(SeedError::Duplicate {
                path: parts.join("/"),
            });
        }
        dir.files.push(FileNode {
            name: file.to_string(),
            entry: index,
            size: sizes[index],
        });
    }
    sort(&mut root);
    Ok(root)
}

fn sort(dir: &mut Dir) {
    dir.dirs.sort_by(|a, b| a.name.cmp(&b.name));
    dir.files.sort_by(|a, b| a.name.cmp(&b.name));
    for d in &mut dir.dirs {
        sort(d);
    }
}

/// The sizes of `entries` (stats files on disk).
pub(crate) fn sizes(entries: &[Entry]) -> Result<Vec<u64>, SeedError> {
    entries.iter().map(|e| e.data.len()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert_eq!(components("/a/b").unwrap(), ["a", "b"]);
        for bad in ["", "/", "a//b", "a/", "./a", "a/../b", "a/b/c/d/e/f/g/h/i"] {
            assert!(components(bad).is_err(), "{bad}");
        }
        assert!(components("a/b/c/d/e/f/g/h").is_ok());
    }

    #[test]
    fn duplicates_and_file_directory_clashes_are_refused() {
        let e = |p: &str| Entry::new(p, "x");
        let dup = build(&[e("a"), e("a")], &[1, 1]).unwrap_err();
        assert!(matches!(dup, SeedError::Duplicate { ref path } if path == "a"));
        assert!(build(&[e("a"), e("a/b")], &[1, 1]).is_err());
        assert!(build(&[e("a/b"), e("a")], &[1, 1]).is_err());
        let ok = build(&[e("z"), e("d/y"), e("d/x"), e("b")], &[1, 2, 3, 4]).unwrap();
        let names: Vec<_> = ok.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b", "z"]);
        let sub: Vec<_> = ok.dirs[0]
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.size))
            .collect();
        assert_eq!(sub, [("x", 3), ("y", 2)]);
    }
}
