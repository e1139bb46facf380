//! The recipe corpus: every `tests/recipes/NAME.json` with a `NAME.expected` is loaded with
//! `load_file` and its diagnostics compared, line by line, with the expected ones.
//!
//! Files of one case (all in `tests/recipes/`):
//!
//! * `NAME.json` — the recipe (or anything else: a directory, an empty file, random bytes).
//! * `NAME.expected` — first line `valid` or `invalid`, then every diagnostic exactly as
//!   `Display` prints it, in the order `load_file` reports them. File names appear relative
//!   to `tests/recipes` (the harness strips the directory).
//! * `NAME.args` (optional) — one setting a line, `#` starts a comment:
//!   `var NAME=VALUE`, `var-file FILE` (relative to `tests/recipes`), `env NAME=VALUE` (the
//!   only environment the recipe sees; the process environment is never read) and `lenient`
//!   (required variables without a value are warnings).
//! * `NAME.values` (optional, valid recipes only) — checks on the loaded recipe, one a line:
//!   `PATH = VALUE` (exact), `PATH like PATTERN` (`#` matches one lowercase hex digit, any
//!   other character itself) or `PATH len N` (the value has N characters). In values,
//!   `<recipes>` stands for the absolute path of `tests/recipes`. See [`lookup`] for the
//!   paths.
//!
//! Every run uses the same start time ([`STARTED`]) and `pwd` (`tests/recipes`), so that
//! `timestamp`, `isotime` and `pwd` are deterministic.
//!
//! `KILN_BLESS=1 cargo test --test recipe_corpus` writes the actual diagnostics into the
//! `.expected` files (read every change before committing it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use kiln::recipe::diag::Diagnostics;
use kiln::recipe::postprocessor::{PostProcessor, PostProcessorKind};
use kiln::recipe::provisioner::{FileSource, Provisioner, ProvisionerKind};
use kiln::recipe::qemu::QemuConfig;
use kiln::recipe::select::Selection;
use kiln::recipe::shell_local::ShellSource;
use kiln::recipe::template::{LoadOptions, Recipe, load_file};
use kiln::recipe::vars::VarSource;

/// The start time of every run: 2026-11-26T14:02:03Z (`timestamp` 1795701723).
fn started() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 14, 2, 3)
        .single()
        .expect("a valid time")
}

/// `timestamp` of [`started`], for documentation and the sanity test below.
const STARTED: i64 = 1_795_701_723;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    manifest_dir().join("tests/recipes")
}

/// The settings of one case, from `NAME.args`.
#[derive(Default)]
struct Args {
    vars: Vec<(String, String)>,
    var_files: Vec<PathBuf>,
    env: BTreeMap<String, String>,
    lenient: bool,
    selection: Selection,
}

fn split_assignment(line: &str, what: &str, file: &Path) -> (String, String) {
    match line.split_once('=') {
        Some((k, v)) => (k.trim().to_string(), v.to_string()),
        None => panic!("{}: `{what} {line}` needs NAME=VALUE", file.display()),
    }
}

fn read_args(file: &Path) -> Args {
    let mut args = Args::default();
    let Ok(text) = std::fs::read_to_string(file) else {
        return args;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim_start();
        match word {
            "var" => args.vars.push(split_assignment(rest, word, file)),
            "var-file" => args.var_files.push(corpus_dir().join(rest)),
            "env" => {
                let (k, v) = split_assignment(rest, word, file);
                args.env.insert(k, v);
            }
            "lenient" => args.lenient = true,
            "only" => args
                .selection
                .only
                .extend(rest.split(',').map(str::to_string)),
            "except" => args
                .selection
                .except
                .extend(rest.split(',').map(str::to_string)),
            other => panic!(
                "{}: unknown setting `{other}` (use var, var-file, env, lenient, only or except)",
                file.display()
            ),
        }
    }
    args
}

fn options(args: &Args) -> LoadOptions {
    let env = args.env.clone();
    LoadOptions {
        vars: args.vars.clone(),
        var_files: args.var_files.clone(),
        env: Arc::new(move |name| env.get(name).cloned()),
        started: Some(started()),
        pwd: Some(corpus_dir()),
        required_is_warning: args.lenient,
        selection: args.selection.clone(),
    }
}

/// Text with the absolute corpus directory written as `<recipes>`.
fn relative(text: &str) -> String {
    let dir = corpus_dir().display().to_string();
    text.replace(&format!("{dir}/"), "")
        .replace(&dir, "<recipes>")
}

