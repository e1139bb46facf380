//! The JSON tab: the recipe's text in a highlighted, editable field, checked as it is typed,
//! with its problems listed above it (click one to put the cursor on it).

use std::sync::Arc;

use egui::text::{CCursor, CCursorRange, LayoutJob};

use super::Editor;
use super::document::char_index;
use super::highlight;
use crate::gui::theme;

/// The raw text field's id (tests read its cursor through it).
pub fn raw_id() -> egui::Id {
    egui::Id::unique("kiln-recipe-json")
}

/// The last highlighted layout, reused while the text and theme stay the same.
#[derive(Debug, Default)]
pub struct HighlightCache {
    key: Option<(u64, bool, u32)>,
    job: Option<Arc<LayoutJob>>,
}

impl HighlightCache {
    /// The highlighted layout job for `text` in the current theme and font size.
    pub fn job(&mut self, ui: &egui::Ui, text: &str) -> Arc<LayoutJob> {
        let font = egui::TextStyle::Monospace.resolve(ui.style());
        let dark = ui.visuals().dark_mode;
        let key = (super::hash_text(text), dark, font.size.to_bits());
        if self.key != Some(key) || self.job.is_none() {
            let colours = theme::syntax(dark);
            let plain = ui.visuals().text_color();
            self.job = Some(Arc::new(highlight::layout_job(text, &colours, plain, font)));
            self.key = Some(key);
        }
        self.job.clone().unwrap_or_default()
    }
}

/// Draws the problems and the highlighted text field; applies a pending jump.
pub fn raw_ui(ui: &mut egui::Ui, editor: &mut Editor) {
    if let Some(why) = editor.load_error() {
        let palette = theme::current(ui.ctx());
        ui.colored_label(palette.fail, why);
        return;
    }
    if let Some(clicked) = crate::gui::recipes_panel::diagnostics_ui(ui, editor.problems()) {
        editor.jump_to(&clicked);
    }
    ui.add_space(theme::GAP * 0.5);
    let label = ui.label("Recipe JSON");
    let id = raw_id();
    let jump = editor.jump.take().map(|(line, col)| {
        let at = char_index(&editor.text, line, col);
        let mut state = egui::TextEdit::load_state(ui.ctx(), id).unwrap_or_default();
        state
            .cursor
            .set_char_range(Some(CCursorRange::one(CCursor::new(at))));
        egui::TextEdit::store_state(ui.ctx(), id, state);
        ui.memory_mut(|m| m.request_focus(id));
        at
    });
    let Editor {
        text, highlight, ..
    } = editor;
    let mut layouter = |ui: &egui::Ui, buf: &dyn egui::TextBuffer, _wrap: f32| {
        let job = highlight.job(ui, buf.as_str());
        ui.fonts_mut(|f| f.layout_job((*job).clone()))
    };
    let output = egui::ScrollArea::both()
        .id_salt("kiln-recipe-json-scroll")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let output = egui::TextEdit::multiline(text)
                .id(id)
                .code_editor()
                .desired_width(f32::INFINITY)
                .desired_rows(24)
                .lock_focus(true)
                .layouter(&mut layouter)
                .show(ui);
            if let Some(at) = jump {
                let rect = output
                    .galley
                    .pos_from_cursor(CCursor::new(at))
                    .translate(output.galley_pos.to_vec2());
                ui.scroll_to_rect(rect.expand(theme::GAP * 4.0), Some(egui::Align::Center));
            }
            output
        })
        .inner;
    let changed = output.response.changed();
    egui::Response::clone(&output.response).labelled_by(label.id);
    if changed {
        editor.recheck();
    }
}
