//! How a recipe's JSON uses its variables, for the form: which variables only carry the
//! Exoscale key and secret into `exoscale-import` (folded under the credentials choice), and
//! what kind of value each variable is, from the options it feeds (JSON variables are all
//! strings; a zone gets a zone picker, a size a size field, a number a number field, a
//! `true`/`false` option a checkbox).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// The kind of value a variable holds, from the options it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Anything: a text field.
    Text,
    /// An Exoscale zone (`image_zone`, `template_zones`, …): a zone picker.
    Zone,
    /// A disk size (`disk_size`): `10G`, `10240M`, or MiB as a bare number.
    Size,
    /// A whole number (`cpus`, `memory`, …).
    Number,
    /// `true` or `false` (`headless`, `disk_compression`, …): a checkbox.
    Flag,
}

/// Options whose value is an Exoscale zone.
const ZONE_OPTIONS: &[&str] = &["image_zone", "template_zones", "zone", "zones"];
/// Options whose value is a disk size.
const SIZE_OPTIONS: &[&str] = &["disk_size", "disk_additional_size"];
/// Options whose value is a whole number.
const NUMBER_OPTIONS: &[&str] = &[
    "cpus",
    "memory",
    "cores",
    "sockets",
    "threads",
    "ssh_port",
    "http_port_min",
    "http_port_max",
    "max_retries",
    "compression_level",
];
/// Options whose value is `true` or `false`.
const FLAG_OPTIONS: &[&str] = &[
    "headless",
    "disk_image",
    "disk_compression",
    "skip_compaction",
    "skip_resize_disk",
    "use_backing_file",
    "use_default_display",
    "disable_vnc",
    "bucket_create",
    "skip_clean",
    "keep_input_artifact",
    "template_disable_password",
    "template_disable_sshkey",
    "expect_disconnect",
    "skip_version_check",
    "use_sftp",
    "disable",
    "kiln_cache",
];

/// The JSON of the recipe at `path` (`None` when it cannot be read or parsed).
fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// `NAME` when `text` is exactly `{{user `NAME`}}` (spaces allowed inside the braces).
pub fn user_variable_only(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let rest = inner.strip_prefix("user")?.trim_start();
    let name = rest.strip_prefix('`')?.strip_suffix('`')?;
    (!name.is_empty() && !name.contains('`')).then(|| name.to_string())
}

/// Every configuration object of the recipe: builders, provisioners, post-processors (also
/// in chains), error-cleanup.
fn config_objects(json: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut stack: Vec<&Value> = ["builders", "provisioners", "post-processors"]
        .iter()
        .filter_map(|k| json.get(k))
        .chain(json.get("error-cleanup-provisioner"))
        .collect();
    let mut out = Vec::new();
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(object) => out.push(object),
            _ => {}
        }
    }
    out
}

/// The variables that only carry the key and secret into `exoscale-import`: the names in
/// `api_key`/`api_secret` values that are exactly `{{user `NAME`}}`. An unreadable file has
/// none.
pub fn credential_variables(path: &Path) -> BTreeSet<String> {
    let Some(json) = read_json(path) else {
        return BTreeSet::new();
    };
    config_objects(&json)
        .into_iter()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some("exoscale-import"))
        .flat_map(|o| ["api_key", "api_secret"].map(|f| o.get(f)))
        .flatten()
        .filter_map(|v| v.as_str().and_then(user_variable_only))
        .collect()
}

/// The kind of each variable that feeds options of one kind only; variables used otherwise
/// (inside a longer text, by options of different kinds) are left out, i.e. text.
pub fn field_kinds(path: &Path) -> BTreeMap<String, FieldKind> {
    let Some(json) = read_json(path) else {
        return BTreeMap::new();
    };
    let mut seen: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    let kind_of = |option: &str| -> &'static str {
        if ZONE_OPTIONS.contains(&option) {
            "zone"
        } else if SIZE_OPTIONS.contains(&option) {
            "size"
        } else if NUMBER_OPTIONS.contains(&option) {
            "number"
        } else if FLAG_OPTIONS.contains(&option) {
            "flag"
        } else {
            "text"
        }
    };
    for object in config_objects(&json) {
        for (option, value) in object {
            let texts: Vec<&str> = match value {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            for text in texts {
                if let Some(name) = user_variable_only(text) {
                    seen.entry(name).or_default().insert(kind_of(option));
                } else if text.contains("{{") {
                    // Used inside a longer text: whatever it is, it is text there.
                    for name in variables_in(text) {
                        seen.entry(name).or_default().insert("text");
                    }
                }
            }
        }
    }
    seen.into_iter()
        .filter_map(|(name, kinds)| {
            let kind = match kinds.into_iter().collect::<Vec<_>>().as_slice() {
                ["zone"] => FieldKind::Zone,
                ["size"] => FieldKind::Size,
                ["number"] => FieldKind::Number,
                ["flag"] => FieldKind::Flag,
                _ => return None,
            };
            Some((name, kind))
        })
        .collect()
}

