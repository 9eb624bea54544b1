//! What `backfill` does about drift: a job for each finding a copy or a delete repairs, put on
//! the work queues as ingest routes it, or run in this process with the worker's code.

use std::sync::atomic::Ordering;

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, stream};
use yuba_aws::Dispatcher;
use yuba_gcs::ObjectInfo;
use yuba_model::{DeleteJob, ErrorChain, Job, ReplicaRecord, ReplicateJob};
use yuba_replicate::{Outcome, Replicator};

use super::judge::Judged;
use super::run::RunContext;
use super::{Orphans, Reconciler, Repair};
use crate::classify::Kind;
use crate::report::{Action, Counts, Finding};

impl Reconciler {
    /// Repairs a page's drift (or, in a dry run, says what it would do), counting it.
    pub(super) async fn repair(
        &self,
        context: &RunContext<'_>,
        repair: &Repair,
        orphans: Orphans,
        drift: Vec<Judged>,
        counts: &mut Counts,
    ) -> Vec<Finding> {
        for judged in &drift {
            if judged.copies_content() {
                let size = judged.pair.source.as_ref().map_or(0, |s| s.size);
                context
                    .live
                    .bytes_to_copy
                    .fetch_add(size, Ordering::Relaxed);
            }
        }
        let jobs: Vec<Option<Job>> = drift
            .iter()
            .map(|judged| self.job_for(judged, orphans.delete))
            .collect();
        let outcomes: Vec<(Action, Option<String>)> = if context.dry_run {
            drift
                .iter()
                .zip(&jobs)
                .map(|(judged, job)| (planned(judged, job.as_ref()), None))
                .collect()
        } else {
            match repair {
                Repair::Inline(replicator) => {
                    stream::iter(drift.iter().zip(&jobs))
                        .map(|(judged, job)| {
                            self.repair_inline(context, replicator, judged, job.as_ref())
                        })
                        .buffered(context.concurrency)
                        .collect()
                        .await
                }
                Repair::Enqueue(dispatcher) => enqueue(dispatcher, &drift, &jobs).await,
            }
        };
        let outcomes = self
            .delete_orphan_variants(context, orphans, &drift, outcomes)
            .await;
        drift
            .into_iter()
            .zip(outcomes)
            .map(|(judged, (action, error))| {
                counts.count_action(action);
                if action == Action::Replicated {
                    let size = judged.pair.source.as_ref().map_or(0, |s| s.size);
                    counts.bytes_copied += size;
                }
                judged.into_finding(Some(action), error)
            })
            .collect()
    }

    /// The job that repairs a finding, if copying or deleting can.
    fn job_for(&self, judged: &Judged, delete_orphans: bool) -> Option<Job> {
        let key = judged.pair.key.clone();
        match (judged.verdict.kind, &judged.pair.source) {
            (kind, Some(source)) if kind.needs_replicate_job() => {
                Some(Job::Replicate(ReplicateJob {
                    bucket: self.buckets.source.clone(),
                    key,
                    version_id: None,
                    etag: Some(source.etag.clone()),
                    size: Some(source.size),
                    sequencer: None,
                    event_time: None,
                    force: judged.forced,
                }))
            }
            // Only what yuba wrote is deleted: other objects in the replica bucket are someone's.
            (Kind::Orphan, _) if delete_orphans && written_by_yuba(judged) => {
                Some(Job::Delete(DeleteJob {
                    bucket: self.buckets.source.clone(),
                    key,
                    version_id: None,
                    sequencer: None,
                    event_time: None,
                }))
            }
            _ => None,
        }
    }

    /// Deletes the orphan variants among `drift` with `--delete-orphans` (or says it would), in
    /// this process whatever the repair mode: no worker job deletes a variant alone. Each goes
    /// only if still the generation that was judged.
    async fn delete_orphan_variants(
        &self,
        context: &RunContext<'_>,
        orphans: Orphans,
        drift: &[Judged],
        mut outcomes: Vec<(Action, Option<String>)>,
    ) -> Vec<(Action, Option<String>)> {
        if !orphans.delete {
            return outcomes;
        }
        // Variants made after this are too young to delete.
        let settled =
            Utc::now() - TimeDelta::from_std(orphans.variant_min_age).unwrap_or(TimeDelta::MAX);
        let deletions: Vec<(usize, (Action, Option<String>))> =
            stream::iter(drift.iter().enumerate())
                .filter(|(_, judged)| {
                    std::future::ready(judged.verdict.kind == Kind::OrphanVariant)
                })
                .map(|(index, judged)| async move {
                    let outcome = match judged.pair.replica.as_ref() {
                        Some(variant) => {
                            self.delete_orphan_variant(context, variant, settled).await
                        }
                        None => (Action::None, None),
                    };
                    (index, outcome)
                })
                .buffer_unordered(context.concurrency)
                .collect()
                .await;
        for (index, outcome) in deletions {
            outcomes[index] = outcome;
        }
        outcomes
    }

    async fn delete_orphan_variant(
        &self,
        context: &RunContext<'_>,
        variant: &ObjectInfo,
        settled: DateTime<Utc>,
    ) -> (Action, Option<String>) {
        if let Some(created) = variant.created
            && created > settled
        {
            return (
                Action::Kept,
                Some(format!(
                    "made at {created}, after {settled}: the job that made it may still be writing its original (--orphan-variant-min-age)"
                )),
            );
        }
        if context.dry_run {
            return (Action::WouldDelete, None);
        }
        let _permit = context.io.acquire().await.ok();
        match self
            .gcs
            .objects()
            .delete(
                &self.buckets.replica,
                &variant.name,
                Some(variant.generation),
            )
            .await
        {
            Ok(true) => (Action::Deleted, None),
            Ok(false) => (Action::AlreadyDone, None),
            // Rewritten since it was listed: whatever wrote it judged it anew.
            Err(error) if error.status == Some(412) => (Action::AlreadyDone, None),
            Err(error) => (
                Action::Failed,
                Some(format!(
                    "{} (deleting a variant needs the reconciler to write to the replica bucket: terraform's reconciler_can_write)",
                    ErrorChain(&error)
                )),
            ),
        }
    }

