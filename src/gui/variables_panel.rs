//! The Variables form: one field per variable; sensitive ones masked with a reveal toggle,
//! required ones marked with `*`, values read from the environment shown as such.

use super::session::{OpenRecipe, env_source};
use super::theme;

/// Draws the form for `recipe`'s variables.
pub fn variables_ui(ui: &mut egui::Ui, recipe: &mut OpenRecipe) {
    let palette = theme::current(ui.ctx());
    let variables: Vec<_> = recipe
        .variables()
        .iter()
        .filter(|v| v.declared)
        .cloned()
        .collect();
    if variables.is_empty() {
        ui.weak("This recipe declares no variables.");
        return;
    }
    egui::Grid::new("variables")
        .num_columns(3)
        .spacing([theme::GAP * 1.5, theme::GAP * 0.75])
        .show(ui, |ui| {
            for var in &variables {
                let label = if var.required {
                    format!("{} *", var.name)
                } else {
                    var.name.clone()
                };
                let label = ui.label(label);
                if var.required {
                    label
                        .clone()
                        .on_hover_text("required: the build needs a value");
                }
                let value = recipe.values.entry(var.name.clone()).or_default();
                let revealed = recipe.revealed.contains(&var.name);
                let env = env_source(var);
                let hint = if var.required {
                    "required".to_string()
                } else if let Some(name) = env {
                    format!("from ${name}")
                } else if let Some(name) = var.env_names.first() {
                    format!("from ${name} (not set)")
                } else if var.sensitive {
                    "(default hidden)".to_string()
                } else {
                    var.default.clone().unwrap_or_default()
                };
                // One cell: the field, and under it what to know about the value (a third
                // column would be cut off at the window's edge).
                ui.vertical(|ui| {
                    ui.horizontal(|ui| {
                        ui.add(
                            egui::TextEdit::singleline(value)
                                .password(var.sensitive && !revealed)
                                .hint_text(hint)
                                // Room for Show/Hide beside it in a narrow window.
                                .desired_width((ui.available_width() - 70.0).clamp(160.0, 380.0)),
                        )
                        .labelled_by(label.id);
                        if var.sensitive {
                            let mut show = revealed;
                            let text = if show { "Hide" } else { "Show" };
                            let toggle = ui
                                .toggle_value(&mut show, text)
                                .on_hover_text(format!("show or hide {}", var.name));
                            if toggle.changed() {
                                if show {
                                    recipe.revealed.insert(var.name.clone());
                                } else {
                                    recipe.revealed.remove(&var.name);
                                }
                            }
                        }
                    });
                    if var.sensitive || env.is_some() {
                        ui.horizontal(|ui| {
                            if var.sensitive {
                                ui.colored_label(palette.warn, "sensitive");
                            }
                            if let Some(name) = env {
                                ui.colored_label(
                                    palette.running,
                                    format!("from environment: ${name}"),
                                );
                            }
                        });
                    }
                });
                ui.end_row();
            }
        });
}
