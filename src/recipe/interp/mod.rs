//! Packer's template language (a subset of Go's `text/template`): `{{user `x`}}`,
//! `{{timestamp}}`, `{{ .HTTPPort }}`, pipelines and the functions Packer defines.
//!
//! # Grammar
//!
//! A template is literal text with actions between `{{` and `}}`. Inside an action:
//!
//! ```text
//! action   = pipeline
//! pipeline = command { "|" command }          the value of each command is passed as the
//!                                             LAST argument of the next one (Go semantics)
//! command  = operand { space operand }        a function followed by its arguments, or a
//!                                             single non-function operand (first stage only)
//! operand  = "string" | `raw string` | integer | .Field | function | "(" pipeline ")"
//! ```
//!
//! * `{{- ` trims the white space before the action and ` -}}` the white space after it
//!   (space, tab, CR, LF — as in Go); `{{/* comment */}}` (also `{{- /* … */ -}}`) renders
//!   nothing.
//! * Double-quoted strings take Go escapes (`\n`, `\t`, `\"`, `\\`, `\x41`, `\101`, `\u00e9`,
//!   `\U0001F600`, …); raw strings (backticks) take none and, as in Go, drop carriage returns.
//! * Integers: decimal, `0x`/`0o`/`0b`/leading-`0` octal, `_` separators, optional sign.
//! * A function used as an argument without parentheses is called with no arguments, as in
//!   Go (`{{split build_name "-" 0}}`).
//! * Go's control structures (`if`, `range`, `with`, `define`, `template`, `block`, `else`,
//!   `end`, `break`, `continue`), variables (`$x`, `:=`, `=`), `true`/`false`/`nil`,
//!   character constants and floating-point numbers are refused with [`InterpError::Syntax`].
//! * Parentheses nest at most [`MAX_NESTING`] levels deep.
//!
//! # Functions
//!
//! Argument orders are those of Packer's `template/interpolate/funcs.go` (packer-plugin-sdk):
//!
//! | function | arguments |
//! | --- | --- |
//! | `user` | `NAME` |
//! | `env` | `NAME` (variables section only; unset → empty) |
//! | `timestamp` | — (Unix seconds of the run's start) |
//! | `isotime` | `[LAYOUT]` (Go reference-time layout; default RFC 3339), in UTC |
//! | `uuid` | — (a new random UUID on every call) |
//! | `build_name`, `build_type`, `pwd`, `template_dir` | — |
//! | `upper`, `lower`, `clean_resource_name` | `STRING` |
//! | `replace` | `OLD NEW N STRING` (Go `strings.Replace(STRING, OLD, NEW, N)`) |
//! | `replace_all` | `OLD NEW STRING` |
//! | `split` | `STRING SEPARATOR INDEX` |
//! | `build` | `NAME` (read like the context field `.NAME`) |
//!
//! `consul_key`, `vault`, `aws_secretsmanager`, `aws_secretsmanager_raw`, `packer_version`,
//! `strftime` and `sed` exist in Packer but are refused with [`InterpError::Unsupported`].
//!
//! # Deferred fields
//!
//! A context field listed with `None` in [`Context::fields`] is known only later (at build
//! time): any action that uses it — alone, in a pipeline or as an argument — is copied to the
//! output verbatim, trim markers included, so that a later pass can render it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::isotime;

/// Facts fixed once per run, shared by every interpolation of that run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The moment the run started; `timestamp` and `isotime` read it.
    pub started: DateTime<Utc>,
    /// Current working directory (`{{pwd}}`).
    pub pwd: String,
    /// Directory holding the template file (`{{template_dir}}`).
    pub template_dir: String,
}

/// Where an interpolation happens and what it may see.
pub struct Context<'a> {
    /// Resolved user variables (`{{user `name`}}`); a name not in the map is undeclared.
    pub vars: &'a BTreeMap<String, String>,
    /// Whether `{{env `X`}}` is allowed here (only in the variables section, as in Packer).
    pub allow_env: bool,
    /// Looks up an environment variable (injected so tests need not touch the process env).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Run-wide facts.
    pub run: &'a RunInfo,
    /// `{{build_name}}`, when known at this place.
    pub build_name: Option<&'a str>,
    /// `{{build_type}}`, when known at this place.
    pub build_type: Option<&'a str>,
    /// Context fields (`{{ .HTTPPort }}`) allowed at this place. `Some(value)` renders the value;
    /// `None` means "allowed but not known yet": the action is kept verbatim so a later pass
    /// (at build time) can fill it in.
    pub fields: &'a [(&'a str, Option<String>)],
}

/// What went wrong while parsing or rendering a template string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// Malformed template syntax.
    #[error("template syntax: {message}")]
    Syntax {
        /// Byte offset into the template string.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A function Packer does not define.
    #[error("unknown template function `{name}`")]
    UnknownFunction {
        /// Byte offset into the template string.
        offset: usize,
        /// The function name.
        name: String,
    },
    /// A Packer function kiln refuses (`consul_key`, `vault`, `aws_secretsmanager`).
    #[error("template function `{name}` is not supported by kiln{hint}", hint = unsupported_hint(.name))]
    Unsupported {
        /// Byte offset into the template string.
        offset: usize,
        /// The function name.
        name: String,
    },
    /// `{{user `name`}}` for a variable that is not declared.
    #[error("undeclared variable `{name}`")]
    UndeclaredVariable {
        /// Byte offset into the template string.
        offset: usize,
        /// The variable name.
        name: String,
    },
    /// `{{env ...}}` outside the variables section.
    #[error("`env` can only be used in the variables section")]
    EnvNotAllowed {
        /// Byte offset into the template string.
        offset: usize,
    },
    /// A context field that does not exist at this place.
    #[error("`.{field}` is not available here")]
    FieldNotAllowed {
        /// Byte offset into the template string.
        offset: usize,
        /// The field name without the dot.
        field: String,
    },
    /// A function called with the wrong number or kind of arguments.
    #[error("`{function}`: {message}")]
    BadArguments {
        /// Byte offset into the template string.
        offset: usize,
        /// The function name.
        function: String,
        /// What is wrong.
        message: String,
    },
}

/// What to do instead of a refused function (appended to [`InterpError::Unsupported`]'s text).
fn unsupported_hint(name: &str) -> &'static str {
    match name {
        "consul_key" | "vault" | "aws_secretsmanager" | "aws_secretsmanager_raw" => {
            ": kiln does not fetch secrets from external stores; pass the value with \
             -var or -var-file (or keep it in the keyring) and read it with {{user `name`}}"
        }
        "packer_version" => {
            ": kiln is not Packer and has no Packer version; write the value you want \
             literally or pass it with -var"
        }
        "strftime" => ": use isotime with a Go layout instead, e.g. {{isotime \"2006-01-02\"}}",
        "sed" => ": Packer removed it too; use replace or replace_all",
        _ => "",
    }
}

/// The values `{{ build `Name` }}` gives (Packer's "generated data" of a build), known once
/// the VM is up: provisioners use them to reach the VM (Ansible through the forwarded port).
pub const BUILD_VALUES: &[&str] = &[
    "ID",
    "Host",
    "Port",
    "User",
    "Password",
    "ConnType",
    "PackerRunUUID",
    "PackerHTTPIP",
    "PackerHTTPPort",
    "PackerHTTPAddr",
    "SSHPublicKey",
    "SSHPrivateKey",
];

/// Every build value as a context field not known yet (provisioners are decoded with these,
/// and rendered with the values when they run).
pub const BUILD_VALUES_DEFERRED: [(&str, Option<String>); 12] = [
    ("build ID", None),
    ("build Host", None),
    ("build Port", None),
    ("build User", None),
    ("build Password", None),
    ("build ConnType", None),
    ("build PackerRunUUID", None),
    ("build PackerHTTPIP", None),
    ("build PackerHTTPPort", None),
    ("build PackerHTTPAddr", None),
    ("build SSHPublicKey", None),
    ("build SSHPrivateKey", None),
];

/// The context-field name a build value travels under (a name `.X` cannot spell, so only
/// `{{ build `X` }}` reaches it).
pub fn build_field(name: &str) -> String {
    format!("build {name}")
}

/// Deepest nesting of parenthesised sub-pipelines an action may have.
pub const MAX_NESTING: usize = 64;

/// Renders `src` in `ctx`.
pub fn render(src: &str, ctx: &Context<'_>) -> Result<String, InterpError> {
    if !src.contains("{{") {
        return Ok(src.to_string());
    }
    with_scratch(src, |src, bufs| {
        render_nodes(src, &bufs.nodes, &bufs.ast, ctx)
    })?
}

/// Renders the build-time pass of a string whose user variables and functions were already
/// rendered when the recipe was loaded: only context fields (`{{ .Path }}`,
/// `{{ .SSHHostPort }}`, …) are left, and `fields` gives their values.
pub fn render_fields(src: &str, fields: &[(&str, Option<String>)]) -> Result<String, InterpError> {
    if !src.contains("{{") {
        return Ok(src.to_string());
    }
    let vars = BTreeMap::new();
    let run = RunInfo {
        started: chrono::Utc::now(),
        pwd: String::new(),
        template_dir: String::new(),
    };
    let ctx = Context {
        vars: &vars,
        allow_env: false,
        env: &|_| None,
        run: &run,
        build_name: None,
        build_type: None,
        fields,
    };
    render(src, &ctx)
}

/// Names of the user variables that `src` references through `user`, in order of appearance,
/// without duplicates. Used to resolve variables in dependency order.
pub fn referenced_variables(src: &str) -> Result<Vec<String>, InterpError> {
    if !src.contains("{{") {
        return Ok(Vec::new());
    }
    with_scratch(src, |src, bufs| user_names(src, &bufs.nodes, &bufs.ast))
}

/// Parse buffers, reused by [`render`] and [`referenced_variables`] so that parsing a string
/// allocates nothing once the buffers have grown.
#[derive(Default)]
struct Bufs {
    nodes: Vec<Node>,
    ast: Ast,
    stacks: Stacks,
    parens: Vec<usize>,
}

impl Bufs {
    fn clear(&mut self) {
        self.nodes.clear();
        self.ast.ops.clear();
        self.ast.cmds.clear();
        self.ast.pipes.clear();
        self.stacks.ops.clear();
        self.stacks.cmds.clear();
        self.parens.clear();
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Bufs> = std::cell::RefCell::new(Bufs::default());
}

/// Parses `src` into the thread's scratch buffers (fresh ones if they are in use, e.g. when
/// an `env` callback renders a template itself) and runs `f` on the result.
fn with_scratch<T>(src: &str, f: impl FnOnce(&str, &Bufs) -> T) -> Result<T, InterpError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            bufs.clear();
            let parsed = parse_into(src, &mut bufs);
            let result = parsed.map(|()| f(src, &bufs));
            // Do not keep the memory of an unusually large template.
            if bufs.ast.ops.capacity() > 1 << 16 || bufs.nodes.capacity() > 1 << 16 {
                *bufs = Bufs::default();
            }
            result
        }
        Err(_) => {
            let mut bufs = Bufs::default();
            parse_into(src, &mut bufs)?;
            Ok(f(src, &bufs))
        }
    })
}

