//! The whole GUI path with the real engine: the window (egui_kittest, accessibility check on)
//! chooses a recipe, fills its variable, starts, and a real qemu build of the Debian test
//! image runs to the end — steps advance, the provisioner's output and the VM's serial
//! console arrive in their tabs, and the finished artifact is shown and is a sound qcow2.
//! On the way the build pauses at a `breakpoint` with its VM up; meanwhile a second build of
//! the same recipe, in its own tab, is refused because the output directory is in use; then
//! Continue lets the first one go on. The build logs in with a key of a real ssh-agent,
//! chosen in the form's SSH key picker: the agent signs, kiln's seed authorises that key and
//! the scrub takes it out of the image before shutdown.

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/sshd.rs"]
mod sshd;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kiln::build::event::Outcome;
use kiln::build::plan::BuildOptions;
use kiln::gui::app::Place;
use kiln::gui::build_state::StepState;
use kiln::gui::credentials::SecretsSource;
use kiln::gui::engine::RealEngine;
use kiln::gui::{AppConfig, KilnApp};
use kiln::secrets::profiles::Profiles;
use kiln::secrets::ssh_keys::SshKeys;
use kiln::secrets::{SecretsError, Vault};

/// Secrets on keyring-core's mock store (this recipe needs none; the window still opens it).
struct MockSecrets {
    vault: Vault,
    config: PathBuf,
    agent: PathBuf,
}

impl SecretsSource for MockSecrets {
    fn open(&self) -> Result<(Profiles, SshKeys), SecretsError> {
        Ok((
            Profiles::new(self.vault.clone(), self.config.clone()),
            SshKeys::new(self.vault.clone(), self.config.clone()),
        ))
    }
    fn public_key_dir(&self) -> Option<PathBuf> {
        None
    }
    fn agent_socket(&self) -> Option<PathBuf> {
        Some(self.agent.clone())
    }
}

/// A small recipe: the test image as the base, a shell provisioner that prints a marker, a
/// breakpoint, and another marker after it.
fn write_recipe(recipes_dir: &Path, output: &Path) {
    let text = format!(
        r#"{{
  "description": "The GUI's real build",
  "variables": {{"base_image": null}},
  "builders": [{{"type": "qemu", "name": "gui-real", "disk_image": true,
    "iso_url": "{{{{user `base_image`}}}}", "iso_checksum": "none",
    "output_directory": "{}", "vm_name": "gui-real.qcow2", "memory": 1024, "cpus": 2,
    "headless": true, "disable_vnc": true, "ssh_username": "debian", "ssh_timeout": "10m",
    "shutdown_command": "sudo shutdown -P now"}}],
  "provisioners": [
    {{"type": "shell", "inline": ["echo gui-real-build-marker $(id -un)", "sed 's/^/authorized: /' ~/.ssh/authorized_keys"]}},
    {{"type": "breakpoint", "note": "check the marker"}},
    {{"type": "shell", "inline": ["echo after-continue-marker"]}}
  ]
}}"#,
        output.display()
    );
    std::fs::write(recipes_dir.join("gui-real.json"), text).unwrap();
}

