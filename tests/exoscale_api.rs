//! The Exoscale API client against the strict API test server on 127.0.0.1: every endpoint,
//! signatures and expiry, bad bodies, 404, retries (429, 500, dropped connections),
//! operation failures and timeouts, and registration with a real download of a qcow2.

#[path = "support/exoscale_api.rs"]
mod exoscale_api;
#[path = "support/image_server.rs"]
mod image_server;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use exoscale_api::{ApiServer, Fault, OperationOutcome, TEST_KEY, TEST_SECRET};
use image_server::ImageServer;
use kiln::exoscale::model::{TemplateList, Zone};
use kiln::exoscale::{
    ApiError, Client, ClientOptions, Credentials, Operation, PollSchedule, RegisterTemplate,
    RetryPolicy, TemplateFilter, Visibility, client, sign,
};
use kiln::recipe::secret::Secret;
use md5::Digest;
use serde_json::json;

fn fast_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        poll: PollSchedule {
            first_delay: Duration::from_millis(10),
            factor: 1.5,
            max_delay: Duration::from_millis(50),
            timeout: Duration::from_secs(20),
        },
        ..ClientOptions::default()
    }
}

fn client_for(server: &ApiServer, zone: &str, options: ClientOptions) -> Client {
    let credentials = Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap();
    Client::new(zone, Some(&server.endpoint()), credentials, options).unwrap()
}

