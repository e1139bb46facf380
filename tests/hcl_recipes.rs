//! HCL2 recipes (`.pkr.hcl`, issue #21): the HCL twin of the default recipe loads into the
//! same builds as the JSON one; real-world-shaped templates load; broken ones give
//! `file:line:col` + block-path diagnostics; no input panics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kiln::recipe::template::{LoadOptions, Recipe, load_file, load_file_partial, load_str};
use proptest::prelude::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn options(vars: &[(&str, &str)]) -> LoadOptions {
    let started: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
        .unwrap()
        .with_timezone(&Utc);
    LoadOptions {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        env: Arc::new(|name| match name {
            "EXOSCALE_API_KEY" => Some("EXOkey".to_string()),
            "EXOSCALE_API_SECRET" => Some("secret".to_string()),
            "PKR_VAR_memory" => Some("4096".to_string()),
            _ => None,
        }),
        started: Some(started),
        pwd: Some(root().to_path_buf()),
        ..LoadOptions::default()
    }
}

/// The default recipe and its HCL twin side by side in one directory (same `template_dir`,
/// same `scripts/`).
fn default_recipe_pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("debian-12.json");
    let hcl = dir.path().join("debian-12.pkr.hcl");
    std::fs::copy(root().join("recipes/debian-12.json"), &json).unwrap();
    std::fs::copy(root().join("tests/fixtures/hcl/debian-12.pkr.hcl"), &hcl).unwrap();
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::copy(
        root().join("recipes/scripts/debian-base.sh"),
        dir.path().join("scripts/debian-base.sh"),
    )
    .unwrap();
    (dir, json, hcl)
}

fn texts(recipe_or_diags: &kiln::recipe::diag::Diagnostics) -> Vec<String> {
    recipe_or_diags.iter().map(|d| d.to_string()).collect()
}

fn values(recipe: &Recipe) -> Vec<(String, String, bool)> {
    recipe
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.value.clone(), v.sensitive))
        .collect()
}

#[test]
fn the_default_recipe_in_hcl_is_the_same_model_as_in_json() {
    let (_dir, json, hcl) = default_recipe_pair();
    let opts = options(&[("bucket", "my-bucket"), ("memory", "4096")]);
    let j = load_file(&json, &opts).unwrap_or_else(|d| panic!("{d}"));
    let h = load_file(&hcl, &opts).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(h.builds, j.builds);
    assert_eq!(h.description, j.description);
    assert_eq!(h.skipped, j.skipped);
    assert_eq!(values(&h), values(&j));
    assert_eq!(h.secrets(), j.secrets());
    assert!(h.warnings.is_empty(), "{:?}", texts(&h.warnings));
    // What the model holds, spelled out once.
    let b = &h.builds[0];
    assert_eq!(b.name, "debian-12");
    assert_eq!(b.provisioners.len(), 1);
    assert_eq!(b.post_processors.len(), 1);
}

#[test]
fn variables_come_from_env_var_files_and_the_command_line_in_packer_order() {
    let (dir, _json, hcl) = default_recipe_pair();
    let var_file = dir.path().join("site.pkrvars.hcl");
    std::fs::write(&var_file, "zone = \"de-fra-1\"\ncpus = 8\nmemory = 1024\n").unwrap();
    let mut opts = options(&[("bucket", "b"), ("cpus", "6")]);
    opts.var_files = vec![var_file];
    let h = load_file(&hcl, &opts).unwrap_or_else(|d| panic!("{d}"));
    let v = |name: &str| {
        h.variables
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.clone())
            .unwrap()
    };
    // -var beats the var-file, which beats PKR_VAR_memory=4096, which beats the default.
    assert_eq!(v("cpus"), "6");
    assert_eq!(v("memory"), "1024");
    assert_eq!(v("zone"), "de-fra-1");
    assert_eq!(v("exoscale_api_key"), "EXOkey");
    assert_eq!(h.builds[0].builder.cpus, 6);
}

