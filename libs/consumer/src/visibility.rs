use std::convert::Infallible;
use std::time::Duration;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use yuba_model::ErrorChain;

use crate::consumer::{SQS_BATCH, SqsCallError};

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
                error = %ErrorChain(&SqsCallError::new(error)),
                count = chunk.len(),
                "could not change messages' visibility; they return after the one they have"
            ),
        }
    }
}

/// Calls `renew` every half `timeout`, for as long as it is polled: a message being worked on
/// is renewed for another `timeout` long before its current one runs out, so it is never
/// handed to a second consumer, and one late or failed renewal still leaves it covered.
pub(crate) async fn keep_invisible<F, Fut>(timeout: Duration, mut renew: F) -> Infallible
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let period = timeout / 2;
    loop {
        tokio::time::sleep(period).await;
        renew().await;
    }
}

/// SQS takes whole seconds, up to 12 hours.
pub(crate) fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().min(43_200)).unwrap_or(43_200)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;

    /// When `keep_invisible` renews a message worked on for `work`, each renewal taking
    /// `answer` to be answered: the instants the renewals were answered, from the start.
    async fn renewals(timeout: Duration, work: Duration, answer: Duration) -> Vec<Duration> {
        let started = Instant::now();
        let answered = Mutex::new(Vec::new());
        let renew = || async {
            tokio::time::sleep(answer).await;
            answered.lock().unwrap().push(started.elapsed());
        };
        tokio::select! {
            () = tokio::time::sleep(work) => {}
            never = keep_invisible(timeout, renew) => match never {},
        }
        answered.into_inner().unwrap()
    }

    /// Whether a message received at 0 with `timeout`, renewed for `timeout` at each of
    /// `renewals`, stays invisible for the whole `work`.
    fn covered(timeout: Duration, work: Duration, renewals: &[Duration]) -> bool {
        let mut visible_at = timeout;
        for &renewed in renewals {
            if renewed >= visible_at {
                return false;
            }
            visible_at = renewed + timeout;
        }
        visible_at > work
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_worked_on_past_its_timeout_is_renewed_every_half_timeout() {
        let (timeout, work) = (Duration::from_secs(4), Duration::from_secs(9));
        let answered = renewals(timeout, work, Duration::ZERO).await;
        let seconds: Vec<u64> = answered.iter().map(Duration::as_secs).collect();
        assert_eq!(seconds, [2, 4, 6, 8]);
        assert!(covered(timeout, work, &answered));
        assert!(!covered(timeout, work, &[]), "the check can fail");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_answers_still_leave_the_message_covered() {
        // Each renewal answered only after 1.5 s of a 4 s timeout: later, never too late.
        let (timeout, work) = (Duration::from_secs(4), Duration::from_secs(30));
        let answered = renewals(timeout, work, Duration::from_millis(1500)).await;
        assert!(answered.len() >= 8, "{answered:?}");
        assert!(covered(timeout, work, &answered), "{answered:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn work_shorter_than_half_the_timeout_is_not_renewed() {
        let answered = renewals(
            Duration::from_secs(60),
            Duration::from_secs(29),
            Duration::ZERO,
        );
        assert_eq!(answered.await, Vec::<Duration>::new());
    }
}
