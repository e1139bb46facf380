//! The window: the sidebar with the places, and the panel of the chosen place. It drains the
//! inbox in `logic` and draws in `ui`; it repaints only when a message arrives, on input, or
//! twice a second while a build runs (its clock).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::host::{Check, Status};

use super::build_panel::LogTab;
use super::build_place::BuildPlace;
use super::build_settings;
use super::build_state::BuildState;
use super::builds_picker;
use super::command::Command;
pub use super::command::Place;
use super::credentials::{self, SecretsSource};
use super::credentials_panel::{self, CredentialsPanel};
use super::dialogs::{FileDialogs, Pick, PickAnswer};
use super::editor::view::{self as editor_view, EditorAction};
use super::editor::{self, RecipeTab};
use super::engine::{
    self, BuildId, Engine, HistoryTarget, Inbox, Job, JobKind, Message, StepCacheUse,
};
use super::history_panel::{self, HistoryPanel};
use super::host_panel::{self, HostAction};
use super::notify::{self, DesktopNotifier, Notifier};
use super::publish_form::PublishForm;
use super::recipe_files;
use super::recipes_panel::{self, PathPrompt, RecipesAction, RecipesPanel};
use super::session::{self, OpenRecipe, TypedValues};
use super::templates;
use super::templates_panel::{self, TemplatesPanel};
use super::theme;
use super::variables_panel;

/// How many recently opened files the Recipes panel remembers.
const RECENT_MAX: usize = 8;

/// What the window needs from `main` (or a test).
pub struct AppConfig {
    /// The tokio runtime builds run on.
    pub runtime: Handle,
    /// What runs builds.
    pub engine: Arc<dyn Engine>,
    /// A recipe to open at start (else the last one, else the default).
    pub initial_recipe: Option<PathBuf>,
    /// Where the bundled recipes are.
    pub recipes_dir: PathBuf,
    /// When the process started, to log the time to the first frame.
    pub started: Instant,
    /// Where the Credentials place reads and stores profiles and keys.
    pub secrets: Arc<dyn SecretsSource>,
    /// The file dialogs (the desktop's; a scripted double in tests).
    pub dialogs: Arc<dyn FileDialogs>,
    /// The history file builds are recorded in and the History place reads (`None`: no
    /// history).
    pub history: Option<PathBuf>,
}

/// The place a restarted window shows for the place it was closed on.
fn restored_place(saved: Place) -> Place {
    match saved {
        Place::Build => Place::Recipes,
        other => other,
    }
}

/// How long typing pauses before the form is checked again.
const LIVE_CHECK_PAUSE: Duration = Duration::from_millis(400);

/// What survives a restart (eframe storage). No variable values: some are secrets.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Saved {
    place: Place,
    dark: bool,
    recipe: Option<PathBuf>,
    recent: Vec<PathBuf>,
    log_tab: LogTab,
    tab: RecipeTab,
    /// The SSH key and credentials chosen per recipe (names and paths, no secret).
    choices: std::collections::BTreeMap<PathBuf, crate::build::choices::BuildChoices>,
}

/// What waits for the answer to "unsaved changes: save, discard or cancel?".
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Open this recipe instead.
    Open(PathBuf),
    /// Close the window.
    Close,
    /// Close the window although builds run: cancel them first.
    CloseWhileBuilding,
}

/// Whether `path` is a qcow2 image (its magic), as a publication's history record names.
fn is_qcow2(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"QFI\xfb")
}

/// The kiln window.
pub struct KilnApp {
    runtime: Handle,
    engine: Arc<dyn Engine>,
    started: Instant,
    first_frame_logged: bool,
    saved: Saved,
    inbox: Inbox,
    messages: Receiver<Message>,
    recipes: RecipesPanel,
    open: Option<OpenRecipe>,
    /// The Build place: the tabs of this session's builds.
    build: BuildPlace,
    /// Close the window once every build has ended (the user chose to cancel them).
    close_after_builds: bool,
    host: Option<Vec<Check>>,
    secrets: Arc<dyn SecretsSource>,
    credentials: CredentialsPanel,
    credentials_read: bool,
    templates: TemplatesPanel,
    templates_read: bool,
    recipes_dir: PathBuf,
    dialogs: Arc<dyn FileDialogs>,
    picked_tx: Sender<(Pick, PickAnswer)>,
    picked: Receiver<(Pick, PickAnswer)>,
    ctx: egui::Context,
    pending: Option<Pending>,
    closing: bool,
    notifier: Arc<dyn Notifier>,
    notify_after: Duration,
    /// The window's focus as its last `WindowFocused` event said (`None`: not seen yet).
    window_focused: Option<bool>,
    history_db: Option<PathBuf>,
    history: HistoryPanel,
    /// What was typed into the forms of recipes opened earlier in this session.
    typed: TypedValues,
    /// The wall clock the Templates place measures ages and staleness against.
    clock: fn() -> chrono::DateTime<chrono::Utc>,
}

