use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_model::Job;
use yuba_replicate::{Outcome, Replicator};

/// Decodes a job message and runs it; logs one line per job with what happened.
#[derive(Debug)]
pub struct JobHandler {
    replicator: Replicator,
}

impl JobHandler {
    pub fn new(replicator: Replicator) -> Self {
        JobHandler { replicator }
    }
}

impl Handler for JobHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let job = Job::from_message(&delivery.body)
            .map_err(|error| HandlerError::new(FailureKind::Permanent, error.to_string()))?;
        let span = tracing::info_span!(
            "job",
            message_id = %delivery.message_id,
            bucket = %job.bucket(),
            key = %job.key(),
        );
        async {
            let started = Instant::now();
            let result = self.replicator.run(&job).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            // Upload-to-replica latency, as far as the event's timestamp allows.
            let lag_ms = job
                .event_time()
                .map(|t| (Utc::now() - t).num_milliseconds().max(0));
            match result {
                Ok(outcome) => {
                    let (bytes, sha256, streamed, variants, variants_error) = match &outcome {
                        Outcome::Replicated {
                            bytes,
                            checksums,
                            streamed,
                            variants,
                            variants_error,
                            ..
                        } => (
                            Some(*bytes),
                            Some(checksums.sha256_hex()),
                            Some(*streamed),
                            Some(*variants),
                            variants_error.clone(),
                        ),
                        _ => (None, None, None, None, None),
                    };
                    tracing::info!(
                        outcome = outcome.as_str(),
                        bytes,
                        sha256,
                        streamed,
                        variants,
                        variants_error,
                        elapsed_ms,
                        lag_ms,
                        "job done"
                    );
                    Ok(())
                }
                Err(error) => Err(HandlerError::new(error.kind(), error.to_string())),
            }
        }
        .instrument(span)
        .await
    }
}
