//! The base image checksum (`iso_checksum`, and the pre-1.6 `iso_checksum_url` +
//! `iso_checksum_type`).

/// A hash algorithm usable for base-image checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// MD5 (32 hex digits).
    Md5,
    /// SHA-1 (40 hex digits).
    Sha1,
    /// SHA-256 (64 hex digits).
    Sha256,
    /// SHA-512 (128 hex digits).
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm with its name.
    pub const ALL: [HashAlgorithm; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Sha512];

    /// The lowercase name used in recipes (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Parses a name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The number of hex digits of a digest.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha1 => 40,
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }

    /// The algorithm whose digests have `len` hex digits.
    pub fn from_hex_len(len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.hex_len() == len)
    }
}

/// How the downloaded base image is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// `none`: no verification (a warning says so).
    None,
    /// A digest given inline.
    Digest {
        /// The algorithm.
        algorithm: HashAlgorithm,
        /// Lowercase hex digest.
        hex: String,
    },
    /// A checksum list to fetch (`file:<url>`, Debian's `SHA512SUMS`), the line for the
    /// image's file name is used. The algorithm is known from the old `iso_checksum_type` or
    /// guessed from the digest length.
    File {
        /// URL (http, https, file) or local path of the list.
        url: String,
        /// The algorithm, when stated.
        algorithm: Option<HashAlgorithm>,
    },
}

impl Checksum {
    /// Parses Packer's `iso_checksum` syntax: `none`, `md5:…`, `sha1:…`, `sha256:…`,
    /// `sha512:…`, bare hex (algorithm from the length), `file:<url>` or `<algo>:file:<url>`.
    pub fn parse(text: &str) -> Result<Checksum, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(Checksum::None);
        }
        if let Some(url) = t.strip_prefix("file:") {
            return Self::file(url, None);
        }
        if let Some((prefix, rest)) = t.split_once(':') {
            let Some(algorithm) = HashAlgorithm::from_name(prefix) else {
                return Err(format!(
                    "unknown checksum type `{prefix}` (use md5:, sha1:, sha256:, sha512:, file:<url> or none)"
                ));
            };
            if let Some(url) = rest.strip_prefix("file:") {
                return Self::file(url, Some(algorithm));
            }
            return Self::digest(rest, Some(algorithm));
        }
        Self::digest(t, None)
    }

    fn file(url: &str, algorithm: Option<HashAlgorithm>) -> Result<Checksum, String> {
        if url.trim().is_empty() {
            return Err("`file:` needs the URL or path of a checksum list after it".into());
        }
        Ok(Checksum::File {
            url: url.trim().to_string(),
            algorithm,
        })
    }

    /// A digest, checking its length against the algorithm (or guessing the algorithm).
    pub fn digest(hex: &str, algorithm: Option<HashAlgorithm>) -> Result<Checksum, String> {
        let hex = hex.trim().to_ascii_lowercase();
        if hex.is_empty() {
            return Err("the checksum is empty (give a digest, file:<url>, or none)".into());
        }
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{hex}` is not a hexadecimal digest"));
        }
        let algorithm = match algorithm {
            Some(a) if a.hex_len() != hex.len() => {
                return Err(format!(
                    "a {} digest has {} hex digits, this one has {}",
                    a.name(),
                    a.hex_len(),
                    hex.len()
                ));
            }
            Some(a) => a,
            None => HashAlgorithm::from_hex_len(hex.len()).ok_or_else(|| {
                format!(
                    "a {}-digit digest matches no algorithm: md5, sha1, sha256 and sha512 digests have 32, 40, 64 and 128 hex digits; check that it was copied whole",
                    hex.len()
                )
            })?,
        };
        Ok(Checksum::Digest { algorithm, hex })
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checksum::None => f.write_str("none"),
            Checksum::Digest { algorithm, hex } => write!(f, "{}:{hex}", algorithm.name()),
            Checksum::File {
                url,
                algorithm: Some(a),
            } => write!(f, "{}:file:{url}", a.name()),
            Checksum::File {
                url,
                algorithm: None,
            } => write!(f, "file:{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            Checksum::parse(&format!("md5:{md5}")),
            Ok(Checksum::Digest {
                algorithm: HashAlgorithm::Md5,
                hex: md5.into()
            })
        );
        assert_eq!(
            Checksum::parse(&md5.to_uppercase()),
            Ok(Checksum::Digest {
                algorithm: HashAlgorithm::Md5,
                hex: md5.into()
            })
        );
        let sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            Checksum::parse(&format!("sha256:{sha256}")),
            Ok(Checksum::Digest {
                algorithm: HashAlgorithm::Sha256,
                ..
            })
        ));
        assert_eq!(Checksum::parse("none"), Ok(Checksum::None));
        assert_eq!(
            Checksum::parse("file:https://cloud.debian.org/SHA512SUMS"),
            Ok(Checksum::File {
                url: "https://cloud.debian.org/SHA512SUMS".into(),
                algorithm: None
            })
        );
        assert_eq!(
            Checksum::parse("sha512:file:./SHA512SUMS"),
            Ok(Checksum::File {
                url: "./SHA512SUMS".into(),
                algorithm: Some(HashAlgorithm::Sha512)
            })
        );
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(
            Checksum::parse("sha256:abcd")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(
            Checksum::parse("crc32:abcd")
                .unwrap_err()
                .contains("unknown checksum type")
        );
        assert!(
            Checksum::parse("abc")
                .unwrap_err()
                .contains("32, 40, 64 and 128 hex digits")
        );
        assert!(
            Checksum::parse("zz")
                .unwrap_err()
                .contains("not a hexadecimal")
        );
        assert!(Checksum::parse("").unwrap_err().contains("empty"));
        assert!(Checksum::parse("file:").unwrap_err().contains("URL"));
    }
}
