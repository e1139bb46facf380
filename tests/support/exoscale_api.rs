//! A strict Exoscale API v2 test server on 127.0.0.1, for the `exoscale` client's tests and
//! `kiln templates`.
//!
//! It implements `/template`, `/template/{id}`, `/operation/{id}` and `/zone` as
//! `../shared/reference/exoscale-openapi-v2.yaml` describes them, under `/{zone}/v2` (so the
//! client's endpoint override is `http://127.0.0.1:PORT/{zone}/v2`):
//!
//! - every request's EXO2-HMAC-SHA256 signature and expiry are verified (403
//!   `{"message":"Invalid request signature"}` otherwise) by [`exo2`], the server's own
//!   implementation of the documented algorithm (not kiln's signer);
//! - request bodies are checked against the spec (required fields, types, lengths, enums; and,
//!   stricter than the spec, unknown fields) — 400 with a message;
//! - registration is asynchronous: the server downloads the template URL, checks the MD5
//!   (`checksum`) and the qcow2 virtual size (10 GiB–1000 GiB, from the qcow2 header), and
//!   keeps the operation pending for a few polls before it succeeds or fails with a reason;
//! - faults on demand: 500 / 429 answers, a dropped connection, a registration that fails
//!   with a reason, an operation that never finishes.
//!
//! The server is written from the spec, not from kiln's client types, so the two check each
//! other. It runs on its own runtime, so sync tests (that run the `kiln` binary) can use it.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::Digest;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// The server's own EXO2-HMAC-SHA256 verifier, written from Exoscale's documentation.
#[path = "exo2_verify.rs"]
pub mod exo2;

/// The zones of `#/components/schemas/zone-name`.
pub const ZONES: &[&str] = &[
    "ch-dk-2", "de-muc-1", "ch-gva-2", "at-vie-1", "de-fra-1", "bg-sof-1", "at-vie-2", "hr-zag-1",
];

/// The API key the server accepts by default.
pub const TEST_KEY: &str = "EXOtest0123456789abcdef01";
/// The API secret the server accepts by default.
pub const TEST_SECRET: &str = "test-secret-0123456789-abcdefghijklmnopqrst";

/// The smallest and largest virtual size Exoscale accepts.
pub const MIN_SIZE: u64 = 10 << 30;
/// See [`MIN_SIZE`].
pub const MAX_SIZE: u64 = 1000 << 30;

/// A fault injected into the next request(s), before anything else is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and `{"message": …}`.
    Status(u16),
    /// Read the request, then close the connection without answering.
    Drop,
}

/// How the next asynchronous operations (registration, copy) end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationOutcome {
    /// As the checks say (registration: download, MD5, size).
    Normal,
    /// Fail with this reason (an enum value of the spec) and message.
    Fail {
        /// `reason` of the operation.
        reason: String,
        /// `message` of the operation.
        message: String,
    },
    /// Stay pending forever.
    Never,
}

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, zone prefix included.
    pub path: String,
    /// The status answered (0: connection dropped).
    pub status: u16,
}

struct Op {
    zone: String,
    state: &'static str,
    reason: Option<String>,
    message: Option<String>,
    reference: Option<String>,
    command: &'static str,
    /// Polls to answer `pending` before the outcome is shown.
    polls_left: u32,
    /// The outcome once known (registration: after the download and the checks).
    outcome: Option<Result<Value, (String, String)>>,
    never: bool,
}

