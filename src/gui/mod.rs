//! The desktop window (`kiln` without arguments). It holds no build logic: it starts builds
//! through an [`engine::Engine`] (the real one calls `kiln::build::plan::run_build`) and
//! renders the events that come back.

pub mod app;
pub mod build_panel;
pub mod build_place;
pub mod build_settings;
pub mod build_state;
pub mod builds_picker;
pub mod command;
pub mod credentials;
pub mod credentials_panel;
pub mod dialogs;
pub mod editor;
pub mod engine;
pub mod history_panel;
pub mod host_panel;
pub mod log_buffer;
pub mod log_search;
pub mod notify;
pub mod publish_form;
pub mod recipe_files;
pub mod recipe_usage;
pub mod recipes_panel;
pub mod session;
pub mod templates;
pub mod templates_panel;
pub mod theme;
pub mod variables_panel;
pub mod wording;

use std::sync::Arc;

pub use app::{AppConfig, KilnApp};

/// kiln's icon at 64 px (assets/icons, rendered from assets/kiln.svg by packaging/icons.sh).
const WINDOW_ICON: &[u8] = include_bytes!("../../assets/icons/kiln-64.png");

/// Opens the window and returns when it is closed.
pub fn run(config: AppConfig) -> eframe::Result {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("kiln")
        .with_app_id("kiln")
        .with_inner_size([1100.0, 720.0])
        .with_min_inner_size([640.0, 400.0]);
    // The window's own icon (_NET_WM_ICON), for window lists that do not read the desktop file.
    if let Ok(icon) = eframe::icon_data::from_png_bytes(WINDOW_ICON) {
        viewport = viewport.with_icon(Arc::new(icon));
    }
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Glow,
        viewport,
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "kiln",
        options,
        Box::new(move |cc| Ok(Box::new(KilnApp::new(cc, config)))),
    )
}

/// The configuration `main` uses: the real engine, the bundled recipes, the default recipe,
/// the history in `$XDG_DATA_HOME/kiln`.
pub fn default_config(runtime: tokio::runtime::Handle, started: std::time::Instant) -> AppConfig {
    AppConfig {
        runtime,
        engine: Arc::new(engine::RealEngine::default()),
        initial_recipe: None,
        recipes_dir: crate::recipes::recipes_dir(),
        started,
        secrets: Arc::new(credentials::PlatformSecrets),
        dialogs: Arc::new(dialogs::RfdDialogs),
        history: Some(crate::history::default_path()),
    }
}
