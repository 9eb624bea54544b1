//! Runs replication jobs: makes the GCS replica of one S3 key match its source.
//!
//! A replicate job streams the object from S3 into GCS while computing sha256, crc32c and md5,
//! proves the bytes are the ones S3 announced (length, single-part ETag, S3's CRC32C), lets GCS
//! check them again on arrival, and records the source's identity and digests in the replica's
//! metadata. Memory is bounded by a few upload chunks whatever the object size (large objects go
//! up in parts, several at once), and image work by the process's images budget (`memory`),
//! which every render reserves its estimated peak from before the source is held whole. A delete job removes the replica unless the key exists again
//! in S3.
//!
//! Used by the worker and by the reconciler's inline backfill, so both copy the same way.

mod error;
mod memory;
mod name;
mod outcome;
mod render;
mod replicator;
mod settings;
mod source;
mod variant_object;
mod variants_error;
mod verify;

pub use error::ReplicateError;
pub use memory::{
    ALLOCATOR_SLACK_PERCENT, Footprint, ImageGate, LAMBDA_MEMORY, MEMORY_SETTING,
    MIN_IMAGES_BUDGET_MIB, MemoryBudget, MemorySource, OverBudget, PROCESS_BASE_MIB, Reservation,
    images_budget,
};
pub use name::replica_name;
pub use outcome::Outcome;
pub use render::{Admitted, HEADER_BYTES, Renderer};
pub use replicator::Replicator;
pub use replicator::attributes::attributes_digest;
pub use settings::{ReplicatorSettings, image_limits_from_env};
pub use variant_object::{variant_name, variant_upload};
pub use variants_error::{TOO_LARGE_FOR_MEMORY, VARIANT_NAME_ERROR, variants_error_kinds};
pub use verify::{ContentVerifier, ExpectedContent, IntegrityError};
