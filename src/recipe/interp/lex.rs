//! The lexer of an action (the rules of Go's `text/template/parse/lex.go`, inside one `{{ }}`):
//! tokens on demand, so that, as in Go, the first error in reading order is the one reported;
//! Go string escapes and Go integer syntax.

use super::ast::{Lit, Span};
use super::{InterpError, MAX_NESTING, syntax};

#[derive(Debug, Clone)]
pub(super) struct Token<'s> {
    pub(super) off: usize,
    pub(super) tok: Tok<'s>,
}

#[derive(Debug, Clone)]
pub(super) enum Tok<'s> {
    Space,
    Pipe,
    LParen,
    RParen,
    Str(Lit),
    Int(i64),
    /// Where the field name (without the dot) is.
    Field(Span),
    Dot,
    Ident(&'s str),
    /// Any other printable ASCII character (never valid here).
    Char(char),
    /// The closing `}}`; `end` is the offset just past it, `trim` whether it was ` -}}`.
    End {
        end: usize,
        trim: bool,
    },
    /// A lexical error.
    Bad(Box<InterpError>),
}

impl Tok<'_> {
    /// Whether the token starts an operand.
    pub(super) fn starts_operand(&self) -> bool {
        matches!(
            self,
            Tok::Str(_) | Tok::Int(_) | Tok::Field(_) | Tok::Dot | Tok::Ident(_) | Tok::LParen
        )
    }
}