#[test]
fn a_real_build_driven_through_the_panels_finishes_with_its_artifact() {
    let base = fixture::debian_image();
    let dir = tempfile::tempdir().unwrap();
    let recipes_dir = dir.path().join("recipes");
    std::fs::create_dir(&recipes_dir).unwrap();
    let output = dir.path().join("output");
    write_recipe(&recipes_dir, &output);
    // A real ssh-agent holding the key the build will log in with; the engine finds it at
    // SSH_AUTH_SOCK, as it would on a desktop.
    let agent = sshd::Agent::start();
    let agent_key = kiln::ssh::KeyPair::generate().unwrap();
    agent.add(&agent_key);
    // SAFETY: set before the runtime and the window start any thread; this binary has one test.
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &agent.socket) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = RealEngine {
        options: BuildOptions {
            state_dir: Some(dir.path().join("state")),
            cache_dir: Some(dir.path().join("cache")),
            ..BuildOptions::default()
        },
    };
    let config = AppConfig {
        runtime: runtime.handle().clone(),
        engine: Arc::new(engine),
        initial_recipe: Some(recipes_dir.join("gui-real.json")),
        recipes_dir: recipes_dir.clone(),
        started: Instant::now(),
        secrets: Arc::new(MockSecrets {
            vault: Vault::with_store(keyring_core::mock::Store::new().unwrap()),
            config: dir.path().join("config/config.toml"),
            agent: agent.socket.clone(),
        }),
        history: Some(dir.path().join("history.sqlite")),
        dialogs: Arc::new(kiln::gui::dialogs::ScriptedDialogs::default()),
    };
    let mut harness = Harness::builder()
        .with_size([1200.0, 800.0])
        .with_max_steps(40)
        .build_eframe(move |cc| KilnApp::new(cc, config));
    harness.run();
    let open = harness
        .state()
        .open_recipe_state()
        .expect("the recipe is open");
    assert!(
        open.inspection.is_ok(),
        "{:?}",
        open.inspection.as_ref().err()
    );

    // The required variable, typed like a user would.
    harness
        .get_by_role_and_label(Role::TextInput, "base_image *")
        .focus();
    harness.run();
    harness
        .get_by_role_and_label(Role::TextInput, "base_image *")
        .type_text(&base.display().to_string());
    harness.run();
    // The SSH key picker lists the agent's key; choose it.
    harness
        .get_by_role_and_label(Role::ComboBox, "SSH key:")
        .click();
    harness.run();
    harness
        .get_by_label_contains(&agent_key.fingerprint())
        .click();
    harness.run();
    assert_eq!(
        harness.state().open_recipe_state().unwrap().choices.ssh_key,
        kiln::build::choices::KeyChoice::Agent(Some(agent_key.fingerprint()))
    );
    harness.check_accessibility();
    harness.get_by_label("Start build").click();

    // TCG boots take a while on 2 cores; the window keeps being stepped like a real one.
    let deadline = Instant::now() + Duration::from_secs(15 * 60);
    let mut saw_running_connect = false;
    let mut paused_and_continued = false;
    loop {
        harness.step();
        if !paused_and_continued
            && harness
                .state()
                .build_state()
                .is_some_and(|b| b.paused.is_some())
        {
            while_paused(&mut harness, dir.path());
            paused_and_continued = true;
            continue;
        }
        let app = harness.state();
        if let Some(build) = app.build_states().first() {
            saw_running_connect |= build
                .steps
                .iter()
                .any(|s| s.name == "Connect" && s.state == StepState::Running);
            if !build.is_running() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the build did not finish in 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    harness.run();
    assert!(paused_and_continued, "the build paused at its breakpoint");
    assert_eq!(harness.state().place(), Place::Build);
    assert_eq!(harness.state().shown_build_tab(), Some(0));
    let build = harness.state().build_state().unwrap();
    assert_eq!(
        build.final_outcome(),
        Some(&Outcome::Done),
        "steps: {:?}\nwarnings: {:?}",
        build.steps,
        build.warnings
    );
    assert!(saw_running_connect, "the step list showed Connect running");
    for step in &build.steps {
        assert!(
            matches!(step.state, StepState::Done | StepState::Skipped(_)),
            "{}: {:?}",
            step.name,
            step.state
        );
        assert!(step.duration.is_some(), "{} has a duration", step.name);
    }
    let names: Vec<&str> = build.steps.iter().map(|s| s.name.as_str()).collect();
    for expected in ["Boot", "Connect", "Shut down", "Compact"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let output_lines: Vec<&str> = (0..build.output.len())
        .filter_map(|i| build.output.line(i))
        .collect();
    assert!(
        output_lines
            .iter()
            .any(|l| l.contains("gui-real-build-marker debian")),
        "the provisioner's output reached the Output tab: {output_lines:?}"
    );
    // The guest authorised the agent's key (kiln's seed put it there) and nothing else.
    let agent_blob = agent_key
        .public_key_openssh()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    let authorized: Vec<&&str> = output_lines
        .iter()
        .filter(|l| l.contains("authorized: "))
        .collect();
    assert!(
        authorized.len() == 1 && authorized[0].contains(&agent_blob),
        "the guest's authorized_keys holds the agent's key only: {authorized:?}"
    );
    let build_log = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().path().join("build.log"))
        .filter(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|text| text.contains("gui-real-build-marker"))
        .expect("the finished build's build.log");
    assert!(
        build_log.contains(&format!("signs for key {}", agent_key.fingerprint())),
        "the agent signed for the chosen key"
    );
    assert!(
        build_log.contains("removed from the image: the build's SSH key and the SSH host keys"),
        "the agent's key was taken out of the image before shutdown"
    );
    let after = output_lines
        .iter()
        .position(|l| l.contains("after-continue-marker"));
    let paused = output_lines
        .iter()
        .position(|l| l.contains("paused at a breakpoint (check the marker)"));
    assert!(
        matches!((paused, after), (Some(p), Some(a)) if p < a),
        "the provisioner after the breakpoint ran after the pause: {output_lines:?}"
    );
    assert!(
        build.console.len() >= 20,
        "the serial console reached its tab ({} lines)",
        build.console.len()
    );
    let artifact = output.join("gui-real.qcow2");
    assert_eq!(build.artifact(), Some(&artifact));
    harness.get_by_label("Build finished");
    harness.get_by_label_contains(&format!("Artifact: {}", artifact.display()));
    let check = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&artifact)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the artifact is a sound qcow2: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The History place's file has the build, finished, with its artifact.
    let history = dir.path().join("history.sqlite");
    assert!(history.is_file(), "the build was recorded");
    // Nothing of the build runs any more.
    let qemu = Command::new("pgrep")
        .args(["-f", &dir.path().display().to_string()])
        .output()
        .unwrap();
    assert!(
        qemu.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&qemu.stdout)
    );
}

