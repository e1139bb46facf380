//! Snapshot tests of the window's main places: the real `KilnApp` at 1000×700, rendered
//! headless with wgpu on Mesa's software rasterizer and compared with the committed PNGs in
//! `tests/snapshots/`:
//!
//! - Recipes with the variables form (light and dark theme), the recipe editor's cards
//!   (Recipe tab) and its JSON tab;
//! - Build mid-build (steps done, running and pending, a determinate bar with rate and ETA,
//!   output lines) and a failed build with its error card;
//! - Templates listed from the strict fake Exoscale API (one stale, one selected);
//! - Credentials with a stored profile; Host check; History with three builds, one selected.
//!
//! What would change between runs or machines is pinned: a fixed folder (paths are shown),
//! fixed host-check results (the real ones name this machine's tools and free space), a fixed
//! "now" for template ages, fixed history times in UTC (`TZ` is set before any thread starts,
//! hence this file's own `main`), and the running build's clock-derived fields. Every
//! snapshot first runs egui_kittest's accessibility check (every input has a name).
//!
//! Update the PNGs after an intended change with
//! `UPDATE_SNAPSHOTS=1 cargo test --test gui_snapshots` and review them before committing.
//! Backend: wgpu's Vulkan on lavapipe (`mesa-vulkan-drivers`) unless `WGPU_BACKEND` says
//! otherwise; with no adapter the test fails and says what to install.

#[path = "support/mock_secrets.rs"]
mod mock_secrets;
use kiln::gui::credentials::SecretsSource;
use mock_secrets::MockSecrets;

#[path = "support/exoscale_api.rs"]
mod exoscale_api;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use egui_wgpu::wgpu;
use kiln::build::event::{Event, EventSink, Outcome, Stream, Unit};
use kiln::build::plan::BuildReport;
use kiln::gui::app::Place;
use kiln::gui::engine::{BuildControls, BuildFuture, Engine};
use kiln::gui::{AppConfig, KilnApp};
use kiln::history::{
    BuildRecord, History, Origin, RunOutcome, StepEnd, StepRecord, VarOrigin, VariableRecord,
};
use kiln::host::{Check, Status};
use kiln::recipe::template::{Build, Recipe};

/// Everything the window shows lives here, so the paths it prints are the same on every
/// machine. One run at a time holds [`LOCK`].
const ROOT: &str = "/tmp/kiln-snapshots";
const LOCK: &str = "/tmp/kiln-snapshots.lock";

/// The window's size in points (and pixels: 1 pixel per point).
const SIZE: [f32; 2] = [1000.0, 700.0];

/// The smallest window the layout is drawn for (nothing cut off, everything reachable).
const SMALL: [f32; 2] = [900.0, 600.0];

/// The wgpu backend used unless `WGPU_BACKEND` names another: Vulkan on lavapipe renders the
/// committed PNGs; `WGPU_BACKEND=gl` (EGL on llvmpipe) works too, within the threshold.
const BACKEND: wgpu::Backends = wgpu::Backends::VULKAN;

const RECIPE: &str = r#"{
  "description": "Debian 12 for Exoscale",
  "variables": {
    "image_url": "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
    "bucket": null,
    "zone": "ch-gva-2",
    "template_name": "Debian 12 (kiln)",
    "api_key": "",
    "api_secret": ""
  },
  "sensitive-variables": ["api_secret"],
  "builders": [{
    "type": "qemu",
    "name": "debian-12",
    "disk_image": true,
    "iso_url": "{{user `image_url`}}",
    "iso_checksum": "none",
    "disk_size": "10G",
    "format": "qcow2",
    "cpus": 2,
    "memory": "2048",
    "ssh_username": "debian",
    "vm_name": "debian-12.qcow2"
  }],
  "provisioners": [
    {"type": "shell", "inline": ["sudo apt-get update", "sudo apt-get -y upgrade"]},
    {"type": "shell", "script": "{{template_dir}}/scripts/install.sh"}
  ],
  "post-processors": [[
    {"type": "exoscale-import", "api_key": "{{user `api_key`}}",
     "api_secret": "{{user `api_secret`}}", "image_bucket": "{{user `bucket`}}",
     "image_zone": "{{user `zone`}}", "template_zones": ["{{user `zone`}}"],
     "template_name": "{{user `template_name`}}"}
  ]]
}
"#;