#[test]
fn a_missing_required_variable_is_one_error_at_its_declaration() {
    let (_dir, _json, hcl) = default_recipe_pair();
    let err = load_file(&hcl, &options(&[])).unwrap_err();
    let t = texts(&err);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(
        t[0].ends_with(
            "debian-12.pkr.hcl:57:1: var.bucket: variable `bucket` has no default and no value: set it with -var bucket=VALUE, PKR_VAR_bucket or a var-file"
        ),
        "{t:#?}"
    );
    // inspect shows it anyway, with a warning only when asked to.
    let mut opts = options(&[]);
    opts.required_is_warning = true;
    let r = load_file_partial(&hcl, &opts).unwrap();
    assert!(!r.warnings.has_errors(), "{:?}", texts(&r.warnings));
}

fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures/hcl").join(name)
}

fn problems(name: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load_file_partial(&fixture(name), &options(vars)) {
        Ok(r) => texts(&r.warnings),
        Err(d) => texts(&d),
    }
}

#[test]
fn a_directory_loads_like_packer_with_only_and_except() {
    let r = load_file(&fixture("multi-source"), &options(&[])).unwrap_or_else(|d| panic!("{d}"));
    let names: Vec<&str> = r.builds.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["ubuntu-2204", "debian-12"]);
    let provisioners: Vec<usize> = r.builds.iter().map(|b| b.provisioners.len()).collect();
    assert_eq!(provisioners, [3, 2]);
    assert_eq!(r.skipped.len(), 1, "the virtualbox-iso source is not run");
    let notes = texts(&r.warnings);
    assert!(
        notes.iter().any(|n| n.contains("virtualbox-iso")),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.ends_with(
            "pkr-variables.pkr.hcl:6:3: warning: packer.required_plugins: kiln does not implement the plugin virtualbox: builds of its sources are not run, and its provisioners and post-processors are refused where a build uses them"
        )),
        "{notes:#?}"
    );
}

#[test]
fn broken_templates_name_file_line_column_and_block_path() {
    let got = problems("broken.pkr.hcl", &[]);
    let want = [
        "tests/fixtures/hcl/broken.pkr.hcl:8:3: var.size.tpye: unknown variable attribute `tpye` (did you mean `type`?): a variable has type, default, description, sensitive, nullable and validation blocks",
        "tests/fixtures/hcl/broken.pkr.hcl:11:1: data.http.keys: data sources are not supported: kiln evaluates none yet; replace data.… with a variable or a local",
        "tests/fixtures/hcl/broken.pkr.hcl:16:18: source.qemu.vm.disk_size: `var.sise` is not a declared variable (did you mean `var.size`?): declare it with a variable \"sise\" {} block",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "missing {w}\ngot {got:#?}");
    }
    assert!(
        got.iter().any(|g| g
            .starts_with("tests/fixtures/hcl/broken.pkr.hcl:17:3: source.qemu.vm.ssh_timout: ")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|g| g.starts_with("tests/fixtures/hcl/broken.pkr.hcl:22:14: build.sources: no source \"source.qemu.vn\" is declared (did you mean `source.qemu.vm`?)")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|g| g.starts_with("tests/fixtures/hcl/broken.pkr.hcl:25:14: build.provisioner[0].inline: cannot evaluate: ")),
        "{got:#?}"
    );
    // The provisioner whose `inline` failed is not also blamed for lacking one.
    assert!(
        !got.iter().any(|g| g.contains("give one of `inline`")),
        "{got:#?}"
    );
    assert_eq!(got.len(), 8, "{got:#?}");
}

#[test]
fn an_unbalanced_brace_is_a_parse_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pkr.hcl");
    std::fs::write(&p, "source \"qemu\" \"a\" {\n  cpus = 2\n\nbuild {\n").unwrap();
    let err = load_file(&p, &options(&[])).unwrap_err();
    let t = texts(&err);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(t[0].contains("x.pkr.hcl:"), "{t:#?}");
    assert!(t[0].contains("this is not valid HCL"), "{t:#?}");
}

