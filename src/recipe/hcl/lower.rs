//! Lowering: evaluated `source` and `build` blocks turned into the document the legacy-JSON
//! reader decodes (`builders`, `provisioners`, `post-processors`), so that every option check,
//! default and error message is the JSON reader's. Every member gets a synthetic position
//! that the [`SourceMap`] maps back to the HCL file, line, column and block path.

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;

use ::hcl::Value;
use ::hcl::edit::Span;
use ::hcl::edit::expr::Expression;
use ::hcl::edit::structure::{Block, Body, Structure};
use ::hcl::eval::Context;

use super::expr::{self, to_node};
use super::sourcemap::SourceMap;
use crate::recipe::decode::suggest;
use crate::recipe::diag::Diagnostics;
use crate::recipe::json::{Member, Node, Pos, Value as JsonValue};

/// Evaluation state shared by every block of the recipe.
pub(crate) struct Lowerer<'a> {
    /// The files and spots.
    pub map: &'a mut SourceMap,
    /// Problems found.
    pub diags: &'a mut Diagnostics,
    /// `var`, `local`, `path` and the functions.
    pub ctx: Context<'static>,
    /// The values of `var.x` and `local.x`.
    pub known: expr::Known,
    /// Declared variable names.
    pub vars: BTreeSet<String>,
    /// Declared local names.
    pub locals: BTreeSet<String>,
    /// `var.x` / `local.x` without a value (already reported).
    pub unresolved: HashSet<String>,
    /// Synthetic lines whose value used an unresolved name: decoder errors there would only
    /// repeat the first one.
    pub tainted: HashSet<u32>,
}

/// The label of a block (`source "qemu" "x"` → `["qemu", "x"]`).
pub(crate) fn labels(block: &Block) -> Vec<String> {
    block
        .labels
        .iter()
        .map(|l| l.as_str().to_string())
        .collect()
}

/// A block's name for messages: `source.qemu.x`.
pub(crate) fn block_path(block: &Block) -> String {
    let mut p = block.ident.value().as_str().to_string();
    for l in labels(block) {
        p.push('.');
        p.push_str(&l);
    }
    p
}

