//! EXO2-HMAC-SHA256 request signing, the scheme of Exoscale's API v2.
//!
//! The signed message is five lines joined by `\n` (no trailing newline):
//!
//! 1. `"<METHOD> <escaped path, /v2 included>"`
//! 2. the raw body bytes (empty when there is none)
//! 3. the values of the single-valued query parameters, concatenated in the alphabetical
//!    order of their names (multi-valued parameters are not signed)
//! 4. an empty line (no header is signed)
//! 5. the expiry, in Unix seconds
//!
//! The signature is `base64(HMAC-SHA256(secret, message))`, sent as
//! `Authorization: EXO2-HMAC-SHA256 credential=<key>[,signed-query-args=<n1;n2>],expires=<unix>,signature=<b64>`.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The name of the scheme, the first word of the `Authorization` header.
pub const SCHEME: &str = "EXO2-HMAC-SHA256";

/// How long a signature is valid by default (the reference clients use 10 minutes).
pub const DEFAULT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(600);

/// What a signature covers: one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestToSign<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The percent-escaped path as sent, `/v2` included (e.g. `/v2/template/ID`).
    pub path: &'a str,
    /// The decoded query parameters in the order they appear (names may repeat).
    pub query: &'a [(String, String)],
    /// The raw body bytes (empty when there is no body).
    pub body: &'a [u8],
    /// When the signature stops being valid, in Unix seconds.
    pub expires: i64,
}

/// The names of the single-valued query parameters, sorted: the parameters the signature
/// covers.
pub fn signed_query_names(query: &[(String, String)]) -> Vec<&str> {
    let mut names: Vec<&str> = query.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut single = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() && names[j] == names[i] {
            j += 1;
        }
        if j == i + 1 {
            single.push(names[i]);
        }
        i = j;
    }
    single
}

/// The message the signature is computed over (see the module documentation).
pub fn message(request: &RequestToSign<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.path.len() + request.body.len() + 64);
    out.extend_from_slice(request.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(request.body);
    out.push(b'\n');
    for name in signed_query_names(request.query) {
        if let Some((_, value)) = request.query.iter().find(|(n, _)| n == name) {
            out.extend_from_slice(value.as_bytes());
        }
    }
    out.push(b'\n');
    out.push(b'\n');
    out.extend_from_slice(request.expires.to_string().as_bytes());
    out
}

/// `base64(HMAC-SHA256(secret, message))`.
pub fn signature(secret: &str, message: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The value of the `Authorization` header for `request`, signed with `key` and `secret`.
pub fn authorization(key: &str, secret: &str, request: &RequestToSign<'_>) -> String {
    let names = signed_query_names(request.query);
    let signed_args = if names.is_empty() {
        String::new()
    } else {
        format!(",signed-query-args={}", names.join(";"))
    };
    format!(
        "{SCHEME} credential={key}{signed_args},expires={},signature={}",
        request.expires,
        signature(secret, &message(request))
    )
}

/// The parts of an `Authorization` header, as a server reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    /// `credential`: the API key.
    pub credential: String,
    /// `signed-query-args`, split on `;` (empty when absent).
    pub signed_query_args: Vec<String>,
    /// `expires`, Unix seconds.
    pub expires: i64,
    /// `signature`, base64.
    pub signature: String,
}