const MINIMAL: &str = r#"{
  "description": "A bare qemu build",
  "builders": [{"type": "qemu", "disk_image": true, "iso_url": "file:///srv/base.qcow2",
                "iso_checksum": "none", "ssh_username": "debian"}]
}
"#;

/// The steps the scripted build announces.
const STEPS: &[&str] = &[
    "Base image",
    "Disk",
    "Seed",
    "Boot",
    "Provision",
    "Shut down",
    "Compact",
    "Test image",
    "Upload",
    "Register",
];

/// The provisioner's output the scripted build logs.
const OUTPUT: &[&str] = &[
    "Reading package lists...",
    "Building dependency tree...",
    "Reading state information...",
    "The following NEW packages will be installed:",
    "  fail2ban python3-pyinotify python3-systemd whois",
    "0 upgraded, 4 newly installed, 0 to remove and 0 not upgraded.",
    "Need to get 601 kB of archives.",
    "Get:1 http://deb.debian.org/debian bookworm/main amd64 fail2ban all 1.0.2-2 [451 kB]",
    "Fetched 601 kB in 0s (4,210 kB/s)",
    "Selecting previously unselected package fail2ban.",
    "Unpacking fail2ban (1.0.2-2) ...",
    "Setting up fail2ban (1.0.2-2) ...",
    "Created symlink /etc/systemd/system/multi-user.target.wants/fail2ban.service.",
    "Processing triggers for man-db (2.11.2-2) ...",
];

/// The serial console the scripted build shows.
const CONSOLE: &[&str] = &[
    "[  OK  ] Reached target cloud-init.target - Cloud-init target.",
    "Debian GNU/Linux 12 debian-12 ttyS0",
    "debian-12 login:",
    "[   41.2] cloud-init[612]: Cloud-init v. 22.4.2 finished",
    "[  118.9] systemd[1]: Starting apt-daily.service - Daily apt download activities...",
    "[  119.3] systemd[1]: Started fail2ban.service - Fail2Ban Service.",
];

/// Where the failing build stops.
const FAILURE: &str = "provisioner shell (scripts/install.sh): exited with status 100 — \
                       apt-get could not fetch fail2ban";

/// What the scripted build does after its first steps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Compact runs (with progress) until the build is cancelled.
    Running,
    /// Provision fails.
    Failing,
}

/// An engine double that plays a fixed build: every duration it reports is fixed.
struct ScriptedEngine(Script);

