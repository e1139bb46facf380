//! Packer's `boot_command` language, parsed into key actions that kiln types through QMP
//! (`input-send-event`, no VNC needed).
//!
//! - Every character stands for its key on a US keyboard; upper-case letters and shifted
//!   symbols (`!`, `_`, `:`, …) are typed with Shift held.
//! - `<name>` is a special key: `<enter>`/`<return>`, `<esc>`, `<tab>`, `<bs>`, `<del>`,
//!   `<spacebar>`, `<insert>`, `<home>`, `<end>`, `<pageUp>`, `<pageDown>`, `<up>`, `<down>`,
//!   `<left>`, `<right>`, `<f1>`…`<f12>`, `<menu>`, and the modifiers `<leftAlt>`,
//!   `<leftCtrl>`, `<leftShift>`, `<leftSuper>`, `<rightAlt>`, `<rightCtrl>`, `<rightShift>`,
//!   `<rightSuper>`. Names are case-insensitive.
//! - `<nameOn>` presses a special key and keeps it down, `<nameOff>` releases it; `<cOn>` /
//!   `<cOff>` do the same for one character `c`.
//! - `<wait>` waits one second, `<wait5>` five, `<wait1m30s>` (a Go duration) as long as it
//!   says.
//!
//! Packer types anything it does not recognise literally. kiln does too, except where that
//! is almost surely a typo: a `<wait…>` whose duration does not parse and a `<word>` within
//! two letters of a key name (`<entr>`) are errors that name the position.

use std::fmt;
use std::time::Duration;

/// One step of a boot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Press and release `key` with the `modifiers` held (all QMP `QKeyCode` names).
    Tap {
        /// The key.
        key: &'static str,
        /// Keys held while it is pressed (`shift`).
        modifiers: Vec<&'static str>,
    },
    /// Press `key` and keep it down.
    Down(&'static str),
    /// Release `key`.
    Up(&'static str),
    /// Wait.
    Wait(Duration),
}

impl KeyAction {
    fn tap(key: &'static str) -> Self {
        KeyAction::Tap {
            key,
            modifiers: Vec::new(),
        }
    }

    fn shifted(key: &'static str) -> Self {
        KeyAction::Tap {
            key,
            modifiers: vec!["shift"],
        }
    }
}

/// A boot command that cannot be typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct BootCommandError {
    /// 1-based character position in the string.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// The special keys: Packer's name (lower case) → QMP `QKeyCode`.
const SPECIAL: &[(&str, &str)] = &[
    ("bs", "backspace"),
    ("del", "delete"),
    ("enter", "ret"),
    ("return", "ret"),
    ("esc", "esc"),
    ("tab", "tab"),
    ("spacebar", "spc"),
    ("insert", "insert"),
    ("home", "home"),
    ("end", "end"),
    ("pageup", "pgup"),
    ("pagedown", "pgdn"),
    ("up", "up"),
    ("down", "down"),
    ("left", "left"),
    ("right", "right"),
    ("menu", "menu"),
    ("f1", "f1"),
    ("f2", "f2"),
    ("f3", "f3"),
    ("f4", "f4"),
    ("f5", "f5"),
    ("f6", "f6"),
    ("f7", "f7"),
    ("f8", "f8"),
    ("f9", "f9"),
    ("f10", "f10"),
    ("f11", "f11"),
    ("f12", "f12"),
    ("leftalt", "alt"),
    ("leftctrl", "ctrl"),
    ("leftshift", "shift"),
    ("leftsuper", "meta_l"),
    ("rightalt", "alt_r"),
    ("rightctrl", "ctrl_r"),
    ("rightshift", "shift_r"),
    ("rightsuper", "meta_r"),
];

/// The key for `c` on a US keyboard and whether Shift is needed.
pub fn char_key(c: char) -> Option<(&'static str, bool)> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    Some(match c {
        'a'..='z' => (LETTERS[c as usize - 'a' as usize], false),
        'A'..='Z' => (LETTERS[c as usize - 'A' as usize], true),
        '0'..='9' => (DIGITS[c as usize - '0' as usize], false),
        ' ' => ("spc", false),
        '\n' => ("ret", false),
        '\t' => ("tab", false),
        '-' => ("minus", false),
        '_' => ("minus", true),
        '=' => ("equal", false),
        '+' => ("equal", true),
        '[' => ("bracket_left", false),
        '{' => ("bracket_left", true),
        ']' => ("bracket_right", false),
        '}' => ("bracket_right", true),
        '\\' => ("backslash", false),
        '|' => ("backslash", true),
        ';' => ("semicolon", false),
        ':' => ("semicolon", true),
        '\'' => ("apostrophe", false),
        '"' => ("apostrophe", true),
        '`' => ("grave_accent", false),
        '~' => ("grave_accent", true),
        ',' => ("comma", false),
        '<' => ("comma", true),
        '.' => ("dot", false),
        '>' => ("dot", true),
        '/' => ("slash", false),
        '?' => ("slash", true),
        '!' => ("1", true),
        '@' => ("2", true),
        '#' => ("3", true),
        '$' => ("4", true),
        '%' => ("5", true),
        '^' => ("6", true),
        '&' => ("7", true),
        '*' => ("8", true),
        '(' => ("9", true),
        ')' => ("0", true),
        _ => return None,
    })
}

