//! The [`Replicator`]: what it holds, and the jobs it runs. Each step of a job is a file of its
//! own below: deciding whether the replica already holds the source (`decide`), the attributes
//! a replica keeps of it (`attributes`), admitting an
//! image's render to the images' memory budget (`admission`), the write paths (`write`), and
//! deletes (`delete`).

mod admission;
pub(crate) mod attributes;
mod decide;
mod delete;
mod write;

use yuba_aws::S3Source;
use yuba_gcs::{Gcs, ObjectInfo};
use yuba_model::Job;

use crate::error::ReplicateError;
use crate::name::replica_name;
use crate::outcome::Outcome;
use crate::render::Renderer;
use crate::settings::ReplicatorSettings;

/// How many times a job looks at the replica again after another write of it came first. Each
/// lost race means another job made progress on the key, so a few suffice; past them the job
/// fails as transient and comes back after a backoff.
pub(crate) const MAX_LOST_RACES: u32 = 4;

/// Runs jobs: makes the replica of one key match its source.
#[derive(Debug, Clone)]
pub struct Replicator {
    s3: S3Source,
    gcs: Gcs,
    settings: ReplicatorSettings,
    /// Shared by the clones of one replicator: the process's renders pass its budget.
    renderer: Renderer,
}

impl Replicator {
    pub fn new(s3: S3Source, gcs: Gcs, settings: ReplicatorSettings) -> Self {
        let renderer = Renderer::new(settings.memory.images_bytes, settings.image_limits);
        Replicator {
            s3,
            gcs,
            settings,
            renderer,
        }
    }

    pub async fn run(&self, job: &Job) -> Result<Outcome, ReplicateError> {
        // A job's state (buffers, verifiers, the retry loops) is large: boxed here, it lives on
        // the heap instead of inside every caller's future, which a caller that blocks on it
        // (a test, a CLI) would otherwise hold on its stack.
        self.settings.sources.admit(job.bucket(), job.key())?;
        match job {
            Job::Replicate(job) => {
                let name = replica_name(&job.bucket, &job.key, &self.settings.variants)?;
                let existing = self
                    .gcs
                    .objects()
                    .get(&self.settings.replica_bucket, name)
                    .await?;
                Box::pin(self.replicate(job, existing)).await
            }
            Job::Delete(job) => Box::pin(self.delete(job)).await,
        }
    }

    /// [`run`](Replicator::run) for a caller that has just listed the replica bucket (the
    /// reconciler): the listing's entry for the replica (`None`: there was none) stands in for
    /// the metadata read a job starts with. A replica written since the listing costs at most
    /// a copy made again, never a skipped one: a stale entry is the reason the job exists.
    pub async fn run_listed(
        &self,
        job: &Job,
        listed: Option<ObjectInfo>,
    ) -> Result<Outcome, ReplicateError> {
        self.settings.sources.admit(job.bucket(), job.key())?;
        match job {
            Job::Replicate(job) => Box::pin(self.replicate(job, listed)).await,
            Job::Delete(job) => Box::pin(self.delete(job)).await,
        }
    }
}