#[test]
fn a_failing_validation_shows_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.pkr.hcl");
    std::fs::write(
        &p,
        r#"variable "disk_size" {
  type    = string
  default = "10G"
  validation {
    condition     = can_not_be_called == 1 || length(var.disk_size) > 5
    error_message = "unused"
  }
}
variable "ram" {
  type    = number
  default = 512
  validation {
    condition     = var.ram >= 1024
    error_message = "The VM needs at least 1024 MiB."
  }
}
source "null" "n" {}
build { sources = ["source.null.n"] }
"#,
    )
    .unwrap();
    let t = match load_file_partial(&p, &options(&[])) {
        Ok(r) => texts(&r.warnings),
        Err(d) => texts(&d),
    };
    assert!(
        t.iter()
            .any(|l| l
                .ends_with("v.pkr.hcl:9:1: var.ram.validation: The VM needs at least 1024 MiB.")),
        "{t:#?}"
    );
}

fn load_never_panics(text: &str) {
    // The text entry point (the window's editor): `load_str` dispatches on the name.
    match load_str("fuzz.pkr.hcl", text, Path::new("/tmp"), &options(&[])) {
        Ok(recipe) => assert!(!recipe.builds.is_empty(), "a valid recipe has a build"),
        Err(diags) => assert!(diags.has_errors(), "a failed load reports an error"),
    }
}

fn seeds() -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("tests/fixtures/hcl")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_str().is_some_and(|s| s.ends_with(".hcl")) {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_prefix_of_the_fixtures_loads_without_panicking() {
    for text in seeds() {
        let mut cut = 0;
        while cut < text.len() {
            if text.is_char_boundary(cut) {
                load_never_panics(&text[..cut]);
            }
            cut += 97;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        load_never_panics(&text);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        seed in 0usize..64,
        at in 0usize..4096,
        insert in prop::sample::select(vec!["{", "}", "\"", "${", "%{", "=", "[", "]", "(", ")", "\n", ",", "var.", "local.", "null", "<<EOF\n", "#", "*", "..."]),
        delete in 0usize..8,
    ) {
        let seeds = seeds();
        let text = &seeds[seed % seeds.len()];
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + delete).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let mutated = format!("{}{insert}{}", &text[..at], &text[end..]);
        load_never_panics(&mutated);
    }
}

#[test]
fn build_source_blocks_chains_cleanup_and_expressions() {
    use kiln::recipe::provisioner::ProvisionerKind;
    use kiln::recipe::shell_local::ShellSource;
    let r =
        load_file(&fixture("features.pkr.hcl"), &options(&[])).unwrap_or_else(|d| panic!("{d}"));
    let names: Vec<&str> = r.builds.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["small", "large"]);
    let (small, large) = (&r.builds[0], &r.builds[1]);
    assert_eq!(small.builder.disk_size, Some(4 << 30));
    assert_eq!(large.builder.disk_size, Some(40 << 30));
    assert_eq!(large.builder.memory, 4096);
    assert_eq!(
        small
            .builder
            .http_content
            .get("/meta-data")
            .map(String::as_str),
        Some("instance-id: base\n")
    );
    assert_eq!(small.provisioners.len(), 1);
    assert_eq!(
        large.provisioners.len(),
        2,
        "only = [\"qemu.large\"] names the renamed source"
    );
    let ProvisionerKind::Shell(shell) = &small.provisioners[0].kind else {
        panic!("{:?}", small.provisioners[0]);
    };
    let ShellSource::Inline(lines) = &shell.sources[0] else {
        panic!("{:?}", shell.sources);
    };
    assert_eq!(lines[..2], ["useradd -m ops", "useradd -m ci"]);
    assert!(
        lines[2].starts_with("echo built by debian on "),
        "{lines:?}"
    );
    let ProvisionerKind::Shell(heredoc) = &large.provisioners[1].kind else {
        panic!();
    };
    assert_eq!(
        heredoc.sources[0],
        ShellSource::Inline(vec!["echo \"a large one\"\ndf -h /\n".to_string()])
    );
    for b in &r.builds {
        assert!(b.error_cleanup.is_some(), "{}", b.name);
        assert_eq!(b.post_processors.len(), 1);
        assert_eq!(b.post_processors[0].len(), 2, "one chain of two");
    }

    // Packer's -only names for HCL2 builds.
    let mut opts = options(&[]);
    opts.selection.only = vec!["qemu.large".to_string()];
    let r = load_file(&fixture("features.pkr.hcl"), &opts).unwrap_or_else(|d| panic!("{d}"));
    let names: Vec<&str> = r.builds.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["large"]);
}