impl KilnApp {
    /// Builds the window's state, restoring what eframe saved, and starts the host check.
    pub fn new(cc: &eframe::CreationContext<'_>, config: AppConfig) -> Self {
        let saved: Saved = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        theme::apply(&cc.egui_ctx, saved.dark);
        let (inbox, messages) = Inbox::new(cc.egui_ctx.clone());
        let bundled = session::bundled_recipes(&config.recipes_dir);
        let first = config
            .initial_recipe
            .clone()
            .or_else(|| saved.recipe.clone().filter(|p| p.is_file()))
            .unwrap_or_else(|| config.recipes_dir.join(crate::recipes::DEFAULT_RECIPE));
        let (picked_tx, picked) = std::sync::mpsc::channel();
        let mut app = Self {
            runtime: config.runtime.clone(),
            engine: config.engine,
            started: config.started,
            first_frame_logged: false,
            saved,
            inbox,
            messages,
            recipes: RecipesPanel {
                bundled,
                ..RecipesPanel::default()
            },
            open: None,
            build: BuildPlace::default(),
            close_after_builds: false,
            host: None,
            secrets: config.secrets,
            credentials: CredentialsPanel::default(),
            credentials_read: false,
            templates: TemplatesPanel::default(),
            templates_read: false,
            recipes_dir: config.recipes_dir,
            dialogs: config.dialogs,
            picked_tx,
            picked,
            ctx: cc.egui_ctx.clone(),
            pending: None,
            closing: false,
            notifier: Arc::new(DesktopNotifier::new(config.runtime.clone())),
            notify_after: notify::DEFAULT_NOTIFY_AFTER,
            window_focused: None,
            history_db: config.history,
            history: HistoryPanel::default(),
            typed: TypedValues::default(),
            clock: chrono::Utc::now,
        };
        // Opening the recipe shows Recipes; a restart goes back to the place it left (a build
        // does not survive a restart, so Build becomes Recipes).
        let place = app.saved.place;
        app.open_recipe(first);
        app.saved.place = restored_place(place);
        engine::check_host(
            &app.runtime,
            app.inbox.clone(),
            crate::host::KvmProbe::Remembered,
        );
        app
    }

