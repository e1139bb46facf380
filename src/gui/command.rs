//! What the user asked for, as one value: every place's panel returns a [`Command`] instead
//! of acting, and the window applies them after the frame is drawn, so no panel reaches into
//! another place's state. Also the sidebar's [`Place`]s.

use std::path::PathBuf;

use super::dialogs::{Pick, PickAnswer};
use super::editor::view::EditorAction;
use super::engine::BuildId;
use super::{credentials, templates};

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

/// One request of the user's, applied by the window after the frame.
#[derive(Debug)]
pub enum Command {
    /// Show a place.
    Show(Place),
    /// Open this recipe (asking about unsaved changes first).
    OpenRecipe(PathBuf),
    /// Ask the user for a file (a dialog, or the path prompt without one).
    Pick(Pick),
    /// The user answered a [`Command::Pick`] (typed into the path prompt).
    Picked(Pick, PickAnswer),
    /// Save, reload or otherwise act on the recipe's editor.
    Editor(EditorAction),
    /// Save the values typed on the form to a var-file (asks where).
    SaveVarFile,
    /// Start the open recipe's build.
    StartBuild,
    /// Show build tab `id`.
    ShowBuild(BuildId),
    /// Close the ended build tab `id`.
    CloseBuild(BuildId),
    /// Cancel build `id`.
    CancelBuild(BuildId),
    /// Let build `id` go on from its breakpoint.
    ContinueBuild(BuildId),
    /// Run build `id` again as it ran.
    BuildAgain(BuildId),
    /// Run build `id` again with the step cache, from provisioner `n` on.
    BuildAgainFrom(BuildId, usize),
    /// Show a folder in the file manager.
    OpenFolder(PathBuf),
    /// Show the Templates place and list them again (a build just registered some).
    ShowTemplates,
    /// List the templates again (`None`) or act on them.
    Templates(Option<templates::Action>),
    /// Choose the image of the publish form.
    ChooseImage,
    /// Publish the image of the publish form.
    PublishImage,
    /// Act on the keyring's profiles and keys.
    Credentials(credentials::Action),
    /// Read the history again.
    ReadHistory,
    /// Rebuild history record `id`.
    Rebuild(i64),
    /// Run the host check again (probing KVM afresh).
    RecheckHost,
    /// Remove every entry of the step cache, then check the host again.
    ClearStepCache,
}
