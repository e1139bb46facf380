//! A JSON parser that keeps the line and column of every value and object key.
//!
//! `serde_json` loses positions and silently keeps the last of duplicate keys; recipes need
//! both (every diagnostic names `file:line:col`, and duplicate keys are errors).

/// A 1-based line and column (column counted in Unicode scalar values) in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
}

/// A JSON value together with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts (its first character).
    pub pos: Pos,
    /// The value itself.
    pub value: Value,
}

/// One member of a JSON object, in source order (duplicates are kept).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The decoded key.
    pub key: String,
    /// Where the key's opening quote is.
    pub key_pos: Pos,
    /// The member's value.
    pub value: Node,
}

/// A JSON value. Numbers keep their source text so that no precision is lost.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as written in the source (e.g. `"2048"`, `"1e3"`).
    Number(String),
    /// A string with escapes decoded.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object; members in source order, duplicate keys kept.
    Object(Vec<Member>),
}

/// A syntax error with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos_line}:{pos_col}: {message}", pos_line = pos.line, pos_col = pos.col)]
pub struct SyntaxError {
    /// Where the error is.
    pub pos: Pos,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

/// The deepest nesting of arrays and objects that [`parse`] accepts; one level more is a
/// [`SyntaxError`] (this bounds the parser's recursion, so hostile input cannot overflow the stack).
pub const MAX_DEPTH: usize = 128;

/// Parses a whole JSON document (one value, surrounded by optional whitespace).
///
/// A leading UTF-8 byte order mark is skipped (positions are counted as if it were absent).
/// Lines are separated by `\n` (a `\r` right before it is part of the line break, as in
/// [`str::lines`]); columns count characters, not bytes.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut p = Parser::new(text);
    p.skip_ws();
    if p.peek().is_none() {
        return Err(p.error(
            p.i,
            "unexpected end of file: the document is empty (expected a JSON value)".into(),
        ));
    }
    let node = p.value(0)?;
    p.skip_ws();
    if p.peek().is_some() {
        if p.is_comment() {
            return Err(p.comment_error());
        }
        let found = p.describe_here();
        return Err(p.error(
            p.i,
            format!("unexpected {found} after the end of the JSON document"),
        ));
    }
    Ok(node)
}

/// The state of one parse: the text, the cursor, the current line, and the array and object
/// elements collected so far.
///
/// Positions are cheap because a raw line break can only appear in whitespace (strings reject
/// control characters; numbers and literals are ASCII letters, digits and signs): `skip_ws`
/// counts lines as it goes, and a value's column is found by counting the characters between
/// the previous position asked for on the same line and this one. That is one fast pass over
/// the bytes, linear over the whole document even when it is a single 1 MB line. Errors, which
/// may point back before the cursor, recompute their position from the start of the text.
struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread byte.
    i: usize,
    /// 1-based number of the line holding the cursor.
    line: u32,
    /// Byte offset where that line starts.
    line_start: usize,
    /// A byte offset on the current line whose column is `col_at_mark` (positions are asked for
    /// in increasing order, so each is counted from the previous one).
    col_mark: usize,
    col_at_mark: u32,
    /// Elements of the arrays being parsed, innermost last. Each array is moved out into a
    /// `Vec` of exactly the right size when it closes: one allocation per array instead of a
    /// series of reallocations while it grows.
    items: Vec<Node>,
    /// Members of the objects being parsed, innermost last (same idea as `items`).
    members: Vec<Member>,
}

