//! Recipe files the window creates or receives: a new recipe copied from the default, and
//! files dropped on the window.

use std::path::{Path, PathBuf};

/// Copies the default recipe `default` to `dest` and, into `dest`'s folder, the bundled
/// `scripts/` it refers to through `{{template_dir}}` (only those not there already: nothing
/// is overwritten). Refuses to replace an existing `dest`.
pub fn new_from_default(default: &Path, dest: &Path) -> Result<(), String> {
    if dest.exists() {
        return Err(format!(
            "{} already exists; choose another name (kiln does not overwrite a recipe with the default)",
            dest.display()
        ));
    }
    let text = std::fs::read_to_string(default).map_err(|e| {
        format!(
            "cannot read the default recipe {}: {e}; set KILN_RECIPES_DIR to kiln's recipes folder",
            default.display()
        )
    })?;
    let dest_dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Some(src_dir) = default.parent()
        && text.contains("{{template_dir}}/scripts/")
    {
        copy_missing_scripts(&src_dir.join("scripts"), &dest_dir.join("scripts"))?;
    }
    super::editor::save::write_atomic(dest, &text)
}

fn copy_missing_scripts(from: &Path, to: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    let fail = |what: &Path, e: std::io::Error| {
        format!(
            "cannot copy the default recipe's script to {}: {e}; check that you may write there",
            what.display()
        )
    };
    for entry in entries.flatten() {
        let src = entry.path();
        if !src.is_file() {
            continue;
        }
        std::fs::create_dir_all(to).map_err(|e| fail(to, e))?;
        let dst = to.join(entry.file_name());
        if !dst.exists() {
            std::fs::copy(&src, &dst).map_err(|e| fail(&dst, e))?;
        }
    }
    Ok(())
}

/// The recipe to open among files dropped on the window: the first `.json` one. `Err` names
/// what was dropped when none is a recipe; `None` when nothing was dropped.
pub fn dropped_recipe(paths: &[PathBuf]) -> Option<Result<PathBuf, String>> {
    if paths.is_empty() {
        return None;
    }
    if let Some(json) = paths.iter().find(|p| {
        p.extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("json"))
    }) {
        return Some(Ok(json.clone()));
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Some(Err(format!(
        "kiln opens .json recipes; {} is not one",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_from_default_copies_the_recipe_and_its_scripts_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let bundled = dir.path().join("bundled");
        std::fs::create_dir_all(bundled.join("scripts")).unwrap();
        let recipe = "{\"x\": \"{{template_dir}}/scripts/a.sh\"}";
        std::fs::write(bundled.join("default.json"), recipe).unwrap();
        std::fs::write(bundled.join("scripts/a.sh"), "echo a").unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("scripts")).unwrap();
        std::fs::write(work.join("scripts/a.sh"), "mine").unwrap();
        let dest = work.join("new.json");
        new_from_default(&bundled.join("default.json"), &dest).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), recipe);
        assert_eq!(
            std::fs::read_to_string(work.join("scripts/a.sh")).unwrap(),
            "mine"
        );
        let err = new_from_default(&bundled.join("default.json"), &dest).unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        let other = dir.path().join("other/o.json");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        new_from_default(&bundled.join("default.json"), &other).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("other/scripts/a.sh")).unwrap(),
            "echo a"
        );
    }

    #[test]
    fn only_json_files_are_opened_when_dropped() {
        let file = PathBuf::from;
        assert_eq!(dropped_recipe(&[]), None);
        assert_eq!(
            dropped_recipe(&[file("/a.txt"), file("/b.JSON")]),
            Some(Ok(PathBuf::from("/b.JSON")))
        );
        let err = dropped_recipe(&[file("/a.qcow2")]).unwrap().unwrap_err();
        assert!(err.contains("/a.qcow2"), "{err}");
    }
}