struct State {
    key: String,
    secret: String,
    /// Templates by zone, each a JSON object as the API returns it.
    templates: Vec<(String, Value)>,
    operations: HashMap<String, Op>,
    faults: VecDeque<Fault>,
    /// Zones that answer every request with this status.
    failing_zones: HashMap<String, u16>,
    /// The next this many operation polls answer this status.
    failing_polls: Option<(u32, u16)>,
    /// When set, `GET /zone` gives each zone's endpoint on this server (`http://ADDR`)
    /// instead of Exoscale's.
    advertised: Option<String>,
    /// The next this many copies fail with this reason.
    failing_copies: Option<(u32, String)>,
    /// Polls an asynchronous operation stays pending.
    pending_polls: u32,
    outcome: OperationOutcome,
    seen: Vec<Seen>,
    downloads: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

/// The server; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    state: Shared,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl ApiServer {
    /// Starts a server on a free port of 127.0.0.1 that accepts [`TEST_KEY`] /
    /// [`TEST_SECRET`]; asynchronous operations stay pending for 2 polls.
    pub fn start() -> ApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the API server");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            key: TEST_KEY.into(),
            secret: TEST_SECRET.into(),
            templates: Vec::new(),
            operations: HashMap::new(),
            faults: VecDeque::new(),
            failing_zones: HashMap::new(),
            failing_polls: None,
            advertised: None,
            failing_copies: None,
            pending_polls: 2,
            outcome: OperationOutcome::Normal,
            seen: Vec::new(),
            downloads: Vec::new(),
        }));
        let shared = state.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, shared.clone()));
            }
        });
        ApiServer {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// The endpoint override for the client: `http://127.0.0.1:PORT/{zone}/v2`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{{zone}}/v2", self.addr)
    }

    /// The API base of one zone.
    pub fn base(&self, zone: &str) -> String {
        format!("http://{}/{zone}/v2", self.addr)
    }

    /// Queues faults for the next requests, in order.
    pub fn inject(&self, faults: &[Fault]) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Makes every request to `zone` answer `status` from now on.
    pub fn fail_zone(&self, zone: &str, status: u16) {
        self.state
            .lock()
            .unwrap()
            .failing_zones
            .insert(zone.to_string(), status);
    }

    /// Makes the next `count` polls of an operation (`GET /operation/{id}`, in any zone)
    /// answer `status`; other requests are answered as usual.
    pub fn fail_polls(&self, count: u32, status: u16) {
        self.state.lock().unwrap().failing_polls = Some((count, status));
    }

    /// Makes `GET /zone` give each zone's `api-endpoint` on this server
    /// (`http://127.0.0.1:PORT/{zone}/v2`), so a client that finds zones from one endpoint
    /// (as the `exo` CLI does) can follow them here.
    pub fn advertise_own_endpoints(&self) {
        self.state.lock().unwrap().advertised = Some(format!("http://{}", self.addr));
    }

    /// Makes the next `count` template copies end in failure with `reason` (an enum value
    /// of the spec: `busy`, `conflict`, …), as Exoscale answers a copy of a template that is
    /// being copied elsewhere.
    pub fn fail_next_copies(&self, count: u32, reason: &str) {
        self.state.lock().unwrap().failing_copies = Some((count, reason.to_string()));
    }

    /// How many polls asynchronous operations stay pending from now on.
    pub fn set_pending_polls(&self, polls: u32) {
        self.state.lock().unwrap().pending_polls = polls;
    }

    /// How the next asynchronous operations end.
    pub fn set_outcome(&self, outcome: OperationOutcome) {
        self.state.lock().unwrap().outcome = outcome;
    }

    /// Adds a template to `zone` as the API would return it (`id` and `zones` are filled in
    /// when missing); returns its id.
    pub fn add_template(&self, zone: &str, mut template: Value) -> String {
        let id = template["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        template["id"] = json!(id);
        if template.get("zones").is_none() {
            template["zones"] = json!([zone]);
        }
        self.state
            .lock()
            .unwrap()
            .templates
            .push((zone.to_string(), template));
        id
    }

    /// The templates of `zone`.
    pub fn templates(&self, zone: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .templates
            .iter()
            .filter(|(z, _)| z == zone)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The URLs the server downloaded for registrations.
    pub fn downloads(&self) -> Vec<String> {
        self.state.lock().unwrap().downloads.clone()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn connection(mut stream: TcpStream, state: Shared) {
    let drop_it = {
        let mut s = state.lock().unwrap();
        if s.faults.front() == Some(&Fault::Drop) {
            s.faults.pop_front();
            true
        } else {
            false
        }
    };
    if drop_it {
        // Read the request head so the client has sent it, then hang up.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let mut words = line.split_whitespace();
        let seen = Seen {
            method: words.next().unwrap_or_default().to_string(),
            path: words.next().unwrap_or_default().to_string(),
            status: 0,
        };
        state.lock().unwrap().seen.push(seen);
        return;
    }
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(state, req).await) }
    });
    let _ = http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, json!({ "message": message.into() }))
}

