//! User variables: declared defaults, `-var-file`s, `-var`s and the environment, resolved in
//! dependency order.

use std::collections::{BTreeMap, HashMap};

use super::decode::{explain_interp_error, interp_offset, pos_in_string, suggest_variable};
use super::diag::Diagnostics;
use super::interp::{self, Context, RunInfo};
use super::json::Pos;

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarSource {
    /// The template's default (possibly reading the environment).
    Default,
    /// A `-var-file`, named as the user gave it.
    VarFile(String),
    /// A `-var name=value` on the command line (or the GUI's form).
    CommandLine,
}

/// One user variable after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The name.
    pub name: String,
    /// The default as written in the template; `None` when required (`null`) or not declared.
    pub default: Option<String>,
    /// Whether the template declares it (a `-var` can also set an undeclared one).
    pub declared: bool,
    /// Whether the value is required (`null` default).
    pub required: bool,
    /// The resolved value (empty when resolution failed).
    pub value: String,
    /// Whether it is listed in `sensitive-variables`.
    pub sensitive: bool,
    /// Where the value came from.
    pub source: VarSource,
    /// Environment variables its default reads through `{{env}}`.
    pub env_names: Vec<String>,
    /// Where it is declared.
    pub pos: Option<Pos>,
    /// No value could be determined (required and not given, a cycle, an error in its
    /// default, or it depends on such a variable). Its value is empty.
    pub unresolved: bool,
}

/// A variable as declared in the template.
pub(crate) struct Declared {
    pub name: String,
    pub default: Option<String>,
    pub pos: Pos,
    /// Position of the default's string literal, for errors inside it.
    pub value_pos: Pos,
}

/// A value given from outside the template.
pub(crate) struct Given {
    pub name: String,
    pub value: String,
    pub source: VarSource,
}

/// Names of environment variables read by `{{env `X`}}` in `text` (literal args only).
fn env_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("env") {
        let after = rest[i + 3..].trim_start();
        let quote = after.chars().next();
        if matches!(quote, Some('`') | Some('"')) {
            let q = quote.unwrap_or('`');
            if let Some(end) = after[1..].find(q) {
                let name = &after[1..1 + end];
                if !name.is_empty() && !out.iter().any(|n| n == name) {
                    out.push(name.to_string());
                }
            }
        }
        rest = &rest[i + 3..];
    }
    out
}

/// What variable resolution reads besides the variables themselves.
pub(crate) struct Resolution<'a> {
    /// The file name used in diagnostics.
    pub file: &'a str,
    /// Run-wide facts (`timestamp`, `pwd`, …).
    pub run: &'a RunInfo,
    /// Environment lookup for `{{env}}`.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Report unset required variables as warnings (with a `<name>` placeholder value).
    pub required_is_warning: bool,
}

