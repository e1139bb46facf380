//! The Recipes panel: the bundled recipes, recently opened files, opening a file (by path,
//! through the file dialog, or by dropping it on the window), a new recipe from the default,
//! and the open recipe's problems with their file:line:col (click one to see it in the JSON).

use std::path::{Path, PathBuf};

use crate::recipe::diag::{Diagnostic, Diagnostics, Severity};

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
    for severity in [Severity::Error, Severity::Warning] {
        for d in diags.iter().filter(|d| d.severity == severity) {
            let (mark, colour) = if d.is_error() {
                ("error", palette.fail)
            } else {
                ("warning", palette.warn)
            };
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(colour, mark);
                let text = egui::RichText::new(d.to_string()).monospace();
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
