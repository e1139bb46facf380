//! Expressions: the `var.x` / `local.x` references an expression makes (with their source
//! spans, so an undeclared name is reported where it is written), evaluation with hcl-rs,
//! and evaluated values turned into the JSON-shaped document nodes the decoder reads.

use std::ops::Range;

use ::hcl::edit::expr::{Expression, Parenthesis, Traversal, TraversalOperator};
use ::hcl::edit::visit::{Visit, visit_traversal};
use ::hcl::edit::visit_mut::{VisitMut, visit_expr_mut};
use ::hcl::edit::{Ident, Span};
use ::hcl::eval::{Context, Evaluate};
use ::hcl::{Map, Value};

use super::functions::FUNCTIONS;
use crate::recipe::json::{Member, Node, Pos, Value as JsonValue};

/// A reference like `var.name` in an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    /// `var`, `local`, `path`, `source`, …
    pub root: String,
    /// The attribute after the root (`name`), when there is one.
    pub name: Option<String>,
    /// Where the reference is written.
    pub span: Option<Range<usize>>,
}

struct Refs(Vec<Ref>);

impl Visit for Refs {
    fn visit_traversal(&mut self, node: &Traversal) {
        if let Expression::Variable(root) = &node.expr {
            let name = match node.operators.first().map(|o| o.value()) {
                Some(TraversalOperator::GetAttr(ident)) => Some(ident_str(ident.value())),
                _ => None,
            };
            self.0.push(Ref {
                root: ident_str(root.value()),
                name,
                span: node.span(),
            });
        }
        visit_traversal(self, node);
    }
}

fn ident_str(ident: &Ident) -> String {
    ident.as_str().to_string()
}

/// Every traversal from a variable (`var.x`, `local.y`, `path.root`) in `expr`.
pub(crate) fn refs(expr: &Expression) -> Vec<Ref> {
    let mut v = Refs(Vec::new());
    v.visit_expr(expr);
    v.0
}

/// The values of `var.x` and `local.x`, substituted into expressions before evaluation:
/// hcl-rs clones a whole variable (`var`, every variable of the recipe) at each reference,
/// which makes a recipe with many variables quadratic.
#[derive(Default)]
pub(crate) struct Known {
    /// `var.*`
    pub var: Map<String, Value>,
    /// `local.*`
    pub local: Map<String, Value>,
}

struct Substitute<'a>(&'a Known);

impl VisitMut for Substitute<'_> {
    fn visit_expr_mut(&mut self, node: &mut Expression) {
        if let Expression::Traversal(t) = node
            && let Expression::Variable(root) = &t.expr
            && let Some(TraversalOperator::GetAttr(name)) = t.operators.first().map(|o| o.value())
        {
            let map = match root.value().as_str() {
                "var" => Some(&self.0.var),
                "local" => Some(&self.0.local),
                _ => None,
            };
            if let Some(value) = map.and_then(|m| m.get(name.value().as_str())) {
                let literal: Expression = ::hcl::Expression::from(value.clone()).into();
                let rest = t.operators[1..].to_vec();
                *node = if rest.is_empty() {
                    literal
                } else {
                    Expression::Traversal(Box::new(Traversal::new(
                        Expression::Parenthesis(Box::new(Parenthesis::new(literal))),
                        rest,
                    )))
                };
                // The index expressions of the remaining operators (`var.l[local.i]`) are
                // visited below; the literal has no references.
            }
        }
        visit_expr_mut(self, node);
    }
}

/// `try(a, b, …)` and `can(a)` need their arguments unevaluated (hcl-rs evaluates them
/// first and fails on the first error): each call is replaced by its value when an argument
/// evaluates in the context. Calls that remain (all arguments fail, or they use names bound
/// by a `for`) go to the eager functions of the same names, which report the error.
struct Lazy<'a, 'c>(&'a Context<'c>);

impl VisitMut for Lazy<'_, '_> {
    fn visit_expr_mut(&mut self, node: &mut Expression) {
        visit_expr_mut(self, node);
        let Expression::FuncCall(call) = node else {
            return;
        };
        if !call.name.namespace.is_empty() {
            return;
        }
        let value = match call.name.name.value().as_str() {
            "try" => call.args.iter().find_map(|a| eval(a, self.0).ok()),
            "can" => call
                .args
                .iter()
                .next()
                .map(|a| Value::Bool(eval(a, self.0).is_ok())),
            _ => None,
        };
        if let Some(v) = value {
            *node = ::hcl::Expression::from(v).into();
        }
    }
}

