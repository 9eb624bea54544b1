use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_model::Job;
use yuba_replicate::{Outcome, Replicator, variants_error_kinds};
use yuba_telemetry::metrics::catalog::{OUTCOME_FAILED, OUTCOME_REJECTED, VARIANT_ERROR_UNKNOWN};
use yuba_telemetry::metrics::{self, Dimension, Metric};

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
                    (Dimension::Outcome, OUTCOME_REJECTED),
                    (Dimension::Failure, FailureKind::Permanent.as_str()),
                ],
                &[(Metric::Jobs, 1.0)],
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
                        variants_error_kind = variants_error.as_ref().map(|e| e.kind.as_str()),
                        variants_error = variants_error.as_ref().map(tracing::field::display),
                        elapsed_ms,
                        lag_ms,
                        "job done"
                    );
                    let mut values = vec![
                        (Metric::Jobs, 1.0),
                        (Metric::JobDuration, elapsed_ms as f64),
                        (Metric::BytesReplicated, bytes.unwrap_or(0) as f64),
                        (Metric::VariantsMade, variants.unwrap_or(0) as f64),
                    ];
                    if let Some(lag_ms) = lag_ms {
                        values.push((Metric::ReplicationLag, lag_ms as f64));
                    }
                    metrics::emit(&[(Dimension::Outcome, outcome.as_str())], &values);
                    if let Some(error) = &variants_error {
                        metrics::emit(
                            &[(Dimension::VariantError, variant_error_kind(&error.kind))],
                            &[(Metric::VariantFailures, 1.0)],
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
                        &[
                            (Dimension::Outcome, OUTCOME_FAILED),
                            (Dimension::Failure, error.kind().as_str()),
                        ],
                        &[(Metric::Jobs, 1.0)],
                    );
                    Err(HandlerError::new(error.kind(), error.to_string()))
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The `VariantError` value of a variants error's kind: itself, or [`VARIANT_ERROR_UNKNOWN`]
/// for a kind the catalog does not publish (a record written by another build), so that the
/// dimension keeps to the closed set the metric catalog publishes.
fn variant_error_kind(kind: &str) -> &'static str {
    variants_error_kinds()
        .find(|known| *known == kind)
        .unwrap_or(VARIANT_ERROR_UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_errors_are_told_by_their_kind_or_as_unknown() {
        for kind in [
            "too_large",
            "corrupt",
            "panicked",
            "name",
            "too_large_for_memory",
        ] {
            assert_eq!(variant_error_kind(kind), kind);
        }
        assert_eq!(variant_error_kind("on_fire"), VARIANT_ERROR_UNKNOWN);
        assert_eq!(
            variant_error_kind("corrupt: bad Huffman code"),
            VARIANT_ERROR_UNKNOWN
        );
        assert_eq!(variant_error_kind(""), VARIANT_ERROR_UNKNOWN);
    }
}
