//! The S3 client: path-style addressing, SigV4 with the zone as region, Exoscale credentials.

use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;

use super::error::StoreError;
use crate::exoscale::Credentials;

/// SigV4 presigned URLs cannot live longer than a week.
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where the bucket is and who talks to it.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The endpoint URL (`https://sos-<zone>.exo.io`, or an override).
    pub endpoint: String,
    /// The zone: the SigV4 region.
    pub zone: String,
    /// The bucket.
    pub bucket: String,
    /// The key and secret (the secret is never logged).
    pub credentials: Credentials,
}

/// A connected bucket.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    pub(crate) client: aws_sdk_s3::Client,
    pub(crate) bucket: String,
    endpoint: String,
}

impl ObjectStore {
    /// A client for `config.bucket`. Only checks the endpoint's shape; nothing is sent.
    pub fn new(config: &StoreConfig) -> Result<Self, StoreError> {
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(StoreError::Config(format!(
                "the SOS endpoint `{endpoint}` is not an http(s) URL: set \"sos_endpoint\" (or EXOSCALE_SOS_ENDPOINT) to e.g. https://sos-ch-gva-2.exo.io"
            )));
        }
        let credentials = aws_sdk_s3::config::Credentials::new(
            config.credentials.key(),
            config.credentials.secret().expose(),
            None,
            None,
            "kiln",
        );
        let s3_config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.zone.clone()))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .credentials_provider(credentials)
            // A dead connection must not hang a build: connecting is quick or fails, and an
            // answer (counted from the start of a part's upload) comes within 10 minutes.
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(15))
                    .read_timeout(std::time::Duration::from_secs(600))
                    .build(),
            )
            // kiln retries parts itself (and aborts the upload when it gives up).
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            // The whole-file MD5 is computed as the parts are read; no extra CRC pass.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(s3_config),
            bucket: config.bucket.clone(),
            endpoint,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether the bucket exists (and these credentials may use it).
    pub async fn bucket_exists(&self) -> Result<bool, StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(true),
            Err(err) => {
                let not_found = err.as_service_error().is_some_and(|e| e.is_not_found());
                if not_found {
                    Ok(false)
                } else {
                    Err(StoreError::request(
                        format!("HeadBucket {}", self.bucket),
                        &err,
                    ))
                }
            }
        }
    }

    /// The zone the bucket lives in, as the object store says (S3's GetBucketLocation, which
    /// Exoscale's SOS answers from any zone, as the `exo` CLI relies on); `None` when it does
    /// not say (no such bucket, an empty constraint, a server without the call).
    pub async fn bucket_zone(&self) -> Option<String> {
        let answer = self
            .client
            .get_bucket_location()
            .bucket(&self.bucket)
            .send()
            .await
            .ok()?;
        answer
            .location_constraint()
            .map(|c| c.as_str().trim().to_string())
            .filter(|zone| !zone.is_empty())
    }

    /// Makes sure the bucket exists: creates it when `create`, else a [`StoreError::NoBucket`]
    /// telling how to fix it. Returns whether it was created.
    pub async fn ensure_bucket(&self, create: bool) -> Result<bool, StoreError> {
        if self.bucket_exists().await? {
            return Ok(false);
        }
        if !create {
            return Err(StoreError::NoBucket {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
            });
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| StoreError::request(format!("CreateBucket {}", self.bucket), &e))?;
        Ok(true)
    }

    /// A URL that GETs `key` without credentials for `valid_for` (at most [`MAX_PRESIGN`]).
    pub async fn presigned_get(
        &self,
        key: &str,
        valid_for: Duration,
    ) -> Result<String, StoreError> {
        let presigning = PresigningConfig::expires_in(valid_for.min(MAX_PRESIGN))
            .map_err(|e| StoreError::Config(format!("presigned URL lifetime: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| StoreError::request(format!("presigning GET {key}"), &e))?;
        Ok(request.uri().to_string())
    }

    /// Deletes `key` (no error when it is already gone).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| StoreError::request(format!("DeleteObject {key}"), &e))?;
        Ok(())
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(err) => Err(StoreError::request(format!("HeadObject {key}"), &err)),
        }
    }

    /// Aborts every multipart upload of `key` still open (one cut off when its upload was
    /// dropped mid-way, e.g. by a cancelled build). Returns how many were aborted.
    pub async fn abort_pending(&self, key: &str) -> Result<usize, StoreError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .map_err(|e| StoreError::request("ListMultipartUploads", &e))?;
        let mut aborted = 0;
        for upload in listed.uploads() {
            let (Some(found), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            if found != key {
                continue;
            }
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| StoreError::request(format!("AbortMultipartUpload {key}"), &e))?;
            aborted += 1;
        }
        Ok(aborted)
    }

    /// The keys of multipart uploads started and neither completed nor aborted.
    pub async fn pending_uploads(&self) -> Result<Vec<String>, StoreError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| StoreError::request("ListMultipartUploads", &e))?;
        Ok(listed
            .uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_string))
            .collect())
    }
}
