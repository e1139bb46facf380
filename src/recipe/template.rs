//! Loading a recipe: JSON with positions → top-level sections → variables → one typed build
//! per builder, every problem collected into one list of diagnostics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::decode::{Fields, Scope, edit_distance, kind, suggest};
use super::diag::Diagnostics;
use super::interp::{self, RunInfo};
use super::json::{self, Member, Node, Pos, Value};
use super::postprocessor::{
    self, NOT_RUN_POST_PROCESSOR_TYPES, POST_PROCESSOR_TYPES, PostProcessor,
};
use super::provisioner::{self, PROVISIONER_TYPES, Provisioner};
use super::qemu::{Communicator, QemuConfig};
use super::select::{self, Candidate, Selection, SkippedBuild};
use super::vars::{self, Declared, Given, VarSource, Variable};

/// The largest recipe or var-file kiln reads (memory stays bounded on any input).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

const TOP_LEVEL_KEYS: &[&str] = &[
    "description",
    "min_packer_version",
    "variables",
    "sensitive-variables",
    "builders",
    "provisioners",
    "post-processors",
    "error-cleanup-provisioner",
];

/// Looks up an environment variable.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the user passes besides the recipe.
#[derive(Clone)]
pub struct LoadOptions {
    /// `-var name=value`, in command-line order (later wins).
    pub vars: Vec<(String, String)>,
    /// `-var-file`s, in command-line order (later wins; `-var` beats them all).
    pub var_files: Vec<PathBuf>,
    /// Environment lookup for `{{env}}` (the process environment by default).
    pub env: EnvLookup,
    /// The run's start time (`timestamp`, `isotime`); now by default.
    pub started: Option<DateTime<Utc>>,
    /// The working directory (`pwd`, relative script paths); the process's by default.
    pub pwd: Option<PathBuf>,
    /// Report required variables without a value as warnings instead of errors (for
    /// `inspect` and the GUI's form, which show a recipe before its values are filled in).
    pub required_is_warning: bool,
    /// `-only` and `-except`: which builds run (and which post-processors are skipped).
    pub selection: Selection,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            vars: Vec::new(),
            var_files: Vec::new(),
            env: Arc::new(|name| std::env::var(name).ok()),
            started: None,
            pwd: None,
            required_is_warning: false,
            selection: Selection::default(),
        }
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field(
                "vars",
                &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("var_files", &self.var_files)
            .finish_non_exhaustive()
    }
}

/// One build: a builder with the provisioners and post-processor chains that apply to it
/// (after `only`/`except` and `override`).
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// The builder's name (`name`, or its type).
    pub name: String,
    /// The qemu builder's configuration.
    pub builder: QemuConfig,
    /// Provisioners in order.
    pub provisioners: Vec<Provisioner>,
    /// Post-processor chains; each starts again from the builder's artifact.
    pub post_processors: Vec<Vec<PostProcessor>>,
    /// Runs when a provisioner fails (`error-cleanup-provisioner`).
    pub error_cleanup: Option<Provisioner>,
}

impl Build {
    /// The `exoscale-import` post-processors' configurations, in chain order (what the build
    /// publishes).
    pub fn exoscale_imports(
        &self,
    ) -> impl Iterator<Item = &super::postprocessor::ExoscaleImportConfig> {
        self.post_processors
            .iter()
            .flatten()
            .filter_map(|pp| match &pp.kind {
                super::postprocessor::PostProcessorKind::ExoscaleImport(config) => Some(config),
                _ => None,
            })
    }
}

/// A recipe that passed validation.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The file name as the user gave it (used in messages).
    pub file: String,
    /// The directory holding the recipe (`{{template_dir}}`).
    pub template_dir: PathBuf,
    /// `description`.
    pub description: Option<String>,
    /// `min_packer_version`.
    pub min_packer_version: Option<String>,
    /// Every variable, declared or given.
    pub variables: Vec<Variable>,
    /// One build per `qemu` builder that runs (after `-only`/`-except`).
    pub builds: Vec<Build>,
    /// The template's other builders, which kiln does not run, and why.
    pub skipped: Vec<SkippedBuild>,
    /// Run-wide facts (start time, pwd).
    pub run: RunInfo,
    /// Warnings (deprecations, ignored options).
    pub warnings: Diagnostics,
    /// Other values to mask in every log: an HCL2 template's sensitive `local`s.
    pub sensitive_values: Vec<String>,
}

impl Recipe {
    /// Every secret value the recipe holds (sensitive variables, API secrets, passwords),
    /// for the log redactor. Empty strings are left out.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .variables
            .iter()
            .filter(|v| v.sensitive && !v.value.is_empty())
            .map(|v| v.value.clone())
            .collect();
        out.extend(self.sensitive_values.iter().cloned());
        for build in &self.builds {
            if let Some(p) = &build.builder.ssh.password {
                out.push(p.expose().to_string());
            }
            for chain in &build.post_processors {
                for pp in chain {
                    out.extend(pp.secrets().into_iter().map(|s| s.expose().to_string()));
                }
            }
        }
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }
}

