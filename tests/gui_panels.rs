//! The window's panels driven like a user would (egui_kittest, accessibility check on),
//! against an in-process engine double that plays a scripted build: choose a recipe, fill
//! the variables, start, watch steps and progress advance, see the artifact; cancel; a
//! failure with its error card. Also the Host check panel with the real checks.

#[path = "support/mock_secrets.rs"]
mod mock_secrets;
use kiln::gui::credentials::SecretsSource;
use mock_secrets::MockSecrets;

#[path = "support/window_close.rs"]
mod window_close;
use window_close::{request_close, root_commands};

#[path = "support/file_bytes.rs"]
mod file_bytes;
use file_bytes::{bytes_of, holds};

#[path = "support/exoscale_api.rs"]
mod exoscale_api;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use kiln::build::event::{Event, EventSink, Outcome, Stream, Unit};
use kiln::build::plan::BuildReport;
use kiln::gui::app::Place;
use kiln::gui::build_state::StepState;
use kiln::gui::engine::{BuildControls, BuildFuture, Engine, StepCacheUse};
use kiln::gui::notify::{Notification, Notifier};
use kiln::gui::{AppConfig, KilnApp};
use kiln::recipe::template::{Build, Recipe};
use tokio::sync::Semaphore;

const RECIPE: &str = r#"{
  "description": "GUI test recipe",
  "variables": {
    "bucket": null,
    "api_secret": "",
    "home_dir": "{{env `HOME`}}",
    "memory": "1024"
  },
  "sensitive-variables": ["api_secret"],
  "builders": [{
    "type": "qemu",
    "name": "test-vm",
    "disk_image": true,
    "iso_url": "file:///nonexistent/{{user `bucket`}}.qcow2",
    "iso_checksum": "none",
    "ssh_username": "debian",
    "memory": "{{user `memory`}}"
  }]
}"#;

/// The template the scripted build says it registered.
const TEMPLATE_ID: &str = "4c1d2b8e-0000-4000-8000-000000000001";

/// How the scripted build ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Success,
    WaitForCancel,
    Failure,
    /// Pauses at a breakpoint after the provisioner's output, until Continue.
    Breakpoint,
}

/// An engine double: plays BuildStarted, two steps with progress, then the ending. It pauses
/// at the gate (after the first progress samples) until the test lets it go.
struct ScriptedEngine {
    ending: Ending,
    gate: Arc<Semaphore>,
    artifact: PathBuf,
    received: Arc<Mutex<Option<(Recipe, Build)>>>,
    cache_uses: Arc<Mutex<Vec<StepCacheUse>>>,
}

impl Engine for ScriptedEngine {
    fn build(
        &self,
        recipe: Recipe,
        build: Build,
        events: EventSink,
        controls: BuildControls,
    ) -> BuildFuture {
        self.play(recipe, build, events, controls)
    }

    /// A publication plays the same script (the real one is `kiln publish`'s code, tested
    /// in tests/exoscale_import.rs); what the window asked for is kept in `received`.
    fn publish(&self, recipe: Recipe, events: EventSink, controls: BuildControls) -> BuildFuture {
        let build = recipe.builds[0].clone();
        self.play(recipe, build, events, controls)
    }
}

impl ScriptedEngine {
    fn play(
        &self,
        recipe: Recipe,
        build: Build,
        events: EventSink,
        controls: BuildControls,
    ) -> BuildFuture {
        *self.received.lock().unwrap() = Some((recipe, build.clone()));
        self.cache_uses.lock().unwrap().push(controls.step_cache);
        let (ending, gate, artifact) = (self.ending, self.gate.clone(), self.artifact.clone());
        // With the step cache, the first step is restored from it (as the real engine says).
        let first_step = if controls.step_cache.on {
            Outcome::Skipped("cached, from 2026-12-08 00:17 UTC".into())
        } else {
            Outcome::Done
        };
        Box::pin(async move {
            let log_dir = PathBuf::from("/tmp/kiln-gui-test-logs");
            events.send(Event::BuildStarted {
                build: build.name.clone(),
                steps: vec![
                    "Base image".into(),
                    "Provision 1/1: shell".into(),
                    "Compact".into(),
                ],
            });
            events.send(Event::StepStarted {
                index: 0,
                name: "Base image".into(),
            });
            // Several samples, so that even when a loaded machine delivers some of them
            // together, two arrive far enough apart to give a rate.
            for done in [0u64, 100_000, 200_000, 300_000, 400_000] {
                events.send(Event::Progress {
                    index: 0,
                    done,
                    total: Some(1_000_000),
                    unit: Unit::Bytes,
                });
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            gate.acquire().await.unwrap().forget();
            events.send(Event::StepFinished {
                index: 0,
                outcome: first_step,
                duration: Duration::from_millis(600),
            });
            events.send(Event::StepStarted {
                index: 1,
                name: "Provision 1/1: shell".into(),
            });
            for i in 0..50 {
                events.send(Event::Log {
                    index: Some(1),
                    stream: Stream::Stdout,
                    line: format!("provisioner line {i}"),
                });
                events.send(Event::Console(format!("console line {i}")));
            }
            let finish = |outcome: Outcome| {
                events.send(Event::BuildFinished {
                    outcome: outcome.clone(),
                    duration: Duration::from_secs(1),
                });
                BuildReport {
                    artifact: (outcome == Outcome::Done).then(|| artifact.clone()),
                    artifacts: Vec::new(),
                    templates: if outcome == Outcome::Done {
                        vec![("ch-gva-2".into(), TEMPLATE_ID.into())]
                    } else {
                        Vec::new()
                    },
                    outcome,
                    log_dir: log_dir.clone(),
                }
            };
            match ending {
                Ending::Success => {
                    for (index, outcome) in [(1, Outcome::Done), (2, Outcome::Done)] {
                        events.send(Event::StepStarted {
                            index,
                            name: "x".into(),
                        });
                        events.send(Event::StepFinished {
                            index,
                            outcome,
                            duration: Duration::from_millis(10),
                        });
                    }
                    finish(Outcome::Done)
                }
                Ending::WaitForCancel => {
                    controls.cancel.cancelled().await;
                    // Cleanups take a moment; the test holds them at the gate.
                    gate.acquire().await.unwrap().forget();
                    events.send(Event::StepFinished {
                        index: 1,
                        outcome: Outcome::Cancelled,
                        duration: Duration::from_millis(10),
                    });
                    events.send(Event::CleanedUp(
                        "stopped the VM and removed the disk".into(),
                    ));
                    finish(Outcome::Cancelled)
                }
                Ending::Breakpoint => {
                    events.send(Event::Paused {
                        index: 1,
                        note: Some("look at /etc/motd in the VM".into()),
                    });
                    tokio::select! {
                        () = controls.resume.wait() => {}
                        () = controls.cancel.cancelled() => return finish(Outcome::Cancelled),
                    }
                    events.send(Event::Log {
                        index: Some(1),
                        stream: Stream::Stdout,
                        line: "continued".into(),
                    });
                    events.send(Event::StepFinished {
                        index: 1,
                        outcome: Outcome::Done,
                        duration: Duration::from_millis(10),
                    });
                    finish(Outcome::Done)
                }
                Ending::Failure => {
                    let why = "provisioner: install.sh exited with status 100".to_string();
                    events.send(Event::StepFinished {
                        index: 1,
                        outcome: Outcome::Failed(why.clone()),
                        duration: Duration::from_millis(10),
                    });
                    finish(Outcome::Failed(why))
                }
            }
        })
    }
}

impl Setup {
    /// A qcow2 image of `size` (virtual) in the test's folder, made by qemu-img.
    fn image(&self, name: &str, size: &str) -> PathBuf {
        let path = self._dir.path().join(name);
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg(size)
            .status()
            .expect("qemu-img (qemu-utils) runs");
        assert!(ok.success());
        path
    }

    fn config_path(&self) -> PathBuf {
        self._dir.path().join("config/config.toml")
    }

