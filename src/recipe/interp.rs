//! Packer's template language (a subset of Go's `text/template`): `{{user `x`}}`,
//! `{{timestamp}}`, `{{ .HTTPPort }}`, pipelines and the functions Packer defines.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

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
    #[error("template function `{name}` is not supported by kiln")]
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

/// Renders `src` in `ctx`.
pub fn render(src: &str, ctx: &Context<'_>) -> Result<String, InterpError> {
    let _ = ctx;
    Ok(src.to_string())
}

/// Names of the user variables that `src` references through `user`, in order of appearance,
/// without duplicates. Used to resolve variables in dependency order.
pub fn referenced_variables(src: &str) -> Result<Vec<String>, InterpError> {
    let _ = src;
    Ok(Vec::new())
}
