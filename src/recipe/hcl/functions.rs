//! Packer's HCL2 function library (the part real templates use), as `hcl-rs` functions.
//!
//! hcl-rs functions are plain `fn` pointers, so the run-wide facts some functions read
//! (`timestamp()` fixed per run, the working directory of `abspath` and `file`, the
//! environment of `env`) live in a thread-local [`RunState`] installed by [`enter`] for the
//! duration of one recipe's evaluation.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ::hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use ::hcl::{Map, Number, Value};
use chrono::{DateTime, Datelike, Timelike, Utc};
use sha2::Digest;

use crate::recipe::template::EnvLookup;

/// What functions read besides their arguments.
pub(crate) struct RunState {
    /// The run's start (`timestamp()`).
    pub started: DateTime<Utc>,
    /// The working directory (`abspath`, `file`, `path.cwd`).
    pub cwd: PathBuf,
    /// The environment (`env`).
    pub env: EnvLookup,
}

thread_local! {
    static RUN: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

/// Removes the [`RunState`] when dropped.
pub(crate) struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        RUN.with(|r| r.borrow_mut().take());
    }
}

/// Installs `state` for the functions until the returned guard is dropped.
pub(crate) fn enter(state: RunState) -> Entered {
    RUN.with(|r| *r.borrow_mut() = Some(state));
    Entered(())
}

fn with_run<T>(f: impl FnOnce(&RunState) -> T) -> Result<T, String> {
    RUN.with(|r| {
        r.borrow()
            .as_ref()
            .map(f)
            .ok_or_else(|| "not available here".to_string())
    })
}

/// The functions kiln implements, by name (for "unknown function" hints too).
pub(crate) const FUNCTIONS: &[&str] = &[
    "abspath",
    "basename",
    "can",
    "chomp",
    "coalesce",
    "concat",
    "contains",
    "dirname",
    "element",
    "env",
    "file",
    "fileexists",
    "fileset",
    "flatten",
    "format",
    "formatdate",
    "index",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lookup",
    "lower",
    "max",
    "merge",
    "min",
    "pathexpand",
    "regex",
    "regex_replace",
    "replace",
    "sha256",
    "split",
    "substr",
    "templatefile",
    "timestamp",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "upper",
    "uuidv4",
    "values",
    "zipmap",
];

/// Declares every function of [`FUNCTIONS`] in `ctx`.
pub(crate) fn declare(ctx: &mut Context) {
    use ParamType as P;
    let s = || P::String;
    let any = || P::Any;
    let list = || P::Array(Box::new(P::Any));
    let mut def = |name: &str, params: Vec<P>, variadic: Option<P>, f: ::hcl::eval::Func| {
        let mut b = FuncDef::builder().params(params);
        if let Some(v) = variadic {
            b = b.variadic_param(v);
        }
        ctx.declare_func(name, b.build(f));
    };
    def("abspath", vec![s()], None, abspath);
    def("basename", vec![s()], None, basename);
    def("can", vec![any()], None, can);
    def("chomp", vec![s()], None, chomp);
    def("coalesce", vec![], Some(any()), coalesce);
    def("concat", vec![], Some(list()), concat);
    def("contains", vec![list(), any()], None, contains);
    def("dirname", vec![s()], None, dirname);
    def("element", vec![list(), P::Number], None, element);
    def("env", vec![s()], None, env);
    def("file", vec![s()], None, file);
    def("fileexists", vec![s()], None, fileexists);
    def("fileset", vec![s(), s()], None, fileset);
    def("flatten", vec![list()], None, flatten);
    def("format", vec![s()], Some(any()), format);
    def("formatdate", vec![s(), s()], None, formatdate);
    def("index", vec![list(), any()], None, index);
    def("join", vec![s()], Some(list()), join);
    def("jsondecode", vec![s()], None, jsondecode);
    def("jsonencode", vec![any()], None, jsonencode);
    def("keys", vec![any()], None, keys);
    def("length", vec![any()], None, length);
    def("lookup", vec![any(), s()], Some(any()), lookup);
    def("lower", vec![s()], None, lower);
    def("max", vec![], Some(P::Number), max);
    def("merge", vec![], Some(any()), merge);
    def("min", vec![], Some(P::Number), min);
    def("pathexpand", vec![s()], None, pathexpand);
    def("regex", vec![s(), s()], None, regex);
    def("regex_replace", vec![s(), s(), s()], None, regex_replace);
    def("replace", vec![s(), s(), s()], None, replace);
    def("sha256", vec![s()], None, sha256);
    def("split", vec![s(), s()], None, split);
    def("substr", vec![s(), P::Number, P::Number], None, substr);
    def("templatefile", vec![s(), any()], None, templatefile);
    def("timestamp", vec![], None, timestamp);
    def("tolist", vec![list()], None, tolist);
    def("tomap", vec![any()], None, tomap);
    def("tonumber", vec![any()], None, tonumber);
    def("toset", vec![list()], None, toset);
    def("tostring", vec![any()], None, tostring);
    def("trim", vec![s(), s()], None, trim);
    def("trimprefix", vec![s(), s()], None, trimprefix);
    def("trimspace", vec![s()], None, trimspace);
    def("trimsuffix", vec![s(), s()], None, trimsuffix);
    def("try", vec![], Some(any()), try_);
    def("upper", vec![s()], None, upper);
    def("uuidv4", vec![], None, uuidv4);
    def("values", vec![any()], None, values);
    def("zipmap", vec![list(), list()], None, zipmap);
}

