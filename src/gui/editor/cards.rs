//! The Recipe tab: builders, provisioners and post-processors as cards with their main
//! options. Each field shows the document's value; typing writes it back into the text
//! (see [`super::document`]), so everything a card does not show stays as it was.

use serde_json::Value;

use super::document::{self, DocPath, Seg};
use super::{Editor, Notice, Parsed};
use crate::gui::theme;

/// How a field shows and writes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// One line of text; a number or boolean stays one when the text still reads as one.
    Text,
    /// Like `Text`, but digits written into an empty field become a JSON number.
    Number,
    /// A list of strings, one per line.
    Lines,
    /// A list of strings, separated by commas.
    Csv,
}

/// One editable option of a card.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// The JSON key.
    pub key: &'static str,
    /// The label shown (and the field's accessible name).
    pub label: &'static str,
    /// How it is shown and written.
    pub kind: FieldKind,
}

const fn field(key: &'static str, label: &'static str, kind: FieldKind) -> FieldSpec {
    FieldSpec { key, label, kind }
}

/// The builder options the card shows.
pub const BUILDER_FIELDS: &[FieldSpec] = &[
    field("iso_url", "Base image URL", FieldKind::Text),
    field("iso_checksum", "Checksum", FieldKind::Text),
    field("disk_size", "Disk size", FieldKind::Text),
    field("cpus", "CPUs", FieldKind::Number),
    field("memory", "Memory (MiB)", FieldKind::Number),
    field("ssh_username", "SSH user", FieldKind::Text),
];

/// The options a provisioner's card shows, by type (`None`: none beyond its type).
pub fn provisioner_fields(kind: &str, options: &serde_json::Map<String, Value>) -> Vec<FieldSpec> {
    let sources = [
        field("script", "Script", FieldKind::Text),
        field("scripts", "Scripts (one per line)", FieldKind::Lines),
        field("inline", "Inline commands (one per line)", FieldKind::Lines),
    ];
    match kind {
        "shell" | "shell-local" => {
            let mut out: Vec<FieldSpec> = sources
                .iter()
                .filter(|f| options.contains_key(f.key))
                .copied()
                .collect();
            if out.is_empty() {
                out = sources.to_vec();
            }
            if kind == "shell-local" && options.contains_key("command") {
                out.push(field("command", "Command", FieldKind::Text));
            }
            out
        }
        "file" => vec![
            field("source", "Source", FieldKind::Text),
            field("destination", "Destination", FieldKind::Text),
        ],
        _ => Vec::new(),
    }
}

/// The options a post-processor's card shows, by type.
pub fn post_processor_fields(
    kind: &str,
    options: &serde_json::Map<String, Value>,
) -> Vec<FieldSpec> {
    match kind {
        "exoscale-import" => {
            let mut out = vec![
                field("image_bucket", "Bucket", FieldKind::Text),
                field("image_zone", "Upload zone", FieldKind::Text),
                field(
                    "template_zones",
                    "Template zones (comma-separated)",
                    FieldKind::Csv,
                ),
            ];
            if options.contains_key("template_zone") {
                out.push(field("template_zone", "Template zone", FieldKind::Text));
            }
            out.push(field("template_name", "Template name", FieldKind::Text));
            out
        }
        "kiln-test" => vec![
            field("inline", "Test commands (one per line)", FieldKind::Lines),
            field("ssh_timeout", "SSH timeout", FieldKind::Text),
        ],
        _ => Vec::new(),
    }
}

/// The text a field shows for `value`.
pub fn display(kind: FieldKind, value: Option<&Value>) -> String {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match (kind, value) {
        (_, None) => String::new(),
        (FieldKind::Lines, Some(Value::Array(items))) => {
            items.iter().map(scalar).collect::<Vec<_>>().join("\n")
        }
        (FieldKind::Csv, Some(Value::Array(items))) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        (_, Some(v)) => scalar(v),
    }
}

