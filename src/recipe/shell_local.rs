//! The `shell-local` configuration, shared by the `shell-local` provisioner and the
//! `shell-local` post-processor (Packer decodes both with the same code), and the pieces of
//! shell-script decoding the remote `shell` provisioner shares with it: the exactly-one-of
//! `inline` / `script` / `scripts` choice, `environment_vars`, `env`, `env_var_format` and
//! `valid_exit_codes`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::decode::{self, Fields};
use super::json::{Node, Pos, Value};

/// Operating systems `only_on` may name (Go's `GOOS` values Packer accepts).
pub const ONLY_ON_OSES: &[&str] = &[
    "darwin", "freebsd", "linux", "openbsd", "solaris", "windows",
];

/// The default `execute_command` of `shell-local`: the script runs through `/bin/sh -c`.
pub const DEFAULT_EXECUTE_COMMAND: [&str; 3] = ["/bin/sh", "-c", "{{.Vars}} {{.Script}}"];

/// The default `inline_shebang` (first line of the script made from inline commands).
pub const DEFAULT_INLINE_SHEBANG: &str = "/bin/sh -e";

/// The default `env_var_format`: how one variable is written into `{{.Vars}}`.
pub const DEFAULT_ENV_VAR_FORMAT: &str = "%s='%s' ";

/// Context fields of `shell-local`'s `execute_command`, filled in when the script runs:
/// `{{.Vars}}` (the formatted environment variables), `{{.Script}}` and `{{.Command}}` (both
/// the path of the script to run).
const EXECUTE_COMMAND_FIELDS: [(&str, Option<String>); 3] =
    [("Vars", None), ("Script", None), ("Command", None)];

/// One thing a shell step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ShellSource {
    /// Commands (from `inline`, or `command` for `shell-local`), written one per line into a
    /// temporary script that starts with `#!` and the `inline_shebang`.
    Inline(Vec<String>),
    /// A local script file (from `script` or `scripts`). Always absolute: relative paths were
    /// resolved from the working directory, as Packer does. Checked to exist when decoded.
    File(PathBuf),
}

/// Configuration of `shell-local`: commands or scripts run on the machine running kiln.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellLocalConfig {
    /// What to run, in order: one [`ShellSource::Inline`] (from `inline` or the older
    /// `command`) or one [`ShellSource::File`] per script (`script`, `scripts`). Never empty.
    pub sources: Vec<ShellSource>,
    /// `environment_vars`: `KEY=VALUE` pairs, split at the first `=`, in order.
    pub environment_vars: Vec<(String, String)>,
    /// `env`: more environment variables, by name.
    pub env: BTreeMap<String, String>,
    /// `env_var_format`: a printf-style format with two `%s` (name, value) used to build
    /// `{{.Vars}}`. Default `%s='%s' `.
    pub env_var_format: String,
    /// `execute_command`: the program and arguments that run one script. Default
    /// `["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]`. User variables are already rendered;
    /// `{{.Vars}}`, `{{.Script}}` and `{{.Command}}` are kept verbatim for the build engine.
    pub execute_command: Vec<String>,
    /// `inline_shebang`: the interpreter line of the script made from inline commands.
    /// Default `/bin/sh -e`.
    pub inline_shebang: String,
    /// `only_on`: run only on these operating systems (Go names: `linux`, `darwin`, …).
    /// Empty means everywhere. See [`ShellLocalConfig::runs_on`].
    pub only_on: Vec<String>,
    /// `valid_exit_codes`: exit statuses that count as success. Default `[0]`.
    pub valid_exit_codes: Vec<i32>,
    /// `tempfile_extension`: extension (without the dot) given to the temporary script made
    /// from inline commands; none by default.
    pub tempfile_extension: Option<String>,
}

impl ShellLocalConfig {
    /// Whether the step runs on operating system `os` (a Go `GOOS` name such as `linux`).
    pub fn runs_on(&self, os: &str) -> bool {
        self.only_on.is_empty() || self.only_on.iter().any(|o| o == os)
    }

    /// Whether the step runs on the machine running kiln (Rust and Go agree on `linux`,
    /// `freebsd`, `openbsd`, `solaris` and `windows`; Rust's `macos` is Go's `darwin`).
    pub fn runs_here(&self) -> bool {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        self.runs_on(os)
    }
}

