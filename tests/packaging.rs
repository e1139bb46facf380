//! The Debian package and the desktop files, checked with the tools a distribution uses:
//! `desktop-file-validate` and `appstreamcli validate` on the desktop entry and the metainfo;
//! `packaging/build-deb.sh --profile dev` on the binary `cargo test` built, `dpkg-deb` on the
//! result, then `apt-get install` on this machine, `kiln --version`, `kiln doctor`, the man
//! page, the bundled recipes, and `apt-get remove` (also when an assertion fails).
//!
//! Needs root or passwordless sudo (apt-get), cargo-deb (`$CARGO_DEB`, on PATH, or in
//! `~/.cache/kiln-tests/cargo-deb-3.8`, where tests/run.sh installs it), desktop-file-utils
//! and appstream. Skips with the reason when one is missing, unless KILN_REQUIRE_TOOLS=1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const APP_ID: &str = "io.github.kiln.Kiln";

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

/// Skips the test (returns false) with the reason, or fails under KILN_REQUIRE_TOOLS=1.
fn require(found: Result<(), String>) -> bool {
    match found {
        Ok(()) => true,
        Err(why) if std::env::var_os("KILN_REQUIRE_TOOLS").is_some_and(|v| v == "1") => {
            panic!("{why}, and KILN_REQUIRE_TOOLS=1")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn tools(list: &[(&str, &str)]) -> Result<(), String> {
    for (tool, package) in list {
        if on_path(tool).is_none() {
            return Err(format!("{tool} not found (apt-get install {package})"));
        }
    }
    Ok(())
}

fn cargo_deb() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_DEB") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    on_path("cargo-deb").or_else(|| {
        let home = std::env::var_os("HOME")?;
        let cached = Path::new(&home).join(".cache/kiln-tests/cargo-deb-3.8/bin/cargo-deb");
        cached.is_file().then_some(cached)
    })
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()))
}

