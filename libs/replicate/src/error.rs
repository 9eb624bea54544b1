use thiserror::Error;
use yuba_aws::S3Error;
use yuba_events::ForeignBucket;
use yuba_gcs::GcsError;
use yuba_model::{FailureKind, ObjectNameError, SourceFacts};

use crate::source::StreamFailure;
use crate::verify::IntegrityError;

#[derive(Debug, Error)]
pub enum ReplicateError {
    /// The job names a bucket yuba does not replicate: refused before anything is read or
    /// written (a delete of a foreign bucket's key would otherwise remove our replica of it).
    #[error(transparent)]
    ForeignBucket(#[from] ForeignBucket),
    #[error(transparent)]
    Source(#[from] S3Error),
    #[error(transparent)]
    Replica(#[from] GcsError),
    #[error("s3://{bucket}/{key} cannot be replicated under its own name: {reason}")]
    Name {
        bucket: String,
        key: String,
        #[source]
        reason: ObjectNameError,
    },
    #[error(
        "s3://{bucket}/{key} cannot be replicated under its own name: names under `{prefix}` \
         hold {holds} in the replica bucket, which the replica would collide with: copy the S3 \
         object to another key, or {remedy}"
    )]
    Reserved {
        bucket: String,
        key: String,
        prefix: String,
        holds: &'static str,
        remedy: &'static str,
    },
    #[error("s3://{bucket}/{key}: {reason}")]
    Integrity {
        bucket: String,
        key: String,
        #[source]
        reason: IntegrityError,
    },
    /// Another write or delete of the replica came between this job's look at it and its own
    /// write, whose generation precondition therefore failed. Caught and retried by the job
    /// itself; it escapes only after [`MAX_LOST_RACES`](crate::replicator::MAX_LOST_RACES), as
    /// transient.
    #[error("another write of the replica came first: {conflict}")]
    LostRace {
        #[source]
        conflict: GcsError,
        /// Variants were written (or deleted) before the race was lost: they may now belong
        /// to the loser's content, so the winner's must be made again.
        variants_touched: bool,
    },
}

impl ReplicateError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ReplicateError::Source(error) => error.kind,
            ReplicateError::Replica(error) => error.kind,
            ReplicateError::ForeignBucket(_)
            | ReplicateError::Name { .. }
            | ReplicateError::Reserved { .. } => FailureKind::Permanent,
            ReplicateError::Integrity { .. } | ReplicateError::LostRace { .. } => {
                FailureKind::Transient
            }
        }
    }

    /// The bytes read from `facts`' object are not the ones S3 announced.
    pub(crate) fn integrity(facts: &SourceFacts, reason: IntegrityError) -> Self {
        ReplicateError::Integrity {
            bucket: facts.bucket.clone(),
            key: facts.key.clone(),
            reason,
        }
    }

    /// A write conditional on the replica's generation failed: a failed precondition is a
    /// lost race, for the job to look again; any other error is the replica's.
    pub(crate) fn conditional_write(error: GcsError, variants_touched: bool) -> Self {
        if error.is_conflict() {
            ReplicateError::LostRace {
                conflict: error,
                variants_touched,
            }
        } else {
            ReplicateError::Replica(error)
        }
    }

    /// Reading `facts`' object for an upload stopped early.
    pub(crate) fn stream(failure: StreamFailure, facts: &SourceFacts) -> Self {
        match failure {
            StreamFailure::Source(error) => error.into(),
            StreamFailure::Integrity(reason) => ReplicateError::integrity(facts, reason),
        }
    }
}