/// Saturating `usize` → `u32` (positions in a > 4 GiB document stop growing instead of panicking).
fn sat(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The number of characters in UTF-8 `bytes`: those that are not continuation bytes
/// (`0b10xx_xxxx`, i.e. -128..=-65 as `i8`). Counting in `u8` over chunks of at most 255 bytes
/// lets the compiler use full-width vector instructions.
fn count_chars(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            let starts: u8 = chunk
                .iter()
                .map(|&b| u8::from(b.cast_signed() >= -0x40))
                .sum();
            usize::from(starts)
        })
        .sum()
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            i: 0,
            line: 1,
            line_start: 0,
            col_mark: 0,
            col_at_mark: 1,
            items: Vec::new(),
            members: Vec::new(),
        }
    }

    /// The position of byte offset `off`, which must be on the cursor's line, at or after the
    /// last offset asked for (true of every value and key start, in source order).
    fn pos(&mut self, off: usize) -> Pos {
        if self.col_mark < self.line_start {
            self.col_mark = self.line_start;
            self.col_at_mark = 1;
        }
        // Never panics: out-of-order offsets (a bug) would only give a wrong column.
        let off = off.min(self.bytes.len()).max(self.col_mark);
        let chars = count_chars(&self.bytes[self.col_mark..off]);
        self.col_at_mark = self.col_at_mark.saturating_add(sat(chars));
        self.col_mark = off;
        Pos {
            line: self.line,
            col: self.col_at_mark,
        }
    }

    /// The position of any byte offset, counted from the start of the text (for errors).
    fn pos_anywhere(&self, off: usize) -> Pos {
        let before = &self.bytes[..off.min(self.bytes.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |k| k + 1);
        let breaks = before.iter().filter(|&&b| b == b'\n').count();
        Pos {
            line: sat(breaks).saturating_add(1),
            col: sat(count_chars(&before[line_start..])).saturating_add(1),
        }
    }

    fn error(&self, off: usize, message: String) -> SyntaxError {
        SyntaxError {
            pos: self.pos_anywhere(off),
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.i) {
            match b {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'\n' => {
                    self.i += 1;
                    self.line = self.line.saturating_add(1);
                    self.line_start = self.i;
                }
                _ => break,
            }
        }
    }

    /// Whether a `//` or `/*` comment starts at the cursor.
    fn is_comment(&self) -> bool {
        self.peek() == Some(b'/') && matches!(self.bytes.get(self.i + 1), Some(b'/' | b'*'))
    }

    fn comment_error(&self) -> SyntaxError {
        self.error(self.i, "comments are not allowed in JSON".into())
    }

    /// Describes what is at the cursor for a message: a whole word for letters, else the char.
    fn describe_here(&self) -> String {
        let Some(c) = self.src.get(self.i..).and_then(|s| s.chars().next()) else {
            return "end of file".into();
        };
        if c.is_ascii_alphabetic() || c == '_' {
            let end = self.scan(self.i, |b| b.is_ascii_alphanumeric() || b == b'_');
            return format!("`{}`", clip(&self.src[self.i..end]));
        }
        describe_char(c)
    }

    /// The end of the run of bytes matching `keep` that starts at `from`.
    fn scan(&self, from: usize, keep: impl Fn(u8) -> bool) -> usize {
        let mut end = from;
        while self.bytes.get(end).is_some_and(|&b| keep(b)) {
            end += 1;
        }
        end
    }

    /// "`expected`, found X`hint`" at the cursor (or the comment error if a comment is there).
    fn unexpected(&self, expected: &str, hint: &str) -> SyntaxError {
        if self.is_comment() {
            return self.comment_error();
        }
        let found = self.describe_here();
        self.error(self.i, format!("{expected}, found {found}{hint}"))
    }

    fn eof_in(&self, what: &str, open: Pos) -> SyntaxError {
        self.error(
            self.bytes.len(),
            format!(
                "unexpected end of file: {what} opened at {}:{} is not closed",
                open.line, open.col
            ),
        )
    }

    fn unterminated(&self, open: Pos) -> SyntaxError {
        self.error(
            self.bytes.len(),
            format!(
                "unterminated string (started at {}:{})",
                open.line, open.col
            ),
        )
    }

    fn too_deep(&self, open: Pos) -> SyntaxError {
        SyntaxError {
            pos: open,
            message: format!("nested more than {MAX_DEPTH} levels deep"),
        }
    }

    /// Parses the value at the cursor (the caller has skipped whitespace and checked for end of
    /// file). `depth` is the number of arrays and objects enclosing it.
    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let start = self.i;
        let pos = self.pos(start);
        let Some(&first) = self.bytes.get(start) else {
            // Callers check for the end of the file first; this is only a safety net.
            return Err(self.error(start, "unexpected end of file".into()));
        };
        let value = match first {
            b'{' => self.object(pos, depth + 1)?,
            b'[' => self.array(pos, depth + 1)?,
            b'"' => Value::String(self.string(pos)?),
            b'-' | b'0'..=b'9' | b'+' | b'.' => self.number()?,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.literal()?,
            b'\'' => {
                return Err(self.unexpected(
                    "expected a JSON value",
                    ": strings must be in double quotes (`\"`)",
                ));
            }
            _ => return Err(self.unexpected("expected a JSON value", "")),
        };
        Ok(Node { pos, value })
    }

    fn object(&mut self, open: Pos, depth: usize) -> Result<Value, SyntaxError> {
        const WHAT: &str = "an object";
        if depth > MAX_DEPTH {
            return Err(self.too_deep(open));
        }
        self.i += 1; // `{`
        let base = self.members.len();
        self.skip_ws();
        match self.peek() {
            None => return Err(self.eof_in(WHAT, open)),
            Some(b'}') => {
                self.i += 1;
                return Ok(Value::Object(self.members.drain(base..).collect()));
            }
            Some(b'"') => {}
            Some(_) => {
                let hint = self.key_hint();
                return Err(self.unexpected("expected a string key or `}`", hint));
            }
        }
        loop {
            // The cursor is on the key's opening quote.
            let key_pos = self.pos(self.i);
            let key = self.string(key_pos)?;
            self.skip_ws();
            match self.peek() {
                None => return Err(self.eof_in(WHAT, open)),
                Some(b':') => self.i += 1,
                Some(_) => return Err(self.unexpected("expected `:` after the object key", "")),
            }
            self.skip_ws();
            if self.peek().is_none() {
                return Err(self.eof_in(WHAT, open));
            }
            let value = self.value(depth)?;
            self.members.push(Member {
                key,
                key_pos,
                value,
            });
            self.skip_ws();
            match self.peek() {
                None => return Err(self.eof_in(WHAT, open)),
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(self.members.drain(base..).collect()));
                }
                Some(b',') => {
                    let comma = self.i;
                    self.i += 1;
                    self.skip_ws();
                    match self.peek() {
                        None => return Err(self.eof_in(WHAT, open)),
                        Some(b'"') => {}
                        Some(b'}') => {
                            return Err(self.error(
                                comma,
                                "trailing comma before `}`: JSON does not allow it".into(),
                            ));
                        }
                        Some(_) => {
                            let hint = self.key_hint();
                            return Err(self.unexpected("expected a string key after `,`", hint));
                        }
                    }
                }
                Some(b']') => {
                    let hint = format!(
                        " (the object opened at {}:{} is still open)",
                        open.line, open.col
                    );
                    return Err(
                        self.unexpected("expected `,` or `}` after an object member", &hint)
                    );
                }
                Some(_) => {
                    return Err(self.unexpected("expected `,` or `}` after an object member", ""));
                }
            }
        }
    }

    /// A hint for a key that is not a double-quoted string (`'k'` or a bare word).
    fn key_hint(&self) -> &'static str {
        match self.peek() {
            Some(b'\'' | b'a'..=b'z' | b'A'..=b'Z' | b'_') => {
                ": object keys must be strings in double quotes (`\"`)"
            }
            _ => "",
        }
    }

    fn array(&mut self, open: Pos, depth: usize) -> Result<Value, SyntaxError> {
        const WHAT: &str = "an array";
        if depth > MAX_DEPTH {
            return Err(self.too_deep(open));
        }
        self.i += 1; // `[`
        let base = self.items.len();
        self.skip_ws();
        match self.peek() {
            None => return Err(self.eof_in(WHAT, open)),
            Some(b']') => {
                self.i += 1;
                return Ok(Value::Array(self.items.drain(base..).collect()));
            }
            Some(_) => {}
        }
        loop {
            let item = self.value(depth)?;
            self.items.push(item);
            self.skip_ws();
            match self.peek() {
                None => return Err(self.eof_in(WHAT, open)),
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(self.items.drain(base..).collect()));
                }
                Some(b',') => {
                    let comma = self.i;
                    self.i += 1;
                    self.skip_ws();
                    match self.peek() {
                        None => return Err(self.eof_in(WHAT, open)),
                        Some(b']') => {
                            return Err(self.error(
                                comma,
                                "trailing comma before `]`: JSON does not allow it".into(),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                Some(b'}') => {
                    let hint = format!(
                        " (the array opened at {}:{} is still open)",
                        open.line, open.col
                    );
                    return Err(
                        self.unexpected("expected `,` or `]` after an array element", &hint)
                    );
                }
                Some(_) => {
                    return Err(self.unexpected("expected `,` or `]` after an array element", ""));
                }
            }
        }
    }

    /// Parses the string whose opening quote is at the cursor; `open` is that quote's position.
    fn string(&mut self, open: Pos) -> Result<String, SyntaxError> {
        let bytes = self.bytes;
        let src = self.src;
        let mut i = self.i + 1;
        let mut seg = i; // start of the run of plain characters not yet copied
        let mut out: Option<String> = None; // only allocated separately once an escape is seen
        loop {
            i = skip_plain(bytes, i);
            match bytes.get(i) {
                None => return Err(self.unterminated(open)),
                Some(b'"') => {
                    self.i = i + 1;
                    let plain = &src[seg..i];
                    return Ok(match out {
                        None => plain.to_owned(),
                        Some(mut s) => {
                            s.push_str(plain);
                            s
                        }
                    });
                }
                Some(b'\\') => {
                    let s = out.get_or_insert_with(String::new);
                    s.push_str(&src[seg..i]);
                    i = self.escape(i, open, s)?;
                    seg = i;
                }
                Some(&b)
                    if b == b'\n' || (b == b'\r' && src.as_bytes().get(i + 1) == Some(&b'\n')) =>
                {
                    return Err(self.error(
                        i,
                        format!(
                            "unterminated string (started at {}:{}): close it with `\"` before the end of the line, or write the line break as \\n",
                            open.line, open.col
                        ),
                    ));
                }
                Some(&b) => {
                    let escape = match b {
                        0x08 => "\\b".to_owned(),
                        b'\t' => "\\t".to_owned(),
                        b'\n' => "\\n".to_owned(),
                        0x0C => "\\f".to_owned(),
                        b'\r' => "\\r".to_owned(),
                        _ => format!("\\u{b:04X}"),
                    };
                    return Err(self.error(
                        i,
                        format!(
                            "control character U+{b:04X} inside a string: escape it as {escape}"
                        ),
                    ));
                }
            }
        }
    }

    /// Decodes the escape whose backslash is at `i` into `out`; returns the offset after it.
    fn escape(&mut self, i: usize, open: Pos, out: &mut String) -> Result<usize, SyntaxError> {
        let bytes = self.bytes;
        let Some(&e) = bytes.get(i + 1) else {
            return Err(self.unterminated(open));
        };
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{C}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4(i, open)?;
                let mut next = i + 6;
                let c = match unit {
                    0xD800..=0xDBFF => {
                        let low = if bytes.get(next) == Some(&b'\\')
                            && bytes.get(next + 1) == Some(&b'u')
                        {
                            Some(self.hex4(next, open)?)
                        } else {
                            None
                        };
                        match low {
                            Some(low @ 0xDC00..=0xDFFF) => {
                                next += 6;
                                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                            }
                            _ => {
                                let text = &self.src[i..i + 6];
                                return Err(self.error(
                                    i,
                                    format!(
                                        "lone surrogate `{text}` in a string: a high surrogate \
                                         must be followed by a low surrogate escape \
                                         (`\\uDC00` to `\\uDFFF`)"
                                    ),
                                ));
                            }
                        }
                    }
                    0xDC00..=0xDFFF => {
                        let text = &self.src[i..i + 6];
                        return Err(self.error(
                            i,
                            format!(
                                "lone surrogate `{text}` in a string: a low surrogate must come \
                                 right after a high surrogate escape (`\\uD800` to `\\uDBFF`)"
                            ),
                        ));
                    }
                    _ => char::from_u32(unit),
                };
                out.push(c.unwrap_or(char::REPLACEMENT_CHARACTER));
                return Ok(next);
            }
            _ => {
                let shown = match self.src.get(i + 1..).and_then(|s| s.chars().next()) {
                    Some(c) if !c.is_control() => format!("`\\{c}`"),
                    Some(c) => format!("(a backslash followed by {})", describe_char(c)),
                    None => String::new(),
                };
                return Err(self.error(
                    i,
                    format!(
                        "invalid escape {shown} in a string: write a backslash as `\\\\`; the \
                         valid escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX"
                    ),
                ));
            }
        };
        out.push(c);
        Ok(i + 2)
    }

    /// Reads the 4 hex digits of the `\u` escape whose backslash is at `i`.
    fn hex4(&mut self, i: usize, open: Pos) -> Result<u32, SyntaxError> {
        let mut unit = 0;
        for k in 0..4 {
            let Some(&b) = self.bytes.get(i + 2 + k) else {
                return Err(self.unterminated(open));
            };
            match char::from(b).to_digit(16) {
                Some(d) => unit = unit * 16 + d,
                None => {
                    let text = &self.src[i..i + 2 + k];
                    return Err(self.error(
                        i,
                        format!(
                            "invalid unicode escape `{text}` in a string: `\\u` must be followed \
                             by exactly 4 hex digits"
                        ),
                    ));
                }
            }
        }
        Ok(unit)
    }

    /// Parses the number at the cursor. The whole run of number-like characters is taken and
    /// checked against the JSON grammar, so `01`, `1.`, `0x1F` or `-Infinity` are reported as one
    /// invalid number rather than as a confusing error about the character after a valid prefix.
    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        let end = self.scan(start, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_')
        });
        let text = &self.src[start..end];
        if !is_json_number(text.as_bytes()) {
            return Err(self.error(start, format!("invalid number `{}`", clip(text))));
        }
        self.i = end;
        Ok(Value::Number(text.to_owned()))
    }

    /// Parses `true`, `false` or `null` (the cursor is on an ASCII letter or `_`).
    fn literal(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        let end = self.scan(start, |b| b.is_ascii_alphanumeric() || b == b'_');
        let word = &self.src[start..end];
        let value = match word {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => {
                let lower = ["true", "false", "null"]
                    .into_iter()
                    .find(|l| l.eq_ignore_ascii_case(word));
                let message = match lower {
                    Some(l) => format!(
                        "invalid literal `{word}`: JSON literals are lowercase, write `{l}`"
                    ),
                    None => format!(
                        "unexpected `{}` where a value was expected: strings must be in double \
                         quotes, and the only literals are `true`, `false` and `null`",
                        clip(word)
                    ),
                };
                return Err(self.error(start, message));
            }
        };
        self.i = end;
        Ok(value)
    }
}