/// Parses `src` once, to render it later (possibly many times) with [`Tmpl::render`].
///
/// Syntax errors and unknown functions are reported here; everything that depends on the
/// [`Context`] (undeclared variables, fields, refused functions, argument types) is reported
/// by [`Tmpl::render`].
pub fn parse(src: &str) -> Result<Tmpl<'_>, InterpError> {
    let mut bufs = Bufs::default();
    parse_into(src, &mut bufs)?;
    Ok(Tmpl {
        src,
        nodes: bufs.nodes,
        ast: bufs.ast,
    })
}

/// Parses `src` into `bufs` (which must be clear).
fn parse_into(src: &str, bufs: &mut Bufs) -> Result<(), InterpError> {
    let b = src.as_bytes();
    let Bufs {
        nodes,
        ast,
        stacks,
        parens,
    } = bufs;
    let mut pos = 0;
    // Whether the previous action ended with ` -}}`.
    let mut trim_next = false;
    loop {
        let Some(open) = find_open(src, pos) else {
            push_text(nodes, src, pos, src.len(), trim_next, false);
            break;
        };
        let after = open + 2;
        let left_trim = has_left_trim_marker(b, after);
        push_text(nodes, src, pos, open, trim_next, left_trim);
        let inner = if left_trim { after + 2 } else { after };
        if b[inner..].starts_with(b"/*") {
            let Some(close) = src[inner + 2..].find("*/") else {
                return Err(syntax(open, "unclosed comment: missing `*/}}`"));
            };
            let p = inner + 2 + close + 2;
            let Some(trim) = at_right_delim(b, p) else {
                return Err(syntax(
                    p,
                    "comment ends before the closing delimiter: `*/` must be followed by `}}`",
                ));
            };
            pos = p + if trim { 4 } else { 2 };
            trim_next = trim;
            continue;
        }
        parens.clear();
        let mut parser = Parser {
            lex: Lexer {
                src,
                p: inner,
                open,
                parens,
                last: None,
            },
            peeked: None,
            open,
            ast,
            stacks,
        };
        let pipe = parser.parse_pipeline(None)?;
        let (end, trim) = match parser.next().tok {
            Tok::End { end, trim } => (end, trim),
            // parse_pipeline only returns at the end of the action.
            _ => return Err(syntax(open, "unclosed action: missing `}}`")),
        };
        nodes.push(Node::Action {
            start: open,
            end,
            pipe,
        });
        pos = end;
        trim_next = trim;
    }
    Ok(())
}

/// Adds the literal text `src[start..end]`, without its leading and/or trailing white space
/// when the neighbouring actions have trim markers.
fn push_text(
    nodes: &mut Vec<Node>,
    src: &str,
    mut start: usize,
    mut end: usize,
    trim_start: bool,
    trim_end: bool,
) {
    let b = src.as_bytes();
    if trim_start {
        while start < end && is_space(b[start]) {
            start += 1;
        }
    }
    if trim_end {
        while end > start && is_space(b[end - 1]) {
            end -= 1;
        }
    }
    if start < end {
        nodes.push(Node::Text(Span {
            start,
            len: end - start,
        }));
    }
}

/// The offset of the next `{{` at or after `pos` (a char boundary).
fn find_open(src: &str, mut pos: usize) -> Option<usize> {
    let b = src.as_bytes();
    while let Some(rel) = src[pos..].find('{') {
        let i = pos + rel;
        if b.get(i + 1) == Some(&b'{') {
            return Some(i);
        }
        pos = i + 1;
    }
    None
}

/// A parsed template: literal text and actions, ready to render any number of times.
#[derive(Debug, Clone)]
pub struct Tmpl<'s> {
    src: &'s str,
    nodes: Vec<Node>,
    ast: Ast,
}

impl Tmpl<'_> {
    /// Renders the template in `ctx`.
    pub fn render(&self, ctx: &Context<'_>) -> Result<String, InterpError> {
        render_nodes(self.src, &self.nodes, &self.ast, ctx)
    }

    /// Names of the user variables referenced through `user` with a literal name
    /// (`{{user "x"}}`, `{{user `x`}}`, `{{"x" | user}}`), in order, without duplicates.
    pub fn referenced_variables(&self) -> Vec<String> {
        user_names(self.src, &self.nodes, &self.ast)
    }

    /// Whether the template has no actions (rendering returns its text unchanged, apart from
    /// comments and trimmed white space).
    pub fn is_literal(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n, Node::Text(_)))
    }
}

fn render_nodes(
    src: &str,
    nodes: &[Node],
    ast: &Ast,
    ctx: &Context<'_>,
) -> Result<String, InterpError> {
    let mut out = String::with_capacity(src.len() + src.len() / 4);
    let eval = Eval { src, ast, ctx };
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(&src[text.range()]),
            Node::Action { start, end, pipe } => match eval.pipe(*pipe)?.0 {
                Val::Str(s) => out.push_str(&s),
                Val::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                Val::Deferred => out.push_str(&src[*start..*end]),
            },
        }
    }
    Ok(out)
}

