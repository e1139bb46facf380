//! The Build panel: a tab per build of this session, cancel and continue, the step list with durations, the running step's progress with
//! rate and ETA, the output and the serial console (virtualised: only visible rows are laid
//! out), and a card with the result: the artifact, or the error and the last console lines.

use std::time::{Duration, Instant};

use crate::build::event::{Outcome, Unit};
use crate::recipe::units::format_bytes;

use super::build_state::{BuildState, StepState};
use super::log_buffer::LogBuffer;
use super::theme;

/// Which log the panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum LogTab {
    /// Provisioner and kiln output.
    #[default]
    Output,
    /// The VM's serial console.
    Console,
}

/// What the user asked for in the Build panel this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildAction {
    /// Cancel the running build.
    Cancel,
    /// Continue the build paused at a breakpoint.
    Continue,
}

/// What the user did with the build tabs this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TabAction<Id> {
    /// Show this build.
    Show(Id),
    /// Close this (ended) build's tab.
    Close(Id),
}

/// The strip of build tabs: one per build of this session, with its status; ended builds
/// have a close button. Returns what was clicked.
pub fn tabs_ui<Id: Copy + PartialEq>(
    ui: &mut egui::Ui,
    builds: &[(Id, &BuildState)],
    shown: Option<Id>,
) -> Option<TabAction<Id>> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        for (n, (id, state)) in builds.iter().enumerate() {
            let colour = match state.status_word() {
                "finished" => palette.ok,
                "failed" => palette.fail,
                "cancelled" | "cancelling" | "paused" => palette.warn,
                _ => palette.running,
            };
            let text = egui::RichText::new(format!("{} · {}", state.name, state.status_word()))
                .color(colour);
            let tab = ui
                .selectable_label(shown == Some(*id), text)
                .on_hover_text(format!("Build {} of this session", n + 1));
            if tab.clicked() {
                action = Some(TabAction::Show(*id));
            }
            if !state.is_running() {
                let close = ui
                    .small_button("×")
                    .on_hover_text("Close this build's tab (its logs stay on disk)");
                close.widget_info(|| {
                    egui::WidgetInfo::labeled(
                        egui::Role::Button,
                        true,
                        format!("Close tab {}", n + 1),
                    )
                });
                if close.clicked() {
                    action = Some(TabAction::Close(*id));
                }
            }
            ui.separator();
        }
    });
    action
}

/// `1:05` or `12.3 s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = d.as_secs();
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn format_amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => format_bytes(n),
        Unit::Items => n.to_string(),
    }
}

/// Draws the panel for `state`; returns what the user asked for.
pub fn build_ui(
    ui: &mut egui::Ui,
    state: &BuildState,
    tab: &mut LogTab,
    now: Instant,
) -> Option<BuildAction> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    ui.horizontal(|ui| {
        ui.heading(&state.name);
        let elapsed = state.duration.unwrap_or_else(|| now - state.started);
        ui.label(format!("· {} elapsed", format_duration(elapsed)));
        if state.is_running() {
            if state.cancelling {
                ui.add_enabled(false, egui::Button::new("Cancelling…"));
            } else if ui.button("Cancel").clicked() {
                action = Some(BuildAction::Cancel);
            }
        }
    });
    if let Some(paused) = &state.paused
        && state.is_running()
        && !state.cancelling
    {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.colored_label(
                palette.warn,
                egui::RichText::new("Paused at a breakpoint").strong(),
            );
            if let Some(note) = &paused.note {
                ui.add(egui::Label::new(note.as_str()).selectable(true));
            }
            ui.label(
                "The VM keeps running: look at it (the console below, or SSH), then continue.",
            );
            if paused.continuing {
                ui.add_enabled(false, egui::Button::new("Continuing…"));
            } else if ui.button("Continue").clicked() {
                action = Some(BuildAction::Continue);
            }
        });
    }
    result_card_ui(ui, state);
    steps_ui(ui, state, now);
    if let Some(p) = &state.progress {
        let mut text = match p.total {
            Some(total) => format!(
                "{} / {}",
                format_amount(p.done, p.unit),
                format_amount(total, p.unit)
            ),
            None => format_amount(p.done, p.unit),
        };
        if let Some(rate) = p.rate {
            text.push_str(&format!(
                " · {}/s",
                format_amount(rate.round() as u64, p.unit)
            ));
        }
        if let Some(eta) = p.eta() {
            text.push_str(&format!(" · ETA {}", format_duration(eta)));
        }
        let bar = match p.fraction() {
            Some(f) => egui::ProgressBar::new(f).text(text),
            None => egui::ProgressBar::new(0.0).animate(true).text(text),
        };
        ui.add(bar);
    }
    checks_ui(ui, state);
    for w in &state.warnings {
        ui.colored_label(palette.warn, format!("warning: {w}"));
    }
    ui.add_space(theme::GAP);
    ui.horizontal(|ui| {
        ui.selectable_value(
            tab,
            LogTab::Output,
            format!("Output ({})", state.output.len()),
        );
        ui.selectable_value(
            tab,
            LogTab::Console,
            format!("Console ({})", state.console.len()),
        );
    });
    let (log, id) = match tab {
        LogTab::Output => (&state.output, "output"),
        LogTab::Console => (&state.console, "console"),
    };
    log_view_ui(ui, log, id);
    action
}

