//! The History place: past builds from the history file (the window's and `kiln build`'s),
//! newest first — recipe, start, duration, outcome, artifact, templates — and the chosen
//! build's details: steps with their durations, variables (sensitive ones by name only),
//! artifacts, templates, image checks, and Rebuild.

use std::path::Path;

use chrono::Local;

use super::theme;
use crate::history::{BuildRecord, RunOutcome, StepEnd, VarOrigin};
use crate::recipe::units::format_elapsed;

/// How many builds the place lists.
pub const LIMIT: usize = 200;

/// The place's state.
#[derive(Debug, Default)]
pub struct HistoryPanel {
    /// The last read: builds newest first, or why the history could not be read.
    pub records: Option<Result<Vec<BuildRecord>, String>>,
    /// A read is running.
    pub busy: bool,
    /// The build whose details are shown (its row id).
    pub selected: Option<i64>,
    /// A build ended since the last read: read again when the place is shown.
    pub stale: bool,
}

impl HistoryPanel {
    /// Takes in a read.
    pub fn receive(&mut self, read: Result<Vec<BuildRecord>, String>) {
        self.busy = false;
        self.stale = false;
        if let Ok(records) = &read
            && !records
                .iter()
                .any(|r| r.id.is_some() && r.id == self.selected)
        {
            self.selected = records.first().and_then(|r| r.id);
        }
        self.records = Some(read);
    }

    /// Whether the place should read the history now.
    pub fn wants_read(&self) -> bool {
        !self.busy && (self.records.is_none() || self.stale)
    }

    /// The builds read, if the read succeeded.
    pub fn list(&self) -> &[BuildRecord] {
        match &self.records {
            Some(Ok(list)) => list,
            _ => &[],
        }
    }

