//! The recipe as text, and edits that change only what they must.
//!
//! The file is the source of truth: an edit from a card replaces just the bytes of the value
//! it changes (or inserts one member after the object's last, with its neighbours'
//! indentation), so key order, `_comment` keys, options kiln does not edit and the file's own
//! formatting stay as they were. The result is checked by parsing it (`serde_json` with
//! `preserve_order`) and comparing it with the same edit applied to the parsed document; if
//! they ever differ, the edited document is written out whole instead (same keys, same order,
//! standard formatting), so an edit can change the layout but never lose data.

use std::fmt;
use std::ops::Range;

use serde_json::Value;

use super::highlight::{Token, TokenKind, tokenize};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A path from the document's root, e.g. `builders[0].iso_url`.
pub type DocPath = Vec<Seg>;

/// A path from keys and indexes, as an array: `doc_path!["builders", 0, "iso_url"]` (tests).
#[cfg(test)]
macro_rules! doc_path {
    ($($seg:expr),* $(,)?) => {
        [$($crate::gui::editor::document::Seg::from($seg)),*]
    };
}
#[cfg(test)]
pub(crate) use doc_path;

impl From<&str> for Seg {
    fn from(key: &str) -> Self {
        Seg::Key(key.to_string())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Self {
        Seg::Index(index)
    }
}

/// Writes a path the way diagnostics do: `builders[0].iso_url`.
pub fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The text is not valid JSON (fix it in the JSON tab first).
    Invalid(String),
    /// The place the edit goes into does not exist or is not an object.
    NoPlace(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Invalid(why) => write!(
                f,
                "the JSON does not parse ({why}); fix it in the JSON tab, then edit the cards"
            ),
            EditError::NoPlace(path) => write!(
                f,
                "`{path}` is not an object in this recipe; add it in the JSON tab"
            ),
        }
    }
}

/// Looks up `path` in `value`.
pub fn get<'a>(value: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.as_object()?.get(k),
        Seg::Index(i) => v.as_array()?.get(*i),
    })
}

fn get_mut<'a>(value: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.as_object_mut()?.get_mut(k),
        Seg::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

/// Parses recipe text as `serde_json` does (a leading byte order mark is skipped, as kiln's
/// own parser does).
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Sets the value at `path` (`Some`) or removes the member at `path` (`None`) and returns the
/// new text. Only the bytes of that value change when the text allows it.
pub fn set(text: &str, path: &[Seg], new: Option<&Value>) -> Result<String, EditError> {
    let mut expected = parse(text).map_err(|e| EditError::Invalid(e.to_string()))?;
    apply(&mut expected, path, new)?;
    if let Some(spliced) = splice(text, path, new)
        && parse(&spliced).is_ok_and(|v| v == expected && same_order(&v, &expected))
    {
        return Ok(spliced);
    }
    // Not expected to happen; writing the whole document keeps every key and its order.
    let mut out =
        serde_json::to_string_pretty(&expected).map_err(|e| EditError::Invalid(e.to_string()))?;
    out.push('\n');
    Ok(out)
}

/// Whether two equal documents also have their object keys in the same order.
fn same_order(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.keys().eq(y.keys()) && x.values().zip(y.values()).all(|(p, q)| same_order(p, q))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_order(p, q))
        }
        _ => true,
    }
}

/// The same edit on a parsed document.
fn apply(doc: &mut Value, path: &[Seg], new: Option<&Value>) -> Result<(), EditError> {
    let Some((last, parent_path)) = path.split_last() else {
        return match new {
            Some(v) => {
                *doc = v.clone();
                Ok(())
            }
            None => Err(EditError::NoPlace(String::new())),
        };
    };
    let no_place = || EditError::NoPlace(display_path(parent_path));
    let parent = get_mut(doc, parent_path).ok_or_else(no_place)?;
    match (last, new) {
        (Seg::Key(k), Some(v)) => {
            let object = parent.as_object_mut().ok_or_else(no_place)?;
            object.insert(k.clone(), v.clone());
        }
        (Seg::Key(k), None) => {
            let object = parent.as_object_mut().ok_or_else(no_place)?;
            object.shift_remove(k);
        }
        (Seg::Index(i), Some(v)) => {
            let item = parent
                .as_array_mut()
                .and_then(|a| a.get_mut(*i))
                .ok_or_else(|| EditError::NoPlace(display_path(path)))?;
            *item = v.clone();
        }
        (Seg::Index(_), None) => return Err(EditError::NoPlace(display_path(path))),
    }
    Ok(())
}

