//! `locals { … }` and `local "name" { expression = … }`: evaluated in dependency order (a
//! local may use variables and other locals, in any order of writing), cycles reported.

use std::collections::HashSet;
use std::ops::Range;

use ::hcl::edit::expr::Expression;
use ::hcl::{Map, Value};

use super::expr;
use super::lower::Lowerer;

/// One local.
pub(crate) struct LocalDef<'b> {
    /// Its name.
    pub name: String,
    /// The file it is in.
    pub file: usize,
    /// Its expression.
    pub expr: &'b Expression,
    /// Where its name is written.
    pub span: Option<Range<usize>>,
    /// `sensitive = true` (a `local` block): its value is masked in every log.
    pub sensitive: bool,
}

/// The values of the sensitive locals as text (every string and number in them), for the
/// log redactor.
pub(crate) fn sensitive_values(lw: &Lowerer<'_>, defs: &[LocalDef<'_>]) -> Vec<String> {
    fn leaves(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Number(n) => out.push(n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
            Value::Null | Value::Bool(_) => {}
        }
    }
    let mut out = Vec::new();
    for d in defs.iter().filter(|d| d.sensitive) {
        if let Some(v) = lw.known.local.get(&d.name) {
            leaves(v, &mut out);
        }
    }
    out
}

/// Evaluates every local into `lw.ctx`'s `local` object; problems are reported.
pub(crate) fn evaluate(lw: &mut Lowerer<'_>, defs: &[LocalDef<'_>]) {
    let mut done: Map<String, Value> = Map::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut pending: Vec<usize> = Vec::new();
    for (i, d) in defs.iter().enumerate() {
        if defs[..i].iter().any(|o| o.name == d.name) {
            lw.error(
                d.file,
                d.span.clone(),
                &format!("local.{}", d.name),
                format!("local `{}` is defined twice: remove one", d.name),
            );
        } else {
            pending.push(i);
        }
    }
    lw.ctx.declare_var("local", Value::Object(done.clone()));
    // One pass per dependency level: every local whose locals are known is evaluated, then
    // the `local` object is declared again once (not once per local: that is quadratic).
    loop {
        let (ready, waiting): (Vec<usize>, Vec<usize>) = pending.into_iter().partition(|&i| {
            !expr::refs(defs[i].expr).iter().any(|r| {
                r.root == "local"
                    && r.name.as_ref().is_some_and(|n| {
                        !done.contains_key(n) && !failed.contains(n) && lw.locals.contains(n)
                    })
            })
        });
        pending = waiting;
        if ready.is_empty() {
            break;
        }
        let ctx = std::mem::take(&mut lw.ctx);
        for i in ready {
            let d = &defs[i];
            match lw.value(d.file, d.expr, &format!("local.{}", d.name), &ctx) {
                Some((v, tainted)) => {
                    if tainted {
                        lw.unresolved.insert(format!("local.{}", d.name));
                    }
                    done.insert(d.name.clone(), v);
                }
                None => {
                    lw.unresolved.insert(format!("local.{}", d.name));
                    failed.insert(d.name.clone());
                }
            }
        }
        lw.ctx = ctx;
        lw.ctx.declare_var("local", Value::Object(done.clone()));
        lw.known.local = done.clone();
        if pending.is_empty() {
            break;
        }
    }
    for i in pending {
        let d = &defs[i];
        lw.unresolved.insert(format!("local.{}", d.name));
        lw.error(
            d.file,
            d.span.clone(),
            &format!("local.{}", d.name),
            format!(
                "local `{}` depends on itself (through other locals): break the cycle",
                d.name
            ),
        );
    }
}
