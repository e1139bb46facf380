//! The object store (Exoscale SOS, or any S3 server): the bucket the image goes to, the
//! multipart upload that hashes the file in the same read, presigned URLs, cleanup.

pub mod error;
pub mod parts;
pub mod progress;
pub mod store;
pub mod upload;

pub use error::StoreError;
pub use parts::PartPlan;
pub use progress::UploadProgress;
pub use store::{ObjectStore, StoreConfig};
pub use upload::{UploadOptions, UploadReceipt};
