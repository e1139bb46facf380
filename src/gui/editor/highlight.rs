//! JSON syntax highlighting for the raw view: a forgiving tokenizer (it never fails, so text
//! that is being typed still gets colours) and the layout job egui's text field draws.

use std::ops::Range;

use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId};

use super::super::theme::SyntaxColours;

/// What a stretch of JSON text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An object key (a string followed by `:`).
    Key,
    /// A string value (an unterminated one runs to the end of its line).
    String,
    /// A number.
    Number,
    /// `true`, `false` or `null`.
    Literal,
    /// `{ } [ ] : ,`
    Punct,
    /// Spaces, tabs, line breaks (and a byte order mark).
    Space,
    /// Anything JSON does not allow there (a stray word, a comment, a lone character).
    Invalid,
}

/// One token: its kind and its byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it is, in bytes.
    pub range: Range<usize>,
}

/// Splits `text` into tokens covering every byte, in order. Never fails: broken JSON gives
/// `Invalid` tokens for what does not fit, and strings left open end at their line's end.
pub fn tokenize(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens: Vec<Token> = Vec::with_capacity(text.len() / 4 + 1);
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                TokenKind::Space
            }
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i = (i + 2).min(bytes.len()),
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\n' => break,
                        _ => i += 1,
                    }
                }
                TokenKind::String
            }
            b'{' | b'}' | b'[' | b']' | b':' | b',' => {
                i += 1;
                TokenKind::Punct
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                TokenKind::Number
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                match &text[start..i] {
                    "true" | "false" | "null" => TokenKind::Literal,
                    _ => TokenKind::Invalid,
                }
            }
            _ => {
                // One character (whole, for multi-byte UTF-8).
                let len = text[i..].chars().next().map_or(1, char::len_utf8);
                i += len;
                if &text[start..i] == "\u{feff}" {
                    TokenKind::Space
                } else {
                    TokenKind::Invalid
                }
            }
        };
        tokens.push(Token {
            kind,
            range: start..i,
        });
    }
    // A string whose next non-space token is `:` is a key.
    let mut next_solid: Option<usize> = None;
    for idx in (0..tokens.len()).rev() {
        let kind = tokens[idx].kind;
        if kind == TokenKind::Space {
            continue;
        }
        if kind == TokenKind::String
            && next_solid.is_some_and(|n| {
                tokens[n].kind == TokenKind::Punct && &text[tokens[n].range.clone()] == ":"
            })
        {
            tokens[idx].kind = TokenKind::Key;
        }
        next_solid = Some(idx);
    }
    tokens
}

/// The colour of a token kind.
pub fn colour(kind: TokenKind, colours: &SyntaxColours, text: Color32) -> Color32 {
    match kind {
        TokenKind::Key => colours.key,
        TokenKind::String => colours.string,
        TokenKind::Number => colours.number,
        TokenKind::Literal => colours.literal,
        TokenKind::Punct => colours.punct,
        TokenKind::Space => text,
        TokenKind::Invalid => colours.invalid,
    }
}

