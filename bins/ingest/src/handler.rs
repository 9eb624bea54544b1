use std::collections::{BTreeMap, HashSet};

use yuba_aws::JobSender;
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_events::{KeyFilter, RecordOutcome, Route, Router, WorkQueues, parse_notification};
use yuba_model::Job;
use yuba_telemetry::metrics::{self, Dimension, IngestRecord, Metric};

/// Parses one notification, filters and routes its jobs, and enqueues them.
///
/// A notification succeeds only if every job it yields is on a work queue and none of its
/// records was rejected. Rejected records send the notification to the dead-letter queue for a
/// person to look at, after its good jobs were enqueued (redelivery enqueues them again, which
/// the worker recognises as already done).
#[derive(Debug)]
pub struct IngestHandler {
    sender: JobSender,
    queues: WorkQueues,
    filter: KeyFilter,
    router: Router,
}

impl IngestHandler {
    pub fn new(sender: JobSender, queues: WorkQueues, filter: KeyFilter, router: Router) -> Self {
        IngestHandler {
            sender,
            queues,
            filter,
            router,
        }
    }

    fn queue(&self, route: Route) -> &str {
        self.queues.url(route)
    }
}

impl Handler for IngestHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let outcomes = parse_notification(&delivery.body).map_err(|error| {
            // Counted as one rejected record: like a rejected record, it goes to the DLQ.
            Tally::of(IngestRecord::Rejected).emit();
            HandlerError::new(
                FailureKind::Permanent,
                format!("unusable notification: {error}"),
            )
        })?;

        let mut seen = HashSet::new();
        let (mut for_lambda, mut for_fargate) = (Vec::new(), Vec::new());
        let mut tally = Tally::default();
        for outcome in outcomes {
            match outcome {
                RecordOutcome::Job(job) => {
                    if !self.filter.admits(job.key()) {
                        tally.add(IngestRecord::Filtered);
                        continue;
                    }
                    let body = job.to_message();
                    // S3 may describe one change twice in a notification batch.
                    if !seen.insert(body.clone()) {
                        tally.add(IngestRecord::Duplicate);
                        continue;
                    }
                    let route = self.router.route(&job);
                    log_job(&job, route);
                    match route {
                        Route::Lambda => for_lambda.push(body),
                        Route::Fargate => for_fargate.push(body),
                    }
                }
                RecordOutcome::Ignored { event, reason } => {
                    tally.add(IngestRecord::Ignored);
                    tracing::info!(%event, reason, "event ignored");
                }
                RecordOutcome::Rejected(error) => {
                    tally.add(IngestRecord::Rejected);
                    tracing::error!(message_id = %delivery.message_id, %error, "record rejected");
                }
            }
        }

        let mut failures: Vec<String> = Vec::new();
        let mut worst = None;
        for (route, bodies) in [(Route::Lambda, for_lambda), (Route::Fargate, for_fargate)] {
            if bodies.is_empty() {
                continue;
            }
            for result in self.sender.send(self.queue(route), &bodies).await {
                match result {
                    Ok(()) => tally.add(IngestRecord::Enqueued),
                    Err(error) => {
                        tally.add(IngestRecord::NotEnqueued);
                        if worst != Some(FailureKind::Transient) {
                            worst = Some(error.kind);
                        }
                        failures.push(error.message);
                    }
                }
            }
        }
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
        let (enqueued, rejected) = (
            tally.get(IngestRecord::Enqueued),
            tally.get(IngestRecord::Rejected),
        );
        if let Some(kind) = worst {
            return Err(HandlerError::new(
                kind,
                format!(
                    "{} of {} jobs could not be enqueued: {}",
                    failures.len(),
                    failures.len() as u64 + enqueued,
                    failures.join("; ")
                ),
            ));
        }
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

fn log_job(job: &Job, route: Route) {
    let op = match job {
        Job::Replicate(_) => "replicate",
        Job::Delete(_) => "delete",
    };
    tracing::debug!(op, bucket = %job.bucket(), key = %job.key(), route = route.as_str(), "job");
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
