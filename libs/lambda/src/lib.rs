//! The Lambda side of the binaries. Only this crate and the bins know about Lambda: handlers are
//! written once against [`yuba_consumer::Handler`] and served here from a Lambda SQS trigger, or
//! by [`yuba_consumer::Consumer`] from a long-polling process.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use yuba_config::{ConfigError, Env};
use yuba_consumer::{ConsumerSettings, Delivery, Handler, handle_batch};

/// Where a binary runs, and what it needs to know there.
#[derive(Debug, Clone, PartialEq)]
pub enum Home {
    /// A Lambda execution environment (`AWS_LAMBDA_RUNTIME_API` is set): messages are pushed in
    /// batches, `concurrency` of a batch handled at once.
    Lambda { concurrency: usize },
    /// Anywhere else: the process long-polls the queue named by the settings.
    Service(ConsumerSettings),
}

impl Home {
    /// `queue_var` names the variable holding the queue a service polls.
    pub fn from_env(
        env: &Env,
        queue_var: &str,
        default_concurrency: u64,
    ) -> Result<Home, ConfigError> {
        if env.is_set("AWS_LAMBDA_RUNTIME_API") {
            let concurrency = env.number_in("YUBA_CONCURRENCY", default_concurrency, 1..=1024)?;
            Ok(Home::Lambda {
                concurrency: usize::try_from(concurrency)
                    .map_err(|_| env.invalid("YUBA_CONCURRENCY", "too large"))?,
            })
        } else {
            Ok(Home::Service(ConsumerSettings::from_env(
                env,
                queue_var,
                default_concurrency,
            )?))
        }
    }
}

/// Handles an SQS-triggered invocation and lists only the failed messages, so that with
/// `ReportBatchItemFailures` on the event source mapping the rest of the batch is deleted and not
/// redelivered.
pub async fn answer_sqs_batch<H: Handler>(
    handler: &H,
    event: SqsEvent,
    concurrency: usize,
) -> SqsBatchResponse {
    let deliveries = event
        .records
        .into_iter()
        .map(|record| Delivery {
            message_id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|count| count.parse().ok())
                .unwrap_or(1),
        })
        .collect();
    let failed = handle_batch(handler, deliveries, concurrency).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect();
    response
}

/// Serves SQS-triggered invocations until the runtime stops.
pub async fn serve_sqs_batches<H: Handler>(
    handler: H,
    concurrency: usize,
) -> Result<(), lambda_runtime::Error> {
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(
                answer_sqs_batch(handler, event.payload, concurrency).await,
            )
        },
    ))
    .await
}

/// An SQS trigger event, if `payload` is one; anything else is for the caller to interpret.
pub fn as_sqs_event(payload: &serde_json::Value) -> Option<SqsEvent> {
    let is_sqs = payload
        .get("Records")?
        .as_array()?
        .first()?
        .get("eventSource")?
        .as_str()?
        == "aws:sqs";
    if !is_sqs {
        return None;
    }
    serde_json::from_value(payload.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yuba_config::Env;
    use yuba_consumer::{FailureKind, HandlerError};

    struct RejectsBad;

    impl Handler for RejectsBad {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            if delivery.body == "bad" {
                Err(HandlerError::new(FailureKind::Permanent, "bad body"))
            } else {
                Ok(())
            }
        }
    }

    fn sqs_event() -> serde_json::Value {
        serde_json::json!({"Records": [
            {"messageId": "m1", "receiptHandle": "r1", "body": "good", "attributes": {"ApproximateReceiveCount": "1"},
             "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"},
            {"messageId": "m2", "receiptHandle": "r2", "body": "bad", "attributes": {"ApproximateReceiveCount": "2"},
             "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"}
        ]})
    }

    #[tokio::test]
    async fn only_failed_messages_are_reported_back() {
        let event = as_sqs_event(&sqs_event()).expect("an SQS event");
        let response = answer_sqs_batch(&RejectsBad, event, 4).await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["m2"]);
    }

    #[test]
    fn the_home_follows_the_runtime_api_variable() {
        let lambda = Env::from_pairs([
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("YUBA_CONCURRENCY", "3"),
        ]);
        assert_eq!(
            Home::from_env(&lambda, "Q", 8),
            Ok(Home::Lambda { concurrency: 3 })
        );
        let service = Env::from_pairs([("Q", "https://sqs.us-east-1.amazonaws.com/1/q")]);
        assert!(matches!(
            Home::from_env(&service, "Q", 8),
            Ok(Home::Service(_))
        ));
        let unconfigured = Home::from_env(&Env::default(), "Q", 8).unwrap_err();
        assert!(unconfigured.to_string().starts_with("Q is not set"));
    }

    #[test]
    fn other_payloads_are_not_sqs_events() {
        assert!(
            as_sqs_event(&serde_json::json!({"Records": [{"eventSource": "aws:s3"}]})).is_none()
        );
        assert!(as_sqs_event(&serde_json::json!({"detail-type": "Object Created"})).is_none());
    }
}
