//! The Credentials place: Exoscale profiles (add with a check, check, make default, remove)
//! and SSH keys (the keyring's and `~/.ssh/*.pub`; generate, import, remove). The API secret
//! and a key's passphrase are typed into masked fields and cleared as soon as they are sent.

use std::path::PathBuf;

use super::credentials::{Action, Snapshot};
use super::theme;
use crate::exoscale::zone::{DEFAULT_EXOSCALE_ZONE, EXOSCALE_ZONES};
use crate::recipe::secret::Secret;
use crate::secrets::ssh_keys::KeySource;

/// The place's state: the last snapshot, the two forms, a pending confirmation.
#[derive(Debug)]
pub struct CredentialsPanel {
    /// What was last read (`None`: being read).
    pub snapshot: Option<Snapshot>,
    /// An action is running.
    pub busy: bool,
    /// The new profile's name.
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// Its API key.
    pub key: String,
    /// Its API secret (masked; cleared when sent).
    pub secret: String,
    /// Make it the default.
    pub make_default: bool,
    /// Check it against the API before storing it.
    pub check: bool,
    /// The key name for generate/import.
    pub key_name: String,
    /// The private key file to import.
    pub import_path: String,
    /// Its passphrase (masked; cleared when sent).
    pub passphrase: String,
    /// The user ticked "replace the existing key" for a name the keyring already holds.
    pub replace_key: bool,
    /// A removal waiting for its confirmation: (profile or key, name).
    pub confirm: Option<(Kind, String)>,
    /// A profile was sent to be saved; the form is emptied when that succeeds.
    saving: bool,
}

/// What a removal removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An Exoscale profile.
    Profile,
    /// An SSH key.
    Key,
}

impl Default for CredentialsPanel {
    fn default() -> Self {
        Self {
            snapshot: None,
            busy: false,
            name: String::new(),
            zone: DEFAULT_EXOSCALE_ZONE.to_string(),
            key: String::new(),
            secret: String::new(),
            make_default: false,
            check: true,
            key_name: String::new(),
            import_path: String::new(),
            passphrase: String::new(),
            replace_key: false,
            confirm: None,
            saving: false,
        }
    }
}

impl CredentialsPanel {
    /// Takes in what an action (or a refresh) read; a successful save empties the form.
    pub fn receive(&mut self, snapshot: Snapshot) {
        if std::mem::take(&mut self.saving) && matches!(snapshot.status, Some(Ok(_))) {
            self.name.clear();
            self.key.clear();
            self.make_default = false;
        }
        let mut snapshot = snapshot;
        if let Some(previous) = self.snapshot.take() {
            // Earlier checks stay known; this snapshot's own check is newer.
            for (name, check) in previous.checks {
                snapshot.checks.entry(name).or_insert(check);
            }
        }
        self.snapshot = Some(snapshot);
        self.busy = false;
    }
}

