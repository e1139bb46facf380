//! The Variables form: one field per variable; sensitive ones masked with a reveal toggle,
//! required ones marked with `*`, values read from the environment shown as such. Variables
//! that only carry the Exoscale key and secret into `exoscale-import` are folded under the
//! credentials choice (a profile is the way; typing a secret stays possible).

use crate::exoscale::zone::EXOSCALE_ZONES;
use crate::recipe::vars::Variable;

use super::recipe_usage::{self, FieldKind};

use super::session::{OpenRecipe, env_source};
use super::theme;

/// Draws the form for `recipe`'s variables; returns whether a value changed.
pub fn variables_ui(ui: &mut egui::Ui, recipe: &mut OpenRecipe) -> bool {
    let (folded, variables): (Vec<Variable>, Vec<Variable>) = recipe
        .variables()
        .iter()
        .filter(|v| v.declared)
        .cloned()
        .partition(|v| recipe.credential_variables.contains(&v.name) && !v.required);
    if variables.is_empty() && folded.is_empty() {
        ui.weak("This recipe declares no variables.");
        return false;
    }
    let mut changed = fields_ui(ui, "variables", &variables, recipe);
    if !folded.is_empty() {
        let names: Vec<&str> = folded.iter().map(|v| v.name.as_str()).collect();
        ui.add_space(theme::GAP * 0.5);
        egui::CollapsingHeader::new(format!(
            "The recipe's key and secret variables ({})",
            names.join(", ")
        ))
        .id_salt("credential-variables")
        .default_open(false)
        .show(ui, |ui| {
            ui.weak(
                "They carry an API key and secret into exoscale-import; the Exoscale credentials choice above is the way to give them (a profile in the OS keyring). A value typed here is used only with \"As the recipe says\".",
            );
            changed |= fields_ui(ui, "credential-variables-grid", &folded, recipe);
        });
    }
    changed
}

/// One field per variable of `variables`, in a grid; returns whether a value changed.
fn fields_ui(ui: &mut egui::Ui, id: &str, variables: &[Variable], recipe: &mut OpenRecipe) -> bool {
    let palette = theme::current(ui.ctx());
    let kinds = recipe.field_kinds.clone();
    let mut changed = false;
    egui::Grid::new(id)
        .num_columns(2)
        .spacing([theme::GAP * 1.5, theme::GAP * 0.75])
        .show(ui, |ui| {
            for var in variables {
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
                    let kind = match kinds.get(&var.name) {
                        Some(kind) if !var.sensitive => *kind,
                        _ => FieldKind::Text,
                    };
                    ui.horizontal(|ui| {
                        changed |= match kind {
                            FieldKind::Flag => flag_ui(ui, value, var, label.id),
                            FieldKind::Zone => zone_ui(ui, value, var, label.id),
                            _ => ui
                                .add(
                                    egui::TextEdit::singleline(value)
                                        .password(var.sensitive && !revealed)
                                        .hint_text(hint)
                                        // Room for Show/Hide beside it in a narrow window.
                                        .desired_width(
                                            (ui.available_width() - 70.0).clamp(160.0, 380.0),
                                        ),
                                )
                                .labelled_by(label.id)
                                .changed(),
                        };
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
                    if let Some(problem) = recipe_usage::problem(kind, value) {
                        ui.colored_label(palette.fail, problem);
                    }
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
    changed
}

/// A checkbox for a `true`/`false` variable (unticked and ticked write `false` and `true`;
/// untouched, the default stands). Returns whether it changed.
fn flag_ui(ui: &mut egui::Ui, value: &mut String, var: &Variable, label: egui::Id) -> bool {
    let default = var.default.as_deref() == Some("true");
    let mut on = match value.trim() {
        "" => default,
        v => v == "true",
    };
    let changed = ui
        .checkbox(&mut on, "")
        .labelled_by(label)
        .on_hover_text(format!("default: {default}"))
        .changed();
    if changed {
        *value = on.to_string();
    }
    changed
}

/// A zone picker: the default (empty value), then Exoscale's zones; a value typed before
/// that is not a known zone stays listed. Returns whether it changed.
fn zone_ui(ui: &mut egui::Ui, value: &mut String, var: &Variable, label: egui::Id) -> bool {
    let before = value.clone();
    let default = format!("default ({})", var.default.clone().unwrap_or_default());
    let shown = if value.is_empty() {
        default.clone()
    } else {
        value.clone()
    };
    egui::ComboBox::from_id_salt(("zone", &var.name))
        .selected_text(shown)
        .show_ui(ui, |ui| {
            ui.selectable_value(value, String::new(), default.as_str());
            if !value.is_empty() && !EXOSCALE_ZONES.contains(&value.as_str()) {
                let custom = value.clone();
                ui.selectable_value(value, custom.clone(), custom);
            }
            for zone in EXOSCALE_ZONES {
                ui.selectable_value(value, zone.to_string(), *zone);
            }
        })
        .response
        .labelled_by(label);
    *value != before
}
