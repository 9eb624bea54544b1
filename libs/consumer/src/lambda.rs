//! The Lambda home: a handler written once against [`Handler`] is served here from a Lambda
//! SQS trigger, as [`Consumer`](crate::Consumer) serves it from a long-polling process. Only
//! this module and the bins know about Lambda.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::consumer::{SqsCallError, lock};
use crate::{ConsumerSettings, Delivery, Handler, MessageBackoff, change_visibility, handle_batch};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use yuba_model::ErrorChain;
use yuba_startup::{ConfigError, Env};

/// Where a binary runs, and what it needs to know there.
#[derive(Debug, Clone, PartialEq)]
pub enum Home {
    /// A Lambda execution environment (`AWS_LAMBDA_RUNTIME_API` is set): messages are pushed in
    /// batches, `concurrency` of a batch handled at once, failed ones delayed by `backoff`.
    Lambda {
        concurrency: usize,
        backoff: MessageBackoff,
    },
    /// Anywhere else: the process long-polls the queue named by the settings.
    Service(ConsumerSettings),
}

impl Home {
    /// Jobs handled at once, in either home.
    pub fn concurrency(&self) -> usize {
        match self {
            Home::Lambda { concurrency, .. } => *concurrency,
            Home::Service(settings) => settings.concurrency,
        }
    }

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
                backoff: MessageBackoff::from_env(env)?,
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

/// Answers SQS-triggered invocations as the long-polling consumer treats its messages: only
/// the failed messages are reported back (with `ReportBatchItemFailures` on the event source
/// mapping the rest of the batch is deleted), and each failed one is first made visible again
/// when its backoff says, at once if it can never succeed (so that it reaches the DLQ after the
/// queue's maxReceiveCount), later if it may. Without that, every failure would wait out the
/// queue's visibility timeout, which for a Lambda trigger is six times the function's.
#[derive(Debug)]
pub struct SqsBatches {
    sqs: aws_sdk_sqs::Client,
    concurrency: usize,
    backoff: MessageBackoff,
    /// Queue URLs by ARN, as GetQueueUrl gave them: an event names its queue only by ARN.
    queue_urls: Mutex<HashMap<String, String>>,
}

/// A failed message to be made visible again in `visible_in`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redelivery {
    pub queue_arn: String,
    pub receipt_handle: String,
    pub visible_in: Duration,
}

impl SqsBatches {
    pub fn new(sqs: aws_sdk_sqs::Client, concurrency: usize, backoff: MessageBackoff) -> Self {
        SqsBatches {
            sqs,
            concurrency,
            backoff,
            queue_urls: Mutex::new(HashMap::new()),
        }
    }

    pub async fn answer<H: Handler>(&self, handler: &H, event: SqsEvent) -> SqsBatchResponse {
        let (response, redeliveries) =
            run_sqs_batch(handler, event, self.concurrency, &self.backoff).await;
        self.schedule(redeliveries).await;
        response
    }

    /// Sets each failed message's visibility, queue by queue. Best effort: a message whose change
    /// fails comes back after the queue's visibility timeout instead.
    async fn schedule(&self, redeliveries: Vec<Redelivery>) {
        let mut by_queue: HashMap<String, Vec<(String, Duration)>> = HashMap::new();
        for r in redeliveries {
            by_queue
                .entry(r.queue_arn)
                .or_default()
                .push((r.receipt_handle, r.visible_in));
        }
        for (queue_arn, changes) in by_queue {
            if let Some(queue_url) = self.queue_url(&queue_arn).await {
                change_visibility(&self.sqs, &queue_url, &changes).await;
            }
        }
    }

    async fn queue_url(&self, queue_arn: &str) -> Option<String> {
        if let Some(url) = lock(&self.queue_urls).get(queue_arn) {
            return Some(url.clone());
        }
        let Some((account, name)) = queue_of_arn(queue_arn) else {
            tracing::warn!(
                queue_arn,
                "not an SQS queue ARN; failed messages return after the queue's visibility timeout"
            );
            return None;
        };
        match self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
        {
            Ok(output) => {
                let url = output.queue_url?;
                lock(&self.queue_urls).insert(queue_arn.to_owned(), url.clone());
                Some(url)
            }
            Err(error) => {
                tracing::warn!(
                    queue_arn,
                    error = %ErrorChain(&SqsCallError::new(error)),
                    "GetQueueUrl failed; failed messages return after the queue's visibility timeout"
                );
                None
            }
        }
    }
}