/// `valid`/`invalid` and every diagnostic, as the `.expected` file holds them.
fn actual_lines(result: &Result<Recipe, Diagnostics>) -> Vec<String> {
    let (status, diags) = match result {
        Ok(recipe) => ("valid", &recipe.warnings),
        Err(diags) => ("invalid", diags),
    };
    let mut lines = vec![status.to_string()];
    lines.extend(diags.iter().map(|d| relative(&d.to_string())));
    lines
}

fn list(items: &[String]) -> String {
    format!("{items:?}")
}

fn duration(d: std::time::Duration) -> String {
    format!("{d:?}")
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "none".to_string())
}

fn sources(sources: &[ShellSource]) -> String {
    let items: Vec<String> = sources
        .iter()
        .map(|s| match s {
            ShellSource::Inline(lines) => format!("inline {}", list(lines)),
            ShellSource::File(path) => format!("file {}", path.display()),
        })
        .collect();
    items.join("; ")
}

/// Splits `name[3].rest` into (`name`, 3, `rest`).
fn indexed<'p>(path: &'p str, name: &str) -> Option<(usize, &'p str)> {
    let rest = path.strip_prefix(name)?.strip_prefix('[')?;
    let (index, rest) = rest.split_once(']')?;
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    Some((index.parse().ok()?, rest))
}

fn builder_field(b: &QemuConfig, field: &str) -> Option<String> {
    Some(match field {
        "name" => b.name.clone(),
        "accelerator" => b.accelerator.name().to_string(),
        "disk_image" => b.disk_image.to_string(),
        "iso_urls" => list(&b.iso_urls),
        "iso_checksum" => b.iso_checksum.to_string(),
        "output_directory" => b.output_directory.clone(),
        "vm_name" => b.vm_name.clone(),
        "format" => b.format.name().to_string(),
        "disk_size" => opt(&b.disk_size),
        "use_backing_file" => b.use_backing_file.to_string(),
        "cpus" => b.cpus.to_string(),
        "memory" => b.memory.to_string(),
        "headless" => b.headless.to_string(),
        "qemuargs" => format!("{:?}", b.qemuargs),
        "boot_command" => list(&b.boot_command),
        "boot_wait" => duration(b.boot_wait),
        "http_directory" => opt(&b.http_directory),
        "http_port_min" => b.http_port_min.to_string(),
        "http_port_max" => b.http_port_max.to_string(),
        "host_port_min" => b.host_port_min.to_string(),
        "host_port_max" => b.host_port_max.to_string(),
        "vnc_port_min" => b.vnc_port_min.to_string(),
        "vnc_port_max" => b.vnc_port_max.to_string(),
        "cd_label" => opt(&b.cd_label),
        "cd_files" => list(&b.cd_files),
        "shutdown_command" => opt(&b.shutdown_command),
        "ssh.username" => b.ssh.username.clone(),
        "ssh.private_key_file" => opt(&b.ssh.private_key_file),
        "ssh.timeout" => duration(b.ssh.timeout),
        _ => return None,
    })
}

fn provisioner_field(p: &Provisioner, field: &str) -> Option<String> {
    match field {
        "type" => return Some(p.type_name().to_string()),
        "pause_before" => return Some(p.pause_before.map(duration).unwrap_or("none".into())),
        "max_retries" => return Some(p.max_retries.to_string()),
        "timeout" => return Some(p.timeout.map(duration).unwrap_or("none".into())),
        _ => {}
    }
    Some(match (&p.kind, field) {
        (ProvisionerKind::Shell(s), "sources") => sources(&s.sources),
        (ProvisionerKind::Shell(s), "execute_command") => s.execute_command.clone(),
        (ProvisionerKind::Shell(s), "environment_vars") => format!("{:?}", s.environment_vars),
        (ProvisionerKind::ShellLocal(s), "sources") => sources(&s.sources),
        (ProvisionerKind::ShellLocal(s), "execute_command") => list(&s.execute_command),
        (ProvisionerKind::File(f), "source") => match &f.source {
            FileSource::Paths(paths) => list(paths),
            FileSource::Content(text) => format!("content {text:?}"),
        },
        (ProvisionerKind::File(f), "destination") => f.destination.clone(),
        (ProvisionerKind::Breakpoint(b), "note") => opt(&b.note),
        _ => return None,
    })
}

