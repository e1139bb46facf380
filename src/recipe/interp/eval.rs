//! Evaluation: renders parsed actions in a [`Context`], calling functions, reading fields and
//! keeping actions that use deferred fields verbatim.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::ast::{Ast, Node, OpKind, Operand};
use super::funcs::{
    Func, MAX_PARAMS, Param, clean_resource_name, go_replace, go_split, go_to_lower, go_to_upper,
};
use super::{BUILD_VALUES, Context, InterpError, build_field};
use crate::recipe::{decode, isotime};

pub(super) fn render_nodes(
    src: &str,
    nodes: &[Node],
    ast: &Ast,
    ctx: &Context<'_>,
) -> Result<String, InterpError> {
    let mut out = String::with_capacity(src.len() + src.len() / 4);
    let eval = Eval { src, ast, ctx };
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(&src[text.range()]),
            Node::Action { start, end, pipe } => match eval.pipe(*pipe)?.0 {
                Val::Str(s) => out.push_str(&s),
                Val::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                Val::Deferred => out.push_str(&src[*start..*end]),
            },
        }
    }
    Ok(out)
}

/// A value flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val<'v> {
    Str(Cow<'v, str>),
    Int(i64),
    /// Depends on a field known only later: the whole action is kept verbatim.
    Deferred,
}

struct Eval<'v> {
    src: &'v str,
    ast: &'v Ast,
    ctx: &'v Context<'v>,
}

