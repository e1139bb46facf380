//! The open recipe: its file, what loading it found, the values typed into the form, and its
//! editor. Values live only in memory: they are never saved (some are secrets).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::build::choices::{BuildChoices, key_problem_with};
use crate::recipe::diag::Diagnostics;
use crate::recipe::template::{self, Build, LoadOptions, Recipe};
use crate::recipe::vars::Variable;
use crate::secrets::ssh_keys::{KeyListing, KeySource};

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
    /// The build Start runs, by name, when the recipe has several (`None`: the first).
    pub build_choice: Option<String>,
    /// The SSH key and the Exoscale credentials chosen for the build.
    pub choices: BuildChoices,
    /// What stops the chosen key from logging in (see
    /// [`crate::build::choices::key_problem`]), found when the choice, the recipe or the
    /// keyring's listing changed.
    pub choice_problem: Option<String>,
    /// The keyring's keys as last listed (public halves only), to judge a keyring key.
    pub known_keys: Vec<KeyListing>,
    /// Variables that only carry the Exoscale key and secret (folded on the form).
    pub credential_variables: BTreeSet<String>,
    /// The kind of value each variable holds, from the options it feeds (its field).
    pub field_kinds: BTreeMap<String, super::recipe_usage::FieldKind>,
    /// The recipe as the last check loaded it with the form's values (the publish summary
    /// shows names as they will be).
    pub checked: Option<Recipe>,
    /// When a value last changed and was not checked yet (the form checks as one types).
    pub edited: Option<std::time::Instant>,
}

/// What was typed into the forms of recipes opened earlier in this session, so a recipe
/// opened again shows its values and build choice again. In memory only, like the values.
#[derive(Debug, Default)]
pub struct TypedValues {
    by_recipe: HashMap<PathBuf, (BTreeMap<String, String>, Option<String>)>,
}

impl TypedValues {
    /// Remembers the form of `open`, which is being closed.
    pub fn keep(&mut self, open: &OpenRecipe) {
        let typed: BTreeMap<String, String> = open
            .values
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if typed.is_empty() && open.build_choice.is_none() {
            self.by_recipe.remove(&open.path);
        } else {
            self.by_recipe
                .insert(open.path.clone(), (typed, open.build_choice.clone()));
        }
    }

    /// Fills the form of `open` with what was typed into it earlier, and has it checked.
    pub fn restore(&self, open: &mut OpenRecipe) {
        if let Some((values, build_choice)) = self.by_recipe.get(&open.path) {
            open.values = values.clone();
            open.build_choice = build_choice.clone();
            open.edited = Some(std::time::Instant::now());
        }
    }
}

impl OpenRecipe {
    /// Opens and inspects `path`.
    pub fn open(path: &Path) -> Self {
        let mut open = Self {
            path: path.to_path_buf(),
            inspection: inspect(path),
            values: BTreeMap::new(),
            revealed: BTreeSet::new(),
            problems: None,
            editor: Editor::open(path),
            note: None,
            build_choice: None,
            choices: BuildChoices::default(),
            choice_problem: None,
            known_keys: Vec::new(),
            credential_variables: super::recipe_usage::credential_variables(path),
            field_kinds: super::recipe_usage::field_kinds(path),
            checked: None,
            edited: None,
        };
        open.refresh_choice_problem();
        open
    }

    /// Inspects the file again after the editor saved or reloaded it (the form's values
    /// stay); follows the editor to a new path after Save as….
    pub fn reinspect(&mut self) {
        self.path = self.editor.path().to_path_buf();
        self.inspection = inspect(&self.path);
        self.problems = None;
        self.checked = None;
        self.credential_variables = super::recipe_usage::credential_variables(&self.path);
        self.field_kinds = super::recipe_usage::field_kinds(&self.path);
        self.refresh_choice_problem();
    }

    /// The build Start runs, from the inspection, with the form's choices applied (`None`
    /// while the recipe does not load).
    pub fn chosen_build_as_chosen(&self) -> Option<Build> {
        let recipe = self.inspection.as_ref().ok()?;
        let name = self.chosen_build()?;
        let mut build = recipe.builds.iter().find(|b| b.name == name)?.clone();
        self.choices.apply(&mut build);
        Some(build)
    }

    /// Sets the choices and finds again what stops the chosen key from logging in.
    pub fn choose(&mut self, choices: BuildChoices) {
        self.choices = choices;
        self.refresh_choice_problem();
    }

    /// Takes the keyring's listing (after each read) and judges the chosen key again.
    pub fn set_known_keys(&mut self, keys: &[KeyListing]) {
        self.known_keys = keys.to_vec();
        self.refresh_choice_problem();
    }

    /// Finds again what stops the chosen key from logging in (the recipe's own cloud-init
    /// data read from disk: call it on a change, not on every frame).
    pub fn refresh_choice_problem(&mut self) {
        let pwd = std::env::current_dir().unwrap_or_default();
        let known = &self.known_keys;
        self.choice_problem = self.chosen_build_as_chosen().and_then(|build| {
            key_problem_with(&build, &pwd, |name| {
                known
                    .iter()
                    .find(|k| matches!(&k.source, KeySource::Keyring(n) if n == name))
                    .and_then(|k| k.public_line.clone())
            })
        });
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

    /// The name of the build Start runs: the chosen one while the recipe has it, else its
    /// first `qemu` build.
    pub fn chosen_build(&self) -> Option<String> {
        let recipe = self.inspection.as_ref().ok()?;
        self.build_choice
            .clone()
            .filter(|c| recipe.builds.iter().any(|b| &b.name == c))
            .or_else(|| recipe.builds.first().map(|b| b.name.clone()))
    }

    /// Checks the form again once typing paused (`pause` after the last change); returns
    /// whether it did. Call it every frame: it asks for the frame it needs.
    pub fn check_when_typing_paused(
        &mut self,
        ctx: &egui::Context,
        now: std::time::Instant,
        pause: std::time::Duration,
    ) -> bool {
        let Some(edited) = self.edited else {
            return false;
        };
        if now.duration_since(edited) < pause {
            ctx.request_repaint_after(pause - now.duration_since(edited));
            return false;
        }
        self.edited = None;
        self.check();
        true
    }

    /// Loads the recipe with the form's values, as a build would (only the chosen build is
    /// checked, as `kiln build -only=NAME` checks it). On success the problems shown are its
    /// warnings; on failure its errors.
    pub fn check(&mut self) -> Option<Recipe> {
        let several = self.inspection.as_ref().is_ok_and(|r| r.builds.len() > 1);
        let only = if several {
            self.chosen_build().into_iter().collect()
        } else {
            Vec::new()
        };
        let options = LoadOptions {
            vars: self
                .values
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            selection: crate::recipe::select::Selection {
                only,
                except: Vec::new(),
            },
            ..LoadOptions::default()
        };
        match template::load_file(&self.path, &options) {
            Ok(recipe) => {
                self.problems = Some(recipe.warnings.clone());
                self.checked = Some(recipe.clone());
                Some(recipe)
            }
            Err(diags) => {
                self.problems = Some(diags);
                self.checked = None;
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
