//! The Templates place: the templates published on Exoscale, for a profile and one zone or
//! every zone; a table with name, zone, size, boot mode, created, age and a stale mark (older
//! than a threshold the user sets); a filter; sorting by a column (click its header, again
//! to reverse); per template: rename, copy to a zone, delete (confirmed). Errors are shown in
//! place; zones that answer are listed all the same.

use chrono::{DateTime, Utc};

use super::publish_form::{FormRequest, PublishForm, publish_form_ui};
use super::templates::{Action, Listing, Query};
use super::theme;
use crate::exoscale::describe;
use crate::exoscale::zone::EXOSCALE_ZONES;

/// A column the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// The template's name.
    Name,
    /// The zone.
    Zone,
    /// The size.
    Size,
    /// The boot mode.
    Boot,
    /// The creation date (the age column sorts the same way, reversed).
    Created,
}

impl SortBy {
    /// The column's header.
    fn header(self) -> &'static str {
        match self {
            SortBy::Name => "Name",
            SortBy::Zone => "Zone",
            SortBy::Size => "Size",
            SortBy::Boot => "Boot",
            SortBy::Created => "Created",
        }
    }
}

/// The place's state.
#[derive(Debug)]
pub struct TemplatesPanel {
    /// The column the table is sorted by, and whether descending.
    pub sort: (SortBy, bool),
    /// The profile to use (`None`: the environment, else the default profile).
    pub profile: Option<String>,
    /// One zone, or every zone.
    pub zone: Option<String>,
    /// Templates older than this many days are marked stale.
    pub stale_after_days: u32,
    /// Only templates whose name contains this (case-insensitive).
    pub filter: String,
    /// The last listing (`None`: none yet).
    pub listing: Option<Listing>,
    /// A request is running.
    pub busy: bool,
    /// The template whose actions are open: (zone, id).
    pub selected: Option<(String, String)>,
    /// The new name typed for the selected template.
    pub new_name: String,
    /// The zone to copy the selected template to.
    pub copy_to: String,
    /// A deletion waiting for its confirmation: (zone, id).
    pub confirm_delete: Option<(String, String)>,
    /// The "Publish an image…" form, while it is open.
    pub publish: Option<PublishForm>,
    /// The image's file dialog is open.
    pub choosing_image: bool,
}

impl Default for TemplatesPanel {
    fn default() -> Self {
        Self {
            // Newest first, as listed.
            sort: (SortBy::Created, true),
            profile: None,
            zone: None,
            stale_after_days: describe::DEFAULT_STALE_AFTER_DAYS,
            filter: String::new(),
            listing: None,
            busy: false,
            selected: None,
            new_name: String::new(),
            copy_to: EXOSCALE_ZONES[0].to_string(),
            confirm_delete: None,
            publish: None,
            choosing_image: false,
        }
    }
}

impl TemplatesPanel {
    /// The query the panel's choices describe.
    pub fn query(&self) -> Query {
        Query {
            profile: self.profile.clone(),
            zone: self.zone.clone(),
        }
    }

    /// Takes in a listing.
    pub fn receive(&mut self, listing: Listing) {
        self.listing = Some(listing);
        self.busy = false;
    }
}

/// What the user asked for.
#[derive(Debug)]
pub enum Request {
    /// List again with the panel's query.
    Refresh,
    /// Act on a template, then list again.
    Act(Action),
    /// Open the file dialog for the image to publish.
    ChooseImage,
    /// Check the publish form and, if it is right, publish.
    Publish,
}