impl Engine for ScriptedEngine {
    fn build(
        &self,
        _recipe: Recipe,
        build: Build,
        events: EventSink,
        controls: BuildControls,
    ) -> BuildFuture {
        let script = self.0;
        Box::pin(async move {
            events.send(Event::BuildStarted {
                build: build.name.clone(),
                steps: STEPS.iter().map(|s| s.to_string()).collect(),
            });
            let done_steps: &[u64] = match script {
                Script::Running => &[200, 1_100, 40, 38_400, 72_900, 6_300],
                Script::Failing => &[200, 1_100, 40, 38_400],
            };
            for (index, ms) in done_steps.iter().enumerate() {
                events.send(Event::StepStarted {
                    index,
                    name: STEPS[index].into(),
                });
                for line in OUTPUT.iter().filter(|_| index == 4) {
                    events.send(Event::Log {
                        index: Some(index),
                        stream: Stream::Stdout,
                        line: line.to_string(),
                    });
                }
                events.send(Event::StepFinished {
                    index,
                    outcome: Outcome::Done,
                    duration: Duration::from_millis(*ms),
                });
            }
            for line in CONSOLE {
                events.send(Event::Console(line.to_string()));
            }
            let log_dir = PathBuf::from(ROOT).join("logs/debian-12-20261127-140200");
            let report = |outcome| BuildReport {
                artifact: None,
                artifacts: Vec::new(),
                templates: Vec::new(),
                outcome,
                log_dir: log_dir.clone(),
            };
            match script {
                Script::Running => {
                    events.send(Event::StepStarted {
                        index: 6,
                        name: "Compact".into(),
                    });
                    events.send(Event::Progress {
                        index: 6,
                        done: 1_288_490_189,
                        total: Some(2_147_483_648),
                        unit: Unit::Bytes,
                    });
                    controls.cancel.cancelled().await;
                    report(Outcome::Cancelled)
                }
                Script::Failing => {
                    events.send(Event::StepStarted {
                        index: 4,
                        name: "Provision".into(),
                    });
                    for line in &OUTPUT[..9] {
                        events.send(Event::Log {
                            index: Some(4),
                            stream: Stream::Stdout,
                            line: line.to_string(),
                        });
                    }
                    events.send(Event::Log {
                        index: Some(4),
                        stream: Stream::Stderr,
                        line: "E: Failed to fetch http://deb.debian.org/debian/pool/main/f/fail2ban/fail2ban_1.0.2-2_all.deb  404  Not Found".into(),
                    });
                    events.send(Event::StepFinished {
                        index: 4,
                        outcome: Outcome::Failed(FAILURE.into()),
                        duration: Duration::from_millis(72_400),
                    });
                    events.send(Event::BuildFinished {
                        outcome: Outcome::Failed(FAILURE.into()),
                        duration: Duration::from_millis(113_600),
                    });
                    report(Outcome::Failed(FAILURE.into()))
                }
            }
        })
    }
}

/// The host check as the snapshots show it (the real one names this machine's tools, KVM
/// and free space).
fn fixed_host_checks() -> Vec<Check> {
    let ok = |name: &str, detail: &str| Check {
        name: name.into(),
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    };
    vec![
        ok(
            "qemu-system-x86_64",
            "/usr/bin/qemu-system-x86_64 (QEMU 7.2.15)",
        ),
        ok("qemu-img", "/usr/bin/qemu-img (qemu-img 7.2.15)"),
        Check {
            name: "KVM".into(),
            status: Status::Warn,
            detail: "/dev/kvm does not exist; builds run with TCG (software emulation), \
                     several times slower"
                .into(),
            fix: None,
        },
        ok("Free space", "118.4 GiB free in /tmp/kiln-snapshots"),
        Check {
            name: "OS keyring".into(),
            status: Status::Warn,
            detail: "no Secret Service on the session bus — without it, only \
                     EXOSCALE_API_KEY/EXOSCALE_API_SECRET and ssh_private_key_file work"
                .into(),
            fix: Some(
                "apt-get install -y gnome-keyring   # then log in to a desktop session".into(),
            ),
        },
    ]
}

/// "Now" for the Templates place's ages.
fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

/// What a case needs besides the window.
struct Options {
    script: Script,
    api: Option<String>,
    profile: bool,
    /// The window's size.
    size: [f32; 2],
}

impl Default for Options {
    fn default() -> Self {
        Self {
            script: Script::Running,
            api: None,
            profile: false,
            size: SIZE,
        }
    }
}

/// Holds the runtime the window's background work runs on, while the window lives.
struct Setup {
    _runtime: tokio::runtime::Runtime,
}

/// The wgpu setup: the chosen backend, egui_kittest's preference for software adapters.
fn wgpu_setup() -> egui_wgpu::WgpuSetup {
    let mut setup = egui_kittest::wgpu::default_wgpu_setup();
    if let egui_wgpu::WgpuSetup::CreateNew(new) = &mut setup
        && std::env::var_os("WGPU_BACKEND").is_none()
    {
        new.instance_descriptor.backends = BACKEND;
    }
    setup
}