fn construct(offset: usize, what: &str) -> InterpError {
    syntax(
        offset,
        format!(
            "kiln does not support the Go template construct `{what}` in recipes: only function \
             calls, pipelines and context fields such as `.HTTPIP` are available"
        ),
    )
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `{{-` followed by a space: Go's left trim marker (checked at the byte after `{{`).
pub(super) fn has_left_trim_marker(b: &[u8], p: usize) -> bool {
    b.get(p) == Some(&b'-') && b.get(p + 1).is_some_and(|c| is_space(*c))
}

/// Whether a closing delimiter starts at `p`: `Some(false)` for `}}`, `Some(true)` for ` -}}`.
pub(super) fn at_right_delim(b: &[u8], p: usize) -> Option<bool> {
    let rest = b.get(p..)?;
    if rest.starts_with(b"}}") {
        Some(false)
    } else if rest.len() >= 4 && is_space(rest[0]) && rest[1..].starts_with(b"-}}") {
        Some(true)
    } else {
        None
    }
}

/// Whether an identifier or field may end at `p` (Go's `atTerminator`).
fn at_terminator(b: &[u8], p: usize) -> bool {
    match b.get(p) {
        None => true,
        Some(&c) if is_space(c) => true,
        Some(b'.' | b',' | b'|' | b':' | b')' | b'(') => true,
        Some(_) => b[p..].starts_with(b"}}"),
    }
}

pub(super) struct Lexer<'s, 'b> {
    pub(super) src: &'s str,
    /// Where the next token starts.
    pub(super) p: usize,
    /// Offset of the action's `{{`.
    pub(super) open: usize,
    /// Offsets of the open parentheses.
    pub(super) parens: &'b mut Vec<usize>,
    /// The final token (`End` or `Bad`) once reached; returned again on every later call.
    pub(super) last: Option<Token<'s>>,
}

impl<'s> Lexer<'s, '_> {
    pub(super) fn next(&mut self) -> Token<'s> {
        if let Some(t) = &self.last {
            return t.clone();
        }
        let t = self.scan();
        if matches!(t.tok, Tok::End { .. } | Tok::Bad(_)) {
            self.last = Some(t.clone());
        }
        t
    }

    fn scan(&mut self) -> Token<'s> {
        let src = self.src;
        let b = src.as_bytes();
        let bad = |e: InterpError| Token {
            off: 0,
            tok: Tok::Bad(Box::new(e)),
        };
        let p = self.p;
        if let Some(trim) = at_right_delim(b, p) {
            if let Some(&po) = self.parens.last() {
                return bad(syntax(
                    po,
                    "unclosed `(`: missing `)` before the end of the action",
                ));
            }
            let end = p + if trim { 4 } else { 2 };
            self.p = end;
            return Token {
                off: p,
                tok: Tok::End { end, trim },
            };
        }
        let Some(c) = src[p..].chars().next() else {
            return bad(syntax(self.open, "unclosed action: missing `}}`"));
        };
        let (tok, next) = match c {
            ' ' | '\t' | '\r' | '\n' => {
                let mut q = p;
                while q < b.len() && is_space(b[q]) {
                    q += 1;
                }
                // The last space may belong to a trim-marked delimiter ` -}}` (never the
                // first one: that case was caught above).
                if at_right_delim(b, q - 1) == Some(true) {
                    q -= 1;
                }
                (Tok::Space, q)
            }
            '|' => (Tok::Pipe, p + 1),
            '(' => {
                if self.parens.len() >= MAX_NESTING {
                    return bad(syntax(
                        p,
                        format!("parentheses nested more than {MAX_NESTING} levels deep"),
                    ));
                }
                self.parens.push(p);
                (Tok::LParen, p + 1)
            }
            ')' => {
                if self.parens.pop().is_none() {
                    return bad(syntax(p, "unexpected `)` without a matching `(`"));
                }
                (Tok::RParen, p + 1)
            }
            '"' => match lex_quoted(src, p) {
                Ok((s, q)) => (Tok::Str(s), q),
                Err(e) => return bad(e),
            },
            '`' => match src[p + 1..].find('`') {
                Some(len) => {
                    let raw = &src[p + 1..p + 1 + len];
                    // Go's strconv.Unquote drops carriage returns from raw strings.
                    let value = if raw.contains('\r') {
                        Lit::Owned(raw.replace('\r', "").into())
                    } else {
                        Lit::Src(Span { start: p + 1, len })
                    };
                    (Tok::Str(value), p + len + 2)
                }
                None => {
                    return bad(syntax(
                        p,
                        "unterminated raw string: missing closing backtick",
                    ));
                }
            },
            '$' => {
                let name_end = scan_alnum(src, p + 1);
                return bad(construct(p, &src[p..name_end]));
            }
            '\'' => {
                return bad(syntax(
                    p,
                    "character constants are not supported: write strings in double quotes \
                     or backticks",
                ));
            }
            ':' => {
                let what = if b.get(p + 1) == Some(&b'=') {
                    ":="
                } else {
                    ":"
                };
                return bad(construct(p, what));
            }
            '=' => return bad(construct(p, "=")),
            '.' if !b.get(p + 1).is_some_and(u8::is_ascii_digit) => {
                let q = p + 1;
                if at_terminator(b, q) {
                    (Tok::Dot, q)
                } else {
                    let end = scan_alnum(src, q);
                    if !at_terminator(b, end) {
                        return bad(bad_char(src, end));
                    }
                    (
                        Tok::Field(Span {
                            start: q,
                            len: end - q,
                        }),
                        end,
                    )
                }
            }
            '.' | '+' | '-' | '0'..='9' => match lex_number(src, p) {
                Ok((value, q)) => (Tok::Int(value), q),
                Err(e) => return bad(e),
            },
            c if is_alnum(c) => {
                let end = scan_alnum(src, p);
                if !at_terminator(b, end) {
                    return bad(bad_char(src, end));
                }
                let word = &src[p..end];
                match word {
                    "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block"
                    | "break" | "continue" => return bad(construct(p, word)),
                    "true" | "false" | "nil" => {
                        return bad(syntax(
                            p,
                            format!(
                                "`{word}` is not supported in recipes: only strings and \
                                 integers are"
                            ),
                        ));
                    }
                    _ => (Tok::Ident(word), end),
                }
            }
            c if c.is_ascii() && !c.is_ascii_control() => (Tok::Char(c), p + 1),
            c => {
                return bad(syntax(
                    p,
                    format!(
                        "unexpected character {c:?} (U+{:04X}) in an action",
                        u32::from(c)
                    ),
                ));
            }
        };
        self.p = next;
        Token { off: p, tok }
    }
}

