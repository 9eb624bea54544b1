use std::time::Instant;

use chrono::Utc;
use tracing::Instrument;
use yuba_consumer::{Delivery, FailureKind, Handler, HandlerError};
use yuba_model::{ErrorChain, Job};
use yuba_replicate::{Outcome, ReplicateError, Replicator, variants_error_kinds};
use yuba_startup::metrics::catalog::{
    OUTCOME_FAILED, OUTCOME_FOREIGN_BUCKET, OUTCOME_REJECTED, VARIANT_ERROR_UNKNOWN,
};
use yuba_startup::metrics::{self, Dimension, Metric};

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
        let job = decode(delivery)?;
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
            let timing = Timing {
                elapsed_ms: started.elapsed().as_millis() as u64,
                // Upload-to-replica latency, as far as the event's timestamp allows.
                lag_ms: job
                    .event_time()
                    .map(|t| (Utc::now() - t).num_milliseconds().max(0)),
            };
            match result {
                Ok(outcome) => {
                    report_done(&outcome, &timing);
                    Ok(())
                }
                Err(error) => {
                    report_failed(&error, &timing);
                    Err(HandlerError::new(error.kind(), "the job failed").with_source(error))
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The job a message carries. One that holds none is poison: counted apart from jobs that
/// failed, as no retry or redrive can help it.
fn decode(delivery: &Delivery) -> Result<Job, HandlerError> {
    Job::from_message(&delivery.body).map_err(|error| {
        metrics::emit(
            &[
                (Dimension::Outcome, OUTCOME_REJECTED),
                (Dimension::Failure, FailureKind::Permanent.as_str()),
            ],
            &[(Metric::Jobs, 1.0)],
        );
        HandlerError::new(FailureKind::Permanent, "the message holds no job").with_source(error)
    })
}

/// How long a job took, and how long after its event it finished.
#[derive(Clone, Copy)]
struct Timing {
    elapsed_ms: u64,
    lag_ms: Option<i64>,
}

/// The job's line and metrics when it succeeded.
fn report_done(outcome: &Outcome, timing: &Timing) {
    let Timing { elapsed_ms, lag_ms } = *timing;
    let (bytes, sha256, streamed, variants, variants_error) = match outcome {
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
            variants_error.as_ref(),
        ),
        Outcome::VariantsAdded {
            variants,
            variants_error,
            ..
        } => (None, None, None, Some(*variants), variants_error.as_ref()),
        _ => (None, None, None, None, None),
    };
    tracing::info!(
        outcome = outcome.as_str(),
        bytes,
        sha256,
        streamed,
        variants,
        variants_error_kind = variants_error.map(|e| e.kind.as_str()),
        variants_error = variants_error.map(tracing::field::display),
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
    if let Some(error) = variants_error {
        metrics::emit(
            &[(Dimension::VariantError, variant_error_kind(&error.kind))],
            &[(Metric::VariantFailures, 1.0)],
        );
    }
}

/// The job's own line when it failed, in its span (key and bucket), beside the consumer's line
/// about the message's fate; and its metrics.
fn report_failed(error: &ReplicateError, timing: &Timing) {
    let Timing { elapsed_ms, lag_ms } = *timing;
    // A job refused for its bucket is counted apart: it is a misrouted or forged message, not
    // a fault of the copy.
    let outcome = match error {
        ReplicateError::ForeignBucket(_) => OUTCOME_FOREIGN_BUCKET,
        _ => OUTCOME_FAILED,
    };
    tracing::warn!(
        outcome,
        failure = error.kind().as_str(),
        error = %ErrorChain(error),
        elapsed_ms,
        lag_ms,
        "job failed"
    );
    metrics::emit(
        &[
            (Dimension::Outcome, outcome),
            (Dimension::Failure, error.kind().as_str()),
        ],
        &[(Metric::Jobs, 1.0)],
    );
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