/// A JSON value's byte range and, for objects and arrays, its children's.
#[derive(Debug)]
struct Span {
    range: Range<usize>,
    shape: Shape,
}

#[derive(Debug)]
enum Shape {
    Object(Vec<MemberSpan>),
    Array(Vec<Span>),
    Scalar,
}

#[derive(Debug)]
struct MemberSpan {
    key: String,
    key_range: Range<usize>,
    value: Span,
}

/// Reads the byte ranges of every value of a valid document (`None` for anything else).
fn spans(text: &str) -> Option<Span> {
    let tokens: Vec<_> = tokenize(text)
        .into_iter()
        .filter(|t| t.kind != TokenKind::Space)
        .collect();
    let mut at = 0;
    let root = span_of(text, &tokens, &mut at, 0)?;
    (at == tokens.len()).then_some(root)
}

fn span_of(text: &str, tokens: &[Token], at: &mut usize, depth: usize) -> Option<Span> {
    if depth > 256 {
        return None;
    }
    let token = tokens.get(*at)?;
    *at += 1;
    let src = &text[token.range.clone()];
    match (token.kind, src) {
        (TokenKind::Punct, "{") => {
            let mut members = Vec::new();
            loop {
                let next = tokens.get(*at)?;
                if members.is_empty() && &text[next.range.clone()] == "}" {
                    *at += 1;
                    return Some(Span {
                        range: token.range.start..next.range.end,
                        shape: Shape::Object(members),
                    });
                }
                if next.kind != TokenKind::Key {
                    return None;
                }
                let key: String = serde_json::from_str(&text[next.range.clone()]).ok()?;
                *at += 2; // the key and its `:`
                let value = span_of(text, tokens, at, depth + 1)?;
                members.push(MemberSpan {
                    key,
                    key_range: next.range.clone(),
                    value,
                });
                let sep = tokens.get(*at)?;
                *at += 1;
                match &text[sep.range.clone()] {
                    "," => {}
                    "}" => {
                        return Some(Span {
                            range: token.range.start..sep.range.end,
                            shape: Shape::Object(members),
                        });
                    }
                    _ => return None,
                }
            }
        }
        (TokenKind::Punct, "[") => {
            let mut items = Vec::new();
            loop {
                let next = tokens.get(*at)?;
                if items.is_empty() && &text[next.range.clone()] == "]" {
                    *at += 1;
                    return Some(Span {
                        range: token.range.start..next.range.end,
                        shape: Shape::Array(items),
                    });
                }
                items.push(span_of(text, tokens, at, depth + 1)?);
                let sep = tokens.get(*at)?;
                *at += 1;
                match &text[sep.range.clone()] {
                    "," => {}
                    "]" => {
                        return Some(Span {
                            range: token.range.start..sep.range.end,
                            shape: Shape::Array(items),
                        });
                    }
                    _ => return None,
                }
            }
        }
        (TokenKind::String | TokenKind::Number | TokenKind::Literal, _) => Some(Span {
            range: token.range.clone(),
            shape: Shape::Scalar,
        }),
        _ => None,
    }
}

fn find<'a>(root: &'a Span, path: &[Seg]) -> Option<&'a Span> {
    path.iter()
        .try_fold(root, |span, seg| match (&span.shape, seg) {
            // serde_json keeps the last of duplicate keys; so does this.
            (Shape::Object(members), Seg::Key(k)) => {
                members.iter().rev().find(|m| &m.key == k).map(|m| &m.value)
            }
            (Shape::Array(items), Seg::Index(i)) => items.get(*i),
            _ => None,
        })
}