impl Lowerer<'_> {
    /// Reports `message` at `span` of `file`.
    pub fn error(&mut self, file: usize, span: Option<Range<usize>>, path: &str, message: String) {
        let pos = self.map.start(file, span);
        let display = self.map.display(file).to_string();
        self.diags.error(&display, pos, path, message);
    }

    /// Reports a warning at `span` of `file`.
    pub fn warning(
        &mut self,
        file: usize,
        span: Option<Range<usize>>,
        path: &str,
        message: String,
    ) {
        let pos = self.map.start(file, span);
        let display = self.map.display(file).to_string();
        self.diags.warning(&display, pos, path, message);
    }

    /// Checks the `var.`/`local.` names `e` uses. `Err` when one is not declared (reported);
    /// `Ok(true)` when one has no value.
    pub fn check_refs(&mut self, file: usize, e: &Expression, path: &str) -> Result<bool, ()> {
        let mut ok = true;
        let mut tainted = false;
        for r in expr::refs(e) {
            let (declared, what) = match r.root.as_str() {
                "var" => (&self.vars, "variable"),
                "local" => (&self.locals, "local"),
                _ => continue,
            };
            let Some(name) = &r.name else {
                continue;
            };
            if !declared.contains(name) {
                let hint = suggest(name, declared.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean `{}.{s}`?)", r.root))
                    .unwrap_or_default();
                let how = if what == "variable" {
                    format!("declare it with a variable \"{name}\" {{}} block")
                } else {
                    format!("define it in a locals {{ {name} = … }} block")
                };
                let message = format!("`{}.{name}` is not a declared {what}{hint}: {how}", r.root);
                self.error(file, r.span, path, message);
                ok = false;
            } else if self.unresolved.contains(&format!("{}.{name}", r.root)) {
                tainted = true;
            }
        }
        if ok { Ok(tainted) } else { Err(()) }
    }

    /// Evaluates `e` in `ctx`; problems are reported at the expression.
    pub fn value(
        &mut self,
        file: usize,
        e: &Expression,
        path: &str,
        ctx: &Context,
    ) -> Option<(Value, bool)> {
        let tainted = self.check_refs(file, e, path).ok()?;
        match expr::eval_with(e, &self.known, ctx) {
            Ok(v) => Some((v, tainted)),
            Err(_) if tainted => None,
            Err(message) => {
                self.error(file, e.span(), path, format!("cannot evaluate: {message}"));
                None
            }
        }
    }

    /// A string attribute of `body`.
    pub fn string_attr(
        &mut self,
        file: usize,
        body: &Body,
        key: &str,
        path: &str,
        ctx: &Context,
    ) -> Option<String> {
        let attr = body.get_attribute(key)?;
        let path = format!("{path}.{key}");
        match self.value(file, &attr.value, &path, ctx)?.0 {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => {
                self.error(
                    file,
                    attr.value.span(),
                    &path,
                    format!("expected a string, got {}", super::functions::kind(&other)),
                );
                None
            }
        }
    }

    /// The attributes (and nested unlabeled blocks, as objects) of `body` as document members,
    /// leaving out `skip`. Attributes that evaluate to null are left out (unset).
    pub fn members(
        &mut self,
        file: usize,
        body: &Body,
        path: &str,
        ctx: &Context,
        skip: &[&str],
    ) -> Vec<Member> {
        let mut out = Vec::new();
        for s in body.iter() {
            match s {
                Structure::Attribute(attr) => {
                    let key = attr.key.value().as_str();
                    if skip.contains(&key) {
                        continue;
                    }
                    let attr_path = format!("{path}.{key}");
                    let Some((value, tainted)) = self.value(file, &attr.value, &attr_path, ctx)
                    else {
                        // Reported; kept as null at a tainted spot so the block is not also
                        // blamed for lacking the option.
                        let pos = self.map.spot(file, attr.value.span(), &attr_path);
                        self.tainted.insert(pos.line);
                        out.push(Member {
                            key: key.to_string(),
                            key_pos: pos,
                            value: Node {
                                pos,
                                value: JsonValue::Null,
                            },
                        });
                        continue;
                    };
                    if value == Value::Null {
                        continue;
                    }
                    let key_pos = self.map.spot(file, attr.key.span(), &attr_path);
                    let value_pos = self.map.spot(file, attr.value.span(), &attr_path);
                    if tainted {
                        self.tainted.insert(key_pos.line);
                        self.tainted.insert(value_pos.line);
                    }
                    out.push(Member {
                        key: key.to_string(),
                        key_pos,
                        value: to_node(&value, value_pos),
                    });
                }
                Structure::Block(block) => {
                    let ident = block.ident.value().as_str();
                    let block_path = format!("{path}.{}", super::lower::block_path(block));
                    if ident == "dynamic" {
                        self.error(
                            file,
                            block.ident.span(),
                            &block_path,
                            "`dynamic` blocks are not supported yet: write the blocks out".into(),
                        );
                        continue;
                    }
                    if !block.labels.is_empty() {
                        self.error(
                            file,
                            block.ident.span(),
                            &block_path,
                            format!("unexpected block `{ident}` with labels here"),
                        );
                        continue;
                    }
                    let key_pos = self.map.spot(file, block.ident.span(), &block_path);
                    let inner = self.members(file, &block.body, &block_path, ctx, &[]);
                    out.push(Member {
                        key: ident.to_string(),
                        key_pos,
                        value: Node {
                            pos: key_pos,
                            value: JsonValue::Object(inner),
                        },
                    });
                }
            }
        }
        out
    }
}

