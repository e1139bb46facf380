//! The recipe editor driven like a user would (egui_kittest, accessibility check on): card
//! fields and the raw JSON view edit the file in memory and stay in sync; Save writes only
//! what changed (comments, key order, unknown options and formatting survive), refuses
//! broken JSON, and never overwrites a file changed on disk without asking. Files open
//! through the dialog double, by drag and drop, or as a copy of the default recipe.

#[path = "support/window_close.rs"]
mod window_close;
use window_close::{request_close, root_commands};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use kiln::gui::dialogs::{Pick, ScriptedDialogs};
use kiln::gui::editor::{Parsed, RecipeTab, raw::raw_id};
use kiln::gui::engine::RealEngine;
use kiln::gui::{AppConfig, KilnApp};
use serde_json::Value;

/// A recipe written the way people write them: comments, an option kiln does not know,
/// odd spacing, a post-processor sequence next to a bare name.
const RECIPE: &str = r#"{
  "_comment": "edited by the GUI test; keep this comment",
  "description": "Editor test recipe",
  "variables": {
    "bucket": "test-bucket"
  },
  "builders": [
    {
      "_comment": "the builder's own comment",
      "type": "qemu",
      "name": "edit-vm",
      "disk_image": true,
      "iso_url": "file:///nonexistent/base.qcow2",
      "iso_checksum": "none",
      "disk_size": "10G",
      "cpus": 2,
      "memory": "2048",
      "ssh_username": "debian",
      "qemuargs":   [ ["-smp",  "2"] ],
      "vm_name": "edit-vm.qcow2"
    }
  ],
  "provisioners": [
    {"type": "shell", "inline": ["echo one", "echo two"]}
  ],
  "post-processors": [
    "manifest",
    [
      {"type": "exoscale-import", "api_key": "k", "api_secret": "s",
       "image_bucket": "{{user `bucket`}}", "image_zone": "ch-gva-2",
       "template_zones": ["ch-gva-2"], "template_name": "Edit test"}
    ]
  ]
}
"#;

struct Setup {
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    recipe: PathBuf,
    dialogs: Arc<ScriptedDialogs>,
}

impl Setup {
    fn recipes_dir(&self) -> PathBuf {
        self.dir.path().join("recipes")
    }
}

fn setup() -> (Setup, Harness<'static, KilnApp>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipes_dir = dir.path().join("recipes");
    std::fs::create_dir_all(recipes_dir.join("scripts")).unwrap();
    // The real default recipe and its script, as `New from default` copies them.
    let bundled = kiln::recipes::default_recipe();
    std::fs::copy(&bundled, recipes_dir.join(kiln::recipes::DEFAULT_RECIPE)).unwrap();
    std::fs::copy(
        bundled.parent().unwrap().join("scripts/debian-base.sh"),
        recipes_dir.join("scripts/debian-base.sh"),
    )
    .unwrap();
    std::fs::write(
        recipes_dir.join("broken.json"),
        "{\n  \"builders\": [\n    {\"type\": \"qemu\",}\n  ]\n}\n",
    )
    .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let recipe = work.join("edit-me.json");
    std::fs::write(&recipe, RECIPE).unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let config = AppConfig {
        runtime: runtime.handle().clone(),
        engine: Arc::new(RealEngine::default()),
        initial_recipe: Some(recipe.clone()),
        recipes_dir,
        started: Instant::now(),
        secrets: Arc::new(kiln::gui::credentials::PlatformSecrets),
        dialogs: dialogs.clone(),
        history: None,
    };
    let harness = Harness::builder()
        .with_size([1200.0, 900.0])
        .with_max_steps(40)
        .build_eframe(move |cc| KilnApp::new(cc, config));
    let setup = Setup {
        _runtime: runtime,
        dir,
        recipe,
        dialogs,
    };
    (setup, harness)
}

/// Replaces the text of the field labelled `label` by `text`, as typing would.
fn retype(harness: &mut Harness<'_, KilnApp>, role: Role, label: &str, text: &str) {
    harness.get_by_role_and_label(role, label).focus();
    harness.run();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.run();
    harness.get_by_role_and_label(role, label).type_text(text);
    harness.run();
}