/// Reads an `Authorization` header value; `None` when it is not a well-formed EXO2 header.
pub fn parse_authorization(header: &str) -> Option<ParsedAuthorization> {
    let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let (mut credential, mut args, mut expires, mut sig) = (None, Vec::new(), None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "credential" => credential = Some(value.to_string()),
            "signed-query-args" => args = value.split(';').map(str::to_string).collect(),
            "expires" => expires = Some(value.parse().ok()?),
            // The base64 signature may itself end in `=`: split_once keeps them.
            "signature" => sig = Some(value.to_string()),
            _ => return None,
        }
    }
    Some(ParsedAuthorization {
        credential: credential?,
        signed_query_args: args,
        expires: expires?,
        signature: sig?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "EXOxxxxxxxxxxxxxxxxxxxxxxxx";
    const EXPIRES: i64 = 3376684800;

    fn secret() -> String {
        "X".repeat(43)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn public_vector_get_zone() {
        let request = RequestToSign {
            method: "GET",
            path: "/v2/zone",
            query: &[],
            body: b"",
            expires: EXPIRES,
        };
        assert_eq!(message(&request), b"GET /v2/zone\n\n\n\n3376684800");
        assert_eq!(
            authorization(KEY, &secret(), &request),
            "EXO2-HMAC-SHA256 credential=EXOxxxxxxxxxxxxxxxxxxxxxxxx,expires=3376684800,\
             signature=Ntbq/p0HVmA3Zg1HHY+Lq1vjFGi7HeMrrgXDS5jRNlY="
        );
    }

    #[test]
    fn public_vector_get_zone_with_query() {
        let query = pairs(&[("k1", "v1"), ("k2", "v2")]);
        let request = RequestToSign {
            method: "GET",
            path: "/v2/zone",
            query: &query,
            body: b"",
            expires: EXPIRES,
        };
        assert_eq!(message(&request), b"GET /v2/zone\n\nv1v2\n\n3376684800");
        assert_eq!(
            authorization(KEY, &secret(), &request),
            "EXO2-HMAC-SHA256 credential=EXOxxxxxxxxxxxxxxxxxxxxxxxx,signed-query-args=k1;k2,\
             expires=3376684800,signature=iqOBz13+44L5j0uJclE8hmUhQQcvtCSoPEOXYK6liqY="
        );
        // The order of the parameters in the URL does not change the signature.
        let reversed = pairs(&[("k2", "v2"), ("k1", "v1")]);
        let again = RequestToSign {
            query: &reversed,
            ..request
        };
        assert_eq!(
            authorization(KEY, &secret(), &again),
            authorization(KEY, &secret(), &request)
        );
    }

    #[test]
    fn public_vector_post_with_body() {
        let request = RequestToSign {
            method: "POST",
            path: "/v2/security-group",
            query: &[],
            body: br#"{"name":"my-security-group"}"#,
            expires: 1599140767,
        };
        assert_eq!(
            signature("example-secret", &message(&request)),
            "edcMQSdrqtsF1iT0nXKHkAXTaNHlcPm76hHXVOyKe6k="
        );
    }

    /// Two more fixtures (key `EXO123`, secret `secret-value`, expires 1700000000), from the
    /// tests of a public third-party Exoscale client (a Python project's
    /// `test_authorization_header_matches_reference_fixture*`), checked there against the
    /// reference implementation.
    #[test]
    fn third_party_fixtures() {
        let query = pairs(&[("zone", "ch-gva-2"), ("name", "sb-test")]);
        let get = RequestToSign {
            method: "GET",
            path: "/v2/instance",
            query: &query,
            body: b"",
            expires: 1700000000,
        };
        assert_eq!(
            authorization("EXO123", "secret-value", &get),
            "EXO2-HMAC-SHA256 credential=EXO123,signed-query-args=name;zone,expires=1700000000,\
             signature=LdrDqX3RL8WKrHOSxqZ3ueR5PcwwEzjtwlOXWUThvUc="
        );
        let body = br#"{"name":"sb-test","template":{"name":"Linux Ubuntu 24.04 LTS 64-bit"},"instance-type":{"name":"standard.medium"},"zone":"ch-gva-2","disk-size":50,"ssh-key":{"name":"drukbox-sb-test"},"labels":{"managed-by":"drukbox"},"user-data":"IyEvYmluL3NoCmVjaG8gaGk="}"#;
        let post = RequestToSign {
            method: "POST",
            path: "/v2/instance",
            query: &[],
            body,
            expires: 1700000000,
        };
        assert_eq!(
            authorization("EXO123", "secret-value", &post),
            "EXO2-HMAC-SHA256 credential=EXO123,expires=1700000000,\
             signature=1GojVvs6vYrqytp/HhhjEmCKgOtSmUp2ObCJNfTizAI="
        );
    }

    #[test]
    fn multi_valued_parameters_are_not_signed() {
        let query = pairs(&[("b", "2"), ("a", "1"), ("b", "3"), ("c", "x")]);
        assert_eq!(signed_query_names(&query), vec!["a", "c"]);
        let request = RequestToSign {
            method: "GET",
            path: "/v2/template",
            query: &query,
            body: b"",
            expires: 10,
        };
        assert_eq!(message(&request), b"GET /v2/template\n\n1x\n\n10");
        assert!(authorization("k", "s", &request).contains(",signed-query-args=a;c,"));
    }

    #[test]
    fn parses_what_it_writes() {
        let query = pairs(&[("visibility", "private"), ("family", "debian")]);
        let request = RequestToSign {
            method: "GET",
            path: "/v2/template",
            query: &query,
            body: b"",
            expires: 1700000000,
        };
        let header = authorization("EXOabc", "secret", &request);
        let parsed = parse_authorization(&header).expect("parses");
        assert_eq!(parsed.credential, "EXOabc");
        assert_eq!(parsed.signed_query_args, vec!["family", "visibility"]);
        assert_eq!(parsed.expires, 1700000000);
        assert_eq!(
            parsed.signature,
            signature("secret", &message(&request)),
            "the signature's trailing `=` survive parsing"
        );
        assert_eq!(parse_authorization("Bearer x"), None);
        assert_eq!(
            parse_authorization("EXO2-HMAC-SHA256 credential=a,expires=soon,signature=x"),
            None
        );
        assert_eq!(
            parse_authorization("EXO2-HMAC-SHA256 credential=a,signature=x"),
            None
        );
    }
}