    /// Sends the end-of-build notifications to `notifier`, for builds that ran at least
    /// `after` (tests record them; the default shows them on the desktop after a minute).
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>, after: Duration) -> Self {
        self.notifier = notifier;
        self.notify_after = after;
        self
    }

    /// Measures template ages and staleness against `clock` instead of the wall clock
    /// (snapshot tests pin "now" so an age reads the same every day).
    pub fn with_clock(mut self, clock: fn() -> chrono::DateTime<chrono::Utc>) -> Self {
        self.clock = clock;
        self
    }

    /// Notifies the desktop that build `id` ended, when it was long and the window is not in
    /// front.
    fn notify_build_end(&self, ctx: &egui::Context, id: BuildId) {
        let Some(build) = self.build.state(id) else {
            return;
        };
        let (Some(outcome), Some(duration)) = (build.final_outcome(), build.duration) else {
            return;
        };
        let focused = self
            .window_focused
            .or_else(|| ctx.input(|i| i.viewport().focused));
        if notify::should_notify(duration, self.notify_after, focused) {
            self.notifier.notify(notify::build_ended(
                &build.name,
                outcome,
                duration,
                build.artifact().map(PathBuf::as_path),
            ));
        }
    }

    /// The state of the build the Build place shows, if one was started.
    pub fn build_state(&self) -> Option<&BuildState> {
        self.build.shown_state()
    }

    /// Every build tab's state, in tab order (oldest first).
    pub fn build_states(&self) -> Vec<&BuildState> {
        self.build.states()
    }

    /// Which tab the Build place shows (0 is the oldest), if any.
    pub fn shown_build_tab(&self) -> Option<usize> {
        self.build.shown_index()
    }

    /// The current build's state, to change (snapshot tests pin its clock-derived fields:
    /// start, step durations, rate).
    pub fn build_state_mut(&mut self) -> Option<&mut BuildState> {
        self.build.shown_state_mut()
    }

    /// The open recipe.
    pub fn open_recipe_state(&self) -> Option<&OpenRecipe> {
        self.open.as_ref()
    }

    /// The open recipe, to change (tests, as a user's typing would).
    pub fn open_recipe_mut(&mut self) -> Option<&mut OpenRecipe> {
        self.open.as_mut()
    }

    /// The tab the open recipe shows.
    pub fn recipe_tab(&self) -> RecipeTab {
        self.saved.tab
    }

    /// The Recipes panel's state (its notice says why an open or new recipe failed).
    pub fn recipes_panel(&self) -> &RecipesPanel {
        &self.recipes
    }

    /// Whether the "unsaved changes" question is showing.
    pub fn asks_about_unsaved_changes(&self) -> bool {
        matches!(self.pending, Some(Pending::Open(_) | Pending::Close))
    }

    /// Whether the "builds are running: cancel them and close?" question is showing.
    pub fn asks_about_running_builds(&self) -> bool {
        self.pending == Some(Pending::CloseWhileBuilding)
    }

    /// The host check's results, once they came back.
    pub fn host_checks(&self) -> Option<&[Check]> {
        self.host.as_deref()
    }

    /// Replaces the host check's results (snapshot tests show fixed ones instead of this
    /// machine's); "Check again" runs the real checks.
    pub fn set_host_checks(&mut self, checks: Vec<Check>) {
        self.host = Some(checks);
    }

    /// The Credentials place's state.
    pub fn credentials(&self) -> &CredentialsPanel {
        &self.credentials
    }

    /// The Templates place's state.
    pub fn templates(&self) -> &TemplatesPanel {
        &self.templates
    }

    /// The Templates place's state, to change (tests, as a user's typing would).
    pub fn templates_mut(&mut self) -> &mut TemplatesPanel {
        &mut self.templates
    }

    /// The History place's state.
    pub fn history(&self) -> &HistoryPanel {
        &self.history
    }

    /// The place shown.
    pub fn place(&self) -> Place {
        self.saved.place
    }

    /// Opens `path`, first asking what to do with unsaved changes in the open recipe. A path
    /// with no file behind it (mistyped, or deleted since) opens nothing and is not added to
    /// Recent: the Recipes place says so.
    fn open_recipe(&mut self, path: PathBuf) {
        if !path.is_file() {
            self.recipes.notice = Some(format!(
                "There is no recipe file at {}: check the path (nothing was opened).",
                path.display()
            ));
            self.saved.place = Place::Recipes;
            return;
        }
        if self.open.as_ref().is_some_and(|o| o.editor.is_dirty()) {
            self.pending = Some(Pending::Open(path));
            return;
        }
        self.open_recipe_now(path);
    }

    fn open_recipe_now(&mut self, path: PathBuf) {
        self.recipes.notice = None;
        if let Some(previous) = self.open.take() {
            self.typed.keep(&previous);
        }
        let mut open = OpenRecipe::open(&path);
        self.typed.restore(&mut open);
        if let Some(snapshot) = &self.credentials.snapshot {
            open.known_keys = snapshot.keys.clone();
        }
        if let Some(choices) = self.saved.choices.get(&path) {
            open.choices = choices.clone();
        }
        open.refresh_choice_problem();
        self.saved.recent.retain(|p| p != &path);
        self.saved.recent.insert(0, path.clone());
        self.saved.recent.truncate(RECENT_MAX);
        self.saved.recipe = Some(path);
        self.saved.place = Place::Recipes;
        self.open = Some(open);
    }

    /// Where file dialogs start: the open recipe's folder.
    fn dialog_dir(&self) -> Option<PathBuf> {
        self.open
            .as_ref()
            .and_then(|o| o.path.parent().map(std::path::Path::to_path_buf))
            .filter(|d| d.is_dir())
    }

    /// Shows the file dialog for `pick`; the answer comes back through `picked`.
    fn pick(&mut self, pick: Pick) {
        if self.recipes.dialog_open {
            return;
        }
        self.recipes.dialog_open = true;
        let dir = self.dialog_dir();
        let (tx, ctx) = (self.picked_tx.clone(), self.ctx.clone());
        let asked = pick.clone();
        self.dialogs.pick(
            pick,
            dir,
            Box::new(move |answer| {
                let _ = tx.send((asked, answer));
                ctx.request_repaint();
            }),
        );
    }

    fn on_picked(&mut self, pick: Pick, answer: PickAnswer) {
        self.recipes.dialog_open = false;
        if pick == Pick::OpenImage {
            self.templates.choosing_image = false;
            if let Some(form) = &mut self.templates.publish {
                match answer {
                    PickAnswer::Chosen(path) => form.set_image(&path),
                    PickAnswer::Cancelled => {}
                    PickAnswer::Failed(why) => form.note = Some(why),
                }
            }
            return;
        }
        let path = match answer {
            PickAnswer::Chosen(path) => path,
            PickAnswer::Cancelled => return,
            PickAnswer::Failed(why) => {
                let dir = self.dialog_dir();
                self.recipes.path_prompt = Some(PathPrompt::new(pick, why, dir.as_deref()));
                self.saved.place = Place::Recipes;
                return;
            }
        };
        self.recipes.path_prompt = None;
        match pick {
            Pick::OpenRecipe => self.open_recipe(path),
            Pick::OpenImage => {}
            Pick::NewRecipe { .. } => {
                let default = self.recipes_dir.join(crate::recipes::DEFAULT_RECIPE);
                match recipe_files::new_from_default(&default, &path) {
                    Ok(()) => {
                        self.open_recipe(path);
                        self.saved.tab = RecipeTab::Recipe;
                    }
                    Err(why) => self.recipes.notice = Some(why),
                }
            }
            Pick::SaveVarFile { .. } => {
                if let Some(open) = &mut self.open {
                    open.note = Some(match open.save_var_file(&path) {
                        Ok(saved) => saved.describe(&path),
                        Err(why) => why,
                    });
                }
            }
            Pick::SaveRecipeAs { .. } => {
                if let Some(open) = &mut self.open
                    && open.editor.save_as(&path)
                {
                    open.reinspect();
                    self.saved.recent.retain(|p| p != &path);
                    self.saved.recent.insert(0, path.clone());
                    self.saved.recent.truncate(RECENT_MAX);
                    self.saved.recipe = Some(path);
                }
            }
        }
    }

    fn editor_action(&mut self, action: EditorAction) {
        let Some(open) = &mut self.open else { return };
        match action {
            EditorAction::Save | EditorAction::Overwrite => {
                if open.editor.save(action == EditorAction::Overwrite) {
                    open.reinspect();
                }
            }
            EditorAction::Revert => {
                open.editor.reload();
                open.reinspect();
            }
            EditorAction::KeepEditing => open.editor.conflict = None,
            EditorAction::SaveAs => {
                let suggested = open
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "recipe.json".into());
                self.pick(Pick::SaveRecipeAs { suggested });
            }
        }
    }

    /// The "unsaved changes" question, while something waits for it.
    fn unsaved_modal(&mut self, ctx: &egui::Context) {
        let Some(pending) = self.pending.clone() else {
            return;
        };
        if pending == Pending::CloseWhileBuilding {
            return self.running_builds_modal(ctx);
        }
        let name = self
            .open
            .as_ref()
            .map(|o| o.path.display().to_string())
            .unwrap_or_default();
        let mut choice = None;
        let modal = egui::Modal::new(egui::Id::unique("kiln-unsaved")).show(ctx, |ui| {
            ui.heading("Unsaved changes");
            ui.label(format!("{name} has changes that are not saved."));
            ui.horizontal(|ui| {
                if ui.button("Save and continue").clicked() {
                    choice = Some(true);
                }
                if ui.button("Discard changes").clicked() {
                    choice = Some(false);
                }
                if ui.button("Cancel").clicked() {
                    self.pending = None;
                }
            });
        });
        if modal.should_close() && choice.is_none() {
            self.pending = None;
            return;
        }
        let Some(save) = choice else { return };
        self.pending = None;
        if save {
            self.editor_action(EditorAction::Save);
            if self.open.as_ref().is_some_and(|o| o.editor.is_dirty()) {
                return; // not saved (a conflict or an error): it shows; nothing else happens
            }
        }
        match pending {
            Pending::Open(path) => self.open_recipe_now(path),
            Pending::Close if self.running_builds() > 0 => {
                self.pending = Some(Pending::CloseWhileBuilding);
            }
            Pending::Close => {
                self.closing = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            Pending::CloseWhileBuilding => {}
        }
    }

    /// "N builds are running": cancel them and close once their cleanups ran, or keep
    /// building. While they wind down it says so; the window closes by itself after.
    fn running_builds_modal(&mut self, ctx: &egui::Context) {
        let running = self.running_builds();
        if self.close_after_builds {
            if running == 0 {
                self.pending = None;
                self.closing = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                return;
            }
            egui::Modal::new(egui::Id::unique("kiln-closing")).show(ctx, |ui| {
                ui.heading("Closing");
                ui.label(format!(
                    "Cancelling {running} build{}: stopping the VM and removing unfinished files. The window closes when done.",
                    if running == 1 { "" } else { "s" }
                ));
                ui.spinner();
            });
            return;
        }
        let mut keep = false;
        let modal = egui::Modal::new(egui::Id::unique("kiln-running-builds")).show(ctx, |ui| {
            ui.heading("Builds are running");
            ui.label(format!(
                "{running} build{} still running. Closing the window cancels {}: the VM is stopped and unfinished files are removed.",
                if running == 1 { " is" } else { "s are" },
                if running == 1 { "it" } else { "them" }
            ));
            ui.horizontal(|ui| {
                if ui.button("Cancel builds and close").clicked() {
                    self.close_after_builds = true;
                }
                if ui.button("Keep building").clicked() {
                    keep = true;
                }
            });
        });
        if self.close_after_builds {
            self.build.cancel_all();
        } else if keep || modal.should_close() {
            self.pending = None;
        }
    }

    /// Ctrl+S, Ctrl+O, files dropped on the window, and closing with unsaved changes.
    fn file_input(&mut self, ui: &egui::Ui) {
        let save_key = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::S);
        if ui.input_mut(|i| i.consume_shortcut(&save_key)) {
            self.editor_action(EditorAction::Save);
        }
        let open_key = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::O);
        if ui.input_mut(|i| i.consume_shortcut(&open_key)) {
            self.pick(Pick::OpenRecipe);
        }
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        match recipe_files::dropped_recipe(&dropped) {
            Some(Ok(path)) => self.open_recipe(path),
            Some(Err(why)) => {
                self.recipes.notice = Some(why);
                self.saved.place = Place::Recipes;
            }
            None => {}
        }
        let dirty = self.open.as_ref().is_some_and(|o| o.editor.is_dirty());
        let building = self.running_builds() > 0;
        if (dirty || building) && !self.closing && ui.input(|i| i.viewport().close_requested()) {
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::CancelClose);
            if self.pending.is_none() {
                self.pending = Some(if dirty {
                    Pending::Close
                } else {
                    Pending::CloseWhileBuilding
                });
            }
        }
    }

    /// Profiles and keys are read from the keyring the first time a place needs them, not at
    /// start-up.
    fn read_credentials_once(&mut self) {
        if !self.credentials_read {
            self.credentials_read = true;
            self.credentials.busy = true;
            self.run_credentials(credentials::Action::Refresh);
        }
    }

    fn read_history(&mut self) {
        if let Some(db) = &self.history_db {
            self.history.busy = true;
            engine::read_history(
                &self.runtime,
                db.clone(),
                history_panel::LIMIT,
                self.inbox.clone(),
            );
        }
    }

    /// Opens the recipe of history build `id` with the values someone gave it filled in;
    /// sensitive ones are left to the user and named.
    fn rebuild(&mut self, id: i64) {
        let Some(record) = self
            .history
            .list()
            .iter()
            .find(|r| r.id == Some(id))
            .cloned()
        else {
            return;
        };
        if !record.recipe.is_file() {
            // Its recipe file is gone: nothing else opens, nothing is filled in.
            self.recipes.notice = Some(format!(
                "Rebuild of build #{id}: its recipe cannot be opened: there is no file at {} (moved or deleted?); nothing was filled in.",
                record.recipe.display()
            ));
            self.saved.place = Place::Recipes;
            return;
        }
        if is_qcow2(&record.recipe) {
            // A publication ("Publish an image…", `kiln publish`): its form again, with the
            // image and the name it was published under.
            let mut form = PublishForm::default();
            form.set_image(&record.recipe);
            if let Some(name) = &record.template_name {
                form.name = name.clone();
            }
            form.note = Some(format!(
                "Publish again, as #{id}: fill in the bucket and zones, check the name, and press Publish."
            ));
            self.templates.publish = Some(form);
            self.saved.place = Place::Templates;
            return;
        }
        self.open_recipe(record.recipe.clone());
        if self.pending.is_some() {
            // The open recipe has unsaved changes: the question shows; the values would go
            // into the wrong recipe, so none are filled in.
            self.recipes.notice = Some(format!(
                "Rebuild of build #{id}: save or discard the open recipe's changes, then press Rebuild again."
            ));
            return;
        }
        if self.open.as_ref().is_none_or(|o| o.path != record.recipe) {
            return;
        }
        self.saved.tab = RecipeTab::Variables;
        let Some(open) = &mut self.open else {
            return;
        };
        if open.inspection.is_err() {
            open.note = Some(format!(
                "Rebuild of build #{id}: its recipe cannot be opened (see below); nothing was filled in."
            ));
            return;
        }
        let declared: Vec<String> = open
            .variables()
            .iter()
            .filter(|v| v.declared)
            .map(|v| v.name.clone())
            .collect();
        let mut filled = 0;
        let mut sensitive = Vec::new();
        let mut gone = Vec::new();
        // The build's values, not what was typed earlier in this session.
        open.values.clear();
        for var in &record.variables {
            if !declared.contains(&var.name) {
                if var.refill_value().is_some() {
                    gone.push(var.name.clone());
                }
                continue;
            }
            if var.sensitive {
                sensitive.push(var.name.clone());
            } else if let Some(value) = var.refill_value() {
                open.values.insert(var.name.clone(), value.to_string());
                filled += 1;
            }
        }
        let mut note = format!(
            "Rebuild of build #{id} ({}): {filled} value{} filled in.",
            history_panel::local_time(&record.started),
            if filled == 1 { "" } else { "s" }
        );
        if !sensitive.is_empty() {
            note.push_str(&format!(
                " Sensitive values are never stored: type {} again, or leave an Exoscale key and secret empty to use the keyring profile.",
                sensitive.join(", ")
            ));
        }
        if !gone.is_empty() {
            note.push_str(&format!(
                " The recipe no longer declares {}: not filled in.",
                gone.join(", ")
            ));
        }
        open.note = Some(note);
    }

    fn run_templates(&mut self, action: Option<templates::Action>) {
        self.templates.busy = true;
        templates::run(
            &self.runtime,
            self.secrets.clone(),
            self.templates.query(),
            action,
            self.inbox.clone(),
        );
    }

    fn run_credentials(&self, action: credentials::Action) {
        credentials::run(
            &self.runtime,
            self.secrets.clone(),
            action,
            self.inbox.clone(),
        );
    }

    fn running_builds(&self) -> usize {
        self.build.running()
    }

    /// Checks the open recipe with the form's values and, if it loads, starts its first build
    /// in a new tab (other builds go on running).
    fn start_build(&mut self) {
        if self.close_after_builds {
            return;
        }
        let Some(open) = &mut self.open else {
            return;
        };
        let Some(recipe) = open.check() else {
            self.saved.place = Place::Recipes;
            return;
        };
        let chosen = open.chosen_build();
        let Some(mut build) = recipe
            .builds
            .iter()
            .find(|b| Some(&b.name) == chosen.as_ref())
            .or(recipe.builds.first())
            .cloned()
        else {
            self.saved.place = Place::Recipes;
            return;
        };
        // The key and credentials chosen on the form; a key the recipe's own cloud-init data
        // would refuse stops the build here rather than at Connect, ssh_timeout later.
        open.choices.apply(&mut build);
        open.refresh_choice_problem();
        if let Some(problem) = &open.choice_problem {
            let problems = open.problems.get_or_insert_with(Default::default);
            problems.error(
                "",
                None,
                "",
                format!("build `{}`: SSH key: {problem}", build.name),
            );
            self.saved.place = Place::Recipes;
            self.saved.tab = RecipeTab::Variables;
            return;
        }
        let history = self.history_db.clone().map(|db| HistoryTarget {
            db,
            recipe_path: open.path.clone(),
        });
        let step_cache = StepCacheUse {
            on: open.choices.step_cache,
            rerun_from: None,
        };
        self.launch(
            Job {
                recipe,
                build,
                kind: JobKind::Build,
                step_cache,
            },
            history,
        );
    }

    /// Checks the Templates place's publish form with `kiln publish`'s code and, if it is
    /// right, publishes in a new build tab (recorded in the history under the image's path).
    fn publish_image(&mut self) {
        if self.close_after_builds {
            return;
        }
        let Some(form) = &mut self.templates.publish else {
            return;
        };
        let mut recipe = match form.request().recipe() {
            Ok(recipe) => recipe,
            Err(problems) => {
                form.problems = problems;
                return;
            }
        };
        let choices = form.choices();
        for build in &mut recipe.builds {
            choices.apply(build);
        }
        let Some(build) = recipe.builds.first().cloned() else {
            return;
        };
        let history = self.history_db.clone().map(|db| HistoryTarget {
            db,
            recipe_path: std::path::absolute(form.image.trim())
                .unwrap_or_else(|_| PathBuf::from(form.image.trim())),
        });
        self.templates.publish = None;
        self.launch(
            Job {
                recipe,
                build,
                kind: JobKind::Publish,
                step_cache: StepCacheUse::default(),
            },
            history,
        );
    }

    /// Starts `job` (a build or a publication) in a new tab and shows it.
    fn launch(&mut self, job: Job, history: Option<HistoryTarget>) {
        let id = self.build.next_id();
        let state = BuildState::new(job.build.name.clone(), Instant::now());
        let ran = (job.clone(), history.clone());
        let controls = engine::start(
            &self.runtime,
            self.engine.as_ref(),
            id,
            job,
            self.inbox.clone(),
            history,
        );
        self.build.add(id, state, controls, ran);
        self.saved.place = Place::Build;
    }

    /// Runs build `id` again as it ran (recipe and values as then), in a new tab.
    fn build_again(&mut self, id: BuildId) {
        if self.close_after_builds {
            return;
        }
        if let Some((job, history)) = self.build.ran(id) {
            self.launch(job, history);
        }
    }

    /// Runs build `id` again with the step cache, provisioner `n` and after run again
    /// ("Rebuild from here"), in a new tab.
    fn build_again_from(&mut self, id: BuildId, n: usize) {
        if self.close_after_builds {
            return;
        }
        if let Some((mut job, history)) = self.build.ran(id) {
            job.step_cache = StepCacheUse {
                on: true,
                rerun_from: Some(n),
            };
            self.launch(job, history);
        }
    }

    fn sidebar_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("kiln");
        ui.add_space(theme::GAP);
        ui.selectable_value(&mut self.saved.place, Place::Recipes, "Recipes");
        let build_label = match self.running_builds() {
            0 => "Build".to_string(),
            1 => "Build (running)".to_string(),
            n => format!("Build ({n} running)"),
        };
        ui.selectable_value(&mut self.saved.place, Place::Build, build_label);
        ui.selectable_value(&mut self.saved.place, Place::Templates, "Templates");
        ui.selectable_value(&mut self.saved.place, Place::Credentials, "Credentials");
        ui.selectable_value(&mut self.saved.place, Place::History, "History");
        ui.selectable_value(&mut self.saved.place, Place::Host, "Host check");
        ui.add_space(theme::GAP);
        if ui.checkbox(&mut self.saved.dark, "Dark theme").changed() {
            theme::apply(ui.ctx(), self.saved.dark);
        }
        ui.with_layout(egui::Layout::bottom_up(egui::Align::Min), |ui| {
            let palette = theme::current(ui.ctx());
            let (text, status) = host_panel::summary(self.host.as_deref());
            let colour = match status {
                Status::Ok => palette.ok,
                Status::Warn => palette.warn,
                Status::Fail => palette.fail,
            };
            if ui
                .add(egui::Button::new(egui::RichText::new(text).color(colour)).frame(false))
                .clicked()
            {
                self.saved.place = Place::Host;
            }
        });
    }

    /// The Recipes place: the list on the left, the open recipe in the middle.
    fn recipes_place_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let open_path = self.open.as_ref().map(|o| o.path.clone());
        let chosen = egui::Panel::left("recipe-list")
            .default_size(280.0)
            .max_size(420.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .show(ui, |ui| {
                        recipes_panel::recipes_ui(
                            ui,
                            &mut self.recipes,
                            &self.saved.recent,
                            open_path.as_deref(),
                        )
                    })
                    .inner
            })
            .inner;
        commands.extend(chosen.map(|chosen| match chosen {
            RecipesAction::Open(path) => Command::OpenRecipe(path),
            RecipesAction::OpenDialog => Command::Pick(Pick::OpenRecipe),
            RecipesAction::NewFromDefault => Command::Pick(Pick::NewRecipe {
                suggested: "my-recipe.json".into(),
            }),
        }));
        egui::CentralPanel::default().show(ui, |ui| {
            let typed = self
                .recipes
                .path_prompt
                .as_mut()
                .and_then(|prompt| recipes_panel::path_prompt_ui(ui, prompt));
            match typed {
                Some(Ok(path)) => {
                    if let Some(prompt) = self.recipes.path_prompt.take() {
                        commands.push(Command::Picked(prompt.pick, PickAnswer::Chosen(path)));
                    }
                }
                Some(Err(())) => self.recipes.path_prompt = None,
                None => {}
            }
            self.recipe_ui(ui, commands);
        });
    }

    /// Applies one of the user's requests (after the frame that drew them).
    fn run(&mut self, command: Command) {
        match command {
            Command::Show(place) => self.saved.place = place,
            Command::OpenRecipe(path) => self.open_recipe(path),
            Command::Pick(pick) => self.pick(pick),
            Command::Picked(pick, answer) => self.on_picked(pick, answer),
            Command::Editor(action) => self.editor_action(action),
            Command::SaveVarFile => {
                let suggested = self
                    .open
                    .as_ref()
                    .and_then(|o| o.path.file_stem())
                    .map(|stem| format!("{}.vars.json", stem.to_string_lossy()))
                    .unwrap_or_else(|| "variables.json".into());
                self.pick(Pick::SaveVarFile { suggested });
            }
            Command::StartBuild => self.start_build(),
            Command::ShowBuild(id) => self.build.show(id),
            Command::CloseBuild(id) => self.build.close(id),
            Command::CancelBuild(id) => self.build.cancel(id),
            Command::ContinueBuild(id) => self.build.resume(id),
            Command::BuildAgain(id) => self.build_again(id),
            Command::BuildAgainFrom(id, n) => self.build_again_from(id, n),
            Command::OpenFolder(dir) => self.build.notice = self.dialogs.open_folder(&dir).err(),
            Command::ShowTemplates => {
                self.saved.place = Place::Templates;
                // Listed again: the build just registered new ones.
                self.templates_read = false;
            }
            Command::Templates(action) => self.run_templates(action),
            Command::ChooseImage => {
                self.templates.choosing_image = true;
                self.pick(Pick::OpenImage);
            }
            Command::PublishImage => self.publish_image(),
            Command::Credentials(action) => self.run_credentials(action),
            Command::ReadHistory => self.read_history(),
            Command::Rebuild(id) => self.rebuild(id),
            Command::RecheckHost => {
                self.host = None;
                engine::check_host(
                    &self.runtime,
                    self.inbox.clone(),
                    crate::host::KvmProbe::Fresh,
                );
            }
            Command::ClearStepCache => {
                self.host = None;
                engine::clear_step_cache(&self.runtime, self.inbox.clone());
            }
        }
    }

    fn recipe_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let running = self.running_builds();
        if self.saved.tab == RecipeTab::Variables {
            // The key and profile pickers list what the keyring holds.
            self.read_credentials_once();
        }
        let mut settings_request = None;
        let Some(open) = &mut self.open else {
            ui.label("Open a recipe on the left.");
            return;
        };
        let mut start = false;
        let mut save_vars = false;
        let mut action = None;
        ui.horizontal_wrapped(|ui| {
            ui.heading(open.title());
            if ui.button("Validate").clicked() {
                open.check();
            }
            let hint = match running {
                0 => "Ctrl+B".to_string(),
                n => format!(
                    "Ctrl+B · starts another build in its own tab ({n} running; builds with the same output directory cannot run at once)"
                ),
            };
            let build = ui.button("Start build").on_hover_text(hint);
            start = build.clicked();
            ui.separator();
            action = editor_view::actions_ui(ui, &open.editor);
        });
        ui.weak(open.path.display().to_string());
        if let Some(note) = &open.note {
            ui.colored_label(theme::current(ui.ctx()).running, note);
        }
        builds_picker::builds_ui(ui, open);
        if open.editor.is_dirty() {
            ui.weak("A build uses the saved file: save first (Ctrl+S) to build with your changes.");
        }
        action = editor_view::status_ui(ui, &open.editor).or(action);
        ui.add_space(theme::GAP * 0.5);
        if open.editor.jump.is_some() {
            self.saved.tab = RecipeTab::Json;
        }
        ui.horizontal(|ui| {
            let tab = &mut self.saved.tab;
            ui.selectable_value(tab, RecipeTab::Variables, "Variables");
            ui.selectable_value(tab, RecipeTab::Recipe, "Recipe");
            ui.selectable_value(tab, RecipeTab::Json, "JSON");
        });
        ui.separator();
        match self.saved.tab {
            RecipeTab::Variables => {
                egui::ScrollArea::vertical()
                    .id_salt("variables-tab")
                    .show(ui, |ui| {
                        if open.inspection.is_ok() {
                            settings_request = build_settings::build_settings_ui(
                                ui,
                                open,
                                self.credentials.snapshot.as_ref(),
                                self.host.as_deref(),
                            );
                            ui.add_space(theme::GAP);
                            if variables_panel::variables_ui(ui, open) {
                                open.edited = Some(Instant::now());
                            }
                            ui.add_space(theme::GAP);
                            save_vars = ui
                                .button("Save as var-file…")
                                .on_hover_text(
                                    "Write the values typed here to a JSON var-file (kiln build -var-file=…); sensitive ones are left out",
                                )
                                .clicked();
                            ui.add_space(theme::GAP);
                        }
                        if let Some(diags) = open.diagnostics()
                            && let Some(clicked) = recipes_panel::diagnostics_ui(ui, diags)
                        {
                            open.editor.jump_to(&clicked);
                        }
                    });
            }
            RecipeTab::Recipe => {
                egui::ScrollArea::vertical()
                    .id_salt("recipe-tab")
                    .show(ui, |ui| {
                        editor::cards::cards_ui(ui, &mut open.editor);
                        ui.add_space(theme::GAP);
                        if let Some(clicked) =
                            recipes_panel::diagnostics_ui(ui, open.editor.problems())
                        {
                            open.editor.jump_to(&clicked);
                        }
                    });
            }
            RecipeTab::Json => editor::raw::raw_ui(ui, &mut open.editor),
        }
        if open.editor.jump.is_some() {
            ui.ctx().request_repaint();
        }
        // Checked as the user types, once typing pauses (the warnings follow the fields).
        open.check_when_typing_paused(ui.ctx(), Instant::now(), LIVE_CHECK_PAUSE);
        if open.choices == Default::default() {
            self.saved.choices.remove(&open.path);
        } else if self.saved.choices.get(&open.path) != Some(&open.choices) {
            self.saved
                .choices
                .insert(open.path.clone(), open.choices.clone());
        }
        if settings_request == Some(build_settings::Request::ManageCredentials) {
            commands.push(Command::Show(Place::Credentials));
        }
        commands.extend(action.map(Command::Editor));
        if start {
            commands.push(Command::StartBuild);
        }
        if save_vars {
            commands.push(Command::SaveVarFile);
        }
    }
}

