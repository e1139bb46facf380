//! Where things are in the HCL files: byte offsets turned into `line:col`, and the synthetic
//! positions of the JSON-shaped document the shared decoder reads, mapped back to the HCL
//! file, position and block path (`source.qemu.debian.disk_size`) of what they came from.
//!
//! Every member and value of the lowered document carries a [`Pos`] whose `line` is the
//! index of a [`Spot`] (the column is ignored); the diagnostics the decoder reports at such
//! a position are rewritten with the spot's real place.

use std::ops::Range;

use crate::recipe::diag::{Diagnostic, Diagnostics};
use crate::recipe::json::Pos;

/// One HCL file read for the recipe.
struct File {
    display: String,
    text: String,
    /// Byte offsets where each line starts.
    line_starts: Vec<usize>,
}

/// A real place in an HCL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spot {
    /// Index of the file in the map.
    pub file: usize,
    /// 1-based line and column (characters), when known.
    pub pos: Option<Pos>,
    /// The HCL block path (`source.qemu.debian.disk_size`).
    pub path: String,
}

/// The files of one recipe and the spots of its lowered document.
#[derive(Default)]
pub(crate) struct SourceMap {
    files: Vec<File>,
    spots: Vec<Spot>,
}

impl SourceMap {
    /// Adds a file; returns its index.
    pub fn add_file(&mut self, display: &str, text: &str) -> usize {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        self.files.push(File {
            display: display.to_string(),
            text: text.to_string(),
            line_starts,
        });
        self.files.len() - 1
    }

    /// The name of file `file` as the user gave it.
    pub fn display(&self, file: usize) -> &str {
        self.files.get(file).map_or("", |f| f.display.as_str())
    }

    /// `line:col` of byte `offset` in file `file` (columns count characters).
    pub fn locate(&self, file: usize, offset: usize) -> Option<Pos> {
        let f = self.files.get(file)?;
        let offset = offset.min(f.text.len());
        let line = f.line_starts.partition_point(|&s| s <= offset).max(1) - 1;
        let start = f.line_starts[line];
        let col = f.text.get(start..offset)?.chars().count() + 1;
        Some(Pos {
            line: u32::try_from(line + 1).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        })
    }

    /// `line:col` of the start of `span` in file `file`.
    pub fn start(&self, file: usize, span: Option<Range<usize>>) -> Option<Pos> {
        span.and_then(|s| self.locate(file, s.start))
    }

    /// Records a spot and returns the synthetic position that stands for it.
    pub fn spot(&mut self, file: usize, span: Option<Range<usize>>, path: &str) -> Pos {
        let pos = self.start(file, span);
        self.spots.push(Spot {
            file,
            pos,
            path: path.to_string(),
        });
        Pos {
            line: u32::try_from(self.spots.len()).unwrap_or(u32::MAX),
            col: 1,
        }
    }

    /// The spot a synthetic position stands for.
    pub fn lookup(&self, pos: Pos) -> Option<&Spot> {
        let i = usize::try_from(pos.line).ok()?.checked_sub(1)?;
        self.spots.get(i)
    }

    /// Rewrites the decoder's diagnostics about the lowered document (named `document`) with
    /// the real file, position and block path. `prefixes` maps the document's key paths
    /// (`builders[0]`) to HCL block paths (`source.qemu.debian`); the longest match wins.
    pub fn remap(
        &self,
        diags: &Diagnostics,
        document: &str,
        prefixes: &[(String, String)],
    ) -> Diagnostics {
        let mut out = Diagnostics::new();
        for d in diags.iter() {
            let mut d: Diagnostic = d.clone();
            if d.file == document {
                let spot = d.line.and_then(|line| self.lookup(Pos { line, col: 1 }));
                match spot {
                    Some(spot) => {
                        d.file = self.display(spot.file).to_string();
                        d.line = spot.pos.map(|p| p.line);
                        d.col = spot.pos.map(|p| p.col);
                    }
                    None => {
                        d.file = self.display(0).to_string();
                        d.line = None;
                        d.col = None;
                    }
                }
                d.path = rename_path(&d.path, prefixes);
                // The JSON reader's hints, in HCL words.
                d.message = d.message.replace("{{template_dir}}", "${path.root}");
            }
            out.push(d);
        }
        out
    }
}

/// `path` with its longest prefix found in `prefixes` replaced.
pub(crate) fn rename_path(path: &str, prefixes: &[(String, String)]) -> String {
    let best = prefixes
        .iter()
        .filter(|(from, _)| {
            path.strip_prefix(from.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
        .max_by_key(|(from, _)| from.len());
    match best {
        Some((from, to)) => format!("{to}{}", &path[from.len()..]),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_character_columns() {
        let mut map = SourceMap::default();
        let f = map.add_file("a.pkr.hcl", "ab\nçd = 1\n");
        assert_eq!(map.locate(f, 0), Some(Pos { line: 1, col: 1 }));
        assert_eq!(map.locate(f, 3), Some(Pos { line: 2, col: 1 }));
        // `ç` is two bytes, one column.
        assert_eq!(map.locate(f, 5), Some(Pos { line: 2, col: 2 }));
        assert_eq!(map.locate(f, 999), Some(Pos { line: 3, col: 1 }));
    }

    #[test]
    fn synthetic_positions_map_back_with_paths() {
        let mut map = SourceMap::default();
        let f = map.add_file("x.pkr.hcl", "source \"qemu\" \"d\" {\n  disk_size = 1\n}\n");
        let pos = map.spot(f, Some(22..31), "source.qemu.d.disk_size");
        let mut diags = Diagnostics::new();
        diags.error(
            "doc",
            Some(Pos { col: 7, ..pos }),
            "builders[0].disk_size",
            "bad",
        );
        diags.error("other.json", None, "x", "kept");
        let prefixes = vec![("builders[0]".to_string(), "source.qemu.d".to_string())];
        let out = map.remap(&diags, "doc", &prefixes);
        let texts: Vec<String> = out.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            texts,
            [
                "x.pkr.hcl:2:3: source.qemu.d.disk_size: bad",
                "other.json: x: kept"
            ]
        );
    }

    #[test]
    fn renames_only_on_a_path_boundary() {
        let p = vec![
            ("builders[1]".to_string(), "source.qemu.a".to_string()),
            ("builders[10]".to_string(), "source.qemu.b".to_string()),
        ];
        assert_eq!(rename_path("builders[10].x", &p), "source.qemu.b.x");
        assert_eq!(rename_path("builders[1][0]", &p), "source.qemu.a[0]");
        assert_eq!(rename_path("builders[100]", &p), "builders[100]");
    }
}
