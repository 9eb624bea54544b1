use std::collections::{BTreeMap, HashSet};

use yuba_aws::{Dispatcher, SendError};
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_events::{KeyFilter, RecordOutcome, Route, parse_notification};
use yuba_model::Job;
use yuba_startup::metrics::{self, Dimension, IngestRecord, Metric};

/// Parses one notification, filters and routes its jobs, and enqueues them.
///
/// A notification succeeds only if every job it yields is on a work queue and none of its
/// records was rejected. Rejected records send the notification to the dead-letter queue for a
/// person to look at, after its good jobs were enqueued (redelivery enqueues them again, which
/// the worker recognises as already done).
#[derive(Debug)]
pub struct IngestHandler {
    dispatcher: Dispatcher,
    filter: KeyFilter,
}

impl IngestHandler {
    pub fn new(dispatcher: Dispatcher, filter: KeyFilter) -> Self {
        IngestHandler { dispatcher, filter }
    }

    /// The jobs of a notification's records that are to be enqueued: admitted by the filter
    /// and not already in it. The rest are counted in `tally`.
    fn admit(&self, outcomes: Vec<RecordOutcome>, message_id: &str, tally: &mut Tally) -> Vec<Job> {
        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        for outcome in outcomes {
            match outcome {
                RecordOutcome::Job(job) if !self.filter.admits(job.key()) => {
                    tally.add(IngestRecord::Filtered);
                }
                // S3 may describe one change twice in a notification batch.
                RecordOutcome::Job(job) if !seen.insert(job.to_message()) => {
                    tally.add(IngestRecord::Duplicate);
                }
                RecordOutcome::Job(job) => jobs.push(job),
                RecordOutcome::Ignored { event, reason } => {
                    tally.add(IngestRecord::Ignored);
                    tracing::info!(%event, reason, "event ignored");
                }
                RecordOutcome::Rejected(error) => {
                    tally.add(IngestRecord::Rejected);
                    tracing::error!(message_id, %error, "record rejected");
                }
            }
        }
        jobs
    }

    /// Puts the jobs on their queues; the jobs that did not make it, with their errors.
    async fn enqueue(&self, jobs: &[Job], tally: &mut Tally) -> Vec<SendError> {
        let jobs: Vec<&Job> = jobs.iter().collect();
        let mut failures = Vec::new();
        for (job, (route, result)) in jobs.iter().zip(self.dispatcher.dispatch(&jobs).await) {
            log_job(job, route, &result);
            match result {
                Ok(()) => tally.add(IngestRecord::Enqueued),
                Err(error) => {
                    tally.add(IngestRecord::NotEnqueued);
                    failures.push(error);
                }
            }
        }
        failures
    }
}

impl Handler for IngestHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let outcomes = parse_notification(&delivery.body).map_err(|error| {
            // Counted as one rejected record: like a rejected record, it goes to the DLQ.
            Tally::of(IngestRecord::Rejected).emit();
            HandlerError::new(FailureKind::Permanent, "unusable notification").with_source(error)
        })?;
        let mut tally = Tally::default();
        let jobs = self.admit(outcomes, &delivery.message_id, &mut tally);
        let failures = self.enqueue(&jobs, &mut tally).await;
        tracing::info!(
            message_id = %delivery.message_id,
            enqueued = tally.get(IngestRecord::Enqueued),
            ignored = tally.get(IngestRecord::Ignored),
            filtered = tally.get(IngestRecord::Filtered),
            duplicates = tally.get(IngestRecord::Duplicate),
            rejected = tally.get(IngestRecord::Rejected),
            failed = failures.len(),
            "notification ingested"
        );
        tally.emit();
        verdict(&tally, failures)
    }
}

/// A notification succeeds when all its jobs are on a queue and none of its records was
/// rejected. A failure to enqueue is as retryable as the most retryable of its causes: one
/// transient failure is enough to try the notification again.
fn verdict(tally: &Tally, mut failures: Vec<SendError>) -> Result<(), HandlerError> {
    let enqueued = tally.get(IngestRecord::Enqueued);
    if !failures.is_empty() {
        let kind = if failures.iter().any(|f| f.kind.is_transient()) {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        let message = format!(
            "{} of {} jobs could not be enqueued: {}",
            failures.len(),
            failures.len() as u64 + enqueued,
            failures
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        // The first failure's SDK error, if it has one, is the cause the chain shows.
        let first = failures.swap_remove(0);
        return Err(HandlerError::new(kind, message).with_source(first));
    }
    let rejected = tally.get(IngestRecord::Rejected);
    if rejected > 0 {
        return Err(HandlerError::new(
            FailureKind::Permanent,
            format!(
                "{rejected} record(s) of the notification were rejected (see the errors above)"
            ),
        ));
    }
    Ok(())
}

/// What became of a notification's records, by kind, sent as `IngestRecords` by `Record`.
///
/// A CloudWatch EMF document holds one value per dimension, so a notification is one document
/// per kind it had. `enqueued` and `not_enqueued` are sent for every notification, zero
/// included: each gives the canary's `not_enqueued` alarm (and the share of records not
/// enqueued) a data point, so a version that handles notifications well reads as healthy
/// rather than as missing data.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    counts: BTreeMap<IngestRecord, u64>,
}

impl Tally {
    fn of(record: IngestRecord) -> Tally {
        let mut tally = Tally::default();
        tally.add(record);
        tally
    }

    fn add(&mut self, record: IngestRecord) {
        *self.counts.entry(record).or_default() += 1;
    }

    fn get(&self, record: IngestRecord) -> u64 {
        self.counts.get(&record).copied().unwrap_or_default()
    }

    /// The data points to send, in [`IngestRecord::ALL`]'s order.
    fn points(&self) -> Vec<(IngestRecord, u64)> {
        IngestRecord::ALL
            .into_iter()
            .map(|record| (record, self.get(record)))
            .filter(|(record, count)| {
                *count > 0 || matches!(record, IngestRecord::Enqueued | IngestRecord::NotEnqueued)
            })
            .collect()
    }

    fn emit(&self) {
        for (record, count) in self.points() {
            metrics::emit(
                &[(Dimension::Record, record.as_str())],
                &[(Metric::IngestRecords, count as f64)],
            );
        }
    }
}

fn log_job(job: &Job, route: Route, result: &Result<(), SendError>) {
    let op = match job {
        Job::Replicate(_) => "replicate",
        Job::Delete(_) => "delete",
    };
    let enqueued = result.is_ok();
    tracing::debug!(op, bucket = %job.bucket(), key = %job.key(), route = route.as_str(), enqueued, "job");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_sends_each_kind_it_had_and_always_the_enqueue_counts() {
        let mut tally = Tally::default();
        for record in [
            IngestRecord::Enqueued,
            IngestRecord::Duplicate,
            IngestRecord::Enqueued,
            IngestRecord::Filtered,
        ] {
            tally.add(record);
        }
        assert_eq!(
            tally.points(),
            [
                (IngestRecord::Enqueued, 2),
                (IngestRecord::NotEnqueued, 0),
                (IngestRecord::Filtered, 1),
                (IngestRecord::Duplicate, 1),
            ]
        );
        assert_eq!(
            Tally::of(IngestRecord::Rejected).points(),
            [
                (IngestRecord::Enqueued, 0),
                (IngestRecord::NotEnqueued, 0),
                (IngestRecord::Rejected, 1),
            ]
        );
    }
}
