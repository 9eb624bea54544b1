use std::collections::HashSet;

use yuba_aws::JobSender;
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_events::{KeyFilter, RecordOutcome, Route, Router, WorkQueues, parse_notification};
use yuba_model::Job;

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
            HandlerError::new(
                FailureKind::Permanent,
                format!("unusable notification: {error}"),
            )
        })?;

        let mut seen = HashSet::new();
        let (mut for_lambda, mut for_fargate) = (Vec::new(), Vec::new());
        let (mut ignored, mut filtered, mut duplicates, mut rejected) = (0, 0, 0, 0);
        for outcome in outcomes {
            match outcome {
                RecordOutcome::Job(job) => {
                    if !self.filter.admits(job.key()) {
                        filtered += 1;
                        continue;
                    }
                    let body = job.to_message();
                    // S3 may describe one change twice in a notification batch.
                    if !seen.insert(body.clone()) {
                        duplicates += 1;
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
                    ignored += 1;
                    tracing::info!(%event, reason, "event ignored");
                }
                RecordOutcome::Rejected(error) => {
                    rejected += 1;
                    tracing::error!(message_id = %delivery.message_id, %error, "record rejected");
                }
            }
        }

        let mut enqueued = 0;
        let mut failures: Vec<String> = Vec::new();
        let mut worst = None;
        for (route, bodies) in [(Route::Lambda, for_lambda), (Route::Fargate, for_fargate)] {
            if bodies.is_empty() {
                continue;
            }
            for result in self.sender.send(self.queue(route), &bodies).await {
                match result {
                    Ok(()) => enqueued += 1,
                    Err(error) => {
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
            enqueued,
            ignored,
            filtered,
            duplicates,
            rejected,
            failed = failures.len(),
            "notification ingested"
        );
        if let Some(kind) = worst {
            return Err(HandlerError::new(
                kind,
                format!(
                    "{} of {} jobs could not be enqueued: {}",
                    failures.len(),
                    failures.len() + enqueued,
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

fn log_job(job: &Job, route: Route) {
    let op = match job {
        Job::Replicate(_) => "replicate",
        Job::Delete(_) => "delete",
    };
    tracing::debug!(op, bucket = %job.bucket(), key = %job.key(), route = route.as_str(), "job");
}
