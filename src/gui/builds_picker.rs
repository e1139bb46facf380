//! Which build of the open recipe Start runs: a template with several `qemu` builds offers a
//! choice; builders kiln does not run (VirtualBox, VMware, … in multi-builder templates) are
//! listed greyed, each with the reason.

use crate::gui::session::OpenRecipe;

/// Draws the build choice and the skipped builders, when there is anything to say: more than
/// one `qemu` build, or builders kiln does not run.
pub fn builds_ui(ui: &mut egui::Ui, open: &mut OpenRecipe) {
    let Ok(recipe) = &open.inspection else {
        return;
    };
    let names: Vec<String> = recipe.builds.iter().map(|b| b.name.clone()).collect();
    if names.len() <= 1 && recipe.skipped.is_empty() {
        return;
    }
    let skipped: Vec<String> = recipe
        .skipped
        .iter()
        .map(|s| {
            format!(
                "{}: not run — {}",
                s.name,
                s.reason.describe(&s.builder_type)
            )
        })
        .collect();
    let current = open.chosen_build().unwrap_or_default();
    let mut choice = current.clone();
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Build:");
        if names.len() > 1 {
            egui::ComboBox::from_id_salt("build-choice")
                .selected_text(choice.as_str())
                .show_ui(ui, |ui| {
                    for name in &names {
                        ui.selectable_value(&mut choice, name.clone(), name);
                    }
                })
                .response
                .labelled_by(label.id);
        } else {
            ui.strong(choice.as_str());
        }
        for line in &skipped {
            ui.add_enabled(false, egui::Label::new(line.as_str()));
        }
    });
    if choice != current {
        open.build_choice = Some(choice);
        open.problems = None;
        open.refresh_choice_problem();
    }
}
