//! The open recipe: its file, what loading it found, the values typed into the form, and its
//! editor. Values live only in memory: they are never saved (some are secrets).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::recipe::diag::Diagnostics;
use crate::recipe::template::{self, LoadOptions, Recipe};
use crate::recipe::vars::Variable;

use super::editor::Editor;

/// A recipe opened in the window.
#[derive(Debug)]
pub struct OpenRecipe {
    /// Its file.
    pub path: PathBuf,
    /// The recipe as loaded without the form's values (required ones may be missing), or
    /// the problems that stopped it from loading at all.
    pub inspection: Result<Recipe, Diagnostics>,
    /// Values typed into the form, by variable name; an empty field means "the default".
    pub values: BTreeMap<String, String>,
    /// Sensitive fields the user chose to show.
    pub revealed: BTreeSet<String>,
    /// Problems from the last Validate or Build, with the form's values.
    pub problems: Option<Diagnostics>,
    /// The recipe's text being edited (the Recipe and JSON tabs).
    pub editor: Editor,
    /// What a Rebuild from the History filled in, and what it left to the user.
    pub note: Option<String>,
}

impl OpenRecipe {
    /// Opens and inspects `path`.
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            inspection: inspect(path),
            values: BTreeMap::new(),
            revealed: BTreeSet::new(),
            problems: None,
            editor: Editor::open(path),
            note: None,
        }
    }

    /// Inspects the file again after the editor saved or reloaded it (the form's values
    /// stay); follows the editor to a new path after Save as….
    pub fn reinspect(&mut self) {
        self.path = self.editor.path().to_path_buf();
        self.inspection = inspect(&self.path);
        self.problems = None;
    }

    /// Notices a change of the recipe's file on disk (see [`Editor::check_disk`]); call it
    /// on every frame: it looks only when the window gains focus and every couple of
    /// seconds, and never asks for a frame itself.
    pub fn watch_disk(&mut self, ctx: &egui::Context) {
        let focus_gained = ctx.input(|i| {
            i.events
                .iter()
                .any(|e| matches!(e, egui::Event::WindowFocused(true)))
        });
        if self
            .editor
            .check_disk(std::time::Instant::now(), focus_gained)
        {
            self.reinspect();
        }
    }

    /// The title: the recipe's description, else its file name.
    pub fn title(&self) -> String {
        self.inspection
            .as_ref()
            .ok()
            .and_then(|r| r.description.clone())
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| {
                self.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
    }

    /// The variables the recipe declares, in its order.
    pub fn variables(&self) -> &[Variable] {
        match &self.inspection {
            Ok(recipe) => &recipe.variables,
            Err(_) => &[],
        }
    }

    /// The problems to list: the last check's, else the inspection's.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        if let Some(problems) = &self.problems {
            return Some(problems);
        }
        match &self.inspection {
            Ok(recipe) => Some(&recipe.warnings),
            Err(diags) => Some(diags),
        }
    }

    /// Loads the recipe with the form's values, as a build would. On success the problems
    /// shown are its warnings; on failure its errors.
    pub fn check(&mut self) -> Option<Recipe> {
        let options = LoadOptions {
            vars: self
                .values
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..LoadOptions::default()
        };
        match template::load_file(&self.path, &options) {
            Ok(recipe) => {
                self.problems = Some(recipe.warnings.clone());
                Some(recipe)
            }
            Err(diags) => {
                self.problems = Some(diags);
                None
            }
        }
    }
}

/// What "Save as var-file" wrote, and what it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarFileSaved {
    /// The variables written, in the recipe's order.
    pub written: Vec<String>,
    /// Sensitive variables with a value in the form, which are never written to a file.
    pub left_out: Vec<String>,
}

impl VarFileSaved {
    /// One sentence for the user.
    pub fn describe(&self, path: &Path) -> String {
        let mut note = format!(
            "Saved {} value{} to {}; use it with `kiln build -var-file={}`.",
            self.written.len(),
            if self.written.len() == 1 { "" } else { "s" },
            path.display(),
            path.display()
        );
        if !self.left_out.is_empty() {
            note.push_str(&format!(
                " Sensitive values are never written to a file: {} left out.",
                self.left_out.join(", ")
            ));
        }
        note
    }
}

impl OpenRecipe {
    /// The form's values as a Packer var-file (a JSON object of strings): the non-empty
    /// values of declared, non-sensitive variables, in the recipe's order.
    pub fn var_file(&self) -> (String, VarFileSaved) {
        let mut object = serde_json::Map::new();
        let mut saved = VarFileSaved {
            written: Vec::new(),
            left_out: Vec::new(),
        };
        for var in self.variables().iter().filter(|v| v.declared) {
            let Some(value) = self.values.get(&var.name).filter(|v| !v.is_empty()) else {
                continue;
            };
            if var.sensitive {
                saved.left_out.push(var.name.clone());
            } else {
                object.insert(var.name.clone(), serde_json::Value::String(value.clone()));
                saved.written.push(var.name.clone());
            }
        }
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(object))
            .unwrap_or_else(|_| "{}".into());
        (text + "\n", saved)
    }

    /// Writes [`var_file`](Self::var_file) to `path` atomically.
    pub fn save_var_file(&self, path: &Path) -> Result<VarFileSaved, String> {
        let (text, saved) = self.var_file();
        super::editor::save::write_atomic(path, &text)?;
        Ok(saved)
    }
}

fn inspect(path: &Path) -> Result<Recipe, Diagnostics> {
    template::load_file(
        path,
        &LoadOptions {
            required_is_warning: true,
            ..LoadOptions::default()
        },
    )
}

/// The environment variable that gave `var` its value, if its default reads one that is set.
pub fn env_source(var: &Variable) -> Option<&str> {
    var.env_names
        .iter()
        .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        .map(String::as_str)
}

/// The bundled recipes: the `.json` files in `dir`, sorted by name.
pub fn bundled_recipes(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