impl eframe::App for KilnApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let now = Instant::now();
        ctx.input(|i| {
            for event in &i.events {
                if let egui::Event::WindowFocused(focused) = event {
                    self.window_focused = Some(*focused);
                }
            }
        });
        while let Ok(message) = self.messages.try_recv() {
            match message {
                Message::Event(id, event, at) => self.build.apply(id, event, at),
                Message::Finished(id, report) => {
                    self.build.finish(id, report, now);
                    self.notify_build_end(ctx, id);
                    // The build was recorded before its report was sent.
                    self.history.stale = true;
                }
                Message::HostChecked(checks) => self.host = Some(checks),
                Message::Credentials(snapshot) => {
                    if let Some(open) = &mut self.open {
                        open.set_known_keys(&snapshot.keys);
                    }
                    self.credentials.receive(snapshot);
                }
                Message::Templates(listing) => self.templates.receive(listing),
                Message::History(read) => self.history.receive(read),
            }
        }
        while let Ok((pick, answer)) = self.picked.try_recv() {
            self.on_picked(pick, answer);
        }
        if let Some(open) = &mut self.open {
            open.watch_disk(ctx);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        if !self.first_frame_logged {
            self.first_frame_logged = true;
            tracing::info!(
                "first frame after {} ms",
                self.started.elapsed().as_millis()
            );
        }
        let mut commands: Vec<Command> = Vec::new();
        let build_key = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::B);
        if ui.input_mut(|i| i.consume_shortcut(&build_key)) {
            commands.push(Command::StartBuild);
        }
        self.file_input(ui);
        egui::Panel::left("places")
            .resizable(false)
            .exact_size(theme::SIDEBAR_WIDTH)
            .show(ui, |ui| self.sidebar_ui(ui));
        match self.saved.place {
            Place::Recipes => self.recipes_place_ui(ui, &mut commands),
            Place::Build => {
                let now = Instant::now();
                let build = &mut self.build;
                let log_tab = &mut self.saved.log_tab;
                commands.extend(
                    egui::CentralPanel::default()
                        .show(ui, |ui| build.ui(ui, log_tab, now))
                        .inner,
                );
            }
            Place::Templates => {
                // Listed the first time the place is shown (it needs the network).
                self.read_credentials_once();
                if !self.templates_read {
                    self.templates_read = true;
                    self.templates.busy = true;
                    self.run_templates(None);
                }
                let profiles: Vec<String> = self
                    .credentials
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.profiles.as_ref().ok())
                    .map(|list| list.iter().map(|p| p.name.clone()).collect())
                    .unwrap_or_default();
                let now = (self.clock)();
                let request = egui::CentralPanel::default()
                    .show(ui, |ui| {
                        egui::ScrollArea::vertical()
                            .show(ui, |ui| {
                                templates_panel::templates_ui(
                                    ui,
                                    &mut self.templates,
                                    &profiles,
                                    now,
                                )
                            })
                            .inner
                    })
                    .inner;
                commands.extend(request.map(|request| match request {
                    templates_panel::Request::Refresh => Command::Templates(None),
                    templates_panel::Request::Act(action) => Command::Templates(Some(action)),
                    templates_panel::Request::ChooseImage => Command::ChooseImage,
                    templates_panel::Request::Publish => Command::PublishImage,
                }));
            }
            Place::Credentials => {
                self.read_credentials_once();
                let action = egui::CentralPanel::default()
                    .show(ui, |ui| {
                        egui::ScrollArea::vertical()
                            .show(ui, |ui| {
                                credentials_panel::credentials_ui(ui, &mut self.credentials)
                            })
                            .inner
                    })
                    .inner;
                commands.extend(action.map(Command::Credentials));
            }
            Place::History => {
                // Read when first shown and after a build ended, never on a timer.
                if self.history.wants_read() && self.history_db.is_some() {
                    self.read_history();
                }
                let db = self.history_db.clone();
                let request = egui::CentralPanel::default()
                    .show(ui, |ui| {
                        history_panel::history_ui(ui, &mut self.history, db.as_deref())
                    })
                    .inner;
                commands.extend(request.map(|request| match request {
                    history_panel::Request::Refresh => Command::ReadHistory,
                    history_panel::Request::Rebuild(id) => Command::Rebuild(id),
                }));
            }
            Place::Host => {
                let action = egui::CentralPanel::default()
                    .show(ui, |ui| host_panel::host_ui(ui, self.host.as_deref()))
                    .inner;
                match action {
                    Some(HostAction::Recheck) => commands.push(Command::RecheckHost),
                    Some(HostAction::ClearStepCache) => commands.push(Command::ClearStepCache),
                    None => {}
                }
            }
        }
        for command in commands {
            self.run(command);
        }
        let ctx = ui.ctx().clone();
        self.unsaved_modal(&ctx);
        if self.running_builds() > 0 {
            // The builds' clocks; events repaint on their own.
            ui.ctx().request_repaint_after(Duration::from_millis(500));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_goes_back_to_the_place_it_left_except_a_build() {
        for place in [
            Place::Recipes,
            Place::Templates,
            Place::Credentials,
            Place::Host,
            Place::History,
        ] {
            assert_eq!(restored_place(place), place);
        }
        assert_eq!(restored_place(Place::Build), Place::Recipes);
    }
}
