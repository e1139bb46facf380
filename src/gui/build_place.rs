//! The Build place's own state: one tab per build or publication of this session (its
//! event-fed [`BuildState`], its controls, what it ran), which tab is shown, the log search,
//! and the notice the place shows. The window asks it to add, show, cancel, continue and
//! close tabs; it draws the place and says what the user asked for as a [`Command`].

use std::time::Instant;

use super::build_panel::{self, BuildAction, LogTab, TabAction};
use super::build_state::BuildState;
use super::command::Command;
use super::engine::{BuildControls, BuildId, HistoryTarget, Job};
use super::log_search::LogSearch;
use super::theme;
use crate::build::event::Event;
use crate::build::plan::BuildReport;

/// How many build tabs stay open; beyond that the oldest ended ones close by themselves.
pub const BUILD_TABS_MAX: usize = 8;

/// One build of this session: a tab of the Build place.
struct BuildTab {
    id: BuildId,
    state: BuildState,
    controls: BuildControls,
    /// What it ran, for Build again (in memory only: values may be secrets).
    ran: (Job, Option<HistoryTarget>),
}

/// The Build place.
pub struct BuildPlace {
    tabs: Vec<BuildTab>,
    shown: Option<BuildId>,
    next: u64,
    /// The search of the log view.
    log_search: LogSearch,
    /// Why a folder could not be shown (the place says it).
    pub notice: Option<String>,
}

impl Default for BuildPlace {
    fn default() -> Self {
        Self {
            tabs: Vec::new(),
            shown: None,
            next: 1,
            log_search: LogSearch::default(),
            notice: None,
        }
    }
}

impl BuildPlace {
    /// The id the next tab gets (the engine reports under it).
    pub fn next_id(&mut self) -> BuildId {
        let id = BuildId(self.next);
        self.next += 1;
        id
    }

    /// Adds a tab for build `id`, shows it, and closes the oldest ended tabs beyond
    /// [`BUILD_TABS_MAX`] (running ones always stay).
    pub fn add(
        &mut self,
        id: BuildId,
        state: BuildState,
        controls: BuildControls,
        ran: (Job, Option<HistoryTarget>),
    ) {
        self.tabs.push(BuildTab {
            id,
            state,
            controls,
            ran,
        });
        while self.tabs.len() > BUILD_TABS_MAX {
            let Some(oldest) = self.tabs.iter().position(|t| !t.state.is_running()) else {
                break;
            };
            self.tabs.remove(oldest);
        }
        self.shown = Some(id);
    }

    /// The state of build `id`.
    pub fn state(&self, id: BuildId) -> Option<&BuildState> {
        self.tab(id).map(|t| &t.state)
    }

    /// The state of the build the place shows.
    pub fn shown_state(&self) -> Option<&BuildState> {
        self.shown.and_then(|id| self.state(id))
    }

    /// The state of the build the place shows, to change.
    pub fn shown_state_mut(&mut self) -> Option<&mut BuildState> {
        let id = self.shown?;
        self.tab_mut(id).map(|t| &mut t.state)
    }

    /// Every tab's state, oldest first.
    pub fn states(&self) -> Vec<&BuildState> {
        self.tabs.iter().map(|t| &t.state).collect()
    }

    /// Which tab is shown (0 is the oldest).
    pub fn shown_index(&self) -> Option<usize> {
        self.tabs.iter().position(|t| Some(t.id) == self.shown)
    }

    /// How many builds run.
    pub fn running(&self) -> usize {
        self.tabs.iter().filter(|t| t.state.is_running()).count()
    }

    /// What build `id` ran (for Build again).
    pub fn ran(&self, id: BuildId) -> Option<(Job, Option<HistoryTarget>)> {
        self.tab(id).map(|t| t.ran.clone())
    }

    /// An event of build `id`.
    pub fn apply(&mut self, id: BuildId, event: Event, at: Instant) {
        if let Some(tab) = self.tab_mut(id) {
            tab.state.apply(event, at);
        }
    }