    fn config_exists(&self) -> bool {
        self.config_path().exists()
    }
}

struct Setup {
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    recipes_dir: PathBuf,
    gate: Arc<Semaphore>,
    received: Arc<Mutex<Option<(Recipe, Build)>>>,
    cache_uses: Arc<Mutex<Vec<StepCacheUse>>>,
    artifact: PathBuf,
    history: PathBuf,
    dialogs: Arc<kiln::gui::dialogs::ScriptedDialogs>,
}

fn setup(ending: Ending) -> (Setup, Harness<'static, KilnApp>) {
    setup_with_api(ending, None, None)
}

/// The window with the API test server at `api_endpoint` for its checks and listings, and a
/// stored default `profile` holding the server's key and secret.
fn setup_with_api(
    ending: Ending,
    api_endpoint: Option<String>,
    profile: Option<&str>,
) -> (Setup, Harness<'static, KilnApp>) {
    setup_full(ending, api_endpoint, profile, None)
}

/// Like [`setup_with_api`], with end-of-build notifications going to `notifier` (for builds
/// of any length) instead of the desktop.
fn setup_full(
    ending: Ending,
    api_endpoint: Option<String>,
    profile: Option<&str>,
    notifier: Option<Arc<dyn Notifier>>,
) -> (Setup, Harness<'static, KilnApp>) {
    setup_prepared(ending, api_endpoint, profile, notifier, &|_, _| {})
}

/// Like [`setup_full`], with `prepare` filling the mock keyring and the test's folder (its
/// root) before the window opens.
fn setup_prepared(
    ending: Ending,
    api_endpoint: Option<String>,
    profile: Option<&str>,
    notifier: Option<Arc<dyn Notifier>>,
    prepare: &dyn Fn(&MockSecrets, &Path),
) -> (Setup, Harness<'static, KilnApp>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipes_dir = dir.path().join("recipes");
    std::fs::create_dir(&recipes_dir).unwrap();
    std::fs::write(recipes_dir.join("gui-test.json"), RECIPE).unwrap();
    std::fs::write(
        recipes_dir.join("broken.json"),
        "{\n  \"builders\": [\n    {\"type\": \"qemu\",}\n  ]\n}\n",
    )
    .unwrap();
    let artifact = dir.path().join("output/test-vm.qcow2");
    std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
    std::fs::write(&artifact, vec![0u8; 4096]).unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let received = Arc::new(Mutex::new(None));
    let cache_uses = Arc::new(Mutex::new(Vec::new()));
    let engine = Arc::new(ScriptedEngine {
        ending,
        gate: gate.clone(),
        artifact: artifact.clone(),
        received: received.clone(),
        cache_uses: cache_uses.clone(),
    });
    let secrets = Arc::new(MockSecrets::new(
        dir.path().join("config/config.toml"),
        dir.path().join("ssh"),
        api_endpoint,
    ));
    if let Some(profile) = profile {
        let (profiles, _) = secrets.open().unwrap();
        profiles
            .save(
                profile,
                "ch-gva-2",
                &kiln::exoscale::Credentials::new(
                    exoscale_api::TEST_KEY,
                    kiln::recipe::secret::Secret::new(exoscale_api::TEST_SECRET),
                )
                .unwrap(),
                true,
            )
            .unwrap();
    }
    prepare(&secrets, dir.path());
    // The history in the test's own data folder (what XDG_DATA_HOME gives the real window).
    let history = dir.path().join("data/kiln/history.sqlite");
    let dialogs = Arc::new(kiln::gui::dialogs::ScriptedDialogs::default());
    let config = AppConfig {
        runtime: runtime.handle().clone(),
        engine,
        initial_recipe: None,
        recipes_dir: recipes_dir.clone(),
        started: Instant::now(),
        secrets: secrets.clone(),
        dialogs: dialogs.clone(),
        history: Some(history.clone()),
    };
    let harness = Harness::builder()
        .with_size([1200.0, 800.0])
        .with_max_steps(40)
        .build_eframe(move |cc| {
            let app = KilnApp::new(cc, config);
            match notifier {
                Some(notifier) => app.with_notifier(notifier, Duration::ZERO),
                None => app,
            }
        });
    let setup = Setup {
        _runtime: runtime,
        _dir: dir,
        recipes_dir,
        gate,
        received,
        cache_uses,
        artifact,
        history,
        dialogs,
    };
    (setup, harness)
}

/// Steps the window until `done` holds (background messages arrive on other threads).
fn step_until(harness: &mut Harness<'_, KilnApp>, what: &str, done: impl Fn(&KilnApp) -> bool) {
    // Generous: the machines are 2 cores, and other test binaries may compile meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        harness.step();
        if done(harness.state()) {
            harness.step();
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Focuses the field labelled `label` and types `text` into it.
fn type_into(harness: &mut Harness<'_, KilnApp>, role: Role, label: &str, text: &str) {
    harness.get_by_role_and_label(role, label).focus();
    harness.run();
    harness.get_by_role_and_label(role, label).type_text(text);
    harness.run();
}

/// Chooses the test recipe and fills its variables; returns after pressing Build.
fn choose_fill_and_start(harness: &mut Harness<'_, KilnApp>, recipes_dir: &Path) {
    // The default recipe does not exist in this recipes folder: nothing is open, and the
    // Recipes place says why.
    harness.run();
    assert!(harness.state().open_recipe_state().is_none());
    let notice = harness
        .state()
        .recipes_panel()
        .notice
        .clone()
        .unwrap_or_default();
    assert!(
        notice.contains("There is no recipe file at") && notice.contains("debian-12.json"),
        "the missing default recipe is named: {notice}"
    );
    harness.get_by_label("gui-test.json").click();
    harness.run();
    let open = harness.state().open_recipe_state().unwrap();
    assert_eq!(open.path, recipes_dir.join("gui-test.json"));
    assert!(
        open.inspection.is_ok(),
        "{:?}",
        open.inspection.as_ref().err()
    );

    // Required ones are marked; the env-provided one says where it comes from.
    type_into(harness, Role::TextInput, "bucket *", "my-bucket");
    harness.get_by_label_contains("from environment: $HOME");
    type_into(harness, Role::PasswordInput, "api_secret", "s3cret-value");
    harness.run();
    let values = &harness.state().open_recipe_state().unwrap().values;
    assert_eq!(values["bucket"], "my-bucket");
    assert_eq!(values["api_secret"], "s3cret-value");
    // The secret is masked until revealed.
    assert!(
        harness.query_by_value("s3cret-value").is_none(),
        "the secret shows unmasked"
    );
    harness.get_by_label("Show").click();
    harness.run();
    assert!(
        harness
            .state()
            .open_recipe_state()
            .unwrap()
            .revealed
            .contains("api_secret")
    );
    harness.get_by_role_and_label(Role::TextInput, "api_secret");
    harness.get_by_label("Hide").click();
    harness.run();

    harness.get_by_label("Start build").click();
    step_until(harness, "the build view", |app| app.place() == Place::Build);
}

#[test]
fn choose_fill_start_progress_done_artifact() {
    let (setup, mut harness) = setup(Ending::Success);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);

    // The engine got the recipe with the form's values.
    let (recipe, build) = setup
        .received
        .lock()
        .unwrap()
        .clone()
        .expect("the engine ran");
    assert_eq!(build.name, "test-vm");
    let bucket = recipe
        .variables
        .iter()
        .find(|v| v.name == "bucket")
        .unwrap();
    assert_eq!(bucket.value, "my-bucket");

    // Paused at the gate: the first step runs with a determinate bar, a rate and an ETA.
    step_until(&mut harness, "progress with a rate", |app| {
        app.build_state()
            .and_then(|b| b.progress.as_ref())
            .is_some_and(|p| p.done == 400_000 && p.rate.is_some())
    });
    let build_state = harness.state().build_state().unwrap();
    assert_eq!(build_state.steps.len(), 3);
    assert_eq!(build_state.steps[0].state, StepState::Running);
    assert_eq!(build_state.steps[1].state, StepState::Pending);
    let progress = build_state.progress.as_ref().unwrap();
    assert_eq!(progress.fraction(), Some(0.4));
    assert!(progress.eta().is_some());
    harness.get_by_label("running");
    assert_eq!(harness.query_all_by_label("pending").count(), 2);
    harness.get_by_label("Cancel");
    // Every input of the running build's view has an accessible name.
    harness.check_accessibility();

    setup.gate.add_permits(1);
    step_until(&mut harness, "the build's end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.run();
    assert_eq!(harness.query_all_by_label("done").count(), 3);
    harness.get_by_label("Build finished");
    harness.get_by_label_contains(&format!("Artifact: {}", setup.artifact.display()));
    assert!(
        harness.query_by_label("Cancel").is_none(),
        "no Cancel after the end"
    );
    let state = harness.state().build_state().unwrap();
    assert_eq!(state.output.len(), 50);
    assert_eq!(state.console.len(), 50);
    // The Output tab lists the provisioner's lines.
    harness.get_by_label("provisioner line 49");
    // The registered template, and the way to it.
    harness.get_by_label(&format!("Template in ch-gva-2: {TEMPLATE_ID}"));
    harness.get_by_label("Open in Templates").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Templates);
}

/// Records notifications instead of showing them.
#[derive(Default)]
struct RecordingNotifier(Mutex<Vec<Notification>>);

impl Notifier for RecordingNotifier {
    fn notify(&self, notification: Notification) {
        self.0.lock().unwrap().push(notification);
    }
}

#[test]
fn a_build_that_ends_behind_other_windows_notifies_and_one_in_front_does_not() {
    for focused in [false, true] {
        let notifier = Arc::new(RecordingNotifier::default());
        let (setup, mut harness) = setup_full(Ending::Success, None, None, Some(notifier.clone()));
        choose_fill_and_start(&mut harness, &setup.recipes_dir);
        harness.event(egui::Event::WindowFocused(focused));
        harness.run();
        setup.gate.add_permits(1);
        step_until(&mut harness, "the build's end", |app| {
            app.build_state().is_some_and(|b| !b.is_running())
        });
        let sent = notifier.0.lock().unwrap().clone();
        if focused {
            assert!(sent.is_empty(), "the user is watching: {sent:?}");
        } else {
            assert_eq!(sent.len(), 1, "{sent:?}");
            assert_eq!(sent[0].summary, "kiln: test-vm built");
            assert!(
                sent[0]
                    .body
                    .ends_with(&setup.artifact.display().to_string()),
                "{sent:?}"
            );
            assert!(!sent[0].critical);
        }
    }
}

#[test]
fn cancel_stops_the_build_and_says_what_was_cleaned_up() {
    let (setup, mut harness) = setup(Ending::WaitForCancel);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(1);
    step_until(&mut harness, "the second step", |app| {
        app.build_state().is_some_and(|b| {
            b.steps
                .get(1)
                .is_some_and(|s| s.state == StepState::Running)
        })
    });
    harness.get_by_label("Cancel").click();
    harness.step();
    harness.step();
    harness.get_by_label("Cancelling…");
    setup.gate.add_permits(1);
    step_until(&mut harness, "the cancelled end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.run();
    let state = harness.state().build_state().unwrap();
    assert_eq!(state.final_outcome(), Some(&Outcome::Cancelled));
    assert_eq!(state.steps[1].state, StepState::Cancelled);
    harness.get_by_label("Build cancelled");
    harness.get_by_label("cleaned up: stopped the VM and removed the disk");
}

fn running_at_second_step(app: &KilnApp, tab: usize) -> bool {
    app.build_states().get(tab).is_some_and(|b| {
        b.steps
            .get(1)
            .is_some_and(|s| s.state == StepState::Running)
    })
}

#[test]
fn two_builds_run_at_once_each_in_its_own_tab() {
    let (setup, mut harness) = setup(Ending::WaitForCancel);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    // A single build shows no tab strip.
    assert!(harness.query_by_label("test-vm · running").is_none());

    // While it runs, the recipe can be built again: a second tab.
    harness.get_by_label("Recipes").click();
    harness.run();
    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the second build's tab", |app| {
        app.build_states().len() == 2 && app.place() == Place::Build
    });
    assert_eq!(
        harness.state().shown_build_tab(),
        Some(1),
        "the new build shows"
    );
    setup.gate.add_permits(2);
    step_until(&mut harness, "both builds at their second step", |app| {
        running_at_second_step(app, 0) && running_at_second_step(app, 1)
    });
    harness.get_by_label("Build (2 running)");
    assert_eq!(harness.query_all_by_label("test-vm · running").count(), 2);
    // Each build's events went to its own tab only.
    step_until(&mut harness, "both builds' output", |app| {
        app.build_states()
            .iter()
            .all(|b| b.output.len() == 50 && b.console.len() == 50)
    });

    // Cancelling the shown (second) build leaves the first one running.
    harness.get_by_label("Cancel").click();
    harness.step();
    setup.gate.add_permits(1);
    step_until(&mut harness, "the second build cancelled", |app| {
        !app.build_states()[1].is_running()
    });
    harness.run();
    {
        let states = harness.state().build_states();
        assert!(states[0].is_running(), "the other build goes on");
        assert!(!states[0].cancelling);
        assert_eq!(states[1].final_outcome(), Some(&Outcome::Cancelled));
    }
    harness.get_by_label("Build (running)");
    harness.get_by_label("Build cancelled");
    harness.get_by_label("test-vm · cancelled");
    // A running build has no close button; the ended one has.
    assert!(harness.query_by_label("Close tab 1").is_none());

    // Back to the first tab: it shows its own running state and can be cancelled.
    harness.get_by_label("test-vm · running").click();
    harness.run();
    assert_eq!(harness.state().shown_build_tab(), Some(0));
    assert!(harness.query_by_label("Build cancelled").is_none());
    harness.get_by_label("Close tab 2").click();
    harness.run();
    assert_eq!(harness.state().build_states().len(), 1);
    assert_eq!(harness.state().shown_build_tab(), Some(0));
    harness.get_by_label("Cancel").click();
    harness.step();
    setup.gate.add_permits(1);
    step_until(&mut harness, "the first build cancelled", |app| {
        app.build_states().iter().all(|b| !b.is_running())
    });
    harness.run();
    harness.get_by_label("Build cancelled");
}

#[test]
fn a_breakpoint_waits_for_continue() {
    let (setup, mut harness) = setup(Ending::Breakpoint);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(1);
    step_until(&mut harness, "the pause", |app| {
        app.build_state().is_some_and(|b| b.paused.is_some())
    });
    harness.run();
    harness.get_by_label("Paused at a breakpoint");
    harness.get_by_label("look at /etc/motd in the VM");
    harness.get_by_label("test-vm");
    // It stays paused: nobody pressed Continue.
    std::thread::sleep(Duration::from_millis(300));
    harness.run();
    let state = harness.state().build_state().unwrap();
    assert!(state.is_running() && state.paused.is_some());
    assert_eq!(state.status_word(), "paused");
    assert_eq!(state.steps[1].state, StepState::Running);

    harness.get_by_label("Continue").click();
    harness.step();
    step_until(&mut harness, "the end after Continue", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.run();
    let state = harness.state().build_state().unwrap();
    assert_eq!(state.final_outcome(), Some(&Outcome::Done));
    assert_eq!(state.paused, None);
    assert_eq!(state.steps[1].state, StepState::Done);
    assert_eq!(state.output.tail(1).collect::<Vec<_>>(), ["continued"]);
    assert!(harness.query_by_label("Paused at a breakpoint").is_none());
    harness.get_by_label("Build finished");
}

#[test]
fn closing_the_window_while_building_asks_then_cancels_and_closes_after_cleanup() {
    let (setup, mut harness) = setup(Ending::WaitForCancel);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(1);
    step_until(&mut harness, "the second step", |app| {
        running_at_second_step(app, 0)
    });

    // "Keep building" keeps the window and the build.
    request_close(&mut harness);
    assert!(
        root_commands(&harness).contains(&egui::ViewportCommand::CancelClose),
        "the close is held back: {:?}",
        root_commands(&harness)
    );
    assert!(harness.state().asks_about_running_builds());
    harness.run();
    harness.get_by_label_contains("1 build is still running");
    harness.get_by_label("Keep building").click();
    harness.run();
    assert!(!harness.state().asks_about_running_builds());
    assert!(harness.state().build_state().unwrap().is_running());

    // "Cancel builds and close": cancelled, and the window closes only after the cleanups.
    request_close(&mut harness);
    harness.step();
    harness.get_by_label("Cancel builds and close").click();
    // The click, then the closing notice's sizing pass, then it shows.
    for _ in 0..3 {
        harness.step();
    }
    assert!(harness.state().build_state().unwrap().cancelling);
    assert!(!root_commands(&harness).contains(&egui::ViewportCommand::Close));
    harness.get_by_label_contains("Cancelling 1 build");
    setup.gate.add_permits(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        harness.step();
        if root_commands(&harness).contains(&egui::ViewportCommand::Close) {
            break;
        }
        assert!(Instant::now() < deadline, "the window never closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let state = harness.state().build_state().unwrap();
    assert_eq!(state.final_outcome(), Some(&Outcome::Cancelled));
    assert_eq!(state.cleanups, ["stopped the VM and removed the disk"]);
}

/// The text a click on Copy all put on the clipboard in the last frame, if any.
fn copied(harness: &Harness<'_, KilnApp>) -> Option<String> {
    harness
        .output()
        .platform_output
        .commands
        .iter()
        .find_map(|c| match c {
            egui::OutputCommand::CopyText(text) => Some(text.clone()),
            _ => None,
        })
}

#[test]
fn the_log_views_search_step_through_matches_and_copy_all() {
    let (setup, mut harness) = setup(Ending::Success);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(1);
    step_until(&mut harness, "the build's end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.run();

    // Ctrl+F goes to the search field. "line 4" is in "provisioner line 4" and "… 40" to
    // "… 49".
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    harness.run();
    harness
        .get_by_role_and_label(Role::TextInput, "Search")
        .type_text("line 4");
    harness.run();
    harness.get_by_label("1 / 11");
    harness.get_by_label("Next").click();
    harness.run();
    harness.get_by_label("2 / 11");
    harness.get_by_label("Previous").click();
    harness.run();
    harness.get_by_label("Previous").click();
    harness.run();
    harness.get_by_label("11 / 11");
    // The current match is brought into view: the row is laid out.
    harness.get_by_label("provisioner line 49");

    // A capital letter makes the search exact.
    type_into(&mut harness, Role::TextInput, "Search", "X");
    harness.run();
    harness.get_by_label("no match");

    // The console tab is searched on its own.
    harness.get_by_label("Console (50)").click();
    harness.run();
    harness
        .get_by_role_and_label(Role::TextInput, "Search")
        .focus();
    harness.run();
    harness.key_press(egui::Key::Backspace);
    harness.run();
    harness.get_by_label("1 / 11");
    harness.get_by_label("Copy all").click();
    harness.step();
    let text = copied(&harness).expect("Copy all put the log on the clipboard");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50);
    assert_eq!(lines[0], "console line 0");
    assert_eq!(lines[49], "console line 49");
}

#[test]
fn the_result_cards_open_the_log_and_artifact_folders() {
    let (setup, mut harness) = setup(Ending::Success);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(1);
    step_until(&mut harness, "the build's end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.run();
    harness.get_by_label("Open folder").click();
    harness.run();
    let folder = setup.artifact.parent().unwrap().to_path_buf();
    assert_eq!(setup.dialogs.opened_folders(), [folder]);
    // The scripted build's log folder does not exist: the panel says so, nothing crashes.
    harness.get_by_label("Open log folder").click();
    harness.run();
    assert_eq!(setup.dialogs.opened_folders().len(), 2);
    harness.get_by_label_contains("is not a folder (any more)");
}

#[test]
fn the_variables_form_saves_a_var_file_without_sensitive_values() {
    let (setup, mut harness) = setup(Ending::Success);
    let var_file = setup.recipes_dir.join("mine.vars.json");
    setup.dialogs.push_answer(Some(var_file.clone()));
    harness.run();
    harness.get_by_label("gui-test.json").click();
    harness.run();
    type_into(&mut harness, Role::TextInput, "bucket *", "my-bucket");
    type_into(
        &mut harness,
        Role::PasswordInput,
        "api_secret",
        "s3cret-value",
    );
    harness.get_by_label("Save as var-file…").click();
    harness.run();
    assert_eq!(
        setup.dialogs.asked().last(),
        Some(&kiln::gui::dialogs::Pick::SaveVarFile {
            suggested: "gui-test.vars.json".into()
        })
    );
    let text = std::fs::read_to_string(&var_file).expect("the var-file was written");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json, serde_json::json!({"bucket": "my-bucket"}));
    assert!(!text.contains("s3cret-value"));
    harness.get_by_label_contains("Saved 1 value to");
    harness.get_by_label_contains("api_secret left out");

    // The file works as a var-file: `kiln validate -var-file` accepts it for the recipe.
    let validated = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("validate")
        .arg(format!("-var-file={}", var_file.display()))
        .arg(setup.recipes_dir.join("gui-test.json"))
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}

#[test]
fn a_failure_shows_its_error_card_with_the_last_console_lines() {
    let (setup, mut harness) = setup(Ending::Failure);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(1);
    step_until(&mut harness, "the failed end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.run();
    harness.get_by_label("Build failed");
    harness.get_by_label("provisioner: install.sh exited with status 100");
    harness.get_by_label("Logs: /tmp/kiln-gui-test-logs");
    // The card's console excerpt ends with the newest line and holds the last 12.
    harness.get_by_label_contains("console line 38\nconsole line 39");
    assert!(
        harness
            .query_by_label_contains("console line 37\n")
            .is_none()
    );
    harness.get_by_label("failed: provisioner: install.sh exited with status 100");

    // Build again: the same recipe and values, in a new tab; the failed one stays.
    let first = setup
        .received
        .lock()
        .unwrap()
        .take()
        .expect("the engine ran");
    harness.get_by_label("Build again").click();
    step_until(&mut harness, "the second run", |app| {
        app.build_states().len() == 2
    });
    assert_eq!(harness.state().shown_build_tab(), Some(1));
    let again = setup.received.lock().unwrap().take().expect("it ran again");
    assert_eq!(again.1.name, first.1.name);
    let value = |r: &Recipe, n: &str| {
        r.variables
            .iter()
            .find(|v| v.name == n)
            .map(|v| v.value.clone())
    };
    assert_eq!(value(&again.0, "bucket"), Some("my-bucket".into()));
    assert_eq!(value(&again.0, "bucket"), value(&first.0, "bucket"));
    setup.gate.add_permits(1);
    step_until(&mut harness, "the second run's end", |app| {
        app.build_states().iter().all(|b| !b.is_running())
    });
}

#[test]
fn a_broken_recipe_lists_its_problem_with_file_line_col() {
    let (setup, mut harness) = setup(Ending::Success);
    harness.run();
    harness.get_by_label("broken.json").click();
    harness.run();
    let path = setup.recipes_dir.join("broken.json");
    let wanted = format!("{}:3:", path.display());
    harness.get_by_label_contains(&wanted);
    // Build with a broken recipe starts nothing and keeps the problems in view.
    harness.get_by_label("Start build").click();
    harness.run();
    assert!(harness.state().build_state().is_none());
    assert_eq!(harness.state().place(), Place::Recipes);
    assert!(setup.received.lock().unwrap().is_none());
}

#[test]
fn the_host_check_lists_the_real_checks_with_copyable_fixes() {
    let (_setup, mut harness) = setup(Ending::Success);
    harness.get_by_label_contains("Host:").click();
    step_until(&mut harness, "the host check", |app| {
        app.place() == Place::Host
    });
    assert_eq!(
        harness.query_all_by_label("Host check").count(),
        2,
        "place and heading"
    );
    step_until(&mut harness, "the checks", |_| true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while harness.query_by_label("qemu-img").is_none() {
        assert!(Instant::now() < deadline, "the checks never came back");
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.get_by_label("qemu-system-x86_64");
    harness.get_by_label("KVM");
    // What publishing needs is checked too (the sidebar is not "ready" without it).
    harness.get_by_label("Exoscale credentials");
    harness.get_by_label("Network to Exoscale");
    harness.get_by_label("Check again").click();
    harness.step();
    assert!(
        harness.state().host_checks().is_none(),
        "the checks run again"
    );
    step_until(&mut harness, "the checks again", |app| {
        app.host_checks().is_some()
    });
    harness.get_by_label("qemu-img");
}

#[test]
fn credentials_profiles_are_checked_saved_made_default_and_removed_and_keys_generated() {
    let api = exoscale_api::ApiServer::start();
    let (setup, mut harness) = setup_with_api(Ending::Success, Some(api.endpoint()), None);
    harness.get_by_label("Credentials").click();
    step_until(&mut harness, "the first read", |app| {
        app.place() == Place::Credentials
            && app.credentials().snapshot.is_some()
            && !app.credentials().busy
    });
    harness.get_by_label("No profile yet: add one below.");

    // A wrong secret: checked against the API, refused, nothing stored.
    let add = |harness: &mut Harness<'_, KilnApp>, name: &str, secret: &str| {
        type_into(harness, Role::TextInput, "Profile name", name);
        type_into(harness, Role::TextInput, "API key", exoscale_api::TEST_KEY);
        type_into(harness, Role::PasswordInput, "API secret", secret);
        assert!(
            harness.query_by_value(secret).is_none(),
            "the secret shows unmasked"
        );
        harness.get_by_label("Check and save").click();
        step_until(harness, "the save", |app| !app.credentials().busy);
    };
    add(&mut harness, "work", "not-the-secret");
    harness.get_by_label_contains("profile `work` not stored: wrong key or secret");
    assert_eq!(
        harness.state().credentials().secret,
        "",
        "the secret field is cleared once sent"
    );
    assert!(!setup.config_exists());

    // The right one (name and key are still in the form): stored, listed, the default (the
    // first profile); the form is emptied.
    type_into(
        &mut harness,
        Role::PasswordInput,
        "API secret",
        exoscale_api::TEST_SECRET,
    );
    harness.get_by_label("Check and save").click();
    step_until(&mut harness, "the save", |app| !app.credentials().busy);
    harness.get_by_label_contains("stored profile `work` (zone ch-gva-2) (checked: valid)");
    harness.get_by_label("default");
    // The check is remembered for the build form's picker (the refused one came first).
    let last_check = |harness: &Harness<'_, KilnApp>, name: &str| {
        harness
            .state()
            .credentials()
            .snapshot
            .as_ref()
            .unwrap()
            .checks
            .get(name)
            .cloned()
    };
    let work = last_check(&harness, "work").expect("the check of `work` is remembered");
    assert!(work.valid);
    assert!(
        work.describe().contains("valid, checked "),
        "{}",
        work.describe()
    );
    assert_eq!(harness.state().credentials().name, "");
    assert!(
        api.seen().iter().any(|s| s.status == 200),
        "the check was a signed API call"
    );

    // A second profile, unchecked; then made the default; then the first one removed.
    harness.get_by_label("Check against the API").click();
    harness.run();
    type_into(&mut harness, Role::TextInput, "Profile name", "perso");
    type_into(&mut harness, Role::TextInput, "API key", "EXOother");
    type_into(&mut harness, Role::PasswordInput, "API secret", "other");
    harness.get_by_label("Save").click();
    step_until(&mut harness, "the save", |app| !app.credentials().busy);
    harness.get_by_label_contains("stored profile `perso`");
    harness.get_by_label("Make perso the default").click();
    step_until(&mut harness, "make default", |app| !app.credentials().busy);
    harness.get_by_label_contains("`perso` is the default profile");
    assert_eq!(
        last_check(&harness, "work"),
        Some(work),
        "later reads keep the last check"
    );
    assert_eq!(last_check(&harness, "perso"), None, "saved without a check");
    harness.get_by_label("Remove work").click();
    harness.run();
    harness.get_by_label("Really remove work?").click();
    step_until(&mut harness, "the removal", |app| !app.credentials().busy);
    harness.get_by_label_contains("removed profile `work`");
    let profiles = harness
        .state()
        .credentials()
        .snapshot
        .as_ref()
        .unwrap()
        .profiles
        .clone()
        .unwrap();
    assert_eq!(profiles.len(), 1);
    assert!(profiles[0].name == "perso" && profiles[0].is_default);
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    assert!(
        !config.contains(exoscale_api::TEST_SECRET) && !config.contains("other"),
        "{config}"
    );

    // Keys: generate one; it is listed with its fingerprint; remove it.
    type_into(&mut harness, Role::TextInput, "Key name", "deploy");
    harness.get_by_label("Generate Ed25519 key").click();
    step_until(&mut harness, "the key", |app| !app.credentials().busy);
    harness.get_by_label_contains("generated `deploy` (SHA256:");
    harness.get_by_label("keyring:deploy");
    let first = harness
        .state()
        .credentials()
        .snapshot
        .as_ref()
        .unwrap()
        .keys[0]
        .fingerprint
        .clone();
    // Its public half can be copied (to authorise it somewhere).
    harness
        .get_by_label("Copy the public key of deploy")
        .click();
    harness.step();
    let copied_line = copied(&harness).expect("the public key was copied");
    assert!(
        copied_line.starts_with("ssh-ed25519 ") && copied_line.ends_with(" kiln-deploy"),
        "{copied_line}"
    );
    // The same name again: the window says what would be lost, and Generate waits for the
    // user to tick the replacement.
    harness.get_by_label_contains("The keyring already holds a key `deploy`");
    assert!(
        harness
            .get_by_label("Generate Ed25519 key")
            .accesskit_node()
            .is_disabled()
    );
    harness.get_by_label("Replace the key `deploy`").click();
    harness.run();
    harness.get_by_label("Generate Ed25519 key").click();
    step_until(&mut harness, "the replacement", |app| {
        !app.credentials().busy
    });
    let second = harness
        .state()
        .credentials()
        .snapshot
        .as_ref()
        .unwrap()
        .keys[0]
        .fingerprint
        .clone();
    assert_ne!(first, second, "replaced on purpose");
    harness.get_by_label("Remove deploy").click();
    harness.run();
    harness.get_by_label("Really remove deploy?").click();
    step_until(&mut harness, "the key removal", |app| {
        !app.credentials().busy
    });
    assert!(harness.query_by_label("keyring:deploy").is_none());
}

fn template(name: &str, days: i64) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "size": 10737418240u64,
        "boot-mode": "legacy",
        "visibility": "private",
        "created-at": (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        "default-user": "debian",
    })
}

#[test]
fn templates_are_listed_across_zones_marked_stale_renamed_copied_and_deleted() {
    let api = exoscale_api::ApiServer::start();
    let old = api.add_template("de-fra-1", template("Debian 12 2026-10-01", 45));
    let fresh = api.add_template("at-vie-1", template("Debian 12 2026-11-24", 2));
    let (_setup, mut harness) = setup_with_api(Ending::Success, Some(api.endpoint()), Some("work"));
    harness.get_by_label("Templates").click();
    step_until(&mut harness, "the listing", |app| {
        app.templates().listing.is_some() && !app.templates().busy
    });
    let listing = harness.state().templates().listing.clone().unwrap();
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    assert_eq!(listing.templates.len(), 2, "every zone was asked");
    harness.get_by_label("2 templates, 1 stale");
    harness.get_by_label("45 days STALE");
    harness.get_by_label("2 days");

    // Sorted newest first; a click on a header sorts by it, a second click reverses.
    let above = |harness: &Harness<'_, KilnApp>, a: &str, b: &str| {
        harness.get_by_label(a).rect().center().y < harness.get_by_label(b).rect().center().y
    };
    assert!(above(
        &harness,
        "Debian 12 2026-11-24",
        "Debian 12 2026-10-01"
    ));
    harness.get_by_label("Created (sorted descending)");
    harness.get_by_label("Name").click();
    harness.run();
    harness.get_by_label("Name (sorted ascending)");
    assert!(above(
        &harness,
        "Debian 12 2026-10-01",
        "Debian 12 2026-11-24"
    ));
    harness.get_by_label("Name (sorted ascending)").click();
    harness.run();
    assert!(above(
        &harness,
        "Debian 12 2026-11-24",
        "Debian 12 2026-10-01"
    ));
    harness.get_by_label("Zone").click();
    harness.run();
    harness.get_by_label("Zone (sorted ascending)");
    assert!(
        above(&harness, "at-vie-1", "de-fra-1"),
        "at-vie-1 holds the fresh one"
    );
    assert!(above(
        &harness,
        "Debian 12 2026-11-24",
        "Debian 12 2026-10-01"
    ));

    // The stale threshold is the user's: 60 days and nothing is stale.
    harness.state_mut().templates_mut().stale_after_days = 60;
    harness.run();
    harness.get_by_label("2 templates, 0 stale");

    // Filter, select, rename.
    type_into(&mut harness, Role::TextInput, "Filter", "11-24");
    harness.get_by_label("1 template, 0 stale");
    harness.get_by_label("Debian 12 2026-11-24").click();
    harness.run();
    harness.get_by_label(fresh.as_str());
    type_into(&mut harness, Role::TextInput, "New name", " (golden)");
    harness.get_by_label("Rename").click();
    step_until(&mut harness, "the rename", |app| !app.templates().busy);
    harness.get_by_label_contains("renamed template");
    assert!(
        api.templates("at-vie-1")
            .iter()
            .any(|t| t["name"] == "Debian 12 2026-11-24 (golden)"),
        "{:?}",
        api.templates("at-vie-1")
    );

    // Copy to another zone.
    harness.get_by_label("Copy").click();
    step_until(&mut harness, "the copy", |app| !app.templates().busy);
    harness.get_by_label_contains(&format!("copied template {fresh} from at-vie-1 to"));

    // Delete the old one, confirmed.
    harness.state_mut().templates_mut().filter.clear();
    harness.run();
    harness.get_by_label("Debian 12 2026-10-01").click();
    harness.run();
    harness.get_by_label("Delete…").click();
    harness.run();
    harness.get_by_label("This cannot be undone.");
    harness.get_by_label("Really delete").click();
    step_until(&mut harness, "the deletion", |app| !app.templates().busy);
    harness.get_by_label_contains(&format!("deleted template {old} in de-fra-1"));
    assert!(api.templates("de-fra-1").is_empty());
}

/// Runs the scripted build to its end (the gate opened once).
fn build_to_the_end(setup: &Setup, harness: &mut Harness<'static, KilnApp>) {
    choose_fill_and_start(harness, &setup.recipes_dir);
    let_the_build_end(setup, harness, "the build's end");
}

/// Lets the scripted build past its gate and waits until it ended.
fn let_the_build_end(setup: &Setup, harness: &mut Harness<'static, KilnApp>, what: &str) {
    setup.gate.add_permits(1);
    step_until(harness, what, |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
}

/// Opens the History place and waits for its read.
fn open_history(harness: &mut Harness<'static, KilnApp>) {
    harness.get_by_label("History").click();
    step_until(harness, "the history read", |app| {
        app.place() == Place::History && app.history().records.is_some() && !app.history().busy
    });
}

#[test]
fn a_finished_build_is_in_the_history_with_its_steps_and_rebuild_refills_the_form() {
    let (setup, mut harness) = setup(Ending::Success);
    build_to_the_end(&setup, &mut harness);
    open_history(&mut harness);

    let history = harness.state().history();
    let records = history.records.clone().unwrap().unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.outcome, kiln::history::RunOutcome::Done);
    assert_eq!(r.origin, kiln::history::Origin::Gui);
    assert_eq!(r.recipe, setup.recipes_dir.join("gui-test.json"));
    assert_eq!(r.build_name, "test-vm");
    let steps: Vec<_> = r
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.end, s.duration))
        .collect();
    use kiln::history::StepEnd;
    assert_eq!(
        steps,
        [
            (
                "Base image",
                StepEnd::Done,
                Some(Duration::from_millis(600))
            ),
            (
                "Provision 1/1: shell",
                StepEnd::Done,
                Some(Duration::from_millis(10))
            ),
            ("Compact", StepEnd::Done, Some(Duration::from_millis(10))),
        ]
    );
    assert_eq!(r.artifacts[0].path, setup.artifact);
    assert_eq!(
        r.templates,
        [("ch-gva-2".to_string(), TEMPLATE_ID.to_string())]
    );
    assert_eq!(history.selected, r.id, "the newest build is shown");