/// The highlighted layout of `text` (no wrapping: recipes are code). Neighbouring tokens of
/// one colour share a section, so whitespace adds none.
pub fn layout_job(text: &str, colours: &SyntaxColours, plain: Color32, font: FontId) -> LayoutJob {
    let mut job = LayoutJob {
        text: text.to_owned(),
        ..LayoutJob::default()
    };
    let mut current: Option<(Color32, Range<usize>)> = None;
    let flush = |job: &mut LayoutJob, section: Option<(Color32, Range<usize>)>| {
        if let Some((color, range)) = section {
            job.sections.push(egui::text::LayoutSection {
                leading_space: 0.0,
                byte_range: egui::text::ByteIndex(range.start)..egui::text::ByteIndex(range.end),
                format: TextFormat::simple(font.clone(), color),
            });
        }
    };
    for token in tokenize(text) {
        let c = if token.kind == TokenKind::Space {
            // Space takes the colour of what it follows: fewer sections.
            current.as_ref().map_or(plain, |(c, _)| *c)
        } else {
            colour(token.kind, colours, plain)
        };
        match &mut current {
            Some((cc, range)) if *cc == c => range.end = token.range.end,
            _ => {
                let done = current.replace((c, token.range.clone()));
                flush(&mut job, done);
            }
        }
    }
    flush(&mut job, current);
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(TokenKind, &str)> {
        tokenize(text)
            .into_iter()
            .filter(|t| t.kind != TokenKind::Space)
            .map(|t| (t.kind, &text[t.range]))
            .collect()
    }

    #[test]
    fn keys_strings_numbers_literals_and_punctuation() {
        use TokenKind::*;
        let text = r#"{"a": "x", "n" : -1.5e3, "b": [true, null, false]}"#;
        assert_eq!(
            kinds(text),
            vec![
                (Punct, "{"),
                (Key, "\"a\""),
                (Punct, ":"),
                (String, "\"x\""),
                (Punct, ","),
                (Key, "\"n\""),
                (Punct, ":"),
                (Number, "-1.5e3"),
                (Punct, ","),
                (Key, "\"b\""),
                (Punct, ":"),
                (Punct, "["),
                (Literal, "true"),
                (Punct, ","),
                (Literal, "null"),
                (Punct, ","),
                (Literal, "false"),
                (Punct, "]"),
                (Punct, "}"),
            ]
        );
    }

    #[test]
    fn tokens_cover_every_byte_in_order() {
        let text = "{\n  \"k\\\"ey\": \"vé\\u00e9\", // no\n  \"open\n}\u{feff}ü";
        let tokens = tokenize(text);
        let mut at = 0;
        for t in &tokens {
            assert_eq!(t.range.start, at);
            assert!(t.range.end > t.range.start);
            at = t.range.end;
        }
        assert_eq!(at, text.len());
    }

    #[test]
    fn escaped_quotes_stay_inside_the_string_and_open_strings_end_at_the_line() {
        use TokenKind::*;
        let text = "{\"k\\\"ey\": \"a\\\\\", \"open\n}";
        assert_eq!(
            kinds(text),
            vec![
                (Punct, "{"),
                (Key, "\"k\\\"ey\""),
                (Punct, ":"),
                (String, "\"a\\\\\""),
                (Punct, ","),
                (String, "\"open"),
                (Punct, "}"),
            ]
        );
    }

    #[test]
    fn words_and_comments_are_invalid() {
        use TokenKind::*;
        assert_eq!(
            kinds("[tru, // c\n nulls]"),
            vec![
                (Punct, "["),
                (Invalid, "tru"),
                (Punct, ","),
                (Invalid, "/"),
                (Invalid, "/"),
                (Invalid, "c"),
                (Invalid, "nulls"),
                (Punct, "]"),
            ]
        );
    }

    #[test]
    fn the_layout_job_has_the_whole_text_in_coloured_sections() {
        let colours = crate::gui::theme::syntax(false);
        let text = "{\"a\": 1}";
        let job = layout_job(text, &colours, Color32::BLACK, FontId::monospace(12.0));
        assert_eq!(job.text, text);
        let covered: usize = job
            .sections
            .iter()
            .map(|s| s.byte_range.end.0 - s.byte_range.start.0)
            .sum();
        assert_eq!(covered, text.len());
        let key = job
            .sections
            .iter()
            .find(|s| &text[s.byte_range.start.0..s.byte_range.end.0] == "\"a\"")
            .expect("the key has its own section");
        assert_eq!(key.format.color, colours.key);
        let number = job
            .sections
            .iter()
            .find(|s| text[s.byte_range.start.0..s.byte_range.end.0].starts_with('1'))
            .unwrap();
        assert_eq!(number.format.color, colours.number);
    }
}
