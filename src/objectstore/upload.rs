//! The multipart upload: each part read once, hashed in order into the whole file's MD5, and
//! sent by one of a bounded number of tasks; a failed part is retried, and when the upload
//! gives up or is cancelled it is aborted so no partial upload stays in the bucket.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectCannedAcl};
use md5::Digest as _;
use tokio::io::AsyncReadExt as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::StoreError;
use super::parts::{DEFAULT_PART_SIZE, PartPlan};
use super::progress::UploadProgress;
use super::store::ObjectStore;

/// How to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// Wanted part size (raised to 5 MiB and to what 10,000 parts need).
    pub part_size: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// Attempts per part before the upload gives up.
    pub attempts: u32,
    /// The first wait before retrying a part (doubled at each attempt).
    pub retry_delay: Duration,
    /// Upload with the `public-read` ACL (Packer's behaviour) instead of private.
    pub public_read: bool,
    /// Hash the file's MD5 as it is read (exoscale-import needs it). Off only to measure what
    /// hashing costs (`benches/upload.rs`); the receipt's `md5` is then empty.
    pub compute_md5: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            concurrency: 4,
            attempts: 4,
            retry_delay: Duration::from_secs(1),
            public_read: false,
            compute_md5: true,
        }
    }
}

/// What was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReceipt {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// The MD5 of the whole file, lowercase hex.
    pub md5: String,
    /// How many parts it was sent in.
    pub parts: u64,
}

/// One part, ready to send.
struct Part {
    number: i32,
    body: bytes::Bytes,
}

