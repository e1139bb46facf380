//! The parser (the shape of Go's `text/template/parse/parse.go`: pipeline, command, operand):
//! splits a template into literal text and actions, applies trim markers and comments, and
//! builds the [`Ast`] of each action in reusable buffers.

use super::ast::{Ast, Node, OpKind, Operand, Span};
use super::funcs::Func;
use super::lex::{Lexer, Tok, Token, at_right_delim, has_left_trim_marker, is_space};
use super::{InterpError, syntax};

/// Parse buffers, reused by [`render`](super::render) and
/// [`referenced_variables`](super::referenced_variables) so that parsing a string
/// allocates nothing once the buffers have grown.
#[derive(Default)]
pub(super) struct Bufs {
    pub(super) nodes: Vec<Node>,
    pub(super) ast: Ast,
    stacks: Stacks,
    parens: Vec<usize>,
}

impl Bufs {
    fn clear(&mut self) {
        self.nodes.clear();
        self.ast.ops.clear();
        self.ast.cmds.clear();
        self.ast.pipes.clear();
        self.stacks.ops.clear();
        self.stacks.cmds.clear();
        self.parens.clear();
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Bufs> = std::cell::RefCell::new(Bufs::default());
}

/// Parses `src` into the thread's scratch buffers (fresh ones if they are in use, e.g. when
/// an `env` callback renders a template itself) and runs `f` on the result.
pub(super) fn with_scratch<T>(
    src: &str,
    f: impl FnOnce(&str, &Bufs) -> T,
) -> Result<T, InterpError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            bufs.clear();
            let parsed = parse_into(src, &mut bufs);
            let result = parsed.map(|()| f(src, &bufs));
            // Do not keep the memory of an unusually large template.
            if bufs.ast.ops.capacity() > 1 << 16 || bufs.nodes.capacity() > 1 << 16 {
                *bufs = Bufs::default();
            }
            result
        }
        Err(_) => {
            let mut bufs = Bufs::default();
            parse_into(src, &mut bufs)?;
            Ok(f(src, &bufs))
        }
    })
}

/// Parses `src` into `bufs` (which must be clear).
pub(super) fn parse_into(src: &str, bufs: &mut Bufs) -> Result<(), InterpError> {
    let b = src.as_bytes();
    let Bufs {
        nodes,
        ast,
        stacks,
        parens,
    } = bufs;
    let mut pos = 0;
    // Whether the previous action ended with ` -}}`.
    let mut trim_next = false;
    loop {
        let Some(open) = find_open(src, pos) else {
            push_text(nodes, src, pos, src.len(), trim_next, false);
            break;
        };
        let after = open + 2;
        let left_trim = has_left_trim_marker(b, after);
        push_text(nodes, src, pos, open, trim_next, left_trim);
        let inner = if left_trim { after + 2 } else { after };
        if b[inner..].starts_with(b"/*") {
            let Some(close) = src[inner + 2..].find("*/") else {
                return Err(syntax(open, "unclosed comment: missing `*/}}`"));
            };
            let p = inner + 2 + close + 2;
            let Some(trim) = at_right_delim(b, p) else {
                return Err(syntax(
                    p,
                    "comment ends before the closing delimiter: `*/` must be followed by `}}`",
                ));
            };
            pos = p + if trim { 4 } else { 2 };
            trim_next = trim;
            continue;
        }
        parens.clear();
        let mut parser = Parser {
            lex: Lexer {
                src,
                p: inner,
                open,
                parens,
                last: None,
            },
            peeked: None,
            open,
            ast,
            stacks,
        };
        let pipe = parser.parse_pipeline(None)?;
        let (end, trim) = match parser.next().tok {
            Tok::End { end, trim } => (end, trim),
            // parse_pipeline only returns at the end of the action.
            _ => return Err(syntax(open, "unclosed action: missing `}}`")),
        };
        nodes.push(Node::Action {
            start: open,
            end,
            pipe,
        });
        pos = end;
        trim_next = trim;
    }
    Ok(())
}

/// Adds the literal text `src[start..end]`, without its leading and/or trailing white space
/// when the neighbouring actions have trim markers.
fn push_text(
    nodes: &mut Vec<Node>,
    src: &str,
    mut start: usize,
    mut end: usize,
    trim_start: bool,
    trim_end: bool,
) {
    let b = src.as_bytes();
    if trim_start {
        while start < end && is_space(b[start]) {
            start += 1;
        }
    }
    if trim_end {
        while end > start && is_space(b[end - 1]) {
            end -= 1;
        }
    }
    if start < end {
        nodes.push(Node::Text(Span {
            start,
            len: end - start,
        }));
    }
}

