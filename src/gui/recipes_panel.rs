//! The Recipes panel: the bundled recipes, recently opened files, opening a file (by path,
//! through the file dialog, or by dropping it on the window), a new recipe from the default,
//! and the open recipe's problems with their file:line:col (click one to see it in the JSON).

use std::path::{Path, PathBuf};

use crate::recipe::diag::{Diagnostic, Diagnostics, Severity};

use super::dialogs::Pick;
use super::theme;

/// What the Recipes panel keeps between frames.
#[derive(Debug, Default)]
pub struct RecipesPanel {
    /// The "open a file" field.
    pub path_input: String,
    /// The bundled recipes.
    pub bundled: Vec<PathBuf>,
    /// What the last open or new-recipe action said went wrong, if anything.
    pub notice: Option<String>,
    /// A file dialog is open (its buttons wait for it).
    pub dialog_open: bool,
    /// No file dialog could be shown: the path is asked for in a field instead.
    pub path_prompt: Option<PathPrompt>,
}

/// A path asked for in a field because no file dialog could be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrompt {
    /// What the dialog was for.
    pub pick: Pick,
    /// Why there was no dialog.
    pub why: String,
    /// The path typed so far.
    pub input: String,
}

impl PathPrompt {
    /// Asks for the path `pick` needs, starting from `dir` (and the suggested name).
    pub fn new(pick: Pick, why: String, dir: Option<&Path>) -> Self {
        let suggested = match &pick {
            Pick::OpenRecipe | Pick::OpenImage => None,
            Pick::NewRecipe { suggested }
            | Pick::SaveRecipeAs { suggested }
            | Pick::SaveVarFile { suggested } => Some(suggested.as_str()),
        };
        let input = match (dir, suggested) {
            (Some(dir), Some(name)) => dir.join(name).display().to_string(),
            (Some(dir), None) => format!("{}/", dir.display()),
            (None, Some(name)) => name.to_string(),
            (None, None) => String::new(),
        };
        Self { pick, why, input }
    }

    /// The field's label: what the path is for.
    fn label(&self) -> &'static str {
        match self.pick {
            Pick::OpenRecipe => "Recipe to open:",
            Pick::OpenImage => "Image to publish:",
            Pick::NewRecipe { .. } => "Where the new recipe goes:",
            Pick::SaveRecipeAs { .. } => "Save the recipe as:",
            Pick::SaveVarFile { .. } => "Save the var-file as:",
        }
    }
}

/// Draws the path prompt; returns the path once the user confirms it, or `Err(())` when
/// they give up.
pub fn path_prompt_ui(ui: &mut egui::Ui, prompt: &mut PathPrompt) -> Option<Result<PathBuf, ()>> {
    let mut answer = None;
    let palette = theme::current(ui.ctx());
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.add(egui::Label::new(egui::RichText::new(&prompt.why).color(palette.warn)).wrap());
        ui.horizontal(|ui| {
            let label = ui.label(prompt.label());
            let field = ui
                .add(egui::TextEdit::singleline(&mut prompt.input).desired_width(320.0))
                .labelled_by(label.id);
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let typed = !prompt.input.trim().is_empty();
            if (ui.add_enabled(typed, egui::Button::new("OK")).clicked() || enter) && typed {
                answer = Some(Ok(PathBuf::from(prompt.input.trim())));
            }
            if ui.button("Cancel").clicked() {
                answer = Some(Err(()));
            }
        });
    });
    answer
}

/// What the user asked the Recipes panel for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipesAction {
    /// Open this file.
    Open(PathBuf),
    /// Choose a file to open in the file dialog.
    OpenDialog,
    /// Copy the default recipe to a path chosen in the file dialog, and open the copy.
    NewFromDefault,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Draws the recipe lists and the open-by-path field; returns what the user asked for.
pub fn recipes_ui(
    ui: &mut egui::Ui,
    panel: &mut RecipesPanel,
    recent: &[PathBuf],
    open: Option<&Path>,
) -> Option<RecipesAction> {
    let mut chosen = None;
    let mut action = None;
    ui.heading("Recipes");
    ui.horizontal(|ui| {
        let open_button = ui
            .add_enabled(!panel.dialog_open, egui::Button::new("Open…"))
            .on_hover_text("Choose a recipe file (Ctrl+O), or drop a .json file on the window");
        if open_button.clicked() {
            action = Some(RecipesAction::OpenDialog);
        }
        let new_button = ui
            .add_enabled(!panel.dialog_open, egui::Button::new("New from default…"))
            .on_hover_text("Copy the default recipe (Debian 12 → Exoscale) to a file you choose");
        if new_button.clicked() {
            action = Some(RecipesAction::NewFromDefault);
        }
    });
    if let Some(notice) = &panel.notice {
        let palette = theme::current(ui.ctx());
        ui.colored_label(palette.fail, notice);
    }
    ui.add_space(theme::GAP);
    ui.label("Bundled");
    for path in &panel.bundled {
        let selected = open == Some(path.as_path());
        if ui
            .selectable_label(selected, file_name(path))
            .on_hover_text(path.display().to_string())
            .clicked()
        {
            chosen = Some(path.clone());
        }
    }
    if panel.bundled.is_empty() {
        ui.weak("No bundled recipes found (set KILN_RECIPES_DIR).");
    }
    let recent: Vec<&PathBuf> = recent
        .iter()
        .filter(|p| !panel.bundled.contains(p))
        .collect();
    if !recent.is_empty() {
        ui.add_space(theme::GAP);
        ui.label("Recent");
        for path in recent {
            let selected = open == Some(path.as_path());
            if ui
                .selectable_label(selected, path.display().to_string())
                .clicked()
            {
                chosen = Some(path.clone());
            }
        }
    }
    ui.add_space(theme::GAP);
    ui.horizontal(|ui| {
        let label = ui.label("Open file:");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut panel.path_input)
                    .hint_text("/path/to/recipe.json")
                    .desired_width(170.0),
            )
            .labelled_by(label.id);
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button("Open").clicked() || enter) && !panel.path_input.trim().is_empty() {
            chosen = Some(PathBuf::from(panel.path_input.trim()));
        }
    });
    action.or(chosen.map(RecipesAction::Open))
}

/// Lists problems, errors first, each with its file:line:col and key path; returns the one
/// clicked (those with a line can be clicked, to be shown in the JSON tab).
pub fn diagnostics_ui(ui: &mut egui::Ui, diags: &Diagnostics) -> Option<Diagnostic> {
    let mut clicked = None;
    let palette = theme::current(ui.ctx());
    let errors = diags.errors().count();
    let warnings = diags.warnings().count();
    ui.label(format!(
        "{errors} error{} · {warnings} warning{}",
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" }
    ));
    for severity in [Severity::Error, Severity::Warning, Severity::Note] {
        for d in diags.iter().filter(|d| d.severity == severity) {
            let (mark, colour) = match d.severity {
                Severity::Error => ("error", palette.fail),
                Severity::Warning => ("warning", palette.warn),
                Severity::Note => ("note", ui.visuals().weak_text_color()),
            };
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(colour, mark);
                let text =
                    egui::RichText::new(super::wording::for_the_window(&d.to_string())).monospace();
                if d.line.is_some() {
                    let go = ui
                        .add(egui::Button::new(text).frame(false))
                        .on_hover_text("Show it in the JSON tab");
                    if go.clicked() {
                        clicked = Some(d.clone());
                    }
                } else {
                    ui.add(egui::Label::new(text).selectable(true));
                }
            });
        }
    }
    clicked
}
