//! The HTTP side of the API client: one zone's base URL, signed requests, retries, error
//! answers turned into [`ApiError`]s with the API's message.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::backoff::{PollSchedule, RetryPolicy};
use super::credentials::Credentials;
use super::error::ApiError;
use super::model::ZoneList;
use super::sign::{self, RequestToSign};
use super::zone;

/// Tunables of a [`Client`]; the defaults suit the real service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientOptions {
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// How operations are polled, and for how long.
    pub poll: PollSchedule,
    /// How long each request's signature stays valid.
    pub signature_validity: Duration,
    /// How long one request may take (connect, send, answer).
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            poll: PollSchedule::default(),
            signature_validity: sign::DEFAULT_VALIDITY,
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientOptions {
    /// The defaults, waiting at most `api_timeout` for operations (the recipe's
    /// `api_timeout` of `exoscale-import`).
    pub fn with_api_timeout(api_timeout: Duration) -> Self {
        let mut options = Self::default();
        options.poll.timeout = api_timeout;
        options
    }
}

/// A client of one zone's Exoscale API v2.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    zone: String,
    credentials: Credentials,
    options: ClientOptions,
    /// Set when `base` is an endpoint to find the zone's own API from (`GET /zone`), as the
    /// `exo` CLI reads `EXOSCALE_API_ENDPOINT` without `{zone}`; holds what was found.
    discovered: Option<Arc<tokio::sync::OnceCell<Url>>>,
}

/// The longest excerpt of a non-JSON error body shown to the user.
const BODY_EXCERPT: usize = 200;

