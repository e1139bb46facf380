//! File dialogs behind a small trait: the window asks for a path and gets the answer later
//! through a callback, so the UI thread never waits on a dialog. The real one is `rfd` (the
//! XDG desktop portal over D-Bus, else zenity; no GTK needed at build time); tests use
//! [`ScriptedDialogs`], which answers from a list and never opens a window. The same trait
//! shows a folder in the desktop's file manager (`xdg-open`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// What a dialog is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Choose a recipe to open.
    OpenRecipe,
    /// Choose where the copy of the default recipe goes ("New from default").
    NewRecipe {
        /// The file name the dialog suggests.
        suggested: String,
    },
    /// Choose where to save the open recipe ("Save as…").
    SaveRecipeAs {
        /// The file name the dialog suggests.
        suggested: String,
    },
    /// Choose where the variables form's values go ("Save as var-file…").
    SaveVarFile {
        /// The file name the dialog suggests.
        suggested: String,
    },
    /// Choose the qcow2 image to publish ("Publish an image…").
    OpenImage,
}

/// How a file dialog ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickAnswer {
    /// The user chose this path.
    Chosen(PathBuf),
    /// The user closed the dialog without choosing.
    Cancelled,
    /// No dialog could be shown, or it broke: why, and what to do instead.
    Failed(String),
}

impl From<Option<PathBuf>> for PickAnswer {
    fn from(answer: Option<PathBuf>) -> Self {
        answer.map_or(Self::Cancelled, Self::Chosen)
    }
}

/// What the window says when a dialog cannot be shown or broke: type the path instead.
const TYPE_THE_PATH: &str = "type the path in the field below instead";

/// Called with the dialog's answer.
pub type PickDone = Box<dyn FnOnce(PickAnswer) + Send>;

/// Asks the user for a file path.
pub trait FileDialogs: Send + Sync {
    /// Shows the dialog for `pick`, starting in `dir` when given, and calls `done` with the
    /// answer (possibly from another thread, possibly before returning).
    fn pick(&self, pick: Pick, dir: Option<PathBuf>, done: PickDone);

    /// Shows `dir` in the desktop's file manager, without waiting for it; an error says why
    /// it could not be started.
    fn open_folder(&self, dir: &Path) -> Result<(), String>;
}

/// The desktop's own dialogs, through `rfd`, each on a thread of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct RfdDialogs;

impl FileDialogs for RfdDialogs {
    fn pick(&self, pick: Pick, dir: Option<PathBuf>, done: PickDone) {
        // `done` is shared with the thread; if the thread cannot start, it is answered here.
        let done = std::sync::Arc::new(Mutex::new(Some(done)));
        let for_thread = done.clone();
        let spawned = std::thread::Builder::new()
            .name("kiln-file-dialog".into())
            .spawn(move || {
                let answer = wait_for_dialog(pick, dir);
                if let Some(done) = for_thread.lock().ok().and_then(|mut d| d.take()) {
                    done(answer);
                }
            });
        if let Err(e) = spawned {
            let why = format!("Cannot start the file dialog ({e}): {TYPE_THE_PATH}.");
            tracing::warn!("{why}");
            if let Some(done) = done.lock().ok().and_then(|mut d| d.take()) {
                done(PickAnswer::Failed(why));
            }
        }
    }

    fn open_folder(&self, dir: &Path) -> Result<(), String> {
        if !dir.is_dir() {
            return Err(format!("{} is not a folder (any more)", dir.display()));
        }
        let mut child = std::process::Command::new("xdg-open")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start xdg-open to show {} ({e}): install xdg-utils, or open the folder yourself",
                    dir.display()
                )
            })?;
        // Reaped on a thread of its own so it never lingers as a zombie.
        std::thread::spawn(move || child.wait());
        Ok(())
    }
}

/// The portal's well-known name on the session bus.
const PORTAL: &str = "org.freedesktop.portal.Desktop";

/// How often the portal's presence is checked while a dialog is open.
const PORTAL_POLL: Duration = Duration::from_millis(500);

