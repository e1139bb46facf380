//! Which files make an HCL2 recipe (one `.pkr.hcl` file, or every `*.pkr.hcl` of a
//! directory in name order, as Packer loads them, plus its `*.auto.pkrvars.hcl`), and
//! parsing them with hcl-edit so that every block and attribute keeps its source span.

use std::path::{Path, PathBuf};

use ::hcl::edit::structure::Body;

use super::sourcemap::SourceMap;
use crate::recipe::diag::Diagnostics;

/// Whether `path` names an HCL2 recipe: a `.pkr.hcl` file or a directory (not one named
/// `*.json`, which the JSON reader reports as a directory).
pub fn is_hcl(path: &Path) -> bool {
    let name = path.to_str().unwrap_or_default();
    name.ends_with(".pkr.hcl") || (path.is_dir() && !name.ends_with(".json"))
}

/// One parsed file.
pub(crate) struct Parsed {
    /// Its index in the source map.
    pub file: usize,
    /// Its body.
    pub body: Body,
}

/// The files of the recipe at `path`: the templates and the automatic var-files.
pub(crate) fn recipe_files(
    path: &Path,
    diags: &mut Diagnostics,
) -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
    let display = path.display().to_string();
    if !path.is_dir() {
        return Some((vec![path.to_path_buf()], Vec::new()));
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            diags.error(
                &display,
                None,
                "",
                format!("cannot read the directory: {e}"),
            );
            return None;
        }
    };
    let mut templates = Vec::new();
    let mut auto = Vec::new();
    let mut json = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".auto.pkrvars.hcl") {
            auto.push(p.clone());
        } else if name.ends_with(".pkr.hcl") {
            templates.push(p.clone());
        } else if name.ends_with(".pkr.json") {
            json.push(name.to_string());
        }
    }
    templates.sort();
    auto.sort();
    json.sort();
    if !json.is_empty() {
        diags.warning(
            &display,
            None,
            "",
            format!(
                "{} not read: kiln reads HCL2 templates in native syntax (*.pkr.hcl) only",
                json.join(", ")
            ),
        );
    }
    if templates.is_empty() {
        diags.error(
            &display,
            None,
            "",
            "this directory has no *.pkr.hcl file: give a directory of Packer HCL2 templates, a .pkr.hcl file or a .json recipe",
        );
        return None;
    }
    Some((templates, auto))
}

/// Parses `text` (file `file` of `map`).
pub(crate) fn parse_text(
    file: usize,
    text: &str,
    map: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<Body> {
    match ::hcl::edit::parser::parse_body(text) {
        Ok(body) => Some(body),
        Err(e) => {
            let message = e.message().lines().next().unwrap_or("").trim();
            diags.error(
                map.display(file),
                map.locate(file, e.location().offset()),
                "",
                format!("this is not valid HCL: {message}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_place() {
        let mut map = SourceMap::default();
        let text = "source \"qemu\" \"x\" {\n  disk_size = \n}\n";
        let f = map.add_file("t.pkr.hcl", text);
        let mut diags = Diagnostics::new();
        assert!(parse_text(f, text, &map, &mut diags).is_none());
        let d = diags.iter().next().unwrap();
        assert_eq!(d.file, "t.pkr.hcl");
        assert_eq!(d.line, Some(2));
        assert!(d.message.starts_with("this is not valid HCL"), "{d}");
    }

    #[test]
    fn a_directory_is_read_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.pkr.hcl", "a.pkr.hcl", "x.auto.pkrvars.hcl", "c.pkr.json"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let mut diags = Diagnostics::new();
        let (templates, auto) = recipe_files(dir.path(), &mut diags).unwrap();
        let names: Vec<_> = templates
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.pkr.hcl", "b.pkr.hcl"]);
        assert_eq!(auto.len(), 1);
        assert_eq!(diags.warnings().count(), 1);

        let empty = tempfile::tempdir().unwrap();
        assert!(recipe_files(empty.path(), &mut diags).is_none());
        assert!(diags.has_errors());
    }
}