    async fn repair_inline(
        &self,
        context: &RunContext<'_>,
        replicator: &Replicator,
        judged: &Judged,
        job: Option<&Job>,
    ) -> (Action, Option<String>) {
        let Some(job) = job else {
            return (planned(judged, None), None);
        };
        let _permit = context.io.acquire().await.ok();
        match replicator
            .run_listed(job, judged.pair.replica.clone())
            .await
        {
            Ok(Outcome::Replicated { bytes, .. }) => {
                context
                    .live
                    .bytes_copied
                    .fetch_add(bytes, Ordering::Relaxed);
                (Action::Replicated, None)
            }
            Ok(Outcome::AttributesUpdated { .. }) => (Action::AttributesUpdated, None),
            Ok(Outcome::VariantsAdded { .. }) => (Action::VariantsAdded, None),
            Ok(Outcome::Deleted) => (Action::Deleted, None),
            Ok(Outcome::DeleteNotMirrored) => (
                Action::Kept,
                Some("YUBA_MIRROR_DELETES is false".to_owned()),
            ),
            Ok(
                Outcome::AlreadyReplicated { .. }
                | Outcome::Superseded { .. }
                | Outcome::SourceGone
                | Outcome::AlreadyAbsent
                | Outcome::SourceRecreated,
            ) => (Action::AlreadyDone, None),
            Err(error) => (Action::Failed, Some(ErrorChain(&error).to_string())),
        }
    }
}

/// Whether the replica bears a record: only what yuba wrote is deleted.
fn written_by_yuba(judged: &Judged) -> bool {
    judged.pair.replica.as_ref().is_some_and(|replica| {
        matches!(ReplicaRecord::from_metadata(&replica.metadata), Ok(Some(_)))
    })
}

/// What a dry run would do, or what is done about a finding no job repairs.
fn planned(judged: &Judged, job: Option<&Job>) -> Action {
    match (job, judged.verdict.kind) {
        (Some(Job::Replicate(_)), Kind::Attributes) => Action::WouldUpdate,
        (Some(Job::Replicate(_)), _) if !judged.copies_content() => Action::WouldAddVariants,
        (Some(Job::Replicate(_)), _) => Action::WouldCopy,
        (Some(Job::Delete(_)), _) => Action::WouldDelete,
        (None, Kind::Orphan | Kind::OrphanVariant) => Action::Kept,
        (None, _) => Action::None,
    }
}

/// Puts the jobs on the work queues, routed as ingest routes them, in batches.
async fn enqueue(
    dispatcher: &Dispatcher,
    drift: &[Judged],
    jobs: &[Option<Job>],
) -> Vec<(Action, Option<String>)> {
    let mut outcomes: Vec<(Action, Option<String>)> = drift
        .iter()
        .zip(jobs)
        .map(|(judged, job)| (planned(judged, job.as_ref()), None))
        .collect();
    let (indices, to_send): (Vec<usize>, Vec<&Job>) = jobs
        .iter()
        .enumerate()
        .filter_map(|(index, job)| Some((index, job.as_ref()?)))
        .unzip();
    for (index, (route, result)) in indices.into_iter().zip(dispatcher.dispatch(&to_send).await) {
        outcomes[index] = match result {
            Ok(()) => (Action::Enqueued(route), None),
            Err(error) => (Action::Failed, Some(ErrorChain(&error).to_string())),
        };
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::{listed, record, stored};
    use crate::classify::{Pair, Verdict};

    /// What a dry run says each finding's repair would do, which is what the job would do: a
    /// metadata update for attributes, variants alone for a profile the record lacks, a copy
    /// where a content check found the variants wrong (its job is forced).
    #[test]
    fn a_dry_run_says_what_each_job_would_send() {
        let judged = |kind: Kind, forced: bool| {
            let rec = record("k", "e1", 5, 9);
            let pair = Pair {
                key: "k".into(),
                source: Some(listed("k", "e1", 5)),
                replica: Some(stored(&rec, 5, 9)),
            };
            Judged {
                forced,
                ..Judged::new(Verdict::drift(kind, "seeded"), pair)
            }
        };
        let job = Job::Replicate(ReplicateJob {
            bucket: "src".into(),
            key: "k".into(),
            version_id: None,
            etag: None,
            size: None,
            sequencer: None,
            event_time: None,
            force: false,
        });
        let planned_for = |kind, forced| planned(&judged(kind, forced), Some(&job)).as_str();
        assert_eq!(planned_for(Kind::Attributes, false), "would-update");
        assert_eq!(
            planned_for(Kind::VariantsMissing, false),
            "would-add-variants"
        );
        assert_eq!(planned_for(Kind::VariantsMissing, true), "would-copy");
        assert_eq!(planned_for(Kind::Missing, false), "would-copy");
        assert_eq!(planned_for(Kind::Mismatch, true), "would-copy");
        assert_eq!(
            planned(&judged(Kind::OrphanVariant, false), None).as_str(),
            "kept"
        );
        assert!(!judged(Kind::VariantsMissing, false).copies_content());
        assert!(judged(Kind::VariantsMissing, true).copies_content());
        assert!(!judged(Kind::Attributes, false).copies_content());
    }
}