/// Shows one dialog (on a thread of its own) and waits for the answer. Whatever happens in
/// the dialog, the window hears back, else its Open… button would stay disabled: a panic in
/// rfd is `None`, and so is a portal that leaves the bus while its dialog is open (it
/// crashed or was restarted), because rfd would wait for that dialog's answer forever. rfd's
/// thread is then left waiting, blocked and harmless.
fn wait_for_dialog(pick: Pick, dir: Option<PathBuf>) -> PickAnswer {
    // The portal already there is noted before the dialog is asked for, so one that leaves
    // at once is noticed too.
    let mut watch = PortalWatch::start();
    if let Some(w) = watch.as_mut() {
        w.gone();
    }
    if let Some(why) = no_dialog_here(watch.as_ref()) {
        tracing::warn!("{why}");
        return PickAnswer::Failed(why);
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kiln-file-dialog-rfd".into())
        .spawn(move || {
            let answer = std::panic::catch_unwind(move || show(pick, dir))
                .map(PickAnswer::from)
                .unwrap_or_else(|_| {
                    let why = format!("The file dialog failed: try again, or {TYPE_THE_PATH}.");
                    tracing::warn!("{why}");
                    PickAnswer::Failed(why)
                });
            let _ = tx.send(answer);
        });
    if let Err(e) = spawned {
        let why = format!("Cannot start the file dialog ({e}): {TYPE_THE_PATH}.");
        tracing::warn!("{why}");
        return PickAnswer::Failed(why);
    }
    loop {
        match rx.recv_timeout(PORTAL_POLL) {
            Ok(answer) => return answer,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return PickAnswer::Failed(format!(
                    "The file dialog ended without an answer: {TYPE_THE_PATH}."
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if watch.as_mut().is_some_and(PortalWatch::gone) {
                    // An answer sent just before the portal left still counts.
                    return rx.recv_timeout(PORTAL_POLL).unwrap_or_else(|_| {
                        let why = format!(
                            "The desktop portal left while its file dialog was open (it crashed or was restarted): try again, or {TYPE_THE_PATH}."
                        );
                        tracing::warn!("{why}");
                        PickAnswer::Failed(why)
                    });
                }
            }
        }
    }
}

/// Watches who owns the portal's name on the session bus, so a dialog whose portal went
/// away is not waited for forever.
struct PortalWatch {
    dbus: zbus::blocking::fdo::DBusProxy<'static>,
    /// The portal instance seen since the dialog opened (it may be started by the dialog's
    /// own call, D-Bus activation), by its unique name.
    seen: Option<String>,
}

impl PortalWatch {
    /// Connects to the session bus; `None` (nothing to watch) when there is none, and then
    /// rfd's own call fails too and it answers by itself.
    fn start() -> Option<Self> {
        match zbus::blocking::Connection::session()
            .and_then(|bus| zbus::blocking::fdo::DBusProxy::new(&bus))
        {
            Ok(dbus) => Some(Self { dbus, seen: None }),
            Err(e) => {
                tracing::debug!("not watching the desktop portal: no session bus ({e})");
                None
            }
        }
    }

    /// The portal name's current owner; `Err` when the bus itself cannot be asked.
    fn owner(&self) -> Result<Option<String>, zbus::Error> {
        let name = zbus::names::BusName::try_from(PORTAL)?;
        match self.dbus.get_name_owner(name) {
            Ok(owner) => Ok(Some(owner.to_string())),
            Err(zbus::fdo::Error::NameHasNoOwner(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a portal is on the bus, or the bus would start one for the dialog's call.
    fn can_answer(&self) -> bool {
        if matches!(self.owner(), Ok(Some(_))) {
            return true;
        }
        self.dbus
            .list_activatable_names()
            .is_ok_and(|names| names.iter().any(|n| n.as_str() == PORTAL))
    }

    /// Whether the portal seen earlier has left (or the bus went away with it). A portal
    /// never seen (rfd fell back to zenity) never counts as gone.
    fn gone(&mut self) -> bool {
        match (self.owner(), &self.seen) {
            (Ok(Some(now)), None) => {
                self.seen = Some(now);
                false
            }
            (Ok(now), Some(seen)) => now.as_ref() != Some(seen),
            (Ok(None), None) => false,
            (Err(e), seen) => {
                tracing::debug!("cannot ask the session bus about the desktop portal: {e}");
                seen.is_some()
            }
        }
    }
}

/// Why no file dialog can be shown here, if none can: no XDG desktop portal on the session
/// bus (running, or startable by the bus), and no zenity with a display to show it on —
/// then rfd would answer "cancelled" at once and the window would seem to ignore the click.
fn no_dialog_here(watch: Option<&PortalWatch>) -> Option<String> {
    let portal = watch.is_some_and(PortalWatch::can_answer);
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    let zenity = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
    if portal || (zenity && display) {
        return None;
    }
    let bus = if watch.is_some() {
        "no XDG desktop portal on the session bus"
    } else {
        "no session bus (so no XDG desktop portal)"
    };
    let zenity = if zenity {
        "no display for zenity"
    } else {
        "zenity is not installed"
    };
    Some(format!(
        "No file dialog on this desktop: {bus}, and {zenity}. Install xdg-desktop-portal-gtk (or zenity), or {TYPE_THE_PATH}."
    ))
}

/// Shows one dialog and waits for the answer (on the dialog's own thread).
fn show(pick: Pick, dir: Option<PathBuf>) -> Option<PathBuf> {
    let mut dialog = rfd::FileDialog::new();
    dialog = match pick {
        Pick::OpenImage => dialog
            .add_filter("qcow2 image", &["qcow2", "img"])
            .add_filter("Any file", &["*"]),
        _ => dialog.add_filter("Packer recipe (JSON)", &["json"]),
    };
    if let Some(dir) = dir {
        dialog = dialog.set_directory(dir);
    }
    match pick {
        Pick::OpenRecipe => dialog.set_title("Open a recipe").pick_file(),
        Pick::OpenImage => dialog.set_title("The image to publish").pick_file(),
        Pick::NewRecipe { suggested } => dialog
            .set_title("Save the new recipe as")
            .set_file_name(suggested)
            .save_file(),
        Pick::SaveRecipeAs { suggested } => dialog
            .set_title("Save the recipe as")
            .set_file_name(suggested)
            .save_file(),
        Pick::SaveVarFile { suggested } => dialog
            .set_title("Save the variables as a var-file")
            .set_file_name(suggested)
            .save_file(),
    }
}

/// A dialog double: answers each request with the next scripted path (`None` = cancelled;
/// no answer left = cancelled) and records what was asked.
#[derive(Debug, Default)]
pub struct ScriptedDialogs {
    answers: Mutex<VecDeque<PickAnswer>>,
    asked: Mutex<Vec<Pick>>,
    opened: Mutex<Vec<PathBuf>>,
}

impl ScriptedDialogs {
    /// A double that will answer with `answers`, in order.
    pub fn new(answers: impl IntoIterator<Item = Option<PathBuf>>) -> Self {
        Self {
            answers: Mutex::new(answers.into_iter().map(PickAnswer::from).collect()),
            asked: Mutex::default(),
            opened: Mutex::default(),
        }
    }

    /// Adds an answer for a later request.
    pub fn push_answer(&self, answer: Option<PathBuf>) {
        self.push(PickAnswer::from(answer));
    }

    /// Makes a later request fail as a desktop without any file dialog does.
    pub fn push_failure(&self, why: &str) {
        self.push(PickAnswer::Failed(why.to_string()));
    }

    fn push(&self, answer: PickAnswer) {
        if let Ok(mut a) = self.answers.lock() {
            a.push_back(answer);
        }
    }

    /// What was asked so far.
    pub fn asked(&self) -> Vec<Pick> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The folders the window asked to show, in order.
    pub fn opened_folders(&self) -> Vec<PathBuf> {
        self.opened.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

impl FileDialogs for ScriptedDialogs {
    fn pick(&self, pick: Pick, _dir: Option<PathBuf>, done: PickDone) {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(pick);
        }
        let answer = self
            .answers
            .lock()
            .ok()
            .and_then(|mut a| a.pop_front())
            .unwrap_or(PickAnswer::Cancelled);
        done(answer);
    }

    fn open_folder(&self, dir: &Path) -> Result<(), String> {
        if let Ok(mut opened) = self.opened.lock() {
            opened.push(dir.to_path_buf());
        }
        if dir.is_dir() {
            Ok(())
        } else {
            Err(format!("{} is not a folder (any more)", dir.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_double_answers_in_order_and_records_requests() {
        let d = ScriptedDialogs::new([Some(PathBuf::from("/a.json")), None]);
        let got = Arc::new(Mutex::new(Vec::new()));
        for pick in [
            Pick::OpenRecipe,
            Pick::NewRecipe {
                suggested: "n.json".into(),
            },
            Pick::OpenRecipe,
        ] {
            let got = got.clone();
            d.pick(pick, None, Box::new(move |p| got.lock().unwrap().push(p)));
        }
        assert_eq!(
            *got.lock().unwrap(),
            vec![
                PickAnswer::Chosen(PathBuf::from("/a.json")),
                PickAnswer::Cancelled,
                PickAnswer::Cancelled
            ]
        );
        assert_eq!(d.asked().len(), 3);
        assert_eq!(d.asked()[0], Pick::OpenRecipe);
    }
}