/// Finds the adapter the snapshots render with, or fails saying what to install.
fn probe_adapter() -> wgpu::AdapterInfo {
    let setup = wgpu_setup();
    let backends = match &setup {
        egui_wgpu::WgpuSetup::CreateNew(new) => new.instance_descriptor.backends,
        egui_wgpu::WgpuSetup::Existing(_) => unreachable!("a new setup"),
    };
    let adapters = block_on(async {
        let instance = setup.new_instance().await;
        instance.enumerate_adapters(backends).await
    });
    let mut infos: Vec<_> = adapters.iter().map(|a| a.get_info()).collect();
    infos.sort_by_key(|i| i.device_type != wgpu::DeviceType::Cpu);
    infos.into_iter().next().unwrap_or_else(|| {
        panic!(
            "no wgpu adapter for {backends:?}: the snapshot tests render with Mesa's software \
             rasterizer. Install it with `apt-get install -y mesa-vulkan-drivers` (Vulkan on \
             lavapipe, the default), or run with WGPU_BACKEND=gl after \
             `apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri` (EGL on llvmpipe)."
        )
    })
}

/// Runs a future to completion on a throwaway current-thread runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// Empties the fixed folder and writes the recipes.
fn fresh_root() {
    let root = Path::new(ROOT);
    if root.exists() {
        std::fs::remove_dir_all(root).unwrap();
    }
    std::fs::create_dir_all(root.join("recipes")).unwrap();
    std::fs::write(root.join("recipes/debian-12.json"), RECIPE).unwrap();
    std::fs::write(root.join("recipes/minimal.json"), MINIMAL).unwrap();
    std::fs::create_dir_all(root.join("recipes/scripts")).unwrap();
    std::fs::write(
        root.join("recipes/scripts/install.sh"),
        "#!/bin/sh\nset -e\nsudo apt-get install -y fail2ban\n",
    )
    .unwrap();
}

/// The window on the fixed folder, its host check pinned, at the Recipes place.
fn window(options: Options) -> (Setup, Harness<'static, KilnApp>) {
    fresh_root();
    let root = Path::new(ROOT);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let secrets = Arc::new(MockSecrets::new(
        root.join("config/config.toml"),
        Path::new(ROOT).join("ssh"),
        options.api,
    ));
    if options.profile {
        let (profiles, _) = secrets.open().unwrap();
        let credentials = kiln::exoscale::Credentials::new(
            exoscale_api::TEST_KEY,
            kiln::recipe::secret::Secret::new(exoscale_api::TEST_SECRET),
        )
        .unwrap();
        profiles
            .save("work", "ch-gva-2", &credentials, true)
            .unwrap();
    }
    let config = AppConfig {
        runtime: runtime.handle().clone(),
        engine: Arc::new(ScriptedEngine(options.script)),
        initial_recipe: Some(root.join("recipes/debian-12.json")),
        recipes_dir: root.join("recipes"),
        started: Instant::now(),
        secrets,
        dialogs: Arc::new(kiln::gui::dialogs::ScriptedDialogs::default()),
        history: Some(root.join("data/kiln/history.sqlite")),
    };
    let size = options.size;
    let mut harness = Harness::builder()
        .with_size(size)
        // What the window starts with (the harness would otherwise impose its dark default).
        .with_theme(egui::Theme::Light)
        .with_max_steps(40)
        .with_render_cursor(false)
        .with_options(SnapshotOptions::new().threshold(0.6))
        .wgpu_setup(wgpu_setup())
        .build_eframe(move |cc| KilnApp::new(cc, config).with_clock(fixed_now));
    // The real host check runs at start; once it is back, show the fixed one instead.
    step_until(&mut harness, "the host check", |app| {
        app.host_checks().is_some()
    });
    harness.state_mut().set_host_checks(fixed_host_checks());
    harness.run();
    (Setup { _runtime: runtime }, harness)
}