/// Runs a batch through `handler`: the partial batch response, and what to make visible when.
pub async fn run_sqs_batch<H: Handler>(
    handler: &H,
    event: SqsEvent,
    concurrency: usize,
    backoff: &MessageBackoff,
) -> (SqsBatchResponse, Vec<Redelivery>) {
    let mut origins = HashMap::new();
    let deliveries = event
        .records
        .into_iter()
        .map(|record| {
            let message_id = record.message_id.unwrap_or_default();
            if let (Some(arn), Some(receipt)) = (record.event_source_arn, record.receipt_handle) {
                origins.insert(message_id.clone(), (arn, receipt));
            }
            Delivery {
                message_id,
                body: record.body.unwrap_or_default(),
                receive_count: record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1),
            }
        })
        .collect();
    let failed = handle_batch(handler, deliveries, concurrency, backoff).await;
    let mut response = SqsBatchResponse::default();
    let mut redeliveries = Vec::with_capacity(failed.len());
    for failure in failed {
        if let Some((queue_arn, receipt_handle)) = origins.remove(&failure.message_id) {
            redeliveries.push(Redelivery {
                queue_arn,
                receipt_handle,
                visible_in: failure.visible_in,
            });
        }
        let mut item = BatchItemFailure::default();
        item.item_identifier = failure.message_id;
        response.batch_item_failures.push(item);
    }
    (response, redeliveries)
}

/// The account and name of the queue an ARN (`arn:PARTITION:sqs:REGION:ACCOUNT:NAME`) names.
pub fn queue_of_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!account.is_empty() && !name.is_empty()).then_some((account, name))
}

/// Serves SQS-triggered invocations until the runtime stops.
pub async fn serve_sqs_batches<H: Handler>(
    handler: H,
    batches: SqsBatches,
) -> Result<(), lambda_runtime::Error> {
    let (handler, batches) = (&handler, &batches);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(batches.answer(handler, event.payload).await)
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
    use crate::{FailureKind, HandlerError};
    use yuba_startup::Env;

    struct RejectsBad;

    impl Handler for RejectsBad {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            match delivery.body.as_str() {
                "bad" => Err(HandlerError::new(FailureKind::Permanent, "bad body")),
                "later" => Err(HandlerError::new(FailureKind::Transient, "try again")),
                _ => Ok(()),
            }
        }
    }

    const BACKOFF: MessageBackoff = MessageBackoff {
        base: Duration::from_secs(8),
        max: Duration::from_secs(60),
    };

    fn sqs_event() -> serde_json::Value {
        serde_json::json!({"Records": [
            {"messageId": "m1", "receiptHandle": "r1", "body": "good", "attributes": {"ApproximateReceiveCount": "1"},
             "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"},
            {"messageId": "m2", "receiptHandle": "r2", "body": "bad", "attributes": {"ApproximateReceiveCount": "2"},
             "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"},
            {"messageId": "m3", "receiptHandle": "r3", "body": "later", "attributes": {"ApproximateReceiveCount": "2"},
             "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
             "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"}
        ]})
    }

    #[tokio::test]
    async fn only_failed_messages_are_reported_back_and_delayed_by_their_kind() {
        let event = as_sqs_event(&sqs_event()).expect("an SQS event");
        let (response, mut redeliveries) = run_sqs_batch(&RejectsBad, event, 1, &BACKOFF).await;
        let mut failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        failed.sort_unstable();
        assert_eq!(failed, vec!["m2", "m3"]);
        redeliveries.sort_by(|a, b| a.receipt_handle.cmp(&b.receipt_handle));
        assert_eq!(redeliveries[0].receipt_handle, "r2");
        assert_eq!(
            redeliveries[0].visible_in,
            Duration::ZERO,
            "permanent: at once"
        );
        assert_eq!(redeliveries[1].receipt_handle, "r3");
        // Transient, on its second receive: 16 s, jittered down to no less than half.
        let later = redeliveries[1].visible_in;
        assert!(
            later >= Duration::from_secs(8) && later <= Duration::from_secs(16),
            "{later:?}"
        );
        assert!(
            redeliveries
                .iter()
                .all(|r| r.queue_arn == "arn:aws:sqs:us-east-1:123456789012:work")
        );
    }

    #[test]
    fn queue_arns_name_their_account_and_queue() {
        assert_eq!(
            queue_of_arn("arn:aws:sqs:eu-west-1:123456789012:yuba-prod-work-lambda"),
            Some(("123456789012", "yuba-prod-work-lambda"))
        );
        assert_eq!(
            queue_of_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q.fifo"),
            Some(("123456789012", "q.fifo"))
        );
        for not_a_queue in [
            "arn:aws:sns:us-east-1:123456789012:topic",
            "arn:aws:sqs:us-east-1:123456789012",
            "arn:aws:sqs:us-east-1::q",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        ] {
            assert_eq!(queue_of_arn(not_a_queue), None, "{not_a_queue}");
        }
    }

    #[test]
    fn the_home_follows_the_runtime_api_variable() {
        let lambda = Env::from_pairs([
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("YUBA_CONCURRENCY", "3"),
        ]);
        assert_eq!(
            Home::from_env(&lambda, "Q", 8),
            Ok(Home::Lambda {
                concurrency: 3,
                backoff: MessageBackoff {
                    base: Duration::from_secs(2),
                    max: Duration::from_secs(300)
                }
            })
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
