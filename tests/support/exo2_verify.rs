//! The API test server's own check of Exoscale's EXO2-HMAC-SHA256 request signatures,
//! written from the documented algorithm and NOT from kiln's signer (`src/exoscale/sign.rs`),
//! so that a mistake in kiln's signer cannot be repeated here and go unnoticed.
//!
//! Sources:
//!
//! - the "API Request Signature" topic of Exoscale's API v2 documentation
//!   (<https://openapi-v2.exoscale.com/topic/topic-api-request-signature>, also the
//!   `x-topics` section of egoscale's `v3/generator/source.yaml`);
//! - its reference implementations: egoscale's `v2/api/security.go`
//!   (`SecurityProviderExoscale.signRequest`, `extractRequestParameters`; the same code is
//!   `Client.signRequest` in `v3/api.go`), github.com/exoscale/egoscale at
//!   d767924d0525ec524c07d7a94caa96177b5d0565; and `ExoscaleV2Auth._sign_request` of the
//!   Python package requests-exoscale-auth.
//!
//! What they say, and what this module checks:
//!
//! - The message is five segments joined by `\n` (no trailing newline): `METHOD PATH` with
//!   the path as escaped on the wire (Go: `req.URL.EscapedPath()`), the body (empty when
//!   none), the values of the signed query parameters concatenated without separator, an
//!   empty segment (no header is signed), and the expiry in Unix seconds.
//! - Query values are the *decoded* values (Go: `req.URL.Query()`, i.e. form decoding: `+`
//!   is a space, `%XX` a byte), and names too. Only parameters that occur exactly once can be
//!   signed (Go keeps those with `len(values) == 1`, an empty value included); the clients
//!   list their names sorted (Go `sort.Strings`, byte order) in the `signed-query-args=`
//!   pragma, `;`-separated, so that the values are concatenated in the order of that list.
//!   The server reads the values in the order of the list it is given; it does not re-sort.
//! - `signature = base64(HMAC-SHA256(secret, message))`, standard alphabet with padding.
//! - `Authorization: EXO2-HMAC-SHA256 credential=<key>[,signed-query-args=<n1;n2>],
//!   expires=<unix>,signature=<base64>`; the pragma is left out when nothing is signed.
//!
//! Stricter than necessary, as a test server should be: every parameter that occurs once
//! must be signed, every signed name must occur exactly once, a query that cannot be decoded
//! (a bad `%` escape, a `;` separator, which Go's parser refuses) is refused, and unknown or
//! repeated pragmas are refused. A parameter repeated in the query cannot be signed (the
//! reference clients leave it out), so it is tolerated unsigned.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The first word of the header and the space after it.
const PREFIX: &str = "EXO2-HMAC-SHA256 ";

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header, or not a well-formed EXO2 one.
    Malformed,
    /// `credential` is not the key the server knows.
    UnknownKey,
    /// `expires` is in the past.
    Expired,
    /// The query string cannot be decoded.
    BadQuery,
    /// A parameter that occurs once is missing from `signed-query-args`.
    UnsignedParameter,
    /// A name of `signed-query-args` is repeated, or does not occur exactly once in the query.
    BadSignedParameter,
    /// The HMAC does not match.
    BadSignature,
}

/// A request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path as it was on the wire (still percent-escaped).
    pub path: &'a str,
    /// The query string as it was on the wire, without `?` (empty when none).
    pub raw_query: &'a str,
    /// The body bytes (empty when none).
    pub body: &'a [u8],
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// The pragmas of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// `credential=`
    pub credential: &'a str,
    /// `signed-query-args=`, split on `;` (empty when absent or empty).
    pub signed_query_args: Vec<&'a str>,
    /// `expires=`, as written (decimal digits).
    pub expires: &'a str,
    /// `signature=`, base64.
    pub signature: &'a str,
}