fn str_arg(args: &FuncArgs, i: usize) -> Result<&str, String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("argument {} must be a string, got {other}", i + 1)),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn num_arg(args: &FuncArgs, i: usize) -> Result<f64, String> {
    match args.get(i) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| "not a finite number".to_string()),
        Some(other) => Err(format!("argument {} must be a number, got {other}", i + 1)),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn list_arg(args: &FuncArgs, i: usize) -> Result<&[Value], String> {
    match args.get(i) {
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!("argument {} must be a list, got {other}", i + 1)),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A value as text, the way string templates show it.
pub(crate) fn to_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("the value is null".into()),
        other => Err(format!("cannot use {} as a string", kind(other))),
    }
}

/// A human name for an HCL value's kind.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn resolve(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    with_run(|run| run.cwd.join(p))
}

fn abspath(args: FuncArgs) -> Result<Value, String> {
    let p = resolve(str_arg(&args, 0)?)?;
    // Lexically cleaned, like Go's filepath.Abs.
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(Value::String(out.display().to_string()))
}

fn basename(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Value::String(if s.is_empty() { "." } else { "/" }.into()));
    }
    Ok(Value::String(
        trimmed.rsplit('/').next().unwrap_or(trimmed).to_string(),
    ))
}

fn dirname(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    let trimmed = s.trim_end_matches('/');
    let dir = match trimmed.rfind('/') {
        Some(0) => "/",
        Some(i) => &trimmed[..i],
        None if s.starts_with('/') => "/",
        None => ".",
    };
    Ok(Value::String(dir.to_string()))
}

/// `can(x)` once `x` evaluated (the lazy case is handled before evaluation).
fn can(_: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(true))
}

/// `try(a, …)` once its arguments evaluated: the first (the lazy case is handled before
/// evaluation).
fn try_(args: FuncArgs) -> Result<Value, String> {
    args.first()
        .cloned()
        .ok_or_else(|| "try() needs at least one argument".to_string())
}

fn chomp(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    Ok(Value::String(s.trim_end_matches(['\n', '\r']).to_string()))
}

fn trimspace(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(str_arg(&args, 0)?.trim().to_string()))
}

fn trim(args: FuncArgs) -> Result<Value, String> {
    let cut = str_arg(&args, 1)?;
    let s = str_arg(&args, 0)?.trim_matches(|c| cut.contains(c));
    Ok(Value::String(s.to_string()))
}

fn trimprefix(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    let p = str_arg(&args, 1)?;
    Ok(Value::String(s.strip_prefix(p).unwrap_or(s).to_string()))
}

fn trimsuffix(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    let p = str_arg(&args, 1)?;
    Ok(Value::String(s.strip_suffix(p).unwrap_or(s).to_string()))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(str_arg(&args, 0)?.to_lowercase()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(str_arg(&args, 0)?.to_uppercase()))
}

fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty argument".to_string())
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for i in 0..args.len() {
        out.extend_from_slice(list_arg(&args, i)?);
    }
    Ok(Value::Array(out))
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    let list = list_arg(&args, 0)?;
    Ok(Value::Bool(list.contains(&args[1])))
}

fn index(args: FuncArgs) -> Result<Value, String> {
    let list = list_arg(&args, 0)?;
    list.iter()
        .position(|v| *v == args[1])
        .map(|i| Value::Number(Number::from(i as u64)))
        .ok_or_else(|| "the item is not in the list".to_string())
}

