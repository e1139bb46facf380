//! Errors of the object store, each saying what failed and what to do.

use thiserror::Error;

/// What went wrong talking to the object store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The endpoint URL or another setting cannot be used.
    #[error("object store: {0}")]
    Config(String),
    /// The bucket does not exist and `bucket_create` is off.
    #[error(
        "bucket `{bucket}` does not exist at {endpoint}: create it, or set \"bucket_create\": true in the exoscale-import post-processor"
    )]
    NoBucket {
        /// The bucket.
        bucket: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// A request failed (after retries where they apply).
    #[error("object store: {operation} failed: {message}")]
    Request {
        /// What kiln was doing (`UploadPart 3 of 40`, `HeadBucket`, …).
        operation: String,
        /// The server's or the transport's explanation.
        message: String,
    },
    /// The file to upload could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upload was cancelled (the multipart upload was aborted).
    #[error("upload cancelled (the partial upload was aborted)")]
    Cancelled,
}

impl StoreError {
    /// A failed request, with the SDK error's whole chain of causes.
    pub(crate) fn request(
        operation: impl Into<String>,
        err: &(impl std::error::Error + 'static),
    ) -> Self {
        Self::Request {
            operation: operation.into(),
            message: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
        }
    }
}
