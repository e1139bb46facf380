//! HCL2 recipes (`.pkr.hcl` files, or a directory of them): a second front door into the
//! same recipe model as the legacy-JSON reader.
//!
//! The files are parsed with hcl-edit (spans kept), `variable`, `locals`/`local` are
//! resolved and evaluated with hcl-rs and Packer's functions, and the `source` and `build`
//! blocks are lowered into the document the JSON reader decodes
//! ([`crate::recipe::template`]), so every option check, default and message is shared.
//! The decoder's diagnostics are mapped back to HCL files, positions and block paths.

mod expr;
mod files;
mod functions;
mod locals;
mod lower;
mod sourcemap;
mod variables;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use ::hcl::Value;
use ::hcl::edit::Span;
use ::hcl::edit::structure::{Block, Structure};
use ::hcl::eval::Context;
use chrono::Utc;

pub use files::is_hcl;

use self::files::Parsed;
use self::locals::LocalDef;
use self::lower::{BuildDef, Lowerer, SourceDef, block_path, labels};
use self::sourcemap::SourceMap;
use self::variables::{Decl, Given, GivenValue, VarType};
use super::decode::suggest;
use super::diag::Diagnostics;
use super::template::{self, LoadOptions, Recipe};
use super::vars::VarSource;

const TOP_LEVEL_BLOCKS: &[&str] = &[
    "packer",
    "variable",
    "variables",
    "locals",
    "local",
    "source",
    "build",
    "data",
];

/// Reads the HCL2 recipe at `path` (a `.pkr.hcl` file or a directory). With `partial`, the
/// recipe is returned as far as it could be read with every problem in its `warnings`
/// (`kiln inspect`); without, any error makes it `Err`.
pub fn load_path(path: &Path, options: &LoadOptions, partial: bool) -> Result<Recipe, Diagnostics> {
    let display = path.display().to_string();
    let mut diags = Diagnostics::new();
    let Some((templates, auto_var_files)) = files::recipe_files(path, &mut diags) else {
        return Err(diags);
    };
    let mut texts = Vec::new();
    for p in &templates {
        let name = p.display().to_string();
        match template::read_text(p, &name) {
            Ok(text) => texts.push((name, text)),
            Err(d) => diags.extend(d),
        }
    }
    let template_dir = if path.is_dir() {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    } else {
        template::recipe_dir(path)
    };
    let files = Files {
        display: &display,
        texts,
        auto_var_files: &auto_var_files,
        template_dir: &template_dir,
    };
    load_texts(files, options, partial, diags)
}

/// Reads one HCL2 template given as text (the window's editor); `display` names it and
/// `template_dir` is its `path.root`.
pub fn load_str(
    display: &str,
    text: &str,
    template_dir: &Path,
    options: &LoadOptions,
    partial: bool,
) -> Result<Recipe, Diagnostics> {
    let files = Files {
        display,
        texts: vec![(display.to_string(), text.to_string())],
        auto_var_files: &[],
        template_dir,
    };
    load_texts(files, options, partial, Diagnostics::new())
}

/// The texts of one recipe.
struct Files<'a> {
    /// The recipe as the user named it.
    display: &'a str,
    /// Each template file's name and text.
    texts: Vec<(String, String)>,
    /// `*.auto.pkrvars.hcl` files.
    auto_var_files: &'a [PathBuf],
    /// `path.root`.
    template_dir: &'a Path,
}

