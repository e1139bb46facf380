//! Argument helpers: Packer's single-dash flags and `name=value` pairs.

use std::ffi::OsString;

/// Flags Packer spells with one dash that clap wants with two.
const SINGLE_DASH_FLAGS: &[&str] = &["var", "var-file", "json", "force", "only", "except"];

/// Rewrites Packer-style `-var`, `-var-file`, `-json`, `-force`, `-only`, `-except` (also
/// `-only=…`) to their double-dash forms, leaving everything after `--` untouched.
pub fn packer_style(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let rewritten = text
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .and_then(|rest| {
                let name = rest.split('=').next().unwrap_or(rest);
                SINGLE_DASH_FLAGS
                    .contains(&name)
                    .then(|| format!("--{rest}"))
            });
        out.push(rewritten.map(OsString::from).unwrap_or(arg));
    }
    out
}

/// Parses `name=value` (the value may contain `=`).
pub fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn single_dash_flags_become_double() {
        assert_eq!(
            packer_style(os(&[
                "kiln",
                "validate",
                "-var",
                "a=b",
                "-var-file=x.json",
                "-json",
                "r.json"
            ])),
            os(&[
                "kiln",
                "validate",
                "--var",
                "a=b",
                "--var-file=x.json",
                "--json",
                "r.json"
            ])
        );
    }

    #[test]
    fn other_arguments_are_left_alone() {
        assert_eq!(
            packer_style(os(&["kiln", "-V", "--var", "x=1", "-", "--", "-var"])),
            os(&["kiln", "-V", "--var", "x=1", "-", "--", "-var"])
        );
    }

    #[test]
    fn var_pairs() {
        assert_eq!(parse_var("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_var("a="), Ok(("a".into(), String::new())));
        assert!(parse_var("novalue").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_var("=x").is_err());
    }
}