/// Reads an `Authorization` header value.
pub fn parse_header(value: &str) -> Option<Header<'_>> {
    let rest = value.strip_prefix(PREFIX)?;
    let (mut credential, mut args, mut expires, mut signature) = (None, None, None, None);
    for pragma in rest.split(',') {
        // Split at the first `=`: a base64 signature ends with `=` padding.
        let (name, value) = pragma.split_once('=')?;
        let slot = match name {
            "credential" => &mut credential,
            "signed-query-args" => &mut args,
            "expires" => &mut expires,
            "signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let expires = expires?;
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let signed_query_args: Vec<&str> = match args {
        None | Some("") => Vec::new(),
        Some(list) => list.split(';').collect(),
    };
    if signed_query_args.iter().any(|n| n.is_empty()) {
        return None;
    }
    Some(Header {
        credential: credential?,
        signed_query_args,
        expires,
        signature: signature?,
    })
}

/// Decodes an `application/x-www-form-urlencoded` query string into (name, value) byte
/// strings, in order: `&` separates pairs (empty pieces are skipped), the first `=` separates
/// name and value (none: an empty value), `+` is a space, `%XX` is the byte XX. `None` for a
/// `%` not followed by two hex digits, or a `;` (which Go's `url.ParseQuery` refuses).
pub fn decode_query(raw: &str) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut pairs = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        if piece.contains(';') {
            return None;
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        pairs.push((form_decode(name)?, form_decode(value)?));
    }
    Some(pairs)
}

fn form_decode(text: &str) -> Option<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let high = hex(*bytes.get(i + 1)?)?;
                let low = hex(*bytes.get(i + 2)?)?;
                out.push(high << 4 | low);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// The documented message: `METHOD PATH`, body, signed values, (no headers), expiry.
pub fn string_to_sign(
    method: &str,
    path: &str,
    body: &[u8],
    signed_values: &[u8],
    expires: &str,
) -> Vec<u8> {
    let request_line = format!("{method} {path}");
    let headers: &[u8] = b"";
    [
        request_line.as_bytes(),
        body,
        signed_values,
        headers,
        expires.as_bytes(),
    ]
    .join(&b'\n')
}

/// Checks `request`'s signature for the one `key` the server knows, at Unix time `now`.
pub fn verify(key: &str, secret: &str, now: i64, request: &Received<'_>) -> Result<(), Refusal> {
    let header = request
        .authorization
        .and_then(parse_header)
        .ok_or(Refusal::Malformed)?;
    if header.credential != key {
        return Err(Refusal::UnknownKey);
    }
    let expires: i64 = header.expires.parse().map_err(|_| Refusal::Malformed)?;
    if expires < now {
        return Err(Refusal::Expired);
    }
    let query = decode_query(request.raw_query).ok_or(Refusal::BadQuery)?;
    let occurrences = |name: &[u8]| query.iter().filter(|(n, _)| n == name).count();
    for (name, _) in &query {
        let listed = header
            .signed_query_args
            .iter()
            .any(|s| s.as_bytes() == name);
        if occurrences(name) == 1 && !listed {
            return Err(Refusal::UnsignedParameter);
        }
    }
    let mut signed_values = Vec::new();
    for (i, name) in header.signed_query_args.iter().enumerate() {
        let repeated = header.signed_query_args[..i].contains(name);
        if repeated || occurrences(name.as_bytes()) != 1 {
            return Err(Refusal::BadSignedParameter);
        }
        let (_, value) = query
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .ok_or(Refusal::BadSignedParameter)?;
        signed_values.extend_from_slice(value);
    }
    let message = string_to_sign(
        request.method,
        request.path,
        request.body,
        &signed_values,
        header.expires,
    );
    let sent = base64::engine::general_purpose::STANDARD
        .decode(header.signature)
        .map_err(|_| Refusal::BadSignature)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .map_err(|_| Refusal::BadSignature)?;
    mac.update(&message);
    // Constant-time comparison of the raw HMAC, not of its base64 text.
    mac.verify_slice(&sent).map_err(|_| Refusal::BadSignature)
}
