//! The vocabulary every yuba component shares: the jobs that travel on the work queues and the
//! metadata a GCS replica carries about its S3 source.
//!
//! Everything here is pure data with its wire formats; no I/O. The job message format and the
//! replica-metadata schema are contracts between separately deployed components (ingest, worker,
//! reconciler, the delivery path), so both carry a version and are decoded defensively.

mod checksum;
mod failure;
mod job;
mod name;
mod replica;

pub use checksum::{Checksums, crc32c_from_base64, crc32c_to_base64};
pub use failure::{Cause, ErrorChain, FailureKind};
pub use job::{
    DeleteJob, Job, JobDecodeError, MAX_KEY_BYTES, MAX_OBJECT_BYTES, ReplicateJob, normalize_etag,
    sequencer_order,
};
pub use name::{CANARY_PREFIX, ObjectNameError, gcs_object_name};
pub use replica::{
    ContentDrift, MadeVariant, MetadataError, RESERVED_METADATA_PREFIX, ReplicaRecord,
    SCHEMA_VERSION, SourceFacts, VariantRecord, VariantsError, keys,
};