async fn handle(state: Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let fault = {
        let mut s = state.lock().unwrap();
        let zone = path.split('/').nth(1).unwrap_or_default();
        let is_poll = method == "GET" && path.contains("/v2/operation/");
        match (s.failing_zones.get(zone), s.faults.front(), s.failing_polls) {
            (Some(status), _, _) => Some(Fault::Status(*status)),
            (None, Some(Fault::Status(_)), _) => s.faults.pop_front(),
            (None, None, Some((left, status))) if is_poll && left > 0 => {
                s.failing_polls = Some((left - 1, status));
                Some(Fault::Status(status))
            }
            _ => None,
        }
    };
    let (status, value) = match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, format!("injected fault {code}"))
        }
        _ => route(
            &state,
            &method,
            &path,
            &raw_query,
            authorization.as_deref(),
            &body,
        ),
    };
    state.lock().unwrap().seen.push(Seen {
        method,
        path,
        status: status.as_u16(),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("a response")
}

fn query_pairs(raw: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{raw}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn route(
    state: &Shared,
    method: &str,
    path: &str,
    raw_query: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Answer {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (zone, rest) = match segments.as_slice() {
        [zone, "v2", rest @ ..] if ZONES.contains(zone) => (zone.to_string(), rest.to_vec()),
        _ => return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    };
    let mut s = state.lock().unwrap();
    let received = exo2::Received {
        method,
        path,
        raw_query,
        body,
        authorization,
    };
    if exo2::verify(&s.key, &s.secret, now(), &received).is_err() {
        return error(StatusCode::FORBIDDEN, "Invalid request signature");
    }
    let query = query_pairs(raw_query);
    match (method, rest.as_slice()) {
        ("GET", ["zone"]) => list_zones(&s),
        ("GET", ["template"]) => list_templates(&s, &zone, &query),
        ("POST", ["template"]) => register(state, &mut s, &zone, body),
        (_, ["template", id]) => {
            if !is_uuid(id) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid id `{id}`: expected a UUID"),
                );
            }
            let Some(index) = s
                .templates
                .iter()
                .position(|(z, t)| z == &zone && t["id"] == *id)
            else {
                return error(StatusCode::NOT_FOUND, format!("template {id} not found"));
            };
            match method {
                "GET" => (StatusCode::OK, s.templates[index].1.clone()),
                "PUT" => update(&mut s, &zone, index, body),
                "DELETE" => {
                    s.templates.remove(index);
                    let op = finished_op(&mut s, &zone, id, "delete-template");
                    (StatusCode::OK, op)
                }
                "POST" => copy(&mut s, &zone, index, body),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            }
        }
        ("GET", ["operation", id]) => poll(&mut s, id),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {method} {path}"),
        ),
    }
}

fn list_zones(s: &State) -> Answer {
    let zones: Vec<Value> = ZONES
        .iter()
        .map(|z| {
            let api = match &s.advertised {
                Some(base) => format!("{base}/{z}/v2"),
                None => format!("https://api-{z}.exoscale.com/v2"),
            };
            json!({
                "name": z,
                "api-endpoint": api,
                "sos-endpoint": format!("https://sos-{z}.exo.io"),
            })
        })
        .collect();
    (StatusCode::OK, json!({ "zones": zones }))
}