fn special(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    SPECIAL
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, code)| *code)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The key name closest to `name` (with an On/Off suffix or not) when it is within two
/// edits (one for words of up to four letters).
fn near_key(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    // Short words are near many names: only one edit counts there.
    let limit = if lower.len() <= 4 { 1 } else { 2 };
    let mut best: Option<(usize, String)> = None;
    for (key, _) in SPECIAL {
        for suffix in ["", "On", "Off"] {
            let candidate = format!("{key}{}", suffix.to_ascii_lowercase());
            let d = distance(&lower, &candidate);
            if d <= limit && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                best = Some((d, format!("<{}{suffix}>", pretty_name(key))));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// A key name as Packer's documentation spells it (`pageUp`, `leftCtrl`).
fn pretty_name(lower: &str) -> String {
    for (prefix, rest) in [("left", 4), ("right", 5), ("page", 4)] {
        if lower.starts_with(prefix) && lower.len() > rest {
            let (a, b) = lower.split_at(rest);
            let mut chars = b.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            return format!("{a}{}{}", first.unwrap_or_default(), chars.as_str());
        }
    }
    lower.to_string()
}

/// A Go duration (`1m30s`, `500ms`, `1.5h`) or a number of seconds (`5`).
pub fn parse_wait(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return Some(Duration::from_secs(1));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .ok()
            .filter(|&s: &u64| s < 1_000_000_000)
            .map(Duration::from_secs);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total < 1e9).then(|| Duration::from_secs_f64(total))
}

/// Parses one `boot_command` string.
pub fn parse(command: &str) -> Result<Vec<KeyAction>, BootCommandError> {
    let chars: Vec<char> = command.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '<'
            && let Some(len) = chars[i + 1..].iter().position(|&c| c == '>')
        {
            let inner: String = chars[i + 1..i + 1 + len].iter().collect();
            if let Some(action) = bracketed(&inner, i + 1)? {
                out.push(action);
                i += len + 2;
                continue;
            }
        }
        let (key, shift) = char_key(c).ok_or_else(|| BootCommandError {
            column: i + 1,
            message: format!(
                "`{c}` has no key on a US keyboard, which is what kiln types; write it in ASCII or leave it out"
            ),
        })?;
        out.push(if shift {
            KeyAction::shifted(key)
        } else {
            KeyAction::tap(key)
        });
        i += 1;
    }
    Ok(out)
}

/// The action of `<inner>` at `column`, None when it is to be typed literally.
fn bracketed(inner: &str, column: usize) -> Result<Option<KeyAction>, BootCommandError> {
    let lower = inner.to_ascii_lowercase();
    if let Some(duration) = lower.strip_prefix("wait") {
        return match parse_wait(&inner[4..]) {
            Some(d) => Ok(Some(KeyAction::Wait(d))),
            None => Err(BootCommandError {
                column,
                message: format!(
                    "`<{inner}>`: `{duration}` is not a duration; write <wait>, <wait5> (seconds) or <wait1m30s>"
                ),
            }),
        };
    }
    if let Some(code) = special(inner) {
        return Ok(Some(KeyAction::tap(code)));
    }
    for (suffix, down) in [("on", true), ("off", false)] {
        let Some(stem_len) = lower.strip_suffix(suffix).map(str::len) else {
            continue;
        };
        let stem = &inner[..stem_len];
        let code = special(stem).or_else(|| {
            let mut it = stem.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => char_key(c).map(|(k, _)| k),
                _ => None,
            }
        });
        if let Some(code) = code {
            return Ok(Some(if down {
                KeyAction::Down(code)
            } else {
                KeyAction::Up(code)
            }));
        }
    }
    if !inner.is_empty()
        && inner.chars().all(|c| c.is_ascii_alphanumeric())
        && let Some(suggestion) = near_key(inner)
    {
        return Err(BootCommandError {
            column,
            message: format!(
                "`<{inner}>` is not a key (did you mean `{suggestion}`?); special keys are listed in kiln's README"
            ),
        });
    }
    Ok(None)
}