/// A `source` block.
pub(crate) struct SourceDef<'b> {
    /// The file it is in.
    pub file: usize,
    /// The builder type (`qemu`).
    pub ty: String,
    /// Its name.
    pub name: String,
    /// The block.
    pub block: &'b Block,
}

/// A source a build names: `source.qemu.x`, where, and its override block if any.
type SourceUse<'b> = (String, Option<Range<usize>>, Option<&'b Block>);

/// A `build` block.
pub(crate) struct BuildDef<'b> {
    /// The file it is in.
    pub file: usize,
    /// The block.
    pub block: &'b Block,
}

/// The lowered document and how its key paths read in HCL.
pub(crate) struct Lowered {
    /// The JSON-shaped document.
    pub root: Node,
    /// Document key path prefix → HCL block path.
    pub prefixes: Vec<(String, String)>,
    /// Every builder: the names `-only`/`-except` may give it (`qemu.x`, `build.qemu.x`)
    /// and its name in the document.
    pub builders: Vec<(Vec<String>, String)>,
}

/// One builder of the document: a source used by a build.
struct Builder {
    /// The builder name in the document.
    name: String,
    /// `qemu.x` (what `only`/`except` name).
    full: String,
    /// `qemu.y` when a build's source block renames it to `y`.
    renamed: String,
    /// The build block's index.
    build: usize,
}

fn synthetic(pos: Pos, key: &str, value: JsonValue) -> Member {
    Member {
        key: key.to_string(),
        key_pos: pos,
        value: Node { pos, value },
    }
}

/// The context of a provisioner or post-processor of `builder`: `source.name`/`source.type`
/// and `build.*` (the values known when it runs become the JSON reader's
/// `{{ build `Host` }}`).
fn plugin_context(
    ctx: &Context<'static>,
    builder: &Builder,
    build_name: Option<&str>,
) -> Context<'static> {
    let mut sctx = ctx.clone();
    let mut source_obj = ::hcl::Map::new();
    let (ty, sname) = builder.full.split_once('.').unwrap_or(("", &builder.full));
    source_obj.insert("name".to_string(), Value::String(sname.to_string()));
    source_obj.insert("type".to_string(), Value::String(ty.to_string()));
    sctx.declare_var("source", Value::Object(source_obj));
    let mut build_obj = ::hcl::Map::new();
    // The build's values a provisioner may use (`build.Host`), as in the JSON reader.
    for key in crate::recipe::interp::BUILD_VALUES {
        build_obj.insert(
            key.to_string(),
            Value::String(format!("{{{{ build `{key}` }}}}")),
        );
    }
    build_obj.insert(
        "name".to_string(),
        Value::String(build_name.unwrap_or_default().to_string()),
    );
    sctx.declare_var("build", Value::Object(build_obj));
    sctx
}

/// Whether a provisioner or post-processor block differs between builders: it has
/// `only`/`except`, or uses `source.*` or `build.*`.
fn per_builder(block: &Block) -> bool {
    fn uses(body: &Body) -> bool {
        body.iter().any(|s| match s {
            Structure::Attribute(a) => expr::refs(&a.value)
                .iter()
                .any(|r| r.root == "source" || r.root == "build"),
            Structure::Block(b) => uses(&b.body),
        })
    }
    let narrowed = |body: &Body| body.has_attribute("only") || body.has_attribute("except");
    narrowed(&block.body) || block.body.blocks().any(|b| narrowed(&b.body)) || uses(&block.body)
}

/// `source.qemu.x` / `qemu.x` → `qemu.x`.
fn source_ref(s: &str) -> &str {
    s.strip_prefix("source.").unwrap_or(s)
}