fn tab(harness: &mut Harness<'_, KilnApp>, name: &str) {
    harness.get_by_label(name).click();
    harness.run();
}

fn save(harness: &mut Harness<'_, KilnApp>) {
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::S);
    harness.run();
}

fn editor_text(harness: &Harness<'_, KilnApp>) -> String {
    harness
        .state()
        .open_recipe_state()
        .unwrap()
        .editor
        .text
        .clone()
}

/// Keys of every object, depth first: equal documents with equal key orders give equal lists.
fn key_order(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                key_order(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| key_order(v, out)),
        _ => {}
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn card_edits_save_only_what_changed() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Recipe");
    assert_eq!(harness.state().recipe_tab(), RecipeTab::Recipe);
    harness.get_by_label_contains("Builder · qemu · edit-vm");
    harness.get_by_label_contains("Post-processor 1 · manifest");
    harness.get_by_label_contains("Post-processor 2.1 · exoscale-import (sequence)");

    retype(&mut harness, Role::TextInput, "Disk size", "20G");
    retype(&mut harness, Role::TextInput, "CPUs", "4");
    retype(&mut harness, Role::TextInput, "Bucket", "my-images");
    retype(
        &mut harness,
        Role::TextInput,
        "Template zones (comma-separated)",
        "ch-gva-2, de-fra-1",
    );
    harness.get_by_label("unsaved changes");
    // Nothing is written before Save.
    assert_eq!(std::fs::read_to_string(&setup.recipe).unwrap(), RECIPE);

    save(&mut harness);
    harness.get_by_label("Saved.");
    assert!(harness.query_by_label("unsaved changes").is_none());
    let on_disk = std::fs::read_to_string(&setup.recipe).unwrap();

    // The parsed document is the original with exactly those four values changed, in the
    // same key order.
    let mut expected = parse(RECIPE);
    expected["builders"][0]["disk_size"] = "20G".into();
    expected["builders"][0]["cpus"] = 4.into();
    let import = &mut expected["post-processors"][1][0];
    import["image_bucket"] = "my-images".into();
    import["template_zones"] = serde_json::json!(["ch-gva-2", "de-fra-1"]);
    let saved = parse(&on_disk);
    assert_eq!(saved, expected);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    key_order(&saved, &mut a);
    key_order(&expected, &mut b);
    assert_eq!(a, b, "key order");
    // Byte for byte where nothing was edited: the comments, the unknown option's spacing,
    // and in fact the whole file apart from the four values.
    assert!(on_disk.contains("\"_comment\": \"edited by the GUI test; keep this comment\","));
    assert!(on_disk.contains("\"qemuargs\":   [ [\"-smp\",  \"2\"] ],"));
    let by_hand = RECIPE
        .replace("\"disk_size\": \"10G\"", "\"disk_size\": \"20G\"")
        .replace("\"cpus\": 2,", "\"cpus\": 4,")
        .replace(
            "\"image_bucket\": \"{{user `bucket`}}\"",
            "\"image_bucket\": \"my-images\"",
        )
        .replace(
            "\"template_zones\": [\"ch-gva-2\"]",
            "\"template_zones\": [\"ch-gva-2\", \"de-fra-1\"]",
        );
    assert_eq!(on_disk, by_hand);

    // Saving again without a change writes nothing.
    let modified = std::fs::metadata(&setup.recipe)
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    save(&mut harness);
    assert_eq!(
        std::fs::metadata(&setup.recipe)
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
}

#[test]
fn raw_json_and_cards_stay_in_sync() {
    let (_setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Recipe");
    retype(&mut harness, Role::TextInput, "SSH user", "admin");
    tab(&mut harness, "JSON");
    let raw = harness
        .get_by_role_and_label(Role::MultilineTextInput, "Recipe JSON")
        .value()
        .unwrap_or_default();
    assert!(raw.contains("\"ssh_username\": \"admin\""), "{raw}");

    // Typing in the raw view re-derives the cards.
    let changed = RECIPE.replace("\"cpus\": 2", "\"cpus\": 8");
    retype(
        &mut harness,
        Role::MultilineTextInput,
        "Recipe JSON",
        &changed,
    );
    assert_eq!(editor_text(&harness), changed);
    tab(&mut harness, "Recipe");
    let cpus = harness
        .get_by_role_and_label(Role::TextInput, "CPUs")
        .value()
        .unwrap_or_default();
    assert_eq!(cpus, "8");
    let user = harness
        .get_by_role_and_label(Role::TextInput, "SSH user")
        .value()
        .unwrap_or_default();
    assert_eq!(user, "debian", "the card follows the raw text");
}

#[test]
fn broken_json_shows_line_and_column_and_is_not_saved() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "JSON");
    let broken = "{\n  \"builders\": [\n    {\"type\": \"qemu\",}\n  ]\n}\n";
    retype(
        &mut harness,
        Role::MultilineTextInput,
        "Recipe JSON",
        broken,
    );
    // kiln's own checker, as the Recipes panel shows it: file:line:col.
    let wanted = format!("{}:3:", setup.recipe.display());
    harness.get_by_label_contains(&wanted);
    let open = harness.state().open_recipe_state().unwrap();
    assert!(matches!(
        open.editor.parsed(),
        Parsed::Invalid { line: 3, .. }
    ));
    assert!(open.editor.is_dirty());

    // Save is disabled and Ctrl+S refuses, saying why; the file is untouched.
    assert!(harness.get_by_label("Save").accesskit_node().is_disabled());
    save(&mut harness);
    harness.get_by_label_contains("not saved: the JSON does not parse");
    assert_eq!(std::fs::read_to_string(&setup.recipe).unwrap(), RECIPE);

    // The cards say where the JSON is broken instead of showing stale values.
    tab(&mut harness, "Recipe");
    harness.get_by_label_contains("The JSON is invalid at line 3");
    assert!(harness.query_by_label("CPUs").is_none());

    // Revert brings the file's text and the cards back.
    harness.get_by_label("Revert").click();
    harness.run();
    assert_eq!(editor_text(&harness), RECIPE);
    harness.get_by_role_and_label(Role::TextInput, "CPUs");
}

