//! Whether a replicate job has anything to write, and if so what: the replica as the job found
//! it is held against the event, then against the source S3 holds now; only when neither
//! settles the job is the source's content handed to a write path.

use std::borrow::Cow;

use yuba_aws::SourceObject;
use yuba_gcs::ObjectInfo;
use yuba_model::{ErrorChain, ReplicaRecord, ReplicateJob, SourceFacts, crc32c_from_base64};

use super::attributes;
use super::write::{Held, Target};
use super::{MAX_LOST_RACES, Replicator};
use crate::error::ReplicateError;
use crate::name::replica_name;
use crate::outcome::Outcome;
use crate::verify::ExpectedContent;

/// The replica as a job found it, with its record if it has a readable one.
struct Found {
    replica: Option<ObjectInfo>,
    record: Option<ReplicaRecord>,
}

impl Found {
    fn new(replica: Option<ObjectInfo>) -> Self {
        let record = replica.as_ref().and_then(read_record);
        Found { replica, record }
    }

    /// The replica, if its record `describes` what is asked for and it still holds the bytes
    /// that record says were written (its variants aside).
    fn holding(&self, describes: impl Fn(&ReplicaRecord) -> bool) -> Option<Held<'_>> {
        let (replica, record) = (self.replica.as_ref()?, self.record.as_ref()?);
        let held = describes(record) && record.check_stored(replica.size, replica.crc32c).is_ok();
        held.then_some(Held { replica, record })
    }
}

impl Replicator {
    /// Makes the replica hold the source's current content. Every write is conditional on
    /// the generation the job saw at its start (or on there being none), so a job that read
    /// an older version of the source than a concurrent one cannot overwrite that one's
    /// replica; a job that loses such a race looks again and decides afresh (see
    /// ARCHITECTURE.md, "Ordering and convergence").
    pub(super) async fn replicate(
        &self,
        job: &ReplicateJob,
        mut existing: Option<ObjectInfo>,
    ) -> Result<Outcome, ReplicateError> {
        let name = replica_name(&job.bucket, &job.key, &self.settings.variants)?;
        let mut job = Cow::Borrowed(job);
        let mut lost = 0;
        loop {
            let (conflict, variants_touched) = match self.replicate_once(&job, name, existing).await
            {
                Err(ReplicateError::LostRace {
                    conflict,
                    variants_touched,
                }) if lost + 1 < MAX_LOST_RACES => (conflict, variants_touched),
                done => return done,
            };
            lost += 1;
            tracing::info!(key = %job.key, lost, conflict = %ErrorChain(&conflict), "another write of the replica came first; looking again");
            // The winner's record may be complete while the variants under its names are the
            // loser's: only a forced copy of the current source puts them right.
            if variants_touched && !job.force {
                job = Cow::Owned(ReplicateJob {
                    force: true,
                    ..job.into_owned()
                });
            }
            existing = self
                .gcs
                .objects()
                .get(&self.settings.replica_bucket, name)
                .await?;
        }
    }