/// A sparse qcow2 of `size` (e.g. "10G") made by qemu-img; its bytes.
fn qcow2(dir: &Path, size: &str) -> Vec<u8> {
    let path = dir.join(format!("disk-{size}.qcow2"));
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size)
        .output()
        .expect("qemu-img runs (apt-get install qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

fn register_request(name: &str, url: String, image: &[u8]) -> RegisterTemplate {
    RegisterTemplate {
        name: name.to_string(),
        url,
        checksum: hex::encode(md5::Md5::digest(image)),
        ssh_key_enabled: true,
        password_enabled: false,
        description: Some("built by kiln's tests".into()),
        default_user: Some("debian".into()),
        boot_mode: Some("uefi"),
        build: None,
        version: Some("1.0".into()),
        maintainer: None,
    }
}

/// A request signed by hand, to reach the server with what kiln's client never sends.
async fn raw(
    server: &ApiServer,
    method: &str,
    path: &str,
    body: &str,
    secret: &str,
    expires: i64,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", server.base("de-fra-1"));
    let url = reqwest::Url::parse(&url).unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let request = sign::RequestToSign {
        method,
        path: url.path(),
        query: &query,
        body: body.as_bytes(),
        expires,
    };
    let auth = sign::authorization(TEST_KEY, secret, &request);
    let response = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

fn in_ten_minutes() -> i64 {
    chrono::Utc::now().timestamp() + 600
}

#[tokio::test]
async fn zones_are_listed_with_a_valid_signature() {
    let server = ApiServer::start();
    let zones: Vec<Zone> = client_for(&server, "ch-gva-2", fast_options())
        .list_zones()
        .await
        .unwrap();
    let mut names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
    names.sort();
    let mut known = kiln::exoscale::zone::EXOSCALE_ZONES.to_vec();
    known.sort();
    assert_eq!(names, known);
    assert_eq!(
        zones[0].api_endpoint.as_deref(),
        Some(format!("https://api-{}.exoscale.com/v2", zones[0].name).as_str())
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_with_the_advice() {
    let server = ApiServer::start();
    let credentials = Credentials::new(TEST_KEY, Secret::new("not-the-secret")).unwrap();
    let client = Client::new(
        "de-fra-1",
        Some(&server.endpoint()),
        credentials,
        fast_options(),
    )
    .unwrap();
    let err = client
        .list_templates(&TemplateFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Invalid request signature"), "{text}");
    assert!(
        text.contains("the API key or secret is wrong, or the key lacks the rights — check the profile in Credentials"),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "{text}");
    // 403 is not retried: one request.
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn expired_tampered_and_missing_signatures_are_refused() {
    let server = ApiServer::start();
    let forbidden = (403, json!({"message": "Invalid request signature"}));
    let expired = chrono::Utc::now().timestamp() - 5;
    assert_eq!(
        raw(&server, "GET", "/zone", "", TEST_SECRET, expired).await,
        forbidden
    );
    // The same request, still valid, passes: the expiry was the only fault.
    assert_eq!(
        raw(&server, "GET", "/zone", "", TEST_SECRET, in_ten_minutes())
            .await
            .0,
        200
    );
    // A query parameter added after signing.
    let url = format!("{}/template", server.base("de-fra-1"));
    let request = sign::RequestToSign {
        method: "GET",
        path: "/de-fra-1/v2/template",
        query: &[],
        body: b"",
        expires: in_ten_minutes(),
    };
    let auth = sign::authorization(TEST_KEY, TEST_SECRET, &request);
    let http = reqwest::Client::new();
    let tampered = http
        .get(format!("{url}?visibility=public"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status().as_u16(), 403);
    // No Authorization header at all.
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&anonymous.bytes().await.unwrap()).unwrap(),
        forbidden.1
    );
}

/// A fixed request and what it must be signed as: reference vectors for EXO2-HMAC-SHA256.
struct Vector {
    method: &'static str,
    path: &'static str,
    /// The query string as sent on the wire (form-encoded, the way kiln's client writes it).
    raw_query: &'static str,
    /// The same parameters decoded, in the order of the URL: what kiln's signer is given.
    query: &'static [(&'static str, &'static str)],
    body: &'static str,
    /// The five-line message of Exoscale's documentation.
    message: &'static str,
    /// The whole `Authorization` header.
    header: &'static str,
}

/// 2100-01-01T00:00:00Z: far enough for the server's verifier to accept the vectors today.
const VECTOR_EXPIRES: i64 = 4102444800;

/// The signatures were computed outside Rust, with Python 3's standard library, from the
/// documented algorithm (the decoded query values of the GET come from `parse_qsl`):
///
/// ```text
/// python3 -c '
/// import hmac,hashlib,base64,urllib.parse as u
/// s=b"test-secret-0123456789-abcdefghijklmnopqrst"; e="4102444800"
/// def sig(m): return base64.b64encode(hmac.new(s,m.encode(),hashlib.sha256).digest()).decode()
/// print(sig("\n".join(["PUT /v2/template/4f4b6a3e-2c5d-4e8f-9a1b-0c2d3e4f5a6b","{\"name\":\"kiln-debian-13\",\"description\":\"Debian 13, été build\"}","","",e])))
/// print(sig("\n".join(["DELETE /v2/template/4f4b6a3e-2c5d-4e8f-9a1b-0c2d3e4f5a6b","","","",e])))
/// q=dict(u.parse_qsl("visibility=private&family=debian+13%2F%C3%A9t%C3%A9+a%2Bb")); print(q)
/// print(sig("\n".join(["GET /v2/template","","".join(q[k] for k in sorted(q)),"",e])))
/// '
/// ```
///
/// which prints `9xEKDasTxelHWBeAPfNVx+jL0AU6rEJ4ZELtlYTdRnc=`,
/// `9ilupSRD8RQRCbMsLsWceiC5Q5mX4USA0fn5f5WvMes=`,
/// `{'visibility': 'private', 'family': 'debian 13/été a+b'}` and
/// `qYxhSxP1i+SG9Xkg2ku0SHVbzy5kNwuHgU4y+tN0ArA=`. (The same one-liner gives egoscale's own
/// test vector, `Ntbq/p0HVmA3Zg1HHY+Lq1vjFGi7HeMrrgXDS5jRNlY=` for `GET /v2/zone` with the
/// secret `"X" * 43` and expiry 3376684800.) Key and secret are the test server's.
const VECTORS: &[Vector] = &[
    Vector {
        method: "PUT",
        path: "/v2/template/4f4b6a3e-2c5d-4e8f-9a1b-0c2d3e4f5a6b",
        raw_query: "",
        query: &[],
        body: r#"{"name":"kiln-debian-13","description":"Debian 13, été build"}"#,
        message: "PUT /v2/template/4f4b6a3e-2c5d-4e8f-9a1b-0c2d3e4f5a6b\n\
                  {\"name\":\"kiln-debian-13\",\"description\":\"Debian 13, été build\"}\n\
                  \n\
                  \n\
                  4102444800",
        header: "EXO2-HMAC-SHA256 credential=EXOtest0123456789abcdef01,expires=4102444800,\
                 signature=9xEKDasTxelHWBeAPfNVx+jL0AU6rEJ4ZELtlYTdRnc=",
    },
    Vector {
        method: "DELETE",
        path: "/v2/template/4f4b6a3e-2c5d-4e8f-9a1b-0c2d3e4f5a6b",
        raw_query: "",
        query: &[],
        body: "",
        message: "DELETE /v2/template/4f4b6a3e-2c5d-4e8f-9a1b-0c2d3e4f5a6b\n\n\n\n4102444800",
        header: "EXO2-HMAC-SHA256 credential=EXOtest0123456789abcdef01,expires=4102444800,\
                 signature=9ilupSRD8RQRCbMsLsWceiC5Q5mX4USA0fn5f5WvMes=",
    },
    Vector {
        method: "GET",
        path: "/v2/template",
        // A space (`+`), `/`, `+` and `é` in a value; the names out of alphabetical order.
        raw_query: "visibility=private&family=debian+13%2F%C3%A9t%C3%A9+a%2Bb",
        query: &[("visibility", "private"), ("family", "debian 13/été a+b")],
        body: "",
        message: "GET /v2/template\n\ndebian 13/été a+bprivate\n\n4102444800",
        header: "EXO2-HMAC-SHA256 credential=EXOtest0123456789abcdef01,\
                 signed-query-args=family;visibility,expires=4102444800,\
                 signature=qYxhSxP1i+SG9Xkg2ku0SHVbzy5kNwuHgU4y+tN0ArA=",
    },
];

/// `text` with its character at `at` (ASCII) replaced by another one.
fn one_char_changed(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    assert!(bytes[at].is_ascii());
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn kiln_signs_the_reference_vectors_and_the_server_verifies_them_independently() {
    use exoscale_api::exo2::{self, Received, Refusal};
    let now = chrono::Utc::now().timestamp();
    for v in VECTORS {
        let pairs: Vec<(String, String)> = v
            .query
            .iter()
            .map(|(n, val)| (n.to_string(), val.to_string()))
            .collect();
        // The wire form decodes to the pairs kiln's signer is given.
        let decoded: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(n, val)| (n.clone().into_bytes(), val.clone().into_bytes()))
            .collect();
        assert_eq!(
            exo2::decode_query(v.raw_query),
            Some(decoded),
            "{}",
            v.method
        );

        // (a) kiln's signer: the documented message and exactly the reference header.
        let request = sign::RequestToSign {
            method: v.method,
            path: v.path,
            query: &pairs,
            body: v.body.as_bytes(),
            expires: VECTOR_EXPIRES,
        };
        assert_eq!(
            String::from_utf8(sign::message(&request)).unwrap(),
            v.message,
            "{}",
            v.method
        );
        assert_eq!(
            sign::authorization(TEST_KEY, TEST_SECRET, &request),
            v.header,
            "{}",
            v.method
        );

        // (b) the server's own verifier accepts the reference request…
        let received = Received {
            method: v.method,
            path: v.path,
            raw_query: v.raw_query,
            body: v.body.as_bytes(),
            authorization: Some(v.header),
        };
        let verify = |r: &Received<'_>| exo2::verify(TEST_KEY, TEST_SECRET, now, r);
        assert_eq!(verify(&received), Ok(()), "{}", v.method);
        // …and refuses it with any one character changed: in the signature (first and last
        // base64 digit), the expiry, the method, the path, the body, the query values.
        let sig_at = v.header.find("signature=").unwrap() + "signature=".len();
        let last_digit = v.header.trim_end_matches('=').len() - 1;
        for at in [sig_at, last_digit] {
            let header = one_char_changed(v.header, at);
            let r = Received {
                authorization: Some(&header),
                ..received
            };
            assert_eq!(verify(&r), Err(Refusal::BadSignature), "{header}");
        }
        let header = v.header.replace("=4102444800", "=4102444801");
        let r = Received {
            authorization: Some(&header),
            ..received
        };
        assert_eq!(verify(&r), Err(Refusal::BadSignature), "{header}");
        let method = one_char_changed(v.method, 0);
        let r = Received {
            method: &method,
            ..received
        };
        assert_eq!(verify(&r), Err(Refusal::BadSignature), "{method}");
        let path = one_char_changed(v.path, v.path.len() - 1);
        let r = Received {
            path: &path,
            ..received
        };
        assert_eq!(verify(&r), Err(Refusal::BadSignature), "{path}");
        if !v.body.is_empty() {
            let body = one_char_changed(v.body, 10);
            let r = Received {
                body: body.as_bytes(),
                ..received
            };
            assert_eq!(verify(&r), Err(Refusal::BadSignature), "{body}");
        }
        // A body where the signed request had none.
        let r = Received {
            body: b"{}",
            ..received
        };
        assert_eq!(verify(&r), Err(Refusal::BadSignature), "{}", v.method);
        // The other checks, on the same request.
        assert_eq!(
            exo2::verify(TEST_KEY, TEST_SECRET, VECTOR_EXPIRES + 1, &received),
            Err(Refusal::Expired)
        );
        assert_eq!(
            exo2::verify("EXOsomeoneelse", TEST_SECRET, now, &received),
            Err(Refusal::UnknownKey)
        );
        assert_eq!(
            exo2::verify(TEST_KEY, "another-secret", now, &received),
            Err(Refusal::BadSignature)
        );
        let extra = format!("{}&zone=de-fra-1", v.raw_query);
        let r = Received {
            raw_query: extra.trim_start_matches('&'),
            ..received
        };
        assert_eq!(verify(&r), Err(Refusal::UnsignedParameter), "{extra}");
    }

    // The query values are signed decoded: `%20` for `+`, `%2f` for `%2F` and a literal `/`
    // are the same request; a literal `+` (a space) where `%2B` was is not, nor is a `%2B`
    // where a `+` was.
    let get = VECTORS.iter().find(|v| v.method == "GET").unwrap();
    let received = Received {
        method: get.method,
        path: get.path,
        raw_query: get.raw_query,
        body: b"",
        authorization: Some(get.header),
    };
    for same in [
        "visibility=private&family=debian%2013%2F%C3%A9t%C3%A9%20a%2Bb",
        "family=debian+13/%c3%a9t%c3%a9+a%2bb&visibility=private",
    ] {
        let r = Received {
            raw_query: same,
            ..received
        };
        assert_eq!(
            exo2::verify(TEST_KEY, TEST_SECRET, now, &r),
            Ok(()),
            "{same}"
        );
    }
    for changed in [
        "visibility=private&family=debian+13%2F%C3%A9t%C3%A9+a+b",
        "visibility=private&family=debian%2B13%2F%C3%A9t%C3%A9+a%2Bb",
        "visibility=private&family=debian+13%2F%C3%A9t%C3%A8+a%2Bb",
        "visibility=privatf&family=debian+13%2F%C3%A9t%C3%A9+a%2Bb",
    ] {
        let r = Received {
            raw_query: changed,
            ..received
        };
        assert_eq!(
            exo2::verify(TEST_KEY, TEST_SECRET, now, &r),
            Err(Refusal::BadSignature),
            "{changed}"
        );
    }
    // A signed name that is not in the query, a repeated one, an undecodable query.
    let missing = get
        .header
        .replace("family;visibility", "family;visibility;zone");
    let repeated = get
        .header
        .replace("family;visibility", "family;family;visibility");
    for header in [&missing, &repeated] {
        let r = Received {
            authorization: Some(header),
            ..received
        };
        assert_eq!(
            exo2::verify(TEST_KEY, TEST_SECRET, now, &r),
            Err(Refusal::BadSignedParameter),
            "{header}"
        );
    }
    let r = Received {
        raw_query: "visibility=private&family=debian%2",
        ..received
    };
    assert_eq!(
        exo2::verify(TEST_KEY, TEST_SECRET, now, &r),
        Err(Refusal::BadQuery)
    );
}

#[tokio::test]
async fn bodies_the_spec_rejects_get_400_with_a_message() {
    let server = ApiServer::start();
    let id = server.add_template("de-fra-1", json!({"name": "t", "visibility": "private"}));
    let cases = [
        (
            "POST",
            "/template".to_string(),
            "{not json",
            "invalid JSON body",
        ),
        (
            "POST",
            "/template".to_string(),
            r#"{"name":"n","url":"http://x","checksum":"c","ssh-key-enabled":true}"#,
            "missing required property `password-enabled`",
        ),
        (
            "POST",
            "/template".to_string(),
            r#"{"name":"n","url":"http://x","checksum":"c","ssh-key-enabled":"yes","password-enabled":false}"#,
            "`ssh-key-enabled` must be a boolean",
        ),
        (
            "POST",
            "/template".to_string(),
            r#"{"name":"n","url":"http://x","checksum":"c","ssh-key-enabled":true,"password-enabled":false,"boot-mode":"bios"}"#,
            "`boot-mode` must be one of legacy, uefi",
        ),
        (
            "POST",
            "/template".to_string(),
            r#"{"name":"n","url":"http://x","checksum":"c","ssh-key-enabled":true,"password-enabled":false,"ssh_key_enabled":true}"#,
            "unknown property `ssh_key_enabled`",
        ),
        (
            "PUT",
            format!("/template/{id}"),
            r#"{"name":""}"#,
            "`name` must be a string of 1 to 255 characters",
        ),
        (
            "POST",
            format!("/template/{id}"),
            r#"{"target-zone":{"name":"xx-nowhere-1"}}"#,
            "`name` must be one of",
        ),
        (
            "POST",
            format!("/template/{id}"),
            r#"{"target-zone":"de-muc-1"}"#,
            "`target-zone` must be an object",
        ),
        (
            "GET",
            "/template?visibility=secret".to_string(),
            "",
            "invalid visibility `secret`",
        ),
        (
            "GET",
            "/template/not-a-uuid".to_string(),
            "",
            "expected a UUID",
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) =
            raw(&server, method, &path, body, TEST_SECRET, in_ten_minutes()).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{method} {path} {body}: {message}"
        );
    }
    // Through the client: the API's message reaches the user.
    let client = client_for(&server, "de-fra-1", fast_options());
    let mut request = register_request("x", "http://127.0.0.1:9/x".into(), b"");
    request.name = String::new();
    let err = client.register_template(&request).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("`name` must be a string"), "{err}");
    // 400 is not retried.
    assert_eq!(server.seen().iter().filter(|s| s.status == 400).count(), 11);
}

#[tokio::test]
async fn unknown_templates_and_operations_are_404() {
    let server = ApiServer::start();
    let client = client_for(&server, "de-fra-1", fast_options());
    let missing = uuid::Uuid::new_v4().to_string();
    for err in [
        client.get_template(&missing).await.unwrap_err(),
        client.delete_template(&missing).await.unwrap_err(),
        client.rename_template(&missing, "x").await.unwrap_err(),
        client
            .copy_template(&missing, "de-muc-1")
            .await
            .unwrap_err(),
        client.operation(&missing).await.map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains(&missing), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }
    // A template of another zone is not found in this one.
    let elsewhere = server.add_template("at-vie-1", json!({"name": "t"}));
    assert!(matches!(
        client.get_template(&elsewhere).await.unwrap_err(),
        ApiError::NotFound { .. }
    ));
}

#[tokio::test]
async fn status_500_and_429_are_retried_then_succeed() {
    let server = ApiServer::start();
    server.add_template("de-fra-1", json!({"name": "kept", "visibility": "private"}));
    server.inject(&[Fault::Status(500), Fault::Status(429), Fault::Status(503)]);
    let client = client_for(&server, "de-fra-1", fast_options());
    let templates = client
        .list_templates(&TemplateFilter::default())
        .await
        .unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].name.as_deref(), Some("kept"));
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![500, 429, 503, 200]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = ApiServer::start();
    server.inject(&[Fault::Status(500); 6]);
    let client = client_for(&server, "de-fra-1", fast_options());
    let err = client
        .list_templates(&TemplateFilter::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Status {
                status: 500,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("injected fault 500"), "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_reads_but_not_for_a_registration() {
    let server = ApiServer::start();
    server.inject(&[Fault::Drop, Fault::Drop]);
    let client = client_for(&server, "de-fra-1", fast_options());
    let templates = client
        .list_templates(&TemplateFilter::default())
        .await
        .unwrap();
    assert!(templates.is_empty());
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![0, 0, 200]);

    // A POST whose connection drops may have been taken into account: not retried, and the
    // error says what happened.
    server.inject(&[Fault::Drop]);
    let request = register_request("x", "http://127.0.0.1:9/x".into(), b"");
    let err = client.start_register_template(&request).await.unwrap_err();
    assert!(
        matches!(err, ApiError::Transport { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("check the network"), "{err}");
    assert_eq!(server.seen().len(), 4);
    // A 429 on a POST is retried: the server did not take it.
    server.inject(&[Fault::Status(429)]);
    server.set_outcome(OperationOutcome::Never);
    let op: Operation = client.start_register_template(&request).await.unwrap();
    assert_eq!(op.state, kiln::exoscale::OperationState::Pending);
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error_after_retries() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let credentials = Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap();
    let client = Client::new(
        "de-fra-1",
        Some(&format!("http://127.0.0.1:{port}/{{zone}}/v2")),
        credentials,
        fast_options(),
    )
    .unwrap();
    let err = client.list_zones().await.unwrap_err();
    assert!(
        matches!(err, ApiError::Transport { attempts: 4, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn registration_downloads_checks_and_lists_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let image = qcow2(dir.path(), "10G");
    let files = ImageServer::start().await;
    files.add("/images/debian.qcow2", image.clone());
    let server = ApiServer::start();
    server.set_pending_polls(3);
    let client = client_for(&server, "de-fra-1", fast_options());
    let url = files.url("/images/debian.qcow2");
    let template = client
        .register_template(&register_request("Debian 12 kiln", url.clone(), &image))
        .await
        .unwrap();
    assert_eq!(server.downloads(), vec![url.clone()]);
    assert_eq!(template.name.as_deref(), Some("Debian 12 kiln"));
    assert_eq!(template.size, Some(10 << 30));
    assert_eq!(template.boot_mode.as_deref(), Some("uefi"));
    assert_eq!(template.default_user.as_deref(), Some("debian"));
    assert_eq!(template.visibility.as_deref(), Some("private"));
    assert_eq!(template.zones, vec!["de-fra-1".to_string()]);
    assert_eq!(template.url.as_deref(), Some(url.as_str()));
    let age = chrono::Utc::now() - template.created().expect("created-at");
    assert!(age.num_seconds() < 60, "{age}");
    // Pending for 3 polls, then the 4th shows the outcome.
    let polls = server
        .seen()
        .iter()
        .filter(|s| s.path.contains("/operation/"))
        .count();
    assert!(polls >= 4, "{polls} polls");

    let private = client
        .list_templates(&TemplateFilter {
            visibility: Some(Visibility::Private),
            family: None,
        })
        .await
        .unwrap();
    assert_eq!(private, vec![template.clone()]);
    let public = client
        .list_templates(&TemplateFilter {
            visibility: Some(Visibility::Public),
            family: None,
        })
        .await
        .unwrap();
    assert!(public.is_empty());
    // Not in another zone.
    let other = client_for(&server, "at-vie-1", fast_options());
    assert!(
        other
            .list_templates(&TemplateFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_bad_image_fails_the_operation_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let small = qcow2(dir.path(), "5G");
    let good = qcow2(dir.path(), "10G");
    let files = ImageServer::start().await;
    files.add("/small.qcow2", small.clone());
    files.add("/good.qcow2", good.clone());
    files.add("/raw.img", vec![0u8; 4096]);
    let server = ApiServer::start();
    server.set_pending_polls(1);
    let client = client_for(&server, "ch-gva-2", fast_options());

    let err = client
        .register_template(&register_request(
            "small",
            files.url("/small.qcow2"),
            &small,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::OperationFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("(incorrect)"), "{text}");
    assert!(text.contains("between 10 GiB and 1000 GiB"), "{text}");
    assert!(
        text.contains("registering template \"small\" in ch-gva-2"),
        "{text}"
    );

    let mut wrong_sum = register_request("sum", files.url("/good.qcow2"), &good);
    wrong_sum.checksum = "0".repeat(32);
    let err = client.register_template(&wrong_sum).await.unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");

    let raw_image = vec![0u8; 4096];
    let err = client
        .register_template(&register_request("raw", files.url("/raw.img"), &raw_image))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not in qcow2 format"), "{err}");

    let err = client
        .register_template(&register_request("gone", files.url("/nothing"), &good))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    assert!(server.templates("ch-gva-2").is_empty());
}

#[tokio::test]
async fn an_operation_failure_carries_its_reason_and_message() {
    let server = ApiServer::start();
    server.set_outcome(OperationOutcome::Fail {
        reason: "unavailable".into(),
        message: "template storage is full".into(),
    });
    let client = client_for(&server, "de-fra-1", fast_options());
    let request = register_request("x", "http://127.0.0.1:9/x".into(), b"");
    let err = client.register_template(&request).await.unwrap_err();
    match &err {
        ApiError::OperationFailed {
            reason, message, ..
        } => {
            assert_eq!(reason.as_deref(), Some("unavailable"));
            assert_eq!(message.as_deref(), Some("template storage is full"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("failed (unavailable): template storage is full"),
        "{err}"
    );
}

/// The operation polls the server answered with `status`.
fn polls_answered(server: &ApiServer, status: u16) -> usize {
    server
        .seen()
        .iter()
        .filter(|s| s.path.contains("/operation/") && s.status == status)
        .count()
}

#[tokio::test]
async fn a_few_failed_polls_in_a_row_do_not_end_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let image = qcow2(dir.path(), "10G");
    let files = ImageServer::start().await;
    files.add("/images/debian.qcow2", image.clone());
    let server = ApiServer::start();
    // Each failed poll is 4 attempts (the client's own retries): 3 polls fail in a row,
    // after the registration was accepted. Exoscale goes on registering meanwhile.
    server.fail_polls(3 * 4, 503);
    let client = client_for(&server, "de-fra-1", fast_options());
    let url = files.url("/images/debian.qcow2");
    let template = client
        .register_template(&register_request("through 503s", url, &image))
        .await
        .expect("the registration outlives three failed polls");
    assert_eq!(template.name.as_deref(), Some("through 503s"));
    assert_eq!(polls_answered(&server, 503), 12);
    assert!(polls_answered(&server, 200) >= 1);
    assert_eq!(server.templates("de-fra-1").len(), 1);
}

#[tokio::test]
async fn polls_failing_five_times_in_a_row_end_with_the_operation_id_and_what_to_check() {
    let server = ApiServer::start();
    server.set_outcome(OperationOutcome::Never);
    server.fail_polls(u32::MAX, 503);
    let client = client_for(&server, "de-fra-1", fast_options());
    let request = register_request("unknown", "http://127.0.0.1:9/x".into(), b"");
    let err = client.register_template(&request).await.unwrap_err();
    let ApiError::OperationUnknown {
        id, failed_polls, ..
    } = &err
    else {
        panic!("expected OperationUnknown, got {err:?}");
    };
    assert_eq!(
        *failed_polls,
        kiln::exoscale::operation::POLL_ERRORS_TOLERATED
    );
    let text = err.to_string();
    assert!(text.contains(id.as_str()), "{text}");
    assert!(text.contains("5 polls in a row failed"), "{text}");
    assert!(text.contains("injected fault 503"), "{text}");
    assert!(
        text.contains("kiln templates list --zone de-fra-1"),
        "{text}"
    );
    // 5 polls of 4 attempts each, and not one more.
    assert_eq!(polls_answered(&server, 503), 20);
}

#[tokio::test]
async fn a_refused_key_while_polling_ends_the_wait_at_once() {
    let server = ApiServer::start();
    server.set_outcome(OperationOutcome::Never);
    server.fail_polls(u32::MAX, 403);
    let client = client_for(&server, "de-fra-1", fast_options());
    let request = register_request("refused", "http://127.0.0.1:9/x".into(), b"");
    let err = client.register_template(&request).await.unwrap_err();
    assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
    assert_eq!(polls_answered(&server, 403), 1);
}

/// The paths the server was asked for, in order.
fn paths(server: &ApiServer) -> Vec<String> {
    server.seen().iter().map(|s| s.path.clone()).collect()
}

#[tokio::test]
async fn an_endpoint_setting_without_zone_finds_each_zones_own_endpoint_as_exo_does() {
    let server = ApiServer::start();
    server.advertise_own_endpoints();
    server.add_template(
        "de-fra-1",
        json!({"name": "in Frankfurt", "visibility": "private"}),
    );
    server.add_template(
        "ch-gva-2",
        json!({"name": "in Geneva", "visibility": "private"}),
    );
    let credentials = Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap();
    // What a CI job sets for `exo`: one zone's endpoint.
    let setting = server.base("ch-gva-2");
    let client =
        Client::with_endpoint_setting("de-fra-1", Some(&setting), credentials, fast_options())
            .unwrap();
    for _ in 0..2 {
        let names: Vec<String> = client
            .list_templates(&TemplateFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter_map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["in Frankfurt".to_string()]);
    }
    assert_eq!(client.base_url().as_str(), server.base("de-fra-1"));
    // The zones are asked once, at the endpoint given; then the zone's own is used.
    assert_eq!(
        paths(&server),
        vec![
            "/ch-gva-2/v2/zone".to_string(),
            "/de-fra-1/v2/template".to_string(),
            "/de-fra-1/v2/template".to_string(),
        ]
    );
}

#[tokio::test]
async fn a_zone_the_endpoint_does_not_list_is_an_error_that_lists_them() {
    let server = ApiServer::start();
    server.advertise_own_endpoints();
    let credentials = Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap();
    let client = Client::with_endpoint_setting(
        "xx-nowhere-1",
        Some(&server.base("ch-gva-2")),
        credentials.clone(),
        fast_options(),
    )
    .unwrap();
    let err = client
        .list_templates(&TemplateFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::ZoneNotListed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("`xx-nowhere-1`"), "{text}");
    assert!(text.contains("de-fra-1, "), "{text}");
    assert!(text.contains("EXOSCALE_API_ENDPOINT"), "{text}");
    // A setting with `{zone}` is a template: no zone lookup.
    let templated = Client::with_endpoint_setting(
        "de-fra-1",
        Some(&server.endpoint()),
        credentials,
        fast_options(),
    )
    .unwrap();
    templated
        .list_templates(&TemplateFilter::default())
        .await
        .unwrap();
    assert_eq!(paths(&server).last().unwrap(), "/de-fra-1/v2/template");
    assert_eq!(
        paths(&server)
            .iter()
            .filter(|p| p.ends_with("/zone"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_slow_operation_hits_the_timeout() {
    let server = ApiServer::start();
    server.set_outcome(OperationOutcome::Never);
    let mut options = fast_options();
    options.poll.timeout = Duration::from_millis(400);
    let client = client_for(&server, "de-fra-1", options);
    let request = register_request("slow", "http://127.0.0.1:9/x".into(), b"");
    let started = std::time::Instant::now();
    let err = client.register_template(&request).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, ApiError::OperationTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("still pending after"), "{err}");
    assert!(err.to_string().contains("api_timeout"), "{err}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let polls = server
        .seen()
        .iter()
        .filter(|s| s.path.contains("/operation/"))
        .count();
    assert!(polls >= 5, "backoff polls several times: {polls}");
}

#[tokio::test]
async fn copy_rename_and_delete() {
    let server = ApiServer::start();
    let id = server.add_template(
        "de-fra-1",
        json!({"name": "golden", "size": 10737418240u64, "visibility": "private",
               "boot-mode": "legacy", "created-at": "2026-01-01T00:00:00Z"}),
    );
    let fra = client_for(&server, "de-fra-1", fast_options());
    let copy_id = fra.copy_template(&id, "de-muc-1").await.unwrap();
    assert_ne!(copy_id, id);
    let muc = client_for(&server, "de-muc-1", fast_options());
    let copy = muc.get_template(&copy_id).await.unwrap();
    assert_eq!(copy.name.as_deref(), Some("golden"));
    assert_eq!(copy.zones, vec!["de-muc-1".to_string()]);
    assert_eq!(copy.size, Some(10 << 30));
    // Copying to the zone it is in is refused by the API, with its message.
    let err = fra.copy_template(&id, "de-fra-1").await.unwrap_err();
    assert!(err.to_string().contains("already in de-fra-1"), "{err}");

    fra.rename_template(&id, "golden-2").await.unwrap();
    assert_eq!(
        fra.get_template(&id).await.unwrap().name.as_deref(),
        Some("golden-2")
    );
    // The copy keeps its name.
    assert_eq!(
        muc.get_template(&copy_id).await.unwrap().name.as_deref(),
        Some("golden")
    );

    fra.delete_template(&id).await.unwrap();
    assert!(matches!(
        fra.get_template(&id).await.unwrap_err(),
        ApiError::NotFound { .. }
    ));
    assert_eq!(server.templates("de-muc-1").len(), 1);
}

#[tokio::test]
async fn a_copy_that_ends_busy_or_in_conflict_is_started_again_and_other_failures_are_not() {
    let server = ApiServer::start();
    let id = server.add_template(
        "de-fra-1",
        json!({"name": "golden", "size": 10737418240u64, "visibility": "private"}),
    );
    let fra = client_for(&server, "de-fra-1", fast_options());
    let copies = |server: &ApiServer| {
        server
            .seen()
            .iter()
            .filter(|s| s.method == "POST" && s.path.ends_with(&format!("/template/{id}")))
            .count()
    };
    // Busy twice, then the third copy goes through.
    server.fail_next_copies(2, "busy");
    let copy_id = fra.copy_template(&id, "de-muc-1").await.unwrap();
    assert_eq!(copies(&server), 3);
    assert_eq!(server.templates("de-muc-1").len(), 1);
    assert_ne!(copy_id, id);
    // Conflict every time: given up after COPY_ATTEMPTS, with the reason.
    server.fail_next_copies(10, "conflict");
    let err = fra.copy_template(&id, "at-vie-1").await.unwrap_err();
    assert!(err.to_string().contains("(conflict)"), "{err}");
    assert_eq!(
        copies(&server),
        3 + kiln::exoscale::templates::COPY_ATTEMPTS as usize
    );
    // Another reason is not retried.
    server.fail_next_copies(1, "unavailable");
    let err = fra.copy_template(&id, "at-vie-2").await.unwrap_err();
    assert!(err.to_string().contains("(unavailable)"), "{err}");
    assert_eq!(
        copies(&server),
        4 + kiln::exoscale::templates::COPY_ATTEMPTS as usize
    );
}

#[tokio::test]
async fn family_filter() {
    let server = ApiServer::start();
    server.add_template(
        "de-fra-1",
        json!({"name": "a", "family": "debian", "visibility": "public"}),
    );
    server.add_template(
        "de-fra-1",
        json!({"name": "b", "family": "ubuntu", "visibility": "public"}),
    );
    let client = client_for(&server, "de-fra-1", fast_options());
    let debian = client
        .list_templates(&TemplateFilter {
            visibility: Some(Visibility::Public),
            family: Some("debian".into()),
        })
        .await
        .unwrap();
    assert_eq!(debian.len(), 1);
    assert_eq!(debian[0].name.as_deref(), Some("a"));
}

/// A free-form query value (the family filter of `kiln templates --family`) with a space, `/`,
/// `+` and `é` goes through kiln's client, its URL encoding and its signer, and the server's
/// own verifier accepts it; the `+` is sent encoded (`%2B`), not as a space.
#[tokio::test]
async fn a_family_that_needs_percent_encoding_is_signed_and_accepted() {
    let server = ApiServer::start();
    for family in ["debian 13/été a+b", "debian 13/été a b"] {
        server.add_template(
            "de-fra-1",
            json!({"name": family, "family": family, "visibility": "private"}),
        );
    }
    let client = client_for(&server, "de-fra-1", fast_options());
    let found = client
        .list_templates(&TemplateFilter {
            visibility: Some(Visibility::Private),
            family: Some("debian 13/été a+b".into()),
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name.as_deref(), Some("debian 13/été a+b"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "one request, accepted at once");
    assert_eq!(seen[0].status, 200);
}

/// A raw HTTP server that answers every request with `status` and `body`.
async fn answer_with(status: u16, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}/{{zone}}/v2")
}

#[tokio::test]
async fn odd_answers_are_errors_not_panics() {
    let bodies: Vec<(u16, &[u8])> = vec![
        (200, b""),
        (200, b"<html>Gateway</html>"),
        (200, b"{\"templates\": [{\"id\": 5}]}"),
        (200, b"{\"templates\": \"none\"}"),
        (
            200,
            b"{\"id\": \"x\", \"state\": \"exploded\", \"templates\": 5}",
        ),
        (200, b"{\"templates\": [{\"id\": \"a\", \"size\": -1}]}"),
        (200, &[0xff, 0x00, 0xfe]),
        (400, b"\xff\xfe not utf-8"),
        (418, b"{\"message\": 12}"),
    ];
    let credentials = Credentials::new(TEST_KEY, Secret::new(TEST_SECRET)).unwrap();
    for (status, body) in bodies {
        let endpoint = answer_with(status, body.to_vec()).await;
        let client = Client::new(
            "de-fra-1",
            Some(&endpoint),
            credentials.clone(),
            fast_options(),
        )
        .unwrap();
        let list = client.list_templates(&TemplateFilter::default()).await;
        let op = client.operation(&uuid::Uuid::new_v4().to_string()).await;
        for result in [list.map(|_| ()), op.map(|_| ())] {
            let err = result.expect_err("an odd answer is an error");
            if status == 200 {
                assert!(matches!(err, ApiError::InvalidResponse { .. }), "{err:?}");
                assert!(err.to_string().contains("unexpected answer"), "{err}");
            } else {
                assert_eq!(err.status(), Some(status), "{err:?}");
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_any_body_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = client::decode::<TemplateList>(&body);
        let _ = client::decode::<Operation>(&body);
        let _ = client::decode::<kiln::exoscale::Template>(&body);
        let message = client::api_message(&body);
        proptest::prop_assert!(message.chars().count() <= 201);
    }

    #[test]
    fn decoding_any_json_never_panics(text in "\\{(\"[a-z-]{1,12}\": ?(\"[^\"]{0,10}\"|-?[0-9]{1,25}|true|null|\\[\\]|\\{\\}), ?){0,6}\"id\": ?\"x\"\\}") {
        let _ = client::decode::<TemplateList>(text.as_bytes());
        let _ = client::decode::<Operation>(text.as_bytes());
        let _ = client::decode::<kiln::exoscale::Template>(text.as_bytes());
    }
}
