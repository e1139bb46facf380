//! The Build panel: a tab per build of this session, cancel and continue, the step list with durations, the running step's progress with
//! rate and ETA, the output and the serial console (virtualised: only visible rows are laid
//! out), and a card with the result: the artifact, or the error and the last console lines.

use std::path::PathBuf;
use std::time::Instant;

use crate::build::event::{Outcome, Unit};
use crate::recipe::units::{format_bytes, format_elapsed};

use super::build_state::{BuildState, StepState};
use super::log_buffer::LogBuffer;
use super::log_search::{self, LogSearch};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildAction {
    /// Cancel the running build.
    Cancel,
    /// Continue the build paused at a breakpoint.
    Continue,
    /// Show this folder in the desktop's file manager (the logs, the artifact's folder).
    OpenFolder(PathBuf),
    /// Run the same build again (same recipe, same values) in a new tab.
    Rebuild,
    /// Run it again with the step cache, provisioner N and after run again.
    RebuildFrom(usize),
    /// Show the Templates place (after a build registered templates).
    OpenTemplates,
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

fn format_amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => format_bytes(n),
        Unit::Items => n.to_string(),
    }
}

/// The log view's least height in the build panel's split.
const MIN_LOG_HEIGHT: f32 = 160.0;

/// Draws the panel for `state`; `search` is the log view's search, `build_key` tells this
/// build's logs from another's. Returns what the user asked for.
pub fn build_ui(
    ui: &mut egui::Ui,
    state: &BuildState,
    tab: &mut LogTab,
    search: &mut LogSearch,
    build_key: u64,
    now: Instant,
) -> Option<BuildAction> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    // The split's first height comes from the whole panel, measured before the heading: the
    // heading row is taller while the Cancel button shows, and a split sized after it would
    // sit a few pixels lower or higher depending on whether the first frame saw the build
    // running or already ended.
    let log_height = (ui.available_height() * 0.45).max(MIN_LOG_HEIGHT);
    ui.horizontal(|ui| {
        ui.heading(&state.name);
        let elapsed = state.duration.unwrap_or_else(|| now - state.started);
        ui.label(format!("· {} elapsed", format_elapsed(elapsed)));
        if state.is_running() {
            if state.cancelling {
                ui.add_enabled(false, egui::Button::new("Cancelling…"));
            } else if ui.button("Cancel").clicked() {
                action = Some(BuildAction::Cancel);
            }
        }
    });
    // The log below, in a resizable split that never shrinks it to nothing; the cards and
    // steps above scroll when the window is small.
    egui::Panel::bottom("build-log")
        .resizable(true)
        .min_size(MIN_LOG_HEIGHT)
        .default_size(log_height)
        .frame(egui::Frame::NONE)
        .show(ui, |ui| {
            let mut copy = false;
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
                ui.separator();
                search_bar_ui(ui, search);
                copy = ui
                    .button("Copy all")
                    .on_hover_text("Copy every line of this log to the clipboard")
                    .clicked();
            });
            let (log, id, key) = match tab {
                LogTab::Output => (&state.output, "output", build_key * 2),
                LogTab::Console => (&state.console, "console", build_key * 2 + 1),
            };
            if copy {
                ui.ctx().copy_text(log.text());
            }
            if search.update_within(log, key, log_search::SCAN_TIME_PER_FRAME) {
                ui.ctx().request_repaint();
            }
            log_rows_ui(ui, log, id, Some(search));
        });
    egui::CentralPanel::default()
        .frame(egui::Frame::NONE)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("build-overview")
                .auto_shrink([false, false])
                .show(ui, |ui| {
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
                    if let Some(asked) = result_card_ui(ui, state) {
                        action = Some(asked);
                    }
                    if let Some(asked) = steps_ui(ui, state, now) {
                        action = Some(asked);
                    }
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
                            text.push_str(&format!(" · ETA {}", format_elapsed(eta)));
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
                });
        });
    action
}

