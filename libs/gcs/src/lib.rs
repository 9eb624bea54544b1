//! yuba's edge to Google Cloud Storage.
//!
//! Streamed uploads go through the official `google-cloud-storage` crate (resumable uploads,
//! checksum validation by the service), or, for large objects, as parts composed into the
//! object at the end (`CompositeUpload`, resumed from the parts an earlier attempt left). Content already in memory goes up in one JSON API
//! multipart request instead, which carries the content type in the media part as well (the
//! crate sends `application/octet-stream` there, which some servers store). Objects' metadata
//! (read, update, delete, list: [`Gcs::objects`], a [`JsonApi`]) goes through the JSON API
//! directly with the same credentials, because the crate offers those operations only over
//! gRPC, which no local emulator speaks.

mod client;
mod composite;
mod credentials;
mod error;
mod json_api;

pub use client::{
    Gcs, GcsSettings, ListPage, ListQuery, ObjectHeaders, ObjectInfo, ObjectReader, ObjectUpdate,
    UploadSpec,
};
pub use composite::{CompositeUpload, PARTS_PREFIX, SourceIdentity};
pub use credentials::{
    AwsSubjectTokenError, AwsSubjectTokenProvider, CREDENTIALS_FILE_VARIABLE, CREDENTIALS_VARIABLE,
    ExternalAccount, GcsCredentials, aws_subject_token,
};
pub use error::GcsError;
pub use google_cloud_storage::streaming_source::{Payload, SizeHint, StreamingSource};
pub use json_api::JsonApi;
