//! Delete jobs: the replica and its variants go, unless the key exists in S3 (then the replica
//! converges on its current version) or the replica was made from a later change than the
//! delete.

use yuba_gcs::ObjectInfo;
use yuba_model::{DeleteJob, ErrorChain, ReplicateJob};

use super::decide::read_record;
use super::{MAX_LOST_RACES, Replicator};
use crate::error::ReplicateError;
use crate::name::replica_name;
use crate::outcome::Outcome;

impl Replicator {
    /// Removes the replica and its variants, unless the key exists in S3 (then the replica
    /// converges on its current version) or the replica was made from a later change than the
    /// delete. The replica is looked at before S3 is, and removed only if it is still the
    /// generation looked at, so a create that races the delete keeps its replica.
    pub(super) async fn delete(&self, job: &DeleteJob) -> Result<Outcome, ReplicateError> {
        if !self.settings.mirror_deletes {
            return Ok(Outcome::DeleteNotMirrored);
        }
        let name = replica_name(&job.bucket, &job.key, &self.settings.variants)?;
        let mut variants_deleted = false;
        let mut lost = 0;
        loop {
            match self.delete_once(job, name, &mut variants_deleted).await {
                Err(ReplicateError::LostRace { conflict, .. }) if lost + 1 < MAX_LOST_RACES => {
                    lost += 1;
                    tracing::info!(key = %job.key, lost, conflict = %ErrorChain(&conflict), "the replica changed while it was being deleted; looking again");
                }
                done => return done,
            }
        }
    }

    /// The key is in S3 although a delete was announced: re-created since, or (in a versioned
    /// bucket) a version other than the current one was deleted, or the current one, which
    /// made an older version current again. The replica converges on the current version:
    /// copied if it records another (or if variants were deleted before the key was found: they
    /// may have been the current replica's), left as it is otherwise.
    async fn converge(
        &self,
        job: &DeleteJob,
        existing: Option<ObjectInfo>,
        variants_deleted: bool,
    ) -> Result<Outcome, ReplicateError> {
        let current = ReplicateJob {
            bucket: job.bucket.clone(),
            key: job.key.clone(),
            version_id: None,
            etag: None,
            size: None,
            sequencer: None,
            event_time: job.event_time,
            force: variants_deleted,
        };
        let outcome = Box::pin(self.replicate(&current, existing)).await?;
        tracing::info!(key = %job.key, converged = outcome.as_str(), "the key is in S3: the replica holds its current version");
        Ok(Outcome::SourceRecreated)
    }

    async fn delete_once(
        &self,
        job: &DeleteJob,
        name: &str,
        variants_deleted: &mut bool,
    ) -> Result<Outcome, ReplicateError> {
        let bucket = &self.settings.replica_bucket;
        let existing = self.gcs.objects().get(bucket, name).await?;
        let record = existing.as_ref().and_then(read_record);
        if record
            .as_ref()
            .is_some_and(|record| record.is_later_than(job.sequencer.as_deref()))
        {
            return Ok(Outcome::SourceRecreated);
        }
        if self.s3.exists(&job.bucket, &job.key).await? {
            return self.converge(job, existing, *variants_deleted).await;
        }
        let Some(existing) = existing else {
            return Ok(Outcome::AlreadyAbsent);
        };
        // The record lists the variants; they go first, so that a failure part-way leaves the
        // record that names what is still to delete.
        for variant in record.iter().flat_map(|record| &record.variants) {
            let variant_name = self.settings.variants.name_of(&job.key, variant);
            *variants_deleted |= self
                .gcs
                .objects()
                .delete(bucket, &variant_name, None)
                .await?;
        }
        match self
            .gcs
            .objects()
            .delete(bucket, name, Some(existing.generation))
            .await
        {
            Ok(true) => Ok(Outcome::Deleted),
            Ok(false) => Ok(Outcome::AlreadyAbsent),
            Err(error) => Err(ReplicateError::conditional_write(error, *variants_deleted)),
        }
    }
}