/// The edit as a text splice, or `None` where the text does not allow one.
fn splice(text: &str, path: &[Seg], new: Option<&Value>) -> Option<String> {
    let root = spans(text)?;
    let (last, parent_path) = path.split_last()?;
    let parent = find(&root, parent_path)?;
    let replace = |range: Range<usize>, with: &str| {
        let mut out = String::with_capacity(text.len() + with.len());
        out.push_str(&text[..range.start]);
        out.push_str(with);
        out.push_str(&text[range.end..]);
        out
    };
    match (&parent.shape, last, new) {
        (Shape::Array(items), Seg::Index(i), Some(v)) => {
            Some(replace(items.get(*i)?.range.clone(), &inline_json(v)))
        }
        (Shape::Object(members), Seg::Key(k), Some(v)) => {
            if let Some(m) = members.iter().rev().find(|m| &m.key == k) {
                return Some(replace(m.value.range.clone(), &inline_json(v)));
            }
            let member = format!(
                "{}: {}",
                inline_json(&Value::String(k.clone())),
                inline_json(v)
            );
            let Some(last) = members.last() else {
                let inner = parent.range.start + 1..parent.range.end - 1;
                return Some(replace(inner, &member));
            };
            // After the last member, on a line of its own indented like it (when it has one).
            let line_start = text[..last.key_range.start]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let indent = &text[line_start..last.key_range.start];
            let at = last.value.range.end;
            let insertion = if indent.chars().all(|c| c == ' ' || c == '\t') && line_start > 0 {
                let newline = if text[..line_start].ends_with("\r\n") {
                    "\r\n"
                } else {
                    "\n"
                };
                format!(",{newline}{indent}{member}")
            } else {
                format!(", {member}")
            };
            Some(replace(at..at, &insertion))
        }
        (Shape::Object(members), Seg::Key(k), None) => {
            let Some(i) = members.iter().rposition(|m| &m.key == k) else {
                return Some(text.to_string());
            };
            if members.iter().filter(|m| &m.key == k).count() > 1 {
                return None; // duplicates: let the whole-document path decide
            }
            let range = if members.len() == 1 {
                parent.range.start + 1..parent.range.end - 1
            } else if i + 1 < members.len() {
                members[i].key_range.start..members[i + 1].key_range.start
            } else {
                members[i - 1].value.range.end..members[i].value.range.end
            };
            Some(replace(range, ""))
        }
        _ => None,
    }
}