fn element(args: FuncArgs) -> Result<Value, String> {
    let list = list_arg(&args, 0)?;
    if list.is_empty() {
        return Err("cannot use element on an empty list".into());
    }
    let i = num_arg(&args, 1)?;
    if i < 0.0 {
        return Err("the index must not be negative".into());
    }
    Ok(list[(i as usize) % list.len()].clone())
}

fn flatten(args: FuncArgs) -> Result<Value, String> {
    fn go(items: &[Value], out: &mut Vec<Value>) {
        for v in items {
            match v {
                Value::Array(inner) => go(inner, out),
                other => out.push(other.clone()),
            }
        }
    }
    let mut out = Vec::new();
    go(list_arg(&args, 0)?, &mut out);
    Ok(Value::Array(out))
}

fn tolist(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(list_arg(&args, 0)?.to_vec()))
}

fn env(args: FuncArgs) -> Result<Value, String> {
    let name = str_arg(&args, 0)?.to_string();
    with_run(|run| Value::String((run.env)(&name).unwrap_or_default()))
}

/// Files up to this size are read by `file()`.
const MAX_FILE: u64 = 16 * 1024 * 1024;

fn file(args: FuncArgs) -> Result<Value, String> {
    read_file(str_arg(&args, 0)?).map(Value::String)
}

fn read_file(name: &str) -> Result<String, String> {
    let path = resolve(name)?;
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if meta.len() > MAX_FILE {
        return Err(format!("{name} is larger than 16 MiB"));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {name}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))
}

fn fileexists(args: FuncArgs) -> Result<Value, String> {
    let path = resolve(str_arg(&args, 0)?)?;
    Ok(Value::Bool(path.is_file()))
}

fn format(args: FuncArgs) -> Result<Value, String> {
    let spec = str_arg(&args, 0)?;
    let mut rest = args.iter().skip(1);
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Flags and width are accepted and ignored, except `%%`.
        let mut verb = None;
        for v in chars.by_ref() {
            if v.is_ascii_alphabetic() || v == '%' {
                verb = Some(v);
                break;
            }
        }
        match verb {
            Some('%') => out.push('%'),
            Some(v @ ('s' | 'd' | 'v' | 'q' | 'f' | 't')) => {
                let arg = rest
                    .next()
                    .ok_or_else(|| format!("not enough arguments for `{spec}`"))?;
                match (v, arg) {
                    ('d', Value::Number(n)) => {
                        let f = n.as_f64().unwrap_or_default();
                        let _ = write!(out, "{}", f.trunc() as i64);
                    }
                    ('d', other) => return Err(format!("%d needs a number, got {other}")),
                    ('q', other) => {
                        let _ = write!(out, "{:?}", to_text(other)?);
                    }
                    ('v', v @ (Value::Array(_) | Value::Object(_))) => {
                        out.push_str(&serde_json::to_string(v).map_err(|e| e.to_string())?)
                    }
                    (_, other) => out.push_str(&to_text(other)?),
                }
            }
            Some(v) => return Err(format!("unsupported format verb %{v}")),
            None => return Err(format!("`{spec}` ends in the middle of a verb")),
        }
    }
    Ok(Value::String(out))
}

/// Parses an RFC 3339 timestamp (what `timestamp()` returns).
fn parse_time(s: &str) -> Result<DateTime<chrono::FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|_| format!("\"{s}\" is not an RFC 3339 timestamp"))
}

fn formatdate(args: FuncArgs) -> Result<Value, String> {
    let spec = str_arg(&args, 0)?;
    let t = parse_time(str_arg(&args, 1)?)?;
    format_date(spec, &t).map(Value::String)
}

