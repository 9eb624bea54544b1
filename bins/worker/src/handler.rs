use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_model::Job;
use yuba_replicate::{Outcome, Replicator};
use yuba_telemetry::metrics::{self, Unit};

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
        let job = Job::from_message(&delivery.body).map_err(|error| {
            // Poison: counted apart from jobs that failed, as no retry or redrive can help it.
            metrics::emit(
                &[
                    ("Outcome", "rejected"),
                    ("Failure", FailureKind::Permanent.as_str()),
                ],
                &[("Jobs", Unit::Count, 1.0)],
            );
            HandlerError::new(FailureKind::Permanent, error.to_string())
        })?;
        let span = tracing::info_span!(
            "job",
            message_id = %delivery.message_id,
            receive_count = delivery.receive_count,
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
                    let mut values = vec![
                        ("Jobs", Unit::Count, 1.0),
                        ("JobDuration", Unit::Milliseconds, elapsed_ms as f64),
                        ("BytesReplicated", Unit::Bytes, bytes.unwrap_or(0) as f64),
                        ("VariantsMade", Unit::Count, variants.unwrap_or(0) as f64),
                    ];
                    if let Some(lag_ms) = lag_ms {
                        values.push(("ReplicationLag", Unit::Milliseconds, lag_ms as f64));
                    }
                    metrics::emit(&[("Outcome", outcome.as_str())], &values);
                    if let Some(error) = &variants_error {
                        let kind = error.split(':').next().unwrap_or("unknown");
                        metrics::emit(
                            &[("VariantError", kind)],
                            &[("VariantFailures", Unit::Count, 1.0)],
                        );
                    }
                    Ok(())
                }
                Err(error) => {
                    // The job's own line, in its span (key and bucket), beside the consumer's
                    // line about the message's fate.
                    tracing::warn!(
                        outcome = "failed",
                        failure = error.kind().as_str(),
                        error = %error,
                        elapsed_ms,
                        lag_ms,
                        "job failed"
                    );
                    metrics::emit(
                        &[("Outcome", "failed"), ("Failure", error.kind().as_str())],
                        &[("Jobs", Unit::Count, 1.0)],
                    );
                    Err(HandlerError::new(error.kind(), error.to_string()))
                }
            }
        }
        .instrument(span)
        .await
    }
}