    // The table's row and the details pane.
    harness.get_by_label("gui-test.json");
    harness.get_by_label("test-vm.qcow2");
    // The table shortens the id (the details pane has it whole).
    harness.get_by_label(&format!("ch-gva-2 {}…", &TEMPLATE_ID[..8]));
    harness.get_by_label(&format!("Template in ch-gva-2: {TEMPLATE_ID}"));
    harness.get_by_label("Build: test-vm (from the window)");
    harness.get_by_label("Base image");
    harness.get_by_label("0.6 s");
    assert_eq!(harness.query_all_by_label("0.0 s").count(), 2);
    harness.get_by_label("Built");
    harness.get_by_label("sensitive: not stored");
    harness.get_by_label("my-bucket");
    harness.check_accessibility();

    // The secret typed into the form never reached the history's files.
    let bytes = bytes_of(setup.history.parent().unwrap());
    assert!(holds(&bytes, "my-bucket"), "values are there to be found");
    assert!(
        !holds(&bytes, "s3cret-value"),
        "the secret reached the history"
    );

    // Rebuild: the recipe opens with the given value filled in; the secret is left empty
    // and named.
    harness.get_by_label("Rebuild").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Recipes);
    let open = harness.state().open_recipe_state().unwrap();
    assert_eq!(open.path, setup.recipes_dir.join("gui-test.json"));
    assert_eq!(
        open.values.get("bucket").map(String::as_str),
        Some("my-bucket")
    );
    assert!(open.values.get("api_secret").is_none_or(|v| v.is_empty()));
    assert!(
        open.values.get("memory").is_none_or(|v| v.is_empty()),
        "defaults stay defaults"
    );
    let field = harness.get_by_role_and_label(Role::TextInput, "bucket *");
    assert_eq!(field.value().as_deref(), Some("my-bucket"));
    harness.get_by_label_contains("Rebuild of build #1");
    harness.get_by_label_contains("type api_secret again");
    // The form is ready to build again: once the secret is typed, Start build runs.
    type_into(
        &mut harness,
        Role::PasswordInput,
        "api_secret",
        "again-secret",
    );
    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the second build", |app| {
        app.place() == Place::Build
    });
    let (recipe, _) = setup.received.lock().unwrap().clone().unwrap();
    let bucket = recipe
        .variables
        .iter()
        .find(|v| v.name == "bucket")
        .unwrap();
    assert_eq!(bucket.value, "my-bucket");
}

