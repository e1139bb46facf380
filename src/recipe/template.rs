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
use super::postprocessor::{self, POST_PROCESSOR_TYPES, PostProcessor};
use super::provisioner::{self, PROVISIONER_TYPES, Provisioner};
use super::qemu::QemuConfig;
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
    /// One build per builder.
    pub builds: Vec<Build>,
    /// Run-wide facts (start time, pwd).
    pub run: RunInfo,
    /// Warnings (deprecations, ignored options).
    pub warnings: Diagnostics,
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
    let display = path.display().to_string();
    let text = read_text(path, &display)?;
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
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
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

fn read_text(path: &Path, display: &str) -> Result<String, Diagnostics> {
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
    let root = parse_json(display, text)?;
    let mut diags = Diagnostics::new();
    let Some(top) = members(&root) else {
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
    check_duplicates(display, &root, "", &mut diags);
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

    // Builders.
    let mut builder_nodes: Vec<(String, &Node, usize)> = Vec::new();
    match member(top, "builders") {
        None => diags.error(
            display,
            Some(root.pos),
            "builders",
            "a recipe needs \"builders\": [{\"type\": \"qemu\", …}]",
        ),
        Some(m) => {
            match &m.value.value {
                Value::Array(items) if items.is_empty() => diags.error(
                    display,
                    Some(m.value.pos),
                    "builders",
                    "\"builders\" is empty: add a {\"type\": \"qemu\", …} builder",
                ),
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(name) = builder_name(display, item, i, &mut diags) {
                            if let Some((_, _, first)) =
                                builder_nodes.iter().find(|(n, _, _)| *n == name)
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
                                        "builders[{first}] and builders[{i}] are both named `{name}`{why}: give each a distinct \"name\""
                                    ),
                                );
                            } else {
                                builder_nodes.push((name, item, i));
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
    let builder_names: Vec<&str> = builder_nodes.iter().map(|(n, _, _)| n.as_str()).collect();

    let provisioner_nodes = section_array(display, top, "provisioners", &mut diags);
    let post_processor_nodes = section_array(display, top, "post-processors", &mut diags);
    let cleanup_node = member(top, "error-cleanup-provisioner").map(|m| &m.value);

    let mut builds = Vec::new();
    for (name, node, index) in &builder_nodes {
        let scope = Scope {
            file: display,
            vars: &values,
            run: &run,
            env: &env_fn,
            build_name: Some(name),
            build_type: Some("qemu"),
        };
        let path = format!("builders[{index}]");
        let items: Vec<&Member> = members(node).unwrap_or_default().iter().collect();
        let mut f = Fields::new(&scope, &mut diags, path, node.pos, "builder qemu", items);
        let builder = QemuConfig::decode(name, &mut f);
        f.finish();

        let mut provisioners = Vec::new();
        for (i, p) in provisioner_nodes.iter().enumerate() {
            let path = format!("provisioners[{i}]");
            if let Some(p) = decode_provisioner(&scope, &mut diags, p, path, name, &builder_names) {
                provisioners.push(p);
            }
        }
        let error_cleanup = cleanup_node.and_then(|node| {
            decode_provisioner(
                &scope,
                &mut diags,
                node,
                "error-cleanup-provisioner".into(),
                name,
                &builder_names,
            )
        });
        let mut post_processors = Vec::new();
        for (i, entry) in post_processor_nodes.iter().enumerate() {
            let chain = decode_chain(&scope, &mut diags, entry, i, name, &builder_names);
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
    // Sections are checked even when no builder is valid, so that all errors show at once.
    if builder_nodes.is_empty() {
        let scope = Scope {
            file: display,
            vars: &values,
            run: &run,
            env: &env_fn,
            build_name: Some("qemu"),
            build_type: Some("qemu"),
        };
        for (i, p) in provisioner_nodes.iter().enumerate() {
            decode_provisioner(&scope, &mut diags, p, format!("provisioners[{i}]"), "", &[]);
        }
        for (i, entry) in post_processor_nodes.iter().enumerate() {
            decode_chain(&scope, &mut diags, entry, i, "", &[]);
        }
    }

    drop_consequences_of_unresolved(&root, &variables, &mut diags);
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Recipe {
        file: display.to_string(),
        template_dir: template_dir.to_path_buf(),
        description,
        min_packer_version,
        variables,
        builds,
        run,
        warnings: diags,
    })
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

fn builder_name(file: &str, node: &Node, index: usize, diags: &mut Diagnostics) -> Option<String> {
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
    if ty != "qemu" {
        let m = member(items, "type").expect("present");
        diags.error(
            file,
            Some(m.value.pos),
            &format!("{path}.type"),
            format!(
                "builder type `{ty}` is not supported: kiln builds images with the `qemu` builder"
            ),
        );
        return None;
    }
    match member(items, "name").map(|m| &m.value) {
        Some(Node {
            value: Value::String(n),
            ..
        }) if !n.is_empty() => Some(n.clone()),
        Some(Node {
            value: Value::String(_),
            ..
        })
        | None => Some(ty),
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
                    if !builders.is_empty() && !builders.contains(&s.as_str()) {
                        diags.error(
                            scope.file,
                            Some(item.pos),
                            &format!("{}[{i}]", join(path, key)),
                            no_such_builder(s, builders),
                        );
                    }
                    names.push(s.clone());
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
    let ty = entry_type(
        scope.file,
        diags,
        node,
        items,
        &path,
        PROVISIONER_TYPES,
        "provisioner",
    )?;
    if !applies(scope, diags, items, &path, build, builders) {
        return None;
    }
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

fn entry_type(
    file: &str,
    diags: &mut Diagnostics,
    node: &Node,
    items: &[Member],
    path: &str,
    known: &[&str],
    what: &str,
) -> Option<String> {
    match member(items, "type").map(|m| &m.value) {
        Some(Node {
            value: Value::String(t),
            pos,
        }) => {
            if known.contains(&t.as_str()) {
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
        match &node.value {
            Value::String(ty) => {
                if !POST_PROCESSOR_TYPES.contains(&ty.as_str()) {
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
                let Some(ty) = entry_type(
                    scope.file,
                    diags,
                    node,
                    items,
                    &path,
                    POST_PROCESSOR_TYPES,
                    "post-processor",
                ) else {
                    continue;
                };
                if !applies(scope, diags, items, &path, build, builders) {
                    continue;
                }
                let fields: Vec<&Member> = items
                    .iter()
                    .filter(|m| !matches!(m.key.as_str(), "only" | "except"))
                    .collect();
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
