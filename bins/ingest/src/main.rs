//! yuba-ingest: turns S3 notifications into replication jobs on the work queues.
//!
//! Under Lambda it accepts every shape S3 can deliver in (an SQS trigger whose bodies are S3
//! notifications or SNS envelopes of them, a direct S3 notification, an EventBridge event).
//! Anywhere else it long-polls `YUBA_EVENTS_QUEUE_URL` with the same handler, which is how the
//! local stack runs the real event path.

mod handler;

use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use yuba_aws::{Dispatcher, JobSender};
use yuba_consumer::lambda::{Home, SqsBatches};
use yuba_consumer::{Consumer, Delivery, Handler};
use yuba_events::{KeyFilter, Router, SourceBuckets, WorkQueues};
use yuba_model::ErrorChain;
use yuba_startup::Env;
use yuba_startup::cancel_on_termination;

use crate::handler::{IngestHandler, SetAside};

/// Messages parsed at once: each is small, the work is sending.
const DEFAULT_CONCURRENCY: u64 = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    yuba_startup::telemetry::init(&env).map_err(anyhow::Error::msg)?;
    let queues = WorkQueues::from_env(&env)?;
    let router = Router::from_env(&env)?;
    let filter = KeyFilter::new(
        env.list("YUBA_FILTER_PREFIXES"),
        env.list("YUBA_FILTER_SUFFIXES"),
    );
    let sources = SourceBuckets::from_env(&env)?;
    let dead_letters = env.optional("YUBA_EVENTS_DLQ_URL");
    let home = Home::from_env(&env, "YUBA_EVENTS_QUEUE_URL", DEFAULT_CONCURRENCY)?;
    tracing::info!(
        source_bucket = sources.source(),
        canary_bucket = sources.canary(),
        rejected_records_to = dead_letters.as_deref(),
        prefixes = ?filter.prefixes(),
        suffixes = ?filter.suffixes(),
        route_threshold_bytes = router.threshold_bytes(),
        "ingest configured"
    );

    let sdk = yuba_aws::load_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sender = JobSender::new(sqs.clone());
    let set_aside = dead_letters.map(|url| SetAside::new(sender.clone(), url));
    let handler = IngestHandler::new(
        Dispatcher::new(sender, queues, router),
        filter,
        sources,
        set_aside,
    );

    match home {
        Home::Lambda {
            concurrency,
            backoff,
        } => serve_lambda(handler, SqsBatches::new(sqs, concurrency, backoff)).await,
        Home::Service(settings) => {
            let shutdown = cancel_on_termination().context("installing signal handlers")?;
            Consumer::new(sqs, settings, handler).run(shutdown).await;
            Ok(())
        }
    }
}

/// One Lambda, every trigger: an SQS batch gets a partial batch response; a direct S3 or
/// EventBridge invocation succeeds or fails as a whole (Lambda retries asynchronous invocations,
/// then hands them to the function's failure destination).
async fn serve_lambda(handler: IngestHandler, batches: SqsBatches) -> anyhow::Result<()> {
    let (handler, batches) = (&handler, &batches);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            if let Some(batch) = yuba_consumer::lambda::as_sqs_event(&event.payload) {
                let response = batches.answer(handler, batch).await;
                return Ok::<_, lambda_runtime::Error>(serde_json::to_value(response)?);
            }
            let delivery = Delivery {
                message_id: event.context.request_id,
                body: event.payload.to_string(),
                receive_count: 1,
            };
            // The invocation's error message is all Lambda keeps: the whole chain goes into it.
            handler
                .handle(&delivery)
                .await
                .map_err(|error| ErrorChain(&error).to_string())?;
            Ok(serde_json::Value::Null)
        },
    ))
    .await
    .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"))
}