    /// The build whose details are shown.
    pub fn selected_record(&self) -> Option<&BuildRecord> {
        self.list()
            .iter()
            .find(|r| r.id.is_some() && r.id == self.selected)
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Read the history again.
    Refresh,
    /// Open the recipe of the build with this id, its variables filled in.
    Rebuild(i64),
}

/// `2026-11-27 14:02` in local time.
pub fn local_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// What an interrupted build means.
const INTERRUPTED_WHY: &str = "the kiln that ran it stopped before the build ended (killed, crashed, or the machine restarted)";

fn outcome_label(ui: &mut egui::Ui, outcome: &RunOutcome) {
    let palette = theme::current(ui.ctx());
    match outcome {
        RunOutcome::Done => ui.colored_label(palette.ok, "done"),
        RunOutcome::Failed(_) => ui.colored_label(palette.fail, "failed"),
        RunOutcome::Cancelled => ui.colored_label(palette.warn, "cancelled"),
        RunOutcome::Unfinished => ui
            .colored_label(palette.muted, "unfinished")
            .on_hover_text("still running (or recorded by an older kiln that cannot tell)"),
        RunOutcome::Interrupted => ui
            .colored_label(palette.warn, "interrupted")
            .on_hover_text(INTERRUPTED_WHY),
    };
}

fn step_label(ui: &mut egui::Ui, end: StepEnd) {
    let palette = theme::current(ui.ctx());
    let colour = match end {
        StepEnd::Done => palette.ok,
        StepEnd::Skipped | StepEnd::Cancelled => palette.warn,
        StepEnd::Failed => palette.fail,
        StepEnd::NotRun | StepEnd::Interrupted => palette.muted,
    };
    ui.colored_label(colour, end.as_str());
}

/// Draws the place; `db` is the history file (`None`: the history is off).
pub fn history_ui(
    ui: &mut egui::Ui,
    panel: &mut HistoryPanel,
    db: Option<&Path>,
) -> Option<Request> {
    let palette = theme::current(ui.ctx());
    let mut request = None;
    ui.horizontal(|ui| {
        ui.heading("History");
        if ui
            .add_enabled(!panel.busy && db.is_some(), egui::Button::new("Refresh"))
            .clicked()
        {
            request = Some(Request::Refresh);
        }
        if panel.busy {
            ui.spinner();
        }
    });
    let Some(db) = db else {
        ui.label("The history is off in this window.");
        return request;
    };
    ui.weak(db.display().to_string());
    ui.add_space(theme::GAP);
    let records = match &panel.records {
        None => {
            ui.label("Reading the history…");
            return request;
        }
        Some(Err(why)) => {
            ui.colored_label(palette.fail, why);
            return request;
        }
        Some(Ok(records)) => records,
    };
    if records.is_empty() {
        ui.label(
            "No build recorded yet: builds from this window and from `kiln build` are listed here.",
        );
        return request;
    }
    ui.label(format!(
        "{} build{}, newest first",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    ));
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("history-table")
        .max_height(ui.available_height() * 0.45)
        .show(ui, |ui| {
            egui::Grid::new("history")
                .striped(true)
                .spacing([theme::GAP * 2.0, theme::GAP / 2.0])
                .show(ui, |ui| {
                    for header in [
                        "Recipe",
                        "Build",
                        "Started",
                        "Duration",
                        "Outcome",
                        "Artifact",
                        "Templates",
                    ] {
                        ui.strong(header);
                    }
                    ui.end_row();
                    for r in records {
                        let selected = r.id.is_some() && r.id == panel.selected;
                        if ui
                            .selectable_label(selected, r.recipe_name())
                            .on_hover_text(r.recipe.display().to_string())
                            .clicked()
                        {
                            clicked = r.id;
                        }
                        ui.label(&r.build_name);
                        ui.label(local_time(&r.started));
                        ui.label(r.duration.map(format_elapsed).unwrap_or_else(|| "-".into()));
                        outcome_label(ui, &r.outcome);
                        match r.main_artifact() {
                            Some(a) => ui
                                .label(
                                    a.path
                                        .file_name()
                                        .map(|n| n.to_string_lossy().into_owned())
                                        .unwrap_or_default(),
                                )
                                .on_hover_text(a.path.display().to_string()),
                            None => ui.label("-"),
                        };
                        if r.templates.is_empty() {
                            ui.label("-");
                        } else if let Some(name) = &r.template_name {
                            // By name, in its zones: the ids are in the tooltip and details.
                            let zones: Vec<&str> =
                                r.templates.iter().map(|(zone, _)| zone.as_str()).collect();
                            ui.label(format!("“{name}” in {}", zones.join(", ")))
                                .on_hover_text(r.templates_text());
                        } else {
                            // Zones and short ids: the whole ids are in the details below.
                            let short: Vec<String> = r
                                .templates
                                .iter()
                                .map(|(zone, id)| format!("{zone} {}…", id.get(..8).unwrap_or(id)))
                                .collect();
                            ui.label(short.join(", ")).on_hover_text(r.templates_text());
                        }
                        ui.end_row();
                    }
                });
        });
    if let Some(id) = clicked {
        panel.selected = Some(id);
    }
    ui.separator();
    if let Some(record) = panel.selected_record()
        && details_ui(ui, record)
        && let Some(id) = record.id
    {
        request = Some(Request::Rebuild(id));
    }
    request
}

/// The details of one build; returns whether Rebuild was pressed.
fn details_ui(ui: &mut egui::Ui, r: &BuildRecord) -> bool {
    let palette = theme::current(ui.ctx());
    let mut rebuild = false;
    egui::ScrollArea::vertical()
        .id_salt("history-details")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                let title = r.title.clone().unwrap_or_else(|| r.recipe_name());
                ui.strong(format!("Build #{} — {title}", r.id.unwrap_or_default()));
                rebuild = ui
                    .button("Rebuild")
                    .on_hover_text(
                        "open the recipe with this build's variables (sensitive ones are never stored)",
                    )
                    .clicked();
            });
            ui.label(format!("Recipe: {}", r.recipe.display()));
            let origin = match r.origin {
                crate::history::Origin::Gui => "the window",
                crate::history::Origin::Cli => "kiln build",
            };
            ui.label(format!("Build: {} (from {origin})", r.build_name));
            let ended = r.ended.as_ref().map(local_time).unwrap_or_else(|| "-".into());
            ui.label(format!(
                "Started {} · ended {ended} · {}",
                local_time(&r.started),
                r.duration.map(format_elapsed).unwrap_or_else(|| "-".into())
            ));
            match &r.outcome {
                RunOutcome::Failed(why) => {
                    let at = r
                        .stopped_at
                        .as_ref()
                        .map(|s| format!(" at {s}"))
                        .unwrap_or_default();
                    ui.colored_label(palette.fail, format!("Failed{at}: {why}"));
                }
                RunOutcome::Cancelled => {
                    let at = r
                        .stopped_at
                        .as_ref()
                        .map(|s| format!(" at {s}"))
                        .unwrap_or_default();
                    ui.colored_label(palette.warn, format!("Cancelled{at}"));
                }
                RunOutcome::Done => {
                    ui.colored_label(palette.ok, "Built");
                }
                RunOutcome::Unfinished => {
                    ui.colored_label(palette.muted, "Unfinished");
                }
                RunOutcome::Interrupted => {
                    let at = r
                        .running_step()
                        .map(|s| format!(" at {s}"))
                        .unwrap_or_default();
                    ui.colored_label(palette.warn, format!("Interrupted{at}"))
                        .on_hover_text(INTERRUPTED_WHY);
                }
            }
            if r.warnings > 0 {
                ui.colored_label(palette.warn, format!("{} warning(s)", r.warnings));
            }
            if let Some(dir) = &r.log_dir {
                ui.weak(format!("Logs: {}", dir.display()));
            }
            ui.add_space(theme::GAP);
            ui.strong("Steps");
            egui::Grid::new("history-steps")
                .striped(true)
                .spacing([theme::GAP * 2.0, theme::GAP / 2.0])
                .show(ui, |ui| {
                    for step in &r.steps {
                        ui.label(&step.name);
                        step_label(ui, step.end);
                        ui.label(
                            step.duration
                                .map(format_elapsed)
                                .unwrap_or_else(|| "-".into()),
                        );
                        ui.label(step.detail.clone().unwrap_or_default());
                        ui.end_row();
                    }
                });
            if !r.artifacts.is_empty() || !r.templates.is_empty() {
                ui.add_space(theme::GAP);
                ui.strong("Results");
                for a in &r.artifacts {
                    ui.label(format!("Artifact: {}", a.path.display()));
                }
                for (zone, id) in &r.templates {
                    match &r.template_name {
                        Some(name) => ui.label(format!("Template “{name}” in {zone}: {id}")),
                        None => ui.label(format!("Template in {zone}: {id}")),
                    };
                }
            }
            if !r.checks.is_empty() {
                ui.add_space(theme::GAP);
                ui.strong("Image checks");
                for c in &r.checks {
                    let (colour, mark) = if c.passed {
                        (palette.ok, "passed")
                    } else {
                        (palette.fail, "FAILED")
                    };
                    ui.colored_label(colour, format!("{mark} {}: {}", c.name, c.detail));
                }
            }
            if !r.variables.is_empty() {
                ui.add_space(theme::GAP);
                ui.strong("Variables");
                egui::Grid::new("history-variables")
                    .spacing([theme::GAP * 2.0, theme::GAP / 2.0])
                    .show(ui, |ui| {
                        for v in &r.variables {
                            ui.label(&v.name);
                            if v.sensitive {
                                ui.colored_label(palette.warn, "sensitive: not stored");
                            } else if v.origin == VarOrigin::Environment {
                                ui.weak("from the environment: not stored");
                            } else {
                                let value = v.value.clone().unwrap_or_default();
                                match v.origin {
                                    VarOrigin::Default => ui.weak(format!("{value} (default)")),
                                    _ => ui.label(value),
                                };
                            }
                            ui.end_row();
                        }
                    });
            }
        });
    rebuild
}