/// Terraform's `formatdate` layout: `YYYY-MM-DD hh:mm:ss`, `EEE`, `MMM`, `'literal'`, …
pub(crate) fn format_date(spec: &str, t: &DateTime<chrono::FixedOffset>) -> Result<String, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // A quoted literal; '' is a quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            while j < chars.len() && chars[j] != '\'' {
                out.push(chars[j]);
                j += 1;
            }
            if j == chars.len() {
                return Err("unterminated literal in the format".into());
            }
            i = j + 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        let offset = t.offset().local_minus_utc();
        let piece = match (c, n) {
            ('Y', 4) => format!("{:04}", t.year()),
            ('Y', 2) => format!("{:02}", t.year().rem_euclid(100)),
            ('M', 4) => t.format("%B").to_string(),
            ('M', 3) => t.format("%b").to_string(),
            ('M', 2) => format!("{:02}", t.month()),
            ('M', 1) => t.month().to_string(),
            ('D', 2) => format!("{:02}", t.day()),
            ('D', 1) => t.day().to_string(),
            ('E', 4) => t.format("%A").to_string(),
            ('E', 3) => t.format("%a").to_string(),
            ('h', 2) => format!("{:02}", t.hour()),
            ('h', 1) => t.hour().to_string(),
            ('H', 2) => format!("{:02}", t.hour12().1),
            ('H', 1) => t.hour12().1.to_string(),
            ('m', 2) => format!("{:02}", t.minute()),
            ('m', 1) => t.minute().to_string(),
            ('s', 2) => format!("{:02}", t.second()),
            ('s', 1) => t.second().to_string(),
            ('A', 2) => if t.hour12().0 { "PM" } else { "AM" }.to_string(),
            ('a', 2) => if t.hour12().0 { "pm" } else { "am" }.to_string(),
            ('Z', 1) if offset == 0 => "Z".to_string(),
            ('Z', 1) | ('Z', 5) => {
                let sign = if offset < 0 { '-' } else { '+' };
                let o = offset.abs();
                format!("{sign}{:02}:{:02}", o / 3600, o % 3600 / 60)
            }
            ('Z', 4) => {
                let sign = if offset < 0 { '-' } else { '+' };
                let o = offset.abs();
                format!("{sign}{:02}{:02}", o / 3600, o % 3600 / 60)
            }
            ('Z', 3) if offset == 0 => "UTC".to_string(),
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "invalid date format sequence `{}`: use YYYY, MM, DD, hh, mm, ss, … or quote literal letters ('T')",
                    c.to_string().repeat(n)
                ));
            }
            (c, _) => c.to_string().repeat(n),
        };
        out.push_str(&piece);
        i += n;
    }
    Ok(out)
}

fn timestamp(_: FuncArgs) -> Result<Value, String> {
    with_run(|run| {
        Value::String(
            run.started
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    })
}

fn uuidv4(_: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(uuid::Uuid::new_v4().to_string()))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = str_arg(&args, 0)?;
    let mut parts = Vec::new();
    for i in 1..args.len() {
        for v in list_arg(&args, i)? {
            parts.push(to_text(v)?);
        }
    }
    Ok(Value::String(parts.join(sep)))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let sep = str_arg(&args, 0)?;
    let s = str_arg(&args, 1)?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep).map(|p| Value::String(p.to_string())).collect()
    };
    Ok(Value::Array(parts))
}

fn replace(args: FuncArgs) -> Result<Value, String> {
    let (s, from, to) = (str_arg(&args, 0)?, str_arg(&args, 1)?, str_arg(&args, 2)?);
    // `/…/` is a regular expression, as in Packer (and Terraform).
    if from.len() > 2 && from.starts_with('/') && from.ends_with('/') {
        let re = compile(&from[1..from.len() - 1])?;
        return Ok(Value::String(re.replace_all(s, to).into_owned()));
    }
    if from.is_empty() {
        return Ok(Value::String(s.to_string()));
    }
    Ok(Value::String(s.replace(from, to)))
}

/// A regular expression (Go's RE2 syntax, which the `regex` crate shares).
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
}

/// `regex(pattern, string)`: the first match — the matched text when the pattern has no
/// capture groups, the list of groups when they are unnamed, a map when they are named.
fn regex(args: FuncArgs) -> Result<Value, String> {
    let (pattern, s) = (str_arg(&args, 0)?, str_arg(&args, 1)?);
    let re = compile(pattern)?;
    let caps = re
        .captures(s)
        .ok_or_else(|| format!("pattern {pattern:?} does not match {s:?}"))?;
    let text = |m: Option<regex::Match<'_>>| {
        m.map_or(Value::Null, |m| Value::String(m.as_str().to_string()))
    };
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    if names.is_empty() {
        return Ok(text(caps.get(0)));
    }
    let named = names.iter().filter(|n| n.is_some()).count();
    if named == names.len() {
        let map: Map<String, Value> = names
            .iter()
            .flatten()
            .map(|n| (n.to_string(), text(caps.name(n))))
            .collect();
        return Ok(Value::Object(map));
    }
    if named > 0 {
        return Err(format!(
            "pattern {pattern:?} mixes named and unnamed capture groups; name all or none"
        ));
    }
    Ok(Value::Array(
        (1..=names.len()).map(|i| text(caps.get(i))).collect(),
    ))
}

