//! The SQS consumer's promises, against a real SQS (moto): a message worked on for longer than
//! its visibility timeout is not handed out twice; a stop drains in-flight work, and what cannot
//! finish within the grace period is released at once rather than stranded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use yuba_config::Env;
use yuba_consumer::{Consumer, ConsumerSettings, Delivery, Handler, HandlerError};
use yuba_e2e::{Stack, eventually};

/// Takes `work` per message and counts how often each was handled.
#[derive(Clone)]
struct SlowHandler {
    work: Duration,
    calls: Arc<AtomicU32>,
}

impl Handler for SlowHandler {
    async fn handle(&self, _delivery: &Delivery) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.work).await;
        Ok(())
    }
}

fn settings(stack: &Stack, pairs: &[(&str, &str)]) -> ConsumerSettings {
    let mut all = vec![
        ("YUBA_QUEUE_URL", stack.var("YUBA_LAMBDA_QUEUE_URL")),
        ("YUBA_RECEIVE_WAIT_SECONDS", "1"),
    ];
    all.extend_from_slice(pairs);
    ConsumerSettings::from_env(&Env::from_pairs(all), "YUBA_QUEUE_URL", 2).expect("valid settings")
}

async fn send(stack: &Stack, body: &str) -> anyhow::Result<()> {
    stack
        .sqs()
        .await
        .send_message()
        .queue_url(stack.var("YUBA_LAMBDA_QUEUE_URL"))
        .message_body(body)
        .send()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_worked_on_past_its_visibility_timeout_is_not_redelivered() -> anyhow::Result<()>
{
    let stack = Stack::start("visibility", 5)?;
    send(&stack, "slow").await?;
    let handler = SlowHandler {
        work: Duration::from_secs(5),
        calls: Arc::default(),
    };
    let calls = Arc::clone(&handler.calls);
    // Two slots, so a redelivered message would be picked up while the first run goes on.
    let consumer = Consumer::new(
        stack.sqs().await,
        settings(
            &stack,
            &[
                ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "2"),
                ("YUBA_CONCURRENCY", "2"),
            ],
        ),
        handler,
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(
        Duration::from_secs(30),
        "the message to be handled and deleted",
        || async {
            let depth = queue_depth(&stack).await?;
            Ok((calls.load(Ordering::SeqCst) >= 1 && depth == 0).then_some(()))
        },
    )
    .await?;
    shutdown.cancel();
    let stats = running.await?;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "handled once, not twice");
    assert_eq!(stats.received, 1);
    assert_eq!(stats.succeeded, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_in_flight_work_finish_within_the_grace_period() -> anyhow::Result<()> {
    let stack = Stack::start("drain", 5)?;
    send(&stack, "one second of work").await?;
    let handler = SlowHandler {
        work: Duration::from_secs(1),
        calls: Arc::default(),
    };
    let calls = Arc::clone(&handler.calls);
    let consumer = Consumer::new(
        stack.sqs().await,
        settings(&stack, &[("YUBA_SHUTDOWN_GRACE_SECONDS", "20")]),
        handler,
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(30), "the work to start", || async {
        Ok((calls.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await?;
    shutdown.cancel();
    let stats = running.await?;
    assert_eq!((stats.succeeded, stats.released), (1, 0));
    assert_eq!(
        queue_depth(&stack).await?,
        0,
        "finished work was deleted before exit"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_outlasts_the_grace_period_is_released_at_once() -> anyhow::Result<()> {
    let stack = Stack::start("release", 5)?;
    send(&stack, "a minute of work").await?;
    let handler = SlowHandler {
        work: Duration::from_secs(60),
        calls: Arc::default(),
    };
    let calls = Arc::clone(&handler.calls);
    let consumer = Consumer::new(
        stack.sqs().await,
        settings(
            &stack,
            &[
                ("YUBA_SHUTDOWN_GRACE_SECONDS", "1"),
                ("YUBA_VISIBILITY_TIMEOUT_SECONDS", "600"),
            ],
        ),
        handler,
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    eventually(Duration::from_secs(30), "the work to start", || async {
        Ok((calls.load(Ordering::SeqCst) == 1).then_some(()))
    })
    .await?;
    shutdown.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(15), running).await??;
    assert_eq!((stats.succeeded, stats.released), (0, 1));
    // Released, not left invisible for its 600 s timeout: another consumer gets it now.
    let received = stack
        .sqs()
        .await
        .receive_message()
        .queue_url(stack.var("YUBA_LAMBDA_QUEUE_URL"))
        .wait_time_seconds(5)
        .send()
        .await?;
    assert_eq!(received.messages().len(), 1);
    assert_eq!(received.messages()[0].body(), Some("a minute of work"));
    Ok(())
}

async fn queue_depth(stack: &Stack) -> anyhow::Result<u64> {
    yuba_e2e::queue_depth(&stack.sqs().await, stack.var("YUBA_LAMBDA_QUEUE_URL")).await
}
