//! Typed reading of one JSON object of a recipe (a builder, provisioner or post-processor):
//! interpolates strings, converts types the way Packer's weakly typed decoder does, reports
//! every problem with its position and key path, and flags keys nobody read.

use std::collections::BTreeMap;
use std::time::Duration;

use super::diag::Diagnostics;
use super::interp::{self, Context, InterpError, RunInfo};
use super::json::{Member, Node, Pos, Value};
use super::units;

/// What interpolation can see while a section is decoded.
pub(crate) struct Scope<'a> {
    /// The file name used in diagnostics.
    pub file: &'a str,
    /// Resolved user variables.
    pub vars: &'a BTreeMap<String, String>,
    /// Run-wide facts.
    pub run: &'a RunInfo,
    /// Environment lookup (only used where `env` is allowed).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `{{build_name}}` here.
    pub build_name: Option<&'a str>,
    /// `{{build_type}}` here.
    pub build_type: Option<&'a str>,
    /// Context fields allowed everywhere in this scope but known only later (the build values
    /// of `{{ build `Port` }}` in provisioners): kept verbatim for the run.
    pub deferred: &'a [(&'a str, Option<String>)],
}

impl Scope<'_> {
    /// Renders `text` (found in the string node at `pos`) with the given context fields.
    /// On failure, reports the error at the exact place inside the string and returns `None`.
    pub fn render(
        &self,
        diags: &mut Diagnostics,
        path: &str,
        pos: Pos,
        text: &str,
        fields: &[(&str, Option<String>)],
    ) -> Option<String> {
        if !text.contains("{{") {
            return Some(text.to_string());
        }
        let merged: Vec<(&str, Option<String>)>;
        let fields = if self.deferred.is_empty() {
            fields
        } else {
            merged = fields.iter().chain(self.deferred).cloned().collect();
            &merged
        };
        let ctx = Context {
            vars: self.vars,
            allow_env: false,
            env: self.env,
            run: self.run,
            build_name: self.build_name,
            build_type: self.build_type,
            fields,
        };
        // Packer 1.6 renders `{{user `x`}}` of an undeclared `x` as "": so does kiln, with a
        // warning that names it (it is most often a typo).
        let mut with_undeclared: Option<BTreeMap<String, String>> = None;
        loop {
            let vars = with_undeclared.as_ref().unwrap_or(self.vars);
            let ctx = Context { vars, ..ctx };
            match interp::render(text, &ctx) {
                Ok(s) => return Some(s),
                Err(InterpError::UndeclaredVariable { name, offset })
                    if !with_undeclared
                        .as_ref()
                        .is_some_and(|v| v.contains_key(&name)) =>
                {
                    let at = pos_in_string(pos, text, offset);
                    let hint = match suggest_variable(&name, self.vars.keys()) {
                        Some(known) => {
                            format!(" (did you mean `{known}`? variable names are case-sensitive)")
                        }
                        None => String::new(),
                    };
                    diags.warning(
                        self.file,
                        Some(at),
                        path,
                        format!(
                            "undeclared variable `{name}` renders as \"\" (as in Packer 1.6){hint}: declare it in \"variables\" or pass -var {name}=VALUE"
                        ),
                    );
                    with_undeclared
                        .get_or_insert_with(|| self.vars.clone())
                        .insert(name, String::new());
                }
                Err(e) => {
                    let at = pos_in_string(pos, text, interp_offset(&e));
                    diags.error(self.file, Some(at), path, explain_interp_error(&e, fields));
                    return None;
                }
            }
        }
    }
}

/// The byte offset an interpolation error points at.
pub(crate) fn interp_offset(e: &InterpError) -> usize {
    match e {
        InterpError::Syntax { offset, .. }
        | InterpError::UnknownFunction { offset, .. }
        | InterpError::Unsupported { offset, .. }
        | InterpError::UndeclaredVariable { offset, .. }
        | InterpError::EnvNotAllowed { offset }
        | InterpError::FieldNotAllowed { offset, .. }
        | InterpError::BadArguments { offset, .. } => *offset,
    }
}