#[test]
fn the_qemu_plugin_example_validates_from_its_directory() {
    // Packer resolves relative paths (floppy_files) from the working directory; the example
    // is run from its own.
    let dir = root().join("tests/fixtures/hcl/qemu-plugin-example");
    let mut opts = options(&[]);
    opts.pwd = Some(dir.clone());
    let r = load_file(&dir, &opts).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(r.builds.len(), 1);
    assert_eq!(r.builds[0].name, "example");
    assert_eq!(r.builds[0].builder.boot_command.len(), 7);
    let warnings = texts(&r.warnings);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].ends_with(
            "source.pkr.hcl:24:3: warning: source.qemu.example.ssh_wait_timeout: `ssh_wait_timeout` is the old name of `ssh_timeout`"
        ),
        "{warnings:#?}"
    );
}

#[test]
fn kiln_validate_and_inspect_take_hcl_files_and_directories() {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(kiln)
            .args(args)
            .current_dir(root())
            .env("PKR_VAR_os_arch", "aarch64")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["validate", "tests/fixtures/hcl/multi-source"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["inspect", "--json", "tests/fixtures/hcl/features.pkr.hcl"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], true);
    let (code, out, err) = run(&["validate", "tests/fixtures/hcl/broken.pkr.hcl"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("tests/fixtures/hcl/broken.pkr.hcl:17:3: source.qemu.vm.ssh_timout: unknown option `ssh_timout` for builder qemu (did you mean `ssh_timeout`?)"),
        "{all}"
    );
}

#[test]
fn a_source_declared_in_two_files_names_both_places() {
    // hashicorp/packer-plugin-qemu's example directory at 94d9fee5 declares
    // source "qemu" "example" in build.pkr.hcl and again in source.pkr.hcl.
    let dir = tempfile::tempdir().unwrap();
    let source = "source \"qemu\" \"example\" {\n  ssh_username = \"vagrant\"\n}\n";
    std::fs::write(
        dir.path().join("build.pkr.hcl"),
        format!("build {{\n  sources = [\"source.qemu.example\"]\n}}\n\n{source}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("source.pkr.hcl"), format!("\n{source}")).unwrap();
    let err = load_file(dir.path(), &options(&[])).unwrap_err();
    let d = err
        .errors()
        .find(|d| d.message.contains("declared twice"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(d.file.ends_with("source.pkr.hcl"), "{d}");
    assert_eq!((d.line, d.col), (Some(2), Some(1)));
    assert_eq!(d.path, "source.qemu.example");
    assert!(
        d.message
            .starts_with("source \"qemu\" \"example\" is declared twice (first at ")
            && d.message.contains("build.pkr.hcl:5:1)"),
        "{d}"
    );
}

#[test]
fn json_var_files_and_wrong_types_in_var_files() {
    let (dir, _json, hcl) = default_recipe_pair();
    let json_vars = dir.path().join("site.pkrvars.json");
    std::fs::write(&json_vars, r#"{"bucket": "from-json", "cpus": 4}"#).unwrap();
    let mut opts = options(&[]);
    opts.var_files = vec![json_vars];
    let r = load_file(&hcl, &opts).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(r.builds[0].builder.cpus, 4);
    let bucket = r.variables.iter().find(|v| v.name == "bucket").unwrap();
    assert_eq!(bucket.value, "from-json");

    let bad = dir.path().join("bad.pkrvars.hcl");
    std::fs::write(&bad, "bucket = \"b\"\n\ncpus = [2]\n").unwrap();
    opts.var_files = vec![bad];
    let err = load_file(&hcl, &opts).unwrap_err();
    let t = texts(&err);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert!(
        t[0].ends_with(
            "bad.pkrvars.hcl:3:1: var.cpus: the value from the var-file does not fit the variable's type: expected number, got a list"
        ),
        "{t:#?}"
    );
}
