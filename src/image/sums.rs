//! Checksum lists: find the digest of one file in a `SHA512SUMS`-style list.
//!
//! Both formats that `sha256sum` and friends write are understood:
//! - GNU: `<hex>  <name>` (text mode) or `<hex> *<name>` (binary mode), with the escaped form
//!   (`\<hex>  <name with \n or \\>`) for odd names;
//! - BSD / `--tag`: `SHA256 (<name>) = <hex>`.
//!
//! Blank lines, `#` comments and the armor of a clearsigned list (`-----BEGIN PGP …`,
//! `Hash: …`, the signature block) are skipped. A name matches when it equals the wanted file
//! name, or when its last `/`-separated segment does (lists sometimes write `./name` or
//! `subdir/name`).

use crate::recipe::checksum::HashAlgorithm;

/// One line of a checksum list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumsEntry {
    /// The algorithm, when the line names it (BSD format).
    pub algorithm: Option<HashAlgorithm>,
    /// The digest, lowercase hex.
    pub hex: String,
    /// The file name as written in the list (unescaped, without `*`).
    pub name: String,
}

/// Parses every checksum line of `text`; lines that are not checksum lines are skipped.
pub fn parse_sums(text: &str) -> Vec<SumsEntry> {
    let mut in_signature = false;
    let mut entries = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with("-----BEGIN PGP SIGNATURE") {
            in_signature = true;
            continue;
        }
        if line.starts_with("-----END PGP SIGNATURE") {
            in_signature = false;
            continue;
        }
        if in_signature || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(entry) = parse_bsd(line).or_else(|| parse_gnu(line)) {
            entries.push(entry);
        }
    }
    entries
}

/// `SHA256 (name) = hex`
fn parse_bsd(line: &str) -> Option<SumsEntry> {
    let (tag, rest) = line.split_once(" (")?;
    let (name, hex) = rest.rsplit_once(") = ")?;
    let tag = tag.trim().replace('-', "");
    let algorithm = match tag.to_ascii_uppercase().as_str() {
        "MD5" => HashAlgorithm::Md5,
        "SHA1" => HashAlgorithm::Sha1,
        "SHA256" | "SHA2256" => HashAlgorithm::Sha256,
        "SHA512" | "SHA2512" => HashAlgorithm::Sha512,
        _ => return None,
    };
    let hex = hex.trim();
    if !is_hex(hex) {
        return None;
    }
    Some(SumsEntry {
        algorithm: Some(algorithm),
        hex: hex.to_ascii_lowercase(),
        name: name.to_string(),
    })
}

/// `hex  name`, `hex *name`, `\hex  escaped\nname`
fn parse_gnu(line: &str) -> Option<SumsEntry> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (hex, rest) = line.split_once(' ')?;
    if !is_hex(hex) {
        return None;
    }
    // Two separators: a space (text mode) or `*` (binary mode). A single space followed by
    // the name is accepted too, as some hand-written lists have it.
    let name = rest
        .strip_prefix(' ')
        .or_else(|| rest.strip_prefix('*'))
        .unwrap_or(rest);
    if name.is_empty() {
        return None;
    }
    let name = if escaped {
        unescape(name)
    } else {
        name.to_string()
    };
    Some(SumsEntry {
        algorithm: None,
        hex: hex.to_ascii_lowercase(),
        name,
    })
}

fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn matches_name(listed: &str, wanted: &str) -> bool {
    listed == wanted || listed.rsplit('/').next() == Some(wanted)
}

