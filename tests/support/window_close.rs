//! The window's close button as egui_kittest sees it: the user's close request, and the
//! commands the window sent its root viewport (`CancelClose`, `Close`) in the last frame.

use egui_kittest::Harness;

/// The window's commands to the root viewport in the last frame.
pub fn root_commands<State>(harness: &Harness<'_, State>) -> Vec<egui::ViewportCommand> {
    harness
        .output()
        .viewport_output
        .get(&egui::ViewportId::ROOT)
        .map(|v| v.commands.clone())
        .unwrap_or_default()
}

/// The user closes the window (its close button, Alt+F4), and one frame runs.
pub fn request_close<State>(harness: &mut Harness<'_, State>) {
    harness
        .input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    harness.step();
}