/// An interpolation error in words that say what to do.
pub(crate) fn explain_interp_error(e: &InterpError, fields: &[(&str, Option<String>)]) -> String {
    match e {
        InterpError::UndeclaredVariable { name, .. } => format!(
            "undeclared variable `{name}`: declare it in \"variables\" or pass -var {name}=VALUE"
        ),
        InterpError::EnvNotAllowed { .. } => {
            "`env` can only be used in the \"variables\" section: \
             declare a variable with default \"{{env `NAME`}}\" and use {{user `name`}} here"
                .to_string()
        }
        InterpError::FieldNotAllowed { field, .. } if field.starts_with("build ") => {
            let name = &field["build ".len()..];
            format!(
                "{{{{ build `{name}` }}}} is not available here: the build's values are filled in when a provisioner runs (its commands, environment, files and Ansible's arguments)"
            )
        }
        InterpError::FieldNotAllowed { field, .. } => {
            let hint = match suggest(field, fields.iter().map(|(n, _)| *n)) {
                Some(s) => format!(" (did you mean `.{s}`?)"),
                None => match field_home(field) {
                    Some(home) => format!(" (`.{field}` is filled in at build time in {home})"),
                    None => String::new(),
                },
            };
            if fields.is_empty() {
                format!("`.{field}` is not available in this option{hint}")
            } else {
                let names: Vec<String> = fields
                    .iter()
                    .filter(|(n, _)| !n.starts_with("build "))
                    .map(|(n, _)| format!(".{n}"))
                    .collect();
                format!(
                    "`.{field}` is not available here{hint}; available: {}",
                    names.join(", ")
                )
            }
        }
        InterpError::UnknownFunction { name, .. } => {
            // Every equally close name: `uper` is as close to `user` as to `upper`.
            let best = suggest(name, FUNCTIONS.iter().copied()).map(|s| edit_distance(name, s));
            let close: Vec<String> = FUNCTIONS
                .iter()
                .filter(|f| Some(edit_distance(name, f)) == best)
                .map(|f| format!("`{f}`"))
                .collect();
            if close.is_empty() {
                format!(
                    "unknown template function `{name}` (kiln knows: {})",
                    FUNCTIONS.join(", ")
                )
            } else {
                format!(
                    "unknown template function `{name}` (did you mean {}?)",
                    close.join(" or ")
                )
            }
        }
        other => other.to_string(),
    }
}

/// The template functions kiln runs, as listed in messages.
const FUNCTIONS: &[&str] = &[
    "user",
    "env",
    "timestamp",
    "isotime",
    "uuid",
    "build_name",
    "build_type",
    "pwd",
    "template_dir",
    "upper",
    "lower",
    "replace",
    "replace_all",
    "split",
    "clean_resource_name",
    "build",
];

/// Where a context field can be used, for messages about using it elsewhere.
fn field_home(field: &str) -> Option<&'static str> {
    Some(match field {
        "HTTPIP" | "HTTPPort" | "HTTPDir" | "OutputDir" | "Name" | "SSHHostPort" => {
            "the qemu builder's `boot_command` and `qemuargs`"
        }
        "SSHPublicKey" => "the qemu builder's `boot_command`, `http_content` and `cd_content`",
        "Path" | "Vars" | "EnvVarFile" => "a `shell` provisioner's `execute_command`",
        "Script" | "Command" => "`shell-local`'s `execute_command`",
        "BuildName" | "BuilderType" | "ChecksumType" => {
            "the `output` of the `checksum` and `compress` post-processors"
        }
        _ => return None,
    })
}

/// The position of byte `offset` inside a JSON string literal starting at `pos` (its quote).
/// Exact when the string has no escapes before `offset`.
pub(crate) fn pos_in_string(pos: Pos, text: &str, offset: usize) -> Pos {
    let prefix = text.get(..offset.min(text.len())).unwrap_or(text);
    match prefix.rfind('\n') {
        // A decoded newline cannot be in a JSON string literal's line; stay on the quote's line.
        Some(_) => pos,
        None => Pos {
            line: pos.line,
            col: pos.col + 1 + prefix.chars().count() as u32,
        },
    }
}

/// A human name for a JSON value's kind.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Edit distance for "did you mean" suggestions: insertions, deletions, substitutions and
/// swaps of two adjacent characters (`sha265` is one step from `sha256`) each count one
/// (optimal string alignment).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous (for swaps), the previous and the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 0..a.len() {
        let mut cur = vec![i + 1; b.len() + 1];
        for j in 0..b.len() {
            let cost = usize::from(a[i] != b[j]);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                cur[j + 1] = cur[j + 1].min(before[j - 1] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// The closest name in `known` to `name`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'k>(name: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).max(2);
    known
        .into_iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The declared variable `name` most likely means: one that differs only in case, else a
/// close spelling.
pub(crate) fn suggest_variable<'k>(
    name: &str,
    known: impl IntoIterator<Item = &'k String>,
) -> Option<&'k str> {
    let known: Vec<&str> = known.into_iter().map(String::as_str).collect();
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
        .or_else(|| suggest(name, known.iter().copied()))
}