#[test]
fn a_file_changed_on_disk_asks_instead_of_overwriting() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Recipe");
    retype(&mut harness, Role::TextInput, "Template name", "Mine");
    let theirs = RECIPE.replace("Edit test", "Theirs");
    std::fs::write(&setup.recipe, &theirs).unwrap();

    save(&mut harness);
    harness.get_by_label_contains("changed on disk since kiln opened it. Nothing was saved.");
    assert_eq!(std::fs::read_to_string(&setup.recipe).unwrap(), theirs);

    // Reload takes the file as it is now.
    harness.get_by_label("Reload from disk").click();
    harness.run();
    assert_eq!(editor_text(&harness), theirs);
    assert!(
        !harness
            .state()
            .open_recipe_state()
            .unwrap()
            .editor
            .is_dirty()
    );

    // Edit again, conflict again, and this time overwrite.
    retype(&mut harness, Role::TextInput, "Template name", "Mine");
    std::fs::write(&setup.recipe, RECIPE).unwrap();
    harness.get_by_label("Save").click();
    harness.run();
    harness.get_by_label("Overwrite with my version").click();
    harness.run();
    assert_eq!(
        std::fs::read_to_string(&setup.recipe).unwrap(),
        theirs.replace(
            "\"template_name\": \"Theirs\"",
            "\"template_name\": \"Mine\""
        )
    );
    assert!(
        harness
            .query_by_label("Overwrite with my version")
            .is_none()
    );
}

#[test]
fn clicking_a_problem_puts_the_cursor_on_it_in_the_json_tab() {
    let (setup, mut harness) = setup();
    harness.run();
    harness.get_by_label("broken.json").click();
    harness.run();
    let path = setup.recipes_dir().join("broken.json");
    let problem = harness
        .state()
        .open_recipe_state()
        .unwrap()
        .diagnostics()
        .unwrap()
        .errors()
        .next()
        .unwrap()
        .clone();
    assert_eq!(problem.line, Some(3));
    harness.get_by_label(&problem.to_string()).click();
    harness.run();
    assert_eq!(harness.state().recipe_tab(), RecipeTab::Json);
    let state = egui::TextEdit::load_state(&harness.ctx, raw_id()).expect("the raw view's state");
    let cursor = state.cursor.char_range().expect("a cursor").primary.index.0;
    let text = std::fs::read_to_string(&path).unwrap();
    // Line 3, the problem's column: count the characters before it.
    let before: usize = text.lines().take(2).map(|l| l.chars().count() + 1).sum();
    assert_eq!(cursor, before + problem.col.unwrap() as usize - 1);
    assert!(
        harness
            .get_by_role_and_label(Role::MultilineTextInput, "Recipe JSON")
            .is_focused()
    );
}

