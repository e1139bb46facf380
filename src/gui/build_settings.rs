//! The build form's choices beyond the recipe's variables: the SSH key kiln logs in with
//! (the recipe's, a new temporary one, a keyring key, a private key file in `~/.ssh`, an
//! ssh-agent's key) and, for a build that publishes, the Exoscale credentials (the recipe's,
//! the environment, a keyring profile), with what the build will publish where. The keyring
//! is read in the background (the Credentials place's snapshot); nothing here holds a secret.

use std::path::PathBuf;

use crate::build::choices::{BuildChoices, CredentialsChoice, KeyChoice, publishes};
use crate::exoscale::credentials::{KEY_ENV as API_KEY_ENV, SECRET_ENV as API_SECRET_ENV};
use crate::host::Check;
use crate::recipe::postprocessor::ExoscaleImportConfig;
use crate::recipe::template::Build;
use crate::secrets::ssh_keys::KeySource;

use super::credentials::Snapshot;
use super::session::OpenRecipe;
use super::theme;

/// What the user asked for that the window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Show the Credentials place (to generate or import a key, or add a profile).
    ManageCredentials,
}

/// One entry of a picker: the choice, its label, and why it cannot be chosen (greyed).
struct Entry<T> {
    choice: T,
    label: String,
    unavailable: Option<String>,
}

/// The private key file beside a listed `*.pub` file, when there is one.
fn private_half(public: &std::path::Path) -> Option<PathBuf> {
    let private = public.with_extension("");
    (private != public && private.is_file()).then_some(private)
}