/// `regex_replace(string, pattern, replacement)`: every match replaced (`$1`, `${name}`
/// refer to groups).
fn regex_replace(args: FuncArgs) -> Result<Value, String> {
    let (s, pattern, to) = (str_arg(&args, 0)?, str_arg(&args, 1)?, str_arg(&args, 2)?);
    Ok(Value::String(
        compile(pattern)?.replace_all(s, to).into_owned(),
    ))
}

/// A `fileset` glob as a regular expression over `/`-separated relative paths: `*` and `?`
/// stay within a directory, `**` crosses directories, `{a,b}` is either, `[…]` a class.
fn glob_regex(pattern: &str) -> Result<regex::Regex, String> {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut braces = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    out.push_str("(?:.*/)?");
                    i += 1;
                } else {
                    out.push_str(".*");
                }
                i += 1;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '{' => {
                braces += 1;
                out.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                out.push(')');
            }
            ',' if braces > 0 => out.push('|'),
            '[' => match chars[i..].iter().position(|&c| c == ']') {
                Some(end) => {
                    let class: String = chars[i + 1..i + end].iter().collect();
                    let class = class
                        .strip_prefix('!')
                        .map_or(class.clone(), |c| format!("^{c}"));
                    out.push('[');
                    out.push_str(&class.replace('\\', "\\\\"));
                    out.push(']');
                    i += end;
                }
                None => out.push_str("\\["),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if braces > 0 {
        return Err(format!("unbalanced {{ in the pattern {pattern:?}"));
    }
    out.push('$');
    compile(&out)
}

/// `fileset(path, pattern)`: the files under `path` whose paths relative to it match the
/// glob `pattern`, sorted.
fn fileset(args: FuncArgs) -> Result<Value, String> {
    let (dir, pattern) = (str_arg(&args, 0)?, str_arg(&args, 1)?);
    let root = resolve(dir)?;
    let re = glob_regex(pattern)?;
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(&root) {
                let rel = rel.to_string_lossy().into_owned();
                if re.is_match(&rel) {
                    found.push(rel);
                }
            }
        }
        if found.len() > 100_000 {
            return Err(format!("{dir} holds too many matching files"));
        }
    }
    found.sort();
    Ok(Value::Array(found.into_iter().map(Value::String).collect()))
}

fn substr(args: FuncArgs) -> Result<Value, String> {
    let chars: Vec<char> = str_arg(&args, 0)?.chars().collect();
    let len = chars.len() as i64;
    let mut offset = num_arg(&args, 1)? as i64;
    let length = num_arg(&args, 2)? as i64;
    if offset < 0 {
        offset += len;
    }
    if offset < 0 || offset > len {
        return Err("the offset is outside the string".into());
    }
    let end = if length < 0 {
        len
    } else {
        offset.saturating_add(length).min(len)
    };
    Ok(Value::String(
        chars[offset as usize..end as usize].iter().collect(),
    ))
}

fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(&args[0])
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn sha256(args: FuncArgs) -> Result<Value, String> {
    let digest = sha2::Sha256::digest(str_arg(&args, 0)?.as_bytes());
    Ok(Value::String(hex::encode(digest)))
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Object(m) => {
            let mut k: Vec<&String> = m.keys().collect();
            k.sort();
            Ok(Value::Array(
                k.into_iter().map(|k| Value::String(k.clone())).collect(),
            ))
        }
        other => Err(format!("keys needs a map, got {}", kind(other))),
    }
}

fn values(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Ok(Value::Array(
                entries.into_iter().map(|(_, v)| v.clone()).collect(),
            ))
        }
        other => Err(format!("values needs a map, got {}", kind(other))),
    }
}

fn length(args: FuncArgs) -> Result<Value, String> {
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        other => {
            return Err(format!(
                "length needs a string, list or map, got {}",
                kind(other)
            ));
        }
    };
    Ok(Value::Number(Number::from(n as u64)))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    let key = str_arg(&args, 1)?;
    let Value::Object(m) = &args[0] else {
        return Err(format!("lookup needs a map, got {}", kind(&args[0])));
    };
    match (m.get(key), args.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!(
            "the map has no key \"{key}\" and no default is given"
        )),
    }
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out: Map<String, Value> = Map::new();
    for v in args.iter() {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Null => {}
            other => return Err(format!("merge needs maps, got {}", kind(other))),
        }
    }
    Ok(Value::Object(out))
}

