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

mod ast;
mod eval;
mod funcs;
mod lex;
mod parse;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use ast::{Ast, Node, user_names};
use eval::render_nodes;
use parse::{Bufs, parse_into, with_scratch};

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

/// A [`InterpError::Syntax`] at `offset`.
fn syntax(offset: usize, message: impl Into<String>) -> InterpError {
    InterpError::Syntax {
        offset,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::interp::test_support::*;
    use std::fmt::Write as _;

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
