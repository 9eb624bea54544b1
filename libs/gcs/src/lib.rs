//! yuba's edge to Google Cloud Storage.
//!
//! Uploads go through the official `google-cloud-storage` crate (resumable uploads, checksum
//! validation by the service). Everything else this crate does (read an object's metadata,
//! update it, delete, list) uses the JSON API directly with the same credentials, because the
//! crate offers those operations only over gRPC, which no local emulator speaks.

mod client;
mod error;
mod json_api;

pub use client::{
    Gcs, GcsSettings, ListPage, ListQuery, ObjectInfo, ObjectReader, ObjectUpdate, UploadSpec,
};
pub use error::GcsError;
pub use google_cloud_storage::streaming_source::{Payload, SizeHint, StreamingSource};