/// `$HOME/x` shown as `~/x`.
fn tilde(path: &std::path::Path) -> String {
    match std::env::var_os("HOME").and_then(|h| path.strip_prefix(h).ok().map(PathBuf::from)) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

/// What the recipe itself says about the key, in words.
fn recipe_key(build: &Build) -> Option<String> {
    let ssh = &build.builder.ssh;
    match (&ssh.private_key_file, &ssh.private_key_keyring) {
        _ if ssh.agent_auth => Some("the ssh-agent's keys (ssh_agent_auth)".into()),
        (Some(file), _) => Some(format!("key file {file}")),
        (None, Some(name)) => Some(format!("keyring key `{name}`")),
        (None, None) => None,
    }
}

/// The key choices: the recipe's (when it names a key), a temporary key, the keyring's keys,
/// the private keys beside `~/.ssh/*.pub`, then the ssh-agent's keys.
fn key_entries(build: &Build, snapshot: Option<&Snapshot>) -> Vec<Entry<KeyChoice>> {
    let mut entries = Vec::new();
    if let Some(what) = recipe_key(build) {
        entries.push(Entry {
            choice: KeyChoice::Recipe,
            label: format!("As the recipe says: {what}"),
            unavailable: None,
        });
    }
    entries.push(Entry {
        choice: KeyChoice::Temporary,
        label: "A new temporary key for this build".into(),
        unavailable: None,
    });
    for key in snapshot.map(|s| s.keys.as_slice()).unwrap_or_default() {
        let short = format!("{} {}", key.algorithm, key.fingerprint);
        match &key.source {
            KeySource::Keyring(name) => entries.push(Entry {
                choice: KeyChoice::Keyring(name.clone()),
                label: format!("Keyring: {name} ({short})"),
                unavailable: None,
            }),
            KeySource::File(public) => {
                let private = private_half(public);
                entries.push(Entry {
                    choice: KeyChoice::File(private.clone().unwrap_or_else(|| public.clone())),
                    label: format!(
                        "File: {} ({short})",
                        tilde(private.as_deref().unwrap_or(public))
                    ),
                    unavailable: private.is_none().then(|| {
                        format!(
                            "{} has no private half beside it: import the private key in Credentials",
                            tilde(public)
                        )
                    }),
                });
            }
            KeySource::Agent => entries.push(Entry {
                choice: KeyChoice::Agent(Some(key.fingerprint.clone())),
                label: format!("ssh-agent: {} ({short})", key.comment),
                unavailable: None,
            }),
        }
    }
    entries
}

/// The exoscale-import configurations of `build`.
fn imports(build: &Build) -> Vec<&ExoscaleImportConfig> {
    build.exoscale_imports().collect()
}

/// Both `EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET` are set.
fn environment_set() -> bool {
    [API_KEY_ENV, API_SECRET_ENV]
        .iter()
        .all(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// What the recipe itself says about the credentials, in words (the order
/// `exoscale-import` tries them in).
fn recipe_credentials(config: &ExoscaleImportConfig) -> String {
    if !config.api_key.is_empty() {
        return "its api_key and api_secret".into();
    }
    let profile = match &config.profile {
        Some(name) => format!("profile `{name}`"),
        None => "the default profile".into(),
    };
    if environment_set() {
        format!("{API_KEY_ENV}/{API_SECRET_ENV} (set), else {profile}")
    } else {
        profile
    }
}

/// The credentials choices: the recipe's, the environment (greyed when unset), the
/// keyring's profiles (greyed when the keyring holds no secret for one).
fn credentials_entries(
    config: &ExoscaleImportConfig,
    snapshot: Option<&Snapshot>,
) -> Vec<Entry<CredentialsChoice>> {
    let mut entries = vec![
        Entry {
            choice: CredentialsChoice::Recipe,
            label: format!("As the recipe says: {}", recipe_credentials(config)),
            unavailable: None,
        },
        Entry {
            choice: CredentialsChoice::Environment,
            label: format!("Environment: {API_KEY_ENV} and {API_SECRET_ENV}"),
            unavailable: (!environment_set())
                .then(|| format!("{API_KEY_ENV} and {API_SECRET_ENV} are not both set")),
        },
    ];
    if let Some(Ok(profiles)) = snapshot.map(|s| &s.profiles) {
        let checks = snapshot.map(|s| &s.checks);
        for profile in profiles {
            let default = if profile.is_default { ", default" } else { "" };
            let checked = checks
                .and_then(|c| c.get(&profile.name))
                .map(|c| c.describe())
                .unwrap_or_default();
            entries.push(Entry {
                choice: CredentialsChoice::Profile(profile.name.clone()),
                label: format!(
                    "Profile: {} ({}{default}){checked}",
                    profile.name, profile.zone
                ),
                unavailable: (!profile.has_secret).then(|| {
                    format!(
                        "the keyring holds no key for `{}`: save it again in Credentials",
                        profile.name
                    )
                }),
            });
        }
    }
    entries
}

/// A labelled picker over `entries`; unavailable ones are greyed with the reason. Returns
/// the new choice when the user changed it.
fn picker<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    id: &str,
    label: &str,
    current: &T,
    entries: &[Entry<T>],
    hint: &str,
) -> Option<T> {
    let selected = entries
        .iter()
        .find(|e| &e.choice == current)
        .map(|e| e.label.clone())
        .unwrap_or_else(|| "(not available: choose again)".into());
    let mut chosen = current.clone();
    let label = ui.label(label);
    // Room for the button beside it in a narrow window.
    egui::ComboBox::from_id_salt(id)
        .selected_text(selected)
        .width((ui.available_width() - 130.0).clamp(180.0, 440.0))
        .truncate()
        .show_ui(ui, |ui| {
            for entry in entries {
                let row = ui.add_enabled(
                    entry.unavailable.is_none(),
                    egui::Button::selectable(chosen == entry.choice, entry.label.as_str()),
                );
                let row = match &entry.unavailable {
                    Some(why) => row.on_disabled_hover_text(why.as_str()),
                    None => row,
                };
                if row.clicked() {
                    chosen = entry.choice.clone();
                }
            }
        })
        .response
        .labelled_by(label.id)
        .on_hover_text(hint);
    (chosen != *current).then_some(chosen)
}

/// Draws the SSH key and (for a build that publishes) the credentials pickers, what stops
/// the chosen key, and what the build publishes where. `snapshot` is the keyring as last
/// read (`None`: being read).
pub fn build_settings_ui(
    ui: &mut egui::Ui,
    open: &mut OpenRecipe,
    snapshot: Option<&Snapshot>,
    host: Option<&[Check]>,
) -> Option<Request> {
    let palette = theme::current(ui.ctx());
    let recipe_build = {
        let recipe = open.inspection.as_ref().ok()?;
        let name = open.chosen_build()?;
        recipe.builds.iter().find(|b| b.name == name)?.clone()
    };
    let mut request = None;
    let mut choices: BuildChoices = open.choices.clone();
    ui.strong("This build");
    let keys = key_entries(&recipe_build, snapshot);
    // A recipe that names no key: "as the recipe says" is the temporary key.
    let current = if choices.ssh_key == KeyChoice::Recipe && recipe_key(&recipe_build).is_none() {
        KeyChoice::Temporary
    } else {
        choices.ssh_key.clone()
    };
    ui.horizontal(|ui| {
        if let Some(new) = picker(
            ui,
            "ssh-key",
            "SSH key:",
            &current,
            &keys,
            "The key kiln logs in to the VM with; its public half goes into the cloud-init seed kiln writes",
        ) {
            choices.ssh_key = new;
        }
        if ui
            .button("Keys…")
            .on_hover_text("Generate or import a key into the OS keyring (Credentials)")
            .clicked()
        {
            request = Some(Request::ManageCredentials);
        }
    });
    if snapshot.is_none() {
        ui.weak("Reading the keyring…");
    }
    if publishes(&recipe_build) {
        let configs = imports(&recipe_build);
        let entries = credentials_entries(configs[0], snapshot);
        ui.horizontal(|ui| {
            if let Some(new) = picker(
                ui,
                "exoscale-credentials",
                "Exoscale credentials:",
                &choices.credentials,
                &entries,
                "The API key exoscale-import uploads and registers the template with",
            ) {
                choices.credentials = new;
            }
            if ui
                .button("Add a profile…")
                .on_hover_text("Store an API key and secret in the OS keyring (Credentials)")
                .clicked()
            {
                request = Some(Request::ManageCredentials);
            }
        });
        if choices.credentials != CredentialsChoice::Recipe
            && configs.iter().any(|c| !c.api_key.is_empty())
        {
            ui.weak("The recipe's api_key and api_secret are not used for this build.");
        }
        // Names as they will be: from the last check with the form's values, when it loaded.
        let checked = open
            .checked
            .as_ref()
            .and_then(|r| r.builds.iter().find(|b| b.name == recipe_build.name));
        let summaries: Vec<String> = match checked {
            Some(build) => imports(build).into_iter().map(publish_summary).collect(),
            None => configs.into_iter().map(publish_summary).collect(),
        };
        for summary in summaries {
            ui.weak(summary);
        }
    }
    if let Some(problem) = &open.choice_problem {
        ui.colored_label(palette.fail, format!("SSH key: {problem}"));
    }
    ui.checkbox(&mut choices.step_cache, "Resume from the step cache")
        .on_hover_text(
            "Start the VM from the last step whose inputs did not change, and save it after Connect and each provisioner for the next build (kiln build --cache)",
        );
    if choices != open.choices {
        open.choose(choices);
    }
    let kvm = host.and_then(|checks| checks.iter().find(|c| c.name == "KVM"));
    plan_ui(ui, open, &recipe_build, kvm);
    request
}

/// The plan of the build Start will run: what `kiln inspect` says of it, with the form's
/// values (from the last check, else as inspected) and the choices applied.
fn plan_ui(ui: &mut egui::Ui, open: &OpenRecipe, recipe_build: &Build, kvm: Option<&Check>) {
    let mut planned = open
        .checked
        .as_ref()
        .and_then(|r| r.builds.iter().find(|b| b.name == recipe_build.name))
        .unwrap_or(recipe_build)
        .clone();
    open.choices.apply(&mut planned);
    egui::CollapsingHeader::new("Plan")
        .id_salt("build-plan")
        .default_open(false)
        .show(ui, |ui| {
            let host = crate::build::describe::host_lines(&planned, kvm);
            for line in crate::build::planned::plan_lines(&planned)
                .into_iter()
                .chain(host)
            {
                ui.add(egui::Label::new(egui::RichText::new(line).monospace()).wrap());
            }
        });
}

/// What an `exoscale-import` publishes where, in one line.
pub fn publish_summary(config: &ExoscaleImportConfig) -> String {
    let zones = if config.template_zones.is_empty() {
        config.image_zone.clone()
    } else {
        config.template_zones.join(", ")
    };
    format!(
        "Publishes template “{}” in {zones} (image uploaded to bucket {} in {}, private)",
        config.template_name, config.image_bucket, config.image_zone
    )
}