impl<'v> Eval<'v> {
    /// Evaluates a pipeline; returns its value and the offset it came from.
    fn pipe(&self, pipe: usize) -> Result<(Val<'v>, usize), InterpError> {
        let ast = self.ast;
        let mut last: Option<(Val<'v>, usize)> = None;
        for cmd in &ast.cmds[ast.pipes[pipe].range()] {
            let ops = &ast.ops[cmd.range()];
            let head = &ops[0];
            last = Some(match head.kind {
                OpKind::Func(f) => self.call(f, head.offset, &ops[1..], last)?,
                // The parser allows a non-function only alone, in the first stage.
                _ => self.operand(head)?,
            });
        }
        Ok(last.unwrap_or((Val::Str(Cow::Borrowed("")), 0)))
    }

    fn operand(&self, op: &'v Operand) -> Result<(Val<'v>, usize), InterpError> {
        let src: &'v str = self.src;
        let val = match &op.kind {
            OpKind::Str(s) => Val::Str(Cow::Borrowed(s.as_str(src))),
            OpKind::Int(i) => Val::Int(*i),
            OpKind::Field(name) => self.field(&src[name.range()], op.offset)?,
            OpKind::Func(f) => return self.call(*f, op.offset, &[], None),
            OpKind::Pipe(p) => self.pipe(*p)?.0,
        };
        Ok((val, op.offset))
    }

    fn field(&self, name: &str, offset: usize) -> Result<Val<'v>, InterpError> {
        let fields: &'v [(&'v str, Option<String>)] = self.ctx.fields;
        match fields.iter().find(|(n, _)| *n == name) {
            Some((_, Some(v))) => Ok(Val::Str(Cow::Borrowed(v))),
            Some((_, None)) => Ok(Val::Deferred),
            None => Err(InterpError::FieldNotAllowed {
                offset,
                field: name.to_string(),
            }),
        }
    }

    fn call(
        &self,
        f: Func,
        offset: usize,
        args: &'v [Operand],
        piped: Option<(Val<'v>, usize)>,
    ) -> Result<(Val<'v>, usize), InterpError> {
        let name = f.name();
        let bad = |offset: usize, message: String| InterpError::BadArguments {
            offset,
            function: name.to_string(),
            message,
        };
        if let Func::Refused(name) = f {
            return Err(InterpError::Unsupported {
                offset,
                name: name.to_string(),
            });
        }
        let ctx: &'v Context<'v> = self.ctx;
        if f == Func::Env && !ctx.allow_env {
            return Err(InterpError::EnvNotAllowed { offset });
        }
        let (params, optional) = f.params();
        let given = args.len() + usize::from(piped.is_some());
        let max = params.len();
        let min = max - optional;
        if given < min || given > max {
            let want = match (min, max) {
                (0, 0) => "no arguments".to_string(),
                (1, 1) => "1 argument".to_string(),
                (a, b) if a == b => format!("{a} arguments"),
                (_, 1) => "at most 1 argument".to_string(),
                (_, b) => format!("at most {b} arguments"),
            };
            return Err(bad(
                offset,
                format!("takes {want}, got {given}; usage: {}", f.usage()),
            ));
        }
        // At most MAX_PARAMS values (checked above): no allocation.
        let mut vals: [(Val<'v>, usize); MAX_PARAMS] = std::array::from_fn(|_| (Val::Int(0), 0));
        for (slot, arg) in vals.iter_mut().zip(args) {
            *slot = self.operand(arg)?;
        }
        if let Some(p) = piped {
            vals[given - 1] = p;
        }
        let vals = &vals[..given];
        if vals.iter().any(|(v, _)| *v == Val::Deferred) {
            return Ok((Val::Deferred, offset));
        }
        for (k, ((v, voff), want)) in vals.iter().zip(params).enumerate() {
            match (want, v) {
                (Param::Str, Val::Int(i)) => {
                    return Err(bad(
                        *voff,
                        format!(
                            "argument {} must be a string, found the number {i}; quote it",
                            k + 1
                        ),
                    ));
                }
                (Param::Int, Val::Str(s)) => {
                    return Err(bad(
                        *voff,
                        format!(
                            "argument {} must be an integer, found the string {s:?}",
                            k + 1
                        ),
                    ));
                }
                _ => {}
            }
        }
        let s = |k: usize| match vals.get(k) {
            Some((Val::Str(s), _)) => s.as_ref(),
            _ => "",
        };
        let int = |k: usize| match vals.get(k) {
            Some((Val::Int(i), _)) => *i,
            _ => 0,
        };
        let out: Cow<'v, str> = match f {
            Func::BuildName | Func::BuildType => {
                let value = if f == Func::BuildName {
                    ctx.build_name
                } else {
                    ctx.build_type
                };
                match value {
                    Some(v) => Cow::Borrowed(v),
                    None => {
                        return Err(bad(
                            offset,
                            "only available in builder, provisioner and post-processor sections"
                                .to_string(),
                        ));
                    }
                }
            }
            Func::Env => Cow::Owned((ctx.env)(s(0)).unwrap_or_default()),
            Func::Isotime => {
                let layout = if vals.is_empty() {
                    "2006-01-02T15:04:05Z07:00"
                } else {
                    s(0)
                };
                Cow::Owned(isotime::format_utc(&ctx.run.started, layout))
            }
            Func::Pwd => Cow::Borrowed(&ctx.run.pwd),
            Func::TemplateDir => {
                if ctx.run.template_dir.is_empty() {
                    return Err(bad(
                        offset,
                        "the template directory is not known (the recipe was not read from a \
                         file)"
                            .to_string(),
                    ));
                }
                Cow::Borrowed(&ctx.run.template_dir)
            }
            Func::Timestamp => Cow::Owned(ctx.run.started.timestamp().to_string()),
            Func::Uuid => Cow::Owned(uuid::Uuid::new_v4().to_string()),
            Func::User => {
                let vars: &'v BTreeMap<String, String> = ctx.vars;
                match vars.get(s(0)) {
                    Some(v) => Cow::Borrowed(v),
                    None => {
                        return Err(InterpError::UndeclaredVariable {
                            offset: vals[0].1,
                            name: s(0).to_string(),
                        });
                    }
                }
            }
            Func::Split => {
                let (text, sep, index) = (s(0), s(1), int(2));
                let parts = go_split(text, sep);
                match usize::try_from(index).ok().and_then(|i| parts.get(i)) {
                    Some(part) => Cow::Owned((*part).to_string()),
                    None => {
                        return Err(bad(
                            offset,
                            format!(
                                "there is no part {index}: splitting {text:?} at {sep:?} gives \
                                 {} part(s), numbered from 0",
                                parts.len()
                            ),
                        ));
                    }
                }
            }
            Func::Replace => Cow::Owned(go_replace(s(3), s(0), s(1), int(2))),
            Func::ReplaceAll => Cow::Owned(go_replace(s(2), s(0), s(1), -1)),
            Func::Upper => Cow::Owned(s(0).chars().map(go_to_upper).collect()),
            Func::Lower => Cow::Owned(s(0).chars().map(go_to_lower).collect()),
            Func::CleanResourceName => Cow::Owned(clean_resource_name(s(0))),
            Func::Build => {
                let name = s(0);
                if !BUILD_VALUES.contains(&name) {
                    return Err(bad(
                        vals[0].1,
                        format!(
                            "`{name}` is not a build value{}; Packer's are: {}",
                            decode::suggest(name, BUILD_VALUES.iter().copied())
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default(),
                            BUILD_VALUES.join(", ")
                        ),
                    ));
                }
                return Ok((self.field(&build_field(name), vals[0].1)?, offset));
            }
            Func::Refused(_) => Cow::Borrowed(""),
        };
        Ok((Val::Str(out), offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::interp::test_support::*;
    use crate::recipe::interp::{RunInfo, render};

    #[test]
    fn user_reads_variables() {
        assert_eq!(ok("{{user `name`}}-{{ user \"version\" }}"), "web-1.2.3");
        assert_eq!(ok("[{{user `empty`}}]"), "[]");
        assert_eq!(ok("{{ \"name\" | user }}"), "web");
        assert_eq!(
            r("ab {{user `nope`}}"),
            Err(InterpError::UndeclaredVariable {
                offset: 10,
                name: "nope".to_string()
            })
        );
        assert_eq!(
            r("{{ `nope` | user }}"),
            Err(InterpError::UndeclaredVariable {
                offset: 3,
                name: "nope".to_string()
            })
        );
        assert_eq!(bad_args("{{user}}").0, 2);
        assert_eq!(bad_args("{{user `a` `b`}}").0, 2);
        assert_eq!(bad_args("{{user 3}}").0, 7);
    }

    #[test]
    fn env_only_in_variables() {
        assert_eq!(rv("{{env `HOME`}}/x"), Ok("/home/me/x".to_string()));
        assert_eq!(rv("[{{env `UNSET`}}]"), Ok("[]".to_string()));
        assert_eq!(rv("[{{env `EMPTY`}}]"), Ok("[]".to_string()));
        assert_eq!(
            r("x {{ env `HOME` }}"),
            Err(InterpError::EnvNotAllowed { offset: 5 })
        );
        assert_eq!(
            r("{{ `HOME` | env }}"),
            Err(InterpError::EnvNotAllowed { offset: 12 })
        );
        assert!(matches!(
            rv("{{env}}"),
            Err(InterpError::BadArguments { offset: 2, .. })
        ));
    }

    #[test]
    fn timestamp_and_isotime_use_the_run_start() {
        assert_eq!(ok("{{timestamp}}"), "1257894245");
        assert_eq!(ok("{{isotime}}"), "2009-11-10T23:04:05Z");
        assert_eq!(ok("{{isotime `2006-01-02`}}"), "2009-11-10");
        assert_eq!(ok("{{isotime \"20060102\"}}"), "20091110");
        assert_eq!(ok("{{ isotime `Jan _2 15:04:05` }}"), "Nov 10 23:04:05");
        assert_eq!(ok("{{isotime `3:04PM`}}"), "11:04PM");
        assert_eq!(ok("{{isotime `20060102150405`}}"), "20091110230405");
        // The examples of Packer's "isotime Function Format Reference" (at this instant).
        assert_eq!(ok("packer-{{isotime `2006-01-02`}}"), "packer-2009-11-10");
        assert_eq!(
            ok("packer-{{isotime `Jan-_2-15:04:05.000`}}"),
            "packer-Nov-10-23:04:05.000"
        );
        assert_eq!(ok("packer-{{isotime `3:04PM`}}"), "packer-11:04PM");
        assert_eq!(ok("{{isotime `Mon 1504`}}"), "Tue 2304");
        assert_eq!(
            ok("{{isotime `02-Jan-06 03\\_04\\_05`}}"),
            "10-Nov-09 11\\_04\\_05"
        );
        assert_eq!(ok("{{isotime `Hour15Year200603`}}"), "Hour23Year200911");
        assert_eq!(
            ok("packer-{{isotime `2006-01-02 03:04:05`}}"),
            "packer-2009-11-10 11:04:05"
        );
        // Stable within a run.
        assert_eq!(ok("{{timestamp}}{{timestamp}}"), "12578942451257894245");
        let (off, f, _) = bad_args("{{isotime `a` `b`}}");
        assert_eq!((off, f.as_str()), (2, "isotime"));
        assert_eq!(bad_args("{{isotime 1}}").0, 10);
    }

    #[test]
    fn uuid_is_new_each_call() {
        let out = ok("{{uuid}} {{uuid}}");
        let (a, b) = out.split_once(' ').unwrap();
        assert_ne!(a, b);
        for u in [a, b] {
            let parsed = uuid::Uuid::parse_str(u).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(u.len(), 36);
        }
        assert_eq!(bad_args("{{uuid `x`}}").1, "uuid");
    }

    #[test]
    fn build_name_and_type() {
        assert_eq!(ok("{{build_name}}/{{ build_type }}"), "qemu-debian/qemu");
        for src in ["{{build_name}}", "{{ build_type }}"] {
            match rv(src) {
                Err(InterpError::BadArguments {
                    offset, message, ..
                }) => {
                    assert!(offset == 2 || offset == 3);
                    assert!(message.contains("builder, provisioner and post-processor"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn pwd_and_template_dir() {
        assert_eq!(
            ok("{{pwd}}|{{template_dir}}"),
            "/home/me/work|/home/me/recipes"
        );
        let run = RunInfo {
            template_dir: String::new(),
            ..run()
        };
        let vars = vars();
        let ctx = Context {
            vars: &vars,
            allow_env: false,
            env: &env,
            run: &run,
            build_name: None,
            build_type: None,
            fields: &[],
        };
        assert!(matches!(
            render("{{template_dir}}", &ctx),
            Err(InterpError::BadArguments { offset: 2, .. })
        ));
    }

    #[test]
    fn build_reads_fields() {
        let fields = [
            ("build Host", Some("192.0.2.7".to_string())),
            ("build SSHPrivateKey", None),
        ];
        assert_eq!(
            rf("{{ build `Host` }}", &fields),
            Ok("192.0.2.7".to_string())
        );
        assert_eq!(
            rf("echo '{{ build `SSHPrivateKey`}}' > k", &fields),
            Ok("echo '{{ build `SSHPrivateKey`}}' > k".to_string())
        );
        // A build value not given here is "not available", naming what was written.
        assert_eq!(
            rf("{{ build `Port` }}", &fields),
            Err(InterpError::FieldNotAllowed {
                offset: 9,
                field: "build Port".to_string()
            })
        );
        // `.Host` does not reach a build value: only `{{ build `Host` }}` does.
        assert!(rf("{{ .Host }}", &fields).is_err());
        let Err(InterpError::BadArguments { message, .. }) = rf("{{ build `Nope` }}", &fields)
        else {
            panic!("an unknown build value is refused");
        };
        assert!(
            message.starts_with("`Nope` is not a build value; Packer's are: ID, Host"),
            "{message}"
        );
    }

    #[test]
    fn pipelines_pass_the_value_last() {
        assert_eq!(ok("{{ `a-b` | replace_all `-` `+` | upper }}"), "A+B");
        assert_eq!(ok("{{ user `name` | replace `e` `E` 1 }}"), "wEb");
        assert_eq!(ok("{{ 0 | split `a-b` `-` | upper }}"), "A");
    }

    #[test]
    fn fields() {
        assert_eq!(ok("http://{{ .HTTPIP }}/x"), "http://10.0.2.2/x");
        assert_eq!(ok("{{ .HTTPIP | upper }}"), "10.0.2.2");
        assert_eq!(
            r("a {{ .Nope }}"),
            Err(InterpError::FieldNotAllowed {
                offset: 5,
                field: "Nope".to_string()
            })
        );
        assert_eq!(
            r("{{ .HTTPIP.Port }}"),
            Err(InterpError::FieldNotAllowed {
                offset: 3,
                field: "HTTPIP.Port".to_string()
            })
        );
        assert_eq!(syntax_at("{{ . }}").0, 3);
        assert_eq!(syntax_at("{{ (`x`).Field }}").0, 8);
        assert_eq!(syntax_at("{{ upper.Field }}").0, 8);
        assert_eq!(syntax_at("{{ .Field@ }}").0, 9);
    }

    #[test]
    fn deferred_fields_stay_verbatim() {
        assert_eq!(ok("{{ .HTTPPort }}"), "{{ .HTTPPort }}");
        assert_eq!(
            ok("http://{{ .HTTPIP }}:{{.HTTPPort}}/ks.cfg"),
            "http://10.0.2.2:{{.HTTPPort}}/ks.cfg"
        );
        assert_eq!(ok("{{ .HTTPPort | upper }}"), "{{ .HTTPPort | upper }}");
        assert_eq!(
            ok("{{ replace_all `a` .HTTPPort (user `name`) }}"),
            "{{ replace_all `a` .HTTPPort (user `name`) }}"
        );
        assert_eq!(
            ok("{{ upper (lower .HTTPPort) }}"),
            "{{ upper (lower .HTTPPort) }}"
        );
        // Trim markers are kept with the action and still applied to the text now.
        assert_eq!(ok("a {{- .HTTPPort -}} b"), "a{{- .HTTPPort -}}b");
        // Errors elsewhere in the action are still reported.
        assert!(matches!(
            r("{{ replace_all .HTTPPort `x` (user `nope`) }}"),
            Err(InterpError::UndeclaredVariable { offset: 35, .. })
        ));
        // Re-rendering the kept text once the field is known fills it in.
        let first = ok("p={{.HTTPPort | replace_all `0` `o`}} n={{user `name`}}");
        assert_eq!(first, "p={{.HTTPPort | replace_all `0` `o`}} n=web");
        let second = rf(&first, &[("HTTPPort", Some("8080".to_string()))]);
        assert_eq!(second, Ok("p=8o8o n=web".to_string()));
    }
}