/// A value on one line: `"x"`, `2`, `["a", "b"]`, `{"k": 1}`.
pub fn inline_json(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline_json).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        inline_json(&Value::String(k.clone())),
                        inline_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The character index of 1-based `line` and `col` (columns count characters, as kiln's
/// diagnostics do), clamped to the text. A byte order mark is not counted, as the parser
/// does not count it.
pub fn char_index(text: &str, line: u32, col: u32) -> usize {
    let bom = usize::from(text.starts_with('\u{feff}'));
    let body = &text[bom * '\u{feff}'.len_utf8()..];
    let mut index = bom;
    for (n, l) in body.split_inclusive('\n').enumerate() {
        let chars = l.chars().count();
        if n + 1 == line as usize {
            let visible = l.trim_end_matches(['\n', '\r']).chars().count();
            return index + (col.saturating_sub(1) as usize).min(visible);
        }
        index += chars;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECIPE: &str = r#"{
  "_comment": "keep me",
  "builders": [
    {
      "type": "qemu",
      "iso_url": "http://a/b.qcow2",
      "cpus": 2,
      "weird_option":   [1,2,   3]
    }
  ],
  "post-processors": ["compress", [{"type": "exoscale-import", "image_bucket": "b"}]]
}
"#;

    #[test]
    fn replacing_a_value_changes_only_its_bytes() {
        let out = set(
            RECIPE,
            &doc_path!["builders", 0, "iso_url"],
            Some(&json!("https://x/y.qcow2")),
        )
        .unwrap();
        assert_eq!(
            out,
            RECIPE.replace("\"http://a/b.qcow2\"", "\"https://x/y.qcow2\"")
        );
        let out = set(RECIPE, &doc_path!["builders", 0, "cpus"], Some(&json!(4))).unwrap();
        assert_eq!(out, RECIPE.replace("\"cpus\": 2", "\"cpus\": 4"));
    }

    #[test]
    fn a_new_member_goes_after_the_last_with_its_indentation() {
        let out = set(
            RECIPE,
            &doc_path!["builders", 0, "memory"],
            Some(&json!("2048")),
        )
        .unwrap();
        assert!(
            out.contains("\"weird_option\":   [1,2,   3],\n      \"memory\": \"2048\"\n    }"),
            "{out}"
        );
        let v = parse(&out).unwrap();
        let keys: Vec<_> = v["builders"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["type", "iso_url", "cpus", "weird_option", "memory"]);
    }

    #[test]
    fn inside_nested_post_processor_sequences() {
        let path = doc_path!["post-processors", 1, 0, "image_bucket"];
        let out = set(RECIPE, &path, Some(&json!("my-images"))).unwrap();
        assert_eq!(out, RECIPE.replace("\"b\"}", "\"my-images\"}"));
        let out = set(
            RECIPE,
            &doc_path!["post-processors", 1, 0, "template_zones"],
            Some(&json!(["ch-gva-2", "de-fra-1"])),
        )
        .unwrap();
        assert!(
            out.contains(r#""image_bucket": "b", "template_zones": ["ch-gva-2", "de-fra-1"]}]]"#)
        );
    }

    #[test]
    fn removing_a_member_keeps_the_others_and_the_commas_right() {
        for key in ["type", "cpus", "weird_option"] {
            let out = set(RECIPE, &doc_path!["builders", 0, key], None).unwrap();
            let v = parse(&out).expect("still valid JSON");
            assert!(v["builders"][0].get(key).is_none());
            assert_eq!(v["builders"][0].as_object().unwrap().len(), 3);
            assert!(out.contains("\"_comment\": \"keep me\""));
        }
        let one = "{\"a\": {\"only\": 1}}";
        assert_eq!(
            set(one, &doc_path!["a", "only"], None).unwrap(),
            "{\"a\": {}}"
        );
        let empty = "{\"a\": {}}";
        assert_eq!(
            set(empty, &doc_path!["a", "k"], Some(&json!(true))).unwrap(),
            "{\"a\": {\"k\": true}}"
        );
    }

    #[test]
    fn strings_are_escaped_and_crlf_files_keep_crlf() {
        let crlf = "{\r\n  \"a\": 1\r\n}\r\n";
        let out = set(crlf, &doc_path!["b"], Some(&json!("q\"uote\\"))).unwrap();
        assert_eq!(
            out,
            "{\r\n  \"a\": 1,\r\n  \"b\": \"q\\\"uote\\\\\"\r\n}\r\n"
        );
        assert_eq!(parse(&out).unwrap()["b"], "q\"uote\\");
    }

    #[test]
    fn invalid_json_and_missing_places_are_errors_not_panics() {
        assert!(matches!(
            set("{\"a\": ", &doc_path!["a"], Some(&json!(1))),
            Err(EditError::Invalid(_))
        ));
        let err = set(
            RECIPE,
            &doc_path!["provisioners", 0, "script"],
            Some(&json!("x")),
        )
        .unwrap_err();
        assert_eq!(err, EditError::NoPlace("provisioners[0]".into()));
        assert!(err.to_string().contains("JSON tab"));
    }

    #[test]
    fn duplicate_keys_edit_the_one_serde_keeps() {
        let dup = "{\"a\": 1, \"a\": 2}";
        let out = set(dup, &doc_path!["a"], Some(&json!(3))).unwrap();
        assert_eq!(parse(&out).unwrap()["a"], 3);
    }

    #[test]
    fn positions_become_character_indexes() {
        let text = "{\n  \"é\": x\n}";
        assert_eq!(char_index(text, 1, 1), 0);
        assert_eq!(char_index(text, 2, 3), 4);
        assert_eq!(char_index(text, 2, 99), 2 + 8);
        assert_eq!(char_index(text, 9, 1), text.chars().count());
        assert_eq!(char_index("\u{feff}{}", 1, 2), 2);
    }
}