/// Steps the window until `done` holds (background messages arrive on other threads).
fn step_until(harness: &mut Harness<'_, KilnApp>, what: &str, done: impl Fn(&KilnApp) -> bool) {
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

/// Clicks the widget labelled `label` and lets the window settle (not for what starts
/// background work: its spinner keeps asking for frames; step until it is done instead).
fn click(harness: &mut Harness<'_, KilnApp>, label: &str) {
    harness.get_by_label(label).click();
    harness.run();
}

/// Focuses the field labelled `label` and types `text` into it.
fn type_into(harness: &mut Harness<'_, KilnApp>, role: Role, label: &str, text: &str) {
    harness.get_by_role_and_label(role, label).focus();
    harness.run();
    harness.get_by_role_and_label(role, label).type_text(text);
    harness.run();
}

/// Snapshots that did not match (or could not be written), for `main`'s summary.
static MISMATCHED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Compares what the window shows now with `tests/snapshots/{name}.png` (the accessibility
/// check runs first); a mismatch is reported and the case goes on to its other snapshots.
fn compare(harness: &mut Harness<'_, KilnApp>, name: &str) {
    if let Err(e) = harness.try_snapshot(name) {
        eprintln!("snapshot {name}: {e}");
        MISMATCHED.lock().unwrap().push(name.to_string());
    }
}

/// Takes the pointer off the window (no hover highlight, no tooltip), settles, compares.
fn snapshot(harness: &mut Harness<'_, KilnApp>, name: &str) {
    harness.remove_cursor();
    harness.run();
    compare(harness, name);
}

fn recipes_variables() {
    let (_setup, mut harness) = window(Options::default());
    type_into(&mut harness, Role::TextInput, "bucket *", "my-images");
    // The key and secret variables are folded under the credentials choice; opened here to
    // show a masked field.
    click(
        &mut harness,
        "The recipe's key and secret variables (api_key, api_secret)",
    );
    type_into(
        &mut harness,
        Role::PasswordInput,
        "api_secret",
        "s3cret-value",
    );
    // Checked now (the form also checks once typing pauses, which a snapshot must not race).
    click(&mut harness, "Validate");
    // No text cursor in the picture.
    harness.ctx.memory_mut(|m| m.stop_text_input());
    harness.run();
    snapshot(&mut harness, "recipes_variables_light");
    click(&mut harness, "Dark theme");
    snapshot(&mut harness, "recipes_variables_dark");
}

fn recipe_editor_tabs() {
    let (_setup, mut harness) = window(Options::default());
    click(&mut harness, "Recipe");
    snapshot(&mut harness, "recipe_editor_cards");
    click(&mut harness, "JSON");
    snapshot(&mut harness, "recipe_editor_json");
}

fn build_running() {
    let (_setup, mut harness) = window(Options::default());
    type_into(&mut harness, Role::TextInput, "bucket *", "my-images");
    // Not `click`: while a build runs, its clock keeps asking for frames.
    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the Compact step's progress", |app| {
        app.place() == Place::Build
            && app
                .build_state()
                .is_some_and(|b| b.progress.as_ref().is_some_and(|p| p.index == 6))
    });
    harness.remove_cursor();
    // The clock-derived fields, pinned half a second from a display boundary: 3:41 elapsed,
    // Compact running for 1:12, 50 MiB/s (the ETA follows from it).
    let now = Instant::now();
    let ago = |secs: f64| now.checked_sub(Duration::from_secs_f64(secs)).unwrap();
    let state = harness.state_mut().build_state_mut().unwrap();
    state.started = ago(221.5);
    state.steps[6].started = Some(ago(72.5));
    state.progress.as_mut().unwrap().rate = Some(50.0 * 1024.0 * 1024.0);
    // One frame (the build's clock asks for more; `run` would wait for them).
    harness.step();
    compare(&mut harness, "build_running");
}