fn load_texts(
    files: Files<'_>,
    options: &LoadOptions,
    partial: bool,
    mut diags: Diagnostics,
) -> Result<Recipe, Diagnostics> {
    let display = files.display.to_string();
    let template_dir = files.template_dir.to_path_buf();
    let auto_var_files = files.auto_var_files;
    let mut map = SourceMap::default();
    let mut parsed: Vec<Parsed> = Vec::new();
    for (name, text) in &files.texts {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let file = map.add_file(name, text);
        if let Some(body) = files::parse_text(file, text, &map, &mut diags) {
            parsed.push(Parsed { file, body });
        }
    }
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    let pwd = options
        .pwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let started = options.started.unwrap_or_else(Utc::now);
    let _run = functions::enter(functions::RunState {
        started,
        cwd: pwd.clone(),
        env: options.env.clone(),
    });

    let mut base = Context::new();
    functions::declare(&mut base);
    let mut path_obj = ::hcl::Map::new();
    path_obj.insert(
        "root".to_string(),
        Value::String(template_dir.display().to_string()),
    );
    path_obj.insert("cwd".to_string(), Value::String(pwd.display().to_string()));
    base.declare_var("path", Value::Object(path_obj));

    let mut lw = Lowerer {
        map: &mut map,
        diags: &mut diags,
        ctx: base.clone(),
        known: expr::Known::default(),
        vars: BTreeSet::new(),
        locals: BTreeSet::new(),
        unresolved: HashSet::new(),
        tainted: HashSet::new(),
    };

    // Top-level blocks.
    let mut decls: Vec<(Decl, Vec<&Block>)> = Vec::new();
    let mut local_defs: Vec<LocalDef<'_>> = Vec::new();
    let mut sources: Vec<SourceDef<'_>> = Vec::new();
    let mut builds: Vec<BuildDef<'_>> = Vec::new();
    for p in &parsed {
        let file = p.file;
        for s in p.body.iter() {
            let block = match s {
                Structure::Block(b) => b,
                Structure::Attribute(a) => {
                    let key = a.key.value().as_str();
                    lw.error(
                        file,
                        a.key.span(),
                        key,
                        format!(
                            "unexpected attribute `{key}` at the top level: a template has variable, locals, source and build blocks"
                        ),
                    );
                    continue;
                }
            };
            let ident = block.ident.value().as_str();
            let ls = labels(block);
            let path = block_path(block);
            match (ident, ls.as_slice()) {
                ("variable", [name]) => {
                    if decls.iter().any(|(d, _)| &d.name == name) {
                        lw.error(
                            file,
                            block.ident.span(),
                            &path,
                            format!("variable `{name}` is declared twice: remove one"),
                        );
                        continue;
                    }
                    if let Some(d) = variable_decl(&mut lw, file, block, name, &base) {
                        lw.vars.insert(name.clone());
                        decls.push(d);
                    }
                }
                ("variables", []) => {
                    for s in block.body.iter() {
                        if let Structure::Attribute(a) = s {
                            let name = a.key.value().as_str().to_string();
                            let vpath = format!("variables.{name}");
                            let default = lw.value(file, &a.value, &vpath, &base).map(|v| v.0);
                            lw.vars.insert(name.clone());
                            decls.push((
                                Decl {
                                    name,
                                    file,
                                    span: a.key.span(),
                                    ty: VarType::Any,
                                    default,
                                    description: None,
                                    sensitive: false,
                                },
                                Vec::new(),
                            ));
                        }
                    }
                }
                ("locals", []) => {
                    for s in block.body.iter() {
                        match s {
                            Structure::Attribute(a) => {
                                let name = a.key.value().as_str().to_string();
                                lw.locals.insert(name.clone());
                                local_defs.push(LocalDef {
                                    name,
                                    file,
                                    expr: &a.value,
                                    span: a.key.span(),
                                    sensitive: false,
                                });
                            }
                            Structure::Block(b) => lw.error(
                                file,
                                b.ident.span(),
                                "locals",
                                "a locals block holds name = value attributes only".into(),
                            ),
                        }
                    }
                }
                ("local", [name]) => match block.body.get_attribute("expression") {
                    Some(a) => {
                        lw.locals.insert(name.clone());
                        let sensitive = match block.body.get_attribute("sensitive") {
                            None => false,
                            Some(s) => match lw.value(file, &s.value, &format!("{path}.sensitive"), &base) {
                                Some((Value::Bool(b), _)) => b,
                                Some(_) => {
                                    lw.error(
                                        file,
                                        s.key.span(),
                                        &format!("{path}.sensitive"),
                                        "`sensitive` is true or false".into(),
                                    );
                                    // Masked rather than shown when in doubt.
                                    true
                                }
                                None => true,
                            },
                        };
                        local_defs.push(LocalDef {
                            name: name.clone(),
                            file,
                            expr: &a.value,
                            span: block.ident.span(),
                            sensitive,
                        });
                    }
                    None => lw.error(
                        file,
                        block.ident.span(),
                        &path,
                        "a local block needs expression = …".into(),
                    ),
                },
                ("source", [ty, name]) => {
                    if let Some(first) = sources.iter().find(|s| &s.ty == ty && &s.name == name) {
                        let at = lw
                            .map
                            .start(first.file, first.block.ident.span())
                            .map(|p| format!(" (first at {}:{}:{})", lw.map.display(first.file), p.line, p.col))
                            .unwrap_or_default();
                        lw.error(
                            file,
                            block.ident.span(),
                            &path,
                            format!("source \"{ty}\" \"{name}\" is declared twice{at}: rename or remove one"),
                        );
                        continue;
                    }
                    sources.push(SourceDef {
                        file,
                        ty: ty.clone(),
                        name: name.clone(),
                        block,
                    });
                }
                ("build", []) => builds.push(BuildDef { file, block }),
                ("packer", []) => required_plugins(&mut lw, file, block),
                ("data", _) => lw.error(
                    file,
                    block.ident.span(),
                    &path,
                    "data sources are not supported: kiln evaluates none yet; replace data.… with a variable or a local".into(),
                ),
                (known, _) if TOP_LEVEL_BLOCKS.contains(&known) => {
                    let want = match known {
                        "variable" => "variable \"NAME\" { … }",
                        "local" => "local \"NAME\" { expression = … }",
                        "source" => "source \"qemu\" \"NAME\" { … }",
                        "build" => "build { … }",
                        "locals" => "locals { … }",
                        "variables" => "variables { … }",
                        _ => "packer { … }",
                    };
                    lw.error(
                        file,
                        block.ident.span(),
                        &path,
                        format!("wrong labels: write {want}"),
                    );
                }
                (other, _) => {
                    let hint = suggest(other, TOP_LEVEL_BLOCKS.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    lw.error(
                        file,
                        block.ident.span(),
                        other,
                        format!(
                            "unknown block `{other}`{hint}: a template has packer, variable, locals, local, source and build blocks"
                        ),
                    );
                }
            }
        }
    }
    if builds.is_empty() && !lw.diags.has_errors() {
        lw.diags.error(
            &display,
            None,
            "build",
            "the template has no build block: add build { sources = [\"source.qemu.NAME\"] }",
        );
    }

    // Variables: defaults, PKR_VAR_*, auto var-files, -var-file, -var (later wins).
    let mut given = Vec::new();
    for (d, _) in &decls {
        if let Some(v) = (options.env)(&format!("PKR_VAR_{}", d.name)) {
            given.push(Given {
                name: d.name.clone(),
                value: GivenValue::Text(v),
                source: VarSource::Default,
                at: None,
            });
        }
    }
    for f in auto_var_files.iter().chain(&options.var_files) {
        given.extend(var_file(&mut lw, f, &base));
    }
    for (name, value) in &options.vars {
        given.push(Given {
            name: name.clone(),
            value: GivenValue::Text(value.clone()),
            source: VarSource::CommandLine,
            at: None,
        });
    }
    let plain: Vec<Decl> = decls.iter().map(|(d, _)| d.clone()).collect();
    let resolved = variables::resolve(
        lw.map,
        &plain,
        &given,
        options.required_is_warning,
        lw.diags,
    );
    lw.unresolved
        .extend(resolved.unresolved.iter().map(|n| format!("var.{n}")));
    lw.ctx
        .declare_var("var", Value::Object(resolved.values.clone()));
    lw.known.var = resolved.values.clone();
    for (d, validations) in &decls {
        if !resolved.unresolved.contains(&d.name) {
            validate(&mut lw, d, validations);
        }
    }
    locals::evaluate(&mut lw, &local_defs);
    let sensitive_locals = locals::sensitive_values(&lw, &local_defs);

    let lowered = lw.lower(&sources, &builds);
    let tainted = std::mem::take(&mut lw.tainted);
    let mut document_options = options.clone();
    document_options.vars.clear();
    document_options.var_files.clear();
    document_options.started = Some(started);
    document_options.pwd = Some(pwd);
    // `-only qemu.debian` (Packer's HCL2 names) selects the builder named `debian`.
    let rename = |names: &mut Vec<String>| {
        for n in names.iter_mut() {
            if let Some((_, name)) = lowered.builders.iter().find(|(a, _)| a.contains(n)) {
                *n = name.clone();
            }
        }
    };
    rename(&mut document_options.selection.only);
    rename(&mut document_options.selection.except);
    let result = template::load_document(&display, &lowered.root, &template_dir, &document_options);
    let mut recipe = match result {
        Ok(r) => r,
        Err(d) => {
            let mut out = map.remap(&d, &display, &lowered.prefixes);
            out.extend(diags);
            out.sort();
            return Err(out);
        }
    };
    recipe.warnings.retain(|d| {
        !(d.is_error() && d.file == display && d.line.is_some_and(|l| tainted.contains(&l)))
    });
    let mut warnings = map.remap(&recipe.warnings, &display, &lowered.prefixes);
    warnings.extend(diags);
    warnings.sort();
    recipe.warnings = warnings;
    recipe.variables = resolved.variables;
    recipe.sensitive_values = sensitive_locals;
    if !partial && recipe.warnings.has_errors() {
        return Err(recipe.warnings);
    }
    Ok(recipe)
}

/// Plugins whose components kiln implements (the qemu builder, the ansible provisioner, the
/// vagrant and exoscale-import post-processors).
const KNOWN_PLUGINS: &[&str] = &["qemu", "ansible", "vagrant", "exoscale"];

/// `packer { required_plugins { name = { source, version } } }`: accepted; the plugins kiln
/// does not implement are named in one warning (what uses them is reported where it is used).
fn required_plugins(lw: &mut Lowerer<'_>, file: usize, block: &Block) {
    for inner in block
        .body
        .blocks()
        .filter(|b| b.ident.value().as_str() == "required_plugins")
    {
        let others: Vec<&str> = inner
            .body
            .attributes()
            .map(|a| a.key.value().as_str())
            .filter(|name| !KNOWN_PLUGINS.contains(name))
            .collect();
        if !others.is_empty() {
            lw.warning(
                file,
                inner.ident.span(),
                "packer.required_plugins",
                format!(
                    "kiln does not implement the plugin{} {}: builds of {} sources are not run, and {} provisioners and post-processors are refused where a build uses them",
                    if others.len() == 1 { "" } else { "s" },
                    others.join(", "),
                    if others.len() == 1 { "its" } else { "their" },
                    if others.len() == 1 { "its" } else { "their" }
                ),
            );
        }
    }
}

/// A `variable "name" { … }` block, with its `validation` blocks.
fn variable_decl<'b>(
    lw: &mut Lowerer<'_>,
    file: usize,
    block: &'b Block,
    name: &str,
    base: &Context,
) -> Option<(Decl, Vec<&'b Block>)> {
    let path = format!("var.{name}");
    let mut decl = Decl {
        name: name.to_string(),
        file,
        span: block.ident.span(),
        ty: VarType::Any,
        default: None,
        description: None,
        sensitive: false,
    };
    let mut validations = Vec::new();
    let mut default_expr = None;
    for s in block.body.iter() {
        match s {
            Structure::Attribute(a) => {
                let key = a.key.value().as_str();
                let apath = format!("{path}.{key}");
                match key {
                    "type" => {
                        let e: ::hcl::Expression = a.value.clone().into();
                        match variables::parse_type(&e) {
                            Ok(t) => decl.ty = t,
                            Err(m) => lw.error(file, a.value.span(), &apath, m),
                        }
                    }
                    "default" => default_expr = Some(a),
                    "description" => {
                        decl.description = lw.string_attr(file, &block.body, key, &path, base)
                    }
                    "sensitive" | "nullable" => {
                        match lw.value(file, &a.value, &apath, base).map(|v| v.0) {
                            Some(Value::Bool(b)) if key == "sensitive" => decl.sensitive = b,
                            Some(Value::Bool(_)) | None => {}
                            Some(_) => lw.error(
                                file,
                                a.value.span(),
                                &apath,
                                "expected true or false".into(),
                            ),
                        }
                    }
                    other => {
                        let known = ["type", "default", "description", "sensitive", "nullable"];
                        let hint = suggest(other, known.iter().copied())
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        lw.error(
                            file,
                            a.key.span(),
                            &apath,
                            format!(
                                "unknown variable attribute `{other}`{hint}: a variable has type, default, description, sensitive, nullable and validation blocks"
                            ),
                        );
                    }
                }
            }
            Structure::Block(b) if b.ident.value().as_str() == "validation" => validations.push(b),
            Structure::Block(b) => lw.error(
                file,
                b.ident.span(),
                &format!("{path}.{}", b.ident.value().as_str()),
                "a variable holds validation blocks only".into(),
            ),
        }
    }
    if let Some(a) = default_expr {
        let apath = format!("{path}.default");
        let v = lw.value(file, &a.value, &apath, base)?.0;
        match variables::convert(v, &decl.ty) {
            // `default = null` makes an optional variable whose value is null (bento's many
            // provider options); only a variable without `default` is required.
            Ok(v) => decl.default = Some(v),
            Err(m) => {
                lw.error(
                    file,
                    a.value.span(),
                    &apath,
                    format!("the default does not fit the variable's type: {m}"),
                );
                return None;
            }
        }
    }
    Some((decl, validations))
}

