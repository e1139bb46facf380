//! The window: the sidebar with the places, and the panel of the chosen place. It drains the
//! inbox in `logic` and draws in `ui`; it repaints only when a message arrives, on input, or
//! twice a second while a build runs (its clock).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::cli::doctor::{Check, Status};

use super::build_panel::{self, BuildAction, LogTab};
use super::build_state::BuildState;
use super::credentials::{self, SecretsSource};
use super::credentials_panel::{self, CredentialsPanel};
use super::dialogs::{FileDialogs, Pick};
use super::editor::view::{self as editor_view, EditorAction};
use super::editor::{self, RecipeTab};
use super::engine::{self, Engine, HistoryTarget, Inbox, Message};
use super::history_panel::{self, HistoryPanel};
use super::host_panel::{self, HostAction};
use super::notify::{self, DesktopNotifier, Notifier};
use super::recipe_files;
use super::recipes_panel::{self, RecipesAction, RecipesPanel};
use super::session::{self, OpenRecipe};
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

/// The places of the sidebar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Place {
    /// Recipes, the variables form and the recipe's problems.
    #[default]
    Recipes,
    /// The current build.
    Build,
    /// The templates published on Exoscale.
    Templates,
    /// Exoscale profiles and SSH keys in the OS keyring.
    Credentials,
    /// The host check.
    Host,
    /// Past builds, from the history file.
    History,
}

/// The place a restarted window shows for the place it was closed on.
fn restored_place(saved: Place) -> Place {
    match saved {
        Place::Build => Place::Recipes,
        other => other,
    }
}

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
}