/// The names in every `{{user `NAME`}}` of `text`.
fn variables_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        if let Some(name) = user_variable_only(&rest[start..start + end + 2]) {
            out.push(name);
        }
        rest = &rest[start + end + 2..];
    }
    out
}

/// What is wrong with `value` for a field of `kind` (`None`: fine, or empty = the default).
pub fn problem(kind: FieldKind, value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match kind {
        FieldKind::Text | FieldKind::Zone => None,
        FieldKind::Size => crate::recipe::units::parse_disk_size(value)
            .err()
            .map(|e| format!("{e} (a size like 10G or 10240M)")),
        FieldKind::Number => value
            .parse::<u64>()
            .is_err()
            .then(|| format!("`{value}` is not a whole number")),
        FieldKind::Flag => (!matches!(value, "true" | "false"))
            .then(|| format!("`{value}` is neither true nor false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn variables_that_only_carry_the_credentials_are_found() {
        let (dir, path) = write(
            r#"{"post-processors": [["compress", {"type": "exoscale-import",
                "api_key": "{{ user `exoscale_api_key` }}",
                "api_secret": "{{user `exoscale_api_secret`}}"}],
                {"type": "exoscale-import", "api_key": "EXO{{user `suffix`}}"}]}"#,
        );
        let names: Vec<String> = credential_variables(&path).into_iter().collect();
        assert_eq!(names, ["exoscale_api_key", "exoscale_api_secret"]);
        assert!(credential_variables(&dir.path().join("missing.json")).is_empty());
    }

    #[test]
    fn kinds_come_from_the_options_a_variable_feeds() {
        let (_dir, path) = write(
            r#"{"builders": [{"type": "qemu", "cpus": "{{user `cpus`}}", "memory": "{{user `mem`}}",
                "disk_size": "{{user `size`}}", "headless": "{{user `headless`}}",
                "vm_name": "img-{{user `cpus`}}.qcow2", "ssh_username": "{{user `user`}}"}],
               "post-processors": [{"type": "exoscale-import", "image_zone": "{{user `zone`}}",
                "template_zones": ["{{user `zone`}}", "{{user `other_zone`}}"],
                "template_name": "{{user `mem`}}"}]}"#,
        );
        let kinds = field_kinds(&path);
        assert_eq!(kinds.get("zone"), Some(&FieldKind::Zone));
        assert_eq!(kinds.get("other_zone"), Some(&FieldKind::Zone));
        assert_eq!(kinds.get("size"), Some(&FieldKind::Size));
        assert_eq!(kinds.get("headless"), Some(&FieldKind::Flag));
        // Also inside a file name, and a template name: text.
        assert_eq!(kinds.get("cpus"), None);
        assert_eq!(kinds.get("mem"), None);
        assert_eq!(kinds.get("user"), None);
    }

    #[test]
    fn values_are_checked_for_their_kind() {
        assert_eq!(problem(FieldKind::Size, "10G"), None);
        assert!(problem(FieldKind::Size, "ten").is_some());
        assert_eq!(problem(FieldKind::Number, "2"), None);
        assert_eq!(
            problem(FieldKind::Number, "2.5").as_deref(),
            Some("`2.5` is not a whole number")
        );
        assert_eq!(problem(FieldKind::Flag, "true"), None);
        assert!(problem(FieldKind::Flag, "yes").is_some());
        assert_eq!(problem(FieldKind::Number, ""), None, "empty: the default");
    }
}