impl ObjectStore {
    /// Uploads `path` as `key`, reporting progress through `progress` after each part.
    /// On error or cancel the multipart upload is aborted before returning.
    pub async fn upload_file(
        &self,
        path: &Path,
        key: &str,
        options: &UploadOptions,
        progress: &(dyn Fn(UploadProgress) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<UploadReceipt, StoreError> {
        let read_error = |source| StoreError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let size = file.metadata().await.map_err(read_error)?.len();
        let plan = PartPlan::new(size, options.part_size);

        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        if options.public_read {
            create = create.acl(ObjectCannedAcl::PublicRead);
        }
        let created = tokio::select! {
            created = create.send() => created
                .map_err(|e| StoreError::request(format!("CreateMultipartUpload {key}"), &e))?,
            () = cancel.cancelled() => return Err(StoreError::Cancelled),
        };
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        if upload_id.is_empty() {
            return Err(StoreError::Request {
                operation: format!("CreateMultipartUpload {key}"),
                message: "the server returned no upload id".into(),
            });
        }

        let sent = self
            .send_parts(
                &mut file, path, key, &upload_id, plan, options, progress, cancel,
            )
            .await;
        let outcome = match sent {
            Ok((parts, md5)) => {
                self.complete(key, &upload_id, parts)
                    .await
                    .map(|()| UploadReceipt {
                        key: key.to_string(),
                        size,
                        md5,
                        parts: plan.count(),
                    })
            }
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            self.abort(key, &upload_id).await;
        }
        outcome
    }

    /// Reads the parts in order (hashing each once), keeps up to `concurrency` in flight,
    /// and returns the completed parts in order with the file's MD5.
    #[allow(clippy::too_many_arguments)]
    async fn send_parts(
        &self,
        file: &mut tokio::fs::File,
        path: &Path,
        key: &str,
        upload_id: &str,
        plan: PartPlan,
        options: &UploadOptions,
        progress: &(dyn Fn(UploadProgress) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(Vec<CompletedPart>, String), StoreError> {
        let started = Instant::now();
        // The MD5 is computed on its own thread as parts are read, so hashing overlaps the
        // uploads instead of delaying the next read (the buffers are shared, not copied).
        let hasher = options.compute_md5.then(Md5Thread::start);
        let mut tasks: JoinSet<Result<(CompletedPart, u64), StoreError>> = JoinSet::new();
        let mut completed = Vec::with_capacity(plan.count() as usize);
        let mut next = 0;
        let mut done = 0;
        let concurrency = options.concurrency.max(1);
        loop {
            while next < plan.count() && tasks.len() < concurrency {
                let (_, len) = plan.part(next);
                let mut buffer = vec![0; len as usize];
                tokio::select! {
                    read = file.read_exact(&mut buffer) => {
                        read.map_err(|source| StoreError::Read { path: path.display().to_string(), source })?;
                    }
                    () = cancel.cancelled() => return Err(StoreError::Cancelled),
                }
                let body = bytes::Bytes::from(buffer);
                if let Some(hasher) = &hasher {
                    hasher.feed(body.clone()).await;
                }
                let part = Part {
                    number: i32::try_from(next + 1).expect("at most 10,000 parts"),
                    body,
                };
                let store = self.clone();
                let (key, upload_id) = (key.to_string(), upload_id.to_string());
                let (options, cancel, total) = (options.clone(), cancel.clone(), plan.count());
                tasks.spawn(async move {
                    store
                        .send_part(&key, &upload_id, part, total, &options, &cancel)
                        .await
                });
                next += 1;
            }
            if tasks.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = tasks.join_next() => joined.expect("tasks is not empty"),
                () = cancel.cancelled() => return Err(StoreError::Cancelled),
            };
            let (part, len) = joined.map_err(|e| StoreError::Request {
                operation: "UploadPart".into(),
                message: format!("the upload task stopped: {e}"),
            })??;
            done += len;
            progress(UploadProgress::measure(done, plan.file_size, started));
            completed.push(part);
        }
        completed.sort_by_key(|p| p.part_number());
        let md5 = match hasher {
            Some(hasher) => hasher.finish().await?,
            None => String::new(),
        };
        Ok((completed, md5))
    }

    /// Sends one part, retrying up to `options.attempts` times with a doubling delay.
    async fn send_part(
        &self,
        key: &str,
        upload_id: &str,
        part: Part,
        total: u64,
        options: &UploadOptions,
        cancel: &CancellationToken,
    ) -> Result<(CompletedPart, u64), StoreError> {
        let len = part.body.len() as u64;
        let mut delay = options.retry_delay;
        let mut attempt = 1;
        loop {
            let sent = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part.number)
                .content_length(len as i64)
                .body(ByteStream::from(part.body.clone()))
                // No SHA-256 of every part for the signature (UNSIGNED-PAYLOAD, as S3 allows):
                // on 2 cores that pass cost more than the upload. Integrity rests on TLS on the
                // way, and end to end on the whole file's MD5, which Exoscale checks before it
                // registers the template.
                .customize()
                .disable_payload_signing()
                .send()
                .await;
            match sent {
                Ok(out) => {
                    let etag = out.e_tag().unwrap_or_default().to_string();
                    let done = CompletedPart::builder()
                        .part_number(part.number)
                        .e_tag(etag)
                        .build();
                    return Ok((done, len));
                }
                Err(err) if attempt >= options.attempts.max(1) => {
                    return Err(StoreError::request(
                        format!(
                            "UploadPart {} of {total} (after {attempt} attempts)",
                            part.number
                        ),
                        &err,
                    ));
                }
                Err(err) => {
                    tracing::warn!(
                        part = part.number,
                        attempt,
                        error = %aws_sdk_s3::error::DisplayErrorContext(&err),
                        "part upload failed; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.cancelled() => return Err(StoreError::Cancelled),
                    }
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| StoreError::request(format!("CompleteMultipartUpload {key}"), &e))?;
        Ok(())
    }

    /// Aborts the multipart upload (best effort: a failure is logged, the original error wins).
    async fn abort(&self, key: &str, upload_id: &str) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(err) = aborted {
            tracing::warn!(
                key,
                error = %aws_sdk_s3::error::DisplayErrorContext(&err),
                "could not abort the multipart upload; remove it with an S3 client (ListMultipartUploads/AbortMultipartUpload)"
            );
        }
    }
}

/// A thread hashing the parts in order; at most a few parts wait for it.
struct Md5Thread {
    parts: tokio::sync::mpsc::Sender<bytes::Bytes>,
    done: tokio::sync::oneshot::Receiver<String>,
}

impl Md5Thread {
    fn start() -> Self {
        let (parts, mut queue) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let (tx, done) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut md5 = md5::Md5::new();
            while let Some(part) = queue.blocking_recv() {
                md5.update(&part);
            }
            let _ = tx.send(hex::encode(md5.finalize()));
        });
        Self { parts, done }
    }

    /// Queues the next part (waits when the hasher is four parts behind).
    async fn feed(&self, part: bytes::Bytes) {
        // The thread only stops when this sender is dropped, so sending cannot fail.
        let _ = self.parts.send(part).await;
    }

    /// The MD5 of everything fed, once the thread has hashed it.
    async fn finish(self) -> Result<String, StoreError> {
        drop(self.parts);
        self.done.await.map_err(|_| StoreError::Request {
            operation: "MD5".into(),
            message: "the hashing thread stopped".into(),
        })
    }
}