/// Finds the digest of `file_name` in a checksum list. The algorithm is the one the line
/// names (BSD format), else `algorithm` when given, else guessed from the digest length.
/// The error says what is wrong, for a message that also names the list.
pub fn lookup(
    text: &str,
    file_name: &str,
    algorithm: Option<HashAlgorithm>,
) -> Result<(HashAlgorithm, String), String> {
    let entries = parse_sums(text);
    if entries.is_empty() {
        return Err(
            "it has no checksum lines (`<digest>  <file>` or `SHA256 (<file>) = <digest>`); check that the URL points to the checksum list and not to a web page"
                .into(),
        );
    }
    let candidates: Vec<&SumsEntry> = entries
        .iter()
        .filter(|e| matches_name(&e.name, file_name))
        .filter(|e| match (algorithm, e.algorithm) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .collect();
    let Some(entry) = candidates.first() else {
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        names.dedup();
        let shown = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if names.len() > 5 { ", …" } else { "" };
        return Err(format!(
            "it has no line for `{file_name}` (it lists {shown}{more}); check that the image URL and the checksum list belong together"
        ));
    };
    let algorithm = match entry.algorithm.or(algorithm) {
        Some(a) if a.hex_len() != entry.hex.len() => {
            return Err(format!(
                "its digest for `{file_name}` has {} hex digits, but a {} digest has {}; check iso_checksum's algorithm",
                entry.hex.len(),
                a.name(),
                a.hex_len()
            ));
        }
        Some(a) => a,
        None => HashAlgorithm::from_hex_len(entry.hex.len()).ok_or_else(|| {
            format!(
                "its digest for `{file_name}` has {} hex digits, which matches no algorithm (md5, sha1, sha256 and sha512 have 32, 40, 64 and 128)",
                entry.hex.len()
            )
        })?,
    };
    Ok((algorithm, entry.hex.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const B: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn gnu_text_and_binary_mode() {
        let list = format!(
            "{A}  debian-12-generic-amd64.qcow2\n{B} *debian-12-genericcloud-amd64.qcow2\n"
        );
        assert_eq!(
            lookup(&list, "debian-12-genericcloud-amd64.qcow2", None),
            Ok((HashAlgorithm::Sha256, B.to_string()))
        );
        assert_eq!(
            lookup(&list, "debian-12-generic-amd64.qcow2", None),
            Ok((HashAlgorithm::Sha256, A.to_string()))
        );
    }

    #[test]
    fn bsd_tag_format_names_the_algorithm() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        let list =
            format!("MD5 (image with spaces.img) = {md5}\nSHA256 (image with spaces.img) = {A}\n");
        assert_eq!(
            lookup(&list, "image with spaces.img", None),
            Ok((HashAlgorithm::Md5, md5.to_string()))
        );
        assert_eq!(
            lookup(&list, "image with spaces.img", Some(HashAlgorithm::Sha256)),
            Ok((HashAlgorithm::Sha256, A.to_string()))
        );
    }

    #[test]
    fn paths_comments_crlf_and_signatures() {
        let list = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\n# comment\r\n{A}  ./sub/x.iso\r\n-----BEGIN PGP SIGNATURE-----\r\n{B}  x.iso\r\n-----END PGP SIGNATURE-----\r\n"
        );
        assert_eq!(
            lookup(&list, "x.iso", None),
            Ok((HashAlgorithm::Sha256, A.to_string()))
        );
    }

    #[test]
    fn escaped_names() {
        let list = format!("\\{A}  odd\\\\name\\nx\n");
        assert_eq!(parse_sums(&list)[0].name, "odd\\name\nx");
    }

    #[test]
    fn errors_name_the_problem() {
        let list = format!("{A}  a.img\n{A}  b.img\n");
        let e = lookup(&list, "c.img", None).unwrap_err();
        assert!(
            e.contains("no line for `c.img`") && e.contains("a.img, b.img"),
            "{e}"
        );
        let e = lookup(&list, "a.img", Some(HashAlgorithm::Sha512)).unwrap_err();
        assert!(e.contains("64 hex digits") && e.contains("sha512"), "{e}");
        let e = lookup("<html>not found</html>", "a.img", None).unwrap_err();
        assert!(e.contains("no checksum lines"), "{e}");
        let e = lookup("abcd  a.img\n", "a.img", None).unwrap_err();
        assert!(e.contains("matches no algorithm"), "{e}");
    }
}
