//! The editor's bar (unsaved mark, Save, Revert, Save as…) and its status: what the last
//! save did, or the card that asks what to do when the file changed on disk.

use super::{Editor, Notice};
use crate::gui::theme;

/// What the user asked the editor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditorAction {
    /// Save if changed (Ctrl+S); stops at a conflict.
    Save,
    /// Save over a file that changed on disk.
    Overwrite,
    /// Drop the edits and read the file again.
    Revert,
    /// Save to a file chosen in the dialog.
    SaveAs,
    /// Close the conflict card and keep editing.
    KeepEditing,
}

/// Draws the unsaved mark and the Save, Revert and Save as… buttons.
pub fn actions_ui(ui: &mut egui::Ui, editor: &Editor) -> Option<EditorAction> {
    let mut action = None;
    let dirty = editor.is_dirty();
    let blocker = editor.save_blocker();
    let save = ui
        .add_enabled(dirty && blocker.is_none(), egui::Button::new("Save"))
        .on_hover_text("Ctrl+S")
        .on_disabled_hover_text(
            blocker
                .clone()
                .unwrap_or_else(|| "No changes to save".into()),
        );
    if save.clicked() {
        action = Some(EditorAction::Save);
    }
    if ui
        .add_enabled(dirty, egui::Button::new("Revert"))
        .on_hover_text("Drop the changes and read the file again")
        .clicked()
    {
        action = Some(EditorAction::Revert);
    }
    if ui
        .add_enabled(
            editor.load_error().is_none() && blocker.is_none(),
            egui::Button::new("Save as…"),
        )
        .clicked()
    {
        action = Some(EditorAction::SaveAs);
    }
    if dirty {
        let palette = theme::current(ui.ctx());
        ui.colored_label(palette.warn, "unsaved changes");
    }
    action
}

/// Draws the conflict card, or what the last save did, or why Save is refused.
pub fn status_ui(ui: &mut egui::Ui, editor: &Editor) -> Option<EditorAction> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    if let Some(conflict) = &editor.conflict {
        egui::Frame::new()
            .fill(palette.error_card)
            .inner_margin(theme::GAP)
            .corner_radius(4.0)
            .show(ui, |ui| {
                let what = if conflict.disk.is_some() {
                    "changed on disk"
                } else {
                    "was deleted or cannot be read"
                };
                ui.colored_label(
                    palette.fail,
                    format!(
                        "{} {what} since kiln opened it. Nothing was saved.",
                        editor.path().display()
                    ),
                );
                ui.horizontal(|ui| {
                    if ui
                        .button("Reload from disk")
                        .on_hover_text("Drop your changes and edit the file as it is now")
                        .clicked()
                    {
                        action = Some(EditorAction::Revert);
                    }
                    if ui
                        .button("Overwrite with my version")
                        .on_hover_text("Replace the file on disk with the text in kiln")
                        .clicked()
                    {
                        action = Some(EditorAction::Overwrite);
                    }
                    if ui.button("Keep editing").clicked() {
                        action = Some(EditorAction::KeepEditing);
                    }
                });
            });
        return action;
    }
    match &editor.notice {
        Some(Notice::Done(text)) => {
            ui.colored_label(palette.ok, text);
        }
        Some(Notice::Failed(text)) => {
            ui.colored_label(palette.fail, text);
        }
        None => {
            if editor.is_dirty()
                && let Some(why) = editor.save_blocker()
            {
                ui.colored_label(palette.warn, why);
            }
        }
    }
    if let Some(why) = editor.load_error() {
        ui.colored_label(palette.fail, format!("{why}: the editor is read-only"));
    }
    None
}