/// The offset of the next `{{` at or after `pos` (a char boundary).
fn find_open(src: &str, mut pos: usize) -> Option<usize> {
    let b = src.as_bytes();
    while let Some(rel) = src[pos..].find('{') {
        let i = pos + rel;
        if b.get(i + 1) == Some(&b'{') {
            return Some(i);
        }
        pos = i + 1;
    }
    None
}

/// Work stacks reused across the actions of a template: operands and commands are collected
/// here and moved to the [`Ast`] as contiguous spans when their command or pipeline ends.
#[derive(Default)]
struct Stacks {
    ops: Vec<Operand>,
    cmds: Vec<Span>,
}

struct Parser<'s, 'b> {
    lex: Lexer<'s, 'b>,
    peeked: Option<Token<'s>>,
    open: usize,
    ast: &'b mut Ast,
    stacks: &'b mut Stacks,
}

impl<'s> Parser<'s, '_> {
    fn next(&mut self) -> Token<'s> {
        match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next(),
        }
    }

    fn backup(&mut self, t: Token<'s>) {
        self.peeked = Some(t);
    }

    fn next_non_space(&mut self) -> Token<'s> {
        loop {
            let t = self.next();
            if !matches!(t.tok, Tok::Space) {
                return t;
            }
        }
    }

    /// Parses a pipeline up to the end of the action (`paren == None`; the `}}` is left to
    /// read) or up to the `)` matching the `(` at `paren` (consumed). Returns its index in
    /// [`Ast::pipes`].
    fn parse_pipeline(&mut self, paren: Option<usize>) -> Result<usize, InterpError> {
        let mark = self.stacks.cmds.len();
        let mut dangling_pipe: Option<usize> = None;
        loop {
            let t = self.next_non_space();
            match t.tok {
                Tok::End { .. } if paren.is_none() => {
                    self.backup(t);
                    break;
                }
                Tok::RParen if paren.is_some() => break,
                ref tok if tok.starts_operand() => {
                    self.backup(t);
                    dangling_pipe = self.parse_command()?;
                }
                Tok::Bad(e) => return Err(*e),
                Tok::Pipe => {
                    return Err(syntax(
                        t.off,
                        "`|` must come between two commands, e.g. {{ user `x` | upper }}",
                    ));
                }
                Tok::Char(c) => {
                    return Err(syntax(t.off, format!("unexpected `{c}` in an action")));
                }
                // `}}` inside parentheses and `)` outside them are lexer errors (Bad).
                _ => return Err(syntax(t.off, "unexpected end of the expression")),
            }
        }
        if let Some(off) = dangling_pipe {
            return Err(syntax(off, "`|` must be followed by a function call"));
        }
        let cmds = &self.stacks.cmds[mark..];
        if cmds.is_empty() {
            return Err(match paren {
                Some(off) => syntax(off, "empty parentheses: put a function call inside"),
                None => syntax(
                    self.open,
                    "empty action: put a function call or a field inside `{{ }}`",
                ),
            });
        }
        for (k, cmd) in cmds.iter().enumerate() {
            let ops = &self.ast.ops[cmd.range()];
            let head = &ops[0];
            if matches!(head.kind, OpKind::Func(_)) {
                continue;
            }
            if k > 0 {
                return Err(syntax(
                    head.offset,
                    format!(
                        "only a function can follow `|`, not {}",
                        head.kind.describe(self.lex.src)
                    ),
                ));
            }
            if let Some(arg) = ops.get(1) {
                return Err(syntax(
                    arg.offset,
                    format!(
                        "{} is not a function and takes no arguments",
                        head.kind.describe(self.lex.src)
                    ),
                ));
            }
        }
        let span = Span {
            start: self.ast.cmds.len(),
            len: cmds.len(),
        };
        self.ast.cmds.extend(self.stacks.cmds.drain(mark..));
        self.ast.pipes.push(span);
        Ok(self.ast.pipes.len() - 1)
    }

    /// Parses operands separated by spaces. Returns, when the command ended with `|`
    /// (consumed), the offset of that `|`.
    fn parse_command(&mut self) -> Result<Option<usize>, InterpError> {
        let mark = self.stacks.ops.len();
        let piped = loop {
            let mut t = self.next_non_space();
            if t.tok.starts_operand() {
                let op = self.parse_operand(t)?;
                self.stacks.ops.push(op);
                t = self.next();
            }
            match t.tok {
                Tok::Space => {}
                Tok::End { .. } | Tok::RParen => {
                    self.backup(t);
                    break None;
                }
                Tok::Pipe => break Some(t.off),
                Tok::Bad(e) => return Err(*e),
                Tok::LParen => {
                    return Err(syntax(
                        t.off,
                        "unexpected `(`: Go templates call functions without parentheses \
                         (`{{ upper \"x\" }}`); put a space before a parenthesised argument",
                    ));
                }
                Tok::Char(c) => {
                    return Err(syntax(t.off, format!("unexpected `{c}` in an action")));
                }
                _ => return Err(syntax(t.off, "missing space between arguments")),
            }
        };
        let span = Span {
            start: self.ast.ops.len(),
            len: self.stacks.ops.len() - mark,
        };
        self.ast.ops.extend(self.stacks.ops.drain(mark..));
        self.stacks.cmds.push(span);
        Ok(piped)
    }

    /// Parses the operand that starts with `t`.
    fn parse_operand(&mut self, t: Token<'s>) -> Result<Operand, InterpError> {
        let offset = t.off;
        let kind = match t.tok {
            Tok::Str(s) => OpKind::Str(s),
            Tok::Int(i) => OpKind::Int(i),
            Tok::Field(span) => OpKind::Field(span),
            Tok::Ident(name) => match Func::from_name(name) {
                Some(f) => OpKind::Func(f),
                None => {
                    return Err(InterpError::UnknownFunction {
                        offset,
                        name: name.to_string(),
                    });
                }
            },
            Tok::LParen => OpKind::Pipe(self.parse_pipeline(Some(offset))?),
            Tok::Dot => {
                return Err(syntax(
                    offset,
                    "`.` alone is not supported: name a field, e.g. `.HTTPIP`",
                ));
            }
            _ => return Err(syntax(offset, "expected an argument")),
        };
        let mut op = Operand { offset, kind };
        // A field right after an operand, without a space: a chain (`.A.B`, `(x).A`).
        loop {
            let t = self.next();
            let Tok::Field(name) = t.tok else {
                self.backup(t);
                return Ok(op);
            };
            match &mut op.kind {
                OpKind::Field(chain) => {
                    // The chain is contiguous in the source: `.A.B`.
                    chain.len = name.start + name.len - chain.start;
                }
                other => {
                    return Err(syntax(
                        t.off,
                        format!(
                            "fields of {} are not supported",
                            other.describe(self.lex.src)
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::interp::test_support::*;
    use crate::recipe::interp::{Context, render};

    #[test]
    fn plain_text_is_unchanged() {
        for s in [
            "",
            "abc",
            "{ x }",
            "a } b }}",
            "{",
            "x{",
            "{ {",
            "ünïcödé ☃",
            "}}{",
        ] {
            assert_eq!(ok(s), s);
        }
    }

    #[test]
    fn comments_render_nothing() {
        assert_eq!(ok("a{{/* note */}}b"), "ab");
        assert_eq!(ok("a {{- /* note */ -}} b"), "ab");
        assert_eq!(ok("a{{/* {{ user `x` }} */}}b"), "ab");
        assert_eq!(ok("{{/*\nmulti\nline\n*/}}"), "");
        assert_eq!(
            syntax_at("ab{{/* open"),
            (2, "unclosed comment: missing `*/}}`".to_string())
        );
        assert_eq!(syntax_at("{{/* x */ }}").0, 9);
        // Go: a comment must start right after the delimiter (or its trim marker).
        assert_eq!(syntax_at("{{ /* x */ }}").0, 3);
    }

    #[test]
    fn trim_markers_follow_go() {
        assert_eq!(ok("a  \n\t{{- \"x\" -}} \r\n b"), "axb");
        assert_eq!(ok("a {{- \"x\" }} b"), "ax b");
        assert_eq!(ok("a {{ \"x\" -}} b"), "a xb");
        assert_eq!(ok("{{- \"x\" -}}"), "x");
        assert_eq!(ok("{{\"a\" -}}   {{- \"b\"}}"), "ab");
        // `{{-3}}` is the number -3 (no space after the minus), `{{3 -}}` trims.
        assert_eq!(ok("a {{-3}} b"), "a -3 b");
        assert_eq!(ok("a {{3 -}} b"), "a 3b");
        // Trim markers accept any of Go's spaces.
        assert_eq!(ok("a {{-\t\"x\"\n-}} b"), "axb");
        // Several spaces before the trim marker.
        assert_eq!(ok("{{ \"x\"    -}}  y"), "xy");
        // Only literal text is trimmed, not values.
        assert_eq!(ok("{{ \" x \" -}} {{- \" y \" }}"), " x  y ");
    }

    #[test]
    fn parentheses() {
        assert_eq!(ok("{{ upper (user `name`) }}"), "WEB");
        assert_eq!(ok("{{ (user `name`) }}"), "web");
        assert_eq!(ok("{{ replace_all `-` (upper `x`) (lower `A-B`) }}"), "aXb");
        assert_eq!(ok("{{ split (user `os`) `-` (1) }}"), "12");
        assert_eq!(ok("{{ ( ( ( `deep` ) ) ) }}"), "deep");
        assert_eq!(ok("{{ upper (`a` | replace_all `a` `b`) | lower }}"), "b");
        assert_eq!(syntax_at("{{ upper ( ) }}").0, 9);
        assert_eq!(syntax_at("{{ upper (`a` }}").0, 9);
        assert_eq!(syntax_at("{{ upper `a`) }}").0, 12);
        // Calls take no parentheses in Go templates.
        assert_eq!(syntax_at("{{ upper(`a`) }}").0, 8);
        let deep = format!("{{{{ {}`x`{} }}}}", "(".repeat(64), ")".repeat(64));
        assert_eq!(ok(&deep), "x");
        let deeper = format!("{{{{ {}`x`{} }}}}", "(".repeat(65), ")".repeat(65));
        let (off, msg) = syntax_at(&deeper);
        assert_eq!(off, 3 + 64);
        assert!(msg.contains("64"), "{msg}");
        let huge = format!("{{{{ {}", "(".repeat(100_000));
        assert!(matches!(r(&huge), Err(InterpError::Syntax { .. })));
    }

    #[test]
    fn pipeline_errors() {
        assert_eq!(
            syntax_at("{{ `a` | }}"),
            (7, "`|` must be followed by a function call".to_string())
        );
        assert_eq!(syntax_at("{{ | upper }}").0, 3);
        assert_eq!(syntax_at("{{ `a` | | upper }}").0, 9);
        assert_eq!(syntax_at("{{ `a` | `b` }}").0, 9);
        assert_eq!(syntax_at("{{ `a` | .HTTPIP }}").0, 9);
        assert_eq!(syntax_at("{{ `a` `b` }}").0, 7);
        assert_eq!(syntax_at("{{ .HTTPIP `b` }}").0, 11);
        assert_eq!(syntax_at("{{ 1 2 }}").0, 5);
        assert_eq!(syntax_at("{{ `a``b` }}").0, 6);
        // The piped value counts as an argument.
        assert_eq!(bad_args("{{ `a` | upper `b` }}").0, 9);
        assert_eq!(bad_args("{{ `a` | timestamp }}").0, 9);
        // A niladic function used as an argument is called without arguments (Go).
        assert_eq!(bad_args("{{ upper upper `x` }}").0, 3);
        assert_eq!(bad_args("{{ replace_all `a` `b` upper }}").0, 23);
    }

    #[test]
    fn nested_and_repeated_use_of_the_scratch_buffers() {
        // An `env` callback that renders a template itself while the outer render runs.
        let run = run();
        let vars = vars();
        let inner_env = |name: &str| -> Option<String> {
            let ctx = Context {
                vars: &vars,
                allow_env: false,
                env: &env,
                run: &run,
                build_name: None,
                build_type: None,
                fields: &[],
            };
            render(&format!("<{{{{ upper `{name}` }}}}>"), &ctx).ok()
        };
        let ctx = Context {
            vars: &vars,
            allow_env: true,
            env: &inner_env,
            run: &run,
            build_name: None,
            build_type: None,
            fields: &[],
        };
        assert_eq!(
            render("{{ env `a` }}-{{ env `b` }}", &ctx),
            Ok("<A>-<B>".to_string())
        );
        // A failed parse leaves the buffers usable.
        assert!(r("{{ user `name` | }}").is_err());
        assert_eq!(ok("{{ user `name` }}"), "web");
        assert!(r("{{ ((( }}").is_err());
        assert_eq!(ok("{{ (user `name`) }}"), "web");
    }
}