fn post_processor_field(p: &PostProcessor, field: &str) -> Option<String> {
    match field {
        "type" => return Some(p.type_name().to_string()),
        "name" => return Some(opt(&p.name)),
        "keep_input_artifact" => return Some(opt(&p.keep_input_artifact)),
        _ => {}
    }
    Some(match (&p.kind, field) {
        (PostProcessorKind::ShellLocal(s), "sources") => sources(&s.sources),
        (PostProcessorKind::Checksum(c), "checksum_types") => {
            let names: Vec<String> = c
                .checksum_types
                .iter()
                .map(|t| t.name().to_string())
                .collect();
            list(&names)
        }
        (PostProcessorKind::Checksum(c), "output") => c.output.clone(),
        (PostProcessorKind::Manifest(m), "output") => m.output.clone(),
        (PostProcessorKind::Compress(c), "output") => c.output.clone(),
        (PostProcessorKind::Compress(c), "format") => c.format.extension().to_string(),
        (PostProcessorKind::Compress(c), "compression_level") => c.compression_level.to_string(),
        (PostProcessorKind::Resize(r), "disk_size") => r.disk_size.to_string(),
        (PostProcessorKind::ImageTest(t), field) => match field {
            "inline" => list(&t.inline),
            "scripts" => list(&t.scripts),
            "valid_exit_codes" => format!("{:?}", t.valid_exit_codes),
            "ssh_timeout" => t.ssh_timeout.as_secs().to_string(),
            "allow_degraded" => t.allow_degraded.to_string(),
            "checks" => {
                let names: Vec<String> = t
                    .builtin_checks()
                    .iter()
                    .map(|c| c.name().to_string())
                    .collect();
                list(&names)
            }
            _ => return None,
        },
        (PostProcessorKind::ExoscaleImport(e), field) => match field {
            "api_key" => e.api_key.clone(),
            "api_secret" => e.api_secret.expose().to_string(),
            "image_bucket" => e.image_bucket.clone(),
            "image_zone" => e.image_zone.clone(),
            "template_zones" => list(&e.template_zones),
            "template_name" => e.template_name.clone(),
            "template_description" => e.template_description.clone(),
            "template_username" => opt(&e.template_username),
            "template_boot_mode" => format!("{:?}", e.template_boot_mode).to_lowercase(),
            _ => return None,
        },
        _ => return None,
    })
}

