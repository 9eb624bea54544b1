//! yuba's edge to AWS: reading source objects from S3 and putting jobs on SQS work queues
//! ([`Dispatcher`], the one path by which ingest and the reconciler enqueue).
//!
//! Endpoints, region and credentials come from the standard AWS environment (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, the credential chain), so the same code runs on
//! Lambda, on Fargate and against the local emulators. Errors are classified into
//! [`FailureKind`](yuba_model::FailureKind) here, at the edge, so callers never inspect SDK types.
//!
//! [`permissions`] declares what each call needs from IAM; a request S3 refuses with 403 fails
//! with an error that names those permissions.

mod backlog;
mod batch;
mod classify;
mod dispatch;
pub mod permissions;
mod s3;
mod sqs;

pub use backlog::{BacklogError, queue_backlog};
pub use batch::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, pack_batches};
pub use classify::{classify_sdk_error, describe_sdk_error};
pub use dispatch::{Dispatched, Dispatcher};
pub use s3::{
    ListQuery, ListedObject, ListedPage, S3Error, S3Source, SourceAttributes, SourceHead,
    SourceObject,
};
pub use sqs::{JobSender, Message, SendError};

/// Loads region, credentials and endpoint overrides from the environment.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