fn list(kind: FieldKind, text: &str) -> Vec<String> {
    let items: Vec<&str> = match kind {
        FieldKind::Csv => text.split(',').map(str::trim).collect(),
        _ => text.lines().map(|l| l.trim_end_matches('\r')).collect(),
    };
    items
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// What the field's text means, written the way `display` would show it (so a field keeps
/// what is being typed — an empty last line, a trailing comma — while it means the same).
pub fn normalise(kind: FieldKind, text: &str) -> String {
    match kind {
        FieldKind::Lines => list(kind, text).join("\n"),
        FieldKind::Csv => list(kind, text).join(", "),
        _ => text.to_string(),
    }
}

/// The JSON value for a field's text, given what the document had there.
pub fn to_value(kind: FieldKind, text: &str, old: Option<&Value>) -> Value {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match kind {
        FieldKind::Lines | FieldKind::Csv => {
            let items = list(kind, text);
            if matches!(old, Some(Value::String(_))) && items.len() <= 1 {
                return Value::String(items.into_iter().next().unwrap_or_default());
            }
            Value::Array(items.into_iter().map(Value::String).collect())
        }
        FieldKind::Text | FieldKind::Number => {
            let was_number = matches!(old, Some(Value::Number(_)));
            let unset = old.is_none_or(|v| v.is_null() || v.as_str() == Some(""));
            if digits
                && (was_number || (kind == FieldKind::Number && unset))
                && let Ok(n) = text.parse::<u64>()
            {
                return Value::from(n);
            }
            if matches!(old, Some(Value::Bool(_))) && (text == "true" || text == "false") {
                return Value::Bool(text == "true");
            }
            Value::String(text.to_string())
        }
    }
}

/// One post-processor as written: a bare name, or an object with options.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcessorRef {
    /// Where it is in the document.
    pub path: DocPath,
    /// Its type.
    pub kind: String,
    /// 0-based chain (top-level entry) and, inside a sequence, 0-based step.
    pub place: (usize, Option<usize>),
    /// Whether it is written as a bare name (no options to edit).
    pub bare: bool,
}

/// Every post-processor of `doc` in order: entries of `post-processors` may be a name, an
/// object, or an array of those (a sequence).
pub fn post_processors(doc: &Value) -> Vec<PostProcessorRef> {
    let Some(entries) = doc.get("post-processors").and_then(Value::as_array) else {
        return Vec::new();
    };
    let one = |v: &Value, path: DocPath, place| match v {
        Value::String(name) => Some(PostProcessorRef {
            path,
            kind: name.clone(),
            place,
            bare: true,
        }),
        Value::Object(m) => Some(PostProcessorRef {
            path,
            kind: m
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("(no type)")
                .to_string(),
            place,
            bare: false,
        }),
        _ => None,
    };
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let base: DocPath = vec![Seg::from("post-processors"), Seg::Index(i)];
        match entry {
            Value::Array(steps) => {
                for (j, step) in steps.iter().enumerate() {
                    let mut path = base.clone();
                    path.push(Seg::Index(j));
                    out.extend(one(step, path, (i, Some(j))));
                }
            }
            other => out.extend(one(other, base, (i, None))),
        }
    }
    out
}