#[test]
fn open_through_the_dialog_and_by_dropping_a_file() {
    let (setup, mut harness) = setup();
    harness.run();
    let other = setup.recipes_dir().join("broken.json");
    setup.dialogs.push_answer(Some(other.clone()));
    harness.get_by_label("Open…").click();
    harness.run();
    assert_eq!(setup.dialogs.asked(), vec![Pick::OpenRecipe]);
    assert_eq!(harness.state().open_recipe_state().unwrap().path, other);

    // Cancelled (no answer): nothing changes.
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::O);
    harness.run();
    assert_eq!(setup.dialogs.asked().len(), 2);
    assert_eq!(harness.state().open_recipe_state().unwrap().path, other);

    // Dropping a .json file opens it; anything else is refused with a message.
    drop_file(&mut harness, &setup.recipe);
    assert_eq!(
        harness.state().open_recipe_state().unwrap().path,
        setup.recipe
    );
    let image = setup.dir.path().join("disk.qcow2");
    drop_file(&mut harness, &image);
    assert_eq!(
        harness.state().open_recipe_state().unwrap().path,
        setup.recipe
    );
    harness.get_by_label_contains("kiln opens .json recipes");
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(harness: &mut Harness<'_, KilnApp>, path: &Path) {
    harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
    harness.run();
}

#[test]
fn new_from_default_copies_it_where_the_dialog_says_and_opens_it() {
    let (setup, mut harness) = setup();
    harness.run();
    let dest = setup.dir.path().join("mine/new.json");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    setup.dialogs.push_answer(Some(dest.clone()));
    harness.get_by_label("New from default…").click();
    harness.run();
    assert!(matches!(
        setup.dialogs.asked().as_slice(),
        [Pick::NewRecipe { suggested }] if suggested.ends_with(".json")
    ));
    let default = setup.recipes_dir().join(kiln::recipes::DEFAULT_RECIPE);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&default).unwrap()
    );
    assert!(
        dest.parent()
            .unwrap()
            .join("scripts/debian-base.sh")
            .is_file()
    );
    let open = harness.state().open_recipe_state().unwrap();
    assert_eq!(open.path, dest);
    assert!(
        !open.editor.problems().has_errors(),
        "{}",
        open.editor.problems()
    );
    assert_eq!(harness.state().recipe_tab(), RecipeTab::Recipe);
    harness.get_by_label_contains("Builder · qemu · debian-12");

    // Asking again for the same path refuses to overwrite it.
    setup.dialogs.push_answer(Some(dest.clone()));
    harness.get_by_label("New from default…").click();
    harness.run();
    harness.get_by_label_contains("already exists; choose another name");
}

#[test]
fn unsaved_changes_are_not_dropped_by_opening_another_recipe() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Recipe");
    retype(&mut harness, Role::TextInput, "Memory (MiB)", "4096");
    harness.get_by_label("broken.json").click();
    harness.run();
    assert!(harness.state().asks_about_unsaved_changes());
    harness.get_by_label("Cancel").click();
    harness.run();
    let open = harness.state().open_recipe_state().unwrap();
    assert_eq!(open.path, setup.recipe);
    assert!(open.editor.text.contains("\"memory\": \"4096\""));

    // Save and continue: saved, then the other recipe opens.
    harness.get_by_label("broken.json").click();
    harness.run();
    harness.get_by_label("Save and continue").click();
    harness.run();
    assert!(
        std::fs::read_to_string(&setup.recipe)
            .unwrap()
            .contains("\"memory\": \"4096\"")
    );
    assert_eq!(
        harness.state().open_recipe_state().unwrap().path,
        setup.recipes_dir().join("broken.json")
    );
}