fn build_failed() {
    build_failed_at(SIZE, "build_failed");
}

fn build_failed_at(size: [f32; 2], name: &str) {
    let (_setup, mut harness) = window(Options {
        script: Script::Failing,
        size,
        ..Options::default()
    });
    type_into(&mut harness, Role::TextInput, "bucket *", "my-images");
    harness.get_by_label("Start build").click();
    step_until(&mut harness, "the failed end", |app| {
        app.build_state().is_some_and(|b| !b.is_running())
    });
    harness.get_by_label("Build failed");
    snapshot(&mut harness, name);
}

fn template(id: &str, name: &str, created: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "name": name,
        "description": "Debian 12 (bookworm) baked by kiln",
        "size": 10737418240u64,
        "boot-mode": "legacy",
        "visibility": "private",
        "created-at": created,
        "default-user": "debian",
    })
}

fn templates_listing() {
    let api = exoscale_api::ApiServer::start();
    api.add_template(
        "de-fra-1",
        template(
            "4c1d2b8e-0000-4000-8000-000000000001",
            "Debian 12 2026-10-01",
            "2026-10-01T09:30:00Z",
        ),
    );
    api.add_template(
        "ch-gva-2",
        template(
            "4c1d2b8e-0000-4000-8000-000000000002",
            "Debian 12 2026-11-24",
            "2026-11-24T14:02:00Z",
        ),
    );
    api.add_template(
        "at-vie-1",
        template(
            "4c1d2b8e-0000-4000-8000-000000000003",
            "Debian 12 2026-11-24",
            "2026-11-24T14:05:00Z",
        ),
    );
    let (_setup, mut harness) = window(Options {
        api: Some(api.endpoint()),
        profile: true,
        ..Options::default()
    });
    harness.get_by_label("Templates").click();
    step_until(&mut harness, "the listing", |app| {
        app.templates().listing.is_some() && !app.templates().busy
    });
    let listing = harness.state().templates().listing.clone().unwrap();
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    harness.get_by_label("3 templates, 1 stale");
    harness.get_by_label("57 days STALE");
    click(&mut harness, "Debian 12 2026-10-01");
    snapshot(&mut harness, "templates");
    // "Publish an image…": the form above the list, refused with what to fix.
    click(&mut harness, "Publish an image…");
    type_into(
        &mut harness,
        Role::TextInput,
        "Image file",
        &format!("{ROOT}/vendor-12.qcow2"),
    );
    type_into(&mut harness, Role::TextInput, "Bucket", "my-images");
    type_into(
        &mut harness,
        Role::TextInput,
        "Template name",
        "Vendor 12 {{isotime \"2006-01-02\"}}",
    );
    harness
        .get_by_role_and_label(Role::CheckBox, "de-fra-1")
        .click();
    harness.run();
    click(&mut harness, "Publish");
    harness.ctx.memory_mut(|m| m.stop_text_input());
    harness.run();
    snapshot(&mut harness, "templates_publish_form");
}

fn credentials() {
    credentials_at(SIZE, "credentials");
}

fn credentials_at(size: [f32; 2], name: &str) {
    let (_setup, mut harness) = window(Options {
        profile: true,
        size,
        ..Options::default()
    });
    harness.get_by_label("Credentials").click();
    step_until(&mut harness, "the credentials", |app| {
        app.credentials().snapshot.is_some() && !app.credentials().busy
    });
    snapshot(&mut harness, name);
}

fn host_check() {
    let (_setup, mut harness) = window(Options::default());
    harness.get_by_label_contains("Host:").click();
    harness.run();
    assert_eq!(harness.state().place(), Place::Host);
    snapshot(&mut harness, "host_check");
}