#[test]
fn a_failed_build_is_in_the_history_with_the_step_that_failed() {
    let (setup, mut harness) = setup(Ending::Failure);
    build_to_the_end(&setup, &mut harness);
    open_history(&mut harness);
    let records = harness.state().history().records.clone().unwrap().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].stopped_at.as_deref(),
        Some("Provision 1/1: shell")
    );
    // The table's outcome and the step's.
    assert_eq!(harness.query_all_by_label("failed").count(), 2);
    harness.get_by_label(
        "Failed at Provision 1/1: shell: provisioner: install.sh exited with status 100",
    );
    harness.get_by_label("Logs: /tmp/kiln-gui-test-logs");
    // The recipe went away since: Rebuild says so in place and fills nothing.
    std::fs::remove_file(setup.recipes_dir.join("gui-test.json")).unwrap();
    harness.get_by_label("Rebuild").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Recipes);
    harness.get_by_label_contains("its recipe cannot be opened: there is no file at");
    let open = harness.state().open_recipe_state().unwrap();
    assert!(
        open.note
            .as_deref()
            .is_none_or(|n| !n.contains("filled in")),
        "nothing was filled in: {:?}",
        open.note
    );
}

#[test]
fn a_damaged_history_warns_the_build_and_the_place_names_the_file() {
    let (setup, mut harness) = setup(Ending::Success);
    std::fs::create_dir_all(setup.history.parent().unwrap()).unwrap();
    let garbage = b"definitely not sqlite\n".repeat(100);
    std::fs::write(&setup.history, &garbage).unwrap();
    build_to_the_end(&setup, &mut harness);
    let state = harness.state().build_state().unwrap();
    assert_eq!(
        state.final_outcome(),
        Some(&Outcome::Done),
        "the build is not affected"
    );
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains("not recorded in the history")
                && w.contains(&setup.history.display().to_string())),
        "{:?}",
        state.warnings
    );
    open_history(&mut harness);
    let read = harness.state().history().records.clone().unwrap();
    let why = read.unwrap_err();
    assert!(why.contains(&setup.history.display().to_string()), "{why}");
    harness.get_by_label_contains("is not a kiln build history");
    assert_eq!(std::fs::read(&setup.history).unwrap(), garbage);
}

