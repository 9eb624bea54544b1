//! Delete jobs: the replica and its variants go, unless the key exists in S3 again or the
//! replica was made from a later change than the delete.

use yuba_model::{DeleteJob, ErrorChain, ReplicateJob};

use super::decide::read_record;
use super::{MAX_LOST_RACES, Replicator};
use crate::error::ReplicateError;
use crate::name::replica_name;
use crate::outcome::Outcome;

impl Replicator {
    /// Removes the replica and its variants, unless the key exists in S3 again or the replica
    /// was made from a later change than the delete. The replica is looked at before S3 is,
    /// and removed only if it is still the generation looked at, so a create that races the
    /// delete keeps its replica.
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
                Ok(Outcome::SourceRecreated) if variants_deleted => {
                    // The variants went before the key was found re-created: they may have
                    // been the new replica's, so they are made again from the source.
                    let repair = ReplicateJob {
                        bucket: job.bucket.clone(),
                        key: job.key.clone(),
                        version_id: None,
                        etag: None,
                        size: None,
                        sequencer: None,
                        event_time: job.event_time,
                        force: true,
                    };
                    let existing = self
                        .gcs
                        .objects()
                        .get(&self.settings.replica_bucket, name)
                        .await?;
                    Box::pin(self.replicate(&repair, existing)).await?;
                    return Ok(Outcome::SourceRecreated);
                }
                done => return done,
            }
        }
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
            return Ok(Outcome::SourceRecreated);
        }
        let Some(existing) = existing else {
            return Ok(Outcome::AlreadyAbsent);
        };
        // The record lists the variants; they go first, so that a failure part-way leaves the
        // record that names what is still to delete.
        for variant in record.iter().flat_map(|record| &record.variants) {
            let variant_name = self.settings.variants.key_template.render(
                &variant.profile,
                &job.key,
                &variant.extension,
            );
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