fn list_templates(s: &State, zone: &str, query: &[(String, String)]) -> Answer {
    let mut visibility = None;
    let mut family = None;
    for (name, value) in query {
        match name.as_str() {
            "visibility" if value == "private" || value == "public" => visibility = Some(value),
            "visibility" => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid visibility `{value}`: expected private or public"),
                );
            }
            "family" => family = Some(value),
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{other}`"),
                );
            }
        }
    }
    let templates: Vec<Value> = s
        .templates
        .iter()
        .filter(|(z, t)| {
            z == zone
                && visibility.is_none_or(|v| t["visibility"] == **v)
                && family.is_none_or(|f| t["family"] == **f)
        })
        .map(|(_, t)| t.clone())
        .collect();
    (StatusCode::OK, json!({ "templates": templates }))
}

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok()
}

/// A property of a request body schema.
#[derive(Clone, Copy)]
enum Prop {
    Str {
        min: usize,
        max: usize,
    },
    Bool,
    PositiveInt,
    Enum(&'static [&'static str]),
    /// An object, checked separately.
    Object,
}

/// Checks `body` against an object schema: a JSON object, only known properties, each of its
/// type, the required ones present. The error message names the property.
fn check_object(
    body: &Value,
    props: &[(&str, Prop)],
    required: &[&str],
    what: &str,
) -> Result<(), String> {
    let Some(object) = body.as_object() else {
        return Err(format!("{what}: the body must be a JSON object"));
    };
    for (name, value) in object {
        let Some((_, prop)) = props.iter().find(|(n, _)| n == name) else {
            return Err(format!("{what}: unknown property `{name}`"));
        };
        let ok = match *prop {
            Prop::Str { min, max } => value
                .as_str()
                .is_some_and(|v| (min..=max).contains(&v.chars().count())),
            Prop::Bool => value.is_boolean(),
            Prop::PositiveInt => value.as_i64().is_some_and(|v| v > 0),
            Prop::Enum(values) => value.as_str().is_some_and(|v| values.contains(&v)),
            Prop::Object => value.is_object(),
        };
        if !ok {
            let expected = match *prop {
                Prop::Str { min, max } => format!("a string of {min} to {max} characters"),
                Prop::Bool => "a boolean".into(),
                Prop::PositiveInt => "an integer > 0".into(),
                Prop::Enum(values) => format!("one of {}", values.join(", ")),
                Prop::Object => "an object".into(),
            };
            return Err(format!("{what}: `{name}` must be {expected}, got {value}"));
        }
    }
    for name in required {
        if !object.contains_key(*name) {
            return Err(format!("{what}: missing required property `{name}`"));
        }
    }
    Ok(())
}

fn parse_body(body: &[u8]) -> Result<Value, Answer> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

const NAME: Prop = Prop::Str { min: 1, max: 255 };
const LONG: usize = usize::MAX;

fn register(state: &Shared, s: &mut State, zone: &str, body: &[u8]) -> Answer {
    let value = match parse_body(body) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let props = [
        ("application-consistent-snapshot-enabled", Prop::Bool),
        ("maintainer", NAME),
        ("description", Prop::Str { min: 0, max: 255 }),
        ("ssh-key-enabled", Prop::Bool),
        ("name", NAME),
        ("default-user", NAME),
        ("size", Prop::PositiveInt),
        ("password-enabled", Prop::Bool),
        ("build", NAME),
        ("checksum", Prop::Str { min: 1, max: LONG }),
        ("boot-mode", Prop::Enum(&["legacy", "uefi"])),
        ("url", Prop::Str { min: 1, max: LONG }),
        ("version", NAME),
    ];
    let required = [
        "name",
        "url",
        "checksum",
        "ssh-key-enabled",
        "password-enabled",
    ];
    if let Err(message) = check_object(&value, &props, &required, "register-template") {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let op_id = uuid::Uuid::new_v4().to_string();
    let never = s.outcome == OperationOutcome::Never;
    let preset = match &s.outcome {
        OperationOutcome::Fail { reason, message } => Some(Err((reason.clone(), message.clone()))),
        _ => None,
    };
    s.operations.insert(
        op_id.clone(),
        Op {
            zone: zone.to_string(),
            state: "pending",
            reason: None,
            message: None,
            reference: None,
            command: "register-template",
            polls_left: s.pending_polls,
            outcome: preset.clone(),
            never,
        },
    );
    if preset.is_none() && !never {
        let shared = state.clone();
        let (op, zone) = (op_id.clone(), zone.to_string());
        tokio::spawn(async move {
            let url = value["url"].as_str().unwrap_or_default().to_string();
            shared.lock().unwrap().downloads.push(url.clone());
            let outcome = check_image(&url, &value).await.map(|size| {
                let mut t = json!({
                    "id": uuid::Uuid::new_v4().to_string(),
                    "name": value["name"],
                    "size": size,
                    "boot-mode": value.get("boot-mode").cloned().unwrap_or(json!("legacy")),
                    "created-at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "visibility": "private",
                    "zones": [zone],
                    "checksum": value["checksum"],
                    "url": value["url"],
                    "ssh-key-enabled": value["ssh-key-enabled"],
                    "password-enabled": value["password-enabled"],
                });
                for key in ["description", "default-user", "build", "version", "maintainer"] {
                    if let Some(v) = value.get(key) {
                        t[key] = v.clone();
                    }
                }
                t
            });
            if let Some(o) = shared.lock().unwrap().operations.get_mut(&op) {
                o.outcome = Some(outcome);
            }
        });
    }
    (StatusCode::OK, op_json(&s.operations[&op_id], &op_id))
}

/// Downloads the image, checks its MD5 and its qcow2 virtual size; the size, or the failure
/// reason and message.
async fn check_image(url: &str, request: &Value) -> Result<u64, (String, String)> {
    let fail = |message: String| Err(("incorrect".to_string(), message));
    let response = match reqwest::get(url).await {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot download {url}: {e}")),
    };
    if !response.status().is_success() {
        return fail(format!(
            "cannot download {url}: HTTP {}",
            response.status().as_u16()
        ));
    }
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return fail(format!("download of {url} interrupted: {e}")),
    };
    let md5 = hex::encode(md5::Md5::digest(&bytes));
    let expected = request["checksum"].as_str().unwrap_or_default();
    if !md5.eq_ignore_ascii_case(expected) {
        return fail(format!(
            "checksum mismatch: the image's MD5 is {md5}, the request says {expected}"
        ));
    }
    if bytes.len() < 32 || &bytes[..4] != b"QFI\xfb" {
        return fail("the image is not in qcow2 format".to_string());
    }
    let size = u64::from_be_bytes(bytes[24..32].try_into().unwrap_or_default());
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return fail(format!(
            "invalid virtual size {size} bytes: it must be between 10 GiB and 1000 GiB"
        ));
    }
    Ok(size)
}

fn op_json(op: &Op, id: &str) -> Value {
    let mut v = json!({ "id": id, "state": op.state });
    if let Some(r) = &op.reason {
        v["reason"] = json!(r);
    }
    if let Some(m) = &op.message {
        v["message"] = json!(m);
    }
    let mut reference = json!({ "command": op.command });
    if let Some(r) = &op.reference {
        reference["id"] = json!(r);
        reference["link"] = json!(format!("/v2/template/{r}"));
    }
    v["reference"] = reference;
    v
}

/// An operation that is already done (rename, delete).
fn finished_op(s: &mut State, zone: &str, template: &str, command: &'static str) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    let op = Op {
        zone: zone.to_string(),
        state: "success",
        reason: None,
        message: None,
        reference: Some(template.to_string()),
        command,
        polls_left: 0,
        outcome: None,
        never: false,
    };
    let v = op_json(&op, &id);
    s.operations.insert(id, op);
    v
}

fn poll(s: &mut State, id: &str) -> Answer {
    if !is_uuid(id) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid id `{id}`: expected a UUID"),
        );
    }
    let Some(op) = s.operations.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, format!("operation {id} not found"));
    };
    if op.state == "pending" && !op.never {
        if op.polls_left > 0 {
            op.polls_left -= 1;
        } else if let Some(outcome) = op.outcome.take() {
            match outcome {
                Ok(template) => {
                    op.state = "success";
                    op.reference = template["id"].as_str().map(str::to_string);
                    let zone = template["zones"][0]
                        .as_str()
                        .unwrap_or(&op.zone)
                        .to_string();
                    s.templates.push((zone, template));
                }
                Err((reason, message)) => {
                    op.state = "failure";
                    op.reason = Some(reason);
                    op.message = Some(message);
                }
            }
        }
    }
    let op = &s.operations[id];
    (StatusCode::OK, op_json(op, id))
}

fn update(s: &mut State, zone: &str, index: usize, body: &[u8]) -> Answer {
    let value = match parse_body(body) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let props = [
        ("name", NAME),
        ("description", Prop::Str { min: 0, max: 255 }),
    ];
    if let Err(message) = check_object(&value, &props, &[], "update-template") {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let template = &mut s.templates[index].1;
    for key in ["name", "description"] {
        if let Some(v) = value.get(key) {
            template[key] = v.clone();
        }
    }
    let id = template["id"].as_str().unwrap_or_default().to_string();
    (StatusCode::OK, finished_op(s, zone, &id, "update-template"))
}

fn copy(s: &mut State, zone: &str, index: usize, body: &[u8]) -> Answer {
    let value = match parse_body(body) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    if let Err(message) = check_object(
        &value,
        &[("target-zone", Prop::Object)],
        &["target-zone"],
        "copy-template",
    ) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let target = &value["target-zone"];
    if let Err(message) = check_object(
        target,
        &[
            ("name", Prop::Enum(ZONES)),
            ("api-endpoint", Prop::Str { min: 0, max: LONG }),
            ("sos-endpoint", Prop::Str { min: 0, max: LONG }),
        ],
        &["name"],
        "copy-template: target-zone",
    ) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let target_zone = target["name"].as_str().unwrap_or_default().to_string();
    if target_zone == zone {
        return error(
            StatusCode::BAD_REQUEST,
            format!("copy-template: the template is already in {zone}"),
        );
    }
    let mut copy = s.templates[index].1.clone();
    copy["id"] = json!(uuid::Uuid::new_v4().to_string());
    copy["zones"] = json!([target_zone]);
    copy["created-at"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let failing = match &mut s.failing_copies {
        Some((left, reason)) if *left > 0 => {
            *left -= 1;
            Some(reason.clone())
        }
        _ => None,
    };
    let outcome = match (&s.outcome, failing) {
        (_, Some(reason)) => Err((
            reason,
            "the template is being copied to another zone".into(),
        )),
        (OperationOutcome::Fail { reason, message }, None) => {
            Err((reason.clone(), message.clone()))
        }
        _ => Ok(copy),
    };
    let op_id = uuid::Uuid::new_v4().to_string();
    let op = Op {
        zone: zone.to_string(),
        state: "pending",
        reason: None,
        message: None,
        reference: None,
        command: "copy-template",
        polls_left: s.pending_polls,
        outcome: Some(outcome),
        never: s.outcome == OperationOutcome::Never,
    };
    let v = op_json(&op, &op_id);
    s.operations.insert(op_id, op);
    (StatusCode::OK, v)
}