#[test]
fn the_history_place_reads_once_and_then_stays_idle() {
    let (_setup, mut harness) = setup(Ending::Success);
    // The host check's answer is the only other message the window waits for.
    step_until(&mut harness, "the host check", |app| {
        app.host_checks().is_some()
    });
    open_history(&mut harness);
    harness.get_by_label_contains("No build recorded yet");
    // Nothing to read again: no read is started and no repaint is asked for.
    for _ in 0..3 {
        harness.step();
    }
    assert!(!harness.state().history().busy);
    assert!(
        !harness.ctx.has_requested_repaint(),
        "the idle History place asks for repaints"
    );
}

#[test]
fn ended_build_tabs_beyond_eight_close_oldest_first() {
    let (setup, mut harness) = setup(Ending::Failure);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    setup.gate.add_permits(100);
    step_until(&mut harness, "the first build's end", |app| {
        app.build_states().iter().all(|b| !b.is_running())
    });
    let mut starts = vec![harness.state().build_states()[0].started];
    for n in 2..=10 {
        harness.get_by_label("Recipes").click();
        harness.run();
        harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::B);
        step_until(&mut harness, "another build", |app| {
            app.build_states().len() == n.min(8)
                && app.build_states().iter().all(|b| !b.is_running())
        });
        starts.push(harness.state().build_states().last().unwrap().started);
    }
    // The ninth and tenth starts each closed the oldest ended tab: builds 3 to 10 are left.
    let states = harness.state().build_states();
    assert_eq!(states.len(), 8);
    let left: Vec<_> = states.iter().map(|b| b.started).collect();
    assert_eq!(left, starts[2..]);
    assert_eq!(
        harness.state().shown_build_tab(),
        Some(7),
        "the newest shows"
    );
    assert!(states.iter().all(|b| b.status_word() == "failed"));
}