/// Draws the place; `profiles` are the names to choose from.
pub fn templates_ui(
    ui: &mut egui::Ui,
    panel: &mut TemplatesPanel,
    profiles: &[String],
    now: DateTime<Utc>,
) -> Option<Request> {
    let palette = theme::current(ui.ctx());
    let mut request = None;
    ui.horizontal(|ui| {
        ui.heading("Templates");
        if ui
            .add_enabled(!panel.busy, egui::Button::new("Refresh"))
            .clicked()
        {
            request = Some(Request::Refresh);
        }
        if panel.busy {
            ui.spinner();
        }
        if ui
            .add_enabled(
                panel.publish.is_none(),
                egui::Button::new("Publish an image…"),
            )
            .on_hover_text("Publish a qcow2 image you already have as a template")
            .clicked()
        {
            panel.publish = Some(PublishForm::default());
        }
    });
    if let Some(form) = &mut panel.publish {
        match publish_form_ui(ui, form, profiles, panel.choosing_image) {
            Some(FormRequest::ChooseImage) => request = Some(Request::ChooseImage),
            Some(FormRequest::Publish) => request = Some(Request::Publish),
            Some(FormRequest::Close) => panel.publish = None,
            None => {}
        }
        ui.add_space(theme::GAP);
    }
    ui.horizontal_wrapped(|ui| {
        let before = (panel.profile.clone(), panel.zone.clone());
        egui::ComboBox::from_label("Profile")
            .selected_text(panel.profile.clone().unwrap_or_else(|| "default".into()))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut panel.profile, None, "default");
                for name in profiles {
                    ui.selectable_value(&mut panel.profile, Some(name.clone()), name);
                }
            });
        egui::ComboBox::from_label("Zones")
            .selected_text(panel.zone.clone().unwrap_or_else(|| "all zones".into()))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut panel.zone, None, "all zones");
                for zone in EXOSCALE_ZONES {
                    ui.selectable_value(&mut panel.zone, Some(zone.to_string()), *zone);
                }
            });
        if (panel.profile.clone(), panel.zone.clone()) != before && !panel.busy {
            request = Some(Request::Refresh);
        }
        let l = ui.label("Stale after");
        ui.add(
            egui::DragValue::new(&mut panel.stale_after_days)
                .range(1..=3650)
                .suffix(" days"),
        )
        .labelled_by(l.id);
        let l = ui.label("Filter");
        ui.add(egui::TextEdit::singleline(&mut panel.filter).desired_width(160.0))
            .labelled_by(l.id);
    });
    ui.add_space(theme::GAP);
    let Some(listing) = &panel.listing else {
        ui.label("Press Refresh to list the templates.");
        return request;
    };
    if let Some(status) = &listing.status {
        match status {
            Ok(done) => ui.colored_label(palette.ok, done),
            Err(why) => ui.colored_label(palette.fail, why),
        };
    }
    for error in &listing.errors {
        ui.colored_label(palette.fail, error);
    }
    let needle = panel.filter.to_lowercase();
    let mut shown: Vec<_> = listing
        .templates
        .iter()
        .filter(|t| needle.is_empty() || t.template.display_name().to_lowercase().contains(&needle))
        .collect();
    sort_templates(&mut shown, panel.sort);
    let stale_count = shown
        .iter()
        .filter(|t| {
            t.template
                .created()
                .is_some_and(|c| describe::is_stale(c, now, panel.stale_after_days))
        })
        .count();
    ui.label(format!(
        "{} template{}, {stale_count} stale",
        shown.len(),
        if shown.len() == 1 { "" } else { "s" }
    ));
    egui::Grid::new("templates")
        .striped(true)
        .spacing([theme::GAP * 2.0, theme::GAP / 2.0])
        .show(ui, |ui| {
            for column in [
                SortBy::Name,
                SortBy::Zone,
                SortBy::Size,
                SortBy::Boot,
                SortBy::Created,
            ] {
                let (by, descending) = panel.sort;
                let sorted = (by == column).then_some(descending);
                let header = ui
                    .horizontal(|ui| {
                        let button = ui
                            .add(
                                egui::Button::new(egui::RichText::new(column.header()).strong())
                                    .frame(false),
                            )
                            .on_hover_text(format!("Sort by {}", column.header().to_lowercase()));
                        if let Some(descending) = sorted {
                            sort_mark_ui(ui, descending);
                        }
                        button
                    })
                    .inner;
                header.widget_info(|| {
                    let state = match sorted {
                        Some(false) => " (sorted ascending)",
                        Some(true) => " (sorted descending)",
                        None => "",
                    };
                    egui::WidgetInfo::labeled(
                        egui::Role::Button,
                        true,
                        format!("{}{state}", column.header()),
                    )
                });
                if header.clicked() {
                    panel.sort = if by == column {
                        (column, !descending)
                    } else {
                        // Dates newest first; the rest from A or the smallest.
                        (column, column == SortBy::Created)
                    };
                }
            }
            ui.strong("Age");
            ui.label("");
            ui.end_row();
            for t in &shown {
                let name = t.template.display_name().to_string();
                let key = (t.zone.clone(), t.template.id.clone());
                let selected = panel.selected.as_ref() == Some(&key);
                if ui.selectable_label(selected, &name).clicked() {
                    panel.selected = if selected { None } else { Some(key.clone()) };
                    panel.new_name = name.clone();
                    panel.confirm_delete = None;
                }
                ui.label(&t.zone);
                ui.label(describe::size(&t.template));
                ui.label(t.template.boot_mode.clone().unwrap_or_else(|| "-".into()));
                ui.label(describe::created(&t.template));
                match t.template.created() {
                    Some(c) if describe::is_stale(c, now, panel.stale_after_days) => {
                        ui.colored_label(palette.warn, format!("{} STALE", describe::age(c, now)))
                    }
                    Some(c) => ui.label(describe::age(c, now)),
                    None => ui.label("-"),
                };
                ui.label("");
                ui.end_row();
            }
        });
    if let Some((zone, id)) = panel.selected.clone()
        && let Some(t) = shown.iter().find(|t| t.zone == zone && t.template.id == id)
    {
        ui.add_space(theme::GAP);
        ui.separator();
        ui.strong(format!("{} ({zone})", t.template.display_name()));
        ui.add(egui::Label::new(egui::RichText::new(&id).monospace()).selectable(true));
        if let Some(d) = &t.template.description {
            ui.label(d);
        }
        ui.horizontal(|ui| {
            let l = ui.label("New name");
            ui.add(egui::TextEdit::singleline(&mut panel.new_name).desired_width(260.0))
                .labelled_by(l.id);
            let ok = !panel.new_name.trim().is_empty() && !panel.busy;
            if ui.add_enabled(ok, egui::Button::new("Rename")).clicked() {
                request = Some(Request::Act(Action::Rename {
                    zone: zone.clone(),
                    id: id.clone(),
                    name: panel.new_name.trim().to_string(),
                }));
            }
        });
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("Copy to")
                .selected_text(panel.copy_to.clone())
                .show_ui(ui, |ui| {
                    for z in EXOSCALE_ZONES.iter().filter(|z| **z != zone) {
                        ui.selectable_value(&mut panel.copy_to, z.to_string(), *z);
                    }
                });
            let ok = panel.copy_to != zone && !panel.busy;
            if ui.add_enabled(ok, egui::Button::new("Copy")).clicked() {
                request = Some(Request::Act(Action::Copy {
                    zone: zone.clone(),
                    id: id.clone(),
                    to: panel.copy_to.clone(),
                }));
            }
        });
        let key = (zone.clone(), id.clone());
        if panel.confirm_delete.as_ref() == Some(&key) {
            ui.horizontal(|ui| {
                ui.colored_label(palette.fail, "This cannot be undone.");
                if ui.button("Really delete").clicked() {
                    panel.confirm_delete = None;
                    panel.selected = None;
                    request = Some(Request::Act(Action::Delete {
                        zone: zone.clone(),
                        id: id.clone(),
                    }));
                }
                if ui.button("Keep").clicked() {
                    panel.confirm_delete = None;
                }
            });
        } else if ui
            .add_enabled(!panel.busy, egui::Button::new("Delete…"))
            .clicked()
        {
            panel.confirm_delete = Some(key);
        }
    }
    // A listing or an action runs in the background (publishing runs in the Build place).
    if matches!(request, Some(Request::Refresh | Request::Act(_))) {
        panel.busy = true;
    }
    request
}