fn extreme(args: &FuncArgs, pick: fn(f64, f64) -> f64) -> Result<Value, String> {
    if args.is_empty() {
        return Err("needs at least one number".into());
    }
    let mut best = num_arg(args, 0)?;
    for i in 1..args.len() {
        best = pick(best, num_arg(args, i)?);
    }
    Ok(number(best))
}

fn min(args: FuncArgs) -> Result<Value, String> {
    extreme(&args, f64::min)
}

fn max(args: FuncArgs) -> Result<Value, String> {
    extreme(&args, f64::max)
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        v => to_text(v).map(Value::String),
    }
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Number(n) => Ok(Value::Number(*n)),
        Value::Null => Ok(Value::Null),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(number)
            .ok_or_else(|| format!("\"{s}\" is not a number")),
        other => Err(format!("cannot convert {} to a number", kind(other))),
    }
}

fn jsondecode(args: FuncArgs) -> Result<Value, String> {
    let v: serde_json::Value =
        serde_json::from_str(str_arg(&args, 0)?).map_err(|e| format!("not JSON: {e}"))?;
    Ok(from_json(v))
}

/// A JSON value as an HCL value.
pub(crate) fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().and_then(Number::from_f64).map(Value::Number))
            .unwrap_or(Value::Null),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
    }
}

fn pathexpand(args: FuncArgs) -> Result<Value, String> {
    let p = str_arg(&args, 0)?;
    let Some(rest) = p.strip_prefix('~') else {
        return Ok(Value::String(p.to_string()));
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Ok(Value::String(p.to_string()));
    }
    let home = with_run(|run| (run.env)("HOME"))?.ok_or("HOME is not set")?;
    Ok(Value::String(format!("{home}{rest}")))
}

fn templatefile(args: FuncArgs) -> Result<Value, String> {
    let name = str_arg(&args, 0)?;
    let text = read_file(name)?;
    let template: ::hcl::Template = text
        .parse()
        .map_err(|e: ::hcl::Error| format!("{name} is not a template: {e}"))?;
    let mut ctx = Context::new();
    declare(&mut ctx);
    match &args[1] {
        Value::Object(vars) => {
            for (k, v) in vars {
                ctx.declare_var(k.as_str(), v.clone());
            }
        }
        other => return Err(format!("the variables must be a map, got {}", kind(other))),
    }
    use ::hcl::eval::Evaluate;
    template
        .evaluate(&ctx)
        .map(Value::String)
        .map_err(|e| format!("in {name}: {}", e.kind()))
}

fn tomap(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        v @ (Value::Object(_) | Value::Null) => Ok(v.clone()),
        other => Err(format!("cannot convert {} to a map", kind(other))),
    }
}