#[test]
fn closing_the_window_with_unsaved_changes_asks_first() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Recipe");
    retype(&mut harness, Role::TextInput, "SSH user", "admin");
    request_close(&mut harness);
    assert!(
        root_commands(&harness).contains(&egui::ViewportCommand::CancelClose),
        "the close is held back: {:?}",
        root_commands(&harness)
    );
    assert!(harness.state().asks_about_unsaved_changes());
    harness.run();
    harness.get_by_label("Discard changes").click();
    harness.step();
    assert!(
        root_commands(&harness).contains(&egui::ViewportCommand::Close),
        "{:?}",
        root_commands(&harness)
    );
    // Discarded: the file is as it was.
    assert_eq!(std::fs::read_to_string(&setup.recipe).unwrap(), RECIPE);
}

/// The window gains focus (as when the user comes back from another editor), one frame.
fn focus_back(harness: &mut Harness<'_, KilnApp>) {
    harness
        .input_mut()
        .events
        .push(egui::Event::WindowFocused(true));
    harness.run();
}

#[test]
fn a_change_on_disk_reloads_a_recipe_without_unsaved_edits() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "JSON");
    let theirs = RECIPE.replace("Edit test", "Changed elsewhere");
    std::fs::write(&setup.recipe, &theirs).unwrap();
    focus_back(&mut harness);
    assert_eq!(editor_text(&harness), theirs);
    harness.get_by_label_contains("edit-me.json changed on disk: reloaded");
    assert!(harness.query_by_label("Reload from disk").is_none());
    // What depends on the file follows it: the Recipe tab shows the new value.
    tab(&mut harness, "Recipe");
    assert_eq!(
        harness
            .get_by_role_and_label(Role::TextInput, "Template name")
            .value()
            .as_deref(),
        Some("Changed elsewhere")
    );
}

#[test]
fn a_change_on_disk_under_unsaved_edits_asks_right_away() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Recipe");
    retype(&mut harness, Role::TextInput, "Template name", "Mine");
    let theirs = RECIPE.replace("Edit test", "Theirs");
    std::fs::write(&setup.recipe, &theirs).unwrap();
    focus_back(&mut harness);
    // Asked before any save: the card with the three choices, the edits kept.
    harness.get_by_label_contains("changed on disk since kiln opened it. Nothing was saved.");
    assert!(editor_text(&harness).contains("\"template_name\": \"Mine\""));
    assert_eq!(std::fs::read_to_string(&setup.recipe).unwrap(), theirs);
    harness.get_by_label("Keep editing").click();
    harness.run();
    focus_back(&mut harness);
    assert!(
        harness.query_by_label("Keep editing").is_none(),
        "the same change is not asked about twice"
    );
    harness.get_by_label("Save").click();
    harness.run();
    harness.get_by_label("Reload from disk").click();
    harness.run();
    assert_eq!(editor_text(&harness), theirs);
}

#[test]
fn a_recipe_deleted_on_disk_is_reported_within_two_seconds_of_frames() {
    let (setup, mut harness) = setup();
    harness.run();
    std::fs::remove_file(&setup.recipe).unwrap();
    // No focus change: a frame drawn anyway (the pointer moves) after the interval looks.
    std::thread::sleep(
        kiln::gui::editor::watch::CHECK_EVERY + std::time::Duration::from_millis(100),
    );
    harness.hover_at(egui::pos2(600.0, 450.0));
    harness.run();
    harness.get_by_label_contains("was deleted or cannot be read since kiln opened it");
    // Overwrite writes the text back.
    harness.get_by_label("Overwrite with my version").click();
    harness.run();
    assert_eq!(std::fs::read_to_string(&setup.recipe).unwrap(), RECIPE);
}

/// Opens `path` through the Recipes place's "Open file:" field, as typing it would.
fn open_by_path(harness: &mut Harness<'_, KilnApp>, path: &std::path::Path) {
    assert_eq!(harness.state().place(), kiln::gui::app::Place::Recipes);
    retype(
        harness,
        Role::TextInput,
        "Open file:",
        &path.display().to_string(),
    );
    harness.get_by_role_and_label(Role::Button, "Open").click();
    harness.run();
}