/// The value at `path` in `recipe`, as text. Paths:
///
/// * `description`, `min_packer_version`, `builds.len`, `secrets`, `skipped` (the builds not
///   run, with their reasons)
/// * `variables.NAME` (the value), `variables.NAME.source` (`default`, `var-file FILE`,
///   `command line`), `variables.NAME.sensitive`, `variables.NAME.env_names`
/// * `builds[i].name`, `builds[i].builder.FIELD` (see [`builder_field`]),
///   `builds[i].provisioners.len`, `builds[i].provisioners[j].FIELD`
///   (see [`provisioner_field`]), `builds[i].error_cleanup.FIELD`,
///   `builds[i].post_processors.len`, `builds[i].post_processors[j].len`,
///   `builds[i].post_processors[j][k].FIELD` (see [`post_processor_field`])
///
/// Lists are written as Rust's `Debug` writes them (`["a", "b"]`), durations too (`1200s`).
fn lookup(recipe: &Recipe, path: &str) -> Option<String> {
    match path {
        "description" => return Some(opt(&recipe.description)),
        "min_packer_version" => return Some(opt(&recipe.min_packer_version)),
        "builds.len" => return Some(recipe.builds.len().to_string()),
        "skipped" => {
            let skipped: Vec<String> = recipe.skipped.iter().map(|s| s.describe()).collect();
            return Some(list(&skipped));
        }
        "secrets" => return Some(list(&recipe.secrets())),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("variables.") {
        let (name, field) = match rest.rsplit_once('.') {
            Some((name, f @ ("source" | "sensitive" | "env_names"))) => (name, f),
            _ => (rest, "value"),
        };
        let v = recipe.variables.iter().find(|v| v.name == name)?;
        return Some(match field {
            "value" => v.value.clone(),
            "sensitive" => v.sensitive.to_string(),
            "env_names" => list(&v.env_names),
            _ => match &v.source {
                VarSource::Default => "default".to_string(),
                VarSource::VarFile(file) => format!("var-file {file}"),
                VarSource::CommandLine => "command line".to_string(),
            },
        });
    }
    let (i, rest) = indexed(path, "builds")?;
    let build = recipe.builds.get(i)?;
    if rest == "name" {
        return Some(build.name.clone());
    }
    if let Some(field) = rest.strip_prefix("builder.") {
        return builder_field(&build.builder, field);
    }
    if rest == "provisioners.len" {
        return Some(build.provisioners.len().to_string());
    }
    if let Some((j, field)) = indexed(rest, "provisioners") {
        return provisioner_field(build.provisioners.get(j)?, field);
    }
    if let Some(field) = rest.strip_prefix("error_cleanup.") {
        return provisioner_field(build.error_cleanup.as_ref()?, field);
    }
    if rest == "post_processors.len" {
        return Some(build.post_processors.len().to_string());
    }
    let (j, rest) = indexed(rest, "post_processors")?;
    let chain = build.post_processors.get(j)?;
    if rest == "len" {
        return Some(chain.len().to_string());
    }
    let (k, field) = indexed(rest, "")?;
    post_processor_field(chain.get(k)?, field)
}

fn matches_shape(value: &str, pattern: &str) -> bool {
    value.chars().count() == pattern.chars().count()
        && value.chars().zip(pattern.chars()).all(|(v, p)| match p {
            '#' => v.is_ascii_hexdigit() && !v.is_ascii_uppercase(),
            _ => v == p,
        })
}

/// Checks every line of a `.values` file; returns the failures.
fn check_values(recipe: &Recipe, text: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let dir = corpus_dir().display().to_string();
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (path, check) = if let Some(p) = line.strip_suffix(" =") {
            (p, Check::Equal(String::new()))
        } else if let Some((p, v)) = line.split_once(" = ") {
            (p, Check::Equal(v.replace("<recipes>", &dir)))
        } else if let Some((p, v)) = line.split_once(" like ") {
            (p, Check::Like(v.to_string()))
        } else if let Some((p, v)) = line.split_once(" len ") {
            match v.trim().parse() {
                Ok(n) => (p, Check::Len(n)),
                Err(_) => {
                    failures.push(format!("  bad length in `{line}`"));
                    continue;
                }
            }
        } else {
            failures.push(format!(
                "  cannot read `{line}` (PATH = VALUE, PATH like PATTERN or PATH len N)"
            ));
            continue;
        };
        let path = path.trim();
        let Some(actual) = lookup(recipe, path) else {
            failures.push(format!(
                "  {path}: no such value (see `lookup` for the paths)"
            ));
            continue;
        };
        let ok = match &check {
            Check::Equal(v) => actual == *v,
            Check::Like(p) => matches_shape(&actual, p),
            Check::Len(n) => actual.chars().count() == *n,
        };
        if !ok {
            failures.push(format!(
                "  {path}:\n    expected {check:?}\n    actual   {:?}",
                actual.replace(&dir, "<recipes>")
            ));
        }
    }
    failures
}

#[derive(Debug)]
enum Check {
    Equal(String),
    Like(String),
    Len(usize),
}

/// A line diff of expected against actual (longest common subsequence).
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(out, "    {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "  + {}", actual[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "  - {}", expected[i]);
            i += 1;
        }
    }
    out
}

/// Every case name (`NAME` of `NAME.expected`), sorted.
fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("tests/recipes exists")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".expected").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn corpus() {
    let bless = std::env::var_os("KILN_BLESS").is_some_and(|v| v == "1");
    let dir = corpus_dir();
    let names = cases();
    let mut failed: Vec<String> = Vec::new();
    let mut report = String::new();
    for name in &names {
        let recipe_path = dir.join(format!("{name}.json"));
        let expected_path = dir.join(format!("{name}.expected"));
        let args = read_args(&dir.join(format!("{name}.args")));
        let result = load_file(&recipe_path, &options(&args));
        let actual = actual_lines(&result);
        let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let expected: Vec<String> = expected_text.lines().map(str::to_string).collect();
        let mut problems = String::new();
        if expected != actual {
            if bless {
                std::fs::write(&expected_path, actual.join("\n") + "\n")
                    .expect("write the .expected file");
            } else {
                let _ = write!(
                    problems,
                    "  diagnostics differ (- expected, + actual):\n{}",
                    diff(&expected, &actual)
                );
            }
        }
        if let Ok(values) = std::fs::read_to_string(dir.join(format!("{name}.values"))) {
            match &result {
                Ok(recipe) => {
                    for f in check_values(recipe, &values) {
                        let _ = writeln!(problems, "{f}");
                    }
                }
                Err(_) => {
                    let _ = writeln!(problems, "  has a .values file but did not load");
                }
            }
        }
        if !problems.is_empty() {
            let _ = write!(report, "\n{name}.json:\n{problems}");
            failed.push(format!("{name}.json"));
        }
    }
    assert!(
        failed.is_empty(),
        "{report}\n{} of {} corpus files do not match: {}\n(KILN_BLESS=1 rewrites the .expected files; read every change)",
        failed.len(),
        names.len(),
        failed.join(", ")
    );
    assert!(
        names.len() >= 40,
        "the corpus has only {} cases",
        names.len()
    );
}