#[test]
fn a_build_whose_kiln_was_killed_shows_as_interrupted() {
    let (setup, mut harness) = setup(Ending::Success);
    // What a `kiln build` killed during its second step leaves: its row written at the start
    // (with its running step, as far as it got) and never finished.
    let path = setup.recipes_dir.join("gui-test.json");
    let options = kiln::recipe::template::LoadOptions {
        required_is_warning: true,
        ..Default::default()
    };
    let recipe = kiln::recipe::template::load_file(&path, &options).unwrap();
    let mut recorder = kiln::history::Recorder::new(
        &path,
        &recipe,
        &recipe.builds[0],
        kiln::history::Origin::Cli,
    );
    recorder.observe(&Event::BuildStarted {
        build: "test-vm".into(),
        steps: vec!["Base image".into(), "Boot".into()],
    });
    recorder.observe(&Event::StepStarted {
        index: 1,
        name: "Boot".into(),
    });
    let mut record = recorder.snapshot();
    // Its kiln: a process that has ended (started and reaped).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    record.process = Some(kiln::history::ProcessStamp {
        pid,
        start_ticks: 1,
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
            .into(),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .into(),
    });
    kiln::history::recording::begin(&setup.history, &record).unwrap();

    harness.run();
    open_history(&mut harness);
    let records = harness.state().history().records.clone().unwrap().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, kiln::history::RunOutcome::Interrupted);
    // The table's outcome and the step that was running.
    assert_eq!(harness.query_all_by_label("interrupted").count(), 2);
    harness.get_by_label("Interrupted at Boot");
    assert!(harness.query_by_label("unfinished").is_none());
}

/// A template with two qemu builds and one kiln does not run (the shape of rgl's boxes).
const MULTI_BUILDER_RECIPE: &str = r#"{
  "description": "Several builds",
  "builders": [
    {"type": "qemu", "name": "bios", "disk_image": true, "iso_url": "file:///nonexistent/base.qcow2",
     "iso_checksum": "none", "ssh_username": "debian"},
    {"type": "virtualbox-iso", "name": "vbox", "guest_os_type": "Debian_64"},
    {"type": "qemu", "name": "uefi", "disk_image": true, "iso_url": "file:///nonexistent/base.qcow2",
     "iso_checksum": "none", "ssh_username": "debian", "memory": 2048}
  ]
}"#;

#[test]
fn a_template_with_several_builds_offers_the_choice_and_greys_what_kiln_does_not_run() {
    let (setup, mut harness) = setup(Ending::Success);
    let path = setup.recipes_dir.join("multi.json");
    std::fs::write(&path, MULTI_BUILDER_RECIPE).unwrap();
    harness.run();
    type_into(
        &mut harness,
        Role::TextInput,
        "Open file:",
        &path.display().to_string(),
    );
    harness.get_by_label("Open").click();
    harness.run();
    assert_eq!(harness.state().open_recipe_state().unwrap().path, path);
    // The builder kiln does not run is listed, greyed, with the reason.
    let skipped =
        harness.get_by_label("vbox: not run — type `virtualbox-iso`: kiln runs `qemu` builders");
    assert!(skipped.accesskit_node().is_disabled(), "greyed");
    // The first qemu build is chosen; the other can be picked.
    assert_eq!(
        harness
            .state()
            .open_recipe_state()
            .unwrap()
            .chosen_build()
            .as_deref(),
        Some("bios")
    );
    harness
        .get_by_role_and_label(Role::ComboBox, "Build:")
        .click();
    harness.run();
    harness.get_by_label("uefi").click();
    harness.run();
    assert_eq!(
        harness
            .state()
            .open_recipe_state()
            .unwrap()
            .chosen_build()
            .as_deref(),
        Some("uefi")
    );
    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the build view", |app| {
        app.place() == Place::Build
    });
    let (_, build) = setup
        .received
        .lock()
        .unwrap()
        .clone()
        .expect("the engine got a build");
    assert_eq!(build.name, "uefi");
    assert_eq!(build.builder.memory, 2048);
}