/// A small triangle after a sorted column's header: up for ascending, down for descending
/// (painted: the bundled fonts have no arrow glyphs).
fn sort_mark_ui(ui: &mut egui::Ui, descending: bool) {
    let size = egui::vec2(8.0, ui.text_style_height(&egui::TextStyle::Body));
    let (rect, _) = ui.allocate_exact_size(size, egui::Sense::hover());
    let c = rect.center();
    let (h, w) = (3.0, 4.0);
    let points = if descending {
        vec![
            egui::pos2(c.x - w, c.y - h),
            egui::pos2(c.x + w, c.y - h),
            egui::pos2(c.x, c.y + h),
        ]
    } else {
        vec![
            egui::pos2(c.x - w, c.y + h),
            egui::pos2(c.x + w, c.y + h),
            egui::pos2(c.x, c.y - h),
        ]
    };
    let colour = ui.visuals().strong_text_color();
    ui.painter().add(egui::Shape::convex_polygon(
        points,
        colour,
        egui::Stroke::NONE,
    ));
}

/// Sorts the listed templates by `by`, descending or not; ties keep a stable order by
/// creation date, then zone, then id, so a refresh never shuffles equal rows.
pub fn sort_templates(
    templates: &mut [&super::templates::Listed],
    (by, descending): (SortBy, bool),
) {
    templates.sort_by(|a, b| {
        let (ta, tb) = (&a.template, &b.template);
        let primary = match by {
            SortBy::Name => ta
                .display_name()
                .to_lowercase()
                .cmp(&tb.display_name().to_lowercase()),
            SortBy::Zone => a.zone.cmp(&b.zone),
            SortBy::Size => ta.size.cmp(&tb.size),
            SortBy::Boot => ta.boot_mode.cmp(&tb.boot_mode),
            SortBy::Created => ta.created().cmp(&tb.created()),
        };
        let primary = if descending {
            primary.reverse()
        } else {
            primary
        };
        primary
            .then_with(|| tb.created().cmp(&ta.created()))
            .then_with(|| a.zone.cmp(&b.zone))
            .then_with(|| ta.id.cmp(&tb.id))
    });
}