/// Draws the cards for the editor's document.
pub fn cards_ui(ui: &mut egui::Ui, editor: &mut Editor) {
    let doc = match editor.parsed() {
        Parsed::Valid(doc) => doc.clone(),
        Parsed::Invalid { message, line, col } => {
            let palette = theme::current(ui.ctx());
            let first = editor.problems().errors().next().cloned();
            let (line, col) = first
                .as_ref()
                .and_then(|d| Some((d.line?, d.col?)))
                .unwrap_or((
                    u32::try_from(*line).unwrap_or(1),
                    u32::try_from(*col).unwrap_or(1),
                ));
            let why = first.map_or_else(|| message.clone(), |d| d.message);
            egui::Frame::new()
                .fill(palette.error_card)
                .inner_margin(theme::GAP)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.colored_label(
                        palette.fail,
                        format!("The JSON is invalid at line {line}, column {col}: {why}"),
                    );
                    ui.label(
                        "The cards come back when it parses. Fix it in the JSON tab, or Revert.",
                    );
                    if ui.button("Show in JSON").clicked() {
                        editor.jump = Some((line, col));
                    }
                });
            return;
        }
    };
    let mut edits: Vec<(DocPath, Value)> = Vec::new();
    let Some(top) = doc.as_object() else {
        ui.label("This document is not a JSON object: edit it in the JSON tab.");
        return;
    };
    if let Some(builders) = top.get("builders").and_then(Value::as_array) {
        for (i, b) in builders.iter().enumerate() {
            let Some(options) = b.as_object() else {
                continue;
            };
            let kind = options.get("type").and_then(Value::as_str).unwrap_or("?");
            let mut title = format!("Builder · {kind}");
            if let Some(name) = options.get("name").and_then(Value::as_str) {
                title.push_str(&format!(" · {name}"));
            }
            let base = vec![Seg::from("builders"), Seg::Index(i)];
            card_ui(
                ui,
                editor,
                &title,
                &base,
                options,
                BUILDER_FIELDS,
                &mut edits,
            );
        }
    } else {
        ui.label("No builders: add one in the JSON tab.");
    }
    if let Some(provisioners) = top.get("provisioners").and_then(Value::as_array) {
        for (i, p) in provisioners.iter().enumerate() {
            let Some(options) = p.as_object() else {
                continue;
            };
            let kind = options.get("type").and_then(Value::as_str).unwrap_or("?");
            let title = format!("Provisioner {} · {kind}", i + 1);
            let base = vec![Seg::from("provisioners"), Seg::Index(i)];
            let fields = provisioner_fields(kind, options);
            card_ui(ui, editor, &title, &base, options, &fields, &mut edits);
        }
    }
    for pp in post_processors(&doc) {
        let title = match pp.place {
            (chain, None) => format!("Post-processor {} · {}", chain + 1, pp.kind),
            (chain, Some(step)) => format!(
                "Post-processor {}.{} · {} (sequence)",
                chain + 1,
                step + 1,
                pp.kind
            ),
        };
        if pp.bare {
            card_frame(ui, &title, |ui| {
                ui.weak("Written as a name only: no options. Add options in the JSON tab.");
            });
            continue;
        }
        let Some(options) = document::get(&doc, &pp.path).and_then(Value::as_object) else {
            continue;
        };
        let fields = post_processor_fields(&pp.kind, options);
        card_ui(ui, editor, &title, &pp.path, options, &fields, &mut edits);
    }
    for (path, value) in edits {
        if let Err(e) = editor.set(&path, Some(&value)) {
            editor.notice = Some(Notice::Failed(format!(
                "{}: {e}",
                document::display_path(&path)
            )));
        }
    }
}

fn card_frame(ui: &mut egui::Ui, title: &str, body: impl FnOnce(&mut egui::Ui)) {
    egui::Frame::group(ui.style())
        .inner_margin(theme::GAP)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.strong(title);
            body(ui);
        });
    ui.add_space(theme::GAP * 0.5);
}

