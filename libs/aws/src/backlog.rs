//! How many messages a queue still holds: what a backfill waits on before it looks again at the
//! keys it enqueued.

use thiserror::Error;
use yuba_model::{Cause, FailureKind};

use crate::classify::{classify_sdk_error, describe_sdk_error};

/// GetQueueAttributes failed.
#[derive(Debug, Error)]
#[error("GetQueueAttributes of {queue_url} failed: {message}")]
pub struct BacklogError {
    pub kind: FailureKind,
    queue_url: String,
    message: String,
    #[source]
    source: Cause,
}

/// The messages on `queue_url` that no worker has finished: visible, in flight (taken, not yet
/// deleted) and delayed. SQS gives approximate figures, settling within about a minute of a
/// change (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/confirm-queue-is-empty.html):
/// a caller that waits for zero sees it only when the queue has been empty that long.
pub async fn queue_backlog(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<u64, BacklogError> {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let answer = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(Name::ApproximateNumberOfMessages)
        .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(Name::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|error| BacklogError {
            kind: classify_sdk_error(&error),
            queue_url: queue_url.to_owned(),
            message: describe_sdk_error(&error),
            source: Box::new(error),
        })?;
    let attributes = answer.attributes().cloned().unwrap_or_default();
    Ok(attributes
        .values()
        .filter_map(|value| value.parse::<u64>().ok())
        .sum())
}
