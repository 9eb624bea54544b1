use std::time::Duration;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use yuba_aws::describe_sdk_error;

use crate::consumer::SQS_BATCH;

/// Sets when each message (by receipt handle) is visible again: zero releases it to another
/// consumer now, more delays its retry. Best effort: a message whose change fails comes back
/// after the visibility it already has, so nothing is lost, only later.
pub async fn change_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    changes: &[(String, Duration)],
) {
    for chunk in changes.chunks(SQS_BATCH) {
        let entries: Result<Vec<_>, _> = chunk
            .iter()
            .enumerate()
            .map(|(id, (receipt, visible_in))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(id.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(whole_seconds(*visible_in))
                    .build()
            })
            .collect();
        let Ok(entries) = entries else { continue };
        match sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => {
                for failed in output.failed() {
                    tracing::warn!(
                        code = failed.code(),
                        error = failed.message().unwrap_or_default(),
                        "could not change a message's visibility; it returns after the one it has"
                    );
                }
            }
            Err(error) => tracing::warn!(
                error = %describe_sdk_error(&error),
                count = chunk.len(),
                "could not change messages' visibility; they return after the one they have"
            ),
        }
    }
}

/// SQS takes whole seconds, up to 12 hours.
pub(crate) fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().min(43_200)).unwrap_or(43_200)
}