fn toset(args: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for v in list_arg(&args, 0)? {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn zipmap(args: FuncArgs) -> Result<Value, String> {
    let (keys, values) = (list_arg(&args, 0)?, list_arg(&args, 1)?);
    if keys.len() != values.len() {
        return Err(format!(
            "{} keys and {} values: the lists must be as long",
            keys.len(),
            values.len()
        ));
    }
    let mut out = Map::new();
    for (k, v) in keys.iter().zip(values) {
        out.insert(to_text(k)?, v.clone());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hcl::eval::Evaluate;
    use std::sync::Arc;

    fn eval(expr: &str) -> Result<Value, String> {
        let started = DateTime::parse_from_rfc3339("2024-03-05T07:08:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let _run = enter(RunState {
            started,
            cwd: PathBuf::from("/work/dir"),
            env: Arc::new(|n| (n == "HOME").then(|| "/home/me".to_string())),
        });
        let mut ctx = Context::new();
        declare(&mut ctx);
        let e: ::hcl::Expression = expr.parse().map_err(|e: ::hcl::Error| e.to_string())?;
        e.evaluate(&ctx).map_err(|e| e.to_string())
    }

    fn s(expr: &str) -> String {
        match eval(expr) {
            Ok(Value::String(s)) => s,
            other => panic!("{expr}: {other:?}"),
        }
    }

    #[test]
    fn regular_expressions_as_packer_has_them() {
        assert_eq!(s(r#"regex("[0-9]+", "debian-12-amd64")"#), "12");
        assert_eq!(
            eval(r#"regex("(\\d+)\\.(\\d+)", "v1.7 and 2.0")"#).unwrap(),
            Value::Array(vec![Value::from("1"), Value::from("7")])
        );
        let Value::Object(named) =
            eval(r#"regex("(?P<major>\\d+)\\.(?P<minor>\\d+)", "v1.7")"#).unwrap()
        else {
            panic!("named groups give a map")
        };
        assert_eq!(named.get("major"), Some(&Value::from("1")));
        assert_eq!(named.get("minor"), Some(&Value::from("7")));
        assert!(
            eval(r#"regex("x+", "abc")"#)
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            eval(r#"regex("(", "abc")"#)
                .unwrap_err()
                .contains("invalid regular expression")
        );
        assert_eq!(
            s(r#"regex_replace("debian-12.4.0", "\\.[0-9]+$", "")"#),
            "debian-12.4"
        );
        assert_eq!(
            s(r#"regex_replace("a1b22", "([0-9]+)", "<$1>")"#),
            "a<1>b<22>"
        );
        assert_eq!(s(r##"replace("a1b22", "/[0-9]+/", "#")"##), "a#b#");
    }

    #[test]
    fn fileset_matches_globs_relative_to_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "scripts/a.sh",
            "scripts/b.sh",
            "scripts/sub/c.sh",
            "scripts/readme.md",
            "x.sh",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let set = |pattern: &str| {
            eval(&format!(
                r#"fileset("{}", "{pattern}")"#,
                dir.path().display()
            ))
            .unwrap()
        };
        let strings = |v: &[&str]| Value::Array(v.iter().map(|s| Value::from(*s)).collect());
        assert_eq!(
            set("scripts/*.sh"),
            strings(&["scripts/a.sh", "scripts/b.sh"])
        );
        assert_eq!(
            set("**/*.sh"),
            strings(&["scripts/a.sh", "scripts/b.sh", "scripts/sub/c.sh", "x.sh"])
        );
        assert_eq!(
            set("scripts/{a,b}.sh"),
            strings(&["scripts/a.sh", "scripts/b.sh"])
        );
        assert_eq!(set("scripts/[!a].sh"), strings(&["scripts/b.sh"]));
        assert_eq!(set("nothing/*"), strings(&[]));
    }

    #[test]
    fn string_functions() {
        assert_eq!(s(r#"join("-", ["a", "b"], ["c"])"#), "a-b-c");
        assert_eq!(s(r#"join(",", split(" ", "x y z"))"#), "x,y,z");
        assert_eq!(s(r#"replace("a.b.c", ".", "_")"#), "a_b_c");
        assert_eq!(s(r#"lower("AbC")"#), "abc");
        assert_eq!(s(r#"upper("AbC")"#), "ABC");
        assert_eq!(s(r#"trimspace("  x \n")"#), "x");
        assert_eq!(s(r#"chomp("x\n\n")"#), "x");
        assert_eq!(s(r#"trimprefix("source.qemu.vm", "source.")"#), "qemu.vm");
        assert_eq!(s(r#"trimsuffix("a.box", ".box")"#), "a");
        assert_eq!(s(r#"trim("?!hello?!", "!?")"#), "hello");
        assert_eq!(s(r#"substr("hello world", 1, 4)"#), "ello");
        assert_eq!(s(r#"substr("hello", -3, -1)"#), "llo");
        assert_eq!(s(r#"format("%s-%d-%v", "a", 12.7, true)"#), "a-12-true");
        assert_eq!(s(r#"format("100%%")"#), "100%");
        assert_eq!(
            s(r#"sha256("hello")"#),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s(r#"jsonencode({a = [1, "x"]})"#), r#"{"a":[1,"x"]}"#);
        assert_eq!(s(r#"tostring(5)"#), "5");
        assert_eq!(s(r#"coalesce("", "b")"#), "b");
        assert_eq!(s(r#"env("HOME")"#), "/home/me");
        assert_eq!(s(r#"env("NOPE")"#), "");
        assert_eq!(s(r#"element(["a", "b"], 3)"#), "b");
        assert_eq!(s(r#"lookup({a = "1"}, "b", "dflt")"#), "dflt");
    }

    #[test]
    fn paths() {
        assert_eq!(s(r#"basename("/a/b/c.sh")"#), "c.sh");
        assert_eq!(s(r#"dirname("/a/b/c.sh")"#), "/a/b");
        assert_eq!(s(r#"dirname("c.sh")"#), ".");
        assert_eq!(s(r#"abspath("x/../y")"#), "/work/dir/y");
        assert_eq!(s(r#"abspath("/etc")"#), "/etc");
        assert_eq!(
            eval(r#"fileexists("/nonexistent/x")"#),
            Ok(Value::Bool(false))
        );
        assert!(eval(r#"file("/nonexistent/x")"#).is_err());
    }

    #[test]
    fn collections_and_numbers() {
        assert_eq!(eval("length([1, 2, 3])"), Ok(Value::from(3)));
        assert_eq!(eval(r#"length("héllo")"#), Ok(Value::from(5)));
        assert_eq!(eval("max(1, 7, 3)"), Ok(Value::from(7)));
        assert_eq!(
            eval("min(4, 2.5)"),
            Ok(Value::Number(Number::from_f64(2.5).unwrap()))
        );
        assert_eq!(eval(r#"tonumber("42")"#), Ok(Value::from(42)));
        assert_eq!(eval(r#"contains(["a"], "a")"#), Ok(Value::Bool(true)));
        assert_eq!(
            eval(r#"keys({b = 1, a = 2})"#),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            eval(r#"values({b = 1, a = 2})"#),
            Ok(Value::Array(vec![2.into(), 1.into()]))
        );
        assert_eq!(
            eval(r#"concat(["a"], ["b", "c"])"#),
            Ok(Value::Array(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(
            eval(r#"merge({a = 1}, {a = 2, b = 3})"#),
            eval("{a = 2, b = 3}")
        );
        assert_eq!(
            eval(r#"flatten([["a"], [["b"]]])"#),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
        assert!(eval(r#"tonumber("x")"#).is_err());
        assert!(eval("element([], 0)").is_err());
    }

    #[test]
    fn time_is_fixed_per_run_and_formatted() {
        assert_eq!(s("timestamp()"), "2024-03-05T07:08:09Z");
        assert_eq!(
            s(r#"formatdate("YYYY-MM-DD hh:mm", timestamp())"#),
            "2024-03-05 07:08"
        );
        assert_eq!(
            s(r#"formatdate("YYYYMMDDhhmmss", timestamp())"#),
            "20240305070809"
        );
        assert_eq!(
            s(r#"formatdate("EEE, DD MMM YY 'at' h:mm aa ZZZ", "2024-03-05T15:04:00Z")"#),
            "Tue, 05 Mar 24 at 15:04 pm UTC"
        );
        assert_eq!(
            s(r#"formatdate("EEEE, D MMMM YYYY", "2024-12-01T00:00:00Z")"#),
            "Sunday, 1 December 2024"
        );
        assert!(eval(r#"formatdate("YYYY-x", timestamp())"#).is_err());
        assert!(eval(r#"formatdate("YYYY", "yesterday")"#).is_err());
        let u = s("uuidv4()");
        assert_eq!(u.len(), 36);
    }

    #[test]
    fn decoding_sets_maps_and_templates() {
        assert_eq!(
            eval(r#"jsondecode("{\"a\": [1, true]}")"#),
            eval("{a = [1, true]}")
        );
        assert_eq!(
            eval(r#"zipmap(["a", "b"], [1, 2])"#),
            eval("{a = 1, b = 2}")
        );
        assert_eq!(eval(r#"toset(["a", "b", "a"])"#), eval(r#"["a", "b"]"#));
        assert_eq!(s(r#"pathexpand("~/x")"#), "/home/me/x");
        assert_eq!(s(r#"pathexpand("/x")"#), "/x");
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("user-data.pkrtpl");
        std::fs::write(
            &t,
            "#cloud-config\nusers:\n%{ for u in users ~}\n  - name: ${u}\n%{ endfor ~}\nhostname: ${upper(host)}\n",
        )
        .unwrap();
        assert_eq!(
            s(&format!(
                r#"templatefile("{}", {{ users = ["a", "b"], host = "vm" }})"#,
                t.display()
            )),
            "#cloud-config\nusers:\n  - name: a\n  - name: b\nhostname: VM\n"
        );
        assert!(eval(r#"templatefile("/nonexistent", {})"#).is_err());
    }

    #[test]
    fn run_state_is_required_for_run_facts() {
        let mut ctx = Context::new();
        declare(&mut ctx);
        let e: ::hcl::Expression = "timestamp()".parse().unwrap();
        assert!(e.evaluate(&ctx).is_err());
    }
}
