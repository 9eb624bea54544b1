use futures::StreamExt;

use crate::handler::{Delivery, Handler, log_failure};

/// Runs a batch that was pushed to us (a Lambda SQS trigger), `concurrency` at a time, and
/// returns the ids of the messages that failed: the caller reports exactly those back, so the
/// rest of the batch is not redelivered.
pub async fn handle_batch<H: Handler>(
    handler: &H,
    deliveries: Vec<Delivery>,
    concurrency: usize,
) -> Vec<String> {
    futures::stream::iter(deliveries)
        .map(|delivery| async move {
            match handler.handle(&delivery).await {
                Ok(()) => None,
                Err(error) => {
                    log_failure(&delivery, &error);
                    Some(delivery.message_id)
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
        let mut failed = handle_batch(&FailsOdd, deliveries, 3).await;
        failed.sort();
        assert_eq!(failed, vec!["m1", "m3", "m5"]);
    }
}