/// The offset of the first byte at or after `i` that is `"`, `\\` or a control character (or the
/// end of `bytes`). Eight bytes at a time while none of them is one of those.
fn skip_plain(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // Per byte: high bit set where the byte is < 0x20, resp. zero (classic "has less" trick).
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        if (control | quote | backslash) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if STOPS_STRING[usize::from(b)] {
            break;
        }
        i += 1;
    }
    i
}

/// The bytes that end a run of plain characters in a string: `"`, `\\` and control characters.
static STOPS_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Whether `t` is exactly a JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let digits = |k: &mut usize| {
        let from = *k;
        while t.get(*k).is_some_and(u8::is_ascii_digit) {
            *k += 1;
        }
        *k > from
    };
    let mut k = 0;
    if t.first() == Some(&b'-') {
        k += 1;
    }
    match t.get(k) {
        Some(b'0') => k += 1,
        Some(b'1'..=b'9') => {
            digits(&mut k);
        }
        _ => return false,
    }
    if t.get(k) == Some(&b'.') {
        k += 1;
        if !digits(&mut k) {
            return false;
        }
    }
    if matches!(t.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(t.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if !digits(&mut k) {
            return false;
        }
    }
    k == t.len()
}

/// Shortens an ASCII token for a message.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Names a character for a message: `` `x` `` when visible, its code point otherwise.
fn describe_char(c: char) -> String {
    let invisible = c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
        );
    if invisible {
        format!("character U+{:04X}", u32::from(c))
    } else if c == '`' {
        "backtick character".into()
    } else {
        format!("`{c}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Node {
        match parse(text) {
            Ok(node) => node,
            Err(e) => panic!("{text:?} should parse, got {e}"),
        }
    }

    fn err(text: &str) -> SyntaxError {
        match parse(text) {
            Ok(node) => panic!("{text:?} should fail, got {node:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the exact message and position of the error for `text`.
    #[track_caller]
    fn fails(text: &str, line: u32, col: u32, message: &str) {
        let e = err(text);
        let text: String = text.chars().take(80).collect();
        assert_eq!(e.message, message, "message for {text:?}");
        assert_eq!(
            e.pos,
            Pos { line, col },
            "position for {text:?} ({message})"
        );
    }

    fn p(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    fn num(s: &str) -> Value {
        Value::Number(s.into())
    }

    fn string(s: &str) -> Value {
        Value::String(s.into())
    }

    fn items(node: &Node) -> &[Node] {
        match &node.value {
            Value::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn members(node: &Node) -> &[Member] {
        match &node.value {
            Value::Object(members) => members,
            other => panic!("not an object: {other:?}"),
        }
    }

    // ----- values -------------------------------------------------------------------------

    #[test]
    fn scalars() {
        assert_eq!(ok("null").value, Value::Null);
        assert_eq!(ok("true").value, Value::Bool(true));
        assert_eq!(ok("false").value, Value::Bool(false));
        assert_eq!(ok("\"hi\"").value, string("hi"));
        assert_eq!(ok("\"\"").value, string(""));
        assert_eq!(ok("2048").value, num("2048"));
        assert_eq!(ok("  \t\r\n null \n").pos, p(2, 2));
    }

    #[test]
    fn numbers_keep_their_text() {
        for n in [
            "0",
            "-0",
            "7",
            "2048",
            "-12",
            "0.5",
            "-0.25",
            "1e3",
            "1E3",
            "1e+3",
            "1e-3",
            "1.5E-10",
            "0e0",
            "-0.0e-0",
            "123456789012345678901234567890",
            "1e400",
            "1.000",
        ] {
            assert_eq!(ok(n).value, num(n), "{n}");
            assert_eq!(
                ok(&format!("[{n}]")).value,
                Value::Array(vec![Node {
                    pos: p(1, 2),
                    value: num(n)
                }])
            );
        }
    }

    #[test]
    fn invalid_numbers() {
        for n in [
            "01",
            "-01",
            "00",
            "-",
            "+1",
            ".5",
            "1.",
            "1.e3",
            "1e",
            "1e+",
            "1E-",
            "0x1F",
            "1_000",
            "-Infinity",
            "1.2.3",
            "1e2e3",
            "--1",
            "1-2",
            "1a",
            "- 1",
        ] {
            let token = n.split(' ').next().unwrap_or(n);
            fails(n, 1, 1, &format!("invalid number `{token}`"));
        }
        fails("[1, 01]", 1, 5, "invalid number `01`");
        fails("{\"a\": -}", 1, 7, "invalid number `-`");
        let long = format!("0{}", "1".repeat(100));
        assert_eq!(
            err(&long).message,
            format!("invalid number `{}…`", &long[..40])
        );
    }

    #[test]
    fn arrays_and_objects() {
        let doc = ok(r#"{"a": [1, "x", null, true, false, {}, []], "b": {"c": {"d": -1.5}}}"#);
        let m = members(&doc);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].key, "a");
        let a = items(&m[0].value);
        let values: Vec<&Value> = a.iter().map(|n| &n.value).collect();
        assert_eq!(
            values,
            [
                &num("1"),
                &string("x"),
                &Value::Null,
                &Value::Bool(true),
                &Value::Bool(false),
                &Value::Object(vec![]),
                &Value::Array(vec![])
            ]
        );
        let d = &members(&members(&m[1].value)[0].value)[0];
        assert_eq!(d.key, "d");
        assert_eq!(d.value.value, num("-1.5"));
        assert_eq!(ok("[]").value, Value::Array(vec![]));
        assert_eq!(ok("{ }").value, Value::Object(vec![]));
        assert_eq!(
            ok("[ [ ] ]").value,
            Value::Array(vec![Node {
                pos: p(1, 3),
                value: Value::Array(vec![])
            }])
        );
    }

    #[test]
    fn members_keep_source_order_and_duplicates() {
        let doc = ok(r#"{"b": 1, "a": 2, "b": 3, "b": 4}"#);
        let got: Vec<(&str, &Value)> = members(&doc)
            .iter()
            .map(|m| (m.key.as_str(), &m.value.value))
            .collect();
        assert_eq!(
            got,
            [
                ("b", &num("1")),
                ("a", &num("2")),
                ("b", &num("3")),
                ("b", &num("4"))
            ]
        );
        let keys: Vec<Pos> = members(&doc).iter().map(|m| m.key_pos).collect();
        assert_eq!(keys, [p(1, 2), p(1, 10), p(1, 18), p(1, 26)]);
    }

    // ----- positions ----------------------------------------------------------------------

    #[test]
    fn positions_of_nested_values_and_keys() {
        let text = "{\n  \"name\": \"x\",\n  \"list\": [1,\n    {\"k\": true}],\n  \"n\":null\n}";
        let doc = ok(text);
        assert_eq!(doc.pos, p(1, 1));
        let m = members(&doc);
        assert_eq!((m[0].key_pos, m[0].value.pos), (p(2, 3), p(2, 11)));
        assert_eq!((m[1].key_pos, m[1].value.pos), (p(3, 3), p(3, 11)));
        let list = items(&m[1].value);
        assert_eq!(list[0].pos, p(3, 12));
        assert_eq!(list[1].pos, p(4, 5));
        let inner = &members(&list[1])[0];
        assert_eq!((inner.key_pos, inner.value.pos), (p(4, 6), p(4, 11)));
        assert_eq!((m[2].key_pos, m[2].value.pos), (p(5, 3), p(5, 7)));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // é is 2 bytes, 日本 6 bytes, 😀 4 bytes (and 2 UTF-16 units): each is one column.
        let doc = ok("{\"é\": \"日本\", \"😀\": [\"😀😀\", 1]}");
        let m = members(&doc);
        assert_eq!((m[0].key_pos, m[0].value.pos), (p(1, 2), p(1, 7)));
        assert_eq!((m[1].key_pos, m[1].value.pos), (p(1, 13), p(1, 18)));
        let list = items(&m[1].value);
        assert_eq!((list[0].pos, list[1].pos), (p(1, 19), p(1, 25)));
        // Escaped characters count as the characters of their source text.
        let doc = ok(r#"["\u00e9\n", "x"]"#);
        assert_eq!(items(&doc)[1].pos, p(1, 14));
    }

    #[test]
    fn crlf_is_one_line_break() {
        let doc = ok("{\r\n  \"a\": 1,\r\n\r\n  \"b\": [\r\n    true\r\n  ]\r\n}\r\n");
        let m = members(&doc);
        assert_eq!((m[0].key_pos, m[0].value.pos), (p(2, 3), p(2, 8)));
        assert_eq!((m[1].key_pos, m[1].value.pos), (p(4, 3), p(4, 8)));
        assert_eq!(items(&m[1].value)[0].pos, p(5, 5));
        fails(
            "[\r\n1,\r\n]",
            2,
            2,
            "trailing comma before `]`: JSON does not allow it",
        );
        fails(
            "[\r\n",
            2,
            1,
            "unexpected end of file: an array opened at 1:1 is not closed",
        );
        // A lone `\r` is not a line break (as in `str::lines`): it is an ordinary column.
        assert_eq!(items(&ok("[\r1]"))[0].pos, p(1, 3));
    }

    #[test]
    fn positions_far_into_long_lines_and_many_lines() {
        let mut text = String::from("[");
        for k in 0..1000 {
            text.push_str(&format!("\"é{k}\","));
        }
        text.push_str("\n\n  0]");
        let doc = ok(&text);
        let list = items(&doc);
        assert_eq!(list[0].pos, p(1, 2));
        assert_eq!(list[999].pos.line, 1);
        assert_eq!(list[1000].pos, p(3, 3));
        // The column of element k is 2 + the characters before it.
        let before: usize = (0..999).map(|k| format!("\"é{k}\",").chars().count()).sum();
        assert_eq!(list[999].pos.col as usize, 2 + before);
        // An error position computed after later positions (backwards) is still right.
        let e = err("[\"abc\n\"]");
        assert_eq!(e.pos, p(1, 6));
    }

    // ----- strings ------------------------------------------------------------------------

    #[test]
    fn escapes() {
        let doc =
            ok(r#""\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\u20ac\uD83D\uDE00\ud83d\ude00-\u0000""#);
        assert_eq!(doc.value, string("\"\\/\u{8}\u{C}\n\r\tAé€€😀😀-\u{0}"));
        let doc = ok(r#"{"k\ney\u0021": "v"}"#);
        assert_eq!(members(&doc)[0].key, "k\ney!");
        // Non-ASCII text around escapes is copied intact.
        assert_eq!(ok("\"日\\n本😀\\t\"").value, string("日\n本😀\t"));
        assert_eq!(ok("\"\\uDBFF\\uDFFF\"").value, string("\u{10FFFF}"));
        assert_eq!(ok("\"\\uFFFF\"").value, string("\u{FFFF}"));
    }

    #[test]
    fn lone_surrogates_are_errors() {
        let high = "lone surrogate `\\uD800` in a string: a high surrogate must be followed by a \
                    low surrogate escape (`\\uDC00` to `\\uDFFF`)";
        fails(r#""\uD800""#, 1, 2, high);
        fails(r#""ab\uD800x""#, 1, 4, high);
        fails(r#""\uD800\n""#, 1, 2, high);
        fails(r#""\uD800\u0041""#, 1, 2, high);
        fails(r#""\uD800\uD800""#, 1, 2, high);
        fails(
            r#"["é", "\uDC00"]"#,
            1,
            8,
            "lone surrogate `\\uDC00` in a string: a low surrogate must come right after a high \
             surrogate escape (`\\uD800` to `\\uDBFF`)",
        );
        fails(
            r#""\ud83d\ude00\ude00""#,
            1,
            14,
            "lone surrogate `\\ude00` in a string: a low surrogate must come right after a high \
             surrogate escape (`\\uD800` to `\\uDBFF`)",
        );
    }

    #[test]
    fn invalid_escapes() {
        let tail = " in a string: write a backslash as `\\\\`; the valid escapes are \\\" \\\\ \\/ \
                    \\b \\f \\n \\r \\t and \\uXXXX";
        fails(
            r#""C:\Users""#,
            1,
            4,
            &format!("invalid escape `\\U`{tail}"),
        );
        fails(r#"["\'"]"#, 1, 3, &format!("invalid escape `\\'`{tail}"));
        fails("\"\\é\"", 1, 2, &format!("invalid escape `\\é`{tail}"));
        fails(
            "\"\\\n\"",
            1,
            2,
            &format!("invalid escape (a backslash followed by character U+000A){tail}"),
        );
        fails(
            r#""\u12G4""#,
            1,
            2,
            "invalid unicode escape `\\u12` in a string: `\\u` must be followed by exactly 4 hex digits",
        );
        fails(
            r#""\u""#,
            1,
            2,
            "invalid unicode escape `\\u` in a string: `\\u` must be followed by exactly 4 hex digits",
        );
        fails(
            r#""\uD83D\uDZ00""#,
            1,
            8,
            "invalid unicode escape `\\uD` in a string: `\\u` must be followed by exactly 4 hex digits",
        );
        fails(
            "\"\\u00é9\"",
            1,
            2,
            "invalid unicode escape `\\u00` in a string: `\\u` must be followed by exactly 4 hex digits",
        );
    }

    #[test]
    fn control_characters_in_strings() {
        fails(
            "{\"a\": \"line\nnext\"}",
            1,
            12,
            "unterminated string (started at 1:7): close it with `\"` before the end of the line, or write the line break as \\n",
        );
        fails(
            "\"a\tb\"",
            1,
            3,
            "control character U+0009 inside a string: escape it as \\t",
        );
        fails(
            "\"\r\"",
            1,
            2,
            "control character U+000D inside a string: escape it as \\r",
        );
        fails(
            "\"\u{8}\"",
            1,
            2,
            "control character U+0008 inside a string: escape it as \\b",
        );
        fails(
            "\"\u{C}\"",
            1,
            2,
            "control character U+000C inside a string: escape it as \\f",
        );
        fails(
            "\"é\u{0}\"",
            1,
            3,
            "control character U+0000 inside a string: escape it as \\u0000",
        );
        fails(
            "\"\u{1F}\"",
            1,
            2,
            "control character U+001F inside a string: escape it as \\u001F",
        );
        // DEL and C1 controls are allowed raw by JSON.
        assert_eq!(ok("\"\u{7F}\u{85}\"").value, string("\u{7F}\u{85}"));
    }

    #[test]
    fn unterminated_strings() {
        fails(
            "{\n  \"a\": \"abc",
            2,
            12,
            "unterminated string (started at 2:8)",
        );
        fails("{\"ké", 1, 5, "unterminated string (started at 1:2)");
        fails("[1,\n \"", 2, 3, "unterminated string (started at 2:2)");
        fails("\"abc\\", 1, 6, "unterminated string (started at 1:1)");
        fails("\"abc\\u12", 1, 9, "unterminated string (started at 1:1)");
        fails(
            "\"\\uD83D\\uDE",
            1,
            12,
            "unterminated string (started at 1:1)",
        );
    }

    // ----- structural errors --------------------------------------------------------------

    #[test]
    fn missing_comma() {
        fails(
            "{\n  \"a\": 1\n  \"b\": 2\n}",
            3,
            3,
            "expected `,` or `}` after an object member, found `\"`",
        );
        fails(
            "[1 2]",
            1,
            4,
            "expected `,` or `]` after an array element, found `2`",
        );
        fails(
            "[\"a\" true]",
            1,
            6,
            "expected `,` or `]` after an array element, found `true`",
        );
        fails(
            "{\"a\": 1 x}",
            1,
            9,
            "expected `,` or `}` after an object member, found `x`",
        );
    }

    #[test]
    fn trailing_commas() {
        fails(
            "[1, 2,]",
            1,
            6,
            "trailing comma before `]`: JSON does not allow it",
        );
        fails(
            "[1,\n  ]",
            1,
            3,
            "trailing comma before `]`: JSON does not allow it",
        );
        fails(
            "{\"a\": 1,\n}",
            1,
            8,
            "trailing comma before `}`: JSON does not allow it",
        );
        fails("[,]", 1, 2, "expected a JSON value, found `,`");
        fails("[1,,2]", 1, 4, "expected a JSON value, found `,`");
        fails("{,}", 1, 2, "expected a string key or `}`, found `,`");
    }

    #[test]
    fn unexpected_end_of_file() {
        fails(
            "",
            1,
            1,
            "unexpected end of file: the document is empty (expected a JSON value)",
        );
        fails(
            " \n\t",
            2,
            2,
            "unexpected end of file: the document is empty (expected a JSON value)",
        );
        fails(
            "{",
            1,
            2,
            "unexpected end of file: an object opened at 1:1 is not closed",
        );
        fails(
            "{\"a\"",
            1,
            5,
            "unexpected end of file: an object opened at 1:1 is not closed",
        );
        fails(
            "{\"a\":",
            1,
            6,
            "unexpected end of file: an object opened at 1:1 is not closed",
        );
        fails(
            "{\"a\": 1",
            1,
            8,
            "unexpected end of file: an object opened at 1:1 is not closed",
        );
        fails(
            "{\"a\": 1,",
            1,
            9,
            "unexpected end of file: an object opened at 1:1 is not closed",
        );
        fails(
            "[",
            1,
            2,
            "unexpected end of file: an array opened at 1:1 is not closed",
        );
        fails(
            "[1",
            1,
            3,
            "unexpected end of file: an array opened at 1:1 is not closed",
        );
        fails(
            "[1, ",
            1,
            5,
            "unexpected end of file: an array opened at 1:1 is not closed",
        );
        // The innermost open container is named.
        fails(
            "{\"a\": [\n  {\"b\": [1, 2]},\n  {\"é\": 3\n",
            4,
            1,
            "unexpected end of file: an object opened at 3:3 is not closed",
        );
        fails(
            "[[[]]",
            1,
            6,
            "unexpected end of file: an array opened at 1:1 is not closed",
        );
        fails(
            "tru",
            1,
            1,
            "unexpected `tru` where a value was expected: strings must be in double quotes, and the only literals are `true`, `false` and `null`",
        );
    }

    #[test]
    fn keys_and_colons() {
        let hint = ": object keys must be strings in double quotes (`\"`)";
        fails(
            "{a: 1}",
            1,
            2,
            &format!("expected a string key or `}}`, found `a`{hint}"),
        );
        fails(
            "{'a': 1}",
            1,
            2,
            &format!("expected a string key or `}}`, found `'`{hint}"),
        );
        fails("{1: 1}", 1, 2, "expected a string key or `}`, found `1`");
        fails(
            "{\"a\": 1, b: 2}",
            1,
            10,
            &format!("expected a string key after `,`, found `b`{hint}"),
        );
        fails(
            "{\"a\" 1}",
            1,
            6,
            "expected `:` after the object key, found `1`",
        );
        fails(
            "{\"a\" = 1}",
            1,
            6,
            "expected `:` after the object key, found `=`",
        );
        fails("{\"a\": }", 1, 7, "expected a JSON value, found `}`");
    }

    #[test]
    fn mismatched_closers() {
        fails(
            "[1}",
            1,
            3,
            "expected `,` or `]` after an array element, found `}` (the array opened at 1:1 is still open)",
        );
        fails(
            "{\"a\": [1]]",
            1,
            10,
            "expected `,` or `}` after an object member, found `]` (the object opened at 1:1 is still open)",
        );
        fails("]", 1, 1, "expected a JSON value, found `]`");
        fails("}", 1, 1, "expected a JSON value, found `}`");
    }

    #[test]
    fn literals() {
        fails(
            "True",
            1,
            1,
            "invalid literal `True`: JSON literals are lowercase, write `true`",
        );
        fails(
            "[NULL]",
            1,
            2,
            "invalid literal `NULL`: JSON literals are lowercase, write `null`",
        );
        fails(
            "FALSE",
            1,
            1,
            "invalid literal `FALSE`: JSON literals are lowercase, write `false`",
        );
        let other = "where a value was expected: strings must be in double quotes, and the only \
                     literals are `true`, `false` and `null`";
        fails("{\"a\": nul}", 1, 7, &format!("unexpected `nul` {other}"));
        fails(
            "[undefined]",
            1,
            2,
            &format!("unexpected `undefined` {other}"),
        );
        fails("truex", 1, 1, &format!("unexpected `truex` {other}"));
        fails("[NaN]", 1, 2, &format!("unexpected `NaN` {other}"));
        fails(
            "['x']",
            1,
            2,
            "expected a JSON value, found `'`: strings must be in double quotes (`\"`)",
        );
    }

    #[test]
    fn comments() {
        let m = "comments are not allowed in JSON";
        fails("// hi\n{}", 1, 1, m);
        fails("{\n  // hi\n  \"a\": 1}", 2, 3, m);
        fails("{\"a\": 1 /* x */}", 1, 9, m);
        fails("{\"a\" /* x */: 1}", 1, 6, m);
        fails("{\"a\": /* x */ 1}", 1, 7, m);
        fails("[1, // x\n 2]", 1, 5, m);
        fails("{} // trailing", 1, 4, m);
        fails("{/**/}", 1, 2, m);
        fails("[/]", 1, 2, "expected a JSON value, found `/`");
    }

    #[test]
    fn content_after_the_document() {
        fails(
            "{} x",
            1,
            4,
            "unexpected `x` after the end of the JSON document",
        );
        fails(
            "{}}",
            1,
            3,
            "unexpected `}` after the end of the JSON document",
        );
        fails(
            "1 2",
            1,
            3,
            "unexpected `2` after the end of the JSON document",
        );
        fails(
            "[]\n\n[]",
            3,
            1,
            "unexpected `[` after the end of the JSON document",
        );
        fails(
            "\"a\"\"b\"",
            1,
            4,
            "unexpected `\"` after the end of the JSON document",
        );
        fails(
            "null nothing",
            1,
            6,
            "unexpected `nothing` after the end of the JSON document",
        );
        fails(
            "{}\u{A0}",
            1,
            3,
            "unexpected character U+00A0 after the end of the JSON document",
        );
        fails(
            "{}\u{0}",
            1,
            3,
            "unexpected character U+0000 after the end of the JSON document",
        );
        fails(
            "{}`",
            1,
            3,
            "unexpected backtick character after the end of the JSON document",
        );
    }

    #[test]
    fn odd_characters() {
        fails(
            "[\u{A0}1]",
            1,
            2,
            "expected a JSON value, found character U+00A0",
        );
        fails(
            "[1,\u{200B}2]",
            1,
            4,
            "expected a JSON value, found character U+200B",
        );
        fails("[é]", 1, 2, "expected a JSON value, found `é`");
        fails("[😀]", 1, 2, "expected a JSON value, found `😀`");
        fails(
            "\u{B}",
            1,
            1,
            "expected a JSON value, found character U+000B",
        );
        fails(
            "\u{C}1",
            1,
            1,
            "expected a JSON value, found character U+000C",
        );
    }

    #[test]
    fn byte_order_mark() {
        let doc = ok("\u{FEFF}{\"a\": 1}");
        assert_eq!(doc.pos, p(1, 1));
        assert_eq!(members(&doc)[0].key_pos, p(1, 2));
        assert_eq!(ok("\u{FEFF} \n 1").pos, p(2, 2));
        fails(
            "\u{FEFF}",
            1,
            1,
            "unexpected end of file: the document is empty (expected a JSON value)",
        );
        // Only one, and only at the very start.
        fails(
            "\u{FEFF}\u{FEFF}1",
            1,
            1,
            "expected a JSON value, found character U+FEFF",
        );
        fails(
            " \u{FEFF}1",
            1,
            2,
            "expected a JSON value, found character U+FEFF",
        );
        fails(
            "[\u{FEFF}]",
            1,
            2,
            "expected a JSON value, found character U+FEFF",
        );
        // Inside a string it is just a character.
        assert_eq!(ok("\"\u{FEFF}\"").value, string("\u{FEFF}"));
    }

    #[test]
    fn display_names_the_position() {
        assert_eq!(
            err("[1,]").to_string(),
            "1:3: trailing comma before `]`: JSON does not allow it"
        );
    }

    // ----- nesting ------------------------------------------------------------------------

    #[test]
    fn nesting_up_to_the_limit() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let mut node = &ok(&deep);
        for level in 1..MAX_DEPTH {
            node = &items(node)[0];
            assert_eq!(node.pos, p(1, level as u32 + 1));
        }
        assert!(items(node).is_empty());
        let deep = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        ok(&deep);
    }

    #[test]
    fn nesting_beyond_the_limit() {
        let message = "nested more than 128 levels deep";
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        fails(&deep, 1, 129, message);
        fails(
            &format!("{}1", "{\"a\":".repeat(MAX_DEPTH + 1)),
            1,
            5 * 128 + 1,
            message,
        );
        fails(&"[".repeat(100_000), 1, 129, message);
        fails(&"{\"a\":".repeat(100_000), 1, 5 * 128 + 1, message);
        fails(&"[{\"\":".repeat(100_000), 1, 5 * 64 + 1, message);
        fails(&"[\n".repeat(100_000), 129, 1, message);
    }

    // ----- random inputs ------------------------------------------------------------------

    /// A tiny deterministic xorshift generator.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const STRING_PIECES: &[&str] = &[
        "a",
        "key",
        "é",
        "日本",
        "😀",
        " ",
        "'",
        "/",
        "\\n",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\r",
        "\\t",
        "\\u0041",
        "\\u00e9",
        "\\uD83D\\uDE00",
        "\\u20ac",
        "\\u0000",
        "{{user `x`}}",
    ];
    const KEYS: &[&str] = &["\"a\"", "\"b\"", "\"é\"", "\"\"", "\"k\\u0041\"", "\"😀\""];
    const SPACE: &[&str] = &["", "", "", " ", "\n", "\r\n", "\t", "  "];

    fn gen_number(rng: &mut Rng, out: &mut String) {
        if rng.below(3) == 0 {
            out.push('-');
        }
        if rng.below(4) == 0 {
            out.push('0');
        } else {
            out.push(char::from(b'1' + rng.below(9) as u8));
            for _ in 0..rng.below(5) {
                out.push(char::from(b'0' + rng.below(10) as u8));
            }
        }
        if rng.below(3) == 0 {
            out.push('.');
            for _ in 0..=rng.below(3) {
                out.push(char::from(b'0' + rng.below(10) as u8));
            }
        }
        if rng.below(4) == 0 {
            out.push_str(rng.pick(&["e", "E", "e+", "e-", "E-"]));
            for _ in 0..=rng.below(2) {
                out.push(char::from(b'0' + rng.below(10) as u8));
            }
        }
    }

    fn gen_value(rng: &mut Rng, depth: usize, out: &mut String) {
        let kinds = if depth >= 5 { 5 } else { 8 };
        match rng.below(kinds) {
            0 => out.push_str("null"),
            1 => out.push_str(rng.pick(&["true", "false"])),
            2 => gen_number(rng, out),
            3 | 4 => {
                out.push('"');
                for _ in 0..rng.below(5) {
                    out.push_str(rng.pick(STRING_PIECES));
                }
                out.push('"');
            }
            5 => {
                out.push('[');
                for k in 0..rng.below(4) {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(rng.pick(SPACE));
                    gen_value(rng, depth + 1, out);
                    out.push_str(rng.pick(SPACE));
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for k in 0..rng.below(4) {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(rng.pick(SPACE));
                    out.push_str(rng.pick(KEYS));
                    out.push_str(rng.pick(SPACE));
                    out.push(':');
                    out.push_str(rng.pick(SPACE));
                    gen_value(rng, depth + 1, out);
                    out.push_str(rng.pick(SPACE));
                }
                out.push('}');
            }
        }
    }

    fn gen_document(rng: &mut Rng) -> String {
        let mut out = String::new();
        out.push_str(rng.pick(SPACE));
        gen_value(rng, 0, &mut out);
        out.push_str(rng.pick(SPACE));
        out
    }

    const GARBAGE: &[&str] = &[
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\uD800", "\\uDC00", "'", "/", "//",
        "/*", "*/", "0", "01", "-", "+", ".", "e", "E", "1", "9", "true", "tru", "null", "nul",
        "false", "\u{0}", "\n", "\r", "\r\n", "\t", " ", "\u{FEFF}", "\u{A0}", "é", "😀", "x",
        "\"a\"", "1e5", "1e999", "\\n", "\u{1F}", "\u{7F}",
    ];

    /// Applies one random edit at a character boundary.
    fn mutate(rng: &mut Rng, text: &mut Vec<char>) {
        let len = text.len();
        let at = rng.below(len + 1);
        match rng.below(5) {
            0 if at < len => {
                text.remove(at);
            }
            1 if at < len => {
                let piece: Vec<char> = rng.pick(GARBAGE).chars().collect();
                text.splice(at..at + 1, piece);
            }
            2 if at < len => {
                let end = (at + 1 + rng.below(8)).min(len);
                let copy: Vec<char> = text[at..end].to_vec();
                let to = rng.below(len + 1);
                text.splice(to..to, copy);
            }
            3 => text.truncate(at),
            _ => {
                let piece: Vec<char> = rng.pick(GARBAGE).chars().collect();
                text.splice(at..at, piece);
            }
        }
    }

    /// Our tree, as serde_json would have built it (later duplicates replace earlier ones).
    fn to_serde(node: &Node) -> serde_json::Value {
        match &node.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::from_str(n).expect("serde_json accepts our number"),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(to_serde).collect()),
            Value::Object(members) => {
                let mut map = serde_json::Map::new();
                for m in members {
                    map.insert(m.key.clone(), to_serde(&m.value));
                }
                serde_json::Value::Object(map)
            }
        }
    }

    /// The character at `pos`, lines split on `\n` as `parse` counts them.
    fn char_at(text: &str, pos: Pos) -> Option<char> {
        let line = text.split('\n').nth(pos.line.checked_sub(1)? as usize)?;
        line.chars().nth(pos.col.checked_sub(1)? as usize)
    }

    /// Every node and key position points at the first character of what it names.
    fn check_positions(text: &str, node: &Node) {
        let first = char_at(text, node.pos);
        let expected = match &node.value {
            Value::Null => Some('n'),
            Value::Bool(true) => Some('t'),
            Value::Bool(false) => Some('f'),
            Value::Number(n) => n.chars().next(),
            Value::String(_) => Some('"'),
            Value::Array(_) => Some('['),
            Value::Object(_) => Some('{'),
        };
        assert_eq!(first, expected, "position {:?} in {text:?}", node.pos);
        match &node.value {
            Value::Array(items) => items.iter().for_each(|n| check_positions(text, n)),
            Value::Object(members) => {
                for m in members {
                    assert_eq!(
                        char_at(text, m.key_pos),
                        Some('"'),
                        "key {:?} in {text:?}",
                        m.key
                    );
                    check_positions(text, &m.value);
                }
            }
            _ => {}
        }
    }

    /// Parses `text`, checks it agrees with serde_json, and checks positions.
    fn check_against_serde(text: &str) -> bool {
        let ours = parse(text);
        // serde_json does not skip a byte order mark.
        let plain = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let theirs = serde_json::from_str::<serde_json::Value>(plain);
        match (&ours, &theirs) {
            (Ok(node), Ok(value)) => {
                assert_eq!(&to_serde(node), value, "{text:?}");
                check_positions(plain, node);
            }
            (Err(e), Err(_)) => {
                // The position is inside the text or just after its last character.
                let lines: Vec<&str> = plain.split('\n').collect();
                let line = lines
                    .get(e.pos.line as usize - 1)
                    .unwrap_or_else(|| panic!("{e} for {text:?}"));
                assert!(
                    e.pos.col >= 1 && e.pos.col as usize <= line.chars().count() + 1,
                    "{e} for {text:?}"
                );
                assert!(!e.message.is_empty());
            }
            // serde_json rejects numbers that overflow an f64; we keep their text.
            (Ok(_), Err(e)) if e.to_string().contains("number out of range") => {}
            _ => panic!("{text:?}: ours {ours:?}, serde_json {theirs:?}"),
        }
        ours.is_ok()
    }

    #[test]
    fn random_valid_documents_match_serde_json() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..500 {
            let text = gen_document(&mut rng);
            assert!(check_against_serde(&text), "{text:?} should parse");
        }
    }

    #[test]
    fn random_mutations_agree_with_serde_json() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..3000 {
            let mut text: Vec<char> = gen_document(&mut rng).chars().collect();
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &mut text);
            }
            let text: String = text.into_iter().collect();
            if check_against_serde(&text) {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        // Both outcomes are well represented.
        assert!(
            accepted > 300 && rejected > 1000,
            "{accepted} accepted, {rejected} rejected"
        );
    }

    #[test]
    fn random_garbage_agrees_with_serde_json() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..=rng.below(16) {
                text.push_str(rng.pick(GARBAGE));
            }
            check_against_serde(&text);
        }
        // Random bytes, made valid UTF-8.
        for _ in 0..500 {
            let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
            check_against_serde(&String::from_utf8_lossy(&bytes));
        }
    }

    /// `cargo test --release --lib recipe::json -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run in release mode"]
    fn one_megabyte_is_fast() {
        let mut rng = Rng(42);
        let mut text = String::from("[");
        while text.len() < 1 << 20 {
            if text.len() > 1 {
                text.push_str(",\n");
            }
            gen_value(&mut rng, 0, &mut text);
        }
        text.push(']');
        let start = std::time::Instant::now();
        let runs = 20;
        for _ in 0..runs {
            std::hint::black_box(parse(std::hint::black_box(&text)).expect("valid"));
        }
        let ours = start.elapsed() / runs;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            std::hint::black_box(serde_json::from_str::<serde_json::Value>(&text).expect("valid"));
        }
        let theirs = start.elapsed() / runs;
        // One line, 1 MB long: column counting must stay linear.
        let one_line = text.replace('\n', " ");
        let start = std::time::Instant::now();
        std::hint::black_box(parse(&one_line).expect("valid"));
        let single = start.elapsed();
        println!(
            "{} bytes: {ours:?} per parse (serde_json: {theirs:?}); on one line: {single:?}",
            text.len()
        );
    }
}