/// Three builds at fixed times (UTC; `TZ` is UTC here).
fn seed_history(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut history = History::open(path).unwrap();
    let at = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
    let recipe = Path::new(ROOT).join("recipes/debian-12.json");
    let step = |name: &str, end, ms: Option<u64>| StepRecord {
        name: name.into(),
        end,
        detail: None,
        duration: ms.map(Duration::from_millis),
    };
    let variables = vec![
        VariableRecord {
            name: "bucket".into(),
            value: Some("my-images".into()),
            sensitive: false,
            origin: VarOrigin::Given,
        },
        VariableRecord {
            name: "zone".into(),
            value: Some("ch-gva-2".into()),
            sensitive: false,
            origin: VarOrigin::Default,
        },
        VariableRecord {
            name: "api_secret".into(),
            value: None,
            sensitive: true,
            origin: VarOrigin::Environment,
        },
    ];
    let base = |started: DateTime<Utc>, secs: u64, outcome| BuildRecord {
        id: None,
        recipe: recipe.clone(),
        title: Some("Debian 12 for Exoscale".into()),
        build_name: "debian-12".into(),
        origin: Origin::Gui,
        started,
        ended: Some(started + chrono::Duration::seconds(secs as i64)),
        duration: Some(Duration::from_secs(secs)),
        outcome,
        stopped_at: None,
        log_dir: Some(
            Path::new(ROOT)
                .join("logs")
                .join(started.format("debian-12-%Y%m%d-%H%M%S").to_string()),
        ),
        steps: Vec::new(),
        variables: variables.clone(),
        artifacts: Vec::new(),
        templates: Vec::new(),
        template_name: None,
        checks: Vec::new(),
        warnings: 0,
        process: None,
    };
    let done_steps = [
        ("Base image", 200),
        ("Disk", 1_100),
        ("Seed", 40),
        ("Boot", 38_400),
        ("Provision", 72_900),
        ("Shut down", 6_300),
        ("Compact", 41_800),
        ("Test image", 52_100),
        ("Upload", 24_700),
        ("Register", 95_300),
    ];

    let mut done = base(at(24, 14, 2), 333, RunOutcome::Done);
    done.steps = done_steps
        .iter()
        .map(|(n, ms)| step(n, StepEnd::Done, Some(*ms)))
        .collect();
    done.artifacts = vec![kiln::history::model::ArtifactFile {
        producer: "qemu".into(),
        path: Path::new(ROOT).join("output/debian-12.qcow2"),
    }];
    done.templates = vec![(
        "ch-gva-2".into(),
        "4c1d2b8e-0000-4000-8000-000000000002".into(),
    )];
    done.checks = vec![kiln::history::model::CheckRecord {
        name: "cloud-init finished".into(),
        passed: true,
        detail: "status: done".into(),
    }];

    let mut failed = base(at(25, 9, 41), 114, RunOutcome::Failed(FAILURE.into()));
    failed.stopped_at = Some("Provision".into());
    failed.steps = done_steps
        .iter()
        .enumerate()
        .map(|(i, (n, ms))| match i {
            0..4 => step(n, StepEnd::Done, Some(*ms)),
            4 => step(n, StepEnd::Failed, Some(72_400)),
            _ => step(n, StepEnd::NotRun, None),
        })
        .collect();

    let mut cancelled = base(at(26, 16, 20), 47, RunOutcome::Cancelled);
    cancelled.recipe = Path::new(ROOT).join("recipes/minimal.json");
    cancelled.title = Some("A bare qemu build".into());
    cancelled.build_name = "qemu".into();
    cancelled.origin = Origin::Cli;
    cancelled.stopped_at = Some("Boot".into());
    cancelled.variables = Vec::new();
    cancelled.steps = vec![
        step("Base image", StepEnd::Done, Some(300)),
        step("Disk", StepEnd::Done, Some(900)),
        step("Seed", StepEnd::Done, Some(30)),
        step("Boot", StepEnd::Cancelled, Some(45_800)),
    ];

    for mut record in [done, failed, cancelled] {
        history.save(&mut record).unwrap();
    }
}