    /// One look at the replica and the source, and the write if one is needed.
    async fn replicate_once(
        &self,
        job: &ReplicateJob,
        name: &str,
        existing: Option<ObjectInfo>,
    ) -> Result<Outcome, ReplicateError> {
        let found = Found::new(existing);
        if let Some(outcome) = self.settled_by_event(job, &found) {
            return Ok(outcome);
        }
        let Some(source) = self.s3.get(&job.bucket, &job.key).await? else {
            return Ok(Outcome::SourceGone);
        };
        if let Some(held) = found.holding(|record| describes(job, record, &source)) {
            if self.settings.variants.missing_for(held.record).is_empty() {
                return self.keep_attributes(job, name, held, &source).await;
            }
            let (facts, expected) = (source_facts(job, &source), expected_content(&source));
            return self.add_variants(name, held, source, facts, expected).await;
        }
        let target = Target {
            name,
            if_generation_match: found.replica.as_ref().map_or(0, |e| e.generation),
        };
        let facts = source_facts(job, &source);
        let expected = expected_content(&source);
        let outcome = self.write(target, source, facts, expected).await?;
        if let (Some(previous), Outcome::Replicated { checksums, .. }) = (&found.record, &outcome) {
            // The replica is written: a failure here does not fail the job (its redelivery
            // would find the replica current and not look again). What is left is never served
            // (the origin checks a variant against its original), and the reconciler reports it
            // as an orphan variant (`backfill --delete-orphans` removes it).
            match self
                .remove_outdated_variants(previous, &checksums.sha256_hex())
                .await
            {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(key = %job.key, removed, "removed the previous content's variants that the new content did not replace");
                }
                Err(error) => {
                    tracing::warn!(key = %job.key, error = %ErrorChain(&error), "the previous content's variants could not all be removed");
                }
            }
        }
        Ok(outcome)
    }

    /// The replica holds the source's content: if not its attributes as well, they are brought
    /// up to date in a metadata update of that generation (the content is not sent again).
    async fn keep_attributes(
        &self,
        job: &ReplicateJob,
        name: &str,
        Held { replica, record }: Held<'_>,
        source: &SourceObject,
    ) -> Result<Outcome, ReplicateError> {
        let facts = source_facts(job, source);
        let generation = replica.generation;
        if record.source.attributes == facts.attributes {
            return Ok(Outcome::AlreadyReplicated { generation });
        }
        let mut updated = record.clone();
        updated.source = SourceFacts {
            sequencer: facts.sequencer.clone().or(record.source.sequencer.clone()),
            ..facts
        };
        let update = attributes::update(replica, &source.attributes, &updated);
        let stored = self
            .gcs
            .objects()
            .update(&self.settings.replica_bucket, name, generation, update)
            .await
            .map_err(|error| ReplicateError::conditional_write(error, false))?;
        Ok(Outcome::AttributesUpdated {
            generation: stored.generation,
        })
    }

    /// What the job's event alone says of the replica: it already holds the content the event
    /// names, or was made from a later change of the key. `None`: the source must be read.
    fn settled_by_event(&self, job: &ReplicateJob, found: &Found) -> Option<Outcome> {
        if let Some(generation) = self.holds(found, |record| record.satisfies(job)) {
            return Some(Outcome::AlreadyReplicated { generation });
        }
        let later = |record: &ReplicaRecord| {
            !job.force
                && record.source.bucket == job.bucket
                && record.source.key == job.key
                && record.is_later_than(job.sequencer.as_deref())
        };
        self.holds(found, later)
            .map(|generation| Outcome::Superseded { generation })
    }

    /// The replica's generation if it already holds what `describes` asks for: a record that
    /// describes it, the bytes that record says were written, and every variant the
    /// configuration calls for. Otherwise the job has work to do.
    fn holds(&self, found: &Found, describes: impl Fn(&ReplicaRecord) -> bool) -> Option<i64> {
        let held = found.holding(describes)?;
        self.settings
            .variants
            .missing_for(held.record)
            .is_empty()
            .then_some(held.replica.generation)
    }
}

/// Whether `record` was made from the version S3 holds now. The event may name an older version
/// than that, and the replica may already hold the current one (written for a later event that
/// came first).
fn describes(job: &ReplicateJob, record: &ReplicaRecord, source: &SourceObject) -> bool {
    !job.force
        && record.source.etag == source.etag
        && record.source.size == source.size
        && record.source.version_id == source.version_id
}

/// What the replica records about its source.
fn source_facts(job: &ReplicateJob, source: &SourceObject) -> SourceFacts {
    // The event's sequencer orders the version the event was about; it is recorded only
    // when that is the version being copied, never against newer content.
    let event_describes_source = job.etag.as_deref().is_none_or(|etag| etag == source.etag);
    SourceFacts {
        bucket: job.bucket.clone(),
        key: job.key.clone(),
        version_id: source.version_id.clone(),
        etag: source.etag.clone(),
        size: source.size,
        last_modified: source.last_modified,
        sequencer: job.sequencer.clone().filter(|_| event_describes_source),
        attributes: Some(attributes::attributes_digest(&source.attributes)),
    }
}

/// What S3 announced of the content, which the bytes read must prove.
fn expected_content(source: &SourceObject) -> ExpectedContent {
    ExpectedContent {
        size: source.size,
        md5: source.content_md5,
        crc32c: source
            .full_object_crc32c
            .as_deref()
            .and_then(crc32c_from_base64),
    }
}

/// A replica's record, if it has a readable one. An unreadable record is treated as none, so the
/// replica is rewritten with a good one.
pub(super) fn read_record(replica: &ObjectInfo) -> Option<ReplicaRecord> {
    ReplicaRecord::from_metadata(&replica.metadata)
        .inspect_err(|error| {
            tracing::warn!(object = %replica.name, error = %ErrorChain(error), "replica has an unreadable record; rewriting it");
        })
        .ok()
        .flatten()
}
