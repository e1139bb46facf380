//! The Exoscale API v2 client: request signing, zones and endpoints, credentials, templates
//! and asynchronous operations, with retries and typed errors.
//!
//! One [`Client`] talks to one zone. Requests are signed with EXO2-HMAC-SHA256 ([`sign`]);
//! connection errors, 429 and 5xx answers are retried with jitter ([`RetryPolicy`]);
//! operations are polled with backoff up to a timeout ([`PollSchedule`]).

pub mod backoff;
pub mod client;
pub mod credentials;
pub mod describe;
pub mod error;
pub mod model;
pub mod operation;
pub mod sign;
pub mod templates;
pub mod zone;

pub use backoff::{PollSchedule, RetryPolicy};
pub use client::{Client, ClientOptions};
pub use credentials::Credentials;
pub use error::ApiError;
pub use model::{
    Operation, OperationState, RegisterTemplate, Template, TemplateFilter, Visibility,
};