/// Draws the place; returns the action the user asked for.
pub fn credentials_ui(ui: &mut egui::Ui, panel: &mut CredentialsPanel) -> Option<Action> {
    let palette = theme::current(ui.ctx());
    let mut action = None;
    ui.horizontal(|ui| {
        ui.heading("Credentials");
        if ui.button("Refresh").clicked() {
            action = Some(Action::Refresh);
        }
        if panel.busy || panel.snapshot.is_none() {
            ui.spinner();
        }
    });
    ui.weak("Kept in the OS keyring; ~/.config/kiln/config.toml holds only names and zones.");
    if let Some(Some(status)) = panel.snapshot.as_ref().map(|s| &s.status) {
        match status {
            Ok(done) => ui.colored_label(palette.ok, done),
            Err(why) => ui.colored_label(palette.fail, why),
        };
    }
    ui.add_space(theme::GAP);
    ui.strong("Exoscale profiles");
    if let Some(snapshot) = &panel.snapshot {
        match &snapshot.profiles {
            Err(why) => {
                ui.colored_label(palette.fail, why);
            }
            Ok(list) if list.is_empty() => {
                ui.label("No profile yet: add one below.");
            }
            Ok(list) => {
                egui::Grid::new("profiles")
                    .striped(true)
                    .spacing([theme::GAP * 2.0, theme::GAP / 2.0])
                    .show(ui, |ui| {
                        for p in list {
                            ui.label(&p.name);
                            ui.label(&p.zone);
                            ui.label(if p.is_default { "default" } else { "" });
                            if !p.has_secret {
                                ui.colored_label(palette.fail, "secret missing: add it again");
                            } else {
                                ui.label("");
                            }
                            ui.horizontal(|ui| {
                                if row_button(ui, "Check", &format!("Check {}", p.name)).clicked() {
                                    action = Some(Action::CheckProfile(p.name.clone()));
                                }
                                if !p.is_default
                                    && row_button(
                                        ui,
                                        "Make default",
                                        &format!("Make {} the default", p.name),
                                    )
                                    .clicked()
                                {
                                    action = Some(Action::MakeDefault(p.name.clone()));
                                }
                                if let Some(a) =
                                    remove_button(ui, &mut panel.confirm, Kind::Profile, &p.name)
                                {
                                    action = Some(a);
                                }
                            });
                            ui.end_row();
                        }
                    });
            }
        }
    }
    ui.add_space(theme::GAP);
    egui::CollapsingHeader::new("Add a profile")
        .default_open(true)
        .show(ui, |ui| {
            if let Some(a) = profile_form(ui, panel) {
                action = Some(a);
            }
        });

    ui.add_space(theme::GAP * 2.0);
    ui.strong("SSH keys");
    if let Some(snapshot) = &panel.snapshot {
        if snapshot.keys.is_empty() {
            ui.label("No SSH key: generate or import one below.");
        }
        egui::Grid::new("keys")
            .striped(true)
            .spacing([theme::GAP * 2.0, theme::GAP / 2.0])
            .show(ui, |ui| {
                for k in &snapshot.keys {
                    ui.label(k.source.to_string());
                    ui.label(&k.algorithm);
                    ui.add(
                        egui::Label::new(egui::RichText::new(&k.fingerprint).monospace())
                            .selectable(true),
                    );
                    ui.label(&k.comment);
                    let shown = match &k.source {
                        KeySource::Keyring(name) => name.clone(),
                        other => other.to_string(),
                    };
                    match &k.public_line {
                        Some(line) => {
                            if row_button(
                                ui,
                                "Copy public key",
                                &format!("Copy the public key of {shown}"),
                            )
                            .on_hover_text(
                                "For authorized_keys, or a cloud-init seed's ssh_authorized_keys",
                            )
                            .clicked()
                            {
                                ui.ctx().copy_text(line.clone());
                            }
                        }
                        None => {
                            ui.label("");
                        }
                    }
                    if let KeySource::Keyring(name) = &k.source {
                        if let Some(a) = remove_button(ui, &mut panel.confirm, Kind::Key, name) {
                            action = Some(a);
                        }
                    } else {
                        ui.label("");
                    }
                    ui.end_row();
                }
            });
    }
    ui.add_space(theme::GAP);
    egui::CollapsingHeader::new("Add a key")
        .default_open(true)
        .show(ui, |ui| {
            if let Some(a) = key_form(ui, panel) {
                action = Some(a);
            }
        });
    if action.is_some() {
        panel.busy = true;
    }
    action
}

/// "Remove", then "Really remove NAME?" on the second press.
fn remove_button(
    ui: &mut egui::Ui,
    confirm: &mut Option<(Kind, String)>,
    kind: Kind,
    name: &str,
) -> Option<Action> {
    let pending = confirm.as_ref() == Some(&(kind, name.to_string()));
    if pending {
        if ui.button(format!("Really remove {name}?")).clicked() {
            *confirm = None;
            return Some(match kind {
                Kind::Profile => Action::RemoveProfile(name.to_string()),
                Kind::Key => Action::RemoveKey(name.to_string()),
            });
        }
        if ui.button("Keep").clicked() {
            *confirm = None;
        }
    } else if row_button(ui, "Remove", &format!("Remove {name}")).clicked() {
        *confirm = Some((kind, name.to_string()));
    }
    None
}