/// The end of the run of identifier characters starting at `p`.
fn scan_alnum(src: &str, p: usize) -> usize {
    let b = src.as_bytes();
    let mut q = p;
    // ASCII fast path; `q` stays on a char boundary (it only passes ASCII bytes).
    while q < b.len() && (b[q].is_ascii_alphanumeric() || b[q] == b'_') {
        q += 1;
    }
    if q < b.len() && !b[q].is_ascii() {
        return src[q..]
            .char_indices()
            .find(|&(_, c)| !is_alnum(c))
            .map_or(src.len(), |(i, _)| q + i);
    }
    q
}

/// The error for a character that may not follow an identifier or field.
fn bad_char(src: &str, p: usize) -> InterpError {
    let c = src[p..].chars().next().unwrap_or(' ');
    syntax(
        p,
        format!(
            "unexpected {c:?} right after a name: separate arguments with spaces \
             (and string arguments need quotes)"
        ),
    )
}

/// Scans a double-quoted string starting at `p`; returns its decoded value and the offset
/// just past the closing quote.
fn lex_quoted(src: &str, p: usize) -> Result<(Lit, usize), InterpError> {
    let b = src.as_bytes();
    let mut q = p + 1;
    loop {
        match b.get(q) {
            None | Some(b'\n') => {
                return Err(syntax(p, "unterminated string: missing closing `\"`"));
            }
            Some(b'\\') => {
                if matches!(b.get(q + 1), None | Some(b'\n')) {
                    return Err(syntax(p, "unterminated string: missing closing `\"`"));
                }
                q += 2;
            }
            Some(b'"') => break,
            Some(_) => q += 1,
        }
    }
    // `q` is at the closing quote; a backslash may have skipped into a multi-byte character,
    // but the quote itself is ASCII, so `p + 1..q` are char boundaries.
    let value = match unquote(&src[p + 1..q]).map_err(|m| syntax(p, m))? {
        Some(decoded) => Lit::Owned(decoded.into()),
        None => Lit::Src(Span {
            start: p + 1,
            len: q - p - 1,
        }),
    };
    Ok((value, q + 1))
}

/// Decodes Go escapes in the body of a double-quoted string (Go's `strconv.Unquote`);
/// `None` when there is nothing to decode.
fn unquote(body: &str) -> Result<Option<String>, String> {
    if !body.contains('\\') {
        return Ok(None);
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| format!("invalid escape: expected {n} hexadecimal digits"))?;
            v = v * 16 + d;
        }
        Ok(v)
    };
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().unwrap_or('\\');
        let byte = match e {
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'n' => b'\n',
            'r' => b'\r',
            't' => b'\t',
            'v' => 0x0b,
            '\\' => b'\\',
            '"' => b'"',
            'x' => hex(&mut chars, 2)? as u8,
            'u' | 'U' => {
                let v = hex(&mut chars, if e == 'u' { 4 } else { 8 })?;
                let ch = char::from_u32(v)
                    .ok_or_else(|| format!("invalid escape: U+{v:04X} is not a valid character"))?;
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            '0'..='7' => {
                let mut v = e as u32 - '0' as u32;
                for _ in 0..2 {
                    let d = chars
                        .next()
                        .and_then(|c| c.to_digit(8))
                        .ok_or("invalid escape: expected 3 octal digits")?;
                    v = v * 8 + d;
                }
                u8::try_from(v).map_err(|_| "invalid escape: octal value above \\377")?
            }
            other => return Err(format!("unknown escape sequence `\\{other}`")),
        };
        out.push(byte);
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| "the escapes in this string do not form valid UTF-8".to_string())
}