impl Lowerer<'_> {
    /// Lowers the sources and builds into the document.
    pub fn lower(&mut self, sources: &[SourceDef<'_>], builds: &[BuildDef<'_>]) -> Lowered {
        let mut prefixes = Vec::new();
        let mut builder_nodes = Vec::new();
        let mut builders: Vec<Builder> = Vec::new();
        let mut description = None;
        let build_paths: Vec<String> = (0..builds.len())
            .map(|i| {
                if builds.len() == 1 {
                    "build".to_string()
                } else {
                    format!("build[{i}]")
                }
            })
            .collect();
        let ctx = self.ctx.clone();
        let mut build_names: Vec<Option<String>> = Vec::new();

        for (bi, build) in builds.iter().enumerate() {
            let (file, body) = (build.file, &build.block.body);
            let bpath = &build_paths[bi];
            let build_name = self.string_attr(file, body, "name", bpath, &ctx);
            build_names.push(build_name.clone());
            if description.is_none() {
                description = self.string_attr(file, body, "description", bpath, &ctx);
            }
            // Sources: the `sources` list, then `source "source.qemu.x" { … }` blocks.
            let mut refs: Vec<SourceUse<'_>> = Vec::new();
            if let Some(attr) = body.get_attribute("sources") {
                let path = format!("{bpath}.sources");
                let spans: Vec<Option<Range<usize>>> = match &attr.value {
                    Expression::Array(a) => a.iter().map(|e| e.span()).collect(),
                    _ => Vec::new(),
                };
                match self.value(file, &attr.value, &path, &ctx).map(|v| v.0) {
                    Some(Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            let span = spans.get(i).cloned().flatten().or(attr.value.span());
                            match item {
                                Value::String(s) => refs.push((s.clone(), span, None)),
                                other => self.error(
                                    file,
                                    span,
                                    &format!("{path}[{i}]"),
                                    format!(
                                        "expected a source name like \"source.qemu.name\", got {}",
                                        super::functions::kind(other)
                                    ),
                                ),
                            }
                        }
                    }
                    Some(other) => self.error(
                        file,
                        attr.value.span(),
                        &path,
                        format!(
                            "expected a list of source names, got {}",
                            super::functions::kind(&other)
                        ),
                    ),
                    None => {}
                }
            }
            for block in body.get_blocks("source") {
                match labels(block).as_slice() {
                    [one] => refs.push((one.clone(), block.ident.span(), Some(block))),
                    _ => self.error(
                        file,
                        block.ident.span(),
                        &format!("{bpath}.source"),
                        "a source block in a build takes one label: source \"source.qemu.name\" { … }"
                            .into(),
                    ),
                }
            }
            if refs.is_empty() {
                self.error(
                    file,
                    build.block.ident.span(),
                    bpath,
                    "this build uses no source: add sources = [\"source.qemu.NAME\"]".into(),
                );
            }
            for (r, span, over) in refs {
                let wanted = source_ref(&r);
                let Some(def) = sources
                    .iter()
                    .find(|s| format!("{}.{}", s.ty, s.name) == wanted)
                else {
                    let names: Vec<String> = sources
                        .iter()
                        .map(|s| format!("source.{}.{}", s.ty, s.name))
                        .collect();
                    let hint = suggest(&r, names.iter().map(String::as_str))
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.error(
                        file,
                        span,
                        &format!("{bpath}.sources"),
                        format!(
                            "no source \"{r}\" is declared{hint}: declare it with source \"TYPE\" \"NAME\" {{ … }}"
                        ),
                    );
                    continue;
                };
                let spath = format!("source.{}.{}", def.ty, def.name);
                let mut sctx = ctx.clone();
                let mut source_obj = ::hcl::Map::new();
                source_obj.insert("name".to_string(), Value::String(def.name.clone()));
                source_obj.insert("type".to_string(), Value::String(def.ty.clone()));
                sctx.declare_var("source", Value::Object(source_obj));
                let mut name = def.name.clone();
                let over_members = match over {
                    Some(b) => {
                        let opath = format!("{bpath}.{}", block_path(b));
                        if let Some(n) = self.string_attr(file, &b.body, "name", &opath, &sctx) {
                            name = n;
                        }
                        if matches!(def.ty.as_str(), "qemu" | "null") {
                            self.members(file, &b.body, &opath, &sctx, &["name"])
                        } else {
                            Vec::new()
                        }
                    }
                    None => Vec::new(),
                };
                let type_pos = self.map.spot(
                    def.file,
                    def.block.labels.first().and_then(|l| l.span()),
                    &spath,
                );
                let block_pos = self.map.spot(def.file, def.block.ident.span(), &spath);
                let mut members = vec![
                    synthetic(type_pos, "type", JsonValue::String(def.ty.clone())),
                    synthetic(block_pos, "name", JsonValue::String(name.clone())),
                ];
                // kiln checks no option of the builders it does not run (as for JSON), so
                // their expressions are not evaluated either.
                let runs = matches!(def.ty.as_str(), "qemu" | "null");
                let own = if runs {
                    self.members(def.file, &def.block.body, &spath, &sctx, &[])
                } else {
                    Vec::new()
                };
                members.extend(
                    own.into_iter()
                        .filter(|m| !over_members.iter().any(|o| o.key == m.key)),
                );
                members.extend(over_members);
                prefixes.push((format!("builders[{}]", builder_nodes.len()), spath));
                builder_nodes.push(Node {
                    pos: block_pos,
                    value: JsonValue::Object(members),
                });
                builders.push(Builder {
                    renamed: format!("{}.{name}", def.ty),
                    name,
                    full: wanted.to_string(),
                    build: bi,
                });
            }
        }

        // Names: the source's (or its build source block's) name; Packer's `TYPE.NAME` when
        // two builders would share it (bento names every source `vm`); with the build's name
        // in front when that is not enough. Builders still sharing a name are reported by
        // the decoder.
        for level in 0..2 {
            let mut counts: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for b in &builders {
                *counts.entry(b.name.clone()).or_default() += 1;
            }
            for (i, b) in builders.iter_mut().enumerate() {
                if counts[&b.name] < 2 {
                    continue;
                }
                b.name = if level == 0 {
                    b.renamed.clone()
                } else {
                    let build = build_names[b.build]
                        .clone()
                        .unwrap_or_else(|| format!("build{}", b.build + 1));
                    format!("{build}.{}", b.renamed)
                };
                if let JsonValue::Object(members) = &mut builder_nodes[i].value
                    && let Some(m) = members.iter_mut().find(|m| m.key == "name")
                {
                    m.value.value = JsonValue::String(b.name.clone());
                }
            }
        }

        // Provisioners and post-processors: one copy for every builder when the build
        // covers them all and the block is the same for each; else one copy per builder of
        // the build, with `only` naming it (in block order, so each builder sees its own in
        // order).
        let mut provisioners = Vec::new();
        let mut post_processors = Vec::new();
        let mut cleanup: Option<Node> = None;
        let several = builders.len() > 1;
        for (bi, build) in builds.iter().enumerate() {
            let mine: Vec<&Builder> = builders.iter().filter(|b| b.build == bi).collect();
            let Some(&first) = mine.first() else {
                continue;
            };
            let covers_all = mine.len() == builders.len();
            let (file, body) = (build.file, &build.block.body);
            let bpath = &build_paths[bi];
            let contexts: Vec<Context<'static>> = mine
                .iter()
                .map(|b| plugin_context(&ctx, b, build_names[bi].as_deref()))
                .collect();
            let mut p_index = 0;
            let mut pp_index = 0;
            for s in body.iter() {
                let Structure::Block(block) = s else {
                    let Structure::Attribute(a) = s else { continue };
                    let key = a.key.value().as_str();
                    if !matches!(key, "name" | "description" | "sources") {
                        self.error(
                            file,
                            a.key.span(),
                            &format!("{bpath}.{key}"),
                            format!(
                                "unknown build attribute `{key}`: a build has name, description and sources"
                            ),
                        );
                    }
                    continue;
                };
                let shared = covers_all && !per_builder(block);
                let targets: Vec<usize> = if shared {
                    vec![0]
                } else {
                    (0..mine.len()).collect()
                };
                let own_only = several && !shared;
                let ident = block.ident.value().as_str();
                match ident {
                    "provisioner" => {
                        p_index += 1;
                        let ppath = format!("{bpath}.provisioner[{}]", p_index - 1);
                        for &t in &targets {
                            if let Some(node) = self.plugin_block(
                                file,
                                block,
                                &ppath,
                                &contexts[t],
                                mine[t],
                                own_only,
                            ) {
                                prefixes.push((
                                    format!("provisioners[{}]", provisioners.len()),
                                    ppath.clone(),
                                ));
                                provisioners.push(node);
                            }
                        }
                    }
                    "error-cleanup-provisioner" => {
                        // The recipe has one error-cleanup provisioner, for every build.
                        let ppath = format!("{bpath}.error-cleanup-provisioner");
                        if cleanup.is_some() {
                            self.error(
                                file,
                                block.ident.span(),
                                &ppath,
                                "kiln runs one error-cleanup-provisioner per recipe; this one comes after another".into(),
                            );
                            continue;
                        }
                        if let Some(node) =
                            self.plugin_block(file, block, &ppath, &contexts[0], first, false)
                        {
                            prefixes.push(("error-cleanup-provisioner".into(), ppath));
                            cleanup = Some(node);
                        }
                    }
                    "post-processor" => {
                        pp_index += 1;
                        let ppath = format!("{bpath}.post-processor[{}]", pp_index - 1);
                        for &t in &targets {
                            if let Some(node) = self.plugin_block(
                                file,
                                block,
                                &ppath,
                                &contexts[t],
                                mine[t],
                                own_only,
                            ) {
                                prefixes.push((
                                    format!("post-processors[{}]", post_processors.len()),
                                    ppath.clone(),
                                ));
                                post_processors.push(node);
                            }
                        }
                    }
                    "post-processors" => {
                        pp_index += 1;
                        let cpath = format!("{bpath}.post-processors[{}]", pp_index - 1);
                        for &t in &targets {
                            let k = post_processors.len();
                            let mut chain = Vec::new();
                            for inner in block.body.iter() {
                                match inner {
                                    Structure::Block(b)
                                        if b.ident.value().as_str() == "post-processor" =>
                                    {
                                        let ppath =
                                            format!("{cpath}.post-processor[{}]", chain.len());
                                        if let Some(node) = self.plugin_block(
                                            file,
                                            b,
                                            &ppath,
                                            &contexts[t],
                                            mine[t],
                                            own_only,
                                        ) {
                                            prefixes.push((
                                                format!("post-processors[{k}][{}]", chain.len()),
                                                ppath,
                                            ));
                                            chain.push(node);
                                        }
                                    }
                                    other => {
                                        let span = match other {
                                            Structure::Block(b) => b.ident.span(),
                                            Structure::Attribute(a) => a.key.span(),
                                        };
                                        self.error(
                                            file,
                                            span,
                                            &cpath,
                                            "a post-processors block holds post-processor \"TYPE\" { … } blocks only".into(),
                                        );
                                    }
                                }
                            }
                            if !chain.is_empty() {
                                prefixes.push((format!("post-processors[{k}]"), cpath.clone()));
                                let pos = self.map.spot(file, block.ident.span(), bpath);
                                post_processors.push(Node {
                                    pos,
                                    value: JsonValue::Array(chain),
                                });
                            }
                        }
                    }
                    "source" => {}
                    "hcp_packer_registry" => self.warning(
                        file,
                        block.ident.span(),
                        &format!("{bpath}.hcp_packer_registry"),
                        "HCP Packer registry is not used by kiln; the block is ignored".into(),
                    ),
                    other => {
                        let known = [
                            "source",
                            "provisioner",
                            "post-processor",
                            "post-processors",
                            "error-cleanup-provisioner",
                        ];
                        let hint = suggest(other, known.iter().copied())
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        self.error(
                            file,
                            block.ident.span(),
                            &format!("{bpath}.{other}"),
                            format!(
                                "unknown block `{other}` in a build{hint}: a build has source, provisioner, post-processor and post-processors blocks"
                            ),
                        );
                    }
                }
            }
        }

        let top = Pos { line: 0, col: 0 };
        let mut members = Vec::new();
        if let Some(d) = description {
            members.push(synthetic(top, "description", JsonValue::String(d)));
        }
        members.push(synthetic(top, "builders", JsonValue::Array(builder_nodes)));
        members.push(synthetic(
            top,
            "provisioners",
            JsonValue::Array(provisioners),
        ));
        members.push(synthetic(
            top,
            "post-processors",
            JsonValue::Array(post_processors),
        ));
        if let Some(c) = cleanup {
            members.push(Member {
                key: "error-cleanup-provisioner".into(),
                key_pos: c.pos,
                value: c,
            });
        }
        let builders = builders
            .iter()
            .map(|b| {
                let mut aliases = vec![
                    b.full.clone(),
                    format!("source.{}", b.full),
                    b.renamed.clone(),
                ];
                if let Some(n) = &build_names[b.build] {
                    aliases.push(format!("{n}.{}", b.full));
                }
                (aliases, b.name.clone())
            })
            .collect();
        Lowered {
            builders,
            root: Node {
                pos: top,
                value: JsonValue::Object(members),
            },
            prefixes,
        }
    }

    /// A `provisioner "TYPE" { … }` / `post-processor "TYPE" { … }` block for `builder`, or
    /// `None` when its `only`/`except` leave the builder out (or it is broken, reported).
    fn plugin_block(
        &mut self,
        file: usize,
        block: &Block,
        path: &str,
        ctx: &Context,
        builder: &Builder,
        several: bool,
    ) -> Option<Node> {
        let ls = labels(block);
        let [ty] = ls.as_slice() else {
            self.error(
                file,
                block.ident.span(),
                path,
                format!(
                    "a {} block takes one label, its type: {} \"shell\" {{ … }}",
                    block.ident.value().as_str(),
                    block.ident.value().as_str()
                ),
            );
            return None;
        };
        for (key, keep_if_listed) in [("only", true), ("except", false)] {
            let Some(attr) = block.body.get_attribute(key) else {
                continue;
            };
            let kpath = format!("{path}.{key}");
            let list = match self.value(file, &attr.value, &kpath, ctx)?.0 {
                Value::Array(items) => items,
                // `except = var.is_windows ? local.names : null` (bento): not narrowed.
                Value::Null => continue,
                other => {
                    self.error(
                        file,
                        attr.value.span(),
                        &kpath,
                        format!(
                            "expected a list of source names like [\"qemu.name\"], got {}",
                            super::functions::kind(&other)
                        ),
                    );
                    return None;
                }
            };
            let listed = list.iter().any(|v| {
                matches!(v, Value::String(s)
                    if [&builder.full, &builder.renamed, &builder.name].contains(&&source_ref(s).to_string()))
            });
            if listed != keep_if_listed {
                return None;
            }
        }
        let pos = self.map.spot(file, block.labels[0].span(), path);
        let mut members = vec![synthetic(pos, "type", JsonValue::String(ty.clone()))];
        members.extend(self.members(file, &block.body, path, ctx, &["only", "except"]));
        if several {
            members.push(synthetic(
                pos,
                "only",
                JsonValue::Array(vec![Node {
                    pos,
                    value: JsonValue::String(builder.name.clone()),
                }]),
            ));
        }
        Some(Node {
            pos,
            value: JsonValue::Object(members),
        })
    }
}