/// A recipe that publishes, with its own cloud-init CD authorising one key (`{KEY}`).
const PUBLISHING_RECIPE: &str = r##"{
  "variables": {"api_key": "EXOrecipekey0123456789abcd", "api_secret": "recipe-secret"},
  "sensitive-variables": ["api_secret"],
  "builders": [{
    "type": "qemu", "name": "own-seed", "disk_image": true,
    "iso_url": "file:///nonexistent/base.qcow2", "iso_checksum": "none",
    "ssh_username": "debian", "cd_label": "cidata",
    "cd_content": {"meta-data": "instance-id: own\n", "user-data": "#cloud-config\nssh_authorized_keys:\n  - {KEY}\n"}
  }],
  "post-processors": [{
    "type": "exoscale-import", "image_bucket": "images", "image_zone": "ch-gva-2",
    "template_name": "Own seed", "template_zones": ["ch-gva-2", "de-fra-1"],
    "api_key": "{{user `api_key`}}", "api_secret": "{{user `api_secret`}}"
  }]
}"##;

/// Picks `entry` in the combo box labelled `label`.
fn pick(harness: &mut Harness<'_, KilnApp>, label: &str, entry: &str) {
    harness.get_by_role_and_label(Role::ComboBox, label).click();
    harness.run();
    harness.get_by_label_contains(entry).click();
    harness.run();
}

#[test]
fn the_build_form_chooses_the_ssh_key_and_the_credentials_profile_and_remembers_them() {
    let (setup, mut harness) = setup_prepared(
        Ending::Success,
        None,
        Some("work"),
        None,
        &|secrets, root| {
            let (profiles, keys) = secrets.open().unwrap();
            let deploy = keys
                .generate(
                    "deploy",
                    "deploy@kiln",
                    kiln::secrets::ssh_keys::Existing::Refuse,
                )
                .unwrap();
            keys.generate(
                "other",
                "other@kiln",
                kiln::secrets::ssh_keys::Existing::Refuse,
            )
            .unwrap();
            assert_eq!(profiles.list().unwrap().len(), 1);
            // A key pair in ~/.ssh (the test's), and a public key without its private half.
            let ssh = root.join("ssh");
            std::fs::create_dir_all(&ssh).unwrap();
            let made = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f"])
                .arg(ssh.join("id_ed25519"))
                .status()
                .unwrap();
            assert!(made.success());
            std::fs::write(ssh.join("lonely.pub"), deploy.public_key.clone() + "\n").unwrap();
            let recipe = PUBLISHING_RECIPE.replace("{KEY}", deploy.public_key.trim());
            std::fs::write(root.join("recipes/own-seed.json"), recipe).unwrap();
        },
    );
    harness.run();
    harness.get_by_label("own-seed.json").click();
    harness.run();
    step_until(&mut harness, "the keyring listed", |app| {
        app.credentials().snapshot.is_some()
    });
    let open = harness.state().open_recipe_state().unwrap();
    assert!(
        open.inspection.is_ok(),
        "{:?}",
        open.inspection.as_ref().err()
    );
    // The recipe's own seed authorises `deploy`, not the temporary key the recipe implies.
    let problem = open
        .choice_problem
        .clone()
        .expect("a temporary key is refused");
    assert!(problem.contains("not a new temporary one"), "{problem}");
    harness
        .get_by_label_contains("SSH key: the recipe's own cloud-init data (cd_content user-data)");
    // The variables that only carry the key and secret are folded under the choice.
    assert!(harness.query_by_label("api_secret").is_none(), "folded");
    harness
        .get_by_label("The recipe's key and secret variables (api_key, api_secret)")
        .click();
    harness.run();
    harness.get_by_role_and_label(Role::PasswordInput, "api_secret");
    // What the build publishes where.
    harness.get_by_label(
        "Publishes template “Own seed” in ch-gva-2, de-fra-1 (image uploaded to bucket images in ch-gva-2, private)",
    );
    // Start is refused with the reason, before anything runs.
    harness.get_by_label("Start build").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Recipes);
    assert!(setup.received.lock().unwrap().is_none(), "nothing started");
    let errors: Vec<String> = harness
        .state()
        .open_recipe_state()
        .unwrap()
        .diagnostics()
        .unwrap()
        .errors()
        .map(|d| d.message.clone())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("build `own-seed`: SSH key:")),
        "{errors:?}"
    );

    // The public key without a private half is greyed; the other file and both keyring
    // keys are offered. Another key than the authorised one is still a problem.
    harness
        .get_by_role_and_label(Role::ComboBox, "SSH key:")
        .click();
    harness.run();
    assert!(
        harness
            .get_by_label_contains("lonely.pub")
            .accesskit_node()
            .is_disabled(),
        "a public key alone cannot log in"
    );
    harness
        .get_by_label_contains("ssh/id_ed25519 (ssh-ed25519")
        .click();
    harness.run();
    let open = harness.state().open_recipe_state().unwrap();
    assert!(
        matches!(&open.choices.ssh_key, kiln::build::choices::KeyChoice::File(p) if p.ends_with("ssh/id_ed25519")),
        "{:?}",
        open.choices.ssh_key
    );
    let problem = open.choice_problem.clone().expect("an unauthorised key");
    assert!(
        problem.contains("does not authorise the chosen key"),
        "{problem}"
    );
    pick(&mut harness, "SSH key:", "Keyring: deploy");
    assert_eq!(
        harness.state().open_recipe_state().unwrap().choice_problem,
        None
    );

    // The environment is greyed when it is not set; the profile is chosen.
    harness
        .get_by_role_and_label(Role::ComboBox, "Exoscale credentials:")
        .click();
    harness.run();
    let environment_set = ["EXOSCALE_API_KEY", "EXOSCALE_API_SECRET"]
        .iter()
        .all(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()));
    assert_eq!(
        harness
            .get_by_label("Environment: EXOSCALE_API_KEY and EXOSCALE_API_SECRET")
            .accesskit_node()
            .is_disabled(),
        !environment_set
    );
    harness
        .get_by_label_contains("Profile: work (ch-gva-2, default)")
        .click();
    harness.run();
    harness.get_by_label("The recipe's api_key and api_secret are not used for this build.");
    // The plan says what Start will run, as chosen (what kiln inspect says).
    harness.get_by_label("Plan").click();
    harness.run();
    harness.get_by_label_contains("ssh as `debian` with keyring key `deploy`");
    harness.get_by_label_contains("credentials of profile `work`");
    // The steps Start will run, as the runner will run them (the same plan value).
    harness.get_by_label_contains("9. Connect");
    // And what this machine adds: the base image's source and the accelerator.
    harness.get_by_label_contains("base image: ");
    harness.get_by_label_contains("accelerator: ");

    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the build view", |app| {
        app.place() == Place::Build
    });
    let (_, build) = setup
        .received
        .lock()
        .unwrap()
        .clone()
        .expect("the engine got a build");
    assert_eq!(
        build.builder.ssh.private_key_keyring.as_deref(),
        Some("deploy")
    );
    assert_eq!(build.builder.ssh.private_key_file, None);
    let import = build
        .post_processors
        .iter()
        .flatten()
        .find_map(|pp| match &pp.kind {
            kiln::recipe::postprocessor::PostProcessorKind::ExoscaleImport(c) => Some(c.clone()),
            _ => None,
        })
        .expect("the import is there");
    assert_eq!(import.profile.as_deref(), Some("work"));
    assert!(import.profile_first);
    assert!(import.api_key.is_empty(), "the recipe's key is not used");

    // The choices are remembered for the recipe (names only), and come back when it is
    // opened again.
    harness.get_by_label("Recipes").click();
    harness.run();
    harness.get_by_label("gui-test.json").click();
    harness.run();
    assert_eq!(
        harness.state().open_recipe_state().unwrap().choices,
        kiln::build::choices::BuildChoices::default()
    );
    harness.get_by_label("own-seed.json").click();
    harness.run();
    let open = harness.state().open_recipe_state().unwrap();
    assert_eq!(
        open.choices.ssh_key,
        kiln::build::choices::KeyChoice::Keyring("deploy".into())
    );
    assert_eq!(
        open.choices.credentials,
        kiln::build::choices::CredentialsChoice::Profile("work".into())
    );
    assert_eq!(open.choice_problem, None);
    drop(setup);
}