/// Decodes the options of a `shell-local` provisioner or post-processor.
pub(crate) fn decode(f: &mut Fields<'_, '_>) -> Option<ShellLocalConfig> {
    let before = error_count(f);
    let sources = decode_sources(f, true);
    let environment_vars = decode_environment_vars(f);
    let env = decode_env(f);
    let env_var_format = decode_env_var_format(f, DEFAULT_ENV_VAR_FORMAT);
    let execute_command = f
        .string_list_with("execute_command", &EXECUTE_COMMAND_FIELDS)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            DEFAULT_EXECUTE_COMMAND
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
    let inline_shebang = f
        .string("inline_shebang")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_INLINE_SHEBANG.to_string());
    let only_on = decode_only_on(f);
    let valid_exit_codes = decode_exit_codes(f);
    let tempfile_extension = f
        .string("tempfile_extension")
        .map(|e| e.trim_start_matches('.').to_string())
        .filter(|e| !e.is_empty());
    if f.bool("use_linux_pathing") == Some(true)
        && let Some(m) = f.take("use_linux_pathing")
    {
        f.error_at(
            m,
            "`use_linux_pathing` is for Packer on Windows running scripts through WSL; kiln \
             runs on Linux and already uses Linux paths: remove the option",
        );
    }

    let sources = sources?;
    (error_count(f) == before).then_some(ShellLocalConfig {
        sources,
        environment_vars,
        env,
        env_var_format,
        execute_command,
        inline_shebang,
        only_on,
        valid_exit_codes,
        tempfile_extension,
    })
}

