//! The functions Packer's legacy templates know (names, parameters, usage) and the Go string
//! functions they are built on (`strings.Split`, `strings.Replace`, `unicode.ToUpper`, …).

/// The functions Packer's legacy templates know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    BuildName,
    BuildType,
    Env,
    Isotime,
    Pwd,
    Split,
    TemplateDir,
    Timestamp,
    Uuid,
    User,
    Replace,
    ReplaceAll,
    Upper,
    Lower,
    CleanResourceName,
    Build,
    /// Known to Packer, refused by kiln.
    Refused(&'static str),
}

/// The kind of a function parameter (Go converts arguments to the parameter's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    Str,
    Int,
}

const REFUSED: [&str; 7] = [
    "consul_key",
    "vault",
    "aws_secretsmanager",
    "aws_secretsmanager_raw",
    "packer_version",
    "strftime",
    "sed",
];

impl Func {
    pub(super) fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "build_name" => Func::BuildName,
            "build_type" => Func::BuildType,
            "env" => Func::Env,
            "isotime" => Func::Isotime,
            "pwd" => Func::Pwd,
            "split" => Func::Split,
            "template_dir" => Func::TemplateDir,
            "timestamp" => Func::Timestamp,
            "uuid" => Func::Uuid,
            "user" => Func::User,
            "replace" => Func::Replace,
            "replace_all" => Func::ReplaceAll,
            "upper" => Func::Upper,
            "lower" => Func::Lower,
            "clean_resource_name" => Func::CleanResourceName,
            "build" => Func::Build,
            _ => {
                return REFUSED
                    .iter()
                    .find(|r| **r == name)
                    .map(|r| Func::Refused(r));
            }
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Func::BuildName => "build_name",
            Func::BuildType => "build_type",
            Func::Env => "env",
            Func::Isotime => "isotime",
            Func::Pwd => "pwd",
            Func::Split => "split",
            Func::TemplateDir => "template_dir",
            Func::Timestamp => "timestamp",
            Func::Uuid => "uuid",
            Func::User => "user",
            Func::Replace => "replace",
            Func::ReplaceAll => "replace_all",
            Func::Upper => "upper",
            Func::Lower => "lower",
            Func::CleanResourceName => "clean_resource_name",
            Func::Build => "build",
            Func::Refused(name) => name,
        }
    }

    /// Parameter kinds and the number of optional trailing ones.
    pub(super) fn params(self) -> (&'static [Param], usize) {
        use Param::{Int, Str};
        match self {
            Func::BuildName
            | Func::BuildType
            | Func::Pwd
            | Func::TemplateDir
            | Func::Timestamp
            | Func::Uuid
            | Func::Refused(_) => (&[], 0),
            Func::Isotime => (&[Str], 1),
            Func::Env
            | Func::User
            | Func::Upper
            | Func::Lower
            | Func::CleanResourceName
            | Func::Build => (&[Str], 0),
            Func::Split => (&[Str, Str, Int], 0),
            Func::Replace => (&[Str, Str, Int, Str], 0),
            Func::ReplaceAll => (&[Str, Str, Str], 0),
        }
    }

    pub(super) fn usage(self) -> &'static str {
        match self {
            Func::Env => "{{env `NAME`}}",
            Func::User => "{{user `name`}}",
            Func::Build => "{{build `Name`}}",
            Func::Isotime => "{{isotime}} or {{isotime `2006-01-02`}}",
            Func::Upper => "{{upper `text`}} or {{... | upper}}",
            Func::Lower => "{{lower `text`}} or {{... | lower}}",
            Func::CleanResourceName => {
                "{{clean_resource_name `text`}} or {{... | clean_resource_name}}"
            }
            Func::Split => "{{split `text` `separator` INDEX}}",
            Func::Replace => {
                "{{replace `old` `new` COUNT `text`}} or {{... | replace `old` `new` COUNT}}"
            }
            Func::ReplaceAll => {
                "{{replace_all `old` `new` `text`}} or {{... | replace_all `old` `new`}}"
            }
            Func::BuildName => "{{build_name}}",
            Func::BuildType => "{{build_type}}",
            Func::Pwd => "{{pwd}}",
            Func::TemplateDir => "{{template_dir}}",
            Func::Timestamp => "{{timestamp}}",
            Func::Uuid => "{{uuid}}",
            Func::Refused(_) => "",
        }
    }
}

/// The most parameters a function has (`replace`).
pub(super) const MAX_PARAMS: usize = 4;

/// Go's `strings.Split(s, sep)`: an empty separator splits into characters (and an empty
/// string into nothing).
pub(super) fn go_split<'t>(s: &'t str, sep: &str) -> Vec<&'t str> {
    if sep.is_empty() {
        s.char_indices()
            .map(|(i, c)| &s[i..i + c.len_utf8()])
            .collect()
    } else {
        s.split(sep).collect()
    }
}