/// The search field, the match count, previous/next.
fn search_bar_ui(ui: &mut egui::Ui, search: &mut LogSearch) {
    let find = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::F);
    let focus = ui.input_mut(|i| i.consume_shortcut(&find));
    let label = ui.label("Search").on_hover_text("Ctrl+F");
    let field = ui
        .add(
            egui::TextEdit::singleline(&mut search.query)
                .hint_text("text in the log")
                .desired_width(180.0),
        )
        .labelled_by(label.id);
    if focus {
        field.request_focus();
    }
    if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
        if ui.input(|i| i.modifiers.shift) {
            search.previous();
        } else {
            search.next();
        }
        field.request_focus();
    }
    if search.query.is_empty() {
        return;
    }
    let count = search.count();
    let position = search.current().map_or(0, |c| c + 1);
    ui.label(if count == 0 {
        "no match".to_string()
    } else {
        format!("{position} / {count}")
    });
    if ui
        .add_enabled(count > 0, egui::Button::new("Previous"))
        .on_hover_text("Previous match (Shift+Enter)")
        .clicked()
    {
        search.previous();
    }
    if ui
        .add_enabled(count > 0, egui::Button::new("Next"))
        .on_hover_text("Next match (Enter)")
        .clicked()
    {
        search.next();
    }
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

/// "Logs: …" with a button that shows the folder; whether it was pressed.
fn folder_line_ui(ui: &mut egui::Ui, text: String, button: &str) -> bool {
    ui.horizontal(|ui| {
        ui.add(egui::Label::new(text).selectable(true));
        ui.button(button).clicked()
    })
    .inner
}