fn history() {
    history_at(SIZE, "history");
}

fn history_at(size: [f32; 2], name: &str) {
    let (_setup, mut harness) = window(Options {
        size,
        ..Options::default()
    });
    seed_history(&Path::new(ROOT).join("data/kiln/history.sqlite"));
    harness.get_by_label("History").click();
    step_until(&mut harness, "the history read", |app| {
        app.history().records.is_some() && !app.history().busy
    });
    // The oldest debian-12 build, the one that succeeded.
    let rows: Vec<_> = harness.query_all_by_label("debian-12.json").collect();
    assert_eq!(rows.len(), 2, "two debian-12 builds");
    rows[1].click();
    harness.run();
    snapshot(&mut harness, name);
}

/// The places with the most to show, at 900×600.
fn small_window() {
    build_failed_at(SMALL, "small_build_failed");
    credentials_at(SMALL, "small_credentials");
    history_at(SMALL, "small_history");
}

/// The cases, in the order they run.
const CASES: &[(&str, fn())] = &[
    ("recipes_variables", recipes_variables),
    ("recipe_editor_tabs", recipe_editor_tabs),
    ("build_running", build_running),
    ("build_failed", build_failed),
    ("templates_listing", templates_listing),
    ("credentials", credentials),
    ("host_check", host_check),
    ("history", history),
    ("small_window", small_window),
];

/// Holds an exclusive lock on [`LOCK`] while it lives: two runs (two checkouts) would share
/// the fixed folder.
struct RootLock {
    _file: std::fs::File,
}

impl RootLock {
    fn take() -> Self {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .unwrap();
        // SAFETY: flock on a file descriptor this value owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {LOCK}: {}", std::io::Error::last_os_error());
        Self { _file: file }
    }
}

/// A libtest-like runner: an optional name filter (the first argument that is not a flag),
/// every matching case run even when one fails, a non-zero exit when any failed.
fn main() {
    // SAFETY: no other thread exists yet (this is the test binary's `main`).
    unsafe { std::env::set_var("TZ", "UTC") };
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<_> = CASES
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    if cases.is_empty() {
        println!("gui_snapshots: no case matches {filter:?}");
        return;
    }
    let adapter = probe_adapter();
    println!(
        "gui_snapshots: rendering with {} ({:?}, {})",
        adapter.name, adapter.backend, adapter.driver_info
    );
    let _lock = RootLock::take();
    let mut failed = Vec::new();
    for (name, case) in cases {
        let started = Instant::now();
        let mismatched_before = MISMATCHED.lock().unwrap().len();
        let result = std::panic::catch_unwind(*case);
        let secs = started.elapsed().as_secs_f64();
        if result.is_ok() && MISMATCHED.lock().unwrap().len() == mismatched_before {
            println!("case {name} ... ok ({secs:.1} s)");
        } else {
            println!("case {name} ... FAILED ({secs:.1} s)");
            failed.push(*name);
        }
    }
    let _ = std::fs::remove_dir_all(ROOT);
    if !failed.is_empty() {
        let mismatched = MISMATCHED.lock().unwrap().clone();
        eprintln!(
            "gui_snapshots: {} of {} cases failed: {}",
            failed.len(),
            CASES.len(),
            failed.join(", ")
        );
        if !mismatched.is_empty() {
            eprintln!(
                "These differ from tests/snapshots/: {} (the new images are next to them as \
                 NAME.new.png, the differences as NAME.diff.png). If the change is intended, \
                 update them with `UPDATE_SNAPSHOTS=1 cargo test --test gui_snapshots` and \
                 look at them before committing.",
                mismatched.join(", ")
            );
        }
        std::process::exit(1);
    }
}
