//! The secret of an OpenSSH ed25519 private key, for leak checks: its 32-byte seed, read
//! from the key file's documented format (OpenSSH's PROTOCOL.key), and the forms it could
//! leak in (raw, hex, base64). The first line of every unencrypted key's PEM body is the same
//! ("openssh-key-v1", no cipher, no KDF, one key): searching for it proves nothing about a key.

#![allow(dead_code)]

use base64::Engine;

/// Reads one `string` (u32 length, then the bytes) at `*at`.
fn string<'a>(data: &'a [u8], at: &mut usize) -> &'a [u8] {
    let len = u32::from_be_bytes(data[*at..*at + 4].try_into().unwrap()) as usize;
    let value = &data[*at + 4..*at + 4 + len];
    *at += 4 + len;
    value
}

/// The seed of the unencrypted ed25519 key `pem` (`ssh-keygen -t ed25519 -N ""`; decrypt an
/// encrypted one first with `ssh-keygen -p -N ""` on a copy).
pub fn ed25519_seed(pem: &str) -> [u8; 32] {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let data = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("an OpenSSH key's base64 body");
    let magic = b"openssh-key-v1\0";
    assert_eq!(&data[..magic.len()], magic, "not an OpenSSH private key");
    let mut at = magic.len();
    assert_eq!(
        string(&data, &mut at),
        b"none",
        "an encrypted key: decrypt it first"
    );
    let _kdf = string(&data, &mut at);
    let _kdf_options = string(&data, &mut at);
    at += 4; // the number of keys (1)
    let _public = string(&data, &mut at);
    let private = string(&data, &mut at).to_vec();
    let mut at = 8; // two check integers
    assert_eq!(string(&private, &mut at), b"ssh-ed25519");
    let public = string(&private, &mut at).to_vec();
    let secret = string(&private, &mut at); // seed ‖ public key
    assert_eq!(secret.len(), 64, "an ed25519 secret is 64 bytes");
    assert_eq!(
        &secret[32..],
        public,
        "the key file was read at the wrong place"
    );
    secret[..32].try_into().unwrap()
}

/// The forms the key's secret could take in a file, a log or a command line: the raw seed,
/// its hex (both cases) and its base64.
pub fn secret_forms(seed: &[u8; 32]) -> Vec<Vec<u8>> {
    let hex = hex::encode(seed);
    vec![
        seed.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(seed)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(seed)
            .into_bytes(),
    ]
}

const PEM_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const PEM_END: &str = "-----END OPENSSH PRIVATE KEY-----";

/// Whether `haystack` holds the key whose seed is `seed`: one of its [`secret_forms`], or an
/// OpenSSH private key block of it in any encoding (kiln re-encodes the keys it stores; an
/// encrypted block counts too: kiln never writes a private key out).
pub fn holds_key(haystack: &[u8], seed: &[u8; 32]) -> bool {
    if secret_forms(seed)
        .iter()
        .any(|form| haystack.windows(form.len()).any(|w| w == form.as_slice()))
    {
        return true;
    }
    let text = String::from_utf8_lossy(haystack);
    text.split(PEM_BEGIN).skip(1).any(|rest| {
        let Some(block) = rest.split(PEM_END).next() else {
            return false;
        };
        let pem = format!("{PEM_BEGIN}{block}{PEM_END}");
        std::panic::catch_unwind(|| ed25519_seed(&pem))
            .map(|found| found == *seed)
            .unwrap_or(true)
    })
}

/// The seed of the key in the file at `path`; an encrypted key is decrypted (a copy, with
/// `passphrase`) by ssh-keygen first, since kiln keeps imported keys decrypted.
pub fn key_seed(path: &std::path::Path, passphrase: &str) -> [u8; 32] {
    let pem = if passphrase.is_empty() {
        std::fs::read_to_string(path).unwrap()
    } else {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("key");
        std::fs::copy(path, &copy).unwrap();
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-p", "-P", passphrase, "-N", "", "-f"])
            .arg(&copy)
            .status()
            .expect("ssh-keygen (openssh-client)");
        assert!(ok.success(), "ssh-keygen decrypts the key");
        std::fs::read_to_string(&copy).unwrap()
    };
    ed25519_seed(&pem)
}
