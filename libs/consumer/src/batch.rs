use std::time::Duration;

use futures::StreamExt;

use crate::handler::{Delivery, Handler, log_failure};
use crate::settings::MessageBackoff;

/// A message of a pushed batch that failed, and when it should be seen again.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedDelivery {
    pub message_id: String,
    pub visible_in: Duration,
}

/// Runs a batch that was pushed to us (a Lambda SQS trigger), `concurrency` at a time, and
/// returns the messages that failed: the caller reports exactly those back, so the rest of the
/// batch is not redelivered, and sets their visibility as `backoff` says.
pub async fn handle_batch<H: Handler>(
    handler: &H,
    deliveries: Vec<Delivery>,
    concurrency: usize,
    backoff: &MessageBackoff,
) -> Vec<FailedDelivery> {
    futures::stream::iter(deliveries)
        .map(|delivery| async move {
            match handler.handle(&delivery).await {
                Ok(()) => None,
                Err(error) => {
                    log_failure(&delivery, &error);
                    Some(FailedDelivery {
                        visible_in: backoff.visible_in(error.kind, delivery.receive_count),
                        message_id: delivery.message_id,
                    })
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(std::future::ready)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::HandlerError;
    use yuba_model::FailureKind;

    struct FailsOdd;

    impl Handler for FailsOdd {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            let n: u32 = delivery.body.parse().unwrap_or(1);
            if n % 2 == 1 {
                Err(HandlerError::new(FailureKind::Transient, "odd"))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn only_the_failed_messages_are_reported() {
        let deliveries = (0..7)
            .map(|n| Delivery {
                message_id: format!("m{n}"),
                body: n.to_string(),
                receive_count: 1,
            })
            .collect();
        let backoff = MessageBackoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(10),
        };
        let failed = handle_batch(&FailsOdd, deliveries, 3, &backoff).await;
        let mut ids: Vec<&str> = failed.iter().map(|f| f.message_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["m1", "m3", "m5"]);
        // Transient failures back off (10 s, jittered down to no less than half).
        assert!(
            failed.iter().all(|f| f.visible_in >= Duration::from_secs(5)
                && f.visible_in <= Duration::from_secs(10))
        );
    }
}