/// A button of a table row: short text on screen, and a name that says which row for screen
/// readers and tests ("Remove work").
fn row_button(ui: &mut egui::Ui, text: &str, accessible: &str) -> egui::Response {
    let response = ui.button(text).on_hover_text(accessible);
    let accessible = accessible.to_string();
    let enabled = response.enabled();
    response
        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, enabled, accessible.clone()));
    response
}

fn labelled_text(ui: &mut egui::Ui, label: &str, value: &mut String, password: bool) {
    ui.horizontal(|ui| {
        let l = ui.label(label);
        ui.add(
            egui::TextEdit::singleline(value)
                .password(password)
                .desired_width(320.0),
        )
        .labelled_by(l.id);
    });
}

fn profile_form(ui: &mut egui::Ui, panel: &mut CredentialsPanel) -> Option<Action> {
    labelled_text(ui, "Profile name", &mut panel.name, false);
    egui::ComboBox::from_label("Zone")
        .selected_text(panel.zone.clone())
        .show_ui(ui, |ui| {
            for zone in EXOSCALE_ZONES {
                ui.selectable_value(&mut panel.zone, zone.to_string(), *zone);
            }
        });
    labelled_text(ui, "API key", &mut panel.key, false);
    labelled_text(ui, "API secret", &mut panel.secret, true);
    ui.checkbox(&mut panel.make_default, "Make it the default");
    ui.checkbox(&mut panel.check, "Check against the API");
    let ready = !panel.name.trim().is_empty()
        && !panel.key.trim().is_empty()
        && !panel.secret.is_empty()
        && !panel.busy;
    let label = if panel.check {
        "Check and save"
    } else {
        "Save"
    };
    if ui.add_enabled(ready, egui::Button::new(label)).clicked() {
        let secret = Secret::new(std::mem::take(&mut panel.secret));
        panel.saving = true;
        return Some(Action::SaveProfile {
            name: panel.name.trim().to_string(),
            zone: panel.zone.clone(),
            key: panel.key.trim().to_string(),
            secret,
            make_default: panel.make_default,
            check: panel.check,
        });
    }
    None
}

fn key_form(ui: &mut egui::Ui, panel: &mut CredentialsPanel) -> Option<Action> {
    labelled_text(ui, "Key name", &mut panel.key_name, false);
    let name = panel.key_name.trim().to_string();
    // A key of that name is never replaced silently: the user must say so, knowing what is lost.
    let existing = panel.snapshot.as_ref().and_then(|s| {
        s.keys
            .iter()
            .find(|k| k.source == KeySource::Keyring(name.clone()))
            .map(|k| k.fingerprint.clone())
    });
    let mut replace = false;
    if let Some(fingerprint) = &existing {
        ui.colored_label(
            theme::current(ui.ctx()).warn,
            format!(
                "The keyring already holds a key `{name}` ({fingerprint}). A new key under this name replaces it, and its private half is lost for good."
            ),
        );
        ui.checkbox(&mut panel.replace_key, format!("Replace the key `{name}`"));
        replace = panel.replace_key;
    }
    let named = !name.is_empty() && !panel.busy && (existing.is_none() || replace);
    let mut action = None;
    ui.horizontal(|ui| {
        if ui
            .add_enabled(named, egui::Button::new("Generate Ed25519 key"))
            .clicked()
        {
            action = Some(Action::GenerateKey {
                name: name.clone(),
                replace,
            });
            panel.replace_key = false;
        }
    });
    labelled_text(ui, "Private key file", &mut panel.import_path, false);
    labelled_text(ui, "Passphrase (if encrypted)", &mut panel.passphrase, true);
    if ui
        .add_enabled(
            named && !panel.import_path.trim().is_empty(),
            egui::Button::new("Import"),
        )
        .clicked()
    {
        action = Some(Action::ImportKey {
            replace,
            name: panel.key_name.trim().to_string(),
            path: PathBuf::from(panel.import_path.trim()),
            passphrase: Secret::new(std::mem::take(&mut panel.passphrase)),
        });
    }
    action
}