/// Resolves every variable; errors go to `diags`. Variables whose value could not be
/// resolved still appear (with an empty value) so later sections do not report them again.
pub(crate) fn resolve(
    how: &Resolution<'_>,
    declared: &[Declared],
    given: Vec<Given>,
    sensitive: &[String],
    diags: &mut Diagnostics,
) -> Vec<Variable> {
    let Resolution {
        file,
        run,
        env,
        required_is_warning,
    } = *how;
    let mut overrides: HashMap<String, Given> = HashMap::new();
    let mut override_order: Vec<String> = Vec::new();
    for g in given {
        if !overrides.contains_key(&g.name) {
            override_order.push(g.name.clone());
        }
        overrides.insert(g.name.clone(), g);
    }

    let mut vars: Vec<Variable> = declared
        .iter()
        .map(|d| Variable {
            name: d.name.clone(),
            default: d.default.clone(),
            declared: true,
            required: d.default.is_none(),
            value: String::new(),
            sensitive: sensitive.contains(&d.name),
            source: VarSource::Default,
            env_names: d.default.as_deref().map(env_names).unwrap_or_default(),
            pos: Some(d.pos),
            unresolved: false,
        })
        .collect();
    for name in &override_order {
        if !declared.iter().any(|d| &d.name == name) {
            vars.push(Variable {
                name: name.clone(),
                default: None,
                declared: false,
                required: false,
                value: String::new(),
                sensitive: sensitive.contains(name),
                source: VarSource::CommandLine,
                env_names: Vec::new(),
                pos: None,
                unresolved: false,
            });
        }
    }

    let index: HashMap<String, usize> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.clone(), i))
        .collect();

    // Dependencies of each default that will actually be used.
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); vars.len()];
    let mut broken = vec![false; vars.len()];
    for (i, d) in declared.iter().enumerate() {
        if let Some(g) = overrides.get(&d.name) {
            vars[i].value = g.value.clone();
            vars[i].source = g.source.clone();
            continue;
        }
        let Some(default) = &d.default else {
            let message = format!(
                "required variable `{0}` is not set: pass -var {0}=VALUE or a -var-file that sets it",
                d.name
            );
            let path = format!("variables.{}", d.name);
            if required_is_warning {
                // Shown as a placeholder so the rest of the recipe can still be read.
                vars[i].value = format!("<{}>", d.name);
                diags.warning(file, Some(d.pos), &path, message);
                continue;
            } else {
                diags.error(file, Some(d.pos), &path, message);
            }
            broken[i] = true;
            continue;
        };
        match interp::referenced_variables(default) {
            Ok(names) => {
                for name in names {
                    match index.get(&name) {
                        Some(&j) => deps[i].push(j),
                        None => {
                            let hint = match suggest_variable(&name, index.keys()) {
                                Some(known) => format!(" (did you mean `{known}`?)"),
                                None => String::new(),
                            };
                            diags.error(
                                file,
                                Some(d.value_pos),
                                &format!("variables.{}", d.name),
                                format!(
                                    "variable `{}` uses undeclared variable `{name}`{hint}: declare `{name}` in \"variables\" or pass -var {name}=VALUE",
                                    d.name
                                ),
                            );
                            broken[i] = true;
                        }
                    }
                }
            }
            Err(e) => {
                diags.error(
                    file,
                    Some(pos_in_string(d.value_pos, default, interp_offset(&e))),
                    &format!("variables.{}", d.name),
                    explain_interp_error(&e, &[]),
                );
                broken[i] = true;
            }
        }
    }
    for (name, g) in &overrides {
        if let Some(&i) = index.get(name)
            && i >= declared.len()
        {
            vars[i].value = g.value.clone();
            vars[i].source = g.source.clone();
        }
    }

    // Depth-first topological order; a cycle is reported once, naming its members.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; vars.len()];
    let mut order = Vec::with_capacity(vars.len());
    for start in 0..vars.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next dependency index).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < deps[node].len() {
                let dep = deps[node][*next];
                *next += 1;
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::Active;
                        stack.push((dep, 0));
                    }
                    Mark::Active => {
                        let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut chain: Vec<&str> = stack[from..]
                            .iter()
                            .map(|(n, _)| vars[*n].name.as_str())
                            .collect();
                        chain.push(vars[dep].name.as_str());
                        let d = &declared[node];
                        let message = match &stack[from..] {
                            [_] => format!(
                                "variable `{0}` uses itself ({1}): a default cannot read \
                                 {{{{user `{0}`}}}}",
                                vars[node].name,
                                chain.join(" → ")
                            ),
                            [_, _] => format!(
                                "variables `{}` and `{}` depend on each other ({}): break the cycle",
                                vars[dep].name,
                                vars[node].name,
                                chain.join(" → ")
                            ),
                            members => {
                                let names: Vec<String> = members
                                    .iter()
                                    .map(|(n, _)| format!("`{}`", vars[*n].name))
                                    .collect();
                                let (last, rest) = names.split_last().expect("three or more");
                                format!(
                                    "variables {} and {last} depend on each other in a cycle \
                                     ({}): break the cycle",
                                    rest.join(", "),
                                    chain.join(" → ")
                                )
                            }
                        };
                        diags.error(
                            file,
                            Some(d.value_pos),
                            &format!("variables.{}", d.name),
                            message,
                        );
                        for (n, _) in &stack[from..] {
                            broken[*n] = true;
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }

    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for i in order {
        let name = vars[i].name.clone();
        let from_default =
            i < declared.len() && declared[i].default.is_some() && !overrides.contains_key(&name);
        if from_default && deps[i].iter().any(|&j| broken[j]) {
            // Its value depends on one that could not be resolved: it is unknown too.
            broken[i] = true;
        }
        if from_default && !broken[i] {
            let d = &declared[i];
            let default = d.default.as_deref().unwrap_or_default();
            let ctx = Context {
                vars: &values,
                allow_env: true,
                env,
                run,
                build_name: None,
                build_type: None,
                fields: DEFERRED_FIELDS,
            };
            match interp::render(default, &ctx) {
                Ok(v) => vars[i].value = v,
                Err(e) => {
                    diags.error(
                        file,
                        Some(pos_in_string(d.value_pos, default, interp_offset(&e))),
                        &format!("variables.{}", d.name),
                        explain_interp_error(&e, &[]),
                    );
                    broken[i] = true;
                }
            }
        }
        values.insert(name, vars[i].value.clone());
    }
    for (v, broken) in vars.iter_mut().zip(broken) {
        v.unresolved = broken;
    }
    vars
}

/// Context fields a variable's value may hold for the option that uses it (Packer leaves
/// `{{ .HTTPIP }}` in a variable untouched and fills it in where the variable is used, e.g. a
/// `boot_command` kept in a variable): kept verbatim here.
const DEFERRED_FIELDS: &[(&str, Option<String>)] = &[
    ("HTTPIP", None),
    ("HTTPPort", None),
    ("HTTPDir", None),
    ("OutputDir", None),
    ("Name", None),
    ("SSHHostPort", None),
    ("SSHPublicKey", None),
    ("Path", None),
    ("Vars", None),
    ("EnvVarFile", None),
    ("Script", None),
    ("Command", None),
    ("BuildName", None),
    ("BuilderType", None),
    ("ChecksumType", None),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_found() {
        assert_eq!(
            env_names("{{env `HOME`}}/x{{ env \"USER\" }}{{env `HOME`}}"),
            ["HOME", "USER"]
        );
        assert!(env_names("environment").is_empty());
    }
}