/// Whether this process is root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether sudo runs commands without asking for a password.
fn passwordless_sudo() -> bool {
    on_path("sudo").is_some()
        && Command::new("sudo")
            .args(["-n", "true"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Runs `apt-get` as root: directly when this process is root, else through `sudo -n`.
fn apt_get(args: &[&str]) -> Output {
    if is_root() {
        return run("apt-get", args);
    }
    let mut full = vec!["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"];
    full.extend_from_slice(args);
    run("sudo", &full)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_desktop_entry_and_the_metainfo_validate() {
    if !require(tools(&[
        ("desktop-file-validate", "desktop-file-utils"),
        ("appstreamcli", "appstream"),
    ])) {
        return;
    }
    let desktop = repo(&format!("packaging/{APP_ID}.desktop"));
    let out = run("desktop-file-validate", &[desktop.to_str().unwrap()]);
    let report = succeeded("desktop-file-validate", &out) + &text(&out.stderr);
    // Hints are not failures, but the entry is written to have none.
    assert!(report.trim().is_empty(), "desktop-file-validate: {report}");

    let metainfo = repo(&format!("packaging/{APP_ID}.metainfo.xml"));
    let out = run(
        "appstreamcli",
        &["validate", "--no-net", metainfo.to_str().unwrap()],
    );
    let report = succeeded("appstreamcli validate", &out);
    assert!(report.contains("Validation was successful"), "{report}");

    // The metainfo launches the desktop entry that is installed, with the same id.
    let xml = std::fs::read_to_string(&metainfo).unwrap();
    assert!(xml.contains(&format!("<id>{APP_ID}</id>")));
    assert!(xml.contains(&format!(
        "<launchable type=\"desktop-id\">{APP_ID}.desktop</launchable>"
    )));
    let entry = std::fs::read_to_string(&desktop).unwrap();
    assert!(entry.contains(&format!("Icon={APP_ID}\n")));
    assert!(entry.contains("Exec=kiln\n"));
}

/// Removes the package when dropped, so a failed assertion leaves the machine as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = apt_get(&["remove", "-y", "-q", "kiln"]);
    }
}

/// Whether the package `kiln` is installed, and its version.
fn installed_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", "kiln"])
        .output()
        .ok()?;
    let status = text(&out.stdout);
    status
        .strip_prefix("install ok installed ")
        .map(|v| v.trim().to_string())
}

#[test]
fn the_deb_builds_installs_runs_and_removes() {
    let cargo_deb = cargo_deb();
    let found = tools(&[
        ("dpkg-deb", "dpkg"),
        ("apt-get", "apt"),
        ("strip", "binutils"),
        ("readelf", "binutils"),
        ("gzip", "gzip"),
    ])
    .and_then(|()| {
        cargo_deb.as_ref().map(|_| ()).ok_or_else(|| {
            "cargo-deb not found (tests/run.sh installs it; or cargo install cargo-deb --locked --version 3.8.0)".to_string()
        })
    })
    .and_then(|()| {
        (is_root() || passwordless_sudo())
            .then_some(())
            .ok_or_else(|| "not root and no passwordless sudo: apt-get install needs root".to_string())
    });
    if !require(found) {
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    if let Some(other) = installed_version().filter(|v| !v.starts_with(version)) {
        panic!("kiln {other} is installed from a package; this test would replace and remove it");
    }

    // Build the .deb from the binary cargo test built (<target>/debug/kiln).
    let binary = Path::new(env!("CARGO_BIN_EXE_kiln"));
    let target_dir = binary.parent().and_then(Path::parent).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(repo("packaging/build-deb.sh"))
        .args(["--profile", "dev", "--binary"])
        .arg(binary)
        .arg("--out")
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_DEB", cargo_deb.unwrap())
        .output()
        .expect("run packaging/build-deb.sh");
    succeeded("packaging/build-deb.sh --profile dev", &out);
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("kiln_{version}-")) && name.ends_with(".deb")
        })
        .expect("a kiln_VERSION-REV_ARCH.deb");
    eprintln!(
        "built {} ({:.1} MB) in {:.1} s",
        deb.display(),
        std::fs::metadata(&deb).unwrap().len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let deb_path = deb.to_str().unwrap();

    // Its relationships and its files.
    let field = |name: &str| succeeded("dpkg-deb -f", &run("dpkg-deb", &["-f", deb_path, name]));
    let depends = field("Depends");
    for package in ["qemu-system-x86", "qemu-utils"] {
        assert!(
            depends.split(',').any(|d| d.trim() == package),
            "Depends: {depends}"
        );
    }
    let recommends = field("Recommends");
    assert!(
        recommends.contains("gnome-keyring"),
        "Recommends: {recommends}"
    );
    let listing = succeeded("dpkg-deb -c", &run("dpkg-deb", &["-c", deb_path]));
    let mut expected = vec![
        "./usr/bin/kiln".to_string(),
        format!("./usr/share/applications/{APP_ID}.desktop"),
        format!("./usr/share/metainfo/{APP_ID}.metainfo.xml"),
        format!("./usr/share/icons/hicolor/scalable/apps/{APP_ID}.svg"),
        "./usr/share/man/man1/kiln.1.gz".into(),
        "./usr/share/man/man1/kiln-build.1.gz".into(),
        "./usr/share/man/man1/kiln-templates-list.1.gz".into(),
        "./usr/share/bash-completion/completions/kiln".into(),
        "./usr/share/zsh/vendor-completions/_kiln".into(),
        "./usr/share/fish/vendor_completions.d/kiln.fish".into(),
        "./usr/share/kiln/recipes/debian-12.json".into(),
        "./usr/share/kiln/recipes/debian-10-seed-article.json".into(),
        "./usr/share/kiln/recipes/scripts/debian-base.sh".into(),
        "./usr/share/doc/kiln/copyright".into(),
    ];
    for size in [16, 32, 48, 64, 128, 256] {
        expected.push(format!(
            "./usr/share/icons/hicolor/{size}x{size}/apps/{APP_ID}.png"
        ));
    }
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for path in &expected {
        assert!(
            files.contains(&path.as_str()),
            "{path} not in the package:\n{listing}"
        );
    }

    // Install it on this machine (its dependencies are there: tests/run.sh installs qemu).
    let _installed = Installed;
    succeeded(
        "apt-get install",
        &apt_get(&["install", "-y", "-q", "--no-install-recommends", deb_path]),
    );
    let kiln = Path::new("/usr/bin/kiln");
    // Stripped, as Debian installs binaries: no DWARF (the symbol table may stay, and so does
    // rustc's small loaded .debug_gdb_scripts).
    let sections = succeeded(
        "readelf -S",
        &run("readelf", &["-S", "-W", "/usr/bin/kiln"]),
    );
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".debug_line"),
        "/usr/bin/kiln carries debug info:\n{sections}"
    );
    let out = succeeded("kiln --version", &run(kiln, &["--version"]));
    assert_eq!(out.trim(), format!("kiln {version}"));
    // doctor: exit 0 when nothing failed (warnings, such as no KVM or no keyring, are 0 too).
    let out = run(kiln, &["doctor"]);
    let report = succeeded("kiln doctor", &out);
    assert!(
        report.contains("ok   qemu-img") && report.contains("ok   qemu-system-x86_64"),
        "{report}"
    );
    // The man page is installed where man finds it, and renders.
    let page = succeeded(
        "zcat kiln.1.gz",
        &run("zcat", &["/usr/share/man/man1/kiln.1.gz"]),
    );
    assert!(page.contains(".TH kiln 1"), "{page}");
    assert!(page.contains("kiln\\-templates(1)"), "{page}");
    if on_path("man").is_some() {
        let rendered = succeeded(
            "man -l",
            &run("man", &["-l", "/usr/share/man/man1/kiln-build.1.gz"]),
        );
        assert!(rendered.contains("kiln-build"), "{rendered}");
    }
    // The installed binary finds the installed recipes (and their scripts) from anywhere.
    let recipe = "/usr/share/kiln/recipes/debian-12.json";
    let out = run(kiln, &["validate", "-var", "bucket=my-images", recipe]);
    assert!(
        succeeded("kiln validate", &out).contains("valid"),
        "{}",
        text(&out.stdout)
    );
    let bash = succeeded(
        "kiln completions bash",
        &run(kiln, &["completions", "bash"]),
    );
    assert!(bash.contains("templates"));

    // And it goes away again.
    succeeded("apt-get remove", &apt_get(&["remove", "-y", "-q", "kiln"]));
    assert!(
        !kiln.exists(),
        "/usr/bin/kiln is still there after apt-get remove"
    );
    assert!(installed_version().is_none());
}