/// Reads the options of one JSON object.
pub(crate) struct Fields<'a, 's> {
    scope: &'s Scope<'s>,
    /// Where problems go.
    pub diags: &'s mut Diagnostics,
    path: String,
    pos: Pos,
    what: String,
    members: Vec<&'a Member>,
    used: Vec<bool>,
    known: Vec<&'static str>,
    /// Options whose value could not be read (already reported): later errors about them
    /// ("`x` is required") would only repeat that, so they are dropped.
    failed: Vec<String>,
}

impl<'a, 's> Fields<'a, 's> {
    /// Starts reading `members` (already merged with any override) of the object at `pos`,
    /// known as `path` in diagnostics and as `what` in messages ("builder qemu").
    pub fn new(
        scope: &'s Scope<'s>,
        diags: &'s mut Diagnostics,
        path: String,
        pos: Pos,
        what: impl Into<String>,
        members: Vec<&'a Member>,
    ) -> Self {
        let used = vec![false; members.len()];
        Self {
            scope,
            diags,
            path,
            pos,
            what: what.into(),
            members,
            used,
            known: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The key path of option `key`.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The scope used for interpolation.
    pub fn scope(&self) -> &'s Scope<'s> {
        self.scope
    }

    /// Takes the raw member for `key`, marking it read.
    pub fn take(&mut self, key: &'static str) -> Option<&'a Member> {
        self.known.push(key);
        let mut found = None;
        for (i, m) in self.members.iter().enumerate() {
            if m.key == key {
                self.used[i] = true;
                found = Some(*m);
            }
        }
        found
    }

    /// Marks every option as read (for a configuration kiln accepts without checking it).
    pub fn take_all(&mut self) {
        self.used.iter_mut().for_each(|u| *u = true);
    }

    /// Whether `key` is present with a string value (not a list), without reading it.
    pub fn is_string(&self, key: &str) -> bool {
        self.members
            .iter()
            .any(|m| m.key == key && matches!(m.value.value, Value::String(_)))
    }

    /// Whether `key` is present (without reading it).
    pub fn has(&self, key: &str) -> bool {
        self.members.iter().any(|m| m.key == key)
    }

    /// Reports an error at option `key`.
    ///
    /// Dropped when the option's value already failed to render (the first error says why).
    pub fn error_at(&mut self, member: &Member, message: impl Into<String>) {
        if self.failed.contains(&member.key) {
            return;
        }
        let path = self.key_path(&member.key);
        self.diags
            .error(self.scope.file, Some(member.value.pos), &path, message);
    }

    /// Reports an error at `pos` (inside option `key`'s value), named by `path`.
    pub fn error_at_pos(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.diags.error(self.scope.file, Some(pos), path, message);
    }

    /// Reports a warning at option `key`.
    pub fn warn_at(&mut self, member: &Member, message: impl Into<String>) {
        let path = self.key_path(&member.key);
        self.diags
            .warning(self.scope.file, Some(member.key_pos), &path, message);
    }

    /// Reports a warning about the object as a whole.
    pub fn warning_here(&mut self, message: impl Into<String>) {
        let (file, pos, path) = (self.scope.file, self.pos, self.path.clone());
        self.diags.warning(file, Some(pos), &path, message);
    }

    /// Reports an error about the object as a whole.
    ///
    /// Dropped when it names (in backticks) an option whose value already failed to render.
    pub fn error_here(&mut self, message: impl Into<String>) {
        let message = message.into();
        if self
            .failed
            .iter()
            .any(|k| message.contains(&format!("`{k}`")))
        {
            return;
        }
        self.diags
            .error(self.scope.file, Some(self.pos), &self.path, message);
    }

    /// Renders one scalar node (numbers and booleans as written); anything else, or a
    /// failed interpolation, is reported and remembered (see [`Fields::error_at`]).
    pub fn render_node(
        &mut self,
        path: &str,
        node: &Node,
        fields: &[(&str, Option<String>)],
    ) -> Option<String> {
        let rendered = self.render_scalar(path, node, fields);
        if rendered.is_none() {
            let rest = path
                .strip_prefix(self.path.as_str())
                .map(|r| r.trim_start_matches('.'))
                .unwrap_or(path);
            let key = rest.split(['[', '.']).next().unwrap_or(rest);
            self.failed.push(key.to_string());
        }
        rendered
    }

    fn render_scalar(
        &mut self,
        path: &str,
        node: &Node,
        fields: &[(&str, Option<String>)],
    ) -> Option<String> {
        match &node.value {
            Value::String(s) => self.scope.render(self.diags, path, node.pos, s, fields),
            Value::Number(n) => Some(n.clone()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.diags.error(
                    self.scope.file,
                    Some(node.pos),
                    path,
                    format!("expected a string, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A string option, interpolated; numbers and booleans are accepted as their text.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        self.string_with(key, &[])
    }

    /// A string option whose template may use the given context fields.
    pub fn string_with(
        &mut self,
        key: &'static str,
        fields: &[(&str, Option<String>)],
    ) -> Option<String> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        self.render_node(&path, &m.value, fields)
    }

    /// A string option that must be one of `allowed`.
    pub fn one_of(&mut self, key: &'static str, allowed: &[&str]) -> Option<String> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        let value = self.render_node(&path, &m.value, &[])?;
        // An empty value (often a variable left empty) means "unset", as in Packer.
        if value.is_empty() {
            return None;
        }
        if allowed.contains(&value.as_str()) {
            Some(value)
        } else {
            let close = allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&value))
                .copied()
                .or_else(|| suggest(&value, allowed.iter().copied()));
            let hint = match close {
                Some(s) => format!(" (did you mean \"{s}\"?)"),
                None => String::new(),
            };
            self.error_at(
                m,
                format!(
                    "\"{value}\" is not a valid value; use one of: {}{hint}",
                    allowed.join(", ")
                ),
            );
            None
        }
    }

    /// A boolean option; also accepts Go's `strconv.ParseBool` strings and numbers, as
    /// Packer's weakly typed decoder does.
    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        let m = self.take(key)?;
        match &m.value.value {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => Some(n.parse::<f64>().map(|v| v != 0.0).unwrap_or(true)),
            Value::String(_) => {
                let path = self.key_path(key);
                let s = self.render_node(&path, &m.value, &[])?;
                match s.as_str() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
                    "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
                    _ => {
                        self.error_at(m, format!("expected true or false, got \"{s}\""));
                        None
                    }
                }
            }
            other => {
                self.error_at(m, format!("expected true or false, got {}", kind(other)));
                None
            }
        }
    }

    /// A non-negative integer option (numbers or numeric strings).
    pub fn uint(&mut self, key: &'static str) -> Option<u64> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        let text = match &m.value.value {
            Value::Number(n) => n.clone(),
            Value::String(_) => self.render_node(&path, &m.value, &[])?,
            other => {
                self.error_at(m, format!("expected a whole number, got {}", kind(other)));
                return None;
            }
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Some(0);
        }
        match trimmed.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                let got = match &m.value.value {
                    Value::Number(n) => n.clone(),
                    _ => format!("\"{text}\""),
                };
                self.error_at(m, format!("expected a whole number (0 or more), got {got}"));
                None
            }
        }
    }

    /// A Go duration option (`"20m"`).
    pub fn duration(&mut self, key: &'static str) -> Option<Duration> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        if let Value::Number(n) = &m.value.value {
            self.error_at(
                m,
                format!("expected a duration like \"20m\", got the number {n} (write it as a string with a unit, e.g. \"{n}s\")"),
            );
            return None;
        }
        let text = self.render_node(&path, &m.value, &[])?;
        match units::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(why) => {
                self.error_at(
                    m,
                    format!("expected a duration like \"20m\", got \"{text}\": {why}"),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a one-element list (Packer's weak
    /// decoding does the same).
    pub fn string_list(&mut self, key: &'static str) -> Option<Vec<String>> {
        self.string_list_with(key, &[])
    }

    /// A list of strings whose templates may use the given context fields.
    pub fn string_list_with(
        &mut self,
        key: &'static str,
        fields: &[(&str, Option<String>)],
    ) -> Option<Vec<String>> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        match &m.value.value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.render_node(&format!("{path}[{i}]"), item, fields) {
                        Some(s) => out.push(s),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Value::String(_) => self.render_node(&path, &m.value, fields).map(|s| vec![s]),
            other => {
                self.error_at(
                    m,
                    format!("expected a list of strings, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of lists of strings (`qemuargs`).
    pub fn string_lists_with(
        &mut self,
        key: &'static str,
        fields: &[(&str, Option<String>)],
    ) -> Option<Vec<Vec<String>>> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        let Value::Array(rows) = &m.value.value else {
            self.error_at(
                m,
                format!(
                    "expected a list of lists such as [[\"-m\", \"1024\"]], got {}",
                    kind(&m.value.value)
                ),
            );
            return None;
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut ok = true;
        for (i, row) in rows.iter().enumerate() {
            let row_path = format!("{path}[{i}]");
            let Value::Array(items) = &row.value else {
                self.diags.error(
                    self.scope.file,
                    Some(row.pos),
                    &row_path,
                    format!(
                        "expected a list such as [\"-m\", \"1024\"], got {}",
                        kind(&row.value)
                    ),
                );
                ok = false;
                continue;
            };
            let mut args = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                match self.render_node(&format!("{row_path}[{j}]"), item, fields) {
                    Some(s) => args.push(s),
                    None => ok = false,
                }
            }
            out.push(args);
        }
        ok.then_some(out)
    }

    /// An object of string values (`http_content`, `cd_content`), keys kept verbatim.
    pub fn string_map(&mut self, key: &'static str) -> Option<BTreeMap<String, String>> {
        self.string_map_with(key, &[])
    }

    /// An object of strings whose templates may use the given context fields.
    pub fn string_map_with(
        &mut self,
        key: &'static str,
        fields: &[(&str, Option<String>)],
    ) -> Option<BTreeMap<String, String>> {
        let m = self.take(key)?;
        let path = self.key_path(key);
        let Value::Object(members) = &m.value.value else {
            self.error_at(
                m,
                format!(
                    "expected an object of strings, got {}",
                    kind(&m.value.value)
                ),
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for member in members {
            match self.render_node(&format!("{path}.{}", member.key), &member.value, fields) {
                Some(s) => {
                    out.insert(member.key.clone(), s);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Marks `key` as a Packer option kiln refuses, with the reason and what to do.
    pub fn refuse(&mut self, key: &'static str, reason: &str) {
        if let Some(m) = self.take(key) {
            let what = self.what.clone();
            self.error_at(
                m,
                format!("{what}: `{key}` is not supported by kiln: {reason}"),
            );
        }
    }

    /// Marks `key` as a Packer option that kiln accepts and ignores, with a warning why.
    pub fn ignore(&mut self, key: &'static str, reason: &str) {
        if let Some(m) = self.take(key) {
            self.warn_at(m, format!("ignored: {reason}"));
        }
    }

    /// Reports every option nobody read, with a suggestion when one is close.
    pub fn finish(self) {
        for (i, m) in self.members.iter().enumerate() {
            if self.used[i] || m.key == "type" || m.key.starts_with('_') {
                continue;
            }
            let hint = match suggest(&m.key, self.known.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            let path = self.key_path(&m.key);
            self.diags.error(
                self.scope.file,
                Some(m.key_pos),
                &path,
                format!("unknown option `{}` for {}{hint}", m.key, self.what),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_letters_are_one_edit() {
        assert_eq!(edit_distance("sha265", "sha256"), 1);
        assert_eq!(edit_distance("sha265", "sha224"), 2);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(suggest("sha265", ["sha224", "sha256"]), Some("sha256"));
    }

    #[test]
    fn suggestions_find_typos_only() {
        let known = ["ssh_timeout", "ssh_username", "disk_size"];
        assert_eq!(suggest("ssh_timout", known), Some("ssh_timeout"));
        assert_eq!(suggest("disksize", known), Some("disk_size"));
        assert_eq!(suggest("completely_else", known), None);
    }

    #[test]
    fn positions_inside_strings() {
        let p = Pos { line: 3, col: 10 };
        assert_eq!(pos_in_string(p, "ab{{x}}", 2), Pos { line: 3, col: 13 });
        assert_eq!(pos_in_string(p, "é{{x}}", 2), Pos { line: 3, col: 12 });
    }
}