/// What waits for the answer to "unsaved changes: save, discard or cancel?".
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    /// Open this recipe instead.
    Open(PathBuf),
    /// Close the window.
    Close,
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
    build: Option<BuildState>,
    cancel: Option<CancellationToken>,
    host: Option<Vec<Check>>,
    secrets: Arc<dyn SecretsSource>,
    credentials: CredentialsPanel,
    credentials_read: bool,
    templates: TemplatesPanel,
    templates_read: bool,
    recipes_dir: PathBuf,
    dialogs: Arc<dyn FileDialogs>,
    picked_tx: Sender<(Pick, Option<PathBuf>)>,
    picked: Receiver<(Pick, Option<PathBuf>)>,
    ctx: egui::Context,
    pending: Option<Pending>,
    closing: bool,
    notifier: Arc<dyn Notifier>,
    notify_after: Duration,
    /// The window's focus as its last `WindowFocused` event said (`None`: not seen yet).
    window_focused: Option<bool>,
    history_db: Option<PathBuf>,
    history: HistoryPanel,
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
            build: None,
            cancel: None,
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
            clock: chrono::Utc::now,
        };
        // Opening the recipe shows Recipes; a restart goes back to the place it left (a build
        // does not survive a restart, so Build becomes Recipes).
        let place = app.saved.place;
        app.open_recipe(first);
        app.saved.place = restored_place(place);
        engine::check_host(&app.runtime, app.inbox.clone());
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

    /// Notifies the desktop that the build ended, when it was long and the window is not in
    /// front.
    fn notify_build_end(&self, ctx: &egui::Context) {
        let Some(build) = &self.build else {
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

    /// The current build's state, if one was started.
    pub fn build_state(&self) -> Option<&BuildState> {
        self.build.as_ref()
    }

    /// The current build's state, to change (snapshot tests pin its clock-derived fields:
    /// start, step durations, rate).
    pub fn build_state_mut(&mut self) -> Option<&mut BuildState> {
        self.build.as_mut()
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
        self.pending.is_some()
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

    /// Opens `path`, first asking what to do with unsaved changes in the open recipe.
    fn open_recipe(&mut self, path: PathBuf) {
        if self.open.as_ref().is_some_and(|o| o.editor.is_dirty()) {
            self.pending = Some(Pending::Open(path));
            return;
        }
        self.open_recipe_now(path);
    }

    fn open_recipe_now(&mut self, path: PathBuf) {
        self.recipes.notice = None;
        let open = OpenRecipe::open(&path);
        self.saved.recent.retain(|p| p != &path);
        self.saved.recent.insert(0, path.clone());
        self.saved.recent.truncate(RECENT_MAX);
        self.saved.recipe = Some(path);
        self.saved.place = Place::Recipes;
        self.open = Some(open);
    }

    /// Shows the file dialog for `pick`; the answer comes back through `picked`.
    fn pick(&mut self, pick: Pick) {
        if self.recipes.dialog_open {
            return;
        }
        self.recipes.dialog_open = true;
        let dir = self
            .open
            .as_ref()
            .and_then(|o| o.path.parent().map(std::path::Path::to_path_buf))
            .filter(|d| d.is_dir());
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

    fn on_picked(&mut self, pick: Pick, answer: Option<PathBuf>) {
        self.recipes.dialog_open = false;
        let Some(path) = answer else { return };
        match pick {
            Pick::OpenRecipe => self.open_recipe(path),
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
            Pending::Close => {
                self.closing = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
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
        if dirty && !self.closing && ui.input(|i| i.viewport().close_requested()) {
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.pending = Some(Pending::Close);
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
        self.open_recipe(record.recipe.clone());
        if self.pending.is_some() {
            // The open recipe has unsaved changes: the question shows; the values would go
            // into the wrong recipe, so none are filled in.
            self.recipes.notice = Some(format!(
                "Rebuild of build #{id}: save or discard the open recipe's changes, then press Rebuild again."
            ));
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

    fn build_running(&self) -> bool {
        self.build.as_ref().is_some_and(BuildState::is_running)
    }

    /// Checks the open recipe with the form's values and, if it loads, starts its first build.
    fn start_build(&mut self) {
        if self.build_running() {
            return;
        }
        let Some(open) = &mut self.open else {
            return;
        };
        let Some(recipe) = open.check() else {
            self.saved.place = Place::Recipes;
            return;
        };
        let Some(build) = recipe.builds.first().cloned() else {
            self.saved.place = Place::Recipes;
            return;
        };
        let history = self.history_db.clone().map(|db| HistoryTarget {
            db,
            recipe_path: open.path.clone(),
        });
        self.build = Some(BuildState::new(build.name.clone(), Instant::now()));
        self.cancel = Some(engine::start(
            &self.runtime,
            self.engine.as_ref(),
            recipe,
            build,
            self.inbox.clone(),
            history,
        ));
        self.saved.place = Place::Build;
    }

    fn cancel_build(&mut self) {
        if let (Some(cancel), Some(build)) = (&self.cancel, &mut self.build) {
            cancel.cancel();
            build.cancelling = true;
        }
    }

    fn sidebar_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("kiln");
        ui.add_space(theme::GAP);
        ui.selectable_value(&mut self.saved.place, Place::Recipes, "Recipes");
        let build_label = match &self.build {
            Some(b) if b.is_running() => "Build (running)",
            _ => "Build",
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

    fn recipe_ui(&mut self, ui: &mut egui::Ui) {
        let running = self.build_running();
        let Some(open) = &mut self.open else {
            ui.label("Open a recipe on the left.");
            return;
        };
        let mut start = false;
        let mut action = None;
        ui.horizontal(|ui| {
            ui.heading(open.title());
            if ui.button("Validate").clicked() {
                open.check();
            }
            let build = ui
                .add_enabled(!running, egui::Button::new("Start build"))
                .on_hover_text("Ctrl+B");
            start = build.clicked();
            ui.separator();
            action = editor_view::actions_ui(ui, &open.editor);
        });
        ui.weak(open.path.display().to_string());
        if let Some(note) = &open.note {
            ui.colored_label(theme::current(ui.ctx()).running, note);
        }
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
                            variables_panel::variables_ui(ui, open);
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
        if let Some(action) = action {
            self.editor_action(action);
        }
        if start {
            self.start_build();
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
                Message::Event(event) => {
                    if let Some(build) = &mut self.build {
                        build.apply(event, now);
                    }
                }
                Message::Finished(report) => {
                    if let Some(build) = &mut self.build {
                        build.finish(report, now);
                    }
                    self.cancel = None;
                    self.notify_build_end(ctx);
                    // The build was recorded before its report was sent.
                    self.history.stale = true;
                }
                Message::HostChecked(checks) => self.host = Some(checks),
                Message::Credentials(snapshot) => self.credentials.receive(snapshot),
                Message::Templates(listing) => self.templates.receive(listing),
                Message::History(read) => self.history.receive(read),
            }
        }
        while let Ok((pick, answer)) = self.picked.try_recv() {
            self.on_picked(pick, answer);
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
        let build_key = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::B);
        if ui.input_mut(|i| i.consume_shortcut(&build_key)) {
            self.start_build();
        }
        self.file_input(ui);
        egui::Panel::left("places")
            .resizable(false)
            .exact_size(theme::SIDEBAR_WIDTH)
            .show(ui, |ui| self.sidebar_ui(ui));
        match self.saved.place {
            Place::Recipes => {
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
                match chosen {
                    Some(RecipesAction::Open(path)) => self.open_recipe(path),
                    Some(RecipesAction::OpenDialog) => self.pick(Pick::OpenRecipe),
                    Some(RecipesAction::NewFromDefault) => self.pick(Pick::NewRecipe {
                        suggested: "my-recipe.json".into(),
                    }),
                    None => {}
                }
                egui::CentralPanel::default().show(ui, |ui| self.recipe_ui(ui));
            }
            Place::Build => {
                let now = Instant::now();
                let action = egui::CentralPanel::default()
                    .show(ui, |ui| match &self.build {
                        Some(build) => {
                            build_panel::build_ui(ui, build, &mut self.saved.log_tab, now)
                        }
                        None => {
                            ui.label("No build yet: open a recipe and press Start build.");
                            None
                        }
                    })
                    .inner;
                if action == Some(BuildAction::Cancel) {
                    self.cancel_build();
                }
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
                match request {
                    Some(templates_panel::Request::Refresh) => self.run_templates(None),
                    Some(templates_panel::Request::Act(action)) => self.run_templates(Some(action)),
                    None => {}
                }
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
                if let Some(action) = action {
                    self.run_credentials(action);
                }
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
                match request {
                    Some(history_panel::Request::Refresh) => self.read_history(),
                    Some(history_panel::Request::Rebuild(id)) => self.rebuild(id),
                    None => {}
                }
            }
            Place::Host => {
                let action = egui::CentralPanel::default()
                    .show(ui, |ui| host_panel::host_ui(ui, self.host.as_deref()))
                    .inner;
                if action == Some(HostAction::Recheck) {
                    self.host = None;
                    engine::check_host(&self.runtime, self.inbox.clone());
                }
            }
        }
        let ctx = ui.ctx().clone();
        self.unsaved_modal(&ctx);
        if self.build_running() {
            // The build's clock; events repaint on their own.
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