/// The build waits at its breakpoint: its VM runs; a second build of the same recipe, in a
/// second tab, is refused at the output directory; then Continue on the first tab.
fn while_paused(harness: &mut Harness<'static, KilnApp>, dir: &Path) {
    harness.run();
    harness.get_by_label("Paused at a breakpoint");
    harness.get_by_label("check the marker");
    assert!(qemu_of(dir).is_some(), "the VM runs while paused");

    harness.get_by_label("Recipes").click();
    harness.run();
    harness.get_by_label("Start build").click();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        harness.step();
        let states = harness.state().build_states();
        if states.len() == 2 && !states[1].is_running() {
            break;
        }
        assert!(Instant::now() < deadline, "the second build did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    harness.run();
    let second = harness.state().build_states()[1];
    match second.final_outcome() {
        Some(Outcome::Failed(why)) => assert!(
            why.contains("is in use by another build"),
            "the second build names the busy output directory: {why}"
        ),
        other => panic!("the second build must be refused, not {other:?}"),
    }
    assert!(
        harness.state().build_states()[0].paused.is_some(),
        "the first build still waits"
    );
    assert!(qemu_of(dir).is_some(), "the first build's VM still runs");

    harness.get_by_label("gui-real · paused").click();
    harness.run();
    assert_eq!(harness.state().shown_build_tab(), Some(0));
    harness.get_by_label("Continue").click();
    harness.step();
}

/// The pids of qemu processes whose command line names `dir`, if any.
fn qemu_of(dir: &Path) -> Option<String> {
    let out = Command::new("pgrep")
        .args(["-f", &format!("qemu-system.*{}", dir.display())])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!pids.is_empty()).then_some(pids)
}