/// Parses every string of a `boot_command`, naming the failing element.
pub fn parse_all(commands: &[String]) -> Result<Vec<KeyAction>, String> {
    let mut out = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        out.extend(parse(command).map_err(|e| format!("boot_command[{i}]: {e}"))?);
    }
    Ok(out)
}

impl fmt::Display for KeyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAction::Tap { key, modifiers } if modifiers.is_empty() => f.write_str(key),
            KeyAction::Tap { key, modifiers } => write!(f, "{}-{key}", modifiers.join("-")),
            KeyAction::Down(k) => write!(f, "{k} down"),
            KeyAction::Up(k) => write!(f, "{k} up"),
            KeyAction::Wait(d) => write!(f, "wait {d:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> Vec<String> {
        parse(s).unwrap().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn plain_characters_map_to_us_keys_with_shift_where_needed() {
        assert_eq!(
            keys("aZ0 -_=+"),
            [
                "a",
                "shift-z",
                "0",
                "spc",
                "minus",
                "shift-minus",
                "equal",
                "shift-equal"
            ]
        );
        assert_eq!(
            keys("[]{}\\|;:'\"`~,<.>/?"),
            [
                "bracket_left",
                "bracket_right",
                "shift-bracket_left",
                "shift-bracket_right",
                "backslash",
                "shift-backslash",
                "semicolon",
                "shift-semicolon",
                "apostrophe",
                "shift-apostrophe",
                "grave_accent",
                "shift-grave_accent",
                "comma",
                "shift-comma",
                "dot",
                "shift-dot",
                "slash",
                "shift-slash"
            ]
        );
        assert_eq!(
            keys("!@#$%^&*()"),
            [
                "shift-1", "shift-2", "shift-3", "shift-4", "shift-5", "shift-6", "shift-7",
                "shift-8", "shift-9", "shift-0"
            ]
        );
        assert_eq!(keys("\n\t"), ["ret", "tab"]);
    }

    #[test]
    fn every_character_of_printable_ascii_has_a_key() {
        for c in ' '..='~' {
            assert!(char_key(c).is_some(), "{c:?}");
        }
        assert!(char_key('é').is_none());
    }

    #[test]
    fn special_keys_are_case_insensitive() {
        let all = "<bs><del><enter><return><esc><tab><spacebar><insert><home><end><pageUp>\
                   <pageDown><up><down><left><right><menu><f1><f2><f3><f4><f5><f6><f7><f8><f9>\
                   <f10><f11><f12><leftAlt><leftCtrl><leftShift><leftSuper><rightAlt>\
                   <rightCtrl><rightShift><rightSuper>";
        assert_eq!(
            keys(all),
            [
                "backspace",
                "delete",
                "ret",
                "ret",
                "esc",
                "tab",
                "spc",
                "insert",
                "home",
                "end",
                "pgup",
                "pgdn",
                "up",
                "down",
                "left",
                "right",
                "menu",
                "f1",
                "f2",
                "f3",
                "f4",
                "f5",
                "f6",
                "f7",
                "f8",
                "f9",
                "f10",
                "f11",
                "f12",
                "alt",
                "ctrl",
                "shift",
                "meta_l",
                "alt_r",
                "ctrl_r",
                "shift_r",
                "meta_r"
            ]
        );
        assert_eq!(keys("<ENTER><Esc><PAGEUP>"), ["ret", "esc", "pgup"]);
    }

    #[test]
    fn on_and_off_hold_and_release() {
        assert_eq!(
            keys("<leftCtrlOn>c<leftCtrlOff><rightAltON><rightAltoff>"),
            ["ctrl down", "c", "ctrl up", "alt_r down", "alt_r up"]
        );
        assert_eq!(keys("<aOn><aOff>"), ["a down", "a up"]);
        assert_eq!(keys("<f10On><enterOff>"), ["f10 down", "ret up"]);
    }

    #[test]
    fn waits() {
        let w = |s: &str| parse(s).unwrap();
        assert_eq!(w("<wait>"), [KeyAction::Wait(Duration::from_secs(1))]);
        assert_eq!(w("<wait5>"), [KeyAction::Wait(Duration::from_secs(5))]);
        assert_eq!(w("<wait10>"), [KeyAction::Wait(Duration::from_secs(10))]);
        assert_eq!(w("<wait1m30s>"), [KeyAction::Wait(Duration::from_secs(90))]);
        assert_eq!(
            w("<wait250ms>"),
            [KeyAction::Wait(Duration::from_millis(250))]
        );
        assert_eq!(w("<WAIT2s>"), [KeyAction::Wait(Duration::from_secs(2))]);
        assert_eq!(
            w("<wait1.5s>"),
            [KeyAction::Wait(Duration::from_millis(1500))]
        );
        assert_eq!(w("<wait1h>"), [KeyAction::Wait(Duration::from_secs(3600))]);
    }

    #[test]
    fn unknown_brackets_are_typed_like_packer_does() {
        assert_eq!(
            keys("a<b"),
            ["a", "shift-comma", "b"],
            "an unclosed < is a character"
        );
        assert_eq!(keys("<x y>"), ["shift-comma", "x", "spc", "y", "shift-dot"]);
        assert_eq!(keys("<>"), ["shift-comma", "shift-dot"]);
        assert_eq!(
            keys("<xy>").len(),
            4,
            "two edits from <up> is too far for a short word"
        );
        assert_eq!(
            keys("<nothingalike>").len(),
            14,
            "a word far from every key name is literal"
        );
    }

    #[test]
    fn errors_name_the_column_and_the_fix() {
        let e = parse("ab<wait1x>").unwrap_err();
        assert_eq!(e.column, 3);
        assert!(e.message.contains("`1x` is not a duration"), "{e}");
        let e = parse("<enter><entr>").unwrap_err();
        assert_eq!(e.column, 8);
        assert!(e.message.contains("did you mean `<enter>`"), "{e}");
        let e = parse("<leftCtrlOnn>").unwrap_err();
        assert!(e.message.contains("`<leftCtrlOn>`"), "{e}");
        let e = parse("<pagup>").unwrap_err();
        assert!(e.message.contains("`<pageUp>`"), "{e}");
        let e = parse("xyé").unwrap_err();
        assert_eq!(e.column, 3);
        assert!(e.message.contains("`é` has no key"), "{e}");
        let e = parse_all(&["ok".into(), "<wait-1>".into()]).unwrap_err();
        assert!(e.starts_with("boot_command[1]: column 1: "), "{e}");
    }

    #[test]
    fn a_full_installer_line() {
        let actions =
            parse("<esc><wait>install preseed/url=http://10.0.2.2:8123/preseed.cfg<enter><wait5s>")
                .unwrap();
        assert_eq!(actions.first(), Some(&KeyAction::tap("esc")));
        assert_eq!(actions[1], KeyAction::Wait(Duration::from_secs(1)));
        assert_eq!(
            actions.last(),
            Some(&KeyAction::Wait(Duration::from_secs(5)))
        );
        assert_eq!(
            actions.len(),
            2 + "install preseed/url=http://10.0.2.2:8123/preseed.cfg".len() + 2
        );
        assert!(actions.contains(&KeyAction::shifted("semicolon")));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_wait("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_wait(""), Some(Duration::from_secs(1)));
        for bad in [
            "x",
            "1x",
            "s",
            "1s2",
            "-1s",
            ".s",
            "99999999999",
            "99999999999h",
        ] {
            assert_eq!(parse_wait(bad), None, "{bad}");
        }
    }
}