/// Evaluates `expr` with the known `var.`/`local.` values substituted first.
pub(crate) fn eval_with(expr: &Expression, known: &Known, ctx: &Context) -> Result<Value, String> {
    let mut e = expr.clone();
    Substitute(known).visit_expr_mut(&mut e);
    Lazy(ctx).visit_expr_mut(&mut e);
    eval(&e, ctx)
}

/// Evaluates `expr`; the error is a one-line message.
pub(crate) fn eval(expr: &Expression, ctx: &Context) -> Result<Value, String> {
    let e: ::hcl::Expression = expr.clone().into();
    e.evaluate(ctx).map_err(|e| match e.kind() {
        ::hcl::eval::ErrorKind::UndefinedFunc(name) => {
            let name = name.to_string();
            let hint = crate::recipe::decode::suggest(&name, FUNCTIONS.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            format!(
                "`{name}()` is not a function kiln implements{hint}; it has {}",
                FUNCTIONS.join(", ")
            )
        }
        kind => kind.to_string(),
    })
}

/// `value` as a document node; every node gets `pos`.
pub(crate) fn to_node(value: &Value, pos: Pos) -> Node {
    let value = match value {
        Value::Null => JsonValue::Null,
        Value::Bool(b) => JsonValue::Bool(*b),
        Value::Number(n) => JsonValue::Number(n.to_string()),
        Value::String(s) => JsonValue::String(s.clone()),
        Value::Array(items) => JsonValue::Array(items.iter().map(|v| to_node(v, pos)).collect()),
        Value::Object(map) => JsonValue::Object(
            map.iter()
                .map(|(k, v)| Member {
                    key: k.clone(),
                    key_pos: pos,
                    value: to_node(v, pos),
                })
                .collect(),
        ),
    };
    Node { pos, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Expression {
        ::hcl::edit::parser::parse_expr(text).unwrap()
    }

    #[test]
    fn finds_references_with_spans() {
        let text = r#""${var.a}-${local.b}" == x ? path.root : upper(var.c[0])"#;
        let r = refs(&parse(text));
        let names: Vec<(String, Option<String>)> =
            r.iter().map(|r| (r.root.clone(), r.name.clone())).collect();
        assert_eq!(
            names,
            [
                ("var".into(), Some("a".into())),
                ("local".into(), Some("b".into())),
                ("path".into(), Some("root".into())),
                ("var".into(), Some("c".into())),
            ]
        );
        let span = r[0].span.clone().unwrap();
        assert_eq!(&text[span], "var.a");
    }

    #[test]
    fn substitutes_known_values_before_evaluating() {
        let mut known = Known::default();
        known.var.insert("list".into(), ::hcl::value!(["a", "b"]));
        known.local.insert("n".into(), Value::from(1));
        let mut ctx = Context::new();
        super::super::functions::declare(&mut ctx);
        ctx.declare_var("x", "X");
        let e = parse(r#""${var.list[local.n]}-${x}-${upper(var.list[0])}""#);
        assert_eq!(eval_with(&e, &known, &ctx), Ok(Value::from("b-X-A")));
        // Unknown names are left to the context (and fail there).
        assert!(eval_with(&parse("var.nope"), &known, &ctx).is_err());
        // try/can see their arguments unevaluated.
        assert_eq!(
            eval_with(
                &parse(r#"try(data.x.y.os, var.list[5], "linux")"#),
                &known,
                &ctx
            ),
            Ok(Value::from("linux"))
        );
        assert_eq!(
            eval_with(&parse("[can(var.list[0]), can(var.list[9])]"), &known, &ctx),
            Ok(::hcl::value!([true, false]))
        );
        assert!(eval_with(&parse("try(var.list[9])"), &known, &ctx).is_err());
    }

    #[test]
    fn converts_values_to_nodes() {
        let pos = Pos { line: 3, col: 1 };
        let v: Value = ::hcl::value!({ a = [1, "x", true, null] });
        let node = to_node(&v, pos);
        let JsonValue::Object(m) = &node.value else {
            panic!()
        };
        assert_eq!(m[0].key, "a");
        let JsonValue::Array(items) = &m[0].value.value else {
            panic!()
        };
        assert_eq!(items[0].value, JsonValue::Number("1".into()));
        assert_eq!(items[3].value, JsonValue::Null);
        assert_eq!(items[1].pos, pos);
    }
}
