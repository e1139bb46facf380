//! `variable` blocks: their types (`string`, `number`, `bool`, `list(…)`, `map(…)`,
//! `object({…})`, `tuple([…])`, `set(…)`, `any`), defaults and overrides (`PKR_VAR_name`,
//! var-files, `-var`), resolved into the values `var.x` reads and into the recipe model's
//! [`Variable`]s.

use std::ops::Range;

use ::hcl::{Map, Value};

use super::expr;
use super::functions::kind;
use super::sourcemap::SourceMap;
use crate::recipe::decode::suggest;
use crate::recipe::diag::Diagnostics;
use crate::recipe::vars::{VarSource, Variable};

/// A variable's type constraint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VarType {
    /// `any`, or no `type`.
    Any,
    /// `string`
    String,
    /// `number`
    Number,
    /// `bool`
    Bool,
    /// `list(T)` (and `set(T)`).
    List(Box<VarType>),
    /// `map(T)`
    Map(Box<VarType>),
    /// `object({ name = T, … })`
    Object(Vec<(String, VarType)>),
    /// `tuple([T, …])`
    Tuple(Vec<VarType>),
}

impl std::fmt::Display for VarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarType::Any => f.write_str("any"),
            VarType::String => f.write_str("string"),
            VarType::Number => f.write_str("number"),
            VarType::Bool => f.write_str("bool"),
            VarType::List(t) => write!(f, "list({t})"),
            VarType::Map(t) => write!(f, "map({t})"),
            VarType::Object(fields) => {
                f.write_str("object({")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {t}")?;
                }
                f.write_str("})")
            }
            VarType::Tuple(items) => {
                f.write_str("tuple([")?;
                for (i, t) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// Reads a type expression (`list(string)`).
pub(crate) fn parse_type(e: &::hcl::Expression) -> Result<VarType, String> {
    use ::hcl::Expression as E;
    match e {
        E::Variable(v) => match v.as_str() {
            "any" => Ok(VarType::Any),
            "string" => Ok(VarType::String),
            "number" => Ok(VarType::Number),
            "bool" => Ok(VarType::Bool),
            other => Err(format!(
                "`{other}` is not a type: use string, number, bool, list(…), map(…), object({{…}}), tuple([…]), set(…) or any"
            )),
        },
        E::FuncCall(call) if call.args.len() == 1 => {
            let arg = &call.args[0];
            match call.name.name.as_str() {
                "list" | "set" => Ok(VarType::List(Box::new(parse_type(arg)?))),
                "map" => Ok(VarType::Map(Box::new(parse_type(arg)?))),
                "object" => match arg {
                    E::Object(fields) => {
                        let mut out = Vec::new();
                        for (k, v) in fields {
                            let key = match k {
                                ::hcl::ObjectKey::Identifier(i) => i.to_string(),
                                ::hcl::ObjectKey::Expression(E::String(s)) => s.clone(),
                                _ => return Err("an object type's keys are names".into()),
                            };
                            out.push((key, parse_type(v)?));
                        }
                        Ok(VarType::Object(out))
                    }
                    _ => Err("object(…) takes { name = type, … }".into()),
                },
                "tuple" => match arg {
                    E::Array(items) => Ok(VarType::Tuple(
                        items.iter().map(parse_type).collect::<Result<_, _>>()?,
                    )),
                    _ => Err("tuple(…) takes [type, …]".into()),
                },
                other => Err(format!("`{other}(…)` is not a type")),
            }
        }
        _ => Err(
            "not a type: use string, number, bool, list(…), map(…), object({…}), tuple([…]), set(…) or any"
                .into(),
        ),
    }
}

/// Converts `value` to `ty` the way HCL does (numbers and bools to strings and back).
pub(crate) fn convert(value: Value, ty: &VarType) -> Result<Value, String> {
    let mismatch = |v: &Value| format!("expected {ty}, got {}", kind(v));
    match (ty, value) {
        (_, Value::Null) => Ok(Value::Null),
        (VarType::Any, v) => Ok(v),
        (VarType::String, Value::String(s)) => Ok(Value::String(s)),
        (VarType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (VarType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (VarType::Number, Value::Number(n)) => Ok(Value::Number(n)),
        (VarType::Number, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Some(::hcl::Number::from(f as i64))
                } else {
                    ::hcl::Number::from_f64(f)
                }
            })
            .map(Value::Number)
            .ok_or_else(|| format!("expected number, got \"{s}\"")),
        (VarType::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
        (VarType::Bool, Value::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (VarType::List(t), Value::Array(items)) => Ok(Value::Array(
            items
                .into_iter()
                .map(|v| convert(v, t))
                .collect::<Result<_, _>>()?,
        )),
        (VarType::Tuple(ts), Value::Array(items)) if ts.len() == items.len() => Ok(Value::Array(
            items
                .into_iter()
                .zip(ts)
                .map(|(v, t)| convert(v, t))
                .collect::<Result<_, _>>()?,
        )),
        (VarType::Map(t), Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = convert(v, t).map_err(|e| format!("[\"{k}\"]: {e}"))?;
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
        (VarType::Object(fields), Value::Object(mut m)) => {
            let mut out = Map::new();
            for (k, t) in fields {
                let v = m
                    .shift_remove(k)
                    .ok_or_else(|| format!("attribute \"{k}\" is required"))?;
                out.insert(k.clone(), convert(v, t).map_err(|e| format!(".{k}: {e}"))?);
            }
            if let Some(extra) = m.keys().next() {
                return Err(format!("unexpected attribute \"{extra}\""));
            }
            Ok(Value::Object(out))
        }
        (_, v) => Err(mismatch(&v)),
    }
}

/// A declared variable.
#[derive(Debug, Clone)]
pub(crate) struct Decl {
    /// The name (`variable "name"`).
    pub name: String,
    /// The file it is declared in.
    pub file: usize,
    /// The block's span.
    pub span: Option<Range<usize>>,
    /// `type`
    pub ty: VarType,
    /// `default` (converted to the type, possibly null); `None` when there is no default
    /// (the variable is required).
    pub default: Option<Value>,
    /// `description`
    pub description: Option<String>,
    /// `sensitive`
    pub sensitive: bool,
}

/// A value given from outside the template.
#[derive(Debug, Clone)]
pub(crate) struct Given {
    /// The variable's name.
    pub name: String,
    /// Already a value (var-files), or text to read by the variable's type (`-var`, env).
    pub value: GivenValue,
    /// Where it came from.
    pub source: VarSource,
    /// Where it is written (var-files): file and span.
    pub at: Option<(usize, Option<Range<usize>>)>,
}

/// A given value, typed or text.
#[derive(Debug, Clone)]
pub(crate) enum GivenValue {
    /// A value from a var-file.
    Value(Value),
    /// Text from `-var name=text` or `PKR_VAR_name`: a string for string variables, an HCL
    /// expression for the others.
    Text(String),
}

/// Text given for a variable of type `ty`, as a value.
fn from_text(text: &str, ty: &VarType) -> Result<Value, String> {
    if matches!(ty, VarType::String | VarType::Any) {
        return Ok(Value::String(text.to_string()));
    }
    let e = ::hcl::edit::parser::parse_expr(text)
        .map_err(|e| format!("\"{text}\" is not an HCL value: {}", e.message()))?;
    let value = expr::eval(&e, &::hcl::eval::Context::new())
        .map_err(|_| format!("expected {ty}, got \"{text}\""))?;
    convert(value, ty)
}

/// A value as the text the model's [`Variable::value`] shows (strings as they are,
/// collections as JSON).
pub(crate) fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The outcome of resolution.
pub(crate) struct Resolved {
    /// The values `var.x` reads.
    pub values: Map<String, Value>,
    /// The model's variables.
    pub variables: Vec<Variable>,
    /// Names without a value (required and not given, or a bad given value).
    pub unresolved: Vec<String>,
}

/// Resolves every declared variable: default, then the given values in order (later wins).
pub(crate) fn resolve(
    map: &SourceMap,
    decls: &[Decl],
    given: &[Given],
    required_is_warning: bool,
    diags: &mut Diagnostics,
) -> Resolved {
    let mut out = Resolved {
        values: Map::new(),
        variables: Vec::new(),
        unresolved: Vec::new(),
    };
    for g in given {
        if decls.iter().any(|d| d.name == g.name) {
            continue;
        }
        let hint = suggest(&g.name, decls.iter().map(|d| d.name.as_str()))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        match (&g.source, &g.at) {
            // Packer ignores PKR_VAR_ for undeclared names, and warns for var-files.
            (VarSource::Default, _) => {}
            (VarSource::VarFile(file), Some((f, span))) => diags.warning(
                file,
                map.start(*f, span.clone()),
                &g.name,
                format!(
                    "`{}` is set but not declared{hint}: add a variable \"{}\" {{}} block or remove it",
                    g.name, g.name
                ),
            ),
            _ => diags.error(
                "",
                None,
                &format!("-var {}", g.name),
                format!(
                    "`{}` is not a declared variable{hint}: declare it with a variable \"{}\" {{}} block",
                    g.name, g.name
                ),
            ),
        }
    }
    for d in decls {
        let file = map.display(d.file).to_string();
        let pos = map.start(d.file, d.span.clone());
        let mut value = d.default.clone();
        let mut source = VarSource::Default;
        let mut bad = false;
        for g in given.iter().filter(|g| g.name == d.name) {
            let v = match &g.value {
                GivenValue::Value(v) => convert(v.clone(), &d.ty),
                GivenValue::Text(t) => from_text(t, &d.ty),
            };
            match v {
                Ok(v) => {
                    value = Some(v);
                    source = g.source.clone();
                }
                Err(e) => {
                    bad = true;
                    let (f, at) = match &g.at {
                        Some((f, span)) => {
                            (map.display(*f).to_string(), map.start(*f, span.clone()))
                        }
                        None => (String::new(), None),
                    };
                    let from = match &g.source {
                        VarSource::Default => format!("PKR_VAR_{}", d.name),
                        VarSource::VarFile(_) => "the var-file".to_string(),
                        VarSource::CommandLine => format!("-var {}", d.name),
                    };
                    diags.error(
                        &f,
                        at,
                        &format!("var.{}", d.name),
                        format!("the value from {from} does not fit the variable's type: {e}"),
                    );
                }
            }
        }
        let required = d.default.is_none();
        let unresolved = bad || value.is_none();
        if value.is_none() && !bad {
            let message = format!(
                "variable `{}` has no default and no value: set it with -var {}=VALUE, PKR_VAR_{} or a var-file",
                d.name, d.name, d.name
            );
            if required_is_warning {
                diags.warning(&file, pos, &format!("var.{}", d.name), message);
            } else {
                diags.error(&file, pos, &format!("var.{}", d.name), message);
            }
        }
        let placeholder = || match d.ty {
            VarType::String | VarType::Any if required_is_warning => {
                Value::String(format!("<{}>", d.name))
            }
            VarType::String | VarType::Any => Value::String(String::new()),
            _ => Value::Null,
        };
        let value = if unresolved {
            placeholder()
        } else {
            value.unwrap_or(Value::Null)
        };
        if unresolved {
            out.unresolved.push(d.name.clone());
        }
        out.variables.push(Variable {
            name: d.name.clone(),
            default: d.default.as_ref().map(render),
            declared: true,
            required,
            value: render(&value),
            sensitive: d.sensitive,
            source,
            env_names: Vec::new(),
            pos,
            unresolved,
        });
        out.values.insert(d.name.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> VarType {
        let e: ::hcl::Expression = text.parse().unwrap();
        parse_type(&e).unwrap()
    }

    #[test]
    fn reads_types() {
        assert_eq!(ty("string"), VarType::String);
        assert_eq!(ty("list(string)"), VarType::List(Box::new(VarType::String)));
        assert_eq!(ty("set(number)"), VarType::List(Box::new(VarType::Number)));
        assert_eq!(
            ty("map(list(bool))").to_string(),
            "map(list(bool))".to_string()
        );
        assert_eq!(
            ty("object({a = string, b = number})").to_string(),
            "object({a = string, b = number})"
        );
        assert_eq!(
            ty("tuple([string, any])").to_string(),
            "tuple([string, any])"
        );
        let e: ::hcl::Expression = "strin".parse().unwrap();
        assert!(
            parse_type(&e)
                .unwrap_err()
                .contains("`strin` is not a type")
        );
    }

    #[test]
    fn converts_like_hcl() {
        assert_eq!(convert(Value::from(2), &VarType::String), Ok("2".into()));
        assert_eq!(convert("2".into(), &VarType::Number), Ok(Value::from(2)));
        assert_eq!(
            convert("true".into(), &VarType::Bool),
            Ok(Value::Bool(true))
        );
        assert!(convert("x".into(), &VarType::Number).is_err());
        assert!(convert(Value::from(1), &VarType::List(Box::new(VarType::Any))).is_err());
        let obj = ty("object({a = number})");
        let v: Value = ::hcl::value!({ a = "3" });
        assert_eq!(convert(v, &obj), Ok(::hcl::value!({ a = 3 })));
        let v: Value = ::hcl::value!({ a = 1, b = 2 });
        assert_eq!(convert(v, &obj).unwrap_err(), "unexpected attribute \"b\"");
    }

    #[test]
    fn given_text_is_read_by_type() {
        assert_eq!(from_text("2", &VarType::String), Ok("2".into()));
        assert_eq!(from_text("2", &VarType::Number), Ok(Value::from(2)));
        assert_eq!(
            from_text(r#"["a", "b"]"#, &VarType::List(Box::new(VarType::String))),
            Ok(::hcl::value!(["a", "b"]))
        );
        assert!(from_text("[", &VarType::List(Box::new(VarType::String))).is_err());
    }

    #[test]
    fn resolution_order_and_required() {
        let mut map = SourceMap::default();
        let f = map.add_file("v.pkr.hcl", "variable \"a\" {}\n");
        let decl = |name: &str, default: Option<Value>| Decl {
            name: name.into(),
            file: f,
            span: Some(0..1),
            ty: VarType::Number,
            default,
            description: None,
            sensitive: false,
        };
        let decls = vec![decl("n", Some(Value::from(1))), decl("req", None)];
        let given = vec![
            Given {
                name: "n".into(),
                value: GivenValue::Text("5".into()),
                source: VarSource::Default,
                at: None,
            },
            Given {
                name: "n".into(),
                value: GivenValue::Text("7".into()),
                source: VarSource::CommandLine,
                at: None,
            },
        ];
        let mut diags = Diagnostics::new();
        let r = resolve(&map, &decls, &given, false, &mut diags);
        assert_eq!(r.values["n"], Value::from(7));
        assert_eq!(r.variables[0].source, VarSource::CommandLine);
        assert_eq!(r.unresolved, ["req"]);
        let texts: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(texts.len(), 1);
        assert!(texts[0].starts_with("v.pkr.hcl:1:1: var.req: variable `req` has no default"));
    }
}