#[cfg(test)]
mod tests {
    use super::super::templates::Listed;
    use super::*;
    use crate::exoscale::model::Template;

    fn listed(zone: &str, name: &str, size: u64, created: &str) -> Listed {
        Listed {
            zone: zone.into(),
            template: Template {
                id: format!("{zone}-{name}"),
                name: Some(name.into()),
                size: Some(size),
                created_at: Some(created.into()),
                ..Template::default()
            },
        }
    }

    fn names(rows: &[&Listed]) -> Vec<String> {
        rows.iter()
            .map(|t| t.template.display_name().to_string())
            .collect()
    }

    #[test]
    fn every_column_sorts_both_ways_with_a_stable_tie_order() {
        let all = [
            listed("de-fra-1", "b", 20, "2026-01-02T00:00:00Z"),
            listed("at-vie-1", "A", 10, "2026-03-01T00:00:00Z"),
            listed("ch-gva-2", "c", 10, "2026-02-01T00:00:00Z"),
        ];
        let mut rows: Vec<&Listed> = all.iter().collect();
        sort_templates(&mut rows, (SortBy::Name, false));
        assert_eq!(names(&rows), ["A", "b", "c"], "names ignore case");
        sort_templates(&mut rows, (SortBy::Name, true));
        assert_eq!(names(&rows), ["c", "b", "A"]);
        sort_templates(&mut rows, (SortBy::Created, true));
        assert_eq!(names(&rows), ["A", "c", "b"], "newest first");
        sort_templates(&mut rows, (SortBy::Zone, false));
        assert_eq!(names(&rows), ["A", "c", "b"]);
        // Equal sizes: the newer one first, whichever way the column goes.
        sort_templates(&mut rows, (SortBy::Size, false));
        assert_eq!(names(&rows), ["A", "c", "b"]);
        sort_templates(&mut rows, (SortBy::Size, true));
        assert_eq!(names(&rows), ["b", "A", "c"]);
    }
}