#[test]
fn typed_values_come_back_when_a_recipe_is_opened_again_and_a_mistyped_path_opens_nothing() {
    let (setup, mut harness) = setup();
    harness.run();
    tab(&mut harness, "Variables");
    retype(&mut harness, Role::TextInput, "bucket", "my-own-bucket");
    let typed = |harness: &Harness<'_, KilnApp>| {
        harness
            .state()
            .open_recipe_state()
            .unwrap()
            .values
            .get("bucket")
            .cloned()
    };
    assert_eq!(typed(&harness).as_deref(), Some("my-own-bucket"));

    open_by_path(&mut harness, &setup.recipes_dir().join("broken.json"));
    let open = harness.state().open_recipe_state().unwrap();
    assert_eq!(open.path, setup.recipes_dir().join("broken.json"));
    assert!(open.values.is_empty(), "{:?}", open.values);

    open_by_path(&mut harness, &setup.recipe);
    assert_eq!(
        harness.state().open_recipe_state().unwrap().path,
        setup.recipe
    );
    assert_eq!(
        typed(&harness).as_deref(),
        Some("my-own-bucket"),
        "the value typed before is back"
    );

    // A mistyped path: nothing opens, the place says why, Recent does not list it.
    let nowhere = setup.dir.path().join("nowhere/recipe.json");
    open_by_path(&mut harness, &nowhere);
    assert_eq!(
        harness.state().open_recipe_state().unwrap().path,
        setup.recipe
    );
    let notice = harness.state().recipes_panel().notice.clone().unwrap();
    assert!(
        notice.contains("no recipe file at") && notice.contains("nowhere/recipe.json"),
        "{notice}"
    );
    assert!(
        harness
            .query_by_label(&nowhere.display().to_string())
            .is_none(),
        "a path with no file is not in Recent"
    );
}

#[test]
fn without_a_file_dialog_the_window_says_so_and_asks_for_the_path_in_a_field() {
    let (setup, mut harness) = setup();
    harness.run();
    let why = "No file dialog on this desktop: no XDG desktop portal on the session bus, and zenity is not installed. Install xdg-desktop-portal-gtk (or zenity), or type the path in the field below instead.";

    // Open…: the reason shows, the path typed in the field opens the recipe.
    setup.dialogs.push_failure(why);
    harness.get_by_label("Open…").click();
    harness.run();
    assert!(harness.query_by_label(why).is_some(), "the reason is shown");
    let other = setup.recipes_dir().join("broken.json");
    retype(
        &mut harness,
        Role::TextInput,
        "Recipe to open:",
        &other.display().to_string(),
    );
    harness.get_by_role_and_label(Role::Button, "OK").click();
    harness.run();
    assert_eq!(harness.state().open_recipe_state().unwrap().path, other);
    assert!(harness.query_by_label(why).is_none(), "the prompt is gone");
    assert_eq!(harness.state().recipes_panel().path_prompt, None);

    // New from default…: the field starts with the folder and the suggested name; Cancel
    // gives up without writing anything.
    setup.dialogs.push_failure(why);
    harness.get_by_label("New from default…").click();
    harness.run();
    let prompt = harness.state().recipes_panel().path_prompt.clone().unwrap();
    assert_eq!(
        prompt.input,
        setup
            .recipes_dir()
            .join("my-recipe.json")
            .display()
            .to_string()
    );
    harness
        .get_by_role_and_label(Role::Button, "Cancel")
        .click();
    harness.run();
    assert_eq!(harness.state().recipes_panel().path_prompt, None);
    assert!(!setup.recipes_dir().join("my-recipe.json").exists());

    // Again, this time confirmed with the suggested path: the copy is made and opened.
    setup.dialogs.push_failure(why);
    harness.get_by_label("New from default…").click();
    harness.run();
    harness.get_by_role_and_label(Role::Button, "OK").click();
    harness.run();
    let made = setup.recipes_dir().join("my-recipe.json");
    assert!(made.is_file(), "the new recipe was written");
    assert_eq!(harness.state().open_recipe_state().unwrap().path, made);
}