impl Client {
    /// A client of `zone`, at its standard endpoint or at `endpoint_override` (`{zone}`
    /// replaced).
    pub fn new(
        zone: &str,
        endpoint_override: Option<&str>,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, ApiError> {
        let base = zone::api_base(zone, endpoint_override)?;
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::InvalidEndpoint {
                endpoint: base.to_string(),
                reason: format!("cannot make an HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            base,
            zone: zone.to_string(),
            credentials,
            options,
            discovered: None,
        })
    }

    /// A client of `zone` at the endpoint an `EXOSCALE_API_ENDPOINT`-style `setting` names:
    /// with `{zone}` in it, that template; without, one endpoint from which the zone's own
    /// is found with `GET /zone` on the first request (what the `exo` CLI does), so a setting
    /// made for `exo` does not send every zone's requests to one zone; none, the zone's
    /// standard endpoint.
    pub fn with_endpoint_setting(
        zone: &str,
        setting: Option<&str>,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, ApiError> {
        let setting = setting.map(str::trim).filter(|s| !s.is_empty());
        let mut client = Self::new(zone, setting, credentials, options)?;
        if setting.is_some_and(|s| !s.contains(zone::ZONE_PLACEHOLDER)) {
            client.discovered = Some(Arc::default());
        }
        Ok(client)
    }

    /// [`Client::with_endpoint_setting`] with `EXOSCALE_API_ENDPOINT`.
    pub fn from_environment(
        zone: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, ApiError> {
        let setting = zone::endpoint_override_from_env();
        Self::with_endpoint_setting(zone, setting.as_deref(), credentials, options)
    }

    /// The zone's API base: the endpoint given, or the one `GET /zone` there names for it.
    async fn zone_base(&self) -> Result<Url, ApiError> {
        let Some(found) = &self.discovered else {
            return Ok(self.base.clone());
        };
        found
            .get_or_try_init(|| async {
                let url = under(&self.base, &["zone"], &[]);
                let bytes = self.send(&Method::GET, &url, &[], None).await?;
                let list: ZoneList =
                    decode(&bytes).map_err(|detail| ApiError::InvalidResponse {
                        method: "GET".into(),
                        url: url.to_string(),
                        detail,
                    })?;
                let endpoint = list
                    .zones
                    .iter()
                    .find(|z| z.name == self.zone)
                    .and_then(|z| z.api_endpoint.as_deref());
                match endpoint {
                    Some(endpoint) => zone::api_base(&self.zone, Some(endpoint)),
                    None => Err(ApiError::ZoneNotListed {
                        zone: self.zone.clone(),
                        endpoint: self.base.to_string(),
                        listed: list
                            .zones
                            .iter()
                            .map(|z| z.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            })
            .await
            .cloned()
    }

    /// The zone this client talks to.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The API base URL (`…/v2`): the zone's own once it was found (see
    /// [`Client::with_endpoint_setting`]), else the endpoint given.
    pub fn base_url(&self) -> &Url {
        self.discovered
            .as_ref()
            .and_then(|found| found.get())
            .unwrap_or(&self.base)
    }

    /// The client's options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends a signed request and decodes a success answer as `T`. Retries connection
    /// errors, 429 and 5xx answers as [`RetryPolicy`] says; a `POST` (not idempotent) is
    /// retried only when it certainly did not take effect (no connection, 429, 503).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let url = under(&self.zone_base().await?, segments, query);
        let bytes = self.send(&method, &url, query, body).await?;
        decode(&bytes).map_err(|detail| ApiError::InvalidResponse {
            method: method.to_string(),
            url: url.to_string(),
            detail,
        })
    }

    async fn send(
        &self,
        method: &Method,
        url: &Url,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ApiError> {
        let idempotent = *method != Method::POST;
        let policy = self.options.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= max_attempts;
            let request = self.signed(method, url, query, body.as_deref());
            let (retryable, error, retry_after) = match request.send().await {
                Err(e) => {
                    let retryable = idempotent || e.is_connect();
                    let error = ApiError::Transport {
                        method: method.to_string(),
                        url: url.to_string(),
                        detail: error_chain(&e),
                        attempts: attempt,
                    };
                    (retryable, error, None)
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(&response);
                    let bytes = match response.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) => {
                            let error = ApiError::Transport {
                                method: method.to_string(),
                                url: url.to_string(),
                                detail: format!("reading the answer: {}", error_chain(&e)),
                                attempts: attempt,
                            };
                            if last || !idempotent {
                                return Err(error);
                            }
                            tracing::debug!("{error}; retrying");
                            tokio::time::sleep(policy.delay_after(attempt)).await;
                            continue;
                        }
                    };
                    if status.is_success() {
                        return Ok(bytes);
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE
                        || (idempotent && status.is_server_error());
                    (
                        retryable,
                        status_error(method, url, status, &bytes, attempt),
                        retry_after,
                    )
                }
            };
            if !retryable || last {
                return Err(error);
            }
            let delay = retry_after
                .map(|d| d.min(policy.max_delay))
                .unwrap_or_else(|| policy.delay_after(attempt));
            tracing::debug!("{error}; retrying in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    fn signed(
        &self,
        method: &Method,
        url: &Url,
        query: &[(String, String)],
        body: Option<&[u8]>,
    ) -> reqwest::RequestBuilder {
        let expires = unix_now() + self.options.signature_validity.as_secs() as i64;
        let to_sign = RequestToSign {
            method: method.as_str(),
            path: url.path(),
            query,
            body: body.unwrap_or_default(),
            expires,
        };
        let authorization = sign::authorization(
            self.credentials.key(),
            self.credentials.secret().expose(),
            &to_sign,
        );
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        request
    }
}

/// The URL of `segments` under `base`, each segment escaped, with `query`.
fn under(base: &Url, segments: &[&str], query: &[(String, String)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    }
    url
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Retry-After` in seconds, when the answer has one.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn status_error(
    method: &Method,
    url: &Url,
    status: StatusCode,
    body: &[u8],
    attempts: u32,
) -> ApiError {
    let message = api_message(body);
    let (method, url) = (method.to_string(), url.to_string());
    match status {
        StatusCode::FORBIDDEN => ApiError::Forbidden {
            method,
            url,
            message,
        },
        StatusCode::NOT_FOUND => ApiError::NotFound {
            method,
            url,
            message,
        },
        _ => ApiError::Status {
            method,
            url,
            status: status.as_u16(),
            message,
            attempts,
        },
    }
}

/// What an error answer says: its JSON `message`, else `error`, else an RFC 9457 problem's
/// `title`, `detail` and `errors` (what Exoscale's gateways and its Go client read), else the
/// start of the body as text.
pub fn api_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body)
        && let Some(message) = json_error_message(&fields)
    {
        return message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_string();
    }
    let mut excerpt: String = text.chars().take(BODY_EXCERPT).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    excerpt.replace(['\n', '\r'], " ")
}

/// The message of a JSON error body, when it has one in a field kiln knows.
fn json_error_message(fields: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let text = |key: &str| {
        fields
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    if let Some(message) = text("message").or_else(|| text("error")) {
        return Some(message.to_string());
    }
    let mut parts: Vec<String> = [text("title"), text("detail")]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    if let Some(errors) = fields.get("errors").and_then(serde_json::Value::as_array) {
        parts.extend(errors.iter().filter_map(|e| {
            match e {
                serde_json::Value::String(s) => Some(s.trim().to_string()),
                serde_json::Value::Object(o) => ["detail", "message", "title"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(serde_json::Value::as_str))
                    .map(|s| s.trim().to_string()),
                _ => None,
            }
        }));
    }
    parts.retain(|p| !p.is_empty());
    parts.dedup();
    (!parts.is_empty()).then(|| parts.join(": "))
}

/// Decodes a success answer; the error says what did not fit.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "{e} (the answer starts with: {})",
            api_message(body).chars().take(80).collect::<String>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_messages() {
        assert_eq!(
            api_message(br#"{"message":"no such thing"}"#),
            "no such thing"
        );
        assert_eq!(api_message(b""), "(no message)");
        assert_eq!(
            api_message(b"<html>\nBad Gateway</html>"),
            "<html> Bad Gateway</html>"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            api_message(long.as_bytes()).chars().count(),
            BODY_EXCERPT + 1
        );
        assert_eq!(api_message(&[0xff, 0xfe]), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn api_messages_from_error_and_problem_bodies() {
        assert_eq!(
            api_message(br#"{"error":"quota exceeded"}"#),
            "quota exceeded"
        );
        assert_eq!(
            api_message(br#"{"message":" ","error":"fallback"}"#),
            "fallback"
        );
        assert_eq!(
            api_message(
                br#"{"type":"about:blank","title":"Bad Request","detail":"name too long","status":400}"#
            ),
            "Bad Request: name too long"
        );
        assert_eq!(
            api_message(
                br#"{"title":"Invalid body","errors":[{"detail":"name: too long","pointer":"/name"},"url: required"]}"#
            ),
            "Invalid body: name: too long: url: required"
        );
        // A JSON body with none of those fields is shown as text.
        assert_eq!(api_message(br#"{"status":502}"#), r#"{"status":502}"#);
    }

    #[test]
    fn api_timeout_bounds_the_polling() {
        let o = ClientOptions::with_api_timeout(Duration::from_secs(90));
        assert_eq!(o.poll.timeout, Duration::from_secs(90));
        assert_eq!(o.poll.first_delay, Duration::from_secs(3));
        assert_eq!(o.retry, RetryPolicy::default());
    }

    #[test]
    fn urls_escape_each_segment() {
        let c = Client::new(
            "de-fra-1",
            Some("http://127.0.0.1:1/{zone}/v2"),
            Credentials::new("k", crate::base::secret::Secret::new("s")).unwrap(),
            ClientOptions::default(),
        )
        .unwrap();
        let url = under(
            c.base_url(),
            &["template", "a b/c"],
            &[("family".to_string(), "x&y".to_string())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/de-fra-1/v2/template/a%20b%2Fc?family=x%26y"
        );
        assert_eq!(url.path(), "/de-fra-1/v2/template/a%20b%2Fc");
    }
}