fn result_card_ui(ui: &mut egui::Ui, state: &BuildState) -> Option<BuildAction> {
    let palette = theme::current(ui.ctx());
    if state.is_running() {
        return None;
    }
    let mut action = None;
    match state.final_outcome() {
        Some(Outcome::Failed(message)) => {
            egui::Frame::group(ui.style())
                .fill(palette.error_card)
                .show(ui, |ui| {
                    ui.colored_label(palette.fail, egui::RichText::new("Build failed").strong());
                    ui.add(
                        egui::Label::new(super::wording::for_the_window(message)).selectable(true),
                    );
                    if let Some(report) = &state.report
                        && folder_line_ui(
                            ui,
                            format!("Logs: {}", report.log_dir.display()),
                            "Open log folder",
                        )
                    {
                        action = Some(BuildAction::OpenFolder(report.log_dir.clone()));
                    }
                    if ui
                        .button("Build again")
                        .on_hover_text("The same recipe with the same values, in a new tab")
                        .clicked()
                    {
                        action = Some(BuildAction::Rebuild);
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
                if ui.button("Build again").clicked() {
                    action = Some(BuildAction::Rebuild);
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
                    let folder = artifact.parent().unwrap_or(artifact).to_path_buf();
                    if folder_line_ui(
                        ui,
                        format!("Artifact: {}{size}", artifact.display()),
                        "Open folder",
                    ) {
                        action = Some(BuildAction::OpenFolder(folder));
                    }
                }
                if let Some(report) = &state.report {
                    for (zone, id) in &report.templates {
                        ui.add(
                            egui::Label::new(format!("Template in {zone}: {id}")).selectable(true),
                        );
                    }
                    if !report.templates.is_empty() && ui.button("Open in Templates").clicked() {
                        action = Some(BuildAction::OpenTemplates);
                    }
                    if folder_line_ui(
                        ui,
                        format!("Logs: {}", report.log_dir.display()),
                        "Open log folder",
                    ) {
                        action = Some(BuildAction::OpenFolder(report.log_dir.clone()));
                    }
                }
            });
        }
        None => {}
    }
    action
}

/// The provisioner number of a step named "Provision N/M: type".
fn provisioner_number(step: &str) -> Option<usize> {
    step.strip_prefix("Provision ")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The step list; after the build ended, each provisioner's row offers "Rebuild from here".
fn steps_ui(ui: &mut egui::Ui, state: &BuildState, now: Instant) -> Option<BuildAction> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    let ended = state.outcome.is_some();
    egui::Grid::new("steps")
        .num_columns(3)
        .spacing([theme::GAP * 2.0, theme::GAP * 0.5])
        .show(ui, |ui| {
            for step in &state.steps {
                let (word, colour) = match &step.state {
                    StepState::Pending => ("pending", palette.muted),
                    StepState::Running => ("running", palette.running),
                    StepState::Done => ("done", palette.ok),
                    // Restored from the step cache: done, by an earlier build.
                    StepState::Skipped(why) if why.starts_with("cached") => {
                        ("cached", palette.ok)
                    }
                    StepState::Skipped(_) => ("skipped", palette.warn),
                    StepState::Failed(_) => ("failed", palette.fail),
                    StepState::Cancelled => ("cancelled", palette.warn),
                };
                ui.label(&step.name);
                let duration = step
                    .duration
                    .or_else(|| step.started.map(|s| now - s))
                    .map(format_elapsed)
                    .unwrap_or_default();
                ui.label(duration);
                let detail = match &step.state {
                    StepState::Skipped(why) if word == "cached" => why.clone(),
                    StepState::Skipped(why) => format!("{word}: {why}"),
                    StepState::Failed(why) => format!("{word}: {why}"),
                    _ => word.to_string(),
                };
                // Last, so a long reason wraps in the width left instead of running off.
                match provisioner_number(&step.name).filter(|_| ended) {
                    Some(n) => {
                        ui.horizontal(|ui| {
                            if ui
                                .small_button("Rebuild from here")
                                .on_hover_text(format!(
                                    "Build again with the step cache: resume after provisioner {}, run {n} and after again",
                                    n - 1
                                ))
                                .clicked()
                            {
                                action = Some(BuildAction::RebuildFrom(n));
                            }
                            ui.add(
                                egui::Label::new(egui::RichText::new(detail).color(colour))
                                    .wrap(),
                            );
                        });
                    }
                    None => {
                        ui.add(egui::Label::new(egui::RichText::new(detail).color(colour)).wrap());
                    }
                }
                ui.end_row();
            }
        });
    action
}

/// A log view that lays out only the visible rows, so a million lines scroll smoothly. It
/// follows the newest line unless the user scrolled up.
pub fn log_view_ui(ui: &mut egui::Ui, log: &LogBuffer, id: &str) {
    log_rows_ui(ui, log, id, None);
}

/// The log view, with the lines that match `search` marked and its current match brought
/// into sight when it asks.
fn log_rows_ui(ui: &mut egui::Ui, log: &LogBuffer, id: &str, search: Option<&mut LogSearch>) {
    let row_height = ui.text_style_height(&egui::TextStyle::Monospace);
    let palette = theme::current(ui.ctx());
    let (current, reveal) = match &search {
        Some(s) => (s.current_row(log), s.reveal),
        None => (None, false),
    };
    let search = search.map(|s| {
        s.reveal = false;
        &*s
    });
    egui::Frame::group(ui.style()).show(ui, |ui| {
        let mut area = egui::ScrollArea::both()
            .id_salt(id)
            .auto_shrink([false, false])
            .stick_to_bottom(true);
        if reveal && let Some(row) = current {
            // A few rows of context above the match.
            let spacing = ui.spacing().item_spacing.y;
            let top = row.saturating_sub(3) as f32 * (row_height + spacing);
            area = area.vertical_scroll_offset(top);
        }
        area.show_rows(ui, row_height, log.len(), |ui, rows| {
            for i in rows {
                let line = log.line(i).unwrap_or_default();
                let mut text = egui::RichText::new(line).monospace();
                if Some(i) == current {
                    text = text.background_color(palette.search_current);
                } else if search.is_some_and(|s| s.is_match(log, i)) {
                    text = text.background_color(palette.search_match);
                }
                ui.add(egui::Label::new(text).wrap_mode(egui::TextWrapMode::Extend));
            }
        });
    });
}