fn decode_only_on(f: &mut Fields<'_, '_>) -> Vec<String> {
    let Some(items) = list_items(f, "only_on") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in &items {
        if ONLY_ON_OSES.contains(&item.value.as_str()) {
            out.push(item.value.clone());
        } else {
            let hint = match decode::suggest(&item.value, ONLY_ON_OSES.iter().copied()) {
                Some(s) => format!(" (did you mean \"{s}\"?)"),
                None => String::new(),
            };
            report(
                f,
                item.pos,
                &item.path,
                format!(
                    "\"{}\" is not an operating system `only_on` knows; use Go names: {}{hint}",
                    item.value,
                    ONLY_ON_OSES.join(", ")
                ),
            );
        }
    }
    if !out.is_empty()
        && !out.iter().any(|o| o == "linux")
        && let Some(m) = f.take("only_on")
    {
        f.warn_at(
            m,
            "kiln runs on linux, which `only_on` does not list: this step will always be skipped",
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Pieces shared with the remote `shell` provisioner.
// ---------------------------------------------------------------------------------------------

/// The number of errors reported so far; a decoder compares it before and after to know
/// whether the object it read was valid.
pub(crate) fn error_count(f: &Fields<'_, '_>) -> usize {
    f.diags.errors().count()
}

/// Reports an error at `pos` for key path `path` (an element of a list option, a key of an
/// object option).
pub(crate) fn report(f: &mut Fields<'_, '_>, pos: Pos, path: &str, message: impl Into<String>) {
    let file = f.scope().file;
    f.diags.error(file, Some(pos), path, message);
}

/// One rendered string of a list option, with the place it came from.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The rendered text.
    pub value: String,
    /// Where the element starts.
    pub pos: Pos,
    /// Its key path (`provisioners[0].scripts[1]`).
    pub path: String,
}

/// Renders one scalar node as text (numbers and booleans as written), reporting anything else.
fn render_text(f: &mut Fields<'_, '_>, path: &str, node: &Node) -> Option<String> {
    f.render_node(path, node, &[])
}

/// A list of strings, like [`Fields::string_list`], keeping each element's position so that
/// problems with one element can be reported exactly. A single string is a one-element list.
pub(crate) fn list_items(f: &mut Fields<'_, '_>, key: &'static str) -> Option<Vec<Item>> {
    let m = f.take(key)?;
    let path = f.key_path(key);
    let nodes: Vec<(&Node, String)> = match &m.value.value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, format!("{path}[{i}]")))
            .collect(),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => vec![(&m.value, path)],
        other => {
            f.error_at(
                m,
                format!("expected a list of strings, got {}", decode::kind(other)),
            );
            return None;
        }
    };
    let mut out = Vec::with_capacity(nodes.len());
    let mut ok = true;
    for (node, path) in nodes {
        match render_text(f, &path, node) {
            Some(value) => out.push(Item {
                value,
                pos: node.pos,
                path,
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A single string option with its position.
pub(crate) fn item(f: &mut Fields<'_, '_>, key: &'static str) -> Option<Item> {
    let m = f.take(key)?;
    let path = f.key_path(key);
    let value = render_text(f, &path, &m.value)?;
    Some(Item {
        value,
        pos: m.value.pos,
        path,
    })
}

fn parse_int(f: &mut Fields<'_, '_>, path: &str, node: &Node) -> Option<i64> {
    let text = match &node.value {
        Value::Number(n) => n.clone(),
        Value::String(_) => render_text(f, path, node)?,
        other => {
            report(
                f,
                node.pos,
                path,
                format!("expected a whole number, got {}", decode::kind(other)),
            );
            return None;
        }
    };
    match text.trim().parse::<i64>() {
        Ok(v) => Some(v),
        Err(_) => {
            report(
                f,
                node.pos,
                path,
                format!("expected a whole number, got \"{text}\""),
            );
            None
        }
    }
}

/// A signed whole-number option (numbers or numeric strings).
pub(crate) fn int(f: &mut Fields<'_, '_>, key: &'static str) -> Option<i64> {
    let m = f.take(key)?;
    let path = f.key_path(key);
    parse_int(f, &path, &m.value)
}

/// A list of signed whole numbers; a single number is a one-element list (Packer's weak
/// decoding does the same).
pub(crate) fn int_list(f: &mut Fields<'_, '_>, key: &'static str) -> Option<Vec<(i64, Item)>> {
    let m = f.take(key)?;
    let path = f.key_path(key);
    let nodes: Vec<(&Node, String)> = match &m.value.value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, format!("{path}[{i}]")))
            .collect(),
        _ => vec![(&m.value, path)],
    };
    let mut out = Vec::with_capacity(nodes.len());
    let mut ok = true;
    for (node, path) in nodes {
        match parse_int(f, &path, node) {
            Some(v) => out.push((
                v,
                Item {
                    value: v.to_string(),
                    pos: node.pos,
                    path,
                },
            )),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `valid_exit_codes`: default `[0]` (also when the list is empty, as in Packer).
pub(crate) fn decode_exit_codes(f: &mut Fields<'_, '_>) -> Vec<i32> {
    let mut out = Vec::new();
    for (code, item) in int_list(f, "valid_exit_codes").unwrap_or_default() {
        match i32::try_from(code) {
            Ok(c) => {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            Err(_) => report(
                f,
                item.pos,
                &item.path,
                format!("{code} is not a possible exit status; use numbers such as 0 or 3010"),
            ),
        }
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// Whether `name` is a portable environment variable name: letters, digits and `_`, not
/// starting with a digit.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

const ENV_NAME_RULE: &str =
    "a name is made of letters, digits and `_` and does not start with a digit";

/// `environment_vars`: each element `KEY=VALUE` (split at the first `=`) with a valid name.
pub(crate) fn decode_environment_vars(f: &mut Fields<'_, '_>) -> Vec<(String, String)> {
    let Some(items) = list_items(f, "environment_vars") else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.value.split_once('=') {
            Some((name, value)) if is_env_name(name) => {
                out.push((name.to_string(), value.to_string()));
            }
            Some(("", _)) => report(
                f,
                item.pos,
                &item.path,
                format!(
                    "expected KEY=VALUE, got \"{}\" (no name before `=`); write e.g. \"DEBIAN_FRONTEND=noninteractive\"",
                    item.value
                ),
            ),
            Some((name, _)) => report(
                f,
                item.pos,
                &item.path,
                format!(
                    "`{name}` is not a valid environment variable name ({ENV_NAME_RULE}); write \
                     each entry as KEY=VALUE"
                ),
            ),
            None => report(
                f,
                item.pos,
                &item.path,
                format!(
                    "expected KEY=VALUE, got \"{}\" (no `=`); write e.g. \"DEBIAN_FRONTEND=noninteractive\"",
                    item.value
                ),
            ),
        }
    }
    out
}

/// `env`: an object of environment variables, names checked like `environment_vars`.
pub(crate) fn decode_env(f: &mut Fields<'_, '_>) -> BTreeMap<String, String> {
    let raw = f.take("env");
    let Some(map) = f.string_map("env") else {
        return BTreeMap::new();
    };
    if let Some(Value::Object(members)) = raw.map(|m| &m.value.value) {
        for m in members {
            if !is_env_name(&m.key) {
                let path = format!("{}.{}", f.key_path("env"), m.key);
                report(
                    f,
                    m.key_pos,
                    &path,
                    format!(
                        "`{}` is not a valid environment variable name ({ENV_NAME_RULE})",
                        m.key
                    ),
                );
            }
        }
    }
    map
}

/// `env_var_format`: must contain exactly two `%s` (name, then value).
pub(crate) fn decode_env_var_format(f: &mut Fields<'_, '_>, default: &str) -> String {
    let Some(format) = f.string("env_var_format").filter(|s| !s.is_empty()) else {
        return default.to_string();
    };
    if format.replace("%%", "").matches("%s").count() != 2
        && let Some(m) = f.take("env_var_format")
    {
        f.error_at(
            m,
            format!(
                "`env_var_format` needs exactly two `%s`, the name then the value, like \"{}\"",
                default.escape_default()
            ),
        );
    }
    format
}

/// Makes a local path absolute, resolving a relative one from `pwd`; a trailing `/` is kept
/// (for the file provisioner it means "the directory's contents").
pub(crate) fn local_path(pwd: &str, path: &str) -> String {
    if Path::new(path).is_absolute() {
        return path.to_string();
    }
    let mut joined = Path::new(pwd).join(path).to_string_lossy().into_owned();
    if path.ends_with('/') && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

/// Checks that the local file or directory named by `item` exists (relative paths resolved
/// from the working directory, as Packer does) and returns its absolute path. `what` names it
/// in messages ("script file").
pub(crate) fn existing_local_path(
    f: &mut Fields<'_, '_>,
    item: &Item,
    what: &str,
    dir_allowed: bool,
) -> Option<String> {
    let run = f.scope().run;
    let path = local_path(&run.pwd, &item.value);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() && !dir_allowed => {
            report(
                f,
                item.pos,
                &item.path,
                format!(
                    "{what} `{}` is a directory; name a file (upload directories with the \
                     `file` provisioner)",
                    item.value
                ),
            );
            None
        }
        Ok(_) => Some(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = if Path::new(&item.value).is_absolute() {
                format!("{what} `{}` not found", item.value)
            } else {
                format!(
                    "{what} `{}` not found (relative paths are resolved from the working \
                     directory {}; use {{{{template_dir}}}}/{} to point next to the recipe)",
                    item.value, run.pwd, item.value
                )
            };
            report(f, item.pos, &item.path, message);
            None
        }
        Err(e) => {
            report(
                f,
                item.pos,
                &item.path,
                format!("cannot read {what} `{}`: {e}", item.value),
            );
            None
        }
    }
}

/// Decodes exactly one of `inline` / `script` / `scripts` (and `command`, only for
/// `shell-local`) into what to run, checking that script files exist. Reads every one of
/// these options even when some are wrong, so none is reported as unknown.
pub(crate) fn decode_sources(
    f: &mut Fields<'_, '_>,
    with_command: bool,
) -> Option<Vec<ShellSource>> {
    let before = error_count(f);
    // Packer treats empty strings and empty lists as "not set".
    let command = if with_command {
        item(f, "command").filter(|c| !c.value.is_empty())
    } else {
        None
    };
    let inline_given = f.has("inline");
    let inline = f.string_list("inline").filter(|l| !l.is_empty());
    let script = item(f, "script").filter(|s| !s.value.is_empty());
    let scripts = list_items(f, "scripts").filter(|l| !l.is_empty());

    let mut given: Vec<&'static str> = Vec::new();
    if command.is_some() {
        given.push("command");
    }
    if inline.is_some() {
        given.push("inline");
    }
    if script.is_some() {
        given.push("script");
    }
    if scripts.is_some() {
        given.push("scripts");
    }
    let choices = if with_command {
        "`command`, `inline`, `script` or `scripts`"
    } else {
        "`inline`, `script` or `scripts`"
    };
    match given.as_slice() {
        [] => {
            let why = if inline_given && error_count(f) == before {
                "`inline` is empty; "
            } else {
                ""
            };
            if error_count(f) == before {
                f.error_here(format!(
                    "{why}give one of `inline` (commands to run), `script` (a script file) or \
                     `scripts` (several script files)"
                ));
            }
            return None;
        }
        [_] => {}
        [first, second, ..] => {
            let (first, second) = (*first, *second);
            if let Some(m) = f.take(second) {
                f.error_at(
                    m,
                    format!(
                        "give only one of {choices}: this step sets both `{first}` and `{second}`"
                    ),
                );
            }
            return None;
        }
    }

    if let Some(command) = command {
        return Some(vec![ShellSource::Inline(vec![command.value])]);
    }
    if let Some(lines) = inline {
        return Some(vec![ShellSource::Inline(lines)]);
    }
    let items: Vec<Item> = script
        .into_iter()
        .chain(scripts.into_iter().flatten())
        .collect();
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in &items {
        match existing_local_path(f, item, "script file", false) {
            Some(path) => out.push(ShellSource::File(PathBuf::from(path))),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Builds `Fields` over a hand-made object (converted from `serde_json::json!`) so decoders
    //! can be tested without the recipe parser. Member `i` of the object is on line `i + 2`;
    //! its value starts at column 10; element `j` of an array value (or member `j` of an
    //! object value) starts at column `11 + 4 * j`.

    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::recipe::decode::{Fields, Scope};
    use crate::recipe::diag::Diagnostics;
    use crate::recipe::interp::RunInfo;
    use crate::recipe::json::{Member, Node, Pos, Value};

    fn scalar(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.to_string()),
            serde_json::Value::String(s) => Value::String(s.clone()),
            _ => unreachable!("nested containers are built by node()"),
        }
    }

    fn node(v: &serde_json::Value, line: u32, col: u32) -> Node {
        let value = match v {
            serde_json::Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(j, item)| node(item, line, col + 1 + 4 * j as u32))
                    .collect(),
            ),
            serde_json::Value::Object(map) => Value::Object(
                map.iter()
                    .enumerate()
                    .map(|(j, (k, item))| Member {
                        key: k.clone(),
                        key_pos: Pos {
                            line,
                            col: col + 1 + 4 * j as u32,
                        },
                        value: node(item, line, col + 2 + 4 * j as u32),
                    })
                    .collect(),
            ),
            other => scalar(other),
        };
        Node {
            pos: Pos { line, col },
            value,
        }
    }

    /// The members of a JSON object, with the synthetic positions described above.
    pub(crate) fn members(obj: serde_json::Value) -> Vec<Member> {
        let serde_json::Value::Object(map) = obj else {
            panic!("expected an object");
        };
        map.iter()
            .enumerate()
            .map(|(i, (k, v))| Member {
                key: k.clone(),
                key_pos: Pos {
                    line: i as u32 + 2,
                    col: 3,
                },
                value: node(v, i as u32 + 2, 10),
            })
            .collect()
    }

    /// Runs `decode` over `obj` (known as `path`, described as `what`) with working
    /// directory `pwd`, then `finish`es, returning the result and every diagnostic.
    pub(crate) fn run<T>(
        obj: serde_json::Value,
        pwd: &Path,
        path: &str,
        what: &str,
        decode: impl FnOnce(&mut Fields<'_, '_>) -> T,
    ) -> (T, Diagnostics) {
        let vars = BTreeMap::new();
        let run = RunInfo {
            started: chrono::Utc::now(),
            pwd: pwd.to_string_lossy().into_owned(),
            template_dir: pwd.join("recipes").to_string_lossy().into_owned(),
        };
        let env = |_: &str| None::<String>;
        let scope = Scope {
            file: "recipe.json",
            vars: &vars,
            run: &run,
            env: &env,
            build_name: Some("debian"),
            build_type: Some("qemu"),
            deferred: &[],
        };
        let ms = members(obj);
        let mut diags = Diagnostics::new();
        let out = {
            let mut f = Fields::new(
                &scope,
                &mut diags,
                path.to_string(),
                Pos { line: 1, col: 1 },
                what,
                ms.iter().collect(),
            );
            let out = decode(&mut f);
            f.finish();
            out
        };
        (out, diags)
    }

    /// Every error message, prefixed by its key path, one per line (for `contains` checks).
    pub(crate) fn errors(diags: &Diagnostics) -> Vec<String> {
        diags
            .errors()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect()
    }

    /// Every warning message, prefixed by its key path.
    pub(crate) fn warnings(diags: &Diagnostics) -> Vec<String> {
        diags
            .warnings()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{errors, run, warnings};
    use super::*;
    use serde_json::json;

    fn decode_local(
        obj: serde_json::Value,
        pwd: &Path,
    ) -> (Option<ShellLocalConfig>, super::super::diag::Diagnostics) {
        run(
            obj,
            pwd,
            "provisioners[1]",
            "provisioner shell-local",
            decode,
        )
    }

    #[test]
    fn inline_gets_every_default() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(json!({"inline": ["echo hi", "true"]}), dir.path());
        assert!(diags.is_empty(), "{diags}");
        let cfg = cfg.unwrap();
        assert_eq!(
            cfg.sources,
            vec![ShellSource::Inline(vec!["echo hi".into(), "true".into()])]
        );
        assert_eq!(
            cfg.execute_command,
            ["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]
        );
        assert_eq!(cfg.inline_shebang, "/bin/sh -e");
        assert_eq!(cfg.env_var_format, "%s='%s' ");
        assert_eq!(cfg.valid_exit_codes, [0]);
        assert!(cfg.environment_vars.is_empty() && cfg.env.is_empty() && cfg.only_on.is_empty());
        assert_eq!(cfg.tempfile_extension, None);
        assert!(cfg.runs_on("linux"));
    }

    #[test]
    fn command_is_a_one_line_inline_script() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(json!({"command": "make image"}), dir.path());
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(
            cfg.unwrap().sources,
            vec![ShellSource::Inline(vec!["make image".into()])]
        );
    }

    #[test]
    fn scripts_resolve_from_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.sh"), "true").unwrap();
        std::fs::write(dir.path().join("b.sh"), "true").unwrap();
        let (cfg, diags) = decode_local(json!({"scripts": ["a.sh", "b.sh"]}), dir.path());
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(
            cfg.unwrap().sources,
            vec![
                ShellSource::File(dir.path().join("a.sh")),
                ShellSource::File(dir.path().join("b.sh"))
            ]
        );
    }

    #[test]
    fn options_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(
            json!({
                "inline": ["x"],
                "environment_vars": ["A=1", "B=x=y", "C="],
                "env": {"D": "4"},
                "execute_command": ["bash", "-c", "{{.Vars}} {{.Command}}"],
                "inline_shebang": "/bin/bash -eux",
                "only_on": ["linux", "darwin"],
                "valid_exit_codes": [0, "2", 3010],
                "tempfile_extension": ".sh",
                "use_linux_pathing": false,
                "env_var_format": "export %s=%s; "
            }),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        let cfg = cfg.unwrap();
        assert_eq!(
            cfg.environment_vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
        assert_eq!(cfg.env.get("D").map(String::as_str), Some("4"));
        assert_eq!(
            cfg.execute_command,
            ["bash", "-c", "{{.Vars}} {{.Command}}"]
        );
        assert_eq!(cfg.inline_shebang, "/bin/bash -eux");
        assert_eq!(cfg.only_on, ["linux", "darwin"]);
        assert_eq!(cfg.valid_exit_codes, [0, 2, 3010]);
        assert_eq!(cfg.tempfile_extension.as_deref(), Some("sh"));
        assert_eq!(cfg.env_var_format, "export %s=%s; ");
    }

    #[test]
    fn exactly_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(json!({}), dir.path());
        assert!(cfg.is_none());
        let e = errors(&diags);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("give one of `inline`"), "{e:?}");

        let (cfg, diags) = decode_local(json!({"command": "a", "inline": ["b"]}), dir.path());
        assert!(cfg.is_none());
        let e = errors(&diags);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("provisioners[1].inline: give only one of `command`, `inline`, `script` or `scripts`"), "{e:?}");

        let (_, diags) = decode_local(json!({"inline": []}), dir.path());
        assert!(errors(&diags)[0].contains("`inline` is empty"));
    }

    #[test]
    fn missing_script_names_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(json!({"script": "setup.sh"}), dir.path());
        assert!(cfg.is_none());
        let d = diags.errors().next().unwrap();
        assert_eq!((d.line, d.col), (Some(2), Some(10)));
        assert_eq!(d.path, "provisioners[1].script");
        assert_eq!(
            d.message,
            format!(
                "script file `setup.sh` not found (relative paths are resolved from the working \
                 directory {}; use {{{{template_dir}}}}/setup.sh to point next to the recipe)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn a_directory_is_not_a_script() {
        let dir = tempfile::tempdir().unwrap();
        let (_, diags) = decode_local(json!({"scripts": ["."]}), dir.path());
        assert!(errors(&diags)[0].contains("is a directory"));
    }

    #[test]
    fn bad_environment_variables_are_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(
            json!({"inline": ["x"], "environment_vars": ["OK=1", "=foo", "foobar", "1X=2"], "env": {"a-b": "1"}}),
            dir.path(),
        );
        assert!(cfg.is_none());
        let all: Vec<_> = diags.errors().collect();
        assert_eq!(all.len(), 4, "{diags}");
        assert_eq!(all[0].path, "provisioners[1].environment_vars[1]");
        assert_eq!((all[0].line, all[0].col), (Some(3), Some(15)));
        assert!(all[0].message.contains("no name before `=`"));
        assert!(
            all[1]
                .message
                .contains("expected KEY=VALUE, got \"foobar\"")
        );
        assert!(all[2].message.contains("`1X`"));
        assert_eq!(all[3].path, "provisioners[1].env.a-b");
    }

    #[test]
    fn only_on_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(json!({"inline": ["x"], "only_on": ["linx"]}), dir.path());
        assert!(cfg.is_none());
        assert!(errors(&diags)[0].contains("(did you mean \"linux\"?)"));

        let (cfg, diags) =
            decode_local(json!({"inline": ["x"], "only_on": ["windows"]}), dir.path());
        let cfg = cfg.unwrap();
        assert!(!cfg.runs_on("linux"));
        assert!(warnings(&diags)[0].contains("always be skipped"));
    }

    #[test]
    fn linux_pathing_and_bad_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, diags) = decode_local(
            json!({"inline": ["x"], "use_linux_pathing": true, "env_var_format": "%s", "valid_exit_codes": ["x", 1]}),
            dir.path(),
        );
        assert!(cfg.is_none());
        let e = errors(&diags);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().any(|m| m.contains("WSL")));
        assert!(e.iter().any(|m| m.contains("exactly two `%s`")));
        assert!(
            e.iter()
                .any(|m| m.contains("valid_exit_codes[0]: expected a whole number, got \"x\""))
        );

        let (cfg, diags) = decode_local(
            json!({"inline": ["x"], "valid_exit_codes": [0, 99999999999i64]}),
            dir.path(),
        );
        assert!(cfg.is_none());
        assert!(errors(&diags)[0].contains("valid_exit_codes[1]: 99999999999 is not"));
    }

    #[test]
    fn unknown_options_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (_, diags) = decode_local(
            json!({"inline": ["x"], "inline_shebnag": "/bin/bash"}),
            dir.path(),
        );
        let e = errors(&diags);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("unknown option `inline_shebnag` for provisioner shell-local (did you mean `inline_shebang`?)"), "{e:?}");
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("PATH") && is_env_name("_x1"));
        assert!(!is_env_name("") && !is_env_name("1A") && !is_env_name("A-B") && !is_env_name("É"));
        assert_eq!(local_path("/w", "a/"), "/w/a/");
        assert_eq!(local_path("/w", "/abs"), "/abs");
    }
}