    /// Build `id` ended with `report`.
    pub fn finish(&mut self, id: BuildId, report: BuildReport, now: Instant) {
        if let Some(tab) = self.tab_mut(id) {
            tab.state.finish(report, now);
        }
    }

    /// Shows tab `id`.
    pub fn show(&mut self, id: BuildId) {
        if self.tab(id).is_some() {
            self.shown = Some(id);
        }
    }

    /// Cancels build `id` if it runs.
    pub fn cancel(&mut self, id: BuildId) {
        if let Some(tab) = self.tab_mut(id)
            && tab.state.is_running()
        {
            tab.controls.cancel.cancel();
            tab.state.cancelling = true;
        }
    }

    /// Cancels every running build.
    pub fn cancel_all(&mut self) {
        let ids: Vec<BuildId> = self.tabs.iter().map(|t| t.id).collect();
        for id in ids {
            self.cancel(id);
        }
    }

    /// Lets build `id` go on from its breakpoint.
    pub fn resume(&mut self, id: BuildId) {
        if let Some(tab) = self.tab_mut(id)
            && let Some(paused) = &mut tab.state.paused
            && !paused.continuing
        {
            paused.continuing = true;
            tab.controls.resume.resume();
        }
    }

    /// Closes tab `id` if its build ended; the next one is shown.
    pub fn close(&mut self, id: BuildId) {
        let Some(at) = self
            .tabs
            .iter()
            .position(|t| t.id == id && !t.state.is_running())
        else {
            return;
        };
        self.tabs.remove(at);
        if self.shown == Some(id) {
            let next = at.min(self.tabs.len().saturating_sub(1));
            self.shown = self.tabs.get(next).map(|t| t.id);
        }
    }

    /// Draws the place: the tabs (when more than one), the shown build; returns what the
    /// user asked for.
    pub fn ui(&mut self, ui: &mut egui::Ui, log_tab: &mut LogTab, now: Instant) -> Option<Command> {
        if let Some(notice) = &self.notice {
            ui.colored_label(theme::current(ui.ctx()).warn, notice);
        }
        let shown = self.shown;
        let list: Vec<(BuildId, &BuildState)> =
            self.tabs.iter().map(|t| (t.id, &t.state)).collect();
        let tab_action = if list.len() > 1 {
            let clicked = build_panel::tabs_ui(ui, &list, shown);
            ui.separator();
            clicked
        } else {
            None
        };
        let action = match list.iter().find(|(id, _)| Some(*id) == shown) {
            Some((id, build)) => {
                build_panel::build_ui(ui, build, log_tab, &mut self.log_search, id.0, now)
            }
            None => {
                ui.label("No build yet: open a recipe and press Start build.");
                None
            }
        };
        let from_tabs = match tab_action {
            Some(TabAction::Show(id)) => Some(Command::ShowBuild(id)),
            Some(TabAction::Close(id)) => Some(Command::CloseBuild(id)),
            None => None,
        };
        let from_build = match (action, shown) {
            (Some(BuildAction::Cancel), Some(id)) => Some(Command::CancelBuild(id)),
            (Some(BuildAction::Continue), Some(id)) => Some(Command::ContinueBuild(id)),
            (Some(BuildAction::Rebuild), Some(id)) => Some(Command::BuildAgain(id)),
            (Some(BuildAction::RebuildFrom(n)), Some(id)) => Some(Command::BuildAgainFrom(id, n)),
            (Some(BuildAction::OpenFolder(dir)), _) => Some(Command::OpenFolder(dir)),
            (Some(BuildAction::OpenTemplates), _) => Some(Command::ShowTemplates),
            _ => None,
        };
        from_build.or(from_tabs)
    }

    fn tab(&self, id: BuildId) -> Option<&BuildTab> {
        self.tabs.iter().find(|t| t.id == id)
    }

    fn tab_mut(&mut self, id: BuildId) -> Option<&mut BuildTab> {
        self.tabs.iter_mut().find(|t| t.id == id)
    }
}
