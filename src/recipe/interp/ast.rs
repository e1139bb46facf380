//! The syntax tree: every operand, command and pipeline of a template lives in one of three
//! flat arrays, so parsing allocates nothing per action; and the user variables a tree names.

use super::funcs::Func;

#[derive(Debug, Clone)]
pub(super) enum Node {
    /// Literal text, already trimmed.
    Text(Span),
    /// An action; `start..end` is its source text from `{{` to `}}` inclusive; `pipe` indexes
    /// [`Ast::pipes`].
    Action {
        start: usize,
        end: usize,
        pipe: usize,
    },
}

/// A range of the source text or of one of the [`Ast`] arrays.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) len: usize,
}

impl Span {
    pub(super) fn range(self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Ast {
    /// The operands of all commands.
    pub(super) ops: Vec<Operand>,
    /// Commands: never-empty spans of `ops`; the first operand is the function (or the lone
    /// operand of a first stage).
    pub(super) cmds: Vec<Span>,
    /// Pipelines: never-empty spans of `cmds`.
    pub(super) pipes: Vec<Span>,
}

impl Ast {
    fn collect_user_names(&self, src: &str, pipe: usize, names: &mut Vec<String>) {
        fn push(names: &mut Vec<String>, name: &str) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        let cmds = &self.cmds[self.pipes[pipe].range()];
        let mut nested = Vec::new();
        for (k, cmd) in cmds.iter().enumerate() {
            let ops = &self.ops[cmd.range()];
            if let OpKind::Func(Func::User) = ops[0].kind {
                match ops.get(1).map(|a| &a.kind) {
                    Some(OpKind::Str(name)) => push(names, name.as_str(src)),
                    None if k > 0 => {
                        if let [
                            Operand {
                                kind: OpKind::Str(name),
                                ..
                            },
                        ] = &self.ops[cmds[k - 1].range()]
                        {
                            push(names, name.as_str(src));
                        }
                    }
                    _ => {}
                }
            }
            for op in ops {
                if let OpKind::Pipe(inner) = op.kind {
                    nested.push(inner);
                }
            }
            for inner in nested.drain(..) {
                self.collect_user_names(src, inner, names);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Operand {
    pub(super) offset: usize,
    pub(super) kind: OpKind,
}

#[derive(Debug, Clone)]
pub(super) enum OpKind {
    Str(Lit),
    Int(i64),
    /// Where the field name (without the leading dot; `A.B` for a chain) is in the source.
    Field(Span),
    Func(Func),
    /// A parenthesised pipeline: an index into [`Ast::pipes`].
    Pipe(usize),
}

/// A string literal's value: a span of the source when it has no escapes, else decoded.
#[derive(Debug, Clone)]
pub(super) enum Lit {
    Src(Span),
    Owned(Box<str>),
}

impl Lit {
    pub(super) fn as_str<'v>(&'v self, src: &'v str) -> &'v str {
        match self {
            Lit::Src(span) => &src[span.range()],
            Lit::Owned(s) => s,
        }
    }
}

impl OpKind {
    pub(super) fn describe(&self, src: &str) -> String {
        match self {
            OpKind::Str(s) => format!("the string {:?}", s.as_str(src)),
            OpKind::Int(i) => format!("the number {i}"),
            OpKind::Field(f) => format!("the field `.{}`", &src[f.range()]),
            OpKind::Func(f) => format!("the function `{}`", f.name()),
            OpKind::Pipe(_) => "a parenthesised expression".to_string(),
        }
    }
}

pub(super) fn user_names(src: &str, nodes: &[Node], ast: &Ast) -> Vec<String> {
    let mut names = Vec::new();
    for node in nodes {
        if let Node::Action { pipe, .. } = node {
            ast.collect_user_names(src, *pipe, &mut names);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use crate::recipe::interp::{InterpError, referenced_variables};

    #[test]
    fn referenced_variables_in_order_without_duplicates() {
        assert_eq!(referenced_variables("no actions"), Ok(vec![]));
        assert_eq!(
            referenced_variables(
                "{{user `b`}}-{{ user \"a\" }}-{{user `b` | upper}}-{{ upper (user `c`) }}-{{ `d` | user }}"
            ),
            Ok(vec![
                "b".to_string(),
                "a".to_string(),
                "c".to_string(),
                "d".to_string()
            ])
        );
        // Only literal names count.
        assert_eq!(
            referenced_variables("{{ user (lower `X`) }}{{ env `HOME` }}{{ .F }}"),
            Ok(vec![])
        );
        assert!(matches!(
            referenced_variables("{{ user `a` "),
            Err(InterpError::Syntax { offset: 0, .. })
        ));
        // Works where rendering would fail (refused functions, unknown fields).
        assert_eq!(
            referenced_variables("{{ vault (user `path`) `k` }}{{ .Nope }}"),
            Ok(vec!["path".to_string()])
        );
    }
}
