//! The Recipes panel: the bundled recipes, recently opened files, opening a file by path,
//! and the open recipe's problems with their file:line:col.

use std::path::{Path, PathBuf};

use crate::recipe::diag::{Diagnostics, Severity};

use super::theme;

/// What the Recipes panel keeps between frames.
#[derive(Debug, Default)]
pub struct RecipesPanel {
    /// The "open a file" field.
    pub path_input: String,
    /// The bundled recipes.
    pub bundled: Vec<PathBuf>,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Draws the recipe lists and the open-by-path field; returns a recipe the user chose.
pub fn recipes_ui(
    ui: &mut egui::Ui,
    panel: &mut RecipesPanel,
    recent: &[PathBuf],
    open: Option<&Path>,
) -> Option<PathBuf> {
    let mut chosen = None;
    ui.heading("Recipes");
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
    chosen
}

/// Lists problems, errors first, each with its file:line:col and key path.
pub fn diagnostics_ui(ui: &mut egui::Ui, diags: &Diagnostics) {
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
                ui.add(
                    egui::Label::new(egui::RichText::new(d.to_string()).monospace())
                        .selectable(true),
                );
            });
        }
    }
}