fn card_ui(
    ui: &mut egui::Ui,
    editor: &mut Editor,
    title: &str,
    base: &DocPath,
    options: &serde_json::Map<String, Value>,
    fields: &[FieldSpec],
    edits: &mut Vec<(DocPath, Value)>,
) {
    card_frame(ui, title, |ui| {
        let grid_id = document::display_path(base);
        egui::Grid::new(&grid_id)
            .num_columns(2)
            .spacing([theme::GAP * 1.5, theme::GAP * 0.5])
            .show(ui, |ui| {
                for f in fields {
                    let mut path = base.clone();
                    path.push(Seg::from(f.key));
                    let id = document::display_path(&path);
                    let old = options.get(f.key);
                    let shown = display(f.kind, old);
                    let buffer = editor
                        .fields
                        .entry(id.clone())
                        .or_insert_with(|| shown.clone());
                    if normalise(f.kind, buffer) != shown {
                        // Changed elsewhere (the JSON tab, a reload): show the document's value.
                        *buffer = shown.clone();
                    }
                    let label = ui.label(f.label).on_hover_text(f.key);
                    let edit = if f.kind == FieldKind::Lines {
                        egui::TextEdit::multiline(buffer).desired_rows(2)
                    } else {
                        egui::TextEdit::singleline(buffer)
                    };
                    let response = ui
                        .add(
                            edit.id_salt(&id)
                                .desired_width(420.0)
                                .hint_text(if old.is_none() { "not set" } else { "" }),
                        )
                        .labelled_by(label.id);
                    if response.changed() && normalise(f.kind, buffer) != shown {
                        edits.push((path, to_value(f.kind, buffer, old)));
                    }
                    ui.end_row();
                }
            });
        let shown: Vec<&str> = fields.iter().map(|f| f.key).collect();
        let others = options
            .keys()
            .filter(|k| *k != "type" && *k != "name" && !shown.contains(&k.as_str()))
            .count();
        if others > 0 {
            ui.weak(format!(
                "{others} more option{} in the JSON tab",
                if others == 1 { "" } else { "s" }
            ));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn post_processors_as_names_objects_and_sequences() {
        let doc = json!({"post-processors": [
            "compress",
            {"type": "exoscale-import"},
            [{"type": "shell-local"}, "checksum"]
        ]});
        let pps = post_processors(&doc);
        let summary: Vec<_> = pps
            .iter()
            .map(|p| (document::display_path(&p.path), p.kind.as_str(), p.bare))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("post-processors[0]".to_string(), "compress", true),
                ("post-processors[1]".to_string(), "exoscale-import", false),
                ("post-processors[2][0]".to_string(), "shell-local", false),
                ("post-processors[2][1]".to_string(), "checksum", true),
            ]
        );
        assert_eq!(pps[3].place, (2, Some(1)));
        assert!(post_processors(&json!({})).is_empty());
    }

    #[test]
    fn numbers_stay_numbers_and_strings_stay_strings() {
        let n = json!(2);
        assert_eq!(to_value(FieldKind::Number, "4", Some(&n)), json!(4));
        assert_eq!(to_value(FieldKind::Number, "4x", Some(&n)), json!("4x"));
        let s = json!("{{user `cpus`}}");
        assert_eq!(to_value(FieldKind::Number, "4", Some(&s)), json!("4"));
        assert_eq!(to_value(FieldKind::Number, "4", None), json!(4));
        assert_eq!(to_value(FieldKind::Text, "4", None), json!("4"));
        assert_eq!(
            to_value(FieldKind::Text, "false", Some(&json!(true))),
            json!(false)
        );
        assert_eq!(display(FieldKind::Number, Some(&n)), "2");
        assert_eq!(display(FieldKind::Text, None), "");
    }

    #[test]
    fn lists_one_per_line_or_comma_separated() {
        let old = json!(["a.sh", "b.sh"]);
        assert_eq!(display(FieldKind::Lines, Some(&old)), "a.sh\nb.sh");
        assert_eq!(
            to_value(FieldKind::Lines, "a.sh\n\nc.sh\n", Some(&old)),
            json!(["a.sh", "c.sh"])
        );
        // An empty line being typed means the same list: the field keeps it.
        assert_eq!(normalise(FieldKind::Lines, "a.sh\nb.sh\n"), "a.sh\nb.sh");
        let zones = json!(["ch-gva-2"]);
        assert_eq!(display(FieldKind::Csv, Some(&zones)), "ch-gva-2");
        assert_eq!(
            to_value(FieldKind::Csv, "ch-gva-2, de-fra-1,", Some(&zones)),
            json!(["ch-gva-2", "de-fra-1"])
        );
        assert_eq!(normalise(FieldKind::Csv, "ch-gva-2,"), "ch-gva-2");
        // `inline` written as one string stays a string while it has one line.
        assert_eq!(
            to_value(FieldKind::Lines, "echo hi", Some(&json!("echo"))),
            json!("echo hi")
        );
    }

    #[test]
    fn fields_by_type() {
        let none = serde_json::Map::new();
        let keys = |f: Vec<FieldSpec>| f.iter().map(|f| f.key).collect::<Vec<_>>();
        assert_eq!(
            keys(provisioner_fields("shell", &none)),
            ["script", "scripts", "inline"]
        );
        let mut only_script = serde_json::Map::new();
        only_script.insert("script".into(), json!("x.sh"));
        assert_eq!(keys(provisioner_fields("shell", &only_script)), ["script"]);
        assert_eq!(
            keys(post_processor_fields("exoscale-import", &none)),
            [
                "image_bucket",
                "image_zone",
                "template_zones",
                "template_name"
            ]
        );
        assert!(post_processor_fields("compress", &none).is_empty());
    }
}