fn user_names(src: &str, nodes: &[Node], ast: &Ast) -> Vec<String> {
    let mut names = Vec::new();
    for node in nodes {
        if let Node::Action { pipe, .. } = node {
            ast.collect_user_names(src, *pipe, &mut names);
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// Syntax tree: every operand, command and pipeline of a template lives in one of three flat
// arrays, so parsing allocates nothing per action.

#[derive(Debug, Clone)]
enum Node {
    /// Literal text, already trimmed.
    Text(Span),
    /// An action; `start..end` is its source text from `{{` to `}}` inclusive; `pipe` indexes
    /// [`Ast::pipes`].
    Action {
        start: usize,
        end: usize,
        pipe: usize,
    },
}

/// A range of the source text or of one of the [`Ast`] arrays.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

#[derive(Debug, Clone, Default)]
struct Ast {
    /// The operands of all commands.
    ops: Vec<Operand>,
    /// Commands: never-empty spans of `ops`; the first operand is the function (or the lone
    /// operand of a first stage).
    cmds: Vec<Span>,
    /// Pipelines: never-empty spans of `cmds`.
    pipes: Vec<Span>,
}

impl Ast {
    fn collect_user_names(&self, src: &str, pipe: usize, names: &mut Vec<String>) {
        fn push(names: &mut Vec<String>, name: &str) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let cmds = &self.cmds[self.pipes[pipe].range()];
        let mut nested = Vec::new();
        for (k, cmd) in cmds.iter().enumerate() {
            let ops = &self.ops[cmd.range()];
            if let OpKind::Func(Func::User) = ops[0].kind {
                match ops.get(1).map(|a| &a.kind) {
                    Some(OpKind::Str(name)) => push(names, name.as_str(src)),
                    None if k > 0 => {
                        if let [
                            Operand {
                                kind: OpKind::Str(name),
                                ..
                            },
                        ] = &self.ops[cmds[k - 1].range()]
                        {
                            push(names, name.as_str(src));
                        }
                    }
                    _ => {}
                }
            }
            for op in ops {
                if let OpKind::Pipe(inner) = op.kind {
                    nested.push(inner);
                }
            }
            for inner in nested.drain(..) {
                self.collect_user_names(src, inner, names);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Operand {
    offset: usize,
    kind: OpKind,
}

#[derive(Debug, Clone)]
enum OpKind {
    Str(Lit),
    Int(i64),
    /// Where the field name (without the leading dot; `A.B` for a chain) is in the source.
    Field(Span),
    Func(Func),
    /// A parenthesised pipeline: an index into [`Ast::pipes`].
    Pipe(usize),
}

/// A string literal's value: a span of the source when it has no escapes, else decoded.
#[derive(Debug, Clone)]
enum Lit {
    Src(Span),
    Owned(Box<str>),
}

impl Lit {
    fn as_str<'v>(&'v self, src: &'v str) -> &'v str {
        match self {
            Lit::Src(span) => &src[span.range()],
            Lit::Owned(s) => s,
        }
    }
}

impl OpKind {
    fn describe(&self, src: &str) -> String {
        match self {
            OpKind::Str(s) => format!("the string {:?}", s.as_str(src)),
            OpKind::Int(i) => format!("the number {i}"),
            OpKind::Field(f) => format!("the field `.{}`", &src[f.range()]),
            OpKind::Func(f) => format!("the function `{}`", f.name()),
            OpKind::Pipe(_) => "a parenthesised expression".to_string(),
        }
    }
}

/// The functions Packer's legacy templates know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    BuildName,
    BuildType,
    Env,
    Isotime,
    Pwd,
    Split,
    TemplateDir,
    Timestamp,
    Uuid,
    User,
    Replace,
    ReplaceAll,
    Upper,
    Lower,
    CleanResourceName,
    Build,
    /// Known to Packer, refused by kiln.
    Refused(&'static str),
}

/// The kind of a function parameter (Go converts arguments to the parameter's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Str,
    Int,
}

const REFUSED: [&str; 7] = [
    "consul_key",
    "vault",
    "aws_secretsmanager",
    "aws_secretsmanager_raw",
    "packer_version",
    "strftime",
    "sed",
];

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "build_name" => Func::BuildName,
            "build_type" => Func::BuildType,
            "env" => Func::Env,
            "isotime" => Func::Isotime,
            "pwd" => Func::Pwd,
            "split" => Func::Split,
            "template_dir" => Func::TemplateDir,
            "timestamp" => Func::Timestamp,
            "uuid" => Func::Uuid,
            "user" => Func::User,
            "replace" => Func::Replace,
            "replace_all" => Func::ReplaceAll,
            "upper" => Func::Upper,
            "lower" => Func::Lower,
            "clean_resource_name" => Func::CleanResourceName,
            "build" => Func::Build,
            _ => {
                return REFUSED
                    .iter()
                    .find(|r| **r == name)
                    .map(|r| Func::Refused(r));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::BuildName => "build_name",
            Func::BuildType => "build_type",
            Func::Env => "env",
            Func::Isotime => "isotime",
            Func::Pwd => "pwd",
            Func::Split => "split",
            Func::TemplateDir => "template_dir",
            Func::Timestamp => "timestamp",
            Func::Uuid => "uuid",
            Func::User => "user",
            Func::Replace => "replace",
            Func::ReplaceAll => "replace_all",
            Func::Upper => "upper",
            Func::Lower => "lower",
            Func::CleanResourceName => "clean_resource_name",
            Func::Build => "build",
            Func::Refused(name) => name,
        }
    }

    /// Parameter kinds and the number of optional trailing ones.
    fn params(self) -> (&'static [Param], usize) {
        use Param::{Int, Str};
        match self {
            Func::BuildName
            | Func::BuildType
            | Func::Pwd
            | Func::TemplateDir
            | Func::Timestamp
            | Func::Uuid
            | Func::Refused(_) => (&[], 0),
            Func::Isotime => (&[Str], 1),
            Func::Env
            | Func::User
            | Func::Upper
            | Func::Lower
            | Func::CleanResourceName
            | Func::Build => (&[Str], 0),
            Func::Split => (&[Str, Str, Int], 0),
            Func::Replace => (&[Str, Str, Int, Str], 0),
            Func::ReplaceAll => (&[Str, Str, Str], 0),
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Func::Env => "{{env `NAME`}}",
            Func::User => "{{user `name`}}",
            Func::Build => "{{build `Name`}}",
            Func::Isotime => "{{isotime}} or {{isotime `2006-01-02`}}",
            Func::Upper => "{{upper `text`}} or {{... | upper}}",
            Func::Lower => "{{lower `text`}} or {{... | lower}}",
            Func::CleanResourceName => {
                "{{clean_resource_name `text`}} or {{... | clean_resource_name}}"
            }
            Func::Split => "{{split `text` `separator` INDEX}}",
            Func::Replace => {
                "{{replace `old` `new` COUNT `text`}} or {{... | replace `old` `new` COUNT}}"
            }
            Func::ReplaceAll => {
                "{{replace_all `old` `new` `text`}} or {{... | replace_all `old` `new`}}"
            }
            Func::BuildName => "{{build_name}}",
            Func::BuildType => "{{build_type}}",
            Func::Pwd => "{{pwd}}",
            Func::TemplateDir => "{{template_dir}}",
            Func::Timestamp => "{{timestamp}}",
            Func::Uuid => "{{uuid}}",
            Func::Refused(_) => "",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer (the rules of Go's text/template/parse/lex.go, inside one action), producing tokens
// on demand so that, as in Go, the first error in reading order is the one reported.

#[derive(Debug, Clone)]
struct Token<'s> {
    off: usize,
    tok: Tok<'s>,
}

#[derive(Debug, Clone)]
enum Tok<'s> {
    Space,
    Pipe,
    LParen,
    RParen,
    Str(Lit),
    Int(i64),
    /// Where the field name (without the dot) is.
    Field(Span),
    Dot,
    Ident(&'s str),
    /// Any other printable ASCII character (never valid here).
    Char(char),
    /// The closing `}}`; `end` is the offset just past it, `trim` whether it was ` -}}`.
    End {
        end: usize,
        trim: bool,
    },
    /// A lexical error.
    Bad(Box<InterpError>),
}

impl Tok<'_> {
    /// Whether the token starts an operand.
    fn starts_operand(&self) -> bool {
        matches!(
            self,
            Tok::Str(_) | Tok::Int(_) | Tok::Field(_) | Tok::Dot | Tok::Ident(_) | Tok::LParen
        )
    }
}

fn syntax(offset: usize, message: impl Into<String>) -> InterpError {
    InterpError::Syntax {
        offset,
        message: message.into(),
    }
}

fn construct(offset: usize, what: &str) -> InterpError {
    syntax(
        offset,
        format!(
            "kiln does not support the Go template construct `{what}` in recipes: only function \
             calls, pipelines and context fields such as `.HTTPIP` are available"
        ),
    )
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `{{-` followed by a space: Go's left trim marker (checked at the byte after `{{`).
fn has_left_trim_marker(b: &[u8], p: usize) -> bool {
    b.get(p) == Some(&b'-') && b.get(p + 1).is_some_and(|c| is_space(*c))
}

/// Whether a closing delimiter starts at `p`: `Some(false)` for `}}`, `Some(true)` for ` -}}`.
fn at_right_delim(b: &[u8], p: usize) -> Option<bool> {
    let rest = b.get(p..)?;
    if rest.starts_with(b"}}") {
        Some(false)
    } else if rest.len() >= 4 && is_space(rest[0]) && rest[1..].starts_with(b"-}}") {
        Some(true)
    } else {
        None
    }
}

/// Whether an identifier or field may end at `p` (Go's `atTerminator`).
fn at_terminator(b: &[u8], p: usize) -> bool {
    match b.get(p) {
        None => true,
        Some(&c) if is_space(c) => true,
        Some(b'.' | b',' | b'|' | b':' | b')' | b'(') => true,
        Some(_) => b[p..].starts_with(b"}}"),
    }
}

struct Lexer<'s, 'b> {
    src: &'s str,
    /// Where the next token starts.
    p: usize,
    /// Offset of the action's `{{`.
    open: usize,
    /// Offsets of the open parentheses.
    parens: &'b mut Vec<usize>,
    /// The final token (`End` or `Bad`) once reached; returned again on every later call.
    last: Option<Token<'s>>,
}

impl<'s> Lexer<'s, '_> {
    fn next(&mut self) -> Token<'s> {
        if let Some(t) = &self.last {
            return t.clone();
        }
        let t = self.scan();
        if matches!(t.tok, Tok::End { .. } | Tok::Bad(_)) {
            self.last = Some(t.clone());
        }
        t
    }

    fn scan(&mut self) -> Token<'s> {
        let src = self.src;
        let b = src.as_bytes();
        let bad = |e: InterpError| Token {
            off: 0,
            tok: Tok::Bad(Box::new(e)),
        };
        let p = self.p;
        if let Some(trim) = at_right_delim(b, p) {
            if let Some(&po) = self.parens.last() {
                return bad(syntax(
                    po,
                    "unclosed `(`: missing `)` before the end of the action",
                ));
            }
            let end = p + if trim { 4 } else { 2 };
            self.p = end;
            return Token {
                off: p,
                tok: Tok::End { end, trim },
            };
        }
        let Some(c) = src[p..].chars().next() else {
            return bad(syntax(self.open, "unclosed action: missing `}}`"));
        };
        let (tok, next) = match c {
            ' ' | '\t' | '\r' | '\n' => {
                let mut q = p;
                while q < b.len() && is_space(b[q]) {
                    q += 1;
                }
                // The last space may belong to a trim-marked delimiter ` -}}` (never the
                // first one: that case was caught above).
                if at_right_delim(b, q - 1) == Some(true) {
                    q -= 1;
                }
                (Tok::Space, q)
            }
            '|' => (Tok::Pipe, p + 1),
            '(' => {
                if self.parens.len() >= MAX_NESTING {
                    return bad(syntax(
                        p,
                        format!("parentheses nested more than {MAX_NESTING} levels deep"),
                    ));
                }
                self.parens.push(p);
                (Tok::LParen, p + 1)
            }
            ')' => {
                if self.parens.pop().is_none() {
                    return bad(syntax(p, "unexpected `)` without a matching `(`"));
                }
                (Tok::RParen, p + 1)
            }
            '"' => match lex_quoted(src, p) {
                Ok((s, q)) => (Tok::Str(s), q),
                Err(e) => return bad(e),
            },
            '`' => match src[p + 1..].find('`') {
                Some(len) => {
                    let raw = &src[p + 1..p + 1 + len];
                    // Go's strconv.Unquote drops carriage returns from raw strings.
                    let value = if raw.contains('\r') {
                        Lit::Owned(raw.replace('\r', "").into())
                    } else {
                        Lit::Src(Span { start: p + 1, len })
                    };
                    (Tok::Str(value), p + len + 2)
                }
                None => {
                    return bad(syntax(
                        p,
                        "unterminated raw string: missing closing backtick",
                    ));
                }
            },
            '$' => {
                let name_end = scan_alnum(src, p + 1);
                return bad(construct(p, &src[p..name_end]));
            }
            '\'' => {
                return bad(syntax(
                    p,
                    "character constants are not supported: write strings in double quotes \
                     or backticks",
                ));
            }
            ':' => {
                let what = if b.get(p + 1) == Some(&b'=') {
                    ":="
                } else {
                    ":"
                };
                return bad(construct(p, what));
            }
            '=' => return bad(construct(p, "=")),
            '.' if !b.get(p + 1).is_some_and(u8::is_ascii_digit) => {
                let q = p + 1;
                if at_terminator(b, q) {
                    (Tok::Dot, q)
                } else {
                    let end = scan_alnum(src, q);
                    if !at_terminator(b, end) {
                        return bad(bad_char(src, end));
                    }
                    (
                        Tok::Field(Span {
                            start: q,
                            len: end - q,
                        }),
                        end,
                    )
                }
            }
            '.' | '+' | '-' | '0'..='9' => match lex_number(src, p) {
                Ok((value, q)) => (Tok::Int(value), q),
                Err(e) => return bad(e),
            },
            c if is_alnum(c) => {
                let end = scan_alnum(src, p);
                if !at_terminator(b, end) {
                    return bad(bad_char(src, end));
                }
                let word = &src[p..end];
                match word {
                    "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
                    | "break" | "continue" => return bad(construct(p, word)),
                    "true" | "false" | "nil" => {
                        return bad(syntax(
                            p,
                            format!(
                                "`{word}` is not supported in recipes: only strings and \
                                 integers are"
                            ),
                        ));
                    }
                    _ => (Tok::Ident(word), end),
                }
            }
            c if c.is_ascii() && !c.is_ascii_control() => (Tok::Char(c), p + 1),
            c => {
                return bad(syntax(
                    p,
                    format!(
                        "unexpected character {c:?} (U+{:04X}) in an action",
                        u32::from(c)
                    ),
                ));
            }
        };
        self.p = next;
        Token { off: p, tok }
    }
}

/// The end of the run of identifier characters starting at `p`.
fn scan_alnum(src: &str, p: usize) -> usize {
    let b = src.as_bytes();
    let mut q = p;
    // ASCII fast path; `q` stays on a char boundary (it only passes ASCII bytes).
    while q < b.len() && (b[q].is_ascii_alphanumeric() || b[q] == b'_') {
        q += 1;
    }
    if q < b.len() && !b[q].is_ascii() {
        return src[q..]
            .char_indices()
            .find(|&(_, c)| !is_alnum(c))
            .map_or(src.len(), |(i, _)| q + i);
    }
    q
}

/// The error for a character that may not follow an identifier or field.
fn bad_char(src: &str, p: usize) -> InterpError {
    let c = src[p..].chars().next().unwrap_or(' ');
    syntax(
        p,
        format!(
            "unexpected {c:?} right after a name: separate arguments with spaces \
             (and string arguments need quotes)"
        ),
    )
}

/// Scans a double-quoted string starting at `p`; returns its decoded value and the offset
/// just past the closing quote.
fn lex_quoted(src: &str, p: usize) -> Result<(Lit, usize), InterpError> {
    let b = src.as_bytes();
    let mut q = p + 1;
    loop {
        match b.get(q) {
            None | Some(b'\n') => {
                return Err(syntax(p, "unterminated string: missing closing `\"`"));
            }
            Some(b'\\') => {
                if matches!(b.get(q + 1), None | Some(b'\n')) {
                    return Err(syntax(p, "unterminated string: missing closing `\"`"));
                }
                q += 2;
            }
            Some(b'"') => break,
            Some(_) => q += 1,
        }
    }
    // `q` is at the closing quote; a backslash may have skipped into a multi-byte character,
    // but the quote itself is ASCII, so `p + 1..q` are char boundaries.
    let value = match unquote(&src[p + 1..q]).map_err(|m| syntax(p, m))? {
        Some(decoded) => Lit::Owned(decoded.into()),
        None => Lit::Src(Span {
            start: p + 1,
            len: q - p - 1,
        }),
    };
    Ok((value, q + 1))
}

/// Decodes Go escapes in the body of a double-quoted string (Go's `strconv.Unquote`);
/// `None` when there is nothing to decode.
fn unquote(body: &str) -> Result<Option<String>, String> {
    if !body.contains('\\') {
        return Ok(None);
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| format!("invalid escape: expected {n} hexadecimal digits"))?;
            v = v * 16 + d;
        }
        Ok(v)
    };
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().unwrap_or('\\');
        let byte = match e {
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'n' => b'\n',
            'r' => b'\r',
            't' => b'\t',
            'v' => 0x0b,
            '\\' => b'\\',
            '"' => b'"',
            'x' => hex(&mut chars, 2)? as u8,
            'u' | 'U' => {
                let v = hex(&mut chars, if e == 'u' { 4 } else { 8 })?;
                let ch = char::from_u32(v)
                    .ok_or_else(|| format!("invalid escape: U+{v:04X} is not a valid character"))?;
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            '0'..='7' => {
                let mut v = e as u32 - '0' as u32;
                for _ in 0..2 {
                    let d = chars
                        .next()
                        .and_then(|c| c.to_digit(8))
                        .ok_or("invalid escape: expected 3 octal digits")?;
                    v = v * 8 + d;
                }
                u8::try_from(v).map_err(|_| "invalid escape: octal value above \\377")?
            }
            other => return Err(format!("unknown escape sequence `\\{other}`")),
        };
        out.push(byte);
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| "the escapes in this string do not form valid UTF-8".to_string())
}

/// Scans a number at `p` the way Go's lexer does, and parses it as an integer the way
/// `strconv.ParseInt(text, 0, 64)` does. Returns the value and the offset past the number.
fn lex_number(src: &str, p: usize) -> Result<(i64, usize), InterpError> {
    let b = src.as_bytes();
    let mut q = p;
    let scan = |q: &mut usize| -> bool {
        let accept = |q: &mut usize, set: &[u8]| -> bool {
            if b.get(*q).is_some_and(|c| set.contains(c)) {
                *q += 1;
                true
            } else {
                false
            }
        };
        let accept_run = |q: &mut usize, set: &[u8]| while accept(q, set) {};
        accept(q, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        let mut hex = false;
        if accept(q, b"0") {
            if accept(q, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
                hex = true;
            } else if accept(q, b"oO") {
                digits = b"01234567_";
            } else if accept(q, b"bB") {
                digits = b"01_";
            }
        }
        accept_run(q, digits);
        if accept(q, b".") {
            accept_run(q, digits);
        }
        if digits.len() == 11 && accept(q, b"eE") {
            accept(q, b"+-");
            accept_run(q, b"0123456789_");
        }
        if hex && accept(q, b"pP") {
            accept(q, b"+-");
            accept_run(q, b"0123456789_");
        }
        accept(q, b"i");
        // The next thing mustn't be alphanumeric.
        if let Some(c) = src[*q..].chars().next().filter(|c| is_alnum(*c)) {
            *q += c.len_utf8();
            return false;
        }
        true
    };
    let bad_syntax = |q: usize| syntax(p, format!("bad number syntax: `{}`", &src[p..q]));
    if !scan(&mut q) {
        return Err(bad_syntax(q));
    }
    if matches!(b.get(q), Some(b'+' | b'-')) {
        // Go's complex constants (1+2i).
        let ok = scan(&mut q);
        if !ok || b[q - 1] != b'i' {
            return Err(bad_syntax(q));
        }
        return Err(syntax(p, "complex numbers are not supported in recipes"));
    }
    let text = &src[p..q];
    match parse_go_int(text) {
        Some(v) => Ok((v, q)),
        None if text
            .bytes()
            .any(|c| matches!(c, b'.' | b'e' | b'E' | b'p' | b'P' | b'i'))
            && !text.starts_with("0x")
            && !text.starts_with("0X")
            || text.contains('.') =>
        {
            Err(syntax(
                p,
                format!("only integer numbers are supported in recipes, found `{text}`"),
            ))
        }
        None => Err(bad_syntax(q)),
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)`: optional sign, base prefixes `0x`, `0o`, `0b`, a
/// leading `0` for octal, `_` separators between digits.
fn parse_go_int(text: &str) -> Option<i64> {
    let (neg, s) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if !underscore_ok(s) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(base)?;
        value = value
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(d))?;
        any = true;
    }
    if !any {
        return None;
    }
    if neg {
        if value == 1 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(value).ok().map(|v| -v)
        }
    } else {
        i64::try_from(value).ok()
    }
}

/// Go's `underscoreOK`: underscores only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || hex && (c | 0x20).is_ascii_hexdigit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

// ---------------------------------------------------------------------------------------------
// Parser (the shape of Go's text/template/parse/parse.go pipeline/command/operand)

/// Work stacks reused across the actions of a template: operands and commands are collected
/// here and moved to the [`Ast`] as contiguous spans when their command or pipeline ends.
#[derive(Default)]
struct Stacks {
    ops: Vec<Operand>,
    cmds: Vec<Span>,
}

struct Parser<'s, 'b> {
    lex: Lexer<'s, 'b>,
    peeked: Option<Token<'s>>,
    open: usize,
    ast: &'b mut Ast,
    stacks: &'b mut Stacks,
}

impl<'s> Parser<'s, '_> {
    fn next(&mut self) -> Token<'s> {
        match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next(),
        }
    }

    fn backup(&mut self, t: Token<'s>) {
        self.peeked = Some(t);
    }

    fn next_non_space(&mut self) -> Token<'s> {
        loop {
            let t = self.next();
            if !matches!(t.tok, Tok::Space) {
                return t;
            }
        }
    }

    /// Parses a pipeline up to the end of the action (`paren == None`; the `}}` is left to
    /// read) or up to the `)` matching the `(` at `paren` (consumed). Returns its index in
    /// [`Ast::pipes`].
    fn parse_pipeline(&mut self, paren: Option<usize>) -> Result<usize, InterpError> {
        let mark = self.stacks.cmds.len();
        let mut dangling_pipe: Option<usize> = None;
        loop {
            let t = self.next_non_space();
            match t.tok {
                Tok::End { .. } if paren.is_none() => {
                    self.backup(t);
                    break;
                }
                Tok::RParen if paren.is_some() => break,
                ref tok if tok.starts_operand() => {
                    self.backup(t);
                    dangling_pipe = self.parse_command()?;
                }
                Tok::Bad(e) => return Err(*e),
                Tok::Pipe => {
                    return Err(syntax(
                        t.off,
                        "`|` must come between two commands, e.g. {{ user `x` | upper }}",
                    ));
                }
                Tok::Char(c) => {
                    return Err(syntax(t.off, format!("unexpected `{c}` in an action")));
                }
                // `}}` inside parentheses and `)` outside them are lexer errors (Bad).
                _ => return Err(syntax(t.off, "unexpected end of the expression")),
            }
        }
        if let Some(off) = dangling_pipe {
            return Err(syntax(off, "`|` must be followed by a function call"));
        }
        let cmds = &self.stacks.cmds[mark..];
        if cmds.is_empty() {
            return Err(match paren {
                Some(off) => syntax(off, "empty parentheses: put a function call inside"),
                None => syntax(
                    self.open,
                    "empty action: put a function call or a field inside `{{ }}`",
                ),
            });
        }
        for (k, cmd) in cmds.iter().enumerate() {
            let ops = &self.ast.ops[cmd.range()];
            let head = &ops[0];
            if matches!(head.kind, OpKind::Func(_)) {
                continue;
            }
            if k > 0 {
                return Err(syntax(
                    head.offset,
                    format!(
                        "only a function can follow `|`, not {}",
                        head.kind.describe(self.lex.src)
                    ),
                ));
            }
            if let Some(arg) = ops.get(1) {
                return Err(syntax(
                    arg.offset,
                    format!(
                        "{} is not a function and takes no arguments",
                        head.kind.describe(self.lex.src)
                    ),
                ));
            }
        }
        let span = Span {
            start: self.ast.cmds.len(),
            len: cmds.len(),
        };
        self.ast.cmds.extend(self.stacks.cmds.drain(mark..));
        self.ast.pipes.push(span);
        Ok(self.ast.pipes.len() - 1)
    }

    /// Parses operands separated by spaces. Returns, when the command ended with `|`
    /// (consumed), the offset of that `|`.
    fn parse_command(&mut self) -> Result<Option<usize>, InterpError> {
        let mark = self.stacks.ops.len();
        let piped = loop {
            let mut t = self.next_non_space();
            if t.tok.starts_operand() {
                let op = self.parse_operand(t)?;
                self.stacks.ops.push(op);
                t = self.next();
            }
            match t.tok {
                Tok::Space => {}
                Tok::End { .. } | Tok::RParen => {
                    self.backup(t);
                    break None;
                }
                Tok::Pipe => break Some(t.off),
                Tok::Bad(e) => return Err(*e),
                Tok::LParen => {
                    return Err(syntax(
                        t.off,
                        "unexpected `(`: Go templates call functions without parentheses \
                         (`{{ upper \"x\" }}`); put a space before a parenthesised argument",
                    ));
                }
                Tok::Char(c) => {
                    return Err(syntax(t.off, format!("unexpected `{c}` in an action")));
                }
                _ => return Err(syntax(t.off, "missing space between arguments")),
            }
        };
        let span = Span {
            start: self.ast.ops.len(),
            len: self.stacks.ops.len() - mark,
        };
        self.ast.ops.extend(self.stacks.ops.drain(mark..));
        self.stacks.cmds.push(span);
        Ok(piped)
    }

    /// Parses the operand that starts with `t`.
    fn parse_operand(&mut self, t: Token<'s>) -> Result<Operand, InterpError> {
        let offset = t.off;
        let kind = match t.tok {
            Tok::Str(s) => OpKind::Str(s),
            Tok::Int(i) => OpKind::Int(i),
            Tok::Field(span) => OpKind::Field(span),
            Tok::Ident(name) => match Func::from_name(name) {
                Some(f) => OpKind::Func(f),
                None => {
                    return Err(InterpError::UnknownFunction {
                        offset,
                        name: name.to_string(),
                    });
                }
            },
            Tok::LParen => OpKind::Pipe(self.parse_pipeline(Some(offset))?),
            Tok::Dot => {
                return Err(syntax(
                    offset,
                    "`.` alone is not supported: name a field, e.g. `.HTTPIP`",
                ));
            }
            _ => return Err(syntax(offset, "expected an argument")),
        };
        let mut op = Operand { offset, kind };
        // A field right after an operand, without a space: a chain (`.A.B`, `(x).A`).
        loop {
            let t = self.next();
            let Tok::Field(name) = t.tok else {
                self.backup(t);
                return Ok(op);
            };
            match &mut op.kind {
                OpKind::Field(chain) => {
                    // The chain is contiguous in the source: `.A.B`.
                    chain.len = name.start + name.len - chain.start;
                }
                other => {
                    return Err(syntax(
                        t.off,
                        format!(
                            "fields of {} are not supported",
                            other.describe(self.lex.src)
                        ),
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A value flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val<'v> {
    Str(Cow<'v, str>),
    Int(i64),
    /// Depends on a field known only later: the whole action is kept verbatim.
    Deferred,
}

struct Eval<'v> {
    src: &'v str,
    ast: &'v Ast,
    ctx: &'v Context<'v>,
}

impl<'v> Eval<'v> {
    /// Evaluates a pipeline; returns its value and the offset it came from.
    fn pipe(&self, pipe: usize) -> Result<(Val<'v>, usize), InterpError> {
        let ast = self.ast;
        let mut last: Option<(Val<'v>, usize)> = None;
        for cmd in &ast.cmds[ast.pipes[pipe].range()] {
            let ops = &ast.ops[cmd.range()];
            let head = &ops[0];
            last = Some(match head.kind {
                OpKind::Func(f) => self.call(f, head.offset, &ops[1..], last)?,
                // The parser allows a non-function only alone, in the first stage.
                _ => self.operand(head)?,
            });
        }
        Ok(last.unwrap_or((Val::Str(Cow::Borrowed("")), 0)))
    }

    fn operand(&self, op: &'v Operand) -> Result<(Val<'v>, usize), InterpError> {
        let src: &'v str = self.src;
        let val = match &op.kind {
            OpKind::Str(s) => Val::Str(Cow::Borrowed(s.as_str(src))),
            OpKind::Int(i) => Val::Int(*i),
            OpKind::Field(name) => self.field(&src[name.range()], op.offset)?,
            OpKind::Func(f) => return self.call(*f, op.offset, &[], None),
            OpKind::Pipe(p) => self.pipe(*p)?.0,
        };
        Ok((val, op.offset))
    }

    fn field(&self, name: &str, offset: usize) -> Result<Val<'v>, InterpError> {
        let fields: &'v [(&'v str, Option<String>)] = self.ctx.fields;
        match fields.iter().find(|(n, _)| *n == name) {
            Some((_, Some(v))) => Ok(Val::Str(Cow::Borrowed(v))),
            Some((_, None)) => Ok(Val::Deferred),
            None => Err(InterpError::FieldNotAllowed {
                offset,
                field: name.to_string(),
            }),
        }
    }

    fn call(
        &self,
        f: Func,
        offset: usize,
        args: &'v [Operand],
        piped: Option<(Val<'v>, usize)>,
    ) -> Result<(Val<'v>, usize), InterpError> {
        let name = f.name();
        let bad = |offset: usize, message: String| InterpError::BadArguments {
            offset,
            function: name.to_string(),
            message,
        };
        if let Func::Refused(name) = f {
            return Err(InterpError::Unsupported {
                offset,
                name: name.to_string(),
            });
        }
        let ctx: &'v Context<'v> = self.ctx;
        if f == Func::Env && !ctx.allow_env {
            return Err(InterpError::EnvNotAllowed { offset });
        }
        let (params, optional) = f.params();
        let given = args.len() + usize::from(piped.is_some());
        let max = params.len();
        let min = max - optional;
        if given < min || given > max {
            let want = match (min, max) {
                (0, 0) => "no arguments".to_string(),
                (1, 1) => "1 argument".to_string(),
                (a, b) if a == b => format!("{a} arguments"),
                (_, 1) => "at most 1 argument".to_string(),
                (_, b) => format!("at most {b} arguments"),
            };
            return Err(bad(
                offset,
                format!("takes {want}, got {given}; usage: {}", f.usage()),
            ));
        }
        // At most MAX_PARAMS values (checked above): no allocation.
        let mut vals: [(Val<'v>, usize); MAX_PARAMS] = std::array::from_fn(|_| (Val::Int(0), 0));
        for (slot, arg) in vals.iter_mut().zip(args) {
            *slot = self.operand(arg)?;
        }
        if let Some(p) = piped {
            vals[given - 1] = p;
        }
        let vals = &vals[..given];
        if vals.iter().any(|(v, _)| *v == Val::Deferred) {
            return Ok((Val::Deferred, offset));
        }
        for (k, ((v, voff), want)) in vals.iter().zip(params).enumerate() {
            match (want, v) {
                (Param::Str, Val::Int(i)) => {
                    return Err(bad(
                        *voff,
                        format!(
                            "argument {} must be a string, found the number {i}; quote it",
                            k + 1
                        ),
                    ));
                }
                (Param::Int, Val::Str(s)) => {
                    return Err(bad(
                        *voff,
                        format!(
                            "argument {} must be an integer, found the string {s:?}",
                            k + 1
                        ),
                    ));
                }
                _ => {}
            }
        }
        let s = |k: usize| match vals.get(k) {
            Some((Val::Str(s), _)) => s.as_ref(),
            _ => "",
        };
        let int = |k: usize| match vals.get(k) {
            Some((Val::Int(i), _)) => *i,
            _ => 0,
        };
        let out: Cow<'v, str> = match f {
            Func::BuildName | Func::BuildType => {
                let value = if f == Func::BuildName {
                    ctx.build_name
                } else {
                    ctx.build_type
                };
                match value {
                    Some(v) => Cow::Borrowed(v),
                    None => {
                        return Err(bad(
                            offset,
                            "only available in builder, provisioner and post-processor sections"
                                .to_string(),
                        ));
                    }
                }
            }
            Func::Env => Cow::Owned((ctx.env)(s(0)).unwrap_or_default()),
            Func::Isotime => {
                let layout = if vals.is_empty() {
                    "2006-01-02T15:04:05Z07:00"
                } else {
                    s(0)
                };
                Cow::Owned(isotime::format_utc(&ctx.run.started, layout))
            }
            Func::Pwd => Cow::Borrowed(&ctx.run.pwd),
            Func::TemplateDir => {
                if ctx.run.template_dir.is_empty() {
                    return Err(bad(
                        offset,
                        "the template directory is not known (the recipe was not read from a \
                         file)"
                            .to_string(),
                    ));
                }
                Cow::Borrowed(&ctx.run.template_dir)
            }
            Func::Timestamp => Cow::Owned(ctx.run.started.timestamp().to_string()),
            Func::Uuid => Cow::Owned(uuid::Uuid::new_v4().to_string()),
            Func::User => {
                let vars: &'v BTreeMap<String, String> = ctx.vars;
                match vars.get(s(0)) {
                    Some(v) => Cow::Borrowed(v),
                    None => {
                        return Err(InterpError::UndeclaredVariable {
                            offset: vals[0].1,
                            name: s(0).to_string(),
                        });
                    }
                }
            }
            Func::Split => {
                let (text, sep, index) = (s(0), s(1), int(2));
                let parts = go_split(text, sep);
                match usize::try_from(index).ok().and_then(|i| parts.get(i)) {
                    Some(part) => Cow::Owned((*part).to_string()),
                    None => {
                        return Err(bad(
                            offset,
                            format!(
                                "there is no part {index}: splitting {text:?} at {sep:?} gives \
                                 {} part(s), numbered from 0",
                                parts.len()
                            ),
                        ));
                    }
                }
            }
            Func::Replace => Cow::Owned(go_replace(s(3), s(0), s(1), int(2))),
            Func::ReplaceAll => Cow::Owned(go_replace(s(2), s(0), s(1), -1)),
            Func::Upper => Cow::Owned(s(0).chars().map(go_to_upper).collect()),
            Func::Lower => Cow::Owned(s(0).chars().map(go_to_lower).collect()),
            Func::CleanResourceName => Cow::Owned(clean_resource_name(s(0))),
            Func::Build => {
                let name = s(0);
                if !BUILD_VALUES.contains(&name) {
                    return Err(bad(
                        vals[0].1,
                        format!(
                            "`{name}` is not a build value{}; Packer's are: {}",
                            super::decode::suggest(name, BUILD_VALUES.iter().copied())
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default(),
                            BUILD_VALUES.join(", ")
                        ),
                    ));
                }
                return Ok((self.field(&build_field(name), vals[0].1)?, offset));
            }
            Func::Refused(_) => Cow::Borrowed(""),
        };
        Ok((Val::Str(out), offset))
    }
}

/// The most parameters a function has (`replace`).
const MAX_PARAMS: usize = 4;

/// Go's `strings.Split(s, sep)`: an empty separator splits into characters (and an empty
/// string into nothing).
fn go_split<'t>(s: &'t str, sep: &str) -> Vec<&'t str> {
    if sep.is_empty() {
        s.char_indices()
            .map(|(i, c)| &s[i..i + c.len_utf8()])
            .collect()
    } else {
        s.split(sep).collect()
    }
}

/// Go's `strings.Replace(s, old, new, n)`: the first `n` non-overlapping matches, all of them
/// when `n < 0`; an empty `old` matches before every character and at the end.
fn go_replace(s: &str, old: &str, new: &str, n: i64) -> String {
    if n < 0 {
        s.replace(old, new)
    } else {
        s.replacen(old, new, usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// Go's `unicode.ToUpper`: the simple (one-character) case mapping.
fn go_to_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        // Multi-character full mappings: Go uses the simple mapping, which exists only for
        // the Greek letters with iota subscript (to their title-case forms); the others
        // (ß, ŉ, ǰ, ligatures, …) stay unchanged.
        _ => match u32::from(c) {
            v @ (0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7) => {
                char::from_u32(v + 8).unwrap_or(c)
            }
            0x1FB3 => '\u{1FBC}',
            0x1FC3 => '\u{1FCC}',
            0x1FF3 => '\u{1FFC}',
            _ => c,
        },
    }
}

/// Go's `unicode.ToLower`: the simple case mapping (no final-sigma rule; `İ` → `i`).
fn go_to_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

/// Packer's `clean_resource_name` as the Google Compute builder defines it (the behaviour the
/// template-engine docs describe): lower-case, then every byte that is not `a-z` or `0-9`
/// becomes `-` (so a multi-byte character becomes several). No truncation.
fn clean_resource_name(s: &str) -> String {
    let lower: String = s.chars().map(go_to_lower).collect();
    lower
        .bytes()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                char::from(c)
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run() -> RunInfo {
        RunInfo {
            started: Utc.with_ymd_and_hms(2009, 11, 10, 23, 4, 5).unwrap(),
            pwd: "/home/me/work".to_string(),
            template_dir: "/home/me/recipes".to_string(),
        }
    }

    fn vars() -> BTreeMap<String, String> {
        [
            ("name", "web"),
            ("version", "1.2.3"),
            ("empty", ""),
            ("mixed", "Hello World"),
            ("os", "debian-12-amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Renders with a builder-section context (no env, build name and type known).
    fn r(src: &str) -> Result<String, InterpError> {
        rf(
            src,
            &[("HTTPIP", Some("10.0.2.2".to_string())), ("HTTPPort", None)],
        )
    }

    fn rf(src: &str, fields: &[(&str, Option<String>)]) -> Result<String, InterpError> {
        let run = run();
        let vars = vars();
        let ctx = Context {
            vars: &vars,
            allow_env: false,
            env: &env,
            run: &run,
            build_name: Some("qemu-debian"),
            build_type: Some("qemu"),
            fields,
        };
        render(src, &ctx)
    }

    /// Renders with a variables-section context (env allowed, no build facts, no fields).
    fn rv(src: &str) -> Result<String, InterpError> {
        let run = run();
        let vars = vars();
        let ctx = Context {
            vars: &vars,
            allow_env: true,
            env: &env,
            run: &run,
            build_name: None,
            build_type: None,
            fields: &[],
        };
        render(src, &ctx)
    }

    fn ok(src: &str) -> String {
        r(src).unwrap_or_else(|e| panic!("{src:?}: {e:?}"))
    }

    fn syntax_at(src: &str) -> (usize, String) {
        match r(src) {
            Err(InterpError::Syntax { offset, message }) => (offset, message),
            other => panic!("{src:?}: expected a syntax error, got {other:?}"),
        }
    }

    fn bad_args(src: &str) -> (usize, String, String) {
        match r(src) {
            Err(InterpError::BadArguments {
                offset,
                function,
                message,
            }) => (offset, function, message),
            other => panic!("{src:?}: expected BadArguments, got {other:?}"),
        }
    }

    // --- text, comments, trim markers -------------------------------------------------------

    #[test]
    fn plain_text_is_unchanged() {
        for s in [
            "",
            "abc",
            "{ x }",
            "a } b }}",
            "{",
            "x{",
            "{ {",
            "ünïcödé ☃",
            "}}{",
        ] {
            assert_eq!(ok(s), s);
        }
    }

    #[test]
    fn literals_render() {
        assert_eq!(ok("{{ \"x\" }}"), "x");
        assert_eq!(ok("{{`raw`}}"), "raw");
        assert_eq!(ok("a{{42}}b"), "a42b");
        assert_eq!(ok("{{-7}}"), "-7");
        assert_eq!(ok("{{ +7 }}"), "7");
        assert_eq!(
            ok("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}}"),
            "31 15 15 5 1000"
        );
        assert_eq!(ok("{{ \"}}\" }}"), "}}");
        assert_eq!(ok("{{ `{{user \"x\"}}` }}"), "{{user \"x\"}}");
    }

    #[test]
    fn string_escapes_follow_go() {
        assert_eq!(ok(r#"{{ "a\tb\nc\\d\"e" }}"#), "a\tb\nc\\d\"e");
        assert_eq!(ok(r#"{{ "\x41\101\u00e9\U0001F600" }}"#), "AAé😀");
        assert_eq!(ok(r#"{{ "\a\b\f\v\r" }}"#), "\x07\x08\x0c\x0b\r");
        assert_eq!(ok("{{ `a\\nb` }}"), "a\\nb");
        // Raw strings may span lines; Go drops carriage returns from them.
        assert_eq!(ok("{{ `a\r\nb` }}"), "a\nb");
        // Bytes that do not form UTF-8, unknown escapes, \' in a double-quoted string.
        for bad in [
            r#"{{ "\xff" }}"#,
            r#"{{ "\q" }}"#,
            r#"{{ "\'" }}"#,
            r#"{{ "\400" }}"#,
        ] {
            assert_eq!(syntax_at(bad).0, 3, "{bad}");
        }
        assert_eq!(syntax_at(r#"{{ "\ud800" }}"#).0, 3);
        assert_eq!(syntax_at(r#"{{ "\x4" }}"#).0, 3);
    }

    #[test]
    fn comments_render_nothing() {
        assert_eq!(ok("a{{/* note */}}b"), "ab");
        assert_eq!(ok("a {{- /* note */ -}} b"), "ab");
        assert_eq!(ok("a{{/* {{ user `x` }} */}}b"), "ab");
        assert_eq!(ok("{{/*\nmulti\nline\n*/}}"), "");
        assert_eq!(
            syntax_at("ab{{/* open"),
            (2, "unclosed comment: missing `*/}}`".to_string())
        );
        assert_eq!(syntax_at("{{/* x */ }}").0, 9);
        // Go: a comment must start right after the delimiter (or its trim marker).
        assert_eq!(syntax_at("{{ /* x */ }}").0, 3);
    }

    #[test]
    fn trim_markers_follow_go() {
        assert_eq!(ok("a  \n\t{{- \"x\" -}} \r\n b"), "axb");
        assert_eq!(ok("a {{- \"x\" }} b"), "ax b");
        assert_eq!(ok("a {{ \"x\" -}} b"), "a xb");
        assert_eq!(ok("{{- \"x\" -}}"), "x");
        assert_eq!(ok("{{\"a\" -}}   {{- \"b\"}}"), "ab");
        // `{{-3}}` is the number -3 (no space after the minus), `{{3 -}}` trims.
        assert_eq!(ok("a {{-3}} b"), "a -3 b");
        assert_eq!(ok("a {{3 -}} b"), "a 3b");
        // Trim markers accept any of Go's spaces.
        assert_eq!(ok("a {{-\t\"x\"\n-}} b"), "axb");
        // Several spaces before the trim marker.
        assert_eq!(ok("{{ \"x\"    -}}  y"), "xy");
        // Only literal text is trimmed, not values.
        assert_eq!(ok("{{ \" x \" -}} {{- \" y \" }}"), " x  y ");
    }

    #[test]
    fn spaces_inside_actions() {
        assert_eq!(ok("{{   user    `name`   }}"), "web");
        assert_eq!(ok("{{\nuser\n`name`\n}}"), "web");
        assert_eq!(ok("{{ .HTTPIP }}"), "10.0.2.2");
        assert_eq!(ok("{{.HTTPIP}}"), "10.0.2.2");
    }

    // --- functions ---------------------------------------------------------------------------

    #[test]
    fn user_reads_variables() {
        assert_eq!(ok("{{user `name`}}-{{ user \"version\" }}"), "web-1.2.3");
        assert_eq!(ok("[{{user `empty`}}]"), "[]");
        assert_eq!(ok("{{ \"name\" | user }}"), "web");
        assert_eq!(
            r("ab {{user `nope`}}"),
            Err(InterpError::UndeclaredVariable {
                offset: 10,
                name: "nope".to_string()
            })
        );
        assert_eq!(
            r("{{ `nope` | user }}"),
            Err(InterpError::UndeclaredVariable {
                offset: 3,
                name: "nope".to_string()
            })
        );
        assert_eq!(bad_args("{{user}}").0, 2);
        assert_eq!(bad_args("{{user `a` `b`}}").0, 2);
        assert_eq!(bad_args("{{user 3}}").0, 7);
    }

    #[test]
    fn env_only_in_variables() {
        assert_eq!(rv("{{env `HOME`}}/x"), Ok("/home/me/x".to_string()));
        assert_eq!(rv("[{{env `UNSET`}}]"), Ok("[]".to_string()));
        assert_eq!(rv("[{{env `EMPTY`}}]"), Ok("[]".to_string()));
        assert_eq!(
            r("x {{ env `HOME` }}"),
            Err(InterpError::EnvNotAllowed { offset: 5 })
        );
        assert_eq!(
            r("{{ `HOME` | env }}"),
            Err(InterpError::EnvNotAllowed { offset: 12 })
        );
        assert!(matches!(
            rv("{{env}}"),
            Err(InterpError::BadArguments { offset: 2, .. })
        ));
    }

    #[test]
    fn timestamp_and_isotime_use_the_run_start() {
        assert_eq!(ok("{{timestamp}}"), "1257894245");
        assert_eq!(ok("{{isotime}}"), "2009-11-10T23:04:05Z");
        assert_eq!(ok("{{isotime `2006-01-02`}}"), "2009-11-10");
        assert_eq!(ok("{{isotime \"20060102\"}}"), "20091110");
        assert_eq!(ok("{{ isotime `Jan _2 15:04:05` }}"), "Nov 10 23:04:05");
        assert_eq!(ok("{{isotime `3:04PM`}}"), "11:04PM");
        assert_eq!(ok("{{isotime `20060102150405`}}"), "20091110230405");
        // The examples of Packer's "isotime Function Format Reference" (at this instant).
        assert_eq!(ok("packer-{{isotime `2006-01-02`}}"), "packer-2009-11-10");
        assert_eq!(
            ok("packer-{{isotime `Jan-_2-15:04:05.000`}}"),
            "packer-Nov-10-23:04:05.000"
        );
        assert_eq!(ok("packer-{{isotime `3:04PM`}}"), "packer-11:04PM");
        assert_eq!(ok("{{isotime `Mon 1504`}}"), "Tue 2304");
        assert_eq!(
            ok("{{isotime `02-Jan-06 03\\_04\\_05`}}"),
            "10-Nov-09 11\\_04\\_05"
        );
        assert_eq!(ok("{{isotime `Hour15Year200603`}}"), "Hour23Year200911");
        assert_eq!(
            ok("packer-{{isotime `2006-01-02 03:04:05`}}"),
            "packer-2009-11-10 11:04:05"
        );
        // Stable within a run.
        assert_eq!(ok("{{timestamp}}{{timestamp}}"), "12578942451257894245");
        let (off, f, _) = bad_args("{{isotime `a` `b`}}");
        assert_eq!((off, f.as_str()), (2, "isotime"));
        assert_eq!(bad_args("{{isotime 1}}").0, 10);
    }

    #[test]
    fn uuid_is_new_each_call() {
        let out = ok("{{uuid}} {{uuid}}");
        let (a, b) = out.split_once(' ').unwrap();
        assert_ne!(a, b);
        for u in [a, b] {
            let parsed = uuid::Uuid::parse_str(u).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(u.len(), 36);
        }
        assert_eq!(bad_args("{{uuid `x`}}").1, "uuid");
    }

    #[test]
    fn build_name_and_type() {
        assert_eq!(ok("{{build_name}}/{{ build_type }}"), "qemu-debian/qemu");
        for src in ["{{build_name}}", "{{ build_type }}"] {
            match rv(src) {
                Err(InterpError::BadArguments {
                    offset, message, ..
                }) => {
                    assert!(offset == 2 || offset == 3);
                    assert!(message.contains("builder, provisioner and post-processor"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn pwd_and_template_dir() {
        assert_eq!(
            ok("{{pwd}}|{{template_dir}}"),
            "/home/me/work|/home/me/recipes"
        );
        let run = RunInfo {
            template_dir: String::new(),
            ..run()
        };
        let vars = vars();
        let ctx = Context {
            vars: &vars,
            allow_env: false,
            env: &env,
            run: &run,
            build_name: None,
            build_type: None,
            fields: &[],
        };
        assert!(matches!(
            render("{{template_dir}}", &ctx),
            Err(InterpError::BadArguments { offset: 2, .. })
        ));
    }

    #[test]
    fn upper_lower() {
        assert_eq!(ok("{{upper `abc-é`}} {{lower `ABC-É`}}"), "ABC-É abc-é");
        assert_eq!(ok("{{user `mixed` | upper}}"), "HELLO WORLD");
        assert_eq!(ok("{{ user `mixed` | lower }}"), "hello world");
        // Go's simple case mappings: ß has no one-letter upper case, İ lowers to i, and there
        // is no final-sigma rule.
        assert_eq!(ok("{{upper `straße ﬁ`}}"), "STRAßE ﬁ");
        assert_eq!(ok("{{lower `İΣΑΣ`}}"), "iσασ");
        assert_eq!(ok("{{upper `ᾳ`}}"), "ᾼ");
        assert_eq!(bad_args("{{upper}}").0, 2);
        assert_eq!(bad_args("{{upper `a` `b`}}").0, 2);
        assert_eq!(bad_args("{{upper 5}}").0, 8);
    }

    #[test]
    fn replace_follows_packer_argument_order() {
        // Packer docs: build_name = foo-bar-provider.
        let fields = [("X", None)];
        let b = |src: &str| {
            let run = run();
            let vars = vars();
            let ctx = Context {
                vars: &vars,
                allow_env: false,
                env: &env,
                run: &run,
                build_name: Some("foo-bar-provider"),
                build_type: Some("qemu"),
                fields: &fields,
            };
            render(src, &ctx).unwrap()
        };
        assert_eq!(
            b("{{ replace_all \"-\" \"/\" build_name }}"),
            "foo/bar/provider"
        );
        assert_eq!(
            b("{{ build_name | replace \"-\" \"/\" 1 }}"),
            "foo/bar-provider"
        );
        assert_eq!(b("{{split build_name \"-\" 0}}"), "foo");
        assert_eq!(b("{{split \"fixed-string\" \"-\" 1}}"), "string");
        assert_eq!(b("tpl/{{split build_name \"-\" 1}}.rb"), "tpl/bar.rb");

        assert_eq!(ok("{{replace `a` `b` 2 `aaaa`}}"), "bbaa");
        assert_eq!(ok("{{replace `a` `b` -1 `aaaa`}}"), "bbbb");
        assert_eq!(ok("{{replace `a` `b` 0 `aaaa`}}"), "aaaa");
        assert_eq!(ok("{{replace `a` `b` 99 `aaaa`}}"), "bbbb");
        assert_eq!(ok("{{replace `` `-` 2 `abc`}}"), "-a-bc");
        assert_eq!(ok("{{replace_all `` `-` `abc`}}"), "-a-b-c-");
        assert_eq!(ok("{{replace_all `.` `-` `1.2.3`}}"), "1-2-3");
        assert_eq!(ok("{{user `version` | replace_all `.` `_`}}"), "1_2_3");
        assert_eq!(ok("{{replace_all `aa` `a` `aaaaa`}}"), "aaa");

        let (off, f, msg) = bad_args("{{replace `a` `b` `1` `aaaa`}}");
        assert_eq!((off, f.as_str()), (18, "replace"));
        assert!(msg.contains("argument 3 must be an integer"), "{msg}");
        assert_eq!(bad_args("{{replace `a` `b` 1}}").0, 2);
        assert_eq!(bad_args("{{replace_all `a` `b`}}").0, 2);
        assert_eq!(bad_args("{{replace_all 1 `b` `c`}}").0, 14);
    }

    #[test]
    fn split_follows_go() {
        assert_eq!(ok("{{split `a-b-c` `-` 2}}"), "c");
        assert_eq!(ok("{{split `a--b` `-` 1}}"), "");
        assert_eq!(ok("{{split `abc` `` 1}}"), "b");
        assert_eq!(ok("{{split `abc` `x` 0}}"), "abc");
        // The piped value is the LAST argument (the index), so a piped string is an error.
        let (off, _, msg) = bad_args("{{user `os` | split `x-y` `-` }}");
        assert_eq!(off, 2);
        assert!(msg.contains("argument 3 must be an integer"), "{msg}");
        let (off, f, msg) = bad_args("{{split `a-b` `-` 2}}");
        assert_eq!((off, f.as_str()), (2, "split"));
        assert!(msg.contains("2 part(s)"), "{msg}");
        assert_eq!(bad_args("{{split `a-b` `-` -1}}").0, 2);
        assert_eq!(bad_args("{{split `` `` 0}}").0, 2);
        assert_eq!(bad_args("{{split `a-b` `-` `1`}}").0, 18);
        assert_eq!(bad_args("{{split `a-b` `-`}}").0, 2);
        // A piped integer is the last argument, the index.
        assert_eq!(ok("{{ 1 | split `a-b` `-` }}"), "b");
    }

    #[test]
    fn clean_resource_name_follows_packer() {
        // Packer docs: "mybuild-{{isotime | clean_resource_name}}" → mybuild-2017-10-18t02-06-30z.
        assert_eq!(
            ok("mybuild-{{isotime | clean_resource_name}}"),
            "mybuild-2009-11-10t23-04-05z"
        );
        // Packer's googlecompute tests.
        assert_eq!(
            ok("{{clean_resource_name `abcde-012345xyz`}}"),
            "abcde-012345xyz"
        );
        assert_eq!(
            ok("{{clean_resource_name `ABCDE-012345xyz`}}"),
            "abcde-012345xyz"
        );
        assert_eq!(
            ok("{{clean_resource_name `abcde-012345v1.0.0`}}"),
            "abcde-012345v1-0-0"
        );
        // Byte-wise, as in Go: a two-byte character becomes two dashes.
        assert_eq!(
            ok("{{ `Ümlaut_x y` | clean_resource_name }}"),
            "--mlaut-x-y"
        );
    }

    #[test]
    fn build_reads_fields() {
        let fields = [
            ("build Host", Some("192.0.2.7".to_string())),
            ("build SSHPrivateKey", None),
        ];
        assert_eq!(
            rf("{{ build `Host` }}", &fields),
            Ok("192.0.2.7".to_string())
        );
        assert_eq!(
            rf("echo '{{ build `SSHPrivateKey`}}' > k", &fields),
            Ok("echo '{{ build `SSHPrivateKey`}}' > k".to_string())
        );
        // A build value not given here is "not available", naming what was written.
        assert_eq!(
            rf("{{ build `Port` }}", &fields),
            Err(InterpError::FieldNotAllowed {
                offset: 9,
                field: "build Port".to_string()
            })
        );
        // `.Host` does not reach a build value: only `{{ build `Host` }}` does.
        assert!(rf("{{ .Host }}", &fields).is_err());
        let Err(InterpError::BadArguments { message, .. }) = rf("{{ build `Nope` }}", &fields)
        else {
            panic!("an unknown build value is refused");
        };
        assert!(
            message.starts_with("`Nope` is not a build value; Packer's are: ID, Host"),
            "{message}"
        );
    }

    #[test]
    fn refused_functions() {
        for name in [
            "consul_key",
            "vault",
            "aws_secretsmanager",
            "aws_secretsmanager_raw",
            "packer_version",
            "strftime",
            "sed",
        ] {
            let src = format!("x {{{{ {name} `a` `b` }}}}");
            let err = rv(&src).unwrap_err();
            assert_eq!(
                err,
                InterpError::Unsupported {
                    offset: 5,
                    name: name.to_string()
                }
            );
        }
        let msg = rv("{{vault `secret/x` `k`}}").unwrap_err().to_string();
        assert!(msg.contains("does not fetch secrets"), "{msg}");
        assert!(msg.contains("-var"), "{msg}");
        let msg = rv("{{aws_secretsmanager `x`}}").unwrap_err().to_string();
        assert!(msg.contains("-var-file"), "{msg}");
    }

    #[test]
    fn unknown_functions() {
        assert_eq!(
            r("ab{{ nope `x` }}"),
            Err(InterpError::UnknownFunction {
                offset: 5,
                name: "nope".to_string()
            })
        );
        assert_eq!(
            r("{{ upper (frobnicate) }}"),
            Err(InterpError::UnknownFunction {
                offset: 10,
                name: "frobnicate".to_string()
            })
        );
        // Builder-specific Packer functions kiln does not define.
        assert!(matches!(
            r("{{ clean_ami_name `x` }}"),
            Err(InterpError::UnknownFunction { offset: 3, .. })
        ));
        // Reported even when the referenced variables are collected.
        assert!(matches!(
            referenced_variables("{{ nope }}"),
            Err(InterpError::UnknownFunction { offset: 3, .. })
        ));
    }

    // --- pipelines and sub-expressions -------------------------------------------------------

    #[test]
    fn pipelines_pass_the_value_last() {
        assert_eq!(ok("{{ `a-b` | replace_all `-` `+` | upper }}"), "A+B");
        assert_eq!(ok("{{ user `name` | replace `e` `E` 1 }}"), "wEb");
        assert_eq!(ok("{{ 0 | split `a-b` `-` | upper }}"), "A");
    }

    #[test]
    fn parentheses() {
        assert_eq!(ok("{{ upper (user `name`) }}"), "WEB");
        assert_eq!(ok("{{ (user `name`) }}"), "web");
        assert_eq!(ok("{{ replace_all `-` (upper `x`) (lower `A-B`) }}"), "aXb");
        assert_eq!(ok("{{ split (user `os`) `-` (1) }}"), "12");
        assert_eq!(ok("{{ ( ( ( `deep` ) ) ) }}"), "deep");
        assert_eq!(ok("{{ upper (`a` | replace_all `a` `b`) | lower }}"), "b");
        assert_eq!(syntax_at("{{ upper ( ) }}").0, 9);
        assert_eq!(syntax_at("{{ upper (`a` }}").0, 9);
        assert_eq!(syntax_at("{{ upper `a`) }}").0, 12);
        // Calls take no parentheses in Go templates.
        assert_eq!(syntax_at("{{ upper(`a`) }}").0, 8);
        let deep = format!("{{{{ {}`x`{} }}}}", "(".repeat(64), ")".repeat(64));
        assert_eq!(ok(&deep), "x");
        let deeper = format!("{{{{ {}`x`{} }}}}", "(".repeat(65), ")".repeat(65));
        let (off, msg) = syntax_at(&deeper);
        assert_eq!(off, 3 + 64);
        assert!(msg.contains("64"), "{msg}");
        let huge = format!("{{{{ {}", "(".repeat(100_000));
        assert!(matches!(r(&huge), Err(InterpError::Syntax { .. })));
    }

    #[test]
    fn pipeline_errors() {
        assert_eq!(
            syntax_at("{{ `a` | }}"),
            (7, "`|` must be followed by a function call".to_string())
        );
        assert_eq!(syntax_at("{{ | upper }}").0, 3);
        assert_eq!(syntax_at("{{ `a` | | upper }}").0, 9);
        assert_eq!(syntax_at("{{ `a` | `b` }}").0, 9);
        assert_eq!(syntax_at("{{ `a` | .HTTPIP }}").0, 9);
        assert_eq!(syntax_at("{{ `a` `b` }}").0, 7);
        assert_eq!(syntax_at("{{ .HTTPIP `b` }}").0, 11);
        assert_eq!(syntax_at("{{ 1 2 }}").0, 5);
        assert_eq!(syntax_at("{{ `a``b` }}").0, 6);
        // The piped value counts as an argument.
        assert_eq!(bad_args("{{ `a` | upper `b` }}").0, 9);
        assert_eq!(bad_args("{{ `a` | timestamp }}").0, 9);
        // A niladic function used as an argument is called without arguments (Go).
        assert_eq!(bad_args("{{ upper upper `x` }}").0, 3);
        assert_eq!(bad_args("{{ replace_all `a` `b` upper }}").0, 23);
    }

    // --- context fields ----------------------------------------------------------------------

    #[test]
    fn fields() {
        assert_eq!(ok("http://{{ .HTTPIP }}/x"), "http://10.0.2.2/x");
        assert_eq!(ok("{{ .HTTPIP | upper }}"), "10.0.2.2");
        assert_eq!(
            r("a {{ .Nope }}"),
            Err(InterpError::FieldNotAllowed {
                offset: 5,
                field: "Nope".to_string()
            })
        );
        assert_eq!(
            r("{{ .HTTPIP.Port }}"),
            Err(InterpError::FieldNotAllowed {
                offset: 3,
                field: "HTTPIP.Port".to_string()
            })
        );
        assert_eq!(syntax_at("{{ . }}").0, 3);
        assert_eq!(syntax_at("{{ (`x`).Field }}").0, 8);
        assert_eq!(syntax_at("{{ upper.Field }}").0, 8);
        assert_eq!(syntax_at("{{ .Field@ }}").0, 9);
    }

    #[test]
    fn deferred_fields_stay_verbatim() {
        assert_eq!(ok("{{ .HTTPPort }}"), "{{ .HTTPPort }}");
        assert_eq!(
            ok("http://{{ .HTTPIP }}:{{.HTTPPort}}/ks.cfg"),
            "http://10.0.2.2:{{.HTTPPort}}/ks.cfg"
        );
        assert_eq!(ok("{{ .HTTPPort | upper }}"), "{{ .HTTPPort | upper }}");
        assert_eq!(
            ok("{{ replace_all `a` .HTTPPort (user `name`) }}"),
            "{{ replace_all `a` .HTTPPort (user `name`) }}"
        );
        assert_eq!(
            ok("{{ upper (lower .HTTPPort) }}"),
            "{{ upper (lower .HTTPPort) }}"
        );
        // Trim markers are kept with the action and still applied to the text now.
        assert_eq!(ok("a {{- .HTTPPort -}} b"), "a{{- .HTTPPort -}}b");
        // Errors elsewhere in the action are still reported.
        assert!(matches!(
            r("{{ replace_all .HTTPPort `x` (user `nope`) }}"),
            Err(InterpError::UndeclaredVariable { offset: 35, .. })
        ));
        // Re-rendering the kept text once the field is known fills it in.
        let first = ok("p={{.HTTPPort | replace_all `0` `o`}} n={{user `name`}}");
        assert_eq!(first, "p={{.HTTPPort | replace_all `0` `o`}} n=web");
        let second = rf(&first, &[("HTTPPort", Some("8080".to_string()))]);
        assert_eq!(second, Ok("p=8o8o n=web".to_string()));
    }

    // --- unsupported Go constructs and other syntax errors ----------------------------------

    #[test]
    fn go_control_structures_are_refused() {
        for (src, off) in [
            ("{{ if true }}x{{ end }}", 3),
            ("ab{{range .X}}{{end}}", 4),
            ("{{with `x`}}{{end}}", 2),
            ("{{define `t`}}{{end}}", 2),
            ("{{template `t`}}", 2),
            ("{{block `t` .}}{{end}}", 2),
            ("{{else}}", 2),
            ("{{end}}", 2),
            ("{{break}}", 2),
            ("{{continue}}", 2),
            ("{{ $x := `a` }}", 3),
            ("{{ $x }}", 3),
            ("{{ $ }}", 3),
            ("{{ $x = `a` }}", 3),
            ("{{ upper = }}", 9),
        ] {
            let (o, msg) = syntax_at(src);
            assert_eq!(o, off, "{src}");
            assert!(
                msg.contains("does not support the Go template construct"),
                "{src}: {msg}"
            );
        }
        for (src, off) in [
            ("{{ true }}", 3),
            ("{{ nil }}", 3),
            ("{{ 'a' }}", 3),
            ("{{ 1.5 }}", 3),
            ("{{ 1e3 }}", 3),
            ("{{ 1+2i }}", 3),
        ] {
            assert_eq!(syntax_at(src).0, off, "{src}");
        }
    }

    #[test]
    fn syntax_errors_have_offsets() {
        assert_eq!(
            syntax_at("abc {{ user `x`"),
            (4, "unclosed action: missing `}}`".to_string())
        );
        assert_eq!(syntax_at("{{").0, 0);
        assert_eq!(syntax_at("x{{}}").0, 1);
        assert_eq!(syntax_at("{{ }}").0, 0);
        assert_eq!(syntax_at("{{- -}}").0, 4);
        assert_eq!(syntax_at("{{ \"abc }}").0, 3);
        assert_eq!(syntax_at("{{ `abc }}").0, 3);
        assert_eq!(syntax_at("{{ user\"x\" }}").0, 7);
        assert_eq!(syntax_at("{{ 3x }}").0, 3);
        assert_eq!(syntax_at("{{ 0x }}").0, 3);
        assert_eq!(syntax_at("{{ 99999999999999999999 }}").0, 3);
        assert_eq!(syntax_at("{{ @ }}").0, 3);
        assert_eq!(syntax_at("{{ user `a`, `b` }}").0, 11);
        assert_eq!(syntax_at("{{ ☃ }}").0, 3);
        assert_eq!(syntax_at("é{{ timestamp-}}").0, 14);
        // Lexing stops at the first error; earlier parse errors win, as in Go.
        assert_eq!(syntax_at("{{ `a` | | @ }}").0, 9);
    }

    #[test]
    fn referenced_variables_in_order_without_duplicates() {
        assert_eq!(referenced_variables("no actions"), Ok(vec![]));
        assert_eq!(
            referenced_variables(
                "{{user `b`}}-{{ user \"a\" }}-{{user `b` | upper}}-{{ upper (user `c`) }}-{{ `d` | user }}"
            ),
            Ok(vec![
                "b".to_string(),
                "a".to_string(),
                "c".to_string(),
                "d".to_string()
            ])
        );
        // Only literal names count.
        assert_eq!(
            referenced_variables("{{ user (lower `X`) }}{{ env `HOME` }}{{ .F }}"),
            Ok(vec![])
        );
        assert!(matches!(
            referenced_variables("{{ user `a` "),
            Err(InterpError::Syntax { offset: 0, .. })
        ));
        // Works where rendering would fail (refused functions, unknown fields).
        assert_eq!(
            referenced_variables("{{ vault (user `path`) `k` }}{{ .Nope }}"),
            Ok(vec!["path".to_string()])
        );
    }

    #[test]
    fn parse_once_render_many() {
        let t = parse("{{user `name`}}-{{.HTTPIP}}").unwrap();
        assert!(!t.is_literal());
        assert!(parse("just text {{/* c */}}").unwrap().is_literal());
        let run = run();
        let vars = vars();
        for ip in ["a", "b"] {
            let fields = [("HTTPIP", Some(ip.to_string()))];
            let ctx = Context {
                vars: &vars,
                allow_env: false,
                env: &env,
                run: &run,
                build_name: None,
                build_type: None,
                fields: &fields,
            };
            assert_eq!(t.render(&ctx).unwrap(), format!("web-{ip}"));
        }
    }

    #[test]
    fn nested_and_repeated_use_of_the_scratch_buffers() {
        // An `env` callback that renders a template itself while the outer render runs.
        let run = run();
        let vars = vars();
        let inner_env = |name: &str| -> Option<String> {
            let ctx = Context {
                vars: &vars,
                allow_env: false,
                env: &env,
                run: &run,
                build_name: None,
                build_type: None,
                fields: &[],
            };
            render(&format!("<{{{{ upper `{name}` }}}}>"), &ctx).ok()
        };
        let ctx = Context {
            vars: &vars,
            allow_env: true,
            env: &inner_env,
            run: &run,
            build_name: None,
            build_type: None,
            fields: &[],
        };
        assert_eq!(
            render("{{ env `a` }}-{{ env `b` }}", &ctx),
            Ok("<A>-<B>".to_string())
        );
        // A failed parse leaves the buffers usable.
        assert!(r("{{ user `name` | }}").is_err());
        assert_eq!(ok("{{ user `name` }}"), "web");
        assert!(r("{{ ((( }}").is_err());
        assert_eq!(ok("{{ (user `name`) }}"), "web");
    }

    #[test]
    fn error_messages_read_well() {
        let e = r("{{ if }}").unwrap_err().to_string();
        assert!(
            e.starts_with("template syntax: kiln does not support"),
            "{e}"
        );
        let e = r("{{ build_name `x` }}").unwrap_err().to_string();
        assert!(
            e.starts_with("`build_name`: takes no arguments, got 1"),
            "{e}"
        );
        let e = r("{{ vault `a` `b` }}").unwrap_err().to_string();
        assert!(
            e.starts_with("template function `vault` is not supported by kiln: "),
            "{e}"
        );
    }

    // --- robustness ----------------------------------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn random_input_never_panics() {
        const PIECES: &[&str] = &[
            "{{",
            "}}",
            "{{-",
            "-}}",
            " ",
            "\t",
            "\n",
            "\r",
            "|",
            "(",
            ")",
            "\"",
            "`",
            "\\",
            "'",
            ".",
            ".HTTPIP",
            ".HTTPPort",
            ".X",
            "$x",
            ":=",
            "=",
            ",",
            "-",
            "+",
            "0",
            "1",
            "0x",
            "1.5",
            "_",
            "user",
            "env",
            "upper",
            "lower",
            "split",
            "replace",
            "replace_all",
            "isotime",
            "timestamp",
            "uuid",
            "build_name",
            "build",
            "vault",
            "if",
            "end",
            "nope",
            "`name`",
            "\"version\"",
            "/*",
            "*/",
            "é",
            "☃",
            "\u{0}",
            "\\x",
            "\\u",
            "\\U0001",
            "2006",
            "a",
            "}",
            "{",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let run = run();
        let vars = vars();
        let fields = [("HTTPIP", Some("1.2.3.4".to_string())), ("HTTPPort", None)];
        for round in 0..600 {
            let len = (rng.next() % 24) as usize;
            let mut src = String::new();
            for _ in 0..len {
                if rng.next().is_multiple_of(5) {
                    // Arbitrary characters, including multi-byte ones.
                    let c = char::from_u32((rng.next() % 0x3000) as u32).unwrap_or('x');
                    src.push(c);
                } else {
                    src.push_str(PIECES[(rng.next() % PIECES.len() as u64) as usize]);
                }
            }
            let ctx = Context {
                vars: &vars,
                allow_env: round % 2 == 0,
                env: &env,
                run: &run,
                build_name: Some("b"),
                build_type: None,
                fields: &fields,
            };
            let result = render(&src, &ctx);
            if let Err(e) = &result {
                let offset = match e {
                    InterpError::Syntax { offset, .. }
                    | InterpError::UnknownFunction { offset, .. }
                    | InterpError::Unsupported { offset, .. }
                    | InterpError::UndeclaredVariable { offset, .. }
                    | InterpError::EnvNotAllowed { offset }
                    | InterpError::FieldNotAllowed { offset, .. }
                    | InterpError::BadArguments { offset, .. } => *offset,
                };
                assert!(offset <= src.len(), "{src:?}: {e:?}");
                assert!(src.is_char_boundary(offset), "{src:?}: {e:?}");
            }
            let _ = referenced_variables(&src);
        }
    }

    #[test]
    fn large_templates_are_fast() {
        let mut src = String::new();
        for i in 0..20_000 {
            let _ = writeln!(
                src,
                "line {i} {{{{ user `name` | upper }}}} {{{{ .HTTPIP }}}} {{{{isotime `2006`}}}} plain text here"
            );
        }
        assert!(src.len() > 1_000_000);
        let start = std::time::Instant::now();
        let out = r(&src).unwrap();
        let elapsed = start.elapsed();
        assert!(out.contains("line 19999 WEB 10.0.2.2 2009 plain"));
        // Generous bound: debug builds are much slower than release.
        assert!(elapsed.as_secs() < 5, "{elapsed:?}");
        let text = "x".repeat(1_000_000);
        assert_eq!(r(&text).unwrap().len(), 1_000_000);
    }
}
