//! Contexts and shortcuts shared by the unit tests of the template language.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::{Context, InterpError, RunInfo, render};

pub(super) fn run() -> RunInfo {
    RunInfo {
        started: Utc.with_ymd_and_hms(2009, 11, 10, 23, 4, 5).unwrap(),
        pwd: "/home/me/work".to_string(),
        template_dir: "/home/me/recipes".to_string(),
    }
}

pub(super) fn vars() -> BTreeMap<String, String> {
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

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/me".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Renders with a builder-section context (no env, build name and type known).
pub(super) fn r(src: &str) -> Result<String, InterpError> {
    rf(
        src,
        &[("HTTPIP", Some("10.0.2.2".to_string())), ("HTTPPort", None)],
    )
}

pub(super) fn rf(src: &str, fields: &[(&str, Option<String>)]) -> Result<String, InterpError> {
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
pub(super) fn rv(src: &str) -> Result<String, InterpError> {
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

pub(super) fn ok(src: &str) -> String {
    r(src).unwrap_or_else(|e| panic!("{src:?}: {e:?}"))
}

pub(super) fn syntax_at(src: &str) -> (usize, String) {
    match r(src) {
        Err(InterpError::Syntax { offset, message }) => (offset, message),
        other => panic!("{src:?}: expected a syntax error, got {other:?}"),
    }
}

pub(super) fn bad_args(src: &str) -> (usize, String, String) {
    match r(src) {
        Err(InterpError::BadArguments {
            offset,
            function,
            message,
        }) => (offset, function, message),
        other => panic!("{src:?}: expected BadArguments, got {other:?}"),
    }
}