/// Reads and validates the recipe at `path`.
pub fn load_file(path: &Path, options: &LoadOptions) -> Result<Recipe, Diagnostics> {
    if super::hcl::is_hcl(path) {
        return super::hcl::load_path(path, options, false);
    }
    let display = path.display().to_string();
    let text = read_text(path, &display)?;
    let dir = recipe_dir(path);
    let started = std::time::Instant::now();
    let result = load_str(&display, &text, &dir, options);
    let file_name = display.as_str();
    match &result {
        Ok(recipe) => tracing::debug!(
            file = file_name,
            bytes = text.len(),
            builds = recipe.builds.len(),
            warnings = recipe.warnings.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "recipe loaded"
        ),
        Err(diags) => tracing::debug!(
            file = file_name,
            errors = diags.errors().count(),
            "recipe rejected"
        ),
    }
    result
}

pub(crate) fn read_text(path: &Path, display: &str) -> Result<String, Diagnostics> {
    let fail = |message: String| {
        let mut d = Diagnostics::new();
        d.error(display, None, "", message);
        d
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    if meta.is_dir() {
        return Err(fail(
            "this is a directory; give the path of a .json recipe".into(),
        ));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(fail(format!(
            "the file is {}; kiln reads recipes up to {} (is this a recipe? a Packer template is a JSON file of a few KiB)",
            crate::recipe::units::format_bytes(meta.len()),
            crate::recipe::units::format_bytes(MAX_FILE_SIZE)
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        // Name the place of the first bad byte, counted like the JSON parser counts.
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let valid = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        let valid = valid.strip_prefix('\u{feff}').unwrap_or(valid);
        let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
        let pos = Pos {
            line: u32::try_from(valid.matches('\n').count() + 1).unwrap_or(u32::MAX),
            col: u32::try_from(valid[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
        };
        // Text has no NULs and few control characters; an image or archive has many.
        let head = &bytes[..bytes.len().min(512)];
        let controls = head
            .iter()
            .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t'))
            .count();
        let mut d = Diagnostics::new();
        if head.contains(&0) || controls * 10 > head.len() {
            d.error(
                display,
                None,
                "",
                "this is a binary file, not a JSON recipe: check the path",
            );
        } else {
            d.error(
                display,
                Some(pos),
                "",
                format!(
                    "the file is not UTF-8 text: byte 0x{:02X} (offset {offset}) is not valid \
                     UTF-8; save the file as UTF-8",
                    bytes[offset]
                ),
            );
        }
        d
    })
}

fn parse_json(display: &str, text: &str) -> Result<Node, Diagnostics> {
    json::parse(text).map_err(|e| {
        let mut d = Diagnostics::new();
        d.error(display, Some(e.pos), "", e.message);
        d
    })
}

/// Reports duplicate keys in every object of the document.
fn check_duplicates(file: &str, node: &Node, path: &str, diags: &mut Diagnostics) {
    match &node.value {
        Value::Object(members) => {
            let mut seen: HashMap<&str, Pos> = HashMap::with_capacity(members.len());
            for m in members {
                let member_path = join(path, &m.key);
                if let Some(first) = seen.get(m.key.as_str()) {
                    diags.error(
                        file,
                        Some(m.key_pos),
                        &member_path,
                        format!(
                            "duplicate key `{}` (first at line {}, column {}): remove one of them",
                            m.key, first.line, first.col
                        ),
                    );
                } else {
                    seen.insert(&m.key, m.key_pos);
                }
                check_duplicates(file, &m.value, &member_path, diags);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_duplicates(file, item, &format!("{path}[{i}]"), diags);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn members(node: &Node) -> Option<&[Member]> {
    match &node.value {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn member<'a>(members: &'a [Member], key: &str) -> Option<&'a Member> {
    members.iter().find(|m| m.key == key)
}

/// Validates a recipe given as text. `display` names it in diagnostics; `template_dir` is
/// `{{template_dir}}`.
pub fn load_str(
    display: &str,
    text: &str,
    template_dir: &Path,
    options: &LoadOptions,
) -> Result<Recipe, Diagnostics> {
    if display.ends_with(".pkr.hcl") {
        return super::hcl::load_str(display, text, template_dir, options, false);
    }
    let recipe = load_str_partial(display, text, template_dir, options)?;
    if recipe.warnings.has_errors() {
        return Err(recipe.warnings);
    }
    Ok(recipe)
}

/// Reads a recipe as far as it can (`kiln inspect` on an invalid recipe): every build,
/// provisioner and post-processor that could be read, with every problem — errors too — in
/// `warnings`. `Err` only when there is nothing to show (not JSON, not an object).
pub fn load_file_partial(path: &Path, options: &LoadOptions) -> Result<Recipe, Diagnostics> {
    if super::hcl::is_hcl(path) {
        return super::hcl::load_path(path, options, true);
    }
    let display = path.display().to_string();
    let text = read_text(path, &display)?;
    load_str_partial(&display, &text, &recipe_dir(path), options)
}

/// The directory holding the recipe at `path` (`{{template_dir}}`), absolute when it exists.
pub(crate) fn recipe_dir(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// [`load_str`] without the final verdict: the recipe as far as it could be read, every
/// problem in `warnings`.
fn load_str_partial(
    display: &str,
    text: &str,
    template_dir: &Path,
    options: &LoadOptions,
) -> Result<Recipe, Diagnostics> {
    let root = parse_json(display, text)?;
    load_document(display, &root, template_dir, options)
}

/// [`load_str_partial`] from an already parsed document (the HCL2 reader builds one).
pub(crate) fn load_document(
    display: &str,
    root: &Node,
    template_dir: &Path,
    options: &LoadOptions,
) -> Result<Recipe, Diagnostics> {
    let mut diags = Diagnostics::new();
    let Some(top) = members(root) else {
        diags.error(
            display,
            Some(root.pos),
            "",
            format!(
                "a recipe is a JSON object with \"builders\" (and optionally \"variables\", \"provisioners\", \"post-processors\"); this document is {}",
                kind(&root.value)
            ),
        );
        return Err(diags);
    };
    check_duplicates(display, root, "", &mut diags);
    for m in top {
        if !m.key.starts_with('_') && !TOP_LEVEL_KEYS.contains(&m.key.as_str()) {
            let hint = match suggest(&m.key, TOP_LEVEL_KEYS.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => " (keys starting with `_` are comments)".to_string(),
            };
            diags.error(
                display,
                Some(m.key_pos),
                &m.key,
                format!("unknown top-level key `{}`{hint}", m.key),
            );
        }
    }

    let pwd = options
        .pwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let run = RunInfo {
        started: options.started.unwrap_or_else(Utc::now),
        pwd: pwd.display().to_string(),
        template_dir: template_dir.display().to_string(),
    };

    let description = top_string(display, top, "description", &mut diags);
    let min_packer_version = top_string(display, top, "min_packer_version", &mut diags);
    if let (Some(v), Some(m)) = (&min_packer_version, member(top, "min_packer_version")) {
        let ok = v
            .trim_start_matches('v')
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            diags.error(
                display,
                Some(m.value.pos),
                "min_packer_version",
                format!("\"{v}\" is not a version like \"1.6.0\""),
            );
        }
    }

    // Variables.
    let declared = declared_variables(display, top, &mut diags);
    let sensitive = sensitive_variables(display, top, &declared, &mut diags);
    let given = given_variables(options, &mut diags);
    let env = options.env.clone();
    let env_fn = move |name: &str| env(name);
    let how = vars::Resolution {
        file: display,
        run: &run,
        env: &env_fn,
        required_is_warning: options.required_is_warning,
    };
    let variables = vars::resolve(&how, &declared, given, &sensitive, &mut diags);
    let values = variables
        .iter()
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect();

    // Builders: every one is named (for `only`/`except`); the `qemu` ones selected run.
    let mut candidates: Vec<(Candidate, &Node)> = Vec::new();
    let mut builders_pos = root.pos;
    // Builder names may use variables (`"name": "debian-{{user `version`}}-libvirt"`).
    let name_scope = Scope {
        file: display,
        vars: &values,
        run: &run,
        env: &env_fn,
        build_name: None,
        build_type: None,
        deferred: &[],
    };
    match member(top, "builders") {
        None => diags.error(
            display,
            Some(root.pos),
            "builders",
            "a recipe needs \"builders\": [{\"type\": \"qemu\", …}]",
        ),
        Some(m) => {
            builders_pos = m.value.pos;
            match &m.value.value {
                Value::Array(items) if items.is_empty() => diags.error(
                    display,
                    Some(m.value.pos),
                    "builders",
                    "\"builders\" is empty: add a {\"type\": \"qemu\", …} builder",
                ),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some((name, ty, type_pos)) =
                            builder_name(&name_scope, item, i, &mut diags)
                        {
                            if let Some((first, _)) =
                                candidates.iter().find(|(c, _)| c.name == name)
                            {
                                // Point at the name when there is one; an unnamed builder is
                                // named after its type.
                                let named = members(item).and_then(|m| member(m, "name")).filter(
                                    |m| matches!(&m.value.value, Value::String(s) if !s.is_empty()),
                                );
                                let (pos, path, why) = match named {
                                    Some(m) => (m.value.pos, format!("builders[{i}].name"), ""),
                                    None => (
                                        item.pos,
                                        format!("builders[{i}]"),
                                        " (a builder without a \"name\" is named after its type)",
                                    ),
                                };
                                diags.error(
                                    display,
                                    Some(pos),
                                    &path,
                                    format!(
                                        "builders[{}] and builders[{i}] are both named `{name}`{why}: give each a distinct \"name\"",
                                        first.index
                                    ),
                                );
                            } else {
                                candidates.push((
                                    Candidate {
                                        name,
                                        builder_type: ty,
                                        index: i,
                                        type_pos,
                                    },
                                    item,
                                ));
                            }
                        }
                    }
                }
                other => diags.error(
                    display,
                    Some(m.value.pos),
                    "builders",
                    format!(
                        "\"builders\" must be an array of objects, got {}",
                        kind(other)
                    ),
                ),
            }
        }
    }
    let builder_names: Vec<&str> = candidates.iter().map(|(c, _)| c.name.as_str()).collect();

    let provisioner_nodes = section_array(display, top, "provisioners", &mut diags);
    let post_processor_nodes = section_array(display, top, "post-processors", &mut diags);
    let cleanup_node = member(top, "error-cleanup-provisioner").map(|m| &m.value);
    let selection = &options.selection;
    let (selected, skipped) = select::select(
        display,
        &candidates
            .iter()
            .map(|(c, _)| c.clone())
            .collect::<Vec<_>>(),
        selection,
        &post_processor_names(post_processor_nodes),
        builders_pos,
        &mut diags,
    );

    let mut builds = Vec::new();
    for (candidate, node) in selected.iter().map(|&i| &candidates[i]) {
        let (name, index) = (&candidate.name, candidate.index);
        let scope = Scope {
            file: display,
            vars: &values,
            run: &run,
            env: &env_fn,
            build_name: Some(name),
            build_type: Some("qemu"),
            deferred: &[],
        };
        // Provisioners may use the build's values (`{{ build `Port` }}`), known when they run.
        let provisioner_scope = Scope {
            deferred: &interp::BUILD_VALUES_DEFERRED,
            ..scope
        };
        let path = format!("builders[{index}]");
        let items: Vec<&Member> = members(node).unwrap_or_default().iter().collect();
        let mut f = Fields::new(&scope, &mut diags, path, node.pos, "builder qemu", items);
        let builder = QemuConfig::decode(name, &mut f);
        f.finish();

        // A Windows build (WinRM) is refused once, at its communicator; its provisioners
        // (powershell, windows-restart, …) would only repeat that.
        let windows = builder.communicator == Communicator::WinRm;
        let mut provisioners = Vec::new();
        let mut windows_provisioners = Vec::new();
        for (i, p) in provisioner_nodes.iter().enumerate().filter(|_| !windows) {
            let path = format!("provisioners[{i}]");
            // Windows provisioners (a Windows guest over SSH) get one refusal, below.
            if windows_provisioner(p).is_some()
                && members(p).is_some_and(|items| {
                    applies(&scope, &mut diags, items, &path, name, &builder_names)
                })
            {
                windows_provisioners.push((i, p));
                continue;
            }
            if let Some(p) = decode_provisioner(
                &provisioner_scope,
                &mut diags,
                p,
                path,
                name,
                &builder_names,
            ) {
                provisioners.push(p);
            }
        }
        if let Some((first, node)) = windows_provisioners.first() {
            let types: Vec<&str> = windows_provisioners
                .iter()
                .filter_map(|(_, p)| windows_provisioner(p))
                .collect();
            let mut distinct = types.clone();
            distinct.sort_unstable();
            distinct.dedup();
            diags.error(
                display,
                Some(node.pos),
                &format!("provisioners[{first}]"),
                format!(
                    "build `{name}` uses {} Windows provisioner{} ({}: provisioners {}), which kiln does not run: it provisions Linux guests; build this one with Packer, or choose another build with -only",
                    types.len(),
                    if types.len() == 1 { "" } else { "s" },
                    distinct.join(", "),
                    windows_provisioners
                        .iter()
                        .map(|(i, _)| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let error_cleanup = cleanup_node.filter(|_| !windows).and_then(|node| {
            decode_provisioner(
                &provisioner_scope,
                &mut diags,
                node,
                "error-cleanup-provisioner".into(),
                name,
                &builder_names,
            )
        });
        let mut post_processors = Vec::new();
        for (i, entry) in post_processor_nodes.iter().enumerate() {
            let chain = decode_chain(
                &scope,
                &mut diags,
                entry,
                i,
                name,
                &builder_names,
                selection,
            );
            if !chain.is_empty() {
                post_processors.push(chain);
            }
        }
        builds.push(Build {
            name: name.clone(),
            builder,
            provisioners,
            post_processors,
            error_cleanup,
        });
    }
    // Sections are checked even when no builder runs, so that all errors show at once.
    if selected.is_empty() {
        let scope = Scope {
            file: display,
            vars: &values,
            run: &run,
            env: &env_fn,
            build_name: Some("qemu"),
            build_type: Some("qemu"),
            deferred: &[],
        };
        for (i, p) in provisioner_nodes.iter().enumerate() {
            decode_provisioner(
                &scope,
                &mut diags,
                p,
                format!("provisioners[{i}]"),
                "",
                &builder_names,
            );
        }
        for (i, entry) in post_processor_nodes.iter().enumerate() {
            decode_chain(&scope, &mut diags, entry, i, "", &builder_names, selection);
        }
    }

    drop_consequences_of_unresolved(root, &variables, &mut diags);
    diags.sort();
    Ok(Recipe {
        file: display.to_string(),
        template_dir: template_dir.to_path_buf(),
        description,
        min_packer_version,
        variables,
        builds,
        skipped,
        run,
        warnings: diags,
        sensitive_values: Vec::new(),
    })
}

/// Provisioners for Windows guests, which kiln does not run.
const WINDOWS_PROVISIONERS: &[&str] = &[
    "powershell",
    "windows-restart",
    "windows-shell",
    "windows-update",
];

/// The type of a Windows provisioner, if `node` is one.
fn windows_provisioner(node: &Node) -> Option<&'static str> {
    let items = members(node)?;
    let Value::String(ty) = &member(items, "type")?.value.value else {
        return None;
    };
    WINDOWS_PROVISIONERS.iter().find(|w| **w == ty).copied()
}

/// `vagrant`'s `override`: options per provider; those for `libvirt` (the provider of a
/// qemu image) replace the post-processor's own, the others are for other builders.
fn vagrant_override<'n>(
    file: &str,
    diags: &mut Diagnostics,
    path: &str,
    o: &'n Member,
    fields: &mut Vec<&'n Member>,
) {
    let Value::Object(per_provider) = &o.value.value else {
        diags.error(
            file,
            Some(o.value.pos),
            &format!("{path}.override"),
            format!(
                "expected an object keyed by provider name (e.g. \"libvirt\"), got {}",
                kind(&o.value.value)
            ),
        );
        return;
    };
    for provider in per_provider {
        if provider.key != crate::recipe::vagrant::VAGRANT_PROVIDER {
            continue;
        }
        match &provider.value.value {
            Value::Object(options) => {
                fields.retain(|m| !options.iter().any(|x| x.key == m.key));
                fields.extend(options.iter());
            }
            other => diags.error(
                file,
                Some(provider.value.pos),
                &format!("{path}.override.{}", provider.key),
                format!("expected an object of options, got {}", kind(other)),
            ),
        }
    }
}

/// The names `-except` can give post-processors: their `name`, else their type.
fn post_processor_names(entries: &[Node]) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |node: &Node| {
        let name = match &node.value {
            Value::String(ty) => Some(ty.clone()),
            Value::Object(items) => ["name", "type"].iter().find_map(|key| {
                member(items, key).and_then(|m| match &m.value.value {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                })
            }),
            _ => None,
        };
        if let Some(name) = name
            && !names.contains(&name)
        {
            names.push(name);
        }
    };
    for entry in entries {
        match &entry.value {
            Value::Array(chain) => chain.iter().for_each(&mut add),
            _ => add(entry),
        }
    }
    names
}

/// A variable without a value (already reported) makes the options that use it empty;
/// errors about those options ("`image_bucket` is required") would only repeat the first
/// error, so they are dropped.
fn drop_consequences_of_unresolved(root: &Node, variables: &[Variable], diags: &mut Diagnostics) {
    let unresolved: Vec<&str> = variables
        .iter()
        .filter(|v| v.unresolved)
        .map(|v| v.name.as_str())
        .collect();
    if unresolved.is_empty() {
        return;
    }
    fn collect(node: &Node, unresolved: &[&str], out: &mut Vec<Pos>) {
        match &node.value {
            Value::String(s) if s.contains("{{") => {
                let uses = interp::referenced_variables(s).unwrap_or_default();
                if uses.iter().any(|u| unresolved.contains(&u.as_str())) {
                    out.push(node.pos);
                }
            }
            Value::Array(items) => items.iter().for_each(|n| collect(n, unresolved, out)),
            Value::Object(members) => members
                .iter()
                .filter(|m| m.key != "variables")
                .for_each(|m| collect(&m.value, unresolved, out)),
            _ => {}
        }
    }
    let mut positions = Vec::new();
    collect(root, &unresolved, &mut positions);
    diags.retain(|d| {
        !(d.is_error()
            && !d.path.starts_with("variables.")
            && positions
                .iter()
                .any(|p| d.line == Some(p.line) && d.col == Some(p.col)))
    });
}

fn top_string(file: &str, top: &[Member], key: &str, diags: &mut Diagnostics) -> Option<String> {
    let m = member(top, key)?;
    match &m.value.value {
        Value::String(s) => Some(s.clone()),
        other => {
            diags.error(
                file,
                Some(m.value.pos),
                key,
                format!("\"{key}\" must be a string, got {}", kind(other)),
            );
            None
        }
    }
}

fn section_array<'a>(
    file: &str,
    top: &'a [Member],
    key: &str,
    diags: &mut Diagnostics,
) -> &'a [Node] {
    match member(top, key).map(|m| &m.value) {
        None => &[],
        Some(Node {
            value: Value::Array(items),
            ..
        }) => items,
        Some(node) => {
            diags.error(
                file,
                Some(node.pos),
                key,
                format!("\"{key}\" must be an array, got {}", kind(&node.value)),
            );
            &[]
        }
    }
}

fn declared_variables(file: &str, top: &[Member], diags: &mut Diagnostics) -> Vec<Declared> {
    let Some(m) = member(top, "variables") else {
        return Vec::new();
    };
    let Value::Object(items) = &m.value.value else {
        diags.error(
            file,
            Some(m.value.pos),
            "variables",
            format!(
                "\"variables\" must be an object of name → default, got {}",
                kind(&m.value.value)
            ),
        );
        return Vec::new();
    };
    let mut out: Vec<Declared> = Vec::with_capacity(items.len());
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for item in items {
        if !seen.insert(item.key.as_str()) {
            continue; // reported as a duplicate key
        }
        let default = match &item.value.value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.clone()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                diags.error(
                    file,
                    Some(item.value.pos),
                    &format!("variables.{}", item.key),
                    format!(
                        "a variable's default must be a string (or null when required), got {}",
                        kind(other)
                    ),
                );
                Some(String::new())
            }
        };
        if item.key.is_empty() {
            diags.error(
                file,
                Some(item.key_pos),
                "variables",
                "a variable needs a name: this key is empty",
            );
        } else if item.key.contains(char::is_whitespace) {
            diags.error(
                file,
                Some(item.key_pos),
                &format!("variables.{}", item.key),
                format!(
                    "`{}` is not a usable variable name: it contains white space",
                    item.key
                ),
            );
        }
        out.push(Declared {
            name: item.key.clone(),
            default,
            pos: item.key_pos,
            value_pos: item.value.pos,
        });
    }
    out
}

fn sensitive_variables(
    file: &str,
    top: &[Member],
    declared: &[Declared],
    diags: &mut Diagnostics,
) -> Vec<String> {
    let Some(m) = member(top, "sensitive-variables") else {
        return Vec::new();
    };
    let Value::Array(items) = &m.value.value else {
        diags.error(
            file,
            Some(m.value.pos),
            "sensitive-variables",
            format!(
                "\"sensitive-variables\" must be an array of variable names, got {}",
                kind(&m.value.value)
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("sensitive-variables[{i}]");
        match &item.value {
            Value::String(name) => {
                if !declared.iter().any(|d| &d.name == name) {
                    let hint = match suggest(name, declared.iter().map(|d| d.name.as_str())) {
                        Some(s) => format!(" (did you mean `{s}`?)"),
                        None => String::new(),
                    };
                    diags.error(
                        file,
                        Some(item.pos),
                        &path,
                        format!("`{name}` is not a declared variable{hint}"),
                    );
                }
                out.push(name.clone());
            }
            other => diags.error(
                file,
                Some(item.pos),
                &path,
                format!("expected a variable name, got {}", kind(other)),
            ),
        }
    }
    out
}

fn given_variables(options: &LoadOptions, diags: &mut Diagnostics) -> Vec<Given> {
    let mut given = Vec::new();
    for path in &options.var_files {
        let display = path.display().to_string();
        let text = match read_text(path, &display) {
            Ok(t) => t,
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        let root = match parse_json(&display, &text) {
            Ok(r) => r,
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        check_duplicates(&display, &root, "", diags);
        let Some(items) = members(&root) else {
            diags.error(
                &display,
                Some(root.pos),
                "",
                "a var-file is a JSON object of name → string value",
            );
            continue;
        };
        for item in items {
            let value = match &item.value.value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.clone(),
                Value::Bool(b) => b.to_string(),
                // Packer reads null as the empty string.
                Value::Null => String::new(),
                other => {
                    diags.error(
                        &display,
                        Some(item.value.pos),
                        &item.key,
                        format!("a variable's value must be a string, got {}", kind(other)),
                    );
                    continue;
                }
            };
            given.push(Given {
                name: item.key.clone(),
                value,
                source: VarSource::VarFile(display.clone()),
            });
        }
    }
    for (name, value) in &options.vars {
        given.push(Given {
            name: name.clone(),
            value: value.clone(),
            source: VarSource::CommandLine,
        });
    }
    given
}

/// A builder's name (`name`, else its type), its type and where the type is; `None` (with
/// the problem reported) when it has neither a usable type nor name.
fn builder_name(
    scope: &Scope<'_>,
    node: &Node,
    index: usize,
    diags: &mut Diagnostics,
) -> Option<(String, String, Pos)> {
    let file = scope.file;
    let path = format!("builders[{index}]");
    let Some(items) = members(node) else {
        diags.error(
            file,
            Some(node.pos),
            &path,
            format!("a builder must be an object, got {}", kind(&node.value)),
        );
        return None;
    };
    let ty = match member(items, "type").map(|m| &m.value) {
        Some(Node {
            value: Value::String(t),
            ..
        }) => t.clone(),
        Some(other) => {
            diags.error(
                file,
                Some(other.pos),
                &format!("{path}.type"),
                format!("expected a string, got {}", kind(&other.value)),
            );
            return None;
        }
        None => {
            diags.error(
                file,
                Some(node.pos),
                &path,
                "the builder has no \"type\": kiln builds with \"type\": \"qemu\"",
            );
            return None;
        }
    };
    let type_pos = member(items, "type").map_or(node.pos, |m| m.value.pos);
    match member(items, "name").map(|m| &m.value) {
        Some(Node {
            value: Value::String(n),
            pos,
        }) if !n.is_empty() => {
            let name = scope.render(diags, &format!("{path}.name"), *pos, n, &[])?;
            Some((name, ty, type_pos))
        }
        Some(Node {
            value: Value::String(_),
            ..
        })
        | None => Some((ty.clone(), ty, type_pos)),
        Some(other) => {
            diags.error(
                file,
                Some(other.pos),
                &format!("{path}.name"),
                format!("expected a string, got {}", kind(&other.value)),
            );
            None
        }
    }
}

/// The message for a builder name in `only`, `except` or `override` that names no builder.
fn no_such_builder(name: &str, builders: &[&str]) -> String {
    // Only a single closest name is suggested: `debian-11` is as close to `debian-12` as to
    // `debian-13`, and naming one of them would mislead.
    let best = suggest(name, builders.iter().copied());
    let ties = builders
        .iter()
        .filter(|b| best.is_some_and(|s| edit_distance(name, b) == edit_distance(name, s)))
        .count();
    let hint = match best {
        Some(s) if ties == 1 => format!(" (did you mean `{s}`?)"),
        _ => String::new(),
    };
    format!(
        "no builder is named `{name}`{hint}; builders: {}",
        builders.join(", ")
    )
}

/// Reads `only`/`except` of an entry and says whether it applies to `build`.
fn applies(
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
    items: &[Member],
    path: &str,
    build: &str,
    builders: &[&str],
) -> bool {
    let mut read = |key: &str| -> Option<Vec<String>> {
        let m = member(items, key)?;
        let Value::Array(list) = &m.value.value else {
            diags.error(
                scope.file,
                Some(m.value.pos),
                &join(path, key),
                format!(
                    "expected a list of builder names, got {}",
                    kind(&m.value.value)
                ),
            );
            return None;
        };
        let mut names = Vec::new();
        for (i, item) in list.iter().enumerate() {
            match &item.value {
                Value::String(s) => {
                    // Names may use variables, like the builders' names they match.
                    let item_path = format!("{}[{i}]", join(path, key));
                    let Some(s) = scope.render(diags, &item_path, item.pos, s, &[]) else {
                        continue;
                    };
                    if !builders.is_empty() && !builders.contains(&s.as_str()) {
                        diags.error(
                            scope.file,
                            Some(item.pos),
                            &item_path,
                            no_such_builder(&s, builders),
                        );
                    }
                    names.push(s);
                }
                other => diags.error(
                    scope.file,
                    Some(item.pos),
                    &format!("{}[{i}]", join(path, key)),
                    format!("expected a builder name, got {}", kind(other)),
                ),
            }
        }
        Some(names)
    };
    let only = read("only");
    let except = read("except");
    if let (Some(_), Some(_)) = (&only, &except) {
        let m = member(items, "except").expect("present");
        diags.error(
            scope.file,
            Some(m.key_pos),
            &join(path, "except"),
            "give either `only` or `except`, not both",
        );
    }
    if let Some(only) = only {
        return only.iter().any(|n| n == build);
    }
    if let Some(except) = except {
        return !except.iter().any(|n| n == build);
    }
    true
}

fn decode_provisioner(
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
    node: &Node,
    path: String,
    build: &str,
    builders: &[&str],
) -> Option<Provisioner> {
    let Some(items) = members(node) else {
        diags.error(
            scope.file,
            Some(node.pos),
            &path,
            format!("a provisioner must be an object, got {}", kind(&node.value)),
        );
        return None;
    };
    // A provisioner only for builds kiln does not run is not checked further (its type may
    // be one kiln does not know, like `powershell` for a Hyper-V build).
    if !applies(scope, diags, items, &path, build, builders) {
        return None;
    }
    let ty = entry_type(
        scope.file,
        diags,
        node,
        items,
        &path,
        PROVISIONER_TYPES,
        &[],
        "provisioner",
    )?;
    let mut fields: Vec<&Member> = items
        .iter()
        .filter(|m| !matches!(m.key.as_str(), "only" | "except" | "override"))
        .collect();
    if let Some(o) = member(items, "override") {
        match &o.value.value {
            Value::Object(per_builder) => {
                for b in per_builder {
                    if !builders.is_empty() && !builders.contains(&b.key.as_str()) {
                        diags.error(
                            scope.file,
                            Some(b.key_pos),
                            &format!("{path}.override.{}", b.key),
                            no_such_builder(&b.key, builders),
                        );
                    }
                    if b.key != build {
                        continue;
                    }
                    match &b.value.value {
                        Value::Object(over) => {
                            fields.retain(|m| !over.iter().any(|x| x.key == m.key));
                            fields.extend(over.iter());
                        }
                        other => diags.error(
                            scope.file,
                            Some(b.value.pos),
                            &format!("{path}.override.{}", b.key),
                            format!("expected an object of options, got {}", kind(other)),
                        ),
                    }
                }
            }
            other => diags.error(
                scope.file,
                Some(o.value.pos),
                &format!("{path}.override"),
                format!(
                    "expected an object keyed by builder name, got {}",
                    kind(other)
                ),
            ),
        }
    }
    let mut f = Fields::new(
        scope,
        diags,
        path,
        node.pos,
        format!("provisioner {ty}"),
        fields,
    );
    let p = provisioner::decode(&ty, &mut f);
    f.finish();
    p
}

/// The `type` of a provisioner or post-processor: one of `known` (listed in messages) or of
/// `also_known` (Packer's types kiln reads without running them).
#[allow(clippy::too_many_arguments)]
fn entry_type(
    file: &str,
    diags: &mut Diagnostics,
    node: &Node,
    items: &[Member],
    path: &str,
    known: &[&str],
    also_known: &[&str],
    what: &str,
) -> Option<String> {
    match member(items, "type").map(|m| &m.value) {
        Some(Node {
            value: Value::String(t),
            pos,
        }) => {
            if known.contains(&t.as_str()) || also_known.contains(&t.as_str()) {
                Some(t.clone())
            } else {
                let hint = match suggest(t, known.iter().copied()) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => String::new(),
                };
                diags.error(
                    file,
                    Some(*pos),
                    &format!("{path}.type"),
                    format!(
                        "{what} type `{t}` is not supported{hint}; kiln supports: {}",
                        known.join(", ")
                    ),
                );
                None
            }
        }
        Some(other) => {
            diags.error(
                file,
                Some(other.pos),
                &format!("{path}.type"),
                format!("expected a string, got {}", kind(&other.value)),
            );
            None
        }
        None => {
            diags.error(
                file,
                Some(node.pos),
                path,
                format!(
                    "the {what} has no \"type\" (kiln supports: {})",
                    known.join(", ")
                ),
            );
            None
        }
    }
}

fn decode_chain(
    scope: &Scope<'_>,
    diags: &mut Diagnostics,
    entry: &Node,
    index: usize,
    build: &str,
    builders: &[&str],
    selection: &Selection,
) -> Vec<PostProcessor> {
    let path = format!("post-processors[{index}]");
    let steps: Vec<(String, &Node)> = match &entry.value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(j, n)| (format!("{path}[{j}]"), n))
            .collect(),
        _ => vec![(path, entry)],
    };
    let mut chain = Vec::new();
    for (path, node) in steps {
        // Packer 1.6: `-except` names a post-processor by its `name`, else its type, and an
        // excepted post-processor ends its chain (the ones after it do not run either).
        if post_processor_names(std::slice::from_ref(node))
            .first()
            .is_some_and(|name| selection.excepts_post_processor(name))
        {
            break;
        }
        match &node.value {
            Value::String(ty) => {
                if !POST_PROCESSOR_TYPES.contains(&ty.as_str())
                    && !NOT_RUN_POST_PROCESSOR_TYPES.contains(&ty.as_str())
                {
                    let hint = match suggest(ty, POST_PROCESSOR_TYPES.iter().copied()) {
                        Some(s) => format!(" (did you mean `{s}`?)"),
                        None => String::new(),
                    };
                    diags.error(
                        scope.file,
                        Some(node.pos),
                        &path,
                        format!(
                            "post-processor type `{ty}` is not supported{hint}; kiln supports: {}",
                            POST_PROCESSOR_TYPES.join(", ")
                        ),
                    );
                    continue;
                }
                let mut f = Fields::new(
                    scope,
                    diags,
                    path,
                    node.pos,
                    format!("post-processor {ty}"),
                    Vec::new(),
                );
                let pp = postprocessor::decode(ty, &mut f);
                f.finish();
                chain.extend(pp);
            }
            Value::Object(items) => {
                if !applies(scope, diags, items, &path, build, builders) {
                    continue;
                }
                let Some(ty) = entry_type(
                    scope.file,
                    diags,
                    node,
                    items,
                    &path,
                    POST_PROCESSOR_TYPES,
                    NOT_RUN_POST_PROCESSOR_TYPES,
                    "post-processor",
                ) else {
                    continue;
                };
                let mut fields: Vec<&Member> = items
                    .iter()
                    .filter(|m| !matches!(m.key.as_str(), "only" | "except" | "override"))
                    .collect();
                if let Some(o) = member(items, "override") {
                    if ty == "vagrant" {
                        vagrant_override(scope.file, diags, &path, o, &mut fields);
                    } else {
                        // Only `vagrant` has per-provider overrides; let the type say so.
                        fields.push(o);
                    }
                }
                let mut f = Fields::new(
                    scope,
                    diags,
                    path,
                    node.pos,
                    format!("post-processor {ty}"),
                    fields,
                );
                let pp = postprocessor::decode(&ty, &mut f);
                f.finish();
                chain.extend(pp);
            }
            other => diags.error(
                scope.file,
                Some(node.pos),
                &path,
                format!(
                    "a post-processor is a type name, an object or an array of them, got {}",
                    kind(other)
                ),
            ),
        }
    }
    chain
}