/// Go's `strings.Replace(s, old, new, n)`: the first `n` non-overlapping matches, all of them
/// when `n < 0`; an empty `old` matches before every character and at the end.
pub(super) fn go_replace(s: &str, old: &str, new: &str, n: i64) -> String {
    if n < 0 {
        s.replace(old, new)
    } else {
        s.replacen(old, new, usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// Go's `unicode.ToUpper`: the simple (one-character) case mapping.
pub(super) fn go_to_upper(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        // Multi-character full mappings: Go uses the simple mapping, which exists only for
        // the Greek letters with iota subscript (to their title-case forms); the others
        // (ß, ŉ, ǰ, ligatures, …) stay unchanged.
        _ => match u32::from(c) {
            v @ (0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7) => {
                char::from_u32(v + 8).unwrap_or(c)
            }
            0x1FB3 => '\u{1FBC}',
            0x1FC3 => '\u{1FCC}',
            0x1FF3 => '\u{1FFC}',
            _ => c,
        },
    }
}

/// Go's `unicode.ToLower`: the simple case mapping (no final-sigma rule; `İ` → `i`).
pub(super) fn go_to_lower(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

/// Packer's `clean_resource_name` as the Google Compute builder defines it (the behaviour the
/// template-engine docs describe): lower-case, then every byte that is not `a-z` or `0-9`
/// becomes `-` (so a multi-byte character becomes several). No truncation.
pub(super) fn clean_resource_name(s: &str) -> String {
    let lower: String = s.chars().map(go_to_lower).collect();
    lower
        .bytes()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                char::from(c)
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::recipe::interp::test_support::*;
    use crate::recipe::interp::{Context, InterpError, referenced_variables, render};

    #[test]
    fn upper_lower() {
        assert_eq!(ok("{{upper `abc-é`}} {{lower `ABC-É`}}"), "ABC-É abc-é");
        assert_eq!(ok("{{user `mixed` | upper}}"), "HELLO WORLD");
        assert_eq!(ok("{{ user `mixed` | lower }}"), "hello world");
        // Go's simple case mappings: ß has no one-letter upper case, İ lowers to i, and there
        // is no final-sigma rule.
        assert_eq!(ok("{{upper `straße ﬁ`}}"), "STRAßE ﬁ");
        assert_eq!(ok("{{lower `İΣΑΣ`}}"), "iσασ");
        assert_eq!(ok("{{upper `ᾳ`}}"), "ᾼ");
        assert_eq!(bad_args("{{upper}}").0, 2);
        assert_eq!(bad_args("{{upper `a` `b`}}").0, 2);
        assert_eq!(bad_args("{{upper 5}}").0, 8);
    }

    #[test]
    fn replace_follows_packer_argument_order() {
        // Packer docs: build_name = foo-bar-provider.
        let fields = [("X", None)];
        let b = |src: &str| {
            let run = run();
            let vars = vars();
            let ctx = Context {
                vars: &vars,
                allow_env: false,
                env: &env,
                run: &run,
                build_name: Some("foo-bar-provider"),
                build_type: Some("qemu"),
                fields: &fields,
            };
            render(src, &ctx).unwrap()
        };
        assert_eq!(
            b("{{ replace_all \"-\" \"/\" build_name }}"),
            "foo/bar/provider"
        );
        assert_eq!(
            b("{{ build_name | replace \"-\" \"/\" 1 }}"),
            "foo/bar-provider"
        );
        assert_eq!(b("{{split build_name \"-\" 0}}"), "foo");
        assert_eq!(b("{{split \"fixed-string\" \"-\" 1}}"), "string");
        assert_eq!(b("tpl/{{split build_name \"-\" 1}}.rb"), "tpl/bar.rb");

        assert_eq!(ok("{{replace `a` `b` 2 `aaaa`}}"), "bbaa");
        assert_eq!(ok("{{replace `a` `b` -1 `aaaa`}}"), "bbbb");
        assert_eq!(ok("{{replace `a` `b` 0 `aaaa`}}"), "aaaa");
        assert_eq!(ok("{{replace `a` `b` 99 `aaaa`}}"), "bbbb");
        assert_eq!(ok("{{replace `` `-` 2 `abc`}}"), "-a-bc");
        assert_eq!(ok("{{replace_all `` `-` `abc`}}"), "-a-b-c-");
        assert_eq!(ok("{{replace_all `.` `-` `1.2.3`}}"), "1-2-3");
        assert_eq!(ok("{{user `version` | replace_all `.` `_`}}"), "1_2_3");
        assert_eq!(ok("{{replace_all `aa` `a` `aaaaa`}}"), "aaa");

        let (off, f, msg) = bad_args("{{replace `a` `b` `1` `aaaa`}}");
        assert_eq!((off, f.as_str()), (18, "replace"));
        assert!(msg.contains("argument 3 must be an integer"), "{msg}");
        assert_eq!(bad_args("{{replace `a` `b` 1}}").0, 2);
        assert_eq!(bad_args("{{replace_all `a` `b`}}").0, 2);
        assert_eq!(bad_args("{{replace_all 1 `b` `c`}}").0, 14);
    }

    #[test]
    fn split_follows_go() {
        assert_eq!(ok("{{split `a-b-c` `-` 2}}"), "c");
        assert_eq!(ok("{{split `a--b` `-` 1}}"), "");
        assert_eq!(ok("{{split `abc` `` 1}}"), "b");
        assert_eq!(ok("{{split `abc` `x` 0}}"), "abc");
        // The piped value is the LAST argument (the index), so a piped string is an error.
        let (off, _, msg) = bad_args("{{user `os` | split `x-y` `-` }}");
        assert_eq!(off, 2);
        assert!(msg.contains("argument 3 must be an integer"), "{msg}");
        let (off, f, msg) = bad_args("{{split `a-b` `-` 2}}");
        assert_eq!((off, f.as_str()), (2, "split"));
        assert!(msg.contains("2 part(s)"), "{msg}");
        assert_eq!(bad_args("{{split `a-b` `-` -1}}").0, 2);
        assert_eq!(bad_args("{{split `` `` 0}}").0, 2);
        assert_eq!(bad_args("{{split `a-b` `-` `1`}}").0, 18);
        assert_eq!(bad_args("{{split `a-b` `-`}}").0, 2);
        // A piped integer is the last argument, the index.
        assert_eq!(ok("{{ 1 | split `a-b` `-` }}"), "b");
    }

    #[test]
    fn clean_resource_name_follows_packer() {
        // Packer docs: "mybuild-{{isotime | clean_resource_name}}" → mybuild-2017-10-18t02-06-30z.
        assert_eq!(
            ok("mybuild-{{isotime | clean_resource_name}}"),
            "mybuild-2009-11-10t23-04-05z"
        );
        // Packer's googlecompute tests.
        assert_eq!(
            ok("{{clean_resource_name `abcde-012345xyz`}}"),
            "abcde-012345xyz"
        );
        assert_eq!(
            ok("{{clean_resource_name `ABCDE-012345xyz`}}"),
            "abcde-012345xyz"
        );
        assert_eq!(
            ok("{{clean_resource_name `abcde-012345v1.0.0`}}"),
            "abcde-012345v1-0-0"
        );
        // Byte-wise, as in Go: a two-byte character becomes two dashes.
        assert_eq!(
            ok("{{ `Ümlaut_x y` | clean_resource_name }}"),
            "--mlaut-x-y"
        );
    }

    #[test]
    fn refused_functions() {
        for name in [
            "consul_key",
            "vault",
            "aws_secretsmanager",
            "aws_secretsmanager_raw",
            "packer_version",
            "strftime",
            "sed",
        ] {
            let src = format!("x {{{{ {name} `a` `b` }}}}");
            let err = rv(&src).unwrap_err();
            assert_eq!(
                err,
                InterpError::Unsupported {
                    offset: 5,
                    name: name.to_string()
                }
            );
        }
        let msg = rv("{{vault `secret/x` `k`}}").unwrap_err().to_string();
        assert!(msg.contains("does not fetch secrets"), "{msg}");
        assert!(msg.contains("-var"), "{msg}");
        let msg = rv("{{aws_secretsmanager `x`}}").unwrap_err().to_string();
        assert!(msg.contains("-var-file"), "{msg}");
    }

    #[test]
    fn unknown_functions() {
        assert_eq!(
            r("ab{{ nope `x` }}"),
            Err(InterpError::UnknownFunction {
                offset: 5,
                name: "nope".to_string()
            })
        );
        assert_eq!(
            r("{{ upper (frobnicate) }}"),
            Err(InterpError::UnknownFunction {
                offset: 10,
                name: "frobnicate".to_string()
            })
        );
        // Builder-specific Packer functions kiln does not define.
        assert!(matches!(
            r("{{ clean_ami_name `x` }}"),
            Err(InterpError::UnknownFunction { offset: 3, .. })
        ));
        // Reported even when the referenced variables are collected.
        assert!(matches!(
            referenced_variables("{{ nope }}"),
            Err(InterpError::UnknownFunction { offset: 3, .. })
        ));
    }
}