/// Scans a number at `p` the way Go's lexer does, and parses it as an integer the way
/// `strconv.ParseInt(text, 0, 64)` does. Returns the value and the offset past the number.
fn lex_number(src: &str, p: usize) -> Result<(i64, usize), InterpError> {
    let b = src.as_bytes();
    let mut q = p;
    let scan = |q: &mut usize| -> bool {
        let accept = |q: &mut usize, set: &[u8]| -> bool {
            if b.get(*q).is_some_and(|c| set.contains(c)) {
                *q += 1;
                true
            } else {
                false
            }
        };
        let accept_run = |q: &mut usize, set: &[u8]| while accept(q, set) {};
        accept(q, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        let mut hex = false;
        if accept(q, b"0") {
            if accept(q, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
                hex = true;
            } else if accept(q, b"oO") {
                digits = b"01234567_";
            } else if accept(q, b"bB") {
                digits = b"01_";
            }
        }
        accept_run(q, digits);
        if accept(q, b".") {
            accept_run(q, digits);
        }
        if digits.len() == 11 && accept(q, b"eE") {
            accept(q, b"+-");
            accept_run(q, b"0123456789_");
        }
        if hex && accept(q, b"pP") {
            accept(q, b"+-");
            accept_run(q, b"0123456789_");
        }
        accept(q, b"i");
        // The next thing mustn't be alphanumeric.
        if let Some(c) = src[*q..].chars().next().filter(|c| is_alnum(*c)) {
            *q += c.len_utf8();
            return false;
        }
        true
    };
    let bad_syntax = |q: usize| syntax(p, format!("bad number syntax: `{}`", &src[p..q]));
    if !scan(&mut q) {
        return Err(bad_syntax(q));
    }
    if matches!(b.get(q), Some(b'+' | b'-')) {
        // Go's complex constants (1+2i).
        let ok = scan(&mut q);
        if !ok || b[q - 1] != b'i' {
            return Err(bad_syntax(q));
        }
        return Err(syntax(p, "complex numbers are not supported in recipes"));
    }
    let text = &src[p..q];
    match parse_go_int(text) {
        Some(v) => Ok((v, q)),
        None if text
            .bytes()
            .any(|c| matches!(c, b'.' | b'e' | b'E' | b'p' | b'P' | b'i'))
            && !text.starts_with("0x")
            && !text.starts_with("0X")
            || text.contains('.') =>
        {
            Err(syntax(
                p,
                format!("only integer numbers are supported in recipes, found `{text}`"),
            ))
        }
        None => Err(bad_syntax(q)),
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)`: optional sign, base prefixes `0x`, `0o`, `0b`, a
/// leading `0` for octal, `_` separators between digits.
fn parse_go_int(text: &str) -> Option<i64> {
    let (neg, s) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if !underscore_ok(s) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(base)?;
        value = value
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(d))?;
        any = true;
    }
    if !any {
        return None;
    }
    if neg {
        if value == 1 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(value).ok().map(|v| -v)
        }
    } else {
        i64::try_from(value).ok()
    }
}

/// Go's `underscoreOK`: underscores only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || hex && (c | 0x20).is_ascii_hexdigit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

#[cfg(test)]
mod tests {
    use crate::recipe::interp::test_support::*;

    #[test]
    fn literals_render() {
        assert_eq!(ok("{{ \"x\" }}"), "x");
        assert_eq!(ok("{{`raw`}}"), "raw");
        assert_eq!(ok("a{{42}}b"), "a42b");
        assert_eq!(ok("{{-7}}"), "-7");
        assert_eq!(ok("{{ +7 }}"), "7");
        assert_eq!(
            ok("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}}"),
            "31 15 15 5 1000"
        );
        assert_eq!(ok("{{ \"}}\" }}"), "}}");
        assert_eq!(ok("{{ `{{user \"x\"}}` }}"), "{{user \"x\"}}");
    }

    #[test]
    fn string_escapes_follow_go() {
        assert_eq!(ok(r#"{{ "a\tb\nc\\d\"e" }}"#), "a\tb\nc\\d\"e");
        assert_eq!(ok(r#"{{ "\x41\101\u00e9\U0001F600" }}"#), "AAé😀");
        assert_eq!(ok(r#"{{ "\a\b\f\v\r" }}"#), "\x07\x08\x0c\x0b\r");
        assert_eq!(ok("{{ `a\\nb` }}"), "a\\nb");
        // Raw strings may span lines; Go drops carriage returns from them.
        assert_eq!(ok("{{ `a\r\nb` }}"), "a\nb");
        // Bytes that do not form UTF-8, unknown escapes, \' in a double-quoted string.
        for bad in [
            r#"{{ "\xff" }}"#,
            r#"{{ "\q" }}"#,
            r#"{{ "\'" }}"#,
            r#"{{ "\400" }}"#,
        ] {
            assert_eq!(syntax_at(bad).0, 3, "{bad}");
        }
        assert_eq!(syntax_at(r#"{{ "\ud800" }}"#).0, 3);
        assert_eq!(syntax_at(r#"{{ "\x4" }}"#).0, 3);
    }

    #[test]
    fn spaces_inside_actions() {
        assert_eq!(ok("{{   user    `name`   }}"), "web");
        assert_eq!(ok("{{\nuser\n`name`\n}}"), "web");
        assert_eq!(ok("{{ .HTTPIP }}"), "10.0.2.2");
        assert_eq!(ok("{{.HTTPIP}}"), "10.0.2.2");
    }

    #[test]
    fn go_control_structures_are_refused() {
        for (src, off) in [
            ("{{ if true }}x{{ end }}", 3),
            ("ab{{range .X}}{{end}}", 4),
            ("{{with `x`}}{{end}}", 2),
            ("{{define `t`}}{{end}}", 2),
            ("{{template `t`}}", 2),
            ("{{block `t` .}}{{end}}", 2),
            ("{{else}}", 2),
            ("{{end}}", 2),
            ("{{break}}", 2),
            ("{{continue}}", 2),
            ("{{ $x := `a` }}", 3),
            ("{{ $x }}", 3),
            ("{{ $ }}", 3),
            ("{{ $x = `a` }}", 3),
            ("{{ upper = }}", 9),
        ] {
            let (o, msg) = syntax_at(src);
            assert_eq!(o, off, "{src}");
            assert!(
                msg.contains("does not support the Go template construct"),
                "{src}: {msg}"
            );
        }
        for (src, off) in [
            ("{{ true }}", 3),
            ("{{ nil }}", 3),
            ("{{ 'a' }}", 3),
            ("{{ 1.5 }}", 3),
            ("{{ 1e3 }}", 3),
            ("{{ 1+2i }}", 3),
        ] {
            assert_eq!(syntax_at(src).0, off, "{src}");
        }
    }

    #[test]
    fn syntax_errors_have_offsets() {
        assert_eq!(
            syntax_at("abc {{ user `x`"),
            (4, "unclosed action: missing `}}`".to_string())
        );
        assert_eq!(syntax_at("{{").0, 0);
        assert_eq!(syntax_at("x{{}}").0, 1);
        assert_eq!(syntax_at("{{ }}").0, 0);
        assert_eq!(syntax_at("{{- -}}").0, 4);
        assert_eq!(syntax_at("{{ \"abc }}").0, 3);
        assert_eq!(syntax_at("{{ `abc }}").0, 3);
        assert_eq!(syntax_at("{{ user\"x\" }}").0, 7);
        assert_eq!(syntax_at("{{ 3x }}").0, 3);
        assert_eq!(syntax_at("{{ 0x }}").0, 3);
        assert_eq!(syntax_at("{{ 99999999999999999999 }}").0, 3);
        assert_eq!(syntax_at("{{ @ }}").0, 3);
        assert_eq!(syntax_at("{{ user `a`, `b` }}").0, 11);
        assert_eq!(syntax_at("{{ ☃ }}").0, 3);
        assert_eq!(syntax_at("é{{ timestamp-}}").0, 14);
        // Lexing stops at the first error; earlier parse errors win, as in Go.
        assert_eq!(syntax_at("{{ `a` | | @ }}").0, 9);
    }
}
