//! What can go wrong talking to the Exoscale API, each with what to do about it.

use std::time::Duration;

use super::credentials::{KEY_ENV, SECRET_ENV};
use super::zone::{ENDPOINT_ENV, EXOSCALE_ZONES};

/// What 403 means, and where to look.
pub const FORBIDDEN_ADVICE: &str = "the API key or secret is wrong, or the key lacks the rights — check the profile in Credentials";

/// An error of the Exoscale API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials were given.
    #[error(
        "no Exoscale credentials: set {KEY_ENV} and {SECRET_ENV} (an API key with the compute rights)"
    )]
    MissingCredentials,
    /// A zone kiln does not know, without an endpoint override.
    #[error("unknown Exoscale zone `{zone}`: use one of {zones} (or set {ENDPOINT_ENV} with a `{{zone}}` placeholder for another deployment)", zones = EXOSCALE_ZONES.join(", "))]
    UnknownZone {
        /// The zone given.
        zone: String,
    },
    /// `EXOSCALE_API_ENDPOINT` (without `{zone}`) lists no such zone.
    #[error(
        "zone `{zone}` is not among the zones {endpoint}/zone lists ({listed}): {ENDPOINT_ENV} without `{{zone}}` is read as the exo CLI reads it, one endpoint from which each zone's own is found; pick a listed zone, or put `{{zone}}` in {ENDPOINT_ENV} to use it as a template"
    )]
    ZoneNotListed {
        /// The zone asked for.
        zone: String,
        /// The endpoint that listed the zones.
        endpoint: String,
        /// The zones it lists.
        listed: String,
    },
    /// The endpoint override is not a usable URL.
    #[error("API endpoint `{endpoint}` is not usable: {reason}")]
    InvalidEndpoint {
        /// The endpoint, `{zone}` replaced.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// 403: the signature was refused.
    #[error("{method} {url}: access denied (403: {message}): {FORBIDDEN_ADVICE}")]
    Forbidden {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// The API's message.
        message: String,
    },
    /// 404: the thing does not exist (in this zone).
    #[error("{method} {url}: not found (404: {message})")]
    NotFound {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// The API's message.
        message: String,
    },
    /// Any other answer that is not a success, retries exhausted where they apply.
    #[error("{method} {url}: the API answered {status}: {message}{}", attempts_note(*attempts))]
    Status {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The API's message (or the start of the body when it has none).
        message: String,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The request could not be sent or its answer not read.
    #[error("{method} {url}: {detail}{}; check the network and the endpoint", attempts_note(*attempts))]
    Transport {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// What went wrong, with its causes.
        detail: String,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// A success answer whose body is not what the API description says.
    #[error("{method} {url}: unexpected answer from the API: {detail}")]
    InvalidResponse {
        /// The request's method.
        method: String,
        /// The request's URL.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An asynchronous operation ended in failure.
    #[error("operation {id} ({what}) failed{}: {}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(), message.as_deref().unwrap_or("the API gave no message"))]
    OperationFailed {
        /// The operation's id.
        id: String,
        /// What the operation was doing.
        what: String,
        /// The state it ended in (`failure` or `timeout`).
        state: String,
        /// The API's failure reason (`incorrect`, `unavailable`, …).
        reason: Option<String>,
        /// The API's message.
        message: Option<String>,
    },
    /// An asynchronous operation could not be read several polls in a row: how it ends is
    /// not known.
    #[error(
        "operation {id} ({what}): {failed_polls} polls in a row failed, the last with: {last}. The operation may still finish on Exoscale's side: look for the template with `kiln templates list --zone {zone}` in a few minutes"
    )]
    OperationUnknown {
        /// The operation's id.
        id: String,
        /// What the operation was doing.
        what: String,
        /// The zone it runs in.
        zone: String,
        /// How many polls failed in a row.
        failed_polls: u32,
        /// The last poll's error.
        last: String,
    },
    /// An asynchronous operation was still pending when the timeout ran out.
    #[error("operation {id} ({what}) still pending after {}: giving up (raise `api_timeout` to wait longer; the operation may still finish on Exoscale's side)", humanize(*waited))]
    OperationTimeout {
        /// The operation's id.
        id: String,
        /// What the operation was doing.
        what: String,
        /// How long kiln waited.
        waited: Duration,
    },
}

impl ApiError {
    /// Whether an operation was started and how it ends is not known (its polls failed, or
    /// the wait ran out): Exoscale may still finish it.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ApiError::OperationUnknown { .. } | ApiError::OperationTimeout { .. }
        )
    }

    /// The HTTP status the API answered, when this error is an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Forbidden { .. } => Some(403),
            ApiError::NotFound { .. } => Some(404),
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 {
        format!("{} min", s / 60)
    } else if s >= 1 {
        format!("{s} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}
