use std::collections::{BTreeMap, HashSet};

use yuba_aws::{Dispatcher, JobSender, Message, SendError};
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_events::{
    KeyFilter, REJECTED_FROM_ATTRIBUTE, REJECTED_REASON_ATTRIBUTE, RecordError, RecordOutcome,
    Route, SourceBuckets, parse_notification_of,
};
use yuba_model::{ErrorChain, Job};
use yuba_startup::metrics::{self, Dimension, IngestRecord, Metric};

/// Parses one notification, filters and routes its jobs, and enqueues them.
///
/// A notification succeeds when every job it yields is on a work queue and every record
/// rejected (malformed, or of a bucket yuba does not replicate) is set aside on the events
/// queue's dead-letter queue, alone and with its reason: one bad record costs only itself, and
/// the good jobs are enqueued once. With no such queue (S3 invokes ingest directly), a rejected
/// record fails the notification after its good jobs were enqueued, for Lambda's retries and
/// then its failure destination.
#[derive(Debug)]
pub struct IngestHandler {
    dispatcher: Dispatcher,
    filter: KeyFilter,
    sources: SourceBuckets,
    set_aside: Option<SetAside>,
}

/// Where ingest puts the records it rejects: the events queue's dead-letter queue, each record
/// as a notification of its own (so a redrive to the events queue reads it again), its reason
/// and the message it came in as message attributes. SQS's own redrive moves whole messages,
/// which would park the good records with the bad and enqueue them again on every delivery.
#[derive(Debug)]
pub struct SetAside {
    sender: JobSender,
    queue_url: String,
}

impl SetAside {
    pub fn new(sender: JobSender, queue_url: String) -> Self {
        SetAside { sender, queue_url }
    }

    async fn send(&self, rejected: Vec<Rejected>, message_id: &str) -> Vec<SendError> {
        let messages: Vec<Message> = rejected
            .into_iter()
            .map(
                |Rejected {
                     error,
                     notification,
                 }| Message {
                    body: notification,
                    attributes: vec![
                        (
                            REJECTED_REASON_ATTRIBUTE,
                            bounded(&ErrorChain(&error).to_string()),
                        ),
                        (REJECTED_FROM_ATTRIBUTE, message_id.to_owned()),
                    ],
                },
            )
            .collect();
        let sent = self.sender.send_messages(&self.queue_url, &messages).await;
        sent.into_iter().filter_map(Result::err).collect()
    }
}

/// At most this much of a reason goes into a message attribute: errors quote untrusted input
/// only in previews, so a reason is far shorter; the bound keeps the message under SQS's limit
/// whatever it quotes.
const MAX_REASON_CHARS: usize = 2048;

fn bounded(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

/// A rejected record and the notification that holds it alone.
#[derive(Debug)]
struct Rejected {
    error: RecordError,
    notification: String,
}

impl IngestHandler {
    pub fn new(
        dispatcher: Dispatcher,
        filter: KeyFilter,
        sources: SourceBuckets,
        set_aside: Option<SetAside>,
    ) -> Self {
        IngestHandler {
            dispatcher,
            filter,
            sources,
            set_aside,
        }
    }

    /// The jobs of a notification's records that are to be enqueued (admitted by the filter
    /// and not already in it) and the records rejected. The rest are counted in `tally`.
    fn admit(
        &self,
        outcomes: Vec<RecordOutcome>,
        message_id: &str,
        tally: &mut Tally,
    ) -> (Vec<Job>, Vec<Rejected>) {
        let mut seen = HashSet::new();
        let (mut jobs, mut rejected) = (Vec::new(), Vec::new());
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
                RecordOutcome::Rejected {
                    error,
                    notification,
                } => {
                    tally.add(match error {
                        RecordError::ForeignBucket(_) => IngestRecord::ForeignBucket,
                        _ => IngestRecord::Rejected,
                    });
                    tracing::error!(message_id, error = %ErrorChain(&error), "record rejected");
                    rejected.push(Rejected {
                        error,
                        notification,
                    });
                }
            }
        }
        (jobs, rejected)
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
        let outcomes = parse_notification_of(&delivery.body, &self.sources).map_err(|error| {
            // Counted as one rejected record; with no record to set aside, the message itself
            // goes to the DLQ (SQS's redrive).
            Tally::of(IngestRecord::Rejected).emit();
            HandlerError::new(FailureKind::Permanent, "unusable notification").with_source(error)
        })?;
        let mut tally = Tally::default();
        let (jobs, rejected) = self.admit(outcomes, &delivery.message_id, &mut tally);
        let mut failures = self.enqueue(&jobs, &mut tally).await;
        let kept = rejected.len();
        let set_aside = match &self.set_aside {
            Some(set_aside) => {
                let not_set_aside = set_aside.send(rejected, &delivery.message_id).await;
                let set_aside = kept - not_set_aside.len();
                failures.extend(not_set_aside);
                set_aside
            }
            None => 0,
        };
        tracing::info!(
            message_id = %delivery.message_id,
            enqueued = tally.get(IngestRecord::Enqueued),
            ignored = tally.get(IngestRecord::Ignored),
            filtered = tally.get(IngestRecord::Filtered),
            duplicates = tally.get(IngestRecord::Duplicate),
            rejected = tally.get(IngestRecord::Rejected),
            foreign_bucket = tally.get(IngestRecord::ForeignBucket),
            set_aside,
            failed = failures.len(),
            "notification ingested"
        );
        tally.emit();
        verdict(failures)?;
        if kept > 0 && self.set_aside.is_none() {
            return Err(HandlerError::new(
                FailureKind::Permanent,
                format!(
                    "{kept} record(s) of the notification were rejected (see the errors above); \
                     YUBA_EVENTS_DLQ_URL is not set, so the notification fails whole"
                ),
            ));
        }
        Ok(())
    }
}

/// A notification succeeds when all its jobs are on a queue and its rejected records are set
/// aside. A failure to send is as retryable as the most retryable of its causes: one transient
/// failure is enough to try the notification again (whose jobs the worker then recognises as
/// already done).
fn verdict(mut failures: Vec<SendError>) -> Result<(), HandlerError> {
    if failures.is_empty() {
        return Ok(());
    }
    let kind = if failures.iter().any(|f| f.kind.is_transient()) {
        FailureKind::Transient
    } else {
        FailureKind::Permanent
    };
    let message = format!(
        "{} message(s) (jobs, or rejected records for the dead-letter queue) could not be sent: \
         {}",
        failures.len(),
        failures
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The first failure's SDK error, if it has one, is the cause the chain shows.
    let first = failures.swap_remove(0);
    Err(HandlerError::new(kind, message).with_source(first))
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