/// The image test's checklist: one line per check, pass or fail, with what it found.
fn checks_ui(ui: &mut egui::Ui, state: &BuildState) {
    if state.checks.is_empty() {
        return;
    }
    let palette = theme::current(ui.ctx());
    let failed = state.checks.iter().filter(|c| !c.passed).count();
    ui.strong(format!(
        "Image checks: {} passed, {failed} failed",
        state.checks.len() - failed
    ));
    for check in &state.checks {
        ui.horizontal(|ui| {
            if check.passed {
                ui.colored_label(palette.ok, "✔ pass");
            } else {
                ui.colored_label(palette.fail, "✖ fail");
            }
            ui.add(
                egui::Label::new(format!("{} — {}", check.name, check.detail))
                    .selectable(true)
                    .wrap(),
            );
        });
    }
}

fn result_card_ui(ui: &mut egui::Ui, state: &BuildState) {
    let palette = theme::current(ui.ctx());
    if state.is_running() {
        return;
    }
    match state.final_outcome() {
        Some(Outcome::Failed(message)) => {
            egui::Frame::group(ui.style())
                .fill(palette.error_card)
                .show(ui, |ui| {
                    ui.colored_label(palette.fail, egui::RichText::new("Build failed").strong());
                    ui.add(egui::Label::new(message.as_str()).selectable(true));
                    if let Some(report) = &state.report {
                        ui.label(format!("Logs: {}", report.log_dir.display()));
                    }
                    if !state.console.is_empty() {
                        ui.label("Last console lines:");
                        let tail: Vec<&str> = state
                            .console
                            .tail(theme::ERROR_CARD_CONSOLE_LINES)
                            .collect();
                        ui.add(
                            egui::Label::new(egui::RichText::new(tail.join("\n")).monospace())
                                .selectable(true),
                        );
                    }
                });
        }
        Some(Outcome::Cancelled) => {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.strong("Build cancelled");
                for c in &state.cleanups {
                    ui.label(format!("cleaned up: {c}"));
                }
            });
        }
        Some(Outcome::Done | Outcome::Skipped(_)) => {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.colored_label(palette.ok, egui::RichText::new("Build finished").strong());
                if let Some(artifact) = state.artifact() {
                    let size = std::fs::metadata(artifact)
                        .map(|m| format!(" ({})", format_bytes(m.len())))
                        .unwrap_or_default();
                    ui.add(
                        egui::Label::new(format!("Artifact: {}{size}", artifact.display()))
                            .selectable(true),
                    );
                }
                if let Some(report) = &state.report {
                    ui.label(format!("Logs: {}", report.log_dir.display()));
                }
            });
        }
        None => {}
    }
}

fn steps_ui(ui: &mut egui::Ui, state: &BuildState, now: Instant) {
    let palette = theme::current(ui.ctx());
    egui::Grid::new("steps")
        .num_columns(3)
        .spacing([theme::GAP * 2.0, theme::GAP * 0.5])
        .show(ui, |ui| {
            for step in &state.steps {
                let (word, colour) = match &step.state {
                    StepState::Pending => ("pending", palette.muted),
                    StepState::Running => ("running", palette.running),
                    StepState::Done => ("done", palette.ok),
                    StepState::Skipped(_) => ("skipped", palette.warn),
                    StepState::Failed(_) => ("failed", palette.fail),
                    StepState::Cancelled => ("cancelled", palette.warn),
                };
                ui.label(&step.name);
                let detail = match &step.state {
                    StepState::Skipped(why) => format!("{word}: {why}"),
                    StepState::Failed(why) => format!("{word}: {why}"),
                    _ => word.to_string(),
                };
                ui.colored_label(colour, detail);
                let duration = step
                    .duration
                    .or_else(|| step.started.map(|s| now - s))
                    .map(format_duration)
                    .unwrap_or_default();
                ui.label(duration);
                ui.end_row();
            }
        });
}

/// A log view that lays out only the visible rows, so a million lines scroll smoothly. It
/// follows the newest line unless the user scrolled up.
pub fn log_view_ui(ui: &mut egui::Ui, log: &LogBuffer, id: &str) {
    let row_height = ui.text_style_height(&egui::TextStyle::Monospace);
    egui::Frame::group(ui.style()).show(ui, |ui| {
        egui::ScrollArea::both()
            .id_salt(id)
            .auto_shrink([false, false])
            .stick_to_bottom(true)
            .show_rows(ui, row_height, log.len(), |ui, rows| {
                for i in rows {
                    let line = log.line(i).unwrap_or_default();
                    ui.add(
                        egui::Label::new(egui::RichText::new(line).monospace())
                            .wrap_mode(egui::TextWrapMode::Extend),
                    );
                }
            });
    });
}