/// check-jsonschema (PyPI): `$KILN_CHECK_JSONSCHEMA`, on PATH, or in
/// `~/.cache/kiln-tests/check-jsonschema`, where tests/run.sh installs it.
fn check_jsonschema() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KILN_CHECK_JSONSCHEMA") {
        return Ok(PathBuf::from(path));
    }
    on_path("check-jsonschema")
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            let cached = Path::new(&home).join(".cache/kiln-tests/check-jsonschema/bin/check-jsonschema");
            cached.is_file().then_some(cached)
        })
        .ok_or_else(|| {
            "check-jsonschema not found (python3 -m venv ~/.cache/kiln-tests/check-jsonschema && ~/.cache/kiln-tests/check-jsonschema/bin/pip install check-jsonschema; tests/run.sh does)".into()
        })
}

/// The fenced YAML blocks of `markdown`, in order.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_ci_job_files_in_docs_are_valid_gitlab_ci_and_github_actions() {
    let checker = match check_jsonschema() {
        Ok(path) => Some(path),
        Err(why) => {
            require(Err(why));
            None
        }
    };
    let Some(checker) = checker else { return };
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci.md")).unwrap();
    let blocks = yaml_blocks(&doc);
    assert_eq!(
        blocks.len(),
        2,
        "docs/ci.md has the GitLab and the GitHub job files"
    );
    assert!(blocks[0].contains("stages:") && blocks[1].contains("runs-on:"));
    let dir = tempfile::tempdir().unwrap();
    // The schemas check-jsonschema ships (SchemaStore's), so no network is needed.
    for (block, name, schema) in [
        (&blocks[0], ".gitlab-ci.yml", "vendor.gitlab-ci"),
        (&blocks[1], "bake.yml", "vendor.github-workflows"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, block).unwrap();
        let out = run(
            &checker,
            &["--builtin-schema", schema, file.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "docs/ci.md's {name} is not valid against {schema}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        // The check can fail: the file with a job key misspelt (GitHub) or a stage made a
        // number (GitLab) is refused.
        let broken = if name == "bake.yml" {
            block.replacen("runs-on:", "runs-on-typo:", 1)
        } else {
            block.replacen("stage: bake", "stage: 12", 1)
        };
        std::fs::write(&file, broken).unwrap();
        let out = run(
            &checker,
            &["--builtin-schema", schema, file.to_str().unwrap()],
        );
        assert!(!out.status.success(), "{schema} accepted a broken {name}");
    }
}