/// Every file of the corpus belongs to a case (`NAME.json`, `.expected`, `.args`, `.values`)
/// or is a var-file one uses (`vars/`), so that nothing is silently skipped. (`scripts/`
/// holds the scripts provisioners name.)
#[test]
fn no_orphan_files() {
    let names = cases();
    let mut used: Vec<PathBuf> = Vec::new();
    for name in &names {
        used.extend(read_args(&corpus_dir().join(format!("{name}.args"))).var_files);
    }
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(corpus_dir().join("vars"))
        .expect("tests/recipes/vars exists")
        .flatten()
    {
        if !used.contains(&entry.path()) {
            orphans.push(format!("vars/{}", entry.file_name().to_string_lossy()));
        }
    }
    for entry in std::fs::read_dir(corpus_dir())
        .expect("tests/recipes exists")
        .flatten()
    {
        let path = entry.path();
        let file = entry.file_name().to_string_lossy().into_owned();
        let stem = file.split('.').next().unwrap_or_default().to_string();
        let is_case_file = [".json", ".expected", ".args", ".values"]
            .iter()
            .any(|ext| file == format!("{stem}{ext}"))
            && names.contains(&stem);
        if path.is_file() && !is_case_file && !used.contains(&path) {
            orphans.push(file);
        }
    }
    orphans.sort();
    assert!(
        orphans.is_empty(),
        "files in tests/recipes that no case uses: {orphans:?}"
    );
}

#[test]
fn started_is_the_documented_timestamp() {
    assert_eq!(started().timestamp(), STARTED);
}

fn bundled(name: &str) -> PathBuf {
    manifest_dir().join("recipes").join(name)
}

fn bundled_options(vars: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        env: Arc::new(|_| None),
        started: Some(started()),
        pwd: Some(manifest_dir()),
        ..LoadOptions::default()
    }
}

#[test]
fn bundled_debian_12_validates_with_a_bucket() {
    let recipe = load_file(
        &bundled("debian-12.json"),
        &bundled_options(&[("bucket", "my-images")]),
    )
    .unwrap_or_else(|d| panic!("debian-12.json does not validate:\n{d}"));
    assert!(recipe.warnings.is_empty(), "{}", recipe.warnings);
    assert_eq!(
        lookup(&recipe, "builds[0].post_processors[0][0].image_bucket").as_deref(),
        Some("my-images")
    );
    assert_eq!(
        lookup(&recipe, "builds[0].post_processors[0][0].template_name").as_deref(),
        Some("Debian 12 2026-11-26 14:02")
    );
}

#[test]
fn bundled_debian_12_without_a_bucket_names_the_variable() {
    let diags = load_file(&bundled("debian-12.json"), &bundled_options(&[]))
        .expect_err("debian-12.json needs a bucket");
    let errors: Vec<String> = diags.errors().map(ToString::to_string).collect();
    assert!(
        errors
            .first()
            .is_some_and(|e| e.contains(":14:5: variables.bucket: required variable `bucket`")),
        "{errors:#?}"
    );
}

#[test]
fn bundled_seed_article_validates_with_two_deprecation_warnings() {
    let recipe = load_file(
        &bundled("debian-10-seed-article.json"),
        &bundled_options(&[]),
    )
    .unwrap_or_else(|d| panic!("debian-10-seed-article.json does not validate:\n{d}"));
    let warnings: Vec<String> = recipe.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains(":12:7: warning: builders[0].iso_checksum_url: "));
    assert!(warnings[1].contains(":13:7: warning: builders[0].iso_checksum_type: "));
}