#[test]
fn the_form_is_checked_as_the_user_types() {
    let (_setup, mut harness) = setup(Ending::Success);
    harness.run();
    harness.get_by_label("gui-test.json").click();
    harness.run();
    let bucket_warning = |app: &KilnApp| {
        app.open_recipe_state()
            .and_then(|o| o.diagnostics())
            .is_some_and(|d| d.iter().any(|w| w.message.contains("`bucket`")))
    };
    assert!(
        bucket_warning(harness.state()),
        "the required bucket is missing"
    );
    type_into(&mut harness, Role::TextInput, "bucket *", "my-bucket");
    // No Validate pressed: the warning goes once typing pauses.
    step_until(&mut harness, "the form checked again", |app| {
        !bucket_warning(app)
    });
    assert!(
        harness
            .state()
            .open_recipe_state()
            .unwrap()
            .checked
            .is_some()
    );
}

#[test]
fn variables_get_fields_for_what_they_feed_zone_flag_and_number() {
    let (setup, mut harness) = setup_prepared(Ending::Success, None, None, None, &|_, root| {
        let recipe = serde_json::json!({
            "variables": {"zone": "ch-gva-2", "headless": "true", "cpus": "2", "size": "10G"},
            "builders": [{
                "type": "qemu", "name": "kinds", "disk_image": true,
                "iso_url": "file:///nonexistent/base.qcow2", "iso_checksum": "none",
                "ssh_username": "debian", "headless": "{{user `headless`}}",
                "cpus": "{{user `cpus`}}", "disk_size": "{{user `size`}}"
            }],
            "post-processors": [{
                "type": "exoscale-import", "image_bucket": "images", "template_name": "t",
                "image_zone": "{{user `zone`}}", "template_zones": ["{{user `zone`}}"]
            }]
        });
        std::fs::write(root.join("recipes/kinds.json"), recipe.to_string()).unwrap();
    });
    harness.run();
    harness.get_by_label("kinds.json").click();
    harness.run();
    // A zone picker, a checkbox, and number and size fields checked as typed.
    pick(&mut harness, "zone", "de-fra-1");
    harness
        .get_by_role_and_label(Role::CheckBox, "headless")
        .click();
    harness.run();
    type_into(&mut harness, Role::TextInput, "cpus", "two");
    harness.get_by_label("`two` is not a whole number");
    // Corrected in place (the field still has the focus).
    for _ in 0..3 {
        harness.key_press(egui::Key::Backspace);
    }
    harness.run();
    harness
        .get_by_role_and_label(Role::TextInput, "cpus")
        .type_text("4");
    harness.run();
    let values = &harness.state().open_recipe_state().unwrap().values;
    assert_eq!(values["zone"], "de-fra-1");
    assert_eq!(values["headless"], "false");
    assert_eq!(values["cpus"], "4");
    assert!(
        harness
            .query_by_label_contains("not a whole number")
            .is_none()
    );

    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the build view", |app| {
        app.place() == Place::Build
    });
    let (_, build) = setup
        .received
        .lock()
        .unwrap()
        .clone()
        .expect("the engine got a build");
    assert_eq!(build.builder.cpus, 4);
    assert!(!build.builder.headless);
    let zone = build
        .post_processors
        .iter()
        .flatten()
        .find_map(|pp| match &pp.kind {
            kiln::recipe::postprocessor::PostProcessorKind::ExoscaleImport(c) => {
                Some(c.image_zone.clone())
            }
            _ => None,
        });
    assert_eq!(zone.as_deref(), Some("de-fra-1"));
}

/// The exoscale-import options of the build the engine was asked to run.
fn received_import(setup: &Setup) -> kiln::recipe::postprocessor::ExoscaleImportConfig {
    let (_, build) = setup
        .received
        .lock()
        .unwrap()
        .clone()
        .expect("a job was started");
    match &build.post_processors[0][0].kind {
        kiln::recipe::postprocessor::PostProcessorKind::ExoscaleImport(c) => c.clone(),
        other => panic!("not an exoscale-import: {other:?}"),
    }
}

#[test]
fn publish_an_image_from_the_templates_place_runs_in_the_build_place_and_the_history() {
    let api = exoscale_api::ApiServer::start();
    let (setup, mut harness) = setup_with_api(Ending::Success, Some(api.endpoint()), Some("work"));
    let small = setup.image("small.qcow2", "1G");
    let image = setup.image("vendor-12.qcow2", "10G");
    harness.get_by_label("Templates").click();
    step_until(&mut harness, "the listing", |app| {
        app.templates().listing.is_some() && !app.templates().busy
    });
    harness.get_by_label("Publish an image…").click();
    harness.run();

    // A 1 GiB image is refused on the form, with the command that fixes it; nothing runs.
    setup.dialogs.push_answer(Some(small.clone()));
    harness.get_by_label("Choose image…").click();
    // (A listing may be running meanwhile: its spinner keeps asking for frames.)
    step_until(&mut harness, "the chosen image", |app| {
        app.templates()
            .publish
            .as_ref()
            .is_some_and(|f| !f.image.is_empty())
            && !app.templates().busy
    });
    type_into(&mut harness, Role::TextInput, "Bucket", "my-images");
    harness.get_by_label("Publish").click();
    harness.run();
    let form = harness
        .state()
        .templates()
        .publish
        .clone()
        .expect("the form stays open");
    assert!(
        form.problems
            .iter()
            .any(|p| p.contains(&format!("qemu-img resize {} 10G", small.display()))),
        "{:?}",
        form.problems
    );
    assert!(
        setup.received.lock().unwrap().is_none(),
        "nothing was started"
    );
    harness.get_by_label(&form.problems[0]);

    // The right image, a copy to a second zone, the keyring profile.
    harness
        .state_mut()
        .templates_mut()
        .publish
        .as_mut()
        .unwrap()
        .name
        .clear();
    setup.dialogs.push_answer(Some(image.clone()));
    harness.get_by_label("Choose image…").click();
    step_until(&mut harness, "the second image", |app| {
        app.templates()
            .publish
            .as_ref()
            .is_some_and(|f| f.image.ends_with("vendor-12.qcow2"))
            && !app.templates().busy
    });
    harness.get_by_label("de-fra-1").click();
    harness.run();
    pick(&mut harness, "Credentials", "work");
    harness.get_by_label("Publish").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Build);
    assert!(
        harness.state().templates().publish.is_none(),
        "the form closed"
    );
    let import = received_import(&setup);
    assert_eq!(import.image_bucket, "my-images");
    assert_eq!(import.image_zone, "ch-gva-2");
    assert_eq!(import.template_zones, ["ch-gva-2", "de-fra-1"]);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(import.template_name, format!("vendor-12 {today}"));
    assert_eq!(import.profile.as_deref(), Some("work"));
    assert!(import.profile_first, "the chosen profile comes first");
    let (recipe, _) = setup.received.lock().unwrap().clone().unwrap();
    assert_eq!(
        recipe.builds[0].post_processors[0][0].keep_input_artifact,
        Some(true),
        "the image is the user's"
    );
    setup.gate.add_permits(1);
    step_until(&mut harness, "the publication's end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });

    // Recorded under the image; Rebuild opens the form again with it.
    open_history(&mut harness);
    let records = harness.state().history().records.clone().unwrap().unwrap();
    assert_eq!(records[0].recipe, image);
    assert_eq!(records[0].build_name, "publish");
    assert_eq!(
        records[0].template_name.as_deref(),
        Some(import.template_name.as_str())
    );
    harness.get_by_label("Rebuild").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Templates);
    let form = harness
        .state()
        .templates()
        .publish
        .clone()
        .expect("the form again");
    assert_eq!(form.image, image.display().to_string());
    assert_eq!(form.name, import.template_name);
}

#[test]
fn the_step_cache_is_chosen_on_the_form_and_rebuild_from_here_reruns_from_that_provisioner() {
    let (setup, mut harness) = setup(Ending::Success);
    choose_fill_and_start(&mut harness, &setup.recipes_dir);
    let_the_build_end(&setup, &mut harness, "the build's end");
    assert_eq!(
        setup.cache_uses.lock().unwrap().clone(),
        [StepCacheUse::default()],
        "off unless chosen"
    );
    // The ended build's provisioner row: build again with the cache, from provisioner 1.
    harness.get_by_label("Rebuild from here").click();
    harness.run();
    let_the_build_end(&setup, &mut harness, "the second build's end");
    assert_eq!(
        setup.cache_uses.lock().unwrap().last().copied(),
        Some(StepCacheUse {
            on: true,
            rerun_from: Some(1)
        })
    );
    // A step restored from the cache reads "cached", not "skipped".
    harness.get_by_label("cached, from 2026-12-08 00:17 UTC");
    assert!(harness.query_by_label_contains("skipped").is_none());
    // The form's checkbox turns it on for Start.
    harness.get_by_label("Recipes").click();
    harness.run();
    harness.get_by_label("Resume from the step cache").click();
    harness.run();
    assert!(
        harness
            .state()
            .open_recipe_state()
            .unwrap()
            .choices
            .step_cache,
        "a choice of the build's, remembered with the key and credentials"
    );
    harness.get_by_label("Start build").click();
    harness.run();
    let_the_build_end(&setup, &mut harness, "the third build's end");
    assert_eq!(
        setup.cache_uses.lock().unwrap().last().copied(),
        Some(StepCacheUse {
            on: true,
            rerun_from: None
        })
    );
}