/// Runs the `validation { condition, error_message }` blocks of `d`.
fn validate(lw: &mut Lowerer<'_>, d: &Decl, validations: &[&Block]) {
    if validations.is_empty() {
        return;
    }
    let ctx = std::mem::take(&mut lw.ctx);
    for v in validations {
        let path = format!("var.{}.validation", d.name);
        let Some(cond) = v.body.get_attribute("condition") else {
            lw.error(
                d.file,
                v.ident.span(),
                &path,
                "a validation block needs condition = …".into(),
            );
            continue;
        };
        let message = lw
            .string_attr(d.file, &v.body, "error_message", &path, &ctx)
            .unwrap_or_else(|| format!("the value of var.{} is not valid", d.name));
        match lw.value(d.file, &cond.value, &format!("{path}.condition"), &ctx) {
            Some((Value::Bool(true), _)) | None => {}
            Some((Value::Bool(false), _)) => lw.error(d.file, d.span.clone(), &path, message),
            Some(_) => lw.error(
                d.file,
                cond.value.span(),
                &format!("{path}.condition"),
                "a condition must be true or false".into(),
            ),
        }
    }
    lw.ctx = ctx;
}

/// The values of a var-file (`.pkrvars.hcl`, or `.json`).
fn var_file(lw: &mut Lowerer<'_>, path: &Path, base: &Context) -> Vec<Given> {
    let display = path.display().to_string();
    let text = match template::read_text(path, &display) {
        Ok(t) => t,
        Err(d) => {
            lw.diags.extend(d);
            return Vec::new();
        }
    };
    let file = lw.map.add_file(&display, &text);
    let source = VarSource::VarFile(display.clone());
    if display.ends_with(".json") {
        return match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text) {
            Ok(m) => m
                .into_iter()
                .map(|(name, v)| Given {
                    name,
                    value: GivenValue::Value(functions::from_json(v)),
                    source: source.clone(),
                    at: Some((file, None)),
                })
                .collect(),
            Err(e) => {
                let pos = lw.map.locate(file, 0).map(|_| super::json::Pos {
                    line: u32::try_from(e.line()).unwrap_or(u32::MAX),
                    col: u32::try_from(e.column()).unwrap_or(u32::MAX),
                });
                lw.diags.error(
                    &display,
                    pos,
                    "",
                    format!("a JSON var-file is an object of name → value: {e}"),
                );
                Vec::new()
            }
        };
    }
    let Some(body) = files::parse_text(file, &text, lw.map, lw.diags) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let name = a.key.value().as_str().to_string();
                if let Some((v, _)) = lw.value(file, &a.value, &name, base) {
                    out.push(Given {
                        name,
                        value: GivenValue::Value(v),
                        source: source.clone(),
                        at: Some((file, a.key.span())),
                    });
                }
            }
            Structure::Block(b) => lw.error(
                file,
                b.ident.span(),
                b.ident.value().as_str(),
                "a var-file holds name = value lines only".into(),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use std::sync::Arc;

    /// Loads `text` as `t.pkr.hcl`; the diagnostics as text from the file name on.
    pub(super) fn load(text: &str, vars: &[(&str, &str)]) -> Result<Recipe, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.pkr.hcl");
        std::fs::write(&p, text).unwrap();
        let options = LoadOptions {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: Arc::new(|n| (n == "PKR_VAR_from_env").then(|| "env".to_string())),
            pwd: Some(dir.path().to_path_buf()),
            ..LoadOptions::default()
        };
        load_path(&p, &options, false).map_err(|d| {
            d.iter()
                .map(|d| {
                    let s = d.to_string();
                    s[s.find("t.pkr.hcl").unwrap_or(0)..].to_string()
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::load;

    const SOURCE: &str = r#"
source "qemu" "a" {
  disk_image   = true
  iso_url      = "a.qcow2"
  iso_checksum = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  ssh_username = local.user
}
"#;

    #[test]
    fn a_sensitive_local_is_masked_in_logs_and_a_plain_one_is_not() {
        let text = format!(
            r#"{SOURCE}
variable "suffix" {{
  default = "42"
}}
locals {{
  user = "debian"
}}
local "token" {{
  expression = {{ key = "tok-${{var.suffix}}", port = 8443 }}
  sensitive  = true
}}
build {{
  sources = ["source.qemu.a"]
  provisioner "shell" {{
    inline = ["echo ${{local.token.key}}"]
  }}
}}
"#
        );
        let recipe = load(&text, &[]).unwrap_or_else(|d| panic!("{d:?}"));
        let secrets = recipe.secrets();
        assert!(secrets.contains(&"tok-42".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"8443".to_string()), "{secrets:?}");
        assert!(!secrets.contains(&"debian".to_string()), "{secrets:?}");
        let refused = load(
            &format!(
                "{SOURCE}\nlocals {{\n  user = \"d\"\n}}\nlocal \"t\" {{\n  expression = \"x\"\n  sensitive = \"yes\"\n}}\nbuild {{ sources = [\"source.qemu.a\"] }}\n"
            ),
            &[],
        )
        .unwrap_err();
        assert!(
            refused
                .iter()
                .any(|d| d.contains("local.t.sensitive") && d.contains("true or false")),
            "{refused:?}"
        );
    }

    #[test]
    fn locals_in_any_order_and_typed_variables() {
        let text = format!(
            r#"{SOURCE}
variable "n" {{
  type    = number
  default = 2
}}
variable "from_env" {{
  type = string
}}
locals {{
  user  = "${{local.first}}-${{var.from_env}}"
  first = var.n > 1 ? "many" : "one"
}}
build {{ sources = ["source.qemu.a"] }}
"#
        );
        let r = load(&text, &[("n", "1")]).unwrap();
        assert_eq!(r.builds[0].builder.ssh.username, "one-env");
        let n = r.variables.iter().find(|v| v.name == "n").unwrap();
        assert_eq!((n.value.as_str(), n.default.as_deref()), ("1", Some("2")));
    }

    #[test]
    fn a_cycle_among_locals_is_reported_once_per_local() {
        let text = format!(
            "{SOURCE}\nlocals {{\n  user = local.b\n  b = local.user\n}}\nbuild {{ sources = [\"source.qemu.a\"] }}\n"
        );
        let errors = load(&text, &[]).unwrap_err();
        assert_eq!(
            errors,
            [
                "t.pkr.hcl:10:3: local.user: local `user` depends on itself (through other locals): break the cycle",
                "t.pkr.hcl:11:3: local.b: local `b` depends on itself (through other locals): break the cycle",
            ]
        );
    }

    #[test]
    fn a_bad_command_line_value_names_the_variable() {
        let text = format!(
            "{SOURCE}\nlocals {{ user = \"u\" }}\nvariable \"n\" {{ type = number }}\nbuild {{ sources = [\"source.qemu.a\"] }}\n"
        );
        let errors = load(&text, &[("n", "many"), ("typo", "1")]).unwrap_err();
        assert_eq!(
            errors,
            [
                "-var typo: `typo` is not a declared variable: declare it with a variable \"typo\" {} block",
                "var.n: the value from -var n does not fit the variable's type: expected number, got \"many\"",
            ]
        );
    }

    #[test]
    fn unknown_blocks_and_attributes_are_named() {
        let text = format!(
            "{SOURCE}\nlocals {{ user = \"u\" }}\nbuidl {{}}\nfoo = 1\nbuild {{\n  sources = [\"source.qemu.a\"]\n  provisoner \"shell\" {{}}\n}}\n"
        );
        let errors = load(&text, &[]).unwrap_err();
        assert_eq!(
            errors,
            [
                "t.pkr.hcl:10:1: buidl: unknown block `buidl` (did you mean `build`?): a template has packer, variable, locals, local, source and build blocks",
                "t.pkr.hcl:11:1: foo: unexpected attribute `foo` at the top level: a template has variable, locals, source and build blocks",
                "t.pkr.hcl:14:3: build.provisoner: unknown block `provisoner` in a build (did you mean `provisioner`?): a build has source, provisioner, post-processor and post-processors blocks",
            ]
        );
    }
}

#[cfg(test)]
mod bento_shapes {
    //! Shapes from chef/bento's packer_templates (pkr-sources.pkr.hcl, pkr-builder.pkr.hcl,
    //! pkr-variables.pkr.hcl): every source named `vm`, `default = null` options,
    //! `except = cond ? list : null`, `try(data…, fallback)`.
    use super::tests_support::load;

    #[test]
    fn sources_sharing_a_name_get_packers_names_and_null_options_stay_unset() {
        let text = r#"
variable "is_windows" {
  type    = bool
  default = false
}
variable "qemu_binary" {
  type    = string
  default = null
}
variable "sources_enabled" {
  type    = list(string)
  default = ["source.qemu.vm", "source.virtualbox-iso.vm"]
}
locals {
  source_names = [for source in var.sources_enabled : trimprefix(source, "source.")]
  host_os      = try(data.host-info.this.os_type, "linux")
}
source "qemu" "vm" {
  disk_image   = true
  iso_url      = "a.qcow2"
  iso_checksum = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  ssh_username = local.host_os
  qemu_binary  = var.qemu_binary
}
source "virtualbox-iso" "vm" {
  guest_os_type = var.undeclared_but_not_checked
}
build {
  sources = var.sources_enabled
  provisioner "shell" {
    inline = ["echo linux"]
    except = var.is_windows ? local.source_names : null
  }
}
"#;
        let r = load(text, &[]).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(r.builds.len(), 1);
        assert_eq!(r.builds[0].name, "qemu.vm");
        assert_eq!(r.builds[0].builder.ssh.username, "linux");
        assert_eq!(r.builds[0].provisioners.len(), 1);
        assert_eq!(r.skipped.len(), 1);
        let v = r
            .variables
            .iter()
            .find(|v| v.name == "qemu_binary")
            .unwrap();
        assert!(!v.required && !v.unresolved, "{v:?}");
    }
}
