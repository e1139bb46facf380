//! No input makes recipe loading panic: random bytes, random JSON, and random mutations of
//! real recipes all end in a recipe or in diagnostics.

use std::path::Path;
use std::sync::Arc;

use kiln::recipe::interp::{self, Context, RunInfo};
use kiln::recipe::template::{LoadOptions, load_str};
use proptest::prelude::*;

fn options() -> LoadOptions {
    LoadOptions {
        env: Arc::new(|name| (name == "HOME").then(|| "/home/test".to_string())),
        pwd: Some(Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()),
        ..LoadOptions::default()
    }
}

/// Loads `text`; the only acceptable outcomes are a recipe or at least one error.
fn load_never_panics(text: &str) {
    match load_str("fuzz.json", text, Path::new("/tmp"), &options()) {
        Ok(recipe) => assert!(!recipe.builds.is_empty(), "a valid recipe has a build"),
        Err(diags) => assert!(diags.has_errors(), "a failed load reports an error"),
    }
}

fn seed_recipes() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        "recipes",
        "tests/recipes",
        "tests/build",
        "tests/build/realworld",
    ] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "json")
                    && let Ok(text) = std::fs::read_to_string(&path)
                {
                    out.push(text);
                }
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "the bundled recipes are there to mutate");
    out
}

/// Fragments that make mutations interesting for a JSON template parser.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "{{",
    "}}",
    "{{user `x`}}",
    "{{env `HOME`}}",
    "{{ build `Port` }}",
    "{{ .HTTPIP }}",
    "\"only\": [\"qemu\"]",
    "\"type\": \"virtualbox-iso\"",
    "\"type\": \"vagrant\"",
    "\"type\": \"ansible\"",
    "\"floppy_files\": [\"x\"]",
    "\"communicator\": \"winrm\"",
    "{{ .HTTPPort }}",
    "{{timestamp}}",
    "{{isotime \"2006\"}}",
    "{{split \"a,b\" \",\" 9}}",
    "null",
    "true",
    "-1",
    "1e999",
    "\"type\": \"qemu\"",
    "\"builders\": []",
    "\u{feff}",
    "é",
    "\n",
    "\t",
    "\u{0}",
    "(",
    ")",
    "|",
    "`",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z_{}`. \"|()-]{0,24}".prop_map(serde_json::Value::String),
        prop::sample::select(FRAGMENTS).prop_map(|s| serde_json::Value::String(s.to_string())),
    ];
    let key = prop_oneof![
        prop::sample::select(
            &[
                "type",
                "builders",
                "variables",
                "provisioners",
                "post-processors",
                "only",
                "except",
                "override",
                "iso_url",
                "iso_checksum",
                "ssh_username",
                "inline",
                "script",
                "image_bucket",
                "template_name",
                "qemuargs",
                "disk_size",
                "_comment",
            ][..]
        )
        .prop_map(str::to_string),
        "[a-z_-]{1,12}",
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        load_never_panics(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_json(value in json_value()) {
        load_never_panics(&value.to_string());
        let wrapped = serde_json::json!({"builders": [value]});
        load_never_panics(&wrapped.to_string());
    }

    #[test]
    fn mutated_recipes(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(FRAGMENTS)), 1..8),
    ) {
        let seeds = seed_recipes();
        let mut text: Vec<char> = pick.get(&seeds).chars().collect();
        for (at, op, fragment) in edits {
            let i = if text.is_empty() { 0 } else { at.index(text.len()) };
            match op {
                0 => { text.splice(i..i, fragment.chars()); }
                1 if !text.is_empty() => { let end = (i + fragment.len()).min(text.len()); text.drain(i..end); }
                _ if !text.is_empty() => { text.splice(i..(i + 1).min(text.len()), fragment.chars()); }
                _ => {}
            }
        }
        load_never_panics(&text.into_iter().collect::<String>());
    }

    #[test]
    fn random_interpolation(src in "([a-z `\"().|{}-]|\\{\\{|\\}\\}|user|env|split|isotime|\\.Name){0,40}") {
        let vars = [("x".to_string(), "1".to_string())].into_iter().collect();
        let run = RunInfo { started: chrono::Utc::now(), pwd: "/".into(), template_dir: "/".into() };
        let ctx = Context {
            vars: &vars,
            allow_env: true,
            env: &|_| None,
            run: &run,
            build_name: Some("qemu"),
            build_type: Some("qemu"),
            fields: &[("Name", None), ("HTTPPort", Some("8080".into()))],
        };
        let _ = interp::render(&src, &ctx);
        let _ = interp::referenced_variables(&src);
    }
}
