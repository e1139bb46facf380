//! The Host check panel: what `kiln doctor` reports, each fix command copyable.

use crate::host::{Check, Status};

use super::theme;

/// What the user asked for in the Host check panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// Run the checks again.
    Recheck,
    /// Remove every entry of the step cache.
    ClearStepCache,
}

/// A one-line summary for the sidebar: `Host: ready` or `Host: 1 problem`.
pub fn summary(checks: Option<&[Check]>) -> (String, Status) {
    let Some(checks) = checks else {
        return ("Host: checking…".into(), Status::Warn);
    };
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    match (fails, warns) {
        (0, 0) => ("Host: ready".into(), Status::Ok),
        (0, w) => (format!("Host: {w} warning{}", plural(w)), Status::Warn),
        (f, _) => (format!("Host: {f} problem{}", plural(f)), Status::Fail),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Draws the checks; `None` while they run.
pub fn host_ui(ui: &mut egui::Ui, checks: Option<&[Check]>) -> Option<HostAction> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    ui.horizontal(|ui| {
        ui.heading("Host check");
        if ui.button("Check again").clicked() {
            action = Some(HostAction::Recheck);
        }
    });
    let Some(checks) = checks else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Checking the host…");
        });
        return action;
    };
    for (i, check) in checks.iter().enumerate() {
        let (mark, colour) = match check.status {
            Status::Ok => ("ok", palette.ok),
            Status::Warn => ("warn", palette.warn),
            Status::Fail => ("FAIL", palette.fail),
        };
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(colour, mark);
            ui.strong(&check.name);
            ui.label(&check.detail);
        });
        if check.name == "step cache"
            && !check.detail.starts_with("empty")
            && check.status == Status::Ok
        {
            ui.horizontal(|ui| {
                if ui
                    .button("Clear the step cache")
                    .on_hover_text("Remove every saved VM (kiln cache clear)")
                    .clicked()
                {
                    action = Some(HostAction::ClearStepCache);
                }
            });
        }
        if let Some(fix) = &check.fix {
            ui.horizontal(|ui| {
                ui.label("fix:");
                ui.add(egui::Label::new(egui::RichText::new(fix).monospace()).selectable(true));
                if ui
                    .button("Copy")
                    .on_hover_text(format!("copy the fix for {}", check.name))
                    .clicked()
                {
                    ui.ctx().copy_text(fix.clone());
                }
            });
        }
        if i + 1 < checks.len() {
            ui.separator();
        }
    }
    action
}
