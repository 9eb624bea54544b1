use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::StreamExt;
use thiserror::Error;
use yuba_model::FailureKind;

use crate::batch::{MAX_BATCH_BYTES, pack_batches};
use crate::classify::{classify_sdk_error, describe_sdk_error};

/// How many SendMessageBatch calls one `send` keeps in flight.
const BATCHES_IN_FLIGHT: usize = 8;

/// Puts messages on a queue with SendMessageBatch, retrying the entries SQS did not take.
#[derive(Debug, Clone)]
pub struct JobSender {
    client: aws_sdk_sqs::Client,
    max_attempts: u32,
    first_backoff: Duration,
}

#[derive(Debug, Clone, Error)]
#[error("{message}")]
pub struct SendError {
    pub kind: FailureKind,
    pub message: String,
}

impl JobSender {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        JobSender {
            client,
            max_attempts: 5,
            first_backoff: Duration::from_millis(50),
        }
    }

    /// Sends every body to `queue_url`. The result has one entry per body, in order, so the
    /// caller can fail exactly the records whose jobs did not make it.
    pub async fn send(&self, queue_url: &str, bodies: &[String]) -> Vec<Result<(), SendError>> {
        let sizes: Vec<usize> = bodies.iter().map(String::len).collect();
        let mut results: Vec<Result<(), SendError>> = vec![Ok(()); bodies.len()];
        let outcomes: Vec<_> = futures::stream::iter(pack_batches(&sizes))
            .map(|range| async move {
                let outcome = self.send_batch(queue_url, &bodies[range.clone()]).await;
                (range, outcome)
            })
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .collect()
            .await;
        for (range, outcome) in outcomes {
            for (slot, result) in results[range].iter_mut().zip(outcome) {
                *slot = result;
            }
        }
        results
    }

    /// One SendMessageBatch, then again for the entries that failed with a fault of SQS's,
    /// with exponential backoff and full jitter, until all are in or the attempts run out.
    async fn send_batch(&self, queue_url: &str, bodies: &[String]) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Option<Result<(), SendError>>> = vec![None; bodies.len()];
        if let [body] = bodies
            && body.len() > MAX_BATCH_BYTES
        {
            results[0] = Some(Err(SendError {
                kind: FailureKind::Permanent,
                message: format!(
                    "the message is {} bytes; SQS takes at most {MAX_BATCH_BYTES}",
                    body.len()
                ),
            }));
        }
        for attempt in 0..self.max_attempts {
            let pending: Vec<usize> = (0..bodies.len())
                .filter(|&i| {
                    results[i]
                        .as_ref()
                        .is_none_or(|r| r.as_ref().is_err_and(|e| e.kind.is_transient()))
                })
                .collect();
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt)).await;
            }
            let entries = pending.iter().map(|&i| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&bodies[i])
                    .build()
            });
            let entries: Result<Vec<_>, _> = entries.collect();
            let request = match entries {
                Ok(entries) => self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries)),
                Err(error) => {
                    let failure = SendError {
                        kind: FailureKind::Permanent,
                        message: format!("could not build the SQS batch: {error}"),
                    };
                    for &i in &pending {
                        results[i] = Some(Err(failure.clone()));
                    }
                    break;
                }
            };
            match request.send().await {
                Ok(output) => {
                    for ok in output.successful() {
                        if let Ok(i) = ok.id().parse::<usize>() {
                            results[i] = Some(Ok(()));
                        }
                    }
                    for failed in output.failed() {
                        let Ok(i) = failed.id().parse::<usize>() else {
                            continue;
                        };
                        let kind = if failed.sender_fault() {
                            FailureKind::Permanent
                        } else {
                            FailureKind::Transient
                        };
                        results[i] = Some(Err(SendError {
                            kind,
                            message: format!(
                                "SQS refused the message: {} ({})",
                                failed.message().unwrap_or("no reason given"),
                                failed.code()
                            ),
                        }));
                    }
                }
                Err(error) => {
                    let failure = SendError {
                        kind: classify_sdk_error(&error),
                        message: format!(
                            "SendMessageBatch to {queue_url} failed: {}",
                            describe_sdk_error(&error)
                        ),
                    };
                    for &i in &pending {
                        results[i] = Some(Err(failure.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(SendError {
                        kind: FailureKind::Transient,
                        message: "SQS neither accepted nor refused the message".to_owned(),
                    })
                })
            })
            .collect()
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.first_backoff * 2_u32.saturating_pow(attempt.min(10));
        ceiling.mul_f64(rand::random::<f64>())
    }
}
